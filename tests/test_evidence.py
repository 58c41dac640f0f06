"""Rank correlations of early signals with final perplexity, with bootstrap intervals."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from lshkit.atlas import load_atlas
from lshkit.evidence import early_signals, paired_difference, rank_correlation


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


def test_early_signals_from_an_atlas(atlas_dir):
    atlas = load_atlas(atlas_dir)
    frame = early_signals(atlas, epochs=range(5))
    assert len(frame) == 8 * 5 and set(frame.epoch) == {0, 1, 2, 3, 4}
    assert np.isfinite(frame.ls_distance).all() and np.isfinite(frame.valid_loss).all()
    # The final perplexity is one number per candidate, the signals move with the epoch.
    assert (frame.groupby("name").final_valid_ppl.nunique() == 1).all()
    assert frame.groupby("name").ls_distance.nunique().gt(1).all()
    with pytest.raises(ValueError, match="'pca'"):
        early_signals(atlas, embedding="umap")
