"""Building an atlas: every candidate of its space trained once, its record written last.

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
``<root>/<name>/graphs.json``. They feed the predictor shoot-out (:mod:`lshkit.experiments.shootout`) and
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
from pathlib import Path

import numpy as np

from lshkit.checks import check_positive_int
from lshkit.io import atomic_write, read_json, versions, write_json
from lshkit.atlas.spec import ATLAS_ROOT, CONVENTIONS, GRAPHS_FILE, AtlasSpec, candidate_name, check_spec_file
from lshkit.atlas.table import load_atlas


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
    from lshkit.callbacks import timed_spectrum

    values, seconds = {}, {}
    with trainer.optimizer.averaged():
        for convention in CONVENTIONS:
            lam, seconds[convention], seconds[f"{convention}_cpu"], _ = timed_spectrum(
                trainer.model, tokens, convention, stable_warmup=True)
            values[convention] = lam.astype(np.float32)
    return values, seconds


def _ls_timing(seconds: dict) -> dict:
    return {f"ls_{c}_{kind}seconds": seconds.get(f"{c}_cpu" if kind else c, 0.0)
            for c in CONVENTIONS for kind in ("", "cpu_")}


def train_candidate(spec: AtlasSpec, params: dict | None, seed: int, corpus, device="cpu") -> dict:
    """Train one atlas candidate straight through; returns ``{"record", "ls", "timing", "graphs"}``
    (what :func:`_save` writes; ``graphs`` is None for the dense model, which has no masks)."""
    import torch

    from lshkit.dst import SparseConfig
    from lshkit.callbacks import GraphCallback, ls_tokens
    from lshkit.train import Trainer, TrainingDiverged

    cfg = spec.train_config(seed)
    sparse = None
    if params is not None:
        sparse = SparseConfig.at_sparsity(spec.sparsity, **params)
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
        write_json(folder / GRAPHS_FILE, result["graphs"])
    write_json(folder / "record.json", result["record"])  # last: marks the candidate finished


# ------------------------------------------------------------------------------ build


def forget(root: Path, spec: AtlasSpec, names, remove: bool = True) -> None:
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
    write_json(Path(folder) / GRAPHS_FILE,
               graph_candidate(spec, read_json(Path(folder) / "record.json"), _corpus(spec), epochs))
    return Path(folder).name


def _run_jobs(work, todo: list, workers: int, data_dir, desc: str, progress: bool | None) -> list[str]:
    """``work(job)`` for every job of ``todo`` in ``workers`` processes of one torch thread each
    (``spawn``, so a worker's state never depends on the parent's); returns the names done."""
    from tqdm.auto import tqdm

    from lshkit.env import auto_progress

    progress = auto_progress(progress)
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
    check_spec_file(root, spec)
    if rebuild:
        forget(root, spec, rebuild)
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
    :class:`lshkit.callbacks.GraphCallback` added to the epoch's record."""
    keys = [k for k in rec if k == "density" or k.startswith(("rnn.", "gap_")) or
            k in ("ramanujan_layers", "layers")]
    return {"epoch": rec["epoch"], "mask_hash": digest, **{k: rec[k] for k in keys}}


def graph_candidate(spec: AtlasSpec, record: dict, corpus, epochs: int, device="cpu") -> dict:
    """Retrain the sparse atlas candidate of ``record`` (its configuration and seed) up to epoch
    ``epochs`` (or its last) and take its masks' spectral gap and graph properties
    (:class:`lshkit.callbacks.GraphCallback`) at epoch 0 and after every epoch, where the atlas
    took its mask hashes: for an atlas whose build did not take them. Every hash must equal the
    recorded one, or the retraining did not reproduce the atlas (other code, library versions or
    CPU; see the module docstring): an error naming the candidate and epoch. Returns what
    ``graphs.json`` holds: ``name``, ``epochs`` (one row per epoch) and ``versions``."""
    from lshkit.dst import SparseConfig
    from lshkit.callbacks import GraphCallback
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
