"""Small recurrent sequence models (RNN-tanh, RNN-ReLU, LSTM, GRU), their training, magnitude and
random pruning, and the pruning curve: what the two sequence studies share.

- The Reber-grammar sparsity study (Darji, arXiv 2407.20601; :mod:`lshkit.studies.reber_sparsity`):
  four variants trained dense, then 0–100% of the input-to-hidden, hidden-to-hidden or both
  weights removed by magnitude, with and without fine-tuning (:func:`pruning_curve`);
  hidden-to-hidden masks from random graphs, each network trained with its mask
  (:func:`train_with_mask`, :mod:`lshkit.studies.random_graphs`).
- The spectral-gap study (Kalra et al., arXiv 2403.11100; :mod:`lshkit.studies.spectral_gap`):
  RNN and LSTM pruned by magnitude or at random at rising sparsity, with every pruned layer's
  spectral gap (:func:`pruning_curve` records it through :func:`lshkit.graph.spectral_gap`). Its
  sequential-MNIST task is stood in for by scikit-learn's bundled 8×8 digits read row by row
  (:func:`load_digits_sequences`): the same kind of task (an image read one row per step, class
  read out at the last step), 8 steps of 8 pixels instead of 28 of 28, and offline.

The recurrence is one fused ``torch.nn`` RNN/LSTM/GRU layer, the cells ``lshkit.models`` is
built on, so parameters are named as there (``rnn.weight_ih_l0``, ``rnn.weight_hh_l0``) and
masks are dicts keyed by those names, like ``lshkit.dst.DynamicSparsity.masks``. The
language models themselves do not fit: they embed tokens and decode one next token, while the
Reber task reads one-hot symbols and predicts a *set* of symbols, and the digits task reads
rows of real-valued pixels and classifies once at the end.
"""
from __future__ import annotations

import copy
import time
from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch
from torch import nn
import torch.nn.functional as F

from lshkit import stats
from lshkit.checks import check_choice, check_number, check_positive_int
from lshkit.graph import spectral_gap
from lshkit.io import JSONConfig

__all__ = ["VARIANTS", "GATES", "LAYERS", "TARGETS", "METHODS", "TENTHS", "SequenceNet", "DigitsData",
           "load_digits_sequences", "FitConfig", "fit", "evaluate", "prune_masks", "apply_masks", "build",
           "pruning_curve", "train_with_mask", "summarise"]

VARIANTS = ("rnn_tanh", "rnn_relu", "lstm", "gru")
#: Gate blocks stacked in torch's weight matrices ([g·H, ·]).
GATES = {"rnn_tanh": 1, "rnn_relu": 1, "lstm": 4, "gru": 3}
#: The two recurrent weight matrices by short name.
LAYERS = {"ih": "rnn.weight_ih_l0", "hh": "rnn.weight_hh_l0"}
#: What a pruning target removes weights from.
TARGETS = {"ih": ("ih",), "hh": ("hh",), "both": ("ih", "hh")}
METHODS = ("magnitude", "random")
#: Sparsities 0, 0.1, ..., 1: the levels of both studies' pruning curves.
TENTHS = tuple(i / 10 for i in range(11))


class SequenceNet(nn.Module):
    """One recurrent layer and a linear read-out: ``x [T, B, D] -> logits``, at every step
    (``readout="every"``, [T, B, C]: the Reber task) or at the last step ("last", [B, C]:
    sequence classification)."""

    def __init__(self, variant: str, input_size: int, hidden_size: int, output_size: int, readout: str = "every"):
        super().__init__()
        check_choice("variant", variant, VARIANTS)
        check_choice("readout", readout, ("every", "last"))
        for name, v in (("input_size", input_size), ("hidden_size", hidden_size), ("output_size", output_size)):
            check_positive_int(name, v)
        self.variant, self.readout, self.hidden_size = variant, readout, hidden_size
        if variant.startswith("rnn"):
            self.rnn = nn.RNN(input_size, hidden_size, nonlinearity=variant[4:])
        else:
            self.rnn = (nn.LSTM if variant == "lstm" else nn.GRU)(input_size, hidden_size)
        self.head = nn.Linear(hidden_size, output_size)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out, _ = self.rnn(x)
        return self.head(out[-1] if self.readout == "last" else out)


@dataclass
class DigitsData:
    """Images read one row per step: ``inputs [8, N, 8]`` (pixels / 16), ``targets [N]`` classes."""
    inputs: torch.Tensor
    targets: torch.Tensor
    kind: str = "class"

    def __len__(self) -> int:
        return self.targets.numel()

    def subset(self, index) -> "DigitsData":
        index = torch.as_tensor(np.asarray(index), dtype=torch.long)
        return DigitsData(self.inputs[:, index], self.targets[index])


def load_digits_sequences(seed: int = 0, test_fraction: float = 0.3) -> tuple[DigitsData, DigitsData]:
    """scikit-learn's bundled 8×8 digits (1797 images, 10 classes; no download) as sequences
    of 8 rows, split stratified into train and test with ``seed``: the stand-in for
    sequential MNIST (arXiv 2403.11100), which reads 28 rows of 28 pixels."""
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    check_number("test_fraction", test_fraction, low=0, high=1, low_open=True, high_open=True)
    X, y = load_digits(return_X_y=True)
    X = (X.reshape(-1, 8, 8) / 16.0).astype(np.float32)
    tr, te = train_test_split(np.arange(len(y)), test_size=test_fraction, stratify=y, random_state=seed)
    full = DigitsData(torch.from_numpy(X).permute(1, 0, 2).contiguous(), torch.from_numpy(y).long())
    return full.subset(tr), full.subset(te)


@dataclass
class FitConfig(JSONConfig):
    """Adam on mini-batches; ``clip`` bounds the gradient norm (ReLU RNNs diverge without)."""
    epochs: int = 40
    batch_size: int = 32
    lr: float = 0.01
    clip: float = 1.0

    def __post_init__(self):
        check_positive_int("epochs", self.epochs)
        check_positive_int("batch_size", self.batch_size)
        check_number("lr", self.lr, low=0, low_open=True)
        check_number("clip", self.clip, low=0, low_open=True)


def _loss(model: SequenceNet, data) -> torch.Tensor:
    logits = model(data.inputs)
    if data.kind == "class":
        return F.cross_entropy(logits, data.targets)
    per = F.binary_cross_entropy_with_logits(logits, data.targets, reduction="none").mean(-1)
    return (per * data.mask).sum() / data.mask.sum()


@torch.no_grad()
def evaluate(model: SequenceNet, data) -> dict:
    """``accuracy``: share of correct samples (a Reber string is correct when every step's
    thresholded legal-next set is exact, see :mod:`lshkit.studies.reber`); ``step_accuracy``
    for Reber; ``loss``."""
    model.eval()
    logits = model(data.inputs)
    loss = float(_loss(model, data))
    if data.kind == "class":
        return {"accuracy": float((logits.argmax(-1) == data.targets).float().mean()), "loss": loss}
    step_ok = ((logits > 0) == (data.targets > 0.5)).all(-1) | ~data.mask
    return {"accuracy": float(step_ok.all(0).float().mean()),
            "step_accuracy": float(step_ok[data.mask].float().mean()), "loss": loss}


def apply_masks(model: nn.Module, masks: dict | None) -> None:
    """Zero every weight outside its mask (``masks`` name -> bool tensor, as the parameters)."""
    if not masks:
        return
    params = dict(model.named_parameters())
    with torch.no_grad():
        for name, m in masks.items():
            params[name].mul_(m.to(params[name].dtype))


def fit(model: SequenceNet, train, cfg: FitConfig, *, masks: dict | None = None, seed: int = 0) -> list[float]:
    """Train in place; masked weights stay at zero (re-zeroed after every step, since Adam's
    moments would move them). Batches are drawn by a private generator seeded by ``seed``.
    Returns the mean training loss per epoch."""
    gen = torch.Generator().manual_seed(seed)
    opt = torch.optim.Adam(model.parameters(), lr=cfg.lr)
    apply_masks(model, masks)
    history = []
    n = len(train)
    for _ in range(cfg.epochs):
        model.train()
        order = torch.randperm(n, generator=gen)
        total = 0.0
        for start in range(0, n, cfg.batch_size):
            batch = train.subset(order[start:start + cfg.batch_size])
            loss = _loss(model, batch)
            opt.zero_grad()
            loss.backward()
            nn.utils.clip_grad_norm_(model.parameters(), cfg.clip)
            opt.step()
            apply_masks(model, masks)
            total += float(loss.detach()) * len(batch)
        history.append(total / n)
    return history


def prune_masks(model: SequenceNet, sparsity: float, target: str = "both", method: str = "magnitude", *,
                seed: int = 0) -> dict:
    """Masks removing ``sparsity`` of each targeted matrix: exactly ``round(sparsity · numel)``
    weights per matrix, the smallest ``|w|`` (``magnitude``; ties to the lower flat index) or
    uniformly at random (``random``, seeded). Layer-wise: every targeted matrix loses the same
    share (per-matrix pruning, as the Reber thesis arXiv 2407.20601 prunes
    input-to-hidden and hidden-to-hidden weights separately)."""
    check_number("sparsity", sparsity, low=0, high=1)
    check_choice("target", target, TARGETS)
    check_choice("method", method, METHODS)
    params = dict(model.named_parameters())
    gen = torch.Generator().manual_seed(seed)
    masks = {}
    for short in TARGETS[target]:
        w = params[LAYERS[short]].detach()
        count = int(round(sparsity * w.numel()))
        if method == "magnitude":
            order = torch.sort(w.abs().reshape(-1), stable=True).indices
        else:
            order = torch.randperm(w.numel(), generator=gen)
        keep = torch.ones(w.numel(), dtype=torch.bool)
        keep[order[:count]] = False
        masks[LAYERS[short]] = keep.view_as(w)
    return masks


def build(variant: str, data, hidden_size: int, *, seed: int) -> SequenceNet:
    """The variant sized for ``data``, built after seeding torch with ``seed``."""
    torch.manual_seed(seed)
    if data.kind == "class":
        return SequenceNet(variant, data.inputs.size(-1), hidden_size, int(data.targets.max()) + 1, "last")
    return SequenceNet(variant, data.inputs.size(-1), hidden_size, data.targets.size(-1), "every")


def pruning_curve(variant: str, train, test, *, hidden_size: int, fit_cfg: FitConfig, finetune_cfg: FitConfig | None,
                  sparsities, targets=("ih", "hh", "both"), methods=("magnitude",), seed: int = 0,
                  gaps: bool = True) -> pd.DataFrame:
    """Train ``variant`` dense, then for every target, method and sparsity prune a copy of the
    dense weights and score it as it is (``finetuned`` False) and after ``finetune_cfg``
    training with the mask (True; skipped when None). One row per scored network, with its
    test accuracy and, when ``gaps``, the spectral gap and density of each recurrent matrix
    (``gap_ih``, ``gap_hh``; :func:`lshkit.graph.spectral_gap`)."""
    check_choice("variant", variant, VARIANTS)
    for t in targets:
        check_choice("target", t, TARGETS)
    for m in methods:
        check_choice("method", m, METHODS)
    sparsities = [float(s) for s in sparsities]
    for s in sparsities:
        check_number("sparsity", s, low=0, high=1)
    t0 = time.perf_counter()
    dense = build(variant, train, hidden_size, seed=seed)
    fit(dense, train, fit_cfg, seed=seed)
    dense_seconds = time.perf_counter() - t0
    base = {"variant": variant, "seed": seed, "dense_seconds": dense_seconds, **{f"dense_{k}": v for k, v in evaluate(dense, test).items()}}
    rows = []
    for target in targets:
        for method in methods:
            for s in sparsities:
                masks = prune_masks(dense, s, target, method, seed=seed)
                for finetuned in ((False, True) if finetune_cfg is not None else (False,)):
                    model = copy.deepcopy(dense)
                    apply_masks(model, masks)
                    if finetuned:
                        fit(model, train, finetune_cfg, masks=masks, seed=seed + 1)
                    row = {**base, "target": target, "method": method, "sparsity": s, "finetuned": finetuned,
                           **evaluate(model, test)}
                    if gaps:
                        params = dict(model.named_parameters())
                        for short, name in LAYERS.items():
                            g = spectral_gap(masks[name] if name in masks else torch.ones_like(params[name]))
                            row.update({f"gap_{short}": g["gap"], f"sigma2_{short}": g["sigma2"],
                                        f"bound_{short}": g["bound"], f"density_{short}": g["density"]})
                    rows.append(row)
    return pd.DataFrame(rows)


def train_with_mask(variant: str, adjacency, train, test, *, hidden_size: int, fit_cfg: FitConfig, seed: int = 0) -> dict:
    """Train ``variant`` from scratch with its hidden-to-hidden weights restricted to
    ``adjacency [H, H]`` (unit j feeds unit i where ``adjacency[i, j]``; the same pattern in
    every gate block) and score it on ``test``. Returns the test metrics and the mask."""
    adjacency = torch.as_tensor(np.asarray(adjacency), dtype=torch.bool)
    if adjacency.shape != (hidden_size, hidden_size):
        raise ValueError(f"adjacency must be [{hidden_size}, {hidden_size}]; got {tuple(adjacency.shape)}")
    model = build(variant, train, hidden_size, seed=seed)
    masks = {LAYERS["hh"]: adjacency.repeat(GATES[variant], 1)}
    fit(model, train, fit_cfg, masks=masks, seed=seed)
    return {**evaluate(model, test), "mask": masks[LAYERS["hh"]]}


def summarise(frame: pd.DataFrame, by, value: str = "accuracy") -> pd.DataFrame:
    """Mean of ``value`` over seeds per group of ``by`` with its 95% interval
    (:func:`lshkit.stats.summarise`), and the interval's ends ``low`` and ``high`` for the
    figures' bands (NaN for a group of one seed: no band)."""
    out = stats.summarise(frame, by, value)
    return out.assign(low=out["mean"] - out.ci95, high=out["mean"] + out.ci95)
