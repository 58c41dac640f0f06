"""Fig. 1 tracking and Table 3 sample effect (lshkit.tracking) on tiny smoke models."""
import dataclasses

import numpy as np
import pandas as pd
import pytest
import torch
from sklearn.decomposition import PCA

from lshkit.data import load_corpus
from lshkit.dst import SparseConfig
from lshkit.ls import model_spectrum
from lshkit.data import get_batch
from lshkit.callbacks import ls_tokens
from lshkit.experiments.fig1 import DISTANCE_COLUMNS, early_ordering, track_training, train_variants
from lshkit.experiments.table3 import ls_sample_effect, paper_table3, sample_effect_claim, sample_effect_table, STATS
from lshkit.train import Trainer, TrainConfig, train_step

CFG = TrainConfig.preset("smoke").replace(emb_size=12, hidden_size=12, epochs=3)
PRUNED = SparseConfig(density=0.3, sparse_init="uniform", death="magnitude",
                      redistribution="none", death_rate=0.5)
VARIANTS = {"dense": None, "pruned 1": PRUNED}
LS_STEPS = 12
N = CFG.num_layers * CFG.hidden_size  # "paper" convention: h of every layer
COLUMNS = ["variant", "epoch", "train_loss", "valid_loss", "valid_ppl", "density", "ls_seconds",
           "train_seconds", "distance_same_epoch", "distance_final", "distance_pca"]
TIMINGS = ["ls_seconds", "train_seconds"]


@pytest.fixture(scope="module")
def corpus():
    """The smoke corpus cut to 10 training steps per epoch and 6,000 validation tokens
    (6000 % 10 == 0: the K = 2 samples are samples 0 and 5 of the K = 10 batch, as on PTB)."""
    smoke = load_corpus("smoke")
    return dataclasses.replace(smoke, train=smoke.train[:7001], valid=smoke.valid[:6000])


@pytest.fixture(scope="module")
def tracked(corpus):
    torch.manual_seed(0)
    return track_training(CFG, corpus, VARIANTS, epochs=2, ls_steps=LS_STEPS, progress=False)


def test_frames_are_tidy_with_one_row_per_variant_epoch_and_exponent(tracked):
    frame, ls = tracked
    assert list(frame.columns) == COLUMNS
    assert list(zip(frame.variant, frame.epoch)) == [(v, e) for v in VARIANTS for e in range(3)]
    assert list(ls.columns) == ["variant", "epoch", "index", "exponent"]
    assert len(ls) == 2 * 3 * N and sorted(set(ls["index"])) == list(range(1, N + 1))
    assert frame.loc[frame.epoch == 0, "train_loss"].isna().all()
    assert frame.loc[frame.epoch > 0, "train_loss"].notna().all()
    assert (frame.loc[frame.variant == "dense", "density"] == 1.0).all()
    assert frame.loc[frame.variant == "pruned 1", "density"].sub(0.3).abs().max() < 0.01
    assert frame.attrs["ls_info"]["convention"] == "paper" and frame.attrs["ls_info"]["K"] == 2


def test_distances_match_a_direct_computation_from_the_ls_frame(tracked):
    frame, ls = tracked
    wide = ls.pivot_table(index=["variant", "epoch"], columns="index", values="exponent", sort=False)
    dense_same = wide.loc["dense"].loc[wide.index.get_level_values("epoch")].to_numpy()
    same = np.linalg.norm(wide.to_numpy() - dense_same, axis=1)
    np.testing.assert_allclose(frame.distance_same_epoch, same, rtol=1e-12, atol=0)
    dense = frame.variant == "dense"
    assert (frame.loc[dense, "distance_same_epoch"] == 0.0).all()
    assert (frame.loc[~dense, "distance_same_epoch"] > 0).all()
    final = np.linalg.norm(wide.to_numpy() - wide.loc[("dense", 2)].to_numpy(), axis=1)
    np.testing.assert_allclose(frame.distance_final, final, rtol=1e-12, atol=0)
    assert frame.distance_final[dense & (frame.epoch == 2)].item() == 0.0

    coords = PCA(n_components=2, svd_solver="full").fit_transform(wide.to_numpy())
    anchor = coords[list(wide.index).index(("dense", 2))]
    np.testing.assert_allclose(frame.distance_pca, np.linalg.norm(coords - anchor, axis=1),
                               rtol=1e-9, atol=1e-12)
    assert frame.distance_pca[dense & (frame.epoch == 2)].item() == 0.0


def test_epoch_zero_is_the_ls_of_the_seeded_untrained_model(corpus, tracked):
    _, ls = tracked
    model = Trainer(CFG.replace(seed=0), corpus, PRUNED, progress=False).model
    expected = model_spectrum(model, ls_tokens(corpus, 2, LS_STEPS), convention="paper")
    got = ls[(ls.variant == "pruned 1") & (ls.epoch == 0)].exponent.to_numpy()
    np.testing.assert_array_equal(got, expected.double().numpy())


def test_resume_equals_the_uninterrupted_run_without_recomputing(corpus, tracked, tmp_path):
    first, _ = track_training(CFG, corpus, VARIANTS, epochs=1, ls_steps=LS_STEPS, progress=False,
                              checkpoint_dir=tmp_path)
    frame, ls = track_training(CFG, corpus, VARIANTS, epochs=2, ls_steps=LS_STEPS, progress=False,
                               checkpoint_dir=tmp_path)
    # Timings are read back from the checkpoints, so equal floats mean nothing was recomputed.
    done = frame[frame.epoch <= 1].reset_index(drop=True)
    pd.testing.assert_frame_equal(done[TIMINGS], first[TIMINGS])
    pd.testing.assert_frame_equal(frame.drop(columns=TIMINGS), tracked[0].drop(columns=TIMINGS))
    pd.testing.assert_frame_equal(ls, tracked[1])


def test_resume_with_other_ls_settings_is_refused(corpus, tmp_path):
    track_training(CFG, corpus, VARIANTS, epochs=1, ls_steps=LS_STEPS, progress=False,
                   checkpoint_dir=tmp_path)
    with pytest.raises(ValueError, match="LS settings other than"):
        track_training(CFG, corpus, VARIANTS, epochs=1, ls_steps=LS_STEPS + 1, progress=False,
                       checkpoint_dir=tmp_path)


@pytest.mark.parametrize("variants, kwargs, match", [
    ({"a": None, "b": None}, {}, "exactly one dense"),
    ({"a": PRUNED}, {}, "exactly one dense"),
    ({"a b": None, "a_b": PRUNED}, {}, "same checkpoint file"),
    ({"dense": None, "p": "magnitude"}, {}, "SparseConfig or None"),
    (VARIANTS, {"epochs": 4}, "TrainConfig.epochs=3"),
    (VARIANTS, {"convention": "exact"}, "convention='exact'"),
    (VARIANTS, {"warmup_steps": 3}, "model_spectrum option='warmup_steps'"),
    (VARIANTS, {"ls_steps": 10_000}, "has only 3000 steps"),
])
def test_bad_input_fails_before_training(corpus, variants, kwargs, match):
    kwargs = {"epochs": 1, **kwargs}
    with pytest.raises((ValueError, TypeError), match=match):
        track_training(CFG, corpus, variants, progress=False, **kwargs)


def test_k2_is_the_mean_over_its_two_samples_among_the_k10_batch(corpus):
    torch.manual_seed(0)
    model = Trainer(CFG, corpus, PRUNED, progress=False).model
    options = {"dtype": torch.float64}
    effect = ls_sample_effect(model, corpus, ks=(2, 10), steps=LS_STEPS, repeats=2, **options)
    assert list(effect.samples) == [2, 10, 2, 10] and list(effect.repeat) == [0, 0, 1, 1]

    ten = ls_tokens(corpus, 10, LS_STEPS)
    assert torch.equal(ls_tokens(corpus, 2, LS_STEPS), ten[:, [0, 5]])
    per_sample = torch.stack([model_spectrum(model, ten[:, [j]], convention="paper", **options)
                              for j in range(10)]).numpy()

    def stats(lam):
        return [lam.max(), lam.min(), lam.mean(), lam.var()]

    for k, lam in ((2, per_sample[[0, 5]].mean(0)), (10, per_sample.mean(0))):
        for _, row in effect[effect.samples == k].iterrows():
            np.testing.assert_allclose(row[list(STATS)].to_numpy(float), stats(lam), rtol=1e-9, atol=1e-12)
    first = effect.iloc[:2].set_index("samples")
    assert (first.loc[2, list(STATS)] != first.loc[10, list(STATS)]).all()

    table = sample_effect_table({"pruned 1": effect})
    assert list(table.index) == list(STATS) + ["seconds"]
    assert list(table.columns) == [("pruned 1", "2"), ("pruned 1", "10"), ("pruned 1", "delta")]
    np.testing.assert_allclose(table["pruned 1", "delta"],
                               (table["pruned 1", "10"] - table["pruned 1", "2"]).abs())


def _frame(distances: dict, ppl: dict) -> pd.DataFrame:
    """A track_training-like frame: distances[name] = (same-epoch list, PCA list) per epoch (the
    final-reference distance is the PCA one here), ppl[name] = validation perplexity per epoch."""
    rows = []
    for name, (same, pca) in distances.items():
        for epoch, (d_same, d_pca, value) in enumerate(zip(same, pca, ppl[name])):
            rows.append({"variant": name, "epoch": epoch, "valid_ppl": value,
                         "distance_same_epoch": d_same, "distance_final": d_pca, "distance_pca": d_pca})
    return pd.DataFrame(rows)


def test_early_ordering_reads_the_nearest_and_the_best_off_the_frame():
    frame = _frame({"dense": ([0, 0, 0, 0], [3, 2, 1, 0]),
                    "a": ([5, 1, 2, 1], [6, 4, 2, 2]),
                    "b": ([4, 2, 3, 2], [5, 3, 4, 3])},
                   {"dense": [60, 20, 10, 8], "a": [60, 40, 30, 9], "b": [60, 30, 20, 12]})
    got = early_ordering(frame, epoch=1).set_index("distance")
    assert list(got.index) == list(DISTANCE_COLUMNS)
    # Same-epoch: a is nearer from epoch 1 on and ends better, though its perplexity is
    # higher until the last epoch (the situation of Fig. 1 C).
    assert got.loc["distance_same_epoch"].to_dict() == {
        "epoch": 1, "nearest": "a", "best": "a", "same_ordering": True, "stays_nearest": True}
    # PCA: b is nearer at epoch 1, a from epoch 2 on.
    assert got.loc["distance_pca"].to_dict() == {
        "epoch": 1, "nearest": "b", "best": "a", "same_ordering": False, "stays_nearest": False}
    at_zero = early_ordering(frame, epoch=0).set_index("distance")
    assert at_zero.loc["distance_same_epoch", "nearest"] == "b"
    assert not at_zero.loc["distance_same_epoch", "same_ordering"]


def test_early_ordering_compares_whole_rankings_of_more_than_two_variants():
    same = {"dense": [0, 0], "a": [1, 1], "b": [2, 2], "c": [3, 3]}
    frame = _frame({k: (v, v) for k, v in same.items()},
                   {"dense": [9, 5], "a": [9, 6], "b": [9, 8], "c": [9, 7]})
    got = early_ordering(frame, epoch=1)
    assert list(got.nearest) == ["a"] * 3 and list(got.best) == ["a"] * 3
    assert not got.same_ordering.any() and got.stays_nearest.all()  # b and c are swapped


@pytest.mark.parametrize("kwargs, frame_change, match", [
    ({"dense": "reference"}, None, "dense='reference'"),
    ({"epoch": 7}, None, r"epoch=7 is not valid; choose one of \[0, 1\]"),
    ({}, "one pruned", "at least two pruned variants"),
    ({}, "no pca", r"lacks the column\(s\) \['distance_pca'\]"),
])
def test_early_ordering_rejects_bad_input(kwargs, frame_change, match):
    frame = _frame({"dense": ([0, 0], [0, 0]), "a": ([1, 1], [1, 1]), "b": ([2, 2], [2, 2])},
                   {"dense": [9, 5], "a": [9, 6], "b": [9, 7]})
    if frame_change == "one pruned":
        frame = frame[frame.variant != "b"]
    elif frame_change == "no pca":
        frame = frame.drop(columns="distance_pca")
    with pytest.raises(ValueError, match=match):
        early_ordering(frame, **kwargs)


def test_paper_table3_and_its_claim_hold_on_the_published_numbers():
    table = paper_table3()
    assert list(table.index) == ["max", "min", "variance"]
    assert list(table.columns) == [(m, k) for m in ("Pruned 1", "Pruned 2") for k in ("2", "10", "delta")]
    assert table.loc["variance", ("Pruned 1", "10")] == 2.67
    # The deltas the paper prints.
    assert table.xs("delta", axis=1, level=1).to_numpy().tolist() == [[0.06, 0.06], [0.01, 0.0], [0.08, 0.0]]
    claim = sample_effect_claim(table).set_index("stat")
    np.testing.assert_allclose(claim.delta, [0.06, 0.01, 0.08])
    np.testing.assert_allclose(claim.gap, [0.74, 0.44, 0.75], atol=1e-12)
    np.testing.assert_allclose(claim.ratio, [0.74 / 0.06, 44.0, 0.75 / 0.08], rtol=1e-9)
    assert claim.within_bound.all() and claim.order_of_magnitude.all()
    # A tighter bound fails on the variance.
    assert sample_effect_claim(table, bound=0.07).within_bound.tolist() == [True, True, False]


def test_sample_effect_claim_uses_the_last_k_for_the_gap_between_models():
    def effect(two, ten, mean):
        return pd.DataFrame([{"samples": k, "repeat": 0, "max": v, "min": v - 3, "mean": mean,
                              "variance": 2.0, "seconds": 1.0, "seconds_per_sample": 1.0 / k}
                             for k, v in ((2, two), (10, ten))])

    table = sample_effect_table({"p1": effect(-1.0, -1.05, -2.0), "p2": effect(-0.5, -0.6, -2.5)})
    claim = sample_effect_claim(table, stats=("max", "mean", "variance")).set_index("stat")
    # The gap is |-1.05 - -0.6| at K = 10, not |-1.0 - -0.5| at K = 2.
    np.testing.assert_allclose(claim.loc["max", ["delta", "gap"]].to_numpy(float), [0.1, 0.45])
    assert not claim.loc["max", "within_bound"] and claim.loc["max", "order_of_magnitude"]
    # A mean unchanged by K: an infinite ratio.
    assert claim.loc["mean", "ratio"] == float("inf") and claim.loc["mean", "order_of_magnitude"]
    # Equal variances: no delta and no gap; 0/0 is no evidence of an order of magnitude.
    assert claim.loc["variance", "gap"] == 0.0 and np.isnan(claim.loc["variance", "ratio"])
    assert not claim.loc["variance", "order_of_magnitude"]
    with pytest.raises(ValueError, match="at least two models"):
        sample_effect_claim(sample_effect_table({"p1": effect(-1.0, -1.05, -2.0)}))
    with pytest.raises(ValueError, match="stat='seconds_per_sample'"):
        sample_effect_claim(table, stats=("seconds_per_sample",))


def test_ls_sample_effect_of_a_trainer_measures_its_averaged_weights(corpus):
    trainer = Trainer(CFG.replace(nonmono=1), corpus, PRUNED, progress=False)
    for loss in (1.0, 2.0, 3.0):  # a rising validation loss fires the non-monotone trigger
        trainer.optimizer.observe(loss)
    assert trainer.optimizer.averaging
    state = trainer.model.init_state(CFG.batch_size)
    for i in range(0, 5 * CFG.bptt, CFG.bptt):
        x, y = get_batch(trainer.train_data, i, CFG.bptt)
        _, _, state = train_step(trainer.model, trainer.optimizer, x, y, state, CFG.clip, trainer.sparsity)
    options = {"steps": LS_STEPS, "ks": (2,)}
    columns = list(STATS)
    with trainer.optimizer.averaged():
        averaged = ls_sample_effect(trainer.model, corpus, **options)
    raw = ls_sample_effect(trainer.model, corpus, **options)
    got = ls_sample_effect(trainer, corpus, **options)
    pd.testing.assert_frame_equal(got[columns], averaged[columns])
    assert (got[columns] != raw[columns]).all(axis=None)


def test_train_variants_refuses_a_checkpoint_past_the_epochs_asked(corpus, tmp_path):
    train_variants(CFG, corpus, {"p": PRUNED}, epochs=2, progress=False, checkpoint_dir=tmp_path)
    again = train_variants(CFG, corpus, {"p": PRUNED}, epochs=2, progress=False, checkpoint_dir=tmp_path)
    assert again["p"].epoch == 2
    with pytest.raises(ValueError, match="is at epoch 2, past epochs=1"):
        train_variants(CFG, corpus, {"p": PRUNED}, epochs=1, progress=False, checkpoint_dir=tmp_path)
