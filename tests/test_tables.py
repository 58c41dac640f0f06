"""Tables 2, 4 and B2 as their notebooks call them (lshkit.experiments.table2, table4, tableB2) and
what the three share (lshkit.experiments.readings): the defaults they resolve, their pivots and
their verdict sentences, on small synthetic searches; one replay on the conftest atlas."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from lshkit import paper
from lshkit.experiments import readings, table2, table4, tableB2
from lshkit.report import PALETTE, comparison, validate

#: Each notebook's own parameters at their stored defaults (the notebooks' parameters cells).
DEFAULTS = {
    "table2": {"source": "atlas", "atlas_dir": None, "samplers": None, "rankings": ["loss", "ls"],
               "references": ["same_epoch", "final"], "workers": 2, "repeats": None},
    "table4": {"source": "atlas", "atlas_dir": None, "epochs_per_round": None, "rankings": None,
               "references": ["same_epoch", "final"], "optimal_from": "full_grid"},
    "tableB2": {"source": "atlas", "atlas_dir": None, "embeddings": ["pca", "raw", "tsne"], "distances": ["l2", "cos"],
                "embedding_fits": None, "references": ["same_epoch", "final"], "sampler": "tpe", "repeats": None},
}
MODULES = {"table2": table2, "table4": table4, "tableB2": tableB2}


def _params(name, tmp_path, **given):
    # Seed 7 has no committed run, so nothing committed leaks into these tables.
    common = {"budget": "low", "seed": 7, "device": "cpu", "results_dir": str(tmp_path), "progress": False}
    return validate(name, extras=MODULES[name].PARAMETERS, **{**common, **DEFAULTS[name], **given})


# ------------------------------------------------------------------ readings: what the three share

def test_arm_order_expands_ls_once_per_reading_in_the_order_of_the_rankings():
    assert readings.arm_order(["ls", "loss"], ["same_epoch", "final"]) == ["LS (same epoch)", "LS (final)", "loss"]
    assert readings.arm_order(["loss", "ls"], ["final"]) == ["loss", "LS (final)"]
    assert readings.arm_order(["loss"], ["final"]) == ["loss"]
    with pytest.raises(ValueError, match=r"\['latest'\].*valid: \['same_epoch', 'final'\]"):
        readings.arm_order(["ls"], ["latest"])


def test_arm_palette_gives_each_arm_its_palette_colour():
    assert list(readings.ARM_PALETTE) == readings.arm_order(["ls", "loss"], readings.READINGS)
    assert readings.ARM_PALETTE["LS (final)"] == PALETTE["final reference"]
    assert readings.ARM_PALETTE["loss"] == PALETTE["loss ranking"]


def test_reading_verdict_names_the_reading_and_judges_the_claim():
    table = comparison([("x", 80.0, 70.0, 1.0)], comparable=True)
    sentence = readings.reading_verdict("final", table, claim="LS wins", holds="does not hold", scope=" (E = 1-4)")
    assert sentence.startswith("With the dense model's final LS (the paper's text read literally) as the reference "
                               "(E = 1-4): 0 of 1 numbers agree")
    assert sentence.endswith("the paper's claim that LS wins does not hold in ours.")
    with pytest.raises(ValueError, match=r"valid: \['same_epoch', 'final'\]"):
        readings.reading_verdict("latest", table, claim="LS wins", holds=True)


# ------------------------------------------------------------------ Table 2

def _table2_searches(budget, seeds=20, shifts=(("loss", None, 0.0), ("ls", "same_epoch", -1.0), ("ls", "final", 5.0))):
    """TPE searches of one budget sharing each seed's luck: LS (same epoch) 1 better than loss, LS (final) 5 worse."""
    luck = np.random.default_rng(3).normal(200, 10, size=seeds)
    return pd.concat([pd.DataFrame({"sampler": "tpe", "budget": budget, "seed": range(seeds), "ranking": ranking,
                                    "reference": reference, "test_ppl": luck + shift})
                      for ranking, reference, shift in shifts], ignore_index=True)


def test_table2_resolves_its_defaults_and_refuses_an_unknown_sampler(tmp_path):
    p = _params("table2", tmp_path)
    assert table2.settings(p) == {"samplers": ["grid", "bohb", "tpe", "hyperband", "atpe"], "repeats": 100}
    assert table2.arms(p) == ["LS (same epoch)", "LS (final)", "loss"]  # the paper's column order, whatever rankings say
    trained = _params("table2", tmp_path, source="train", budget="smoke", samplers=["tpe"], rankings=["ls"])
    assert table2.settings(trained) == {"samplers": ["tpe"], "repeats": 1}
    assert table2.arms(trained) == ["LS (same epoch)", "LS (final)"]
    with pytest.raises(ValueError, match=r"samplers.*\['grid', 'bohb', 'tpe', 'hyperband', 'atpe'\]"):
        _params("table2", tmp_path, samplers=["random"])


def test_table2_pivots_every_budget_run_and_judges_the_claim_per_reading(tmp_path):
    p = _params("table2", tmp_path)
    with pytest.raises(ValueError, match="no searches.csv"):
        table2.every_budget(p)
    for budget in ("high", "low"):
        folder = tmp_path / "table2" / f"{budget}-atlas-seed7"
        folder.mkdir(parents=True)
        _table2_searches(budget).to_csv(folder / "searches.csv", index=False)
    every, shown = table2.table(p)
    assert len(every) == 2 * 60
    # Budgets in the paper's order, whichever ran first; the paper's numbers beside ours.
    assert shown.index.tolist() == [("low", "tpe"), ("high", "tpe")]
    assert shown.columns.tolist() == ["LS (same epoch)", "LS (final)", "loss", "paper LS", "paper loss"]
    assert shown.loc[("low", "tpe"), "paper LS"] == "{:.1f} ± {:.1f}".format(*paper.TABLE2[("tpe", "ls")]["low"])
    assert all(cell.endswith("n=20") for cell in shown.iloc[:, :3].to_numpy().ravel())
    assert (p.run_dir / "table2.csv").exists()

    pairs, text = table2.paired(p, every)
    by = pairs.set_index(["reference", "budget"])
    assert by.loc[("same_epoch", "low"), "difference"] == pytest.approx(-1.0)
    assert by.verdict.to_dict() == {("same_epoch", "high"): "holds", ("same_epoch", "low"): "holds",
                                    ("final", "high"): "does not hold", ("final", "low"): "does not hold"}
    assert "-1.00" in text and (p.run_dir / "paired.csv").exists()

    ours, sentences = table2.claims(p, every, pairs)
    assert len(ours) == 2 * 3 and "LSH-tpe (same epoch), budget low" in set(ours.label)
    assert ours.set_index("label").loc["loss-based tpe, budget high", "paper"] == paper.TABLE2[("tpe", "loss")]["high"][0]
    assert "LS (same epoch) − loss, paired, over 2 (optimiser, budget) cells: holds: 2." in sentences
    assert f"claim that {table2.CLAIM} holds in ours" in sentences
    assert f"claim that {table2.CLAIM} does not hold in ours" in sentences
    assert sentences.index("the candidate's epoch") < sentences.index("the dense model's final LS")


def test_table2_says_the_claim_cannot_be_checked_with_one_ranking(tmp_path):
    p = _params("table2", tmp_path, rankings=["loss"])
    folder = tmp_path / "table2" / "low-atlas-seed7"
    folder.mkdir(parents=True)
    _table2_searches("low", shifts=(("loss", None, 0.0),)).to_csv(folder / "searches.csv", index=False)
    every, shown = table2.table(p)
    assert shown.columns.tolist() == ["loss", "paper LS", "paper loss"]
    pairs, text = table2.paired(p, every)
    assert pairs is None and text == "Only one ranking ran, so the claim cannot be checked."
    _, sentences = table2.claims(p, every, pairs)
    assert "claim" not in sentences.splitlines()[-1] and "cannot be compared" in sentences


# ------------------------------------------------------------------ Table 4

def _table4_searches(selected):
    """One grid search per arm and E = 1..5; ``selected``: arm -> the E that selected the optimum."""
    arms = ["LS (same epoch)", "LS (final)", "loss"]
    rows = [{"arm": arm, "ranking": "loss" if arm == "loss" else "ls", "E": e, "selection_seconds": 300.0 * e,
             "final_seconds": 400.0 - 50 * e, "total_seconds": 300.0 * e + 400.0 - 50 * e, "test_ppl": 200.0 + e,
             "optimal_selected": e in selected[arm]} for arm in arms for e in range(1, 6)]
    frame = pd.DataFrame(rows)
    return frame.assign(arm=pd.Categorical(frame.arm, arms))


def test_table4_resolves_its_defaults(tmp_path):
    p = _params("table4", tmp_path)
    assert table4.settings(p) == {"epochs_per_round": [1, 2, 3, 4, 5], "rankings": ["ls", "loss"]}
    assert table4.arms(p) == ["LS (same epoch)", "LS (final)", "loss"]
    trained = _params("table4", tmp_path, source="train", budget="smoke", references=["final"])
    assert table4.settings(trained) == {"epochs_per_round": [1, 2, 3, 4], "rankings": ["ls"]}
    assert table4.arms(trained) == ["LS (final)"]
    with pytest.raises(ValueError, match=r"optimal_from.*\['full_grid', 'none'\]"):
        _params("table4", tmp_path, optimal_from="exhaustive")


def test_table4_judges_the_claim_per_reading_on_the_papers_E(tmp_path):
    p = _params("table4", tmp_path)
    searches = _table4_searches({"LS (same epoch)": {3, 4}, "LS (final)": {2, 3}, "loss": {3, 4, 5}})
    ours, text = table4.claims(p, searches)
    # E = 5 is listed but not judged: the paper's table stops at 4.
    assert "LS (same epoch): the optimal configuration is selected for E in [3, 4] of [1, 2, 3, 4, 5]." in text
    assert "loss: the optimal configuration is selected for E in [3, 4, 5]" in text
    assert len(ours) == 2 * 4 and ours.label.str.endswith(("LS (same epoch)", "LS (final)")).all()
    same, final = [line for line in text.splitlines() if line.startswith("With ")]
    assert same.startswith("With the dense LS at the candidate's epoch") and "(E = 1-4): " in same
    assert same.endswith(f"claim that {table4.CLAIM} holds in ours.")
    assert final.endswith(f"claim that {table4.CLAIM} does not hold in ours.")
    unknown, text = table4.claims(p, searches.assign(optimal_selected=pd.NA))
    assert unknown is None and "was not determined" in text


def test_table4_times_and_table(tmp_path):
    p = _params("table4", tmp_path)
    searches = _table4_searches({"LS (same epoch)": {3, 4}, "LS (final)": {3, 4}, "loss": {3, 4}})
    timing, text = table4.timing(p, searches, {"versions": {}})
    assert len(timing) == 2 * 4 * 3 and "E=2: 300.00" in text and "compute minutes on this CPU" in text
    assert timing.set_index("label").loc["E=3 selection (minutes), LS (final)", "ours"] == pytest.approx(15.0)
    tidy, unit = table4.times(searches)
    assert unit == "compute seconds" and set(tidy.phase) == {"selection", "extensive training"}
    assert len(tidy) == 2 * len(searches)
    hours, unit = table4.times(searches.assign(selection_seconds=searches.selection_seconds * 100))
    assert unit == "CPU hours" and hours.time.max() == pytest.approx(1500.0 * 100 / 3600)
    ours, published = table4.table(p, searches)
    assert ours.loc[("LS (final)", 3), "selection"] == 900.0 and published.columns.tolist() == [1, 2, 3, 4]
    assert published.loc["optimal config selected"].tolist() == [False, False, True, True]
    assert (p.run_dir / "table4.csv").exists() and (p.run_dir / "searches.csv").exists()


def test_table4_replays_every_E_on_an_atlas_and_the_loss_once(atlas_dir, tmp_path):
    p = _params("table4", tmp_path, atlas_dir=str(atlas_dir), budget="smoke", epochs_per_round=[1])
    searches = table4.run(p)
    assert searches.arm.tolist() == ["LS (same epoch)", "LS (final)", "loss"] and searches.E.tolist() == [1, 1, 1]
    searches, sentence = table4.optimal(p, searches)
    assert sentence.startswith("optimal of the grid on the atlas: {") and searches.optimal_selected.dtype == bool


# ------------------------------------------------------------------ Table B2

def _tableB2_searches(shifts, seeds=30):
    """TPE searches per combination, fit and reading sharing each seed's luck; ``shifts``: (reading,
    embedding, distance) -> how much worse than PCA/L2."""
    luck = np.random.default_rng(4).normal(200, 10, size=seeds)
    frames = [pd.DataFrame({"embedding_fit": fit, "embedding": e, "distance": d, "reference": r, "ranking": "ls",
                            "seed": range(seeds), "test_ppl": luck + shift})
              for fit in ("candidate", "joint") for (r, e, d), shift in shifts.items()]
    return readings.with_arms(pd.concat(frames, ignore_index=True))


def test_tableB2_judges_pca_l2_against_every_other_space_per_reading(tmp_path):
    p = _params("tableB2", tmp_path, embeddings=["pca", "raw"], distances=["l2"])
    assert tableB2.settings(p) == {"repeats": 30, "embedding_fits": ["candidate", "joint"]}
    searches = _tableB2_searches({("same_epoch", "pca", "l2"): 0.0, ("same_epoch", "raw", "l2"): 2.0,
                                  ("final", "pca", "l2"): 3.0, ("final", "raw", "l2"): 0.0})
    shown = tableB2.table(p, searches)
    assert shown.columns.tolist() == [("candidate", "LS (same epoch)"), ("candidate", "LS (final)"),
                                      ("joint", "LS (same epoch)"), ("joint", "LS (final)"), ("paper", "")]
    assert shown.loc[("raw", "l2"), ("paper", "")] == paper.TABLE_B2[("raw", "l2")]
    ours, text = tableB2.claims(p, searches)
    assert ours.label.tolist() == ["PCA, l2, LS (same epoch)", "raw LS, l2, LS (same epoch)", "PCA, l2, LS (final)",
                                   "raw LS, l2, LS (final)"]
    assert "LS (final), candidate fit: means lowest first: raw/l2 " in text
    same, final = [line for line in text.splitlines() if line.startswith("With ")]
    assert same.endswith(f"claim that {tableB2.CLAIM} holds in ours.")
    assert final.endswith(f"claim that {tableB2.CLAIM} does not hold in ours.")
    paired = pd.read_csv(p.run_dir / "paired.csv")
    assert paired.set_index("reference").difference.to_dict() == pytest.approx({"same_epoch": -2.0, "final": 3.0})


def test_tableB2_cannot_judge_the_claim_without_another_space(tmp_path):
    p = _params("tableB2", tmp_path, embeddings=["pca"], distances=["l2"], embedding_fits=["candidate"])
    searches = _tableB2_searches({("same_epoch", "pca", "l2"): 0.0, ("final", "pca", "l2"): 1.0})
    _, text = tableB2.claims(p, searches)
    assert "PCA/L2 and at least one other combination must run for the claim to be checked." in text
    assert not (p.run_dir / "paired.csv").exists()
    with pytest.raises(ValueError, match=r"embeddings\[0\]='umap' is not valid; choose one of \['pca', 'tsne', 'raw'\]"):
        _params("tableB2", tmp_path, embeddings=["umap"])
