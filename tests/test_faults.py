"""Faults a user meets, injected: a damaged or missing checkpoint, a unit slower than the stale
limit, a second process's takeover, output files others cannot read, bad options; storages and
disks that refuse, a full disk, Ctrl-C, a killed worker, damaged atlas and replay files."""
from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
import threading
import time
from pathlib import Path

import optuna
import pandas as pd
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


# ------------------------------------------------------------------ faults at the edges
# Storages and disks that refuse, Ctrl-C, damaged atlas files: one line naming the thing, the
# cause and what to do; nothing computed lost; no process left behind.

POSTGRES_NOBODY = "postgresql://u:p@127.0.0.1:1/x"  # port 1: nothing listens there


def _unwritable(tmp_path) -> tuple[Path, str]:
    """A folder nothing can be created in, and the words its error says. By its mode where the
    tests do not run as root; root ignores modes, so there a folder under a file (what a command
    meets as it meets a read-only disk: an OSError at the first write, before it)."""
    if os.geteuid() != 0:
        folder = tmp_path / "read-only"
        folder.mkdir()
        folder.chmod(0o555)
        return folder / "inner", "Permission denied"
    (tmp_path / "a-file").write_text("")
    return tmp_path / "a-file" / "inner", "is a file, not a folder"


def _one_line_error(err: str, *fragments) -> None:
    lines = [line for line in err.strip().splitlines() if not line.startswith(("usage:", " "))]
    assert len(lines) == 1 and "Traceback" not in err, err
    for fragment in fragments:
        assert fragment in lines[0], (fragment, lines[0])


@pytest.mark.parametrize("kind", ["sqlite", "journal", "postgres"])
def test_a_storage_that_cannot_be_opened_is_one_line(tmp_path, kind):
    from lshkit.storage import StorageUnavailable

    folder, words = _unwritable(tmp_path)
    url = {"sqlite": f"sqlite:///{folder}/s.db", "journal": f"journal://{folder}/s.log",
           "postgres": POSTGRES_NOBODY}[kind]
    start = time.perf_counter()
    with pytest.raises(StorageUnavailable) as err:
        open_storage(url)
    assert time.perf_counter() - start < 10  # refused at once, not retried
    message = str(err.value)
    assert "\n" not in message and "cannot open the storage" in message
    if kind == "postgres":
        assert "127.0.0.1:1 is not reachable" in message and ".ci/postgres.sh" in message
        assert ":p@" not in message  # the password stays out of logs
    else:
        assert str(folder) in message and words in message


@pytest.mark.parametrize("args,fragments", [
    (["--storage", POSTGRES_NOBODY], ["127.0.0.1:1 is not reachable", "start one"]),
    (["--storage", "journal://{ro}/s.log"], ["cannot open the storage journal://{ro}/s.log", "{words}"]),
    (["--storage", "sqlite:///{ro}/s.db"], ["cannot open the storage", "{words}"]),
    (["--out", "{ro}"], ["--out {ro} cannot be written", "{words}"]),
])
def test_search_refuses_a_storage_or_out_it_cannot_write_before_any_compute(tmp_path, capsys, args, fragments):
    from lshkit.__main__ import main

    folder, words = _unwritable(tmp_path)
    args = [a.format(ro=folder) for a in args]
    out = [] if "--out" in args else ["--out", str(tmp_path / "out")]
    with pytest.raises(SystemExit) as exit_:
        main(["search", "--budget", "smoke", *args, *out])
    assert exit_.value.code == 2
    _one_line_error(capsys.readouterr().err, *(f.format(ro=folder, words=words) for f in fragments))
    assert not (tmp_path / "out").exists()  # refused before --out was made


def test_atlas_build_refuses_a_storage_root_or_spec_it_cannot_use(tmp_path, capsys, atlas_dir):
    from lshkit.__main__ import main

    folder, words = _unwritable(tmp_path)
    for argv, fragments in [
        (["--root", str(tmp_path / "a"), "--storage", POSTGRES_NOBODY], ["127.0.0.1:1 is not reachable"]),
        (["--root", str(tmp_path / "a"), "--storage", f"journal://{folder}/q.log"], [words]),
        (["--root", str(folder)], [f"--root {folder} cannot be written", words]),
        (["--scale", "cpu", "--root", str(atlas_dir)], ["holds an atlas of another specification"]),
    ]:
        with pytest.raises(SystemExit) as exit_:
            main(["atlas", "build", "--quiet", *argv])
        assert exit_.value.code == 2
        _one_line_error(capsys.readouterr().err, *fragments)
    assert not (tmp_path / "a").exists()


def test_replay_write_errors_and_a_smoke_atlas_at_another_budget_are_one_line(tmp_path, capsys, atlas_dir):
    from lshkit.__main__ import main

    folder, words = _unwritable(tmp_path)
    (tmp_path / "file").write_text("mine")
    for argv, fragments in [
        (["--budget", "smoke", "--out", str(tmp_path / "file")], ["file is a file, not a folder"]),
        (["--budget", "smoke", "--out", str(folder)], [str(folder), words]),
        (["--out", str(tmp_path / "r")], ["smoke-scale", "--budget smoke"]),  # the default budget, low
        (["--budget", "smoke", "--ranking", "loss", "--embedding", "tsne", "--distance", "cos",
          "--out", str(tmp_path / "r")], ["embedding='tsne', distance='cos'", "ranking='loss' never reads"]),
    ]:
        with pytest.raises(SystemExit) as exit_:
            main(["replay", "--atlas", str(atlas_dir), "--repeats", "2", *argv])
        assert exit_.value.code == 2
        _one_line_error(capsys.readouterr().err, *fragments)
    assert (tmp_path / "file").read_text() == "mine" and not (tmp_path / "r").exists()


def test_a_full_disk_during_replays_is_one_line_and_the_same_command_resumes(tmp_path, capsys, atlas_dir,
                                                                           monkeypatch):
    """ENOSPC where a full disk reports it: at the fsync of a result file (no path of its own)."""
    import errno

    from lshkit.__main__ import main

    out = tmp_path / "r"
    argv = ["replay", "--atlas", str(atlas_dir), "--budget", "smoke", "--repeats", "6", "--out", str(out)]
    fsync, journal = os.fsync, out / "journal.jsonl"

    def full(fd):  # the disk fills once two repeats are finished
        if journal.exists() and len(journal.read_text().splitlines()) >= 3:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        fsync(fd)

    monkeypatch.setattr(os, "fsync", full)
    assert main(argv) == 1
    _one_line_error(capsys.readouterr().err, "No space left on device", f"{out}/", "the disk mounted at",
                    f"the same command resumes from {out}")
    assert len(journal.read_text().splitlines()) == 3  # the two finished repeats are kept
    monkeypatch.setattr(os, "fsync", fsync)
    assert main(argv) == 0
    resumed = pd.read_csv(out / "replays.csv")
    assert main(["replay", "--atlas", str(atlas_dir), "--budget", "smoke", "--repeats", "6",
                 "--out", str(tmp_path / "straight")]) == 0
    pd.testing.assert_frame_equal(resumed.drop(columns="decision_seconds"),
                                  pd.read_csv(tmp_path / "straight" / "replays.csv").drop(columns="decision_seconds"))


def _damage(root: Path) -> dict[str, str]:
    """Each way a candidate's files are met damaged; returns name -> the file named."""
    names = sorted(p.name for p in root.iterdir() if p.is_dir() and p.name != "dense-s0")
    cut = lambda path: path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])  # noqa: E731
    cut(root / "dense-s0" / "record.json")
    cut(root / names[0] / "ls.npz")
    data = bytearray((root / names[1] / "ls.npz").read_bytes())
    data[len(data) // 2] ^= 0xFF  # Bad CRC-32, or an inflate error
    (root / names[1] / "ls.npz").write_bytes(bytes(data))
    cut(root / names[2] / "graphs.json")
    cut(root / names[3] / "timing.json")
    record = json.loads((root / names[4] / "record.json").read_text())
    record["epochs"] = record["epochs"][:-2]  # two epochs short, and "ok"
    write_json(root / names[4] / "record.json", record)
    return {"dense-s0": "record.json", names[0]: "ls.npz", names[1]: "ls.npz", names[2]: "graphs.json",
            names[3]: "timing.json", names[4]: "record.json"}


def test_a_damaged_atlas_is_named_by_status_and_replay_and_rebuilt_alone(tmp_path, atlas_dir):
    import shutil

    from lshkit.atlas import atlas_status

    root = tmp_path / "atlas"
    shutil.copytree(atlas_dir, root)
    damaged = _damage(root)
    status = atlas_status(root)
    assert set(status["damaged"]) == set(damaged) and not status["complete"]
    for name, file in damaged.items():
        assert f"{root / name / file} " in status["damaged"][name]
        assert f"--rebuild {name}" in status["damaged"][name]
    cli = [sys.executable, "-m", "lshkit"]
    proc = subprocess.run([*cli, "atlas", "status", "--root", str(root)], cwd=ROOT, capture_output=True, text=True,
                          timeout=120)
    named = [line for line in proc.stdout.splitlines() if line.startswith("damaged: ")]
    assert proc.returncode == 1 and len(named) == len(damaged) and not proc.stderr, proc.stdout
    proc = subprocess.run([*cli, "replay", "--atlas", str(root), "--budget", "smoke", "--repeats", "1", "--out",
                           str(tmp_path / "r")], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2
    _one_line_error(proc.stderr, "'dense-s0' is damaged", "record.json is corrupt", "--rebuild dense-s0")
    rebuilt = list(damaged)[:2]  # the dense model and a sparse one (two trainings keep the test short)
    proc = subprocess.run([*cli, "atlas", "build", "--quiet", "--root", str(root), "--rebuild", *rebuilt], cwd=ROOT,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0 and "built 2 candidate(s)" in proc.stdout, proc.stderr
    assert set(atlas_status(root)["damaged"]) == set(damaged) - set(rebuilt)
    # The README: a rebuild on one machine gives the same record.json and ls.npz; graphs.json but
    # for its measured gap_seconds.
    for name in rebuilt:
        for file in ("record.json", "ls.npz"):
            assert (root / name / file).read_bytes() == (atlas_dir / name / file).read_bytes(), (name, file)
        if (atlas_dir / name / "graphs.json").exists():
            strip = lambda g: [{k: v for k, v in row.items() if k != "gap_seconds"} for row in g["epochs"]]  # noqa: E731
            assert strip(json.loads((root / name / "graphs.json").read_text())) == \
                strip(json.loads((atlas_dir / name / "graphs.json").read_text()))


def test_replays_read_back_damaged_are_named(tmp_path, atlas_dir):
    from lshkit.atlas.replay import replay_many

    out = tmp_path / "r"
    replay_many(atlas_dir, out, repeats=2, budget="smoke")
    csv = (out / "replays.csv").read_text()
    (out / "replays.csv").write_text(csv.splitlines()[0] + "\n")  # cut after the header
    with pytest.raises(ValueError, match=r"replays.csv is corrupt \(it has 0 rows, its summary.json says 2"):
        replay_many(atlas_dir, out, repeats=2, budget="smoke")
    (out / "summary.json").write_text('{"atlas": ')
    with pytest.raises(ValueError, match=rf"{out}/summary.json is corrupt .* remove {out} to replay again"):
        replay_many(atlas_dir, out, repeats=2, budget="smoke")


def test_replay_refuses_a_folder_of_another_search_unless_replace(tmp_path, atlas_dir, capsys):
    from lshkit.__main__ import main
    from lshkit.io import Journal
    from lshkit.atlas.replay import replay_many

    out = tmp_path / "r"
    replay_many(atlas_dir, out, repeats=4, budget="smoke")  # TPE + LS
    other = dict(repeats=2, budget="smoke", sampler="random", ranking="loss")
    with pytest.raises(ValueError, match="holds the replays of another search .*ranking: ls here, loss asked.*"
                                         "sampler: tpe here, random asked.*--replace"):
        replay_many(atlas_dir, out, **other)
    assert len(pd.read_csv(out / "replays.csv")) == 4  # untouched
    with pytest.raises(SystemExit):
        main(["replay", "--atlas", str(atlas_dir), "--budget", "smoke", "--repeats", "2", "--sampler", "random",
              "--ranking", "loss", "--out", str(out)])
    _one_line_error(capsys.readouterr().err, "another search", "--replace")
    frame = replay_many(atlas_dir, out, replace=True, **other)
    assert len(frame) == 2 and set(frame.sampler) == {"random"}
    assert sorted(p.name for p in out.glob("seed-*")) == ["seed-0", "seed-1"]  # no TPE repeats left beside
    # A killed replay of another search (its journal) is refused too.
    killed = tmp_path / "killed"
    Journal(killed / "journal.jsonl", {"atlas": {}, "fields": {"sampler": "grid"}}).add(0, {"x": 1})
    with pytest.raises(ValueError, match="another search"):
        replay_many(atlas_dir, killed, **other)


def test_options_that_do_nothing_are_refused():
    with pytest.raises(ValueError, match=r"embedding='tsne', distance='cos': these shape the LS distance, which "
                                         r"ranking='loss' never reads; leave them at their defaults \(embedding='pca', "
                                         r"distance='l2'\)"):
        SearchConfig(ranking="loss", embedding="tsne", distance="cos")
    with pytest.raises(ValueError, match="reference='final'.*ranking='gap'"):
        SearchConfig(ranking="gap", reference="final")
    SearchConfig(ranking="loss", embedding="pca", reference="same_epoch")  # defaults, given or not: fine
    SearchConfig(ranking="ls", embedding="tsne", distance="cos", reference="final")
    with pytest.raises(ValueError, match="pool=100: grid search's pool is its grid of 24"):
        SearchConfig(sampler="grid", pool=100).resolved("cpu")
    assert SearchConfig(sampler="grid", budget="high").resolved("cpu").pool_size() == 24  # the paper's GS
    assert SearchConfig(sampler="grid", pool=20).resolved("cpu").resolved("cpu").pool_size() == 20


def test_a_notebook_checks_its_atlas_and_budget_and_a_failed_run_says_so(tmp_path, atlas_dir):
    from IPython.core.interactiveshell import InteractiveShell

    from lshkit.io import read_json
    from lshkit.report import SOURCES, check_atlas_dir, validate

    def check(**params):
        validate("table2", extras={"source": SOURCES, "atlas_dir": check_atlas_dir}, **params)

    with pytest.raises(ValueError, match=rf"atlas_dir='{tmp_path}' is not valid: it holds no atlas"):
        check(source="atlas", atlas_dir=str(tmp_path))
    with pytest.raises(ValueError, match="budget='low' does not fit the atlas .*use budget='smoke'"):
        check(source="atlas", atlas_dir=str(atlas_dir), budget="low")
    with pytest.raises(ValueError, match="budget='smoke' with source='atlas' is not valid: the atlas at .* is "
                                         "atlas-scale"):
        check(source="atlas", atlas_dir=None, budget="smoke")
    check(source="atlas", atlas_dir=str(atlas_dir), budget="smoke")
    check(source="train", atlas_dir=None, budget="smoke")  # no atlas read when training

    shell = InteractiveShell.instance()
    try:
        shell.run_cell(f"from lshkit.io import run_record\nrecord = run_record({str(tmp_path)!r}, {{}})")
        assert read_json(tmp_path / "run.json")["status"] == "running"
        shell.run_cell("1 / 0")  # a later cell fails: papermill stops, the last cell's finish() never runs
        assert read_json(tmp_path / "run.json")["status"] == "failed: ZeroDivisionError: division by zero"
        shell.run_cell(f"record = run_record({str(tmp_path)!r}, {{}})\nrecord.finish()")
        assert read_json(tmp_path / "run.json")["status"] == "done"
    finally:
        InteractiveShell.clear_instance()


def _interrupted(cmd, ready, timeout=180) -> tuple[subprocess.CompletedProcess, list[int]]:
    """Start ``cmd`` in a session of its own (a terminal's foreground group), wait until
    ``ready(descendants)``, Ctrl-C the whole group (as a terminal does), and return the finished
    process and every descendant seen alive, once they are gone or 20 s have passed."""
    import signal

    from lshkit.env import _descendants, _running

    proc = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            start_new_session=True)
    seen, deadline = set(), time.monotonic() + timeout
    while proc.poll() is None and time.monotonic() < deadline:
        children = _descendants(proc.pid)
        seen.update(children)
        if ready(children):
            break
        time.sleep(0.1)
    assert proc.poll() is None, proc.communicate()
    seen.update(_descendants(proc.pid))
    os.killpg(proc.pid, signal.SIGINT)
    out, err = proc.communicate(timeout=60)
    deadline = time.monotonic() + 20
    while any(_running(p) for p in seen) and time.monotonic() < deadline:
        time.sleep(0.1)
    return subprocess.CompletedProcess(cmd, proc.returncode, out, err), [p for p in seen if _running(p)]


@pytest.mark.parametrize("command", ["search", "replay", "atlas", "notebooks"])
def test_ctrl_c_stops_every_process_and_says_how_to_resume(tmp_path, atlas_dir, command):
    out = tmp_path / "out"
    cli = [sys.executable, "-m", "lshkit"]
    if command == "search":  # --workers 2 on a journal: one worker process besides this one
        cmd = [*cli, "search", "--budget", "smoke", "--pool", "4", "--ranking", "loss", "--workers", "2",
               "--storage", f"journal://{tmp_path}/s.log", "--out", str(out), "--quiet",
               "--train-override", "hidden_size=16", "--train-override", "emb_size=16"]
        ready = lambda children: len(children) >= 2 and (tmp_path / "s.log").exists()  # noqa: E731
    elif command == "replay":
        cmd = [*cli, "replay", "--atlas", str(atlas_dir), "--budget", "smoke", "--repeats", "5000",
               "--workers", "2", "--out", str(out)]
        ready = lambda children: len(children) >= 3  # noqa: E731  two pool workers and the resource tracker
    elif command == "atlas":
        cmd = [*cli, "atlas", "build", "--scale", "smoke", "--root", str(out), "--workers", "2", "--quiet"]
        ready = lambda children: len(children) >= 3  # noqa: E731
    else:  # the kernel papermill starts runs in a session of its own: Ctrl-C never reaches it
        cmd = [*cli, "notebooks", "--only", "00_walkthrough", "--out", str(out)]
        ready = lambda children: len(children) >= 1  # noqa: E731
    proc, survivors = _interrupted(cmd, ready)
    assert proc.returncode == 130, proc.stderr
    assert "Traceback" not in proc.stderr and "KeyboardInterrupt" not in proc.stderr, proc.stderr
    ours = [line for line in proc.stderr.splitlines() if line.startswith("python -m lshkit")]
    assert len(ours) == 1 and f"interrupted; the same command resumes from {out}" in ours[0], proc.stderr
    assert survivors == []


def test_a_killed_worker_leaves_a_complete_search_and_a_quiet_shutdown(tmp_path):
    """A worker SIGKILLed mid-search: the search completes, and no leaked-semaphore warning or
    resource-tracker traceback follows (the workers hold no multiprocessing lock of tqdm's)."""
    script = f"""
import json, os, signal, sys, threading, time
sys.path.insert(0, {str(ROOT / 'tests')!r})
from conftest import tiny_search
from lshkit.env import _descendants
from lshkit.search import run_search

def kill_worker():
    for _ in range(1200):
        # the worker, once the search's study is in the storage; not the resource tracker
        workers = [p for p in _descendants(os.getpid())
                   if b"resource_tracker" not in open(f"/proc/{{p}}/cmdline", "rb").read()]
        if workers and os.path.exists({str(tmp_path / 'search.log')!r}):
            time.sleep(2)  # let it claim a unit
            os.kill(workers[0], signal.SIGKILL)
            return
        time.sleep(0.05)

threading.Thread(target=kill_worker, daemon=True).start()
summary = run_search(tiny_search(pool=4, ranking="loss"), {str(tmp_path)!r}, workers=2, device="cpu",
                     storage="journal://{tmp_path}/search.log", progress=False)
print(json.dumps({{"selected": summary["selected"] is not None, "codes": summary["worker_exit_codes"]}}))
"""
    proc = subprocess.run([sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout.splitlines()[-1]) == {"selected": True, "codes": [-9]}
    assert "exited with code(s) [-9]" in proc.stderr
    assert "leaked" not in proc.stderr and "Traceback" not in proc.stderr and "KeyError" not in proc.stderr, proc.stderr
