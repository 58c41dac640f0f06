"""Fig. 1: the LS of pruned variants followed over training, beside the dense model's, and the
claim that the variant nearer the dense LS early ends with the lower perplexity.
"""
from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pandas as pd

from lshkit import embedding as emb
from lshkit import paper
from lshkit.atlas import Atlas
from lshkit.callbacks import LSCallback, ls_tokens
from lshkit.checks import check_choice, check_positive_int
from lshkit.data import load_corpus
from lshkit.dst import SparseConfig
from lshkit.embedding import LSEmbedding
from lshkit.io import run_record
from lshkit.report import SOURCES, comparison, save_results, verdict, with_interval
from lshkit.stats import interval_verdict, rank_correlation
from lshkit.train import TrainConfig, Trainer, perplexity
from lshkit.vocab import LS_CONVENTIONS
from lshkit.experiments.predictive_power import distinct_values
from lshkit.experiments.readings import READING_LABELS


#: Distance columns of :func:`track_training`: the raw L2 to the dense LS under each reading of the
#: reference (at the same epoch, as the authors' code; the dense model's final LS, as the paper's
#: text reads), and the paper's LS space.
DISTANCE_COLUMNS = ("distance_same_epoch", "distance_final", "distance_pca")


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


#: The columns of :func:`trajectories` holding each reading's raw L2 to the dense LS.
TRAJECTORY_DISTANCES = {"same_epoch": "distance_same_epoch", "final": "distance_final"}


def trajectories(atlas: Atlas, *, convention: str = "paper", seed: int | None = None) -> pd.DataFrame:
    """Fig. 1 over every atlas candidate: one row per (candidate, epoch) of training seed ``seed``
    (default the atlas's main seed), the dense model included, with the LS embedded in one 2-D PCA
    space fitted on every candidate and epoch (``pc1``, ``pc2``), the L2 between the raw spectra of
    the candidate and the dense model under each reading of the reference
    (:data:`TRAJECTORY_DISTANCES`): ``distance_same_epoch`` (the dense LS at the same epoch, what the
    authors' code measures) and ``distance_final`` (the dense model's final LS; the dense model's own
    row is how far its LS still is from where it ends), and the candidate's configuration (empty for
    the dense model) and final validation perplexity."""
    check_choice("convention", convention, LS_CONVENTIONS)
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


#: Panel B's title under each reading, in the atlas view and the trained one alike.
DISTANCE_TITLES = {"same_epoch": "B: L2 to the dense LS of the same epoch",
                   "final": "B: L2 to the dense model's final LS"}


#: The variants :func:`train` trains (the dense reference and the two configurations Fig. 1's text
#: discusses), each with the :data:`lshkit.report.PALETTE` entry it is drawn in.
VARIANT_COLOURS = {"dense": "dense", "Selfish-RNN default": "Selfish-RNN default", "authors' best": "authors' pick"}


#: The paper's reading of Fig. 1, as the verdict sentences state it.
CLAIM = "the pruned variant nearer the dense LS at epoch 1 ends with the lower validation perplexity"


def run(p) -> dict:
    """Fig. 1 as a notebook's validated parameters ``p`` (:func:`lshkit.report.validate`) ask:
    every atlas candidate where ``p.source`` is "atlas" (:func:`replay`), else the paper's two
    variants and the dense model trained for ``p.epochs`` (None: 6 at smoke, 10 otherwise;
    :func:`train`). The parameters are checked before anything runs; the run is recorded in
    ``p.run_dir/run.json`` and its results saved beside it. Returns what the notebook shows."""
    check_choice("source", p.source, SOURCES)
    references = emb.check_references(p.references)
    epochs = p.epochs or (6 if p.budget == "smoke" else 10)
    check_positive_int("epochs", epochs)
    with run_record(p.run_dir, {**p.extras, "epochs": epochs, "budget": p.budget, "scale": p.effective_scale,
                                "seed": p.seed, "device": p.device}):
        return replay(p, references) if p.source == "atlas" else train(p, references, epochs)


def replay(p, references) -> dict:
    """Fig. 1 over every candidate of the atlas ``p.atlas`` (:func:`trajectories`), with the
    early-ordering statistic under each reading (:func:`ordering_by_reference`, epochs 1 to 5) and
    how many distinct distances each reading takes (where one per sparse init, ρ only tells the
    inits apart). Returns ``paths``, ``early``, ``distinct``, ``report`` (the sentences, verdicts
    per reading at epochs 1 and 3), and the view of panel A: ``colour_range`` (final validation
    perplexity, minimum to 90th percentile), ``xlim``, ``ylim`` and ``outside`` (how many
    trajectories leave that view)."""
    paths = trajectories(p.atlas)
    pruned = paths[~paths.dense]
    early = ordering_by_reference(paths, range(1, 6), references, seed=p.seed)
    columns = [TRAJECTORY_DISTANCES[r] for r in references]
    distinct = distinct_values(pruned, columns, by="sparse_init").set_index(["epoch", "signal"])
    save_results(p.run_dir, trajectories=paths, early_ordering=early, distinct_values=distinct.reset_index())
    lines = [f"{pruned.name.nunique()} pruned candidates of the atlas; Spearman's rho of the L2 to the dense LS at "
             "epoch E with the final validation perplexity (95% bootstrap interval), under each reading:",
             early.assign(rho=with_interval(early.rho, early.lo, early.hi))
             .pivot(index="epoch", columns="reference", values="rho")[references].to_string()]
    by_epoch = early.set_index(["reference", "epoch"])
    for epoch in (1, min(3, int(pruned.epoch.max()))):
        for r, column in zip(references, columns):
            at, counts = by_epoch.loc[(r, epoch)], distinct.loc[(epoch, column)]
            only = " (one per sparse init: it only tells ER from uniform initialisation apart)" if counts.only_by else ""
            lines.append(f"{READING_LABELS[r]}, epoch {epoch}: {counts.distinct} distinct distances over "
                         f"{counts.candidates} candidates{only}; the paper's reading, that a candidate nearer the dense "
                         f"LS ends with the lower validation perplexity (rho above 0), "
                         f"{interval_verdict(at.lo, at.hi)} over the atlas.")
    return {"source": "atlas", "paths": paths, "early": early, "distinct": distinct, "report": "\n".join(lines),
            "colour_range": (pruned.final_valid_ppl.min(), pruned.final_valid_ppl.quantile(0.9)),
            **_view(pruned, paths[paths.dense])}


def _view(pruned: pd.DataFrame, dense: pd.DataFrame) -> dict:
    # A few candidates' spectra blow up (exponents of hundreds of bits per step); the view keeps the
    # bulk of them and the whole dense path.
    lo, hi = pruned[["pc1", "pc2"]].quantile(0.05), pruned[["pc1", "pc2"]].quantile(0.95)
    lo, hi = lo.combine(dense[["pc1", "pc2"]].min(), min), hi.combine(dense[["pc1", "pc2"]].max(), max)
    pad = (hi - lo) * 0.1
    beyond = (pruned.pc1.abs() > hi.pc1 + pad.pc1) | (pruned.pc2.abs() > hi.pc2 + pad.pc2)
    return {"xlim": (lo.pc1 - pad.pc1, hi.pc1 + pad.pc1), "ylim": (lo.pc2 - pad.pc2, hi.pc2 + pad.pc2),
            "outside": int(beyond.groupby(pruned.name).any().sum())}


def train(p, references, epochs: int) -> dict:
    """Fig. 1 trained: the dense model and the two variants of :data:`VARIANT_COLOURS` at the
    stacked LSTM's sparsity (Table A1), ``epochs`` epochs of the preset at ``p.effective_scale``
    from the same seeded weights, checkpointed in ``p.run_dir`` (:func:`track_training`), their
    early ordering (:func:`early_ordering`) and their final perplexities beside the paper's
    (Table 1; the authors' released pick). Returns ``curves``, ``spectra``, ``ranked`` (panel A's
    spectra, sorted, at epochs 0, 1, half-way and the last), ``ordering``, ``comparison``,
    ``report`` (the setup and every model's curves) and ``verdicts`` (the sentences per reading)."""
    cfg = TrainConfig.preset(p.effective_scale, "lstm")
    _check_epochs(epochs, cfg)
    corpus = load_corpus(cfg.dataset, seed=p.seed)
    density = 1 - paper.SPARSITY["lstm"]
    variants = dict(zip(VARIANT_COLOURS, (None, SparseConfig(density=density, **paper.SELFISH_RNN_DEFAULT["lstm"]),
                                          SparseConfig(density=density, **paper.AUTHORS_BEST_LSTM["config"]))))
    checkpoints = p.run_dir / f"checkpoints-{epochs}epochs-{p.ls_warmup}"
    curves, spectra = track_training(cfg, corpus, variants, epochs=epochs, seed=p.seed, device=p.device,
                                     progress=p.progress, checkpoint_dir=checkpoints,
                                     stable_warmup=p.ls_warmup == "stable")
    # The trained models, read back from their checkpoints, for their test perplexity.
    trainers = train_variants(cfg, corpus, variants, epochs=epochs, seed=p.seed, device=p.device,
                              progress=p.progress, checkpoint_dir=checkpoints)
    final = pd.DataFrame([{"variant": name, "epoch": epochs, "test_ppl": perplexity(t.evaluate("test"))}
                          for name, t in trainers.items()])
    ordering = early_ordering(curves, dense="dense", epoch=1)
    test, valid = final.set_index("variant").test_ppl, curves[curves.epoch == epochs].set_index("variant").valid_ppl
    table = comparison([
        ("dense, test perplexity", test["dense"], paper.TABLE1[("lstm", "ptb")]["dense_ntasgd"]),
        ("Selfish-RNN default, test perplexity", test["Selfish-RNN default"],
         paper.TABLE1[("lstm", "ptb")]["selfish_rnn"]),
        ("authors' best, validation perplexity", valid["authors' best"], paper.AUTHORS_BEST_LSTM["valid_ppl"]),
        ("authors' best, test perplexity", test["authors' best"], paper.AUTHORS_BEST_LSTM["test_ppl"]),
    ], comparable=p.paper_scale and epochs == cfg.epochs,
       reason=p.scale_reason or f"our models trained {epochs} of the paper's {cfg.epochs} epochs")
    save_results(p.run_dir, curves=curves, spectra=spectra, final=final, ls_info=curves.attrs["ls_info"],
                 ordering=ordering, comparison=table)
    sentences = [verdict(table)]
    rows = ordering.set_index("distance")
    for r in references:
        row = rows.loc[TRAJECTORY_DISTANCES[r]]
        sentences.append(f"{READING_LABELS[r]}: in ours, {row.nearest!r} is nearer at epoch 1"
                         f"{' and stays nearer' if row.stays_nearest else ' but does not stay nearer'}; {row.best!r} "
                         f"ends with the lower validation perplexity: the paper's claim that {CLAIM} "
                         f"{'holds' if row.same_ordering else 'does not hold'} here.")
    shown = sorted({0, 1, epochs // 2, epochs})
    ranked = spectra[spectra.epoch.isin(shown)].sort_values(["variant", "epoch", "exponent"], ascending=False)
    ranked["rank"] = ranked.groupby(["variant", "epoch"]).cumcount() + 1
    return {"source": "train", "curves": curves, "spectra": spectra, "ranked": ranked, "ordering": ordering,
            "comparison": table,
            "report": f"{corpus.name!r} corpus, {cfg.num_layers}x{cfg.hidden_size} LSTM, {epochs} of {cfg.epochs} "
                      "epochs per model\n" + curves[["variant", "epoch", "valid_ppl", "density", *DISTANCE_COLUMNS]]
            .round(3).to_string(index=False),
            "verdicts": "\n".join(sentences)}
