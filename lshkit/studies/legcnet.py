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

The two estimators, vectorised over weights, are :mod:`lshkit.studies.chaos_causality`; the
MLP and its data, :mod:`lshkit.studies.tabular`; the paper's claims judged in our numbers,
:mod:`lshkit.studies.legcnet_claims`.
"""
from __future__ import annotations

import math
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from lshkit.checks import check_choice, check_int, check_number, check_positive_int, list_of, optional
from lshkit.io import JSONConfig, read_json, versions
from lshkit.report import load_results, save_results
from lshkit.studies.chaos_causality import TESTS, granger_pvalues, max_allowable_lag, rosenstein
from lshkit.studies.tabular import BUNDLED, MLPShape, f1_macro, init_params, load_tabular, train_mlp

__all__ = ["EPOCHS", "BUDGET_PLAN", "METHODS", "LABELS", "CORRECTIONS", "LEGCNetConfig", "PARAMETERS", "Plan",
           "plan", "windowed_lyapunov", "window_ends", "causal_mask", "magnitude_mask", "random_mask",
           "epochs_to_converge", "run_legcnet", "run_study", "run_or_read"]

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
CORRECTIONS = ("none", "bonferroni", "holm", "fdr_bh")
#: The methods as tables and figures name them.
LABELS = {"dense": "dense", "legcnet_ft": "LEGCNet-FT", "magnitude_ft": "magnitude (FT sparsity)",
          "random_ft": "random (FT sparsity)", "legcnet_pt": "LEGCNet-PT", "magnitude_pt": "magnitude (PT sparsity)",
          "random_pt": "random (PT sparsity)"}


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


# ---------------------------------------------------------------- windowed Lyapunov exponents

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
    from lshkit.train import seed_everything

    if not isinstance(config, LEGCNetConfig):
        raise ValueError(f"config must be a LEGCNetConfig, not {type(config).__name__}")
    _check_dataset("dataset", dataset)
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


# ---------------------------------------------------------------- the notebook's run

#: The notebook's method parameters and the :class:`LEGCNetConfig` fields they set.
NOTEBOOK_FIELDS = {"epochs": "epochs", "hidden": "hidden", "lr": "lr", "max_lag": "max_lag", "alpha": "alpha",
                   "correction": "correction", "granger_test": "test", "pt_fraction": "pt_fraction",
                   "difference": "difference"}


def _config_check(field: str):
    """The check of a notebook parameter that sets a config field: :class:`LEGCNetConfig`'s own,
    so the notebook refuses exactly what the config would, naming the notebook's parameter."""
    def checked(name, value):
        try:
            LEGCNetConfig(**{field: value})
        except ValueError as err:
            message = str(err)
            raise ValueError(name + message[len(field):] if message.startswith(f"{field}=") else message) from None
    return checked


def _check_column(name: str, value) -> None:
    if not isinstance(value, str) or not value:
        raise ValueError(f"{name}={value!r} is not valid; it must be the name of a column")


#: The parameters of ``legcnet.ipynb`` beyond the common ones, each with its check, for
#: :func:`lshkit.report.validate`.
PARAMETERS = {"datasets": optional(_check_datasets), "seeds": optional(check_positive_int),
              "csv_target": optional(_check_column),
              **{name: _config_check(field) for name, field in NOTEBOOK_FIELDS.items()}}


@dataclass(frozen=True)
class Plan:
    """One run of the study: ``config`` on every data set of ``datasets`` with every seed of
    ``seeds`` (``target``: the label column of CSV data sets), its tables in ``run_dir`` and its
    figures named with ``suffix``."""
    budget: str
    config: LEGCNetConfig
    datasets: list
    seeds: list
    target: str | None = None
    run_dir: Path | None = None
    suffix: str = ""

    @property
    def settings(self) -> dict:
        """What the results depend on: a finished run with the same settings is read back."""
        return {"config": self.config.to_dict(), "datasets": self.datasets, "seeds": self.seeds,
                "csv_target": self.target}


def plan(budget: str, *, seed: int = 0, run_dir=None, datasets=None, seeds=None, csv_target=None,
         **method) -> Plan:
    """The run a notebook budget makes (:data:`BUDGET_PLAN`). ``datasets`` (a list) and ``seeds``
    (a count) override the budget's, the seeds being ``seed, seed + 1, ...``; ``method`` holds the
    notebook's method parameters (:data:`NOTEBOOK_FIELDS`; ``epochs`` None is the budget's). The
    full study (budget high) names its figures ``legcnet_*`` and other budgets add ``_<budget>``,
    so a smoke run never overwrites them; Granger tests on first differences add
    ``_differenced`` to the figures and ``-differenced`` to ``run_dir``."""
    check_choice("budget", budget, list(BUDGET_PLAN))
    unknown = sorted(set(method) - set(NOTEBOOK_FIELDS))
    if unknown:
        raise ValueError(f"unknown parameter(s) {unknown}; the method's are {list(NOTEBOOK_FIELDS)}")
    chosen = list(BUDGET_PLAN[budget]["datasets"] if datasets is None else datasets)
    _check_datasets("datasets", chosen)
    n = BUDGET_PLAN[budget]["seeds"] if seeds is None else seeds
    check_positive_int("seeds", n)
    if csv_target is None and any(str(d).lower().endswith(".csv") for d in chosen):
        raise ValueError("csv_target=None is not valid with a CSV data set; give the name of its label column")
    if method.get("epochs") is None:
        method["epochs"] = BUDGET_PLAN[budget]["epochs"]
    config = LEGCNetConfig(**{NOTEBOOK_FIELDS[name]: value for name, value in method.items()})
    suffix = ("" if budget == "high" else f"_{budget}") + ("_differenced" if config.difference else "")
    if run_dir is not None and config.difference:
        run_dir = Path(run_dir).with_name(Path(run_dir).name + "-differenced")
    return Plan(budget, config, chosen, list(range(seed, seed + n)), csv_target, run_dir, suffix)


def run_or_read(plan: Plan, *, device: str = "cpu", progress: bool = False) -> dict:
    """Every frame of the study (:func:`run_study`) in ``plan.run_dir``, by name: read back where a
    finished run there had the same settings (its ``study.json``; delete it to recompute), else
    computed and saved with its wall time and the versions that made it. ``study.json`` is
    written last, so a folder holding it holds complete results."""
    if plan.run_dir is None:
        raise ValueError("the plan has no run_dir; give plan() the folder its results go to")
    done = Path(plan.run_dir) / "study.json"
    if done.exists() and read_json(done) == plan.settings:
        print(f"reading back the results of the same settings in {plan.run_dir}")
    else:
        started, t0 = time.strftime("%Y-%m-%dT%H:%M:%S%z"), time.perf_counter()
        study = run_study(plan.datasets, plan.seeds, plan.config, device=device, target=plan.target,
                          progress=progress)
        save_results(plan.run_dir, **study, study_run={"seconds": round(time.perf_counter() - t0, 1),
                                                       "started": started, "versions": versions()})
        save_results(plan.run_dir, study=plan.settings)
    return load_results(plan.run_dir)
