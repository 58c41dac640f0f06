"""The Reber grammars as data (lshkit.reber) and the sequence models and pruning of the Reber
study (lshkit.sequence)."""
import numpy as np
import pytest
import torch
from torch import nn

from lshkit.reber import (GRAMMARS, SYMBOLS, is_legal, legal_next, length_distribution, make_reber,
                          mean_length)
from lshkit.sequence import (GATES, LAYERS, VARIANTS, FitConfig, SequenceNet, build, evaluate, fit,
                             load_digits_sequences, prune_masks, pruning_curve, train_with_mask)


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


# -- the sequence models -------------------------------------------------------------------


@pytest.mark.parametrize("variant", VARIANTS)
def test_variants_shapes_and_gate_blocks(variant):
    data = make_reber(20, seed=0)
    model = build(variant, data, 6, seed=0)
    assert model(data.inputs).shape == data.targets.shape
    params = dict(model.named_parameters())
    assert params[LAYERS["hh"]].shape == (GATES[variant] * 6, 6)
    assert params[LAYERS["ih"]].shape == (GATES[variant] * 6, len(SYMBOLS))
    with pytest.raises(ValueError, match="variant='elman' is not valid"):
        SequenceNet("elman", 7, 6, 7)


class _Fixed(nn.Module):
    def __init__(self, logits):
        super().__init__()
        self.logits = logits

    def forward(self, x):
        return self.logits


def test_a_string_counts_only_when_every_step_is_right():
    data = make_reber(50, seed=2)
    perfect = data.targets * 20 - 10
    assert evaluate(_Fixed(perfect), data)["accuracy"] == 1.0
    wrong = perfect.clone()
    wrong[1, 0, 0] = 10.0  # one wrong symbol at one step of the first string
    out = evaluate(_Fixed(wrong), data)
    assert out["accuracy"] == pytest.approx(49 / 50)
    assert out["step_accuracy"] == pytest.approx(1 - 1 / int(data.mask.sum()))
    padded = perfect.clone()
    padded[~data.mask] = 10.0  # outputs on padding never count
    assert evaluate(_Fixed(padded), data)["accuracy"] == 1.0


@pytest.mark.parametrize("method", ["magnitude", "random"])
@pytest.mark.parametrize("target", ["ih", "hh", "both"])
def test_pruning_removes_exact_counts(method, target):
    model = build("lstm", make_reber(10, seed=0), 10, seed=0)
    params = dict(model.named_parameters())
    for s in (0.0, 0.1, 0.35, 0.9, 1.0):
        masks = prune_masks(model, s, target, method, seed=1)
        assert set(masks) == {LAYERS[k] for k in (("ih", "hh") if target == "both" else (target,))}
        for name, m in masks.items():
            assert m.shape == params[name].shape and (~m).sum() == round(s * m.numel())
            if method == "magnitude" and 0 < s < 1:
                w = params[name].detach().abs()
                assert w[m].min() >= w[~m].max()
    a, b = prune_masks(model, 0.5, target, method, seed=3), prune_masks(model, 0.5, target, method, seed=3)
    assert all(torch.equal(a[k], b[k]) for k in a)
    with pytest.raises(ValueError, match=r"sparsity=1.5 is not valid; it must be a number in \[0, 1\]"):
        prune_masks(model, 1.5)


def test_masked_training_keeps_pruned_weights_at_zero_and_learns_reber():
    train, test = make_reber(300, seed=0), make_reber(200, seed=99)
    model = build("gru", train, 12, seed=0)
    masks = prune_masks(model, 0.5, "both", "random", seed=0)
    fit(model, train, FitConfig(epochs=8, batch_size=16, lr=0.03), masks=masks, seed=0)
    params = dict(model.named_parameters())
    for name, m in masks.items():
        assert params[name].detach()[~m].abs().max() == 0
        assert (params[name].detach()[m] != 0).all()
    assert evaluate(model, test)["accuracy"] >= 0.9  # a GRU at half density still learns the grammar


def test_same_seed_same_training():
    train = make_reber(60, seed=0)
    runs = []
    for _ in range(2):
        model = build("rnn_tanh", train, 5, seed=4)
        runs.append(fit(model, train, FitConfig(epochs=2), seed=4))
    assert runs[0] == runs[1]


def test_pruning_curve_rows_and_gaps():
    train, test = make_reber(40, seed=0), make_reber(20, seed=1)
    frame = pruning_curve("rnn_relu", train, test, hidden_size=6, fit_cfg=FitConfig(epochs=1),
                          finetune_cfg=FitConfig(epochs=1), sparsities=[0.0, 0.5, 1.0], targets=("hh", "both"),
                          methods=("magnitude", "random"), seed=0)
    assert len(frame) == 2 * 2 * 3 * 2
    hh = frame[frame.target == "hh"]
    assert (hh.density_ih == 1).all() and np.allclose(hh.density_hh, 1 - hh.sparsity, atol=1 / 36)
    assert frame[frame.sparsity == 1.0].gap_hh.isna().all()  # no edge, no spectrum


def test_train_with_mask_applies_the_graph_to_every_gate():
    train = make_reber(30, seed=0)
    adj = np.zeros((6, 6), dtype=bool)
    adj[0, 1] = adj[1, 0] = True
    out = train_with_mask("lstm", adj, train, train, hidden_size=6, fit_cfg=FitConfig(epochs=1))
    assert out["mask"].shape == (24, 6) and int(out["mask"].sum()) == 8
    with pytest.raises(ValueError, match=r"adjacency must be \[6, 6\]"):
        train_with_mask("gru", adj[:5, :5], train, train, hidden_size=6, fit_cfg=FitConfig(epochs=1))


def test_digits_read_row_by_row():
    train, test = load_digits_sequences(seed=0)
    assert train.inputs.shape[0] == 8 and train.inputs.shape[2] == 8 and len(train) + len(test) == 1797
    assert 0 <= float(train.inputs.min()) and float(train.inputs.max()) <= 1
    assert set(test.targets.tolist()) == set(range(10))
    from sklearn.datasets import load_digits
    images = load_digits().images
    first = train.inputs[:, 0] * 16  # row t of the image at step t
    assert any(np.allclose(first.numpy(), img) for img in images)


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
