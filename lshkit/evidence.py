"""The paper's central claim measured on the atlas: after E epochs, does a candidate's distance
to the dense model in the LS space predict its final perplexity better than its validation loss?
(Fig. 1, §3.2; Table 2 rests on it.)

:func:`early_signals` reads both signals for every pruned candidate of an atlas at each early
epoch; :func:`lshkit.stats.rank_correlation` gives Spearman's ρ between a signal and the final perplexity with
a bootstrap 95% interval over candidates; :func:`lshkit.stats.paired_difference` the difference of two signals'
ρ with a paired bootstrap interval (the same resampled candidates for both);
:func:`predictive_power` both for every LS convention and embedding × distance;
:func:`survival` the practical form (does the true best quarter survive a half-removal?);
:func:`seed_noise` the training noise measured by the atlas's seed replicates; and
:func:`paired_replays` the paired difference of two rankings over replayed searches (Table 2),
:func:`best_combination` and :func:`optimal_only_from` the claims of Tables B2 and 4; and for
setting the two readings of the LS reference side by side, :func:`with_arms` (which reading, or
which other ranking, each search is), :func:`arm_table` (one column per arm) and
:func:`paired_by_reading` (LS − loss once per reading). The early signals under each reading:
:func:`reference_signals`, :func:`by_reference`, :func:`survival_by_reference` and
:func:`ordering_by_reference`; :func:`distinct_values` shows the epochs where a signal only tells
the sparse inits apart; :func:`reference_drift`, :func:`floor_exponents`, :func:`nearest_half`
and :func:`reference_drift_figure` diagnose why one reading ranks and the other does not.
"""
from __future__ import annotations

import itertools
import math

import numpy as np
import pandas as pd

from lshkit import embedding as emb
from lshkit.atlas import Atlas
from lshkit.checks import check_choice, check_int, check_number
from lshkit.stats import interval_verdict, overall_verdict, paired_difference, rank_correlation, summarise

__all__ = ["early_signals", "predictive_power", "survival", "seed_noise",
           "paired_replays", "best_combination", "optimal_only_from",
           "time_to_target_summary", "trajectories", "with_arms", "arm_table", "paired_by_reading", "SIGNALS",
           "READINGS", "READING_NOTES", "TRAJECTORY_DISTANCES", "LS_FLOOR", "reference_signals", "by_reference",
           "survival_by_reference", "distinct_values", "ordering_by_reference", "reference_drift", "floor_exponents",
           "nearest_half", "reference_drift_figure", "time_to_target_by_reference"]

#: The two early signals the paper sets against each other, in the order tables show them.
SIGNALS = ("ls_distance", "valid_loss")
#: How tables name LS ranking under each reading of its reference (:data:`lshkit.embedding.REFERENCES`,
#: in that order: the dense LS at the candidate's epoch, as the authors' code, then its final LS).
READINGS = {"same_epoch": "LS (same epoch)", "final": "LS (final)"}
#: What each reading is, for the sentences that state a verdict per reading.
READING_NOTES = {"same_epoch": "the dense LS at the candidate's epoch (the authors' code, which made the paper's numbers)",
                 "final": "the dense model's final LS (the paper's text read literally)"}


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
        kept = _kept(values, k)  # ties broken at random: a constant signal keeps the best by chance
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
    (:func:`lshkit.stats.summarise`), how many pairs each side won, and the verdict on "``a``
    selects better models" (a difference below 0, :func:`lshkit.stats.interval_verdict`)."""
    by = list(by)
    wide = frame.pivot_table(index=by + ["seed"], columns=column, values=value).reset_index()
    if a not in wide or b not in wide:
        raise ValueError(f"frame needs searches with {column} {a!r} and {b!r}")
    wide["difference"] = wide[a] - wide[b]
    out = summarise(wide, by, value="difference").rename(columns={"n": "pairs", "mean": "difference"})
    out["lo"], out["hi"] = out.difference - out.ci95, out.difference + out.ci95
    out["verdict"] = [interval_verdict(lo, hi, better="below") for lo, hi in zip(out.lo, out.hi)]
    wins = wide.groupby(by, sort=False)["difference"].agg(
        **{f"{a}_better": lambda d: int((d < 0).sum()), f"{b}_better": lambda d: int((d > 0).sum())}).reset_index()
    return out.drop(columns=["std", "ci95"]).merge(wins, on=by)


def with_arms(frame: pd.DataFrame, *, column: str = "ranking", ls: str = "ls") -> pd.DataFrame:
    """``frame`` (searches, one per row) with a column ``arm``: :data:`READINGS` of its ``reference``
    for a search ranked by ``ls`` ("LS (same epoch)", "LS (final)"), its ``column`` value otherwise
    ("loss", "gap": rankings that read no LS have no reading). A frame without a ``reference``
    column holds searches saved before the reading was an option, which all read the dense model's
    final LS (the replays committed then are named ``reference=final``): its LS searches are
    "LS (final)". An LS search with another or no reading is an error."""
    if column not in frame:
        raise ValueError(f"frame has no column {column!r}; its columns are {list(frame.columns)}")
    ranking = frame[column].astype(str)
    reference = frame["reference"] if "reference" in frame else pd.Series("final", index=frame.index)
    is_ls = ranking == ls
    unread = sorted(set(reference[is_ls & ~reference.isin(list(READINGS))].astype(str)))
    if unread:
        raise ValueError(f"LS-ranked searches with reference {unread}; valid: {list(READINGS)}")
    return frame.assign(arm=ranking.where(~is_ls, reference.map(READINGS)))


def arm_table(frame: pd.DataFrame, by, *, arms, value: str = "test_ppl", fmt: str = "{:.1f}") -> pd.DataFrame:
    """The arms of a comparison side by side: one row per combination of the values of ``by``
    present in ``frame`` (in order of appearance), one column per arm of ``arms`` (column ``arm``,
    :func:`with_arms`), each cell the mean of ``value`` with its 95% Student-t interval and n
    (:func:`lshkit.stats.summarise`; a single search shows its value and n=1), and "missing" where the arm has no search in that row (a cell not
    run), so that a table over several runs shows what is absent instead of failing."""
    from lshkit.report import with_interval

    by, arms = [by] if isinstance(by, str) else list(by), list(arms)
    if not arms:
        raise ValueError("arms must name at least one arm")
    table = summarise(frame, by + ["arm"], value)
    table["cell"] = (with_interval(table["mean"], table["mean"] - table["ci95"], table["mean"] + table["ci95"], fmt)
                     + " n=" + table["n"].astype(str)).where(table["n"] > 0, "missing")
    rows = (pd.MultiIndex.from_product([pd.unique(frame[c]) for c in by], names=by) if len(by) > 1
            else pd.Index(pd.unique(frame[by[0]]), name=by[0]))
    return (table.pivot(index=by, columns="arm", values="cell").reindex(index=rows, columns=arms)
            .astype(object).fillna("missing").rename_axis(columns=None))


def paired_by_reading(frame: pd.DataFrame, *, baseline: str = "loss", by=("sampler", "budget"),
                      value: str = "test_ppl") -> pd.DataFrame:
    """:func:`paired_replays` of LS ranking minus ``baseline`` ranking once per reading of the LS
    reference in ``frame`` (column ``arm``, :func:`with_arms`): each reading's LS searches against
    the same ``baseline`` searches, paired by seed. One row per reading and group of ``by``, with
    the reading first (column ``reference``, in :data:`READINGS` order); a reading not run at all has
    no rows, and a group where the baseline ran but the reading did not has the verdict "not run"
    (0 pairs), which keeps :func:`lshkit.stats.overall_verdict` from saying the claim holds in every cell.
    Columns as :func:`paired_replays` (``ls_better``, ``<baseline>_better``)."""
    by = list(by)
    base = frame[frame.arm == baseline]
    if base.empty:
        raise ValueError(f"frame has no search of arm {baseline!r}; its arms are {sorted(set(frame.arm))}")
    tables = []
    for reference, label in READINGS.items():
        ls = frame[frame.arm == label]
        if ls.empty:
            continue
        table = paired_replays(pd.concat([ls.assign(arm="ls"), base]), a="ls", b=baseline, column="arm", by=by,
                               value=value)
        ran = table[by].apply(tuple, axis=1).isin(set(ls[by].apply(tuple, axis=1)))
        tables.append(table.assign(reference=reference, verdict=table.verdict.where(ran, "not run")))
    if not tables:
        raise ValueError(f"frame has no LS-ranked search; its arms are {sorted(set(frame.arm))}")
    table = pd.concat(tables, ignore_index=True)
    return table[["reference"] + [c for c in table.columns if c != "reference"]]


def best_combination(frame: pd.DataFrame, best=("pca", "l2"), *, columns=("embedding", "distance"),
                     by=("embedding_fit",), value: str = "test_ppl") -> tuple[pd.DataFrame, str]:
    """Table B2's claim that one combination of ``columns`` (PCA with L2) is the best: per other
    combination present, :func:`paired_replays` of ``best`` minus it, and the claim's state: it
    holds when ``best`` is better than every other, judged by the intervals (:func:`lshkit.stats.overall_verdict`)."""
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


def time_to_target_summary(frame: pd.DataFrame, *, baseline: str = "full training", n_boot: int = 2000,
                           seed: int = 0) -> pd.DataFrame:
    """Fig. 3 right over repeats (a frame of :func:`lshkit.atlas.replay.replay_time_to_target`): per
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


def time_to_target_by_reference(frame: pd.DataFrame, *, ls_method: str = "LSH (ls ranking)",
                                baseline: str = "full training", holds_above: float | None = None,
                                n_boot: int = 2000, seed: int = 0) -> pd.DataFrame:
    """:func:`time_to_target_summary` of replays made under several readings of the LS reference
    (a frame with a ``reference`` column, :func:`lshkit.baselines.atlas_time_to_target`):
    ``ls_method`` once per reading, its ``reference`` named; the other methods, which read no LS,
    once, from the first reading's replays (``reference`` empty). With ``holds_above``, a column
    ``verdict`` on "the speed-up is above ``holds_above``", judged by its interval
    (:func:`lshkit.stats.interval_verdict`)."""
    readings = list(pd.unique(frame.reference))
    parts = []
    for k, reference in enumerate(readings):
        summary = time_to_target_summary(frame[frame.reference == reference], baseline=baseline, n_boot=n_boot,
                                         seed=seed)
        mine = summary.method == ls_method
        parts.append(summary[mine].assign(reference=reference))
        if k == 0:
            shared = summary[~mine].assign(reference=None)
    out = pd.concat(parts + [shared], ignore_index=True)
    if holds_above is not None:
        out["verdict"] = [interval_verdict(lo, hi, threshold=holds_above)
                          for lo, hi in zip(out.speedup_lo, out.speedup_hi)]
    return out[["reference"] + [c for c in out.columns if c != "reference"]]


def trajectories(atlas: Atlas, *, convention: str = "paper", seed: int | None = None) -> pd.DataFrame:
    """Fig. 1 over every atlas candidate: one row per (candidate, epoch) of training seed ``seed``
    (default the atlas's main seed), the dense model included, with the LS embedded in one 2-D PCA
    space fitted on every candidate and epoch (``pc1``, ``pc2``), the L2 between the raw spectra of
    the candidate and the dense model under each reading of the reference
    (:data:`TRAJECTORY_DISTANCES`): ``distance_same_epoch`` (the dense LS at the same epoch, what the
    authors' code measures) and ``distance_final`` (the dense model's final LS; the dense model's own
    row is how far its LS still is from where it ends), and the candidate's configuration (empty for
    the dense model) and final validation perplexity."""
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
        final = np.linalg.norm(history - histories[dense][-1], axis=1)
        for e, (x, y) in enumerate(xy):
            rows.append({"name": name, "dense": record["params"] is None, **(record["params"] or {}), "epoch": e,
                         "pc1": x, "pc2": y, "distance_same_epoch": same[e], "distance_final": final[e],
                         "valid_ppl": record["epochs"][e]["valid_ppl"],
                         "final_valid_ppl": record["epochs"][-1]["valid_ppl"]})
    return pd.DataFrame(rows)


# ------------------------------------------------------------------ the two readings of the LS reference

#: The columns of :func:`trajectories` holding each reading's raw L2 to the dense LS.
TRAJECTORY_DISTANCES = {"same_epoch": "distance_same_epoch", "final": "distance_final"}
#: log2 of the floor every ``|r_ii|`` is clamped to before the log (:data:`lshkit.ls.R_FLOOR`,
#: 1e-30): an exponent there is a direction annihilated at every step (a fully pruned row's), not a
#: blow-up.
LS_FLOOR = math.log2(1e-30)
#: Each reading as figures name it (the keys of :data:`lshkit.report.PALETTE`).
_READING_NAMES = {"same_epoch": "same-epoch reference", "final": "final reference"}


def reference_signals(atlas: Atlas, epochs=range(6), *, references=emb.REFERENCES, **settings) -> pd.DataFrame:
    """:func:`early_signals` under each reading of the dense reference in ``references``, in one
    frame whose first column ``reference`` names the reading (the loss and the final perplexities,
    which read no LS, repeat under each). ``settings``: the other options of :func:`early_signals`."""
    frame = pd.concat([early_signals(atlas, epochs, reference=r, **settings).assign(reference=r)
                       for r in emb.check_references(references)], ignore_index=True)
    return frame[["reference"] + [c for c in frame.columns if c != "reference"]]


def by_reference(correlations: pd.DataFrame, differences: pd.DataFrame, *, convention: str = "paper",
                 embedding: str = "pca", distance: str = "l2") -> pd.DataFrame:
    """One LS setting of :func:`predictive_power`'s frames under each of their readings: one row per
    (reference, epoch), the readings in the frames' order, with ρ of the LS distance with the final
    validation perplexity (``rho_ls``, ``rho_ls_lo``, ``rho_ls_hi``), ρ of the validation loss
    (``rho_loss``, ...), ρ(LS) − ρ(loss) with its paired interval (``difference``, ``lo``, ``hi``)
    and the verdicts of :func:`lshkit.stats.interval_verdict` on "the LS distance predicts the final validation
    perplexity" (``ls_predicts``: ρ above 0) and "it predicts it better than the loss"
    (``ls_beats_loss``)."""
    keys = {"convention": convention, "embedding": embedding, "distance": distance}
    pick = lambda f: f.loc[(f[list(keys)] == pd.Series(keys)).all(axis=1)]  # noqa: E731
    corr, diff = pick(correlations), pick(differences)
    if diff.empty:
        raise ValueError(f"the frames hold no rows for {keys}")
    order = list(pd.unique(diff.reference))
    c = corr.set_index(["reference", "epoch", "signal"])[["rho", "lo", "hi"]].unstack("signal")
    out = pd.DataFrame({f"rho_{short}{suffix}": c[(column, signal)]
                        for signal, short in (("ls_distance", "ls"), ("valid_loss", "loss"))
                        for column, suffix in (("rho", ""), ("lo", "_lo"), ("hi", "_hi"))})
    out = diff.set_index(["reference", "epoch"])[["candidates", "difference", "lo", "hi"]].join(out)
    out["ls_predicts"] = [interval_verdict(lo, hi) for lo, hi in zip(out.rho_ls_lo, out.rho_ls_hi)]
    out["ls_beats_loss"] = [interval_verdict(lo, hi) for lo, hi in zip(out.lo, out.hi)]
    out = out.reset_index()
    out["reference"] = pd.Categorical(out.reference, order, ordered=True)
    out = out.sort_values(["reference", "epoch"], kind="stable")
    return out.assign(reference=out.reference.astype(str)).reset_index(drop=True)


def _kept(values: np.ndarray, k: int) -> np.ndarray:
    """The probability that each of ``values`` is among the ``k`` lowest, ties broken at random (a
    candidate tied with others across the cut is kept with the probability of landing among the
    first k; a constant signal keeps every candidate by chance)."""
    below = (values[None, :] < values[:, None]).sum(axis=1)
    tied = (values[None, :] == values[:, None]).sum(axis=1)
    return np.clip((k - below) / tied, 0.0, 1.0)


def survival_by_reference(frame: pd.DataFrame, *, best: float = 0.25, keep: float = 0.5) -> pd.DataFrame:
    """:func:`survival` of a :func:`reference_signals` frame's signals: one row per (arm, epoch), the
    arm being the LS distance under each reading (:data:`READINGS`, in the frame's order) or the
    validation loss ("loss", once: it reads no LS), with the ``reference`` column (empty for the loss)."""
    readings = list(pd.unique(frame.reference))
    parts = [survival(frame[frame.reference == r], "ls_distance", best=best, keep=keep)
             .assign(arm=READINGS[r], reference=r) for r in readings]
    parts.append(survival(frame[frame.reference == readings[0]], "valid_loss", best=best, keep=keep)
                 .assign(arm="loss", reference=None))
    out = pd.concat(parts, ignore_index=True)
    return out[["arm", "reference"] + [c for c in out.columns if c not in ("arm", "reference")]]


def distinct_values(frame: pd.DataFrame, signals=SIGNALS, *, by: str = "sparse_init") -> pd.DataFrame:
    """Where a signal ranks nothing but ``by``: per epoch (and reading, where ``frame`` has a
    ``reference`` column) and signal, the number of distinct values the signal takes over the
    candidates (``distinct``), the number of values of ``by`` (``groups``) and whether ``by`` alone
    sets the signal (``only_by``: a single value within each of its groups). Where ``only_by``
    holds, a rank correlation of the signal tells the groups of ``by`` apart and ranks no candidate
    within them."""
    if by not in frame.columns:
        raise ValueError(f"by={by!r} is not a column of the frame; choose one of {sorted(frame.columns)}")
    keys = (["reference"] if "reference" in frame.columns else []) + ["epoch"]
    rows = []
    for key, group in frame.groupby(keys, sort=False):
        key = dict(zip(keys, key if isinstance(key, tuple) else (key,)))
        for signal in signals:
            rows.append({**key, "signal": signal, "candidates": len(group), "distinct": group[signal].nunique(),
                         "groups": group[by].nunique(),
                         "only_by": bool((group.groupby(by)[signal].nunique() <= 1).all())})
    return pd.DataFrame(rows)


def ordering_by_reference(paths: pd.DataFrame, epochs=range(1, 6), references=emb.REFERENCES, *,
                          n_boot: int = 2000, seed: int = 0) -> pd.DataFrame:
    """Fig. 1's early-ordering statistic under each reading, over a :func:`trajectories` frame:
    Spearman's ρ of each pruned candidate's raw L2 to the dense LS (:data:`TRAJECTORY_DISTANCES`)
    at epoch E with its final validation perplexity, with the bootstrap 95% interval of
    :func:`lshkit.stats.rank_correlation`; one row per (reference, epoch)."""
    epochs = list(epochs)
    pruned = paths[~paths.dense & paths.epoch.isin(epochs)]
    frames = [rank_correlation(pruned, TRAJECTORY_DISTANCES[r], target="final_valid_ppl", n_boot=n_boot, seed=seed)
              .assign(reference=r) for r in emb.check_references(references)]
    out = pd.concat(frames, ignore_index=True)
    return out[["reference"] + [c for c in out.columns if c != "reference"]]


def _pruned_records(atlas: Atlas, seed: int):
    return {name: r for name, r in atlas.records.items()
            if r["params"] is not None and r["seed"] == seed and r["status"] == "ok"}


def reference_drift(atlas: Atlas, *, convention: str = "paper", seed: int | None = None,
                    tail_from: int = 32) -> pd.DataFrame:
    """How far the reference moves under the final reading: one row per epoch e of the dense model
    of training seed ``seed`` (default the atlas's main seed), with ``dense_drift``, the L2 between
    its LS at e and its final LS (bits per step in the paper convention), and ``tail_share``, the
    share of its square in the exponents after the first ``tail_from`` (the contracting tail, in
    the order the QR gives them); beside it the pruned candidates' L2 to the dense LS of the same
    epoch, the distances the reference has to tell apart: ``candidates_median`` and its quartiles
    ``candidates_q25`` and ``candidates_q75``."""
    check_choice("convention", convention, ("paper", "full"))
    check_int("tail_from", tail_from, low=0)
    seed = atlas.spec.seed if seed is None else seed
    dense = atlas.ls(atlas.record(None, seed)["name"], convention).astype(np.float64)
    if tail_from >= dense.shape[1]:
        raise ValueError(f"tail_from={tail_from} leaves no exponent of the {dense.shape[1]} in the tail")
    gap = dense - dense[-1]
    total = (gap ** 2).sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        tail = np.where(total > 0, (gap[:, tail_from:] ** 2).sum(axis=1) / total, np.nan)
    same = np.full((len(dense), 0), np.nan)
    histories = [atlas.ls(name, convention).astype(np.float64) for name in _pruned_records(atlas, seed)]
    if histories:
        same = np.stack([np.linalg.norm(h[: len(dense)] - dense[: len(h)], axis=1) for h in histories], axis=1)
    q25, median, q75 = (np.quantile(same, q, axis=1) if same.size else np.full(len(dense), np.nan)
                        for q in (0.25, 0.5, 0.75))
    return pd.DataFrame({"epoch": np.arange(len(dense)), "dense_drift": np.sqrt(total), "tail_share": tail,
                         "candidates_median": median, "candidates_q25": q25, "candidates_q75": q75})


def floor_exponents(atlas: Atlas, *, epoch: int, convention: str = "paper", floor: float = -99.0,
                    by: str = "death_rate", seed: int | None = None) -> pd.DataFrame:
    """Exponents at the floor of the LS (at or below ``floor``, log2; the floor itself is
    :data:`LS_FLOOR`, −99.66: a direction annihilated at every step, such as a fully pruned row's,
    not a blow-up), per value of the configuration field ``by`` over the pruned candidates of
    training seed ``seed``: ``candidates``; at ``epoch``, how many of them have any
    (``candidates_at_epoch``) and how many such exponents they hold (``exponents_at_epoch``); and
    over every epoch of their runs, ``candidates_ever`` and ``exponents_ever``."""
    check_choice("convention", convention, ("paper", "full"))
    check_int("epoch", epoch, low=0)
    seed = atlas.spec.seed if seed is None else seed
    rows = []
    for name, record in _pruned_records(atlas, seed).items():
        if by not in record["params"]:
            raise ValueError(f"by={by!r} is not a configuration field; choose one of {sorted(record['params'])}")
        history = atlas.ls(name, convention).astype(np.float64)
        if epoch >= len(history):
            raise ValueError(f"epoch={epoch} is past candidate {name!r}'s last epoch ({len(history) - 1})")
        at, ever = int((history[epoch] <= floor).sum()), int((history <= floor).sum())
        rows.append({by: record["params"][by], "at": at, "ever": ever})
    frame = pd.DataFrame(rows)
    grouped = frame.groupby(by, sort=True)
    having = lambda counts: int((counts > 0).sum())  # noqa: E731
    return pd.DataFrame({"candidates": grouped.size(), "candidates_at_epoch": grouped["at"].agg(having),
                         "exponents_at_epoch": grouped["at"].sum(),
                         "candidates_ever": grouped["ever"].agg(having),
                         "exponents_ever": grouped["ever"].sum()}).reset_index()


def nearest_half(frame: pd.DataFrame, *, epoch: int, by: str = "death_rate", signal: str = "ls_distance",
                 keep: float = 0.5) -> pd.DataFrame:
    """Whom a removal round keeps under each reading: at ``epoch`` of a :func:`reference_signals`
    frame (or an :func:`early_signals` one), per reading and value of ``by``, the share of the
    group's candidates among the ``keep`` fraction with the lowest ``signal`` (``kept``; ties shared
    out as :func:`survival` does), beside the group's median final validation and test perplexity."""
    check_number("keep", keep, low=0, low_open=True, high=1)
    at = frame[frame.epoch == epoch]
    if at.empty:
        raise ValueError(f"epoch={epoch!r} is not in the frame; it has {sorted(int(e) for e in frame.epoch.unique())}")
    if by not in at.columns:
        raise ValueError(f"by={by!r} is not a column of the frame; choose one of {sorted(at.columns)}")
    parts = at.groupby("reference", sort=False) if "reference" in at.columns else [(None, at)]
    rows = []
    for reference, part in parts:
        kept = part.assign(kept=_kept(part[signal].to_numpy(), max(1, round(keep * len(part)))))
        for value, group in kept.groupby(by, sort=True):
            rows.append({"reference": reference, by: value, "candidates": len(group), "kept": group.kept.mean(),
                         "median_final_valid_ppl": group.final_valid_ppl.median(),
                         "median_final_test_ppl": group.final_test_ppl.median()})
    out = pd.DataFrame(rows)
    return out if "reference" in at.columns else out.drop(columns="reference")


def reference_drift_figure(drift: pd.DataFrame, signals: pd.DataFrame, *, epoch: int, palette=None,
                           distance_label: str = "LS distance"):
    """The diagnosis of the two readings as one figure (returned, not saved). Left: the dense LS's
    L2 from its own final LS over the epochs (:func:`reference_drift`: how far the final reading's
    reference is from the one the same-epoch reading uses), beside the pruned candidates'
    same-epoch distances (median and quartiles). Then one panel per reading in ``signals``
    (:func:`reference_signals`): each candidate's LS distance at ``epoch`` against its final
    validation perplexity, coloured by death rate (``palette``, default
    :data:`lshkit.report.PALETTE`'s "death rate <r>" entries, seaborn's "flare" over the death rates
    it lacks), the cut of a half-removal dotted
    and Spearman's ρ in the title; ``distance_label`` names the distance on the x axis."""
    import matplotlib.pyplot as plt
    from matplotlib.ticker import LogLocator, NullFormatter, ScalarFormatter

    from lshkit.report import PALETTE, integer_axis

    palette = PALETTE if palette is None else palette
    at = signals[signals.epoch == epoch]
    if at.empty:
        raise ValueError(f"epoch={epoch!r} is not in signals; it has {sorted(int(e) for e in signals.epoch.unique())}")
    readings = list(pd.unique(at.reference))
    fig, axes = plt.subplots(1, 1 + len(readings), figsize=(5.2 * (1 + len(readings)), 4.4),
                             gridspec_kw={"width_ratios": [1.15] + [1] * len(readings)})
    for ax in axes[2:]:
        ax.sharey(axes[1])
    ax = axes[0]
    ax.plot(drift.epoch, drift.dense_drift, color=palette["dense"], lw=2,
            label="dense LS: L2 from its own final LS")
    ax.plot(drift.epoch, drift.candidates_median, color=palette["dense"], ls="--", lw=1.2,
            label="pruned candidates: L2 to the dense LS\nof the same epoch (median, quartiles)")
    ax.fill_between(drift.epoch, drift.candidates_q25, drift.candidates_q75, color=palette["dense"], alpha=0.12, lw=0)
    ax.axvline(epoch, color=palette["dense"], ls=":", lw=0.8)
    row = drift.set_index("epoch").loc[epoch]
    ax.annotate(f"E = {epoch}: drift {row.dense_drift:.1f},\ncandidates' median {row.candidates_median:.1f}",
                (epoch, row.dense_drift), xytext=(8, 6), textcoords="offset points", fontsize=9)
    ax.set(title="How far the reference drifts", xlabel="epoch", ylabel="L2 between raw spectra (bits per step)",
           ylim=(0, None))
    integer_axis(ax)
    ax.legend(fontsize=8, loc="upper right")
    rates = sorted(at.death_rate.unique())
    colours = {rate: palette.get(f"death rate {rate:g}") for rate in rates}
    if None in colours.values():  # another atlas's death rates: the same sequential palette over its own
        import seaborn as sns

        colours = dict(zip(rates, sns.color_palette("flare", len(rates)).as_hex()))
    for ax, reference in zip(axes[1:], readings):
        part = at[at.reference == reference]
        for rate in rates:
            group = part[part.death_rate == rate]
            ax.scatter(group.ls_distance, group.final_valid_ppl, s=22, color=colours[rate],
                       edgecolor="white", lw=0.4, label=f"{rate:g}")
        ax.axvline(part.ls_distance.median(), color=palette["dense"], ls=":", lw=0.8,
                   label="half-removal cut\n(keeps the left)")
        rho = part[["ls_distance", "final_valid_ppl"]].corr("spearman").iloc[0, 1]
        name = _READING_NAMES[reference]
        ax.set(xscale="log", yscale="log", xlabel=f"{distance_label} at E = {epoch} (log scale)",
               ylabel="final validation perplexity (log scale)" if ax is axes[1] else "")
        for axis, subs in ((ax.xaxis, (1, 2, 5)), (ax.yaxis, (1, 2, 3, 5))):  # plain numbers, a few of them
            axis.set_major_locator(LogLocator(subs=subs))
            axis.set_major_formatter(ScalarFormatter())
            axis.set_minor_formatter(NullFormatter())
        ax.set_title(f"{name}: ρ = {rho:+.2f}", color=palette.get(name, palette["dense"]))
    axes[-1].legend(title="death rate", fontsize=8, loc="center right")
    fig.tight_layout()
    return fig
