"""The loss-based full-training search of Fig. 3 (right), the baseline that LSH's time to a
target perplexity is measured against: candidates trained one after another to the end."""
from __future__ import annotations

import dataclasses
import math
from pathlib import Path

import pandas as pd

from lshkit.checks import check_int
from lshkit.io import versions, write_csv, write_json
from lshkit.search.config import SearchConfig
from lshkit.search.runner import Runner, TrainingRunner
from lshkit.search.samplers import Observation, make_sampler
from lshkit.env import auto_progress

__all__ = ["full_training_search"]


def full_training_search(config: SearchConfig, out, *, target_ppl: float | None = None,
                         max_candidates: int | None = None, storage: str | None = None,
                         device="auto", checkpoints=None, progress: bool | None = None,
                         runner: Runner | None = None) -> dict:
    """The loss-based full-training search of Fig. 3 (right): candidates proposed by
    ``config.sampler`` (the first by ``initial``, then ``propose`` with every finished
    candidate's best validation loss as its score) are trained one after another to
    ``final_epochs``, until one reaches validation perplexity ``target_ppl`` (default
    ``config.target_ppl``); that candidate stops at the epoch it does. At most
    ``max_candidates`` (default: the pool size). Records ``full_training.csv`` (one row per
    candidate-epoch with the cumulative compute seconds) and ``full_training.json`` into
    ``out`` (when given). ``runner`` carries out the "full" units (default: a
    :class:`~lshkit.search.runner.TrainingRunner`, resumable like the search through its own
    jobs study in ``storage``; :class:`lshkit.atlas.replay.AtlasRunner` reads them from an atlas)."""
    target = config.target_ppl if target_ppl is None else target_ppl
    if target is None or not target > 1:
        raise ValueError(f"target_ppl must be a perplexity > 1; got {target!r}")
    if runner is None:
        runner = TrainingRunner(dataclasses.replace(config, target_ppl=target), out, storage=storage,
                                device=device, checkpoints=checkpoints, prefix="full",
                                progress=auto_progress() if progress is None else progress)
        runner.open()
    cfg = runner.config
    sampler = make_sampler(cfg.sampler, cfg.search_space(), cfg.seed)
    limit = cfg.pool if max_candidates is None else max_candidates
    check_int("max_candidates", limit, low=1)

    history, rows, cumulative, reached = [], [], 0.0, None
    for i in range(limit):
        params = sampler.initial(1) if i == 0 else sampler.propose(1, history)
        if not params:
            break
        spec = {"kind": "full", "candidate": i, "params": params[0], "target_ppl": float(target)}
        result = runner.run({f"full-c{i}": spec}, f"full training c{i}")[f"full-c{i}"]
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
    if out is not None:
        write_csv(Path(out) / "full_training.csv", pd.DataFrame(rows))
        write_json(Path(out) / "full_training.json", summary)
    return dict(summary, rows=pd.DataFrame(rows))
