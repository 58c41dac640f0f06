"""What every experiment notebook calls: parameter validation,
the paper-beside-ours table with its one-sentence verdict, figures, and result files.

A notebook is: a ``parameters`` cell, then ``p = validate("table2", extras=...,
**notebook_parameters(globals()))`` so a mistyped papermill ``-p`` name fails instead of
being ignored (papermill only warns), then lshkit calls, ``save_results``,
plots through ``style``/``save_figure``, and ``comparison``/``verdict`` against ``lshkit.paper``.
"""
from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from io import BytesIO
from pathlib import Path

import pandas as pd

from .checks import check_choice, check_int, check_number, list_of
from .env import auto_progress, quiet, resolve_device
from .io import atomic_write, read_json, write_csv, write_json
from .presets import resolve_scale
from .stats import VERDICTS
from .vocab import BUDGETS, NOTEBOOK_SCALES, SOURCES

__all__ = ["BUDGETS", "NOTEBOOK_SCALES", "SOURCES", "NotebookParams", "project_path", "validate",
           "notebook_parameters", "each_of", "quiet", "comparison", "verdict", "with_interval", "PALETTE", "style",
           "integer_axis", "save_figure", "save_results", "load_results"]

DEFAULTS = {"budget": "smoke", "scale": "auto", "seed": 0, "device": "auto", "storage": None,
            "results_dir": "results", "progress": None}
#: Agreement tolerance (perplexity) where the paper gives no CI: the paper's own Table 2
#: repeats spread by 0.1 to 3.0 (95% CI half-widths), so 1.0 is a middling run-to-run noise.
TOLERANCE = 1.0
_SCALE_REASONS = {
    "smoke": "they come from the smoke budget (a generated corpus and tiny models), while the "
             "paper's come from PTB or WikiText-2 at Table A1 scale",
    "cpu": "they come from the cpu scale (the real data, with smaller models and shorter training "
           "than Table A1), while the paper's come from the full Table A1 models",
    "atlas": "they come from the atlas scale (2x128 LSTMs on PTB with epochs of 40,000 tokens, see the "
             "README's atlas section), while the paper's come from 2x1500 LSTMs trained on full epochs (Table A1)",
}


@dataclass(frozen=True)
class NotebookParams:
    """Validated notebook parameters; experiment-specific ones are in ``extras`` and readable
    as attributes (``p.repeats``)."""
    experiment: str
    budget: str
    scale: str             # as requested
    effective_scale: str   # "smoke" under budget="smoke"; "auto" resolved by the device
    seed: int
    device: str            # resolved: "cpu", "cuda" or "cuda:N"
    storage: str | None
    results_dir: str
    progress: bool         # resolved: None meant ``lshkit.env.auto_progress()`` (off under CI and papermill)
    run_dir: Path
    extras: dict = field(default_factory=dict)

    def __getattr__(self, name):
        extras = self.__dict__.get("extras", {})
        if name in extras:
            return extras[name]
        raise AttributeError(f"{type(self).__name__} has no parameter {name!r}")

    @property
    def storage_url(self) -> str:
        """The Optuna storage: the one given, else ``sqlite:///<results_dir>/study.db``."""
        from .storage import default_storage_url
        return self.storage or default_storage_url(self.results_dir)

    @property
    def atlas(self):
        """The atlas the notebook replays on: ``atlas_dir`` when given, else the committed one
        (``results/atlas/atlas`` of the checkout, whatever ``results_dir`` says: the tests write
        into a scratch folder, never into the atlas)."""
        from .atlas import ATLAS_ROOT, load_atlas
        return load_atlas(self.extras.get("atlas_dir") or project_path(ATLAS_ROOT / "atlas"))

    @property
    def committed_dir(self) -> Path:
        """Where this run's results are committed in the checkout (``results/<experiment>/<run>``),
        whatever ``results_dir`` says: finished replays there are read, never rewritten, so CI
        shows the committed evidence without recomputing it."""
        return project_path("results") / self.experiment / self.run_dir.name

    @property
    def paper_scale(self) -> bool:
        return self.effective_scale == "paper"

    @property
    def scale_reason(self) -> str:
        """Why these numbers cannot be set against the paper's ("" at paper scale)."""
        return _SCALE_REASONS.get(self.effective_scale, "")


def project_path(path) -> Path:
    """``path`` as given when absolute; a relative one resolves against the lshkit checkout
    (the folder holding ``lshkit/`` and ``notebooks/``) when there is one, else the working
    directory. nbval runs a notebook in its own folder and papermill in the caller's, so
    without this ``results/`` and ``figures/`` would land in different places."""
    path = Path(path)
    if path.is_absolute():
        return path
    root = Path(__file__).resolve().parent.parent
    return (root / path) if (root / "notebooks").is_dir() else path.resolve()


def each_of(valid):
    """A check for a non-empty list whose items are all among ``valid`` (e.g. ``samplers``)."""
    return list_of(lambda name, value: check_choice(name, value, valid), what=f"items from {list(valid)}")


def check_atlas_dir(name: str, value) -> None:
    """The ``atlas_dir`` parameter of a notebook that replays: None (the committed atlas) or the
    folder of an atlas (one holding its ``atlas.json``)."""
    if value is not None and not (isinstance(value, (str, os.PathLike)) and (Path(value) / "atlas.json").is_file()):
        what = "holds no atlas (no atlas.json)" if isinstance(value, (str, os.PathLike)) and Path(value).is_dir() \
            else "is not a folder"
        raise ValueError(f"{name}={value!r} is not valid: it {what}; it must be None (the committed atlas) "
                         "or the folder of an atlas (python -m lshkit atlas build --root DIR)")


def check_atlas_budget(atlas_dir, budget: str) -> None:
    """A replay's budget must fit the atlas: ``smoke`` replays only on a smoke-scale atlas (a
    trained smoke run is ``source="train"``), and a smoke-scale atlas's few epochs hold only the
    smoke budget's search. Read from the atlas's ``atlas.json``, before anything runs."""
    from .atlas import stored_spec
    from .search import SearchConfig

    root = Path(atlas_dir)
    spec = stored_spec(root)
    if budget == "smoke" and spec.scale != "smoke":
        raise ValueError(f"budget='smoke' with source='atlas' is not valid: the atlas at {root} is "
                         f"{spec.scale}-scale and replays budgets low, moderate and high; budget smoke trains "
                         "(source='train')")
    try:  # the budget's pool needs rounds x E epochs of each candidate
        SearchConfig(**spec.search_fields(), budget=budget, space=spec.space().to_dict()).resolved("cpu")
    except ValueError as err:
        hint = "; use budget='smoke'" if spec.scale == "smoke" else ""
        raise ValueError(f"budget={budget!r} does not fit the atlas at {root}: {err}{hint}") from None


def validate(experiment: str, *, extras: dict | None = None, **params) -> NotebookParams:
    """Check every parameter before anything runs; a bad one raises ValueError naming it,
    its value and the valid values.

    ``params`` are the common ones (see ``DEFAULTS``) plus one per name in ``extras``, a dict
    ``name -> check`` where ``check`` is a collection of valid values or a callable
    ``check(name, value)`` raising ValueError (``lshkit.checks.check_positive_int``, ``each_of``).
    An extra named ``source`` (checked against :data:`SOURCES`) chooses between replaying on the
    atlas (the effective scale is then "atlas"; an extra ``atlas_dir``, checked by
    :func:`check_atlas_dir`, names another atlas than the committed one) and training at ``scale``. The run directory is
    ``<results_dir>/<experiment>/<budget>-<effective_scale>-seed<seed>``.
    """
    extras = dict(extras or {})
    if not isinstance(experiment, str) or not re.fullmatch(r"[A-Za-z0-9_.-]+", experiment):
        raise ValueError(f"experiment={experiment!r} is not valid; it must be a name such as 'table2'")
    if set(extras) & set(DEFAULTS):
        raise ValueError(f"extras {sorted(set(extras) & set(DEFAULTS))} clash with the common parameters")
    known = list(DEFAULTS) + list(extras)
    unknown = sorted(set(params) - set(known))
    if unknown:
        raise ValueError(f"unknown parameter(s) {unknown} for {experiment}; the known parameters are {known}")
    missing = [name for name in extras if name not in params]
    if missing:
        raise ValueError(f"parameter(s) {missing} of {experiment} were not given")
    p = {**DEFAULTS, **params}
    check_choice("budget", p["budget"], BUDGETS)
    check_choice("scale", p["scale"], NOTEBOOK_SCALES)
    if "source" in extras and params.get("source") == "train" and p["scale"] == "atlas":
        # Trained searches and replays would share the run directory <budget>-atlas-seed<seed>.
        raise ValueError("scale='atlas' with source='train' is not valid: the atlas scale is what "
                         "source='atlas' replays; train at one of ['auto', 'cpu', 'paper']")
    check_int("seed", p["seed"])
    device = str(resolve_device(p["device"]))
    if p["storage"] is not None:
        from .storage import storage_kind
        storage_kind(p["storage"])  # a bad URL fails now, naming the valid forms
    if not isinstance(p["results_dir"], (str, os.PathLike)) or not str(p["results_dir"]):
        raise ValueError(f"results_dir={p['results_dir']!r} is not valid; it must be a directory path")
    if p["progress"] is not None and not isinstance(p["progress"], bool):
        raise ValueError(f"progress={p['progress']!r} is not valid; choose one of [None, True, False]")
    for name, check in extras.items():
        if callable(check):
            check(name, params[name])
        else:
            check_choice(name, params[name], check)
    if "source" in extras and params["source"] == "atlas":
        from .atlas import ATLAS_ROOT
        check_atlas_budget(params.get("atlas_dir") or project_path(ATLAS_ROOT / "atlas"), p["budget"])

    if "source" in extras and params["source"] == "atlas":
        effective = "atlas"
    else:
        effective = resolve_scale(p["scale"], p["budget"], device)
    results_dir = str(project_path(_redirected(p["results_dir"], "results")))
    run_dir = Path(results_dir) / experiment / f"{p['budget']}-{effective}-seed{p['seed']}"
    progress = auto_progress(p["progress"])
    return NotebookParams(experiment, p["budget"], p["scale"], effective, p["seed"], device,
                          p["storage"], results_dir, progress, run_dir, {n: params[n] for n in extras})


_IPYTHON_NAMES = {"In", "Out"}
_PLAIN = (str, int, float, bool, type(None), list, tuple, dict)


def notebook_parameters(namespace: dict) -> dict:
    """The plain-data globals of a notebook: its ``parameters`` cell and papermill's injected
    cell, provided this is called before any other cell defines data (IPython's own names
    are skipped: underscored ones, ``In``/``Out``, and everything callable or a module), and
    constants imported to check them (upper-case names such as ``SOURCES``)."""
    return {k: v for k, v in namespace.items()
            if not k.startswith("_") and k not in _IPYTHON_NAMES and not k.isupper() and isinstance(v, _PLAIN)}


def comparison(rows, *, comparable: bool, reason: str = "", tolerance: float = TOLERANCE) -> pd.DataFrame:
    """Ours beside the paper's: ``rows`` of ``(label, ours, paper[, paper_ci])``.

    Columns label, ours, paper, paper_ci, difference (ours - paper); when ``comparable``
    also tolerance and agrees: ``|difference| <= tolerance``, the tolerance being the
    paper's 95% CI half-width where it gives one above 0 (a deterministic method's 0 says
    nothing about another implementation's noise), else ``tolerance``. A missing ``ours``
    (None) never agrees. ``reason`` (required when not comparable) completes
    "cannot be compared because ..." in :func:`verdict`.
    """
    if not isinstance(comparable, bool):
        raise ValueError(f"comparable={comparable!r} is not valid; choose one of [True, False]")
    check_number("tolerance", tolerance, low=0, low_open=True)
    if not comparable and not (isinstance(reason, str) and reason.strip()):
        raise ValueError("comparison(comparable=False) needs a reason saying why the numbers differ in kind")
    records = []
    for row in rows:
        if not isinstance(row, (tuple, list)) or len(row) not in (3, 4):
            raise ValueError(f"row {row!r} is not valid; it must be (label, ours, paper) or "
                             "(label, ours, paper, paper_ci)")
        label, ours, paper, ci = (*row, None)[:4]
        records.append((label, float("nan") if ours is None else float(ours), float(paper),
                        float("nan") if ci is None else float(ci)))
    if not records:
        raise ValueError("comparison needs at least one row")
    frame = pd.DataFrame(records, columns=["label", "ours", "paper", "paper_ci"])
    frame["difference"] = frame["ours"] - frame["paper"]
    if comparable:
        frame["tolerance"] = frame["paper_ci"].where(frame["paper_ci"] > 0, tolerance)
        # The epsilon keeps a difference printed as exactly the tolerance from failing on rounding.
        frame["agrees"] = frame["difference"].abs() <= frame["tolerance"] + 1e-9
    frame.attrs.update(comparable=comparable, reason=reason.strip(), tolerance=tolerance)
    return frame


def with_interval(value, lo, hi, fmt: str = "{:+.2f}") -> pd.Series:
    """Cells such as ``+0.31 [+0.05, +0.58]`` from three aligned Series (``n/a`` where the value
    is missing), for tables that print an estimate with its 95% interval."""
    def cell(v, a, b):
        if pd.isna(v):
            return "n/a"
        return f"{fmt.format(v)} [{fmt.format(a)}, {fmt.format(b)}]" if pd.notna(a) else fmt.format(v)
    return pd.Series([cell(*t) for t in zip(value, lo, hi)], index=getattr(value, "index", None))


def _join(labels) -> str:
    labels = [str(x) for x in labels]
    return labels[0] if len(labels) == 1 else ", ".join(labels[:-1]) + " and " + labels[-1]


def _state(holds) -> str:
    if isinstance(holds, str):
        check_choice("holds", holds, VERDICTS)
        return holds
    return "holds" if holds else "does not hold"


def verdict(table: pd.DataFrame, *, claim: str | None = None, holds: bool | str | None = None) -> str:
    """One plain sentence on ``table`` (from :func:`comparison`): why it cannot be compared,
    or how many numbers agree, which do not, and whether the paper's ``claim`` ``holds``
    in ours (a bool the caller computes from our numbers, or one of :data:`lshkit.stats.VERDICTS` when
    an interval decides, :func:`lshkit.stats.interval_verdict`)."""
    if "comparable" not in table.attrs:
        raise ValueError("verdict needs the frame comparison() returns")
    if (claim is None) != (holds is None):
        raise ValueError("give both claim (the paper's claim, a phrase) and holds (whether it holds in ours)")
    if not table.attrs["comparable"]:
        sentence = (f"These numbers cannot be compared with the paper's because {table.attrs['reason']}; "
                    "the table shows them side by side only for orientation")
        if claim is not None:
            sentence += f"; at this scale the paper's claim that {claim} {_state(holds)} in ours"
        return sentence + "."
    n, disagree = len(table), table.loc[~table["agrees"], "label"].tolist()
    count = f"All {n}" if not disagree else f"{n - len(disagree)} of {n}"
    sentence = (f"{count} numbers agree with the paper's (within its 95% CI half-width, or "
                f"±{table.attrs['tolerance']:g} where it gives none)")
    if disagree:
        sentence += f"; {_join(disagree)} {'does' if len(disagree) == 1 else 'do'} not"
    if claim is not None:
        sentence += f"; the paper's claim that {claim} {_state(holds)} in ours"
    return sentence + "."


#: One colour per concept, the same in every figure of the kit (from seaborn's colorblind
#: palette): pass it as ``palette=PALETTE`` with hue values among its keys, or index it.
PALETTE = {
    "dense": "#000000",                # the dense reference model
    "LS ranking": "#0173b2",           # candidates ranked by LS distance (LSH)
    # The two readings of the LS reference (lshkit.embedding): the dense LS at the candidate's epoch
    # (the authors' code, the default) keeps LS ranking's colour; the dense model's final LS its own.
    "same-epoch reference": "#0173b2",
    "final reference": "#6a3d9a",
    "loss ranking": "#de8f05",         # candidates ranked by validation loss
    "full training": "#cc78bc",        # the loss-based full-training search (Fig. 3 right)
    "authors' pick": "#029e73",        # the authors' best sparse configuration (Table 1)
    "Selfish-RNN default": "#d55e00",  # the Selfish-RNN default sparse configuration
    "paper": "#949494",                # a number the paper reports
    "magnitude": "#0173b2",            # magnitude pruning
    "random": "#de8f05",               # random pruning / random search
    "spectral gap (min)": "#ca9161",   # the weakest layer's spectral gap (arXiv 2403.11100)
    "spectral gap (mean)": "#fbafe4",  # the layers' mean spectral gap
    "graph forest": "#56b4e9",         # a random forest on mask graph properties (arXiv 2407.20601)
    "selection": "#ece133",            # a search's selection phase (Table 4)
    "extensive training": "#555555",   # the survivors' training to the end (Table 4)
    # Optuna's stock pruners on the atlas (lshkit.bench_optuna), from seaborn's dark palette
    "median pruner": "#12711c",
    "Hyperband pruner": "#b8850a",
    "successive halving pruner": "#006374",
    # Death rates of the atlas, an ordered setting: seaborn's sequential "flare", light to dark as
    # more is pruned each cycle (hues no other concept uses).
    "death rate 0.4": "#e5715e",
    "death rate 0.65": "#c14168",
    "death rate 0.9": "#863071",
}


def style() -> None:
    """The look of every notebook's figures: seaborn's white grid, readable fonts (titles 12 pt,
    labels 11 pt, ticks 10 pt, legends 9 pt) and the colorblind palette, whose colours
    :data:`PALETTE` assigns to concepts. Sets no backend, so it is safe under Agg."""
    import matplotlib as mpl
    import seaborn as sns

    sns.set_theme(context="notebook", style="whitegrid", palette="colorblind")
    mpl.rcParams.update({"figure.figsize": (6.4, 4.0), "savefig.dpi": 150, "savefig.bbox": "tight",
                         "axes.titlesize": 12, "axes.labelsize": 11, "xtick.labelsize": 10,
                         "ytick.labelsize": 10, "legend.fontsize": 9, "legend.title_fontsize": 10,
                         "figure.titlesize": 13,
                         "svg.hashsalt": "lshkit"})  # fixed SVG ids: same figure, same file


def integer_axis(ax, which: str = "x"):
    """Whole-number ticks only on ``ax``'s ``which`` axis ("x", "y" or "both"): epochs, rounds,
    counts. Returns ``ax``."""
    from matplotlib.ticker import MaxNLocator

    check_choice("which", which, ("x", "y", "both"))
    for name in ("x", "y") if which == "both" else (which,):
        getattr(ax, f"{name}axis").set_major_locator(MaxNLocator(integer=True))
    return ax


def _redirected(path, default: str):
    """``path``, unless it is the default folder and ``LSHKIT_<DEFAULT>_DIR`` names another: the
    tests run every notebook into temporary folders that way, never into the user's."""
    return os.environ.get(f"LSHKIT_{default.upper()}_DIR") or path if str(path) == default else path


def save_figure(fig, name: str, figures_dir="figures") -> Path:
    """Write ``fig`` (a Figure, Axes or seaborn grid) to ``<figures_dir>/<name>.png`` at 150 dpi,
    cropped to a tight bounding box (so no label or legend outside the axes is cut), atomically
    and without the version stamp, so the same figure gives the same bytes."""
    if not isinstance(name, str) or not re.fullmatch(r"[A-Za-z0-9_.-]+", name):
        raise ValueError(f"name={name!r} is not valid; it must be a file name such as 'table2'")
    buffer = BytesIO()
    fig.figure.savefig(buffer, format="png", dpi=150, bbox_inches="tight", metadata={"Software": None})
    return atomic_write(project_path(_redirected(figures_dir, "figures")) / (name if name.endswith(".png") else f"{name}.png"),
                        buffer.getvalue())


def save_results(run_dir, **results) -> list[Path]:
    """Write each DataFrame to ``<run_dir>/<name>.csv`` and each dict to ``<name>.json``,
    atomically. ``run`` is reserved for :func:`lshkit.io.run_record`'s ``run.json``."""
    for name, value in results.items():
        if name == "run":
            raise ValueError("the result name 'run' is reserved for run.json (lshkit.io.run_record)")
        if not isinstance(value, (pd.DataFrame, dict)):
            raise ValueError(f"{name}: a {type(value).__name__} cannot be saved; give a DataFrame or a dict")
    return [write_csv(Path(run_dir) / f"{name}.csv", value) if isinstance(value, pd.DataFrame)
            else write_json(Path(run_dir) / f"{name}.json", value) for name, value in results.items()]


def load_results(run_dir) -> dict:
    """Every ``*.csv`` (as a DataFrame) and ``*.json`` (as a dict) in ``run_dir``, by name."""
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise FileNotFoundError(f"no results at {run_dir}: run the notebook with these parameters first")
    out = {}
    for path in sorted(run_dir.glob("[!.]*.csv")) + sorted(run_dir.glob("[!.]*.json")):
        if path.stem in out:
            raise ValueError(f"{run_dir} holds both {path.stem}.csv and {path.stem}.json")
        out[path.stem] = pd.read_csv(path) if path.suffix == ".csv" else read_json(path)
    return out
