"""Replays with the LS space on one BLAS thread against the library's default threads.

A search ranks by fitting a PCA on a few dozen LS vectors per candidate and round (Appendix B):
matrices so small that BLAS threads only add synchronisation. When another process works on the
same cores (a second search worker, a second notebook), OpenBLAS's threads wait for each other
(``exec_blas_async_wait`` under ``dgesdd`` in a profile) and a fit of a millisecond takes a large
part of a second. ``lshkit.embedding.ls_space`` therefore runs on one BLAS thread
(``lshkit.env.small_matrix_blas``). This replays the same LS-ranked searches on the committed atlas
both ways, side by side in this process, while ``--busy`` neighbours replay on the default threads,
and prints the mean seconds per replay and their ratio.

    python benchmarks/embedding_threads.py               # one busy neighbour (the default)
    python benchmarks/embedding_threads.py --busy 0      # idle cores
"""
from __future__ import annotations

import argparse
import multiprocessing
import time
from unittest import mock

import lshkit.embedding as emb
from lshkit.atlas import ATLAS_ROOT, load_atlas
from lshkit.atlas.replay import replay


def _default_threads():
    return mock.patch.object(emb, "small_matrix_blas", mock.MagicMock)


def _seconds_per_replay(atlas, sampler: str, seeds) -> float:
    start = time.perf_counter()
    for seed in seeds:
        replay(atlas, sampler=sampler, ranking="ls", budget="low", seed=seed)
    return (time.perf_counter() - start) / len(seeds)


def _neighbour(root: str, sampler: str) -> None:
    atlas = load_atlas(root)
    with _default_threads():
        while True:
            _seconds_per_replay(atlas, sampler, range(100, 103))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--atlas", default=str(ATLAS_ROOT / "atlas"))
    parser.add_argument("--sampler", default="bohb", choices=("grid", "random", "tpe", "bohb", "hyperband"))
    parser.add_argument("--repeats", type=int, default=4, help="replays timed each way")
    parser.add_argument("--busy", type=int, default=1, help="neighbour processes replaying beside the measurement")
    args = parser.parse_args()
    atlas = load_atlas(args.atlas)
    neighbours = [multiprocessing.Process(target=_neighbour, args=(args.atlas, args.sampler), daemon=True)
                  for _ in range(args.busy)]
    for process in neighbours:
        process.start()
    seeds = range(args.repeats)
    _seconds_per_replay(atlas, args.sampler, [50])  # warm the caches of both ways alike
    one = _seconds_per_replay(atlas, args.sampler, seeds)
    with _default_threads():
        default = _seconds_per_replay(atlas, args.sampler, seeds)
    for process in neighbours:
        process.terminate()
    print(f"{args.sampler} + LS ranking, budget low, {args.repeats} replays each way; {args.busy} busy neighbour(s)")
    print(f"{'BLAS threads':14} {'s/replay':>9}")
    print(f"{'default':14} {default:9.2f}")
    print(f"{'one':14} {one:9.2f}")
    print(f"ratio default/one: {default / one:.1f}")


if __name__ == "__main__":
    main()
