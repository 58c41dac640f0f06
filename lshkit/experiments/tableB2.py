"""Table B2 (Appendix B): LS ranking under each embedding and distance of the LS space, and the
claim that PCA with L2, the combination LSH uses, is the best.

Every space runs under each reading of the LS reference (:mod:`lshkit.experiments.readings`) and
each way of fitting the embedding (one fit per candidate, as Appendix B writes it, or one joint
fit, as the authors' code does).
"""
from __future__ import annotations

import pandas as pd

from lshkit import paper
from lshkit.checks import check_positive_int, optional
from lshkit.embedding import DISTANCES, EMBEDDINGS, FITS, REFERENCES
from lshkit.experiments import readings
from lshkit.experiments.readings import paired_replays
from lshkit.report import SOURCES, check_atlas_dir, comparison, each_of, save_results, verdict, with_interval
from lshkit.stats import overall_verdict, summarise

#: The checks of the notebook's own parameters (:func:`lshkit.report.validate`'s ``extras``).
PARAMETERS = {"source": SOURCES, "atlas_dir": check_atlas_dir, "embeddings": each_of(EMBEDDINGS),
              "distances": each_of(DISTANCES), "embedding_fits": optional(each_of(FITS)),
              "references": each_of(REFERENCES), "sampler": ("tpe", "atpe", "bohb", "hyperband", "grid"),
              "repeats": optional(check_positive_int)}

#: Table B2's claim, as the verdict sentences state it.
CLAIM = "PCA with L2 distance is the best combination"

#: How the comparison rows name each embedding.
NAMES = {"pca": "PCA", "raw": "raw LS", "tsne": "t-SNE"}


def best_combination(frame: pd.DataFrame, best=("pca", "l2"), *, columns=("embedding", "distance"),
                     by=("embedding_fit",), value: str = "test_ppl") -> tuple[pd.DataFrame, str]:
    """Table B2's claim that one combination of ``columns`` (PCA with L2) is the best: per other
    combination present, :func:`paired_replays` of ``best`` minus it, and the claim's state: it
    holds when ``best`` is better than every other, judged by the intervals (:func:`lshkit.stats.overall_verdict`)."""
    combination = frame[list(columns)].astype(str).agg("/".join, axis=1)
    label = "/".join(best)
    others = [c for c in dict.fromkeys(combination) if c != label]
    if label not in set(combination) or not others:
        raise ValueError(f"best={best!r} and at least one other combination of {list(columns)} must be in the frame; "
                         f"it has {sorted(set(combination))}")
    rows = [paired_replays(frame.assign(combination=combination), a=label, b=other, column="combination", by=by,
                           value=value).rename(columns={f"{label}_better": "best_better", f"{other}_better": "other_better"})
            .assign(other=other) for other in others]
    table = pd.concat(rows, ignore_index=True)
    return table, overall_verdict(table.verdict)


def settings(p) -> dict:
    """The notebook's defaults resolved: 30 replays on the atlas (a t-SNE replay takes about 10 s;
    1 trained search) when ``repeats`` is None, and both fits on the atlas (the candidate fit
    trained) when ``embedding_fits`` is None."""
    replayed = p.source == "atlas"
    return {"repeats": p.repeats or (30 if replayed else 1),
            "embedding_fits": p.embedding_fits or (["candidate", "joint"] if replayed else ["candidate"])}


def arms(p) -> list[str]:
    """The arms: LS ranking under each reading of ``p.references`` (every search here ranks by LS)."""
    return readings.arm_order(["ls"], p.references)


def start(p):
    """Prints what runs, sets the figure style and returns the run's record (:func:`readings.start`)."""
    s = settings(p)
    return readings.start(p, f"fits {s['embedding_fits']}, LS references {p.references}, {s['repeats']} repeat(s)",
                          **s)


def _summary(searches: pd.DataFrame) -> pd.DataFrame:
    return summarise(searches, by=["reference", "embedding_fit", "embedding", "distance"])


def run(p) -> pd.DataFrame:
    """Table B2's searches: ``p.sampler`` with LS ranking for every embedding, distance, fit and
    reading, ``repeats`` times, replayed or trained (:func:`readings.run_searches`); saved as
    ``searches``, their mean and 95% interval per cell as ``tableB2``."""
    s = settings(p)
    searches = readings.run_searches(p, {"embedding": p.embeddings, "distance": p.distances,
                                         "embedding_fit": s["embedding_fits"], "reference": p.references},
                                     repeats=s["repeats"], label=f"{p.sampler} ", sampler=p.sampler, ranking="ls")
    save_results(p.run_dir, searches=searches, tableB2=_summary(searches))
    return searches


def table(p, searches: pd.DataFrame) -> pd.DataFrame:
    """Table B2 in our numbers: a row per (embedding, distance), a column per fit and arm (mean
    [95% interval] n, :func:`readings.arm_table`), and the paper's number (its authors' code, the
    same-epoch reading)."""
    fits = settings(p)["embedding_fits"]
    beside = pd.concat({fit: readings.arm_table(searches[searches.embedding_fit == fit], ["embedding", "distance"],
                                                arms=arms(p), fmt="{:.2f}") for fit in fits}, axis=1)
    beside[("paper", "")] = [paper.TABLE_B2.get(key) for key in beside.index]
    return beside


def claims(p, searches: pd.DataFrame) -> tuple[pd.DataFrame, str]:
    """Ours beside the paper's per combination and reading, within the fit the paper's method uses
    (the first of ``embedding_fits``), saved as ``comparison``; then per reading the means lowest
    first, PCA/L2 minus every other combination paired by seed (:func:`best_combination`, saved as
    ``paired``) and whether :data:`CLAIM` holds. It cannot be judged unless PCA/L2 and another
    combination ran."""
    fit = settings(p)["embedding_fits"][0]
    main = _summary(searches).query("embedding_fit == @fit")
    ours = comparison([(f"{NAMES[r.embedding]}, {r.distance}, {readings.READINGS[r.reference]}", r.mean,
                        paper.TABLE_B2[(r.embedding, r.distance)])
                       for r in main.itertuples() if (r.embedding, r.distance) in paper.TABLE_B2],
                      comparable=p.paper_scale, reason=p.scale_reason)
    save_results(p.run_dir, comparison=ours)
    lines = [ours.round(2).to_string(index=False)]
    if not ("pca" in p.embeddings and "l2" in p.distances and len(p.embeddings) * len(p.distances) > 1):
        return ours, "\n".join(lines + ["PCA/L2 and at least one other combination must run for the claim to be "
                                        "checked.", verdict(ours)])
    results = {r: best_combination(searches[(searches.embedding_fit == fit) & (searches.reference == r)])
               for r in p.references}
    save_results(p.run_dir, paired=pd.concat([t.assign(reference=r) for r, (t, _) in results.items()],
                                             ignore_index=True))
    for reference, (cells, holds) in results.items():
        means = main[main.reference == reference].set_index(["embedding", "distance"])["mean"].sort_values()
        lines += [f"\n{readings.READINGS[reference]}, {fit} fit: means lowest first: "
                  + ", ".join(f"{e}/{d} {m:.3f}" for (e, d), m in means.items()),
                  f"PCA/L2 minus each other combination, paired by seed over {cells.pairs.max()} search(es):",
                  cells.assign(difference=with_interval(cells.difference, cells.lo, cells.hi, "{:+.2f}"))[
                      ["other", "pairs", "difference", "best_better", "other_better", "verdict"]].to_string(index=False),
                  readings.reading_verdict(reference, ours, claim=CLAIM, holds=holds)]
    return ours, "\n".join(lines)
