"""Reading an atlas: :class:`Atlas`, what a replayed search asks of the records."""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from lshkit.checks import check_choice
from lshkit.io import read_json
from lshkit.atlas.spec import (CONVENTIONS, GRAPHS_FILE, SPEC_FILE, AtlasSpec, candidate_name, configuration_name,
                               stored_spec)


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
    if not (root / SPEC_FILE).exists():
        raise FileNotFoundError(f"no atlas at {root} (no {SPEC_FILE}); build one with "
                                "`python -m lshkit atlas build`")
    spec = stored_spec(root)
    records, timing, graphs = {}, {}, {}
    for p, s in spec.candidates():
        name = candidate_name(p, s)
        if (root / name / "record.json").exists():
            try:
                record = _read_candidate_json(root, name, "record.json")
                times = _read_candidate_json(root, name, "timing.json")
                graph = (_read_candidate_json(root, name, GRAPHS_FILE)
                         if (root / name / GRAPHS_FILE).exists() else None)
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
