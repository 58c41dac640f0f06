"""The statistics every claim is judged by, each rule written once.

- :func:`t_interval` and :func:`summarise`: the mean and its 95% Student-t interval, as
  Table 2 reports "the average perplexity with 95% confidence interval". :data:`INTERVAL_RULE`
  names the rule, and every stored summary records it, so a summary read back later shows the
  rule that made it.
- :func:`rank_correlation` and :func:`paired_difference`: Spearman's ρ between a signal and a
  target with a percentile bootstrap interval over candidates, and the difference of two
  signals' ρ with a paired bootstrap (the same resampled candidates for both).
- :func:`interval_verdict` and :func:`overall_verdict`: a claim judged from an interval, in the
  words of :data:`VERDICTS`.
"""
from __future__ import annotations

import math

import numpy as np
import pandas as pd
from scipy.stats import rankdata, t

from lshkit.checks import check_choice, check_int

__all__ = ["INTERVAL_RULE", "VERDICTS", "t_interval", "t_errorbar", "summarise", "rank_correlation",
           "paired_difference", "interval_verdict", "overall_verdict"]

#: The interval rule of every mean ± half-width the kit stores (:func:`t_interval`).
INTERVAL_RULE = "student-t"
#: A claim's three states, in the words every table and sentence uses.
VERDICTS = ("holds", "does not hold", "is inconclusive")


def t_interval(values) -> tuple[float, float, int]:
    """The mean of ``values``, the half-width of its 95% Student-t interval
    (``t_{0.975, n-1} · s / sqrt(n)``, s with n - 1 in the denominator) and n. Missing values are
    left out of n. With fewer than two values the half-width is NaN: one run shows no spread,
    which is not a claim that there is none."""
    v = pd.to_numeric(pd.Series(values, dtype=object), errors="coerce").dropna().to_numpy(dtype=float)
    n = len(v)
    if n < 2:
        return (float(v[0]) if n else math.nan), math.nan, n
    return float(v.mean()), float(t.ppf(0.975, n - 1) * v.std(ddof=1) / math.sqrt(n)), n


def t_errorbar(values) -> tuple[float, float]:
    """:func:`t_interval` as the (low, high) a seaborn ``errorbar=`` callable returns; a single
    value gives the point itself."""
    mean, half, _ = t_interval(values)
    half = 0.0 if math.isnan(half) else half
    return mean - half, mean + half


def summarise(frame: pd.DataFrame, by, value: str = "test_ppl") -> pd.DataFrame:
    """Mean and 95% interval of ``value`` per group of ``by`` (:func:`t_interval`). Columns:
    ``by``, n, mean, std, ci95; groups in order of first appearance."""
    by = [by] if isinstance(by, str) else list(by)
    missing = [c for c in by + [value] if c not in frame.columns]
    if missing:
        raise ValueError(f"column(s) {missing} are not in the frame; its columns are {list(frame.columns)}")
    if not by:
        raise ValueError("by must name at least one column")
    rows = []
    for key, group in frame.groupby(by, sort=False, dropna=False):
        mean, half, n = t_interval(group[value])
        std = pd.to_numeric(group[value], errors="coerce").std(ddof=1) if n > 1 else math.nan
        rows.append({**dict(zip(by, key)), "n": n, "mean": mean, "std": std, "ci95": half})
    return pd.DataFrame(rows, columns=by + ["n", "mean", "std", "ci95"])


def _spearman(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Spearman's ρ of each row pair of ``x`` and ``y`` ([B, n]): Pearson on average ranks."""
    rx, ry = rankdata(x, axis=1), rankdata(y, axis=1)
    rx = rx - rx.mean(axis=1, keepdims=True)
    ry = ry - ry.mean(axis=1, keepdims=True)
    denom = np.sqrt((rx * rx).sum(axis=1) * (ry * ry).sum(axis=1))
    with np.errstate(invalid="ignore", divide="ignore"):
        return (rx * ry).sum(axis=1) / denom


def _bootstrap(frame: pd.DataFrame, signals, target: str, n_boot: int, seed: int):
    """Per epoch: ρ of each signal on the sample itself (row 0) and on ``n_boot`` resamples."""
    check_int("n_boot", n_boot, low=10)
    rng = np.random.default_rng(seed)
    out = []
    for epoch, group in frame.groupby("epoch"):
        n = len(group)
        index = np.vstack([np.arange(n), rng.integers(0, n, size=(n_boot, n))])
        y = group[target].to_numpy()[index]
        out.append((epoch, n, {s: _spearman(group[s].to_numpy()[index], y) for s in signals}))
    return out


def _percentiles(values: np.ndarray) -> tuple[float, float]:
    boot = values[1:][np.isfinite(values[1:])]
    return tuple(np.quantile(boot, [0.025, 0.975])) if len(boot) else (np.nan, np.nan)


def rank_correlation(frame: pd.DataFrame, signal: str, target: str = "final_valid_ppl", *,
                     n_boot: int = 2000, seed: int = 0) -> pd.DataFrame:
    """Per epoch: Spearman's ρ between ``signal`` and ``target`` over the candidates, and its
    percentile bootstrap 95% interval (candidates resampled with replacement)."""
    rows = []
    for epoch, n, rho in _bootstrap(frame, [signal], target, n_boot, seed):
        lo, hi = _percentiles(rho[signal])
        rows.append({"epoch": epoch, "signal": signal, "candidates": n, "rho": rho[signal][0], "lo": lo, "hi": hi})
    return pd.DataFrame(rows)


def paired_difference(frame: pd.DataFrame, a: str = "ls_distance", b: str = "valid_loss",
                      target: str = "final_valid_ppl", *, n_boot: int = 2000, seed: int = 0) -> pd.DataFrame:
    """Per epoch: ρ(a) − ρ(b) against ``target`` and its paired bootstrap 95% interval. A positive
    difference whose interval excludes 0 means ``a`` ranks candidates by their final perplexity
    more faithfully than ``b`` does."""
    rows = []
    for epoch, n, rho in _bootstrap(frame, [a, b], target, n_boot, seed):
        diff = rho[a] - rho[b]
        lo, hi = _percentiles(diff)
        rows.append({"epoch": epoch, "a": a, "b": b, "candidates": n, "difference": diff[0], "lo": lo, "hi": hi})
    return pd.DataFrame(rows)


def interval_verdict(lo: float, hi: float, *, better: str = "above", threshold: float = 0.0,
                     inclusive: bool = False) -> str:
    """A claim that a quantity is above ``threshold`` (``better="above"``) or below it
    (``"below"``), judged by its 95% interval: it holds when the interval lies wholly on the
    claimed side, does not hold when wholly on the other, and is otherwise inconclusive. An
    interval that touches the threshold counts as on the claimed side when ``inclusive`` (a
    non-inferiority margin) and on the other side when not."""
    check_choice("better", better, ("above", "below"))
    if not (math.isfinite(lo) and math.isfinite(hi)):
        return VERDICTS[2]
    lo, hi = lo - threshold, hi - threshold
    if better == "below":
        lo, hi = -hi, -lo
    if lo > 0 or (inclusive and lo == 0):
        return VERDICTS[0]
    return VERDICTS[1] if hi < 0 or (not inclusive and hi == 0) else VERDICTS[2]


def overall_verdict(verdicts) -> str:
    """A claim made for every cell (every optimiser and budget of Table 2, every data set) from
    the cells' :func:`interval_verdict`: it holds when it holds in every cell, does not hold when
    it fails in any, and is otherwise inconclusive."""
    verdicts = list(verdicts)
    if not verdicts:
        raise ValueError("overall_verdict needs at least one cell's verdict")
    if all(v == VERDICTS[0] for v in verdicts):
        return VERDICTS[0]
    return VERDICTS[1] if VERDICTS[1] in verdicts else VERDICTS[2]
