"""LS share of LSH's candidate selection (paper §4 ablation: about 20% of an epoch; target here: <= 10%).

One process, one pruned candidate at the chosen scale (default cpu: the 2x256 stacked LSTM on PTB),
timed exactly as the search runs it: a training epoch of the candidate (SNT-ASGD, masks, its
topology update), its validation, then its LS on K = 2 samples of T = 35 validation steps
(the search's own LS call, ``--ls-convention`` and warm-up as in ``python -m lshkit search``).

A full cpu-scale epoch takes minutes on 2 cores, so by default the epoch is shortened to
``--steps`` training batches and its time extrapolated to the full epoch (validation always
runs on the whole validation split); ``--steps 0`` trains the whole epoch. The output says which.

    LSHKIT_DATA_DIR=/path/to/data python benchmarks/search_overhead.py [--steps 200] [--device cpu]
"""
from __future__ import annotations

import argparse
import dataclasses
import math
import statistics

import torch

from lshkit.env import resolve_device
from lshkit.search import SearchConfig, TrainingRunner
from lshkit.search.runner import candidate_configs
from lshkit.train import Trainer


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", choices=("lstm", "rhn"), default="lstm")
    parser.add_argument("--scale", choices=("smoke", "cpu", "paper"), default="cpu")
    parser.add_argument("--steps", type=int, default=200,
                        help="training batches timed, extrapolated to the full epoch (0: the whole epoch)")
    parser.add_argument("--repeats", type=int, default=3, help="LS computations timed (median)")
    parser.add_argument("--ls-convention", choices=("paper", "full"), default="paper")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)

    device = resolve_device(args.device)
    cfg = SearchConfig(model=args.model, scale=args.scale, ls_convention=args.ls_convention,
                       budget="smoke" if args.scale == "smoke" else "low").resolved(device)
    units = TrainingRunner(cfg, ".", device=device)
    corpus = units.corpus
    # The search's sparse candidate: the authors' best configuration (any one times the same).
    train_cfg, sparse = candidate_configs(cfg, {"sparse_init": "ER", "growth": "random",
                                                "death": "global_magnitude",
                                                "redistribution": "nonzeros", "death_rate": 0.7})
    full_steps = math.ceil((len(corpus.train) // train_cfg.batch_size - 1) / train_cfg.bptt)
    shortened = 0 < args.steps < full_steps
    if shortened:
        keep = args.steps * train_cfg.bptt * train_cfg.batch_size + train_cfg.batch_size
        corpus = dataclasses.replace(corpus, train=corpus.train[:keep])

    trainer = Trainer(train_cfg, corpus, sparse, device=device, progress=False)
    if shortened:
        trainer.train_epoch()  # warm-up: first-call allocations and kernel selection
    record = trainer.train_epoch()
    compute_ls = units.ls_callback()
    ls_times = []
    for _ in range(args.repeats):
        rec = {}
        compute_ls(trainer, rec)
        ls_times.append(rec["ls_seconds"])
    train = record["train_seconds"] * (full_steps / trainer.steps_per_epoch)
    valid = record["eval_seconds"]
    ls = statistics.median(ls_times)
    info = rec["ls_info"]

    size = f"{train_cfg.num_layers}x{train_cfg.hidden_size}" if args.model == "lstm" else \
        f"{train_cfg.hidden_size}, depth {train_cfg.depth}"
    print(f"{args.scale} scale {args.model} {size}, sparsity {cfg.sparsity}, {train_cfg.dataset}, "
          f"device {device}, {torch.get_num_threads()} thread(s)")
    if shortened:
        print(f"training: {trainer.steps_per_epoch} of {full_steps} batches in {record['train_seconds']:.2f} s "
              f"-> {train:.1f} s per full epoch (extrapolated)")
    else:
        print(f"training: one full epoch ({full_steps} batches) in {train:.1f} s")
    print(f"validation: {valid:.2f} s")
    print(f"LS ({info['convention']} convention, K={info['K']}, T={info['T']}, n={info['n']}, "
          f"warm-up {info['warmup']} {info['warmup_mode']}): {ls:.3f} s per candidate-epoch "
          f"(median of {len(ls_times)}: {', '.join(f'{t:.3f}' for t in ls_times)})")
    epoch = train + valid
    print(f"candidate-epoch: loss-based {epoch:.1f} s, LS-based {epoch + ls:.1f} s")
    print(f"LS share of an LS-based candidate-epoch: {100 * ls / (epoch + ls):.2f}% "
          f"(LS overhead over loss-based: {100 * ls / epoch:.2f}%; paper ~20%; target <= 10%)")


if __name__ == "__main__":
    main()
