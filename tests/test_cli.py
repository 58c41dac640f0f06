"""`python -m lshkit`: every option documented, bad values refused before any compute."""
import json
import subprocess
import sys
from pathlib import Path

import pytest

from lshkit.__main__ import build_parser, main

ROOT = Path(__file__).resolve().parent.parent


def _options(parser):
    return [s for action in parser._actions for s in action.option_strings]


@pytest.mark.parametrize("command", ["search", "reference", "full-search"])
def test_help_documents_every_option(command, capsys):
    sub = build_parser().commands[command]
    with pytest.raises(SystemExit) as exit_:
        main([command, "--help"])
    assert exit_.value.code == 0
    text = capsys.readouterr().out
    for option in _options(sub):
        assert option in text
    for action in sub._actions:
        assert action.help, f"{action.option_strings} has no help"
        if action.choices:
            assert ",".join(map(str, action.choices)) in text.replace(" ", "")


def test_search_options_mirror_the_notebook_parameters():
    options = set(_options(build_parser().commands["search"]))
    assert options >= {"--model", "--scale", "--budget", "--sampler", "--ranking", "--embedding",
                       "--distance", "--epochs-per-round", "--sparsity", "--seed", "--storage", "--out",
                       "--workers", "--rounds", "--ls-samples", "--ls-steps", "--ls-convention",
                       "--device", "--quiet"}


def test_parsing_imports_nothing_heavy_and_every_atlas_name_is_an_atlas():
    # A bad value must be refused before torch, Optuna and pandas load (seconds on a laptop).
    code = ("import sys; from lshkit.__main__ import build_parser; build_parser(); "
            "print(sorted(m for m in ('torch', 'optuna', 'pandas', 'sklearn') if m in sys.modules))")
    proc = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert proc.stdout.strip() == "[]", proc.stdout + proc.stderr
    from lshkit.atlas import AtlasSpec
    from lshkit.vocab import ATLAS_PRESETS

    for name in ATLAS_PRESETS:
        assert build_parser().parse_args(["atlas", "status", "--scale", name]).scale == name
        assert AtlasSpec.preset(name).scale in ("atlas", "smoke", "cpu", "paper")
    with pytest.raises(SystemExit):
        build_parser().parse_args(["atlas", "status", "--scale", "huge"])


@pytest.mark.parametrize("command", ["search", "replay"])
def test_a_bad_reference_and_the_old_spelling_fail_before_any_compute(tmp_path, command):
    for args, said in [(["--reference", "dense"], "'same_epoch', 'final'"),
                       (["--embedding", "same_epoch"], "--embedding raw --reference same_epoch")]:
        proc = subprocess.run([sys.executable, "-m", "lshkit", command, *args, "--out", str(tmp_path / "out")],
                              cwd=ROOT, capture_output=True, text=True, timeout=120)
        assert proc.returncode == 2 and said in proc.stderr, proc.stderr
        assert not (tmp_path / "out").exists()


def test_bad_sampler_fails_at_once_naming_the_valid_ones(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "lshkit", "search", "--sampler", "nonsense",
                           "--out", str(tmp_path / "out")], cwd=ROOT, capture_output=True, text=True,
                          timeout=120)
    assert proc.returncode == 2
    for name in ("grid", "random", "tpe", "atpe", "bohb", "hyperband"):
        assert f"'{name}'" in proc.stderr
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("argv,message", [
    (["--budget", "smoke", "--scale", "cpu"], "runs at scale 'smoke'"),
    (["--budget", "smoke", "--epochs-per-round", "0"], "epochs_per_round=0"),
    (["--budget", "smoke", "--final-epochs", "2", "--epochs-per-round", "1"], "more than final_epochs=2"),
    (["--budget", "smoke", "--sparsity", "1.5"], "sparsity=1.5"),
    (["--budget", "smoke", "--workers", "2"], "journal"),
    (["--budget", "smoke", "--storage", "redis://x"], "valid forms"),
    (["--budget", "smoke", "--train-override", "hiden_size=8"], "unknown TrainConfig field"),
])
def test_bad_values_fail_before_compute(tmp_path, capsys, argv, message):
    with pytest.raises(SystemExit) as exit_:
        main(["search", *argv, "--out", str(tmp_path / "out")])
    assert exit_.value.code == 2
    assert message in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


TINY = ["--budget", "smoke", "--pool", "3", "--final-epochs", "2", "--ls-steps", "12", "--device", "cpu",
        "--train-override", "batch_size=64", "--train-override", "hidden_size=8",
        "--train-override", "emb_size=8"]


def test_reference_is_trained_once_then_read_from_its_cache(tmp_path, capsys):
    assert main(["reference", *TINY, "--reference-dir", str(tmp_path)]) == 0
    first = capsys.readouterr().out
    (cache,) = tmp_path.glob("lstm-smoke-smoke-seed0-*/reference.json")
    stamp = cache.stat().st_mtime_ns
    assert main(["reference", *TINY, "--reference-dir", str(tmp_path)]) == 0
    assert capsys.readouterr().out == first and "dense reference: valid ppl" in first
    assert cache.stat().st_mtime_ns == stamp


def test_full_search_command(tmp_path):
    assert main(["full-search", *TINY, "--target-ppl", "1e6", "--out", str(tmp_path), "--quiet"]) == 0
    summary = json.loads((tmp_path / "full_training.json").read_text())
    assert summary["reached"] and summary["candidates_trained"] == 1


def test_notebooks_command_runs_them_and_writes_an_index(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "lshkit", "notebooks", "--only", "table3", "--out", str(tmp_path)],
                          cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-2000:]
    index = (tmp_path / "index.md").read_text()
    assert "| [table3](table3.ipynb) | done |" in index and (tmp_path / "table3.ipynb").exists()
    bad = subprocess.run([sys.executable, "-m", "lshkit", "notebooks", "--only", "nope"], cwd=ROOT,
                         capture_output=True, text=True, timeout=120)
    assert bad.returncode == 2 and "'table2'" in bad.stderr


def test_help_notebook_lists_each_parameter_with_its_type(capsys):
    assert main(["notebooks", "--help-notebook", "table2"]) == 0  # types inferred from the defaults
    text = capsys.readouterr().out
    assert 'budget: str = "low"' in text and "seed: int = 0" in text and 'source: str = "atlas"' in text
    assert "repeats: None or a value = None" in text
    assert "rankings: list = [" in text and "storage: None or a value = None" in text
    assert main(["notebooks", "--help-notebook", "00_walkthrough"]) == 0  # the parameters cell's annotations
    assert "storage: Optional[str] = None" in capsys.readouterr().out
    with pytest.raises(SystemExit) as exit_:
        main(["notebooks", "--help-notebook", "nope"])
    assert exit_.value.code == 2 and "'table2'" in capsys.readouterr().err
