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
from lshkit.atlas.replay import grid_optimum, replay_sweep
from lshkit.checks import check_choice, check_int
from lshkit.graph import gap_score, out_of_fold, predict_from_properties
from lshkit.io import run_record
from lshkit.report import save_results, with_interval
from lshkit.stats import interval_verdict, paired_difference, rank_correlation, summarise
from lshkit.experiments.predictive_power import early_signals
from lshkit.experiments.readings import READING_LABELS, READINGS, paired_replays, with_arms


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


#: The :data:`lshkit.report.PALETTE` entry each predictor is drawn in.
PREDICTOR_COLOURS = {**{predictor: READING_LABELS[r] for r, predictor in LS_PREDICTORS.items()},
                     "valid_loss": "loss ranking", "neg_gap_min": "spectral gap (min)",
                     "neg_gap_mean": "spectral gap (mean)", "graph_forest": "graph forest"}


#: The removal rules of the replayed searches (:func:`lshkit.experiments.readings.with_arms`' arms),
#: in the order figures show them, as figures name them and with their PALETTE entry.
RULE_LABELS = {"gap": "spectral gap (weakest layer)",
               **{READINGS[r]: f"LS distance, {READING_LABELS[r]}" for r in LS_PREDICTORS}, "loss": "validation loss"}
RULE_COLOURS = {"gap": "spectral gap (min)", **{READINGS[r]: READING_LABELS[r] for r in LS_PREDICTORS},
                "loss": "loss ranking"}


#: Rounds of the proposing samplers' replays: the rounds whose rankings fall within the committed
#: mask graphs (epochs 1-5, one epoch per round).
ROUNDS = 5


def run(p) -> dict:
    """The predictor shoot-out on every pruned candidate of the atlas ``p.atlas``, as a notebook's
    validated parameters ``p`` (:func:`lshkit.report.validate`) ask: the predictors at E =
    0..``p.max_epoch`` (:func:`shootout_signals`), their ρ with the final validation perplexity and
    each against the LS distance under each reading (:func:`predictor_shootout`), within one death
    rate (:func:`within_groups`), the forest's own R² and importances at the last epoch
    (:func:`lshkit.graph.predict_from_properties`), the gap as a removal rule in replayed searches
    (grid search, then ``p.repeats`` replays of random search, TPE and ATPE, :func:`rules_versus`),
    and the verdicts at E = 3, the paper's epochs per round. The parameters are checked before
    anything runs; the run is recorded in ``p.run_dir/run.json`` and its results saved beside it.

    Returns the texts the notebook prints (``candidates``, ``rho``, ``within``, ``forest``,
    ``grid_rules``, ``proposing_rules``, ``verdict``) and the figures' inputs: ``correlations``,
    ``predictors`` (those of the frame, in order), ``proposing`` (every replay, with its ``rule``
    as :data:`RULE_LABELS` names it), ``rule_order`` and ``optimum_ppl`` (the grid's optimum's test
    perplexity)."""
    check_choice("source", p.source, ("atlas",))
    check_int("max_epoch", p.max_epoch, low=0)
    check_int("n_boot", p.n_boot, low=10)
    check_int("repeats", p.repeats, low=1)
    check_int("folds", p.folds, low=2)
    check_int("trees", p.trees, low=1)
    references = emb.check_references(p.references)
    atlas = p.atlas
    with run_record(p.run_dir, {**p.extras, "seed": p.seed, "atlas": str(atlas.root)}):
        epoch = min(3, p.max_epoch)
        signals = shootout_signals(atlas, range(p.max_epoch + 1), references=references, folds=p.folds,
                                   trees=p.trees, seed=p.seed)
        predictors = present(signals)
        correlations, differences = predictor_shootout(signals, n_boot=p.n_boot, seed=p.seed)
        within = within_groups(signals, "death_rate", epoch, n_boot=p.n_boot, seed=p.seed)
        graphs = atlas.graph_epochs()
        last = graphs[(graphs.epoch == p.max_epoch) & graphs.name.isin(signals.name)].merge(
            signals.loc[signals.epoch == p.max_epoch, ["name", "final_valid_ppl"]], on="name")
        fit, importances = predict_from_properties(last, "final_valid_ppl", graph_features(last), folds=p.folds,
                                                   trees=p.trees, boot=p.n_boot, seed=p.seed)
        optimum = grid_optimum(atlas)
        best = atlas.candidates().set_index("name").loc[atlas.name(optimum, atlas.spec.seed)]
        rules = replay_sweep(atlas, p.run_dir / "replays", {"ranking": ["gap", "ls", "loss"], "reference": references},
                             sampler="grid", budget="low", epochs_per_round=1, committed=p.committed_dir / "replays")
        picked = rules.filter(like="selected_").rename(columns=lambda c: c[len("selected_"):])
        rules = with_arms(rules).assign(is_optimum=[row == optimum for row in picked.to_dict("records")])
        proposing = with_arms(replay_sweep(
            atlas, p.run_dir / "replays", {"sampler": ["random", "tpe", "atpe"], "ranking": ["gap", "ls", "loss"],
                                           "reference": references},
            repeats=p.repeats, budget="low", epochs_per_round=1, rounds=ROUNDS, committed=p.committed_dir / "replays"))
        means, gap_versus = summarise(proposing, ["sampler", "arm"]), rules_versus(proposing, "gap")
        verdicts = _verdicts(correlations, differences, predictors, epoch)
        top = verdicts.loc[verdicts.rho.idxmax()]
        claim = {"epoch": epoch, "best": top.predictor, "best_rho": float(top.rho), "best_lo": float(top.lo),
                 "best_hi": float(top.hi), "verdicts": verdicts.to_dict(orient="records")}
        save_results(p.run_dir, signals=signals, correlations=correlations, differences=differences,
                     within_death_rate=within, forest=fit, importances=importances, removal_rules=rules,
                     proposing_rules=means, gap_versus=gap_versus, claim=claim)
    at_end = signals[signals.epoch == p.max_epoch]
    arms = list(pd.unique(proposing.arm))
    return {
        "candidates": f"{signals.name.nunique()} pruned candidates, epochs 0..{p.max_epoch}; final validation "
                      f"perplexity {at_end.final_valid_ppl.min():.1f} to {at_end.final_valid_ppl.max():.1f}\n"
                      "spectral gap to the Ramanujan bound over the candidates (min and max), by epoch:\n"
                      + signals.groupby("epoch")[["gap_min", "gap_mean"]].agg(["min", "max"]).round(2).to_string(),
        "rho": _rho_text(correlations, differences, predictors),
        "within": f"ρ at E = {epoch} within each death rate ({int(within.candidates.iloc[0])} candidates each):\n"
                  + within.assign(cell=with_interval(within.rho, within.lo, within.hi))
                  .pivot(index="predictor", columns="death_rate", values="cell").loc[predictors]
                  .rename(index=LABELS).to_string(),
        "forest": f"E = {p.max_epoch}: cross-validated R² = {fit['r2']:+.2f} [{fit['r2_low']:+.2f}, "
                  f"{fit['r2_high']:+.2f}] over {fit['rows']} candidates (arXiv 2407.20601, Reber grammar: 0.81 for "
                  "GRU)\nmost important properties:\n" + importances.head(5).round(3).to_string(index=False),
        "grid_rules": f"grid search, E = 1, budget low; the grid's optimum has test perplexity {best.test_ppl:.2f}\n"
                      + pd.concat([rules[["arm", "test_ppl", "is_optimum"]].rename(columns={"arm": "removal rule"}),
                                   picked], axis=1).round(2).to_string(index=False),
        "proposing_rules": _proposing_text(means, gap_versus, arms, p.repeats),
        "verdict": f"At E = {epoch}:\n" + verdicts.assign(rho=with_interval(verdicts.rho, verdicts.lo, verdicts.hi))
        .drop(columns=["lo", "hi"]).replace(LABELS).to_string(index=False)
        + f"\nThe strongest predictor at E = {epoch} is the {LABELS[top.predictor]} "
          f"(ρ {top.rho:+.2f} [{top.lo:+.2f}, {top.hi:+.2f}]).",
        "correlations": correlations, "predictors": predictors,
        "proposing": proposing.assign(rule=proposing.arm.map(RULE_LABELS)),
        "rule_order": [RULE_LABELS[a] for a in RULE_LABELS if a in arms], "optimum_ppl": best.test_ppl,
    }


def _rho_text(correlations: pd.DataFrame, differences: pd.DataFrame, predictors) -> str:
    rho = correlations.assign(cell=with_interval(correlations.rho, correlations.lo, correlations.hi))
    lines = [f"ρ with the final validation perplexity ({int(correlations.candidates.iloc[0])} candidates):",
             rho.pivot(index="epoch", columns="predictor", values="cell")[predictors]
             .rename(columns=LABELS).T.to_string()]
    diff = differences.assign(cell=with_interval(differences.difference, differences.lo, differences.hi))
    for against in [q for q in predictors if q in LS_PREDICTORS.values()]:
        lines += [f"\nρ(predictor) − ρ({LABELS[against]}), paired:",
                  diff[diff.against == against].pivot(index="epoch", columns="predictor", values="cell")
                  [[q for q in predictors if q != against]].rename(columns=LABELS).T.to_string()]
    return "\n".join(lines)


def _proposing_text(means: pd.DataFrame, gap_versus: pd.DataFrame, arms, repeats: int) -> str:
    cells = with_interval(means["mean"], means["mean"] - means.ci95, means["mean"] + means.ci95, fmt="{:.1f}")
    versus = gap_versus.assign(cell=with_interval(gap_versus.difference, gap_versus.lo, gap_versus.hi, fmt="{:+.1f}"))
    return "\n".join([
        f"{repeats} replays per sampler and rule, E = 1, {ROUNDS} rounds, budget low: mean test perplexity of the "
        "selected model [95% interval]",
        means.assign(cell=cells).pivot(index="sampler", columns="arm", values="cell")[arms].to_string(),
        "\ngap ranking minus the other rule, paired by seed (negative: the gap selects better):",
        versus[["sampler", "against", "cell", "a_better", "other_better", "verdict"]]
        .rename(columns={"cell": "difference", "a_better": "gap_better", "verdict": "the gap selects better"})
        .to_string(index=False)])


def _verdicts(correlations: pd.DataFrame, differences: pd.DataFrame, predictors, epoch: int) -> pd.DataFrame:
    """Per predictor at ``epoch``: ρ with its interval, whether it predicts (ρ above 0,
    :func:`lshkit.stats.interval_verdict`) and whether it beats the LS distance under each reading
    of the frame (the paired difference above 0; "—" against itself)."""
    reading = {predictor: r for r, predictor in LS_PREDICTORS.items()}
    rows = []
    for predictor in predictors:
        r = correlations[(correlations.predictor == predictor) & (correlations.epoch == epoch)].iloc[0]
        row = {"predictor": predictor, "rho": r.rho, "lo": r.lo, "hi": r.hi, "it predicts": interval_verdict(r.lo, r.hi)}
        for against in [q for q in predictors if q in reading]:
            d = differences[(differences.predictor == predictor) & (differences.against == against)
                            & (differences.epoch == epoch)]
            row[f"it beats {READINGS[reading[against]]}"] = interval_verdict(d.lo.iloc[0], d.hi.iloc[0]) if len(d) else "—"
        rows.append(row)
    return pd.DataFrame(rows)
