"""LSH-Bench for other optimisers: the blackbox view of an atlas, its export, and Optuna on it."""
import json
import math
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from lshkit import bench as B
from lshkit import bench_optuna as BO
from lshkit.__main__ import main
from lshkit.atlas import candidate_name, load_atlas
from lshkit.io import read_json, write_json

ROOT = Path(__file__).resolve().parent.parent
ATLAS = ROOT / "results" / "atlas" / "atlas"
COMMITTED = ROOT / "results" / "bench" / "low-atlas-seed0" / "compare"
REPLICATED = "ER-random-SET-magnitude-dr0.9"  # trained with seeds 0-3 in the committed atlas


@pytest.fixture(scope="module")
def atlas():
    return load_atlas(ATLAS)


@pytest.fixture(scope="module")
def bench(atlas):
    return B.load(atlas)


# ---------------------------------------------------------------------------- the blackbox


def test_the_space_fidelities_and_configurations_are_the_atlas(bench, atlas):
    assert bench.space.to_dict() == atlas.space().to_dict()
    assert bench.fidelities == list(range(31))
    assert len(bench.configurations()) == 72 and bench.configurations() == atlas.spec.grid()
    assert bench.seeds(REPLICATED) == [0, 1, 2, 3] and bench.seeds(bench.configurations()[1]) == [0]
    assert B.load("atlas").space.to_dict() == bench.space.to_dict()  # a name means results/atlas/<name>


@pytest.mark.parametrize("index,epoch", [(0, 0), (5, 3), (40, 17), (71, 30)])
def test_objective_is_the_record(bench, atlas, index, epoch):
    params = bench.configurations()[index]
    record, timing = atlas.record(params, 0), atlas.timing[candidate_name(params, 0)]["epochs"]
    got = bench.objective(params, epoch)
    row = record["epochs"][epoch]
    assert got["valid_loss"] == row["valid_loss"] and got["valid_ppl"] == row["valid_ppl"]
    assert got["density"] == row["density"] and got["seed"] == 0 and got["epoch"] == epoch
    assert (math.isnan(got["train_loss"]) if epoch == 0 else got["train_loss"] == row["train_loss"])
    cpu = [t["cpu_seconds"] for t in timing[: epoch + 1]]
    assert got["epoch_seconds"] == cpu[-1] and got["elapsed_seconds"] == pytest.approx(sum(cpu), rel=1e-12)
    with_ls = bench.objective(params, epoch, ls_seconds="paper")
    assert with_ls["elapsed_seconds"] == pytest.approx(sum(cpu) + sum(t["ls_paper_cpu_seconds"] for t in timing[: epoch + 1]))
    # The test split is evaluated once, at the end.
    if epoch == 30:
        assert got["test_ppl"] == pytest.approx(math.exp(record["epochs"][-1]["test_loss"]), rel=1e-12)
    else:
        assert math.isnan(got["test_ppl"]) and math.isnan(got["test_loss"])


def test_mean_and_sampled_seeds_read_the_replicates(bench, atlas):
    records = [atlas.records[f"{REPLICATED}-s{s}"]["epochs"][12] for s in range(4)]
    mean = bench.objective(REPLICATED, 12, "mean")
    assert mean["seed"] == "mean" and mean["seeds"] == [0, 1, 2, 3]
    assert mean["valid_ppl"] == pytest.approx(np.mean([r["valid_ppl"] for r in records]), rel=1e-12)
    drawn = [bench.objective(REPLICATED, 12, "sample", rng=np.random.default_rng(7))["seed"] for _ in range(3)]
    assert len(set(drawn)) == 1  # the same generator state, the same seed
    many = {bench.objective(REPLICATED, 12, "sample", rng=k)["seed"] for k in range(40)}
    assert many == {0, 1, 2, 3}
    one = bench.objective(REPLICATED, 12, "sample", rng=3)
    assert one["valid_ppl"] == records[one["seed"]]["valid_ppl"]
    with pytest.raises(ValueError, match="needs rng"):
        bench.objective(REPLICATED, 12, "sample")


@pytest.mark.parametrize("call,kind,words", [
    (lambda b: b.objective({**b.configurations()[0], "death_rate": 0.5}, 3), ValueError,
     ["death_rate=0.5", "0.4, 0.65, 0.9"]),
    (lambda b: b.objective({"sparse_init": "ER"}, 3), ValueError, ["missing", "death"]),
    (lambda b: b.objective("ER-random-SET-magnitude-dr0.8", 3), KeyError,
     ["'ER-random-SET-magnitude-dr0.8'", "'ER-random-SET-magnitude-dr0.9'", "73"]),
    (lambda b: b.objective(b.configurations()[3], 3, seed=2), KeyError, ["training seed 2", "[0]", "'mean'"]),
    (lambda b: b.objective(b.configurations()[3], 3, seed="median"), ValueError, ["'median'", "'mean', 'sample'"]),
    (lambda b: b.objective(b.configurations()[3], 31), ValueError, ["epoch=31", "0..30"]),
    (lambda b: b.objective(b.configurations()[3], -1), ValueError, ["epoch=-1"]),
    (lambda b: b.objective(b.configurations()[3], 3, ls_seconds="fancy"), ValueError, ["'paper', 'full'"]),
])
def test_what_the_atlas_lacks_is_named_with_the_valid_ones(bench, call, kind, words):
    with pytest.raises(kind) as err:
        call(bench)
    for word in words:
        assert word in str(err.value)


def test_elapsed_time_grows_with_the_epoch_for_every_training(bench):
    for (name, seed) in bench.curves:
        curve = bench.curve(name, seed, ls_seconds=("paper", "full"))
        assert (np.diff(curve.elapsed_seconds) > 0).all(), (name, seed)
        assert curve.elapsed_seconds.iloc[-1] == pytest.approx(curve.epoch_seconds.sum())


def test_ls_and_graphs_are_the_atlas(bench, atlas):
    params = bench.configurations()[9]
    name = candidate_name(params, 0)
    for convention in ("paper", "full"):
        assert np.array_equal(bench.ls(params, convention=convention), atlas.ls(name, convention))
        assert np.array_equal(bench.ls(params, 4, convention=convention), atlas.ls(name, convention)[4])
    assert bench.graph(params, 3) == atlas.graph(name, 3)
    with pytest.raises(KeyError, match="no masks"):
        bench.graph(None, 1)
    with pytest.raises(ValueError, match="one training"):
        bench.ls(REPLICATED, seed="mean")


def test_the_tensor_has_nan_only_where_the_atlas_has_no_training(bench):
    configs, seeds, values = bench.tensor(("valid_ppl", "test_ppl"))
    assert values.shape == (72, 4, 31, 2) and seeds == [0, 1, 2, 3]
    trained = ~np.isnan(values[:, :, 0, 0])
    assert trained[:, 0].all() and trained[:, 1:].sum() == 3 * 4  # four configurations replicated, three seeds more
    assert np.isnan(values[:, :, :30, 1]).all() and not np.isnan(values[trained][:, 30, 1]).any()
    i = configs.index[(configs.death == "SET") & (configs.sparse_init == "ER") & (configs.redistribution == "magnitude")
                      & (configs.death_rate == 0.9)][0]
    assert values[i, 2, 30, 0] == bench.objective(REPLICATED, 30, seed=2)["valid_ppl"]


def _edit_copy(atlas_dir, tmp_path, edit) -> Path:
    root = tmp_path / "atlas"
    shutil.copytree(atlas_dir, root)
    edit(root)
    return root


def test_a_partial_atlas_says_which_configurations_it_holds(atlas_dir, tmp_path):
    atlas = load_atlas(atlas_dir)
    gone = atlas.spec.grid()[2]
    root = _edit_copy(atlas_dir, tmp_path, lambda r: shutil.rmtree(r / candidate_name(gone, 0)))
    bench = B.load(root)
    assert bench.space.points is not None and len(bench.configurations()) == len(atlas.spec.grid()) - 1
    with pytest.raises(KeyError) as err:
        bench.objective(gone, 1)
    assert B.configuration_name(gone) in str(err.value) and B.configuration_name(atlas.spec.grid()[0]) in str(err.value)
    result = BO.run_study(bench, sampler="random", pruner="none", seed=3, max_trials=12)
    assert all(row["configuration"] != B.configuration_name(gone) for row in result["trial_log"])
    assert result["trials"] == 12


def test_a_training_that_stopped_early_is_an_error_past_its_end(atlas_dir, tmp_path):
    victim = candidate_name(load_atlas(atlas_dir).spec.grid()[0], 0)

    def truncate(root):
        rec, timing = read_json(root / victim / "record.json"), read_json(root / victim / "timing.json")
        rec["epochs"], timing["epochs"] = rec["epochs"][:3], timing["epochs"][:3]
        rec["epochs"][-1]["failed"], rec["status"], rec["reason"] = True, "failed", "loss is NaN"
        write_json(root / victim / "record.json", rec)
        write_json(root / victim / "timing.json", timing)

    bench = B.load(_edit_copy(atlas_dir, tmp_path, truncate))
    name = victim[: -len("-s0")]
    assert bench.objective(name, 2)["failed"]
    with pytest.raises(ValueError, match=r"stops at epoch 2 \(loss is NaN\); epoch 3"):
        bench.objective(name, 3)
    result = BO.run_study(bench, sampler="random", pruner="none", seed=0, max_trials=30)
    rows = [r for r in result["trial_log"] if r["configuration"] == name]
    assert rows and all(r["state"] == "fail" and r["epochs"] == 2 for r in rows)
    assert result["selected_configuration"] != name


# ---------------------------------------------------------------------------- the export


@pytest.fixture(scope="module")
def exported(atlas_dir, tmp_path_factory):
    out = tmp_path_factory.mktemp("export")
    assert main(["atlas", "export", "--root", str(atlas_dir), "--out", str(out)]) == 0
    return out


def test_the_export_reads_back_as_the_same_bench(atlas_dir, exported):
    here, there = B.load(atlas_dir), B.load_export(exported)
    assert there.space.to_dict() == here.space.to_dict() and there.params == here.params
    key = ["configuration", "seed", "epoch"]
    pd.testing.assert_frame_equal(there.table().sort_values(key).reset_index(drop=True),
                                  here.table().sort_values(key).reset_index(drop=True))
    for params in here.configurations():
        for convention in ("paper", "full"):
            assert np.array_equal(there.ls(params, convention=convention), here.ls(params, convention=convention))
        assert there.objective(params, 4) == here.objective(params, 4)
    meta = read_json(exported / "metadata.json")
    assert meta["spec"] == load_atlas(atlas_dir).spec.to_dict() and meta["citation"]["url"].endswith("2506.07975")
    assert set(meta["objectives"]) == set(B.OBJECTIVES) and meta["fidelity"]["values"][-1] == 4
    assert meta["versions"]["build"][0]["candidates"] == len(load_atlas(atlas_dir).records)
    lines = (exported / B.MANIFEST).read_text().splitlines()  # sha256sum's format
    assert sorted(line.split("  ")[1] for line in lines) == sorted(
        p.name for p in exported.iterdir() if p.name != B.MANIFEST)
    objectives = pd.read_parquet(exported / "objectives.parquet")
    assert {"configuration", "seed", "epoch", "valid_ppl", "test_ppl", "elapsed_seconds"} <= set(objectives)


def test_the_manifest_names_a_file_with_a_flipped_byte(exported, tmp_path):
    copy = tmp_path / "copy"
    shutil.copytree(exported, copy)
    data = bytearray((copy / "ls.parquet").read_bytes())
    data[len(data) // 2] ^= 0x01
    (copy / "ls.parquet").write_bytes(bytes(data))
    with pytest.raises(ValueError, match=r"ls\.parquet differs from the export: SHA-256"):
        B.load_export(copy)
    shutil.copy(exported / "ls.parquet", copy / "ls.parquet")
    B.load_export(copy)
    (copy / "notes.txt").write_text("x")
    with pytest.raises(ValueError, match=r"\['notes.txt'\].*does not list"):
        B.verify_manifest(copy)
    (copy / "notes.txt").unlink()
    (copy / "graphs.parquet").unlink()
    with pytest.raises(ValueError, match="graphs.parquet is listed in SHA256SUMS but missing"):
        B.verify_manifest(copy)


# ---------------------------------------------------------------------------- Optuna on the atlas


def test_a_study_spends_the_recorded_seconds_within_its_budget(bench):
    result = BO.run_study(bench, sampler="tpe", pruner="median", seed=4, budget_seconds=1500)
    log = result["trial_log"]
    spent = sum(bench.curve(r["configuration"]).epoch_seconds.iloc[1: r["epochs"] + 1].sum() for r in log)
    assert result["spent_seconds"] == pytest.approx(spent) and result["spent_seconds"] <= 1500
    # the next epoch of the last trial would have crossed the budget
    last = log[-1]
    assert result["spent_seconds"] + bench.curve(last["configuration"]).epoch_seconds.iloc[last["epochs"] + 1] > 1500
    assert result["pruned"] > 0 and result["trials"] == len(log)
    done = [r for r in log if r["state"] == "complete"]
    best = min(done, key=lambda r: r["value"])
    assert result["selected_configuration"] == best["configuration"]
    assert result["test_ppl"] == bench.objective(best["configuration"], 30)["test_ppl"]
    assert BO.run_study(bench, sampler="tpe", pruner="median", seed=4, budget_seconds=1500)["trial_log"] == log


@pytest.mark.parametrize("pruner", ["hyperband", "successive_halving", "none"])
def test_every_stock_pruner_runs_on_the_atlas(bench, pruner):
    result = BO.run_study(bench, sampler="random", pruner=pruner, seed=1, max_trials=15)
    assert result["trials"] == 15 and result["complete"] >= 1
    assert (result["pruned"] == 0) == (pruner == "none")
    full = [r for r in result["trial_log"] if r["state"] == "complete"]
    assert all(r["epochs"] == 30 for r in full)


def test_a_study_can_draw_training_seeds_and_report_perplexity(bench):
    result = BO.run_study(bench, sampler="random", pruner="none", seed=2, max_trials=300, train_seed="sample",
                          metric="valid_ppl")
    drawn = {(r["configuration"], r["train_seed"]) for r in result["trial_log"]}
    assert all(s in bench.seeds(c) for c, s in drawn)
    assert {s for c, s in drawn if c == REPLICATED} == {0, 1, 2, 3}
    for r in result["trial_log"][:5]:
        assert r["value"] == bench.objective(r["configuration"], 30, seed=r["train_seed"])["valid_ppl"]


def test_cmaes_is_refused_because_the_space_is_categorical(bench):
    import optuna

    for sampler in ("cmaes", optuna.samplers.CmaEsSampler(seed=0)):
        with pytest.raises(ValueError, match="categorical"):
            BO.run_study(bench, sampler=sampler, max_trials=3)
    with pytest.raises(ValueError, match=r"'grid'.*\['tpe', 'random'\]"):
        BO.run_study(bench, sampler="grid", max_trials=3)
    with pytest.raises(ValueError, match="budget_seconds.*max_trials"):
        BO.run_study(bench)


@pytest.mark.filterwarnings("ignore:sampler .tpe. returns only")  # the smoke atlas has 8 configurations
def test_compare_writes_resumes_and_reads_back(atlas_dir, tmp_path, monkeypatch):
    out = tmp_path / "compare"
    calls = []
    real = BO.run_study

    def flaky(*args, **kwargs):
        calls.append(kwargs["seed"])
        if len(calls) == 3:
            raise RuntimeError("killed")
        return real(*args, **kwargs)

    monkeypatch.setattr(BO, "run_study", flaky)
    with pytest.raises(RuntimeError, match="killed"):
        BO.compare(atlas_dir, out, repeats=2, budget="smoke", pruners=["median", "none"])
    assert (out / "journal.jsonl").exists() and not (out / "runs.csv").exists()
    calls.clear()
    result = BO.compare(atlas_dir, out, repeats=2, budget="smoke", pruners=["median", "none"])
    assert len(calls) == 2  # the two studies the killed run had finished are read from its journal
    runs = pd.read_csv(out / "runs.csv")
    assert list(dict.fromkeys(runs.method)) == ["LSH (LS ranking)", "LSH (loss ranking)",
                                                "Optuna TPE, median pruner", "Optuna TPE, no pruner"]
    lsh = runs[runs.method == "LSH (LS ranking)"].set_index("seed").spent_seconds
    optuna_runs = runs[runs.method.str.startswith("Optuna")]
    assert (optuna_runs.budget_seconds.to_numpy() == lsh.loc[optuna_runs.seed].to_numpy()).all()
    assert (optuna_runs.spent_seconds <= optuna_runs.budget_seconds).all()
    assert not (out / "journal.jsonl").exists()
    monkeypatch.setattr(BO, "run_study", lambda *a, **k: pytest.fail("a finished comparison is read back"))
    again = BO.compare(atlas_dir, tmp_path / "elsewhere", repeats=2, budget="smoke", pruners=["median", "none"],
                       committed=out)
    pd.testing.assert_frame_equal(again["summary"], result["summary"])


def test_the_committed_comparison_is_read_back_and_consistent(atlas, monkeypatch, tmp_path):
    import lshkit.atlas.replay

    monkeypatch.setattr(lshkit.atlas.replay, "replay_many", lambda *a, **k: pytest.fail("committed results are read"))
    result = BO.compare(atlas, tmp_path / "out", repeats=100, committed=COMMITTED)
    runs = result["runs"]
    assert len(runs) == 600 and runs.groupby("method").seed.nunique().eq(100).all()
    table = pd.read_csv(COMMITTED / "summary.csv")
    assert np.allclose(table["mean"], result["summary"]["mean"]) and np.allclose(table.ci95, result["summary"].ci95)
    # the paired differences are the differences of the per-seed picks
    wide = runs.pivot(index="seed", columns="method", values="test_ppl")
    row = result["paired"].set_index("method").loc["Optuna TPE, no pruner"]
    assert row.difference == pytest.approx((wide["Optuna TPE, no pruner"] - wide["LSH (LS ranking)"]).mean())
    # each pick's test perplexity is the atlas's record of that configuration
    bench = B.load(atlas)
    for r in runs.sample(20, random_state=0).itertuples():
        assert r.test_ppl == pytest.approx(bench.objective(r.selected_configuration, 30)["test_ppl"], rel=1e-9)


def test_bench_command_line(capsys, tmp_path):
    assert main(["bench", "study", "--atlas", str(ATLAS), "--pruner", "hyperband", "--budget-seconds", "900"]) == 0
    printed = json.loads(capsys.readouterr().out)
    assert printed["spent_seconds"] <= 900 and printed["pruner"] == "hyperband"
    with pytest.raises(SystemExit) as exit_:
        main(["bench", "study", "--sampler", "cmaes", "--budget-seconds", "900"])
    assert exit_.value.code == 2 and "categorical" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["bench", "compare", "--atlas", str(ATLAS)])
    assert "compare needs --out" in capsys.readouterr().err
