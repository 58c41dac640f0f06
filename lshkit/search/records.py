"""The records of a search: the tidy tables, the LS vectors and the summary, which notebooks
read without retraining.

``epochs.csv`` (one row per candidate per epoch: configuration, losses, perplexity, density,
distance, embedding coordinates, seconds), ``rounds.csv`` (one row per ranking), ``events.csv``
(added / survived / removed / failed / selected), ``reference.csv``, ``ls.npz`` (every LS vector,
the reference's per epoch) and ``summary.json``.
"""
from __future__ import annotations

import io
import math
from pathlib import Path

import numpy as np
import pandas as pd

from lshkit.io import atomic_write, versions, write_csv, write_json
from lshkit.train import perplexity

__all__ = ["summary", "tables", "ls_arrays", "write"]


def summary(search, wall: float) -> dict:
    """The search's summary (``summary.json``): the selection, its perplexities, the survivors,
    the configuration, where it ran, versions and the compute seconds."""
    cfg = search.config
    rows = [rec for c in search.candidates for rec in c.records]

    def seconds(rec):
        return rec.get("train_seconds", 0.0) + rec.get("eval_seconds", 0.0) + rec.get("ls_seconds", 0.0)

    selection = sum(seconds(r) for r in rows if r["phase"] == "selection")
    ls_seconds = sum(r.get("ls_seconds", 0.0) for r in rows if r["phase"] == "selection")
    final = sum(seconds(r) for r in rows if r["phase"] == "final")
    sel = search.selected
    summary = {
        "selected": None if sel is None else sel.params,
        "selected_candidate": None if sel is None else sel.cid,
        "valid_ppl": None if sel is None else perplexity(sel.final["valid_loss"]),
        "test_ppl": None if sel is None else perplexity(sel.final["test_loss"]),
        "survivors": [{"candidate": c.cid, "params": c.params, "status": c.final["status"],
                       "valid_ppl": perplexity(c.final["valid_loss"]) if "valid_loss" in c.final else None,
                       "test_ppl": perplexity(c.final["test_loss"]) if "test_loss" in c.final else None}
                      for c in search.candidates if c.final is not None],
        "candidates": len(search.candidates),
        "failed": sum(c.status == "failed" for c in search.candidates),
        "rounds": len(search.rounds),
        "config": cfg.to_dict(),
        # summary.json is written with sorted keys; the space's order matters to the samplers,
        # so SearchConfig.from_json(summary["config_json"]) is the exact search.
        "config_json": cfg.to_json(),
        **search.runner.description,
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
        "time_to_target_seconds": _time_to_target(search, selection),
        "reference": None,
    }
    if search.reference is not None:
        ref = search.reference
        summary["reference"] = {
            "key": ref.get("key"), "epochs": ref["records"][-1]["epoch"],
            "valid_ppl": perplexity(ref["valid_loss"]), "test_ppl": perplexity(ref["test_loss"]),
            "seconds": sum(seconds(r) for r in ref["records"]),
            "ls_info": ref["records"][-1].get("ls_info"),
        }
    return summary


def _time_to_target(search, selection: float) -> float | None:
    """Fig. 3 (right) for LSH: the selection's compute time plus the survivors' final training,
    in lockstep, up to the first epoch at which the selected candidate's validation
    perplexity is at most ``target_ppl`` (just the selection's if it got there before);
    None when it never does."""
    target, sel = search.config.target_ppl, search.selected
    if target is None or sel is None:
        return None
    reached = [r["epoch"] for r in sel.records if r["valid_ppl"] <= target]
    if not reached:
        return None
    spent = sum(r.get("train_seconds", 0.0) + r.get("eval_seconds", 0.0)
                for c in search.candidates if c.final is not None for r in c.records
                if r["phase"] == "final" and r["epoch"] <= reached[0])
    return selection + spent

def tables(search) -> dict[str, pd.DataFrame]:
    """The tidy records as DataFrames: epochs, rounds, events, reference."""
    names = list(search.space)
    gaps = ("gap_min", "gap_mean") if search.config.ranking == "gap" else ()
    rows = []
    for c in search.candidates:
        for rec in c.records:
            row = {"candidate": c.cid, "phase": rec["phase"], "round": rec["round"],
                   "bracket": rec.get("bracket"), "rung": rec.get("rung"), "epoch": rec["epoch"]}
            row.update({name: c.params[name] for name in names})
            for key in ("train_loss", "valid_loss", "valid_ppl", "density", "averaging",
                        "score", "distance", "same_epoch_distance", "final_distance", "embed_x", "embed_y",
                        "train_seconds", "eval_seconds", "ls_seconds") + gaps:
                row[key] = rec.get(key, math.nan)
            # The schedule's death rate at this epoch; ``death_rate`` is the configuration's.
            row["death_rate_now"] = rec.get("death_rate", math.nan)
            row["status"] = "failed" if rec.get("failed") else "ok"
            rows.append(row)
    epochs = pd.DataFrame(rows)
    if search.config.sampler not in ("hyperband", "bohb") and not epochs.empty:
        epochs = epochs.drop(columns=["bracket", "rung"])
    events = pd.DataFrame(search.events)
    ref_rows = []
    if search.reference is not None:
        for rec in search.reference["records"]:
            ref_rows.append({k: rec.get(k, math.nan) for k in (
                "epoch", "train_loss", "valid_loss", "valid_ppl", "train_seconds", "eval_seconds",
                "ls_seconds")})
    return {"epochs": epochs, "rounds": pd.DataFrame(search.rounds), "events": events,
            "reference": pd.DataFrame(ref_rows)}

def ls_arrays(search) -> dict[str, np.ndarray]:
    """Every LS vector of the search: candidate, epoch, round and the vectors; the reference's per epoch."""
    cid, epoch, rnd, ls = [], [], [], []
    for c in search.candidates:
        for rec in c.records:
            if "ls" in rec:
                cid.append(c.cid)
                epoch.append(rec["epoch"])
                rnd.append(rec["round"])
                ls.append(rec["ls"])
    n = len(ls[0]) if ls else 0
    arrays = {"candidate": np.array(cid, dtype=np.int64), "epoch": np.array(epoch, dtype=np.int64),
              "round": np.array(rnd, dtype=np.int64), "ls": np.array(ls, dtype=np.float64).reshape(len(ls), n)}
    if search.reference is not None:
        arrays["reference_ls"] = search.ref_ls_epochs
        arrays["reference_epoch"] = np.arange(len(search.ref_ls_epochs))
    return arrays

def write(search, out) -> None:
    """Write the tidy files into ``out``, atomically: epochs.csv, rounds.csv, events.csv,
    reference.csv, ls.npz, summary.json."""
    for name, frame in tables(search).items():
        write_csv(Path(out) / f"{name}.csv", frame)
    buffer = io.BytesIO()
    np.savez_compressed(buffer, **ls_arrays(search))
    atomic_write(Path(out) / "ls.npz", buffer.getvalue())
    write_json(Path(out) / "summary.json", search.summary)

