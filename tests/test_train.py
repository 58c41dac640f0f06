"""Training loop: exact resume, seeding, learning, exact zeros, divergence, configs."""
import dataclasses
import json

import pytest
import torch

from lshkit.data import load_corpus, unigram_perplexity
from lshkit.dst import SparseConfig
from lshkit.train import TrainConfig, Trainer, TrainingDiverged

TIMING_KEYS = {"train_seconds", "eval_seconds", "tokens_per_second"}


@pytest.fixture(scope="module")
def corpus():
    return load_corpus("smoke")


@pytest.fixture(scope="module")
def small(corpus):
    """The first tenth of the smoke corpus: 18 BPTT windows per epoch at batch 10."""
    return dataclasses.replace(corpus, train=corpus.train[:6000], valid=corpus.valid[:1200],
                               test=corpus.test[:1200])


def tiny_cfg(**changes):
    return TrainConfig.preset("smoke").replace(emb_size=24, hidden_size=16, epochs=4, **changes)


def force_averaging(trainer, record):
    # Pull SNT-ASGD's non-monotone trigger after epoch 1, so that a resumed run
    # must also restore the running averages.
    if record["epoch"] == 1:
        for _ in range(trainer.cfg.nonmono + 1):
            trainer.optimizer.observe(1e9)


def same_state(a: dict, b: dict) -> bool:
    assert a.keys() == b.keys()
    return all(torch.equal(a[k], b[k]) for k in a)


def without_timing(history):
    return [{k: v for k, v in r.items() if k not in TIMING_KEYS} for r in history]


@pytest.mark.parametrize("sparse", [
    SparseConfig(),  # the authors' best pick: ER / global_magnitude / random / nonzeros, per epoch
    SparseConfig(sparse_init="uniform", death="SET", growth="gradient", redistribution="magnitude",
                 death_rate=0.5, update_every=5),
], ids=["per-epoch-random", "every-5-steps-gradient"])
def test_resume_equals_uninterrupted_run_bitwise(small, sparse, tmp_path):
    cfg = tiny_cfg(nonmono=1)
    callbacks = (force_averaging,)
    straight = Trainer(cfg, small, sparse, progress=False)
    straight.fit(3, callbacks)

    path = tmp_path / "run.pt"
    first = Trainer(cfg, small, sparse, progress=False)
    first.fit(2, callbacks, checkpoint=path)
    del first
    rebuilt = Trainer.from_checkpoint(path, small, progress=False)
    assert (rebuilt.cfg, rebuilt.sparse, rebuilt.epoch) == (cfg, sparse, 2)
    torch.manual_seed(1234)  # whatever ran in between must not matter
    resumed = Trainer(cfg, small, sparse, progress=False)
    resumed.fit(3, callbacks, checkpoint=path)

    assert [r["averaging"] for r in straight.history] == [False, True, True]
    assert resumed.epoch == straight.epoch == 3
    assert without_timing(resumed.history) == without_timing(straight.history)
    assert same_state(resumed.model.state_dict(), straight.model.state_dict())
    assert same_state(resumed.sparsity.masks, straight.sparsity.masks)
    assert resumed.sparsity.cycle == straight.sparsity.cycle > 0
    for p, q in zip(resumed.model.parameters(), straight.model.parameters()):
        assert same_state(resumed.optimizer.state[p], straight.optimizer.state[q])
    assert resumed.evaluate("test") == straight.evaluate("test")
    assert sorted(x.name for x in tmp_path.iterdir()) == ["run.pt"]  # no temporary file left behind


def test_seed_fixes_everything_and_is_set_before_building(small):
    cfg = tiny_cfg()
    a = Trainer(cfg, small, SparseConfig(), progress=False)
    torch.rand(1000)  # disturb the global generator: construction must reseed
    b = Trainer(cfg, small, SparseConfig(), progress=False)
    assert same_state(a.model.state_dict(), b.model.state_dict())
    assert same_state(a.sparsity.masks, b.sparsity.masks)
    outside = torch.get_rng_state()
    a.fit(1)  # interleaved trainers keep their own streams and leave the caller's alone
    assert torch.equal(torch.get_rng_state(), outside)
    b.fit(1)
    assert same_state(a.model.state_dict(), b.model.state_dict())
    assert without_timing(a.history) == without_timing(b.history)
    c = Trainer(cfg.replace(seed=1), small, SparseConfig(), progress=False)
    assert not torch.equal(c.model.encoder.weight, b.model.encoder.weight)


def test_dense_and_sparse_lstm_learn_the_smoke_grammar(corpus):
    """Below the unigram perplexity means the recurrence carries context."""
    cfg = TrainConfig.preset("smoke")
    unigram = unigram_perplexity(corpus, "valid")
    dense = Trainer(cfg, corpus, progress=False)
    dense.fit(2)
    sparse = Trainer(cfg, corpus, SparseConfig(), progress=False)
    sparse.fit(4)
    for trainer in (dense, sparse):
        ppl = [r["valid_ppl"] for r in trainer.history]
        assert ppl[-1] < 0.5 * unigram, ppl
        assert ppl[-1] < ppl[0], ppl
    assert sparse.history[-1]["density"] == pytest.approx(0.33, abs=1e-3)


def test_masked_weights_are_exactly_zero_after_training(small):
    cfg = tiny_cfg(nonmono=1)
    trainer = Trainer(cfg, small, SparseConfig(update_every=7), progress=False)
    active = trainer.sparsity.total_active
    trainer.fit(3, (force_averaging,))
    assert trainer.sparsity.cycle > 0
    params = dict(trainer.model.named_parameters())
    masks = trainer.sparsity.masks
    assert set(masks) == {n for n, p in params.items() if p.dim() >= 2}
    assert sum(int(m.sum()) for m in masks.values()) == active
    for name, mask in masks.items():
        assert torch.count_nonzero(params[name][~mask]) == 0, name
    with trainer.optimizer.averaged():  # the evaluated (averaged) weights too
        for name, mask in masks.items():
            assert torch.count_nonzero(params[name][~mask]) == 0, name


def test_injected_nan_raises_training_diverged_and_marks_the_record(small):
    trainer = Trainer(tiny_cfg(), small, progress=False)
    with torch.no_grad():
        trainer.model.decoder.bias[3] = float("nan")
    with pytest.raises(TrainingDiverged, match="non-finite training loss") as info:
        trainer.fit(2)
    record = info.value.record
    assert record["failed"] is True and "step 1 of epoch 1" in record["reason"]
    assert trainer.history == [record] and trainer.epoch == 0


def test_absurd_learning_rate_diverges(small):
    trainer = Trainer(tiny_cfg(lr=1e30, clip=1e30), small, progress=False)
    with pytest.raises(TrainingDiverged):
        trainer.fit(1)
    assert trainer.history[-1]["failed"] is True


def test_config_json_round_trip_and_table_a1_presets():
    cfg = TrainConfig.preset("paper", "rhn")
    assert TrainConfig.from_json(cfg.to_json()) == cfg
    assert json.loads(cfg.to_json())["dropouts"] == [0.2, 0.65, 0.25, 0.62]
    assert (cfg.hidden_size, cfg.emb_size, cfg.depth, cfg.lr, cfg.epochs, cfg.tied, cfg.coupled) == \
        (830, 830, 10, 15.0, 500, True, True)
    lstm = TrainConfig.preset("paper")
    assert (lstm.hidden_size, lstm.emb_size, lstm.num_layers, lstm.lr, lstm.bptt, lstm.batch_size,
            lstm.epochs, lstm.clip, lstm.nonmono, lstm.weight_decay, lstm.tied) == \
        (1500, 1500, 2, 40.0, 35, 20, 100, 0.25, 5, 1.2e-6, False)
    assert lstm.dropouts == (0.0, 0.65, 0.65, 0.65)
    for scale in ("smoke", "cpu"):
        for model in ("lstm", "rhn", "gru", "rnn"):
            assert TrainConfig.preset(scale, model).model == model


@pytest.mark.parametrize("make, words", [
    (lambda: TrainConfig(model="lsmt"), ["'lsmt'", "'lstm'", "'rhn'", "'gru'", "'rnn'"]),
    (lambda: TrainConfig(dataset="ptb2"), ["'ptb2'", "'ptb'", "'wikitext2'", "'smoke'"]),
    (lambda: TrainConfig.preset("huge"), ["'huge'", "'smoke'", "'cpu'", "'paper'"]),
    (lambda: TrainConfig.preset("paper", "gru"), ["'gru'", "'lstm'", "'rhn'"]),
    (lambda: TrainConfig(dropouts=(0.1, 0.2, 1.0, 0.0)), ["dropouts", "[0, 1)"]),
    (lambda: TrainConfig(bptt=0), ["bptt", "positive integer"]),
    (lambda: TrainConfig(lr=-1.0), ["lr", "(0, inf)"]),
    (lambda: TrainConfig(model="lstm", coupled=True), ["coupled", "'rhn'"]),
    (lambda: TrainConfig(tied=True, emb_size=8, hidden_size=16), ["tied", "8", "16"]),
    (lambda: TrainConfig.from_dict({"modle": "lstm"}), ["modle", "model"]),
])
def test_bad_config_values_name_the_valid_ones(make, words):
    with pytest.raises(ValueError) as info:
        make()
    for word in words:
        assert word in str(info.value)


def test_trainer_rejects_mismatches_before_training(small, tmp_path):
    with pytest.raises(ValueError, match="'ptb'"):
        Trainer(tiny_cfg(dataset="ptb"), small, progress=False)
    with pytest.raises(ValueError, match="momentum"):
        Trainer(tiny_cfg(), small, SparseConfig(growth="momentum"), progress=False)
    trainer = Trainer(tiny_cfg(), small, progress=False)
    with pytest.raises(ValueError, match="'valid'"):
        trainer.evaluate("validation")
    path = tmp_path / "dense.pt"
    trainer.save(path)
    with pytest.raises(ValueError, match="lr: checkpoint 10.0, trainer 1.0"):
        Trainer(tiny_cfg(lr=1.0), small, progress=False).load(path)


def test_callbacks_run_before_the_topology_update_and_extend_the_record(small):
    def cb(trainer, record):
        # Evaluating again reproduces the record: same (averaged) weights, masks not yet updated.
        assert trainer.evaluate("valid") == record["valid_loss"]
        record["test_loss"] = trainer.evaluate("test")

    trainer = Trainer(tiny_cfg(nonmono=1), small, SparseConfig(), progress=False)
    trainer.fit(1, (force_averaging, cb))
    trainer.fit(3, (cb,))  # continues from epoch 1
    assert [r["epoch"] for r in trainer.history] == [1, 2, 3]
    assert [r["averaging"] for r in trainer.history] == [False, True, True]
    assert all("test_loss" in r for r in trainer.history)
    assert trainer.sparsity.cycle == 3
    assert set(trainer.history[0]) >= {"epoch", "train_loss", "valid_loss", "valid_ppl", "lr", "density",
                                       "averaging", "train_seconds", "eval_seconds", "tokens_per_second"}
