"""Searches replayed on a tabulated atlas (:mod:`lshkit.atlas`) instead of trained.

:class:`AtlasRunner` is a :class:`~lshkit.search.runner.Runner` whose "training" of a candidate
for E epochs is a read of its next E recorded epochs, and whose clock advances by their recorded
CPU seconds (training and evaluation, plus the LS where the ranking needs it), as Syne Tune's
simulator backend does with tabulated benchmarks. The LSH loop, the loss-based baseline, grid,
random, TPE, ATPE, BOHB and Hyperband run unchanged on it. A replay equals the real search with
the same seed because a candidate's record depends on its configuration and training seed alone
and resuming training equals training straight through (tests/test_replay.py checks it).

What differs from training, stated in every summary: the samplers see the atlas grid (the death
rate categorical over the atlas's values; grid search takes the 24 variants at the middle one,
where the paper's GS fixes 0.8), every candidate's training seed is the atlas's (a repeat varies
the search's own randomness: its initial pool and proposals; the training noise is measured by the
atlas's seed replicates), and the clock counts recorded CPU seconds, not the wall time of the
replay (the optimiser's own decision time is recorded apart, as ``wall_seconds``).
"""
from __future__ import annotations

import math
import time
from pathlib import Path

import numpy as np
import pandas as pd

from lshkit.atlas import Atlas, load_atlas
from lshkit.checks import check_int
from lshkit.io import write_csv, write_json
from lshkit.samplers import Categorical, SearchSpace
from lshkit.search.config import SearchConfig
from lshkit.search.loop import LSHSearch
from lshkit.search.runner import Runner

__all__ = ["AtlasRunner", "atlas_config", "replay", "replay_many"]


def _fixed(spec) -> dict:
    """The SearchConfig fields an atlas fixes (its epochs are the search's final_epochs)."""
    overrides = {k: v for k, v in sorted(spec.train_overrides.items()) if k != "epochs"}
    return dict(model=spec.model, scale=spec.scale, sparsity=spec.sparsity, ls_samples=spec.ls_samples,
                ls_steps=spec.ls_steps, stable_warmup=True, final_epochs=spec.train_config().epochs,
                train_overrides=overrides)


def atlas_config(atlas: Atlas, **fields) -> SearchConfig:
    """A :class:`SearchConfig` that fits ``atlas``: its model, scale, sparsity, LS settings and
    final epochs, and its grid as the search space (for ``sampler="grid"`` the methodological
    variants at the atlas's middle death rate). ``fields`` set the rest (sampler, ranking,
    budget, embedding, distance, epochs_per_round, seed, ...)."""
    spec = atlas.spec
    space = spec.space()
    if fields.get("sampler") == "grid":
        rates = space["death_rate"].values()
        space = SearchSpace({**dict(space.items()), "death_rate": Categorical((rates[len(rates) // 2],))})
    fixed = dict(_fixed(spec), space=space.to_dict())
    clash = {k: v for k, v in fields.items() if k in fixed and v != fixed[k]}
    if clash:
        raise ValueError(f"the atlas at {atlas.root} fixes {sorted(clash)} (atlas: "
                         f"{ {k: fixed[k] for k in clash} }); leave them out")
    if spec.scale == "smoke":
        fields.setdefault("budget", "smoke")
    return SearchConfig(**{**fields, **fixed})


class AtlasRunner(Runner):
    """Reads the units of a search from ``atlas`` (module docstring). ``config`` must fit the atlas
    (see :func:`atlas_config`); ``train_seed`` is the training seed of the records read (default
    the atlas's main seed)."""

    def __init__(self, atlas: Atlas, config: SearchConfig, train_seed: int | None = None):
        self.atlas = atlas
        self.config = config.resolved("cpu")
        self.train_seed = atlas.spec.seed if train_seed is None else train_seed
        cfg = self.config
        bad = {k: (getattr(cfg, k), v) for k, v in _fixed(atlas.spec).items() if getattr(cfg, k) != v}
        if bad:
            raise ValueError(f"this search does not fit the atlas at {atlas.root} (field: search, atlas = "
                             f"{bad}); build the search with lshkit.replay.atlas_config")
        self.description = {"runner": "atlas", "atlas": str(atlas.root), "train_seed": self.train_seed,
                            "clock": "recorded CPU seconds of the epochs consumed (train + eval + LS "
                                     "where ranked by LS)"}

    def run(self, specs: dict[str, dict], desc: str) -> dict[str, dict]:
        return {key: self._unit(spec) for key, spec in specs.items()}

    def _unit(self, spec: dict) -> dict:
        if spec["kind"] == "reference":
            result = self._read(None, 0, self.config.final_epochs, True, final=True)
            result["key"] = self.atlas.name(None, self.train_seed)
            return result
        return self._read(spec["params"], spec["from"], spec["epochs"], spec["ls"],
                          final=spec["kind"] == "final")

    def _read(self, params, start: int, stop: int, with_ls: bool, final: bool) -> dict:
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
            records.append(rec)
        result = {"status": status, "reason": reason, "records": records, "resumed_from": start}
        if final and status == "ok":
            last = record["epochs"][stop]
            result["valid_loss"], result["test_loss"] = last["valid_loss"], last["test_loss"]
        return result


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
           "ls_convention": cfg["ls_convention"], "epochs_per_round": cfg["epochs_per_round"],
           "candidates": summary["candidates"], "failed": summary["failed"], "rounds": summary["rounds"],
           "valid_ppl": summary["valid_ppl"] if summary["valid_ppl"] is not None else math.nan,
           "test_ppl": summary["test_ppl"] if summary["test_ppl"] is not None else math.nan,
           "selection_seconds": t["selection_seconds"], "total_seconds": t["total_seconds"],
           "decision_seconds": t["wall_seconds"]}
    row.update({f"selected_{k}": v for k, v in (summary["selected"] or {}).items()})
    return row


def replay_many(atlas: Atlas | str | Path, out=None, *, repeats: int = 100, first_seed: int = 0,
                write_repeats: bool = True, **fields) -> pd.DataFrame:
    """``repeats`` replays of one search with seeds ``first_seed ..``; one row per repeat
    (selection, its perplexities, simulated seconds, decision seconds). With ``out``: each
    repeat's tidy files under ``out/seed-<k>/`` (``write_repeats``), ``replays.csv`` and
    ``summary.json`` (mean and 95% interval of the test perplexity, configuration)."""
    check_int("repeats", repeats, low=1)
    check_int("first_seed", first_seed, low=0)
    atlas = atlas if isinstance(atlas, Atlas) else load_atlas(atlas)
    atlas_config(atlas, **{**fields, "seed": first_seed})  # a bad field fails before any replay
    start = time.perf_counter()
    rows = []
    for k in range(first_seed, first_seed + repeats):
        target = Path(out) / f"seed-{k}" if out is not None and write_repeats else None
        rows.append(_row(replay(atlas, target, **{**fields, "seed": k}), k))
    frame = pd.DataFrame(rows)
    if out is not None:
        write_csv(Path(out) / "replays.csv", frame)
        ppl = frame.test_ppl.dropna()
        half = 1.96 * ppl.std(ddof=1) / math.sqrt(len(ppl)) if len(ppl) > 1 else math.nan
        write_json(Path(out) / "summary.json", {
            "atlas": str(atlas.root), "repeats": repeats, "first_seed": first_seed, "fields": fields,
            "test_ppl_mean": float(ppl.mean()) if len(ppl) else None, "test_ppl_ci95": half,
            "selected_none": int(frame.test_ppl.isna().sum()),
            "wall_seconds": time.perf_counter() - start})
    return frame
