"""LEGCNet: chaos-causality pruning of a dense network (Sahu, Chadha, Nagaraj, Mathur & Saha,
"To prune or not to prune: a chaos-causality approach to principled pruning of dense neural
networks", arXiv 2308.09955; authors' code github.com/RAJAN13-blip/chaotic-pruning).

The method (§3; the Granger step in §3.4): train a dense MLP and record every weight after
every update; cut each weight's series into windows and estimate each window's largest
Lyapunov exponent with Rosenstein's algorithm, giving one exponent series per weight
("windowed Lyapunov exponents"); test with Granger causality whether a weight's exponent
series helps predict the misclassification rate measured at the windows' ends (§3.4);
weights whose dynamics do not Granger-cause misclassification are pruned, and the sparse
network is retrained from the same initialisation, as a lottery ticket (§5). LEGCNet-FT
decides on the whole training run, LEGCNet-PT on its first 10% of epochs. Both are set beside
magnitude and random pruning at the same per-layer sparsity, retrained the same way.

Where the paper leaves a choice open, the authors' code fixes it and we follow it: windows
of 50 updates overlapping by 10% (``LE_window.m``, README), a delay embedding of dimension
2 with delay 1 (``lyap_r -m2 -d1``), static windows (range under 1e-5) given exponent 0,
Granger's chi-square test on the residual sums of squares for each lag up to 14 with the
smallest p-value over the lags, and non-causal meaning p >= 0.05 (``gc_tests.ipynb``).
Two departures, both because the authors' choice would make the test say nothing: the
misclassification series is the training set's, not the test set's (choosing weights on
test labels leaks them into the reported accuracy), and a weight whose exponent series is
constant gets p = 1 (it cannot predict anything), where the authors' code catches
statsmodels' error and keeps it.

Everything runs vectorised over weights: the Rosenstein estimate over all windows of all
weights at once (in chunks), and the Granger regressions as one batched least-squares solve
per lag; ``tests/test_legcnet.py`` checks both against ``nolds.lyap_r`` and
``statsmodels.tsa.stattools.grangercausalitytests``, which are too slow here (one Python
call per series: about 750,000 windows and 1,184 tests per digits run).
"""
from __future__ import annotations

import math
import time
from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch

from .checks import check_choice, check_int, check_number, check_positive_int, list_of
from .io import JSONConfig
from .tabular import BUNDLED, MLPShape, f1_macro, init_params, load_tabular, train_mlp

__all__ = ["PAPER", "EPOCHS", "BUDGET_PLAN", "plan", "METHODS", "TESTS", "CORRECTIONS", "LEGCNetConfig", "rosenstein",
           "windowed_lyapunov", "granger_pvalues", "causal_mask", "magnitude_mask", "random_mask",
           "epochs_to_converge", "run_legcnet", "run_study", "summarise", "paired", "claims"]

#: The paper's figures and the settings of the authors' code, set beside ours (never used as results).
PAPER = {
    # §5: "for the Titanic, Vowel, and Cancer datasets, LEGCNet-FT achieves convergence in just
    # half the number of epochs required by the dense network".
    "ft_epochs_ratio": 0.5, "ft_epochs_ratio_datasets": ("Titanic", "Vowel", "Cancer"),
    # LEGCNet-PT decides after the first 10% of the epochs (the paper's definition of the variant).
    "pt_fraction": 0.1,
    # The paper's WeightWatcher check: every pruned layer is "well trained", alpha > 2.
    "weightwatcher_alpha_min": 2.0,
    # Authors' code (LE_window.m, gc_tests.ipynb): window, overlap, embedding, Granger lag and level.
    "window": 50, "overlap": 0.1, "emb_dim": 2, "max_lag": 14, "alpha": 0.05,
    # Data sets of the paper's experiments; ours are scikit-learn's bundled ones.
    "datasets": ("Cancer", "Titanic", "Banknote", "Vowel", "Iris", "Iris (3 features)"),
}

#: Training epochs per bundled set: each run has 21,000 to 29,000 single-sample updates, so the
#: PT decision (10% of them) still sees about 50 windows, enough for a 14-lag Granger test
#: (statsmodels needs more than 3 x lag + 1 points). Cancer's 50 and iris' 200 are the authors'.
EPOCHS = {"cancer": 50, "iris": 200, "wine": 150, "digits": 20}
#: What each notebook budget runs: data sets, number of seeds, epochs (None: EPOCHS). smoke is
#: CI's minute (iris at half its epochs, two seeds: numbers that exercise the code, nothing more);
#: high is the full study.
BUDGET_PLAN = {
    "smoke": {"datasets": ("iris",), "seeds": 2, "epochs": 100},
    "low": {"datasets": ("cancer", "iris", "wine", "digits"), "seeds": 2, "epochs": None},
    "moderate": {"datasets": ("cancer", "iris", "wine", "digits"), "seeds": 3, "epochs": None},
    "high": {"datasets": ("cancer", "iris", "wine", "digits"), "seeds": 5, "epochs": None},
}
METHODS = ("dense", "legcnet_ft", "magnitude_ft", "random_ft", "legcnet_pt", "magnitude_pt", "random_pt")
TESTS = ("ssr_chi2test", "ssr_ftest")
CORRECTIONS = ("none", "bonferroni", "holm", "fdr_bh")


@dataclass(frozen=True)
class LEGCNetConfig(JSONConfig):
    """One LEGCNet study's settings; every field is checked on construction."""
    hidden: int = 16                  # hidden sigmoid units (the paper's networks have one hidden layer)
    activation: str = "sigmoid"       # the authors' Helper.py
    lr: float = 0.05                  # SGD step; the authors use 0.01 to 0.5 by data set
    batch_size: int = 1               # single-sample SGD, the authors' run_network
    epochs: int | None = None         # None: EPOCHS[data set] (30 for a CSV file)
    test_size: float = 0.2            # the authors' 80/20 split
    window: int = 50                  # updates per Lyapunov window
    overlap: float = 0.1              # share of a window shared with the next one
    emb_dim: int = 2                  # delay-embedding dimension (lyap_r -m2)
    min_tsep: int = 2                 # Theiler window: neighbours at least this many steps apart
    trajectory_len: int = 4           # steps the divergence is followed (lyap_r -s3: 0..3)
    static_range: float = 1e-5        # windows whose range is below this get exponent 0
    max_lag: int = 14                 # Granger lags 1..max_lag (capped where the series is short)
    alpha: float = 0.05               # significance level: p < alpha is causal, kept
    test: str = "ssr_chi2test"        # Granger statistic (statsmodels' names)
    correction: str = "none"          # multiple-testing correction over weights
    difference: bool = False          # test first differences of both series (the authors' optional "stat" step)
    pt_fraction: float = 0.1          # LEGCNet-PT decides on this share of the epochs
    converge_fraction: float = 0.99   # converged: training accuracy >= this x the dense final one

    def __post_init__(self):
        for name in ("hidden", "batch_size", "window", "emb_dim", "trajectory_len", "max_lag"):
            check_positive_int(name, getattr(self, name))
        if self.epochs is not None:
            check_positive_int("epochs", self.epochs)
        if isinstance(self.min_tsep, bool) or not isinstance(self.min_tsep, int) or self.min_tsep < 0:
            raise ValueError(f"min_tsep={self.min_tsep!r} is not valid; it must be a non-negative integer")
        check_choice("activation", self.activation, ("sigmoid", "tanh", "relu"))
        check_choice("difference", self.difference, (False, True))
        check_choice("test", self.test, TESTS)
        check_choice("correction", self.correction, CORRECTIONS)
        check_number("lr", self.lr, low=0, low_open=True)
        check_number("test_size", self.test_size, low=0, high=1, low_open=True, high_open=True)
        check_number("overlap", self.overlap, low=0, high=1, high_open=True)
        check_number("static_range", self.static_range, low=0)
        check_number("alpha", self.alpha, low=0, high=1, low_open=True, high_open=True)
        check_number("pt_fraction", self.pt_fraction, low=0, high=1, low_open=True)
        check_number("converge_fraction", self.converge_fraction, low=0, high=1, low_open=True)
        if self.trajectory_len < 2:
            raise ValueError(f"trajectory_len={self.trajectory_len} is not valid; a slope needs at least 2")
        need = (self.emb_dim - 1) + self.trajectory_len + 2 * self.min_tsep + 1
        if self.window < need:
            raise ValueError(f"window={self.window} is not valid; with emb_dim={self.emb_dim}, "
                             f"trajectory_len={self.trajectory_len} and min_tsep={self.min_tsep} "
                             f"it must be at least {need}")

    @property
    def stride(self) -> int:
        """Updates between window starts: 45 for the authors' 50 with 10% overlap."""
        return max(1, round(self.window * (1 - self.overlap)))

    def epochs_for(self, dataset: str) -> int:
        return self.epochs if self.epochs is not None else EPOCHS.get(dataset, 30)


def _check_dataset(name: str, value) -> None:
    if value not in BUNDLED and not str(value).lower().endswith(".csv"):
        raise ValueError(f"{name}={value!r} is not valid; choose from {list(BUNDLED)} or a CSV path")


_check_datasets = list_of(_check_dataset, what=f"data sets from {list(BUNDLED)} or CSV paths")


def plan(budget: str, *, datasets=None, seeds=None, seed: int = 0) -> tuple[list, list]:
    """The data sets and seeds a notebook budget runs: ``datasets`` (a list) and ``seeds`` (a
    count) override the budget's; the seeds are ``seed, seed + 1, ...``."""
    check_choice("budget", budget, list(BUDGET_PLAN))
    chosen = list(BUDGET_PLAN[budget]["datasets"] if datasets is None else datasets)
    _check_datasets("datasets", chosen)
    n = BUDGET_PLAN[budget]["seeds"] if seeds is None else seeds
    check_positive_int("seeds", n)
    return chosen, list(range(seed, seed + n))


# ---------------------------------------------------------------- windowed Lyapunov exponents

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


def windowed_lyapunov(record: torch.Tensor, config: LEGCNetConfig, *, chunk_series: int = 16384) -> torch.Tensor:
    """Exponent of every window of every weight's series (§3): ``record`` (T + 1, n_weights)
    -> (n_windows, n_weights). Windows start every ``config.stride`` updates; a static window
    (range below ``static_range``) gets 0, as in the authors' ``LE_window.m``."""
    windows = record.unfold(0, config.window, config.stride)                # (n_win, P, window), a view
    n_win, n_w = windows.shape[:2]
    per_chunk = max(1, chunk_series // n_w)
    out = torch.empty(n_win, n_w, dtype=torch.float64)
    for start in range(0, n_win, per_chunk):
        block = windows[start:start + per_chunk].reshape(-1, config.window).to(torch.float64)
        le = rosenstein(block, emb_dim=config.emb_dim, lag=1, min_tsep=config.min_tsep,
                        trajectory_len=config.trajectory_len)
        static = (block.amax(1) - block.amin(1)) < config.static_range
        le = torch.where(static | le.isnan(), torch.zeros_like(le), le)
        out[start:start + per_chunk] = le.view(-1, n_w)
    return out


def window_ends(total_steps: int, config: LEGCNetConfig) -> np.ndarray:
    """Update count at the last point of each window (the step where misclassification is read)."""
    n_win = (total_steps + 1 - config.window) // config.stride + 1
    if n_win < 1:
        raise ValueError(f"{total_steps} updates make no window of {config.window}")
    return np.arange(n_win) * config.stride + config.window - 1


# ---------------------------------------------------------------- Granger causality

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


# ---------------------------------------------------------------- masks

def causal_mask(pvalues: np.ndarray, *, alpha: float = 0.05, correction: str = "none") -> torch.Tensor:
    """Keep (1) the weights whose Granger p-value (smallest over the lags, the authors' rule)
    is below ``alpha`` after the ``correction`` over weights, prune (0) the rest (§3.4). An
    untestable weight (NaN: the misclassification rate never varied) is kept, as in the
    authors' code, since nothing says it is non-causal."""
    from statsmodels.stats.multitest import multipletests

    check_number("alpha", alpha, low=0, high=1, low_open=True, high_open=True)
    check_choice("correction", correction, CORRECTIONS)
    p = np.asarray(pvalues, dtype=float)
    if p.ndim == 2:
        with np.errstate(all="ignore"):
            p = np.where(np.isnan(p).all(1), np.nan, np.nanmin(np.where(np.isnan(p), np.inf, p), 1))
    tested = ~np.isnan(p)
    adjusted = p.copy()
    if correction != "none" and tested.any():
        adjusted[tested] = multipletests(p[tested], alpha=alpha, method=correction)[1]
    return torch.as_tensor(~tested | (adjusted < alpha), dtype=torch.float32)


def _per_layer_counts(mask: torch.Tensor, layer: torch.Tensor) -> list[int]:
    return [int(mask[layer == k].sum()) for k in range(int(layer.max()) + 1)]


def magnitude_mask(weights: torch.Tensor, like: torch.Tensor, layer: torch.Tensor) -> torch.Tensor:
    """Keep, in each layer, as many weights as ``like`` keeps there: the largest in magnitude."""
    out = torch.zeros_like(like)
    for k, keep in enumerate(_per_layer_counts(like, layer)):
        where = (layer == k).nonzero()[:, 0]
        out[where[weights[where].abs().argsort(descending=True, stable=True)[:keep]]] = 1
    return out


def random_mask(like: torch.Tensor, layer: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """Keep, in each layer, as many weights as ``like`` keeps there, drawn uniformly."""
    out = torch.zeros_like(like)
    for k, keep in enumerate(_per_layer_counts(like, layer)):
        where = (layer == k).nonzero()[:, 0]
        out[where[torch.randperm(len(where), generator=generator)[:keep]]] = 1
    return out


def epochs_to_converge(train_accuracy, target: float) -> float:
    """First epoch (1-based) whose training accuracy reaches ``target``; NaN if none does."""
    hit = np.nonzero(np.asarray(train_accuracy) >= target - 1e-9)[0]
    return float(hit[0] + 1) if len(hit) else math.nan


# ---------------------------------------------------------------- one run

def run_legcnet(dataset: str, seed: int, config: LEGCNetConfig = LEGCNetConfig(), *, device: str = "cpu",
                target: str | None = None) -> dict:
    """Dense run, LEGCNet-FT and -PT masks, magnitude and random masks at their per-layer
    sparsities, and the six sparse networks retrained from the dense run's initialisation on
    its sample order. Returns ``rows`` (one per method), ``curves`` (training and test accuracy
    per epoch and method), ``weights`` (per weight: layer, p-values, kept by FT and PT, mean
    exponent), ``series`` (misclassification and mean |exponent| per window) and ``timing``."""
    from .train import seed_everything

    if not isinstance(config, LEGCNetConfig):
        raise ValueError(f"config must be a LEGCNetConfig, not {type(config).__name__}")
    if dataset not in BUNDLED and not str(dataset).lower().endswith(".csv"):
        raise ValueError(f"dataset={dataset!r} is not valid; choose one of {list(BUNDLED)} or a CSV path")
    seed_everything(seed)
    timing = {}
    data = load_tabular(dataset, seed=seed, test_size=config.test_size, target=target)
    shape = MLPShape(data.n_features, config.hidden, data.n_classes)
    theta0 = init_params(shape, torch.Generator().manual_seed(seed))
    epochs = config.epochs_for(dataset)
    per_epoch = math.ceil(len(data.y_train) / config.batch_size)
    total = epochs * per_epoch
    ends = window_ends(total, config)
    dense = train_mlp(data, shape, theta0, epochs=epochs, lr=config.lr, seed=seed, batch_size=config.batch_size,
                      activation=config.activation, record=True, misclassification_steps=ends, device=device)
    timing["dense_train_s"] = dense.seconds
    misclassification = dense.misclassification[0].numpy().astype(float)

    t0 = time.perf_counter()
    le = windowed_lyapunov(dense.record, config)                                # (n_win, P)
    timing["lyapunov_s"] = time.perf_counter() - t0
    pt_epochs = max(1, round(config.pt_fraction * epochs))
    pt_steps = pt_epochs * per_epoch
    n_pt = int((ends <= pt_steps).sum())
    t0 = time.perf_counter()
    decisions = {}
    for variant, n_win in (("ft", len(ends)), ("pt", n_pt)):
        lag = min(config.max_lag, max_allowable_lag(n_win))
        if lag < 1:
            raise ValueError(f"{dataset}: the {variant.upper()} decision sees {n_win} windows, too few for a "
                             f"Granger test; train longer (epochs) or use shorter windows (window)")
        causes, effect = le[:n_win].T.numpy(), misclassification[:n_win]
        if config.difference:
            # Trends shared by the exponents and the error rate (both drift as training settles)
            # make levels Granger-cause each other spuriously; differences remove them.
            causes, effect = np.diff(causes, axis=1), np.diff(effect)
            lag = min(config.max_lag, max_allowable_lag(n_win - 1))
        pv = granger_pvalues(causes, effect, lag, test=config.test)
        decisions[variant] = (pv, lag, n_win, causal_mask(pv, alpha=config.alpha, correction=config.correction))
    timing["granger_s"] = time.perf_counter() - t0

    layer = shape.layer_of()
    generator = torch.Generator().manual_seed(10_000 + seed)
    final_w = dense.theta[0, :shape.n_weights]
    pt_w = dense.record[pt_steps]
    masks = {"legcnet_ft": decisions["ft"][3], "legcnet_pt": decisions["pt"][3]}
    masks["magnitude_ft"] = magnitude_mask(final_w, masks["legcnet_ft"], layer)
    masks["random_ft"] = random_mask(masks["legcnet_ft"], layer, generator)
    masks["magnitude_pt"] = magnitude_mask(pt_w, masks["legcnet_pt"], layer)
    masks["random_pt"] = random_mask(masks["legcnet_pt"], layer, generator)
    sparse_names = [m for m in METHODS if m != "dense"]
    stacked = torch.stack([masks[m] for m in sparse_names])
    sparse = train_mlp(data, shape, theta0.repeat(len(sparse_names), 1), epochs=epochs, lr=config.lr, seed=seed,
                       masks=stacked, batch_size=config.batch_size, activation=config.activation, device=device)
    timing["sparse_train_s"] = sparse.seconds

    theta = torch.cat([dense.theta, sparse.theta])
    train_acc = torch.cat([dense.train_accuracy, sparse.train_accuracy])
    test_acc = torch.cat([dense.test_accuracy, sparse.test_accuracy])
    all_masks = torch.cat([torch.ones(1, shape.n_weights), stacked])
    f1 = f1_macro(shape, theta, data, config.activation)
    target_acc = config.converge_fraction * float(dense.train_accuracy[0, -1])
    a, b = shape.layer_sizes
    rows = []
    for i, method in enumerate(METHODS):
        kept = all_masks[i]
        nnz = int(kept.sum())
        decision = decisions.get(method.split("_")[-1]) if method != "dense" else None
        rows.append({
            "dataset": data.name, "seed": seed, "method": method,
            "test_accuracy": float(test_acc[i, -1]), "macro_f1": f1[i], "train_accuracy": float(train_acc[i, -1]),
            "weights_kept": nnz, "weights_total": shape.n_weights,
            "sparsity": 1 - nnz / shape.n_weights,
            "sparsity_layer1": 1 - float(kept[:a].sum()) / a, "sparsity_layer2": 1 - float(kept[a:].sum()) / b,
            "params": nnz + shape.hidden + shape.classes,
            # forward FLOPs per sample: a multiply and an add per kept weight, an add per bias
            "flops": 2 * nnz + shape.hidden + shape.classes,
            "epochs": epochs, "converge_target": target_acc,
            "epochs_to_converge": epochs_to_converge(train_acc[i], target_acc),
            "decision_windows": decision[2] if decision else None, "granger_lag": decision[1] if decision else None,
            "zero_pruned_after_training": bool((theta[i, :shape.n_weights][kept == 0] == 0).all()),
        })
    curves = pd.DataFrame([{"dataset": data.name, "seed": seed, "method": m, "epoch": e + 1,
                            "train_accuracy": float(train_acc[i, e]), "test_accuracy": float(test_acc[i, e])}
                           for i, m in enumerate(METHODS) for e in range(epochs)])
    with np.errstate(all="ignore"):
        pmin = {v: np.nanmin(np.where(np.isnan(d[0]), np.inf, d[0]), 1) for v, d in decisions.items()}
    weights = pd.DataFrame({"dataset": data.name, "seed": seed, "weight": np.arange(shape.n_weights),
                            "layer": layer.numpy() + 1, "p_ft": pmin["ft"], "p_pt": pmin["pt"],
                            "kept_ft": masks["legcnet_ft"].numpy().astype(bool),
                            "kept_pt": masks["legcnet_pt"].numpy().astype(bool),
                            "mean_exponent": le.mean(0).numpy(), "final_weight": final_w.numpy()})
    series = pd.DataFrame({"dataset": data.name, "seed": seed, "window": np.arange(len(ends)), "step": ends,
                           "misclassification": misclassification,
                           "mean_exponent": le.mean(1).numpy(),
                           "positive_share": (le > 0).double().mean(1).numpy()})
    return {"rows": pd.DataFrame(rows), "curves": curves, "weights": weights, "series": series,
            "timing": {"dataset": data.name, "seed": seed, **{k: round(v, 3) for k, v in timing.items()}},
            "masks": masks}


def run_study(datasets, seeds, config: LEGCNetConfig = LEGCNetConfig(), *, device: str = "cpu",
              target: str | None = None, progress: bool = False) -> dict:
    """:func:`run_legcnet` for every data set and seed (``target``: the label column of CSV
    data sets); the frames concatenated."""
    _check_datasets("datasets", datasets)
    list_of(check_int, what="non-negative integers")("seeds", seeds)
    parts = {"rows": [], "curves": [], "weights": [], "series": [], "timing": []}
    for name in datasets:
        for seed in seeds:
            out = run_legcnet(name, seed, config, device=device,
                              target=target if str(name).lower().endswith(".csv") else None)
            for key in parts:
                parts[key].append(out[key] if key != "timing" else pd.DataFrame([out[key]]))
            if progress:
                t = out["timing"]
                print(f"{name} seed {seed}: {sum(v for k, v in t.items() if k.endswith('_s')):.1f} s")
    return {key: pd.concat(frames, ignore_index=True) for key, frames in parts.items()}


# ---------------------------------------------------------------- summaries and claims

def _ci(values) -> tuple[float, float, int]:
    """Mean and 95% t-interval half-width (NaN with one value)."""
    from scipy import stats

    v = np.asarray(values, dtype=float)
    v = v[~np.isnan(v)]
    if len(v) == 0:
        return math.nan, math.nan, 0
    if len(v) == 1:
        return float(v[0]), math.nan, 1
    return float(v.mean()), float(stats.t.ppf(0.975, len(v) - 1) * v.std(ddof=1) / math.sqrt(len(v))), len(v)


def t_interval(values) -> tuple[float, float]:
    """The 95% t-interval of the mean of ``values`` (a seaborn ``errorbar`` callable)."""
    mean, half, _ = _ci(values)
    half = 0.0 if math.isnan(half) else half
    return mean - half, mean + half


SUMMARY_METRICS = ("test_accuracy", "macro_f1", "sparsity", "params", "flops", "epochs_to_converge")


def summarise(rows: pd.DataFrame) -> pd.DataFrame:
    """Mean and 95% CI half-width over seeds, per data set, method and metric (tidy)."""
    out = []
    for (dataset, method), group in rows.groupby(["dataset", "method"], sort=False):
        for metric in SUMMARY_METRICS:
            mean, half, n = _ci(group[metric])
            out.append({"dataset": dataset, "method": method, "metric": metric, "mean": mean, "ci95": half, "n": n})
    return pd.DataFrame(out)


def paired(rows: pd.DataFrame, a: str, b: str, metric: str, *, ratio: bool = False) -> pd.DataFrame:
    """Per data set, the mean and 95% CI of ``a - b`` (or ``a / b``) over seeds, paired by seed."""
    out = []
    for dataset, group in rows.groupby("dataset", sort=False):
        wide = group.pivot(index="seed", columns="method", values=metric)
        d = wide[a] / wide[b] if ratio else wide[a] - wide[b]
        mean, half, n = _ci(d)
        out.append({"dataset": dataset, "a": a, "b": b, "metric": metric, "kind": "ratio" if ratio else "difference",
                    "mean": mean, "ci95": half, "low": mean - half, "high": mean + half, "n": n})
    return pd.DataFrame(out)


#: Non-inferiority margin for "similar accuracy / F1": one percentage point.
MARGIN = 0.01

CLAIMS = (
    # (claim, test) : how each paper claim is checked in our numbers.
    ("LEGCNet-FT keeps the dense network's accuracy and macro F1", "similar", "legcnet_ft"),
    ("LEGCNet-PT keeps the dense network's accuracy and macro F1", "similar", "legcnet_pt"),
    ("LEGCNet-FT has fewer parameters and FLOPs than the dense network", "smaller", "legcnet_ft"),
    ("LEGCNet-PT has fewer parameters and FLOPs than the dense network", "smaller", "legcnet_pt"),
    ("LEGCNet-FT converges in fewer epochs than the dense network (paper: half)", "faster", "legcnet_ft"),
    ("LEGCNet-PT converges in fewer epochs than the dense network", "faster", "legcnet_pt"),
    ("LEGCNet-FT is more accurate than magnitude pruning at its sparsity", "better:magnitude_ft", "legcnet_ft"),
    ("LEGCNet-FT is more accurate than random pruning at its sparsity", "better:random_ft", "legcnet_ft"),
    ("LEGCNet-PT is more accurate than magnitude pruning at its sparsity", "better:magnitude_pt", "legcnet_pt"),
    ("LEGCNet-PT is more accurate than random pruning at its sparsity", "better:random_pt", "legcnet_pt"),
)


def _interval_verdict(low: float, high: float, *, holds_if, fails_if) -> str:
    if any(math.isnan(v) for v in (low, high)):
        return "inconclusive"
    return "holds" if holds_if(low, high) else "does not hold" if fails_if(low, high) else "inconclusive"


def claims(rows: pd.DataFrame) -> pd.DataFrame:
    """Each claim of :data:`CLAIMS` per data set: the paired statistic, its 95% CI and a verdict.

    - similar: the CI of (pruned - dense) test accuracy and macro F1 both lie above -MARGIN
      (holds); either lies wholly below -MARGIN (does not hold); else inconclusive.
    - smaller: the pruned share of weights has a CI above 0 (holds), or is 0 throughout.
    - faster: the CI of the epochs ratio (pruned / dense) lies below 1 (holds); wholly at or
      above 1 (does not hold); else inconclusive. A run that never reaches the target counts
      as ``epochs + 1``.
    - better: the CI of (LEGCNet - baseline) test accuracy lies above 0 (holds); at or below 0
      (does not hold: never better); else inconclusive (no difference detectable).
    """
    out = []
    for claim, kind, method in CLAIMS:
        if kind == "similar":
            acc = paired(rows, method, "dense", "test_accuracy")
            f1 = paired(rows, method, "dense", "macro_f1")
            for (_, ra), (_, rf) in zip(acc.iterrows(), f1.iterrows()):
                verdicts = [_interval_verdict(r.low, r.high, holds_if=lambda lo, hi: lo >= -MARGIN,
                                              fails_if=lambda lo, hi: hi < -MARGIN) for r in (ra, rf)]
                verdict = ("does not hold" if "does not hold" in verdicts else
                           "holds" if verdicts == ["holds", "holds"] else "inconclusive")
                out.append({"claim": claim, "dataset": ra.dataset, "statistic": "test accuracy minus dense",
                            "mean": ra["mean"], "low": ra.low, "high": ra.high,
                            "statistic_2": "macro F1 minus dense", "mean_2": rf["mean"], "low_2": rf.low,
                            "high_2": rf.high, "verdict": verdict})
        elif kind == "smaller":
            for dataset, group in rows[rows.method == method].groupby("dataset", sort=False):
                mean, half, _ = _ci(group.sparsity)
                low, high = mean - (0 if math.isnan(half) else half), mean + (0 if math.isnan(half) else half)
                verdict = ("holds" if low > 0 or (group.sparsity > 0).all() else
                           "does not hold" if (group.sparsity == 0).all() else "inconclusive")
                out.append({"claim": claim, "dataset": dataset, "statistic": "share of weights pruned",
                            "mean": mean, "low": low, "high": high, "verdict": verdict})
        elif kind == "faster":
            # a run that never reaches the target within its epochs counts as epochs + 1: not faster
            finished = rows.assign(epochs_to_converge=rows.epochs_to_converge.fillna(rows.epochs + 1))
            for _, r in paired(finished, method, "dense", "epochs_to_converge", ratio=True).iterrows():
                verdict = _interval_verdict(r.low, r.high, holds_if=lambda lo, hi: hi < 1,
                                            fails_if=lambda lo, hi: lo >= 1)
                out.append({"claim": claim, "dataset": r.dataset, "statistic": "epochs to converge / dense",
                            "mean": r["mean"], "low": r.low, "high": r.high, "verdict": verdict})
        else:
            baseline = kind.split(":")[1]
            for _, r in paired(rows, method, baseline, "test_accuracy").iterrows():
                verdict = _interval_verdict(r.low, r.high, holds_if=lambda lo, hi: lo > 0,
                                            fails_if=lambda lo, hi: hi <= 0)
                out.append({"claim": claim, "dataset": r.dataset, "statistic": f"test accuracy minus {baseline}",
                            "mean": r["mean"], "low": r.low, "high": r.high, "verdict": verdict})
    return pd.DataFrame(out)


def claim_sentences(table: pd.DataFrame) -> list[str]:
    """One plain sentence per claim over the data sets of :func:`claims`."""
    out = []
    for claim, group in table.groupby("claim", sort=False):
        counts = group.verdict.value_counts()
        n, held, failed = len(group), counts.get("holds", 0), counts.get("does not hold", 0)
        if held == n:
            overall = "holds"
        elif failed == n:
            overall = "does not hold"
        elif held:
            overall = f"holds on {held} of {n} data sets only"
        elif failed:
            overall = f"does not hold on {failed} of {n} data sets and is inconclusive on the rest"
        else:
            overall = "is inconclusive at this scale"

        def stat(r, suffix=""):
            mean, low, high = r[f"mean{suffix}"], r[f"low{suffix}"], r[f"high{suffix}"]
            ci = "" if math.isnan(low) or low == high else f", 95% CI [{low:+.3f}, {high:+.3f}]"
            return f"{r[f'statistic{suffix}']} {mean:+.3f}{ci}"

        detail = "; ".join(f"{r.dataset}: {r.verdict}, " + stat(r)
                           + (f", {stat(r, '_2')}" if "statistic_2" in r and isinstance(r.statistic_2, str) else "")
                           for _, r in group.iterrows())
        out.append(f"The claim that {claim} {overall} in ours ({detail}).")
    return out
