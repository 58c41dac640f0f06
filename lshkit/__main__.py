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
import os
import sys
from collections import Counter
from pathlib import Path

# Parsing, and refusing a bad value, happen before torch, Optuna and scikit-learn load: lshkit.vocab
# imports nothing heavy.
from lshkit.vocab import (ATLAS_PRESETS as ATLAS_NAMES, BUDGETS, DISTANCES, EMBEDDINGS, FITS as EMBEDDING_FITS,
                          LS_CONVENTIONS, RANKINGS, REFERENCES, SAMPLERS, SEARCH_MODELS as MODELS,
                          SEARCH_SCALES as SCALES)


def _override(text: str) -> tuple[str, object]:
    if "=" not in text:
        raise argparse.ArgumentTypeError(f"{text!r} is not FIELD=VALUE")
    name, value = text.split("=", 1)
    try:
        return name, json.loads(value)
    except json.JSONDecodeError:
        return name, value


def _embedding(text: str) -> str:
    if text == "same_epoch":
        raise argparse.ArgumentTypeError("'same_epoch' is now --embedding raw --reference same_epoch "
                                         f"(valid embeddings: {', '.join(EMBEDDINGS)})")
    return text


def _config_options(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("what to search (SearchConfig)")
    g.add_argument("--model", choices=MODELS, default="lstm",
                   help="stacked LSTM, RHN or AWD-LSTM-MoS (paper Table A1; AWD-LSTM-MoS on WikiText-2 where "
                        "its files are found, else PTB). Default: %(default)s")
    g.add_argument("--scale", choices=SCALES, default="auto",
                   help="smoke: generated corpus, tiny models; cpu: PTB, a model whose epoch takes "
                        "minutes on 2 cores; atlas: the scale of the tabulated atlas (2x128 LSTM, "
                        "30 short epochs); paper: Table A1; auto: paper on CUDA, else cpu. "
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
                        "loss (the paper's baseline); gap: the masks' smallest spectral gap, larger "
                        "first (arXiv 2403.11100). Default: %(default)s")
    g.add_argument("--embedding", choices=EMBEDDINGS, default="pca", type=_embedding,
                   help="LS space (paper App. B): pca (2-D), tsne or the raw LS. Default: %(default)s")
    g.add_argument("--reference", choices=REFERENCES, default="same_epoch",
                   help="the dense LS a candidate is compared with: same_epoch, its LS at the "
                        "candidate's epoch (the authors' code, which made the paper's numbers); final, "
                        "its LS at its last epoch (the paper's text read literally). With --embedding "
                        "raw, same_epoch is the authors' plain L2. Default: %(default)s")
    g.add_argument("--embedding-fit", choices=EMBEDDING_FITS, default="candidate",
                   help="candidate: one embedding per candidate over the reference and its LS history, "
                        "as Appendix B writes it; joint: one over the reference and every history. "
                        "Default: %(default)s")
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
                        "ill-posed warm-up, README, 'The Lyapunov spectrum'). Default: on")
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
    g.add_argument("--replace", action="store_true",
                   help="start a new search in an --out folder that holds a finished search with other "
                        "options (its files are replaced)")
    g.add_argument("--quiet", action="store_true", help="no progress bars and no summary table")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m lshkit", description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True,
                                metavar="{search,reference,full-search,atlas,replay,bench,notebooks}")
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
    p = parser.commands["atlas"] = sub.add_parser(
        "atlas", help="build the tabulated atlas of candidates, or say how far it is",
        description="Train every candidate of the atlas space once, recording every epoch "
                    "(lshkit.atlas); a build skips finished candidates, so a killed one resumes.")
    p.add_argument("action", choices=("build", "status", "graphs", "export"), help="build: train what is missing "
                   "(with its masks' spectral gap and graph properties every epoch); status: what is done, "
                   "what is missing, measured seconds per candidate; graphs: for an atlas built without "
                   "them, retrain the sparse candidates up to --epochs and record their masks' graphs per "
                   "epoch (for the predictor shoot-out and --ranking gap; reproduces the recorded masks only "
                   "with the build's code, library versions and CPU); export: write the atlas as parquet "
                   "tables with metadata and a SHA-256 manifest into --out (lshkit.bench.export)")
    p.add_argument("--out", default=None, help="export: the folder written")
    p.add_argument("--epochs", type=int, default=5,
                   help="graphs: the last epoch whose masks are recorded. Default: %(default)s")
    p.add_argument("--scale", choices=ATLAS_NAMES, default="atlas",
                   help="which atlas (lshkit.atlas.PRESETS): atlas, the first (epochs of 40,000 tokens); "
                        "pass (one PTB pass an epoch, the paper's); smoke, cpu, paper: the full grid at "
                        "those TrainConfig presets. Default: %(default)s")
    p.add_argument("--root", default=None, help="atlas folder. Default: results/atlas/<scale>")
    p.add_argument("--workers", type=int, default=1,
                   help="processes, one torch thread each. Default: %(default)s")
    p.add_argument("--limit", type=int, default=None, help="build at most this many candidates now")
    p.add_argument("--rebuild", nargs="+", default=None, metavar="NAME",
                   help="build: remove these candidates' folders (damaged ones, which `atlas status` names) "
                        "and build them again, alone, with the specification stored in --root")
    p.add_argument("--storage", default=None,
                   help="build: a queue shared by builders in other processes or on other machines "
                        "(journal:///path.log or path.log on one machine, postgresql://user:pw@host/db "
                        "for several, all writing into one --root on a shared file system): each "
                        "candidate is claimed once, a dead builder's taken over. Default: none")
    p.add_argument("--device", default="cpu",
                   help="build: torch device each candidate trains on (cpu, cuda, cuda:1, ...). "
                        "Default: %(default)s")
    p.add_argument("--stale-after", type=float, default=1800.0,
                   help="build with --storage: seconds without a heartbeat after which another "
                        "builder's candidate is taken over. Default: %(default)s")
    p.add_argument("--data-dir", default=None,
                   help="where the corpus files are. Default: $LSHKIT_DATA_DIR, then data/")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p = parser.commands["replay"] = sub.add_parser(
        "replay", help="replay a search on the atlas, as many times as statistics need",
        description="The same search as `search`, with every candidate's training read from the "
                    "tabulated atlas (lshkit.atlas.replay) and a simulated clock; one set of tidy files "
                    "per repeat and replays.csv across them.")
    g = p.add_argument_group("what to replay")
    g.add_argument("--atlas", default="results/atlas/atlas", help="atlas folder. Default: %(default)s")
    g.add_argument("--budget", choices=BUDGETS, default="low",
                   help="initial pool: low 24, moderate 30, high 40 (Table 2). Default: %(default)s")
    g.add_argument("--pool", type=int, default=None, help="initial pool size, overriding --budget's")
    g.add_argument("--sampler", choices=SAMPLERS, default="tpe", help="Default: %(default)s")
    g.add_argument("--ranking", choices=RANKINGS, default="ls", help="Default: %(default)s")
    g.add_argument("--embedding", choices=EMBEDDINGS, default="pca", type=_embedding, help="Default: %(default)s")
    g.add_argument("--reference", choices=REFERENCES, default="same_epoch",
                   help="the dense LS compared with: at the candidate's epoch (the authors' code) or its "
                        "final one. Default: %(default)s")
    g.add_argument("--embedding-fit", choices=EMBEDDING_FITS, default="candidate", help="Default: %(default)s")
    g.add_argument("--distance", choices=DISTANCES, default="l2", help="Default: %(default)s")
    g.add_argument("--ls-convention", choices=LS_CONVENTIONS, default="paper", help="Default: %(default)s")
    g.add_argument("--epochs-per-round", type=int, default=None, metavar="E",
                   help="epochs between removals. Default: 3 (the paper)")
    g.add_argument("--repeats", type=int, default=100, help="replays, seeds --seed onwards. Default: %(default)s")
    g.add_argument("--seed", type=int, default=0, help="first seed. Default: %(default)s")
    g.add_argument("--out", required=True, help="results folder: seed-<k>/ per repeat, replays.csv, summary.json")
    g.add_argument("--no-repeat-files", action="store_true", help="write replays.csv and summary.json only")
    g.add_argument("--replace", action="store_true",
                   help="replay into an --out folder that holds the replays of another search (its files are "
                        "removed first)")
    g.add_argument("--workers", type=int, default=1,
                   help="processes sharing the repeats (same results for any number). Default: %(default)s")
    from lshkit.bench_cli import add_parser as add_bench_parser

    parser.commands["bench"] = add_bench_parser(sub)
    from lshkit.notebooks_cli import add_parser as add_notebooks_parser

    parser.commands["notebooks"] = add_notebooks_parser(sub)
    return parser


_CONFIG_FIELDS = ("model", "scale", "budget", "pool", "sampler", "ranking", "embedding", "reference",
                  "embedding_fit", "distance",
                  "epochs_per_round", "rounds", "sparsity", "seed", "ls_samples", "ls_steps",
                  "ls_convention", "stable_warmup", "final_survivors", "final_epochs", "target_ppl", "eta")


def main(argv=None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    command = parser.commands[args.command]
    from lshkit.env import _descendants, stop_children

    before = _descendants(os.getpid())  # a caller's processes (main called in-process) are not ours to stop
    try:
        return _main(args, command)
    except KeyboardInterrupt:
        # Ctrl-C: the worker processes ignore it (lshkit.env); stop them and anything else started.
        stop_children(spared=before)
        print(f"{command.prog}: interrupted; {_resumes(args)}", file=sys.stderr)
        return 130
    except OSError as err:
        from lshkit.io import DISK_FULL, os_error_line

        if err.errno not in DISK_FULL:
            raise
        stop_children(spared=before)
        print(f"{command.prog}: error: {os_error_line(err)}; free some space there, then {_resumes(args)}",
              file=sys.stderr)
        return 1


def _resumes(args) -> str:
    """What a re-run of an interrupted command picks up (each command sets ``args.resumes_from``
    once it knows its folder)."""
    where = getattr(args, "resumes_from", None)
    return f"the same command resumes from {where}" if where else "the same command resumes"


def _main(args, command) -> int:
    if args.command == "atlas":
        return _atlas(args, command)
    if args.command == "replay":
        return _replay(args, command)
    if args.command == "bench":
        from lshkit.bench_cli import main as bench_main

        return bench_main(args, command)
    if args.command == "notebooks":
        from lshkit.notebooks_cli import main as notebooks_main

        return notebooks_main(args, command)
    from optuna.exceptions import StorageInternalError

    from lshkit import search as S
    from lshkit.io import DISK_FULL
    from lshkit.env import resolve_device
    from lshkit.storage import check_workers, default_storage_url, open_storage

    try:
        config = S.SearchConfig(**{k: getattr(args, k) for k in _CONFIG_FIELDS},
                                train_overrides=dict(args.train_override))
        device = resolve_device(args.device)
        if config.model == "awd_mos":
            from lshkit.experiments.table1 import mos_search_config

            config, data = mos_search_config(config, device)
            print(f"AWD-LSTM-MoS: {data}")
        resolved = config.resolved(device)
        if args.command != "reference":
            if args.command == "full-search" and resolved.target_ppl is None:
                raise ValueError("full-search needs --target-ppl")
            out = args.out or f"results/search/{resolved.study_name('full' if args.command == 'full-search' else 'lsh')}"
            if args.storage is not None and not args.storage.strip():
                raise ValueError("--storage is empty; leave it out for the default (a SQLite file in --out)")
            if not args.stale_after > 0:
                raise ValueError(f"--stale-after={args.stale_after} is not valid; it must be a positive "
                                 "number of seconds")
            check_workers(args.storage or default_storage_url(out), args.workers)
            if args.storage is not None:  # a storage that cannot be opened fails now, before --out is made
                open_storage(args.storage)
            _check_out(Path(out), resolved, args.replace)
            if args.storage is None:
                open_storage(default_storage_url(out))
            args.resumes_from = out
        else:
            args.resumes_from = args.reference_dir
    except (ValueError, ImportError) as err:
        command.error(str(err))

    try:
        return _run(args, command, config, device, out if args.command != "reference" else None)
    except (ValueError, OSError, RuntimeError, StorageInternalError) as err:  # data, disk, storage: one line
        if isinstance(err, OSError) and err.errno in DISK_FULL:
            raise  # main says where, and that a re-run resumes
        print(f"{command.prog}: error: {_cause(err)}", file=sys.stderr)
        return 1


def _cause(err: BaseException) -> str:
    """The innermost message of an exception chain: Optuna's StorageInternalError says "invalid
    data in the commit" where SQLite said "attempt to write a readonly database"."""
    while (err.__cause__ or err.__context__) is not None:
        err = err.__cause__ or err.__context__
    if isinstance(err, OSError):
        from lshkit.io import os_error_line

        return os_error_line(err)
    return f"{type(err).__name__}: {err}".splitlines()[0]


def _run(args, command, config, device, out) -> int:
    from lshkit import search as S
    from lshkit.search.full_training import full_training_search
    from lshkit.train import perplexity

    if args.command == "reference":
        result = S.train_reference(config, device=device, reference_dir=args.reference_dir)
        print(f"dense reference: valid ppl {perplexity(result['valid_loss']):.2f}, "
              f"test ppl {perplexity(result['test_loss']):.2f}, {len(result['records'])} epochs")
        return 0
    progress = False if args.quiet else None
    if args.command == "full-search":
        if args.workers != 1:
            command.error("full-search trains one candidate at a time: --workers must be 1")
        summary = full_training_search(config, out, max_candidates=args.max_candidates,
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
    return 0 if summary["selected"] is not None else 1


def _check_out(out: Path, config, replace: bool) -> None:
    """--out must be a folder this search can write, and not hold another finished search."""
    if out.exists() and not out.is_dir():
        raise ValueError(f"--out {out} is a file; give a folder")
    from lshkit.io import check_writable, read_json

    summary = out / "summary.json"
    if summary.exists() and not replace:

        try:
            theirs = json.loads(read_json(summary).get("config_json", "{}"))
        except ValueError as err:
            raise ValueError(f"--out {out}: {summary} is corrupt ({err}); remove it, or give --replace to "
                             "start a new search there") from None
        ours = json.loads(config.to_json())
        differ = sorted(k for k in set(ours) | set(theirs) if ours.get(k) != theirs.get(k))
        if differ:
            raise ValueError(f"--out {out} holds a finished search with other options ({', '.join(differ)}); "
                             "use another folder, or --replace to start a new search there")
    check_writable(out, "--out")


def _atlas(args, command) -> int:
    from lshkit import atlas
    from lshkit.io import DISK_FULL

    root = args.root or str(atlas.ATLAS_ROOT / args.scale)
    if args.action == "export":
        from lshkit.bench import export

        if args.out is None:
            command.error("export needs --out")
        try:
            manifest = export(root, args.out)
        except (FileNotFoundError, ValueError) as err:
            command.error(str(err))
        print(f"exported the atlas {root} into {args.out}: {', '.join(manifest)} (hashes in SHA256SUMS)")
        return 0
    if args.action == "status":
        try:
            status = atlas.atlas_status(root)
        except (FileNotFoundError, ValueError) as err:
            command.error(str(err))
        missing = status["missing"]
        print(f"atlas {root} (scale {status['scale']}): {status['done']} of {status['total']} candidates "
              f"done{' (complete)' if status['complete'] else ''}, {len(status['failed'])} failed")
        print(f"measured: {status['seconds_per_candidate']:.0f} s per candidate on one worker, "
              f"{status['seconds_total'] / 3600:.2f} h in all; missing would take about "
              f"{status['remaining_seconds_one_worker'] / 3600:.2f} worker-hours")
        if missing:
            print("missing: " + ", ".join(missing[:10]) + (f" and {len(missing) - 10} more" if len(missing) > 10 else ""))
        for line in status["damaged"].values():
            print(f"damaged: {line}")
        reach = Counter(status["graph_epochs"].values())
        print("mask graphs (atlas graphs --epochs N), sparse candidates by last epoch taken: "
              + ", ".join(f"{'none' if e < 0 else f'epoch {e}'}: {reach[e]}" for e in sorted(reach)))
        return 1 if status["damaged"] else 0
    args.resumes_from = root
    try:
        # --rebuild: the candidates of the atlas at --root, whatever --scale says.
        spec = atlas.stored_spec(Path(root)) if args.rebuild else atlas.AtlasSpec.preset(args.scale)
        if args.workers < 1 or (args.limit is not None and args.limit < 1) or args.epochs < 1:
            raise ValueError(f"--workers={args.workers}, --limit={args.limit} and --epochs={args.epochs} "
                             "must be positive")
        if args.action == "graphs":
            atlas.load_atlas(root)
        else:  # what would fail at the first write, before any training
            from lshkit.io import check_writable

            atlas.check_spec_file(Path(root), spec, write=False)
            if args.rebuild:
                atlas.forget(Path(root), spec, args.rebuild, remove=False)
            if args.storage is not None:
                from lshkit.storage import check_workers, open_storage

                check_workers(args.storage, args.workers)
                open_storage(args.storage)
            check_writable(root, "--root")
    except (FileNotFoundError, ValueError, ImportError) as err:
        command.error(str(err))
    if args.action == "graphs":
        done = atlas.record_graphs(root, args.epochs, workers=args.workers, data_dir=args.data_dir,
                                   limit=args.limit, progress=False if args.quiet else None)
        print(f"recorded the mask graphs of {len(done)} candidate(s) up to epoch {args.epochs} in {root}")
        return 0
    try:
        built = atlas.build_atlas(spec, root, workers=args.workers, data_dir=args.data_dir, limit=args.limit,
                                  progress=False if args.quiet else None, storage=args.storage,
                                  device=args.device, stale_after=args.stale_after, rebuild=args.rebuild)
    except OSError as err:
        if err.errno in DISK_FULL:
            raise  # main says where, and that a re-run resumes
        print(f"{command.prog}: error: {_cause(err)}", file=sys.stderr)
        return 1
    print(f"built {len(built)} candidate(s) into {root}")
    return 0


def _replay(args, command) -> int:
    from lshkit.atlas import load_atlas
    from lshkit.atlas.replay import replay_many

    from lshkit.io import DISK_FULL

    fields = {k: getattr(args, k) for k in ("budget", "pool", "sampler", "ranking", "embedding", "reference",
                                           "embedding_fit", "distance", "ls_convention", "epochs_per_round")}
    args.resumes_from = f"{args.out} (its journal keeps the finished repeats)"
    try:
        atlas = load_atlas(args.atlas)
        frame = replay_many(atlas, args.out, repeats=args.repeats, first_seed=args.seed,
                            write_repeats=not args.no_repeat_files, workers=args.workers, replace=args.replace,
                            **fields)
    except (FileNotFoundError, ValueError, KeyError) as err:
        command.error(str(err).strip('"'))
    except OSError as err:
        if err.errno in DISK_FULL:
            raise  # main says where, and that a re-run resumes
        print(f"{command.prog}: error: {_cause(err)}", file=sys.stderr)
        return 1
    ppl = frame.test_ppl
    print(f"{len(frame)} replays of {args.sampler} + {args.ranking} at budget {args.budget} on {args.atlas}: "
          f"test ppl {ppl.mean():.2f} (sd {ppl.std():.2f}), {frame.decision_seconds.mean():.3f} s per replay; "
          f"records: {args.out}")
    return 0


def _print_summary(summary: dict, out: str) -> None:
    t = summary["timings"]
    lines = [f"LSH search {summary['study']} ({summary['candidates']} candidates, {summary['rounds']} "
             f"rounds, {summary['failed']} failed)"]
    if summary["selected"] is None:
        lines.append("no candidate survived the final training" if summary["survivors"]
                     else "no candidate survived the selection: every one failed")
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
