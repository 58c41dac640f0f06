"""Table 3 (§4 ablation): the LS from K = 2 and K = 10 validation samples, and the claim that K
changes it by an order of magnitude less than the gap between two pruned models.
"""
from __future__ import annotations

import math

import pandas as pd

from lshkit import paper
from lshkit.callbacks import check_spectrum, ls_tokens, timed_spectrum
from lshkit.checks import check_choice, check_number, check_positive_int
from lshkit.data import load_corpus
from lshkit.dst import SparseConfig
from lshkit.io import run_record
from lshkit.report import comparison, save_results, verdict
from lshkit.train import TrainConfig, Trainer
from lshkit.experiments.fig1 import train_variants


#: LS statistics of Table 3 (the paper prints max, min and variance; its text adds the mean).
STATS = ("max", "min", "mean", "variance")


#: "An order of magnitude less" (Table 3 text): a ratio nearer 10 than 1 on a log scale.
#: The paper's own Table 3 needs it: its variance gap is 9.4 times its largest delta.
ORDER_OF_MAGNITUDE = 10 ** 0.5


def ls_sample_effect(model, corpus, *, ks=(2, 10), steps: int = 35, convention: str = "paper",
                     repeats: int = 1, **spectrum) -> pd.DataFrame:
    """Table 3: the LS of ``model`` from K validation samples (:func:`ls_tokens`) for each K
    in ``ks``, ``repeats`` times (for the timings; the values are deterministic).

    One row per (samples, repeat): samples, repeat, max, min, mean, variance (population,
    over the exponents), seconds, seconds_per_sample. ``model`` is a model, used as it is,
    or a :class:`Trainer`, whose model is measured with the weights it evaluates (SNT-ASGD's
    averaged ones once averaging is on), as the per-epoch LS of :class:`LSCallback`.
    """
    if (not isinstance(ks, (tuple, list)) or not ks or len(set(ks)) != len(ks)):
        raise ValueError(f"ks must be distinct sample counts, e.g. (2, 10); got {ks!r}")
    check_positive_int("repeats", repeats)
    check_spectrum(convention, spectrum)
    if isinstance(model, Trainer):
        with model.optimizer.averaged():
            return ls_sample_effect(model.model, corpus, ks=ks, steps=steps, convention=convention,
                                    repeats=repeats, **spectrum)
    tokens = {k: ls_tokens(corpus, k, steps) for k in ks}
    rows = []
    for repeat in range(repeats):
        for k in ks:
            lam, seconds, _, _ = timed_spectrum(model, tokens[k], convention, **spectrum)
            rows.append({"samples": k, "repeat": repeat, "max": lam.max(), "min": lam.min(),
                         "mean": lam.mean(), "variance": lam.var(), "seconds": seconds,
                         "seconds_per_sample": seconds / k})
    return pd.DataFrame(rows)


def sample_effect_table(effects: dict[str, pd.DataFrame]) -> pd.DataFrame:
    """Table 3's layout from ``{model name: ls_sample_effect frame}``: rows max, min, mean,
    variance, seconds (means over repeats); columns (model, K) for every K, then
    (model, "delta"): the absolute difference between the first and the last K."""
    columns = {}
    for name, frame in effects.items():
        means = frame.groupby("samples", sort=False)[list(STATS) + ["seconds"]].mean()
        for k, row in means.iterrows():
            columns[name, str(k)] = row
        columns[name, "delta"] = (means.iloc[-1] - means.iloc[0]).abs()
    table = pd.DataFrame(columns)
    table.columns.names = ["model", "samples"]
    return table


def paper_table3() -> pd.DataFrame:
    """The paper's Table 3 (:data:`lshkit.paper.TABLE3`) in :func:`sample_effect_table`'s
    layout: rows max, min, variance (the paper prints no mean and no time); columns
    ("Pruned 1" | "Pruned 2", "2" | "10" | "delta"), delta as printed (2 decimals)."""
    columns = {}
    for name, stats in paper.TABLE3.items():
        label = name.replace("_", " ").capitalize()
        columns[label, "2"] = {stat: two for stat, (two, _) in stats.items()}
        columns[label, "10"] = {stat: ten for stat, (_, ten) in stats.items()}
        columns[label, "delta"] = {stat: round(abs(ten - two), 2) for stat, (two, ten) in stats.items()}
    table = pd.DataFrame(columns)
    table.columns.names = ["model", "samples"]
    return table


def sample_effect_claim(table: pd.DataFrame, *, bound: float = paper.TABLE3_MAX_DIFFERENCE,
                        stats=("max", "min", "variance")) -> pd.DataFrame:
    """Table 3's claim on a :func:`sample_effect_table` (or :func:`paper_table3`): the
    number of samples K changes each LS statistic by at most ``bound`` (the paper: 0.08),
    an order of magnitude less than the gap between the pruned models.

    One row per statistic: stat, delta (the largest |first K - last K| over the models),
    gap (the smallest difference between two models at the last K, the more accurate LS),
    ratio (gap / delta; inf when only delta is 0, NaN when both are), within_bound
    (delta <= bound) and order_of_magnitude (ratio >= :data:`ORDER_OF_MAGNITUDE`). The
    claim holds where both are true in every row.
    """
    check_number("bound", bound, low=0)
    if not isinstance(table, pd.DataFrame) or table.columns.nlevels != 2:
        raise ValueError("table must be the frame sample_effect_table or paper_table3 returns")
    models = list(dict.fromkeys(table.columns.get_level_values(0)))
    if len(models) < 2:
        raise ValueError(f"a gap between models needs at least two models; got {models}")
    for stat in stats:
        check_choice("stat", stat, list(table.index))
    rows = []
    for stat in stats:
        delta = max(table.loc[stat, (m, "delta")] for m in models)
        # The last K column is the one just before "delta" in each model's block.
        last = [table.loc[stat, m].drop("delta").iloc[-1] for m in models]
        gap = min(abs(a - b) for i, a in enumerate(last) for b in last[i + 1:])
        ratio = gap / delta if delta > 0 else (math.inf if gap > 0 else math.nan)
        # The epsilon keeps a delta printed as exactly the bound (2.67 - 2.59) from failing on rounding.
        rows.append({"stat": stat, "delta": float(delta), "gap": float(gap), "ratio": float(ratio),
                     "within_bound": bool(delta <= bound + 1e-9),
                     "order_of_magnitude": bool(ratio >= ORDER_OF_MAGNITUDE)})
    return pd.DataFrame(rows)


#: Table 3's claim, as the verdict sentences state it.
CLAIM = ("K = 2 instead of 10 changes the LS max, min and variance by at most 0.08, an order of "
         "magnitude less than the gap between the pruned models")


#: The statistics the figure draws, with their axis names.
FIGURE_STATS = {"max": "max λ (bits)", "min": "min λ (bits)", "variance": "variance of λ",
                "seconds_per_sample": "seconds per sample"}


def run(p) -> dict:
    """Table 3 (§4) as a notebook's validated parameters ``p`` (:func:`lshkit.report.validate`) ask:
    the paper's two pruned stacked LSTMs (the Selfish-RNN default and the authors' best pick, at
    sparsity 0.67) trained ``p.epochs`` epochs at ``p.effective_scale`` (checkpointed), their LS from
    K = 2 and K = 10 validation samples timed ``p.repeats`` times (:func:`ls_sample_effect`, kept
    beside the checkpoints and read back), laid out beside the paper's Table 3
    (:func:`sample_effect_table`, :func:`paper_table3`) and the claim judged on both
    (:func:`sample_effect_claim`). The parameters are checked before anything runs; the run is
    recorded in ``p.run_dir/run.json`` and its results saved beside it.

    Returns ``setup`` (the models trained), ``beside`` (ours and the paper's table), ``tidy`` (the
    figure's statistics, :data:`FIGURE_STATS`), ``claim`` and ``paper_claim``, ``comparison`` (the
    largest changes and the time per sample beside the paper's) and ``verdicts``."""
    check_positive_int("epochs", p.epochs)
    check_positive_int("repeats", p.repeats)
    check_choice("ls_warmup", p.ls_warmup, ("stable", "authors"))
    with run_record(p.run_dir, {**p.extras, "budget": p.budget, "scale": p.effective_scale, "seed": p.seed,
                                "device": p.device}) as record:
        cfg = TrainConfig.preset(p.effective_scale, "lstm")
        corpus = load_corpus(cfg.dataset, seed=p.seed)
        density = 1 - paper.SPARSITY["lstm"]
        models = {"Selfish-RNN default": SparseConfig(density=density, **paper.SELFISH_RNN_DEFAULT["lstm"]),
                  "authors' best": SparseConfig(density=density, **paper.AUTHORS_BEST_LSTM["config"])}
        work = p.run_dir / f"{p.epochs}epochs-{p.ls_warmup}"
        trainers = train_variants(cfg, corpus, models, epochs=p.epochs, seed=p.seed, device=p.device,
                                  progress=p.progress, checkpoint_dir=work / "checkpoints")
        setup = [f"{corpus.name!r} corpus, {cfg.num_layers}x{cfg.hidden_size} LSTM at density {density:.2f}, "
                 f"{p.epochs} epochs each"]
        setup += [f"{name:20s} density {t.history[-1]['density']:.3f}, validation perplexity "
                  f"{t.history[-1]['valid_ppl']:.2f}" for name, t in trainers.items()]
        measured = work / "sample_effect.csv"
        if not measured.exists():
            effect = pd.concat([ls_sample_effect(trainer, corpus, ks=(2, 10), repeats=p.repeats,
                                                 stable_warmup=p.ls_warmup == "stable").assign(model=name)
                                for name, trainer in trainers.items()], ignore_index=True)
            save_results(work, sample_effect=effect)
        effect = pd.read_csv(measured)
        table = sample_effect_table({name: frame for name, frame in effect.groupby("model", sort=False)})
        beside = pd.concat({"ours": table, "paper": paper_table3()}, axis=1, names=["source"])
        claim, published = sample_effect_claim(table), sample_effect_claim(paper_table3())
        holds = bool((claim.within_bound & claim.order_of_magnitude).all())
        reason = p.scale_reason or ("" if p.ls_warmup == "authors" else "ours use the stable LS warm-up and the "
                                    "paper's the authors' one (README, 'The Lyapunov spectrum')")
        deltas = comparison([(f"largest change of the LS {stat} from K = 2 to K = 10", delta, paper_delta)
                             for stat, delta, paper_delta in zip(claim.stat, claim.delta, published.delta)],
                            comparable=not reason, reason=reason, tolerance=paper.TABLE3_MAX_DIFFERENCE)
        hardware = record["versions"].get("gpu") or f"the CPU with {record['versions']['threads']} torch thread(s)"
        timing = comparison([("seconds of LS per sample, K = 2", effect[effect.samples == 2].seconds_per_sample.mean(),
                              paper.LS_SECONDS_PER_SAMPLE)],
                            comparable=False, reason=f"the paper's were timed at 2x1500 on an RTX 2080 Ti, ours at "
                                                     f"{cfg.num_layers}x{cfg.hidden_size} on {hardware}")
        save_results(p.run_dir, sample_effect=effect,
                     table3=beside.rename_axis("stat").T.stack().rename("value").reset_index(),
                     claim=claim, comparison=deltas, timing=timing)
    verdicts = [f"In ours, the largest change is {claim.delta.max():.3f} and the smallest gap/change ratio "
                f"{claim.ratio.min():.1f}: the paper's claim that {CLAIM} {'holds' if holds else 'does not hold'} here.",
                verdict(deltas, claim=CLAIM, holds=holds), verdict(timing)]
    tidy = (effect.assign(K=effect.samples.map("K = {}".format))
            .melt(id_vars=["model", "K"], value_vars=list(FIGURE_STATS), var_name="statistic")
            .replace({"statistic": FIGURE_STATS}))
    return {"setup": "\n".join(setup), "beside": beside.round(3), "tidy": tidy, "claim": claim,
            "paper_claim": published, "comparison": pd.concat([deltas, timing]), "verdicts": "\n".join(verdicts)}
