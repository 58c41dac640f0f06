"""Searches replayed on a tabulated atlas (:mod:`lshkit.atlas`) instead of trained.

:class:`AtlasRunner` is a :class:`~lshkit.search.runner.Runner` whose "training" of a candidate
for E epochs is a read of its next E recorded epochs, and whose clock advances by their recorded
CPU seconds (training and evaluation, plus the LS where the ranking needs it; the spectral gap
of ``ranking="gap"``, read from the masks' graphs the atlas took (:func:`lshkit.atlas.record_graphs`),
costs too little to count), as Syne Tune's
simulator backend does with tabulated benchmarks. The LSH loop, the loss-based baseline, grid,
random, TPE, ATPE, BOHB and Hyperband run unchanged on it. A replay equals the real search with
the same seed on the atlas's machine because a candidate's record depends on its configuration
and training seed alone and resuming training equals training straight through
(tests/test_replay.py checks it); on another CPU the trained search's numbers differ as any
retraining's do.

What differs from training, stated in every summary: the samplers see the atlas grid (the death
rate categorical over the atlas's values; grid search takes the 24 variants at the middle one,
where the paper's GS fixes 0.8), every candidate's training seed is the atlas's (a repeat varies
the search's own randomness: its initial pool and proposals; the training noise is measured by the
atlas's seed replicates), and the clock counts recorded CPU seconds, not the wall time of the
replay (the optimiser's own decision time is recorded apart, as ``wall_seconds``).
"""
from __future__ import annotations

import itertools
import json
import math
import time
from pathlib import Path

import numpy as np
import pandas as pd
from tqdm.auto import tqdm

from lshkit.atlas.spec import candidate_name
from lshkit.atlas.table import Atlas, load_atlas
from lshkit.checks import check_int
from lshkit.env import spawn_pool
from lshkit.io import Journal, check_writable, read_json, write_csv, write_json
from lshkit.search.space import Categorical, SearchSpace
from lshkit.search.config import LS_SPACE_FIELDS, SearchConfig, unread_dropped
from lshkit.search.full_training import full_training_search
from lshkit.search.loop import LSHSearch
from lshkit.search.runner import Runner, first_reaching
from lshkit.stats import INTERVAL_RULE, summarise

__all__ = ["AtlasRunner", "atlas_config", "grid_optimum", "replay", "replay_many", "replay_sweep", "replay_time_to_target"]


def atlas_config(atlas: Atlas, **fields) -> SearchConfig:
    """A :class:`SearchConfig` that fits ``atlas``: its model, scale, sparsity, LS settings and
    final epochs, and its grid as the search space (for ``sampler="grid"`` the methodological
    variants at the atlas's middle death rate). ``fields`` set the rest (sampler, ranking,
    budget, embedding, distance, epochs_per_round, seed, ...)."""
    spec = atlas.spec
    space = atlas.space()
    if fields.get("sampler") == "grid":
        rates = space["death_rate"].values()
        middle = rates[len(rates) // 2]
        points = space.points and [p for p in space.points if p["death_rate"] == middle]
        if points == []:
            raise ValueError(f"the atlas at {atlas.root} has no candidate at death rate {middle} yet: grid search "
                             "has nothing to replay")
        space = SearchSpace({**dict(space.items()), "death_rate": Categorical((middle,))}, points=points)
    fixed = dict(spec.search_fields(), space=space.to_dict())
    clash = {k: v for k, v in fields.items() if k in fixed and v != fixed[k]}
    if clash:
        raise ValueError(f"the atlas at {atlas.root} fixes {sorted(clash)} (atlas: "
                         f"{ {k: fixed[k] for k in clash} }); leave them out")
    if spec.scale == "smoke":
        fields.setdefault("budget", "smoke")
    config = SearchConfig(**{**fields, **fixed})
    if spec.scale == "smoke" and config.budget != "smoke":
        try:  # the other budgets' pools need more epochs than a smoke atlas has
            config.resolved("cpu")
        except ValueError as err:
            raise ValueError(f"{err}; the atlas at {atlas.root} is smoke-scale: replay it at budget 'smoke' "
                             "(--budget smoke)") from None
    return config


class AtlasRunner(Runner):
    """Reads the units of a search from ``atlas`` (module docstring). ``config`` must fit the atlas
    (see :func:`atlas_config`); ``train_seed`` is the training seed of the records read (default
    the atlas's main seed)."""

    def __init__(self, atlas: Atlas, config: SearchConfig, train_seed: int | None = None):
        self.atlas = atlas
        self.config = config.resolved("cpu")
        self.train_seed = atlas.spec.seed if train_seed is None else train_seed
        cfg = self.config
        bad = {k: (getattr(cfg, k), v) for k, v in atlas.spec.search_fields().items() if getattr(cfg, k) != v}
        if bad:
            raise ValueError(f"this search does not fit the atlas at {atlas.root} (field: search, atlas = "
                             f"{bad}); build the search with lshkit.replay.atlas_config")
        self.description = {"runner": "atlas", "atlas": str(atlas.root), "train_seed": self.train_seed,
                            "clock": "recorded CPU seconds of the epochs consumed (train + eval + LS "
                                     "where ranked by LS; a spectral gap's 0.1-0.2 s are not counted)"}

    def run(self, specs: dict[str, dict], desc: str) -> dict[str, dict]:
        return {key: self._unit(spec) for key, spec in specs.items()}

    def _unit(self, spec: dict) -> dict:
        if spec["kind"] == "full":
            result = self._read(spec["params"], 0, self.config.final_epochs, False, final=False)
            records = result["records"]
            hit = first_reaching(records, spec["target_ppl"])
            return dict(result, records=records if hit is None else records[:hit + 1])
        if spec["kind"] == "reference":
            result = self._read(None, 0, self.config.final_epochs, True, final=True)
            result["key"] = self.atlas.name(None, self.train_seed)
            return result
        return self._read(spec["params"], spec["from"], spec["epochs"], spec["ls"],
                          final=spec["kind"] == "final", with_gap=spec.get("gap", False))

    def _read(self, params, start: int, stop: int, with_ls: bool, final: bool, with_gap: bool = False) -> dict:
        record = self.atlas.record(params, self.train_seed)
        name = record["name"]
        timing = self.atlas.timing[name]["epochs"]
        convention = self.config.ls_convention
        ls = self.atlas.ls(name, convention) if with_ls else None
        records, status, reason = [], "ok", None
        for e in range(start if start == 0 and with_ls else start + 1, stop + 1):
            if e >= len(record["epochs"]):
                if record["status"] == "ok":
                    raise ValueError(f"atlas candidate {name!r} has {len(record['epochs']) - 1} epochs; "
                                     f"the search asks for epoch {e}")
                break
            row, t = record["epochs"][e], timing[e]
            rec = {k: row[k] for k in ("epoch", "train_loss", "valid_loss", "valid_ppl", "lr", "density",
                                       "death_rate", "averaging")}
            rec.update(train_seconds=t["cpu_seconds"], eval_seconds=0.0)
            if row["failed"]:
                status, reason = "failed", record["reason"]
                rec.update(failed=True, reason=reason)
                records.append(rec)
                break
            if with_ls:
                rec["ls"] = ls[e].astype(np.float64).tolist()
                rec["ls_seconds"] = t[f"ls_{convention}_cpu_seconds"]
            if with_gap:
                graph = self.atlas.graph(name, e)
                rec.update(gap_min=graph["gap_min"], gap_mean=graph["gap_mean"])
            records.append(rec)
        result = {"status": status, "reason": reason, "records": records, "resumed_from": start}
        if final and status == "ok":
            last = record["epochs"][stop]
            result["valid_loss"], result["test_loss"] = last["valid_loss"], last["test_loss"]
        return result


def grid_optimum(atlas: Atlas) -> dict:
    """The configuration grid search should find (Table 4's "optimal config"): of the variants a
    grid search replays (:func:`atlas_config`), the one with the lowest final validation
    perplexity, read from the atlas (every candidate is trained to the end there)."""
    space = atlas_config(atlas, sampler="grid").resolved("cpu").search_space()
    finals = {}
    for params in space.grid_points():
        record = atlas.record(params, atlas.spec.seed)
        if record["status"] == "ok":
            finals[candidate_name(params, atlas.spec.seed)] = (record["epochs"][-1]["valid_ppl"], params)
    if not finals:
        raise ValueError(f"no grid candidate of the atlas at {atlas.root} finished")
    return min(finals.values(), key=lambda v: v[0])[1]


def replay(atlas: Atlas | str | Path, out=None, *, train_seed: int | None = None, **fields) -> dict:
    """One search replayed on ``atlas`` (a loaded :class:`~lshkit.atlas.Atlas` or its folder);
    ``fields`` as for :func:`atlas_config`. Writes the same tidy files as a real search into
    ``out`` when given; returns the summary."""
    atlas = atlas if isinstance(atlas, Atlas) else load_atlas(atlas)
    config = atlas_config(atlas, **fields)
    search = LSHSearch(config, out, runner=AtlasRunner(atlas, config, train_seed), progress=False)
    return search.run()


def _row(summary: dict, repeat: int) -> dict:
    cfg, t = summary["config"], summary["timings"]
    row = {"repeat": repeat, "seed": cfg["seed"], "sampler": cfg["sampler"], "ranking": cfg["ranking"],
           "budget": cfg["budget"], "embedding": cfg["embedding"], "distance": cfg["distance"],
           "reference": cfg["reference"] if cfg["ranking"] == "ls" else None,
           "ls_convention": cfg["ls_convention"], "epochs_per_round": cfg["epochs_per_round"],
           "candidates": summary["candidates"], "failed": summary["failed"], "rounds": summary["rounds"],
           "valid_ppl": summary["valid_ppl"] if summary["valid_ppl"] is not None else math.nan,
           "test_ppl": summary["test_ppl"] if summary["test_ppl"] is not None else math.nan,
           "selection_seconds": t["selection_seconds"], "final_seconds": t["final_seconds"],
           "total_seconds": t["total_seconds"],
           "decision_seconds": t["wall_seconds"]}
    row.update({f"selected_{k}": v for k, v in (summary["selected"] or {}).items()})
    return row


def _search_fields(fields: dict) -> dict:
    """``fields`` as an experiment's key: an LS ranking names the reading of its reference
    (the default's, where not given), and another ranking drops the LS space's options, which it
    never reads."""
    if fields.get("ranking", SearchConfig.ranking) == "ls":
        return {**fields, "reference": fields.get("reference", SearchConfig.reference)}
    return unread_dropped(fields)


def _key(atlas: Atlas, repeats: int, first_seed: int, fields: dict) -> dict:
    # The atlas by its specification, not its path: a clone elsewhere holds the same records.
    return {"atlas": atlas.spec.to_dict(), "repeats": repeats, "first_seed": first_seed,
            "fields": _search_fields(fields), "interval": INTERVAL_RULE}


def _finished(folder: Path, atlas: Atlas, repeats: int, first_seed: int, fields: dict) -> bool:
    """Whether ``folder`` holds the finished replays of exactly this experiment."""
    if not (folder / "summary.json").exists() or not (folder / "replays.csv").exists():
        return False
    key = json.loads(json.dumps(_key(atlas, repeats, first_seed, fields)))
    previous = _read_summary(folder)
    return {k: previous.get(k) for k in key} == key


def _read_summary(folder: Path) -> dict:
    try:
        return read_json(folder / "summary.json")
    except ValueError as err:  # cut or altered
        raise ValueError(f"{folder / 'summary.json'} is corrupt ({' '.join(str(err).split())}); remove "
                         f"{folder} to replay again") from None


def _read_replays(folder: Path, rows: int | None = None) -> pd.DataFrame:
    """The finished replays.csv of ``folder`` (``rows`` rows when given); a clear error if cut or altered."""
    try:
        frame = pd.read_csv(folder / "replays.csv")
    except (ValueError, pd.errors.EmptyDataError, pd.errors.ParserError) as err:
        raise ValueError(f"{folder / 'replays.csv'} is corrupt ({' '.join(str(err).split())}); remove "
                         f"{folder} to replay again") from None
    if rows is not None and len(frame) != rows:
        raise ValueError(f"{folder / 'replays.csv'} is corrupt (it has {len(frame)} rows, its summary.json "
                         f"says {rows} repeats); remove {folder} to replay again")
    return frame


def _other_search(folder: Path, key: dict) -> str | None:
    """What differs (atlas, search fields) between this experiment and the replays of another one
    that ``folder`` holds, finished (summary.json) or killed (its journal); None if it holds none.
    Other repeats or seeds of the same search are not another one: its files stay consistent."""
    ours = json.loads(json.dumps(key))
    for file in ("summary.json", _JOURNAL):
        if not (folder / file).exists():
            continue
        if file == "summary.json":
            theirs = _read_summary(folder)
        else:
            try:
                theirs = json.loads((folder / file).read_text().split("\n", 1)[0])
            except ValueError:
                return f"an unreadable {file}"
        if not isinstance(theirs, dict) or "fields" not in theirs:
            return f"the {file} of another kind of experiment"
        fields, asked = _with_defaults(_search_fields(theirs["fields"])), _with_defaults(ours["fields"])
        # An LS option one side lacks follows from the rankings' difference, named already.
        differ = [f"{k}: {fields.get(k)} here, {asked.get(k)} asked"
                  for k in sorted(set(fields) | set(asked)) if fields.get(k) != asked.get(k)
                  and not (k in LS_SPACE_FIELDS and (k not in fields or k not in asked))]
        if theirs.get("atlas") != ours["atlas"]:
            differ.insert(0, "another atlas")
        if differ:
            return "; ".join(differ)
    return None


def _with_defaults(fields: dict) -> dict:
    """``fields`` with the sampler and ranking a search takes when they are left out, so that a
    field given at its default is not told apart from one left out."""
    return {"sampler": SearchConfig.sampler, "ranking": SearchConfig.ranking, **fields}


def _clear(folder: Path) -> None:
    """Remove what replays wrote into ``folder`` (its other files stay)."""
    import shutil

    for file in ("summary.json", "replays.csv", _JOURNAL):
        (folder / file).unlink(missing_ok=True)
    for repeat in folder.glob("seed-*"):
        shutil.rmtree(repeat, ignore_errors=True)


#: Where a replay into ``out`` keeps its finished repeats until its own files are written.
_JOURNAL = "journal.jsonl"


def _resume(journal: Journal | None, ids: list, run) -> list:
    """The values of ``ids``: those ``journal`` holds from a killed run, and the rest from
    ``run(todo_ids)``, which yields ``(id, value)`` pairs, each added to the journal as it comes."""
    done = dict(journal.done) if journal is not None else {}
    for item_id, value in run([i for i in ids if i not in done]):
        done[item_id] = journal.add(item_id, value) if journal is not None else value
    return [done[i] for i in ids]


_ATLASES = {}


def _replay_row(job) -> dict:
    """One repeat of :func:`replay_many` (in a worker process: the atlas read once per process)."""
    root, target, fields, seed = job
    if root not in _ATLASES:
        _ATLASES[root] = load_atlas(root)
    return _row(replay(_ATLASES[root], target, **{**fields, "seed": seed}), seed)


def replay_many(atlas: Atlas | str | Path, out=None, *, repeats: int = 100, first_seed: int = 0,
                write_repeats: bool = True, workers: int = 1, replace: bool = False, **fields) -> pd.DataFrame:
    """``repeats`` replays of one search with seeds ``first_seed ..``; one row per repeat
    (selection, its perplexities, simulated seconds, decision seconds). With ``out``: each
    repeat's tidy files under ``out/seed-<k>/`` (``write_repeats``), ``replays.csv`` and
    ``summary.json`` (mean and 95% interval of the test perplexity, configuration); a finished
    ``out`` with the same atlas, fields and seeds is read back instead of replayed again, and a
    killed one resumes with the repeats it had finished. An ``out`` holding the replays of another
    search (other fields or atlas) is refused, unless ``replace``, which removes them first.
    ``workers``: processes sharing the repeats (a repeat depends on its seed alone, so the rows
    are the same for any number)."""
    check_int("repeats", repeats, low=1)
    check_int("first_seed", first_seed, low=0)
    check_int("workers", workers, low=1)
    atlas = atlas if isinstance(atlas, Atlas) else load_atlas(atlas)
    atlas_config(atlas, **{**fields, "seed": first_seed}).resolved("cpu")  # a bad field fails before any replay
    if out is not None and _finished(Path(out), atlas, repeats, first_seed, fields):
        return _read_replays(Path(out), repeats)
    key = _key(atlas, repeats, first_seed, fields)
    other = _other_search(Path(out), key) if out is not None else None
    if other is not None and not replace:
        raise ValueError(f"{out} holds the replays of another search ({other}); give another --out, or "
                         "--replace (replace=True) to remove them first")
    if other is not None:
        _clear(Path(out))
    if out is not None:
        check_writable(out, "out")  # a file, a read-only disk: one line before any replay
    journal = Journal(Path(out) / _JOURNAL, key) if out is not None else None
    start = time.perf_counter()

    def run(seeds):
        jobs = [(str(atlas.root), Path(out) / f"seed-{k}" if out is not None and write_repeats else None, fields, k)
                for k in seeds]
        if workers == 1 or len(jobs) <= 1:
            _ATLASES[str(atlas.root)] = atlas
            rows = map(_replay_row, jobs)
            yield from ((row["repeat"], row) for row in rows)
        else:
            with spawn_pool(min(workers, len(jobs))) as pool:  # Ctrl-C: this process stops them
                for row in pool.imap_unordered(_replay_row, jobs, chunksize=1):
                    yield row["repeat"], row

    frame = pd.DataFrame(_resume(journal, list(range(first_seed, first_seed + repeats)), run))
    if out is not None:
        write_csv(Path(out) / "replays.csv", frame)
        test = summarise(frame.assign(replays="all"), "replays").iloc[0]  # the tables' Student-t interval
        write_json(Path(out) / "summary.json", {**key, "test_ppl_mean": float(test["mean"]) if test.n else None,
                                                "test_ppl_ci95": float(test.ci95),
                                                "selected_none": int(frame.test_ppl.isna().sum()),
                                                "wall_seconds": time.perf_counter() - start})
        journal.close()
    return frame


def replay_sweep(atlas: Atlas | str | Path, out, axes: dict, *, repeats: int = 100, first_seed: int = 0,
                 progress: bool = False, committed=None, workers: int = 1, **fields) -> pd.DataFrame:
    """Every combination of ``axes`` (a field name -> its values, e.g. ``{"sampler": [...],
    "ranking": ["ls", "loss"]}``) replayed ``repeats`` times with :func:`replay_many`, each
    combination in its own folder under ``out`` (read back when finished). Grid search replays
    once unless its LS space is t-SNE's: on an atlas nothing else in its selection depends on the
    seed (the training seed is the atlas's).
    One row per replay, with the axes' values as columns. ``committed``: another folder laid out
    like ``out`` whose finished cells are read (never written) before any is replayed, such as the
    replays committed beside a notebook's results, which CI reads instead of recomputing them.
    ``workers``: processes sharing each combination's repeats (:func:`replay_many`)."""
    atlas = atlas if isinstance(atlas, Atlas) else load_atlas(atlas)
    names = list(axes)
    cells = {}
    for values in itertools.product(*(axes[n] for n in names)):
        # A ranking that reads no LS is replayed once for all LS-space options (NaN in their columns).
        cell = unread_dropped(dict(zip(names, values)), fields)
        cells.setdefault("-".join(f"{k}={v}" for k, v in cell.items()), cell)
    frames = []
    for name, cell in tqdm(cells.items(), desc="replays", unit="search", disable=not progress):
        search = {**fields, **cell}
        n = 1 if search.get("sampler") == "grid" and search.get("embedding", "pca") != "tsne" else repeats
        folder = Path(out) / name
        if committed is not None and _finished(Path(committed) / name, atlas, n, first_seed, {**fields, **cell}):
            folder = Path(committed) / name
        frame = replay_many(atlas, folder, repeats=n, first_seed=first_seed, write_repeats=False,
                            workers=workers, **fields, **cell)
        frames.append(frame.assign(**{k: cell.get(k, math.nan) for k in names if k not in frame}))
    return pd.concat(frames, ignore_index=True)


def replay_time_to_target(atlas: Atlas | str | Path, target_ppl: float, *, repeats: int = 100,
                          first_seed: int = 0, sampler: str = "tpe", budget: str = "low",
                          reference: str = SearchConfig.reference, max_candidates: int | None = None, out=None,
                          committed=None) -> pd.DataFrame:
    """Fig. 3 right on the simulated clock: for each repeat (seed), the recorded CPU seconds
    each method needs to reach validation perplexity ``target_ppl``: LSH (``sampler`` with LS
    ranking), the same search ranked by validation loss, and the loss-based full-training
    search (:func:`lshkit.search.full_training.full_training_search`: ``sampler``'s proposals trained fully
    one after another, at most ``max_candidates``, default every grid point of the atlas). LSH
    reads the dense LS by ``reference`` (:mod:`lshkit.embedding`).
    One row per (repeat, method): ``seconds`` (NaN when the method never got there),
    ``spent_seconds`` (its whole cost), ``valid_ppl`` (LSH: its selected model's). With ``out``,
    written there as ``replays.csv`` and ``summary.json`` and read back when finished (from
    ``committed`` first, as :func:`replay_sweep` does); a killed run resumes with the repeats it
    had finished."""

    check_int("repeats", repeats, low=1)
    check_int("first_seed", first_seed, low=0)
    atlas = atlas if isinstance(atlas, Atlas) else load_atlas(atlas)
    limit = len(atlas.spec.grid()) if max_candidates is None else max_candidates
    fields = {"target_ppl": float(target_ppl), "sampler": sampler, "budget": budget, "max_candidates": limit,
              "reference": reference}
    for folder in (committed, out):
        if folder is not None and _finished(Path(folder), atlas, repeats, first_seed, fields):
            return _read_replays(Path(folder))
    start = time.perf_counter()

    def repeat(seed: int) -> list[dict]:
        rows = []
        for ranking in ("ls", "loss"):
            s = replay(atlas, sampler=sampler, ranking=ranking, budget=budget, seed=seed, target_ppl=target_ppl,
                       **({"reference": reference} if ranking == "ls" else {}))
            rows.append({"repeat": seed, "method": f"LSH ({ranking} ranking)",
                         "seconds": s["time_to_target_seconds"], "spent_seconds": s["timings"]["total_seconds"],
                         "valid_ppl": s["valid_ppl"], "candidates": s["candidates"]})
        config = atlas_config(atlas, sampler=sampler, ranking="loss", budget=budget, seed=seed, target_ppl=target_ppl)
        full = full_training_search(config, None, max_candidates=limit, runner=AtlasRunner(atlas, config))
        result = full["result"] or {}
        rows.append({"repeat": seed, "method": "full training", "seconds": result.get("time_to_target_seconds"),
                     "spent_seconds": full["total_seconds"], "valid_ppl": result.get("valid_ppl"),
                     "candidates": full["candidates_trained"]})
        return rows

    key = _key(atlas, repeats, first_seed, fields)
    journal = Journal(Path(out) / _JOURNAL, key) if out is not None else None
    repeats_rows = _resume(journal, list(range(first_seed, first_seed + repeats)),
                           lambda seeds: ((seed, repeat(seed)) for seed in seeds))
    frame = pd.DataFrame([row for rows in repeats_rows for row in rows])
    frame["seconds"] = pd.to_numeric(frame["seconds"], errors="coerce")
    frame["valid_ppl"] = pd.to_numeric(frame["valid_ppl"], errors="coerce")
    frame = frame.assign(target_ppl=float(target_ppl), sampler=sampler, budget=budget, reference=reference)
    if out is not None:
        write_csv(Path(out) / "replays.csv", frame)
        write_json(Path(out) / "summary.json", {**key, "wall_seconds": time.perf_counter() - start})
        journal.close()
    return frame
