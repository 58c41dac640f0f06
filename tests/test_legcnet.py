"""LEGCNet (arXiv 2308.09955): the exponent estimator, the Granger test, the masks and the
sparse retraining, each against a property a wrong implementation would break."""
import importlib.util
import math
import re

import numpy as np
import pandas as pd
import pytest
import torch

from lshkit.report import validate
from lshkit.stats import VERDICTS
from lshkit.studies import legcnet, legcnet_claims, tabular
from lshkit.studies.chaos_causality import TESTS, granger_pvalues, rosenstein
from lshkit.studies.legcnet import LEGCNetConfig, causal_mask, magnitude_mask, random_mask, windowed_lyapunov

#: A run small enough for a unit test: iris, 20 epochs (2,400 updates, 53 windows), PT on half of them.
TINY = LEGCNetConfig(epochs=20, pt_fraction=0.5, hidden=8)


def nolds_lyap_r():
    """``nolds.lyap_r``; nolds 0.6.3's package import fails on Python < 3.12 (its datasets module
    calls ``importlib.resources.files`` on a module), so load its self-contained measures.py."""
    try:
        import nolds
        return nolds.lyap_r
    except TypeError:
        spec = importlib.util.find_spec("nolds")
        path = f"{spec.submodule_search_locations[0]}/measures.py"
        module_spec = importlib.util.spec_from_file_location("nolds_measures", path)
        module = importlib.util.module_from_spec(module_spec)
        module_spec.loader.exec_module(module)
        return module.lyap_r


def logistic(r, n, x0=0.3, burn=0):
    x = np.empty(n + burn)
    x[0] = x0
    for i in range(1, n + burn):
        x[i] = r * x[i - 1] * (1 - x[i - 1])
    return x[burn:]


# ------------------------------------------------------------------ Lyapunov exponents

def test_rosenstein_recovers_ln2_on_the_logistic_map():
    x = logistic(4.0, 2000, burn=500)
    assert rosenstein(x[None], emb_dim=2, min_tsep=10, trajectory_len=4).item() == pytest.approx(math.log(2), abs=0.01)


def test_rosenstein_is_negative_on_contracting_series():
    # logistic map at r = 2.8 converges to its fixed point with multiplier f' = 2 - r = -0.8
    stable = logistic(2.8, 100, x0=0.1)
    assert rosenstein(stable[None], emb_dim=2, min_tsep=5, trajectory_len=5).item() == pytest.approx(
        math.log(0.8), abs=0.03)
    # a weight settling geometrically onto its value: exponent ln 0.8 per step
    settling = 0.3 + 0.5 * 0.8 ** np.arange(50)
    assert rosenstein(settling[None]).item() == pytest.approx(math.log(0.8), abs=1e-6)


def test_rosenstein_matches_nolds_on_every_row():
    lyap_r = nolds_lyap_r()
    rng = np.random.default_rng(0)
    rows = np.concatenate([np.cumsum(rng.normal(size=(20, 50)), 1), rng.normal(size=(10, 50)),
                           logistic(3.9, 50 * 5, burn=100).reshape(5, 50)])
    ours = rosenstein(rows, emb_dim=2, min_tsep=2, trajectory_len=4, chunk=7).numpy()
    theirs = [lyap_r(r, emb_dim=2, lag=1, min_tsep=2, trajectory_len=4, fit="poly") for r in rows]
    np.testing.assert_allclose(ours, theirs, rtol=0, atol=1e-10)


def test_windowed_lyapunov_cuts_the_authors_windows_and_zeroes_static_ones():
    cfg = LEGCNetConfig()
    rng = np.random.default_rng(1)
    record = torch.as_tensor(np.cumsum(rng.normal(size=(500, 3)), 0), dtype=torch.float32)
    record[:, 1] = 0.25                                   # a weight that never moves
    le = windowed_lyapunov(record, cfg)
    assert le.shape == ((500 - 50) // 45 + 1, 3)
    assert (le[:, 1] == 0).all()
    for i in (0, 4, le.shape[0] - 1):
        window = record[45 * i:45 * i + 50, 0].double()[None]
        assert le[i, 0].item() == pytest.approx(rosenstein(window).item(), abs=1e-12)
    ends = legcnet.window_ends(499, cfg)
    assert len(ends) == le.shape[0] and ends[0] == 49 and ends[1] == 94


# ------------------------------------------------------------------ Granger causality

@pytest.mark.parametrize("test", TESTS)
def test_granger_pvalues_match_statsmodels(test):
    from statsmodels.tsa.stattools import grangercausalitytests

    rng = np.random.default_rng(2)
    causes, effect = rng.normal(size=(4, 90)), rng.normal(size=90)
    effect[1:] += 0.3 * causes[1, :-1]
    ours = granger_pvalues(causes, effect, 4, test=test)
    for w in range(4):
        res = grangercausalitytests(np.column_stack([effect, causes[w]]), 4)
        np.testing.assert_allclose(ours[w], [res[lag][0][test][1] for lag in range(1, 5)], rtol=1e-8, atol=1e-12)


def test_granger_detects_a_planted_lag_and_rejects_independent_pairs_at_the_level():
    rng = np.random.default_rng(3)
    n = 200
    cause = rng.normal(size=n)
    effect = rng.normal(size=n)
    effect[2:] += 0.8 * cause[:-2]                       # effect follows the cause two steps later
    p = granger_pvalues(np.stack([cause, effect]), effect, 2)
    assert p[0, 1] < 1e-10                               # detected at lag 2
    assert granger_pvalues(effect[None], cause, 2)[0, 1] > 0.05   # and not in the other direction
    # 400 independent pairs tested at lag 2: about 5% rejected at the 5% level (binomial 99.9% range)
    independent = granger_pvalues(rng.normal(size=(400, n)), rng.normal(size=n), 2)[:, 1]
    assert 0.02 <= (independent < 0.05).mean() <= 0.09


def test_granger_constant_cause_short_series_and_constant_effect():
    rng = np.random.default_rng(4)
    p = granger_pvalues(np.stack([np.ones(60), rng.normal(size=60)]), rng.normal(size=60), 3)
    assert (p[0] == 1).all() and (p[1] < 1).all()
    with pytest.raises(ValueError, match="max_lag=14 is not valid for series of 40 points; the largest allowable lag is 12"):
        granger_pvalues(rng.normal(size=(2, 40)), rng.normal(size=40), 14)
    assert np.isnan(granger_pvalues(rng.normal(size=(2, 60)), np.zeros(60), 2)).all()


# ------------------------------------------------------------------ masks

def test_causal_mask_keeps_exactly_the_weights_that_pass():
    from statsmodels.stats.multitest import multipletests

    rng = np.random.default_rng(5)
    p = rng.uniform(0, 0.2, size=(200, 5))
    p[7] = np.nan                                        # untestable: kept
    kept = causal_mask(p, alpha=0.05)
    best = np.nanmin(np.where(np.isnan(p), np.inf, p), 1)
    expected = (best < 0.05) | np.isnan(p).all(1)
    assert torch.equal(kept, torch.as_tensor(expected, dtype=torch.float32))
    corrected = causal_mask(p, alpha=0.05, correction="fdr_bh")
    tested = ~np.isnan(p).all(1)
    expected_bh = np.ones(200, bool)
    expected_bh[tested] = multipletests(best[tested], alpha=0.05, method="fdr_bh")[0]
    assert torch.equal(corrected, torch.as_tensor(expected_bh, dtype=torch.float32))
    assert corrected.sum() < kept.sum()


def test_magnitude_and_random_masks_keep_the_same_count_per_layer():
    layer = torch.tensor([0] * 6 + [1] * 4)
    like = torch.tensor([1, 0, 1, 0, 1, 0, 0, 1, 1, 0], dtype=torch.float32)
    weights = torch.tensor([0.1, -5, 0.2, 3, -0.05, 0.3, 9, 0.01, -0.02, 1])
    mag = magnitude_mask(weights, like, layer)
    assert mag.tolist() == [0, 1, 0, 1, 0, 1, 1, 0, 0, 1]
    rand = random_mask(like, layer, torch.Generator().manual_seed(0))
    assert [int(rand[layer == k].sum()) for k in (0, 1)] == [3, 2]


def test_manual_backward_matches_autograd():
    # One batch of the whole (three-sample) training set: one SGD step, whatever the sample order.
    wine = tabular.load_tabular("wine", seed=0)
    data = tabular.TabularData("wine3", wine.x_train[:3], wine.y_train[:3], wine.x_test, wine.y_test, wine.classes)
    shape = tabular.MLPShape(data.n_features, 5, data.n_classes)
    theta0 = tabular.init_params(shape, torch.Generator().manual_seed(0)).repeat(2, 1)
    theta = theta0.clone().requires_grad_(True)
    loss = torch.nn.functional.cross_entropy(tabular.forward(shape, theta, data.x_train).reshape(-1, shape.classes),
                                             data.y_train.repeat(2), reduction="sum") / 3
    loss.backward()
    stepped = tabular.train_mlp(data, shape, theta0, epochs=1, lr=0.1, seed=0, batch_size=3).theta
    torch.testing.assert_close(stepped, theta0 - 0.1 * theta.grad, rtol=1e-5, atol=1e-6)


def test_run_prunes_exactly_the_passing_weights_keeps_them_zero_and_is_seeded():
    out = legcnet.run_legcnet("iris", 0, TINY)
    rows, weights, masks = out["rows"].set_index("method"), out["weights"], out["masks"]
    # the FT mask is exactly the weights whose smallest Granger p-value is below alpha
    assert (weights.kept_ft == (weights.p_ft < TINY.alpha)).all()
    assert rows.loc["legcnet_ft", "weights_kept"] == int(weights.kept_ft.sum())
    assert rows.loc["legcnet_pt", "weights_kept"] == int(weights.kept_pt.sum())
    # every sparse network's pruned weights are still exactly zero after retraining
    assert rows.zero_pruned_after_training.all()
    # baselines prune as many weights per layer as LEGCNet
    for stage in ("ft", "pt"):
        for base in ("magnitude", "random"):
            for col in ("sparsity_layer1", "sparsity_layer2"):
                assert rows.loc[f"{base}_{stage}", col] == rows.loc[f"legcnet_{stage}", col]
    again = legcnet.run_legcnet("iris", 0, TINY)
    for name in masks:
        assert torch.equal(masks[name], again["masks"][name]), name
    pd.testing.assert_frame_equal(out["rows"], again["rows"])


def test_sparse_training_keeps_masked_weights_zero_at_every_epoch():
    data = tabular.load_tabular("iris", seed=1)
    shape = tabular.MLPShape(data.n_features, 6, data.n_classes)
    theta0 = tabular.init_params(shape, torch.Generator().manual_seed(1))
    masks = (torch.rand(2, shape.n_weights, generator=torch.Generator().manual_seed(2)) > 0.5).float()
    for epochs in (1, 3):
        res = tabular.train_mlp(data, shape, theta0.repeat(2, 1), epochs=epochs, lr=0.1, seed=1, masks=masks)
        w = res.theta[:, :shape.n_weights]
        assert (w[masks == 0] == 0).all() and (w[masks == 1] != 0).all()


# ------------------------------------------------------------------ data and inputs

def test_tabular_split_is_stratified_and_scaled_on_training_data_only(tmp_path):
    data = tabular.load_tabular("cancer", seed=0)
    assert data.x_train.shape[1] == 30 and data.n_classes == 2
    torch.testing.assert_close(data.x_train.mean(0), torch.zeros(30), atol=1e-5, rtol=0)
    share = [float((d == 1).float().mean()) for d in (data.y_train, data.y_test)]
    assert share[0] == pytest.approx(share[1], abs=0.01)
    frame = pd.DataFrame({"age": [20, 30, np.nan, 40] * 10, "sex": ["m", "f"] * 20, "y": ["a", "b", "b", "a"] * 10})
    frame.to_csv(tmp_path / "toy.csv", index=False)
    toy = tabular.load_tabular(str(tmp_path / "toy.csv"), target="y")
    assert toy.name == "toy" and toy.n_classes == 2 and toy.features == ["age", "sex_f", "sex_m"]
    assert not torch.isnan(toy.x_train).any()
    with pytest.raises(ValueError, match=r"target='label' is not valid; choose one of \['age', 'sex', 'y'\]"):
        tabular.load_tabular(str(tmp_path / "toy.csv"), target="label")


def test_bad_input_fails_before_any_compute_naming_the_valid_values():
    with pytest.raises(ValueError, match=r"name='mnist' is not valid; choose one of \['cancer', 'iris', 'wine', 'digits'\]"):
        tabular.load_tabular("mnist")
    with pytest.raises(ValueError, match=r"correction='bh' is not valid; choose one of \['none', 'bonferroni', 'holm', 'fdr_bh'\]"):
        LEGCNetConfig(correction="bh")
    with pytest.raises(ValueError, match=r"alpha=1.5 is not valid; it must be a number in \(0, 1\)"):
        LEGCNetConfig(alpha=1.5)
    with pytest.raises(ValueError, match="window=9 is not valid; with emb_dim=2, trajectory_len=4 and min_tsep=2 it must be at least 10"):
        LEGCNetConfig(window=9)
    with pytest.raises(ValueError, match=r"budget='huge' is not valid; choose one of \['smoke', 'low', 'moderate', 'high'\]"):
        legcnet.plan("huge")
    with pytest.raises(ValueError, match="csv_target=None is not valid with a CSV data set"):
        legcnet.plan("smoke", datasets=["iris", "titanic.csv"])
    with pytest.raises(ValueError, match=r"datasets\[1\]='mnist' is not valid"):
        legcnet.run_study(["iris", "mnist"], [0])
    with pytest.raises(ValueError, match="too few for a Granger test"):
        legcnet.run_legcnet("iris", 0, LEGCNetConfig(epochs=5))


def test_claims_read_the_paired_intervals():
    seeds = range(5)
    rows = pd.DataFrame([{"dataset": "d", "seed": s, "method": m,
                          "test_accuracy": {"dense": 0.90, "legcnet_ft": 0.95, "magnitude_ft": 0.80}.get(m, 0.90)
                          + 0.001 * s, "macro_f1": 0.9, "sparsity": 0.0 if m == "dense" else 0.3,
                          "epochs": 30,
                          "epochs_to_converge": {"dense": 10, "legcnet_ft": 5, "random_pt": math.nan}.get(m, 10) + s % 2}
                         for s in seeds for m in legcnet.METHODS])
    table = legcnet_claims.claims(rows).set_index("claim")
    assert set(table.verdict) <= set(VERDICTS)
    assert table.loc["LEGCNet-FT keeps the dense network's accuracy and macro F1", "verdict"] == "holds"
    assert table.loc["LEGCNet-FT converges in fewer epochs than the dense network (paper: half)", "verdict"] == "holds"
    assert table.loc["LEGCNet-FT is more accurate than magnitude pruning at its sparsity", "verdict"] == "holds"
    assert table.loc["LEGCNet-PT is more accurate than random pruning at its sparsity", "verdict"] == "does not hold"
    assert table.loc["LEGCNet-PT converges in fewer epochs than the dense network", "verdict"] == "does not hold"
    # never converging is not converging faster
    never = rows.assign(epochs_to_converge=np.where(rows.method == "legcnet_pt", np.nan, rows.epochs_to_converge))
    faster = legcnet_claims.claims(never).set_index("claim").loc["LEGCNet-PT converges in fewer epochs than the dense network"]
    assert faster.verdict == "does not hold" and faster["mean"] > 2


def _rows(seeds=range(5)):
    return pd.DataFrame([{"dataset": d, "seed": s, "method": m, "test_accuracy": 0.9 + 0.001 * s,
                          "macro_f1": 0.9, "sparsity": 0.0 if m == "dense" else 0.3, "params": 100, "flops": 200,
                          "epochs": 30, "epochs_to_converge": 10 + s % 2}
                         for d in ("iris", "wine") for s in seeds for m in legcnet.METHODS])


def test_claim_sentences_read_as_sentences_with_every_verdict():
    rows = _rows()
    # wine: LEGCNet-FT three points below dense on every seed; iris: no difference at all
    rows.loc[(rows.dataset == "wine") & (rows.method == "legcnet_ft"), "test_accuracy"] -= 0.03
    sentences = legcnet_claims.claim_sentences(legcnet_claims.claims(rows))
    assert len(sentences) == len(legcnet_claims.CLAIMS)
    similar = sentences[0]
    assert similar.startswith("The claim that LEGCNet-FT keeps the dense network's accuracy and macro F1 does not "
                              "hold in ours (it holds on 1 and does not hold on 1 of the 2 data sets): on iris it "
                              "holds (test accuracy minus dense +0.000, macro F1 minus dense +0.000); on wine it "
                              "does not hold (test accuracy minus dense -0.030")
    better = [s for s in sentences if s.startswith("The claim that LEGCNet-PT is more accurate than random")][0]
    assert better.startswith("The claim that LEGCNet-PT is more accurate than random pruning at its sparsity does "
                             "not hold in ours: on iris it does not hold (")  # a difference of exactly 0 is not above 0
    # one seed: no interval, so nothing can be told apart
    one = legcnet_claims.claims(_rows(seeds=[0]))
    assert one[one.claim.str.contains("more accurate")].verdict.eq("is inconclusive").all()
    assert "on iris it is inconclusive (test accuracy minus magnitude_ft +0.000)" in \
        legcnet_claims.claim_sentences(one)[6]


def test_summaries_have_no_interval_for_one_seed():
    summary = legcnet_claims.summarise(_rows(seeds=[0, 1]).query("seed == 0 or method != 'dense'"))
    assert list(summary.columns[:3]) == ["dataset", "method", "metric"]
    assert list(summary.metric[:6]) == list(legcnet_claims.SUMMARY_METRICS)
    dense = summary[(summary.dataset == "iris") & (summary.method == "dense")].set_index("metric")
    assert (dense.n == 1).all() and dense.ci95.isna().all()
    table = legcnet_claims.summary_table(summary)
    assert table.loc[("iris", "dense"), "test_accuracy"] == "0.900"
    assert table.loc[("iris", "legcnet_ft"), "test_accuracy"] == "0.901 ± 0.006"
    ratio = legcnet_claims.paired(_rows(), "legcnet_ft", "dense", "epochs_to_converge", ratio=True).iloc[0]
    assert (ratio["mean"], ratio.ci95, ratio.low, ratio.high) == (1.0, 0.0, 1.0, 1.0)


def test_plan_follows_the_budget_and_the_notebook_parameters(tmp_path):
    smoke = legcnet.plan("smoke", seed=3, run_dir=tmp_path / "smoke-smoke-seed3")
    assert (smoke.datasets, smoke.seeds, smoke.config.epochs, smoke.suffix) == (["iris"], [3, 4], 100, "_smoke")
    assert smoke.run_dir == tmp_path / "smoke-smoke-seed3" and smoke.config == LEGCNetConfig(epochs=100)
    high = legcnet.plan("high", run_dir=tmp_path / "high-cpu-seed0", datasets=["wine"], seeds=2, granger_test="ssr_ftest",
                        difference=True, alpha=0.01)
    assert (high.datasets, high.seeds, high.config.epochs, high.suffix) == (["wine"], [0, 1], None, "_differenced")
    assert high.config.test == "ssr_ftest" and high.config.alpha == 0.01
    assert high.run_dir == tmp_path / "high-cpu-seed0-differenced"
    assert high.settings == {"config": high.config.to_dict(), "datasets": ["wine"], "seeds": [0, 1], "csv_target": None}


def test_the_notebook_parameters_are_checked_as_the_config_checks_them(tmp_path):
    given = {"datasets": None, "seeds": None, "epochs": None, "csv_target": None, "hidden": 16, "lr": 0.05,
             "max_lag": 14, "alpha": 0.05, "correction": "none", "granger_test": "ssr_chi2test", "pt_fraction": 0.1,
             "difference": False}
    p = validate("legcnet", extras=legcnet.PARAMETERS, results_dir=str(tmp_path), **given)
    assert legcnet.plan(p.budget, seed=p.seed, run_dir=p.run_dir, **p.extras).config == LEGCNetConfig(epochs=100)
    for name, value, message in [("granger_test", "wald", "granger_test='wald' is not valid; choose one of"),
                                 ("correction", "bh", "correction='bh' is not valid"),
                                 ("epochs", 0, "epochs=0 is not valid; it must be a positive integer"),
                                 ("seeds", 0, "seeds=0 is not valid"), ("datasets", ["mnist"], "datasets[0]='mnist'"),
                                 ("csv_target", 3, "csv_target=3 is not valid")]:
        with pytest.raises(ValueError, match=re.escape(message)):
            validate("legcnet", extras=legcnet.PARAMETERS, results_dir=str(tmp_path), **{**given, name: value})
