"""LSH beside its baselines (Table 1, Fig. 3): fixed configurations trained fully, resumed and
read back; the dense one taken from the search's reference cache; Table 1's rows; Fig. 3 left's
methods per pruning ratio; Fig. 3 right's time-to-target curves against hand computations and
the search's own ``time_to_target_seconds``. Tiny smoke models (16 units, batch 64)."""
import dataclasses
import json
import math

import pandas as pd
import pytest
import torch

from lshkit.experiments import fig3 as F3, fixed as FX, table1 as T1
from lshkit import paper
from lshkit.data import load_corpus
from lshkit.dst import SparseConfig
from conftest import tiny_search
from lshkit.search import SearchConfig, train_reference
from lshkit.train import Trainer, perplexity

def tiny(**kw) -> SearchConfig:
    return tiny_search(pool=3, **kw)


@pytest.fixture(scope="module")
def reference_dir(tmp_path_factory):
    return tmp_path_factory.mktemp("reference")


def direct(cfg: SearchConfig, sparse: SparseConfig):
    """The same training written out by hand: Trainer on the config's TrainConfig."""
    resolved = cfg.resolved("cpu")
    train_cfg = resolved.train_config()
    trainer = Trainer(train_cfg, load_corpus(train_cfg.dataset), sparse, progress=False)
    trainer.fit(resolved.final_epochs)
    return trainer


# ------------------------------------------------------------------ train_fixed


def test_selfish_rnn_config_is_the_readme_default_at_the_sparsity():
    lstm = FX.selfish_rnn_config(tiny(sparsity=0.8), "cpu")
    assert lstm == SparseConfig(density=0.2, **paper.SELFISH_RNN_DEFAULT["lstm"])
    rhn = FX.selfish_rnn_config(tiny(model="rhn"), "cpu")  # Table A1's 0.53 by default
    assert rhn.density == pytest.approx(0.47) and rhn.death_rate == 0.5


def test_pruned_run_equals_a_direct_training_resumes_and_is_read_back(tmp_path, reference_dir, monkeypatch):
    torch.manual_seed(0)
    cfg = tiny(sparsity=0.5)
    sparse = FX.selfish_rnn_config(cfg, "cpu")
    result = FX.train_fixed(cfg, sparse, tmp_path, device="cpu", reference_dir=reference_dir, progress=False)
    trainer = direct(cfg, sparse)
    assert result["status"] == "ok" and result["epochs"] == 2
    assert result["test_ppl"] == perplexity(trainer.evaluate("test"))
    assert result["valid_ppl"] == perplexity(trainer.evaluate("valid"))
    assert [r["valid_ppl"] for r in result["records"]] == [r["valid_ppl"] for r in trainer.history]
    assert all(abs(r["density"] - 0.5) < 0.01 for r in result["records"])
    folder = tmp_path / result["key"]
    assert len(pd.read_csv(folder / "epochs.csv")) == 2

    # Killed after epoch 1: the checkpoint of a 1-epoch run and no summary; the call resumes.
    (folder / "summary.json").unlink()
    half = Trainer(trainer.cfg, trainer.corpus, sparse, progress=False)
    half.train_epoch()
    half.save(folder / "checkpoint.pt")
    resumed = FX.train_fixed(cfg, sparse, tmp_path, device="cpu", reference_dir=reference_dir, progress=False)
    untimed = [{k: v for k, v in r.items() if "second" not in k} for r in result["records"]]
    assert resumed["test_ppl"] == result["test_ppl"]
    assert [{k: v for k, v in r.items() if "second" not in k} for r in resumed["records"]] == untimed
    assert resumed["records"][0]["train_seconds"] == half.history[0]["train_seconds"]  # epoch 1 not retrained

    # Finished: read back, nothing trains.
    monkeypatch.setattr(FX, "Trainer", None)
    assert FX.train_fixed(cfg, sparse, tmp_path, device="cpu", progress=False)["test_ppl"] == result["test_ppl"]


def test_dense_run_is_the_search_reference_without_training_again(tmp_path, reference_dir, monkeypatch):
    cfg = tiny()
    reference = train_reference(cfg, device="cpu", reference_dir=reference_dir)
    monkeypatch.setattr(FX, "Trainer", None)  # the cache must serve it
    dense = FX.train_fixed(cfg, None, tmp_path, device="cpu", reference_dir=reference_dir, progress=False)
    assert dense["test_ppl"] == perplexity(reference["test_loss"])
    assert dense["valid_ppl"] == perplexity(reference["valid_loss"])
    assert dense["density"] == 1.0 and dense["source"].startswith("dense reference lstm-smoke-smoke-seed0-")
    assert dense["epochs"] == 2 and "ls" not in dense["records"][0]


def test_bad_arguments_fail_before_training(tmp_path):
    cfg = tiny(sparsity=0.67)
    with pytest.raises(ValueError, match=r"sparse.density=0.5 does not match config.sparsity=0.67"):
        FX.train_fixed(cfg, SparseConfig(density=0.5, **paper.SELFISH_RNN_DEFAULT["lstm"]), tmp_path)
    with pytest.raises(TypeError, match="SparseConfig or None"):
        FX.train_fixed(cfg, {"density": 0.33}, tmp_path)
    with pytest.raises(TypeError, match="SearchConfig"):
        FX.train_fixed({}, None, tmp_path)
    with pytest.raises(ValueError, match=r"sparsities\[1\]=1.0 is not valid"):
        F3.robustness(cfg, tmp_path, sparsities=[0.5, 1.0])
    with pytest.raises(ValueError, match=r"repeats a value"):
        F3.robustness(cfg, tmp_path, sparsities=[0.5, 0.5])
    with pytest.raises(ValueError, match=r"repeats=0 is not valid"):
        F3.robustness(cfg, tmp_path, repeats=0)
    with pytest.raises(ValueError, match=r"factor=0.5 is not valid"):
        F3.fig3_target(10.0, "smoke", factor=0.5)
    assert not any(tmp_path.iterdir())


def test_sizes_and_targets():
    smoke = FX.sized(SearchConfig(model="rhn", budget="smoke"))
    assert smoke.pool == 4 and smoke.train_overrides["batch_size"] == 40
    assert smoke.train_overrides["hidden_size"] == smoke.train_overrides["emb_size"]  # tied RHN
    assert FX.sized(SearchConfig(model="lstm", budget="smoke")).train_overrides["batch_size"] == 10
    assert FX.sized(SearchConfig(model="awd_mos", budget="smoke")).train_overrides["batch_size"] == 30
    low = F3.robustness_config(budget="low", scale="cpu")
    assert (low.pool, low.sampler, low.model) == (20, "tpe", "lstm")
    assert F3.fig3_target(80.0, "paper") == 72.0
    assert F3.fig3_target(10.0, "smoke") == pytest.approx(11.0)


# ------------------------------------------------------------------ Table 1 and Fig. 3 left


def test_table1_rows_are_the_three_methods_on_one_training_setup(tmp_path, reference_dir):
    torch.manual_seed(0)
    cfg = tiny(sampler="tpe", ranking="ls")
    rows = T1.compare_methods(cfg, tmp_path, device="cpu", reference_dir=reference_dir, progress=False)
    assert list(rows.method) == list(T1.METHODS) and (rows.model == "lstm").all() and (rows.dataset == "smoke").all()
    summary = json.loads((tmp_path / "lsh" / "summary.json").read_text())
    lsh = rows.set_index("method").loc["lsh"]
    assert lsh.test_ppl == summary["test_ppl"] and json.loads(lsh.configuration) == summary["selected"]
    dense = rows.set_index("method").loc["dense"]
    assert dense.test_ppl == summary["reference"]["test_ppl"] and dense.sparsity == 0.0
    selfish = rows.set_index("method").loc["selfish_rnn"]
    assert json.loads(selfish.configuration) == paper.SELFISH_RNN_DEFAULT["lstm"]
    assert selfish.test_ppl == perplexity(direct(cfg, FX.selfish_rnn_config(cfg, "cpu")).evaluate("test"))


def test_robustness_has_every_method_at_every_ratio(tmp_path, reference_dir):
    torch.manual_seed(0)
    base = tiny(sampler="tpe")
    frame = F3.robustness(base, tmp_path, sparsities=[0.5, 0.8], device="cpu", reference_dir=reference_dir,
                         progress=False)
    counts = frame.groupby("method").size().to_dict()
    assert counts == {"LSH (TPE, LS ranking)": 2, "TPE (loss ranking)": 2, "Selfish-RNN default": 2, "dense": 1}
    sweep = pd.read_csv(tmp_path / "searches" / "sweep.csv")
    for r in sweep.itertuples():
        row = frame[(frame.method == F3._RANKING_METHOD[r.ranking]) & (frame.sparsity == r.sparsity)]
        assert row.test_ppl.item() == r.test_ppl
    for s in (0.5, 0.8):
        fixed = FX.train_fixed(dataclasses.replace(base, sparsity=s), FX.selfish_rnn_config(
            dataclasses.replace(base, sparsity=s), "cpu"), tmp_path / "selfish_rnn", device="cpu")
        assert frame[(frame.method == "Selfish-RNN default") & (frame.sparsity == s)].test_ppl.item() == fixed["test_ppl"]
        assert fixed["records"][-1]["density"] == pytest.approx(1 - s, abs=0.01)


# ------------------------------------------------------------------ Fig. 3 right


def test_time_curves_against_hand_computations():
    epochs = pd.DataFrame({
        "candidate": [0, 1, 0, 1, 0, 1],
        "phase": ["selection", "selection", "final", "final", "final", "final"],
        "epoch": [1, 1, 2, 2, 3, 3],
        "valid_ppl": [30.0, 40.0, 25.0, 20.0, 22.0, 19.0],
        "train_seconds": [1.0, 2.0, 3.0, 4.0, 5.0, 6.0],
        "eval_seconds": [0.5, 0.5, 0.5, 0.5, 0.5, 0.5],
        "ls_seconds": [1.0, 1.0, math.nan, math.nan, math.nan, math.nan],
    })
    # Selection: 1.5 + 1 + 2.5 + 1 = 6; epoch 2 of both finalists: 3.5 + 4.5 = 8; epoch 3: 5.5 + 6.5 = 12.
    curve = F3.lsh_time_curve(epochs, selected=0)
    assert curve.to_dict("list") == {"valid_ppl": [30.0, 25.0, 22.0], "seconds": [6.0, 14.0, 26.0]}
    assert F3.time_to_reach(curve, 26.0) == 14.0 and F3.time_to_reach(curve, 30.0) == 6.0
    assert F3.time_to_reach(curve, 21.0) is None
    full = pd.DataFrame({"cumulative_seconds": [1.0, 2.0, 3.0, 4.0], "valid_ppl": [50.0, 45.0, 47.0, 40.0]})
    assert F3.full_training_time_curve(full).to_dict("list") == {"valid_ppl": [50.0, 45.0, 40.0],
                                                                "seconds": [1.0, 2.0, 4.0]}
    with pytest.raises(ValueError, match="selected=7 is not a candidate"):
        F3.lsh_time_curve(epochs, selected=7)


def test_time_to_target_matches_the_search_and_the_full_training_records(tmp_path, reference_dir):
    torch.manual_seed(0)
    cfg = tiny(sampler="tpe")
    reference = train_reference(cfg, device="cpu", reference_dir=reference_dir)
    target = F3.fig3_target(perplexity(reference["valid_loss"]), "smoke", factor=3.0)
    curves, result = F3.time_to_target(cfg, tmp_path, target_ppl=target, device="cpu",
                                      reference_dir=reference_dir, progress=False)
    assert set(curves.method) == {"LSH", "full training"}
    # The curve gives the search's own time to target (LSHSearch._time_to_target).
    assert result["lsh_seconds"] == pytest.approx(result["lsh_summary_time_to_target_seconds"])
    # Three times the dense perplexity: every model gets there (the selected one during the
    # selection, so LSH's time is the selection's; the first full-training candidate at once).
    epochs = pd.read_csv(tmp_path / "lsh" / "epochs.csv")
    selection = epochs[epochs.phase == "selection"]
    assert result["lsh_seconds"] == pytest.approx(
        (selection.train_seconds + selection.eval_seconds + selection.ls_seconds).sum())
    full = pd.read_csv(tmp_path / "full_training" / "full_training.csv")
    assert result["full_training_candidates"] == 1 and not result["speedup_is_lower_bound"]
    assert result["full_training_seconds"] == pytest.approx(full[full.valid_ppl <= target].cumulative_seconds.iloc[0])
    assert result["speedup"] == pytest.approx(result["full_training_seconds"] / result["lsh_seconds"])
    assert result["speedup_with_reference"] == pytest.approx(
        result["full_training_seconds"] / (result["lsh_seconds"] + result["reference_seconds"]))
    # Run again: everything is read back from the storage, same numbers.
    again = F3.time_to_target(cfg, tmp_path, target_ppl=target, device="cpu", reference_dir=reference_dir,
                             progress=False)[1]
    assert again == result


def test_claims_computed_in_our_numbers():
    rows = pd.DataFrame({"model": ["lstm"] * 3 + ["rhn"] * 3,
                         "method": ["dense", "selfish_rnn", "lsh"] * 2,
                         "test_ppl": [80.0, 72.0, 70.0, 60.0, 59.0, 59.5]})
    claim = T1.table1_claim(rows)
    assert claim.set_index("model")["holds"].to_dict() == {"lstm": True, "rhn": False}
    missing = rows.assign(test_ppl=[80.0, 72.0, None, 60.0, 59.0, 58.0])
    assert T1.table1_claim(missing).set_index("model")["holds"].to_dict() == {"lstm": False, "rhn": True}
    # Replayed: the LSH mean's interval decides against the better of the two others.
    replayed = rows.assign(ci95=[0.0, 0.0, 1.0, 0.0, 0.0, 0.6])
    assert T1.table1_claim(replayed).set_index("model")["state"].to_dict() == {"lstm": "holds",
                                                                              "rhn": "is inconclusive"}
    # One replay has no interval (NaN): no verdict; an interval of width 0 is a measurement like any other.
    worse = replayed.assign(test_ppl=[80.0, 72.0, 75.0, 60.0, 59.0, 59.5], ci95=[0, 0, 1.0, 0, 0, float("nan")])
    assert T1.table1_claim(worse).set_index("model")["state"].to_dict() == {"lstm": "does not hold",
                                                                           "rhn": "is inconclusive"}
    assert T1.table1_claim(worse.fillna(0.0)).set_index("model")["state"]["rhn"] == "does not hold"

    frame = pd.DataFrame({
        "method": ["LSH (TPE, LS ranking)", "TPE (loss ranking)", "Selfish-RNN default"] * 2 + ["dense"],
        "sparsity": [0.5, 0.5, 0.5, 0.8, 0.8, 0.8, 0.0],
        "test_ppl": [70.0, 71.0, 72.0, 75.0, 74.0, 76.0, 73.0]})
    claim = F3.robustness_claim(frame).set_index("sparsity")
    assert claim["beats_baselines"].to_dict() == {0.5: True, 0.8: False}
    assert claim["beats_dense"].to_dict() == {0.5: True, 0.8: False} and (claim["dense"] == 73.0).all()

    assert F3.speedup_holds({"speedup": 9.0}) and not F3.speedup_holds({"speedup": 4.9})
    assert not F3.speedup_holds({"speedup": None})


# ------------------------------------------------------------------ Fig. 3 under each reading of the LS reference


def test_fig3_claims_and_labels_under_each_reading():
    lsh, loss, selfish = "LSH (TPE, LS ranking)", "TPE (loss ranking)", "Selfish-RNN default"
    frame = pd.DataFrame({
        "method": [lsh, lsh, loss, selfish, "dense"], "reference": ["same_epoch", "final", None, None, None],
        "sparsity": [0.67, 0.67, 0.67, 0.67, 0.0], "test_ppl": [200.0, 300.0, 210.0, 360.0, 175.0]})
    claim = F3.robustness_claim(frame)
    assert claim.columns[0] == "reference" and claim.reference.tolist() == ["same_epoch", "final"]
    assert claim.beats_baselines.tolist() == [True, False] and (claim.tpe_loss == 210.0).all()
    assert not claim.beats_dense.any()
    assert F3.robustness_claim(frame.drop(columns="reference").iloc[[0, 2, 3, 4]]).beats_baselines.tolist() == [True]
    assert F3.robustness_labels(frame).tolist() == [f"{lsh}, same-epoch reference", f"{lsh}, final reference", loss,
                                                   selfish, "dense"]
    assert F3.robustness_labels(frame.drop(columns="reference")).tolist() == frame.method.tolist()
    times = pd.DataFrame({"repeat": 0, "reference": ["same_epoch"] * 3 + ["final"] * 3,
                          "method": ["LSH (ls ranking)", "LSH (loss ranking)", "full training"] * 2,
                          "seconds": [1.0, 2.0, 3.0, 4.0, 2.0, 3.0]})
    labelled = F3.time_to_target_labels(times)
    assert labelled.label.tolist() == ["LSH (ls ranking), same-epoch reference", "LSH (loss ranking)", "full training",
                                       "LSH (ls ranking), final reference"]


def test_fig3_on_the_committed_atlas_under_each_reading(tmp_path):
    from lshkit.atlas import ATLAS_ROOT, load_atlas

    atlas = load_atlas(ATLAS_ROOT / "atlas")
    left = F3.atlas_robustness_by_reference(atlas, tmp_path / "left", repeats=1, first_seed=3)
    alone = {r: F3.atlas_robustness(atlas, tmp_path / "left", repeats=1, first_seed=3, reference=r)
             for r in ("same_epoch", "final")}  # read back from the folders just written
    lsh = left[left.method == "LSH (TPE, LS ranking)"].set_index("reference").test_ppl
    assert lsh.to_dict() == {r: a[a.method == "LSH (TPE, LS ranking)"].test_ppl.iloc[0] for r, a in alone.items()}
    assert left.reference.isna().sum() == 3 and (left.method == "TPE (loss ranking)").sum() == 1
    assert sorted(p.name for p in (tmp_path / "left").iterdir()) == [
        "ranking=loss", "ranking=ls-reference=final", "ranking=ls-reference=same_epoch"]
    target = 300.0
    times = F3.atlas_time_to_target(atlas, target, tmp_path / "right", repeats=1, first_seed=3)
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith("right")) == [
        "right-reference=final", "right-reference=same_epoch"]
    assert times.groupby("reference").size().to_dict() == {"final": 3, "same_epoch": 3}
    assert (times.reference == "final").sum() == 3
    with pytest.raises(ValueError, match="references must name"):
        F3.atlas_time_to_target(atlas, target, tmp_path / "none", references=[])


def test_fig3_left_against_the_loss_ranking_paired_by_seed():
    lsh, loss = "LSH (TPE, LS ranking)", "TPE (loss ranking)"
    luck = [300.0, 320.0, 280.0, 310.0]
    rows = [{"method": lsh, "reference": r, "seed": s, "sparsity": 0.67, "test_ppl": v + shift}
            for r, shift in (("same_epoch", -5.0), ("final", 40.0)) for s, v in enumerate(luck)]
    rows += [{"method": loss, "reference": None, "seed": s, "sparsity": 0.67, "test_ppl": v} for s, v in enumerate(luck)]
    rows.append({"method": "dense", "reference": None, "seed": 0, "sparsity": 0.0, "test_ppl": 170.0})
    got = F3.robustness_paired(pd.DataFrame(rows)).set_index("reference")
    assert got.difference.to_dict() == pytest.approx({"same_epoch": -5.0, "final": 40.0})
    assert got.verdict.to_dict() == {"same_epoch": "holds", "final": "does not hold"} and (got.pairs == 4).all()
    alone = F3.robustness_paired(pd.DataFrame(rows).query("reference != 'final'").drop(columns="reference"))
    assert alone.difference.iloc[0] == pytest.approx(-5.0)
