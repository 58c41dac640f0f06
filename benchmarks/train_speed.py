"""Training speed, dense against dynamically sparse.

The same 2-layer StackedLSTM (embedding = H, vocabulary 10,000, the paper preset's
dropouts (0, 0.65, 0.65, 0.65)) is trained with :func:`lshkit.train.train_step`,
Table A1's batch 20 and bptt 35, SNT-ASGD at lr 40 and clip 0.25, on synthetic
tokens (no data needed): once dense and once at density 0.33 (the paper's
sparsity 0.67, DynamicSparsity with the default SparseConfig). Both start from
the same seeded weights. A sparse step is a dense step plus re-applying the masks.

After a warm-up of both, dense and sparse repetitions of ``--steps`` steps
alternate (the order flipping every repetition) so that load from other processes
hits both alike. The table gives the median seconds per step, tokens per second
and the ratio sparse/dense step time (target <= 1.15). The once-per-epoch
``prune_and_regrow`` is timed on its own (median of ``--repeats`` cycles) and shown
as a share of one PTB epoch (1,327 dense steps at batch 20, bptt 35).

    python benchmarks/train_speed.py [--hidden 256 650] [--steps 10] [--repeats 3]
                                     [--threads N] [--device cpu]
"""
from __future__ import annotations

import argparse
import math
import statistics
import time

import torch

from lshkit.data import get_batch
from lshkit.dst import SNTASGD, DynamicSparsity, SparseConfig
from lshkit.train import TrainConfig, build_model, train_step

VOCAB, DENSITY, PTB_STEPS_PER_EPOCH, WARMUP_STEPS = 10_000, 0.33, 1327, 3


class Run:
    """One model in training: its optimiser, masks (sparse only) and carried state."""

    def __init__(self, cfg: TrainConfig, device, sparse: bool):
        torch.manual_seed(cfg.seed)
        self.cfg = cfg
        self.model = build_model(cfg, VOCAB).to(device).train()
        self.optimizer = SNTASGD(self.model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
        self.sparsity = (DynamicSparsity(self.model, SparseConfig(density=DENSITY),
                                         total_updates=100, seed=cfg.seed)
                         if sparse else None)
        self.state = self.model.init_state(cfg.batch_size)

    def steps(self, data: torch.Tensor, n: int) -> float:
        """Seconds per step over ``n`` steps (each step ends in a host sync)."""
        start = time.perf_counter()
        for k in range(n):
            x, y = get_batch(data, k * self.cfg.bptt, self.cfg.bptt)
            loss, norm, self.state = train_step(self.model, self.optimizer, x, y, self.state,
                                                self.cfg.clip, self.sparsity)
            if not (math.isfinite(loss) and math.isfinite(norm)):
                raise RuntimeError(f"training diverged in the benchmark (loss {loss}, grad norm {norm})")
        return (time.perf_counter() - start) / n


def bench(hidden: int, steps: int, repeats: int, device) -> dict:
    cfg = TrainConfig.preset("paper").replace(dataset="ptb", emb_size=hidden, hidden_size=hidden)
    data = torch.randint(VOCAB, (steps * cfg.bptt + 1, cfg.batch_size),
                         generator=torch.Generator().manual_seed(0)).to(device)
    dense, sparse = Run(cfg, device, sparse=False), Run(cfg, device, sparse=True)
    for run in (dense, sparse):
        run.steps(data, min(WARMUP_STEPS, steps))
    times = {"dense": [], "sparse": []}
    for r in range(repeats):
        order = (("dense", dense), ("sparse", sparse)) if r % 2 == 0 else (("sparse", sparse), ("dense", dense))
        for name, run in order:
            times[name].append(run.steps(data, steps))
    prune = []
    for _ in range(repeats):
        start = time.perf_counter()
        sparse.sparsity.prune_and_regrow(sparse.optimizer)
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        prune.append(time.perf_counter() - start)
    d, s, p = statistics.median(times["dense"]), statistics.median(times["sparse"]), statistics.median(prune)
    tokens = cfg.bptt * cfg.batch_size
    return {"H": hidden, "dense_s": d, "sparse_s": s, "dense_tok_s": tokens / d, "sparse_tok_s": tokens / s,
            "ratio": s / d, "prune_s": p, "prune_share": p / (PTB_STEPS_PER_EPOCH * d),
            "density": sparse.sparsity.density()}


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--hidden", type=int, nargs="+", default=[256, 650], help="hidden sizes H (= embedding)")
    parser.add_argument("--steps", type=int, default=10, help="training steps per timed repetition")
    parser.add_argument("--repeats", type=int, default=3, help="timed repetitions of each of dense and sparse")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's choice)")
    parser.add_argument("--device", default="cpu", help="torch device, e.g. cpu or cuda")
    args = parser.parse_args(argv)
    for name in ("steps", "repeats"):
        if getattr(args, name) < 1:
            parser.error(f"--{name} must be >= 1, got {getattr(args, name)}")
    if any(h < 1 for h in args.hidden):
        parser.error(f"--hidden sizes must be >= 1, got {args.hidden}")
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)

    print(f"2-layer StackedLSTM, vocab {VOCAB}, batch 20, bptt 35, density {DENSITY}; device {device}, "
          f"{torch.get_num_threads()} CPU threads, torch {torch.__version__}; "
          f"median of {args.repeats} x {args.steps} steps")
    header = (f"{'H':>5} {'dense s/step':>13} {'sparse s/step':>14} {'dense tok/s':>12} {'sparse tok/s':>13} "
              f"{'sparse/dense':>13} {'prune s':>8} {'prune/epoch':>12}")
    print(header)
    print("-" * len(header))
    for hidden in args.hidden:
        r = bench(hidden, args.steps, args.repeats, device)
        print(f"{r['H']:>5} {r['dense_s']:>13.4f} {r['sparse_s']:>14.4f} {r['dense_tok_s']:>12,.0f} "
              f"{r['sparse_tok_s']:>13,.0f} {r['ratio']:>13.3f} {r['prune_s']:>8.3f} {r['prune_share']:>11.2%}",
              flush=True)


if __name__ == "__main__":
    main()
