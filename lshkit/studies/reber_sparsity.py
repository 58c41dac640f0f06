"""The Reber-grammar sparsity study: Darji, "Investigating Sparsity in Recurrent Neural Networks"
(arXiv 2407.20601), as ``reber_sparsity.ipynb`` runs it.

The thesis (abstract) trains RNN-tanh, RNN-ReLU, LSTM and GRU on Reber-grammar strings and
reports that 80–90% of the weights can be pruned without a significant loss of accuracy, that
LSTM and GRU are the most resilient, that GRU keeps its accuracy with 100% of its
hidden-to-hidden weights removed, and that a random forest predicts the accuracy of networks
with random-graph masks from the masks' graph properties (R² 0.81 for GRU, poor for RNN-tanh;
node count and betweenness centrality the most important). Here: the pruning curves
(:func:`pruning_study`), networks trained without any recurrent weight (:func:`no_recurrence`),
the random-graph networks (:func:`graph_study`) and their forests (:func:`forests`), each claim
judged in our numbers (:func:`claim_lines`). The data is :mod:`lshkit.studies.reber`, the models
:mod:`lshkit.studies.sequence`.
"""
from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np
import pandas as pd

from lshkit.checks import check_number
from lshkit.graph import PROPERTY_FEATURES, predict_from_properties
from lshkit.report import comparison
from lshkit.stats import VERDICTS
from lshkit.studies.random_graphs import random_graph_study, sample_graph_specs
from lshkit.studies.reber import make_reber
from lshkit.studies.sequence import TENTHS, VARIANTS, FitConfig, pruning_curve, summarise, train_with_mask

__all__ = ["NAMES", "ReberStudy", "REBER_PRESETS", "THESIS", "pruning_study", "prunable_sparsity", "no_recurrence",
           "no_recurrence_summary", "graph_study", "forests", "beside_thesis", "claim_lines"]

#: The variants as the thesis names them.
NAMES = {"rnn_tanh": "RNN-tanh", "rnn_relu": "RNN-ReLU", "lstm": "LSTM", "gru": "GRU"}


@dataclass(frozen=True)
class ReberStudy:
    """Sizes of the Reber sparsity study (``reber_sparsity.ipynb``) per budget: the pruning
    study (dense ``epochs``, then ``finetune_epochs`` with the mask) over ``seeds`` repeats, and
    ``graphs`` random-graph masks over ``node_counts``, each network trained ``graph_epochs``."""
    train_strings: int
    test_strings: int
    hidden_size: int
    epochs: int
    finetune_epochs: int
    seeds: int
    sparsities: tuple
    graphs: int
    node_counts: tuple
    graph_epochs: int
    lr: float = 0.03
    batch_size: int = 16

    def fit_config(self, epochs: int) -> FitConfig:
        return FitConfig(epochs=epochs, batch_size=self.batch_size, lr=self.lr)


REBER_PRESETS = {
    "smoke": ReberStudy(200, 200, 8, 10, 1, 2, (0.0, 0.5, 0.9, 1.0), 12, (3, 4, 6, 8), 3),
    "low": ReberStudy(400, 500, 16, 10, 2, 3, TENTHS, 24, (3, 4, 6, 8, 10, 12, 14, 16), 3),
    "moderate": ReberStudy(400, 500, 16, 10, 2, 3, TENTHS, 36, (3, 4, 6, 8, 10, 12, 14, 16), 3),
    "high": ReberStudy(400, 500, 16, 10, 2, 3, TENTHS, 60, (3, 4, 6, 8, 10, 12, 14, 16), 3),
}

#: The Reber thesis's headline numbers (arXiv 2407.20601, abstract): the share of
#: weights prunable without significant loss, and the random forest's R² for GRU.
THESIS = {"prunable_low": 0.8, "prunable_high": 0.9, "r2_gru": 0.81}


def _test_strings(preset: ReberStudy, grammar: str, seed: int):
    """The test strings of every repeat: fresh strings, the same for all (seed 10,000 + seed)."""
    return make_reber(preset.test_strings, grammar, seed=10_000 + seed)


def pruning_study(preset: ReberStudy, grammar: str = "reber", *, seed: int = 0, progress: bool = False) -> pd.DataFrame:
    """Every variant's pruning curve (:func:`lshkit.studies.sequence.pruning_curve`: 0% to 100%
    of the input-to-hidden, the hidden-to-hidden or both matrices removed by magnitude, scored
    as pruned and after ``preset.finetune_epochs`` of fine-tuning) over ``preset.seeds`` repeats:
    repeat i trains on its own strings, model and data order (seed + i)."""
    test = _test_strings(preset, grammar, seed)
    fit_cfg, ft_cfg = preset.fit_config(preset.epochs), preset.fit_config(preset.finetune_epochs)
    curves = []
    for i in range(preset.seeds):
        train = make_reber(preset.train_strings, grammar, seed=seed + i)
        for variant in VARIANTS:
            t0 = time.perf_counter()
            curves.append(pruning_curve(variant, train, test, hidden_size=preset.hidden_size, fit_cfg=fit_cfg,
                                        finetune_cfg=ft_cfg, sparsities=preset.sparsities, seed=seed + i))
            if progress:
                print(f"seed {seed + i} {NAMES[variant]:8s} dense accuracy {curves[-1].dense_accuracy.iloc[0]:.3f} "
                      f"({time.perf_counter() - t0:.0f} s)")
    return pd.concat(curves, ignore_index=True)


def prunable_sparsity(frame: pd.DataFrame, tolerance: float = 0.02) -> pd.DataFrame:
    """Per variant, target, method and fine-tuning: the largest sparsity up to which the mean
    accuracy over seeds stays within ``tolerance`` of the dense mean at every level (the
    thesis's "without a significant loss"), the accuracy with every weight of the target
    removed, and the area under the accuracy-sparsity curve (normalised to the levels' span)."""
    check_number("tolerance", tolerance, low=0)
    keys = ["variant", "target", "method", "finetuned"]
    s = summarise(frame, keys + ["sparsity"])
    rows = []
    for key, g in s.groupby(keys):
        g = g.sort_values("sparsity")
        dense = float(frame.loc[(frame[keys] == pd.Series(dict(zip(keys, key)))).all(axis=1), "dense_accuracy"].mean())
        ok = (g["mean"] >= dense - tolerance).to_numpy()
        last = len(ok) if ok.all() else int(np.argmin(ok))
        rows.append({**dict(zip(keys, key)), "dense_accuracy": dense,
                     "prunable": float(g.sparsity.iloc[last - 1]) if last else float("nan"),
                     "accuracy_at_100": float(g["mean"].iloc[-1]) if g.sparsity.iloc[-1] == 1 else float("nan"),
                     "auc": float(np.trapezoid(g["mean"], g.sparsity) / (g.sparsity.max() - g.sparsity.min()))})
    return pd.DataFrame(rows)


def no_recurrence(preset: ReberStudy, grammar: str = "reber", *, seed: int = 0) -> pd.DataFrame:
    """Every variant trained from scratch (``preset.epochs``, the dense schedule) with every
    hidden-to-hidden weight held at zero, per repeat as in :func:`pruning_study`: the thesis's
    GRU claim without the doubt that a short fine-tuning leaves. One row per variant and seed."""
    test = _test_strings(preset, grammar, seed)
    empty = np.zeros((preset.hidden_size, preset.hidden_size), dtype=bool)
    rows = []
    for i in range(preset.seeds):
        train = make_reber(preset.train_strings, grammar, seed=seed + i)
        for variant in VARIANTS:
            out = train_with_mask(variant, empty, train, test, hidden_size=preset.hidden_size,
                                  fit_cfg=preset.fit_config(preset.epochs), seed=seed + i)
            out.pop("mask")
            rows.append({"variant": variant, "seed": seed + i, **out})
    return pd.DataFrame(rows)


def no_recurrence_summary(frame: pd.DataFrame) -> pd.DataFrame:
    """:func:`no_recurrence`'s accuracy per variant (index) over seeds, its interval's ends
    clipped to [0, 1], where an accuracy lies."""
    out = summarise(frame, ["variant"]).set_index("variant")
    out[["low", "high"]] = out[["low", "high"]].clip(0, 1)
    return out


def graph_study(preset: ReberStudy, grammar: str = "reber", *, seed: int = 0) -> pd.DataFrame:
    """The random-structure experiment at the preset's size: ``preset.graphs`` graph specs over
    ``preset.node_counts`` (:func:`lshkit.studies.random_graphs.sample_graph_specs`), every
    variant trained with each mask for ``preset.graph_epochs`` on the strings of ``seed``
    (:func:`lshkit.studies.random_graphs.random_graph_study`). The schedule is short on purpose:
    in our pilot almost every mask reached 100% after 15 epochs, leaving nothing to predict."""
    specs = sample_graph_specs(preset.graphs, preset.node_counts, seed=seed)
    train = make_reber(preset.train_strings, grammar, seed=seed)
    return random_graph_study(VARIANTS, specs, train, _test_strings(preset, grammar, seed),
                              hidden_size=preset.hidden_size, fit_cfg=preset.fit_config(preset.graph_epochs), seed=seed)


def forests(graphs: pd.DataFrame, *, seed: int = 0) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Per variant, the thesis's random forest of accuracy from the masks' graph properties
    (:func:`lshkit.graph.predict_from_properties`): ``(fits, importances)``, one row of
    cross-validated R² with its bootstrap interval per variant, and every property's importance."""
    fits, importances = [], []
    for variant in VARIANTS:
        fitted, imp = predict_from_properties(graphs[graphs.variant == variant], "accuracy", PROPERTY_FEATURES,
                                              seed=seed)
        fits.append({"variant": variant, **fitted})
        importances.append(imp.assign(variant=variant))
    return pd.DataFrame(fits), pd.concat(importances, ignore_index=True)


def _pruned_shares(prunable: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    """:func:`prunable_sparsity` with both matrices pruned, by variant and fine-tuning, and
    GRU's with the hidden-to-hidden matrix pruned, by fine-tuning."""
    both = prunable[prunable.target == "both"].set_index(["variant", "finetuned"])
    gru_hh = prunable[(prunable.variant == "gru") & (prunable.target == "hh")].set_index("finetuned")
    return both, gru_hh


def beside_thesis(prunable: pd.DataFrame, no_rec: pd.DataFrame, fits: pd.DataFrame,
                  preset: ReberStudy) -> pd.DataFrame:
    """The thesis's numbers beside ours (:func:`lshkit.report.comparison`), for orientation
    only: its model sizes, schedule and node-to-unit mapping are not in the summary we work
    from. ``no_rec``: :func:`no_recurrence_summary`; ``fits``: :func:`forests`' first."""
    both, gru_hh = _pruned_shares(prunable)
    rows = [("prunable share, both matrices, fine-tuned (median over variants)",
             float(both.xs(True, level="finetuned").prunable.median()), THESIS["prunable_low"]),
            ("prunable share, both matrices, no fine-tuning (median over variants)",
             float(both.xs(False, level="finetuned").prunable.median()), THESIS["prunable_low"]),
            ("GRU accuracy without hidden-to-hidden weights (trained so), minus dense",
             no_rec.loc["gru", "mean"] - gru_hh.loc[True, "dense_accuracy"], 0.0),
            ("random-forest R², GRU", fits.set_index("variant").loc["gru", "r2"], THESIS["r2_gru"])]
    return comparison(rows, comparable=False, reason=(
        "the thesis's model sizes, training schedule and node-to-unit mapping are not given in the summary we work "
        f"from, and ours are one-layer networks of {preset.hidden_size} units trained for {preset.epochs} epochs"))


def _verdict(holds: bool | None) -> str:
    return VERDICTS[2] if holds is None else VERDICTS[0] if holds else VERDICTS[1]


def claim_lines(prunable: pd.DataFrame, no_rec: pd.DataFrame, fits: pd.DataFrame, importances: pd.DataFrame,
                preset: ReberStudy, tolerance: float = 0.02) -> list[str]:
    """The thesis's claims judged in our numbers, one line each, with the evidence. The pruning
    claims are inconclusive where a dense network got fewer than half the test strings right
    (too little training to learn the grammar, as at the smoke budget); a claim is also
    inconclusive where the variants lie within ``tolerance`` of each other or the forest has no
    variance to explain. ``no_rec``: :func:`no_recurrence_summary`; ``fits, importances``:
    :func:`forests`."""
    check_number("tolerance", tolerance, low=0)
    both, gru_hh = _pruned_shares(prunable)
    median_ft = float(both.xs(True, level="finetuned").prunable.median())
    auc = prunable.groupby("variant").auc.mean().sort_values(ascending=False)
    others_hh = prunable[(prunable.variant != "gru") & (prunable.target == "hh") & prunable.finetuned]
    r2 = fits.set_index("variant")
    learned = bool(prunable.dense_accuracy.min() >= 0.5)
    lines = [] if learned else [
        "- Some dense networks got fewer than half the test strings right: the pruning claims are inconclusive "
        "at this scale (the smoke budget trains too briefly to learn the grammar)."]

    def say(claim, holds, evidence):
        lines.append(f"- The thesis's claim that {claim} {_verdict(holds)} at this scale: {evidence}.")

    def pct(x):
        return "none" if not np.isfinite(x) else f"{x:.0%}"

    sizes = ", ".join(f"{NAMES[v]} {pct(both.loc[(v, True), 'prunable'])}/{pct(both.loc[(v, False), 'prunable'])}"
                      for v in VARIANTS)
    say("80-90% of the weights can be removed without a significant loss", (median_ft >= 0.8) if learned else None,
        f"removing both matrices, the largest share within {tolerance:g} of dense accuracy is (fine-tuned/not) {sizes}")
    spread = auc.max() - auc.min()
    say("LSTM and GRU are the most resilient to pruning",
        None if spread < tolerance or not learned else set(auc.index[:2]) == {"lstm", "gru"},
        "mean area under the accuracy-sparsity curves (all targets, with and without fine-tuning): "
        + ", ".join(f"{NAMES[v]} {a:.3f}" for v, a in auc.items())
        + (" (within the tolerance of each other)" if spread < tolerance else ""))
    gru = no_rec.loc["gru"]
    interval = f"{gru.low:.3f} to {gru.high:.3f}; " if np.isfinite(gru.ci95) else ""
    say("GRU keeps its accuracy with 100% of the hidden-to-hidden weights removed",
        bool(gru["mean"] >= gru_hh.loc[True, "dense_accuracy"] - tolerance) if learned else None,
        f"trained without any recurrent weight GRU scores {gru['mean']:.3f} "
        f"({interval}dense {gru_hh.loc[True, 'dense_accuracy']:.3f}), "
        + ", ".join(f"{NAMES[v]} {no_rec.loc[v, 'mean']:.3f}" for v in VARIANTS if v != "gru")
        + f"; pruned to no recurrent weight, GRU scores {gru_hh.loc[True, 'accuracy_at_100']:.3f} after "
        f"{preset.finetune_epochs} epoch{'s' if preset.finetune_epochs != 1 else ''} of fine-tuning and "
        f"{gru_hh.loc[False, 'accuracy_at_100']:.3f} without, fine-tuned "
        + ", ".join(f"{NAMES[v]} {a:.3f}" for v, a in zip(others_hh.variant, others_hh.accuracy_at_100)))
    fit_gru, fit_tanh = r2.loc["gru"], r2.loc["rnn_tanh"]
    say("the random forest fits GRU with R² = 0.81",
        None if not np.isfinite(fit_gru.r2) else bool(fit_gru.r2_low <= THESIS["r2_gru"] <= fit_gru.r2_high),
        f"ours is {fit_gru.r2:.2f} (95% interval {fit_gru.r2_low:.2f} to {fit_gru.r2_high:.2f}, "
        f"{int(fit_gru.rows)} networks)")
    say("the fit is poor for RNN-tanh",
        None if not (np.isfinite(fit_tanh.r2) and np.isfinite(fit_gru.r2))
        else bool(fit_tanh.r2 < 0.5 and fit_tanh.r2 < fit_gru.r2),
        f"ours is {fit_tanh.r2:.2f} ({fit_tanh.r2_low:.2f} to {fit_tanh.r2_high:.2f}) against GRU's {fit_gru.r2:.2f}")
    tops = importances.groupby("variant").head(2).groupby("variant").feature.apply(set)
    hits = {v: "nodes" in f and bool(f & {"mean_betweenness", "max_betweenness"}) for v, f in tops.items()}
    say("node count and betweenness centrality are the most important properties",
        None if fits.r2.isna().any() or (any(hits.values()) and not all(hits.values())) else all(hits.values()),
        "the two most important per variant are "
        + "; ".join(f"{NAMES[v]}: {', '.join(sorted(f))}" for v, f in tops.items()))
    return lines
