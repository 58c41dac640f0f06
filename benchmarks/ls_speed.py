"""Speed of lshkit's LS engine against the kernel floor (README, "The Lyapunov spectrum").

A 2-layer StackedLSTM (untrained, PyTorch's default init), K = 2 samples of T = 35
tokens, 10 warm-up steps, the "paper" convention (N = 2H), float32. For each H:

- ``lshkit``: seconds per sample of ``model_spectrum`` with the stable warm-up, i.e.
  45 steps each with one tangent propagation and one batched QR;
- ``floor``: the same 45 steps reduced to their kernels, measured in the same process
  on the same shapes: one batched N x N matmul plus one batched QR per step;
- ``ratio`` = lshkit / floor (target <= 1.15);
- ``floor_geqrf``, ``ratio_geqrf``: the floor with the QR lshkit calls (geqrf + orgqr,
  the same Q as torch.linalg.qr without R copied out), i.e. the overhead of
  everything but the kernels;
- ``authors``: seconds per sample with the authors' warm-up (10 steps without QR);
- ``their_alg``: seconds per sample of the authors' algorithm (:func:`authors_algorithm`: the
  full Jacobian built every step, then J^T Q and a QR), timed in the same process, and
  ``alg/lshkit`` its ratio to lshkit;
- ``top64``: seconds per sample of the top 64 exponents (stable warm-up);
- ``err``: max |difference| of every exponent, float32 vs float64, stable warm-up
  (target <= 1e-3); ``err_authors``: the same with the authors' warm-up, which is
  ill-posed (README, "The Lyapunov spectrum"), shown for contrast.

Peak memory at the largest H: the growth of the resident set size during one
float32 ``model_spectrum`` call (stable warm-up) over the size just before it,
sampled every millisecond from ``/proc/self/statm`` in a fresh child process, after
a two-step call has started the libraries.
Neither tracemalloc (blind to torch's allocator) nor a ``ru_maxrss`` delta (masked
by the higher peak of importing torch: it reads 0) can see it. Timings are the best
of ``--repeats`` runs, floor and lshkit interleaved so that load from other
processes hits both alike.

    python benchmarks/ls_speed.py [--sizes 256 512 1024] [--repeats 2] [--threads N]
"""
from __future__ import annotations

import argparse
import multiprocessing
import os
import threading
import time

import torch

from lshkit.ls import model_spectrum, tangent_map
from lshkit.models import StackedLSTM

K, T, WARMUP, LAYERS, VOCAB, TOP_K = 2, 35, 10, 2, 10000, 64


def build(H: int, seed: int = 0):
    torch.manual_seed(seed)
    model = StackedLSTM(VOCAB, H, H, LAYERS).eval()
    tokens = torch.randint(VOCAB, (T, K), generator=torch.Generator().manual_seed(seed))
    return model, tokens


#: The floor's QR: torch.linalg.qr (the issue's definition), and geqrf + orgqr (what lshkit calls).
FLOOR_QR = {"linalg.qr": lambda a: torch.linalg.qr(a).Q,
            "geqrf": lambda a: torch.linalg.householder_product(*torch.geqrf(a))}


def floor_run(N: int, steps: int, qr) -> None:
    """The kernels of one LS run: per step one batched N x N matmul and one batched QR."""
    J = torch.randn(K, N, N) / N ** 0.5
    Q = torch.eye(N).expand(K, N, N).contiguous()
    for _ in range(steps):
        Q = qr(J @ Q)


@torch.no_grad()
def authors_algorithm(model, tokens) -> torch.Tensor:
    """The authors' procedure written with the kit's Jacobians: per step the whole N x N matrix
    J^T (h of every layer, c frozen) is built, then J^T Q and a QR; 10 warm-up products without
    QR, then the mean of log2 |r_ii| over all T inputs from the warmed-up state. Without warm-up
    it equals ``model_spectrum(convention="paper", warmup=0)`` to 1.4e-6 (float32, H = 64); with
    the warm-up both are dominated by its rounding (README, "The Lyapunov spectrum")."""
    linearise, n = tangent_map(model, "paper")
    x = model.embed(tokens)
    eye = torch.eye(n).expand(tokens.size(1), n, n).contiguous()
    state, Q = model.init_state(tokens.size(1)), eye
    for t in range(WARMUP):
        state_next, propagate = linearise(state, x[t])
        Q, state = propagate(eye) @ Q, state_next
    Q = torch.linalg.qr(Q).Q
    total = torch.zeros(n)
    for t in range(tokens.size(0)):
        state_next, propagate = linearise(state, x[t])
        Q, R = torch.linalg.qr(propagate(eye) @ Q)
        total += R.diagonal(dim1=-2, dim2=-1).abs().clamp_min(1e-30).log2().sum(0)
        state = state_next
    return total / (tokens.size(0) * tokens.size(1))


def seconds(fn) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def rss_bytes() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def peak_rss_child(H: int, threads: int, queue) -> None:
    torch.set_num_threads(threads)
    model, tokens = build(H)
    # A two-step call first, so that library start-up (thread pools, LAPACK) is not counted.
    model_spectrum(model, tokens[:2], convention="paper", warmup=0)
    before, peak, done = rss_bytes(), [0], threading.Event()

    def sample():
        while not done.is_set():
            peak[0] = max(peak[0], rss_bytes())
            time.sleep(0.001)

    sampler = threading.Thread(target=sample)
    sampler.start()
    model_spectrum(model, tokens, convention="paper", warmup=WARMUP, stable_warmup=True)
    done.set()
    sampler.join()
    queue.put((peak[0] - before) / 2 ** 20)


def peak_rss_mib(H: int) -> float:
    ctx = multiprocessing.get_context("spawn")
    queue = ctx.Queue()
    child = ctx.Process(target=peak_rss_child, args=(H, torch.get_num_threads(), queue))
    child.start()
    mib = queue.get()
    child.join()
    return mib


def measure(H: int, repeats: int) -> dict:
    model, tokens = build(H)
    paper = dict(convention="paper", warmup=WARMUP)
    lshkit, floor = [], {name: [] for name in FLOOR_QR}
    for _ in range(repeats):
        for name, qr in FLOOR_QR.items():
            floor[name].append(seconds(lambda: floor_run(LAYERS * H, T + WARMUP, qr)))
        lshkit.append(seconds(lambda: model_spectrum(model, tokens, stable_warmup=True, **paper)))
    authors = seconds(lambda: model_spectrum(model, tokens, **paper))
    algorithm = seconds(lambda: authors_algorithm(model, tokens))
    top = seconds(lambda: model_spectrum(model, tokens, stable_warmup=True, k=TOP_K, **paper))
    err = {}
    for stable in (True, False):
        runs = [model_spectrum(model, tokens, stable_warmup=stable, dtype=dtype, **paper)
                for dtype in (torch.float32, torch.float64)]
        err[stable] = (runs[0].double() - runs[1]).abs().max().item()
    return {"H": H, "N": LAYERS * H, "lshkit": min(lshkit) / K, "floor": min(floor["linalg.qr"]) / K,
            "floor_geqrf": min(floor["geqrf"]) / K,
            "authors": authors / K, "algorithm": algorithm / K, "top": top / K, "err": err[True], "err_authors": err[False]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", type=int, nargs="+", default=[256, 512, 1024])
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--threads", type=int, default=None,
                        help="torch threads (default: torch's own, one per core); with other jobs on "
                             "the machine 1 thread avoids OpenMP barriers stalling on descheduled threads")
    args = parser.parse_args()
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads; 2-layer LSTM, K={K}, T={T}, "
          f"warm-up {WARMUP}, paper convention, float32; seconds per sample")
    print(f"{'H':>5} {'N':>5} {'lshkit':>8} {'floor':>8} {'ratio':>6} {'floor_geqrf':>11} {'ratio_geqrf':>11} "
          f"{'authors':>8} {'their_alg':>9} {'alg/lshkit':>10} {'top' + str(TOP_K):>7} {'err':>8} {'err_authors':>11}")
    for H in args.sizes:
        r = measure(H, args.repeats)
        print(f"{r['H']:>5} {r['N']:>5} {r['lshkit']:>8.3f} {r['floor']:>8.3f} {r['lshkit'] / r['floor']:>6.3f} "
              f"{r['floor_geqrf']:>11.3f} {r['lshkit'] / r['floor_geqrf']:>11.3f} {r['authors']:>8.3f} "
              f"{r['algorithm']:>9.3f} {r['algorithm'] / r['lshkit']:>10.2f} "
              f"{r['top']:>7.3f} {r['err']:>8.1e} {r['err_authors']:>11.1e}", flush=True)
    H = max(args.sizes)
    N = LAYERS * H
    print(f"peak memory at H={H}: {peak_rss_mib(H):.0f} MiB resident-set growth during one model_spectrum call "
          f"(sampled from /proc/self/statm, fresh process); one K x N x N float32 tensor is "
          f"{K * N * N * 4 / 2 ** 20:.0f} MiB")


if __name__ == "__main__":
    main()
