"""The atlas and replays on it: determinism of the build, replay equals reality, the simulated
clock, and a missing candidate named."""
from __future__ import annotations

import filecmp
import shutil

import numpy as np
import pandas as pd
import pytest

from conftest import SPEC
from lshkit.atlas import (AtlasSpec, atlas_status, build_atlas, candidate_name, graph_candidate, load_atlas,
                          record_graphs)
from lshkit.search.full_training import full_training_search
from lshkit.atlas.replay import (AtlasRunner, atlas_config, grid_optimum, replay, replay_many, replay_sweep,
                           replay_time_to_target)
from lshkit.search import LSHSearch, run_search


def _files(root):
    return sorted(p.relative_to(root) for p in root.rglob("*") if p.is_file() and p.name != "timing.json")


def test_atlas_is_complete_and_records_every_epoch(atlas_dir):
    status = atlas_status(atlas_dir)
    assert status["complete"] and status["done"] == 9 and not status["failed"]
    assert len(status["graph_epochs"]) == 8 and set(status["graph_epochs"].values()) == {4}  # the sparse ones
    atlas = load_atlas(atlas_dir)
    epochs = atlas.epochs()
    assert sorted(epochs.epoch.unique()) == [0, 1, 2, 3, 4]
    assert len(epochs) == 9 * 5
    sparse = epochs[~epochs.dense]
    assert np.allclose(sparse.density, 0.33, atol=1e-3)
    # The test perplexity is recorded at the final epoch; LS in both conventions at every epoch.
    assert epochs[epochs.epoch == 4].test_ppl.notna().all() and epochs[epochs.epoch < 4].test_ppl.isna().all()
    name = candidate_name({"sparse_init": "ER", "growth": "random", "death": "SET",
                           "redistribution": "nonzeros", "death_rate": 0.9}, 0)
    assert atlas.ls(name, "paper").shape == (5, 32) and atlas.ls(name, "full").shape == (5, 64)
    assert atlas.ls(name).dtype == np.float32
    # Pruned models differ from the dense one, and training moves the LS.
    assert not np.allclose(atlas.ls(name)[0], atlas.ls(name)[4])


def test_atlas_build_is_deterministic_across_workers_and_interruptions(atlas_dir, tmp_path):
    spec = AtlasSpec(**{**SPEC.to_dict(), "death_rates": (0.5,),
                        "variants": {**SPEC.variants, "death": ["SET"]}})
    two = tmp_path / "two"
    build_atlas(spec, two, workers=2, progress=False)
    parts = tmp_path / "parts"
    assert len(build_atlas(spec, parts, limit=2, progress=False)) == 2
    assert atlas_status(parts)["done"] == 2 and not atlas_status(parts)["complete"]
    build_atlas(spec, parts, progress=False)
    # The same candidates built with one worker inside the bigger atlas.
    for name in {p.parts[0] for p in _files(two)} - {"atlas.json"}:
        for f in ("record.json", "ls.npz"):
            assert filecmp.cmp(two / name / f, parts / name / f, shallow=False), (name, f)
            assert filecmp.cmp(two / name / f, atlas_dir / name / f, shallow=False), (name, f)
    # The masks' graphs too, but for the seconds they took.
    atlases = [load_atlas(root) for root in (two, parts, atlas_dir)]
    for name in atlases[0].graphs:
        assert _graph_rows(atlases[0], name) == _graph_rows(atlases[1], name) == _graph_rows(atlases[2], name)


def test_a_partial_atlas_holds_covering_variants_at_the_named_death_rates():
    spec = AtlasSpec(scale="smoke", death_rates=(0.4, 0.65, 0.9), variants_per_rate={0.4: 6, "0.9": 12},
                     replicates=2, replicate_seeds=(1,))
    grid = spec.grid()
    assert [sum(p["death_rate"] == r for p in grid) for r in (0.4, 0.65, 0.9)] == [6, 24, 12]
    six = [p for p in grid if p["death_rate"] == 0.4]
    for name, values in [("sparse_init", 2), ("death", 4), ("redistribution", 3)]:
        assert len({p[name] for p in six}) == values  # every value of every dimension is covered
    assert AtlasSpec.from_json(spec.to_json()) == spec  # rates as JSON keys read back equal
    assert spec.space().size() == 42 and len(spec.candidates()) == 1 + 42 + 3
    assert "variants_per_rate" not in AtlasSpec(scale="smoke").to_dict()  # older atlases keep their keys
    with pytest.raises(ValueError, match="death rate 0.5, which is not one of death_rates"):
        AtlasSpec(scale="smoke", variants_per_rate={0.5: 6})


def _build_on(storage, root, spec):
    build_atlas(spec, root, storage=storage, progress=False)


def _queue_owners(storage_url):
    from lshkit.storage import open_storage

    storage = open_storage(storage_url)
    trials = [t for s in storage.get_all_studies() if s.study_name.startswith("atlas-smoke-")
              for t in storage.get_all_trials(s._study_id) if t.state.name == "COMPLETE"]
    keys = [t.user_attrs["key"] for t in trials]
    assert len(keys) == len(set(keys))  # no candidate built twice
    return {t.user_attrs["owner"]["pid"] for t in trials}


def _postgres_url():
    import os

    url = os.environ.get("LSHKIT_TEST_POSTGRES_URL")
    if url:
        return url
    reason = ("LSHKIT_TEST_POSTGRES_URL is not set: no PostgreSQL server to build an atlas from "
              "several machines against (.ci/run starts one and sets it)")
    if os.environ.get("LSHKIT_REQUIRE_POSTGRES"):  # CI must run this test, never skip it
        pytest.fail(reason)
    pytest.skip(reason)


@pytest.mark.parametrize("kind", ["journal", "postgresql"])
def test_two_builders_on_one_storage_build_the_atlas_once(atlas_dir, tmp_path, kind):
    """Two independent processes (as on two machines sharing ``root``) each claim candidates from
    one queue: every candidate is built once, by one of them, and the records are those of a
    single-process build."""
    import multiprocessing

    if kind == "journal":
        url = f"journal:///{tmp_path / 'build.log'}"
    else:
        from optuna import delete_study

        from lshkit.storage import open_storage

        url = _postgres_url()
        storage = open_storage(url)
        for study in storage.get_all_studies():  # a fresh build every time
            if study.study_name.startswith("atlas-smoke-"):
                delete_study(study_name=study.study_name, storage=storage)
    root = tmp_path / "shared"
    context = multiprocessing.get_context("spawn")
    builders = [context.Process(target=_build_on, args=(url, root, SPEC)) for _ in range(2)]
    for proc in builders:
        proc.start()
    for proc in builders:
        proc.join(timeout=600)
        assert proc.exitcode == 0
    assert atlas_status(root)["complete"]
    for name in load_atlas(atlas_dir).records:
        for f in ("record.json", "ls.npz"):
            assert filecmp.cmp(root / name / f, atlas_dir / name / f, shallow=False), (name, f)
    assert _queue_owners(url) <= {proc.pid for proc in builders}
    # A storage that served this build cannot silently serve another root: nothing would be built.
    with pytest.raises(RuntimeError, match="use a fresh storage"):
        build_atlas(SPEC, tmp_path / "elsewhere", storage=url, progress=False)


def test_atlas_of_another_spec_is_refused(atlas_dir):
    other = AtlasSpec(**{**SPEC.to_dict(), "sparsity": 0.5})
    with pytest.raises(ValueError, match="another specification"):
        build_atlas(other, atlas_dir, progress=False)


@pytest.mark.parametrize("fields", [dict(sampler="grid", ranking="ls", pool=4),
                                    dict(sampler="random", ranking="ls", reference="final", embedding="raw", pool=6),
                                    dict(sampler="tpe", ranking="loss", pool=6),
                                    dict(sampler="random", ranking="gap", pool=6)])
def test_replay_equals_reality(atlas_dir, tmp_path, fields):
    atlas = load_atlas(atlas_dir)
    config = atlas_config(atlas, epochs_per_round=1, seed=0, **fields)
    real = run_search(config, tmp_path / "real", reference_dir=tmp_path / "ref", device="cpu", progress=False)
    replayed = replay(atlas, tmp_path / "replay", epochs_per_round=1, seed=0, **fields)
    assert replayed["selected"] == real["selected"]
    assert replayed["valid_ppl"] == real["valid_ppl"] and replayed["test_ppl"] == real["test_ppl"]
    assert replayed["candidates"] == real["candidates"] and replayed["rounds"] == real["rounds"]
    events = [pd.read_csv(tmp_path / d / "events.csv") for d in ("real", "replay")]
    pd.testing.assert_frame_equal(*events)
    epochs = [pd.read_csv(tmp_path / d / "epochs.csv") for d in ("real", "replay")]
    cols = ["candidate", "phase", "round", "epoch", "train_loss", "valid_loss", "score", "distance", "gap_min"]
    pd.testing.assert_frame_equal(*(e[[c for c in cols if c in e]] for e in epochs))
    if fields["ranking"] == "gap":  # the study minimizes, so its intermediate values are the negated gaps
        import optuna

        study = optuna.load_study(study_name=real["study"], storage=f"sqlite:///{tmp_path / 'real' / 'study.db'}")
        selection = epochs[0][epochs[0].phase == "selection"]
        for trial in study.trials:
            rows = selection[selection.candidate == trial.user_attrs["candidate"]]
            assert trial.intermediate_values == pytest.approx(dict(zip(rows.epoch, -rows.gap_min)))


def test_simulated_clock_is_the_sum_of_the_epochs_consumed(atlas_dir, tmp_path):
    atlas = load_atlas(atlas_dir)
    summary = replay(atlas, tmp_path, sampler="random", ranking="ls", epochs_per_round=1, pool=6, seed=3)
    epochs = pd.read_csv(tmp_path / "epochs.csv")
    names = list(atlas.spec.space())
    expected = 0.0
    for row in epochs.itertuples():
        name = candidate_name({n: getattr(row, n) for n in names}, atlas.spec.seed)
        t = atlas.timing[name]["epochs"][row.epoch]
        expected += t["cpu_seconds"] + (t["ls_paper_cpu_seconds"] if row.phase == "selection" else 0.0)
    assert summary["timings"]["total_seconds"] == pytest.approx(expected, rel=1e-12)
    assert summary["runner"] == "atlas" and summary["timings"]["total_seconds"] > 0


def test_a_missing_candidate_is_named(atlas_dir, tmp_path):
    root = tmp_path / "holey"
    shutil.copytree(atlas_dir, root)
    gone = candidate_name({"sparse_init": "uniform", "growth": "random", "death": "magnitude",
                           "redistribution": "nonzeros", "death_rate": 0.9}, 0)
    shutil.rmtree(root / gone)
    assert atlas_status(root)["missing"] == [gone]
    atlas = load_atlas(root)
    with pytest.raises(KeyError, match=gone):
        atlas.record({"sparse_init": "uniform", "growth": "random", "death": "magnitude",
                      "redistribution": "nonzeros", "death_rate": 0.9}, 0)
    # A partial atlas (one being built): searches see only the configurations it holds.
    assert atlas.space().size() == 7 and len(atlas.spec.grid()) == 8
    for sampler in ("grid", "random", "tpe"):
        summary = replay(atlas, tmp_path / sampler, sampler=sampler, ranking="ls", epochs_per_round=1,
                         pool=3 if sampler == "grid" else 7)
        seen = pd.read_csv(tmp_path / sampler / "epochs.csv")
        names = {candidate_name({k: getattr(row, k) for k in atlas.spec.space()}, 0) for row in seen.itertuples()}
        assert gone not in names and names <= set(atlas.records)
        assert summary["selected"] is not None


def test_a_search_that_does_not_fit_the_atlas_is_refused(atlas_dir):
    atlas = load_atlas(atlas_dir)
    with pytest.raises(ValueError, match="fixes \\['sparsity'\\]"):
        atlas_config(atlas, sparsity=0.5)
    config = atlas_config(atlas, sampler="random")
    from dataclasses import replace
    with pytest.raises(ValueError, match="does not fit the atlas"):
        LSHSearch(replace(config, final_epochs=3), runner=AtlasRunner(atlas, replace(config, final_epochs=3)))


def test_replay_many_writes_one_row_per_repeat(atlas_dir, tmp_path):
    frame = replay_many(atlas_dir, tmp_path, repeats=3, sampler="random", ranking="loss",
                        epochs_per_round=1, pool=6)
    assert list(frame.seed) == [0, 1, 2] and frame.test_ppl.notna().all()
    assert (tmp_path / "seed-2" / "summary.json").exists() and (tmp_path / "replays.csv").exists()


def test_replay_command(atlas_dir, tmp_path):
    import subprocess
    import sys

    out = tmp_path / "cli"
    proc = subprocess.run([sys.executable, "-m", "lshkit", "replay", "--atlas", str(atlas_dir), "--budget",
                           "smoke", "--epochs-per-round", "1", "--repeats", "2", "--out", str(out)],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert "2 replays of tpe + ls at budget smoke" in proc.stdout
    assert len(pd.read_csv(out / "replays.csv")) == 2
    bad = subprocess.run([sys.executable, "-m", "lshkit", "replay", "--atlas", str(tmp_path / "none"),
                          "--out", str(out)], capture_output=True, text=True, timeout=300)
    assert bad.returncode == 2 and "no atlas at" in bad.stderr


class _Killed(Exception):
    pass


def _killed_after(count, work):
    """``work`` that dies (as a killed process would) once it has finished ``count`` calls;
    the calls it made are counted in ``calls``."""
    calls = []

    def wrapped(*args, **kwargs):
        if len(calls) == count:
            raise _Killed
        calls.append(args)
        return work(*args, **kwargs)

    wrapped.calls = calls
    return wrapped


def test_a_killed_replay_resumes_with_the_repeats_it_finished(atlas_dir, tmp_path, monkeypatch):
    import lshkit.atlas.replay as replay_module

    fields = dict(sampler="tpe", ranking="ls", epochs_per_round=1, pool=6)
    whole = replay_many(atlas_dir, tmp_path / "whole", repeats=4, **fields)
    original = replay_module._replay_row
    monkeypatch.setattr(replay_module, "_replay_row", _killed_after(2, original))
    with pytest.raises(_Killed):
        replay_many(atlas_dir, tmp_path / "killed", repeats=4, **fields)
    assert not (tmp_path / "killed" / "replays.csv").exists()
    rest = _killed_after(100, original)
    monkeypatch.setattr(replay_module, "_replay_row", rest)
    resumed = replay_many(atlas_dir, tmp_path / "killed", repeats=4, **fields)
    assert [job[-1] for (job,) in rest.calls] == [2, 3]  # only the repeats the kill lost
    pd.testing.assert_frame_equal(resumed.drop(columns="decision_seconds"), whole.drop(columns="decision_seconds"))
    assert not (tmp_path / "killed" / "journal.jsonl").exists()


def test_replay_many_is_the_same_in_two_processes(atlas_dir, tmp_path):
    fields = dict(sampler="tpe", ranking="ls", epochs_per_round=1, pool=6)
    one = replay_many(atlas_dir, tmp_path / "one", repeats=3, **fields)
    two = replay_many(atlas_dir, tmp_path / "two", repeats=3, workers=2, **fields)
    pd.testing.assert_frame_equal(one.drop(columns="decision_seconds"), two.drop(columns="decision_seconds"))
    assert filecmp.cmp(tmp_path / "one" / "seed-2" / "events.csv", tmp_path / "two" / "seed-2" / "events.csv",
                       shallow=False)
    with pytest.raises(ValueError, match="workers=0"):
        replay_many(atlas_dir, None, repeats=2, workers=0, **fields)


def _graph_rows(atlas, name):
    return [{k: v for k, v in row.items() if k != "gap_seconds"} for row in atlas.graphs[name]["epochs"]]


def test_mask_graphs_are_the_recorded_masks(atlas_dir, tmp_path):
    atlas = load_atlas(atlas_dir)
    sparse = [n for n, r in atlas.records.items() if r["params"] is not None]
    assert sorted(atlas.graphs) == sorted(sparse)  # the build took them; the dense model has none
    frame = atlas.graph_epochs()
    assert len(frame) == len(sparse) * 5 and sorted(frame.epoch.unique()) == [0, 1, 2, 3, 4]
    for name in sparse:  # the graphs are of the masks the atlas hashed, epoch by epoch
        assert [r["mask_hash"] for r in atlas.graphs[name]["epochs"]] == \
               [e["mask_hash"] for e in atlas.records[name]["epochs"]]
    # An atlas whose build did not take them gets the same rows by retraining, resumably.
    root = tmp_path / "retaken"
    shutil.copytree(atlas_dir, root)
    for path in root.glob("*/graphs.json"):
        path.unlink()
    assert sorted(record_graphs(root, 2, progress=False)) == sorted(sparse)
    assert sorted(record_graphs(root, 4, workers=2, progress=False)) == sorted(sparse)
    assert record_graphs(root, 4, progress=False) == []
    retaken = load_atlas(root)
    for name in sparse:
        assert _graph_rows(retaken, name) == _graph_rows(atlas, name), name
    assert np.allclose(frame.density, 0.33, atol=1e-3) and frame.gap_min.notna().all()
    assert (frame.gap_min <= frame.gap_mean + 1e-12).all()
    # Training moves the masks (prune and regrow), and so their gaps.
    assert frame.groupby("name").gap_mean.nunique().max() > 1
    # A record the retraining does not reproduce is refused, naming the candidate and epoch.
    record = dict(atlas.records[sparse[0]])
    record["epochs"] = [dict(e) for e in record["epochs"]]
    record["epochs"][2]["mask_hash"] = "0" * 16
    with pytest.raises(RuntimeError, match=f"{sparse[0]}.*epoch 2"):
        graph_candidate(atlas.spec, record, _smoke_corpus(), 3)
    with pytest.raises(ValueError, match="dense"):
        graph_candidate(atlas.spec, atlas.records["dense-s0"], _smoke_corpus(), 3)


def _smoke_corpus():
    from lshkit.data import load_corpus

    return load_corpus(SPEC.train_config().dataset)


def test_a_gap_ranking_needs_the_mask_graphs(atlas_dir, tmp_path):
    root = tmp_path / "no-graphs"
    shutil.copytree(atlas_dir, root)
    for path in root.glob("*/graphs.json"):
        path.unlink()
    with pytest.raises(KeyError, match="mask graphs of .* not at all; epoch 1 .*atlas graphs"):
        replay(root, sampler="random", ranking="gap", epochs_per_round=1, pool=4)


def test_replay_many_reads_a_finished_folder_back(atlas_dir, tmp_path):
    fields = dict(sampler="random", ranking="ls", epochs_per_round=1, pool=6)
    first = replay_many(atlas_dir, tmp_path, repeats=2, write_repeats=False, **fields)
    (tmp_path / "replays.csv").write_text(first.assign(test_ppl=-1.0).to_csv(index=False))
    assert (replay_many(atlas_dir, tmp_path, repeats=2, write_repeats=False, **fields).test_ppl == -1.0).all()
    # Other seeds are another experiment: replayed, not read back.
    again = replay_many(atlas_dir, tmp_path, repeats=3, write_repeats=False, **fields)
    assert list(again.seed) == [0, 1, 2] and (again.test_ppl > 1).all()


def test_replay_sweep_crosses_the_axes_and_replays_grid_once(atlas_dir, tmp_path):
    frame = replay_sweep(atlas_dir, tmp_path, {"sampler": ["grid", "random"], "ranking": ["ls", "loss"]},
                         repeats=2, epochs_per_round=1, pool=4)
    counts = frame.groupby(["sampler", "ranking"]).size().to_dict()
    assert counts == {("grid", "loss"): 1, ("grid", "ls"): 1, ("random", "loss"): 2, ("random", "ls"): 2}
    # Grid search has nothing random left on an atlas: another seed selects the same candidate.
    other = replay(atlas_dir, sampler="grid", ranking="ls", epochs_per_round=1, pool=4, seed=5)
    assert other["test_ppl"] == frame[(frame.sampler == "grid") & (frame.ranking == "ls")].test_ppl.iloc[0]


def test_full_training_on_the_atlas_stops_at_the_target(atlas_dir):
    atlas = load_atlas(atlas_dir)
    finals = atlas.candidates()
    finals = finals[~finals.dense]
    # A target only some candidates reach: the search trains until the first of them gets there.
    target = float(finals.valid_ppl.median())
    frame = replay_time_to_target(atlas, target, repeats=2, budget="smoke", max_candidates=len(finals))
    assert set(frame.method) == {"LSH (ls ranking)", "LSH (loss ranking)", "full training"}
    full = frame[frame.method == "full training"]
    assert full.seconds.notna().all() and (full.valid_ppl <= target).all()
    assert (full.seconds <= full.spent_seconds + 1e-9).all()
    # Its clock is the recorded seconds of the epochs it read, up to the epoch that reached the target.
    config = atlas_config(atlas, sampler="tpe", ranking="loss", seed=0, target_ppl=target)
    summary = full_training_search(config, None, max_candidates=len(finals), runner=AtlasRunner(atlas, config))
    rows = summary["rows"]
    expected = 0.0
    for row in rows.itertuples():
        name = candidate_name({n: getattr(row, n) for n in atlas.spec.space()}, atlas.spec.seed)
        expected += atlas.timing[name]["epochs"][row.epoch]["cpu_seconds"]
    assert summary["total_seconds"] == pytest.approx(expected, rel=1e-12)
    assert summary["result"]["time_to_target_seconds"] == pytest.approx(full.seconds.iloc[0], rel=1e-12)
    last = rows.groupby("candidate").epoch.max()
    assert rows.valid_ppl.iloc[-1] <= target and (rows[rows.candidate < rows.candidate.max()].valid_ppl > target).all()
    assert last.iloc[:-1].eq(atlas.spec.train_config().epochs).all()


def test_a_killed_time_to_target_replay_resumes_with_the_repeats_it_finished(atlas_dir, tmp_path, monkeypatch):
    import lshkit.atlas.replay

    atlas = load_atlas(atlas_dir)
    target = float(atlas.candidates().valid_ppl.median())
    args = dict(repeats=3, budget="smoke", max_candidates=4)
    whole = replay_time_to_target(atlas, target, out=tmp_path / "whole", **args)
    original = lshkit.atlas.replay.full_training_search  # the last step of each repeat
    monkeypatch.setattr(lshkit.atlas.replay, "full_training_search", _killed_after(1, original))
    with pytest.raises(_Killed):
        replay_time_to_target(atlas, target, out=tmp_path / "killed", **args)
    rest = _killed_after(100, original)
    monkeypatch.setattr(lshkit.atlas.replay, "full_training_search", rest)
    resumed = replay_time_to_target(atlas, target, out=tmp_path / "killed", **args)
    assert [call[0].seed for call in rest.calls] == [1, 2]
    pd.testing.assert_frame_equal(resumed, whole)
    assert filecmp.cmp(tmp_path / "whole" / "replays.csv", tmp_path / "killed" / "replays.csv", shallow=False)


def test_grid_optimum_is_the_best_grid_candidate(atlas_dir):
    atlas = load_atlas(atlas_dir)
    best = grid_optimum(atlas)
    finals = atlas.candidates()
    grid = finals[~finals.dense & (finals.death_rate == 0.9)]  # the grid search's rate: the middle of (0.5, 0.9)
    assert candidate_name(best, 0) == grid.loc[grid.valid_ppl.idxmin(), "name"]


def test_replay_sweep_reads_committed_replays_and_never_writes_them(atlas_dir, tmp_path):
    axes = {"sampler": ["random"], "ranking": ["ls", "loss"]}
    committed = tmp_path / "committed"
    replay_sweep(atlas_dir, committed, axes, repeats=2, epochs_per_round=1, pool=4)
    stamp = {p: p.stat().st_mtime_ns for p in committed.rglob("*")}
    cell = committed / "sampler=random-ranking=ls" / "replays.csv"
    cell.write_text(pd.read_csv(cell).assign(test_ppl=-1.0).to_csv(index=False))
    stamp[cell] = cell.stat().st_mtime_ns
    frame = replay_sweep(atlas_dir, tmp_path / "scratch", axes, repeats=2, epochs_per_round=1, pool=4,
                         committed=committed)
    assert (frame[frame.ranking == "ls"].test_ppl == -1.0).all()  # read from the committed folder
    assert {p: p.stat().st_mtime_ns for p in committed.rglob("*")} == stamp
    # Another experiment (more repeats) is not in the committed folder: replayed into the scratch one.
    more = replay_sweep(atlas_dir, tmp_path / "scratch", axes, repeats=3, epochs_per_round=1, pool=4,
                        committed=committed)
    assert len(more) == 6 and (more.test_ppl > 1).all()
    assert (tmp_path / "scratch" / "sampler=random-ranking=ls" / "replays.csv").exists()


def test_fig3_left_on_the_committed_atlas_replays_both_rankings_beside_its_records(tmp_path):
    from lshkit.atlas import ATLAS_ROOT
    from lshkit.experiments.fig3 import atlas_robustness, ROBUSTNESS_POOL

    atlas = load_atlas(ATLAS_ROOT / "atlas")
    frame = atlas_robustness(atlas, tmp_path / "left", repeats=2, first_seed=5)
    assert list(frame.columns) == ["method", "sparsity", "repeat", "seed", "status", "valid_ppl", "test_ppl", "seconds"]
    lsh = frame[frame.method == "LSH (TPE, LS ranking)"].set_index("seed")
    assert list(lsh.index) == [5, 6] and list(lsh.repeat) == [0, 1] and (lsh.sparsity == atlas.spec.sparsity).all()
    alone = replay(atlas, sampler="tpe", ranking="loss", budget="low", pool=ROBUSTNESS_POOL, seed=6)
    loss = frame[(frame.method == "TPE (loss ranking)") & (frame.seed == 6)].iloc[0]
    assert loss.test_ppl == alone["test_ppl"] and loss.seconds == alone["timings"]["total_seconds"]
    # The fixed configurations are the atlas's records, not replays.
    finals = atlas.candidates().set_index("name")
    dense = frame[frame.method == "dense"].iloc[0]
    assert dense.sparsity == 0 and dense.test_ppl == finals.loc[atlas.name(None, atlas.spec.seed)].test_ppl
    selfish = frame[frame.method == "Selfish-RNN default"].iloc[0]
    default = {"sparse_init": "uniform", "growth": "random", "death": "magnitude", "redistribution": "none",
               "death_rate": 0.9}  # Selfish-RNN's death rate 0.8 at the atlas's nearest
    assert selfish.test_ppl == finals.loc[atlas.name(default, atlas.spec.seed)].test_ppl
    with pytest.raises(ValueError, match="repeats=0"):
        atlas_robustness(atlas, tmp_path / "none", repeats=0)
