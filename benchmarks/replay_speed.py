"""Speed of replayed searches on an atlas, against the training they stand for.

For every (sampler, ranking) pair, ``--repeats`` replays at ``--budget`` in this process: the mean
wall seconds of one replay (the optimiser's decisions, the LS embedding and ranking, reading the
records) beside the mean CPU seconds of training the same search would take, as the atlas
recorded them (the simulated clock), and their ratio. The kit's target: a grid or random replay
in well under a second; 100 repeats of all 10 pairs at one budget in under 10 minutes on 2 cores.

    python benchmarks/replay_speed.py                       # the committed atlas, budget low, 10 repeats
    python benchmarks/replay_speed.py --repeats 100 --budget high
    python benchmarks/replay_speed.py --workers 2            # repeats shared by 2 processes

With ``--workers`` above 1 the per-replay column is a replay's own wall seconds inside its worker,
and the closing line is the wall time of all pairs with the cores shared.
"""
from __future__ import annotations

import argparse
import time

from lshkit.atlas import ATLAS_ROOT, atlas_status, load_atlas
from lshkit.atlas.replay import replay_many

PAIRS = [("grid", "ls"), ("grid", "loss"), ("random", "ls"), ("random", "loss"), ("tpe", "ls"),
         ("tpe", "loss"), ("atpe", "ls"), ("atpe", "loss"), ("bohb", "ls"), ("hyperband", "ls")]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--atlas", default=str(ATLAS_ROOT / "atlas"))
    parser.add_argument("--budget", default="low", choices=("smoke", "low", "moderate", "high"))
    parser.add_argument("--repeats", type=int, default=10)
    parser.add_argument("--epochs-per-round", type=int, default=None)
    parser.add_argument("--workers", type=int, default=1, help="processes sharing each pair's repeats")
    args = parser.parse_args()
    status = atlas_status(args.atlas)
    if not status["complete"]:
        raise SystemExit(f"the atlas at {args.atlas} is not complete ({status['done']} of {status['total']}); "
                         "build it first: python -m lshkit atlas build")
    atlas = load_atlas(args.atlas)
    print(f"atlas {args.atlas}, budget {args.budget}, {args.repeats} repeats per pair, {args.workers} worker(s)")
    print(f"{'sampler':10} {'ranking':7} {'replay s':>9} {'training s':>11} {'ratio':>10}")
    start = time.perf_counter()
    for sampler, ranking in PAIRS:
        frame = replay_many(atlas, None, repeats=args.repeats, sampler=sampler, ranking=ranking,
                            budget=args.budget, epochs_per_round=args.epochs_per_round, workers=args.workers)
        wall, clock = frame.decision_seconds.mean(), frame.total_seconds.mean()
        print(f"{sampler:10} {ranking:7} {wall:9.3f} {clock:11.0f} {clock / wall:10.0f}")
    total = time.perf_counter() - start
    print(f"all pairs: {total:.1f} s for {len(PAIRS) * args.repeats} replays; "
          f"100 repeats would take about {total * 100 / args.repeats / 60:.1f} min")


if __name__ == "__main__":
    main()
