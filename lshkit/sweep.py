"""Sweeps of LSH searches over SearchConfig fields, with repeats, and their mean ± 95% CI:
the experiments behind paper Table 2 (optimiser × ranking × budget, 3 repeats), Table 4
(the schedule E, grid search, removal only) and Table B2 (embedding × distance); paper Tables 1-4, B2 and Fig. 3.

:func:`run_sweep` runs :func:`lshkit.search.run_search` once per combination of a grid of
SearchConfig fields and repeat, each in its own folder, all sharing one Optuna storage and
one dense-reference cache (so the reference trains once), and writes one tidy row per
search to ``sweep.csv``. A finished search is read back from its ``summary.json``; an
interrupted one resumes through the storage. :func:`lshkit.stats.summarise` gives the mean and
the 95% confidence half-width per group, as Table 2 reports them.
"""
from __future__ import annotations

import dataclasses
import hashlib
import itertools
import json
import math
import re
from pathlib import Path

import pandas as pd
from tqdm.auto import tqdm

from lshkit.io import read_json, write_csv
from lshkit.env import auto_progress, resolve_device
from lshkit.search import SearchConfig, run_search
from lshkit.search.config import ls_space_defaults, unread_dropped
from lshkit.storage import default_storage_url

__all__ = ["SMOKE_OVERRIDES", "smoke_sized", "exhaustive", "expand", "search_name", "run_sweep",
           "selected_is"]

#: What a smoke notebook shrinks so that a dozen searches fit CI's minute on 2 cores: a pool
#: of 4 (one removal round), 2 epochs of training in all, and a 2×32 LSTM. Smoke results
#: exercise the code; they say nothing about the method.
SMOKE_OVERRIDES = {"pool": 4, "final_epochs": 2,
                   "train_overrides": {"emb_size": 32, "hidden_size": 32, "batch_size": 10}}

_TIMINGS = ("selection_seconds", "final_seconds", "total_seconds", "ls_seconds", "ls_share")


def smoke_sized(config: SearchConfig, **fields) -> SearchConfig:
    """``config`` with :data:`SMOKE_OVERRIDES`, then ``fields``, replacing its fields when its
    budget is "smoke"; any other budget is returned unchanged (it runs at its own size)."""
    if not isinstance(config, SearchConfig):
        raise TypeError(f"config must be a SearchConfig; got {type(config).__name__}")
    if config.budget != "smoke":
        return config
    return dataclasses.replace(config, **{**SMOKE_OVERRIDES, **fields})


def exhaustive(config: SearchConfig, device="auto") -> SearchConfig:
    """The search that finds Table 4's "optimal configuration" of ``config``'s pool: every
    configuration of the pool trained to ``final_epochs`` in one round, ranked by validation
    loss, the lowest selected. With the grid sampler it draws the same pool as ``config``
    (the grid order depends on the seed alone) and, with the same seed, trains each
    configuration exactly as ``config``'s final training does, so "selected the optimal" is
    an equality of configurations. With a pool of 24 the pool is the whole grid."""
    if not isinstance(config, SearchConfig):
        raise TypeError(f"config must be a SearchConfig; got {type(config).__name__}")
    final = config.resolved(resolve_device(device)).final_epochs
    # The LS space's options go back to their defaults: a loss ranking refuses them (SearchConfig).
    return dataclasses.replace(config, ranking="loss", rounds=1, epochs_per_round=final,
                               final_epochs=final, **ls_space_defaults())


def _check_grid(grid) -> None:
    names = [f.name for f in dataclasses.fields(SearchConfig)]
    if not isinstance(grid, dict):
        raise ValueError(f"grid must be a dict of SearchConfig field -> list of values; got {grid!r}")
    for name, values in grid.items():
        if name == "seed":
            raise ValueError("grid may not vary 'seed': repeat r runs with seed base.seed + r "
                             "(use repeats)")
        if name not in names:
            raise ValueError(f"grid field {name!r} is not a SearchConfig field; valid fields: "
                             f"{[n for n in names if n != 'seed']}")
        if not isinstance(values, (list, tuple)) or not values:
            raise ValueError(f"grid[{name!r}]={values!r} is not valid; it must be a non-empty list")
        keys = [json.dumps(v, sort_keys=True, default=str) for v in values]
        if len(set(keys)) != len(keys):
            raise ValueError(f"grid[{name!r}]={values!r} repeats a value")


def expand(grid: dict) -> list[dict]:
    """Every combination of the grid's values, in ``itertools.product`` order (the first
    field varies slowest). An empty grid is one combination: the base config itself."""
    _check_grid(grid)
    names = list(grid)
    return [dict(zip(names, values)) for values in itertools.product(*(grid[n] for n in names))]


def _slug(value) -> str:
    if isinstance(value, (dict, list, tuple)):
        return hashlib.sha256(json.dumps(value, sort_keys=True).encode()).hexdigest()[:8]
    return re.sub(r"[^A-Za-z0-9.+-]", "_", str(value))


def search_name(combination: dict, repeat: int) -> str:
    """The folder of one search: ``field-value`` per grid field and ``r<repeat>``, joined by
    ``__`` (e.g. ``sampler-tpe__ranking-ls__r0``); list or dict values by a short hash."""
    return "__".join([f"{k}-{_slug(v)}" for k, v in combination.items()] + [f"r{repeat}"])


def _cell(value):
    return json.dumps(value, sort_keys=True) if isinstance(value, (dict, list, tuple)) else value


def _row(combination: dict, repeat: int, name: str, summary: dict) -> dict:
    # config_json keeps the fields' and the space's order (summary.json's keys are sorted), so
    # a search read back gives the same columns as one just run.
    config = json.loads(summary["config_json"])
    row = {k: _cell(config[k]) for k in combination}
    row.update(repeat=repeat, seed=config["seed"])
    row.update({k: v for k, v in config.items() if k not in row and not isinstance(v, (dict, list))})
    selected = summary["selected"] or {}
    row.update({f"selected_{k}": selected.get(k) for k in config["space"]})
    timings = summary["timings"]
    reference = summary.get("reference") or {}
    row.update(valid_ppl=summary["valid_ppl"], test_ppl=summary["test_ppl"],
               **{k: timings[k] for k in _TIMINGS},
               candidates=summary["candidates"], rounds=summary["rounds"], failed=summary["failed"],
               reference_test_ppl=reference.get("test_ppl"), search=name)
    return row


def _finished(path: Path, config: SearchConfig) -> dict | None:
    """The summary at ``path`` when it records exactly ``config`` (resolved), else None."""
    if not path.exists():
        return None
    summary = read_json(path)
    return summary if json.loads(summary["config_json"]) == json.loads(config.to_json()) else None


def run_sweep(base: SearchConfig, grid: dict, *, repeats: int = 1, out, storage: str | None = None,
              device="auto", reference_dir=None, progress: bool | None = None) -> pd.DataFrame:
    """Run ``base`` with every combination of ``grid`` (SearchConfig field -> values) and every
    repeat ``r < repeats`` (seed ``base.seed + r``), each search into ``out/<search_name>``.

    All searches share ``storage`` (default ``sqlite:///<out>/study.db``) and the dense
    reference cache ``reference_dir`` (default ``<out>/reference``). Every combination is
    checked (resolved for ``device``) before anything runs. A search whose ``summary.json``
    records the same resolved config is read back, not rerun; any other resumes through the
    storage. Returns one row per search (also written atomically to ``out/sweep.csv`` after
    each search): the grid fields, repeat, seed, the remaining scalar fields of the resolved
    config, ``selected_<parameter>`` of the selected configuration, valid_ppl, test_ppl,
    selection/final/total seconds (summed compute seconds, see ``summary.json``), ls_seconds,
    ls_share, candidates, rounds, failed, reference_test_ppl and the search's folder name.
    ``progress``: a bar over the searches and their own bars (None: off under CI and pytest).
    """
    if not isinstance(base, SearchConfig):
        raise TypeError(f"base must be a SearchConfig; got {type(base).__name__}")
    if isinstance(repeats, bool) or not isinstance(repeats, int) or repeats < 1:
        raise ValueError(f"repeats={repeats!r} is not valid; it must be a positive integer")
    if progress is not None and not isinstance(progress, bool):
        raise ValueError(f"progress={progress!r} is not valid; choose one of [None, True, False]")
    combinations = []
    for combination in expand(grid):
        # A ranking that reads no LS runs once for all LS-space options.
        combination = unread_dropped(combination, {"ranking": base.ranking})
        if combination not in combinations:
            combinations.append(combination)
    dev = resolve_device(device)
    jobs = []
    for combination in combinations:
        for r in range(repeats):
            config = dataclasses.replace(base, **combination, seed=base.seed + r)
            jobs.append((combination, r, search_name(combination, r), config, config.resolved(dev)))
    names = [job[2] for job in jobs]
    clashes = sorted({n for n in names if names.count(n) > 1})
    if clashes:
        raise ValueError(f"grid values give the same folder name(s) {clashes}; make them distinct")

    out = Path(out)
    storage = storage or default_storage_url(out)
    reference_dir = Path(reference_dir) if reference_dir is not None else out / "reference"
    show = auto_progress(progress)
    rows = []
    for combination, r, name, config, resolved in tqdm(jobs, desc="sweep", unit="search", disable=not show):
        summary = _finished(out / name / "summary.json", resolved)
        if summary is None:
            summary = run_search(config, out / name, storage=storage, device=dev,
                                 reference_dir=reference_dir, progress=progress)
        rows.append(_row(combination, r, name, summary))
        write_csv(out / "sweep.csv", pd.DataFrame(rows))
    return pd.DataFrame(rows)


def selected_is(frame: pd.DataFrame, params: dict) -> pd.Series:
    """Per row of a sweep frame, whether its selected configuration is ``params`` (every
    ``selected_<name>`` column equal to ``params[name]``); Table 4's "optimal config
    selected" with ``params`` the :func:`exhaustive` search's selection."""
    if not params:
        raise ValueError("params must be a non-empty dict of search-space parameters")
    missing = [f"selected_{k}" for k in params if f"selected_{k}" not in frame.columns]
    if missing:
        raise ValueError(f"column(s) {missing} are not in the frame: params must be the same search "
                         "space's parameters")
    match = pd.Series(True, index=frame.index)
    for k, v in params.items():
        column = frame[f"selected_{k}"]
        match &= column.map(lambda x, v=v: math.isclose(x, v) if isinstance(v, float) else x == v)
    return match.rename("optimal_selected")
