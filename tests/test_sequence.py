"""The small sequence models both RNN studies train (lshkit.studies.sequence): their shapes, the
Reber string accuracy, exact pruning counts, masked and seeded training, the pruning curve with
its spectral gaps, and the summaries over seeds."""
import math

import numpy as np
import pandas as pd
import pytest
import torch
from torch import nn

from lshkit.studies.reber import SYMBOLS, make_reber
from lshkit.studies.sequence import (GATES, LAYERS, VARIANTS, FitConfig, SequenceNet, build, evaluate, fit,
                                     load_digits_sequences, prune_masks, pruning_curve, summarise, train_with_mask)


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


def test_summaries_have_no_interval_for_one_seed():
    frame = pd.DataFrame({"variant": ["gru", "gru", "lstm"], "seed": [0, 1, 0], "accuracy": [0.5, 0.7, 0.9]})
    s = summarise(frame, ["variant"]).set_index("variant")
    assert s.loc["gru", "n"] == 2 and s.loc["gru", "low"] < 0.6 < s.loc["gru", "high"]
    assert s.loc["gru", "high"] - s.loc["gru", "mean"] == pytest.approx(s.loc["gru", "ci95"])
    assert s.loc["lstm", "mean"] == 0.9 and math.isnan(s.loc["lstm", "low"]) and math.isnan(s.loc["lstm", "high"])
