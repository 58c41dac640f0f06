"""The paper's central claim measured on the atlas: after E epochs, does a candidate's distance
to the dense model in the LS space predict its final perplexity better than its validation loss?
(Fig. 1, §3.2; Table 2 rests on it.)

:func:`early_signals` reads both signals for every pruned candidate of an atlas at each early
epoch; :func:`rank_correlation` gives Spearman's ρ between a signal and the final perplexity with
a bootstrap 95% interval over candidates; :func:`paired_difference` the difference of two signals'
ρ with a paired bootstrap interval (the same resampled candidates for both);
:func:`predictive_power` both for every LS convention and embedding × distance;
:func:`survival` the practical form (does the true best quarter survive a half-removal?);
:func:`seed_noise` the training noise measured by the atlas's seed replicates; and
:func:`paired_replays` the paired difference of two rankings over replayed searches (Table 2),
:func:`best_combination` and :func:`optimal_only_from` the claims of Tables B2 and 4.
"""
from __future__ import annotations

import itertools
import math

import numpy as np
import pandas as pd
from scipy.stats import rankdata

from lshkit import embedding as emb
from lshkit.atlas import Atlas
from lshkit.checks import check_choice, check_int, check_number
from lshkit.sweep import summarise

__all__ = ["early_signals", "rank_correlation", "paired_difference", "predictive_power", "survival", "seed_noise",
           "paired_replays", "best_combination", "optimal_only_from", "interval_verdict", "overall_verdict",
           "time_to_target_summary", "trajectories", "SIGNALS"]

#: The two early signals the paper sets against each other, in the order tables show them.
SIGNALS = ("ls_distance", "valid_loss")


def early_signals(atlas: Atlas, epochs=range(6), *, convention: str = "paper", embedding: str = "pca",
                  distance: str = "l2", fit: str = "candidate", reference: str = "same_epoch",
                  seed: int | None = None) -> pd.DataFrame:
    """One row per (pruned candidate, epoch E): ``ls_distance`` (the candidate's LS history from
    epoch 0 to E embedded with the dense model's LS read by ``reference``, as a search ranks it:
    its LS at each epoch up to E, or its final LS; :mod:`lshkit.embedding`), measured by
    ``distance``; ``ls_distance_<d>`` for every distance d of the same embedding), ``valid_loss``
    at E, and the candidate's ``final_valid_ppl`` and ``final_test_ppl``. Candidates of training
    seed ``seed`` (default the atlas's main seed); the dense model of the same seed is the reference."""
    check_choice("convention", convention, ("paper", "full"))
    check_choice("embedding", embedding, emb.EMBEDDINGS)
    check_choice("fit", fit, emb.FITS)
    check_choice("distance", distance, emb.DISTANCES)
    check_choice("reference", reference, emb.REFERENCES)
    seed = atlas.spec.seed if seed is None else seed
    epochs = list(epochs)
    for e in epochs:
        check_int("epoch", e, low=0)
    dense = atlas.ls(atlas.record(None, seed)["name"], convention).astype(np.float64)
    rows = []
    for name, record in atlas.records.items():
        if record["params"] is None or record["seed"] != seed or record["status"] != "ok":
            continue
        history = atlas.ls(name, convention).astype(np.float64)
        last = record["epochs"][-1]
        for e in epochs:
            ref = dense[: e + 1] if reference == "same_epoch" else dense[-1]
            space = emb.ls_space(ref, {name: history[: e + 1]}, embedding=embedding, fit=fit)
            d = {f"ls_distance_{k}": space.distances(k)[name] for k in emb.DISTANCES}
            rows.append({"name": name, **record["params"], "epoch": e, "ls_distance": d[f"ls_distance_{distance}"], **d,
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


def predictive_power(atlas: Atlas, epochs=range(6), *, conventions=("paper", "full"), embeddings=emb.EMBEDDINGS,
                     distances=emb.DISTANCES, references=emb.REFERENCES, fit: str = "candidate",
                     n_boot: int = 2000, seed: int = 0) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Fig. 1's claim for every reading of the reference × LS convention × embedding × distance:
    ``(correlations, differences)``. ``correlations`` has one row per (reference, convention,
    embedding, distance, epoch, signal) with Spearman's ρ against the final validation perplexity
    and its bootstrap 95% interval (the validation loss does not depend on the LS settings, so its
    rows repeat); ``differences`` one row per (reference, convention, embedding, distance, epoch)
    with ρ(LS distance) − ρ(validation loss) and its paired interval. Both resample the same
    candidates."""
    corr, diff = [], []
    for reference, convention, embedding in itertools.product(references, conventions, embeddings):
        signals = early_signals(atlas, epochs, convention=convention, embedding=embedding, fit=fit,
                                reference=reference)
        for distance in distances:
            frame = signals.assign(ls_distance=signals[f"ls_distance_{distance}"])
            keys = {"reference": reference, "convention": convention, "embedding": embedding, "distance": distance}
            for signal in SIGNALS:
                corr.append(rank_correlation(frame, signal, n_boot=n_boot, seed=seed).assign(**keys))
            diff.append(paired_difference(frame, n_boot=n_boot, seed=seed).assign(**keys))
    order = ["reference", "convention", "embedding", "distance", "epoch"]
    return (pd.concat(corr, ignore_index=True)[order + ["signal", "candidates", "rho", "lo", "hi"]],
            pd.concat(diff, ignore_index=True)[order + ["candidates", "difference", "lo", "hi"]])


def survival(frame: pd.DataFrame, signal: str, *, best: float = 0.25, keep: float = 0.5,
             target: str = "final_valid_ppl") -> pd.DataFrame:
    """The practical form of the claim, per epoch: of the candidates whose ``target`` is in the
    best ``best`` fraction, the share that a removal keeping the ``keep`` fraction with the lowest
    ``signal`` would keep (a removal round of Algorithm 1 with half the pool removed); by chance
    alone the share is ``keep``."""
    check_number("best", best, low=0, low_open=True, high=1)
    check_number("keep", keep, low=0, low_open=True, high=1)
    rows = []
    for epoch, group in frame.groupby("epoch"):
        n = len(group)
        k = max(1, round(keep * n))
        values = group[signal].to_numpy()
        top = group[target].rank(method="first").to_numpy() <= max(1, round(best * n))
        # Ties are broken at random: a candidate tied with others across the cut is kept with the
        # probability of landing among the first k (a constant signal keeps the best by chance).
        below = (values[None, :] < values[:, None]).sum(axis=1)
        tied = (values[None, :] == values[:, None]).sum(axis=1)
        kept = np.clip((k - below) / tied, 0.0, 1.0)
        rows.append({"epoch": epoch, "signal": signal, "candidates": n, "best": int(top.sum()),
                     "survivors": float(kept[top].sum()), "fraction": float(kept[top].mean())})
    return pd.DataFrame(rows)


def seed_noise(atlas: Atlas) -> pd.DataFrame:
    """The noise floor from the atlas's seed replicates: for each replicated configuration (and
    the dense model), the final validation and test perplexity over its training seeds (mean,
    standard deviation, count), beside the standard deviation across the main seed's grid
    candidates (``between candidates``), which the signals must resolve."""
    frame = atlas.candidates()
    frame = frame[frame.status == "ok"]
    rows = []
    for configuration, group in frame.groupby("configuration"):
        if len(group) < 2:
            continue
        rows.append({"configuration": configuration, "seeds": len(group),
                     "valid_ppl_mean": group.valid_ppl.mean(), "valid_ppl_sd": group.valid_ppl.std(ddof=1),
                     "test_ppl_mean": group.test_ppl.mean(), "test_ppl_sd": group.test_ppl.std(ddof=1)})
    grid = frame[(frame.seed == atlas.spec.seed) & ~frame.dense]
    rows.append({"configuration": "between candidates", "seeds": 1, "valid_ppl_mean": grid.valid_ppl.mean(),
                 "valid_ppl_sd": grid.valid_ppl.std(ddof=1), "test_ppl_mean": grid.test_ppl.mean(),
                 "test_ppl_sd": grid.test_ppl.std(ddof=1)})
    return pd.DataFrame(rows)


def paired_replays(frame: pd.DataFrame, *, a: str = "ls", b: str = "loss", column: str = "ranking",
                   by=("sampler", "budget"), value: str = "test_ppl") -> pd.DataFrame:
    """Per group of ``by``: the mean of ``value`` when ``column`` is ``a`` minus when it is ``b``
    (by default LS ranking minus loss ranking, Table 2), paired by seed (the same seed gives both
    searches the same initial pool), with its 95% Student-t interval over the pairs
    (:func:`lshkit.sweep.summarise`), how many pairs each side won, and the verdict on "``a``
    selects better models" (a difference below 0, :func:`interval_verdict`)."""
    by = list(by)
    wide = frame.pivot_table(index=by + ["seed"], columns=column, values=value).reset_index()
    if a not in wide or b not in wide:
        raise ValueError(f"frame needs searches with {column} {a!r} and {b!r}")
    wide["difference"] = wide[a] - wide[b]
    out = summarise(wide, by, value="difference").rename(columns={"n": "pairs", "mean": "difference"})
    # One pair has no interval (summarise's half-width 0 means "not measured"): no verdict either.
    half = out.ci95.where(out.pairs > 1)
    out["lo"], out["hi"] = out.difference - half, out.difference + half
    out["verdict"] = [interval_verdict(lo, hi, better="below") for lo, hi in zip(out.lo, out.hi)]
    wins = wide.groupby(by, sort=False)["difference"].agg(
        **{f"{a}_better": lambda d: int((d < 0).sum()), f"{b}_better": lambda d: int((d > 0).sum())}).reset_index()
    return out.drop(columns=["std", "ci95"]).merge(wins, on=by)


def best_combination(frame: pd.DataFrame, best=("pca", "l2"), *, columns=("embedding", "distance"),
                     by=("embedding_fit",), value: str = "test_ppl") -> tuple[pd.DataFrame, str]:
    """Table B2's claim that one combination of ``columns`` (PCA with L2) is the best: per other
    combination present, :func:`paired_replays` of ``best`` minus it, and the claim's state: it
    holds when ``best`` is better than every other, judged by the intervals (:func:`overall_verdict`)."""
    combination = frame[list(columns)].astype(str).agg("/".join, axis=1)
    label = "/".join(best)
    others = [c for c in dict.fromkeys(combination) if c != label]
    if label not in set(combination) or not others:
        raise ValueError(f"best={best!r} and at least one other combination of {list(columns)} must be in the frame; "
                         f"it has {sorted(set(combination))}")
    rows = [paired_replays(frame.assign(combination=combination), a=label, b=other, column="combination", by=by,
                           value=value).rename(columns={f"{label}_better": "best_better", f"{other}_better": "other_better"})
            .assign(other=other) for other in others]
    table = pd.concat(rows, ignore_index=True)
    return table, overall_verdict(table.verdict)


def optimal_only_from(searches: pd.DataFrame, first: int = 3) -> tuple[pd.DataFrame, str]:
    """Table 4's claim that the optimal configuration is selected only for E ≥ ``first``: per
    schedule E (one search each, columns ``E`` and ``optimal_selected``), whether it selected the
    optimum and whether the claim says it should; the claim holds when every E agrees. Each E is
    one deterministic search on the atlas, so there is no interval here: a single disagreement
    decides."""
    table = searches[["E", "optimal_selected"]].astype({"E": int, "optimal_selected": bool}).sort_values("E")
    table["claimed"] = table.E >= first
    return table.reset_index(drop=True), "holds" if (table.optimal_selected == table.claimed).all() else "does not hold"


def interval_verdict(lo: float, hi: float, *, better: str = "above") -> str:
    """A claim that a quantity is above 0 (``better="above"``) or below 0 (``"below"``), judged
    by its 95% interval: "holds" when the interval lies wholly on the claimed side, "does not
    hold" when wholly on the other, else "is inconclusive"."""
    check_choice("better", better, ("above", "below"))
    if not (math.isfinite(lo) and math.isfinite(hi)):
        return "is inconclusive"
    if better == "below":
        lo, hi = -hi, -lo
    return "holds" if lo > 0 else "does not hold" if hi < 0 else "is inconclusive"


def overall_verdict(verdicts) -> str:
    """A claim made for every cell (e.g. every optimiser and budget of Table 2) from the cells'
    :func:`interval_verdict`: it holds when it holds in every cell, does not hold when it fails
    in any, and is otherwise inconclusive."""
    verdicts = list(verdicts)
    if not verdicts:
        raise ValueError("overall_verdict needs at least one cell's verdict")
    if all(v == "holds" for v in verdicts):
        return "holds"
    return "does not hold" if "does not hold" in verdicts else "is inconclusive"


def time_to_target_summary(frame: pd.DataFrame, *, baseline: str = "full training", n_boot: int = 2000,
                           seed: int = 0) -> pd.DataFrame:
    """Fig. 3 right over repeats (a frame of :func:`lshkit.replay.replay_time_to_target`): per
    method, the share of repeats that reached the target, the median seconds to it with the
    2.5 and 97.5 percentiles over repeats (a repeat that never got there counts as infinitely
    long), and the speed-up ``median(baseline) / median(method)`` with a bootstrap 95% interval
    over repeats (resampled in pairs: the same seeds for both)."""
    check_int("n_boot", n_boot, low=10)
    wide = frame.pivot(index="repeat", columns="method", values="seconds").fillna(np.inf)
    if baseline not in wide:
        raise ValueError(f"baseline={baseline!r} is not a method of the frame; its methods are {list(wide.columns)}")
    rng = np.random.default_rng(seed)
    index = rng.integers(0, len(wide), size=(n_boot, len(wide)))
    base = wide[baseline].to_numpy()
    rows = []
    for method in wide.columns:
        t = wide[method].to_numpy()
        with np.errstate(invalid="ignore", divide="ignore"):
            boot = np.median(base[index], axis=1) / np.median(t[index], axis=1)
            speedup = np.median(base) / np.median(t)
        lo, hi = np.quantile(boot, [0.025, 0.975])
        # Percentiles of the repeats themselves (no interpolation, which is undefined between two
        # repeats that never reached the target).
        p_lo, p_hi = np.quantile(t, [0.025, 0.975], method="inverted_cdf")
        rows.append({"method": method, "repeats": len(t), "reached": float(np.isfinite(t).mean()),
                     "median_seconds": float(np.median(t)), "p2.5_seconds": float(p_lo),
                     "p97.5_seconds": float(p_hi), "speedup": float(speedup),
                     "speedup_lo": float(lo), "speedup_hi": float(hi)})
    return pd.DataFrame(rows)


def trajectories(atlas: Atlas, *, convention: str = "paper", seed: int | None = None) -> pd.DataFrame:
    """Fig. 1 over every atlas candidate: one row per (candidate, epoch) of training seed ``seed``
    (default the atlas's main seed), the dense model included, with the LS embedded in one 2-D PCA
    space fitted on every candidate and epoch (``pc1``, ``pc2``), the same-epoch L2 between the raw
    spectra of the candidate and the dense model (what the authors' code measures), and the
    candidate's final validation perplexity."""
    check_choice("convention", convention, ("paper", "full"))
    seed = atlas.spec.seed if seed is None else seed
    names = [n for n, r in atlas.records.items() if r["seed"] == seed and r["status"] == "ok"]
    dense = atlas.record(None, seed)["name"]
    histories = {n: atlas.ls(n, convention).astype(np.float64) for n in names}
    points = emb.LSEmbedding("pca").fit(np.vstack(list(histories.values())))
    rows = []
    for name, history in histories.items():
        xy = points.transform(history)
        record = atlas.records[name]
        same = np.linalg.norm(history - histories[dense][: len(history)], axis=1)
        for e, (x, y) in enumerate(xy):
            rows.append({"name": name, "dense": record["params"] is None, "epoch": e, "pc1": x, "pc2": y,
                         "distance_same_epoch": same[e], "valid_ppl": record["epochs"][e]["valid_ppl"],
                         "final_valid_ppl": record["epochs"][-1]["valid_ppl"]})
    return pd.DataFrame(rows)
