"""The predictor shoot-out: which early signal of a pruned RNN foretells its final perplexity?

Three papers claim a predictor of a sparse recurrent network's performance; here they meet on the
same candidates (every pruned candidate of an atlas, each trained to the end), at each early epoch E:

- the LS distance to the dense model (Zheng & Shlizerman, arXiv 2506.07975, §3.2, Fig. 1), as a
  search ranks by it (:func:`lshkit.evidence.early_signals`);
- the validation loss at E, the loss-based search of their Table 2;
- the spectral gap of the masks seen as bipartite graphs, the smallest over the layers and the mean
  (arXiv 2403.11100: a positive gap to the Ramanujan bound goes with preserved accuracy;
  :func:`lshkit.graph.spectral_gap`);
- a random forest on the graph properties of the hidden-to-hidden masks (arXiv 2407.20601;
  :func:`lshkit.graph.mask_graph_features`), cross-validated so that no candidate's prediction
  comes from a forest that saw it (:func:`lshkit.graph.out_of_fold`).

Every predictor is a score oriented as a search ranks, lower expected better: the LS distance, the
loss and the forest's predicted perplexity as they are, the gaps negated (a larger gap is expected
better). So a positive Spearman ρ with the final perplexity means a predictor ranks the candidates
as their final perplexity does, for all of them alike.
"""
from __future__ import annotations

import pandas as pd

from lshkit.atlas import Atlas
from lshkit.checks import check_int
from lshkit.evidence import early_signals, paired_difference, rank_correlation
from lshkit.graph import gap_score, out_of_fold

__all__ = ["PREDICTORS", "LABELS", "shootout_signals", "predictor_shootout", "within_groups", "graph_features"]

#: The predictors, in the order tables show them.
PREDICTORS = ("ls_distance", "valid_loss", "neg_gap_min", "neg_gap_mean", "graph_forest")
LABELS = {"ls_distance": "LS distance to the dense model", "valid_loss": "validation loss",
          "neg_gap_min": "spectral gap, weakest layer (negated)", "neg_gap_mean": "spectral gap, layer mean (negated)",
          "graph_forest": "random forest on mask graph properties"}


def graph_features(graphs: pd.DataFrame) -> list[str]:
    """The hidden-to-hidden masks' graph properties (``<layer>.<property>`` columns, as
    :func:`lshkit.graph.mask_graph_features` names them) that vary over the rows."""
    columns = [c for c in graphs.columns if "weight_hh" in c]
    return [c for c in columns if graphs[c].nunique() > 1]


def shootout_signals(atlas: Atlas, epochs=range(6), *, folds: int = 5, trees: int = 300, seed: int = 0,
                     **ls_space) -> pd.DataFrame:
    """One row per (pruned candidate of the atlas's main training seed, epoch E): every predictor
    of :data:`PREDICTORS` at E, the raw ``gap_min`` and ``gap_mean``, and the final validation
    and test perplexity, with the candidate's configuration. ``ls_space``: the LS setting of
    :func:`lshkit.evidence.early_signals` (default the paper convention, PCA, L2). The forest (``trees`` trees, ``folds`` folds, seeded
    by ``seed``) is fitted per epoch on that epoch's graph properties alone. The atlas's mask
    graphs must reach the last epoch (``python -m lshkit atlas graphs``)."""
    check_int("folds", folds, low=2)
    check_int("trees", trees, low=1)
    epochs = list(epochs)
    signals = early_signals(atlas, epochs, **ls_space)
    for name, epoch in signals[["name", "epoch"]].itertuples(index=False):
        atlas.graph(name, epoch)  # a missing epoch is a clear error naming the command that takes it
    graphs = atlas.graph_epochs()
    features = graph_features(graphs[graphs.epoch.isin(epochs)])
    frame = signals.merge(graphs[["name", "epoch", "gap_min", "gap_mean", *features]], on=["name", "epoch"],
                          how="left", validate="one_to_one")
    frame["neg_gap_min"], frame["neg_gap_mean"] = frame.gap_min.map(gap_score), frame.gap_mean.map(gap_score)
    parts = []
    for _, group in frame.groupby("epoch", sort=True):
        predicted, _ = out_of_fold(group, "final_valid_ppl", features, folds=folds, trees=trees, seed=seed)
        parts.append(group.assign(graph_forest=predicted))
    params = [c for c in signals.columns if c in atlas.spec.grid()[0]]
    keep = ["name", *params, "epoch", *PREDICTORS, "gap_min", "gap_mean", "final_valid_ppl", "final_test_ppl"]
    return pd.concat(parts, ignore_index=True)[keep]


def predictor_shootout(frame: pd.DataFrame, *, n_boot: int = 2000, seed: int = 0) -> tuple[pd.DataFrame, pd.DataFrame]:
    """``(correlations, differences)`` from :func:`shootout_signals`' frame. ``correlations``: per
    (predictor, epoch), Spearman's ρ with the final validation perplexity and its bootstrap 95%
    interval over candidates. ``differences``: per (predictor other than the LS distance, epoch),
    ρ(predictor) − ρ(LS distance) and its paired interval; positive means the predictor ranks the
    candidates more faithfully than the LS does. Every interval resamples the same candidates."""
    missing = sorted(set(PREDICTORS) - set(frame.columns))
    if missing:
        raise ValueError(f"the frame lacks the predictor columns {missing}; build it with shootout_signals")
    corr = pd.concat([rank_correlation(frame, p, n_boot=n_boot, seed=seed).rename(columns={"signal": "predictor"})
                      for p in PREDICTORS], ignore_index=True)
    diff = pd.concat([paired_difference(frame, p, "ls_distance", n_boot=n_boot, seed=seed)
                      .rename(columns={"a": "predictor", "b": "against"})
                      for p in PREDICTORS if p != "ls_distance"], ignore_index=True)
    return corr, diff


def within_groups(frame: pd.DataFrame, by: str, epoch: int, predictors=PREDICTORS, *, n_boot: int = 2000,
                  seed: int = 0) -> pd.DataFrame:
    """Spearman's ρ of each predictor with the final validation perplexity at ``epoch`` within
    each value of the configuration field ``by`` (e.g. ``death_rate``), with bootstrap 95%
    intervals: whether a predictor ranks candidates that share that setting, or only tells the
    settings apart."""
    if by not in frame.columns:
        raise ValueError(f"by={by!r} is not a column of the frame; choose one of {sorted(frame.columns)}")
    at = frame[frame.epoch == epoch]
    if at.empty:
        raise ValueError(f"epoch={epoch!r} is not in the frame; it has {sorted(int(e) for e in frame.epoch.unique())}")
    return pd.concat([rank_correlation(group, p, n_boot=n_boot, seed=seed).rename(columns={"signal": "predictor"})
                      .assign(**{by: value}) for value, group in at.groupby(by) for p in predictors],
                     ignore_index=True)
