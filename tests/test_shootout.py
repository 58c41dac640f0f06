"""The predictor shoot-out: LS distance, loss, spectral gap and a graph-property forest, side by side."""
from __future__ import annotations

import json
import shutil

import numpy as np
import pandas as pd
import pytest

from lshkit.atlas import load_atlas
from lshkit.experiments.predictive_power import early_signals
from lshkit.graph import out_of_fold
from lshkit.experiments.shootout import (LS_PREDICTORS, predictor_shootout, PREDICTORS, rules_versus, shootout_signals, within_groups)


def test_an_out_of_fold_prediction_never_sees_its_own_row():
    rng = np.random.default_rng(0)
    frame = pd.DataFrame({"x": rng.normal(size=30), "z": rng.normal(size=30)})
    frame["y"] = 3 * frame.x + rng.normal(scale=0.1, size=30)
    before, _ = out_of_fold(frame, "y", ["x", "z"], folds=5, trees=50)
    tampered = frame.copy()
    tampered.loc[7, "y"] = 1e6  # a leak would pull row 7's own prediction up
    after, _ = out_of_fold(tampered, "y", ["x", "z"], folds=5, trees=50)
    assert after[7] == pytest.approx(before[7])
    assert not np.allclose(after, before)  # the rows whose forests did see it move
    assert np.corrcoef(before, frame.y)[0, 1] > 0.8  # and it does learn y = 3x


def test_shootout_signals_on_an_atlas(atlas_dir):
    atlas = load_atlas(atlas_dir)
    frame = shootout_signals(atlas, range(5), folds=4, trees=20)
    assert len(frame) == 8 * 5 and set(frame.epoch) == set(range(5))
    assert np.isfinite(frame[list(PREDICTORS)].to_numpy()).all()
    # The LS distance once per reading, as early_signals measures it under each.
    for reference, column in LS_PREDICTORS.items():
        ls = early_signals(atlas, range(5), reference=reference).set_index(["name", "epoch"]).ls_distance
        assert np.allclose(frame.set_index(["name", "epoch"])[column].loc[ls.index], ls)
    one = shootout_signals(atlas, range(5), references=["final"], folds=4, trees=20)
    assert "ls_final" in one and "ls_same_epoch" not in one
    assert np.allclose(one.graph_forest, frame.graph_forest)  # the forest reads no LS
    with pytest.raises(ValueError, match="reference"):
        shootout_signals(atlas, range(5), references=["middle"])
    row = frame.iloc[13]
    graph = atlas.graph(row["name"], int(row.epoch))
    assert row.neg_gap_min == -graph["gap_min"] and row.neg_gap_mean == -graph["gap_mean"]
    # The forest predicts perplexities: within the range of the candidates' final ones.
    lo, hi = frame.final_valid_ppl.min(), frame.final_valid_ppl.max()
    assert frame.graph_forest.between(lo, hi).all()


def test_a_missing_mask_graph_epoch_names_the_command(atlas_dir, tmp_path):
    root = tmp_path / "atlas"
    shutil.copytree(atlas_dir, root)
    path = next(root.glob("*/graphs.json"))
    graphs = json.loads(path.read_text())
    graphs["epochs"] = graphs["epochs"][:3]
    path.write_text(json.dumps(graphs))
    with pytest.raises(KeyError, match=r"up to epoch 2; epoch 3 is asked for.*atlas graphs"):
        shootout_signals(load_atlas(root), range(5), folds=4, trees=5)


def test_predictor_shootout_correlations_and_paired_differences():
    rng = np.random.default_rng(1)
    final = rng.permutation(40).astype(float) + 100
    frame = pd.DataFrame({"epoch": 2, "final_valid_ppl": final, "ls_same_epoch": final + rng.normal(size=40),
                          "ls_final": rng.normal(size=40), "valid_loss": final / 50, "neg_gap_min": -final,
                          "neg_gap_mean": final ** 2, "graph_forest": rng.normal(size=40)})
    corr, diff = predictor_shootout(frame, n_boot=200)
    rho = corr.set_index("predictor").rho
    assert corr.predictor.tolist() == list(PREDICTORS)
    assert rho.valid_loss == pytest.approx(1) and rho.neg_gap_mean == pytest.approx(1)
    assert rho.neg_gap_min == pytest.approx(-1)
    # Every predictor against the LS distance under each reading, the other reading included.
    assert diff.groupby("against").size().to_dict() == {"ls_same_epoch": 5, "ls_final": 5}
    d = diff[diff.against == "ls_final"].set_index("predictor")
    assert set(d.index) == set(PREDICTORS) - {"ls_final"}
    assert d.difference.valid_loss == pytest.approx(1 - rho.ls_final)
    assert d.lo.valid_loss < d.difference.valid_loss < d.hi.valid_loss
    assert d.difference.ls_same_epoch == pytest.approx(rho.ls_same_epoch - rho.ls_final)
    only = predictor_shootout(frame.drop(columns="ls_same_epoch"), n_boot=50)[1]
    assert set(only.against) == {"ls_final"} and len(only) == 4
    with pytest.raises(ValueError, match=r"lacks the predictor columns \['graph_forest'\]"):
        predictor_shootout(frame.drop(columns="graph_forest"))
    with pytest.raises(ValueError, match="no LS predictor"):
        predictor_shootout(frame.drop(columns=["ls_same_epoch", "ls_final"]))


def test_within_groups_separates_ranking_from_telling_groups_apart():
    # Two groups whose perplexities differ by 100: a predictor that only knows the group has a
    # high overall ρ but none within a group; one that ranks inside the groups keeps ρ = 1 there.
    final = np.r_[np.arange(10.0), np.arange(10.0) + 100]
    group = np.repeat(["a", "b"], 10)
    frame = pd.DataFrame({"epoch": 3, "rate": group, "final_valid_ppl": final,
                          "label_only": (group == "b").astype(float), "inside": final})
    corr = within_groups(frame, "rate", 3, ["label_only", "inside"], n_boot=50)
    assert (corr.candidates == 10).all() and set(corr.rate) == {"a", "b"}
    assert corr[corr.predictor == "inside"].rho.tolist() == pytest.approx([1, 1])
    assert corr[corr.predictor == "label_only"].rho.isna().all()  # constant within a group: no ρ
    with pytest.raises(ValueError, match="by='lr' is not a column"):
        within_groups(frame, "lr", 3)
    with pytest.raises(ValueError, match=r"epoch=4 is not in the frame; it has \[3\]"):
        within_groups(frame, "rate", 4)


def test_rules_versus_pairs_the_gap_with_every_other_rule_and_reading():
    luck = np.random.default_rng(3).normal(300, 30, size=10)
    arms = (("gap", None, -50.0), ("ls", "same_epoch", -10.0), ("ls", "final", 20.0), ("loss", None, 0.0))
    replays = pd.concat([pd.DataFrame({"sampler": "tpe", "seed": range(10), "ranking": ranking, "reference": reference,
                                       "test_ppl": luck + shift}) for ranking, reference, shift in arms])
    got = rules_versus(replays).set_index("against")
    assert got.index.tolist() == ["LS (same epoch)", "LS (final)", "loss"] and (got.pairs == 10).all()
    assert got.difference.to_dict() == pytest.approx({"LS (same epoch)": -40.0, "LS (final)": -70.0, "loss": -50.0})
    assert (got.verdict == "holds").all() and (got.a_better == 10).all() and (got.other_better == 0).all()
    with pytest.raises(ValueError, match="a='forest'"):
        rules_versus(replays, "forest")
