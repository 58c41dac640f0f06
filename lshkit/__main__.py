"""Command line: ``python -m lshkit search|reference|full-search ...`` (or ``lshkit ...``).

``search`` runs (or resumes, or joins) an LSH search (paper §3.2) and writes its tidy
records into ``--out``; the same command started on several machines against one
database storage cooperates on one search. ``reference`` only trains the dense reference
into its cache. ``full-search`` is the full-training search of Fig. 3 (right). Every
option has a documented default; a wrong value fails before any compute, naming the valid
ones.
"""
from __future__ import annotations

import argparse
import json
import sys

# The choices are spelled out here so that parsing (and refusing a bad value) happens before
# torch, Optuna and scikit-learn are imported; tests/test_cli.py checks them against the modules.
MODELS = ("lstm", "rhn")
SCALES = ("smoke", "cpu", "paper", "auto")
BUDGETS = ("smoke", "low", "moderate", "high")
SAMPLERS = ("grid", "random", "tpe", "atpe", "bohb", "hyperband")
RANKINGS = ("ls", "loss")
EMBEDDINGS = ("pca", "tsne", "raw", "same_epoch")
DISTANCES = ("l2", "cos")
LS_CONVENTIONS = ("paper", "full")


def _override(text: str) -> tuple[str, object]:
    if "=" not in text:
        raise argparse.ArgumentTypeError(f"{text!r} is not FIELD=VALUE")
    name, value = text.split("=", 1)
    try:
        return name, json.loads(value)
    except json.JSONDecodeError:
        return name, value


def _config_options(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("what to search (SearchConfig)")
    g.add_argument("--model", choices=MODELS, default="lstm",
                   help="stacked LSTM or RHN (paper Table A1). Default: %(default)s")
    g.add_argument("--scale", choices=SCALES, default="auto",
                   help="smoke: generated corpus, tiny models; cpu: PTB, a model whose epoch takes "
                        "minutes on 2 cores; paper: Table A1; auto: paper on CUDA, else cpu. "
                        "Default: %(default)s")
    g.add_argument("--budget", choices=BUDGETS, default="low",
                   help="initial pool: smoke 8 (smoke scale, E=1, about a minute), low 24, moderate 30, "
                        "high 40 (paper Table 2). Default: %(default)s")
    g.add_argument("--pool", type=int, default=None, help="initial pool size, overriding --budget's")
    g.add_argument("--sampler", choices=SAMPLERS, default="tpe",
                   help="candidate generator: grid (GS, removal only), random, tpe, atpe (needs hyperopt "
                        "and lightgbm), bohb and hyperband (their own successive-halving brackets). "
                        "Default: %(default)s")
    g.add_argument("--ranking", choices=RANKINGS, default="ls",
                   help="ls: distance to the dense reference in the LS space (LSH); loss: validation "
                        "loss (the paper's baseline). Default: %(default)s")
    g.add_argument("--embedding", choices=EMBEDDINGS, default="pca",
                   help="LS space (paper App. B): pca (2-D), tsne, raw LS, or same_epoch (plain L2 to "
                        "the reference at the same epoch, the authors' code). Default: %(default)s")
    g.add_argument("--distance", choices=DISTANCES, default="l2",
                   help="distance in the LS space. Default: %(default)s")
    g.add_argument("--epochs-per-round", type=int, default=None, metavar="E",
                   help="epochs each candidate trains between removals (paper: 3). Default: 3, 1 for "
                        "--budget smoke")
    g.add_argument("--rounds", type=int, default=None, metavar="M",
                   help="at most M rounds (then the --final-survivors nearest go on). Default: until "
                        "--final-survivors remain")
    g.add_argument("--sparsity", type=float, default=None,
                   help="fraction of weights pruned. Default: Table A1's (0.67 LSTM, 0.53 RHN)")
    g.add_argument("--seed", type=int, default=0, help="seeds models, masks and samplers. Default: %(default)s")
    g.add_argument("--ls-samples", type=int, default=2, metavar="K",
                   help="LS samples (the LS batch size of Table A1). Default: %(default)s")
    g.add_argument("--ls-steps", type=int, default=35, metavar="T",
                   help="LS steps per sample. Default: %(default)s")
    g.add_argument("--ls-convention", choices=LS_CONVENTIONS, default="paper",
                   help="paper: the authors' (h only, J^T, log2, 10-step warm-up); full: the exact LS "
                        "of the whole state. Default: %(default)s")
    g.add_argument("--stable-warmup", action=argparse.BooleanOptionalAction, default=True,
                   help="orthonormalise during the LS warm-up (--no-stable-warmup: the authors' "
                        "ill-posed warm-up, REFERENCE §3). Default: on")
    g.add_argument("--final-survivors", type=int, default=2,
                   help="candidates trained fully at the end (the authors: 2). Default: %(default)s")
    g.add_argument("--final-epochs", type=int, default=None,
                   help="epochs of the full training (and of the dense reference). Default: the "
                        "scale's TrainConfig preset (paper: 100 LSTM, 500 RHN, Table A1)")
    g.add_argument("--target-ppl", type=float, default=None,
                   help="validation perplexity whose time to reach is recorded (Fig. 3 right)")
    g.add_argument("--eta", type=int, default=3,
                   help="Hyperband/BOHB reduction factor. Default: %(default)s")
    g.add_argument("--train-override", action="append", default=[], metavar="FIELD=VALUE",
                   type=_override,
                   help="change a TrainConfig field of the scale's preset for every model, the dense "
                        "reference included (e.g. batch_size=64); repeatable; VALUE is read as JSON "
                        "where it parses (numbers, true/false, lists), else as text")


def _run_options(p: argparse.ArgumentParser, *, storage: bool = True) -> None:
    g = p.add_argument_group("where and how to run")
    g.add_argument("--device", default="auto",
                   help="torch device: auto (cuda if available, else cpu), cpu, cuda, cuda:1, ... "
                        "Default: %(default)s")
    g.add_argument("--reference-dir", default="results/reference",
                   help="cache of dense references, reused by every search with the same model, "
                        "scale, dataset, seed and LS settings. Default: %(default)s")
    if not storage:
        return
    g.add_argument("--out", default=None,
                   help="results directory (epochs.csv, rounds.csv, events.csv, reference.csv, ls.npz, "
                        "summary.json). Default: results/search/<study name>")
    g.add_argument("--storage", default=None,
                   help="Optuna storage URL: sqlite:///file.db (one process; default <out>/study.db), "
                        "journal:///path.log or path.log (several processes on one machine), "
                        "postgresql://user:pw@host/db (several machines, which must share "
                        "--checkpoints)")
    g.add_argument("--checkpoints", default=None,
                   help="candidate checkpoint directory (shared by every machine of one search). "
                        "Default: <out>/checkpoints")
    g.add_argument("--workers", type=int, default=1,
                   help="local processes working on the search (needs a journal or database "
                        "storage when > 1). Default: %(default)s")
    g.add_argument("--stale-after", type=float, default=1800.0,
                   help="seconds without a heartbeat after which another process's unit of work is "
                        "taken over (a dead process on this machine is noticed at once). "
                        "Default: %(default)s")
    g.add_argument("--quiet", action="store_true", help="no progress bars and no summary table")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m lshkit", description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True, metavar="{search,reference,full-search}")
    parser.commands = {}
    p = parser.commands["search"] = sub.add_parser("search", help="run, resume or join an LSH search",
                       description="LS-based Hyperpruning (paper §3.2): rank pruned candidates by the "
                                   "distance of their Lyapunov spectrum to a dense reference's, remove "
                                   "the far half, generate new ones, train the survivors fully. "
                                   "Re-running the same command resumes.")
    _config_options(p)
    _run_options(p)
    p = parser.commands["reference"] = sub.add_parser("reference", help="train (or find in its cache) the dense reference only")
    _config_options(p)
    _run_options(p, storage=False)
    p = parser.commands["full-search"] = sub.add_parser("full-search", help="full-training search of Fig. 3 (right)",
                       description="Sampler-proposed candidates trained fully one after another until "
                                   "one reaches --target-ppl.")
    _config_options(p)
    _run_options(p)
    p.add_argument("--max-candidates", type=int, default=None,
                   help="give up after this many candidates. Default: the pool size")
    return parser


_CONFIG_FIELDS = ("model", "scale", "budget", "pool", "sampler", "ranking", "embedding", "distance",
                  "epochs_per_round", "rounds", "sparsity", "seed", "ls_samples", "ls_steps",
                  "ls_convention", "stable_warmup", "final_survivors", "final_epochs", "target_ppl", "eta")


def main(argv=None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    command = parser.commands[args.command]
    from lshkit import search as S
    from lshkit.train import perplexity

    try:
        config = S.SearchConfig(**{k: getattr(args, k) for k in _CONFIG_FIELDS},
                                train_overrides=dict(args.train_override))
        device = S.resolve_device(args.device)
        resolved = config.resolved(device)
        if args.command != "reference":
            if args.command == "full-search" and resolved.target_ppl is None:
                raise ValueError("full-search needs --target-ppl")
            out = args.out or f"results/search/{resolved.study_name('full' if args.command == 'full-search' else 'lsh')}"
            S.check_workers(args.storage or S.default_storage_url(out), args.workers)
    except (ValueError, ImportError) as err:
        command.error(str(err))

    if args.command == "reference":
        result = S.train_reference(config, device=device, reference_dir=args.reference_dir)
        print(f"dense reference: valid ppl {perplexity(result['valid_loss']):.2f}, "
              f"test ppl {perplexity(result['test_loss']):.2f}, {len(result['records'])} epochs")
        return 0
    progress = False if args.quiet else None
    if args.command == "full-search":
        if args.workers != 1:
            command.error("full-search trains one candidate at a time: --workers must be 1")
        summary = S.full_training_search(config, out, max_candidates=args.max_candidates,
                                         storage=args.storage, device=device,
                                         checkpoints=args.checkpoints, progress=progress)
        if not args.quiet:
            print(json.dumps({k: summary[k] for k in ("target_ppl", "reached", "result",
                                                     "candidates_trained", "total_seconds")}, indent=2))
        return 0
    summary = S.run_search(config, out, storage=args.storage, workers=args.workers, device=device,
                           checkpoints=args.checkpoints, reference_dir=args.reference_dir,
                           progress=progress, stale_after=args.stale_after)
    if not args.quiet:
        _print_summary(summary, out)
    return 0


def _print_summary(summary: dict, out: str) -> None:
    t = summary["timings"]
    lines = [f"LSH search {summary['study']} ({summary['candidates']} candidates, {summary['rounds']} "
             f"rounds, {summary['failed']} failed)"]
    if summary["selected"] is None:
        lines.append("no candidate survived the final training")
    else:
        params = ", ".join(f"{k}={v:.3g}" if isinstance(v, float) else f"{k}={v}"
                           for k, v in summary["selected"].items())
        lines.append(f"selected: {params}")
        lines.append(f"valid ppl {summary['valid_ppl']:.2f}, test ppl {summary['test_ppl']:.2f}")
    if summary["reference"]:
        ref = summary["reference"]
        lines.append(f"dense reference: valid ppl {ref['valid_ppl']:.2f}, test ppl {ref['test_ppl']:.2f}")
    lines.append(f"compute: selection {t['selection_seconds']:.1f} s (LS share {100 * t['ls_share']:.1f}%), "
                 f"final training {t['final_seconds']:.1f} s; wall {t['wall_seconds']:.1f} s")
    lines.append(f"records: {out}")
    print("\n".join(lines))


if __name__ == "__main__":
    sys.exit(main())
