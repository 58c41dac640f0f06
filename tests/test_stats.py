"""The statistics every claim is judged by: Student-t intervals against hand computations,
bootstrap rank correlations of known orderings, and the verdict rule at its boundaries."""
import math

import numpy as np
import pandas as pd
import pytest

from lshkit.stats import (interval_verdict, overall_verdict, paired_difference, rank_correlation, summarise,
                          t_errorbar, t_interval)


def _frame(n=40, seed=0):
    rng = np.random.default_rng(seed)
    target = rng.permutation(n).astype(float) + 100
    return pd.DataFrame({"epoch": 1, "final_valid_ppl": target, "exact": target * 2 + 5,
                         "reversed": -target, "noise": rng.normal(size=n)})


def test_rank_correlation_of_known_orderings():
    frame = _frame()
    exact = rank_correlation(frame, "exact", n_boot=200).iloc[0]
    assert exact.rho == pytest.approx(1.0) and exact.lo == pytest.approx(1.0) and exact.candidates == 40
    assert rank_correlation(frame, "reversed", n_boot=200).iloc[0].rho == pytest.approx(-1.0)
    # An unrelated signal: the interval brackets the sample ρ and is as wide as 40 candidates allow
    # (the sampling spread of ρ near 0 is about 1/sqrt(n - 1), so the 95% interval ~0.6).
    noise = rank_correlation(frame, "noise", n_boot=1000).iloc[0]
    assert noise.lo < noise.rho < noise.hi and 0.4 < noise.hi - noise.lo < 0.9


def test_paired_difference_is_paired():
    frame = _frame()
    d = paired_difference(frame, "exact", "reversed", n_boot=200).iloc[0]
    assert d.difference == pytest.approx(2.0) and d.lo == pytest.approx(2.0) and d.hi == pytest.approx(2.0)
    same = paired_difference(frame.assign(copy=frame.noise), "noise", "copy", n_boot=200).iloc[0]
    assert same.difference == 0 and same.lo == 0 and same.hi == 0  # identical signals: no spread at all


def test_summarise_against_a_hand_computation():
    frame = pd.DataFrame({
        "sampler": ["tpe"] * 3 + ["grid"] + ["atpe"] * 3,
        "ranking": ["ls"] * 3 + ["loss"] + ["ls"] * 3,
        "test_ppl": [70.0, 72.0, 71.0, 72.5, 69.0, float("nan"), 70.0],
    })
    s = summarise(frame, by=["sampler", "ranking"])
    assert list(s["sampler"]) == ["tpe", "grid", "atpe"]  # order of first appearance
    tpe, grid, atpe = (s.iloc[i] for i in range(3))
    # n = 3, s = 1: half-width t_{0.975, 2} / sqrt(3), t_{0.975, 2} = 4.303 (t table).
    assert (tpe["n"], tpe["mean"], tpe["std"]) == (3, 71.0, 1.0)
    assert tpe["ci95"] == pytest.approx(4.303 / math.sqrt(3), abs=1e-3)
    # One run: no spread measured, so no interval and no standard deviation.
    assert (grid["n"], grid["mean"]) == (1, 72.5) and math.isnan(grid["ci95"]) and math.isnan(grid["std"])
    # The failed search (NaN) is left out: n = 2, s = sqrt(0.5), t_{0.975, 1} = 12.706.
    assert (atpe["n"], atpe["mean"]) == (2, 69.5)
    assert atpe["ci95"] == pytest.approx(12.706 * math.sqrt(0.5) / math.sqrt(2), abs=1e-3)
    with pytest.raises(ValueError, match="valid_loss"):
        summarise(frame, by=["sampler"], value="valid_loss")


def test_interval_verdicts():
    assert interval_verdict(0.1, 0.5) == "holds" and interval_verdict(-0.5, -0.1) == "does not hold"
    assert interval_verdict(-0.1, 0.5) == "is inconclusive" and interval_verdict(np.nan, 1) == "is inconclusive"
    assert interval_verdict(-0.5, -0.1, better="below") == "holds"
    assert overall_verdict(["holds", "holds"]) == "holds"
    assert overall_verdict(["holds", "is inconclusive"]) == "is inconclusive"
    assert overall_verdict(["holds", "does not hold", "is inconclusive"]) == "does not hold"


def test_t_interval_needs_two_values_for_an_interval():
    assert t_interval([]) == (pytest.approx(math.nan, nan_ok=True), pytest.approx(math.nan, nan_ok=True), 0)
    mean, half, n = t_interval([3.0, float("nan")])
    assert (mean, n) == (3.0, 1) and math.isnan(half)
    assert t_errorbar([3.0]) == (3.0, 3.0)
    mean, half, n = t_interval([1.0, 2.0, 3.0, 4.0])  # s = sqrt(5/3), t_{0.975, 3} = 3.182
    assert (mean, n) == (2.5, 4) and half == pytest.approx(3.182 * math.sqrt(5 / 3) / 2, abs=1e-3)
    assert t_errorbar([1.0, 2.0, 3.0, 4.0]) == pytest.approx((2.5 - half, 2.5 + half))


def test_verdicts_against_a_threshold_and_at_its_boundary():
    # "faster": a ratio below 1 holds; an interval starting at 1 is never faster.
    assert interval_verdict(0.5, 0.9, better="below", threshold=1) == "holds"
    assert interval_verdict(1.0, 1.4, better="below", threshold=1) == "does not hold"
    assert interval_verdict(0.9, 1.1, better="below", threshold=1) == "is inconclusive"
    # "better": a difference that is exactly 0 everywhere is not better.
    assert interval_verdict(0.0, 0.0) == "does not hold" and interval_verdict(-0.2, 0.0) == "does not hold"
    # non-inferiority: an interval reaching down exactly to the margin still holds.
    assert interval_verdict(-0.01, 0.02, threshold=-0.01, inclusive=True) == "holds"
    assert interval_verdict(-0.03, -0.011, threshold=-0.01, inclusive=True) == "does not hold"
    with pytest.raises(ValueError, match="better"):
        interval_verdict(0, 1, better="higher")
