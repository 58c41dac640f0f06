"""The paper's central claim measured on the atlas: after E epochs, does a candidate's distance
to the dense model in the LS space predict its final perplexity better than its validation loss?
(Fig. 1, §3.2; Table 2 rests on it.)
"""
from __future__ import annotations

import itertools
import math

import numpy as np
import pandas as pd

from lshkit import embedding as emb
from lshkit.atlas import Atlas
from lshkit.checks import check_choice, check_int, check_number
from lshkit.io import run_record
from lshkit.report import save_results, with_interval
from lshkit.vocab import LS_CONVENTIONS
from lshkit.stats import interval_verdict, paired_difference, rank_correlation
from lshkit.experiments.readings import READINGS, READING_LABELS


#: The two early signals the paper sets against each other, in the order tables show them.
SIGNALS = ("ls_distance", "valid_loss")


#: log2 of the floor every ``|r_ii|`` is clamped to before the log (:data:`lshkit.ls.R_FLOOR`,
#: 1e-30): an exponent there is a direction annihilated at every step (a fully pruned row's), not a
#: blow-up.
LS_FLOOR = math.log2(1e-30)


def early_signals(atlas: Atlas, epochs=range(6), *, convention: str = "paper", embedding: str = "pca",
                  distance: str = "l2", fit: str = "candidate", reference: str = "same_epoch",
                  seed: int | None = None) -> pd.DataFrame:
    """One row per (pruned candidate, epoch E): ``ls_distance`` (the candidate's LS history from
    epoch 0 to E embedded with the dense model's LS read by ``reference``, as a search ranks it:
    its LS at each epoch up to E, or its final LS; :mod:`lshkit.embedding`), measured by
    ``distance``; ``ls_distance_<d>`` for every distance d of the same embedding), ``valid_loss``
    at E, and the candidate's ``final_valid_ppl`` and ``final_test_ppl``. Candidates of training
    seed ``seed`` (default the atlas's main seed); the dense model of the same seed is the reference."""
    check_choice("convention", convention, LS_CONVENTIONS)
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


def predictive_power(atlas: Atlas, epochs=range(6), *, conventions=LS_CONVENTIONS, embeddings=emb.EMBEDDINGS,
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
    check_choice("convention", convention, LS_CONVENTIONS)
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
    check_choice("convention", convention, LS_CONVENTIONS)
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
        name = READING_LABELS[reference]
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


#: The paper's central claim (§3.2, Fig. 1), as the verdict sentences state it.
CLAIM = "the LS distance after E epochs predicts the final validation perplexity better than the validation loss"


def run(p) -> dict:
    """The central claim on every candidate of the atlas ``p.atlas``, as a notebook's validated
    parameters ``p`` (:func:`lshkit.report.validate`) ask: the noise floor (:func:`seed_noise`),
    ρ of each signal per LS setting and reading (:func:`predictive_power`, E = 0..``p.max_epoch``),
    the headline setting (the first of ``p.conventions``, ``p.embeddings`` and ``p.distances``) per
    reading (:func:`by_reference`), where the early epochs are degenerate (:func:`distinct_values`),
    the half-removal's survivors (:func:`survival_by_reference`), the verdict at the removal epoch
    E = 3 (the paper's epochs per round) and why the readings disagree (:func:`reference_drift`,
    :func:`floor_exponents`, :func:`nearest_half`, ρ within one death rate). The parameters are
    checked before anything runs; the run is recorded in ``p.run_dir/run.json`` and its results
    saved beside it.

    Returns the texts the notebook prints (``candidates``, ``headline``, ``distinct``, ``settings``,
    ``survival``, ``claim``, ``drift``) and the figures' inputs: ``rho_lines`` (ρ per convention,
    line and epoch, with the :data:`lshkit.report.PALETTE` entry of each line), ``settings_grid``
    (ρ(LS) − ρ(loss) per setting and epoch), ``reference_drift``, ``signals``, ``removal`` and
    ``distance_label``."""
    check_choice("source", p.source, ("atlas",))
    check_int("max_epoch", p.max_epoch, low=0)
    check_int("n_boot", p.n_boot, low=10)
    for name, values, valid in (("conventions", p.conventions, LS_CONVENTIONS),
                                ("embeddings", p.embeddings, emb.EMBEDDINGS),
                                ("distances", p.distances, emb.DISTANCES)):
        if not values:
            raise ValueError(f"{name} must name at least one of {list(valid)}")
        for value in values:
            check_choice(name, value, valid)
    references = emb.check_references(p.references)
    atlas = p.atlas
    with run_record(p.run_dir, {**p.extras, "seed": p.seed, "atlas": str(atlas.root)}):
        return _run(p, atlas, references)


def _run(p, atlas: Atlas, references) -> dict:
    from lshkit.experiments.shootout import within_groups  # here: shootout builds on this module's signals

    epochs = range(p.max_epoch + 1)
    removal = min(3, p.max_epoch)  # the epochs per round of the paper's searches: where the claim is judged
    main = dict(convention=p.conventions[0], embedding=p.embeddings[0], distance=p.distances[0])
    status = atlas.candidates()
    pruned = status[~status.dense & (status.seed == atlas.spec.seed)]
    noise = seed_noise(atlas)
    correlations, differences = predictive_power(atlas, epochs, conventions=p.conventions, embeddings=p.embeddings,
                                                 distances=p.distances, references=references, n_boot=p.n_boot,
                                                 seed=p.seed)
    signals = reference_signals(atlas, epochs, references=references, **main)
    table = by_reference(correlations, differences, **main)
    distinct = distinct_values(signals, SIGNALS, by="sparse_init")
    kept = survival_by_reference(signals)
    claim, claim_text = _claim(table, differences, removal, main)
    drift = reference_drift(atlas, convention=main["convention"])
    floors = floor_exponents(atlas, epoch=removal, convention=main["convention"])
    nearest = nearest_half(signals, epoch=removal)
    within = pd.concat([within_groups(part, "death_rate", removal, ["ls_distance"], n_boot=p.n_boot, seed=p.seed)
                        .assign(reference=r) for r, part in signals.groupby("reference", sort=False)],
                       ignore_index=True)
    save_results(p.run_dir, seed_noise=noise, correlations=correlations, differences=differences, headline=table,
                 distinct_values=distinct, survival=kept, claim=claim, reference_drift=drift, floor_exponents=floors,
                 nearest_half=nearest, within_death_rate=within)
    wide = differences.assign(setting=differences.reference + ": " + differences.convention + " "
                              + differences.embedding + "/" + differences.distance)
    dense_ppl = status[status.dense & (status.seed == atlas.spec.seed)].valid_ppl.iloc[0]
    return {
        "candidates": f"atlas {atlas.spec.scale}: {len(pruned)} of its {len(atlas.spec.grid())} pruned candidates built "
                      f"({(pruned.status == 'ok').sum()} trained to the end), final validation perplexity "
                      f"{pruned.valid_ppl.min():.1f} to {pruned.valid_ppl.max():.1f}; dense {dense_ppl:.1f}\n"
                      + noise.round(2).to_string(index=False),
        "headline": _headline(table, main, references),
        "distinct": _degenerate(distinct, signals, references),
        "settings": wide.assign(cell=with_interval(wide.difference, wide.lo, wide.hi))
        .pivot(index="setting", columns="epoch", values="cell").to_string(),
        "survival": kept.pivot(index="epoch", columns="arm", values="fraction")[list(pd.unique(kept.arm))]
        .round(2).to_string(),
        "claim": claim_text,
        "drift": _diagnosis(atlas, drift, floors, nearest, within, removal, main, references),
        "rho_lines": _rho_lines(correlations, main, references),
        "settings_grid": wide.pivot(index="setting", columns="epoch", values="difference"),
        "reference_drift": drift, "signals": signals, "removal": removal,
        "distance_label": f"LS distance ({main['embedding'].upper()}/{main['distance'].upper()})",
    }


def _headline(table: pd.DataFrame, main: dict, references) -> str:
    rows = {r: part.set_index("epoch") for r, part in table.groupby("reference", sort=False)}
    headline = pd.DataFrame({f"rho(LS), {r}": with_interval(t.rho_ls, t.rho_ls_lo, t.rho_ls_hi) for r, t in rows.items()})
    loss = rows[references[0]]
    headline["rho(loss)"] = with_interval(loss.rho_loss, loss.rho_loss_lo, loss.rho_loss_hi)
    for r, t in rows.items():
        headline[f"LS - loss, {r}"] = with_interval(t.difference, t.lo, t.hi)
    return (f"LS convention {main['convention']}, embedding {main['embedding']}, distance {main['distance']} "
            f"({int(loss.candidates.iloc[0])} candidates; rho with the final validation perplexity, 95% bootstrap "
            f"intervals):\n{headline.to_string()}")


def _degenerate(distinct: pd.DataFrame, signals: pd.DataFrame, references) -> str:
    lines = [distinct.pivot_table(index="epoch", columns=["reference", "signal"], values="distinct",
                                  sort=False).to_string()]
    degenerate = distinct.groupby("epoch").only_by.all()
    flat = [int(e) for e in degenerate.index[degenerate]]
    sizes = signals[signals.reference == references[0]].drop_duplicates("name").groupby("sparse_init").size()
    if flat:
        lines.append(f"\nAt E = {', '.join(map(str, flat))} every signal under every reading takes one value per "
                     f"sparse init ({', '.join(f'{k}: {v} candidates' for k, v in sizes.items())}): there ρ only "
                     "tells ER from uniform initialisation apart, and no claim about ranking candidates can be read "
                     "off those epochs.")
    return "\n".join(lines)


def _claim(table: pd.DataFrame, differences: pd.DataFrame, removal: int, main: dict) -> tuple[dict, str]:
    """The verdict at the removal epoch per reading, on the headline setting's paired interval
    (:func:`by_reference`), with the count of verdicts over every LS setting."""
    claim = {"claim": CLAIM, "epoch": removal, **main, "readings": {}}
    at = table[table.epoch == removal].set_index("reference")
    settings = differences[differences.epoch == removal]
    settings = settings.assign(verdict=[interval_verdict(lo, hi) for lo, hi in zip(settings.lo, settings.hi)])
    lines = []
    for r, row in at.iterrows():
        counts = settings[settings.reference == r].verdict.value_counts()
        claim["readings"][r] = {**{k: float(row[k]) for k in ("rho_ls", "rho_ls_lo", "rho_ls_hi", "difference", "lo",
                                                              "hi")},
                                "ls_predicts": row.ls_predicts, "verdict": row.ls_beats_loss,
                                "settings": {k: int(v) for k, v in counts.items()}}
        lines.append(f"{READING_LABELS[r]} (E = {removal}, {main['convention']} convention, "
                     f"{main['embedding']}/{main['distance']}): ρ(LS) = {row.rho_ls:+.2f} [{row.rho_ls_lo:+.2f}, "
                     f"{row.rho_ls_hi:+.2f}], ρ(LS) − ρ(loss) = {row.difference:+.2f} [{row.lo:+.2f}, {row.hi:+.2f}]: "
                     f"the paper's claim that {CLAIM} {row.ls_beats_loss} at the atlas scale, and the weaker claim "
                     f"that it predicts at all {row.ls_predicts}; over all {int(counts.sum())} LS settings: "
                     + ", ".join(f"{v}: {n}" for v, n in counts.items()) + ".")
    held = [READING_LABELS[r] for r in at.index if at.loc[r, "ls_beats_loss"] == "holds"]
    lines.append(f"\nSo at the atlas scale the claim is reproduced under "
                 f"{'the ' + ' and the '.join(held) if held else 'no reading'}"
                 + "".join(f"; under the {READING_LABELS[r]} it {at.loc[r, 'ls_beats_loss']}" for r in at.index
                           if READING_LABELS[r] not in held) + ".")
    return claim, "\n".join(lines)


def _diagnosis(atlas: Atlas, drift, floors, nearest, within, removal: int, main: dict, references) -> str:
    now, last = drift.set_index("epoch").loc[removal], int(drift.epoch.max())
    exponents = atlas.ls(atlas.name(None, atlas.spec.seed), main["convention"]).shape[1]
    lines = [f"The dense LS moves {now.dense_drift:.1f} bits per step between epoch {removal} and epoch {last} "
             f"({now.tail_share:.1%} of it, in squares, in exponents 33-{exponents}), "
             f"{now.dense_drift / now.candidates_median:.1f} times the median candidate's distance to the dense LS of "
             f"epoch {removal} ({now.candidates_median:.1f}; quartiles {now.candidates_q25:.1f} to "
             f"{now.candidates_q75:.1f}).",
             f"\nShare of each death rate's candidates in the nearest half at E = {removal}, and their median final "
             "perplexities:",
             nearest.round({"median_final_valid_ppl": 1, "median_final_test_ppl": 1, "kept": 2})
             .pivot(index=["death_rate", "median_final_valid_ppl", "median_final_test_ppl"], columns="reference",
                    values="kept")[references].reset_index().to_string(index=False),
             f"\nρ of the LS distance with the final validation perplexity within one death rate at E = {removal}:",
             within.assign(rho=with_interval(within.rho, within.lo, within.hi))
             .pivot(index="reference", columns="death_rate", values="rho").loc[references].to_string(),
             f"\nExponents at the LS floor (log2 ≤ −99), at E = {removal} and over the whole run:",
             floors.to_string(index=False)]
    if "final" in references:
        final = nearest[nearest.reference == "final"].set_index("death_rate")
        light, heavy = final.index.min(), final.index.max()
        lines.append(f"\nUnder the final reading a half-removal at E = {removal} keeps {final.kept[heavy]:.0%} of the "
                     f"death-rate-{heavy:g} candidates (median test perplexity {final.median_final_test_ppl[heavy]:.0f})"
                     f" against {final.kept[light]:.0%} of the {light:g} ones ({final.median_final_test_ppl[light]:.0f}):"
                     " the heavily pruned candidates, whose spectra contract early, sit nearest where the dense LS "
                     "ends, and they are the worst models.")
    return "\n".join(lines)


def _rho_lines(correlations: pd.DataFrame, main: dict, references) -> pd.DataFrame:
    """The headline embedding and distance's ρ per convention: the LS distance under each reading
    and the validation loss once (it reads no LS), each with its label and PALETTE entry."""
    shown = correlations[(correlations.embedding == main["embedding"]) & (correlations.distance == main["distance"])]
    parts = [shown[shown.signal.eq("ls_distance") & shown.reference.eq(r)]
             .assign(label=f"LS distance, {READING_LABELS[r]}", colour=READING_LABELS[r]) for r in references]
    parts.append(shown[shown.signal.eq("valid_loss") & shown.reference.eq(references[0])]
                 .assign(label="validation loss", colour="loss ranking"))
    return pd.concat(parts, ignore_index=True)
