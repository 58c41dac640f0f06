"""What the search loop asks of the world: a :class:`Runner` carries out units of work.

The loop (:mod:`lshkit.search.loop`) decides; a runner trains. A unit is a dict:

- ``{"kind": "reference"}``: the dense reference, every epoch with its LS, from epoch 0;
- ``{"kind": "train", "candidate", "params", "from", "epochs", "ls", "gap"}``: a candidate's
  epochs ``from + 1 .. epochs`` of one round, with its LS after every epoch when ``ls`` (and at
  epoch 0, before training, when ``from`` is 0) and its masks' spectral gap when ``gap``;
- ``{"kind": "final", ...}``: the same up to ``final_epochs``, then its validation and test loss;
- ``{"kind": "full", "candidate", "params", "target_ppl"}``: a candidate of the full-training
  search (Fig. 3 right) from scratch up to ``final_epochs``, stopping after the first epoch whose
  validation perplexity is at most ``target_ppl``; no LS.

Its result: ``status`` ("ok" or "failed"), ``reason``, ``records`` (one per epoch, as
:meth:`lshkit.train.Trainer.train_epoch` writes them, plus ``ls``, ``ls_seconds``, ``ls_info``;
with ``gap``: ``gap_min``, ``gap_mean``, ``gap_seconds``), and for final units and the reference
``valid_loss`` and ``test_loss``.

:class:`TrainingRunner` trains for real, every unit a trial of a jobs study in an Optuna storage
(:mod:`lshkit.storage`), so processes and machines cooperate and a killed search resumes;
:class:`lshkit.atlas.replay.AtlasRunner` reads the units from a tabulated atlas instead.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import os
import re
import warnings
from abc import ABC, abstractmethod
from pathlib import Path

import numpy as np
import optuna
import torch
from tqdm.auto import tqdm

from lshkit.data import load_corpus
from lshkit.dst import SparseConfig
from lshkit.env import quiet_optuna, resolve_device
from lshkit.graph import gap_score
from lshkit.io import read_json, write_json
from lshkit.search.config import SearchConfig
from lshkit.storage import JobQueue, default_storage_url, open_storage
from lshkit.callbacks import GraphCallback, LSCallback, ls_tokens
from lshkit.train import TrainConfig, Trainer, TrainingDiverged, perplexity

__all__ = ["Runner", "TrainingRunner", "reference_key", "candidate_configs", "train_reference", "first_reaching"]


def candidate_configs(cfg: SearchConfig, params: dict) -> tuple[TrainConfig, SparseConfig]:
    """The (TrainConfig, SparseConfig) a candidate with ``params`` trains with: the search's
    TrainConfig with the space's TrainConfig fields changed, and its sparsity."""
    sparse_fields = {f.name for f in dataclasses.fields(SparseConfig)}
    sparse = {k: v for k, v in params.items() if k in sparse_fields}  # a space may vary the density too
    train = {k: v for k, v in params.items() if k not in sparse_fields}
    return cfg.train_config().replace(**train), dataclasses.replace(SparseConfig.at_sparsity(cfg.sparsity), **sparse)


def reference_key(cfg: SearchConfig) -> str:
    """Cache directory name of the dense reference: (model, scale, dataset, seed) plus a hash of
    its TrainConfig and the LS settings."""
    base = cfg.train_config()
    # layout 2: the records start at epoch 0.
    ls = dict(K=cfg.ls_samples, T=cfg.ls_steps, convention=cfg.ls_convention,
              stable_warmup=cfg.stable_warmup, layout=2)
    digest = hashlib.sha256(json.dumps([base.to_dict(), ls], sort_keys=True).encode()).hexdigest()[:8]
    return f"{cfg.model}-{cfg.scale}-{base.dataset}-seed{cfg.seed}-{digest}"


def _jsonable(record: dict) -> dict:
    out = {}
    for k, v in record.items():
        if isinstance(v, torch.Tensor):
            v = v.tolist()
        elif isinstance(v, np.generic):
            v = v.item()
        out[k] = v
    return out


def _finite(values) -> bool:
    return bool(np.isfinite(np.asarray(values, dtype=np.float64)).all())


def first_reaching(records, target_ppl: float) -> int | None:
    """The index of the first of ``records`` whose validation perplexity is at most
    ``target_ppl`` (the epoch a full-training unit stops at); None if none is."""
    return next((i for i, r in enumerate(records) if r.get("valid_ppl", math.inf) <= target_ppl), None)


def _masked_url(url: str) -> str:
    return re.sub(r"://([^:/@]+):[^@]*@", r"://\1:***@", url)


class Runner(ABC):
    """Carries out the units of work of one search (module docstring)."""

    #: What the summary records of where the work ran.
    description: dict = {}

    def open(self, search) -> None:
        """Called once before the loop starts."""

    @abstractmethod
    def run(self, specs: dict[str, dict], desc: str) -> dict[str, dict]:
        """Results of every unit of ``specs`` (key -> unit), keyed alike."""

    def finish(self, search) -> None:
        """Called once after the loop (before the records are written)."""


class TrainingRunner(Runner):
    """Trains every unit for real, each a trial of the jobs study ``<study>/jobs`` in the Optuna
    ``storage`` (default ``sqlite:///<out>/study.db``); candidate checkpoints under
    ``checkpoints/<study>`` (default ``<out>/checkpoints``), the dense reference cached under
    ``reference_dir`` (default ``results/reference``) and shared by every search with the same
    model, scale, dataset, seed and LS settings. When the search ends, every candidate is also
    written as a trial of the search's own study, for Optuna's tools (:meth:`finish`)."""

    def __init__(self, config: SearchConfig, out, *, storage: str | None = None, device="auto",
                 checkpoints=None, reference_dir=None, progress: bool = False,
                 stale_after: float = 1800.0, poll: float = 1.0, prefix: str = "lsh"):
        self.device = resolve_device(device)
        self.config = config.resolved(self.device)
        self.storage_url = storage or default_storage_url(Path(out))
        self.study_name = self.config.study_name(prefix)
        self.checkpoints = Path(checkpoints or Path(out) / "checkpoints") / self.study_name
        self.reference_dir = Path(reference_dir or Path("results") / "reference") / reference_key(self.config)
        self.progress, self.stale_after, self.poll = progress, stale_after, poll
        self.base = self.config.train_config()
        self._corpus = None
        self.description = {"study": self.study_name, "storage": _masked_url(self.storage_url),
                            "device": str(self.device)}

    # ----------------------------------------------------------- plumbing
    def open(self, search=None) -> None:
        self.storage = open_storage(self.storage_url)
        self.queue = JobQueue(self.storage, self.study_name + "/jobs", stale_after=self.stale_after,
                              poll=self.poll)
        self.queue.study.set_user_attr("config", self.config.to_dict())

    @property
    def corpus(self):
        if self._corpus is None:
            self._corpus = load_corpus(self.base.dataset)
        return self._corpus

    def ls_callback(self) -> LSCallback:
        """The LS after every epoch on K samples of T validation steps (Eq. 1), on the weights
        the epoch was evaluated with."""
        cfg = self.config
        return LSCallback(ls_tokens(self.corpus, cfg.ls_samples, cfg.ls_steps).to(self.device),
                          cfg.ls_convention, {"stable_warmup": cfg.stable_warmup})

    def run(self, specs: dict[str, dict], desc: str) -> dict[str, dict]:
        bar = tqdm(total=len(specs), desc=desc, unit="unit", leave=False, disable=not self.progress)
        with bar:
            return self.queue.run(specs, self, on_result=lambda key, result: bar.update())

    def __call__(self, job) -> dict:
        spec = job.spec
        if spec["kind"] == "reference":
            return self._reference(job)
        cfg, sparse = candidate_configs(self.config, spec["params"])
        trainer = Trainer(cfg, self.corpus, sparse, device=self.device, progress=False)
        path = self.checkpoints / f"c{spec['candidate']:04d}.pt"
        if spec["kind"] == "full":
            return self._train(job, trainer, path, 0, self.config.final_epochs, False, until=spec["target_ppl"])
        return self._train(job, trainer, path, spec["from"], spec["epochs"], spec["ls"],
                           final=spec["kind"] == "final", with_gap=spec.get("gap", False))

    # ----------------------------------------------------------- units
    def _train(self, job, trainer, path, start, epochs, with_ls, final=False, until=None, with_gap=False) -> dict:
        recovered = None
        if path.exists():
            try:
                trainer.load(path)
            except Exception as err:  # truncated, corrupt, or another run's: torch and pickle raise many kinds
                bad = path.with_name(path.name + ".bad")
                os.replace(path, bad)
                recovered = (f"checkpoint {path} could not be read ({type(err).__name__}: {err}); moved to "
                             f"{bad.name}, the candidate is recomputed from epoch 0")
                trainer = Trainer(trainer.cfg, trainer.corpus, trainer.sparse, device=self.device, progress=False)
        if trainer.epoch < start and recovered is None:
            recovered = (f"checkpoint {path} is {'missing' if not path.exists() else f'at epoch {trainer.epoch}'}"
                         f", the unit starts at epoch {start}; the candidate is recomputed from epoch "
                         f"{trainer.epoch}")
        if recovered is not None:
            # Training is deterministic, so the recomputed epochs equal the lost ones.
            warnings.warn(recovered, RuntimeWarning, stacklevel=2)
        resumed_from = trainer.epoch
        callbacks = ([self.ls_callback()] if with_ls else []) + ([GraphCallback()] if with_gap else [])
        if with_ls and not trainer.history:
            trainer.record_initial(callbacks)  # the LS history starts at epoch 0 (Appendix B)
        status, reason = "ok", None
        while trainer.epoch < epochs and (until is None or first_reaching(trainer.history, until) is None):
            try:
                record = trainer.train_epoch(callbacks)
            except TrainingDiverged as err:
                status, reason = "failed", err.reason
                break
            if with_ls and not _finite(record["ls"]):
                record.update(failed=True, reason="non-finite Lyapunov spectrum")
                status, reason = "failed", record["reason"]
                break
            trainer.save(path)
            self.queue.heartbeat(job.trial_id, epoch=trainer.epoch)
        records = [_jsonable(r) for r in trainer.history
                   if start < r["epoch"] <= epochs or r["epoch"] == start == 0]
        result = {"status": status, "reason": reason, "records": records, "resumed_from": resumed_from}
        if recovered is not None:
            result["recovered"] = recovered
        if final and status == "ok":
            result["valid_loss"] = trainer.evaluate("valid")
            result["test_loss"] = trainer.evaluate("test")
        return result

    def _reference(self, job) -> dict:
        done = self.reference_dir / "reference.json"
        if done.exists():
            return dict(read_json(done), key=self.reference_dir.name)
        trainer = Trainer(self.base, self.corpus, None, device=self.device, progress=False)
        result = self._train(job, trainer, self.reference_dir / "checkpoint.pt", 0,
                             self.base.epochs, True, final=True)
        if result["status"] != "ok":
            raise RuntimeError(f"the dense reference failed ({result['reason']}); it is the target of "
                               "every candidate, so the search cannot go on")
        result["train_config"] = self.base.to_dict()
        write_json(done, result)
        return dict(result, key=self.reference_dir.name)

    # ----------------------------------------------------------- the Optuna export
    def finish(self, search) -> None:
        """Write every candidate as a trial of the search's study, once (a unit of the queue):
        its params, its ranking measure per selection epoch as intermediate values, its records
        (LS vectors aside) as the ``records`` user attribute; COMPLETE with the final validation
        perplexity, PRUNED when removed, FAIL when failed."""
        def write(job):
            with quiet_optuna():
                study = optuna.create_study(storage=self.storage, study_name=self.study_name,
                                            load_if_exists=True, direction="minimize")
            known = {t.user_attrs.get("candidate") for t in study.get_trials(deepcopy=False)}
            distributions = search.space.to_optuna()
            # Intermediate values go the study's way (minimize): the gap as its removal score.
            measure, value = {"ls": ("distance", float), "loss": ("valid_loss", float),
                              "gap": ("gap_min", gap_score)}[self.config.ranking]
            for c in search.candidates:
                if c.cid in known:
                    continue
                records = [{k: v for k, v in rec.items() if k not in ("ls", "ls_info", "ls_settings")}
                           for rec in c.records]
                steps = {rec["epoch"]: value(rec[measure]) for rec in c.records
                         if rec["phase"] == "selection" and math.isfinite(rec.get(measure, math.nan))}
                attrs = {"candidate": c.cid, "joined": c.joined, "records": records}
                if c.final is not None and c.final["status"] == "ok":
                    trial = optuna.trial.create_trial(
                        params=c.params, distributions=distributions, intermediate_values=steps,
                        value=perplexity(c.final["valid_loss"]), user_attrs=attrs)
                else:
                    state = (optuna.trial.TrialState.FAIL if c.status == "failed"
                             else optuna.trial.TrialState.PRUNED)
                    trial = optuna.trial.create_trial(params=c.params, distributions=distributions,
                                                      intermediate_values=steps, state=state, user_attrs=attrs)
                study.add_trial(trial)
            return {"candidates": len(search.candidates)}

        self.queue.run({"ledger": {"kind": "ledger"}}, write)


def train_reference(config: SearchConfig, *, device="auto", reference_dir=None) -> dict:
    """Train (or read from its cache) the dense reference of ``config`` without a search;
    returns its record: per-epoch records with the LS, ``valid_loss``, ``test_loss``."""
    runner = TrainingRunner(config, Path("."), storage="sqlite:///:memory:", device=device,
                            reference_dir=reference_dir)
    runner.queue = JobQueue(optuna.storages.InMemoryStorage(), "reference")
    return runner.queue.run({"reference": {"kind": "reference"}}, runner)["reference"]
