"""Sweeps of searches (Tables 2, 4, B2): grid expansion and folder names, one storage and one
dense reference for all, read-back instead of rerun, and Table 4's exhaustive search against the grid search's own final training."""
import json

import pandas as pd
import pytest
import torch

from lshkit import sweep as W
from conftest import tiny_search
from lshkit.search import SearchConfig

def tiny(**kw) -> SearchConfig:
    return tiny_search(pool=4, **kw)


# ------------------------------------------------------------------ grid and names


def test_expand_is_the_product_in_grid_order():
    combos = W.expand({"sampler": ["tpe", "grid"], "ranking": ["ls", "loss"]})
    assert combos == [{"sampler": "tpe", "ranking": "ls"}, {"sampler": "tpe", "ranking": "loss"},
                      {"sampler": "grid", "ranking": "ls"}, {"sampler": "grid", "ranking": "loss"}]
    assert W.expand({}) == [{}]


def test_search_names():
    assert W.search_name({"sampler": "tpe", "ranking": "ls"}, 2) == "sampler-tpe__ranking-ls__r2"
    name = W.search_name({"epochs_per_round": 3, "sparsity": 0.5}, 0)
    assert name == "epochs_per_round-3__sparsity-0.5__r0"
    assert W.search_name({}, 1) == "r1"
    a = W.search_name({"train_overrides": {"lr": 5.0}}, 0)
    b = W.search_name({"train_overrides": {"lr": 10.0}}, 0)
    assert a != b and a.startswith("train_overrides-") and "/" not in a


@pytest.mark.parametrize("grid, words", [
    ({"seed": [0, 1]}, "repeats"),
    ({"sampeler": ["tpe"]}, "valid fields"),
    ({"sampler": []}, "non-empty list"),
    ({"sampler": "tpe"}, "non-empty list"),
    ({"sparsity": [0.5, 0.5]}, "repeats a value"),
    (["sampler"], "must be a dict"),
])
def test_bad_grids_fail_naming_the_problem(grid, words):
    with pytest.raises(ValueError, match=words):
        W.expand(grid)


def test_bad_combination_fails_before_any_search(tmp_path, monkeypatch):
    calls = []
    monkeypatch.setattr(W, "run_search", lambda *a, **k: calls.append(a))
    # E = 3 needs 3 epochs per round, more than final_epochs = 2: the second combination is bad.
    with pytest.raises(ValueError, match="final_epochs"):
        W.run_sweep(tiny(), {"epochs_per_round": [1, 3]}, out=tmp_path, device="cpu")
    with pytest.raises(ValueError, match="repeats"):
        W.run_sweep(tiny(), {}, repeats=0, out=tmp_path, device="cpu")
    assert calls == [] and not (tmp_path / "sweep.csv").exists()


def test_smoke_sized_and_exhaustive():
    low = SearchConfig(budget="low", scale="cpu")
    assert W.smoke_sized(low) is low
    small = W.smoke_sized(SearchConfig(budget="smoke"), final_epochs=4)
    assert (small.pool, small.final_epochs) == (W.SMOKE_OVERRIDES["pool"], 4)
    assert small.train_overrides == W.SMOKE_OVERRIDES["train_overrides"]
    full = W.exhaustive(SearchConfig(budget="low", scale="cpu", sampler="grid", ranking="ls",
                                     epochs_per_round=2))
    resolved = full.resolved("cpu")  # valid as a whole: one round of final_epochs epochs
    assert (full.ranking, full.rounds, full.epochs_per_round) == ("loss", 1, resolved.final_epochs)
    assert resolved.pool_size() == 24  # the whole grid of Table 4


# ------------------------------------------------------------------ resumption (stand-in search)


def _fake_run_search(calls):
    """Writes a summary.json as run_search does, with test_ppl a function of the config."""
    def fake(config, out, *, storage, device, reference_dir, progress):
        calls.append(dict(out=out, storage=storage, reference_dir=reference_dir, seed=config.seed))
        cfg = config.resolved(device)
        ppl = 50.0 + config.seed + (1.0 if cfg.ranking == "loss" else 0.0)
        summary = {"config": cfg.to_dict(), "config_json": cfg.to_json(),
                   "selected": {"death": "SET", "death_rate": 0.8}, "valid_ppl": ppl + 2,
                   "test_ppl": ppl, "candidates": 4, "rounds": 1, "failed": 0, "reference": None,
                   "timings": {"selection_seconds": 3.0, "final_seconds": 1.0, "total_seconds": 4.0,
                               "ls_seconds": 0.5, "ls_share": 0.5 / 3.0}}
        out.mkdir(parents=True, exist_ok=True)
        (out / "summary.json").write_text(json.dumps(summary))
        return summary
    return fake


def test_sweep_rows_seeds_shared_storage_and_read_back(tmp_path, monkeypatch):
    calls = []
    monkeypatch.setattr(W, "run_search", _fake_run_search(calls))
    base = tiny(seed=10)
    grid = {"ranking": ["ls", "loss"], "sampler": ["tpe", "grid", "atpe"]}
    frame = W.run_sweep(base, grid, repeats=2, out=tmp_path, device="cpu")

    assert len(calls) == len(frame) == 2 * 3 * 2
    assert {c["storage"] for c in calls} == {f"sqlite:///{tmp_path.resolve() / 'study.db'}"}
    assert {c["reference_dir"] for c in calls} == {tmp_path / "reference"}
    assert [c["out"].name for c in calls] == list(frame["search"])
    assert frame["search"].iloc[1] == "ranking-ls__sampler-tpe__r1"
    assert list(frame.columns[:4]) == ["ranking", "sampler", "repeat", "seed"]
    assert list(frame["seed"]) == [10 + r for r in frame["repeat"]]
    assert list(frame["test_ppl"]) == [50.0 + s + (ranking == "loss")
                                       for s, ranking in zip(frame["seed"], frame["ranking"])]
    assert set(frame["selected_death"]) == {"SET"} and set(frame["budget"]) == {"smoke"}
    assert frame["ls_share"].iloc[0] == pytest.approx(1 / 6)
    assert (tmp_path / "sweep.csv").read_text() == frame.to_csv(index=False)

    # Second call: every search is read back from its summary.json, none runs.
    again = W.run_sweep(base, grid, repeats=2, out=tmp_path, device="cpu")
    assert len(calls) == 12
    pd.testing.assert_frame_equal(again, frame)

    # A changed base no longer matches the stored summaries: every search runs again.
    W.run_sweep(tiny(seed=10, ls_steps=25), {"ranking": ["ls"]}, out=tmp_path, device="cpu")
    assert len(calls) == 13


def test_selected_is():
    frame = pd.DataFrame({"selected_death": ["SET", "magnitude", "SET"],
                          "selected_death_rate": [0.8, 0.8, 0.7]})
    assert list(W.selected_is(frame, {"death": "SET", "death_rate": 0.8})) == [True, False, False]
    with pytest.raises(ValueError, match="selected_growth"):
        W.selected_is(frame, {"growth": "random"})


# ------------------------------------------------------------------ real searches


def test_real_sweep_trains_the_reference_once_and_reads_back(tmp_path):
    torch.manual_seed(0)
    out, reference = tmp_path / "sweep", tmp_path / "reference"
    kw = dict(out=out, reference_dir=reference, device="cpu", progress=False)
    grid = {"ranking": ["ls", "loss"], "embedding": ["raw"]}
    frame = W.run_sweep(tiny(), grid, **kw)
    assert len(frame) == 2
    assert len([p for p in reference.iterdir() if p.is_dir()]) == 1  # one dense reference
    for _, row in frame.iterrows():
        summary = json.loads((out / row["search"] / "summary.json").read_text())
        assert row["test_ppl"] == summary["test_ppl"]
        assert row["selection_seconds"] == summary["timings"]["selection_seconds"]
        assert {k: row[f"selected_{k}"] for k in summary["selected"]} == summary["selected"]
    assert (frame["ls_share"] > 0).tolist() == (frame["ranking"] == "ls").tolist()
    stamps = {p: p.stat().st_mtime_ns for p in out.glob("*/summary.json")}
    again = W.run_sweep(tiny(), grid, **kw)
    assert {p: p.stat().st_mtime_ns for p in out.glob("*/summary.json")} == stamps
    pd.testing.assert_frame_equal(again, frame)


def test_exhaustive_trains_the_grid_pool_as_the_final_training_does(tmp_path):
    """Table 4's "optimal selected" is an equality of configurations: the exhaustive search
    sees the grid search's pool, and trains each configuration as its final training does."""
    torch.manual_seed(0)
    base = tiny(sampler="grid", ranking="loss")
    kw = dict(reference_dir=tmp_path / "reference", device="cpu", progress=False)
    frame = W.run_sweep(base, {}, out=tmp_path / "grid", **kw)
    best = W.run_sweep(W.exhaustive(base, "cpu"), {}, out=tmp_path / "full", **kw)
    grid_epochs = pd.read_csv(tmp_path / "grid" / "r0" / "epochs.csv")
    full_epochs = pd.read_csv(tmp_path / "full" / "r0" / "epochs.csv")
    params = ["sparse_init", "death", "redistribution"]
    assert (set(map(tuple, grid_epochs[params].values)) == set(map(tuple, full_epochs[params].values)))
    last = full_epochs[full_epochs.epoch == 2].set_index(params)["valid_ppl"]
    finals = grid_epochs[(grid_epochs.phase == "final") & (grid_epochs.epoch == 2)]
    assert len(finals) == 2
    for _, row in finals.iterrows():
        assert last.loc[tuple(row[params])] == pytest.approx(row["valid_ppl"], rel=1e-9)
    # The exhaustive pick is the lowest validation perplexity of the whole pool.
    assert best["valid_ppl"].iloc[0] == pytest.approx(last.min(), rel=1e-9)
    selected = {k: best[f"selected_{k}"].iloc[0] for k in params + ["growth", "death_rate"]}
    optimal = frame["valid_ppl"].iloc[0] == pytest.approx(last.min(), rel=1e-9)
    assert W.selected_is(frame, selected).iloc[0] == optimal
