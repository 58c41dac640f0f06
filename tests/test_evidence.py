"""Rank correlations of early signals with final perplexity, with bootstrap intervals."""
from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
import pytest

from conftest import SPEC
from lshkit.atlas import AtlasSpec, build_atlas, candidate_name, configuration_name, load_atlas
from lshkit.evidence import (best_combination, early_signals, interval_verdict, optimal_only_from, overall_verdict, paired_difference, paired_replays,
                             predictive_power, rank_correlation, seed_noise, survival, time_to_target_summary,
                             trajectories)


def _frame(n=40, seed=0):
    rng = np.random.default_rng(seed)
    target = rng.permutation(n).astype(float) + 100
    return pd.DataFrame({"epoch": 1, "final_valid_ppl": target, "exact": target * 2 + 5,
                         "reversed": -target, "noise": rng.normal(size=n)})


def test_rank_correlation_of_known_orderings():
    frame = _frame()
    exact = rank_correlation(frame, "exact", n_boot=200).iloc[0]
    assert exact.rho == pytest.approx(1.0) and exact.lo == pytest.approx(1.0) and exact.candidates == 40
    assert rank_correlation(frame, "reversed", n_boot=200).iloc[0].rho == pytest.approx(-1.0)
    # An unrelated signal: the interval brackets the sample ρ and is as wide as 40 candidates allow
    # (the sampling spread of ρ near 0 is about 1/sqrt(n - 1), so the 95% interval ~0.6).
    noise = rank_correlation(frame, "noise", n_boot=1000).iloc[0]
    assert noise.lo < noise.rho < noise.hi and 0.4 < noise.hi - noise.lo < 0.9


def test_paired_difference_is_paired():
    frame = _frame()
    d = paired_difference(frame, "exact", "reversed", n_boot=200).iloc[0]
    assert d.difference == pytest.approx(2.0) and d.lo == pytest.approx(2.0) and d.hi == pytest.approx(2.0)
    same = paired_difference(frame.assign(copy=frame.noise), "noise", "copy", n_boot=200).iloc[0]
    assert same.difference == 0 and same.lo == 0 and same.hi == 0  # identical signals: no spread at all


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


def test_interval_verdicts():
    assert interval_verdict(0.1, 0.5) == "holds" and interval_verdict(-0.5, -0.1) == "does not hold"
    assert interval_verdict(-0.1, 0.5) == "is inconclusive" and interval_verdict(np.nan, 1) == "is inconclusive"
    assert interval_verdict(-0.5, -0.1, better="below") == "holds"
    assert overall_verdict(["holds", "holds"]) == "holds"
    assert overall_verdict(["holds", "is inconclusive"]) == "is inconclusive"
    assert overall_verdict(["holds", "does not hold", "is inconclusive"]) == "does not hold"


def test_predictive_power_covers_every_setting(atlas_dir):
    atlas = load_atlas(atlas_dir)
    corr, diff = predictive_power(atlas, range(3), embeddings=("pca", "raw"), n_boot=50)
    assert len(diff) == 2 * 2 * 2 * 3 and len(corr) == 2 * len(diff)
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
