"""LEGCNet's claims (Sahu et al., arXiv 2308.09955, §5) in our numbers: the runs of
:mod:`lshkit.studies.legcnet` summarised over seeds, each claim judged per data set on
differences paired by seed (same split, initialisation and sample order) by the kit's interval
rule (:func:`lshkit.stats.interval_verdict`), and the paper's figures set beside ours.
"""
from __future__ import annotations

import math

import pandas as pd

from lshkit import stats
from lshkit.report import comparison

__all__ = ["PAPER", "SUMMARY_METRICS", "MARGIN", "CLAIMS", "summarise", "summary_table", "paired", "claims",
           "claim_sentences", "beside_paper", "notes"]

#: The paper's figures and the settings of the authors' code, set beside ours (never used as results).
PAPER = {
    # §5: "for the Titanic, Vowel, and Cancer datasets, LEGCNet-FT achieves convergence in just
    # half the number of epochs required by the dense network".
    "ft_epochs_ratio": 0.5, "ft_epochs_ratio_datasets": ("Titanic", "Vowel", "Cancer"),
    # LEGCNet-PT decides after the first 10% of the epochs (the paper's definition of the variant).
    "pt_fraction": 0.1,
    # The paper's WeightWatcher check: every pruned layer is "well trained", alpha > 2.
    "weightwatcher_alpha_min": 2.0,
    # Authors' code (LE_window.m, gc_tests.ipynb): window, overlap, embedding, Granger lag and level.
    "window": 50, "overlap": 0.1, "emb_dim": 2, "max_lag": 14, "alpha": 0.05,
    # Data sets of the paper's experiments; ours are scikit-learn's bundled ones.
    "datasets": ("Cancer", "Titanic", "Banknote", "Vowel", "Iris", "Iris (3 features)"),
}

SUMMARY_METRICS = ("test_accuracy", "macro_f1", "sparsity", "params", "flops", "epochs_to_converge")


def _interval(frame: pd.DataFrame, by, value: str) -> pd.DataFrame:
    """:func:`lshkit.stats.summarise` with the interval's ends, ``low`` and ``high`` (NaN for one seed)."""
    out = stats.summarise(frame, by, value)
    return out.assign(low=out["mean"] - out.ci95, high=out["mean"] + out.ci95)


def summarise(rows: pd.DataFrame) -> pd.DataFrame:
    """Mean and 95% interval over seeds (:func:`lshkit.stats.summarise`) of each metric of
    :data:`SUMMARY_METRICS`, per data set and method: one row per data set, method and metric."""
    # Row by row, so that the groups come in the rows' order with the metrics inside each.
    tidy = rows.melt(id_vars=["dataset", "method"], value_vars=list(SUMMARY_METRICS), var_name="metric",
                     ignore_index=False).sort_index(kind="stable")
    return stats.summarise(tidy, ["dataset", "method", "metric"], "value")


def summary_table(summary: pd.DataFrame) -> pd.DataFrame:
    """:func:`summarise` as the notebook shows it: "mean ± half-width" per data set and method
    (rows) and metric (columns); the mean alone where there is no interval (one seed)."""
    cells = summary.assign(value=[f"{m:.3f}" + ("" if pd.isna(h) else f" ± {h:.3f}")
                                  for m, h in zip(summary["mean"], summary.ci95)])
    return cells.pivot_table(index=["dataset", "method"], columns="metric", values="value", aggfunc="first",
                             sort=False)


def paired(rows: pd.DataFrame, a: str, b: str, metric: str, *, ratio: bool = False) -> pd.DataFrame:
    """Per data set, the mean over seeds of ``a - b`` (or ``a / b``), paired by seed, with its 95%
    interval (:func:`lshkit.stats.summarise`: ``ci95``, and its ends ``low`` and ``high``)."""
    parts = []
    for dataset, group in rows.groupby("dataset", sort=False):
        wide = group.pivot(index="seed", columns="method", values=metric)
        parts.append(pd.DataFrame({"dataset": dataset, "value": wide[a] / wide[b] if ratio else wide[a] - wide[b]}))
    return _interval(pd.concat(parts), "dataset", "value").assign(
        a=a, b=b, metric=metric, kind="ratio" if ratio else "difference")


#: Non-inferiority margin for "similar accuracy / F1": one percentage point.
MARGIN = 0.01

CLAIMS = (
    # (claim, test) : how each paper claim is checked in our numbers.
    ("LEGCNet-FT keeps the dense network's accuracy and macro F1", "similar", "legcnet_ft"),
    ("LEGCNet-PT keeps the dense network's accuracy and macro F1", "similar", "legcnet_pt"),
    ("LEGCNet-FT has fewer parameters and FLOPs than the dense network", "smaller", "legcnet_ft"),
    ("LEGCNet-PT has fewer parameters and FLOPs than the dense network", "smaller", "legcnet_pt"),
    ("LEGCNet-FT converges in fewer epochs than the dense network (paper: half)", "faster", "legcnet_ft"),
    ("LEGCNet-PT converges in fewer epochs than the dense network", "faster", "legcnet_pt"),
    ("LEGCNet-FT is more accurate than magnitude pruning at its sparsity", "better:magnitude_ft", "legcnet_ft"),
    ("LEGCNet-FT is more accurate than random pruning at its sparsity", "better:random_ft", "legcnet_ft"),
    ("LEGCNet-PT is more accurate than magnitude pruning at its sparsity", "better:magnitude_pt", "legcnet_pt"),
    ("LEGCNet-PT is more accurate than random pruning at its sparsity", "better:random_pt", "legcnet_pt"),
)


def claims(rows: pd.DataFrame) -> pd.DataFrame:
    """Each claim of :data:`CLAIMS` (§5) per data set: the paired statistic, its 95% interval and
    the verdict of :func:`lshkit.stats.interval_verdict` on it.

    - similar: (pruned - dense) test accuracy and macro F1 each lie above -MARGIN (a
      non-inferiority margin, the margin itself included); the claim needs both
      (:func:`lshkit.stats.overall_verdict`).
    - smaller: the pruned share of weights lies above 0; it holds outright where every seed
      pruned a weight and does not hold where none did.
    - faster: the epochs ratio (pruned / dense) lies below 1. A run that never reaches the
      target counts as ``epochs + 1``.
    - better: (LEGCNet - baseline) test accuracy lies above 0.
    """
    out = []
    for claim, kind, method in CLAIMS:
        if kind == "similar":
            acc = paired(rows, method, "dense", "test_accuracy")
            f1 = paired(rows, method, "dense", "macro_f1")
            for (_, ra), (_, rf) in zip(acc.iterrows(), f1.iterrows()):
                verdict = stats.overall_verdict(stats.interval_verdict(r.low, r.high, threshold=-MARGIN, inclusive=True)
                                                for r in (ra, rf))
                out.append({"claim": claim, "dataset": ra.dataset, "statistic": "test accuracy minus dense",
                            "mean": ra["mean"], "low": ra.low, "high": ra.high,
                            "statistic_2": "macro F1 minus dense", "mean_2": rf["mean"], "low_2": rf.low,
                            "high_2": rf.high, "verdict": verdict})
        elif kind == "smaller":
            pruned = rows[rows.method == method]
            for _, r in _interval(pruned, "dataset", "sparsity").iterrows():
                # A run that pruned a weight has fewer parameters, whatever the spread over seeds.
                share = pruned.sparsity[pruned.dataset == r.dataset]
                verdict = (stats.VERDICTS[0] if (share > 0).all() else stats.VERDICTS[1] if (share == 0).all()
                           else stats.interval_verdict(r.low, r.high))
                out.append({"claim": claim, "dataset": r.dataset, "statistic": "share of weights pruned",
                            "mean": r["mean"], "low": r.low, "high": r.high, "verdict": verdict})
        elif kind == "faster":
            finished = rows.assign(epochs_to_converge=rows.epochs_to_converge.fillna(rows.epochs + 1))
            for _, r in paired(finished, method, "dense", "epochs_to_converge", ratio=True).iterrows():
                out.append({"claim": claim, "dataset": r.dataset, "statistic": "epochs to converge / dense",
                            "mean": r["mean"], "low": r.low, "high": r.high,
                            "verdict": stats.interval_verdict(r.low, r.high, better="below", threshold=1)})
        else:
            baseline = kind.split(":")[1]
            for _, r in paired(rows, method, baseline, "test_accuracy").iterrows():
                out.append({"claim": claim, "dataset": r.dataset, "statistic": f"test accuracy minus {baseline}",
                            "mean": r["mean"], "low": r.low, "high": r.high,
                            "verdict": stats.interval_verdict(r.low, r.high)})
    return pd.DataFrame(out)


def _statistic(r, suffix: str = "") -> str:
    mean, low, high = r[f"mean{suffix}"], r[f"low{suffix}"], r[f"high{suffix}"]
    ci = "" if math.isnan(low) or low == high else f", 95% CI [{low:+.3f}, {high:+.3f}]"
    return f"{r[f'statistic{suffix}']} {mean:+.3f}{ci}"


def claim_sentences(table: pd.DataFrame) -> list[str]:
    """One sentence per claim of :func:`claims`: its verdict over every data set
    (:func:`lshkit.stats.overall_verdict`), how the data sets split where they disagree, and each
    data set's verdict with its statistic and 95% interval."""
    out = []
    for claim, group in table.groupby("claim", sort=False):
        counts = group.verdict.value_counts()
        parts = [f"{v} on {counts[v]}" for v in stats.VERDICTS if v in counts]
        split = "" if len(parts) == 1 else \
            f" (it {', '.join(parts[:-1])} and {parts[-1]} of the {len(group)} data sets)"
        detail = "; ".join(
            f"on {r.dataset} it {r.verdict} ({_statistic(r)}"
            + (f", {_statistic(r, '_2')}" if "statistic_2" in r and isinstance(r.statistic_2, str) else "") + ")"
            for _, r in group.iterrows())
        out.append(f"The claim that {claim} {stats.overall_verdict(group.verdict)} in ours{split}: {detail}.")
    return out


def beside_paper(rows: pd.DataFrame) -> pd.DataFrame:
    """The paper's convergence ratio (§5: LEGCNet-FT needs half the dense network's epochs on
    Titanic, Vowel and Cancer) beside ours per data set (:func:`lshkit.report.comparison`),
    for orientation only."""
    ratios = paired(rows, "legcnet_ft", "dense", "epochs_to_converge", ratio=True)
    return comparison([(f"{r.dataset}: epochs to converge, LEGCNet-FT / dense", r["mean"], PAPER["ft_epochs_ratio"])
                       for _, r in ratios.iterrows()], comparable=False, reason=(
        "the paper's ratios come from its Titanic, Vowel and 9-feature Cancer files with per-data-set learning "
        "rates and fixed accuracy thresholds, ours from scikit-learn's bundled sets at one learning rate with a "
        "threshold of 99% of the dense network's final training accuracy"))


def notes(rows: pd.DataFrame, plan) -> list[str]:
    """What the notebook says beside the claims: when LEGCNet-PT decided (the paper: after 10% of
    the epochs), the share of weights LEGCNet-FT pruned per data set, what is not measured, and
    what a smoke run can say; ``plan``: the run's :class:`lshkit.studies.legcnet.Plan`."""
    pruned = rows[rows.method == "legcnet_ft"].groupby("dataset", sort=False).sparsity.mean()
    lines = [f"LEGCNet-PT decided after {plan.config.pt_fraction:.0%} of the epochs "
             f"(paper: {PAPER['pt_fraction']:.0%}).",
             "Share of weights LEGCNet-FT pruned: " + ", ".join(f"{d} {v:.1%}" for d, v in pruned.items()),
             "Not measured here: WeightWatcher's layer alpha (> 2 in the paper) and SHAP feature importances."]
    if plan.budget == "smoke":
        lines.append("Smoke budget: two seeds of iris at half its epochs exercise the code; they say nothing "
                     "about the method.")
    return lines
