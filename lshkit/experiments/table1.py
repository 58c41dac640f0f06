"""Table 1: LSH's pick beside the dense model and the Selfish-RNN default, trained fully or read
from the atlas, and the claim that LSH's pick is the best of the three.
"""
from __future__ import annotations

import dataclasses
import json
import math
from pathlib import Path

import pandas as pd

from lshkit import paper
from lshkit.checks import check_choice, check_positive_int
from lshkit.data import load_corpus
from lshkit.embedding import check_references
from lshkit.env import resolve_device
from lshkit.io import run_record
from lshkit.report import SOURCES, comparison, save_results
from lshkit.search import SearchConfig, run_search
from lshkit.stats import overall_verdict
from lshkit.train import TrainConfig
from lshkit.vocab import SEARCH_MODELS
from lshkit.experiments.fixed import SELFISH_RNN, atlas_fixed, check_config, selfish_rnn_config, sized, train_fixed
from lshkit.experiments.readings import READING_LABELS, reading_verdict


#: Table 1's methods, in its column order, with the labels the notebooks print.
METHODS = {"dense": "dense", "selfish_rnn": "Selfish-RNN default", "lsh": "LSH pick"}


def compare_methods(config: SearchConfig, out, *, storage: str | None = None, device="auto",
                    reference_dir=None, progress: bool | None = None, lsh_dir=None) -> pd.DataFrame:
    """One model's rows of Table 1: the dense model and the Selfish-RNN default trained fully
    (:func:`train_fixed`) and the pick of the search ``config`` (:func:`lshkit.search.run_search`,
    into ``lsh_dir``, default ``out/lsh``), all on ``config``'s TrainConfig, the pruned ones at its sparsity.

    Columns: model, dataset, method (a key of :data:`METHODS`), label, sparsity, status,
    valid_ppl, test_ppl, seconds (compute seconds: the whole search for LSH), configuration
    (the pruning configuration as JSON; "" for dense)."""
    check_config(config)
    dev = resolve_device(device)
    cfg = config.resolved(dev)
    # The Selfish-RNN default first: its training shows a progress bar, the reference's does not.
    selfish = train_fixed(cfg, selfish_rnn_config(cfg), Path(out) / "selfish_rnn", device=dev,
                          reference_dir=reference_dir, progress=progress)
    dense = train_fixed(cfg, None, Path(out) / "dense", device=dev, reference_dir=reference_dir,
                        progress=progress)
    lsh = run_search(cfg, Path(out) / "lsh" if lsh_dir is None else lsh_dir, storage=storage, device=dev,
                     reference_dir=reference_dir, progress=progress)
    dataset = cfg.train_config().dataset
    rows = [
        ("dense", 0.0, dense["status"], dense["valid_ppl"], dense["test_ppl"], dense["seconds"], ""),
        ("selfish_rnn", cfg.sparsity, selfish["status"], selfish["valid_ppl"], selfish["test_ppl"],
         selfish["seconds"], json.dumps(SELFISH_RNN[cfg.model], sort_keys=True)),
        ("lsh", cfg.sparsity, "ok" if lsh["selected"] is not None else "failed", lsh["valid_ppl"],
         lsh["test_ppl"], lsh["timings"]["total_seconds"], json.dumps(lsh["selected"], sort_keys=True)),
    ]
    return pd.DataFrame([{"model": cfg.model, "dataset": dataset, "method": m, "label": METHODS[m],
                          "sparsity": s, "status": st, "valid_ppl": v, "test_ppl": t, "seconds": sec,
                          "configuration": c} for m, s, st, v, t, sec, c in rows])


def atlas_methods(atlas, out, *, repeats: int = 100, first_seed: int = 0, budget: str = "low",
                  reference: str = "same_epoch", committed=None) -> pd.DataFrame:
    """Table 1 on an atlas (:mod:`lshkit.atlas`), for its one model: the dense model and the
    Selfish-RNN default read from its records (the default at the atlas's death rate nearest
    Selfish-RNN's), and the LSH pick (TPE generation, LS ranking against the dense LS read by
    ``reference``, ``budget``) replayed ``repeats`` times (:func:`lshkit.atlas.replay.replay_sweep` into
    ``out``; ``committed`` as there).
    The columns of :func:`compare_methods`, plus n, ci95 (the LSH row's mean over the replays
    and its 95% Student-t half-width; 1 and NaN for the single trainings) and configuration (for
    LSH, the pick the replays made most often)."""
    from lshkit.atlas.replay import replay_sweep
    from lshkit.stats import summarise

    spec = atlas.spec
    rows = [{**row, "n": 1, "ci95": math.nan} for row in atlas_fixed(atlas)]
    replays = replay_sweep(atlas, out, {"sampler": ["tpe"], "reference": [reference]}, repeats=repeats,
                           first_seed=first_seed, ranking="ls", budget=budget, committed=committed)
    test, valid = summarise(replays, "sampler").iloc[0], replays.valid_ppl.mean()
    picked = replays.filter(like="selected_").rename(columns=lambda c: c[len("selected_"):])
    mode = pd.Series([json.dumps(r, sort_keys=True) for r in picked.to_dict("records")]).mode().iloc[0]
    rows.append({"method": "lsh", "sparsity": spec.sparsity, "status": "ok", "valid_ppl": valid,
                 "test_ppl": test["mean"], "seconds": replays.total_seconds.mean(), "n": int(test["n"]),
                 "ci95": test["ci95"], "configuration": mode})
    dataset = spec.train_config().dataset
    return pd.DataFrame([{"model": spec.model, "dataset": dataset, "label": METHODS[r["method"]], **r} for r in rows])


def _methods_by_reference(frames: dict) -> pd.DataFrame:
    """Table 1 rows of one model under several readings of the LS reference (``frames``: reading ->
    a :func:`compare_methods` or :func:`atlas_methods` frame) as one frame with a
    ``reference`` column: the LSH pick once per reading, labelled with it ("LSH pick, same-epoch
    reference"); the dense model and the Selfish-RNN default, which read no LS, once (the first
    reading's rows; ``reference`` empty)."""
    check_references(list(frames))
    lsh = [frame[frame.method == "lsh"].assign(reference=reference,
                                               label=f"{METHODS['lsh']}, {READING_LABELS[reference]}")
           for reference, frame in frames.items()]
    first = next(iter(frames.values()))
    order = {m: i for i, m in enumerate(METHODS)}
    out = pd.concat([first[first.method != "lsh"].assign(reference=None)] + lsh, ignore_index=True)
    return out.sort_values("method", key=lambda m: m.map(order), kind="stable", ignore_index=True)


def atlas_methods_by_reference(atlas, out, *, references=("same_epoch", "final"), repeats: int = 100,
                               first_seed: int = 0, budget: str = "low", committed=None) -> pd.DataFrame:
    """:func:`atlas_methods` under each reading of the LS reference in ``references``
    (:data:`lshkit.embedding.REFERENCES`), in one frame with a ``reference`` column: the LSH pick's
    row once per reading (its replays in ``out/sampler=tpe-reference=<reading>``), the dense model
    and the Selfish-RNN default once (``reference`` empty). :func:`table1_claim` judges it per reading."""
    return _methods_by_reference({r: atlas_methods(atlas, out, repeats=repeats, first_seed=first_seed, budget=budget,
                                                   reference=r, committed=committed)
                                  for r in check_references(references)})


def compare_methods_by_reference(config: SearchConfig, out, *, references=("same_epoch", "final"),
                                 storage: str | None = None, device="auto", reference_dir=None,
                                 progress: bool | None = None) -> pd.DataFrame:
    """:func:`compare_methods` under each reading of the LS reference in ``references``: the dense
    model and the Selfish-RNN default trained once (read back for the other readings), one LSH
    search per reading into ``out/lsh-reference=<reading>``; one frame as
    :func:`atlas_methods_by_reference`."""
    check_config(config)
    return _methods_by_reference({r: compare_methods(dataclasses.replace(config, reference=r), out, storage=storage,
                                                     device=device, reference_dir=reference_dir, progress=progress,
                                                     lsh_dir=Path(out) / f"lsh-reference={r}")
                                  for r in check_references(references)})


def mos_search_config(config: SearchConfig, device="auto") -> tuple[SearchConfig, str]:
    """``config``, an AWD-LSTM-MoS search, on the data of Table 1's AWD-LSTM-MoS row, and a sentence
    saying which: the generated corpus at budget "smoke"; otherwise WikiText-2 (the paper's data)
    where its files are found or can be downloaded, PTB where not. A dataset already in
    ``config.train_overrides`` is kept."""
    check_config(config)
    if config.model != "awd_mos":
        raise ValueError(f"config.model must be 'awd_mos'; got {config.model!r}")
    cfg = config.resolved(resolve_device(device))
    if cfg.scale == "smoke":
        return config, "smoke: the generated corpus, whose numbers say nothing about the method"
    if "dataset" in config.train_overrides:
        return config, f"{cfg.scale} scale on {config.train_overrides['dataset']}, as train_overrides set"
    try:
        load_corpus("wikitext2")
        dataset, why = "wikitext2", "WikiText-2, the paper's data"
    except FileNotFoundError:
        dataset, why = "ptb", "PTB: the WikiText-2 files are not here (set LSHKIT_DATA_DIR)"
    overrides = dict(config.train_overrides)
    # Only a change of the preset's dataset is written, so the search keeps its key otherwise.
    if dataset != TrainConfig.preset(cfg.scale, "awd_mos").dataset:
        overrides["dataset"] = dataset
    return (dataclasses.replace(config, train_overrides=overrides),
            f"{cfg.scale} scale on {why}, {cfg.final_epochs} epochs")


def table1_claim(rows: pd.DataFrame) -> pd.DataFrame:
    """Table 1's claim in our numbers, per model of ``rows`` (:func:`compare_methods` or
    :func:`atlas_methods` frames together): whether the LSH pick's test perplexity is below both
    the Selfish-RNN default's and the dense model's. A missing number (failed or not run) makes it
    False. Columns model, dense, selfish_rnn, lsh (test perplexities), holds, and state: one of
    "holds", "does not hold", "is inconclusive", judged on the LSH mean's 95% interval against the
    better of the other two where ``rows`` has a ci95 column (replays), else on holds.
    A frame with a ``reference`` column (:func:`atlas_methods_by_reference`,
    :func:`compare_methods_by_reference`) is judged once per reading of the LSH pick's reference,
    against the same dense and Selfish-RNN rows, in a first column ``reference``."""
    if "reference" in rows and rows.reference.notna().any():
        shared = rows[rows.reference.isna()].drop(columns="reference")
        claims = [table1_claim(pd.concat([shared, rows[rows.reference == r].drop(columns="reference")]))
                  .assign(reference=r) for r in pd.unique(rows.reference.dropna())]
        out = pd.concat(claims, ignore_index=True)
        return out[["reference"] + [c for c in out.columns if c != "reference"]]
    table = rows.pivot_table(index="model", columns="method", values="test_ppl", sort=False, dropna=False)
    table = table.reindex(columns=list(METHODS))
    table["holds"] = (table["lsh"] < table["selfish_rnn"]) & (table["lsh"] < table["dense"])
    table["state"] = table["holds"].map({True: "holds", False: "does not hold"})
    if "ci95" in rows:
        from lshkit.stats import interval_verdict

        half = rows[rows.method == "lsh"].set_index("model")["ci95"].reindex(table.index)
        margin = table["lsh"] - table[["selfish_rnn", "dense"]].min(axis=1)
        table["state"] = [interval_verdict(m - h, m + h, better="below") for m, h in zip(margin, half)]
    return table.reset_index()


#: Table 1's models as its rows name them, with the paper's data.
MODEL_NAMES = {"lstm": "stacked LSTM / PTB", "rhn": "RHN / PTB", "awd_mos": "AWD-LSTM-MoS / WikiText-2"}


CLAIM = "the LSH pick beats the Selfish-RNN default and the dense model"


def run(p) -> dict:
    """Table 1 as a notebook's validated parameters ``p`` (:func:`lshkit.report.validate`) ask: the
    stacked LSTM's row on the atlas where ``p.source`` is "atlas" (:func:`atlas_methods_by_reference`,
    ``p.repeats`` replays per reading, None: 100), else every model of ``p.models`` trained
    (:func:`compare_methods_by_reference`), under each reading in ``p.references``; then ours beside
    the paper's Table 1 and its claim judged per reading (:func:`table1_claim`,
    :func:`lshkit.stats.overall_verdict`). The parameters are checked before anything runs; the run
    is recorded in ``p.run_dir/run.json`` and its results saved beside it.

    Returns ``table1`` (every row), ``shown`` (its columns as the notebook shows them), ``setup`` (what
    ran, per model), ``comparison``, ``claims``, ``verdicts`` (a sentence per reading), and the bar
    chart's inputs: ``bars`` (ours and the paper's test perplexity, per model name and method),
    ``bar_order`` (the methods in order) and ``not_run`` (the model names without a number of ours)."""
    check_choice("source", p.source, SOURCES)
    references = check_references(p.references)
    for model in p.models:
        check_choice("models", model, SEARCH_MODELS)
    if p.repeats is not None:
        check_positive_int("repeats", p.repeats)
    repeats = p.repeats or 100
    with run_record(p.run_dir, {**p.extras, "repeats": repeats, "budget": p.budget, "scale": p.effective_scale,
                                "seed": p.seed, "device": p.device}):
        setup, frames, mos_data = (_replayed(p, references, repeats) if p.source == "atlas"
                                   else _trained(p, references))
        table1 = pd.concat(frames, ignore_index=True)
        table = _comparison(table1, p)
        claims = table1_claim(table1)
        save_results(p.run_dir, table1=table1, comparison=table, claim=claims)
    claim = (f"{CLAIM} (test perplexity, every model run: "
             f"{', '.join(MODEL_NAMES[m] for m in dict.fromkeys(claims.model))})")
    verdicts = [] if mos_data is None or "awd_mos" not in p.models else [f"\nAWD-LSTM-MoS: {mos_data}."]
    verdicts += ["\n" + reading_verdict(reference, table, claim=claim, holds=overall_verdict(cells.state))
                 for reference, cells in claims.groupby("reference", sort=False)]
    columns = ["model", "dataset", "label", "sparsity", "status", "valid_ppl", "test_ppl", "seconds", "configuration"]
    return {"table1": table1, "shown": table1[columns + (["n", "ci95"] if p.source == "atlas" else [])].round(2),
            "setup": "\n".join(setup), "comparison": table, "claims": claims, "verdicts": "\n".join(verdicts),
            **_bars(table1, references)}


def _replayed(p, references, repeats):
    atlas = p.atlas
    spec = atlas.spec
    others = [m for m in p.models if m != spec.model]
    line = (f"the atlas at {atlas.root.name}: {spec.model} on {spec.train_config().dataset} at sparsity "
            f"{spec.sparsity}, LSH (TPE, LS ranking, budget {p.budget}) replayed {repeats} times per reading"
            + (f"; {', '.join(others)} need source='train'" if others else ""))
    return [line], [atlas_methods_by_reference(atlas, p.run_dir / "replays", references=references,
                                               repeats=repeats, first_seed=p.seed, budget=p.budget,
                                               committed=p.committed_dir / "replays")], None


def _trained(p, references):
    setup, frames, mos_data = [], [], None
    # The dense references, keyed by model, scale, seed and settings.
    reference_dir = p.run_dir / "reference"
    for model in p.models:
        config = sized(SearchConfig(model=model, budget=p.budget, scale=p.scale, sampler="tpe", ranking="ls",
                                    seed=p.seed))
        if model == "awd_mos":
            config, mos_data = mos_search_config(config, p.device)
            setup.append(f"awd_mos: {mos_data}")
        resolved = config.resolved(p.device)
        train = resolved.train_config()
        setup.append(f"{model}: {train.dataset}, hidden {train.hidden_size}, batch {train.batch_size}, "
                     f"{resolved.final_epochs} epochs, sparsity {resolved.sparsity}, pool {resolved.pool}, "
                     f"E = {resolved.epochs_per_round}")
        frames.append(compare_methods_by_reference(config, p.run_dir / model, references=references,
                                                   storage=p.storage, device=p.device, reference_dir=reference_dir,
                                                   progress=p.progress))
    return setup, frames, mos_data


def _comparison(table1: pd.DataFrame, p) -> pd.DataFrame:
    """Ours beside the paper's Table 1, a row per model, method and reading (the paper's NT-ASGD
    dense number beside our dense model); a model not run shows no number of ours."""
    ours_data = table1.groupby("model")["dataset"].first()
    rows = []
    for (model, data), values in paper.TABLE1.items():
        # A model run on other data than the paper's says so in its label (AWD-LSTM-MoS on PTB).
        other = "" if p.budget == "smoke" or ours_data.get(model, data) == data else f" (ours on {ours_data[model]})"
        for method, label in METHODS.items():
            key = "dense_ntasgd" if method == "dense" and "dense_ntasgd" in values else method
            mine = table1[(table1.model == model) & (table1.method == method)]
            for r in mine.itertuples() if len(mine) else [None]:
                rows.append((f"{MODEL_NAMES[model]}: {label if r is None else r.label}{other}",
                             None if r is None or pd.isna(r.test_ppl) else r.test_ppl, values[key]))
    return comparison(rows, comparable=p.paper_scale, reason=p.scale_reason)


def _bars(table1: pd.DataFrame, references) -> dict:
    short = {"dense": "dense", "selfish_rnn": "Selfish-RNN"}
    lsh = {r: f"LSH, {r.replace('_', '-')} ref." for r in references}
    # The paper's LSH numbers were made by the authors' code, that is with the same-epoch reference.
    paper_lsh = lsh.get("same_epoch", "LSH, same-epoch ref.")
    paper_rows = [{"model": model, "method": method, "test_ppl": values[key], "source": "paper"}
                  for (model, _), values in paper.TABLE1.items()
                  for method, key in [("dense", "dense_ntasgd" if "dense_ntasgd" in values else "dense"),
                                      ("selfish_rnn", "selfish_rnn"), (paper_lsh, "lsh")]]
    ours = table1.assign(source="ours", method=[lsh[r] if m == "lsh" else m
                                                for m, r in zip(table1.method, table1.reference)])
    bars = pd.concat([ours[["model", "method", "test_ppl", "source"]], pd.DataFrame(paper_rows)], ignore_index=True)
    bars["method"], bars["model"] = bars["method"].replace(short), bars["model"].map(MODEL_NAMES)
    run = set(bars[(bars.source == "ours") & bars.test_ppl.notna()].model)
    return {"bars": bars, "bar_order": list(short.values()) + list(dict.fromkeys([*lsh.values(), paper_lsh])),
            "not_run": [name for name in MODEL_NAMES.values() if name not in run]}
