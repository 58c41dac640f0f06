"""Pruned models to take away: the three forms give the masked model's outputs, and the report counts right."""
import copy
import math

import pytest
import torch
import torch.nn.functional as F

from conftest import TINY, tiny_search
from lshkit import prune_export as PE
from lshkit.data import get_batch, load_corpus
from lshkit.dst import DynamicSparsity, SparseConfig
from lshkit.models import GRULM, StackedLSTM
from lshkit.train import TrainConfig, Trainer


@pytest.fixture(scope="module")
def trainer():
    """A tiny sparse LSTM trained 3 epochs, SNT-ASGD's averaging switched on for the last one, so the
    weights it evaluates with (the averages) differ from its raw weights."""
    cfg = TrainConfig.preset("smoke", "lstm").replace(epochs=3, **TINY)
    trainer = Trainer(cfg, load_corpus("smoke"), SparseConfig(density=0.33, death="magnitude"), progress=False)
    trainer.fit(2)
    trainer.optimizer.state["nt_asgd"].update(averaging=True, steps=0)  # as the non-monotone trigger does
    trainer.fit(3)
    return trainer


def _valid_loss(model, trainer) -> float:
    """The validation loss as Trainer.evaluate computes it, with ``model``."""
    data, bptt = trainer.valid_data, trainer.cfg.bptt
    total, count, state = 0.0, 0, model.init_state(data.size(1))
    with torch.no_grad():
        for i in range(0, data.size(0) - 1, bptt):
            x, y = get_batch(data, i, bptt)
            logits, state = model(x, state)
            total += F.cross_entropy(logits.reshape(-1, logits.size(-1)), y.reshape(-1), reduction="sum").double().item()
            count += y.numel()
    return total / count


def _out(model, tokens):
    with torch.no_grad():
        return model(tokens)[0]


def test_the_exported_model_is_the_one_the_trainer_evaluates(trainer):
    model, masks, meta = PE.from_trainer(trainer)
    raw = dict(trainer.model.named_parameters())
    assert any(not torch.equal(p, raw[n]) for n, p in model.named_parameters())  # the averages, not the raw weights
    assert _valid_loss(model, trainer) == pytest.approx(trainer.evaluate("valid"), rel=1e-12, abs=1e-12)
    for name, p in model.named_parameters():
        if name in masks:
            assert not p[~masks[name]].any(), name
    assert meta["epoch"] == 3 and meta["vocab_size"] == len(trainer.corpus.vocab)


def test_torch_pruning_on_the_fused_lstm_gives_the_masked_outputs(trainer):
    model, masks, _ = PE.from_trainer(trainer)
    tokens = trainer.valid_data[:30]
    pruned = PE.apply_torch_pruning(model, masks)
    assert hasattr(pruned.rnn, "weight_hh_l1_orig") and hasattr(pruned.rnn, "weight_hh_l1_mask")
    assert torch.equal(_out(pruned, tokens), _out(model, tokens))
    # The reparametrisation keeps pruned weights at 0 whatever the underlying values become.
    with torch.no_grad():
        pruned.rnn.weight_hh_l0_orig.add_(1.0)
    assert not pruned.rnn.weight_hh_l0[~masks["rnn.weight_hh_l0"]].any()
    pruned.rnn.weight_hh_l0_orig.data.sub_(1.0)
    pruned(tokens)  # the forward hook recomputes the flat weights
    assert torch.allclose(_out(pruned, tokens), _out(model, tokens), atol=1e-6)
    baked = PE.apply_torch_pruning(model, masks, bake=True)
    assert isinstance(baked.rnn.weight_ih_l0, torch.nn.Parameter) and not any("_mask" in k for k in baked.state_dict())
    assert torch.equal(_out(baked, tokens), _out(model, tokens))
    # the model step the LS uses reads the pruned weights too
    x, state = model.embed(tokens[:1])[0], model.init_state(tokens.size(1))
    assert torch.equal(pruned.step(x, state), model.step(x, state))


def test_a_tied_weight_is_pruned_in_both_modules():
    torch.manual_seed(0)
    model = StackedLSTM(30, 8, 8, 2, tie_weights=True).eval()
    masks = DynamicSparsity(model, SparseConfig(density=0.4), total_updates=1).masks
    assert "decoder.weight" not in masks  # one mask for the shared matrix
    pruned = PE.apply_torch_pruning(model, masks)
    assert hasattr(pruned.encoder, "weight_mask") and hasattr(pruned.decoder, "weight_mask")
    assert torch.equal(pruned.decoder.weight, pruned.encoder.weight)
    tokens = torch.randint(0, 30, (7, 3))
    assert torch.equal(_out(pruned, tokens), _out(model, tokens))


def test_both_files_load_back_to_the_same_outputs(trainer, tmp_path):
    model, masks, meta = PE.from_trainer(trainer)
    tokens = trainer.valid_data[:25]
    result = PE.export_pruned(model, masks, tmp_path, meta=meta, repeats=3)
    loaded, loaded_masks, loaded_meta = PE.load_masked(tmp_path / "masked_state.pt")  # built from its meta
    assert torch.equal(_out(loaded, tokens), _out(model, tokens)) and loaded_meta == meta
    assert all(torch.equal(loaded_masks[n], masks[n]) for n in masks)
    torch_pruned = PE.load_torch_pruned(tmp_path / "torch_pruned_state.pt")
    assert torch.equal(_out(torch_pruned, tokens), _out(model, tokens))
    assert (tmp_path / "sparsity.csv").exists() and (tmp_path / "report.json").exists()
    assert set(result["inference"]["variants"]) == {"dense", "masked", "torch.nn.utils.prune", "sparse CSR"}
    assert all(v["seconds"] > 0 for v in result["inference"]["variants"].values())
    assert "median" in result["inference"]["method"] and "one torch thread" in result["inference"]["method"]


def test_the_sparse_kernels_compute_the_masked_model(trainer):
    model, masks, _ = PE.from_trainer(trainer)
    tokens = trainer.valid_data[:20]
    with torch.no_grad():
        assert torch.allclose(PE._CSRLSTM(model)(tokens), _out(model, tokens), atol=1e-5)


def test_flops_of_a_small_lstm_by_hand():
    torch.manual_seed(0)
    model = StackedLSTM(10, 4, 3, 1)  # V = 10, E = 4, H = 3
    assert PE.flops_per_token(model)["dense"] == (2 * 12 * 4 + 2 * 12 * 3 + 21 * 3) + (2 * 10 * 3 + 10)  # 231 + 70
    masks = {n: torch.zeros_like(p, dtype=torch.bool) for n, p in model.named_parameters() if p.dim() >= 2}
    masks["rnn.weight_ih_l0"][0, :3] = True   # 3 kept
    masks["rnn.weight_hh_l0"][5, 1] = True    # 1 kept
    masks["decoder.weight"][:2] = True        # 6 kept
    flops = PE.flops_per_token(model, masks)
    assert flops["sparse"] == (2 * 3 + 2 * 1 + 21 * 3) + (2 * 6 + 10)
    assert flops["parts"]["decoder"] == {"dense": 70, "sparse": 22}
    gru = GRULM(10, 4, 3, 2)
    assert PE.flops_per_token(gru)["dense"] == (2 * 9 * 4 + 2 * 9 * 3 + 17 * 3) + (2 * 9 * 3 + 2 * 9 * 3 + 17 * 3) + 70


def test_sparsity_per_matrix_and_per_gate():
    model = StackedLSTM(10, 4, 3, 1)
    masks = {n: torch.ones_like(p, dtype=torch.bool) for n, p in model.named_parameters() if p.dim() >= 2}
    masks["rnn.weight_hh_l0"][3:6] = False    # the forget gate's rows (i, f, g, o)
    masks["rnn.weight_ih_l0"][9:12, :2] = False  # half the output gate
    PE._apply(model, masks)
    table = PE.sparsity_table(model, masks).set_index(["matrix", "block"])
    assert table.loc[("rnn.weight_hh_l0", "f"), "sparsity"] == 1.0
    assert table.loc[("rnn.weight_hh_l0", "all"), "sparsity"] == pytest.approx(0.25)
    assert table.loc[("rnn.weight_ih_l0", "o"), "sparsity"] == 0.5
    assert table.loc[("rnn.weight_ih_l0", "i"), "sparsity"] == 0.0
    assert ("decoder.weight", "all") in table.index and ("decoder.weight", "i") not in table.index
    result = PE.report(model, masks, measure=False)
    assert result["params_dense"] == sum(p.numel() for p in model.parameters())
    assert result["params_kept"] == result["params_dense"] - 9 - 6


def test_a_checkpoint_exports_as_its_trainer_does(trainer, tmp_path):
    trainer.save(tmp_path / "c.pt")
    model, masks, meta = PE.from_trainer(trainer)
    again, again_masks, again_meta = PE.from_checkpoint(tmp_path / "c.pt")
    for (n, p), (m, q) in zip(model.state_dict().items(), again.state_dict().items()):
        assert n == m and torch.equal(p, q), n
    assert again_meta["epoch"] == meta["epoch"] and all(torch.equal(again_masks[n], masks[n]) for n in masks)


def test_a_searchs_selected_candidate_exports_from_its_checkpoint(tmp_path):
    from lshkit.search import run_search

    summary = run_search(tiny_search(pool=3, ranking="loss"), tmp_path / "search", device="cpu",
                         reference_dir=tmp_path / "reference", progress=False)
    model, masks, meta = PE.from_search(tmp_path / "search")
    assert meta["selected"] == summary["selected"] and meta["epoch"] == 2
    assert meta["sparse_config"]["death"] == summary["selected"]["death"]
    trainer = Trainer(TrainConfig.from_dict(meta["train_config"]), load_corpus("smoke"), progress=False)
    assert math.exp(_valid_loss(model, trainer)) == pytest.approx(summary["valid_ppl"], rel=1e-9)
    with pytest.raises(FileNotFoundError, match="checkpoint .*c0.*missing"):
        PE.from_search(tmp_path / "search", checkpoints=tmp_path / "nowhere")


def test_bad_input_is_named():
    model = StackedLSTM(10, 4, 3, 1)
    with pytest.raises(ValueError, match=r"\['rnn.weight_xx'\].*rnn.weight_hh_l0"):
        PE.sparsity_table(model, {"rnn.weight_xx": torch.ones(3, 3, dtype=torch.bool)})
    with pytest.raises(ValueError, match=r"shape \(3, 3\).*\(12, 3\)"):
        PE.sparsity_table(model, {"rnn.weight_hh_l0": torch.ones(3, 3, dtype=torch.bool)})
    with pytest.raises(ValueError, match="dense model has none"):
        PE.report(model, {})
    dense = Trainer(TrainConfig.preset("smoke", "lstm").replace(**TINY), load_corpus("smoke"), progress=False)
    with pytest.raises(ValueError, match="dense"):
        PE.from_trainer(dense)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA: cuDNN's flat weights")
def test_torch_pruning_on_cuda_runs_and_matches():
    torch.manual_seed(0)
    model = StackedLSTM(50, 16, 16, 2).cuda().eval()
    masks = DynamicSparsity(model, SparseConfig(density=0.3), total_updates=1).masks
    tokens = torch.randint(0, 50, (12, 4), device="cuda")
    pruned = PE.apply_torch_pruning(model, masks)
    assert torch.allclose(_out(pruned, tokens), _out(model, tokens), atol=1e-5)
    baked = PE.apply_torch_pruning(model, masks, bake=True)
    baked.rnn.flatten_parameters()
    assert torch.allclose(_out(baked, tokens), _out(model, tokens), atol=1e-5)
    copy.deepcopy(baked)
