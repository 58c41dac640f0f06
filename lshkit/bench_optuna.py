"""Optuna's samplers and pruners run on LSH-Bench (:mod:`lshkit.bench`), and set beside LSH.

:func:`run_study` drives an Optuna study through ask/tell on an atlas: each trial is a
configuration "trained" by reading its record epoch by epoch, ``trial.report(valid_loss, epoch)``
after every epoch, stopped where the pruner says, on a simulated clock of recorded CPU seconds
(the clock of Syne Tune's simulator backend on its tabulated blackboxes, and of a replayed LSH
search, :mod:`lshkit.atlas.replay`). The study ends when the next epoch would exceed the budget in
simulated seconds, or after a number of trials; the pick is the completed trial with the lowest
final validation value, and its test perplexity is read from the atlas.

:func:`compare` replays LSH (TPE proposals, LS ranking, paper §3.2) and its loss-ranked baseline
(Table 2's) with :func:`lshkit.atlas.replay.replay_many`, and runs Optuna's stock pruners (median,
Hyperband, successive halving, and none: trials trained fully) with the same sampler on the
same atlas, each study given the simulated seconds the LSH replay of the same seed spent.

The atlas space is categorical (methodological variants × death rates), so CMA-ES, whose model
is a Gaussian over continuous coordinates, does not apply: Optuna's ``CmaEsSampler`` would hand
every categorical dimension to its independent fallback sampler, a random search under another
name. It is refused with that reason.
"""
from __future__ import annotations

import json
import math
import time
from pathlib import Path

import numpy as np
import pandas as pd

from lshkit.atlas import Atlas, configuration_name, load_atlas
from lshkit.bench import Bench, load
from lshkit.checks import check_choice, check_int, check_number
from lshkit.io import Journal, read_json, versions, write_csv, write_json
from lshkit.stats import summarise, t_interval
from lshkit.vocab import BENCH_SAMPLERS as SAMPLERS, METRICS, PRUNERS

__all__ = ["SAMPLERS", "PRUNERS", "METRICS", "REFUSED", "run_study", "compare", "paired", "summary_table",
           "method_label", "COLOURS"]

REFUSED = {"cmaes": "CMA-ES does not apply to the atlas space: every dimension is categorical (the "
                     "methodological variants and the atlas's death rates), and CMA-ES models continuous "
                     "coordinates; Optuna's CmaEsSampler would draw every dimension with its independent "
                     "fallback sampler, which is random search. Use 'tpe' or 'random'."}
_LSH = {"ls": "LSH (LS ranking)", "loss": "LSH (loss ranking)"}
_PRUNER_LABELS = {"median": "median pruner", "hyperband": "Hyperband pruner",
                  "successive_halving": "successive halving pruner", "none": "no pruner"}
#: The colour of each method in figures: lshkit.report.PALETTE's key (no pruner trains every trial
#: fully: the loss-based full-training search of Fig. 3).
COLOURS = {_LSH["ls"]: "LS ranking", _LSH["loss"]: "loss ranking", "median pruner": "median pruner",
           "Hyperband pruner": "Hyperband pruner", "successive halving pruner": "successive halving pruner",
           "no pruner": "full training"}
#: Where :func:`compare` keeps finished Optuna studies until its own files are written.
_JOURNAL = "journal.jsonl"


def method_label(sampler: str, pruner: str) -> str:
    return f"Optuna {sampler.upper() if sampler == 'tpe' else sampler}, {_PRUNER_LABELS[pruner]}"


def _sampler(sampler, seed: int):
    import optuna

    if isinstance(sampler, optuna.samplers.BaseSampler):
        if isinstance(sampler, optuna.samplers.CmaEsSampler):
            raise ValueError(REFUSED["cmaes"])
        return sampler
    if sampler in REFUSED:
        raise ValueError(REFUSED[sampler])
    check_choice("sampler", sampler, SAMPLERS)
    return {"tpe": optuna.samplers.TPESampler, "random": optuna.samplers.RandomSampler}[sampler](seed=seed)


def _pruner(pruner, last_epoch: int):
    import optuna

    if isinstance(pruner, optuna.pruners.BasePruner):
        return pruner
    check_choice("pruner", pruner, PRUNERS)
    # Resources are epochs: 1 (the first report) to the atlas's last; eta 3, as the kit's Hyperband/BOHB.
    return {"median": lambda: optuna.pruners.MedianPruner(n_startup_trials=5, n_warmup_steps=0),
            "hyperband": lambda: optuna.pruners.HyperbandPruner(min_resource=1, max_resource=last_epoch,
                                                                reduction_factor=3),
            "successive_halving": lambda: optuna.pruners.SuccessiveHalvingPruner(min_resource=1,
                                                                                 reduction_factor=3),
            "none": optuna.pruners.NopPruner}[pruner]()


def run_study(bench: Bench, *, sampler="tpe", pruner="median", seed: int = 0, budget_seconds: float | None = None,
              max_trials: int | None = None, metric: str = "valid_loss", train_seed=None,
              max_outside: int = 1000) -> dict:
    """One Optuna study on ``bench`` through ask/tell (module docstring); returns what it found.

    ``sampler``: "tpe", "random" or an Optuna sampler (CMA-ES refused: the space is categorical);
    ``pruner``: "median", "hyperband", "successive_halving", "none" or an Optuna pruner;
    ``seed`` seeds the sampler (and the draws of ``train_seed="sample"``). Stops before an epoch
    that would take the clock past ``budget_seconds`` (simulated CPU seconds of training and
    validation) or after ``max_trials`` evaluated trials, whichever comes first (at least one of
    them). ``metric`` ("valid_loss" or "valid_ppl") is reported every epoch and minimised.
    ``train_seed``: the training seed whose record a trial reads (default the atlas's main
    seed), or "sample" (each trial draws one of its configuration's seeds). A draw outside a
    partial space (an atlas being built) is told FAIL at no cost and drawn again, at most
    ``max_outside`` times in a row. A trial whose record diverged is FAIL at that epoch.

    Returns ``selected`` (the configuration, None if no trial completed), ``valid_ppl`` and
    ``test_ppl`` (its last epoch), ``spent_seconds``, counts of trials by state, ``epochs``
    trained in all, ``decision_seconds`` (this process's wall time) and ``trials`` (one row each)."""
    import optuna
    from optuna.trial import TrialState

    from lshkit.env import quiet_optuna

    check_int("seed", seed, low=0)
    check_choice("metric", metric, METRICS)
    if budget_seconds is None and max_trials is None:
        raise ValueError("give budget_seconds (simulated CPU seconds), max_trials, or both")
    if budget_seconds is not None:
        check_number("budget_seconds", budget_seconds, low=0, low_open=True)
    check_int("max_trials", max_trials, low=1, optional=True)
    check_int("max_outside", max_outside, low=1)
    if not (train_seed is None or train_seed == "sample" or (isinstance(train_seed, int) and not isinstance(train_seed, bool))):
        raise ValueError(f"train_seed={train_seed!r} is not valid; give None (the atlas's main seed), a "
                         "training seed, or 'sample'")
    last = bench.fidelities[-1]
    optuna_sampler, optuna_pruner = _sampler(sampler, seed), _pruner(pruner, last)
    space = bench.space
    distributions = space.to_optuna()
    rng = np.random.default_rng(seed)
    curves = {}
    start = time.perf_counter()
    with quiet_optuna():
        study = optuna.create_study(direction="minimize", sampler=optuna_sampler, pruner=optuna_pruner)
    clock, epochs, outside, rows, exhausted = 0.0, 0, 0, [], False
    while not exhausted and (max_trials is None or len(rows) < max_trials):
        trial = study.ask(distributions)
        params = space.snap(trial.params)
        if not space.contains(params):
            study.tell(trial, state=TrialState.FAIL)
            outside += 1
            if outside > max_outside:
                raise RuntimeError(f"{max_outside} draws in a row fell outside the {space.size()} configurations "
                                   "the atlas holds; build more of it")
            continue
        outside = 0
        name = configuration_name(params)
        s = bench._seed(name, train_seed, rng)[0] if train_seed is not None else bench.spec.seed
        if (name, s) not in curves:
            curve = bench.curve(name, s)
            curves[(name, s)] = (curve[metric].to_numpy(), curve.epoch_seconds.to_numpy(),
                                 curve.failed.to_numpy(), curve.valid_ppl.to_numpy(), curve.test_ppl.to_numpy())
        values, seconds, failed, valid_ppl, test_ppl = curves[(name, s)]
        state, reached = TrialState.COMPLETE, 0
        for epoch in range(1, last + 1):
            if epoch >= len(values) or (budget_seconds is not None and clock + seconds[epoch] > budget_seconds):
                state, exhausted = TrialState.FAIL, epoch < len(values)
                break
            clock += seconds[epoch]
            epochs += 1
            reached = epoch
            if failed[epoch] or not math.isfinite(values[epoch]):
                state = TrialState.FAIL
                break
            trial.report(float(values[epoch]), epoch)
            if trial.should_prune():
                state = TrialState.PRUNED
                break
        if state == TrialState.COMPLETE:
            study.tell(trial, float(values[last]))
        else:
            study.tell(trial, state=state)
        if exhausted and reached == 0:
            break  # the budget ran out before this trial trained an epoch: not a trial
        rows.append({"trial": trial.number, "configuration": name, "train_seed": s,
                     "state": "stopped by the budget" if exhausted else state.name.lower(), "epochs": reached,
                     "value": float(values[reached]) if reached else math.nan, "clock_seconds": clock})
    done = [r for r in rows if r["state"] == "complete"]
    best = min(done, key=lambda r: r["value"]) if done else None
    result = {"sampler": sampler if isinstance(sampler, str) else type(sampler).__name__,
              "pruner": pruner if isinstance(pruner, str) else type(pruner).__name__, "seed": seed,
              "budget_seconds": budget_seconds, "max_trials": max_trials, "metric": metric,
              "trials": len(rows), **{k: sum(r["state"] == k for r in rows) for k in ("complete", "pruned", "fail")},
              "epochs": epochs, "spent_seconds": float(clock), "selected": None, "selected_configuration": None,
              "valid_ppl": math.nan, "test_ppl": math.nan}
    if best is not None:
        _, _, _, valid_ppl, test_ppl = curves[(best["configuration"], best["train_seed"])]
        result.update(selected=bench.params[best["configuration"]], selected_configuration=best["configuration"],
                      selected_train_seed=best["train_seed"], valid_ppl=float(valid_ppl[last]),
                      test_ppl=float(test_ppl[last]))
    result.update(decision_seconds=time.perf_counter() - start, trial_log=rows)
    return result


# ---------------------------------------------------------------------------- the comparison


def _study_row(result: dict, method: str) -> dict:
    row = {"method": method, **{k: result[k] for k in ("seed", "sampler", "pruner", "budget_seconds", "trials",
                                                        "complete", "pruned", "fail", "epochs", "spent_seconds",
                                                        "valid_ppl", "test_ppl", "decision_seconds")},
           "selected_configuration": result["selected_configuration"]}
    row.update({f"selected_{k}": v for k, v in (result["selected"] or {}).items()})
    return row


_BENCHES = {}


def _study_job(job) -> dict:
    """One Optuna study of :func:`compare` (in a worker process: the atlas read once per process)."""
    root, fields, seed, budget = job
    if root not in _BENCHES:
        _BENCHES[root] = load(root)
    result = run_study(_BENCHES[root], seed=seed, budget_seconds=budget, **fields)
    return _study_row(result, method_label(fields["sampler"], fields["pruner"]))


def _lsh_rows(frame: pd.DataFrame, ranking: str) -> pd.DataFrame:
    rows = frame.rename(columns={"total_seconds": "spent_seconds", "candidates": "trials"})
    rows = rows.assign(method=_LSH[ranking], pruner=f"LSH, {ranking} ranking", budget_seconds=math.nan)
    keep = ["method", "seed", "sampler", "pruner", "budget_seconds", "trials", "spent_seconds", "valid_ppl",
            "test_ppl", "decision_seconds"] + [c for c in rows if c.startswith("selected_")]
    rows = rows[keep].copy()
    params = [c for c in rows if c.startswith("selected_")]
    rows["selected_configuration"] = [configuration_name({k[len("selected_"):]: v for k, v in r.items()})
                                      if pd.notna(r.get("selected_death_rate")) else None
                                      for r in rows[params].to_dict("records")]
    return rows


def paired(runs: pd.DataFrame, reference: str = _LSH["ls"], value: str = "test_ppl") -> pd.DataFrame:
    """Per method, the mean of ``value`` minus ``reference``'s, paired by seed (an Optuna study
    of seed k had the budget LSH's replay of seed k spent; LSH's two rankings of seed k start
    from the same pool), with its 95% Student-t interval (:func:`lshkit.stats.t_interval`) and
    how many seeds each side won."""
    wide = runs.pivot_table(index="seed", columns="method", values=value)
    if reference not in wide:
        raise ValueError(f"no runs of {reference!r}; the methods are {sorted(wide.columns)}")
    rows = []
    for method in [m for m in dict.fromkeys(runs.method) if m != reference]:
        d = (wide[method] - wide[reference]).dropna()
        mean, half, n = t_interval(d)
        rows.append({"method": method, "versus": reference, "pairs": n, "difference": mean,
                     "lo": mean - half, "hi": mean + half,
                     "better": int((d < 0).sum()), "worse": int((d > 0).sum())})
    return pd.DataFrame(rows)


def summary_table(runs: pd.DataFrame) -> pd.DataFrame:
    """Per method: test perplexity of the pick (n, mean, std, 95% Student-t half-width), the mean
    simulated CPU hours spent and trials (LSH: candidates) per search."""
    out = summarise(runs, "method")
    cost = runs.groupby("method", sort=False).agg(cpu_hours=("spent_seconds", lambda s: s.mean() / 3600),
                                                  trials=("trials", "mean")).reset_index()
    return out.merge(cost, on="method")


def _key(atlas: Atlas, repeats: int, first_seed: int, fields: dict) -> dict:
    return {"atlas": atlas.spec.to_dict(), "repeats": repeats, "first_seed": first_seed, "fields": fields}


def _finished(folder: Path, key: dict) -> bool:
    if not all((folder / f).exists() for f in ("runs.csv", "summary.json")):
        return False
    key = json.loads(json.dumps(key))
    previous = read_json(folder / "summary.json")
    return {k: previous.get(k) for k in key} == key


def _read(folder: Path) -> dict:
    runs = pd.read_csv(folder / "runs.csv")
    return {"runs": runs, "summary": summary_table(runs), "paired": paired(runs), "folder": folder}


def compare(atlas, out=None, *, repeats: int = 100, first_seed: int = 0, sampler: str = "tpe",
            pruners=PRUNERS, budget: str = "low", budget_seconds="lsh", metric: str = "valid_loss",
            reference: str = "same_epoch", committed=None, workers: int = 1, progress: bool = False) -> dict:
    """LSH and Optuna's stock pruners on one atlas, ``repeats`` seeds each (module docstring).

    LSH: :func:`lshkit.atlas.replay.replay_many` with ``sampler``, ``budget`` and ``reference``, ranked by
    LS and by loss. Optuna: :func:`run_study` with ``sampler`` and each of ``pruners``, seed k
    given ``budget_seconds`` simulated seconds ("lsh": what LSH's LS-ranked replay of seed k
    spent). Returns ``runs`` (one row per method and seed: the pick, its valid and test
    perplexity, simulated seconds, trials), ``summary`` (:func:`summary_table`) and ``paired``
    (:func:`paired`, against LSH with LS ranking). With ``out``: written there (``runs.csv``,
    ``summary.csv``, ``paired.csv``, ``summary.json``; LSH's replays in ``lsh-<ranking>/``),
    read back when finished with the same atlas and fields; a killed run resumes with the
    studies it had finished. ``committed``: a folder laid out like ``out`` whose finished
    results are read (never written) first, as the notebooks read committed replays in CI."""
    from lshkit.atlas.replay import replay_many

    check_int("repeats", repeats, low=1)
    check_int("first_seed", first_seed, low=0)
    check_int("workers", workers, low=1)
    _sampler(sampler, 0)
    if not isinstance(pruners, (list, tuple)) or not pruners or len(set(pruners)) != len(pruners):
        raise ValueError(f"pruners={pruners!r} is not valid; give a non-empty list of distinct names from {list(PRUNERS)}")
    for p in pruners:
        check_choice("pruners entry", p, PRUNERS)
    check_choice("metric", metric, METRICS)
    if budget_seconds != "lsh":
        check_number("budget_seconds", budget_seconds, low=0, low_open=True)
    atlas = atlas if isinstance(atlas, Atlas) else load_atlas(atlas)
    fields = {"sampler": sampler, "pruners": list(pruners), "budget": budget, "budget_seconds": budget_seconds,
              "metric": metric, "reference": reference}
    key = _key(atlas, repeats, first_seed, fields)
    for folder in (committed, out):
        if folder is not None and _finished(Path(folder), key):
            return _read(Path(folder))
    lsh_fields = dict(sampler=sampler, budget=budget, reference=reference)
    from lshkit.atlas.replay import atlas_config
    atlas_config(atlas, **lsh_fields, ranking="ls", seed=first_seed)  # a bad field fails before any work
    start = time.perf_counter()
    frames = []
    for ranking in ("ls", "loss"):
        folder = None if out is None else Path(out) / f"lsh-{ranking}"
        frame = replay_many(atlas, folder, repeats=repeats, first_seed=first_seed, write_repeats=False,
                            workers=workers, ranking=ranking, **lsh_fields)
        frames.append(_lsh_rows(frame, ranking))
    spent = dict(zip(frames[0].seed, frames[0].spent_seconds))
    journal = Journal(Path(out) / _JOURNAL, key) if out is not None else None
    seeds = list(range(first_seed, first_seed + repeats))
    ids = [f"{p}/{s}" for p in pruners for s in seeds]
    done = dict(journal.done) if journal is not None else {}
    jobs = [(str(atlas.root), {"sampler": sampler, "pruner": i.split("/")[0], "metric": metric}, int(i.split("/")[1]),
             float(spent[int(i.split("/")[1])] if budget_seconds == "lsh" else budget_seconds))
            for i in ids if i not in done]

    def finished(row):
        item = f"{row['pruner']}/{row['seed']}"
        done[item] = journal.add(item, row) if journal is not None else row

    from tqdm.auto import tqdm

    bar = tqdm(total=len(jobs), desc="Optuna studies", unit="study", disable=not progress)
    if workers == 1 or len(jobs) <= 1:
        _BENCHES[str(atlas.root)] = load(atlas)
        for job in jobs:
            finished(_study_job(job))
            bar.update()
    else:
        from lshkit.env import spawn_pool

        with spawn_pool(min(workers, len(jobs))) as pool:  # Ctrl-C: this process stops them
            for row in pool.imap_unordered(_study_job, jobs, chunksize=4):
                finished(row)
                bar.update()
    bar.close()
    runs = pd.concat(frames + [pd.DataFrame([done[i] for i in ids])], ignore_index=True)
    result = {"runs": runs, "summary": summary_table(runs), "paired": paired(runs), "folder": out}
    if out is not None:
        out = Path(out)
        write_csv(out / "runs.csv", runs)
        write_csv(out / "summary.csv", result["summary"])
        write_csv(out / "paired.csv", result["paired"])
        write_json(out / "summary.json", {**key, "wall_seconds": time.perf_counter() - start,
                                          "versions": versions(),
                                          "clock": "recorded CPU seconds of training and validation (LSH with "
                                                   "LS ranking: and its LS); an Optuna study of seed k has the "
                                                   "seconds LSH (LS ranking) of seed k spent"
                                                   if budget_seconds == "lsh" else
                                                   "recorded CPU seconds; every Optuna study has budget_seconds"})
        journal.close()
    return result
