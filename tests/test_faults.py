"""Faults a user meets, injected: a damaged or missing checkpoint, a unit slower than the stale
limit, a second process's takeover, output files others cannot read, bad options."""
from __future__ import annotations

import os
import stat
import subprocess
import sys
import threading
import time
from pathlib import Path

import optuna
import pytest

from lshkit.io import write_json
from lshkit.search import SearchConfig, TrainingRunner
from lshkit.search.runner import candidate_configs
from lshkit.storage import JobQueue, open_storage
from lshkit.train import Trainer

ROOT = Path(__file__).resolve().parent.parent
PARAMS = {"sparse_init": "ER", "growth": "random", "death": "magnitude", "redistribution": "none",
          "death_rate": 0.5}


def _runner(tmp_path):
    cfg = SearchConfig(budget="smoke", ranking="loss", train_overrides={"hidden_size": 16, "emb_size": 16})
    runner = TrainingRunner(cfg, tmp_path, device="cpu", reference_dir=tmp_path / "ref")
    runner.open()
    return runner


def _unit(runner, start, epochs):
    spec = {"kind": "train", "candidate": 0, "params": PARAMS, "from": start, "epochs": epochs, "ls": False}
    return runner.queue.run({f"c0-{start}-{epochs}": spec}, runner)[f"c0-{start}-{epochs}"]


@pytest.mark.parametrize("damage", ["truncate", "delete"])
def test_a_damaged_or_missing_checkpoint_is_named_and_recomputed(tmp_path, damage):
    runner = _runner(tmp_path)
    first = _unit(runner, 0, 1)
    path = runner.checkpoints / "c0000.pt"
    if damage == "truncate":
        with open(path, "r+b") as f:
            f.truncate(1000)
    else:
        path.unlink()
    with pytest.warns(RuntimeWarning, match="c0000.pt"):
        second = _unit(runner, 1, 2)
    assert "recomputed" in second["recovered"] and str(path) in second["recovered"]
    assert (path.with_name("c0000.pt.bad").exists()) == (damage == "truncate")
    # Deterministic training: the recomputed epoch 2 is what an uninterrupted run gives.
    cfg, sparse = candidate_configs(runner.config, PARAMS)
    straight = Trainer(cfg, runner.corpus, sparse, progress=False)
    straight.fit(2)
    assert second["records"][0]["valid_loss"] == straight.history[1]["valid_loss"]
    assert first["records"][0]["valid_loss"] == straight.history[0]["valid_loss"]


def test_a_slow_unit_keeps_beating_and_is_not_taken_over(tmp_path):
    storage = open_storage(f"sqlite:///{tmp_path}/q.db")
    owner = JobQueue(storage, "jobs", stale_after=0.4, poll=0.05)
    other = JobQueue(storage, "jobs", stale_after=0.4, poll=0.05)
    reaped = []

    def slow(job):
        time.sleep(0.5)
        reaped.extend(other.reap_stale())  # another process looks while the unit runs, past the limit
        time.sleep(0.5)
        return {"done": True}

    assert owner.run({"u": {"kind": "slow"}}, slow) == {"u": {"done": True}}
    assert reaped == []


def test_a_unit_taken_over_is_not_written_twice(tmp_path):
    storage = open_storage(f"sqlite:///{tmp_path}/q.db")
    queue = JobQueue(storage, "jobs", stale_after=1.0)
    queue.enqueue("u", {"kind": "x"})
    job = queue.claim()
    storage.set_trial_state_values(job.trial_id, optuna.trial.TrialState.FAIL)  # taken over meanwhile
    assert queue.complete(job, {"late": True}, 1.0) is False
    assert "result" not in storage.get_trial(job.trial_id).user_attrs


def test_results_are_readable_by_others(tmp_path):
    old = os.umask(0o022)
    try:
        path = write_json(tmp_path / "r.json", {"a": 1})
    finally:
        os.umask(old)
    assert stat.S_IMODE(path.stat().st_mode) == 0o644


@pytest.mark.parametrize("args,message", [
    (["--stale-after", "0"], "--stale-after"),
    (["--storage", ""], "storage"),
    (["--storage", "sqlite://relative.db"], "sqlite:///"),
    (["--device", "nonsense"], "device='nonsense'"),
    (["--out", "/proc/nope"], "/proc/nope"),
])
def test_bad_run_options_are_one_line_errors_before_any_compute(tmp_path, args, message):
    args = args if "--out" in args else args + ["--out", str(tmp_path / "out")]
    proc = subprocess.run([sys.executable, "-m", "lshkit", "search", "--budget", "smoke", *args], cwd=ROOT,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2, proc.stderr
    assert message in proc.stderr and "Traceback" not in proc.stderr
    assert not (tmp_path / "out").exists()


def test_out_pointing_at_a_file_is_refused(tmp_path):
    target = tmp_path / "file.txt"
    target.write_text("mine")
    proc = subprocess.run([sys.executable, "-m", "lshkit", "search", "--budget", "smoke", "--out", str(target)],
                          cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2 and "is a file" in proc.stderr and target.read_text() == "mine"


def test_a_finished_search_folder_refuses_other_options(tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    cfg = SearchConfig(budget="smoke", pool=4).resolved("cpu")
    write_json(out / "summary.json", {"config_json": cfg.to_json()})
    proc = subprocess.run([sys.executable, "-m", "lshkit", "search", "--budget", "smoke", "--pool", "3",
                           "--ranking", "loss", "--out", str(out)], cwd=ROOT, capture_output=True, text=True,
                          timeout=120)
    assert proc.returncode == 2 and "pool" in proc.stderr and "ranking" in proc.stderr
    assert "--replace" in proc.stderr


def test_threads_are_released_by_the_heartbeat(tmp_path):
    storage = open_storage(f"sqlite:///{tmp_path}/q.db")
    queue = JobQueue(storage, "jobs", stale_after=0.2)
    before = threading.active_count()
    queue.run({"u": {}}, lambda job: {"ok": 1})
    assert threading.active_count() == before


def test_progress_bars_only_where_someone_watches(monkeypatch):
    """Papermill's kernels are ipykernels too, but nobody watches them: bars saved into the
    executed notebook would stay frozen at 0%. JupyterLab's kernels carry JPY_SESSION_NAME."""
    import lshkit.env as env

    for name in ("CI", "PYTEST_VERSION", "PYTEST_CURRENT_TEST", "JPY_SESSION_NAME"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setitem(sys.modules, "ipykernel", sys)
    monkeypatch.setattr(sys, "stderr", open(os.devnull, "w"))
    assert env.auto_progress() is False          # headless (papermill)
    monkeypatch.setenv("JPY_SESSION_NAME", "walkthrough.ipynb")
    assert env.auto_progress() is True           # open in JupyterLab
    monkeypatch.setenv("CI", "true")
    assert env.auto_progress() is False


def test_a_dying_worker_does_not_fail_a_complete_search(tmp_path):
    import multiprocessing
    import signal

    from conftest import tiny_search
    from lshkit.search import run_search

    def kill_worker():
        deadline = time.time() + 60
        while time.time() < deadline:
            workers = multiprocessing.active_children()
            if workers:
                time.sleep(3)  # let it claim a unit
                os.kill(workers[0].pid, signal.SIGKILL)
                return
            time.sleep(0.05)

    killer = threading.Thread(target=kill_worker)
    killer.start()
    with pytest.warns(RuntimeWarning, match="exited with code"):
        summary = run_search(tiny_search(pool=4, ranking="loss"), tmp_path, workers=2, device="cpu",
                             storage=f"journal:///{tmp_path}/search.log", progress=False)
    killer.join()
    assert summary["selected"] is not None and summary["worker_exit_codes"] == [-signal.SIGKILL]


def test_a_wrong_data_file_is_one_line(tmp_path):
    (tmp_path / "ptb").mkdir()
    for split in ("train", "valid", "test"):
        (tmp_path / "ptb" / f"ptb.{split}.txt").write_text("the cat sat\n" * 50)
    env = {**os.environ, "LSHKIT_DATA_DIR": str(tmp_path)}
    proc = subprocess.run([sys.executable, "-m", "lshkit", "search", "--budget", "low", "--scale", "cpu",
                           "--ranking", "loss", "--out", str(tmp_path / "out")], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 1 and "altered or truncated" in proc.stderr
    assert "Traceback" not in proc.stderr and len(proc.stderr.strip().splitlines()) == 1


def test_storage_faults_name_their_cause():
    """Optuna wraps SQLite's words in "invalid data in the commit"; the one-line error digs them out."""
    import sqlite3

    from optuna.exceptions import StorageInternalError

    from lshkit.__main__ import _cause

    try:
        try:
            raise sqlite3.OperationalError("attempt to write a readonly database")
        except sqlite3.OperationalError as err:
            raise StorageInternalError("An exception is raised during the commit.") from err
    except StorageInternalError as wrapped:
        assert _cause(wrapped) == "OperationalError: attempt to write a readonly database"


def test_a_search_where_every_candidate_fails_says_so_and_fails(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "lshkit", "search", "--budget", "smoke", "--pool", "3",
                           "--ranking", "loss", "--epochs-per-round", "1", "--final-epochs", "2",
                           "--train-override", "lr=1e30", "--train-override", "hidden_size=16",
                           "--train-override", "emb_size=16", "--out", str(tmp_path / "out")],
                          cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 1, proc.stderr
    assert "no candidate survived the selection" in proc.stdout
