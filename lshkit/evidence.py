"""The paper's central claim measured on the atlas: after E epochs, does a candidate's distance
to the dense model in the LS space predict its final perplexity better than its validation loss?
(Fig. 1, §3.2; Table 2 rests on it.)

:func:`early_signals` reads both signals for every pruned candidate of an atlas at each early
epoch; :func:`rank_correlation` gives Spearman's ρ between a signal and the final perplexity with
a bootstrap 95% interval over candidates; :func:`paired_difference` the difference of two signals'
ρ with a paired bootstrap interval (the same resampled candidates for both).
"""
from __future__ import annotations

import numpy as np
import pandas as pd
from scipy.stats import rankdata

from lshkit import embedding as emb
from lshkit.atlas import Atlas
from lshkit.checks import check_choice, check_int

__all__ = ["early_signals", "rank_correlation", "paired_difference"]


def early_signals(atlas: Atlas, epochs=range(6), *, convention: str = "paper", embedding: str = "pca",
                  distance: str = "l2", fit: str = "candidate", seed: int | None = None) -> pd.DataFrame:
    """One row per (pruned candidate, epoch E): ``ls_distance`` (the candidate's LS history from
    epoch 0 to E embedded with the dense model's final LS, as a search ranks it), ``valid_loss``
    at E, and the candidate's ``final_valid_ppl`` and ``final_test_ppl``. Candidates of training
    seed ``seed`` (default the atlas's main seed); the dense model of the same seed is the reference."""
    check_choice("convention", convention, ("paper", "full"))
    check_choice("embedding", embedding, emb.EMBEDDINGS)
    check_choice("fit", fit, emb.FITS)
    seed = atlas.spec.seed if seed is None else seed
    epochs = list(epochs)
    for e in epochs:
        check_int("epoch", e, low=0)
    reference = atlas.ls(atlas.record(None, seed)["name"], convention)[-1]
    rows = []
    for name, record in atlas.records.items():
        if record["params"] is None or record["seed"] != seed or record["status"] != "ok":
            continue
        history = atlas.ls(name, convention).astype(np.float64)
        last = record["epochs"][-1]
        for e in epochs:
            space = emb.ls_space(reference, {name: history[: e + 1]}, embedding=embedding, fit=fit)
            rows.append({"name": name, **record["params"], "epoch": e,
                         "ls_distance": space.distances(distance)[name],
                         "valid_loss": record["epochs"][e]["valid_loss"],
                         "final_valid_ppl": last["valid_ppl"], "final_test_ppl": float(np.exp(last["test_loss"]))})
    return pd.DataFrame(rows)


def _spearman(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Spearman's ρ of each row pair of ``x`` and ``y`` ([B, n]): Pearson on average ranks."""
    rx, ry = rankdata(x, axis=1), rankdata(y, axis=1)
    rx = rx - rx.mean(axis=1, keepdims=True)
    ry = ry - ry.mean(axis=1, keepdims=True)
    denom = np.sqrt((rx * rx).sum(axis=1) * (ry * ry).sum(axis=1))
    with np.errstate(invalid="ignore", divide="ignore"):
        return (rx * ry).sum(axis=1) / denom


def _boot(frame: pd.DataFrame, signals, target: str, n_boot: int, seed: int):
    check_int("n_boot", n_boot, low=10)
    rng = np.random.default_rng(seed)
    out = []
    for epoch, group in frame.groupby("epoch"):
        n = len(group)
        index = np.vstack([np.arange(n), rng.integers(0, n, size=(n_boot, n))])  # row 0: the sample itself
        y = group[target].to_numpy()[index]
        out.append((epoch, n, {s: _spearman(group[s].to_numpy()[index], y) for s in signals}))
    return out


def _interval(values: np.ndarray) -> tuple[float, float]:
    boot = values[1:][np.isfinite(values[1:])]
    return tuple(np.quantile(boot, [0.025, 0.975])) if len(boot) else (np.nan, np.nan)


def rank_correlation(frame: pd.DataFrame, signal: str, target: str = "final_valid_ppl", *,
                     n_boot: int = 2000, seed: int = 0) -> pd.DataFrame:
    """Per epoch: Spearman's ρ between ``signal`` and ``target`` over the candidates, and its
    percentile bootstrap 95% interval (candidates resampled with replacement)."""
    rows = []
    for epoch, n, rho in _boot(frame, [signal], target, n_boot, seed):
        lo, hi = _interval(rho[signal])
        rows.append({"epoch": epoch, "signal": signal, "candidates": n, "rho": rho[signal][0], "lo": lo, "hi": hi})
    return pd.DataFrame(rows)


def paired_difference(frame: pd.DataFrame, a: str = "ls_distance", b: str = "valid_loss",
                      target: str = "final_valid_ppl", *, n_boot: int = 2000, seed: int = 0) -> pd.DataFrame:
    """Per epoch: ρ(a) − ρ(b) against ``target`` and its paired bootstrap 95% interval. A positive
    difference whose interval excludes 0 means ``a`` ranks candidates by their final perplexity
    more faithfully than ``b`` does."""
    rows = []
    for epoch, n, rho in _boot(frame, [a, b], target, n_boot, seed):
        diff = rho[a] - rho[b]
        lo, hi = _interval(diff)
        rows.append({"epoch": epoch, "a": a, "b": b, "candidates": n, "difference": diff[0], "lo": lo, "hi": hi})
    return pd.DataFrame(rows)
