"""Fig. 3 as its notebook runs it (lshkit.experiments.fig3.run, left, right, claims): the choice between
the atlas and training, the target, and the sentences that judge the paper's claims."""
import json
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest

from lshkit.experiments import fig3 as F3
from lshkit.report import NotebookParams

LSH, LOSS, SELFISH = "LSH (TPE, LS ranking)", "TPE (loss ranking)", "Selfish-RNN default"
CLAIM_RIGHT_HOLDS = f"the paper's claim that {F3.CLAIM_RIGHT} holds in ours."
CLAIM_RIGHT_FAILS = f"the paper's claim that {F3.CLAIM_RIGHT} does not hold in ours."


def params(tmp_path, **extras) -> NotebookParams:
    """The notebook's parameters at their defaults (on the atlas), results under ``tmp_path``."""
    extras = {"source": "atlas", "atlas_dir": None, "sparsities": None, "repeats": None, "target_ppl": None,
              "target_factor": None, "references": ["same_epoch", "final"], **extras}
    return NotebookParams("fig3", "low", "auto", "atlas", 0, "cpu", None, str(tmp_path), False,
                          tmp_path / "fig3" / "low-atlas-seed0", extras)


def robustness_frame() -> pd.DataFrame:
    """Fig. 3 left on an atlas, four seeds: LSH under the same-epoch reading 5 below the loss ranking
    in every pair, under the final reading 40 above; the dense model below all of them."""
    luck = [300.0, 320.0, 280.0, 310.0]
    rows = [{"method": LSH, "reference": r, "seed": s, "sparsity": 0.67, "test_ppl": v + shift}
            for r, shift in (("same_epoch", -5.0), ("final", 40.0)) for s, v in enumerate(luck)]
    rows += [{"method": LOSS, "reference": None, "seed": s, "sparsity": 0.67, "test_ppl": v} for s, v in enumerate(luck)]
    rows += [{"method": SELFISH, "reference": None, "seed": 0, "sparsity": 0.67, "test_ppl": 360.0},
             {"method": "dense", "reference": None, "seed": 0, "sparsity": 0.0, "test_ppl": 170.0}]
    return pd.DataFrame(rows)


def test_the_source_chooses_atlas_or_training_and_a_bad_one_stops_everything(tmp_path):
    p = params(tmp_path, source="nonsense")
    message = r"source='nonsense' is not valid; choose one of \['atlas', 'train'\]"
    for call in (lambda: F3.run(p), lambda: F3.left(p, repeats=1), lambda: F3.right(p, repeats=1, factor=1.1)):
        with pytest.raises(ValueError, match=message):
            call()
    with pytest.raises(ValueError, match=r"repeats=0 is not valid"):
        F3.run(params(tmp_path, repeats=0))
    with pytest.raises(ValueError, match="same_epoch"):
        F3.run(params(tmp_path, references=["today"]))
    assert not any(tmp_path.iterdir()), "nothing ran, nothing was recorded"


def test_the_target_is_set_from_the_atlas_best_candidate_or_the_dense_model():
    assert F3.fig3_target(250.0, "atlas") == pytest.approx(250.0 * F3.ATLAS_TARGET_FACTOR)
    assert F3.fig3_target(250.0, "cpu") == pytest.approx(250.0 * F3.TARGET_FACTOR)
    assert F3.fig3_target(250.0, "atlas", factor=1.5) == pytest.approx(375.0)
    assert F3.fig3_target(250.0, "paper") == 72.0
    with pytest.raises(ValueError, match=r"scale='auto' is not valid; choose one of \['smoke', 'cpu', 'paper', 'atlas'\]"):
        F3.fig3_target(250.0, "auto")
    with pytest.raises(ValueError, match=r"factor=0.9 is not valid"):
        F3.fig3_target(250.0, "atlas", factor=0.9)


def test_left_verdicts_say_per_reading_whether_the_claim_holds():
    claim = F3.robustness_claim(robustness_frame())
    same, final = F3.left_verdicts(claim, " at the atlas's one ratio (0.67)")
    assert same.startswith("Fig. 3 left (published as a figure only), same-epoch reference: the paper's claim that "
                           f"{F3.CLAIM_LEFT} does not hold in ours at the atlas's one ratio (0.67)")
    assert same.endswith("(below both baselines' means: yes; below the dense model's: no).")
    assert final.endswith("(below both baselines' means: no; below the dense model's: no).")
    # Trained: one reading only, the frame has no reference column; below everything at every ratio holds.
    trained = pd.DataFrame({"method": [LSH, LOSS, SELFISH] * 2 + ["dense"], "sparsity": [0.5] * 3 + [0.8] * 3 + [0.0],
                            "test_ppl": [70.0, 71.0, 72.0, 72.5, 74.0, 76.0, 73.0]})
    (sentence,) = F3.left_verdicts(F3.robustness_claim(trained))
    assert sentence == (f"Fig. 3 left (published as a figure only): the paper's claim that {F3.CLAIM_LEFT} holds in "
                        "ours (below both baselines' means: yes; below the dense model's: yes).")


def replayed_times() -> pd.DataFrame:
    """Fig. 3 right replayed ten times under each reading: full training always 20x LSH's time under the
    same-epoch reading and 2x under the final one."""
    rows = []
    for reference, lsh in (("same_epoch", 5.0), ("final", 50.0)):
        for repeat in range(10):
            scale = 1 + 0.01 * repeat
            rows += [{"repeat": repeat, "reference": reference, "method": method, "seconds": seconds * scale}
                     for method, seconds in (("LSH (ls ranking)", lsh), ("LSH (loss ranking)", 60.0),
                                             ("full training", 100.0))]
    return pd.DataFrame(rows)


def test_claims_on_the_atlas_judge_the_speedup_per_reading_by_its_interval(tmp_path):
    p = SimpleNamespace(run_dir=tmp_path, paper_scale=False, scale_reason="they come from a test")
    left = {"frame": robustness_frame(), "scope": ""}
    right = {"source": "atlas", "times": replayed_times(), "target_ppl": 264.5, "reference_seconds": 7200.0}
    out = F3.claims(p, left, right)
    report = out["report"]
    assert (f"same-epoch reference: speed-up of LSH over full training 20.00x [20.00, 20.00], LSH reached the target "
            f"in 100% of the repeats: {CLAIM_RIGHT_HOLDS}") in report
    assert "final reference: speed-up of LSH over full training 2.00x [2.00, 2.00]" in report
    assert report.count(CLAIM_RIGHT_FAILS) == 1
    assert "the dense reference costs 2.00 CPU hours more, once." in report
    assert "These numbers cannot be compared with the paper's because they come from a test" in report
    table = out["comparison"].set_index("label")
    assert table.loc["speed-up (full training / LSH, same-epoch reference)", "ours"] == pytest.approx(20.0)
    assert table.loc["speed-up (full training / LSH, final reference)", "paper"] == 10.0
    assert table.loc["target validation perplexity", "ours"] == 264.5
    assert table.loc["full-training search: hours to the target (median)", "ours"] == pytest.approx(
        np.median(100.0 * (1 + 0.01 * np.arange(10))) / 3600)
    assert out["paired_left"].set_index("reference").verdict.to_dict() == {"same_epoch": "holds",
                                                                           "final": "does not hold"}
    assert {f.name for f in tmp_path.iterdir()} == {"comparison.csv", "claim_left.csv", "paired_left.csv",
                                                    "time_to_target.csv"}


def test_claims_trained_set_our_hours_beside_the_papers(tmp_path):
    p = SimpleNamespace(run_dir=tmp_path, paper_scale=True, scale_reason="")
    frame = robustness_frame()
    left = {"frame": frame[frame.reference != "final"].drop(columns="reference"), "scope": ""}
    result = {"target_ppl": 72.0, "lsh_seconds": 15 * 3600.0, "full_training_seconds": 150 * 3600.0,
              "speedup": 10.0, "speedup_is_lower_bound": False, "speedup_with_reference": 8.0}
    out = F3.claims(p, left, {"source": "train", "result": result})
    assert "Speed-up at target 72.00: 10.00x; with the dense reference's training added to LSH's time: 8.00x." \
        in out["report"]
    assert f"All 4 numbers agree with the paper's (within its 95% CI half-width, or ±1 where it gives none); " \
           f"{CLAIM_RIGHT_HOLDS}" in out["report"]
    # LSH never got there: no speed-up, and the claim does not hold.
    never = {**result, "lsh_seconds": None, "speedup": None, "speedup_with_reference": None}
    report = F3.claims(p, left, {"source": "train", "result": never})["report"]
    assert "Speed-up at target 72.00: not measured (LSH did not reach the target)" in report
    assert CLAIM_RIGHT_FAILS in report and "2 of 4 numbers agree" in report


def test_run_on_the_committed_atlas_returns_what_the_notebook_shows(tmp_path):
    p = params(tmp_path, repeats=2)
    r = F3.run(p)
    assert r["source"] == "atlas"
    record = json.loads((p.run_dir / "run.json").read_text())
    assert record["status"] == "done" and record["params"]["repeats"] == 2
    assert record["params"]["target_factor"] == F3.ATLAS_TARGET_FACTOR
    left = r["left"]
    assert left["order"] == [LOSS, SELFISH, LSH + ", same-epoch reference", LSH + ", final reference"]
    assert "dense" not in set(left["pruned"].label) and left["figure"] == "fig3_left_pruning_ratio_atlas"
    assert left["report"].startswith("the atlas holds one pruning ratio (0.67)") and "replayed 2 times" in left["report"]
    right = r["right"]
    assert right["report"] == f"atlas best candidate: validation perplexity 259.36; target {right['target_ppl']:.2f}"
    assert right["target_ppl"] == pytest.approx(259.36 * F3.ATLAS_TARGET_FACTOR, abs=0.01)
    for label, steps in right["steps"].groupby("label"):
        assert label in F3.RIGHT_COLOURS
        assert (steps.time.iloc[0], steps.share.iloc[0]) == (0.0, 0.0)
        assert steps.time.is_monotonic_increasing and steps.share.is_monotonic_increasing and steps.share.max() <= 1
    saved = {f.name for f in p.run_dir.iterdir()}
    assert {"robustness.csv", "times.csv", "time_summary.json", "comparison.csv", "claim_left.csv",
            "paired_left.csv", "time_to_target.csv"} <= saved
