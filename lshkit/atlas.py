"""LSH-Bench: a tabulated atlas of pruned candidates, trained once, on which searches replay.

As NAS-Bench-201 (Dong & Yang, ICLR 2020) does for architectures and HPOBench / YAHPO Gym do
for hyperparameters, the atlas trains every candidate of a finite search space once and
records everything a search could ask of it, so that any search (LSH, its loss-based baseline,
grid, random, TPE, ATPE, BOHB, Hyperband; :mod:`lshkit.replay`) can be replayed on the records
in seconds, with as many repeats as statistics need.

The space (:class:`AtlasSpec`): the authors' 24 methodological variants (paper §3.2: 2 sparse
inits × 4 death modes × 3 redistributions, growth random) × the death rates
``death_rates`` at sparsity ``sparsity``, each trained with seed ``seed``, plus the dense
reference; then seed replicates (``replicate_seeds``) of ``replicates`` candidates spread over
the grid and of the dense model, which measure the noise floor.

Every candidate trains straight through to its final epoch with the :class:`~lshkit.train.Trainer`
a real search uses (same death-rate and learning-rate schedules, SNT-ASGD), and its record holds,
at epoch 0 (before any training) and after every epoch: training loss, validation loss and
perplexity, the density and a hash of the masks, the LS in the paper convention (stable warm-up)
and in the full convention on K samples of T validation steps (raw vectors: embeddings are fitted
at replay time), and at the final epoch the test loss. The seconds are kept apart in
``timing.json``, since they are the only part that depends on the machine: wall seconds of
training, evaluation and each LS, and the process's CPU seconds of each (one thread per worker,
so CPU seconds are what the work costs even when the machine is shared, and what a replay's
simulated clock counts).

On one machine a record depends on its configuration and seed alone (seeded trainer, one torch
thread per worker): never on build order, worker count, or which other candidates exist. Another
CPU's kernels round differently, and prune/regrow turns the last bits into other masks within an
epoch or two: a rebuild there is statistically equal, not bit-equal. Each candidate is
its own small file set under ``<root>/<name>/`` (``record.json`` written last, so its presence
marks a finished candidate); a build skips what exists, so a killed build resumes and an atlas can
be completed over several sittings.

A sparse candidate's masks are not stored (only their hashes), so the build takes their graphs as
it trains: the spectral gap and graph properties at epoch 0 and after every epoch, in
``<root>/<name>/graphs.json``. They feed the predictor shoot-out (:mod:`lshkit.shootout`) and
the spectral-gap ranking (``ranking="gap"``) of a replayed search. An atlas built before the
build took them gets them by retraining (:func:`record_graphs`, ``python -m lshkit atlas
graphs``), with every mask hash checked against the record; that reproduces the masks only with
the build's code, library versions and CPU arithmetic (:func:`graph_candidate`).
"""
from __future__ import annotations

import hashlib
import io
import math
import os
import shutil
import socket
import time
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from lshkit.checks import check_choice, check_number, check_positive_int
from lshkit.io import JSONConfig, atomic_write, read_json, versions, write_json

__all__ = ["AtlasSpec", "Atlas", "build_atlas", "covering_variants", "record_graphs", "graph_candidate", "atlas_status",
           "load_atlas", "candidate_name", "configuration_name", "ATLAS_ROOT", "CONVENTIONS", "AtlasDamaged"]

#: Where ``python -m lshkit atlas`` keeps atlases, one folder per scale.
ATLAS_ROOT = Path("results") / "atlas"
#: Both LS conventions are recorded (:func:`lshkit.ls.model_spectrum`).
CONVENTIONS = ("paper", "full")
_SPEC_FILE = "atlas.json"
#: The dense model's validation perplexity after each full pass (seed 0, lr 40): 222.2, 176.3, 163.1,
#: 151.6, 149.8, 145.3, 145.4, 141.5, 145.2, 143.4. Its best so far first improves by less than
#: 1% an epoch over three epochs (the noise of SGD at lr 40 needs the three) after epoch 9.
PASS_EPOCHS = 9
_GRAPHS_FILE = "graphs.json"
#: The space's dimensions in one fixed order (names, grids and the samplers' draws depend on it,
#: and a spec read back from JSON has its keys sorted).
PARAMETERS = ("sparse_init", "growth", "death", "redistribution", "death_rate")


def _ordered(names) -> list[str]:
    return sorted(names, key=lambda n: (PARAMETERS.index(n) if n in PARAMETERS else len(PARAMETERS), n))


@dataclass
class AtlasSpec(JSONConfig):
    """The finite space an atlas covers and how each candidate is trained."""

    model: str = "lstm"                            # TrainConfig.model
    scale: str = "atlas"                           # TrainConfig preset (lshkit.train.TrainConfig.preset)
    sparsity: float = 0.67                         # Table A1 (stacked LSTM)
    death_rates: tuple = (0.4, 0.65, 0.9)          # spans the paper's [0.4, 0.9]
    seed: int = 0                                  # training seed of the main grid
    replicate_seeds: tuple = (1, 2, 3)             # extra training seeds for the noise floor
    replicates: int = 4                            # grid candidates re-trained with each replicate seed
    ls_samples: int = 2                            # K (Table A1's LS batch size)
    ls_steps: int = 35                             # T
    variants: dict | None = None                   # name -> choices of the methodological dimensions (None: the authors')
    variants_per_rate: dict | None = None          # death rate -> how many covering variants it holds (others: all)
    train_overrides: dict = field(default_factory=dict)  # TrainConfig fields changed from the preset

    def __post_init__(self):
        from lshkit.train import MODELS, SCALES

        self.death_rates = tuple(self.death_rates)
        self.replicate_seeds = tuple(self.replicate_seeds)
        check_choice("AtlasSpec.model", self.model, MODELS)
        check_choice("AtlasSpec.scale", self.scale, SCALES)
        check_number("AtlasSpec.sparsity", self.sparsity, low=0, high=1, high_open=True)
        if not self.death_rates:
            raise ValueError("AtlasSpec.death_rates must name at least one death rate")
        for rate in self.death_rates:
            check_number("AtlasSpec.death_rates entry", rate, low=0, high=1)
        for name in ("seed", "replicates"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                raise ValueError(f"AtlasSpec.{name}={value!r} is not valid; it must be an integer >= 0")
        for s in self.replicate_seeds:
            if isinstance(s, bool) or not isinstance(s, int) or s < 0 or s == self.seed:
                raise ValueError(f"AtlasSpec.replicate_seeds entry {s!r} is not valid; each must be an "
                                 f"integer >= 0 other than seed={self.seed}")
        if self.variants_per_rate is not None:
            # JSON keys are strings: one canonical spelling of each rate, so a spec read back equals it.
            per_rate = {}
            for rate, count in self.variants_per_rate.items():
                try:
                    key = float(rate)
                except (TypeError, ValueError):
                    key = None
                if key not in self.death_rates:
                    raise ValueError(f"AtlasSpec.variants_per_rate names death rate {rate!r}, which is not "
                                     f"one of death_rates {list(self.death_rates)}")
                check_positive_int(f"AtlasSpec.variants_per_rate[{rate!r}]", count)
                per_rate[repr(key)] = count
            self.variants_per_rate = dict(sorted(per_rate.items()))
        check_positive_int("AtlasSpec.ls_samples", self.ls_samples)
        check_positive_int("AtlasSpec.ls_steps", self.ls_steps)
        self.train_config()  # the overrides must make a valid TrainConfig
        if self.replicates > len(self.grid()):
            raise ValueError(f"AtlasSpec.replicates={self.replicates} exceeds the {len(self.grid())} "
                             "grid candidates")

    def to_dict(self) -> dict:
        d = super().to_dict()
        if d["variants_per_rate"] is None:  # left out, so atlases specified before the field keep their keys
            del d["variants_per_rate"]
        return d

    @classmethod
    def preset(cls, name: str) -> "AtlasSpec":
        """The atlas called ``name`` (:data:`PRESETS`); it lives in ``ATLAS_ROOT / name``."""
        check_choice("atlas", name, tuple(PRESETS))
        return cls(**PRESETS[name])

    def train_config(self, seed: int | None = None):
        from lshkit.train import TrainConfig

        base = TrainConfig.preset(self.scale, self.model)
        return base.replace(seed=self.seed if seed is None else seed, **self.train_overrides)

    def space(self):
        """The atlas grid as a :class:`~lshkit.search.space.SearchSpace` (death rate categorical over
        ``death_rates``): the space the samplers see when a search replays on this atlas once it
        is complete (:meth:`Atlas.space` while it is not). With ``variants_per_rate`` the grid is
        partial by design: at those death rates, that many :func:`covering_variants`."""
        from lshkit.search.space import Categorical, SearchSpace

        dims = {name: dim for name, dim in SearchSpace.authors().items() if name != "death_rate"}
        if self.variants is not None:
            dims = {name: Categorical(tuple(choices)) for name, choices in self.variants.items()}
        dims["death_rate"] = Categorical(tuple(float(r) for r in self.death_rates))
        full = SearchSpace({name: dims[name] for name in _ordered(dims)})
        if not self.variants_per_rate:
            return full
        variants = SearchSpace({k: v for k, v in full.items() if k != "death_rate"}).grid_points()
        chosen = {rate: covering_variants(variants, self.variants_per_rate.get(repr(rate), len(variants)))
                  for rate in full["death_rate"].values()}
        points = [p for p in full.grid_points()
                  if {k: v for k, v in p.items() if k != "death_rate"} in chosen[p["death_rate"]]]
        return SearchSpace(dict(full.items()), points=points)

    def grid(self) -> list[dict]:
        return self.space().grid_points()

    def replicate_params(self) -> list[dict]:
        """``replicates`` grid candidates evenly spread over the grid's order, so that the
        replicated ones differ in every dimension."""
        grid = self.grid()
        if self.replicates == 0:
            return []
        if self.replicates == 1:
            return [grid[0]]
        return [grid[round(i * (len(grid) - 1) / (self.replicates - 1))] for i in range(self.replicates)]

    def candidates(self) -> list[tuple[dict | None, int]]:
        """Every (params, seed) of the atlas, the dense model first (params None), then the grid,
        then the replicates."""
        out = [(None, self.seed)] + [(p, self.seed) for p in self.grid()]
        for s in self.replicate_seeds:
            out += [(None, s)] + [(p, s) for p in self.replicate_params()]
        return out


#: The atlases by name (their folder under :data:`ATLAS_ROOT`). ``atlas``: the first, committed,
#: whose epochs are 40,000 training tokens, so its E = 3 comes before the models leave the unigram
#: plateau. ``pass``: the paper's epoch, one full pass over PTB's training split, validated on the
#: whole validation split, for :data:`PASS_EPOCHS` epochs; every variant at death rate 0.65 (the
#: grid search's space) and twelve covering ones at 0.4 and 0.9 (:func:`covering_variants`), two
#: of them and the dense model with two more seeds: 55 trainings, sized to about 20 CPU-hours from
#: the measured 1,250 CPU-seconds a candidate. ``smoke``, ``cpu``, ``paper``: the full grid at
#: those TrainConfig presets.
PRESETS = {
    "atlas": dict(scale="atlas"),
    "pass": dict(scale="atlas", variants_per_rate={0.4: 12, 0.9: 12}, replicates=2, replicate_seeds=(1, 2),
                 train_overrides=dict(epoch_tokens=None, valid_tokens=None, epochs=PASS_EPOCHS)),
    "smoke": dict(scale="smoke"),
    "cpu": dict(scale="cpu"),
    "paper": dict(scale="paper"),
}


def covering_variants(variants: list[dict], count: int) -> list[dict]:
    """``count`` of ``variants`` (configurations in grid order) that cover every value of every
    dimension as evenly as ``count`` allows: each pick is the variant whose values have been
    picked least so far (the sum of their counts), the earliest in grid order on a tie. With 6 of
    the authors' 24: both inits three times, every death mode at least once, every redistribution
    twice. Deterministic, so an atlas spec names its configurations by ``count`` alone."""
    if count > len(variants):
        raise ValueError(f"{count} variants asked for; the space has {len(variants)}")
    counts, picked = {}, []
    remaining = list(variants)
    for _ in range(count):
        best = min(remaining, key=lambda v: sum(counts.get(item, 0) for item in v.items()))
        remaining.remove(best)
        picked.append(best)
        for item in best.items():
            counts[item] = counts.get(item, 0) + 1
    return [v for v in variants if v in picked]


def configuration_name(params: dict | None) -> str:
    """A configuration's readable name, the same for all its training seeds: ``dense`` or
    ``ER-random-global_magnitude-nonzeros-dr0.65``."""
    if params is None:
        return "dense"
    return "-".join(f"dr{params[k]:g}" if k == "death_rate" else str(params[k]) for k in _ordered(params))


def candidate_name(params: dict | None, seed: int) -> str:
    """A readable, unique folder name: ``dense-s0`` or ``ER-random-global_magnitude-nonzeros-dr0.65-s0``."""
    return f"{configuration_name(params)}-s{seed}"


# ------------------------------------------------------------------------------ files


def _write_npz(path: Path, arrays: dict[str, np.ndarray]) -> None:
    """np.savez_compressed, but byte-identical for identical arrays (zip entries get a fixed
    date, so two builds of one candidate give identical files)."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        for name, array in arrays.items():
            info = zipfile.ZipInfo(f"{name}.npy", date_time=(1980, 1, 1, 0, 0, 0))
            info.compress_type = zipfile.ZIP_DEFLATED
            payload = io.BytesIO()
            np.lib.format.write_array(payload, np.ascontiguousarray(array), allow_pickle=False)
            zf.writestr(info, payload.getvalue())
    atomic_write(path, buffer.getvalue())


def _mask_hash(trainer) -> str | None:
    if trainer.sparsity is None:
        return None
    digest = hashlib.sha256()
    for name in sorted(trainer.sparsity.masks):
        digest.update(name.encode())
        digest.update(trainer.sparsity.masks[name].cpu().numpy().tobytes())
    return digest.hexdigest()[:16]


def _nan_to_none(x):
    return None if x is None or (isinstance(x, float) and not math.isfinite(x)) else x


# ------------------------------------------------------------------------------ one candidate


def _spectra(trainer, tokens) -> tuple[dict, dict]:
    """The LS in both conventions on the weights the epoch was evaluated with (SNT-ASGD's averages
    once on), stable warm-up: values and seconds."""
    from lshkit.ls import model_spectrum

    values, seconds = {}, {}
    with trainer.optimizer.averaged():
        for convention in CONVENTIONS:
            start, cpu = time.perf_counter(), time.process_time()
            lam = model_spectrum(trainer.model, tokens, convention=convention, stable_warmup=True)
            values[convention] = lam.float().cpu().numpy()
            seconds[convention] = time.perf_counter() - start
            seconds[f"{convention}_cpu"] = time.process_time() - cpu
    return values, seconds


def _ls_timing(seconds: dict) -> dict:
    return {f"ls_{c}_{kind}seconds": seconds.get(f"{c}_cpu" if kind else c, 0.0)
            for c in CONVENTIONS for kind in ("", "cpu_")}


def train_candidate(spec: AtlasSpec, params: dict | None, seed: int, corpus, device="cpu") -> dict:
    """Train one atlas candidate straight through; returns ``{"record", "ls", "timing", "graphs"}``
    (what :func:`_save` writes; ``graphs`` is None for the dense model, which has no masks)."""
    import torch

    from lshkit.dst import SparseConfig
    from lshkit.tracking import GraphCallback, ls_tokens
    from lshkit.train import Trainer, TrainingDiverged

    cfg = spec.train_config(seed)
    sparse = None
    if params is not None:
        sparse = SparseConfig(density=round(1.0 - spec.sparsity, 12), **params)
    trainer = Trainer(cfg, corpus, sparse, device=device, progress=False)
    tokens = ls_tokens(corpus, spec.ls_samples, spec.ls_steps).to(trainer.device)

    ls = {c: [] for c in CONVENTIONS}
    epochs, timing, graph_rows = [], [], []
    status, reason = "ok", None
    graphs = GraphCallback(properties=True)

    def record_ls(trainer, record):
        lam, seconds = _spectra(trainer, tokens)
        for c in CONVENTIONS:
            ls[c].append(lam[c])
        record["_ls_seconds"] = seconds
        # The masks the epoch was trained and evaluated with, before this epoch's prune/regrow.
        record["mask_hash"] = _mask_hash(trainer)
        if sparse is not None:
            graphs(trainer, record)
            graph_rows.append(_graph_row(record, record["mask_hash"]))

    def tabulate(rec, cpu):
        """The epoch's row (record.json) and its seconds (timing.json); CPU seconds without the LS."""
        row = {k: _nan_to_none(rec.get(k)) for k in ("train_loss", "valid_loss", "valid_ppl", "density",
                                                      "death_rate", "lr", "averaging", "mask_hash")}
        row.update(epoch=rec["epoch"], test_loss=None, failed=status == "failed")
        seconds = rec.get("_ls_seconds", {})
        ls_cpu = sum(seconds.get(f"{c}_cpu", 0.0) for c in CONVENTIONS)
        timing.append(dict(epoch=rec["epoch"], train_seconds=rec.get("train_seconds", 0.0),
                           eval_seconds=rec.get("eval_seconds", 0.0),
                           cpu_seconds=time.process_time() - cpu - ls_cpu - rec.get("gap_seconds", 0.0),
                           **_ls_timing(seconds)))
        epochs.append(row)
        return row

    cpu = time.process_time()
    tabulate(trainer.record_initial([record_ls]), cpu)  # epoch 0, before any training
    while trainer.epoch < cfg.epochs:
        cpu = time.process_time()
        try:
            rec = trainer.train_epoch([record_ls])
        except TrainingDiverged as err:
            status, reason = "failed", err.reason
            rec = err.record
        row = tabulate(rec, cpu)
        if status == "ok" and not all(np.isfinite(ls[c][-1]).all() for c in CONVENTIONS):
            status, reason = "failed", f"non-finite Lyapunov spectrum after epoch {rec['epoch']}"
            row["failed"] = True
        if status != "ok":
            break
    test_seconds = test_cpu = 0.0
    if status == "ok":
        start, cpu = time.perf_counter(), time.process_time()
        epochs[-1]["test_loss"] = trainer.evaluate("test")
        test_seconds, test_cpu = time.perf_counter() - start, time.process_time() - cpu
    if status != "ok":  # the failed epoch's masks stay out, as a retraining stops before it
        graph_rows = [r for r in graph_rows if r["epoch"] < epochs[-1]["epoch"]]
    n = len(ls["paper"])
    record = {"name": candidate_name(params, seed), "params": params, "seed": seed, "status": status,
              "reason": reason, "train_config": cfg.to_dict(),
              "sparse_config": None if sparse is None else sparse.to_dict(),
              "ls_settings": {"K": spec.ls_samples, "T": spec.ls_steps, "stable_warmup": True,
                              "conventions": list(CONVENTIONS), "epochs_stored": n},
              "epochs": epochs}
    timing = {"epochs": timing, "test_seconds": test_seconds, "test_cpu_seconds": test_cpu, "host": socket.gethostname(),
              "threads": torch.get_num_threads(), "device": str(trainer.device),
              "load_average": list(os.getloadavg()), "versions": versions(),
              "finished": time.strftime("%Y-%m-%dT%H:%M:%S%z")}
    return {"record": record, "ls": {c: np.stack(ls[c]).astype(np.float32) for c in CONVENTIONS},
            "timing": timing,
            "graphs": None if sparse is None else {"name": record["name"], "epochs": graph_rows,
                                                   "versions": timing["versions"]}}


def _save(folder: Path, result: dict) -> None:
    _write_npz(folder / "ls.npz", result["ls"])
    write_json(folder / "timing.json", result["timing"])
    if result["graphs"] is not None:
        write_json(folder / _GRAPHS_FILE, result["graphs"])
    write_json(folder / "record.json", result["record"])  # last: marks the candidate finished


# ------------------------------------------------------------------------------ build


def _check_spec_file(root: Path, spec: AtlasSpec, write: bool = True) -> None:
    """``root`` holds no atlas (then the spec is written there, with ``write``) or one of ``spec``."""
    path = root / _SPEC_FILE
    if path.exists():
        stored = _stored_spec(root)
        if stored != spec:
            diff = {k: (getattr(stored, k), getattr(spec, k)) for k in spec.to_dict()
                    if getattr(stored, k) != getattr(spec, k)}
            preset = next((n for n in PRESETS if AtlasSpec(**PRESETS[n]) == stored), None)
            which = f"--scale {preset} builds it, or " if preset else ""
            raise ValueError(f"{root} holds an atlas of another specification (field: stored, asked "
                             f"= {diff}); {which}build into another folder")
    elif write:
        write_json(path, spec.to_dict())


def _stored_spec(root: Path) -> AtlasSpec:
    try:
        return AtlasSpec.from_dict(read_json(root / _SPEC_FILE))
    except (ValueError, TypeError) as err:  # cut JSON, or fields of no AtlasSpec
        raise ValueError(f"{root / _SPEC_FILE} is corrupt ({err}); restore it from the atlas's "
                         "repository or build into another folder") from None


def _forget(root: Path, spec: AtlasSpec, names, remove: bool = True) -> None:
    """Remove the folders of the candidates ``names`` (a damaged one, which atlas_status names), so
    that the build trains them again; an unknown name is an error naming the valid ones (checked
    alone with ``remove=False``)."""
    valid = [candidate_name(p, s) for p, s in spec.candidates()]
    unknown = [n for n in names if n not in valid]
    if unknown:
        raise ValueError(f"{unknown} are not candidates of the atlas at {root}; valid: {valid[:4]} ... "
                         f"({len(valid)}; `atlas status` names the damaged ones)")
    for name in names if remove else ():
        shutil.rmtree(root / name, ignore_errors=True)


_WORKER = {}


def _init_worker(data_dir):
    import torch

    torch.set_num_threads(1)
    _WORKER["data_dir"] = data_dir
    _WORKER["corpora"] = {}


def _init_pool_worker(data_dir):
    from lshkit.env import child_process_init

    child_process_init()
    _init_worker(data_dir)


def _corpus(spec: AtlasSpec):
    from lshkit.data import load_corpus

    name = spec.train_config().dataset
    if name not in _WORKER["corpora"]:
        _WORKER["corpora"][name] = load_corpus(name, root=_WORKER["data_dir"])
    return _WORKER["corpora"][name]


def _build_one(job) -> str:
    spec_json, params, seed, folder, device = job
    spec = AtlasSpec.from_json(spec_json)
    _save(Path(folder), train_candidate(spec, params, seed, _corpus(spec), device=device))
    return Path(folder).name


def _graph_one(job) -> str:
    spec_json, folder, epochs = job
    spec = AtlasSpec.from_json(spec_json)
    write_json(Path(folder) / _GRAPHS_FILE,
               graph_candidate(spec, read_json(Path(folder) / "record.json"), _corpus(spec), epochs))
    return Path(folder).name


def _run_jobs(work, todo: list, workers: int, data_dir, desc: str, progress: bool | None) -> list[str]:
    """``work(job)`` for every job of ``todo`` in ``workers`` processes of one torch thread each
    (``spawn``, so a worker's state never depends on the parent's); returns the names done."""
    from tqdm.auto import tqdm

    from lshkit.train import auto_progress

    progress = auto_progress() if progress is None else progress
    done = []
    with tqdm(total=len(todo), desc=desc, unit="candidate", disable=not progress) as bar:
        if workers == 1:
            _init_worker(data_dir)
            for job in todo:
                done.append(work(job))
                bar.update()
        else:
            from lshkit.env import spawn_pool

            with spawn_pool(workers, _init_pool_worker, (data_dir,)) as pool:  # Ctrl-C: this process stops them
                for name in pool.imap_unordered(work, todo):
                    done.append(name)
                    bar.update()
    return done


def _queue_builder(storage: str, spec_json: str, jobs: dict, data_dir, stale_after: float) -> list[str]:
    """One builder process on a shared storage: claims candidates from the queue until every one
    is finished by someone (:class:`lshkit.storage.JobQueue`); returns the names it built."""
    from lshkit.storage import JobQueue, open_storage

    _init_worker(data_dir)
    spec = AtlasSpec.from_json(spec_json)
    queue = JobQueue(open_storage(storage), f"atlas-{spec.scale}-{hashlib.sha256(spec_json.encode()).hexdigest()[:12]}",
                     stale_after=stale_after)
    built = []

    def work(job):
        folder = Path(job.spec["folder"])
        if not (folder / "record.json").exists():  # finished by a builder without this storage
            _build_one((spec_json, job.spec["params"], job.spec["seed"], str(folder), job.spec["device"]))
            built.append(folder.name)
        return {"name": folder.name}

    queue.run(jobs, work)
    lost = [name for name, job in jobs.items() if not (Path(job["folder"]) / "record.json").exists()]
    if lost:
        raise RuntimeError(f"the storage {storage} says {', '.join(lost)} were built, but their folders hold no "
                           "record.json: it served another build of this specification into another root; "
                           "use a fresh storage for this root")
    return built


def _queue_worker(args) -> list[str]:
    return _queue_builder(*args)


def build_atlas(spec: AtlasSpec, root=None, *, workers: int = 1, data_dir=None, limit: int | None = None,
                progress: bool | None = None, storage: str | None = None, device: str = "cpu",
                stale_after: float = 1800.0, rebuild: list[str] | None = None) -> list[str]:
    """Train every candidate of ``spec`` not yet in ``root`` (default ``results/atlas/<scale>``)
    in ``workers`` processes of one torch thread each; returns the names built (by this call's
    processes). ``limit``: build at most that many this time (the rest another time).

    ``storage`` (a journal file or database URL, :mod:`lshkit.storage`): the builders, in this
    call and in any other process or machine given the same storage and ``root`` (a shared file
    system), claim candidates from one queue, so each is trained once; a candidate whose builder
    died (on this host) or sent no heartbeat for ``stale_after`` seconds is taken over and
    trained again from the start. ``device``: where each candidate trains (a GPU machine's
    builders each take one). ``rebuild``: names of candidates whose folders are removed and built
    again, alone (damaged ones, which :func:`atlas_status` names)."""
    check_positive_int("workers", workers)
    if limit is not None:
        check_positive_int("limit", limit)
    root = Path(root or ATLAS_ROOT / spec.scale)
    _check_spec_file(root, spec)
    if rebuild:
        _forget(root, spec, rebuild)
    todo = [(spec.to_json(), p, s, str(root / candidate_name(p, s)), str(device)) for p, s in spec.candidates()
            if not (root / candidate_name(p, s) / "record.json").exists()]
    todo = [job for job in todo if Path(job[3]).name in rebuild] if rebuild else todo
    todo = todo[:limit] if limit is not None else todo
    if storage is None:
        return _run_jobs(_build_one, todo, workers, data_dir, f"atlas {spec.scale}", progress)
    from lshkit.storage import check_workers, open_storage

    check_workers(storage, workers)
    open_storage(storage)  # a storage that cannot be opened fails here, before any training
    jobs = {Path(folder).name: {"params": p, "seed": s, "folder": folder, "device": d}
            for _, p, s, folder, d in todo}
    args = (storage, spec.to_json(), jobs, data_dir, stale_after)
    if workers == 1:
        return _queue_builder(*args)
    from lshkit.env import spawn_pool

    with spawn_pool(workers) as pool:  # Ctrl-C: this process stops them
        return sorted(name for names in pool.map(_queue_worker, [args] * workers) for name in names)


# ------------------------------------------------------------------------------ the masks' graphs


def _last_good_epoch(record: dict) -> int:
    last = record["epochs"][-1]
    return last["epoch"] - 1 if last["failed"] else last["epoch"]


def _graph_row(rec: dict, digest: str) -> dict:
    """One row of ``graphs.json``: the epoch, its mask hash and what
    :class:`lshkit.tracking.GraphCallback` added to the epoch's record."""
    keys = [k for k in rec if k == "density" or k.startswith(("rnn.", "gap_")) or
            k in ("ramanujan_layers", "layers")]
    return {"epoch": rec["epoch"], "mask_hash": digest, **{k: rec[k] for k in keys}}


def graph_candidate(spec: AtlasSpec, record: dict, corpus, epochs: int, device="cpu") -> dict:
    """Retrain the sparse atlas candidate of ``record`` (its configuration and seed) up to epoch
    ``epochs`` (or its last) and take its masks' spectral gap and graph properties
    (:class:`lshkit.tracking.GraphCallback`) at epoch 0 and after every epoch, where the atlas
    took its mask hashes: for an atlas whose build did not take them. Every hash must equal the
    recorded one, or the retraining did not reproduce the atlas (other code, library versions or
    CPU; see the module docstring): an error naming the candidate and epoch. Returns what
    ``graphs.json`` holds: ``name``, ``epochs`` (one row per epoch) and ``versions``."""
    from lshkit.dst import SparseConfig
    from lshkit.tracking import GraphCallback
    from lshkit.train import Trainer, TrainingDiverged

    name = record["name"]
    if record["params"] is None:
        raise ValueError(f"atlas candidate {name!r} is dense: it has no masks")
    check_positive_int("epochs", epochs)
    stored = record["epochs"]
    last = min(epochs, _last_good_epoch(record))
    trainer = Trainer(spec.train_config(record["seed"]), corpus,
                      SparseConfig.from_dict(record["sparse_config"]), device=device, progress=False)
    rows = []
    graphs = GraphCallback(properties=True)

    def take(trainer, rec):
        graphs(trainer, rec)
        digest, expected = _mask_hash(trainer), stored[rec["epoch"]]["mask_hash"]
        if digest != expected:
            v = versions()
            raise RuntimeError(f"retraining atlas candidate {name!r} gave other masks at epoch "
                               f"{rec['epoch']} (hash {digest}, recorded {expected}): the atlas was "
                               "built with other code, library versions or CPU (its timing.json "
                               f"names them; this process: torch {v['torch']}, numpy {v['numpy']}, "
                               f"{v['cpu']} with {v['cpu_capability']})")
        rows.append(_graph_row(rec, digest))

    trainer.record_initial([take])
    while trainer.epoch < last:
        try:
            trainer.train_epoch([take])
        except TrainingDiverged:
            break  # the record says so too; the epochs before it stand
    return {"name": name, "epochs": rows, "versions": versions()}


def record_graphs(root, epochs: int, *, workers: int = 1, data_dir=None, limit: int | None = None,
                  progress: bool | None = None) -> list[str]:
    """Take the masks' graphs (:func:`graph_candidate`, by retraining) of every sparse candidate of
    the atlas at ``root`` whose ``graphs.json`` stops before epoch ``epochs``; returns the names
    done. Each candidate's file is written when it finishes, so a killed run resumes."""
    check_positive_int("epochs", epochs)
    check_positive_int("workers", workers)
    if limit is not None:
        check_positive_int("limit", limit)
    atlas = load_atlas(root)
    todo = []
    for name, rec in atlas.records.items():
        if rec["params"] is None:
            continue
        want = min(epochs, _last_good_epoch(rec))
        taken = atlas.graphs.get(name, {}).get("epochs", [])
        if not taken or taken[-1]["epoch"] < want:
            todo.append((atlas.spec.to_json(), str(atlas.root / name), epochs))
    todo = todo[:limit] if limit is not None else todo
    return _run_jobs(_graph_one, todo, workers, data_dir, f"mask graphs to epoch {epochs}", progress)


# ------------------------------------------------------------------------------ load


@dataclass
class Atlas:
    """A loaded atlas: ``spec``, ``records`` (name -> record.json), ``timing`` (name ->
    timing.json), ``graphs`` (name -> graphs.json, where taken) and the LS arrays on demand
    (:meth:`ls`)."""

    root: Path
    spec: AtlasSpec
    records: dict
    timing: dict
    graphs: dict = field(default_factory=dict)
    _ls: dict = field(default_factory=dict, repr=False)

    def name(self, params: dict | None, seed: int) -> str:
        return candidate_name(params, seed)

    def space(self):
        """The space a search replayed on this atlas sees: the spec's grid
        (:meth:`AtlasSpec.space`), restricted, while the atlas is being built, to the
        configurations recorded with the main seed (a partial :class:`~lshkit.search.space.SearchSpace`:
        the samplers redraw any other)."""
        from lshkit.search.space import SearchSpace

        space = self.spec.space()
        recorded = [p for p in space.grid_points() if candidate_name(p, self.spec.seed) in self.records]
        if len(recorded) == space.size():
            return space
        if not recorded:
            raise ValueError(f"the atlas at {self.root} has no pruned candidate yet: build some with "
                             f"`python -m lshkit atlas build`")
        return SearchSpace(dict(space.items()), points=recorded)

    def record(self, params: dict | None, seed: int) -> dict:
        """The record of (params, seed); a clear error naming the candidate if the atlas lacks it."""
        name = candidate_name(params, seed)
        if name not in self.records:
            raise KeyError(f"the atlas at {self.root} has no candidate {name!r} "
                           f"(params {params}, seed {seed}): build it with "
                           f"`python -m lshkit atlas build --scale {self.spec.scale}`")
        return self.records[name]

    def ls(self, name: str, convention: str = "paper") -> np.ndarray:
        """``[epochs + 1, N]`` LS of candidate ``name`` (row 0 before training), float32 as stored."""
        check_choice("convention", convention, CONVENTIONS)
        if name not in self._ls:
            try:
                with np.load(self.root / name / "ls.npz") as data:
                    self._ls[name] = {c: data[c] for c in CONVENTIONS}
            except Exception as err:  # cut or altered zip (BadZipFile, Bad CRC-32, zlib), a missing array
                raise AtlasDamaged(self.root, name, "ls.npz", _unreadable(err)) from None
        return self._ls[name][convention]

    def graph(self, name: str, epoch: int) -> dict:
        """The masks' graph row of candidate ``name`` at ``epoch`` (:func:`graph_candidate`); a
        clear error if it was not taken."""
        rows = self.graphs.get(name, {}).get("epochs", [])
        if epoch >= len(rows):
            taken = f"up to epoch {len(rows) - 1}" if rows else "not at all"
            raise KeyError(f"the atlas at {self.root} has the mask graphs of {name!r} {taken}; epoch "
                           f"{epoch} is asked for: take them with `python -m lshkit atlas graphs "
                           f"--root {self.root} --epochs {epoch}`")
        return rows[epoch]

    def graph_epochs(self) -> pd.DataFrame:
        """One row per sparse candidate-epoch whose mask graphs were taken: name, seed, the
        configuration, epoch, spectral gap summary and graph properties."""
        rows = [{"name": name, "seed": self.records[name]["seed"], **self.records[name]["params"], **row}
                for name, g in self.graphs.items() for row in g["epochs"]]
        return pd.DataFrame(rows).drop(columns="mask_hash") if rows else pd.DataFrame()

    def epochs(self) -> pd.DataFrame:
        """One row per candidate-epoch: name, seed, the configuration (NaN for the dense model),
        losses, perplexities, density, and the recorded seconds."""
        rows = []
        for name, rec in self.records.items():
            params = rec["params"] or {}
            for e, t in zip(rec["epochs"], self.timing[name]["epochs"]):
                row = {"name": name, "seed": rec["seed"], "dense": rec["params"] is None, **params, **e, **t}
                row.pop("mask_hash", None)
                row["epoch"] = e["epoch"]
                row["test_ppl"] = math.exp(e["test_loss"]) if e["test_loss"] is not None else math.nan
                rows.append(row)
        frame = pd.DataFrame(rows)
        for col in ("train_loss", "valid_loss", "valid_ppl", "test_loss", "death_rate"):
            if col in frame:
                frame[col] = pd.to_numeric(frame[col], errors="coerce")
        return frame

    def candidates(self) -> pd.DataFrame:
        """One row per candidate: its name, configuration (its name without the seed, and its
        parameters), seed, status, final validation and test perplexity, and its CPU seconds (all
        of it, and each LS)."""
        rows = []
        for name, rec in self.records.items():
            last = rec["epochs"][-1]
            t = self.timing[name]
            rows.append({"name": name, "configuration": configuration_name(rec["params"]),
                         "seed": rec["seed"], "dense": rec["params"] is None,
                         **(rec["params"] or {}), "status": rec["status"], "epochs": last["epoch"],
                         "valid_ppl": last["valid_ppl"] if last["valid_ppl"] is not None else math.nan,
                         "test_ppl": math.exp(last["test_loss"]) if last["test_loss"] is not None else math.nan,
                         "cpu_seconds": _cpu_seconds(t),
                         **{f"ls_{c}_cpu_seconds": sum(e[f"ls_{c}_cpu_seconds"] for e in t["epochs"])
                            for c in CONVENTIONS}})
        return pd.DataFrame(rows)


def _cpu_seconds(timing: dict) -> float:
    """A candidate's whole cost in CPU seconds: training, evaluation, both LS, the test."""
    return timing["test_cpu_seconds"] + sum(e["cpu_seconds"] + sum(e[f"ls_{c}_cpu_seconds"] for c in CONVENTIONS)
                                            for e in timing["epochs"])


class AtlasDamaged(ValueError):
    """A candidate's file that cannot be read as the build wrote it (cut, altered, short): one
    line naming the candidate, the file and the command that rebuilds that candidate alone."""

    def __init__(self, root, name: str, file: str, cause: str):
        self.root, self.name, self.file, self.cause = Path(root), name, file, cause
        super().__init__(f"atlas candidate {name!r} is damaged: {Path(root) / name / file} {cause}; rebuild it "
                         f"with `python -m lshkit atlas build --root {root} --rebuild {name}`")

    def __reduce__(self):  # raised in a replay's worker process, re-raised in the parent
        return type(self), (self.root, self.name, self.file, self.cause)


def _unreadable(err: Exception) -> str:
    words = " ".join(str(err).split())
    return f"is corrupt ({type(err).__name__}: {words})" if words else f"is corrupt ({type(err).__name__})"


def _read_candidate_json(root: Path, name: str, file: str):
    try:
        return read_json(root / name / file)
    except FileNotFoundError:
        raise AtlasDamaged(root, name, file, "is missing") from None
    except ValueError as err:  # cut or altered JSON (JSONDecodeError, UnicodeDecodeError)
        raise AtlasDamaged(root, name, file, _unreadable(err)) from None


def load_atlas(root, damaged: dict | None = None) -> Atlas:
    """Read the atlas at ``root`` (a folder written by :func:`build_atlas`). Missing candidates
    are allowed here (see :func:`atlas_status`); asking for one is a clear error. A candidate
    whose JSON files cannot be read raises :class:`AtlasDamaged`, or, given a dict ``damaged``, is
    left out and recorded there (name -> the error)."""
    root = Path(root)
    if not (root / _SPEC_FILE).exists():
        raise FileNotFoundError(f"no atlas at {root} (no {_SPEC_FILE}); build one with "
                                "`python -m lshkit atlas build`")
    spec = _stored_spec(root)
    records, timing, graphs = {}, {}, {}
    for p, s in spec.candidates():
        name = candidate_name(p, s)
        if (root / name / "record.json").exists():
            try:
                record = _read_candidate_json(root, name, "record.json")
                times = _read_candidate_json(root, name, "timing.json")
                graph = (_read_candidate_json(root, name, _GRAPHS_FILE)
                         if (root / name / _GRAPHS_FILE).exists() else None)
            except AtlasDamaged as err:
                if damaged is None:
                    raise
                damaged[name] = err
                continue
            records[name], timing[name] = record, times
            if graph is not None:
                graphs[name] = graph
    return Atlas(root, spec, records, timing, graphs)


def _check_candidate(atlas: Atlas, name: str) -> None:
    """What a replay reads of candidate ``name``, checked: an :class:`AtlasDamaged` if its record
    stops short of the atlas's epochs (status ok), its timing rows do not match its epochs, or its
    LS arrays cannot be read or have other than one row per recorded epoch."""
    record, rows = atlas.records[name], len(atlas.records[name]["epochs"])
    epochs = atlas.spec.train_config(record["seed"]).epochs
    if record["status"] == "ok" and rows != epochs + 1:
        raise AtlasDamaged(atlas.root, name, "record.json", f"has epochs 0-{rows - 1}, while the atlas trains "
                           f"{epochs} and the record says it finished")
    if len(atlas.timing[name]["epochs"]) != rows:
        raise AtlasDamaged(atlas.root, name, "timing.json", f"has {len(atlas.timing[name]['epochs'])} rows "
                           f"for the record's {rows} epochs")
    stored = record["ls_settings"]["epochs_stored"]
    for convention in CONVENTIONS:
        shape = atlas.ls(name, convention).shape
        if shape[0] != stored or (record["status"] == "ok" and stored != rows):
            raise AtlasDamaged(atlas.root, name, "ls.npz", f"holds {shape[0]} {convention} rows, while the "
                               f"record has {rows} epochs (LS of {stored} stored)")


def atlas_status(root) -> dict:
    """What is done and what is missing, with the measured seconds per candidate, and the last
    epoch of each sparse candidate's mask graphs (``graph_epochs``; -1 where none were taken).
    Every file a replay reads is opened and checked (:func:`_check_candidate`): ``damaged`` maps
    each candidate that fails to the one-line error naming its file and how to rebuild it; it
    counts as neither done nor missing, and the atlas is not complete until it is rebuilt."""
    errors = {}
    atlas = load_atlas(root, damaged=errors)
    for name in atlas.records:
        try:
            _check_candidate(atlas, name)
        except AtlasDamaged as err:
            errors[name] = err
    names = [candidate_name(p, s) for p, s in atlas.spec.candidates()]
    done = [n for n in names if n in atlas.records and n not in errors]
    seconds = [_cpu_seconds(atlas.timing[n]) for n in done]
    mean = float(np.mean(seconds)) if seconds else math.nan
    return {"root": str(atlas.root), "scale": atlas.spec.scale, "total": len(names), "done": len(done),
            "missing": [n for n in names if n not in atlas.records and n not in errors],
            "complete": len(done) == len(names),
            "damaged": {n: str(errors[n]) for n in names if n in errors},
            "failed": [n for n in done if atlas.records[n]["status"] != "ok"],
            "seconds_per_candidate": mean, "seconds_total": float(np.sum(seconds)),
            "remaining_seconds_one_worker": mean * (len(names) - len(done)),
            "graph_epochs": {n: len(atlas.graphs.get(n, {}).get("epochs", [])) - 1
                             for n in done if atlas.records[n]["params"] is not None}}
