"""The predictor shoot-out: which early signal of a pruned RNN foretells its final perplexity?

Three papers claim a predictor of a sparse recurrent network's performance; here they meet on the
same candidates (every pruned candidate of an atlas, each trained to the end), at each early epoch E:

- the LS distance to the dense model (Zheng & Shlizerman, arXiv 2506.07975, §3.2, Fig. 1), as a
  search ranks by it (:func:`lshkit.experiments.predictive_power.early_signals`), under each reading of the dense
  reference (:data:`lshkit.embedding.REFERENCES`: the dense LS at the candidate's epoch, as the
  authors' code, or its final LS, as the paper's text reads), one predictor per reading
  (:data:`LS_PREDICTORS`);
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

from lshkit import embedding as emb
from lshkit.atlas import Atlas
from lshkit.checks import check_int
from lshkit.graph import gap_score, out_of_fold
from lshkit.stats import paired_difference, rank_correlation
from lshkit.experiments.predictive_power import early_signals
from lshkit.experiments.readings import paired_replays, with_arms


#: The LS distance's predictor under each reading of the dense reference.
LS_PREDICTORS = {"same_epoch": "ls_same_epoch", "final": "ls_final"}


#: The predictors, in the order tables show them (a frame holds the LS ones of the readings it was built with).
PREDICTORS = (*LS_PREDICTORS.values(), "valid_loss", "neg_gap_min", "neg_gap_mean", "graph_forest")


LABELS = {"ls_same_epoch": "LS distance, same-epoch reference", "ls_final": "LS distance, final reference",
          "valid_loss": "validation loss", "neg_gap_min": "spectral gap, weakest layer (negated)",
          "neg_gap_mean": "spectral gap, layer mean (negated)",
          "graph_forest": "random forest on mask graph properties"}


def present(frame: pd.DataFrame) -> list[str]:
    """The predictors of :data:`PREDICTORS` that ``frame`` holds, in their order."""
    return [p for p in PREDICTORS if p in frame.columns]


def graph_features(graphs: pd.DataFrame) -> list[str]:
    """The hidden-to-hidden masks' graph properties (``<layer>.<property>`` columns, as
    :func:`lshkit.graph.mask_graph_features` names them) that vary over the rows."""
    columns = [c for c in graphs.columns if "weight_hh" in c]
    return [c for c in columns if graphs[c].nunique() > 1]


def shootout_signals(atlas: Atlas, epochs=range(6), *, references=emb.REFERENCES, folds: int = 5, trees: int = 300,
                     seed: int = 0, **ls_space) -> pd.DataFrame:
    """One row per (pruned candidate of the atlas's main training seed, epoch E): every predictor
    of :data:`PREDICTORS` at E (the LS distance once per reading in ``references``:
    :data:`LS_PREDICTORS`), the raw ``gap_min`` and ``gap_mean``, and the final validation
    and test perplexity, with the candidate's configuration. ``ls_space``: the LS setting of
    :func:`lshkit.experiments.predictive_power.early_signals` (default the paper convention, PCA, L2). The forest (``trees`` trees, ``folds`` folds, seeded
    by ``seed``) is fitted per epoch on that epoch's graph properties alone. The atlas's mask
    graphs must reach the last epoch (``python -m lshkit atlas graphs``)."""
    check_int("folds", folds, low=2)
    check_int("trees", trees, low=1)
    references = emb.check_references(references)
    epochs = list(epochs)
    signals = None
    for reference in references:
        ls = early_signals(atlas, epochs, reference=reference, **ls_space)
        ls = ls.rename(columns={"ls_distance": LS_PREDICTORS[reference]})
        ls = ls.drop(columns=[c for c in ls.columns if c.startswith("ls_distance_")])
        signals = ls if signals is None else signals.merge(ls[["name", "epoch", LS_PREDICTORS[reference]]],
                                                           on=["name", "epoch"], validate="one_to_one")
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
    frame = pd.concat(parts, ignore_index=True)
    params = [c for c in signals.columns if c in atlas.spec.grid()[0]]
    return frame[["name", *params, "epoch", *present(frame), "gap_min", "gap_mean", "final_valid_ppl",
                  "final_test_ppl"]]


def predictor_shootout(frame: pd.DataFrame, *, n_boot: int = 2000, seed: int = 0) -> tuple[pd.DataFrame, pd.DataFrame]:
    """``(correlations, differences)`` from :func:`shootout_signals`' frame. ``correlations``: per
    (predictor, epoch), Spearman's ρ with the final validation perplexity and its bootstrap 95%
    interval over candidates. ``differences``: per LS predictor of the frame (``against``, one per
    reading), every other predictor (the other reading's included) and epoch, ρ(predictor) −
    ρ(LS distance) and its paired interval; positive means the predictor ranks the candidates more
    faithfully than the LS under that reading does. Every interval resamples the same candidates."""
    missing = sorted(set(PREDICTORS[len(LS_PREDICTORS):]) - set(frame.columns))
    if missing:
        raise ValueError(f"the frame lacks the predictor columns {missing}; build it with shootout_signals")
    predictors = present(frame)
    ls = [p for p in predictors if p in LS_PREDICTORS.values()]
    if not ls:
        raise ValueError(f"the frame holds no LS predictor (one of {list(LS_PREDICTORS.values())}); "
                         "build it with shootout_signals")
    corr = pd.concat([rank_correlation(frame, p, n_boot=n_boot, seed=seed).rename(columns={"signal": "predictor"})
                      for p in predictors], ignore_index=True)
    diff = pd.concat([paired_difference(frame, p, against, n_boot=n_boot, seed=seed)
                      .rename(columns={"a": "predictor", "b": "against"})
                      for against in ls for p in predictors if p != against], ignore_index=True)
    return corr, diff


def within_groups(frame: pd.DataFrame, by: str, epoch: int, predictors=None, *, n_boot: int = 2000,
                  seed: int = 0) -> pd.DataFrame:
    """Spearman's ρ of each predictor (default: every one of :data:`PREDICTORS` the frame holds)
    with the final validation perplexity at ``epoch`` within each value of the configuration field
    ``by`` (e.g. ``death_rate``), with bootstrap 95% intervals: whether a predictor ranks
    candidates that share that setting, or only tells the settings apart."""
    predictors = present(frame) if predictors is None else predictors
    if by not in frame.columns:
        raise ValueError(f"by={by!r} is not a column of the frame; choose one of {sorted(frame.columns)}")
    at = frame[frame.epoch == epoch]
    if at.empty:
        raise ValueError(f"epoch={epoch!r} is not in the frame; it has {sorted(int(e) for e in frame.epoch.unique())}")
    return pd.concat([rank_correlation(group, p, n_boot=n_boot, seed=seed).rename(columns={"signal": "predictor"})
                      .assign(**{by: value}) for value, group in at.groupby(by) for p in predictors],
                     ignore_index=True)


def rules_versus(replays: pd.DataFrame, a: str = "gap", *, by=("sampler",), value: str = "test_ppl") -> pd.DataFrame:
    """The removal rule ``a`` against every other rule of replayed searches (a frame of
    :func:`lshkit.atlas.replay.replay_sweep` with a ``ranking`` axis and, for LS ranking, a ``reference``
    one): the rules are the arms of :func:`lshkit.experiments.readings.with_arms` ("gap", "loss", "LS (same
    epoch)", "LS (final)"), and each comparison is :func:`lshkit.experiments.readings.paired_replays` of ``a``
    minus the other, paired by seed (the same seed gives every rule the same initial pool), per
    group of ``by``. Columns as there (``a_better``, ``other_better``) and ``against``."""

    arms = with_arms(replays)
    if a not in set(arms.arm):
        raise ValueError(f"a={a!r} is not a rule of the replays; they hold {sorted(set(arms.arm))}")
    others = [arm for arm in pd.unique(arms.arm) if arm != a]
    tables = [paired_replays(arms[arms.arm.isin([a, other])], a=a, b=other, column="arm", by=by, value=value)
              .rename(columns={f"{a}_better": "a_better", f"{other}_better": "other_better"}).assign(against=other)
              for other in others]
    return pd.concat(tables, ignore_index=True)
