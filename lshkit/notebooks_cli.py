"""``python -m lshkit notebooks``: every notebook run headless with papermill, an index of what each
produced, and ``--store-checked``, which stores the outputs CI compares (cells marked
``# NBVAL_CHECK_OUTPUT``) back into the notebooks."""
from __future__ import annotations

import os
from pathlib import Path

from lshkit.vocab import BUDGETS


def add_parser(sub):
    """The ``notebooks`` subcommand on ``sub`` (argparse subparsers); returns its parser."""
    p = sub.add_parser(
        "notebooks", help="run every notebook at one budget and write an index of what each produced",
        description="Every notebook in notebooks/ run headless with papermill at --budget; the executed "
                    "copies and index.md (status and wall time of each) go into --out.")
    p.add_argument("--budget", choices=BUDGETS, default="smoke", help="Default: %(default)s")
    p.add_argument("--only", nargs="+", default=None, metavar="NAME", help="these notebooks only (names without .ipynb)")
    p.add_argument("--out", default=None, help="Default: results/notebooks/<budget>")
    p.add_argument("--store-checked", action="store_true",
                   help="run at the stored defaults (results into results/, as shown) and store the outputs of the "
                        "cells marked NBVAL_CHECK_OUTPUT back into the notebooks, for CI to compare against")
    p.add_argument("--help-notebook", default=None, metavar="NAME",
                   help="list the parameters of notebook NAME (without .ipynb) with their types, defaults and "
                        "help, and run nothing")
    return p


def notebook_help(path) -> str:
    """The parameters of the notebook at ``path``, one per line as ``name: type = default`` and
    its help below: the type is the parameters cell's annotation, else the default's type
    (a default of None says "None or a value"; the help says which)."""
    import ast

    import papermill

    lines = [f"Parameters of {Path(path).stem} (set them with papermill -p NAME VALUE):"]
    for name, param in papermill.inspect_notebook(str(path)).items():
        kind = param["inferred_type_name"]
        if kind == "None":  # not annotated: the type of the default value
            try:
                default = ast.literal_eval(param["default"])
            except (ValueError, SyntaxError):
                kind = "unknown type"
            else:
                kind = "None or a value" if default is None else type(default).__name__
        lines.append(f"  {name}: {kind} = {param['default']}")
        if param["help"]:
            lines.append(f"      {param['help']}")
    return "\n".join(lines)


def main(args, command) -> int:
    """Run the notebooks as ``args`` says (the ``notebooks`` subcommand); 1 when one failed."""
    import time

    import papermill

    from lshkit.io import check_writable

    folder = Path(__file__).resolve().parent.parent / "notebooks"
    names = sorted(p.stem for p in folder.glob("*.ipynb"))
    if args.help_notebook is not None:
        if args.help_notebook not in names:
            command.error(f"no notebook named {args.help_notebook!r} in {folder}; valid: {names}")
        print(notebook_help(folder / f"{args.help_notebook}.ipynb"))
        return 0
    unknown = sorted(set(args.only or ()) - set(names))
    if not names or unknown:
        command.error(f"no notebook named {unknown} in {folder}; valid: {names}")
    out = Path(args.out or f"results/notebooks/{args.budget}")
    try:
        check_writable(out, "--out")
    except ValueError as err:
        command.error(str(err))
    args.resumes_from = out
    import signal

    from lshkit.env import _descendants, stop_children

    before = _descendants(os.getpid())

    def interrupted(signum, frame):
        # A kernel runs in a session of its own and never sees Ctrl-C: stop it (and what it started)
        # first, since nbclient's polite shutdown of a busy kernel prints the kernel's tracebacks.
        stop_children(spared=before)
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGINT, interrupted)
    try:
        rows, failed = [], 0
        for name in args.only or names:
            start, status = time.perf_counter(), "done"
            try:
                papermill.execute_notebook(str(folder / f"{name}.ipynb"), str(out / f"{name}.ipynb"),
                                           parameters={} if args.store_checked else {"budget": args.budget},
                                           progress_bar=False, kernel_name="python3")
                if args.store_checked:
                    store_checked_outputs(out / f"{name}.ipynb", folder / f"{name}.ipynb")
            except Exception as err:  # a failing notebook is reported, and the others still run
                status, failed = f"failed: {type(err).__name__}", failed + 1
            rows.append(f"| [{name}]({name}.ipynb) | {status} | {time.perf_counter() - start:.0f} s |")
            print(rows[-1], flush=True)
    finally:
        signal.signal(signal.SIGINT, previous)  # main may be called in-process
    index = ["# Notebooks at budget " + args.budget, "", "| notebook | status | wall |", "|---|---|---|", *rows]
    (out / "index.md").write_text("\n".join(index) + "\n")
    print(f"index: {out / 'index.md'}")
    return 1 if failed else 0


CHECKED = "# NBVAL_CHECK_OUTPUT"


def store_checked_outputs(executed, source) -> int:
    """Copy the outputs of the cells marked ``# NBVAL_CHECK_OUTPUT`` from the ``executed`` copy of
    a notebook into its ``source``, with their execution counts and flagged ``keep_output``, so
    that ``pytest --nbval-lax`` fails when a result changes. Returns how many cells were stored."""
    import nbformat

    run = {c.get("id"): c for c in nbformat.read(executed, as_version=4).cells}
    nb = nbformat.read(source, as_version=4)
    stored = 0
    for cell in nb.cells:
        if cell.cell_type == "code" and cell.source.lstrip().startswith(CHECKED):
            # nbval compares only cells that ran, which it tells by their execution count.
            cell.outputs, cell.execution_count = run[cell.id].outputs, run[cell.id].execution_count
            cell.metadata["keep_output"] = True
            stored += 1
    nbformat.write(nb, source)
    return stored
