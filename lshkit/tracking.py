"""The LS of pruned variants followed over training (paper Fig. 1) and its sample size (Table 3).

- :func:`track_training`: train a dense model and pruned variants side by side, with the
  LS of each before training and after every epoch, and their distances to the dense LS
  (Fig. 1 A: LS curves, B: distance over training, C: perplexity curves).
  :func:`early_ordering` checks Fig. 1's claim on it: the variant nearer the dense LS
  early ends with the lower perplexity.
- :func:`ls_sample_effect` / :func:`sample_effect_table`: max, min, mean and variance of
  the LS from K = 2 and K = 10 validation samples, and the time each took (§4 ablation,
  Table 3); :func:`train_variants` builds the "two pruned models" it is run on;
  :func:`paper_table3` is the published table in the same layout and
  :func:`sample_effect_claim` checks its claim (K changes the LS by at most 0.08, an
  order of magnitude less than the gap between the pruned models).

Every function returns tidy pandas frames; notebooks only save and plot them.
"""
from __future__ import annotations

import math
import re
from pathlib import Path

import numpy as np
import pandas as pd

from lshkit import paper
from lshkit.checks import check_choice, check_number, check_positive_int
from lshkit.dst import SparseConfig
from lshkit.embedding import LSEmbedding
from lshkit.callbacks import LSCallback, check_spectrum, ls_tokens, timed_spectrum
from lshkit.train import Trainer, TrainConfig

__all__ = ["train_variants", "track_training", "early_ordering",
           "ls_sample_effect", "sample_effect_table", "paper_table3", "sample_effect_claim",
           "STATS", "DISTANCE_COLUMNS", "ORDER_OF_MAGNITUDE"]

#: LS statistics of Table 3 (the paper prints max, min and variance; its text adds the mean).
STATS = ("max", "min", "mean", "variance")
#: Distance columns of :func:`track_training`: the raw L2 to the dense LS under each reading of the
#: reference (at the same epoch, as the authors' code; the dense model's final LS, as the paper's
#: text reads), and the paper's LS space.
DISTANCE_COLUMNS = ("distance_same_epoch", "distance_final", "distance_pca")
#: "An order of magnitude less" (Table 3 text): a ratio nearer 10 than 1 on a log scale.
#: The paper's own Table 3 needs it: its variance gap is 9.4 times its largest delta.
ORDER_OF_MAGNITUDE = 10 ** 0.5


def _checkpoint_names(variants: dict) -> dict[str, str]:
    if not isinstance(variants, dict) or not variants:
        raise ValueError(f"variants must be a non-empty dict name -> SparseConfig or None (dense); "
                         f"got {variants!r}")
    for name, sparse in variants.items():
        if not isinstance(name, str) or not name:
            raise ValueError(f"variant names must be non-empty strings; got {name!r}")
        if sparse is not None and not isinstance(sparse, SparseConfig):
            raise TypeError(f"variant {name!r} must be a SparseConfig or None (dense); "
                            f"got {type(sparse).__name__}")
    files = {name: re.sub(r"[^\w.-]", "_", name) + ".pt" for name in variants}
    if len(set(files.values())) < len(files):
        raise ValueError(f"variant names {list(variants)} map to the same checkpoint file; rename them")
    return files


def _check_epochs(epochs, cfg: TrainConfig) -> None:
    check_positive_int("epochs", epochs)
    if epochs > cfg.epochs:
        raise ValueError(f"epochs={epochs} is past TrainConfig.epochs={cfg.epochs}, where the DST "
                         f"schedule ends; set train_cfg.epochs >= {epochs}")


def train_variants(train_cfg: TrainConfig, corpus, variants: dict, *, epochs: int, seed: int = 0,
                   device="cpu", progress=None, checkpoint_dir=None, callback=None) -> dict[str, Trainer]:
    """Train every variant (a :class:`SparseConfig`, or None for dense) for ``epochs`` epochs
    from the same ``seed`` (it replaces ``train_cfg.seed``), hence the same initial weights
    before the masks; the DST schedule spans
    ``train_cfg.epochs``. With ``checkpoint_dir`` each variant is checkpointed after every
    epoch and resumed, so finished epochs are never recomputed and the result equals an
    uninterrupted run; a checkpoint already past ``epochs`` is refused, since its trainer
    cannot go back. With ``callback`` (e.g. :class:`LSCallback`) it runs after every epoch
    and once before training, on an epoch-0 record (validation loss of the initial weights)
    kept as the first entry of ``history``. Returns name -> trainer."""
    files = _checkpoint_names(variants)
    _check_epochs(epochs, train_cfg)
    cfg = train_cfg.replace(seed=seed)
    trainers = {}
    for name, sparse in variants.items():
        trainer = Trainer(cfg, corpus, sparse, device=device, progress=progress)
        path = None if checkpoint_dir is None else Path(checkpoint_dir) / files[name]
        if path is not None and path.exists():
            trainer.load(path)
            if trainer.epoch > epochs:
                raise ValueError(f"the checkpoint {path} is at epoch {trainer.epoch}, past epochs={epochs}; "
                                 "use another checkpoint_dir or more epochs")
        if callback is not None and not trainer.history:
            trainer.record_initial([callback])
            if path is not None:
                trainer.save(path)
        trainer.fit(epochs, callbacks=() if callback is None else (callback,), checkpoint=path)
        trainers[name] = trainer
    return trainers


def track_training(train_cfg: TrainConfig, corpus, variants: dict, *, epochs: int, ls_samples: int = 2,
                   ls_steps: int = 35, convention: str = "paper", seed: int = 0, device="cpu",
                   progress=None, checkpoint_dir=None, **spectrum) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Fig. 1: the dense model and pruned variants trained side by side, with their LS
    (on :func:`ls_tokens`) at epoch 0 and after every epoch.

    ``variants``: name -> :class:`SparseConfig`, exactly one None (the dense reference).
    ``spectrum``: further :func:`~lshkit.ls.model_spectrum` options (warmup, k, dtype,
    stable_warmup). Resumable and deterministic as :func:`train_variants`.

    Returns ``(epochs_frame, ls_frame)``. ``epochs_frame``: one row per variant per epoch
    0..epochs: variant, epoch, train_loss (NaN at 0), valid_loss, valid_ppl, density,
    ls_seconds, train_seconds, distance_same_epoch (L2 between the variant's LS and the
    dense LS at the same epoch: the authors' released code), distance_final (L2 between the
    variant's LS and the dense LS at the last epoch: the paper's text read literally) and distance_pca (L2 in the
    2-D PCA space fitted on every (variant, epoch) LS, to the dense at its last epoch:
    paper §3.2, Appendix B). ``ls_frame``: variant, epoch, index (i of λ_i, from 1),
    exponent. Both carry ``attrs["ls_info"]`` (how the LS was computed).
    """
    _checkpoint_names(variants)
    dense = [name for name, sparse in variants.items() if sparse is None]
    if len(dense) != 1:
        raise ValueError(f"variants must hold exactly one dense reference (value None); got {dense}")
    callback = LSCallback(ls_tokens(corpus, ls_samples, ls_steps), convention, spectrum)
    trainers = train_variants(train_cfg, corpus, variants, epochs=epochs, seed=seed, device=device,
                              progress=progress, checkpoint_dir=checkpoint_dir, callback=callback)
    records = {name: [r for r in t.history if r["epoch"] <= epochs] for name, t in trainers.items()}
    for name, recs in records.items():
        if ([r["epoch"] for r in recs] != list(range(epochs + 1))
                or any(r.get("ls_settings") != callback.settings for r in recs)):
            raise ValueError(f"the checkpoint of variant {name!r} in {checkpoint_dir} was trained "
                             f"without LS tracking or with LS settings other than {callback.settings}; "
                             "use another checkpoint_dir")
    reference = {r["epoch"]: np.asarray(r["ls"]) for r in records[dense[0]]}
    keys = [(name, r["epoch"]) for name, recs in records.items() for r in recs]
    ls = np.stack([np.asarray(r["ls"]) for recs in records.values() for r in recs])
    coords = LSEmbedding("pca", n_components=2).fit_transform(ls)
    anchor = coords[keys.index((dense[0], epochs))]
    rows, ls_rows = [], []
    for (name, epoch), lam, point in zip(keys, ls, coords):
        r = records[name][epoch]
        rows.append({"variant": name, "epoch": epoch,
                     **{k: r[k] for k in ("train_loss", "valid_loss", "valid_ppl", "density",
                                          "ls_seconds", "train_seconds")},
                     "distance_same_epoch": float(np.linalg.norm(lam - reference[epoch])),
                     "distance_final": float(np.linalg.norm(lam - reference[epochs])),
                     "distance_pca": float(np.linalg.norm(point - anchor))})
        ls_rows += [{"variant": name, "epoch": epoch, "index": i, "exponent": v}
                    for i, v in enumerate(lam.tolist(), 1)]
    epochs_frame, ls_frame = pd.DataFrame(rows), pd.DataFrame(ls_rows)
    epochs_frame.attrs["ls_info"] = ls_frame.attrs["ls_info"] = records[dense[0]][0]["ls_info"]
    return epochs_frame, ls_frame


def early_ordering(frame: pd.DataFrame, *, dense: str = "dense", epoch: int = 1) -> pd.DataFrame:
    """Fig. 1's claim on a :func:`track_training` frame: the pruned variant nearer the dense
    LS early stays nearer and ends with the lower perplexity (paper §1, Fig. 1 B and C).

    For each of :data:`DISTANCE_COLUMNS`, one row: distance, epoch, nearest (the pruned variant
    nearest ``dense`` at ``epoch``), best (the lowest validation perplexity at the frame's
    last epoch), same_ordering (the pruned variants ranked by distance at ``epoch`` are
    ranked alike by final perplexity; ties share a rank) and stays_nearest (``nearest`` is
    nearest at every epoch from ``epoch`` on). The PCA distance of :func:`track_training`
    is measured in a space fitted on every epoch, the later ones included, so only the
    same-epoch distance is what could be known at ``epoch``.
    """
    missing = [c for c in ("variant", "epoch", "valid_ppl", *DISTANCE_COLUMNS) if c not in frame.columns]
    if missing:
        raise ValueError(f"frame lacks the column(s) {missing}; give the first frame track_training returns")
    variants = list(dict.fromkeys(frame.variant))
    check_choice("dense", dense, variants)
    pruned = [v for v in variants if v != dense]
    if len(pruned) < 2:
        raise ValueError(f"an ordering needs at least two pruned variants besides {dense!r}; got {pruned}")
    last = int(frame.epoch.max())
    epochs = sorted(set(frame.epoch))
    if isinstance(epoch, bool) or epoch not in epochs:
        raise ValueError(f"epoch={epoch!r} is not valid; choose one of {epochs}")
    table = frame[frame.variant.isin(pruned)].set_index(["epoch", "variant"])
    final = table.loc[last, "valid_ppl"].loc[pruned]
    rows = []
    for distance in DISTANCE_COLUMNS:
        early = table.loc[epoch, distance].loc[pruned]
        nearest = early.idxmin()
        later = table.loc[table.index.get_level_values("epoch") >= epoch, distance].unstack("variant")
        rows.append({"distance": distance, "epoch": epoch, "nearest": nearest, "best": final.idxmin(),
                     "same_ordering": bool((early.rank(method="min") == final.rank(method="min")).all()),
                     "stays_nearest": bool((later[pruned].idxmin(axis=1) == nearest).all())})
    return pd.DataFrame(rows)


def ls_sample_effect(model, corpus, *, ks=(2, 10), steps: int = 35, convention: str = "paper",
                     repeats: int = 1, **spectrum) -> pd.DataFrame:
    """Table 3: the LS of ``model`` from K validation samples (:func:`ls_tokens`) for each K
    in ``ks``, ``repeats`` times (for the timings; the values are deterministic).

    One row per (samples, repeat): samples, repeat, max, min, mean, variance (population,
    over the exponents), seconds, seconds_per_sample. ``model`` is a model, used as it is,
    or a :class:`Trainer`, whose model is measured with the weights it evaluates (SNT-ASGD's
    averaged ones once averaging is on), as the per-epoch LS of :class:`LSCallback`.
    """
    if (not isinstance(ks, (tuple, list)) or not ks or len(set(ks)) != len(ks)):
        raise ValueError(f"ks must be distinct sample counts, e.g. (2, 10); got {ks!r}")
    check_positive_int("repeats", repeats)
    check_spectrum(convention, spectrum)
    if isinstance(model, Trainer):
        with model.optimizer.averaged():
            return ls_sample_effect(model.model, corpus, ks=ks, steps=steps, convention=convention,
                                    repeats=repeats, **spectrum)
    tokens = {k: ls_tokens(corpus, k, steps) for k in ks}
    rows = []
    for repeat in range(repeats):
        for k in ks:
            lam, seconds, _, _ = timed_spectrum(model, tokens[k], convention, **spectrum)
            rows.append({"samples": k, "repeat": repeat, "max": lam.max(), "min": lam.min(),
                         "mean": lam.mean(), "variance": lam.var(), "seconds": seconds,
                         "seconds_per_sample": seconds / k})
    return pd.DataFrame(rows)


def sample_effect_table(effects: dict[str, pd.DataFrame]) -> pd.DataFrame:
    """Table 3's layout from ``{model name: ls_sample_effect frame}``: rows max, min, mean,
    variance, seconds (means over repeats); columns (model, K) for every K, then
    (model, "delta"): the absolute difference between the first and the last K."""
    columns = {}
    for name, frame in effects.items():
        means = frame.groupby("samples", sort=False)[list(STATS) + ["seconds"]].mean()
        for k, row in means.iterrows():
            columns[name, str(k)] = row
        columns[name, "delta"] = (means.iloc[-1] - means.iloc[0]).abs()
    table = pd.DataFrame(columns)
    table.columns.names = ["model", "samples"]
    return table


def paper_table3() -> pd.DataFrame:
    """The paper's Table 3 (:data:`lshkit.paper.TABLE3`) in :func:`sample_effect_table`'s
    layout: rows max, min, variance (the paper prints no mean and no time); columns
    ("Pruned 1" | "Pruned 2", "2" | "10" | "delta"), delta as printed (2 decimals)."""
    columns = {}
    for name, stats in paper.TABLE3.items():
        label = name.replace("_", " ").capitalize()
        columns[label, "2"] = {stat: two for stat, (two, _) in stats.items()}
        columns[label, "10"] = {stat: ten for stat, (_, ten) in stats.items()}
        columns[label, "delta"] = {stat: round(abs(ten - two), 2) for stat, (two, ten) in stats.items()}
    table = pd.DataFrame(columns)
    table.columns.names = ["model", "samples"]
    return table


def sample_effect_claim(table: pd.DataFrame, *, bound: float = paper.TABLE3_MAX_DIFFERENCE,
                        stats=("max", "min", "variance")) -> pd.DataFrame:
    """Table 3's claim on a :func:`sample_effect_table` (or :func:`paper_table3`): the
    number of samples K changes each LS statistic by at most ``bound`` (the paper: 0.08),
    an order of magnitude less than the gap between the pruned models.

    One row per statistic: stat, delta (the largest |first K - last K| over the models),
    gap (the smallest difference between two models at the last K, the more accurate LS),
    ratio (gap / delta; inf when only delta is 0, NaN when both are), within_bound
    (delta <= bound) and order_of_magnitude (ratio >= :data:`ORDER_OF_MAGNITUDE`). The
    claim holds where both are true in every row.
    """
    check_number("bound", bound, low=0)
    if not isinstance(table, pd.DataFrame) or table.columns.nlevels != 2:
        raise ValueError("table must be the frame sample_effect_table or paper_table3 returns")
    models = list(dict.fromkeys(table.columns.get_level_values(0)))
    if len(models) < 2:
        raise ValueError(f"a gap between models needs at least two models; got {models}")
    for stat in stats:
        check_choice("stat", stat, list(table.index))
    rows = []
    for stat in stats:
        delta = max(table.loc[stat, (m, "delta")] for m in models)
        # The last K column is the one just before "delta" in each model's block.
        last = [table.loc[stat, m].drop("delta").iloc[-1] for m in models]
        gap = min(abs(a - b) for i, a in enumerate(last) for b in last[i + 1:])
        ratio = gap / delta if delta > 0 else (math.inf if gap > 0 else math.nan)
        # The epsilon keeps a delta printed as exactly the bound (2.67 - 2.59) from failing on rounding.
        rows.append({"stat": stat, "delta": float(delta), "gap": float(gap), "ratio": float(ratio),
                     "within_bound": bool(delta <= bound + 1e-9),
                     "order_of_magnitude": bool(ratio >= ORDER_OF_MAGNITUDE)})
    return pd.DataFrame(rows)
