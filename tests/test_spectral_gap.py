"""The spectral-gap study (lshkit.studies.spectral_gap, arXiv 2403.11100): where accuracy falls
against where the gap turns negative, the paper's claim judged from it, and the study's summaries."""
import math

import pandas as pd
import pytest

from lshkit.stats import VERDICTS
from lshkit.studies.spectral_gap import beside_paper, claim_lines, gap_vs_accuracy, judge, summaries


def test_a_bad_task_stops_the_spectral_gap_notebook_before_any_compute(tmp_path):
    from pathlib import Path

    import papermill
    from papermill.exceptions import PapermillExecutionError

    notebook = Path(__file__).resolve().parent.parent / "notebooks" / "spectral_gap.ipynb"
    with pytest.raises(PapermillExecutionError) as info:
        papermill.execute_notebook(str(notebook), str(tmp_path / "out.ipynb"), progress_bar=False, kernel_name="python3",
                                   parameters={"tasks": ["digits", "mnist"], "results_dir": str(tmp_path)})
    assert "tasks[1]='mnist' is not valid; choose one of ['digits', 'reber']" in str(info.value)
    assert not any(tmp_path.glob("spectral_gap/*")), "nothing ran before the check"


def _curve(accuracy, gap, task="t", method="magnitude"):
    levels = [0.0, 0.2, 0.4, 0.6, 0.8]
    return pd.DataFrame({"task": task, "variant": "lstm", "method": method, "finetuned": False, "sparsity": levels,
                         "seed": 0, "accuracy": accuracy, "dense_accuracy": 0.9, "gap_ih": gap,
                         "gap_hh": [g + 1 for g in gap]})


def test_gap_vs_accuracy_relations():
    frames = [_curve([0.9, 0.9, 0.9, 0.5, 0.1], [3, 2, 1, -1, -2], task="at"),        # drop where the gap turns negative
              _curve([0.9, 0.6, 0.5, 0.4, 0.1], [3, 2, 1, -1, -2], task="before"),    # drop while the gap is positive
              _curve([0.9, 0.9, 0.9, 0.9, 0.1], [3, -1, -1, -1, -2], task="after"),   # drop two levels after
              _curve([0.9, 0.9, 0.9, 0.9, 0.9], [3, 2, 1, -1, -2], task="none"),      # never drops
              _curve([0.9, 0.9, 0.9, 0.9, 0.9], [3, 2, 1, 1, 1], task="positive")]
    conditions, by_sign = gap_vs_accuracy(pd.concat(frames), tolerance=0.02)
    relation = dict(zip(conditions.task, conditions.relation))
    assert relation == {"at": "at the sign change", "before": "before", "after": "after", "none": "no drop",
                        "positive": "gap stays positive"}
    at = conditions.set_index("task").loc["at"]
    assert (at.s_negative, at.s_drop) == (0.6, 0.6)
    # pruned networks only (sparsity > 0): 20 in all, 10 with a negative smaller gap, of which 5 kept
    # accuracy (three in "after", two in "none")
    sign = by_sign.set_index("gap_sign")
    assert sign.loc["gap < 0", "networks"] == 10 and sign.loc["gap < 0", "preserved"] == pytest.approx(0.5)
    assert sign.loc["gap >= 0", "networks"] == 10 and sign.loc["gap >= 0", "preserved"] == pytest.approx(0.8)


def _conditions(*relations, method="magnitude"):
    return pd.DataFrame({"task": "reber", "variant": "lstm", "method": method, "finetuned": False,
                         "relation": list(relations), "s_negative": 0.6, "s_drop": 0.6, "dense_accuracy": 0.9})


def test_the_claim_holds_only_where_every_fall_comes_at_the_sign_change():
    assert judge(_conditions("at the sign change", "at the sign change", "no drop")) == VERDICTS[0]
    assert judge(_conditions("before", "after", "at the sign change")) == VERDICTS[1]   # most falls elsewhere
    assert judge(_conditions("before", "at the sign change", "at the sign change")) == VERDICTS[2]
    assert judge(_conditions("no drop", "gap stays positive")) == VERDICTS[2]          # nothing falls


def test_claim_lines_read_as_sentences():
    conditions = pd.concat([_conditions("at the sign change", "after"),
                            _conditions("before", "before", method="random")], ignore_index=True)
    lines = claim_lines(conditions)
    assert lines[0].startswith("The paper's claim that accuracy is preserved while the layers' spectral gaps stay "
                               "positive and drops where a gap turns negative does not hold at this scale: of 4 "
                               "conditions, accuracy fell before any gap turned negative in 2, at the sign change "
                               "in 1, later in 1;")
    assert "- magnitude pruning, no fine-tuning: the claim is inconclusive (1 of 2 conditions drop" in lines[1]
    assert "- random pruning, no fine-tuning: the claim does not hold" in lines[2]
    assert lines[3] == ("- magnitude pruning: the smaller layer gap first turns negative at sparsity "
                        "Reber grammar LSTM 0.6, Reber grammar LSTM 0.6 (nan: never)")


def test_beside_paper_counts_the_networks_and_conditions():
    curves = pd.concat([_curve([0.9, 0.9, 0.9, 0.5, 0.1], [3, 2, 1, -1, -2], task="at"),
                        _curve([0.9, 0.6, 0.5, 0.4, 0.1], [3, 2, 1, -1, -2], task="before")])
    table = beside_paper(*gap_vs_accuracy(curves)).set_index("quantity").ours
    assert list(table) == ["50%", "0%", "1 of 2", "1 of 2"]


def test_one_seed_has_no_interval():
    curves = pd.concat([_curve([0.9, 0.9, 0.9, 0.5, 0.1], [3, 2, 1, -1, -2]).assign(seed=s) for s in (0, 1)])
    curves = pd.concat([curves.assign(finetuned=False), curves.assign(finetuned=True, accuracy=0.9)])
    accuracy, gaps = summaries(curves)
    assert len(accuracy) == 2 * 5 and len(gaps) == 2 * 5 and set(gaps.layer) == {"gap_ih", "gap_hh"}
    two = accuracy[(accuracy.sparsity == 0.6) & ~accuracy.finetuned].iloc[0]
    assert (two.n, two["mean"], two.ci95, two.low, two.high) == (2, 0.5, 0.0, 0.5, 0.5)
    accuracy, _ = summaries(curves[curves.seed == 0])
    one = accuracy.iloc[0]
    assert one.n == 1 and one["mean"] == 0.9 and all(math.isnan(one[c]) for c in ("ci95", "low", "high"))
