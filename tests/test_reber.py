"""The Reber grammars as data (lshkit.studies.reber) and the Reber sparsity study
(lshkit.studies.reber_sparsity): the prunable share, the summaries and the thesis's claims read
in our numbers."""
import math

import numpy as np
import pandas as pd
import pytest
import torch

from lshkit.studies.reber import (GRAMMARS, SYMBOLS, is_legal, legal_next, length_distribution, length_summary,
                                  make_reber, mean_length)
from lshkit.studies.reber_sparsity import (REBER_PRESETS, beside_thesis, claim_lines, no_recurrence_summary,
                                           prunable_sparsity)
from lshkit.studies.sequence import VARIANTS, summarise


# -- the grammar ---------------------------------------------------------------------------


def test_hand_checked_strings_and_legal_sets():
    assert is_legal("BTXSE") and is_legal("BTSSXXTVVE") and is_legal("BPVVE") and is_legal("BPTVPXVVE")
    assert not is_legal("BTXE") and not is_legal("BTXS") and not is_legal("TXSE") and not is_legal("BTXSEE")
    assert legal_next("") == "B" and legal_next("B") == "TP" and legal_next("BT") == "SX"
    assert legal_next("BTX") == "SX" and legal_next("BTXS") == "E" and legal_next("BP") == "TV"
    # the embedded grammar remembers its branch across the inner string
    assert is_legal("BTBTXSETE", "embedded") and not is_legal("BTBTXSEPE", "embedded")
    assert legal_next("BTBTXSE", "embedded") == "T" and legal_next("BPBTXSE", "embedded") == "P"
    with pytest.raises(ValueError, match="not a prefix"):
        legal_next("BX")


@pytest.mark.parametrize("name", GRAMMARS)
def test_every_generated_string_is_legal_and_targets_are_the_legal_sets(name):
    data = make_reber(300, name, seed=3)
    assert all(is_legal(s, name) for s in data.strings)
    steps = data.lengths - 1
    assert torch.equal(data.mask.sum(0), steps)
    for i in range(0, 300, 7):
        s = data.strings[i]
        for t in range(len(s) - 1):
            assert SYMBOLS[int(data.inputs[t, i].argmax())] == s[t] and data.inputs[t, i].sum() == 1
            legal = "".join(c for c, on in zip(SYMBOLS, data.targets[t, i]) if on)
            assert legal == legal_next(s[:t + 1], name)
        assert data.inputs[len(s) - 1:, i].abs().sum() == 0 and not data.mask[len(s) - 1:, i].any()


def test_same_seed_same_data_other_seed_other_data():
    a, b, c = make_reber(200, seed=5), make_reber(200, seed=5), make_reber(200, seed=6)
    assert a.strings == b.strings and torch.equal(a.inputs, b.inputs) and torch.equal(a.targets, b.targets)
    assert a.strings != c.strings


@pytest.mark.parametrize("name, shortest, mean", [("reber", 5, 8.0), ("embedded", 9, 12.0)])
def test_length_distribution_exact_and_empirical(name, shortest, mean):
    exact = length_distribution(name, 80)
    assert np.flatnonzero(exact)[0] == shortest and abs(exact.sum() - 1) < 1e-8
    assert mean_length(name) == pytest.approx(mean, abs=1e-9)
    assert (exact * np.arange(81)).sum() == pytest.approx(mean, abs=1e-6)
    lengths = make_reber(20000, name, seed=0).lengths.numpy()
    freq = np.bincount(lengths, minlength=81)[:81] / len(lengths)
    assert np.abs(freq - exact).max() < 0.015  # ~4 binomial standard errors at 20000 draws
    assert lengths.mean() == pytest.approx(mean, abs=0.15)


def test_max_length_truncates_and_bad_arguments_are_named():
    data = make_reber(500, seed=1, max_length=8)
    assert int(data.lengths.max()) <= 8 and all(is_legal(s) for s in data.strings)
    with pytest.raises(ValueError, match=r"grammar='nested' is not valid; choose one of \['reber', 'embedded'\]"):
        make_reber(10, "nested")
    with pytest.raises(ValueError, match="n=0 is not valid"):
        make_reber(0)
    with pytest.raises(ValueError, match="max_length=4 is not valid"):
        make_reber(10, max_length=4)


def test_length_summary_gives_the_exact_mean_shortest_and_tail():
    assert length_summary("reber") == "reber: string length mean 8.0, min 5, P(length > 20) = 0.008"
    assert length_summary("embedded") == "embedded: string length mean 12.0, min 9, P(length > 20) = 0.028"


# -- the sparsity study ---------------------------------------------------------------------


def test_prunable_sparsity_and_summaries():
    rows = []
    for seed, accs in enumerate(([1.0, 1.0, 0.99, 0.5], [1.0, 1.0, 0.97, 0.3])):
        for s, a in zip([0.0, 0.5, 0.9, 1.0], accs):
            rows.append({"variant": "gru", "target": "hh", "method": "magnitude", "finetuned": True, "sparsity": s,
                         "seed": seed, "accuracy": a, "dense_accuracy": 1.0})
    frame = pd.DataFrame(rows)
    out = prunable_sparsity(frame, tolerance=0.02).iloc[0]
    assert out.prunable == 0.9 and out.accuracy_at_100 == pytest.approx(0.4)  # mean 0.98 at 0.9 is within 0.02
    assert prunable_sparsity(frame, tolerance=0.01).iloc[0].prunable == 0.5
    s = summarise(frame, ["sparsity"]).set_index("sparsity")
    assert s.loc[1.0, "mean"] == pytest.approx(0.4) and s.loc[1.0, "low"] < 0.4 < s.loc[1.0, "high"]
    assert s.loc[0.0, "low"] == s.loc[0.0, "high"] == 1.0


def _study(dense=1.0, both_ft=0.8, gru_r2=(0.7, 0.5, 0.85), gru_seeds=(1.0, 1.0)):
    """The four frames claim_lines reads, for a study whose every claim holds by default."""
    auc = {"gru": 0.9, "lstm": 0.88, "rnn_tanh": 0.8, "rnn_relu": 0.7}
    prunable = pd.DataFrame([{"variant": v, "target": t, "method": "magnitude", "finetuned": ft,
                              "dense_accuracy": dense, "prunable": both_ft if ft else 0.4,
                              "accuracy_at_100": 0.95 if v == "gru" else 0.2, "auc": auc[v]}
                             for v in VARIANTS for t in ("ih", "hh", "both") for ft in (False, True)])
    no_rec = no_recurrence_summary(pd.DataFrame(
        [{"variant": v, "seed": i, "accuracy": a} for v in VARIANTS
         for i, a in enumerate(gru_seeds if v == "gru" else (0.0, 0.0))]))
    fits = pd.DataFrame([{"variant": v, "r2": r2, "r2_low": lo, "r2_high": hi, "rows": 24}
                         for v, (r2, lo, hi) in zip(VARIANTS, [(0.3, 0.1, 0.5), (0.2, 0.0, 0.4), (0.6, 0.4, 0.8), gru_r2])])
    importances = pd.DataFrame([{"variant": v, "feature": f, "importance": w} for v in VARIANTS
                                for f, w in (("nodes", 0.5), ("max_betweenness", 0.3), ("edges", 0.2))])
    return prunable, no_rec, fits, importances


def test_claim_lines_judge_each_claim_of_the_thesis():
    lines = claim_lines(*_study(), REBER_PRESETS["smoke"], tolerance=0.02)
    assert len(lines) == 6 and all(line.startswith("- The thesis's claim that ") for line in lines)
    assert lines[0].startswith("- The thesis's claim that 80-90% of the weights can be removed without a significant "
                               "loss holds at this scale: removing both matrices, the largest share within 0.02 of "
                               "dense accuracy is (fine-tuned/not) RNN-tanh 80%/40%")
    assert " LSTM and GRU are the most resilient to pruning holds " in lines[1]
    assert "GRU scores 1.000 (1.000 to 1.000; dense 1.000), RNN-tanh 0.000" in lines[2]
    assert "fits GRU with R² = 0.81 holds at this scale: ours is 0.70 (95% interval 0.50 to 0.85, 24 networks)" in lines[3]
    assert "the fit is poor for RNN-tanh holds" in lines[4] and "betweenness centrality are the most important " \
        "properties holds" in lines[5]
    # A dense network that did not learn the grammar leaves the pruning claims inconclusive; one seed has no interval.
    lines = claim_lines(*_study(dense=0.4, gru_r2=(0.3, 0.1, 0.5), gru_seeds=(1.0,)), REBER_PRESETS["smoke"])
    assert lines[0].startswith("- Some dense networks got fewer than half the test strings right")
    assert all(" is inconclusive at this scale" in line for line in lines[1:4])
    assert "GRU scores 1.000 (dense 0.400)" in lines[3] and "nan" not in lines[3]
    assert "fits GRU with R² = 0.81 does not hold" in lines[4] and "the fit is poor for RNN-tanh does not hold" in lines[5]


def test_beside_thesis_sets_the_headline_numbers_side_by_side():
    prunable, no_rec, fits, _ = _study()
    table = beside_thesis(prunable, no_rec, fits, REBER_PRESETS["smoke"]).set_index("label")
    assert list(table.ours) == pytest.approx([0.8, 0.4, 0.0, 0.7]) and list(table.paper) == [0.8, 0.8, 0.0, 0.81]
    assert not math.isnan(table.ours.iloc[2])


def test_a_bad_parameter_stops_the_notebook_before_any_compute(tmp_path):
    from pathlib import Path

    import papermill
    from papermill.exceptions import PapermillExecutionError

    notebook = Path(__file__).resolve().parent.parent / "notebooks" / "reber_sparsity.ipynb"
    with pytest.raises(PapermillExecutionError) as info:
        papermill.execute_notebook(str(notebook), str(tmp_path / "out.ipynb"), progress_bar=False, kernel_name="python3",
                                   parameters={"grammar": "nested", "results_dir": str(tmp_path)})
    assert "grammar='nested' is not valid; choose one of ['reber', 'embedded']" in str(info.value)
    assert not any(tmp_path.glob("reber_sparsity/*")), "nothing ran before the check"
