"""The two estimators LEGCNet is built on (Sahu et al., arXiv 2308.09955, §3 and §3.4), vectorised
over series: Rosenstein's largest Lyapunov exponent (:func:`rosenstein`, as ``nolds.lyap_r``
and TISEAN's ``lyap_r`` compute it) and Granger causality's p-values (:func:`granger_pvalues`,
as ``statsmodels.tsa.stattools.grangercausalitytests`` gives them).

Both run over every series at once: the Rosenstein estimate over all windows of all weights in
chunks, the Granger regressions as one batched least-squares solve per lag.
``tests/test_legcnet.py`` checks both against ``nolds`` and ``statsmodels``, which are too slow
for the study (one Python call per series: about 750,000 windows and 1,184 tests per digits run).
"""
from __future__ import annotations

import math

import numpy as np
import torch

from lshkit.checks import check_choice, check_positive_int

__all__ = ["TESTS", "rosenstein", "max_allowable_lag", "granger_pvalues"]

#: Granger statistics, by statsmodels' names.
TESTS = ("ssr_chi2test", "ssr_ftest")


def rosenstein(series, *, emb_dim: int = 2, lag: int = 1, min_tsep: int = 2, trajectory_len: int = 4,
               chunk: int = 512) -> torch.Tensor:
    """Rosenstein's largest Lyapunov exponent (per step, natural log) of each row of ``series``
    (N, n), as ``nolds.lyap_r(..., fit="poly")`` computes it for one series (§3 of the paper,
    which uses TISEAN's ``lyap_r``, the same algorithm): delay-embed, pair every point with its
    nearest neighbour at least ``min_tsep`` steps away, follow the mean log distance of the
    pairs for ``trajectory_len`` steps, and fit its slope by least squares. Rows whose pairs
    never separate (every distance zero, fewer than two finite points) give NaN. Rows go in
    chunks of ``chunk`` (small chunks keep the pairwise distances in cache).
    """
    x = torch.as_tensor(series, dtype=torch.float64)
    if x.ndim != 2:
        raise ValueError(f"series must be 2-D (N, n), not {tuple(x.shape)}")
    span = (emb_dim - 1) * lag + 1
    m = x.shape[1] - span + 1
    ntraj = m - trajectory_len + 1
    if ntraj < 2 * min_tsep + 2:
        raise ValueError(f"series of length {x.shape[1]} are too short for emb_dim={emb_dim}, lag={lag}, "
                         f"min_tsep={min_tsep} and trajectory_len={trajectory_len}")
    idx = torch.arange(ntraj)
    # Squared distances (the argmin is the same) start from +inf inside the Theiler band.
    band = torch.where((idx[:, None] - idx[None, :]).abs() <= min_tsep, math.inf, 0.0).to(torch.float64)
    ks = torch.arange(trajectory_len, dtype=torch.float64)
    steps = torch.arange(trajectory_len)
    ahead = idx[:, None] + steps                                                  # (ntraj, T)
    out = torch.empty(x.shape[0], dtype=torch.float64)
    for start in range(0, x.shape[0], chunk):
        orbit = x[start:start + chunk].unfold(1, span, 1)[..., ::lag]             # (c, m, emb_dim)
        c = orbit.shape[0]
        d2 = band.expand(c, -1, -1).clone()
        for e in range(emb_dim):
            coord = orbit[:, :ntraj, e]
            d2 += (coord[:, :, None] - coord[:, None, :]) ** 2
        near = d2.argmin(-1)                                                      # (c, ntraj)
        followed = torch.gather(orbit, 1, (near[..., None] + steps).reshape(c, -1, 1).expand(-1, -1, emb_dim))
        div = (orbit[:, ahead] - followed.view(c, ntraj, trajectory_len, emb_dim)).norm(dim=-1)  # (c, ntraj, T)
        positive = div > 0
        logs = torch.where(positive, div.clamp_min(1e-300).log(), 0.0)
        count = positive.sum(1)
        mean_log = logs.sum(1) / count.clamp_min(1)                               # (c, T)
        w = (count > 0).to(torch.float64)                                         # -inf points left out
        n_fit = w.sum(-1)
        k_mean = (w * ks).sum(-1) / n_fit.clamp_min(1)
        y_mean = (w * mean_log).sum(-1) / n_fit.clamp_min(1)
        dk = (ks - k_mean[:, None]) * w
        slope = (dk * (mean_log - y_mean[:, None])).sum(-1) / (dk * dk).sum(-1)
        out[start:start + chunk] = torch.where(n_fit >= 2, slope, math.nan)
    return out


def max_allowable_lag(n: int) -> int:
    """statsmodels' bound for a series of ``n`` points with a constant term."""
    return int((n - 1) / 3) - 1


def granger_pvalues(causes, effect, max_lag: int, *, test: str = "ssr_chi2test") -> np.ndarray:
    """p-values (W, max_lag) of "row w of ``causes`` (W, n) Granger-causes ``effect`` (n,)" at
    lags 1..max_lag, as ``grangercausalitytests(np.column_stack([effect, causes[w]]), max_lag)``
    gives them under ``test`` (§3.4): for lag p, ordinary least squares of effect_t on a constant
    and its own p lags (restricted) and also on p lags of the cause (unrestricted), compared by
    their residual sums of squares. A constant cause gets p = 1 (adding
    it cannot improve the fit); a perfect fit (constant effect) gets NaN (no test is possible).
    """
    from scipy import stats

    check_choice("test", test, TESTS)
    check_positive_int("max_lag", max_lag)
    x = torch.as_tensor(np.asarray(causes), dtype=torch.float64)
    y = torch.as_tensor(np.asarray(effect), dtype=torch.float64)
    if x.ndim != 2 or y.ndim != 1 or x.shape[1] != y.shape[0]:
        raise ValueError(f"causes must be (W, n) and effect (n,), not {tuple(x.shape)} and {tuple(y.shape)}")
    n = y.shape[0]
    if n <= 3 * max_lag + 1:
        raise ValueError(f"max_lag={max_lag} is not valid for series of {n} points; "
                         f"the largest allowable lag is {max_allowable_lag(n)}")
    w = x.shape[0]
    xt = x.T.contiguous()                                                              # (n, W)
    constant = (x.amax(1) == x.amin(1)).numpy()
    out = np.empty((w, max_lag))
    for p in range(1, max_lag + 1):
        nobs = n - p
        target = y[p:]
        own = torch.stack([y[p - k:n - k] for k in range(1, p + 1)], 1)               # (nobs, p)
        lagged = torch.stack([xt[p - k:n - k] for k in range(1, p + 1)], 2)          # (nobs, W, p)
        ones = torch.ones(nobs, 1, dtype=torch.float64)
        restricted = torch.cat([own, ones], 1)
        r_res = target - restricted @ torch.linalg.lstsq(restricted, target[:, None], driver="gelsd").solution[:, 0]
        ssr_r = float(r_res @ r_res)
        # Frisch-Waugh-Lovell: the joint fit's SSR is the restricted one less what the cause's
        # lags, made orthogonal to the restricted regressors, explain of its residual: one
        # shared projection (a single matrix product over all weights) and W tiny p x p solves
        # instead of W full least-squares fits.
        flat = lagged.view(nobs, w * p)
        perp = (flat - restricted @ (torch.linalg.pinv(restricted) @ flat)).view(nobs, w, p)
        gram = torch.einsum("nwi,nwj->wij", perp, perp)                               # (W, p, p)
        rhs = torch.einsum("nwi,n->wi", perp, r_res)                                  # (W, p)
        coef = torch.linalg.pinv(gram, hermitian=True) @ rhs[..., None]
        explained = (coef[..., 0] * rhs).sum(1).numpy()
        ssr_u = np.maximum(ssr_r - explained, 0.0)
        tss = float(((target - target.mean()) ** 2).sum())
        gain = np.maximum(ssr_r - ssr_u, 0.0)
        df_resid = nobs - (2 * p + 1)
        with np.errstate(divide="ignore", invalid="ignore"):
            if test == "ssr_chi2test":
                pv = stats.chi2.sf(nobs * gain / ssr_u, p)
            else:
                pv = stats.f.sf(gain / ssr_u / p * df_resid, p, df_resid)
        perfect = (tss == 0) | (ssr_u == 0) | (ssr_u / max(tss, 1e-300) < np.finfo(float).eps)
        pv = np.where(constant, 1.0, np.where(perfect, np.nan, pv))
        out[:, p - 1] = pv
    return out
