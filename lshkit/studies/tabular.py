"""Tabular data and the dense single-hidden-layer MLP that LEGCNet prunes (Sahu et al.,
"To prune or not to prune: a chaos-causality approach to principled pruning of dense neural
networks", arXiv 2308.09955, §3 and its experiments; authors' code: github.com/RAJAN13-blip/chaotic-pruning).

Data: scikit-learn's bundled sets need no network, so CI and laptops run the study offline:
``cancer`` (the Wisconsin diagnostic breast cancer set, the paper's "Cancer" task, though the
authors used the 9-feature original Wisconsin file), ``iris``, ``wine`` and ``digits``. Any CSV
with a target column loads too, so the paper's Titanic and Vowel files can be run as they are.
The split is stratified and the standardisation is fitted on the training part only (the
authors' loaders fit a second scaler on the test part, which leaks its statistics).

Model and training: one hidden layer of sigmoid units, as the authors' ``Helper.py``, with a
softmax output trained by cross-entropy (the authors use squared error on sigmoid outputs; the
cross-entropy keeps multi-class sets such as digits trainable with one learning rate) and
plain SGD on single samples (batch size 1, the authors' ``run_network``), so that every weight
has one value per update: the time series the Lyapunov exponents are computed from (§3).

Everything is vectorised over weights and over runs: the parameters of ``R`` networks trained
on the same sample order (the dense one, or one per pruning method, for a paired comparison)
live in one ``(R, P)`` tensor, their masks in another, and a step updates all of them with a
hand-written backward pass (``tests/test_legcnet.py`` checks it against autograd). The dense
run can record all its weights after every update as one ``(T + 1, n_weights)`` float32 tensor;
for the largest bundled set (digits: 1,437 training samples, 64 features, 16 hidden units, 10
classes, 20 epochs) that is 28,741 x 1,184 x 4 bytes = 136 MB.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from lshkit.checks import check_choice, check_number, check_positive_int

__all__ = ["BUNDLED", "ACTIVATIONS", "TabularData", "load_tabular", "MLPShape", "init_params",
           "TrainResult", "train_mlp", "forward", "f1_macro"]

#: Bundled scikit-learn sets and their loaders' names.
BUNDLED = {"cancer": "load_breast_cancer", "iris": "load_iris", "wine": "load_wine", "digits": "load_digits"}
ACTIVATIONS = ("sigmoid", "tanh", "relu")


@dataclass(frozen=True)
class TabularData:
    """A standardised, stratified train/test split as float32 features and int64 labels."""
    name: str
    x_train: torch.Tensor
    y_train: torch.Tensor
    x_test: torch.Tensor
    y_test: torch.Tensor
    classes: list = field(default_factory=list)
    features: list = field(default_factory=list)

    @property
    def n_features(self) -> int:
        return self.x_train.shape[1]

    @property
    def n_classes(self) -> int:
        return len(self.classes)


def _read_csv(path: Path, target: str | None):
    frame = pd.read_csv(path)
    if target is None:
        raise ValueError(f"target=None is not valid for a CSV file ({path}); name its target column, "
                         f"one of {list(frame.columns)}")
    check_choice("target", target, list(frame.columns))
    frame = frame.dropna(subset=[target])
    y = frame.pop(target).astype(str).to_numpy()
    # Numeric columns keep their value (missing ones the training median, filled after the
    # split); text columns become one-hot indicators, as the authors encode Titanic's Sex/Embarked.
    x = pd.get_dummies(frame, dummy_na=False, dtype=float)
    return x.to_numpy(dtype=float), y, list(x.columns)


def load_tabular(name: str, *, seed: int = 0, test_size: float = 0.2, target: str | None = None) -> TabularData:
    """One of :data:`BUNDLED` by name, or a CSV file by path with its ``target`` column.

    The split is stratified (every class keeps its share in both parts) and seeded; the
    features are standardised with the training part's mean and deviation only, and missing
    values take the training part's median.
    """
    check_number("test_size", test_size, low=0, high=1, low_open=True, high_open=True)
    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        raise ValueError(f"seed={seed!r} is not valid; it must be a non-negative integer")
    from sklearn import datasets
    from sklearn.model_selection import train_test_split
    from sklearn.preprocessing import StandardScaler

    if name in BUNDLED:
        bunch = getattr(datasets, BUNDLED[name])()
        x, y = bunch.data.astype(float), bunch.target
        features = [str(f) for f in getattr(bunch, "feature_names", range(x.shape[1]))]
    elif isinstance(name, (str, Path)) and str(name).lower().endswith(".csv"):
        if not Path(name).is_file():
            raise ValueError(f"name={str(name)!r} is not valid: no such CSV file; give one of "
                             f"{list(BUNDLED)} or the path of a CSV file")
        x, y, features = _read_csv(Path(name), target)
    else:
        raise ValueError(f"name={name!r} is not valid; choose one of {list(BUNDLED)} or give the path "
                         "of a CSV file (with target=its label column)")
    classes, y = np.unique(y, return_inverse=True)
    if len(classes) < 2:
        raise ValueError(f"{name}: the target has {len(classes)} class; a classifier needs at least 2")
    x_tr, x_te, y_tr, y_te = train_test_split(x, y, test_size=test_size, stratify=y, random_state=seed)
    median = np.nanmedian(x_tr, axis=0)
    median = np.where(np.isnan(median), 0.0, median)
    x_tr = np.where(np.isnan(x_tr), median, x_tr)
    x_te = np.where(np.isnan(x_te), median, x_te)
    scaler = StandardScaler().fit(x_tr)
    t = lambda a, dtype: torch.as_tensor(np.ascontiguousarray(a), dtype=dtype)  # noqa: E731
    label = Path(name).stem if str(name).lower().endswith(".csv") else name
    return TabularData(label, t(scaler.transform(x_tr), torch.float32), t(y_tr, torch.int64),
                       t(scaler.transform(x_te), torch.float32), t(y_te, torch.int64),
                       [str(c) for c in classes], features)


@dataclass(frozen=True)
class MLPShape:
    """Sizes of the single-hidden-layer network and the layout of its flat parameter vector:
    ``[W1 (hidden x inputs), W2 (classes x hidden), b1, b2]``. Weights come first so that
    ``theta[:, :n_weights]`` is every prunable connection (the authors prune weights, never
    biases), in the order the authors index them."""
    inputs: int
    hidden: int
    classes: int

    @property
    def layer_sizes(self) -> tuple[int, int]:
        return self.hidden * self.inputs, self.classes * self.hidden

    @property
    def n_weights(self) -> int:
        return sum(self.layer_sizes)

    @property
    def n_params(self) -> int:
        return self.n_weights + self.hidden + self.classes

    def layer_of(self) -> torch.Tensor:
        """Layer index (0 or 1) of each weight in the flat order."""
        a, b = self.layer_sizes
        return torch.cat([torch.zeros(a, dtype=torch.int64), torch.ones(b, dtype=torch.int64)])

    def views(self, theta: torch.Tensor):
        """``W1, W2, b1, b2`` as views of ``theta`` (R, n_params): updating them updates ``theta``."""
        r, (a, b) = theta.shape[0], self.layer_sizes
        w1 = theta[:, :a].view(r, self.hidden, self.inputs)
        w2 = theta[:, a:a + b].view(r, self.classes, self.hidden)
        b1 = theta[:, a + b:a + b + self.hidden]
        b2 = theta[:, a + b + self.hidden:]
        return w1, w2, b1, b2


def init_params(shape: MLPShape, generator: torch.Generator) -> torch.Tensor:
    """One network's initial parameters (1, n_params): PyTorch's ``nn.Linear`` default,
    U(-1/sqrt(fan_in), 1/sqrt(fan_in)) for weights and biases, drawn from ``generator``."""
    def uniform(n, fan_in):
        bound = 1 / math.sqrt(fan_in)
        return (torch.rand(n, generator=generator, dtype=torch.float32) * 2 - 1) * bound
    a, b = shape.layer_sizes
    return torch.cat([uniform(a, shape.inputs), uniform(b, shape.hidden),
                      uniform(shape.hidden, shape.inputs), uniform(shape.classes, shape.hidden)])[None]


_ACT = {"sigmoid": (torch.sigmoid, lambda a: a * (1 - a)),
        "tanh": (torch.tanh, lambda a: 1 - a * a),
        "relu": (torch.relu, lambda a: (a > 0).to(a.dtype))}


def forward(shape: MLPShape, theta: torch.Tensor, x: torch.Tensor, activation: str = "sigmoid"):
    """Logits (R, N, classes) of the ``R`` networks in ``theta`` on ``x`` (N, inputs)."""
    w1, w2, b1, b2 = shape.views(theta)
    a1 = _ACT[activation][0](torch.matmul(x, w1.transpose(1, 2)) + b1[:, None, :])
    return torch.matmul(a1, w2.transpose(1, 2)) + b2[:, None, :]


def _step(shape: MLPShape, theta, masks, x, y, lr: float, activation: str) -> None:
    """One SGD step of all ``R`` networks on the same batch, in place; pruned weights stay 0.

    The backward pass is written out (cross-entropy on softmax): autograd would cost a graph
    per step, and a step of a 16-unit network is dominated by per-operation overhead.
    """
    act, dact = _ACT[activation]
    w1, w2, b1, b2 = shape.views(theta)
    a1 = act(torch.matmul(x, w1.transpose(1, 2)) + b1[:, None, :])          # (R, B, H)
    p = torch.softmax(torch.matmul(a1, w2.transpose(1, 2)) + b2[:, None, :], dim=-1)
    p[:, torch.arange(len(y)), y] -= 1                                      # dL/dz2 * B
    dz2 = p / len(y)
    dz1 = torch.matmul(dz2, w2) * dact(a1)                                  # (R, B, H)
    w2.sub_(torch.matmul(dz2.transpose(1, 2), a1), alpha=lr)
    b2.sub_(dz2.sum(1), alpha=lr)
    w1.sub_(torch.matmul(dz1.transpose(1, 2), x), alpha=lr)
    b1.sub_(dz1.sum(1), alpha=lr)
    if masks is not None:
        theta[:, :shape.n_weights].mul_(masks)


@dataclass
class TrainResult:
    """What :func:`train_mlp` returns: final parameters (R, n_params), per-epoch training and
    test accuracy (R, epochs), the weight record (T + 1, n_weights) when asked for, and the
    training misclassification rate at the steps in ``misclassification_steps``."""
    theta: torch.Tensor
    train_accuracy: torch.Tensor
    test_accuracy: torch.Tensor
    record: torch.Tensor | None = None
    misclassification: torch.Tensor | None = None
    seconds: float = 0.0


def _accuracy(shape, theta, x, y, activation) -> torch.Tensor:
    return (forward(shape, theta, x, activation).argmax(-1) == y).float().mean(-1)


def train_mlp(data: TabularData, shape: MLPShape, theta0: torch.Tensor, *, epochs: int, lr: float,
              seed: int, masks: torch.Tensor | None = None, batch_size: int = 1,
              activation: str = "sigmoid", record: bool = False, misclassification_steps=None,
              device: str = "cpu") -> TrainResult:
    """Train ``R`` networks from ``theta0`` (R, n_params), each with its 0/1 weight mask
    (R, n_weights) or none, on one seeded sample order (a new permutation each epoch), so
    that the runs differ only in their masks. ``record`` keeps every weight after every
    update (the dense run of §3); ``misclassification_steps`` (update counts) are where the
    training misclassification rate is measured, the series the Granger test explains (§3.4).
    """
    import time

    check_positive_int("epochs", epochs)
    check_positive_int("batch_size", batch_size)
    check_number("lr", lr, low=0, low_open=True)
    check_choice("activation", activation, ACTIVATIONS)
    if theta0.ndim != 2 or theta0.shape[1] != shape.n_params:
        raise ValueError(f"theta0 has shape {tuple(theta0.shape)}; it must be (R, {shape.n_params})")
    r = theta0.shape[0]
    if masks is not None and tuple(masks.shape) != (r, shape.n_weights):
        raise ValueError(f"masks has shape {tuple(masks.shape)}; it must be ({r}, {shape.n_weights})")
    t0 = time.perf_counter()
    x_tr, y_tr = data.x_train.to(device), data.y_train.to(device)
    x_te, y_te = data.x_test.to(device), data.y_test.to(device)
    theta = theta0.detach().clone().to(device)
    if masks is not None:
        masks = masks.to(device=device, dtype=theta.dtype)
        theta[:, :shape.n_weights].mul_(masks)
    n = len(y_tr)
    per_epoch = math.ceil(n / batch_size)
    total = epochs * per_epoch
    rec = torch.empty(total + 1, shape.n_weights, dtype=torch.float32) if record else None
    if record:
        if r != 1:
            raise ValueError(f"record=True needs one network (R=1), not {r}")
        rec[0] = theta[0, :shape.n_weights].cpu()
    wanted = sorted(set(int(s) for s in (() if misclassification_steps is None else misclassification_steps)))
    if wanted and (wanted[0] < 0 or wanted[-1] > total):
        raise ValueError(f"misclassification_steps must lie in [0, {total}]")
    mis, wanted_set = {}, set(wanted)
    if 0 in wanted_set:
        mis[0] = 1 - _accuracy(shape, theta, x_tr, y_tr, activation)
    generator = torch.Generator().manual_seed(seed)
    train_acc = torch.empty(r, epochs)
    test_acc = torch.empty(r, epochs)
    step = 0
    with torch.inference_mode():
        for epoch in range(epochs):
            order = torch.randperm(n, generator=generator).to(device)
            for start in range(0, n, batch_size):
                idx = order[start:start + batch_size]
                _step(shape, theta, masks, x_tr[idx], y_tr[idx], lr, activation)
                step += 1
                if record:
                    rec[step] = theta[0, :shape.n_weights]
                if step in wanted_set:
                    mis[step] = 1 - _accuracy(shape, theta, x_tr, y_tr, activation)
            train_acc[:, epoch] = _accuracy(shape, theta, x_tr, y_tr, activation).cpu()
            test_acc[:, epoch] = _accuracy(shape, theta, x_te, y_te, activation).cpu()
    misclassification = torch.stack([mis[s] for s in wanted], -1).cpu() if wanted else None
    return TrainResult(theta.cpu(), train_acc, test_acc, rec, misclassification, time.perf_counter() - t0)


def f1_macro(shape: MLPShape, theta: torch.Tensor, data: TabularData, activation: str = "sigmoid") -> list[float]:
    """Macro F1 on the test part of each of the ``R`` networks (scikit-learn's ``f1_score``)."""
    from sklearn.metrics import f1_score

    with torch.inference_mode():
        pred = forward(shape, theta, data.x_test, activation).argmax(-1)
    return [float(f1_score(data.y_test, p, average="macro", labels=list(range(data.n_classes)),
                           zero_division=0)) for p in pred]
