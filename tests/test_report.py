import io
import math
import struct
import sys
from dataclasses import asdict
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import pandas as pd  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402

from lshkit import paper  # noqa: E402
from lshkit.checks import check_positive_int, check_ratio, list_of, optional  # noqa: E402
from lshkit.io import run_record  # noqa: E402
from lshkit.report import (PALETTE, SOURCES, check_atlas_dir, comparison, each_of, integer_axis, load_results,  # noqa: E402
                           notebook_parameters, quiet, save_figure, save_results, style, validate, verdict)

ROOT = Path(__file__).resolve().parent.parent  # relative result paths resolve here


SAMPLERS = ("grid", "random", "tpe", "atpe", "bohb", "hyperband")
EXTRAS = {"repeats": check_positive_int, "samplers": each_of(SAMPLERS), "model": ("lstm", "rhn")}
REPLAY_EXTRAS = {**EXTRAS, "ratios": optional(list_of(check_ratio, what="pruning ratios in [0, 1)", distinct=True)),
                 "source": SOURCES, "atlas_dir": check_atlas_dir}


def _fake_cuda(monkeypatch, n):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: n > 0)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: n)


@pytest.mark.parametrize("name, value, valid", [
    ("budget", "huge", "['smoke', 'low', 'moderate', 'high']"),
    ("scale", "gpu", "['auto', 'atlas', 'cpu', 'paper']"),
    ("seed", -1, "non-negative integer"),
    ("seed", 1.5, "non-negative integer"),
    ("device", "tpu", "['auto', 'cpu']"),
    ("device", "cuda", "['auto', 'cpu']"),
    ("progress", "yes", "[None, True, False]"),
    ("storage", "redis://x", "sqlite:///path.db"),
    ("storage", 5, "URL string"),
])
def test_each_bad_common_parameter_names_value_and_valid_ones(name, value, valid):
    with pytest.raises(ValueError) as err:
        validate("table2", **{name: value})
    message = str(err.value)
    assert name in message and repr(value) in message and valid in message


@pytest.mark.parametrize("name, value, shown, valid", [
    ("repeats", 0, 0, "positive integer"),
    ("samplers", "tpe", "tpe", "non-empty list"),
    ("samplers", ["tpe", "cmaes"], "cmaes", str(list(SAMPLERS))),
    ("model", "gru", "gru", "['lstm', 'rhn']"),
    ("ratios", [], [], "non-empty list of distinct pruning ratios in [0, 1)"),
    ("ratios", [0.5, 0.5], [0.5, 0.5], "non-empty list of distinct pruning ratios in [0, 1)"),
    ("ratios", [0.5, 1.0], 1.0, "[0, 1)"),
    ("source", "disk", "disk", "['atlas', 'train']"),
    ("atlas_dir", "no/such/atlas", "no/such/atlas", "the folder of an atlas"),
])
def test_each_bad_extra_parameter_names_value_and_valid_ones(name, value, shown, valid):
    params = {"repeats": 3, "samplers": ["tpe"], "model": "lstm", "ratios": None, "source": "atlas",
              "atlas_dir": None, name: value}
    with pytest.raises(ValueError) as err:
        validate("table2", extras=REPLAY_EXTRAS, **params)
    assert repr(shown) in str(err.value) and valid in str(err.value)


def test_unknown_and_missing_parameters():
    with pytest.raises(ValueError, match=r"\['budgte'\].*known parameters are \['budget', 'scale', 'seed', "
                                         r"'device', 'storage', 'results_dir', 'progress', 'repeats'\]"):
        validate("table2", extras={"repeats": check_positive_int}, budgte="high", repeats=3)
    with pytest.raises(ValueError, match=r"\['repeats'\].*not given"):
        validate("table2", extras={"repeats": check_positive_int})


def test_auto_resolution_without_cuda_and_run_dir(monkeypatch):
    _fake_cuda(monkeypatch, 0)
    p = validate("table2", budget="low", seed=3, results_dir="out", extras=EXTRAS,
                 repeats=2, samplers=["tpe", "grid"], model="rhn")
    assert (p.device, p.scale, p.effective_scale, p.paper_scale) == ("cpu", "auto", "cpu", False)
    assert p.run_dir == ROOT / "out/table2/low-cpu-seed3"
    assert (p.repeats, p.samplers, p.model) == (2, ["tpe", "grid"], "rhn")
    assert p.storage_url == f"sqlite:///{Path('out').resolve() / 'study.db'}"
    assert "cpu scale" in p.scale_reason
    assert asdict(p)["extras"] == {"repeats": 2, "samplers": ["tpe", "grid"], "model": "rhn"}
    with pytest.raises(AttributeError, match="no parameter 'epochs'"):
        p.epochs


def test_atlas_scale_trains_small_models_but_never_into_the_replays_folder(monkeypatch):
    monkeypatch.delenv("LSHKIT_RESULTS_DIR", raising=False)
    p = validate("table3", budget="low", scale="atlas")
    assert p.effective_scale == "atlas" and p.run_dir == ROOT / "results/table3/low-atlas-seed0"
    assert "2x128 LSTMs" in p.scale_reason
    params = {"repeats": 3, "samplers": ["tpe"], "model": "lstm", "ratios": None, "atlas_dir": None}
    with pytest.raises(ValueError, match=r"scale='atlas' with source='train' is not valid.*\['auto', 'cpu', 'paper'\]"):
        validate("table2", budget="low", scale="atlas", source="train", extras=REPLAY_EXTRAS, **params)


def test_smoke_budget_forces_smoke_scale_and_records_the_request(monkeypatch):
    monkeypatch.delenv("LSHKIT_RESULTS_DIR", raising=False)  # the default folder, not the tests' scratch
    p = validate("fig1", budget="smoke", scale="paper", seed=0)
    assert (p.scale, p.effective_scale) == ("paper", "smoke")
    assert p.run_dir == ROOT / "results/fig1/smoke-smoke-seed0"
    assert "smoke budget" in p.scale_reason


def test_cuda_resolution_with_a_simulated_gpu(monkeypatch):
    _fake_cuda(monkeypatch, 2)
    p = validate("table1", budget="high")
    assert (p.device, p.effective_scale, p.scale_reason) == ("cuda", "paper", "")
    assert validate("table1", budget="high", device="cuda:1").device == "cuda:1"
    assert validate("table1", budget="high", device="cpu").effective_scale == "cpu"
    assert validate("table1", budget="high", device="cpu", scale="paper").effective_scale == "paper"
    with pytest.raises(ValueError, match=r"device='cuda:2' is not valid; choose one of "
                                         r"\['auto', 'cpu', 'cuda', 'cuda:0', 'cuda:1'\]"):
        validate("table1", device="cuda:2")


def test_notebook_parameters_keep_only_plain_data():
    namespace = {"budget": "low", "seed": 1, "storage": None, "samplers": ["tpe"], "In": ["", "x"],
                 "Out": {}, "_i1": "budget = 'low'", "get_ipython": print, "pd": pd, "exit": object()}
    assert notebook_parameters(namespace) == {"budget": "low", "seed": 1, "storage": None, "samplers": ["tpe"]}


class _Terminal(io.StringIO):
    def isatty(self):
        return True


def test_quiet_rule(monkeypatch):
    for var in ("CI", "PYTEST_VERSION", "PYTEST_CURRENT_TEST", "JPY_SESSION_NAME"):
        monkeypatch.delenv(var, raising=False)
    assert not quiet()
    # Headless (papermill, a pipe): no bars, which would be saved frozen; in a terminal: bars.
    monkeypatch.setattr(sys, "stderr", io.StringIO())
    assert validate("fig1").progress is False
    monkeypatch.setattr(sys, "stderr", _Terminal())
    assert validate("fig1").progress is True
    monkeypatch.setenv("CI", "false")
    assert not quiet()
    monkeypatch.setenv("CI", "true")
    assert quiet() and validate("fig1").progress is False
    assert validate("fig1", progress=True).progress is True
    monkeypatch.delenv("CI")
    monkeypatch.setenv("PYTEST_VERSION", "9.0")  # what an nbval kernel inherits
    assert quiet()


def _table2_rows():
    ours = {("tpe", "ls"): 70.1, ("grid", "loss"): 73.2, ("grid", "ls"): 72.3}
    return [(f"{s}-{r}", v, *paper.TABLE2[(s, r)]["high"]) for (s, r), v in ours.items()]


def test_comparison_frame_values():
    table = comparison(_table2_rows(), comparable=True, tolerance=1.0)
    assert list(table.columns) == ["label", "ours", "paper", "paper_ci", "difference", "tolerance", "agrees"]
    assert table["difference"].round(6).tolist() == [0.2, 0.7, 1.5]
    # TPE's CI (2.6) is used; GS's 0.0 half-width falls back to the tolerance.
    assert table["tolerance"].tolist() == [2.6, 1.0, 1.0]
    assert table["agrees"].tolist() == [True, True, False]
    edge = comparison([("a", 73.5, 72.5), ("b", None, 70.0, 0.5)], comparable=True)
    assert edge["agrees"].tolist() == [True, False] and math.isnan(edge.loc[1, "difference"])
    assert "agrees" not in comparison(_table2_rows(), comparable=False, reason="x").columns


def test_verdict_sentences():
    table = comparison(_table2_rows(), comparable=True)
    assert verdict(table, claim="LSH beats loss-based ranking", holds=True) == (
        "2 of 3 numbers agree with the paper's (within its 95% CI half-width, or ±1 where it gives "
        "none); grid-ls does not; the paper's claim that LSH beats loss-based ranking holds in ours.")
    all_agree = comparison([("dense", 78.0, 78.6), ("lsh", 70.5, 69.9)], comparable=True, tolerance=0.7)
    assert verdict(all_agree, claim="LSH beats dense", holds=False) == (
        "All 2 numbers agree with the paper's (within its 95% CI half-width, or ±0.7 where it gives "
        "none); the paper's claim that LSH beats dense does not hold in ours.")
    p = validate("table2", budget="smoke")
    apart = comparison(_table2_rows(), comparable=p.paper_scale, reason=p.scale_reason)
    assert verdict(apart) == (
        "These numbers cannot be compared with the paper's because they come from the smoke budget "
        "(a generated corpus and tiny models), while the paper's come from PTB or WikiText-2 at "
        "Table A1 scale; the table shows them side by side only for orientation.")
    assert verdict(apart, claim="LSH beats loss-based ranking", holds=False).endswith(
        "only for orientation; at this scale the paper's claim that LSH beats loss-based ranking "
        "does not hold in ours.")
    with pytest.raises(ValueError, match="needs a reason"):
        comparison(_table2_rows(), comparable=False)
    with pytest.raises(ValueError, match="both claim"):
        verdict(table, claim="LSH wins")


def test_save_and_load_results_round_trip(tmp_path):
    p = validate("table2", results_dir=str(tmp_path), budget="smoke")
    frame = pd.DataFrame({"sampler": ["tpe", "grid"], "test_ppl": [70.25, 72.5], "selected": [True, False]})
    with run_record(p.run_dir, asdict(p)):
        paths = save_results(p.run_dir, picks=frame, summary={"best": "tpe", "ppl": 70.25})
    assert [x.name for x in paths] == ["picks.csv", "summary.json"]
    loaded = load_results(p.run_dir)
    assert sorted(loaded) == ["picks", "run", "summary"]
    pd.testing.assert_frame_equal(loaded["picks"], frame)
    assert loaded["summary"] == {"best": "tpe", "ppl": 70.25}
    assert loaded["run"]["params"]["budget"] == "smoke" and loaded["run"]["status"] == "done"
    assert sorted(x.name for x in p.run_dir.iterdir()) == ["picks.csv", "run.json", "summary.json"]
    with pytest.raises(ValueError, match="list cannot be saved"):
        save_results(p.run_dir, bad=[1, 2])
    with pytest.raises(ValueError, match="reserved"):
        save_results(p.run_dir, run={})
    with pytest.raises(FileNotFoundError, match="no results"):
        load_results(tmp_path / "missing")


def test_save_figure_writes_a_tight_150_dpi_png(tmp_path):
    style()
    fig, ax = plt.subplots(figsize=(2, 1))
    ax.plot([0, 1], [1, 0])
    ax.set_xlabel("a label below the axes")
    fig.text(1.02, 0.5, "beyond the right edge")  # cut off by a plain savefig, kept by a tight box
    path = save_figure(ax, "fig1_a", figures_dir=tmp_path / "figures")
    data = path.read_bytes()
    assert path == tmp_path / "figures" / "fig1_a.png" and data[:8] == b"\x89PNG\r\n\x1a\n"
    width, height = struct.unpack(">II", data[16:24])
    assert width > 300 and height > 150 * 0.8  # 2 x 1 inches at 150 dpi, widened to hold the text
    assert save_figure(fig, "fig1_a", figures_dir=tmp_path / "figures").read_bytes() == data
    assert [x.name for x in path.parent.iterdir()] == ["fig1_a.png"]
    plt.close(fig)
    with pytest.raises(ValueError, match="name='a/b'"):
        save_figure(fig, "a/b", figures_dir=tmp_path)


def test_one_colour_per_concept_and_integer_epoch_ticks():
    assert {"dense", "LS ranking", "loss ranking", "authors' pick", "Selfish-RNN default"} <= set(PALETTE)
    assert PALETTE["LS ranking"] != PALETTE["loss ranking"]
    assert len({PALETTE[k] for k in ("dense", "authors' pick", "Selfish-RNN default")}) == 3
    fig, ax = plt.subplots()
    ax.plot([1, 2, 3], [0.5, 0.2, 0.1])
    integer_axis(ax)
    assert all(float(t).is_integer() for t in ax.get_xticks())
    plt.close(fig)
    with pytest.raises(ValueError, match="which='z'"):
        integer_axis(ax, "z")


def test_relative_paths_resolve_against_the_checkout_wherever_the_kernel_runs(tmp_path, monkeypatch):
    monkeypatch.delenv("LSHKIT_RESULTS_DIR", raising=False)
    monkeypatch.chdir(tmp_path)  # nbval runs in notebooks/, papermill in the caller's folder
    assert validate("t", results_dir="results").run_dir.parent.parent == ROOT / "results"
    assert validate("t", results_dir=str(tmp_path / "abs")).results_dir == str(tmp_path / "abs")
