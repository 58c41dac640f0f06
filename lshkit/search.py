"""LS-based Hyperpruning (LSH): the search of paper §3.2 (Fig. 2), its baselines, and its records.

The LSH loop (:class:`LSHSearch`, paper §3.2, REFERENCE §1):

1. The dense reference (the configuration's model without pruning) is trained for
   ``final_epochs`` with its LS computed after every epoch, once per (model, scale,
   dataset, seed, LS settings), into a cache directory reused by every search.
   Candidates are ranked against its LS at its final epoch (paper: "a pre-trained dense
   network"); ``embedding="same_epoch"`` instead compares each candidate with the
   reference's LS at the same epoch (the authors' code, REFERENCE §2). Both distances are
   recorded for every candidate-epoch.
2. A pool of ``n`` candidates (``sampler.initial(n)``; ``n`` = 24/30/40 for the budgets
   low/moderate/high, paper Table 2).
3. Each round every candidate in the pool trains ``E`` more epochs (continuing from its
   checkpoint; its DST death-rate schedule spans the full run of ``final_epochs``), and
   after every epoch its LS is computed on the validation stream batchified into K
   columns (the LS batch size, Table A1), first T steps: K samples of T steps.
4. Ranking ``ls``: the reference and every ranked candidate's LS history are embedded
   together (:func:`lshkit.embedding.ls_space`: pca, tsne, raw, or same_epoch) and each
   candidate's current point is scored by its distance (l2 or cos) to the reference's.
   Ranking ``loss`` (the paper's baseline): the validation loss at the same point, and no
   LS is computed at all (so the timings compare like the paper's).
5. Of the ``p`` candidates ranked, the ``p // 2`` furthest are removed and
   ``p // 4`` new ones come from ``sampler.propose(p // 4, history)``, where ``history``
   holds one :class:`~lshkit.samplers.Observation` per candidate ever seen (its latest
   score, whether it is still in the pool, the epoch of that score): generation is
   conditioned on the survivors. The paper gives no rule for the newcomers' epochs; here
   they start from epoch 0 and, like everyone, train ``E`` epochs in the round they join,
   so they are ranked against candidates with more epochs behind them (what removal at
   a fixed schedule implies). ``p`` is the current pool size, so the pool shrinks
   geometrically (``p -> ceil(p/2) + p//4``: 24, 18, 13, 10, 7, 5, 4, then 2 kept;
   :func:`pool_schedule`), the "asymptotic reduction" of §3.2.
6. Rounds repeat until at most ``final_survivors`` (2, as the authors) would remain, or
   for at most ``rounds`` rounds (then the ``final_survivors`` nearest are kept).
7. The survivors train to ``final_epochs``; the one with the lowest validation perplexity
   at the end is selected and its test perplexity reported.

``sampler="grid"`` searches the grid space removal only, with no generation: the paper's
GS of Tables 2 and 4 (24 variants at death rate 0.8; the pool is the grid, at most ``n``).

``sampler="hyperband"`` / ``"bohb"`` keep their own successive-halving schedule instead
of the rounds: :func:`lshkit.samplers.hyperband_brackets` with ``min_resource = E``,
``eta`` (3) and ``max_resource = E * eta**s`` for the largest ``s <= 2`` that fits in
``final_epochs`` (rungs at E, 3E, 9E epochs). One Hyperband iteration is run with its
brackets' sizes scaled (largest remainders) so that their first rungs add up to the pool
size ``n``; rung ``i`` of a bracket starting ``n_s`` candidates keeps
``max(1, n_s // eta**i)``. Within a rung, candidates are ranked exactly as in LSH
(LS distance or loss) and the best are promoted. Brackets run one after the other; the
first draws ``sampler.initial``, later ones ``sampler.propose`` with the history so far:
uniformly at random for ``hyperband``, multivariate TPE for ``bohb`` (Optuna's BOHB is
TPE + Hyperband). The winners of every bracket (all at ``max_resource`` epochs) are
ranked together once more and the best ``final_survivors`` go to the final training.

Failures: a candidate whose loss becomes NaN/inf (:class:`~lshkit.train.TrainingDiverged`)
or whose LS is not finite is recorded as failed, counts among the removed, and the search
goes on.

Persistence and parallelism (:mod:`lshkit.storage`): every unit of work (a candidate's
epochs of one round with their LS, a final training, the reference) is a trial of a jobs
study in the Optuna storage; its per-epoch records are its result. Every process runs the
same deterministic loop: each decision is a function of the stored results, the seed and
the sampler, so N processes started with the same command and storage cooperate, and a
killed search resumes where it stopped (finished candidate-epochs are read back, a unit
killed mid-epoch restarts from its last epoch checkpoint), with the same selection and
perplexities as an uninterrupted run (CPU). When the search ends, the candidates are also
written as trials of the search's own study (params, intermediate value per epoch = its
ranking score, user attributes = its per-epoch records; COMPLETE with the final validation
perplexity, PRUNED when removed, FAIL when failed) for Optuna's tools.

Records written into ``out`` (atomically), which notebooks read without retraining:
``epochs.csv`` (one row per candidate per epoch), ``rounds.csv`` (one per ranking),
``events.csv`` (added / survived / removed / failed / selected), ``reference.csv``,
``ls.npz`` (every LS vector, the reference's per epoch), ``summary.json``.

:func:`full_training_search` is Fig. 3 (right)'s loss-based full-training search:
sampler-proposed candidates trained one after another until one reaches a target
validation perplexity.
"""
from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import io
import json
import math
import multiprocessing
import re
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import optuna
import pandas as pd
import torch
from tqdm.auto import tqdm

from lshkit import embedding as emb
from lshkit.data import batchify, load_corpus
from lshkit.dst import SparseConfig
from lshkit.io import JSONConfig, atomic_write, read_json, versions, write_csv, write_json
from lshkit.ls import model_spectrum
from lshkit.paper import BUDGET_POOL, SPARSITY
from lshkit.samplers import SAMPLERS, Observation, SearchSpace, hyperband_brackets, make_sampler
from lshkit.storage import JobQueue, check_workers, default_storage_url, open_storage, quiet_optuna
from lshkit.train import TrainConfig, Trainer, TrainingDiverged, auto_progress, perplexity

__all__ = ["SearchConfig", "LSHSearch", "run_search", "full_training_search", "train_reference",
           "pool_schedule", "hyperband_resources", "reference_key", "resolve_device",
           "MODELS", "SCALES", "BUDGETS", "RANKINGS", "EMBEDDINGS", "DISTANCES", "LS_CONVENTIONS"]

MODELS = ("lstm", "rhn")
SCALES = ("smoke", "cpu", "paper", "auto")
BUDGETS = {"smoke": 8, **BUDGET_POOL}
RANKINGS = ("ls", "loss")
EMBEDDINGS = emb.SPACES
DISTANCES = emb.DISTANCES
LS_CONVENTIONS = ("paper", "full")
# Parameters a search space may not set: they define the comparison itself.
_FIXED_TRAIN_FIELDS = ("model", "dataset", "epochs", "seed")


def _choice(field_name, value, valid):
    if value not in valid:
        raise ValueError(f"SearchConfig.{field_name}={value!r} is not valid; choose one of {list(valid)}")


def _int(field_name, value, low=1, optional=False):
    if optional and value is None:
        return
    if isinstance(value, bool) or not isinstance(value, int) or value < low:
        raise ValueError(f"SearchConfig.{field_name}={value!r} is not valid; it must be an integer >= {low}"
                         + (" or None" if optional else ""))


def pool_schedule(n: int, final_survivors: int = 2, rounds: int | None = None,
                  generate: bool = True) -> list[int]:
    """Pool sizes of the LSH rounds without failures (§3.2): ``p -> ceil(p/2) + p//4``
    (``ceil(p/2)`` alone without generation) until at most ``final_survivors`` remain."""
    sizes, p = [], n
    while True:
        sizes.append(p)
        keep = max(p - p // 2, min(p, final_survivors))
        if keep <= final_survivors or (rounds is not None and len(sizes) >= rounds):
            return sizes
        p = keep + (p // 4 if generate else 0)


@dataclass
class SearchConfig(JSONConfig):
    """Everything that defines one search; ``None`` fields are filled by :meth:`resolved`.

    budget: "smoke" (the generated smoke corpus, tiny models, a pool of 8, E = 1) or the
    paper's "low"/"moderate"/"high" (24/30/40 initial candidates, Table 2) at ``scale``
    ("auto": paper on a CUDA device, cpu otherwise). ``pool`` overrides the budget's size.
    ``epochs_per_round`` is E (paper: 3); ``rounds`` is m (None: until ``final_survivors``
    remain). ``sparsity`` None: Table A1's (0.67 LSTM, 0.53 RHN). LS: ``ls_samples`` K (2),
    ``ls_steps`` T (35), ``ls_convention`` ("paper": the authors' h-only, Jᵀ, log2,
    10-step warm-up; "full": the exact LS), ``stable_warmup`` (orthonormalise during the
    warm-up; REFERENCE §3 explains why the authors' warm-up is ill-posed). ``final_epochs``
    None: the scale's TrainConfig epochs. ``eta``: Hyperband/BOHB's reduction factor.
    ``space``: a :class:`~lshkit.samplers.SearchSpace` as a dict (None: the authors',
    REFERENCE §2; the grid variant for ``sampler="grid"``); its parameters are
    SparseConfig fields or TrainConfig fields (e.g. lr). ``train_overrides``: TrainConfig
    fields changed from the preset for every model, the reference included.
    """

    model: str = "lstm"
    scale: str = "auto"
    budget: str = "low"
    sampler: str = "tpe"
    ranking: str = "ls"
    embedding: str = "pca"
    distance: str = "l2"
    epochs_per_round: int | None = None
    rounds: int | None = None
    sparsity: float | None = None
    seed: int = 0
    pool: int | None = None
    ls_samples: int = 2
    ls_steps: int = 35
    ls_convention: str = "paper"
    stable_warmup: bool = True
    final_survivors: int = 2
    final_epochs: int | None = None
    target_ppl: float | None = None
    eta: int = 3
    space: dict | None = None
    train_overrides: dict = field(default_factory=dict)

    def __post_init__(self):
        _choice("model", self.model, MODELS)
        _choice("scale", self.scale, SCALES)
        _choice("budget", self.budget, tuple(BUDGETS))
        _choice("sampler", self.sampler, SAMPLERS)
        _choice("ranking", self.ranking, RANKINGS)
        _choice("embedding", self.embedding, EMBEDDINGS)
        _choice("distance", self.distance, DISTANCES)
        _choice("ls_convention", self.ls_convention, LS_CONVENTIONS)
        _choice("stable_warmup", self.stable_warmup, (True, False))
        if self.budget == "smoke" and self.scale not in ("smoke", "auto"):
            raise ValueError(f"SearchConfig.budget='smoke' runs at scale 'smoke'; got scale={self.scale!r}")
        _int("epochs_per_round", self.epochs_per_round, optional=True)
        _int("rounds", self.rounds, optional=True)
        _int("seed", self.seed, low=0)
        _int("pool", self.pool, low=2, optional=True)
        _int("ls_samples", self.ls_samples)
        _int("ls_steps", self.ls_steps, low=2)
        _int("final_survivors", self.final_survivors)
        _int("final_epochs", self.final_epochs, optional=True)
        _int("eta", self.eta, low=2)
        if self.sparsity is not None and not (isinstance(self.sparsity, (int, float))
                                              and not isinstance(self.sparsity, bool)
                                              and 0 <= self.sparsity < 1):
            raise ValueError(f"SearchConfig.sparsity={self.sparsity!r} is not valid; it must be in [0, 1)")
        if self.target_ppl is not None and not (isinstance(self.target_ppl, (int, float))
                                                and not isinstance(self.target_ppl, bool)
                                                and self.target_ppl > 1):
            raise ValueError(f"SearchConfig.target_ppl={self.target_ppl!r} is not valid; it must be a "
                             "perplexity > 1 or None")
        if self.space is not None:
            if isinstance(self.space, SearchSpace):
                self.space = self.space.to_dict()
            SearchSpace.from_dict(self.space)
        if not isinstance(self.train_overrides, dict):
            raise ValueError(f"SearchConfig.train_overrides must be a dict of TrainConfig fields; "
                             f"got {self.train_overrides!r}")
        self.train_overrides = dict(sorted(self.train_overrides.items()))
        valid = [f.name for f in dataclasses.fields(TrainConfig) if f.name not in _FIXED_TRAIN_FIELDS]
        unknown = [k for k in self.train_overrides if k not in valid and k not in _FIXED_TRAIN_FIELDS]
        if unknown:
            raise ValueError(f"SearchConfig.train_overrides: unknown TrainConfig field(s) {unknown}; "
                             f"valid: {valid}")
        bad = [k for k in self.train_overrides if k in _FIXED_TRAIN_FIELDS]
        if bad:
            raise ValueError(f"SearchConfig.train_overrides may not set {bad}: use model, scale, seed "
                             "and final_epochs")

    # ------------------------------------------------------------- round trip

    # ------------------------------------------------------------- resolution
    def resolved(self, device="cpu") -> "SearchConfig":
        """A copy with every None filled and ``scale`` resolved for ``device``, checked as a
        whole (the space's parameters, the epochs a candidate can reach)."""
        d = self.to_dict()
        if d["budget"] == "smoke":
            d["scale"] = "smoke"
        elif d["scale"] == "auto":
            d["scale"] = "paper" if torch.device(device).type == "cuda" else "cpu"
        if d["epochs_per_round"] is None:
            d["epochs_per_round"] = 1 if d["budget"] == "smoke" else 3
        if d["pool"] is None:
            d["pool"] = BUDGETS[d["budget"]]
        if d["sparsity"] is None:
            d["sparsity"] = SPARSITY[d["model"]]
        if d["space"] is None:
            d["space"] = SearchSpace.authors(grid=d["sampler"] == "grid").to_dict()
        base = TrainConfig.preset(d["scale"], d["model"])
        if d["final_epochs"] is None:
            d["final_epochs"] = base.epochs
        cfg = SearchConfig.from_dict(d)
        cfg.train_config()  # the overrides must make a valid TrainConfig
        cfg._check_space()
        cfg._check_epochs()
        return cfg

    def _check_resolved(self):
        if self.scale == "auto" or None in (self.epochs_per_round, self.pool, self.sparsity,
                                            self.final_epochs, self.space):
            raise ValueError("call SearchConfig.resolved(device) first")

    def train_config(self) -> TrainConfig:
        """The TrainConfig every model starts from (the dense reference uses it as is)."""
        base = TrainConfig.preset(self.scale, self.model)
        return base.replace(seed=self.seed, epochs=self.final_epochs, **self.train_overrides)

    def search_space(self) -> SearchSpace:
        self._check_resolved()
        return SearchSpace.from_dict(self.space)

    def _check_space(self):
        sparse = {f.name for f in dataclasses.fields(SparseConfig)}
        train = {f.name for f in dataclasses.fields(TrainConfig)} - set(_FIXED_TRAIN_FIELDS)
        bad = [name for name in self.space if name not in sparse | train]
        if bad:
            raise ValueError(f"search space parameter(s) {bad} are neither SparseConfig fields "
                             f"{sorted(sparse)} nor TrainConfig fields {sorted(train)}")

    def _check_epochs(self):
        if self.pool <= self.final_survivors:
            raise ValueError(f"pool={self.pool} must exceed final_survivors={self.final_survivors}")
        if self.sampler in ("hyperband", "bohb"):
            need = hyperband_resources(self)[1]
        else:
            rounds = len(pool_schedule(self._pool_size(), self.final_survivors, self.rounds,
                                       self.sampler != "grid"))
            need = rounds * self.epochs_per_round
        if need > self.final_epochs:
            raise ValueError(
                f"the selection would train a candidate for {need} epochs, more than "
                f"final_epochs={self.final_epochs}: lower epochs_per_round "
                f"({self.epochs_per_round}), set rounds, or raise final_epochs")

    def _pool_size(self) -> int:
        if self.sampler == "grid":
            return min(self.pool, int(SearchSpace.from_dict(self.space).size()))
        return self.pool

    def key(self) -> str:
        """A short hash naming this search (its study and checkpoints)."""
        self._check_resolved()
        return hashlib.sha256(self.to_json().encode()).hexdigest()[:10]

    def study_name(self, prefix: str = "lsh") -> str:
        return f"{prefix}-{self.model}-{self.scale}-{self.sampler}-{self.ranking}-{self.key()}"


def hyperband_resources(cfg: SearchConfig) -> tuple[int, int]:
    """(min_resource, max_resource) of the Hyperband/BOHB schedule: E and E·eta^s for the
    largest s <= 2 within final_epochs."""
    low = cfg.epochs_per_round
    s = 2
    while s > 0 and low * cfg.eta ** s > cfg.final_epochs:
        s -= 1
    return low, low * cfg.eta ** s


def _scaled_brackets(n: int, cfg: SearchConfig) -> list[list[tuple[int, int]]]:
    """Hyperband's brackets with first rungs scaled to add up to ``n`` (largest remainders)."""
    low, high = hyperband_resources(cfg)
    brackets = hyperband_brackets(high, cfg.eta, low)
    firsts = [b[0][0] for b in brackets]
    exact = [n * f / sum(firsts) for f in firsts]
    sizes = [math.floor(x) for x in exact]
    for i in sorted(range(len(exact)), key=lambda i: (sizes[i] - exact[i], i))[: n - sum(sizes)]:
        sizes[i] += 1
    out = []
    for size, bracket in zip(sizes, brackets):
        if size:
            out.append([(max(1, size // cfg.eta ** i), r) for i, (_, r) in enumerate(bracket)])
    return out


def resolve_device(device) -> torch.device:
    if device in (None, "auto"):
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


def _masked_url(url: str) -> str:
    return re.sub(r"://([^:/@]+):[^@]*@", r"://\1:***@", url)


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


# ------------------------------------------------------------------ LS and units of work


class _Units:
    """Runs the units of work of one search: trainers, checkpoints, the LS callback."""

    def __init__(self, cfg: SearchConfig, queue: JobQueue, device, checkpoints: Path,
                 reference_dir: Path):
        self.cfg, self.queue, self.device = cfg, queue, device
        self.checkpoints, self.reference_dir = checkpoints, reference_dir
        self.base = cfg.train_config()
        self._corpus = None

    @property
    def corpus(self):
        if self._corpus is None:
            self._corpus = load_corpus(self.base.dataset)
        return self._corpus

    def ls_tokens(self) -> torch.Tensor:
        """K samples of T steps: the validation stream batchified into K columns (the LS batch
        size of Table A1), its first T rows, as the authors."""
        cfg = self.cfg
        return batchify(self.corpus.valid, cfg.ls_samples)[: cfg.ls_steps]

    def ls_callback(self):
        tokens = self.ls_tokens()
        cfg = self.cfg

        def compute_ls(trainer, record):
            # A Trainer callback: after the epoch's validation, before its topology update. The
            # LS is taken on the weights as validated (the averaged ones once SNT-ASGD averages).
            start = time.perf_counter()
            with trainer.optimizer.averaged():
                lam, info = model_spectrum(trainer.model, tokens, convention=cfg.ls_convention,
                                           stable_warmup=cfg.stable_warmup, return_info=True)
            record["ls"] = lam.double().cpu().tolist()
            record["ls_seconds"] = time.perf_counter() - start
            record["ls_info"] = {k: info[k] for k in ("convention", "log_base", "warmup", "warmup_mode",
                                                      "dtype", "K", "T", "n")}
        return compute_ls

    def candidate_configs(self, params: dict) -> tuple[TrainConfig, SparseConfig]:
        sparse_fields = {f.name for f in dataclasses.fields(SparseConfig)}
        sparse = {"density": round(1.0 - self.cfg.sparsity, 12)}
        sparse.update({k: v for k, v in params.items() if k in sparse_fields})
        train = {k: v for k, v in params.items() if k not in sparse_fields}
        return self.base.replace(**train), SparseConfig(**sparse)

    @contextlib.contextmanager
    def threads(self):
        """One torch thread for smoke models, which are so small that more OpenMP threads only
        add synchronisation, and collapse when the cores are shared (measured on 2 busy cores:
        1 s per smoke epoch on one thread, 20-100 s on two)."""
        threads = torch.get_num_threads()
        if self.cfg.scale == "smoke":
            torch.set_num_threads(1)
        try:
            yield
        finally:
            torch.set_num_threads(threads)

    def __call__(self, job) -> dict:
        with self.threads():
            return self._unit(job)

    def _unit(self, job) -> dict:
        spec = job.spec
        if spec["kind"] == "reference":
            return self._reference(job)
        cfg, sparse = self.candidate_configs(spec["params"])
        trainer = Trainer(cfg, self.corpus, sparse, device=self.device, progress=False)
        path = self.checkpoints / f"c{spec['candidate']:04d}.pt"
        return self._train(job, trainer, path, spec["from"], spec["epochs"], spec["ls"],
                           final=spec["kind"] == "final")

    def _train(self, job, trainer, path, start, epochs, with_ls, final=False) -> dict:
        if path.exists():
            trainer.load(path)
        if trainer.epoch < start:
            raise RuntimeError(f"checkpoint {path} is at epoch {trainer.epoch}, the unit starts at "
                               f"{start}: the checkpoint directory does not belong to this storage")
        resumed_from = trainer.epoch
        callbacks = [self.ls_callback()] if with_ls else []
        status, reason = "ok", None
        while trainer.epoch < epochs:
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
        records = [_jsonable(r) for r in trainer.history if start < r["epoch"] <= epochs]
        result = {"status": status, "reason": reason, "records": records, "resumed_from": resumed_from}
        if final and status == "ok":
            result["valid_loss"] = trainer.evaluate("valid")
            result["test_loss"] = trainer.evaluate("test")
        return result

    def _reference(self, job) -> dict:
        done = self.reference_dir / "reference.json"
        if done.exists():
            return read_json(done)
        trainer = Trainer(self.base, self.corpus, None, device=self.device, progress=False)
        result = self._train(job, trainer, self.reference_dir / "checkpoint.pt", 0,
                             self.base.epochs, True, final=True)
        if result["status"] != "ok":
            raise RuntimeError(f"the dense reference failed ({result['reason']}); it is the target of "
                               "every candidate, so the search cannot go on")
        result["train_config"] = self.base.to_dict()
        write_json(done, result)
        return result


def reference_key(cfg: SearchConfig) -> str:
    """Cache directory name of the dense reference: (model, scale, dataset, seed) plus a hash of
    its TrainConfig and the LS settings."""
    base = cfg.train_config()
    ls = dict(K=cfg.ls_samples, T=cfg.ls_steps, convention=cfg.ls_convention,
              stable_warmup=cfg.stable_warmup)
    digest = hashlib.sha256(json.dumps([base.to_dict(), ls], sort_keys=True).encode()).hexdigest()[:8]
    return f"{cfg.model}-{cfg.scale}-{base.dataset}-seed{cfg.seed}-{digest}"


# ------------------------------------------------------------------ the search


@dataclass
class _Candidate:
    cid: int
    params: dict
    joined: int
    records: list = field(default_factory=list)
    status: str = "live"  # live, removed, failed
    score: float = math.nan
    score_epoch: int = 0
    final: dict | None = None

    @property
    def epoch(self) -> int:
        return self.records[-1]["epoch"] if self.records else 0


class LSHSearch:
    """One LSH search (module docstring) over an Optuna storage.

    ``out``: the results directory. ``storage``: an Optuna storage URL (default
    ``sqlite:///<out>/study.db``; see :mod:`lshkit.storage`). ``checkpoints``: candidate
    checkpoints (default ``<out>/checkpoints``; shared by every machine of a multi-machine
    search). ``reference_dir``: the dense reference cache root (default
    ``results/reference``). ``progress``: tqdm bars (None: off under CI, on in a terminal
    or Jupyter). ``write_outputs``: write the record files into ``out`` (the extra local
    worker processes of :func:`run_search` do not).
    """

    def __init__(self, config: SearchConfig, out, *, storage: str | None = None, device="auto",
                 checkpoints=None, reference_dir=None, progress: bool | None = None,
                 stale_after: float = 1800.0, poll: float = 1.0, write_outputs: bool = True,
                 _prefix: str = "lsh"):
        if not isinstance(config, SearchConfig):
            raise TypeError(f"config must be a SearchConfig; got {type(config).__name__}")
        self.device = resolve_device(device)
        self.config = config.resolved(self.device)
        self.space = self.config.search_space()
        self.sampler = make_sampler(self.config.sampler, self.space, self.config.seed)
        self.out = Path(out)
        self.storage_url = storage or default_storage_url(self.out)
        self.study_name = self.config.study_name(_prefix)
        self.checkpoints = Path(checkpoints or self.out / "checkpoints") / self.study_name
        self.reference_root = Path(reference_dir or Path("results") / "reference")
        self.progress = auto_progress() if progress is None else bool(progress)
        self.stale_after, self.poll, self.write_outputs = stale_after, poll, write_outputs

    # ----------------------------------------------------------- plumbing
    def _open(self):
        self.storage = open_storage(self.storage_url)
        self.queue = JobQueue(self.storage, self.study_name + "/jobs", stale_after=self.stale_after,
                              poll=self.poll)
        self.queue.study.set_user_attr("config", self.config.to_dict())
        self.units = _Units(self.config, self.queue, self.device, self.checkpoints,
                            self.reference_root / reference_key(self.config))

    def _run_units(self, specs: dict, desc: str) -> dict:
        bar = tqdm(total=len(specs), desc=desc, unit="unit", leave=False, disable=not self.progress)
        with bar:
            return self.queue.run(specs, self.units, on_result=lambda key, result: bar.update())

    # ----------------------------------------------------------- the loop
    def run(self) -> dict:
        """Run (or resume, or join) the search; returns the summary (also ``out/summary.json``)."""
        cfg = self.config
        start = time.perf_counter()
        self._open()
        self.candidates: list[_Candidate] = []
        self.events: list[dict] = []
        self.rounds: list[dict] = []
        self.reference = None
        if cfg.ranking == "ls":
            self.reference = self._run_units(
                {"reference": {"kind": "reference"}}, "dense reference")["reference"]
            ls = np.array([r["ls"] for r in self.reference["records"]])
            self.ref_ls_epochs, self.ref_ls_final = ls, ls[-1]
        if cfg.sampler in ("hyperband", "bohb"):
            survivors = self._select_hyperband()
        else:
            survivors = self._select_lsh()
        self._final(survivors, self.rounds[-1]["round"] + 1 if self.rounds else 0)
        summary = self._summary(time.perf_counter() - start)
        self._ledger()
        if self.write_outputs:
            self._write(summary)
        return summary

    def _new(self, params: dict, joined: int) -> _Candidate:
        c = _Candidate(len(self.candidates), params, joined)
        self.candidates.append(c)
        self.events.append(dict(round=joined, candidate=c.cid, event="added", score=math.nan, epoch=0))
        return c

    def _history(self) -> list[Observation]:
        return [Observation(c.params, c.score if c.status != "failed" else math.inf,
                            c.status == "live", c.score_epoch) for c in self.candidates]

    def _train(self, pool: list[_Candidate], epochs: dict[int, int], r: int, **labels) -> list[_Candidate]:
        """Train every candidate of ``pool`` to ``epochs[cid]``; returns those that did not fail."""
        specs = {f"c{c.cid}-r{r}": {"kind": "train", "candidate": c.cid, "params": c.params,
                                    "from": c.epoch, "epochs": epochs[c.cid],
                                    "ls": self.config.ranking == "ls"}
                 for c in pool if epochs[c.cid] > c.epoch}
        results = self._run_units(specs, f"round {r}") if specs else {}
        live = []
        for c in pool:
            result = results.get(f"c{c.cid}-r{r}", {"status": "ok", "records": []})
            for rec in result["records"]:
                c.records.append(dict(rec, phase="selection", round=r, **labels))
            if result["status"] == "failed":
                c.status = "failed"
                c.score, c.score_epoch = math.inf, c.epoch
                self.events.append(dict(round=r, candidate=c.cid, event="failed", score=math.inf,
                                        epoch=c.epoch, reason=result["reason"]))
            else:
                live.append(c)
        return live

    def _rank(self, live: list[_Candidate], r: int) -> tuple[list[_Candidate], tuple]:
        """Score ``live`` (sets ``score``; annotates round ``r``'s records); returns it nearest
        first, and the reference's 2-D point (NaN for the loss ranking)."""
        if not live:
            return [], (math.nan, math.nan)
        if self.config.ranking == "loss":
            scores = {c.cid: c.records[-1]["valid_loss"] for c in live}
            ref_xy = (math.nan, math.nan)
        else:
            scores, ref_xy = self._rank_ls(live, r)
        for c in live:
            c.score, c.score_epoch = float(scores[c.cid]), c.epoch
            if c.records and c.records[-1]["round"] == r:
                c.records[-1]["score"] = c.score
        by_id = {c.cid: c for c in live}
        return [by_id[cid] for cid in emb.rank_candidates(scores)], ref_xy

    def _rank_ls(self, live, r):
        cfg = self.config
        histories = {c.cid: np.array([rec["ls"] for rec in c.records]) for c in live}
        reference = self.ref_ls_epochs if cfg.embedding == "same_epoch" else self.ref_ls_final
        space = emb.ls_space(reference, histories, embedding=cfg.embedding, random_state=cfg.seed)
        scores = space.distances(cfg.distance)
        # 2-D coordinates for the records: the ranking's own for pca/tsne, else a PCA of the same set.
        plot = space if cfg.embedding in ("pca", "tsne") else emb.ls_space(
            self.ref_ls_final, histories, embedding="pca", random_state=cfg.seed)
        for c in live:
            points, xy = space.points[c.cid], plot.points[c.cid]
            for j, rec in enumerate(c.records):
                if rec["round"] != r:
                    continue
                ref_point = space.reference[j] if len(space.reference) > 1 else space.reference[0]
                rec["distance"] = emb.point_distance(points[j], ref_point, cfg.distance)
                rec["embed_x"], rec["embed_y"] = float(xy[j][0]), float(xy[j][1])
                rec["same_epoch_distance"] = float(np.linalg.norm(
                    np.asarray(rec["ls"]) - self.ref_ls_epochs[rec["epoch"] - 1]))
        return scores, (float(plot.reference[0][0]), float(plot.reference[0][1]))

    def _decide(self, pool: list[_Candidate], epochs: dict, r: int, keep_n: int,
                labels=None) -> list[_Candidate]:
        """One removal step: train ``pool`` to ``epochs``, rank it, keep the ``keep_n`` nearest
        and record the round. Returns the kept, by id."""
        labels = labels or {}
        ranked, ref_xy = self._rank(self._train(pool, epochs, r, **labels), r)
        keep = ranked[:keep_n]
        for c in ranked[keep_n:]:
            c.status = "removed"
        for c in ranked:
            self.events.append(dict(round=r, candidate=c.cid, score=c.score, epoch=c.epoch,
                                    event="survived" if c.status == "live" else "removed", **labels))
        self.rounds.append(dict(round=r, **labels, pool=len(pool), ranked=len(ranked), kept=len(keep),
                                removed=len(pool) - len(keep), added=0,
                                reference_x=ref_xy[0], reference_y=ref_xy[1]))
        return sorted(keep, key=lambda c: c.cid)

    def _select_lsh(self) -> list[_Candidate]:
        cfg = self.config
        pool = [self._new(p, 0) for p in self.sampler.initial(cfg._pool_size())]
        r = 0
        while pool:
            p = len(pool)
            keep_n = max(p - p // 2, min(p, cfg.final_survivors))
            last = keep_n <= cfg.final_survivors or (cfg.rounds is not None and r + 1 >= cfg.rounds)
            if last:
                keep_n = min(keep_n, cfg.final_survivors)
            epochs = {c.cid: (r - c.joined + 1) * cfg.epochs_per_round for c in pool}
            pool = self._decide(pool, epochs, r, keep_n)
            if last or not pool:
                break
            new = [] if cfg.sampler == "grid" else self.sampler.propose(p // 4, self._history())
            self.rounds[-1]["added"] = len(new)
            pool += [self._new(params, r + 1) for params in new]
            r += 1
        return pool

    def _select_hyperband(self) -> list[_Candidate]:
        cfg = self.config
        winners, r = [], 0
        for b, bracket in enumerate(_scaled_brackets(cfg.pool, cfg)):
            n = bracket[0][0]
            params = self.sampler.initial(n) if b == 0 else self.sampler.propose(n, self._history())
            pool = [self._new(p, r) for p in params]
            for i, (_, resource) in enumerate(bracket):
                keep_n = bracket[i + 1][0] if i + 1 < len(bracket) else len(pool)
                pool = self._decide(pool, {c.cid: resource for c in pool}, r, keep_n,
                                    dict(bracket=b, rung=i))
                r += 1
                if not pool:
                    break
            winners += pool
        # The brackets' winners all stand at max_resource: one joint ranking (no training) picks
        # the finalists.
        return self._decide(winners, {c.cid: c.epoch for c in winners}, r,
                            min(len(winners), cfg.final_survivors), dict(bracket=-1, rung=-1))

    def _final(self, survivors: list[_Candidate], r: int) -> None:
        cfg = self.config
        specs = {f"c{c.cid}-final": {"kind": "final", "candidate": c.cid, "params": c.params,
                                     "from": c.epoch, "epochs": cfg.final_epochs, "ls": False}
                 for c in survivors}
        results = self._run_units(specs, "final training")
        finalists = []
        for c in survivors:
            result = results[f"c{c.cid}-final"]
            for rec in result["records"]:
                c.records.append(dict(rec, phase="final", round=r))
            c.final = result
            if result["status"] == "failed":
                c.status = "failed"
                self.events.append(dict(round=r, candidate=c.cid, event="failed", score=math.inf,
                                        epoch=c.epoch, reason=result["reason"]))
            else:
                finalists.append(c)
        self.selected = min(finalists, key=lambda c: (c.final["valid_loss"], c.cid)) if finalists else None
        if self.selected is not None:
            c = self.selected
            self.events.append(dict(round=r, candidate=c.cid, event="selected",
                                    score=perplexity(c.final["valid_loss"]), epoch=c.epoch))

    # ----------------------------------------------------------- records
    def _summary(self, wall: float) -> dict:
        cfg = self.config
        rows = [rec for c in self.candidates for rec in c.records]

        def seconds(rec):
            return rec.get("train_seconds", 0.0) + rec.get("eval_seconds", 0.0) + rec.get("ls_seconds", 0.0)

        selection = sum(seconds(r) for r in rows if r["phase"] == "selection")
        ls_seconds = sum(r.get("ls_seconds", 0.0) for r in rows if r["phase"] == "selection")
        final = sum(seconds(r) for r in rows if r["phase"] == "final")
        sel = self.selected
        summary = {
            "selected": None if sel is None else sel.params,
            "selected_candidate": None if sel is None else sel.cid,
            "valid_ppl": None if sel is None else perplexity(sel.final["valid_loss"]),
            "test_ppl": None if sel is None else perplexity(sel.final["test_loss"]),
            "survivors": [{"candidate": c.cid, "params": c.params, "status": c.final["status"],
                           "valid_ppl": perplexity(c.final["valid_loss"]) if "valid_loss" in c.final else None,
                           "test_ppl": perplexity(c.final["test_loss"]) if "test_loss" in c.final else None}
                          for c in self.candidates if c.final is not None],
            "candidates": len(self.candidates),
            "failed": sum(c.status == "failed" for c in self.candidates),
            "rounds": len(self.rounds),
            "config": cfg.to_dict(),
            # summary.json is written with sorted keys; the space's order matters to the samplers,
            # so SearchConfig.from_json(summary["config_json"]) is the exact search.
            "config_json": cfg.to_json(),
            "study": self.study_name,
            "storage": _masked_url(self.storage_url),
            "device": str(self.device),
            "versions": versions(),
            "timings": {
                "selection_seconds": selection,
                "ls_seconds": ls_seconds,
                "ls_share": ls_seconds / selection if selection else 0.0,
                "final_seconds": final,
                "total_seconds": selection + final,
                "wall_seconds": wall,
                "note": "compute seconds summed over candidate-epochs (train + eval + LS) as stored; "
                        "wall_seconds is this process's wall time, waiting and resuming included",
            },
            "time_to_target_seconds": self._time_to_target(selection),
            "reference": None,
        }
        if self.reference is not None:
            ref = self.reference
            summary["reference"] = {
                "key": reference_key(cfg), "epochs": len(ref["records"]),
                "valid_ppl": perplexity(ref["valid_loss"]), "test_ppl": perplexity(ref["test_loss"]),
                "seconds": sum(seconds(r) for r in ref["records"]),
                "ls_info": ref["records"][-1].get("ls_info"),
            }
        return summary

    def _time_to_target(self, selection: float) -> float | None:
        """Fig. 3 (right) for LSH: the selection's compute time plus the survivors' final training,
        in lockstep, up to the first epoch at which the selected candidate's validation
        perplexity is at most ``target_ppl`` (just the selection's if it got there before);
        None when it never does."""
        target, sel = self.config.target_ppl, self.selected
        if target is None or sel is None:
            return None
        reached = [r["epoch"] for r in sel.records if r["valid_ppl"] <= target]
        if not reached:
            return None
        spent = sum(r.get("train_seconds", 0.0) + r.get("eval_seconds", 0.0)
                    for c in self.candidates if c.final is not None for r in c.records
                    if r["phase"] == "final" and r["epoch"] <= reached[0])
        return selection + spent

    def tables(self) -> dict[str, pd.DataFrame]:
        """The tidy records as DataFrames: epochs, rounds, events, reference."""
        names = list(self.space)
        rows = []
        for c in self.candidates:
            for rec in c.records:
                row = {"candidate": c.cid, "phase": rec["phase"], "round": rec["round"],
                       "bracket": rec.get("bracket"), "rung": rec.get("rung"), "epoch": rec["epoch"]}
                row.update({name: c.params[name] for name in names})
                for key in ("train_loss", "valid_loss", "valid_ppl", "density", "averaging",
                            "score", "distance", "same_epoch_distance", "embed_x", "embed_y",
                            "train_seconds", "eval_seconds", "ls_seconds"):
                    row[key] = rec.get(key, math.nan)
                # The schedule's death rate at this epoch; ``death_rate`` is the configuration's.
                row["death_rate_now"] = rec.get("death_rate", math.nan)
                row["status"] = "failed" if rec.get("failed") else "ok"
                rows.append(row)
        epochs = pd.DataFrame(rows)
        if self.config.sampler not in ("hyperband", "bohb") and not epochs.empty:
            epochs = epochs.drop(columns=["bracket", "rung"])
        events = pd.DataFrame(self.events)
        ref_rows = []
        if self.reference is not None:
            for rec in self.reference["records"]:
                ref_rows.append({k: rec.get(k, math.nan) for k in (
                    "epoch", "train_loss", "valid_loss", "valid_ppl", "train_seconds", "eval_seconds",
                    "ls_seconds")})
        return {"epochs": epochs, "rounds": pd.DataFrame(self.rounds), "events": events,
                "reference": pd.DataFrame(ref_rows)}

    def _ls_arrays(self) -> dict[str, np.ndarray]:
        cid, epoch, rnd, ls = [], [], [], []
        for c in self.candidates:
            for rec in c.records:
                if "ls" in rec:
                    cid.append(c.cid)
                    epoch.append(rec["epoch"])
                    rnd.append(rec["round"])
                    ls.append(rec["ls"])
        n = len(ls[0]) if ls else 0
        arrays = {"candidate": np.array(cid, dtype=np.int64), "epoch": np.array(epoch, dtype=np.int64),
                  "round": np.array(rnd, dtype=np.int64), "ls": np.array(ls, dtype=np.float64).reshape(len(ls), n)}
        if self.reference is not None:
            arrays["reference_ls"] = self.ref_ls_epochs
            arrays["reference_epoch"] = np.arange(1, len(self.ref_ls_epochs) + 1)
        return arrays

    def _write(self, summary: dict) -> None:
        tables = self.tables()
        for name, frame in tables.items():
            write_csv(self.out / f"{name}.csv", frame)
        buffer = io.BytesIO()
        np.savez_compressed(buffer, **self._ls_arrays())
        atomic_write(self.out / "ls.npz", buffer.getvalue())
        write_json(self.out / "summary.json", summary)

    def _ledger(self) -> None:
        """Write every candidate as a trial of the search's study, once (a unit of the queue):
        its params, its ranking measure per selection epoch as intermediate values, its records
        (LS vectors aside) as the ``records`` user attribute; COMPLETE with the final validation
        perplexity, PRUNED when removed, FAIL when failed."""
        def write(job):
            with quiet_optuna():
                study = optuna.create_study(storage=self.storage, study_name=self.study_name,
                                            load_if_exists=True, direction="minimize")
            known = {t.user_attrs.get("candidate") for t in study.get_trials(deepcopy=False)}
            distributions = self.space.to_optuna()
            for c in self.candidates:
                if c.cid in known:
                    continue
                records = [{k: v for k, v in rec.items() if k not in ("ls", "ls_info")} for rec in c.records]
                # Per epoch, the ranking's measure at that epoch (LS distance or validation loss).
                measure = "distance" if self.config.ranking == "ls" else "valid_loss"
                steps = {rec["epoch"]: rec[measure] for rec in c.records
                         if rec["phase"] == "selection" and math.isfinite(rec.get(measure, math.nan))}
                attrs = {"candidate": c.cid, "joined": c.joined, "records": records}
                if c.final is not None and c.final["status"] == "ok":
                    trial = optuna.trial.create_trial(
                        params=c.params, distributions=distributions, intermediate_values=steps,
                        value=perplexity(c.final["valid_loss"]), user_attrs=attrs)
                else:
                    state = optuna.trial.TrialState.FAIL if c.status == "failed" else optuna.trial.TrialState.PRUNED
                    trial = optuna.trial.create_trial(params=c.params, distributions=distributions,
                                                      intermediate_values=steps, state=state, user_attrs=attrs)
                study.add_trial(trial)
            return {"candidates": len(self.candidates)}

        self.queue.run({"ledger": {"kind": "ledger"}}, write)


# ------------------------------------------------------------------ entry points


def _worker(config_json: str, out: str, options: dict, ready) -> None:
    torch.set_num_threads(options.pop("threads"))
    search = LSHSearch(SearchConfig.from_json(config_json), out, progress=False, write_outputs=False,
                       **options)
    ready.set()
    search.run()


def run_search(config: SearchConfig, out, *, storage: str | None = None, workers: int = 1,
               device="auto", checkpoints=None, reference_dir=None, progress: bool | None = None,
               stale_after: float = 1800.0) -> dict:
    """Run one search (see :class:`LSHSearch`), with ``workers - 1`` extra local processes
    (spawned) cooperating through ``storage``, which must then be a journal file or a
    database. Returns the summary."""
    search = LSHSearch(config, out, storage=storage, device=device, checkpoints=checkpoints,
                       reference_dir=reference_dir, progress=progress, stale_after=stale_after)
    check_workers(search.storage_url, workers)
    if workers == 1:
        return search.run()
    own_threads = torch.get_num_threads()
    # The processes share the cores: each takes its part of this one's threads.
    threads = max(1, own_threads // workers) if search.device.type == "cpu" else own_threads
    options = dict(storage=search.storage_url, device=str(search.device), checkpoints=checkpoints,
                   reference_dir=reference_dir, stale_after=stale_after, threads=threads)
    context = multiprocessing.get_context("spawn")
    ready = [context.Event() for _ in range(1, workers)]
    procs = [context.Process(target=_worker, args=(search.config.to_json(), str(out), dict(options), event),
                             name=f"lshkit-worker-{i}") for i, event in enumerate(ready, 1)]
    for proc in procs:
        proc.start()
    try:
        # Start together, so that the first round is shared from its first unit on (a spawned
        # process needs seconds to import torch).
        while not all(e.is_set() or not p.is_alive() for e, p in zip(ready, procs)):
            time.sleep(0.05)
        torch.set_num_threads(threads)
        summary = search.run()
    finally:
        torch.set_num_threads(own_threads)
        for proc in procs:
            proc.join(timeout=60)
            if proc.is_alive():
                proc.terminate()
                proc.join()
    bad = [p.exitcode for p in procs if p.exitcode]
    if bad:
        raise RuntimeError(f"worker process(es) exited with code(s) {bad}")
    return summary


def train_reference(config: SearchConfig, *, device="auto", reference_dir=None) -> dict:
    """Train (or read from its cache) the dense reference of ``config`` without a search;
    returns its record: per-epoch records with the LS, ``valid_loss``, ``test_loss``."""
    device = resolve_device(device)
    cfg = config.resolved(device)
    root = Path(reference_dir or Path("results") / "reference")
    queue = JobQueue(optuna.storages.InMemoryStorage(), "reference")
    units = _Units(cfg, queue, device, root, root / reference_key(cfg))
    return queue.run({"reference": {"kind": "reference"}}, units)["reference"]


def full_training_search(config: SearchConfig, out, *, target_ppl: float | None = None,
                         max_candidates: int | None = None, storage: str | None = None,
                         device="auto", checkpoints=None, progress: bool | None = None) -> dict:
    """The loss-based full-training search of Fig. 3 (right): candidates proposed by
    ``config.sampler`` (the first by ``initial``, then ``propose`` with every finished
    candidate's best validation loss as its score) are trained one after another to
    ``final_epochs``, until one reaches validation perplexity ``target_ppl`` (default
    ``config.target_ppl``); that candidate stops at the epoch it does. At most
    ``max_candidates`` (default: the pool size). Records ``full_training.csv`` (one row per
    candidate-epoch with the cumulative compute seconds) and ``full_training.json``.
    Resumable like the search (its own jobs study in ``storage``)."""
    target = config.target_ppl if target_ppl is None else target_ppl
    if target is None or not target > 1:
        raise ValueError(f"target_ppl must be a perplexity > 1; got {target!r}")
    search = LSHSearch(dataclasses.replace(config, target_ppl=target), out, storage=storage,
                       device=device, checkpoints=checkpoints, progress=progress, _prefix="full")
    cfg = search.config
    limit = cfg.pool if max_candidates is None else max_candidates
    _int("max_candidates", limit)
    search._open()
    units = search.units

    def train_until_target(job):
        spec = job.spec
        trainer_cfg, sparse = units.candidate_configs(spec["params"])
        trainer = Trainer(trainer_cfg, units.corpus, sparse, device=search.device, progress=False)
        path = search.checkpoints / f"c{spec['candidate']:04d}.pt"
        if path.exists():
            trainer.load(path)
        status, reason = "ok", None
        while trainer.epoch < cfg.final_epochs and not any(r["valid_ppl"] <= target for r in trainer.history):
            try:
                trainer.train_epoch()
            except TrainingDiverged as err:
                status, reason = "failed", err.reason
                break
            trainer.save(path)
            search.queue.heartbeat(job.trial_id, epoch=trainer.epoch)
        return {"status": status, "reason": reason, "records": [_jsonable(r) for r in trainer.history]}

    history, rows, cumulative, reached = [], [], 0.0, None
    for i in range(limit):
        params = search.sampler.initial(1) if i == 0 else search.sampler.propose(1, history)
        if not params:
            break
        spec = {"kind": "full", "candidate": i, "params": params[0]}
        with units.threads():
            result = search.queue.run({f"full-c{i}": spec}, train_until_target)[f"full-c{i}"]
        best = math.inf
        for rec in result["records"]:
            cumulative += rec.get("train_seconds", 0.0) + rec.get("eval_seconds", 0.0)
            best = min(best, rec.get("valid_loss", math.inf))
            rows.append({"candidate": i, **params[0], "epoch": rec["epoch"], "valid_ppl": rec.get("valid_ppl"),
                         "train_seconds": rec.get("train_seconds"), "eval_seconds": rec.get("eval_seconds"),
                         "cumulative_seconds": cumulative, "status": "failed" if rec.get("failed") else "ok"})
            if reached is None and rec.get("valid_ppl", math.inf) <= target:
                reached = {"candidate": i, "params": params[0], "epoch": rec["epoch"],
                           "valid_ppl": rec["valid_ppl"], "time_to_target_seconds": cumulative}
        history.append(Observation(params[0], best if math.isfinite(best) else math.inf, True,
                                   len(result["records"])))
        if reached is not None:
            break
    summary = {"target_ppl": target, "reached": reached is not None, "result": reached,
               "candidates_trained": len(history), "total_seconds": cumulative,
               "config": cfg.to_dict(), "versions": versions()}
    write_csv(Path(out) / "full_training.csv", pd.DataFrame(rows))
    write_json(Path(out) / "full_training.json", summary)
    return summary
