"""The LSH search (paper §3.2, Algorithm 1): pool arithmetic, generation conditioned on the
survivors, every sampler and ranking, failures, resumption after SIGKILL, several processes
on one journal file and on PostgreSQL. Smoke scale with tiny models (16 units, batch 64)."""
import json
import math
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import optuna
import pandas as pd
import pytest
import torch

from lshkit import search as S
from lshkit.search.full_training import full_training_search
from lshkit.search.samplers import Observation, make_sampler
from lshkit.search.space import Categorical, SearchSpace
from lshkit.storage import JobQueue, check_workers, open_storage, storage_kind
from lshkit.train import TrainConfig

TINY = {"batch_size": 64, "hidden_size": 16, "emb_size": 16}
ROOT = Path(__file__).resolve().parent.parent


def tiny(**kw) -> S.SearchConfig:
    args = dict(budget="smoke", pool=4, epochs_per_round=1, final_epochs=3, ls_steps=20,
                train_overrides=dict(TINY))
    args.update(kw)
    return S.SearchConfig(**args)


@pytest.fixture(scope="module")
def reference_dir(tmp_path_factory):
    # One dense reference per module: every search with the same key reads it from the cache.
    return tmp_path_factory.mktemp("reference")


def run(cfg, out, reference_dir, **kw):
    torch.manual_seed(0)
    return S.run_search(cfg, out, reference_dir=reference_dir, device="cpu", progress=False, **kw)


# ------------------------------------------------------------------ pure parts


def test_pool_schedule_is_the_papers_arithmetic():
    # n -> ceil(n/2) + n//4 until 2 remain (§3.2); removal only for GS: 24 -> 12 -> 6 -> 3, i.e.
    # 45 candidate-rounds, Table 4's selection time 45·E.
    assert S.pool_schedule(24) == [24, 18, 13, 10, 7, 5, 4]
    assert S.pool_schedule(40) == [40, 30, 22, 16, 12, 9, 7, 5, 4]
    assert S.pool_schedule(24, generate=False) == [24, 12, 6, 3]
    assert sum(S.pool_schedule(24, generate=False)) == 45
    assert S.pool_schedule(24, rounds=2) == [24, 18]


def test_hyperband_brackets_are_scaled_to_the_pool():
    cfg = S.SearchConfig(budget="low", scale="cpu", sampler="hyperband").resolved("cpu")
    brackets = S.scaled_brackets(cfg.pool, cfg.epochs_per_round, cfg.eta, cfg.final_epochs)
    assert S.hyperband_resources(cfg.epochs_per_round, cfg.eta, cfg.final_epochs) == (3, 27)
    assert sum(b[0][0] for b in brackets) == 24
    # Hyperband(27, eta 3, min 3) starts 9, 5, 3 candidates; scaled to 24: 13, 7, 4.
    assert brackets == [[(13, 3), (4, 9), (1, 27)], [(7, 9), (2, 27)], [(4, 27)]]


def test_config_round_trip_validation_and_resolution():
    cfg = S.SearchConfig(model="rhn", budget="moderate", sampler="bohb", ranking="loss", seed=3,
                         target_ppl=70.0)
    assert S.SearchConfig.from_json(cfg.to_json()) == cfg
    resolved = cfg.resolved("cpu")
    assert (resolved.scale, resolved.pool, resolved.sparsity, resolved.epochs_per_round,
            resolved.final_epochs) == ("cpu", 30, 0.53, 3, 40)
    assert cfg.resolved("cuda").scale == "paper"
    assert S.SearchConfig.from_json(resolved.to_json()).key() == resolved.key()
    for bad, names in [(dict(sampler="nonsense"), "'tpe'"), (dict(embedding="umap"), "'raw'"),
                       (dict(reference="dense"), "'same_epoch', 'final'"),
                       (dict(embedding="same_epoch"), "now embedding='raw' with reference='same_epoch'"),
                       (dict(budget="huge"), "'moderate'"), (dict(ls_convention="x"), "'full'")]:
        with pytest.raises(ValueError, match=names):
            S.SearchConfig(**bad)
    smoke_epochs = TrainConfig.preset("smoke").epochs
    with pytest.raises(ValueError, match=f"more than final_epochs={smoke_epochs}"):
        S.SearchConfig(budget="smoke", epochs_per_round=smoke_epochs).resolved("cpu")
    with pytest.raises(ValueError, match="neither SparseConfig fields"):
        S.SearchConfig(budget="smoke", space={"colour": {"type": "categorical", "choices": ["red"]}}).resolved()
    with pytest.raises(ValueError, match="unknown TrainConfig field"):
        S.SearchConfig(train_overrides={"hiden_size": 3})
    # The dataset may change (for the reference and every candidate alike); seed has its own field.
    with_data = S.SearchConfig(scale="cpu", train_overrides={"dataset": "wikitext2"}).resolved("cpu")
    assert with_data.train_config().dataset == "wikitext2"
    with pytest.raises(ValueError, match=r"may not set \['seed'\]"):
        S.SearchConfig(train_overrides={"seed": 1})


def test_storage_urls_and_workers(tmp_path):
    assert storage_kind(f"sqlite:///{tmp_path}/a.db") == "sqlite"
    assert storage_kind(f"journal:///{tmp_path}/a.log") == "journal"
    assert storage_kind(str(tmp_path / "a.log")) == "journal"
    assert storage_kind("postgresql+psycopg2://u:p@h/db") == "rdb"
    with pytest.raises(ValueError, match="journal:///"):
        storage_kind("redis://localhost")
    with pytest.raises(ValueError, match="journal"):
        check_workers(f"sqlite:///{tmp_path}/a.db", 2)
    check_workers(f"journal:///{tmp_path}/a.log", 2)


def test_job_queue_claims_once_dedupes_and_reaps(tmp_path):
    storage = open_storage(f"journal:///{tmp_path}/jobs.log")
    a = JobQueue(storage, "jobs", stale_after=60)
    b = JobQueue(open_storage(f"journal:///{tmp_path}/jobs.log"), "jobs", stale_after=60)
    a.enqueue("u", {"x": 1})
    b.study.enqueue_trial({}, user_attrs={"key": "u", "spec": {"x": 1}})  # a racing duplicate
    job = a.claim()
    assert job is not None and job.number == 0
    assert b.claim() is None  # the duplicate yields to the lower-numbered live trial
    states = [t.state for t in a.trials()]
    assert states == [optuna.trial.TrialState.RUNNING, optuna.trial.TrialState.PRUNED]
    # A RUNNING unit whose owner died on this host is failed and enqueued again.
    storage.set_trial_user_attr(job.trial_id, "owner", {"host": a.host, "pid": _dead_pid()})
    assert b.reap_stale() == ["u"]
    done = b.run({"u": {"x": 1}}, lambda job: {"value": job.spec["x"] + 1})
    assert done == {"u": {"value": 2}}
    assert a.run({"u": {"x": 1}}, lambda job: pytest.fail("recomputed")) == done


def _dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


# ------------------------------------------------------------------ end to end


def _observations_before(events: pd.DataFrame, epochs: pd.DataFrame, params: dict, r: int) -> list:
    """The sampler history after round r's removal, rebuilt from the records alone."""
    hist = []
    for cid in sorted(params):
        mine = events[(events.candidate == cid) & (events["round"] <= r) & (events.event != "added")]
        if mine.empty:
            continue
        last = mine.iloc[-1]
        hist.append(Observation(params[cid], float(last.score), last.event == "survived", int(last.epoch)))
    return hist


def test_lsh_pool_arithmetic_and_generation_from_survivors(tmp_path, reference_dir):
    cfg = tiny(pool=8, sampler="tpe", target_ppl=1e6)
    summary = run(cfg, tmp_path, reference_dir)
    events = pd.read_csv(tmp_path / "events.csv")
    rounds = pd.read_csv(tmp_path / "rounds.csv")
    epochs = pd.read_csv(tmp_path / "epochs.csv")

    # Pool arithmetic, from the event log: 8 -> 4 + 2 = 6 -> 3 + 1 = 4 -> 2.
    trained = [int(((events["round"] == r) & events.event.isin(["survived", "removed", "failed"])).sum())
               for r in range(3)]
    assert trained == S.pool_schedule(8) == [8, 6, 4]
    for r, p in enumerate(trained):
        survived = int(((events["round"] == r) & (events.event == "survived")).sum())
        assert survived == (p - p // 2 if r < 2 else 2)
        if r:
            assert int(((events["round"] == r) & (events.event == "added")).sum()) == trained[r - 1] // 4
    assert list(rounds.pool) == [8, 6, 4] and list(rounds.added) == [2, 1, 0]

    # One row per candidate per epoch; newcomers train E epochs in the round they join, their LS
    # recorded from epoch 0 (before training, Appendix B's history) on.
    sel = epochs[epochs.phase == "selection"]
    assert not sel.duplicated(["candidate", "epoch"]).any()
    for (cid, r), rows in sel.groupby(["candidate", "round"]):
        joined = int(events[(events.candidate == cid) & (events.event == "added")]["round"].iloc[0])
        assert list(rows.epoch) == ([0] if r == joined else []) + [r - joined + 1]
    assert sel[sel.epoch == 0].train_loss.isna().all() and sel[sel.epoch == 0].distance.notna().all()
    # The ranking score is the LS distance of the current epoch, nearest survives.
    for r in range(3):
        ev = events[(events["round"] == r) & events.event.isin(["survived", "removed"])]
        assert ev[ev.event == "survived"].score.max() <= ev[ev.event == "removed"].score.min()

    # Generation conditioned on the survivors: each round's newcomers are exactly what a fresh
    # sampler proposes from the history rebuilt from the records (scores, who survived).
    space = cfg.resolved().search_space()
    names = list(space)
    params = {cid: {n: rows.iloc[0][n] for n in names} for cid, rows in epochs.groupby("candidate")}
    params = {cid: space.snap({k: (v.item() if hasattr(v, "item") else v) for k, v in p.items()})
              for cid, p in params.items()}
    sampler = make_sampler("tpe", space, cfg.seed)
    for r in (0, 1):
        hist = _observations_before(events, epochs, params, r)
        new = sorted(events[(events["round"] == r + 1) & (events.event == "added")].candidate)
        assert [params[c] for c in new] == sampler.propose(len(new), hist)
        # ... and flipping who survived changes the proposal: the history is really used.
        flipped = [Observation(o.params, o.score, not o.survived, o.step) for o in hist]
        assert sampler.propose(len(new), flipped) != sampler.propose(len(new), hist)

    # The summary, the selection by validation perplexity, the ledger study.
    finals = summary["survivors"]
    assert len(finals) == 2
    best = min(finals, key=lambda s: s["valid_ppl"])
    assert summary["selected"] == best["params"] and summary["valid_ppl"] == best["valid_ppl"]
    assert math.isfinite(summary["test_ppl"]) and summary["reference"]["epochs"] == 3
    assert set(summary["versions"]) >= {"python", "torch", "optuna", "lshkit"}
    assert 0 < summary["timings"]["ls_share"] < 1
    # Time to target (Fig. 3 right): every perplexity is below 1e6, so the selected candidate
    # reached it during the selection, whose compute time (from the records) is the answer.
    selection = epochs[epochs.phase == "selection"]
    assert summary["time_to_target_seconds"] == pytest.approx(
        (selection.train_seconds + selection.eval_seconds + selection.ls_seconds).sum())
    ls = np.load(tmp_path / "ls.npz")
    assert ls["ls"].shape == (len(sel), 32) and ls["reference_ls"].shape == (4, 32)  # epochs 0..3
    study = optuna.load_study(study_name=summary["study"], storage=f"sqlite:///{tmp_path}/study.db")
    states = sorted(t.state.name for t in study.trials)
    assert states == ["COMPLETE"] * 2 + ["PRUNED"] * 9
    trials = {t.user_attrs["candidate"]: t for t in study.trials}
    for cid, rows in sel.groupby("candidate"):
        assert trials[cid].intermediate_values == pytest.approx(dict(zip(rows.epoch, rows.distance)))
        assert trials[cid].params == params[cid]


@pytest.mark.parametrize("sampler,ranking,embedding,distance,reference", [
    ("grid", "ls", "raw", "l2", "same_epoch"),
    ("random", "ls", "tsne", "cos", "final"),
    ("atpe", "ls", "raw", "l2", "final"),
    ("bohb", "ls", "pca", "l2", "same_epoch"),
    ("hyperband", "loss", "pca", "l2", "same_epoch"),
    ("tpe", "loss", "pca", "l2", "same_epoch"),
])
def test_every_sampler_and_ranking_end_to_end(tmp_path, reference_dir, sampler, ranking, embedding, distance,
                                              reference):
    if sampler == "atpe":
        pytest.importorskip("hyperopt")
    cfg = tiny(sampler=sampler, ranking=ranking, embedding=embedding, distance=distance, reference=reference)
    summary = run(cfg, tmp_path, reference_dir)
    epochs = pd.read_csv(tmp_path / "epochs.csv")
    events = pd.read_csv(tmp_path / "events.csv")
    assert summary["selected"] is not None and math.isfinite(summary["test_ppl"])
    assert (events.event == "selected").sum() == 1
    assert (epochs[epochs.phase == "final"].groupby("candidate").epoch.max() == 3).all()
    if ranking == "loss":
        # The loss baseline computes no LS and needs no reference.
        assert summary["reference"] is None and epochs.ls_seconds.isna().all()
        ranked = epochs.dropna(subset=["score"])
        assert np.allclose(ranked.score, ranked.valid_loss)
    else:
        selection = epochs[epochs.phase == "selection"]
        assert selection.distance.notna().all()
        if embedding == "raw" and distance == "l2":  # the ranking's distance is the recorded reading's
            read = selection.same_epoch_distance if reference == "same_epoch" else selection.final_distance
            assert np.allclose(selection.distance, read)
    if sampler in ("hyperband", "bohb"):
        # Brackets [(2 at 1 epoch, 1 at 3)], [(2 at 3)]; winners ranked jointly, best 2 go on.
        rung = epochs[epochs.phase == "selection"].groupby(["bracket", "rung"]).epoch.max()
        assert rung.to_dict() == {(0, 0): 1, (0, 1): 3, (1, 0): 3}
    if sampler == "grid":
        grid = cfg.resolved().search_space()
        assert (epochs.death_rate == 0.8).all() and summary["candidates"] == 4 <= grid.size()
        assert (events.event == "added").sum() == 4  # removal only, no generation


def test_divergent_candidate_fails_and_the_search_goes_on(tmp_path, reference_dir):
    # A real divergent setting: lr 1e30 sends the weights to inf after one step.
    space = SearchSpace({"death": Categorical(("magnitude", "SET", "threshold", "global_magnitude")),
                         "lr": Categorical((20.0, 1e30))})
    cfg = tiny(sampler="random", pool=6, space=space.to_dict())
    initial = make_sampler("random", space, cfg.seed).initial(6)
    diverging = sum(p["lr"] == 1e30 for p in initial)
    assert 1 <= diverging <= 4  # the seed gives both kinds, so the test means something
    summary = run(cfg, tmp_path, reference_dir)
    events = pd.read_csv(tmp_path / "events.csv")
    epochs = pd.read_csv(tmp_path / "epochs.csv")
    failed = set(events[events.event == "failed"].candidate)
    assert failed == set(epochs[epochs.lr == 1e30].candidate) and len(failed) >= diverging
    assert set(epochs[epochs.status == "failed"].candidate) == failed
    assert summary["failed"] == len(failed) and summary["selected"]["lr"] == 20.0
    assert math.isfinite(summary["test_ppl"])


def test_full_training_search_trains_until_the_target(tmp_path):
    cfg = tiny(sampler="tpe", ranking="loss")
    hit = full_training_search(cfg, tmp_path / "hit", target_ppl=1e6, device="cpu", progress=False)
    assert hit["reached"] and hit["candidates_trained"] == 1 and hit["result"]["epoch"] == 1
    miss = full_training_search(cfg, tmp_path / "miss", target_ppl=1.001, max_candidates=2,
                                  device="cpu", progress=False)
    rows = pd.read_csv(tmp_path / "miss" / "full_training.csv")
    assert not miss["reached"] and miss["candidates_trained"] == 2
    assert rows.groupby("candidate").epoch.max().tolist() == [3, 3]  # trained to convergence
    np.testing.assert_allclose(rows.cumulative_seconds, (rows.train_seconds + rows.eval_seconds).cumsum())
    # The second candidate is proposed from the first one's result.
    space = cfg.resolved().search_space()
    first = space.snap({n: rows[rows.candidate == 0][n].iloc[0] for n in space})
    second = space.snap({n: rows[rows.candidate == 1][n].iloc[0] for n in space})
    best = math.log(rows[rows.candidate == 0].valid_ppl.min())
    sampler = make_sampler("tpe", space, cfg.seed)
    assert sampler.initial(1) == [first]
    assert sampler.propose(1, [Observation(first, best, True, 3)]) == [second]
    assert hit["result"]["params"] == first


# ------------------------------------------------------------------ processes


CLI = ["--budget", "smoke", "--pool", "4", "--epochs-per-round", "2", "--final-epochs", "3",
       "--ls-steps", "20", "--sampler", "tpe", "--quiet", "--device", "cpu"] + \
      [a for k, v in TINY.items() for a in ("--train-override", f"{k}={v}")]


def cli(out, reference_dir, *extra, wait=True):
    env = dict(os.environ, PYTHONPATH=str(ROOT), OMP_NUM_THREADS="1")
    args = [sys.executable, "-m", "lshkit", "search", *CLI, "--out", str(out),
            "--reference-dir", str(reference_dir), *extra]
    proc = subprocess.Popen(args, env=env, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True)
    if wait:
        output = proc.communicate(timeout=600)[0]
        assert proc.returncode == 0, output
    return proc


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory, reference_dir):
    out = tmp_path_factory.mktemp("uninterrupted")
    cli(out, reference_dir)
    return out


def same_results(a: Path, b: Path) -> None:
    sa, sb = (json.loads((d / "summary.json").read_text()) for d in (a, b))
    for key in ("selected", "selected_candidate", "valid_ppl", "test_ppl", "candidates"):
        assert sa[key] == sb[key], key
    ea, eb = (pd.read_csv(d / "epochs.csv") for d in (a, b))
    cols = ["candidate", "phase", "epoch", "train_loss", "valid_loss", "score", "distance"]
    pd.testing.assert_frame_equal(ea[cols], eb[cols])
    la, lb = np.load(a / "ls.npz"), np.load(b / "ls.npz")
    np.testing.assert_array_equal(la["ls"], lb["ls"])


def test_kill_and_resume_equals_uninterrupted(tmp_path, reference_dir, uninterrupted):
    proc = cli(tmp_path, reference_dir, wait=False)
    # Kill the moment the first candidate-epoch checkpoint exists: mid-round, mid-unit (E = 2).
    _wait_for(lambda: list((tmp_path / "checkpoints").glob("*/c*.pt")), proc)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert not (tmp_path / "summary.json").exists()
    cli(tmp_path, reference_dir)
    same_results(tmp_path, uninterrupted)
    jobs = [s for s in optuna.get_all_study_names(f"sqlite:///{tmp_path}/study.db") if s.endswith("/jobs")]
    trials = optuna.load_study(study_name=jobs[0], storage=f"sqlite:///{tmp_path}/study.db").trials
    failed = [t for t in trials if t.state.name == "FAIL"]
    assert len(failed) == 1  # the killed unit, taken over from its checkpoint:
    again = [t for t in trials if t.state.name == "COMPLETE" and t.user_attrs["key"] == failed[0].user_attrs["key"]]
    assert len(again) == 1 and again[0].user_attrs["result"]["resumed_from"] >= 1
    keys = [t.user_attrs["key"] for t in trials if t.state.name == "COMPLETE"]
    assert len(keys) == len(set(keys))  # no finished unit was computed twice


def test_two_workers_on_a_journal_equal_one_process(tmp_path, reference_dir, uninterrupted):
    log = tmp_path / "search.log"
    cli(tmp_path, reference_dir, "--workers", "2", "--storage", f"journal:///{log}")
    same_results(tmp_path, uninterrupted)
    _check_shared(f"journal:///{log}", expected_owners=2)


def _jobs(url):
    storage = open_storage(url)
    names = [s.study_name for s in storage.get_all_studies() if s.study_name.endswith("/jobs")]
    return optuna.load_study(study_name=names[0], storage=storage).trials if names else []


def _owners(url) -> set:
    return {t.user_attrs["owner"]["pid"] for t in _jobs(url) if "owner" in t.user_attrs}


def _wait_for(condition, proc, timeout=300):
    deadline = time.time() + timeout
    while not condition():
        assert proc.poll() is None, proc.communicate()[0]
        assert time.time() < deadline
        time.sleep(0.05)


def _check_shared(url, expected_owners):
    done = [t for t in _jobs(url) if t.state.name == "COMPLETE"]
    keys = [t.user_attrs["key"] for t in done]
    assert len(keys) == len(set(keys))  # no unit computed twice
    owners = {t.user_attrs["owner"]["pid"] for t in done}
    assert len(owners) == expected_owners


def test_two_processes_on_postgresql(tmp_path, reference_dir, uninterrupted):
    url = os.environ.get("LSHKIT_TEST_POSTGRES_URL")
    if not url:
        reason = ("LSHKIT_TEST_POSTGRES_URL is not set: no PostgreSQL server to test several "
                  "machines against (.ci/run starts one and sets it)")
        if os.environ.get("LSHKIT_REQUIRE_POSTGRES"):  # CI must run this test, never skip it
            pytest.fail(reason)
        pytest.skip(reason)
    storage = open_storage(url)
    for study in storage.get_all_studies():  # a fresh search every time
        if study.study_name.startswith("lsh-lstm-smoke-tpe-ls-"):
            optuna.delete_study(study_name=study.study_name, storage=storage)
    # Two independent commands, as on two machines sharing the checkpoint directory. The first
    # is paused while it holds a unit, so the second must take units of the same round.
    shared = ["--storage", url, "--checkpoints", str(tmp_path / "shared")]
    first = cli(tmp_path / "a", reference_dir, *shared, wait=False)
    _wait_for(lambda: list((tmp_path / "shared").glob("*/c*.pt")), first)
    first.send_signal(signal.SIGSTOP)
    second = cli(tmp_path / "b", reference_dir, *shared, wait=False)
    _wait_for(lambda: _owners(url) >= {first.pid, second.pid}, second)
    first.send_signal(signal.SIGCONT)
    for proc in (first, second):
        output = proc.communicate(timeout=600)[0]
        assert proc.returncode == 0, output
    same_results(tmp_path / "a", uninterrupted)
    same_results(tmp_path / "b", uninterrupted)
    _check_shared(url, expected_owners=2)
