"""The fixed configurations LSH is compared with, trained fully once or read from an atlas: the
dense model and the Selfish-RNN default (Table 1, Fig. 3 left), at the sizes each scale uses.

Smoke sizes (:func:`sized`): every search and training runs at :data:`lshkit.sweep.SMOKE_OVERRIDES`
(pool 4, 2 epochs, a 2×32 model); the RHN and AWD-LSTM-MoS shrink further (:data:`SMOKE_FIELDS`), so
that each notebook fits CI's minute on 2 cores. Smoke numbers exercise the code; they say nothing
about the method.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import math
from pathlib import Path

import pandas as pd

from lshkit import paper
from lshkit.data import load_corpus
from lshkit.dst import SparseConfig
from lshkit.env import resolve_device
from lshkit.io import read_json, write_csv, write_json
from lshkit.search import SearchConfig
from lshkit.search.runner import reference_key, train_reference
from lshkit.sweep import SMOKE_OVERRIDES, smoke_sized
from lshkit.train import TrainConfig, Trainer, TrainingDiverged, perplexity


#: Extra smoke shrinking per model, on top of SMOKE_OVERRIDES: a smoke RHN step costs about four
#: LSTM steps (its depth-3 highway recurrence runs step by step), so it takes a quarter of them;
#: an AWD-LSTM-MoS step about three (three layers, three softmaxes), so it takes a third.
SMOKE_FIELDS = {"rhn": {"train_overrides": {**SMOKE_OVERRIDES["train_overrides"], "batch_size": 40}},
                "awd_mos": {"train_overrides": {**SMOKE_OVERRIDES["train_overrides"], "batch_size": 30}}}


#: The Selfish-RNN configuration of the AWD-LSTM-MoS row. Their README reports the MoS result
#: (sparsity 0.55, test 63.05) without its command; its one command for an AWD-LSTM model at
#: that sparsity (ONLSTM) is uniform / random / magnitude / none with death rate 0.5, as the RHN's.
SELFISH_RNN_MOS = {"sparse_init": "uniform", "growth": "random", "death": "magnitude",
                   "redistribution": "none", "death_rate": 0.5}


#: The Selfish-RNN row's configuration of each of Table 1's models.
SELFISH_RNN = {**paper.SELFISH_RNN_DEFAULT, "awd_mos": SELFISH_RNN_MOS}


def check_config(config) -> None:
    if not isinstance(config, SearchConfig):
        raise TypeError(f"config must be a SearchConfig; got {type(config).__name__}")


def sized(config: SearchConfig) -> SearchConfig:
    """``config`` at the notebooks' smoke size when its budget is "smoke" (module docstring),
    unchanged otherwise."""
    check_config(config)
    return smoke_sized(config, **SMOKE_FIELDS.get(config.model, {}))


def selfish_rnn_config(config: SearchConfig, device="auto") -> SparseConfig:
    """The Selfish-RNN default configuration of ``config``'s model (their README's training
    command, :data:`lshkit.paper.SELFISH_RNN_DEFAULT`; :data:`SELFISH_RNN_MOS` for AWD-LSTM-MoS)
    at ``config``'s sparsity."""
    check_config(config)
    cfg = config.resolved(resolve_device(device))
    return SparseConfig.at_sparsity(cfg.sparsity, **SELFISH_RNN[cfg.model])


def _seconds(record: dict) -> float:
    return sum(record.get(k) or 0.0 for k in ("train_seconds", "eval_seconds", "ls_seconds"))


def train_fixed(config: SearchConfig, sparse: SparseConfig | None, out, *, device="auto",
                reference_dir=None, progress: bool | None = None) -> dict:
    """Train one fixed configuration fully: ``config``'s TrainConfig (what every candidate of
    its search trains with) for ``final_epochs``, dense when ``sparse`` is None, else with
    dynamic sparse training by ``sparse``, whose density must be ``1 - config.sparsity``.

    The dense model is the search's dense reference (:func:`lshkit.search.train_reference`,
    cached under ``reference_dir``, default ``results/reference``): a search with the same key
    and this call share one training. A pruned one checkpoints after every epoch, so a killed
    run resumes. Results go to ``out/<key>/`` (key: a hash of both configs): ``epochs.csv``
    (one row per epoch) and ``summary.json``, which later calls read back instead of training.

    Returns the summary: ``status`` ("ok" or "failed" when training diverged, with
    ``reason``), ``valid_ppl`` and ``test_ppl`` (None when failed), ``epochs``, ``seconds``
    (compute seconds summed over epochs: train + eval, plus the LS for the reference),
    ``density``, ``train_config``, ``sparse_config``, ``source`` and ``records``.
    """
    check_config(config)
    if sparse is not None and not isinstance(sparse, SparseConfig):
        raise TypeError(f"sparse must be a SparseConfig or None; got {type(sparse).__name__}")
    dev = resolve_device(device)
    cfg = config.resolved(dev)
    if sparse is not None and not math.isclose(sparse.density, 1.0 - cfg.sparsity, abs_tol=1e-9):
        raise ValueError(f"sparse.density={sparse.density!r} does not match config.sparsity={cfg.sparsity!r} "
                         f"(density {1.0 - cfg.sparsity:g}); give a SparseConfig at that density")
    train_cfg = cfg.train_config()
    key, configs = _config_key(train_cfg, sparse)
    folder = Path(out) / key
    if (folder / "summary.json").exists():
        return read_json(folder / "summary.json")

    if sparse is None:
        ref = train_reference(cfg, device=dev, reference_dir=reference_dir)
        outcome = ("ok", None, ref["valid_loss"], ref["test_loss"], ref["records"])
        source = f"dense reference {reference_key(cfg)}"
    else:
        outcome = _fit(train_cfg, sparse, cfg.final_epochs, folder, dev, progress)
        source = "trained"
    return _summarise(folder, key, configs, sparse, source, *outcome)


def trained_fixed(base: SearchConfig, out, *, sparsities, repeats: int = 1, device="auto", reference_dir=None,
                  progress: bool | None = None) -> list[dict]:
    """The fixed configurations of a comparison over pruning ratios (Fig. 3 left) trained fully
    (:func:`train_fixed`): per repeat ``r`` (seed ``base.seed + r``) the Selfish-RNN default at every
    ratio of ``sparsities`` (``out/selfish_rnn``), then the dense model once (``out/dense``; it does
    not depend on the ratio). One row each, as :func:`atlas_fixed`'s: method ("selfish_rnn",
    "dense"), sparsity (0 for dense), repeat, seed, status, valid_ppl, test_ppl, seconds."""
    rows = []
    for repeat in range(repeats):
        seeded = dataclasses.replace(base, seed=base.seed + repeat)
        pruned = [dataclasses.replace(seeded, sparsity=s) for s in sparsities]
        for method, cfg, sparse in [*(("selfish_rnn", c, selfish_rnn_config(c, device)) for c in pruned),
                                    ("dense", seeded, None)]:
            fixed = train_fixed(cfg, sparse, Path(out) / method, device=device, reference_dir=reference_dir,
                                progress=progress)
            rows.append({"method": method, "sparsity": 0.0 if sparse is None else cfg.sparsity, "repeat": repeat,
                         "seed": seeded.seed, **{k: fixed[k] for k in ("status", "valid_ppl", "test_ppl", "seconds")}})
    return rows


def _config_key(train_cfg: TrainConfig, sparse: SparseConfig | None) -> tuple[str, list]:
    configs = [train_cfg.to_dict(), None if sparse is None else sparse.to_dict()]
    return hashlib.sha256(json.dumps(configs, sort_keys=True).encode()).hexdigest()[:10], configs


def _fit(train_cfg, sparse, epochs, folder, device, progress):
    """Train ``train_cfg`` (dense when ``sparse`` is None) for ``epochs``, checkpointing into
    ``folder`` after every epoch. Returns (status, reason, valid_loss, test_loss, records)."""
    status, reason, valid_loss, test_loss = "ok", None, None, None
    trainer = Trainer(train_cfg, load_corpus(train_cfg.dataset), sparse, device=device, progress=progress)
    try:
        trainer.fit(epochs, checkpoint=folder / "checkpoint.pt")
        valid_loss, test_loss = trainer.evaluate("valid"), trainer.evaluate("test")
    except TrainingDiverged as err:
        status, reason = "failed", err.reason
    return status, reason, valid_loss, test_loss, trainer.history


def _summarise(folder, key, configs, sparse, source, status, reason, valid_loss, test_loss, records) -> dict:
    records = [{k: v for k, v in r.items() if k not in ("ls", "ls_info", "ls_settings")} for r in records]
    summary = {
        "status": status, "reason": reason,
        "valid_ppl": None if valid_loss is None else perplexity(valid_loss),
        "test_ppl": None if test_loss is None else perplexity(test_loss),
        "epochs": records[-1]["epoch"] if records else 0, "seconds": sum(_seconds(r) for r in records),
        "density": 1.0 if sparse is None else sparse.density,
        "train_config": configs[0], "sparse_config": configs[1], "source": source, "key": key,
        "records": records,
    }
    write_csv(folder / "epochs.csv", pd.DataFrame(records))
    write_json(folder / "summary.json", summary)
    return summary


def atlas_fixed(atlas) -> list[dict]:
    """The dense model and the Selfish-RNN default as an atlas recorded them (its main training
    seed; the default at the atlas's death rate nearest Selfish-RNN's), one row each."""
    spec = atlas.spec
    default = dict(SELFISH_RNN[spec.model])
    default["death_rate"] = min(spec.death_rates, key=lambda rate: abs(rate - default["death_rate"]))
    finals = atlas.candidates().set_index("name")
    rows = []
    for method, params in (("dense", None), ("selfish_rnn", default)):
        r = finals.loc[atlas.name(params, spec.seed)]
        rows.append({"method": method, "sparsity": 0.0 if params is None else spec.sparsity, "status": r.status,
                     "valid_ppl": r.valid_ppl, "test_ppl": r.test_ppl, "seconds": r.cpu_seconds,
                     "configuration": "" if params is None else json.dumps(params, sort_keys=True)})
    return rows
