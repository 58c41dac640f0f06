"""Table 2: LS-based against loss-based ranking, for five optimisers and three budgets, and the
claim that LS ranking reaches a lower test perplexity for every optimiser and budget.

The LS searches run under each reading of the LS reference (:mod:`lshkit.experiments.readings`),
the loss searches once; a notebook run fills one budget, and the table gathers every budget run.
"""
from __future__ import annotations

import pandas as pd

from lshkit import paper
from lshkit.checks import check_positive_int, optional
from lshkit.embedding import REFERENCES
from lshkit.experiments import readings
from lshkit.report import (BUDGETS, SOURCES, check_atlas_dir, comparison, each_of, load_results, save_results,
                           verdict, with_interval)
from lshkit.stats import overall_verdict, summarise

#: Table 2's optimisers, in its row order: grid search, BOHB, TPE, Hyperband and ATPE.
SAMPLERS = ("grid", "bohb", "tpe", "hyperband", "atpe")

#: The checks of the notebook's own parameters (:func:`lshkit.report.validate`'s ``extras``).
PARAMETERS = {"source": SOURCES, "atlas_dir": check_atlas_dir, "samplers": optional(each_of(SAMPLERS)),
              "rankings": each_of(("loss", "ls")), "references": each_of(REFERENCES),
              "workers": check_positive_int, "repeats": optional(check_positive_int)}

#: Table 2's claim (§4.1), as the verdict sentences state it.
CLAIM = "LS-based ranking reaches a lower perplexity than loss-based ranking for every optimiser"

#: What :func:`picks` shows: the selected configuration's parameters.
PICKED = ["selected_sparse_init", "selected_death", "selected_redistribution", "selected_death_rate"]


def settings(p) -> dict:
    """The notebook's defaults resolved: every optimiser when ``samplers`` is None, and 100
    replays on the atlas (1 trained search) when ``repeats`` is None (the paper ran 3)."""
    return {"samplers": p.samplers or list(SAMPLERS), "repeats": p.repeats or (100 if p.source == "atlas" else 1)}


def arms(p) -> list[str]:
    """Table 2's columns: LS ranking under each reading of ``p.references``, then loss ranking
    (the paper's order), those of ``p.rankings`` only."""
    return readings.arm_order([r for r in ("ls", "loss") if r in p.rankings], p.references)


def start(p):
    """Prints what runs, sets the figure style and returns the run's record (:func:`readings.start`)."""
    s = settings(p)
    return readings.start(p, f"samplers {s['samplers']}, rankings {p.rankings}, LS references {p.references}, "
                             f"{s['repeats']} repeat(s)", **s)


def run(p) -> pd.DataFrame:
    """Table 2's searches at ``p.budget``: every optimiser, ranking and reading, ``repeats`` times,
    replayed on the atlas or trained (:func:`readings.run_searches`), saved as ``searches``."""
    s = settings(p)
    searches = readings.run_searches(p, {"sampler": s["samplers"], "ranking": p.rankings, "reference": p.references},
                                     repeats=s["repeats"], workers=p.workers)
    save_results(p.run_dir, searches=searches)
    return searches


def picks(searches: pd.DataFrame) -> pd.DataFrame:
    """The configuration each optimiser and arm selected most often (the mode of each parameter)."""
    return searches.groupby(["sampler", "arm"], sort=False)[PICKED].agg(lambda c: c.mode().iloc[0])


def every_budget(p) -> pd.DataFrame:
    """The searches of every budget run so far for ``p``'s scale and seed, budget by budget: this
    run's folder, else the committed one (what a fresh clone and CI hold), each with its arm."""
    names = [f"{b}-{p.effective_scale}-seed{p.seed}" for b in BUDGETS]
    runs = [next((d for d in (p.run_dir.parent / n, p.committed_dir.parent / n) if (d / "searches.csv").exists()), None)
            for n in names]
    if all(run is None for run in runs):
        raise ValueError(f"no searches.csv in any of {names} under {p.run_dir.parent} or {p.committed_dir.parent}: "
                         "run table2.run(p) first")
    return pd.concat([readings.with_arms(load_results(run)["searches"]) for run in runs if run is not None],
                     ignore_index=True)


def _summary(every: pd.DataFrame) -> pd.DataFrame:
    return summarise(every, by=["arm", "sampler", "budget"])


def table(p) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Every budget's searches (:func:`every_budget`) and Table 2 in our numbers: a row per
    (budget, optimiser), a column per arm (:func:`readings.arm_table`: mean [95% interval] n,
    "missing" where not run), and the paper's LS and loss numbers (mean ± 95% half-width; "n/a" at
    budget smoke). Saves the summary as ``table2``."""
    every = every_budget(p)
    save_results(p.run_dir, table2=_summary(every))
    shown = readings.arm_table(every, ["budget", "sampler"], arms=arms(p))
    for ranking, column in (("ls", "paper LS"), ("loss", "paper loss")):
        shown[column] = ["{:.1f} ± {:.1f}".format(*paper.TABLE2[(s, ranking)][b]) if b in paper.BUDGET_POOL else "n/a"
                         for b, s in shown.index]
    return every, shown


def paired(p, every: pd.DataFrame) -> tuple[pd.DataFrame | None, str]:
    """LS − loss per reading, optimiser and budget, paired by seed (:func:`readings.paired_by_reading`),
    saved as ``paired``, and its printout; None and a sentence saying so when only one ranking ran."""
    if not {"ls", "loss"} <= set(every.ranking):
        return None, "Only one ranking ran, so the claim cannot be checked."
    pairs = readings.paired_by_reading(every)
    save_results(p.run_dir, paired=pairs)
    return pairs, pairs.assign(difference=with_interval(pairs.difference, pairs.lo, pairs.hi, "{:+.2f}")).drop(
        columns=["lo", "hi"]).to_string(index=False)


def claims(p, every: pd.DataFrame, pairs: pd.DataFrame | None) -> tuple[pd.DataFrame, str]:
    """Ours beside the paper's, one row per cell of Table 2 (LS once per reading, beside the
    paper's one LS number, which the same-epoch reading made; budget smoke beside the paper's low
    column, for orientation), saved as ``comparison``, and the printout: that table, then per
    reading how the (optimiser, budget) cells of ``pairs`` (:func:`paired`) went and whether
    :data:`CLAIM` holds (in every cell, :func:`lshkit.stats.overall_verdict`)."""
    rows = []
    for _, r in _summary(every).iterrows():
        column = r["budget"] if r["budget"] in paper.BUDGET_POOL else "low"
        ls = r["arm"] != "loss"
        mean, ci = paper.TABLE2[(r["sampler"], "ls" if ls else "loss")][column]
        label = (f"{'LSH-' if ls else 'loss-based '}{r['sampler']}{r['arm'].replace('LS', '') if ls else ''}, "
                 f"budget {r['budget']}" + ("" if column == r["budget"] else " (paper: low)"))
        rows.append((label, r["mean"], mean, ci))
    ours = comparison(rows, comparable=p.paper_scale, reason=p.scale_reason)
    save_results(p.run_dir, comparison=ours)
    lines = [ours.round(2).to_string(index=False)]
    if pairs is None:
        return ours, "\n".join(lines + [verdict(ours)])
    for reference, cells in pairs.groupby("reference", sort=False):
        counts = cells.verdict.value_counts()
        lines += [f"\n{readings.READINGS[reference]} − loss, paired, over {len(cells)} (optimiser, budget) cells: "
                  + ", ".join(f"{v}: {n}" for v, n in counts.items()) + ".",
                  readings.reading_verdict(reference, ours, claim=CLAIM, holds=overall_verdict(cells.verdict))]
    return ours, "\n".join(lines)
