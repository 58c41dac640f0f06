"""LSH-Bench for other optimisers: any atlas (:mod:`lshkit.atlas`) seen as a tabulated blackbox.

The shape is that of Syne Tune's blackbox repository (``BlackboxTabular``), HPOBench's tabular
benchmarks, YAHPO Gym and mf-prior-bench: a configuration space, a fidelity (the epoch, 0..N),
objectives per configuration, fidelity and training seed, and the cost of reaching each fidelity
on a simulated clock. Like NAS-Bench-201, every configuration was trained once and recorded; a
query reads the record and trains nothing.

* the configuration space is the atlas's grid (:meth:`lshkit.atlas.Atlas.space`: 2 sparse inits ×
  4 death modes × 3 redistributions × the death rates, growth random, paper §3.2), partial
  (``space.points`` set) while the atlas is being built;
* the fidelity is the epoch; epoch 0 is the initial evaluation, before any training;
* the objectives (:data:`OBJECTIVES`): validation loss and perplexity, training loss, test loss
  and perplexity (recorded at the last epoch only: NaN at every other), density, and the
  recorded CPU seconds; the LS in both conventions (:meth:`Bench.ls`, paper §3.1, Eq. 1) and the
  masks' graph properties where taken (:meth:`Bench.graph`);
* the seed axis: the atlas's training seeds (the main seed for every configuration, more for
  its replicates); :meth:`Bench.objective` answers for one seed, their mean, or one drawn by a
  caller's generator.

A configuration, seed or epoch the atlas does not hold is an error naming it and the valid ones,
never a silently substituted neighbour. :func:`export` writes an atlas as parquet tables with
their metadata and a SHA-256 manifest (``python -m lshkit atlas export``); :func:`load_export`
reads them back after checking every file's hash. The Optuna driver and the comparison with
LSH live in :mod:`lshkit.bench_optuna`.
"""
from __future__ import annotations

import hashlib
import io
import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from lshkit.atlas import (ATLAS_ROOT, CONVENTIONS, PARAMETERS, Atlas, AtlasSpec, candidate_name,
                          configuration_name, load_atlas)
from lshkit.checks import check_choice, check_int
from lshkit.io import atomic_write, read_json, versions, write_json

__all__ = ["Bench", "load", "export", "load_export", "verify_manifest", "OBJECTIVES", "SEED_MODES",
           "MANIFEST", "CITATION"]

#: What :meth:`Bench.objective` returns, with units. ``elapsed_seconds`` is the benchmark's cost.
OBJECTIVES = {
    "valid_loss": "nats per token on the atlas's validation tokens",
    "valid_ppl": "exp(valid_loss)",
    "train_loss": "nats per token, mean over the epoch's training windows (NaN at epoch 0)",
    "test_loss": "nats per token on the whole test split, at the last epoch only (NaN elsewhere)",
    "test_ppl": "exp(test_loss), at the last epoch only (NaN elsewhere)",
    "density": "fraction of the masked weights active (1 for the dense model)",
    "epoch_seconds": "recorded CPU seconds of this epoch: training and validation (+ the LS asked for)",
    "elapsed_seconds": "recorded CPU seconds of epochs 0..epoch (+ the LS asked for): the simulated clock",
}
#: What ``seed=`` takes besides a training seed.
SEED_MODES = ("mean", "sample")
#: The file of an export that holds every other file's SHA-256 (``sha256sum -c`` reads it).
MANIFEST = "SHA256SUMS"
CITATION = {
    "text": "Zheng & Shlizerman, Hyperpruning: Efficient Search through Pruned Variants of Recurrent "
            "Neural Networks Leveraging Lyapunov Spectrum, arXiv 2506.07975",
    "url": "https://arxiv.org/abs/2506.07975",
    "bibtex": "@article{zheng2025hyperpruning,\n  title={Hyperpruning: Efficient Search through Pruned "
              "Variants of Recurrent Neural Networks Leveraging Lyapunov Spectrum},\n  author={Zheng, "
              "Caleb and Shlizerman, Eli},\n  journal={arXiv preprint arXiv:2506.07975},\n  year={2025}\n}",
}
_FORMAT = 1
_COLUMNS = ("train_loss", "valid_loss", "valid_ppl", "test_loss", "density", "failed", "cpu_seconds",
            *(f"ls_{c}_cpu_seconds" for c in CONVENTIONS))
_TABLES = {"configurations": "configurations.parquet", "objectives": "objectives.parquet",
           "ls": "ls.parquet", "graphs": "graphs.parquet"}


def _float(x) -> float:
    return math.nan if x is None else float(x)


@dataclass
class Bench:
    """A tabulated view of one atlas (module docstring). Build it with :func:`load` or
    :func:`load_export`; every answer is read from the records."""

    name: str
    spec: AtlasSpec
    space: object                       # lshkit.search.space.SearchSpace, partial while the atlas is built
    params: dict                        # configuration name -> its parameters (None: dense)
    curves: dict = field(repr=False)    # (configuration name, seed) -> {column: array over epochs}
    reasons: dict = field(repr=False)   # (configuration name, seed) -> why its training stopped early
    _ls: object = field(repr=False, default=None)      # (candidate name, convention) -> [epochs + 1, N]
    _graph: object = field(repr=False, default=None)   # (candidate name, epoch) -> graph row

    # ------------------------------------------------------------------ the space
    @property
    def fidelities(self) -> list[int]:
        """The epochs a configuration is recorded at: 0 (before training) to the atlas's last."""
        return list(range(self.spec.train_config().epochs + 1))

    @property
    def objectives(self) -> tuple[str, ...]:
        return tuple(OBJECTIVES)

    def configurations(self) -> list[dict]:
        """Every configuration of the space (grid order; a partial space's recorded ones)."""
        return self.space.grid_points()

    def configuration(self, config) -> str:
        """The name of ``config`` (a dict of the space's parameters, its name, or None / "dense"
        for the dense reference); a ValueError naming a value outside the space, a KeyError
        naming a configuration the atlas has not recorded, each with the valid ones."""
        if config is None or config == "dense":
            name = "dense"
        elif isinstance(config, str):
            name = config
        else:
            full = self.spec.space()
            try:
                full.validate(config)
            except ValueError as err:
                valid = {k: dim.values() for k, dim in full.items()}
                raise ValueError(f"{err}; valid values: {valid}") from None
            name = configuration_name(full.snap(config))
        if name not in self.params:
            raise KeyError(f"the atlas {self.name!r} has no configuration {name!r}; it has "
                           f"{len(self.params)}: {sorted(self.params)}")
        return name

    def seeds(self, config) -> list[int]:
        """The training seeds the atlas recorded ``config`` with."""
        name = self.configuration(config)
        return sorted(s for n, s in self.curves if n == name)

    # ------------------------------------------------------------------ queries
    def _seed(self, name: str, seed, rng) -> list[int]:
        seeds = sorted(s for n, s in self.curves if n == name)
        if seed is None:
            seed = self.spec.seed
        if isinstance(seed, str):
            check_choice("seed", seed, SEED_MODES)
            if seed == "mean":
                return seeds
            if rng is None:
                raise ValueError("seed='sample' needs rng (a numpy Generator or an int seed): a draw "
                                 "without one could not be repeated")
            rng = rng if isinstance(rng, np.random.Generator) else np.random.default_rng(rng)
            return [int(seeds[rng.integers(len(seeds))])]
        if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)):
            raise ValueError(f"seed={seed!r} is not valid; give a training seed of {name!r} "
                             f"({seeds}) or one of {list(SEED_MODES)}")
        if int(seed) not in seeds:
            raise KeyError(f"the atlas {self.name!r} has no training seed {seed} of {name!r}; its seeds "
                           f"are {seeds} (or seed='mean' / 'sample')")
        return [int(seed)]

    def _ls_conventions(self, ls_seconds) -> tuple:
        if ls_seconds is None:
            return ()
        conventions = (ls_seconds,) if isinstance(ls_seconds, str) else tuple(ls_seconds)
        for c in conventions:
            check_choice("ls_seconds", c, CONVENTIONS)
        return conventions

    def curve(self, config, seed=None, *, ls_seconds=None) -> pd.DataFrame:
        """Every recorded epoch of ``config`` with training seed ``seed`` (default the atlas's main
        seed): one row per epoch, the columns of :data:`OBJECTIVES` and ``failed``.
        ``ls_seconds``: a convention ("paper", "full") or both, whose LS seconds the clock adds
        (a search that ranks by the LS pays for it every epoch, epoch 0 included)."""
        name = self.configuration(config)
        if isinstance(seed, str):
            raise ValueError(f"seed={seed!r}: curve() reads one training; give one of {self.seeds(name)} "
                             "(objective() takes 'mean' and 'sample')")
        (seed,) = self._seed(name, seed, None)
        c = self.curves[(name, seed)]
        epoch_seconds = c["cpu_seconds"] + sum(c[f"ls_{v}_cpu_seconds"] for v in self._ls_conventions(ls_seconds))
        frame = pd.DataFrame({"epoch": np.arange(len(c["valid_loss"])), "train_loss": c["train_loss"],
                              "valid_loss": c["valid_loss"], "valid_ppl": c["valid_ppl"],
                              "test_loss": c["test_loss"], "test_ppl": np.exp(c["test_loss"]),
                              "density": c["density"], "epoch_seconds": epoch_seconds,
                              "elapsed_seconds": np.cumsum(epoch_seconds), "failed": c["failed"]})
        return frame.assign(configuration=name, seed=seed)

    def objective(self, config, epoch: int, seed=None, *, rng=None, ls_seconds=None) -> dict:
        """The objectives of ``config`` at ``epoch`` (:data:`OBJECTIVES`).

        ``seed``: a training seed the atlas holds for ``config`` (default its main seed);
        ``"mean"``: the mean of every objective over the seeds the atlas trained ``config`` with
        (perplexities averaged as perplexities); ``"sample"``: one of those seeds drawn uniformly
        by ``rng`` (a numpy Generator or an int), named in the answer's ``seed``.
        ``test_loss`` and ``test_ppl`` exist at the last epoch only: NaN at every other epoch
        (the atlas evaluates the test split once, at the end, as a search does for its pick).
        ``elapsed_seconds`` is the recorded CPU seconds of epochs 0..``epoch`` (training and
        validation; plus the LS of ``ls_seconds``' conventions), so it grows with the epoch.
        An epoch past a record (a training that diverged stops early) is an error naming the
        record's last epoch and why it stopped."""
        name = self.configuration(config)
        seeds = self._seed(name, seed, rng)
        check_int("epoch", epoch, low=0)
        last = self.fidelities[-1]
        if epoch > last:
            raise ValueError(f"epoch={epoch} is past the atlas {self.name!r}'s record: its fidelities are "
                             f"epochs 0..{last}")
        conventions = self._ls_conventions(ls_seconds)
        rows = []
        for s in seeds:
            c = self.curves[(name, s)]
            stored = len(c["valid_loss"]) - 1
            if epoch > stored:
                raise ValueError(f"{candidate_name(self.params[name], s)} of the atlas {self.name!r} stops at "
                                 f"epoch {stored} ({self.reasons.get((name, s)) or 'not trained further'}); "
                                 f"epoch {epoch} is asked for")
            per_epoch = c["cpu_seconds"][: epoch + 1] + sum(c[f"ls_{v}_cpu_seconds"][: epoch + 1] for v in conventions)
            rows.append({"train_loss": c["train_loss"][epoch], "valid_loss": c["valid_loss"][epoch],
                         "valid_ppl": c["valid_ppl"][epoch], "test_loss": c["test_loss"][epoch],
                         "test_ppl": math.exp(c["test_loss"][epoch]), "density": c["density"][epoch],
                         "epoch_seconds": per_epoch[-1], "elapsed_seconds": per_epoch.sum(),
                         "failed": bool(c["failed"][epoch])})
        out = {k: float(np.mean([r[k] for r in rows])) for k in OBJECTIVES}
        out.update(configuration=name, epoch=epoch, failed=any(r["failed"] for r in rows),
                   seed="mean" if seed == "mean" else seeds[0], seeds=seeds)
        return out

    def ls(self, config, epoch: int | None = None, seed=None, convention: str = "paper") -> np.ndarray:
        """The LS of ``config`` (training seed ``seed``, default the main one) in ``convention``:
        ``[epochs + 1, N]`` over every recorded epoch, or the vector at ``epoch`` (float32 as
        stored; paper §3.1, Eq. 1; conventions as :func:`lshkit.ls.model_spectrum`)."""
        check_choice("convention", convention, CONVENTIONS)
        name = self.configuration(config)
        if isinstance(seed, str):
            raise ValueError(f"seed={seed!r}: an LS belongs to one training; give one of {self.seeds(name)}")
        (seed,) = self._seed(name, seed, None)
        values = self._ls(candidate_name(self.params[name], seed), convention)
        if epoch is None:
            return values
        check_int("epoch", epoch, low=0)
        if epoch >= len(values):
            raise ValueError(f"the LS of {candidate_name(self.params[name], seed)} is recorded for epochs "
                             f"0..{len(values) - 1}; epoch {epoch} is asked for")
        return values[epoch]

    def graph(self, config, epoch: int, seed=None) -> dict:
        """The masks' spectral gap and graph properties of ``config`` at ``epoch`` where the atlas
        took them (:meth:`lshkit.atlas.Atlas.graph`); a KeyError saying up to which epoch otherwise."""
        name = self.configuration(config)
        if name == "dense":
            raise KeyError("the dense model has no masks, so no mask graphs")
        (seed,) = self._seed(name, seed, None)
        check_int("epoch", epoch, low=0)
        return self._graph(candidate_name(self.params[name], seed), epoch)

    # ------------------------------------------------------------------ tables
    def table(self) -> pd.DataFrame:
        """Every recorded (configuration, seed, epoch): the objectives, ``cpu_seconds`` (the epoch's
        training and validation), ``elapsed_seconds`` (their sum over epochs 0..epoch, without LS)
        and the LS seconds of each convention."""
        frames = []
        for (name, seed), c in self.curves.items():
            frame = self.curve(name, seed).rename(columns={"epoch_seconds": "cpu_seconds"})
            for conv in CONVENTIONS:
                frame[f"ls_{conv}_cpu_seconds"] = c[f"ls_{conv}_cpu_seconds"]
            frames.append(frame)
        out = pd.concat(frames, ignore_index=True)
        first = ["configuration", "seed", "epoch"]
        return out[first + [c for c in out.columns if c not in first]]

    def tensor(self, objectives=("valid_loss", "valid_ppl", "test_ppl", "elapsed_seconds")):
        """The configurations' objectives as one array ``[configurations, seeds, fidelities,
        objectives]`` (NaN where a seed or epoch is not recorded), with the configurations (a frame,
        grid order, the dense model left out) and the seeds: the layout Syne Tune's
        ``BlackboxTabular`` and YAHPO Gym's tables take."""
        for o in objectives:
            check_choice("objective", o, tuple(OBJECTIVES))
        configs = self.configurations()
        names = [configuration_name(p) for p in configs]
        seeds = sorted({s for n, s in self.curves if n in names})
        out = np.full((len(names), len(seeds), len(self.fidelities), len(objectives)), np.nan)
        for i, name in enumerate(names):
            for j, seed in enumerate(seeds):
                if (name, seed) in self.curves:
                    curve = self.curve(name, seed)
                    out[i, j, : len(curve)] = curve[list(objectives)].to_numpy(float)
        return pd.DataFrame(configs), seeds, out


# ---------------------------------------------------------------------------- building one


def _curves_from_atlas(atlas: Atlas) -> tuple[dict, dict, dict]:
    params, curves, reasons = {}, {}, {}
    for name, rec in atlas.records.items():
        config = configuration_name(rec["params"])
        params[config] = rec["params"]
        timing = atlas.timing[name]["epochs"]
        c = {k: np.array([_float(e.get(k)) for e in rec["epochs"]]) for k in
             ("train_loss", "valid_loss", "valid_ppl", "test_loss", "density")}
        c["failed"] = np.array([bool(e["failed"]) for e in rec["epochs"]])
        for k in ("cpu_seconds", *(f"ls_{v}_cpu_seconds" for v in CONVENTIONS)):
            c[k] = np.array([float(t.get(k, 0.0)) for t in timing])
        curves[(config, rec["seed"])] = c
        if rec["status"] != "ok":
            reasons[(config, rec["seed"])] = rec["reason"]
    return params, curves, reasons


def _resolve(path_or_name) -> Path:
    from lshkit.report import project_path

    path = Path(path_or_name)
    if path.is_dir() or path.is_absolute() or len(path.parts) > 1:
        return path
    # A name, as `python -m lshkit atlas --scale NAME` keeps it, in this checkout wherever the caller runs.
    return project_path(ATLAS_ROOT / path)


def load(path_or_name="atlas") -> Bench:
    """The benchmark of an atlas: a folder written by :func:`lshkit.atlas.build_atlas`, a loaded
    :class:`~lshkit.atlas.Atlas`, or a name such as ``"atlas"`` (``results/atlas/<name>``)."""
    atlas = path_or_name if isinstance(path_or_name, Atlas) else load_atlas(_resolve(path_or_name))
    params, curves, reasons = _curves_from_atlas(atlas)
    return Bench(name=atlas.root.name, spec=atlas.spec, space=atlas.space(), params=params, curves=curves,
                 reasons=reasons, _ls=lambda name, c: atlas.ls(name, c), _graph=atlas.graph)


# ---------------------------------------------------------------------------- export


def _parquet(frame: pd.DataFrame, schema=None) -> bytes:
    import pyarrow as pa
    import pyarrow.parquet as pq

    table = pa.Table.from_pandas(frame, schema=schema, preserve_index=False)
    buffer = io.BytesIO()
    pq.write_table(table, buffer, compression="zstd")
    return buffer.getvalue()


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _build_versions(atlas: Atlas) -> list[dict]:
    """The distinct library versions the atlas's candidates were trained with, and how many each."""
    seen = {}
    for t in atlas.timing.values():
        key = repr(sorted(t["versions"].items()))
        seen.setdefault(key, [t["versions"], 0])[1] += 1
    return [dict(v, candidates=n) for v, n in seen.values()]


def export(atlas, out) -> dict:
    """Write the atlas at ``atlas`` (folder, name or :class:`~lshkit.atlas.Atlas`) into ``out`` as
    tables other tools read without lshkit: ``configurations.parquet`` (one row per
    configuration: its name, parameters, seeds), ``objectives.parquet`` (one row per configuration,
    training seed and epoch: losses, perplexities, density, CPU seconds of training, evaluation
    and each LS, and the cumulative clock), ``ls.parquet`` (one row per configuration, seed, epoch
    and convention; the LS vector as a list of float32), ``graphs.parquet`` (the masks' graph
    properties where taken), ``metadata.json`` (units, fidelity, objectives, the space, the
    build's specification and library versions, the citation) and ``SHA256SUMS`` (every other
    file's SHA-256, as ``sha256sum`` writes it). Each file is written atomically; returns the
    manifest (file -> hash)."""
    import pyarrow as pa

    atlas = atlas if isinstance(atlas, Atlas) else load_atlas(_resolve(atlas))
    bench = load(atlas)
    out = Path(out)
    names = {}  # configuration -> its parameters and seeds, in build order
    for rec in atlas.records.values():
        c = configuration_name(rec["params"])
        names.setdefault(c, {"params": rec["params"], "seeds": []})["seeds"].append(rec["seed"])
    configs = pd.DataFrame([{"configuration": c, "dense": v["params"] is None,
                             **{k: (v["params"] or {}).get(k) for k in PARAMETERS},
                             "seeds": sorted(v["seeds"])} for c, v in names.items()])
    objectives = bench.table()
    ls_rows = []
    for rec in atlas.records.values():
        c = configuration_name(rec["params"])
        for conv in CONVENTIONS:
            values = atlas.ls(rec["name"], conv)
            ls_rows += [{"configuration": c, "seed": rec["seed"], "epoch": e, "convention": conv,
                         "ls": values[e]} for e in range(len(values))]
    ls = pd.DataFrame(ls_rows)
    ls_schema = pa.schema([("configuration", pa.string()), ("seed", pa.int64()), ("epoch", pa.int64()),
                           ("convention", pa.string()), ("ls", pa.list_(pa.float32()))])
    graphs = atlas.graph_epochs()
    if len(graphs):
        graphs = graphs.assign(configuration=[configuration_name(atlas.records[n]["params"]) for n in graphs.name])
        graphs = graphs.drop(columns=["name", *[k for k in PARAMETERS if k in graphs]])
        graphs = graphs[["configuration", "seed", "epoch"] + [c for c in graphs if c not in
                                                              ("configuration", "seed", "epoch")]]
    else:
        graphs = pd.DataFrame({"configuration": pd.Series(dtype=str), "seed": pd.Series(dtype="int64"),
                               "epoch": pd.Series(dtype="int64")})
    payloads = {_TABLES["configurations"]: _parquet(configs), _TABLES["objectives"]: _parquet(objectives),
                _TABLES["ls"]: _parquet(ls, ls_schema), _TABLES["graphs"]: _parquet(graphs)}
    for file, payload in payloads.items():
        atomic_write(out / file, payload)
    from importlib.metadata import version

    metadata = {
        "name": "LSH-Bench", "format": _FORMAT, "atlas": atlas.root.name, "citation": CITATION,
        "fidelity": {"name": "epoch", "values": bench.fidelities,
                     "meaning": "epochs trained; 0 is the initial evaluation before any training"},
        "objectives": {k: {"unit": v} for k, v in OBJECTIVES.items()},
        "cost": "elapsed_seconds: process CPU seconds of training and validation, one torch thread, summed "
                "over epochs 0..epoch; add ls_<convention>_cpu_seconds where a method computes the LS",
        "seeds": "training seeds; the main one for every configuration, more for the replicates "
                 "(spec.replicate_seeds)",
        "space": bench.space.to_dict(), "spec": atlas.spec.to_dict(),
        "built_with": "lshkit.atlas.build_atlas(AtlasSpec(**spec)): python -m lshkit atlas build",
        "tables": {file: {"rows": int(len(frame)), "columns": list(frame.columns)} for file, frame in
                   zip(payloads, (configs, objectives, ls, graphs))},
        "versions": {"build": _build_versions(atlas),
                     "export": {**versions(), "pyarrow": version("pyarrow")}},
    }
    write_json(out / "metadata.json", metadata)
    files = sorted(payloads) + ["metadata.json"]
    manifest = {file: _sha256(out / file) for file in files}
    atomic_write(out / MANIFEST, "".join(f"{h}  {f}\n" for f, h in manifest.items()))
    return manifest


def verify_manifest(folder) -> dict:
    """Check every file ``SHA256SUMS`` in ``folder`` lists against its hash; returns the manifest.
    A ValueError names a file whose bytes differ (with both hashes) or that is missing, and a file
    in the folder the manifest does not list."""
    folder = Path(folder)
    path = folder / MANIFEST
    if not path.is_file():
        raise FileNotFoundError(f"{folder} holds no {MANIFEST}: not an export of `python -m lshkit atlas export`")
    manifest = {}
    for i, line in enumerate(path.read_text().splitlines(), 1):
        digest, sep, file = line.partition("  ")
        if not sep or len(digest) != 64:
            raise ValueError(f"{path} line {i} is not '<sha256>  <file>': {line!r}")
        manifest[file] = digest
    for file, expected in manifest.items():
        if not (folder / file).is_file():
            raise ValueError(f"{folder / file} is listed in {MANIFEST} but missing")
        actual = _sha256(folder / file)
        if actual != expected:
            raise ValueError(f"{folder / file} differs from the export: SHA-256 {actual}, {MANIFEST} "
                             f"says {expected}")
    extra = sorted(p.name for p in folder.iterdir() if p.is_file() and p.name != MANIFEST
                   and p.name not in manifest and not p.name.startswith("."))
    if extra:
        raise ValueError(f"{folder} holds {extra}, which {MANIFEST} does not list")
    return manifest


def load_export(folder) -> Bench:
    """The :class:`Bench` of an export (:func:`export`), after :func:`verify_manifest`."""
    from lshkit.search.space import SearchSpace

    folder = Path(folder)
    verify_manifest(folder)
    metadata = read_json(folder / "metadata.json")
    if metadata.get("format") != _FORMAT:
        raise ValueError(f"{folder} is an export of format {metadata.get('format')!r}; this lshkit reads {_FORMAT}")
    spec = AtlasSpec.from_dict(metadata["spec"])
    tables = {k: pd.read_parquet(folder / f) for k, f in _TABLES.items()}
    params = {}
    for row in tables["configurations"].itertuples(index=False):
        params[row.configuration] = None if row.dense else {k: getattr(row, k) for k in PARAMETERS}
        if params[row.configuration] is not None:
            params[row.configuration]["death_rate"] = float(params[row.configuration]["death_rate"])
    curves, reasons = {}, {}
    for (config, seed), group in tables["objectives"].groupby(["configuration", "seed"], sort=False):
        group = group.sort_values("epoch")
        c = {k: group[k].to_numpy(float) for k in _COLUMNS if k != "failed"}
        c["failed"] = group["failed"].to_numpy(bool)
        curves[(config, int(seed))] = c
        if c["failed"].any():
            reasons[(config, int(seed))] = "failed (the export keeps no reason)"
    ls = {}
    for row in tables["ls"].itertuples(index=False):
        ls.setdefault((candidate_name(params[row.configuration], int(row.seed)), row.convention), []).append(
            (row.epoch, np.asarray(row.ls, dtype=np.float32)))
    ls = {k: np.stack([v for _, v in sorted(rows, key=lambda r: r[0])]) for k, rows in ls.items()}
    graphs = {}
    for row in tables["graphs"].to_dict("records"):
        graphs.setdefault(candidate_name(params[row["configuration"]], int(row["seed"])), {})[int(row["epoch"])] = row

    def graph(name, epoch):
        rows = graphs.get(name, {})
        if epoch not in rows:
            taken = f"up to epoch {max(rows)}" if rows else "not at all"
            raise KeyError(f"the export at {folder} has the mask graphs of {name!r} {taken}; epoch {epoch} is asked for")
        return rows[epoch]

    def spectra(name, convention):
        if (name, convention) not in ls:
            raise KeyError(f"the export at {folder} holds no LS of {name!r}")
        return ls[(name, convention)]

    space = SearchSpace.from_dict(metadata["space"])
    return Bench(name=metadata["atlas"], spec=spec, space=space, params=params, curves=curves, reasons=reasons,
                 _ls=spectra, _graph=graph)
