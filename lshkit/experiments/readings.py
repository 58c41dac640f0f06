"""The two readings of the LS reference and the arms of a comparison (paper §3.2): which dense LS a
candidate is measured against (the dense model's LS at the candidate's epoch, as the authors' code,
or its final LS, as the paper's text reads), and how every table sets them side by side.
"""
from __future__ import annotations

from pathlib import Path

import pandas as pd

from lshkit.atlas.replay import replay_sweep
from lshkit.io import run_record
from lshkit.report import PALETTE, style, verdict, with_interval
from lshkit.search import SearchConfig
from lshkit.search.config import unread_dropped
from lshkit.stats import interval_verdict, summarise
from lshkit.sweep import SMOKE_OVERRIDES, expand, run_sweep, smoke_sized


#: How tables name LS ranking under each reading of its reference (:data:`lshkit.embedding.REFERENCES`,
#: in that order: the dense LS at the candidate's epoch, as the authors' code, then its final LS).
READINGS = {"same_epoch": "LS (same epoch)", "final": "LS (final)"}


#: How figures and labels name each reading (:data:`lshkit.report.PALETTE` has a colour for each).
READING_LABELS = {"same_epoch": "same-epoch reference", "final": "final reference"}
#: What each reading is, for the sentences that state a verdict per reading.
READING_NOTES = {"same_epoch": "the dense LS at the candidate's epoch (the authors' code, which made the paper's numbers)",
                 "final": "the dense model's final LS (the paper's text read literally)"}
#: The colour of each arm in every figure that sets them side by side (Tables 2, 4 and B2): each
#: reading its colour of :data:`lshkit.report.PALETTE`, the loss ranking its own.
ARM_PALETTE = {**{READINGS[r]: PALETTE[READING_LABELS[r]] for r in READINGS}, "loss": PALETTE["loss ranking"]}


def arm_order(rankings, references) -> list[str]:
    """The arms of a comparison, in the order of ``rankings``: "ls" once per reading of
    ``references`` (:data:`READINGS`), any other ranking under its own name, as :func:`with_arms`
    names them."""
    unknown = [r for r in references if r not in READINGS]
    if unknown:
        raise ValueError(f"references {unknown} are not readings of the LS reference; valid: {list(READINGS)}")
    return [a for r in rankings for a in ([READINGS[x] for x in references] if r == "ls" else [r])]


def reading_verdict(reference: str, table: pd.DataFrame, *, claim: str, holds, scope: str = "") -> str:
    """The sentence that judges a claim under one reading of the LS reference: which dense LS it
    was measured against (:data:`READING_NOTES`), ``scope`` if any (" (E = 1-4)"), then
    :func:`lshkit.report.verdict` on ``table`` (ours beside the paper's)."""
    if reference not in READING_NOTES:
        raise ValueError(f"reference={reference!r} is not a reading of the LS reference; valid: {list(READINGS)}")
    return f"With {READING_NOTES[reference]} as the reference{scope}: " + verdict(table, claim=claim, holds=holds)


def start(p, settings: str, **resolved):
    """A comparison notebook's start (Tables 2, 4 and B2): the kit's figure style, one line saying
    what runs (``settings``, between the common parameters and the run's folder), and its
    :func:`lshkit.io.run_record`, which records ``p``'s parameters with the defaults ``resolved``
    (``record.finish()`` writes the wall time)."""
    style()
    print(f"source={p.source}, budget={p.budget}, scale={p.effective_scale}, {settings}, results in {p.run_dir}")
    return run_record(p.run_dir, {**p.extras, **resolved, "budget": p.budget, "scale": p.effective_scale,
                                  "seed": p.seed, "device": p.device})


def trained_base(p, sized: dict | None = None, **fields) -> SearchConfig:
    """The search every trained cell of a comparison varies: the stacked LSTM at sparsity 0.67
    (Tables 2, 4 and B2) at ``p``'s scale, budget and seed, with ``fields``; at budget smoke
    shrunk by :func:`lshkit.sweep.smoke_sized` (with ``sized`` beside its overrides)."""
    return smoke_sized(SearchConfig(model="lstm", scale=p.effective_scale, budget=p.budget, seed=p.seed, **fields),
                       **(sized or {}))


def run_searches(p, grid: dict, *, repeats: int = 1, label: str = "", workers: int = 1, sized: dict | None = None,
                 **fields) -> pd.DataFrame:
    """The searches of a comparison (Tables 2, 4 and B2): every combination of ``grid`` (a
    SearchConfig field -> its values) with ``fields`` fixed, ``repeats`` times (seeds ``p.seed``,
    ``p.seed + 1``, ...). With ``p.source == "atlas"`` replayed on ``p.atlas``
    (:func:`lshkit.atlas.replay.replay_sweep` into ``<run_dir>/replays``, the committed replays read
    first; ``workers`` processes), else trained (:func:`lshkit.sweep.run_sweep` from
    :func:`trained_base` into ``<run_dir>/searches``). Either way a ranking that reads no LS runs
    once for every reading. Prints what ran (``label`` names it); returns one row per search with
    its arm (:func:`with_arms`)."""
    if p.source == "atlas":
        atlas = p.atlas
        searches = replay_sweep(atlas, p.run_dir / "replays", grid, repeats=repeats, first_seed=p.seed,
                                budget=p.budget, progress=p.progress, workers=workers,
                                committed=p.committed_dir / "replays", **fields)
        print(f"{label}replayed on the atlas at {atlas.root.name}: {len(searches)} searches, "
              f"{searches.total_seconds.sum() / 3600:.0f} simulated CPU hours")
        return with_arms(searches)
    base = trained_base(p, sized, **fields)
    size = base.resolved(p.device)
    if p.budget == "smoke":
        print("smoke overrides:", SMOKE_OVERRIDES, *(f"and {k} {v}" for k, v in (sized or {}).items()))
    cells = {tuple(unread_dropped(c, fields).items()) for c in expand(grid)}
    schedules = grid.get("epochs_per_round", [size.epochs_per_round])
    print(f"{label}pool {size.pool_size()}, E = {', '.join(map(str, schedules))}, final training "
          f"{size.final_epochs} epochs, {len(cells) * repeats} searches")
    return with_arms(run_sweep(base, grid, repeats=repeats, out=p.run_dir / "searches", storage=p.storage,
                               device=p.device, reference_dir=Path(p.results_dir) / "reference",
                               progress=p.progress))


def paired_replays(frame: pd.DataFrame, *, a: str = "ls", b: str = "loss", column: str = "ranking",
                   by=("sampler", "budget"), value: str = "test_ppl") -> pd.DataFrame:
    """Per group of ``by``: the mean of ``value`` when ``column`` is ``a`` minus when it is ``b``
    (by default LS ranking minus loss ranking, Table 2), paired by seed (the same seed gives both
    searches the same initial pool), with its 95% Student-t interval over the pairs
    (:func:`lshkit.stats.summarise`), how many pairs each side won, and the verdict on "``a``
    selects better models" (a difference below 0, :func:`lshkit.stats.interval_verdict`)."""
    by = list(by)
    wide = frame.pivot_table(index=by + ["seed"], columns=column, values=value).reset_index()
    if a not in wide or b not in wide:
        raise ValueError(f"frame needs searches with {column} {a!r} and {b!r}")
    wide["difference"] = wide[a] - wide[b]
    out = summarise(wide, by, value="difference").rename(columns={"n": "pairs", "mean": "difference"})
    out["lo"], out["hi"] = out.difference - out.ci95, out.difference + out.ci95
    out["verdict"] = [interval_verdict(lo, hi, better="below") for lo, hi in zip(out.lo, out.hi)]
    wins = wide.groupby(by, sort=False)["difference"].agg(
        **{f"{a}_better": lambda d: int((d < 0).sum()), f"{b}_better": lambda d: int((d > 0).sum())}).reset_index()
    return out.drop(columns=["std", "ci95"]).merge(wins, on=by)


def with_arms(frame: pd.DataFrame, *, column: str = "ranking", ls: str = "ls") -> pd.DataFrame:
    """``frame`` (searches, one per row) with a column ``arm``: :data:`READINGS` of its ``reference``
    for a search ranked by ``ls`` ("LS (same epoch)", "LS (final)"), its ``column`` value otherwise
    ("loss", "gap": rankings that read no LS have no reading). A frame without a ``reference``
    column holds searches saved before the reading was an option, which all read the dense model's
    final LS (the replays committed then are named ``reference=final``): its LS searches are
    "LS (final)". An LS search with another or no reading is an error."""
    if column not in frame:
        raise ValueError(f"frame has no column {column!r}; its columns are {list(frame.columns)}")
    ranking = frame[column].astype(str)
    reference = frame["reference"] if "reference" in frame else pd.Series("final", index=frame.index)
    is_ls = ranking == ls
    unread = sorted(set(reference[is_ls & ~reference.isin(list(READINGS))].astype(str)))
    if unread:
        raise ValueError(f"LS-ranked searches with reference {unread}; valid: {list(READINGS)}")
    return frame.assign(arm=ranking.where(~is_ls, reference.map(READINGS)))


def arm_table(frame: pd.DataFrame, by, *, arms, value: str = "test_ppl", fmt: str = "{:.1f}") -> pd.DataFrame:
    """The arms of a comparison side by side: one row per combination of the values of ``by``
    present in ``frame`` (in order of appearance), one column per arm of ``arms`` (column ``arm``,
    :func:`with_arms`), each cell the mean of ``value`` with its 95% Student-t interval and n
    (:func:`lshkit.stats.summarise`; a single search shows its value and n=1), and "missing" where the arm has no search in that row (a cell not
    run), so that a table over several runs shows what is absent instead of failing."""
    by, arms = [by] if isinstance(by, str) else list(by), list(arms)
    if not arms:
        raise ValueError("arms must name at least one arm")
    table = summarise(frame, by + ["arm"], value)
    table["cell"] = (with_interval(table["mean"], table["mean"] - table["ci95"], table["mean"] + table["ci95"], fmt)
                     + " n=" + table["n"].astype(str)).where(table["n"] > 0, "missing")
    rows = (pd.MultiIndex.from_product([pd.unique(frame[c]) for c in by], names=by) if len(by) > 1
            else pd.Index(pd.unique(frame[by[0]]), name=by[0]))
    return (table.pivot(index=by, columns="arm", values="cell").reindex(index=rows, columns=arms)
            .astype(object).fillna("missing").rename_axis(columns=None))


def paired_by_reading(frame: pd.DataFrame, *, baseline: str = "loss", by=("sampler", "budget"),
                      value: str = "test_ppl") -> pd.DataFrame:
    """:func:`paired_replays` of LS ranking minus ``baseline`` ranking once per reading of the LS
    reference in ``frame`` (column ``arm``, :func:`with_arms`): each reading's LS searches against
    the same ``baseline`` searches, paired by seed. One row per reading and group of ``by``, with
    the reading first (column ``reference``, in :data:`READINGS` order); a reading not run at all has
    no rows, and a group where the baseline ran but the reading did not has the verdict "not run"
    (0 pairs), which keeps :func:`lshkit.stats.overall_verdict` from saying the claim holds in every cell.
    Columns as :func:`paired_replays` (``ls_better``, ``<baseline>_better``)."""
    by = list(by)
    base = frame[frame.arm == baseline]
    if base.empty:
        raise ValueError(f"frame has no search of arm {baseline!r}; its arms are {sorted(set(frame.arm))}")
    tables = []
    for reference, label in READINGS.items():
        ls = frame[frame.arm == label]
        if ls.empty:
            continue
        table = paired_replays(pd.concat([ls.assign(arm="ls"), base]), a="ls", b=baseline, column="arm", by=by,
                               value=value)
        ran = table[by].apply(tuple, axis=1).isin(set(ls[by].apply(tuple, axis=1)))
        tables.append(table.assign(reference=reference, verdict=table.verdict.where(ran, "not run")))
    if not tables:
        raise ValueError(f"frame has no LS-ranked search; its arms are {sorted(set(frame.arm))}")
    table = pd.concat(tables, ignore_index=True)
    return table[["reference"] + [c for c in table.columns if c != "reference"]]
