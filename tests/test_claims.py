"""The notebooks' entry points of :mod:`lshkit.experiments` (Fig. 1, Table 1, Table 3, the
predictive power and the predictor shoot-out): known frames give known verdicts, and a bad
parameter is refused, naming the valid values, before anything is computed or written."""
from __future__ import annotations

import re
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest

from lshkit.experiments import fig1, predictive_power, shootout, table1, table3
from lshkit.report import validate


def _params(tmp_path, **values):
    """Notebook parameters as validate() gives them, without validate's own checks: what a module
    must refuse by itself when called outside a notebook."""
    common = {"budget": "low", "effective_scale": "atlas", "seed": 0, "device": "cpu", "progress": False,
              "run_dir": tmp_path / "run", "storage": None, "paper_scale": False, "scale_reason": "scale"}
    return SimpleNamespace(**common, **values, extras=dict(values))


@pytest.mark.parametrize("module, values, message", [
    (fig1, {"source": "nonsense", "references": ["final"], "epochs": None},
     "source='nonsense' is not valid; choose one of ['atlas', 'train']"),
    (fig1, {"source": "atlas", "references": ["middle"], "epochs": None}, "'same_epoch', 'final'"),
    (table1, {"source": "atlas", "references": ["final"], "models": ["lstm", "gru"], "repeats": None},
     "models='gru' is not valid; choose one of ['lstm', 'rhn', 'awd_mos']"),
    (table1, {"source": "atlas", "references": ["final"], "models": ["lstm"], "repeats": 0}, "repeats=0"),
    (table3, {"epochs": 3, "repeats": 1, "ls_warmup": "qr"}, "ls_warmup='qr' is not valid; choose one of"),
    (table3, {"epochs": 0, "repeats": 1, "ls_warmup": "stable"}, "epochs=0 is not valid; it must be a positive"),
    (predictive_power, {"source": "atlas", "max_epoch": 5, "n_boot": 100, "conventions": ["paper"],
                        "embeddings": ["umap"], "distances": ["l2"], "references": ["final"]},
     "embeddings='umap' is not valid; choose one of ['pca', 'tsne', 'raw']"),
    (predictive_power, {"source": "train", "max_epoch": 5, "n_boot": 100, "conventions": ["paper"],
                        "embeddings": ["pca"], "distances": ["l2"], "references": ["final"]},
     "source='train' is not valid; choose one of ['atlas']"),
    (shootout, {"source": "atlas", "max_epoch": 5, "n_boot": 100, "repeats": 1, "folds": 1, "trees": 10,
                "references": ["final"]}, "folds=1 is not valid; it must be an integer >= 2"),
])
def test_a_bad_parameter_is_refused_before_anything_runs(tmp_path, module, values, message):
    p = _params(tmp_path, **values)
    with pytest.raises(ValueError, match=re.escape(message)):
        module.run(p)
    assert not p.run_dir.exists(), "nothing was recorded or saved before the check"


def test_fig1_view_keeps_the_bulk_and_counts_the_trajectories_that_leave_it():
    rng = np.random.default_rng(0)
    bulk = pd.DataFrame({"name": np.repeat([f"c{i}" for i in range(20)], 3), "pc1": rng.uniform(-1, 1, 60),
                         "pc2": rng.uniform(-1, 1, 60)})
    runaway = pd.DataFrame({"name": "blown", "pc1": [0.0, 50.0, 500.0], "pc2": [0.0, 0.0, 0.0]})
    dense = pd.DataFrame({"pc1": [0.0, 2.0], "pc2": [0.0, 0.5]})
    view = fig1._view(pd.concat([bulk, runaway], ignore_index=True), dense)
    assert view["outside"] == 1  # the blown-up spectrum alone leaves the view
    assert view["xlim"][0] < -0.8 and 2.0 < view["xlim"][1] < 5  # the dense path is kept whole, the runaway is not
    assert view["ylim"][0] < -0.8 and 0.8 < view["ylim"][1] < 2


def test_table1_run_judges_each_reading_and_says_which_models_did_not_run(tmp_path, monkeypatch):
    picks = {"same_epoch": (70.0, 1.0), "final": (75.0, 1.0)}

    def atlas_methods(atlas, out, *, reference, **kw):
        return pd.DataFrame({"model": "lstm", "dataset": "ptb", "method": list(table1.METHODS),
                             "label": list(table1.METHODS.values()), "sparsity": [0.0, 0.67, 0.67], "status": "ok",
                             "valid_ppl": np.nan, "test_ppl": [80.0, 72.0, picks[reference][0]], "seconds": 1.0,
                             "configuration": "", "n": [1, 1, 100], "ci95": [np.nan, np.nan, picks[reference][1]]})

    monkeypatch.setattr(table1, "atlas_methods", atlas_methods)
    p = validate("table1", extras={"source": ("atlas",), "models": lambda n, v: None, "atlas_dir": lambda n, v: None,
                                   "repeats": lambda n, v: None, "references": lambda n, v: None},
                 source="atlas", models=["lstm", "rhn", "awd_mos"], atlas_dir=None, repeats=None,
                 references=["same_epoch", "final"], budget="low", results_dir=str(tmp_path))
    r = table1.run(p)
    assert r["claims"].set_index("reference").state.to_dict() == {"same_epoch": "holds", "final": "does not hold"}
    first, second = r["verdicts"].strip().split("\n\n")
    assert first.startswith("With the dense LS at the candidate's epoch") and first.endswith("holds in ours.")
    assert second.startswith("With the dense model's final LS") and second.endswith("does not hold in ours.")
    assert "cannot be compared with the paper's" in first  # atlas scale
    assert r["not_run"] == ["RHN / PTB", "AWD-LSTM-MoS / WikiText-2"]
    assert r["bar_order"] == ["dense", "Selfish-RNN", "LSH, same-epoch ref.", "LSH, final ref."]
    paper_lsh = r["bars"][(r["bars"].source == "paper") & (r["bars"].model == "stacked LSTM / PTB")]
    assert paper_lsh.set_index("method").test_ppl["LSH, same-epoch ref."] == 69.9  # the authors' code's reading
    ours = r["comparison"].set_index("label").ours
    assert ours["stacked LSTM / PTB: LSH pick, final reference"] == 75.0 and np.isnan(ours["RHN / PTB: LSH pick"])
    assert {"table1.csv", "comparison.csv", "claim.csv", "run.json"} <= {f.name for f in p.run_dir.iterdir()}


def test_table3_run_judges_the_claim_on_the_measured_spectra(tmp_path, monkeypatch):
    """Two models whose LS barely moves with K, far apart from each other: the claim holds; a K
    that moves the maximum by 0.5 breaks it. The measurement is read back, so nothing trains."""
    def effect(shift):
        rows = []
        for model, base in (("Selfish-RNN default", 0.0), ("authors' best", 5.0)):
            for k, moved in ((2, 0.0), (10, shift)):
                rows.append({"samples": k, "repeat": 0, "max": 2.0 + base + moved, "min": -9.0 - base,
                             "mean": -3.0 - base, "variance": 4.0 + base, "seconds": 0.2 * k,
                             "seconds_per_sample": 0.2, "model": model})
        return pd.DataFrame(rows)

    history = [{"density": 0.33, "valid_ppl": 500.0}]
    monkeypatch.setattr(table3, "train_variants", lambda cfg, corpus, models, **kw: {
        name: SimpleNamespace(history=history) for name in models})
    for shift, holds in ((0.01, "holds"), (0.5, "does not hold")):
        p = validate("table3", extras={"epochs": lambda n, v: None, "repeats": lambda n, v: None,
                                       "ls_warmup": ("stable", "authors")},
                     epochs=3, repeats=1, ls_warmup="authors", budget="smoke", results_dir=str(tmp_path / holds))
        work = p.run_dir / "3epochs-authors"
        work.mkdir(parents=True)
        effect(shift).to_csv(work / "sample_effect.csv", index=False)
        r = table3.run(p)
        assert f"the paper's claim that {table3.CLAIM} {holds} here." in r["verdicts"]
        assert r["claim"].set_index("stat").delta["max"] == pytest.approx(shift)
        assert r["paper_claim"].within_bound.all()
        assert set(r["tidy"].statistic) == set(table3.FIGURE_STATS.values())


def _by_reference_table(verdicts: dict) -> pd.DataFrame:
    return pd.DataFrame([{"reference": r, "epoch": 3, "rho_ls": 0.5, "rho_ls_lo": 0.2, "rho_ls_hi": 0.8,
                          "difference": 0.4, "lo": lo, "hi": lo + 0.5, "ls_predicts": "holds", "ls_beats_loss": v}
                         for r, (v, lo) in verdicts.items()])


def test_predictive_power_claim_names_the_readings_it_holds_under():
    table = _by_reference_table({"same_epoch": ("holds", 0.1), "final": ("is inconclusive", -0.1)})
    differences = pd.DataFrame({"reference": ["same_epoch", "same_epoch", "final"], "epoch": 3,
                                "lo": [0.1, -0.2, -0.9], "hi": [0.5, 0.2, -0.1]})
    main = {"convention": "paper", "embedding": "pca", "distance": "l2"}
    claim, text = predictive_power._claim(table, differences, 3, main)
    assert claim["readings"]["same_epoch"]["settings"] == {"holds": 1, "is inconclusive": 1}
    assert claim["readings"]["final"]["settings"] == {"does not hold": 1}
    assert claim["readings"]["final"]["verdict"] == "is inconclusive"
    assert text.endswith("\nSo at the atlas scale the claim is reproduced under the same-epoch reference; "
                         "under the final reference it is inconclusive.")
    _, none = predictive_power._claim(_by_reference_table({"final": ("does not hold", -0.6)}), differences, 3, main)
    assert none.endswith("reproduced under no reading; under the final reference it does not hold.")


def test_shootout_verdicts_judge_each_predictor_against_each_reading():
    corr = pd.DataFrame({"predictor": ["ls_same_epoch", "ls_final", "neg_gap_min"], "epoch": 3,
                         "rho": [0.8, -0.1, 0.5], "lo": [0.6, -0.4, 0.3], "hi": [0.9, 0.2, 0.7]})
    pairs = [("ls_final", "ls_same_epoch", -1.0, -0.5), ("neg_gap_min", "ls_same_epoch", -0.5, -0.1),
             ("ls_same_epoch", "ls_final", 0.5, 1.0), ("neg_gap_min", "ls_final", -0.1, 0.9)]
    diff = pd.DataFrame(pairs, columns=["predictor", "against", "lo", "hi"]).assign(epoch=3)
    verdicts = shootout._verdicts(corr, diff, ["ls_same_epoch", "ls_final", "neg_gap_min"], 3).set_index("predictor")
    assert verdicts["it predicts"].to_dict() == {"ls_same_epoch": "holds", "ls_final": "is inconclusive",
                                                 "neg_gap_min": "holds"}
    assert verdicts["it beats LS (same epoch)"].to_dict() == {"ls_same_epoch": "—", "ls_final": "does not hold",
                                                              "neg_gap_min": "does not hold"}
    assert verdicts["it beats LS (final)"].to_dict() == {"ls_same_epoch": "holds", "ls_final": "—",
                                                         "neg_gap_min": "is inconclusive"}


def test_every_predictor_and_rule_has_a_colour_of_the_palette():
    from lshkit.report import PALETTE

    assert set(shootout.PREDICTOR_COLOURS) == set(shootout.PREDICTORS)
    assert set(shootout.RULE_LABELS) == set(shootout.RULE_COLOURS) == {"gap", "LS (same epoch)", "LS (final)", "loss"}
    for name in [*shootout.PREDICTOR_COLOURS.values(), *shootout.RULE_COLOURS.values(), *fig1.VARIANT_COLOURS.values()]:
        assert name in PALETTE
