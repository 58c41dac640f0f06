import json

import pandas as pd
import pytest

from lshkit.io import Journal, atomic_write, read_json, run_record, write_csv, write_json


def test_atomic_write_keeps_old_file_when_writing_fails(tmp_path, monkeypatch):
    path = tmp_path / "result.json"
    write_json(path, {"a": 1})

    def broken_fsync(fd):
        raise OSError("disk full")

    monkeypatch.setattr("os.fsync", broken_fsync)
    with pytest.raises(OSError, match="disk full"):
        write_json(path, {"a": 2})
    assert read_json(path) == {"a": 1}
    assert [p.name for p in tmp_path.iterdir()] == ["result.json"]  # no temp file left behind


def test_csv_round_trip(tmp_path):
    frame = pd.DataFrame({"epoch": [1, 2], "valid_ppl": [120.5, 99.25]})
    write_csv(tmp_path / "a.csv", frame)
    pd.testing.assert_frame_equal(pd.read_csv(tmp_path / "a.csv"), frame)
    atomic_write(tmp_path / "b.txt", b"\x00bytes")
    assert (tmp_path / "b.txt").read_bytes() == b"\x00bytes"


def test_run_record_says_what_produced_a_result(tmp_path):
    with run_record(tmp_path, {"budget": "smoke"}) as rec:
        assert json.loads((tmp_path / "run.json").read_text())["status"] == "running"
        rec["note"] = "x"
    done = read_json(tmp_path / "run.json")
    assert done["status"] == "done" and done["params"] == {"budget": "smoke"} and done["note"] == "x"
    assert done["versions"]["torch"] and done["wall_seconds"] >= 0
    with pytest.raises(ZeroDivisionError):
        with run_record(tmp_path, {}):
            1 / 0
    assert read_json(tmp_path / "run.json")["status"].startswith("failed: ZeroDivisionError")
    # Each run keeps the earlier ones' timings: a test run or re-run never hides a real one's.
    earlier = read_json(tmp_path / "run.json")["earlier_runs"]
    assert [r["status"] for r in earlier] == ["done"] and earlier[0]["params"] == {"budget": "smoke"}
    assert earlier[0]["wall_seconds"] == done["wall_seconds"]


def test_journal_resumes_its_own_experiment_and_drops_a_cut_line(tmp_path):
    path = tmp_path / "journal.jsonl"
    journal = Journal(path, {"experiment": (1, 2)})
    assert journal.done == {}
    assert journal.add(0, {"ppl": float("nan"), "name": "a"})["name"] == "a"
    journal.add(1, [1.5, None])
    with open(path, "a") as f:  # a kill while the third item was written
        f.write('{"id": 2, "value": [3')
    again = Journal(path, {"experiment": [1, 2]})  # the same key, read back from JSON
    assert sorted(again.done) == [0, 1] and again.done[1] == [1.5, None] and again.done[0]["ppl"] != 0
    again.add(2, 3.0)  # appended after the dropped line, not onto it
    assert Journal(path, {"experiment": [1, 2]}).done == {0: again.done[0], 1: [1.5, None], 2: 3.0}
    # Another experiment starts afresh; close removes the file.
    other = Journal(path, {"experiment": [1, 3]})
    assert other.done == {} and path.read_text().count("\n") == 1
    other.close()
    assert not path.exists()
