"""``python -m lshkit bench``: Optuna's samplers and pruners on an atlas, beside LSH (:mod:`lshkit.bench_optuna`).

The choices come from :mod:`lshkit.vocab`, so that building the parser and refusing a bad value
import neither pandas, torch nor Optuna (as ``lshkit.__main__`` does).
"""
from __future__ import annotations

import json

from lshkit.vocab import BENCH_REFUSED as REFUSED, BENCH_SAMPLERS as SAMPLERS, BUDGETS, METRICS, PRUNERS


def add_parser(sub):
    """The ``bench`` subcommand on ``sub`` (argparse subparsers); returns its parser."""
    p = sub.add_parser("bench", help="Optuna's samplers and pruners on the atlas, beside LSH",
                       description="LSH-Bench for other optimisers: `compare` replays LSH (LS and loss ranking) "
                                   "and runs Optuna's stock pruners with the same sampler on the atlas, "
                                   "--repeats seeds each, on the simulated clock; `study` runs one Optuna study.")
    p.add_argument("action", choices=("compare", "study"),
                   help="compare: every method, --repeats seeds, tidy files into --out; study: one Optuna study, "
                        "its pick printed as JSON")
    p.add_argument("--atlas", default="results/atlas/atlas", help="atlas folder or name. Default: %(default)s")
    p.add_argument("--sampler", choices=SAMPLERS + REFUSED, default="tpe",
                   help="Optuna sampler, and LSH's proposals in compare (cmaes is refused: the space is "
                        "categorical). Default: %(default)s")
    p.add_argument("--pruner", choices=PRUNERS, default="median", help="study: the pruner. Default: %(default)s")
    p.add_argument("--pruners", nargs="+", choices=PRUNERS, default=list(PRUNERS),
                   help="compare: the pruners set beside LSH. Default: all")
    p.add_argument("--budget", choices=BUDGETS, default="low",
                   help="compare: LSH's budget (initial pool 24/30/40, Table 2; smoke for a smoke-scale atlas). "
                        "Default: %(default)s")
    p.add_argument("--budget-seconds", default=None,
                   help="simulated CPU seconds per Optuna study (study: required unless --max-trials); compare's "
                        "default 'lsh' gives seed k what LSH's LS-ranked replay of seed k spent")
    p.add_argument("--max-trials", type=int, default=None, help="study: at most this many trials")
    p.add_argument("--metric", choices=METRICS, default="valid_loss",
                   help="reported every epoch and minimised. Default: %(default)s")
    p.add_argument("--repeats", type=int, default=100, help="compare: seeds per method. Default: %(default)s")
    p.add_argument("--seed", type=int, default=0, help="first seed (study: its seed). Default: %(default)s")
    p.add_argument("--workers", type=int, default=1, help="compare: processes. Default: %(default)s")
    p.add_argument("--out", default=None, help="compare: results folder (runs.csv, summary.csv, paired.csv, "
                                               "summary.json; LSH's replays in lsh-ls/ and lsh-loss/); a killed "
                                               "run resumes there")
    return p


def main(args, command) -> int:
    """Run ``python -m lshkit bench``; a bad value stops it before any work, naming the valid ones."""
    from lshkit.atlas import load_atlas
    from lshkit.bench import _resolve, load
    from lshkit.bench_optuna import compare, run_study

    try:
        budget_seconds = args.budget_seconds
        if budget_seconds not in (None, "lsh"):
            try:
                budget_seconds = float(budget_seconds)
            except ValueError:
                raise ValueError(f"--budget-seconds={args.budget_seconds!r} is not valid; give a number of "
                                 "seconds or 'lsh'") from None
        if args.action == "study":
            if budget_seconds == "lsh":
                raise ValueError("--budget-seconds lsh is for compare; give a study a number of seconds")
            result = run_study(load(_resolve(args.atlas)), sampler=args.sampler, pruner=args.pruner, seed=args.seed,
                               budget_seconds=budget_seconds, max_trials=args.max_trials, metric=args.metric)
        else:
            if args.out is None:
                raise ValueError("compare needs --out")
            args.resumes_from = args.out
            result = compare(load_atlas(_resolve(args.atlas)), args.out, repeats=args.repeats, first_seed=args.seed,
                             sampler=args.sampler, pruners=args.pruners, budget=args.budget,
                             budget_seconds="lsh" if budget_seconds is None else budget_seconds,
                             metric=args.metric, workers=args.workers)
    except (FileNotFoundError, ValueError, KeyError) as err:
        command.error(str(err).strip('"'))
    if args.action == "study":
        print(json.dumps({k: v for k, v in result.items() if k != "trial_log"}, indent=2, default=str))
        return 0 if result["selected"] is not None else 1
    print(result["summary"].round(2).to_string(index=False))
    print(result["paired"].round(2).to_string(index=False))
    print(f"records: {args.out}")
    return 0
