"""Table 4: the schedule E of LS ranking (grid search, removal only), its selection and
extensive-training times, and the claim that the optimum is selected only from E = 3 on.

LS ranking runs under each reading of the LS reference (:mod:`lshkit.experiments.readings`),
loss ranking once per E beside it.
"""
from __future__ import annotations

from pathlib import Path

import pandas as pd

from lshkit import paper
from lshkit.atlas.replay import grid_optimum
from lshkit.checks import check_positive_int, list_of, optional
from lshkit.embedding import REFERENCES
from lshkit.experiments import readings
from lshkit.report import SOURCES, PALETTE, check_atlas_dir, comparison, each_of, save_results, verdict
from lshkit.sweep import exhaustive, run_sweep, selected_is

#: The checks of the notebook's own parameters (:func:`lshkit.report.validate`'s ``extras``).
PARAMETERS = {"source": SOURCES, "atlas_dir": check_atlas_dir,
              "epochs_per_round": optional(list_of(check_positive_int, what="positive integers", distinct=True)),
              "rankings": optional(each_of(("ls", "loss"))), "references": each_of(REFERENCES),
              "optimal_from": ("full_grid", "none")}

#: Table 4's claim (§4.2), as the verdict sentences state it.
CLAIM = "the optimal configuration is selected only when E ≥ 3"

#: Table 4's rows of time, as :func:`table` names them, then the selection's perplexity and whether it is the optimum.
ROWS = {"selection_seconds": "selection", "final_seconds": "extensive training", "total_seconds": "total",
        "test_ppl": "test perplexity of the selection", "optimal_selected": "optimal config selected"}

#: The phases of a search's time (:func:`times`), each with its colour of :data:`lshkit.report.PALETTE`.
PHASES = {"selection_seconds": "selection", "final_seconds": "extensive training"}
PHASE_PALETTE = {phase: PALETTE[phase] for phase in PHASES.values()}


def optimal_only_from(searches: pd.DataFrame, first: int = 3) -> tuple[pd.DataFrame, str]:
    """Table 4's claim that the optimal configuration is selected only for E ≥ ``first``: per
    schedule E (one search each, columns ``E`` and ``optimal_selected``), whether it selected the
    optimum and whether the claim says it should; the claim holds when every E agrees. Each E is
    one deterministic search on the atlas, so there is no interval here: a single disagreement
    decides."""
    table = searches[["E", "optimal_selected"]].astype({"E": int, "optimal_selected": bool}).sort_values("E")
    table["claimed"] = table.E >= first
    return table.reset_index(drop=True), "holds" if (table.optimal_selected == table.claimed).all() else "does not hold"


def settings(p) -> dict:
    """The notebook's defaults resolved: E = 1..5 on the atlas (1..4 trained, Table 4's columns)
    when ``epochs_per_round`` is None, and both rankings on the atlas (LS trained, as the paper)
    when ``rankings`` is None."""
    replayed = p.source == "atlas"
    return {"epochs_per_round": p.epochs_per_round or ([1, 2, 3, 4, 5] if replayed else [1, 2, 3, 4]),
            "rankings": p.rankings or (["ls", "loss"] if replayed else ["ls"])}


def arms(p) -> list[str]:
    """The arms, in the order of the resolved rankings: LS once per reading, then loss."""
    return readings.arm_order(settings(p)["rankings"], p.references)


def start(p):
    """Prints what runs, sets the figure style and returns the run's record (:func:`readings.start`)."""
    s = settings(p)
    return readings.start(p, f"E in {s['epochs_per_round']}, rankings {s['rankings']}, LS references {p.references}",
                          **s)


def _sized(p) -> dict:
    # At smoke a search trains max(E) epochs in all, so every E fits in its final training.
    return {"final_epochs": max(settings(p)["epochs_per_round"])}


def run(p) -> pd.DataFrame:
    """Table 4's searches: grid search for every E, ranking and reading, once each (nothing in a
    grid search is random on the atlas), replayed or trained (:func:`readings.run_searches`), with
    ``E`` for ``epochs_per_round``, ordered by arm (:func:`arms`) and E."""
    s = settings(p)
    searches = readings.run_searches(p, {"ranking": s["rankings"], "epochs_per_round": s["epochs_per_round"],
                                         "reference": p.references}, label="grid search ", sized=_sized(p),
                                     sampler="grid")
    searches = searches.rename(columns={"epochs_per_round": "E"})
    return searches.assign(arm=pd.Categorical(searches.arm, arms(p))).sort_values(["arm", "E"], ignore_index=True)


def optimal(p, searches: pd.DataFrame) -> tuple[pd.DataFrame, str]:
    """``searches`` with ``optimal_selected``: whether each selected the optimal configuration of
    the grid, the one with the lowest validation perplexity trained to the end from the same seed
    (read from the atlas, :func:`lshkit.atlas.replay.grid_optimum`; trained with
    ``optimal_from="full_grid"``, :func:`lshkit.sweep.exhaustive`, saved as ``full_grid``; unknown,
    NA, with "none"), and a sentence naming it."""
    if p.source == "atlas":
        atlas = p.atlas
        best = grid_optimum(atlas)
        finals = atlas.candidates().set_index("name").loc[atlas.name(best, atlas.spec.seed)]
        return searches.assign(optimal_selected=selected_is(searches, best)), (
            f"optimal of the grid on the atlas: {best}, validation perplexity {finals.valid_ppl:.3f}, "
            f"test perplexity {finals.test_ppl:.3f}")
    if p.optimal_from == "none":
        return searches.assign(optimal_selected=pd.NA), \
            "optimal_from='none': the optimal configuration is not known, its row stays empty"
    base = readings.trained_base(p, _sized(p), sampler="grid")
    full = run_sweep(exhaustive(base, p.device), {}, out=p.run_dir / "full_grid", storage=p.storage, device=p.device,
                     reference_dir=Path(p.results_dir) / "reference", progress=p.progress)
    save_results(p.run_dir, full_grid=full)
    best = {k[len("selected_"):]: v for k, v in full.iloc[0].to_dict().items() if k.startswith("selected_")}
    return searches.assign(optimal_selected=selected_is(searches, best)), (
        f"optimal of {full['candidates'].iloc[0]} configurations: {best}, validation perplexity "
        f"{full['valid_ppl'].iloc[0]:.3f}, test perplexity {full['test_ppl'].iloc[0]:.3f}")


def table(p, searches: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Table 4 in our numbers (compute seconds; a row per arm and E, :data:`ROWS` as columns) and
    the paper's (LS ranking, minutes; a column per E); saves ``searches`` and ``table4``."""
    ours = searches.set_index(["arm", "E"])[list(ROWS)].rename(columns=ROWS)
    published = pd.DataFrame(paper.TABLE4).rename(index=lambda name: name.replace("_", " ").replace(
        "optimal selected", "optimal config selected"))
    save_results(p.run_dir, searches=searches, table4=ours.reset_index())
    return ours, published


def times(searches: pd.DataFrame) -> tuple[pd.DataFrame, str]:
    """The time of each search per phase (:data:`PHASES`), one row each, in column ``time``, and its
    unit: CPU hours where some phase passes 3 hours (the atlas's), compute seconds otherwise."""
    tidy = searches.melt(id_vars=["E", "arm"], value_vars=list(PHASES), var_name="phase", value_name="seconds")
    tidy = tidy.replace({"phase": PHASES})
    unit, per = ("CPU hours", 3600.0) if tidy.seconds.max() > 3 * 3600 else ("compute seconds", 1.0)
    return tidy.assign(time=tidy.seconds / per), unit


def timing(p, searches: pd.DataFrame, record) -> tuple[pd.DataFrame | None, str]:
    """Selection time per unit of E for each LS arm (the paper: it grows as 45·E), and our times
    beside the paper's for the E of its table, saved as ``timing``: never comparable in value (the
    hardware, the model and the implementation differ; ``record`` names ours), set side by side
    for their shape. None for the table when no LS search ran at those E."""
    ls_runs = searches[searches.ranking == "ls"]
    lines = [f"selection seconds per unit of E ({arm}): "
             + ", ".join(f"E={e}: {s:.2f}" for e, s in zip(runs.E, runs.selection_seconds / runs.E))
             for arm, runs in ls_runs.groupby("arm", observed=True, sort=False)]
    hardware = record["versions"].get("gpu") or "this CPU"
    reason = (f"timings depend on the hardware and the implementation (the paper's: minutes on its GPU; ours: "
              f"compute minutes on {hardware})" + (f", and {p.scale_reason}" if p.scale_reason else ""))
    rows = [(f"E={r.E} {key.replace('_', ' ')} (minutes), {r.arm}", r[column] / 60, paper.TABLE4[r.E][key])
            for _, r in ls_runs[ls_runs.E.isin(list(paper.TABLE4))].iterrows()
            for key, column in [("selection", "selection_seconds"), ("extensive_training", "final_seconds"),
                                ("total", "total_seconds")]]
    if not rows:
        return None, "\n".join(lines)
    ours = comparison(rows, comparable=False, reason=reason)
    save_results(p.run_dir, timing=ours)
    return ours, "\n".join(lines + [ours.round(3).to_string(index=False), verdict(ours)])


def claims(p, searches: pd.DataFrame) -> tuple[pd.DataFrame | None, str]:
    """For each arm, the E at which the optimum was selected; then, per reading of the LS
    reference, :func:`optimal_only_from` on the paper's E (Table 4's columns, 1 to 4) beside the
    paper's row, saved as ``comparison``, and whether :data:`CLAIM` holds. None for the table
    when the optimum is unknown (``optimal_from="none"``) or no LS ranking ran."""
    known = searches.dropna(subset=["optimal_selected"])
    lines = [f"{arm}: the optimal configuration is selected for E in "
             f"{runs.E[runs.optimal_selected.astype(bool)].tolist()} of {runs.E.tolist()}."
             for arm, runs in known.groupby("arm", observed=True, sort=False)]
    judged = known[known.E.isin(list(paper.TABLE4)) & (known.ranking == "ls")]
    results = {arm: optimal_only_from(runs) for arm, runs in judged.groupby("arm", observed=True, sort=False)}
    if not results:
        return None, "\n".join(lines + ["The optimal configuration was not determined (optimal_from='none') for any "
                                        "E of the paper's table, or no LS ranking ran."])
    ours = comparison([(f"E={r.E} optimal configuration selected (1 = yes), {arm}", float(r.optimal_selected),
                        float(paper.TABLE4[r.E]["optimal_selected"]))
                       for arm, (selected, _) in results.items() for r in selected.itertuples()],
                      comparable=p.paper_scale, reason=p.scale_reason, tolerance=0.5)
    save_results(p.run_dir, comparison=ours)
    reference = {arm: r for r, arm in readings.READINGS.items()}
    scope = f" (E = {min(paper.TABLE4)}-{max(paper.TABLE4)})"
    return ours, "\n".join(lines + [ours.to_string(index=False)] + [
        readings.reading_verdict(reference[arm], ours, claim=CLAIM, holds=holds, scope=scope)
        for arm, (_, holds) in results.items()])
