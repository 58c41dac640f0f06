"""Every notebook is a thin, parameterised papermill notebook; nbval runs them all
at their smoke default (``pytest --nbval-lax``), this file checks their shape and their
refusal of bad parameters."""
import os
from pathlib import Path

import nbformat
import papermill
import pytest
from papermill.exceptions import PapermillExecutionError

ROOT = Path(__file__).resolve().parent.parent
NOTEBOOKS = sorted((ROOT / "notebooks").glob("*.ipynb"))
EXPECTED = {"00_walkthrough", "fig1", "table1", "table2", "table3", "table4", "fig3", "tableB2",
            "legcnet", "reber_sparsity", "spectral_gap", "predictive_power", "predictor_shootout", "bench"}
COMMON = ["budget", "scale", "seed", "device", "storage", "results_dir", "progress"]
#: Notebooks that only read the committed atlas: nothing trains, so no scale, device or storage.
READ_ONLY = dict.fromkeys(["predictive_power", "predictor_shootout", "bench"],
                         ["budget", "seed", "results_dir", "progress", "source"])


def test_every_paper_experiment_has_its_notebook():
    assert {nb.stem for nb in NOTEBOOKS} == EXPECTED


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_notebook_is_parameterised_and_saved_clean(path):
    nb = nbformat.read(path, as_version=4)
    assert nb.metadata.kernelspec.name == "python3"
    tagged = [i for i, c in enumerate(nb.cells) if "parameters" in c.metadata.get("tags", [])]
    first_code = next(i for i, c in enumerate(nb.cells) if c.cell_type == "code")
    assert tagged == [first_code], "the first code cell, and only it, is tagged 'parameters'"
    # papermill must parse every parameter line (it skips lines it cannot read, e.g. '=' in a comment)
    params = papermill.inspect_notebook(str(path))
    for name in READ_ONLY.get(path.stem, COMMON):
        assert name in params and params[name]["help"], f"{name} missing or undocumented"
    # The stored default runs in seconds to minutes: on the atlas or trained at its scale (budget
    # low), or at smoke.
    real = '"atlas"' in (params.get("source", {}).get("default"), params.get("scale", {}).get("default"))
    assert params["budget"]["default"] == ('"low"' if real else '"smoke"')
    validate_cell = nb.cells[first_code + 1]
    assert validate_cell.cell_type == "code" and "validate(" in validate_cell.source
    # Saved without outputs, except the results CI compares (cells marked NBVAL_CHECK_OUTPUT, with
    # their execution counts; `python -m lshkit notebooks --store-checked` writes them).
    for c in nb.cells:
        if c.cell_type == "code":
            checked = c.source.lstrip().startswith("# NBVAL_CHECK_OUTPUT")
            kept = checked and c.metadata.get("keep_output")
            assert kept or c.get("execution_count") is None, "saved without execution counts"
            assert kept or not c.get("outputs"), "saved without outputs"
            # nbval compares the outputs of a cell that ran, which it tells by its execution count.
            assert not kept or c.get("execution_count") is not None
    text = path.read_text(encoding="utf-8")  # byte for byte what JupyterLab (nbformat) writes
    assert text == nbformat.writes(nb) + ("" if nbformat.writes(nb).endswith("\n") else "\n"), \
        "not in the form JupyterLab saves: rewrite it with nbformat.write or nbstripout --keep-id"


def test_a_bad_budget_stops_the_notebook_before_any_compute(tmp_path):
    with pytest.raises(PapermillExecutionError) as info:
        papermill.execute_notebook(str(NOTEBOOKS[0].parent / "table1.ipynb"), str(tmp_path / "out.ipynb"),
                                   parameters={"budget": "nonsense", "results_dir": str(tmp_path)},
                                   progress_bar=False, kernel_name="python3")
    message = str(info.value)
    assert "budget='nonsense' is not valid" in message
    assert "['smoke', 'low', 'moderate', 'high']" in message
    assert not any(tmp_path.glob("table1/*")), "nothing ran before the check"


def test_notebooks_under_test_write_outside_the_users_folders():
    """nbval runs every notebook into the temporary folders conftest names, so the tests always
    compute and never overwrite what a user's own runs wrote into results/ and figures/."""
    from lshkit.report import validate

    run_dir = validate("fig1").run_dir.resolve()
    assert not run_dir.is_relative_to((ROOT / "results").resolve())
    assert run_dir.is_relative_to(Path(os.environ["LSHKIT_RESULTS_DIR"]).resolve())


def _train_smoke(name, tmp_path, **parameters):
    out = tmp_path / f"{name}.ipynb"
    papermill.execute_notebook(str(ROOT / "notebooks" / f"{name}.ipynb"), str(out),
                               parameters={"source": "train", "budget": "smoke",
                                           "results_dir": str(tmp_path / "results"), **parameters},
                               progress_bar=False, kernel_name="python3")
    return out.read_text(), tmp_path / "results" / name / "smoke-smoke-seed0"


def test_a_searching_notebook_still_trains_end_to_end(tmp_path):
    """The searching notebooks replay on the atlas by default; this keeps their training path
    (the sweep, the dense reference, the claim cells on trained searches) covered end to end."""
    text, run = _train_smoke("table2", tmp_path, samplers=["tpe"])
    # a header, TPE by loss once and by LS once per reading of the reference
    assert len((run / "searches.csv").read_text().splitlines()) == 1 + 3
    # One search per ranking is one pair: no interval, so the claim can be neither confirmed nor refuted.
    assert ("the paper's claim that LS-based ranking reaches a lower perplexity than loss-based ranking for "
            "every optimiser is inconclusive in ours") in text


def test_table1_still_trains_every_model(tmp_path):
    """Table 1 reads the atlas by default, which holds the stacked LSTM only; trained, it runs all three."""
    text, run = _train_smoke("table1", tmp_path)
    table = (run / "table1.csv").read_text().splitlines()
    # per model: the dense model, the Selfish-RNN default and one LSH pick per reading of the reference
    assert len(table) == 1 + 4 * 3 and "AWD-LSTM-MoS: smoke" in text
