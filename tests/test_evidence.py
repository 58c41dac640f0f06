"""Rank correlations of early signals with final perplexity, with bootstrap intervals."""
from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
import pytest

from conftest import SPEC
from lshkit.stats import interval_verdict, overall_verdict
from lshkit.atlas import AtlasSpec, build_atlas, candidate_name, configuration_name, load_atlas
from lshkit.experiments.fig1 import ordering_by_reference, trajectories
from lshkit.experiments.fig3 import time_to_target_by_reference, time_to_target_summary
from lshkit.experiments.predictive_power import (distinct_values, early_signals, floor_exponents, LS_FLOOR, nearest_half, predictive_power, reference_drift, reference_drift_figure, seed_noise, survival)
from lshkit.experiments.readings import arm_table, paired_by_reading, paired_replays, with_arms
from lshkit.experiments.table4 import optimal_only_from
from lshkit.experiments.tableB2 import best_combination


def test_early_signals_from_an_atlas(atlas_dir):
    atlas = load_atlas(atlas_dir)
    frame = early_signals(atlas, epochs=range(5))
    assert len(frame) == 8 * 5 and set(frame.epoch) == {0, 1, 2, 3, 4}
    assert np.isfinite(frame.ls_distance).all() and np.isfinite(frame.valid_loss).all()
    # The final perplexity is one number per candidate, the signals move with the epoch.
    assert (frame.groupby("name").final_valid_ppl.nunique() == 1).all()
    assert frame.groupby("name").ls_distance.nunique().gt(1).all()
    with pytest.raises(ValueError, match="'pca'"):
        early_signals(atlas, embedding="umap")


def test_survival_counts_the_best_quarter_kept_and_breaks_ties_at_random():
    frame = pd.DataFrame({"name": list("abcdefgh"), "epoch": 0, "final_valid_ppl": np.arange(8.0),
                          "exact": np.arange(8.0), "reversed": -np.arange(8.0), "constant": 1.0})
    assert survival(frame, "exact").fraction.iloc[0] == 1.0      # the best two are among the four kept
    assert survival(frame, "reversed").fraction.iloc[0] == 0.0
    # A constant signal keeps any candidate with probability keep: chance.
    assert survival(frame, "constant").fraction.iloc[0] == pytest.approx(0.5)
    assert survival(frame, "constant", keep=0.25).fraction.iloc[0] == pytest.approx(0.25)
    with pytest.raises(ValueError, match="keep"):
        survival(frame, "exact", keep=0)


def test_paired_replays_pairs_by_seed():
    rng = np.random.default_rng(0)
    base = rng.normal(100, 10, size=20)  # a search's luck, shared by both rankings of one seed
    frame = pd.concat([pd.DataFrame({"sampler": "tpe", "budget": "low", "seed": range(20), "ranking": r,
                                     "test_ppl": base + shift}) for r, shift in (("ls", -1.0), ("loss", 0.0))])
    row = paired_replays(frame).iloc[0]
    # Unpaired, the spread of 10 would swamp the difference of 1; paired, it is exact.
    assert row.pairs == 20 and row.difference == pytest.approx(-1.0) and row.hi == pytest.approx(-1.0)
    assert row.ls_better == 20 and row.loss_better == 0
    assert interval_verdict(row.lo - 1e-9, row.hi + 1e-9, better="below") == "holds"
    # One seed is one pair: no interval, so no verdict either way.
    assert paired_replays(frame[frame.seed == 0]).iloc[0].verdict == "is inconclusive"


def _readings(seeds=20):
    """Paired searches of one sampler and budget: loss, and LS under each reading (same epoch 1 better
    than the loss, final 5 worse), sharing each seed's luck."""
    luck = np.random.default_rng(2).normal(100, 10, size=seeds)
    arms = (("loss", None, 0.0), ("ls", "same_epoch", -1.0), ("ls", "final", 5.0))
    return pd.concat([pd.DataFrame({"sampler": "tpe", "budget": "low", "seed": range(seeds), "ranking": ranking,
                                    "reference": reference, "test_ppl": luck + shift})
                      for ranking, reference, shift in arms], ignore_index=True)


def test_with_arms_names_each_reading_and_reads_old_frames_as_final():
    frame = with_arms(_readings())
    assert frame.groupby("arm", sort=False).size().to_dict() == {"loss": 20, "LS (same epoch)": 20, "LS (final)": 20}
    # Searches saved before the reading was an option all read the final LS.
    old = with_arms(_readings().query("reference != 'same_epoch'").drop(columns="reference"))
    assert set(old.arm) == {"loss", "LS (final)"}
    with pytest.raises(ValueError, match="reference"):
        with_arms(_readings().assign(reference=None))


def test_paired_by_reading_pairs_each_reading_with_the_same_loss_searches():
    paired = paired_by_reading(with_arms(_readings())).set_index("reference")
    assert paired.index.tolist() == ["same_epoch", "final"] and (paired.pairs == 20).all()
    assert paired.loc["same_epoch", "difference"] == pytest.approx(-1.0) and paired.loc["same_epoch", "verdict"] == "holds"
    assert paired.loc["final", "difference"] == pytest.approx(5.0) and paired.loc["final", "verdict"] == "does not hold"
    assert paired.loc["same_epoch", "ls_better"] == 20 and paired.loc["final", "loss_better"] == 20
    only_final = paired_by_reading(with_arms(_readings().query("reference != 'same_epoch'")))
    assert only_final.reference.tolist() == ["final"]
    # A budget where the loss ran but a reading did not: "not run", so the claim cannot hold in every cell.
    high = _readings().query("reference != 'same_epoch'").assign(budget="high")
    both = paired_by_reading(with_arms(pd.concat([_readings(), high]))).set_index(["reference", "budget"])
    assert both.loc[("same_epoch", "high"), "verdict"] == "not run" and both.loc[("same_epoch", "high"), "pairs"] == 0
    assert both.loc[("final", "high"), "verdict"] == "does not hold"
    same = both.loc["same_epoch"]
    assert overall_verdict(same.verdict) == "is inconclusive" and overall_verdict(same.verdict[["low"]]) == "holds"
    with pytest.raises(ValueError, match="no LS-ranked"):
        paired_by_reading(with_arms(_readings().query("ranking == 'loss'")))


def test_arm_table_sets_arms_side_by_side_and_says_what_is_missing():
    frame = with_arms(_readings())
    # A second budget where the same-epoch reading was not run, and a sampler searched once.
    high = frame[frame.arm != "LS (same epoch)"].assign(budget="high")
    grid = frame[frame.seed == 0].assign(sampler="grid")
    arms = ["LS (same epoch)", "LS (final)", "loss", "gap"]
    table = arm_table(pd.concat([frame, high, grid]), ["budget", "sampler"], arms=arms)
    assert table.columns.tolist() == arms and table.index.tolist() == [("low", "tpe"), ("low", "grid"),
                                                                       ("high", "tpe"), ("high", "grid")]
    assert table.loc[("high", "tpe"), "LS (same epoch)"] == "missing" and (table["gap"] == "missing").all()
    assert table.loc[("low", "tpe"), "loss"].endswith("n=20") and table.loc[("low", "grid"), "loss"].endswith("n=1")
    assert table.loc[("high", "grid")].eq("missing").all()
    assert arm_table(frame, "sampler", arms=["loss"]).index.tolist() == ["tpe"]


def test_best_combination_needs_every_other_beaten():
    rng = np.random.default_rng(1)
    luck = rng.normal(100, 10, size=30)
    shifts = {("pca", "l2"): 0.0, ("raw", "l2"): 2.0, ("pca", "cos"): 0.0}
    frame = pd.concat([pd.DataFrame({"embedding_fit": "candidate", "embedding": e, "distance": d, "seed": range(30),
                                     "test_ppl": luck + shift + rng.normal(0, 0.1, size=30)})
                       for (e, d), shift in shifts.items()])
    table, state = best_combination(frame)
    by_other = table.set_index("other").verdict
    assert by_other["raw/l2"] == "holds" and by_other["pca/cos"] == "is inconclusive" and state == "is inconclusive"
    table, state = best_combination(frame[frame.distance == "l2"])
    assert state == "holds" and table.best_better.iloc[0] == 30
    worse = frame.assign(test_ppl=frame.test_ppl + 5.0 * (frame.embedding == "pca"))
    assert best_combination(worse)[1] == "does not hold"
    with pytest.raises(ValueError, match="at least one other combination"):
        best_combination(frame[(frame.embedding == "pca") & (frame.distance == "l2")])


def test_optimal_only_from_three_epochs():
    searches = pd.DataFrame({"E": [4, 1, 2, 3], "optimal_selected": [True, False, False, True]})
    table, state = optimal_only_from(searches)
    assert state == "holds" and table.E.tolist() == [1, 2, 3, 4] and table.claimed.tolist() == [False, False, True, True]
    assert optimal_only_from(searches.assign(optimal_selected=True))[1] == "does not hold"
    assert optimal_only_from(searches, first=4)[1] == "does not hold"


def test_predictive_power_covers_every_setting(atlas_dir):
    atlas = load_atlas(atlas_dir)
    corr, diff = predictive_power(atlas, range(3), embeddings=("pca", "raw"), n_boot=50)
    # readings x conventions x embeddings x distances x epochs
    assert len(diff) == 2 * 2 * 2 * 2 * 3 and len(corr) == 2 * len(diff)
    assert list(pd.unique(diff.reference)) == ["same_epoch", "final"]
    # The loss does not depend on the LS settings; the LS distance does.
    loss = corr[corr.signal == "valid_loss"].groupby("epoch").rho.nunique(dropna=False)
    assert (loss == 1).all()
    noise = seed_noise(atlas)
    assert noise.configuration.tolist() == ["between candidates"] and noise.valid_ppl_sd.iloc[0] > 0


def test_seed_noise_groups_each_configuration_over_its_seeds(tmp_path):
    spec = AtlasSpec(**{**SPEC.to_dict(), "death_rates": (0.5,), "replicates": 1, "replicate_seeds": (1, 2),
                        "variants": {**SPEC.variants, "sparse_init": ["ER"]}})
    build_atlas(spec, tmp_path, progress=False)
    atlas = load_atlas(tmp_path)
    replicated = spec.replicate_params()[0]
    noise = seed_noise(atlas).set_index("configuration")
    name = configuration_name(replicated)
    # The replicated configuration and the dense model over their 3 seeds; the other once only.
    assert sorted(noise.index) == sorted([name, "dense", "between candidates"])
    assert noise.loc[name, "seeds"] == noise.loc["dense", "seeds"] == 3
    finals = atlas.candidates().set_index("name").loc[[candidate_name(replicated, s) for s in (0, 1, 2)]]
    assert noise.loc[name, "test_ppl_mean"] == pytest.approx(finals.test_ppl.mean())
    assert noise.loc[name, "test_ppl_sd"] == pytest.approx(finals.test_ppl.std(ddof=1)) and finals.test_ppl.nunique() == 3


def test_time_to_target_summary_counts_never_as_infinitely_long():
    frame = pd.DataFrame({"repeat": [0, 0, 1, 1, 2, 2], "method": ["LSH", "full training"] * 3,
                          "seconds": [10.0, 100.0, 20.0, 200.0, np.nan, 300.0]})
    out = time_to_target_summary(frame, n_boot=100).set_index("method")
    assert out.loc["LSH", "reached"] == pytest.approx(2 / 3) and out.loc["full training", "reached"] == 1.0
    assert out.loc["LSH", "median_seconds"] == 20.0 and out.loc["full training", "speedup"] == 1.0
    assert out.loc["LSH", "speedup"] == pytest.approx(10.0)
    # The top percentile of a method that sometimes never got there is "never", not undefined.
    never = frame.assign(seconds=frame.seconds.where(frame.method == "full training", np.nan))
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # and no "invalid value" on the way
        out = time_to_target_summary(never, n_boot=100).set_index("method")
    assert out.loc["LSH", "p97.5_seconds"] == np.inf and out.loc["LSH", "reached"] == 0.0
    with pytest.raises(ValueError, match="baseline"):
        time_to_target_summary(frame, baseline="grid")


def test_trajectories_put_every_candidate_in_one_space(atlas_dir):
    atlas = load_atlas(atlas_dir)
    frame = trajectories(atlas)
    assert frame.name.nunique() == 9 and set(frame.epoch) == {0, 1, 2, 3, 4}
    dense = frame[frame.dense]
    assert (dense.distance_same_epoch == 0).all()  # the dense model against itself
    assert (frame[~frame.dense].distance_same_epoch > 0).all()
    assert (frame.groupby("name").final_valid_ppl.nunique() == 1).all()


def test_table1_under_each_reading_shares_the_dense_and_selfish_rows(monkeypatch):
    from lshkit.experiments import table1 as T1

    picks = {"same_epoch": 70.0, "final": 75.0}

    def atlas_methods(atlas, out, *, reference, **kw):  # one reading's Table 1 rows, as lshkit.experiments.table1 returns them
        return pd.DataFrame({"model": "lstm", "method": list(T1.METHODS), "label": list(T1.METHODS.values()),
                             "test_ppl": [80.0, 72.0, picks[reference]], "n": [1, 1, 100], "ci95": [0.0, 0.0, 1.0]})

    monkeypatch.setattr(T1, "atlas_methods", atlas_methods)
    rows = T1.atlas_methods_by_reference(None, None)
    assert rows.method.tolist() == ["dense", "selfish_rnn", "lsh", "lsh"]
    assert rows.reference.tolist()[2:] == ["same_epoch", "final"] and rows.reference.iloc[:2].isna().all()
    assert rows.label.tolist()[2:] == ["LSH pick, same-epoch reference", "LSH pick, final reference"]
    assert T1.atlas_methods_by_reference(None, None, references=["final"]).test_ppl.tolist() == [80.0, 72.0, 75.0]
    with pytest.raises(ValueError, match="reference"):
        T1.atlas_methods_by_reference(None, None, references=["middle"])
    # Each reading judged against the same dense and Selfish-RNN rows.
    claim = T1.table1_claim(rows)
    assert claim.columns[0] == "reference" and claim.set_index("reference")["state"].to_dict() == {
        "same_epoch": "holds", "final": "does not hold"}
    assert (claim.dense == 80.0).all() and (claim.selfish_rnn == 72.0).all()


# ------------------------------------------------------------------ the two readings side by side


def test_signals_under_each_reading_and_the_headline_per_reading(atlas_dir):
    from lshkit.experiments.predictive_power import by_reference, reference_signals, survival_by_reference

    atlas = load_atlas(atlas_dir)
    frame = reference_signals(atlas, range(4))
    assert frame.columns[0] == "reference" and list(pd.unique(frame.reference)) == ["same_epoch", "final"]
    alone = early_signals(atlas, range(4), reference="final")
    final = frame[frame.reference == "final"].drop(columns="reference").reset_index(drop=True)
    pd.testing.assert_frame_equal(final, alone)
    # The loss reads no LS: the same under both readings; the LS distance differs.
    same = frame[frame.reference == "same_epoch"].reset_index(drop=True)
    assert (same.valid_loss == final.valid_loss).all() and not np.allclose(same.ls_distance, final.ls_distance)
    with pytest.raises(ValueError, match="references must name"):
        reference_signals(atlas, references=[])
    corr, diff = predictive_power(atlas, range(4), conventions=("paper",), embeddings=("pca",), distances=("l2",),
                                  references=("final", "same_epoch"), n_boot=50)
    table = by_reference(corr, diff)
    assert table.reference.tolist() == ["final"] * 4 + ["same_epoch"] * 4 and table.epoch.tolist() == [0, 1, 2, 3] * 2
    row = table.iloc[5]
    ls = corr[(corr.reference == "same_epoch") & (corr.epoch == 1) & (corr.signal == "ls_distance")].iloc[0]
    assert row.rho_ls == ls.rho and row.rho_ls_lo == ls.lo and row.ls_predicts == interval_verdict(ls.lo, ls.hi)
    assert row.ls_beats_loss == interval_verdict(row.lo, row.hi)
    with pytest.raises(ValueError, match="no rows"):
        by_reference(corr, diff, embedding="tsne")
    kept = survival_by_reference(frame)
    assert list(pd.unique(kept.arm)) == ["LS (same epoch)", "LS (final)", "loss"] and len(kept) == 3 * 4
    assert kept[kept.arm == "loss"].reference.isna().all()


def test_distinct_values_finds_the_epochs_a_grouping_alone_sets():
    frame = pd.DataFrame({"epoch": [0] * 4 + [1] * 4, "init": ["ER", "ER", "uniform", "uniform"] * 2,
                          "a": [1.0, 1.0, 2.0, 2.0, 1.0, 1.5, 2.0, 2.5], "b": [3.0] * 8})
    got = distinct_values(frame, ["a", "b"], by="init").set_index(["epoch", "signal"])
    assert got.loc[(0, "a"), "distinct"] == 2 and got.loc[(0, "a"), "only_by"]
    assert got.loc[(1, "a"), "distinct"] == 4 and not got.loc[(1, "a"), "only_by"]
    assert got.loc[(1, "b"), "distinct"] == 1 and got.loc[(1, "b"), "only_by"]  # constant: the init sets it too
    assert (got.groups == 2).all() and (got.candidates == 4).all()
    assert "reference" in distinct_values(frame.assign(reference="final"), ["a"], by="init")
    with pytest.raises(ValueError, match="by='rate'"):
        distinct_values(frame, ["a"], by="rate")


def test_nearest_half_shares_ties_and_counts_each_reading_apart():
    frame = pd.DataFrame({"reference": ["same_epoch"] * 4 + ["final"] * 4, "epoch": 3,
                          "death_rate": [0.4, 0.4, 0.9, 0.9] * 2,
                          "ls_distance": [1.0, 2.0, 3.0, 4.0, 4.0, 3.0, 1.0, 1.0],
                          "final_valid_ppl": [100.0, 110.0, 300.0, 400.0] * 2,
                          "final_test_ppl": [90.0, 95.0, 250.0, 350.0] * 2})
    got = nearest_half(frame, epoch=3).set_index(["reference", "death_rate"])
    assert got.kept.to_dict() == {("same_epoch", 0.4): 1.0, ("same_epoch", 0.9): 0.0,
                                  ("final", 0.4): 0.0, ("final", 0.9): 1.0}
    assert got.loc[("final", 0.9), "median_final_test_ppl"] == 300.0 and (got.candidates == 2).all()
    # Three tied for two places: each kept with probability 2/3.
    tied = frame.assign(ls_distance=[1.0, 1.0, 1.0, 5.0] * 2)
    shares = nearest_half(tied, epoch=3).set_index(["reference", "death_rate"]).kept
    assert shares.loc[("final", 0.4)] == pytest.approx(2 / 3)
    assert "reference" not in nearest_half(frame[frame.reference == "final"].drop(columns="reference"), epoch=3)
    with pytest.raises(ValueError, match="epoch=5"):
        nearest_half(frame, epoch=5)


def test_drift_floors_and_the_diagnosis_figure(atlas_dir):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from lshkit.experiments.predictive_power import reference_signals

    atlas = load_atlas(atlas_dir)
    dense = atlas.ls(atlas.record(None, atlas.spec.seed)["name"]).astype(np.float64)
    drift = reference_drift(atlas, tail_from=2)
    assert drift.epoch.tolist() == list(range(len(dense))) and drift.dense_drift.iloc[-1] == 0.0
    assert drift.dense_drift.iloc[0] == pytest.approx(np.linalg.norm(dense[0] - dense[-1]))
    gap = dense[1] - dense[-1]
    assert drift.tail_share.iloc[1] == pytest.approx((gap[2:] ** 2).sum() / (gap ** 2).sum())
    paths = trajectories(atlas)
    same = paths[~paths.dense & (paths.epoch == 2)].distance_same_epoch
    assert drift.candidates_median.iloc[2] == pytest.approx(same.median())
    with pytest.raises(ValueError, match="tail_from"):
        reference_drift(atlas, tail_from=dense.shape[1])

    floors = floor_exponents(atlas, epoch=2, floor=np.inf)  # every exponent "at the floor"
    assert floors.death_rate.tolist() == [0.5, 0.9] and (floors.candidates == 4).all()
    assert (floors.candidates_at_epoch == 4).all() and (floors.exponents_at_epoch == 4 * dense.shape[1]).all()
    assert (floors.exponents_ever == 4 * dense.size).all()
    assert LS_FLOOR == pytest.approx(np.log2(1e-30)) and LS_FLOOR < -99
    with pytest.raises(ValueError, match="epoch=9"):
        floor_exponents(atlas, epoch=9)

    signals = reference_signals(atlas, range(3))
    fig = reference_drift_figure(drift, signals, epoch=2)
    assert len(fig.axes) == 3 and "same-epoch reference: ρ =" in fig.axes[1].get_title()
    assert fig.axes[2].get_title().startswith("final reference")
    assert len(reference_drift_figure(drift, signals[signals.reference == "final"], epoch=2).axes) == 2
    plt.close("all")
    with pytest.raises(ValueError, match="epoch=7"):
        reference_drift_figure(drift, signals, epoch=7)


def test_fig1_ordering_under_each_reading(atlas_dir):
    atlas = load_atlas(atlas_dir)
    paths = trajectories(atlas)
    dense = paths[paths.dense]
    assert dense.distance_final.iloc[-1] == 0.0 and (dense.distance_final.iloc[:-1] > 0).all()
    assert paths[~paths.dense].sparse_init.notna().all() and paths[paths.dense].sparse_init.isna().all()
    got = ordering_by_reference(paths, range(1, 4), n_boot=50)
    assert got.reference.tolist() == ["same_epoch"] * 3 + ["final"] * 3
    final = got[got.reference == "final"].iloc[1]
    pruned = paths[~paths.dense & (paths.epoch == 2)]
    assert final.rho == pytest.approx(pruned[["distance_final", "final_valid_ppl"]].corr("spearman").iloc[0, 1])


def test_time_to_target_summary_under_each_reading():
    rows = []
    for reference, lsh in (("same_epoch", [10.0, 20.0, 30.0]), ("final", [np.nan] * 3)):
        for repeat in range(3):
            rows += [{"repeat": repeat, "method": "LSH (ls ranking)", "seconds": lsh[repeat], "reference": reference},
                     {"repeat": repeat, "method": "LSH (loss ranking)", "seconds": 50.0, "reference": reference},
                     {"repeat": repeat, "method": "full training", "seconds": 200.0, "reference": reference}]
    out = time_to_target_by_reference(pd.DataFrame(rows), holds_above=5.0, n_boot=50)
    assert out.method.tolist() == ["LSH (ls ranking)", "LSH (ls ranking)", "LSH (loss ranking)", "full training"]
    assert out.reference.tolist()[:2] == ["same_epoch", "final"] and out.reference.iloc[2:].isna().all()
    mine = out.set_index(["method", "reference"])
    assert mine.loc[("LSH (ls ranking)", "same_epoch"), "speedup"] == pytest.approx(10.0)
    assert mine.loc[("LSH (ls ranking)", "same_epoch"), "verdict"] == "holds"
    assert mine.loc[("LSH (ls ranking)", "final"), "reached"] == 0.0
    assert mine.loc[("LSH (ls ranking)", "final"), "verdict"] == "does not hold"
