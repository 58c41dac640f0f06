"""AWD-LSTM-MoS (paper Table A1 column 3; Yang et al. 2018, arXiv 1711.03953; Merity et al. 2017,
arXiv 1708.02182): its mixture of softmaxes, regularisers, one-step map and LS, DST and training."""
import math

import pytest
import torch
import torch.nn.functional as F
from conftest import tiny_search

from lshkit.experiments import fixed as FX, table1 as T1
from lshkit.data import load_corpus, unigram_perplexity
from lshkit.dst import DEATH_MODES, SparseConfig
from lshkit.ls import lyapunov_spectrum, model_spectrum, tangent_map
from lshkit.models import AWDLSTMMoS, build_model, mixture_of_softmaxes, weight_drop
from lshkit.search import SearchConfig, run_search
from lshkit.train import TrainConfig, Trainer

V, E, H, H_LAST, K = 30, 5, 6, 4, 3
F64 = torch.float64


def _model(gain=None, **kw):
    """A small MoS model (three layers 6, 6, 4; 3 experts), in float64, eval mode; weights
    uniform in [-gain, gain] when gain is given (biases too, so every term matters)."""
    torch.manual_seed(0)
    model = AWDLSTMMoS(V, E, H, 3, last_hidden_size=H_LAST, experts=K, **kw).double().eval()
    if gain is not None:
        with torch.no_grad():
            for p in model.parameters():
                p.uniform_(-gain, gain)
    return model


def _tokens(T, B, seed=1):
    return torch.randint(V, (T, B), generator=torch.Generator().manual_seed(seed))


def _autograd_jacobian(f, *args):
    return torch.func.vmap(torch.func.jacrev(lambda *a: f(*(t.unsqueeze(0) for t in a)).squeeze(0)))(*args)


# ------------------------------------------------------------------- the mixture of softmaxes

def test_mixture_is_a_distribution_and_equals_the_log_space_sum():
    torch.manual_seed(0)
    logits, prior = 3 * torch.randn(7, K, V, dtype=F64), torch.randn(7, K, dtype=F64)
    log_p = mixture_of_softmaxes(logits, prior)
    assert log_p.shape == (7, V)
    torch.testing.assert_close(log_p.exp().sum(-1), torch.ones(7, dtype=F64), rtol=0, atol=1e-12)
    exact = torch.logsumexp(F.log_softmax(prior, -1).unsqueeze(-1) + F.log_softmax(logits, -1), dim=-2)
    torch.testing.assert_close(log_p, exact, rtol=0, atol=1e-12)
    # One expert is a plain softmax; a prior that picks one expert gives that expert's softmax.
    torch.testing.assert_close(mixture_of_softmaxes(logits[:, :1], prior[:, :1]), F.log_softmax(logits[:, 0], -1))
    pick = torch.tensor([-1e4, 1e4, -1e4], dtype=F64).expand(7, K)
    torch.testing.assert_close(mixture_of_softmaxes(logits, pick), F.log_softmax(logits[:, 1], -1))
    # Not a single softmax: a mixture of two experts has higher rank than either (Yang et al.'s point).
    assert not torch.allclose(log_p, F.log_softmax(logits.mean(1), -1), atol=1e-3)


def test_mixture_stays_finite_where_probabilities_underflow():
    logits = torch.zeros(2, 2, 4)
    logits[:, :, 0] = 200.0  # tokens 1-3 get probability e^-200 < float32's smallest normal
    log_p = mixture_of_softmaxes(logits, torch.zeros(2, 2))
    assert torch.isfinite(log_p).all()
    assert log_p[:, 0].abs().max() < 1e-6
    assert (log_p[:, 1:] <= math.log(torch.finfo(torch.float32).tiny) + 1e-3).all()
    with pytest.raises(ValueError, match=r"prior_logits \[\.\.\., K\]"):
        mixture_of_softmaxes(logits, torch.zeros(2, 3))


def test_model_output_is_a_distribution_in_train_and_eval_mode():
    model = _model(dropouts=(0.1, 0.3, 0.2, 0.3), weight_drop=0.5, latent_dropout=0.3)
    tokens = _tokens(8, 4)
    for training in (True, False):
        model.train(training)
        log_p, state = model(tokens)
        assert log_p.shape == (8, 4, V) and state.shape == (4, model.state_size)
        assert torch.isfinite(log_p).all()
        torch.testing.assert_close(log_p.exp().sum(-1), torch.ones(8, 4, dtype=F64), rtol=0, atol=1e-12)
        # What the Trainer computes (cross-entropy on the output) is the negative log-likelihood.
        target = _tokens(8, 4, seed=2).reshape(-1)
        torch.testing.assert_close(F.cross_entropy(log_p.reshape(-1, V), target),
                                   F.nll_loss(log_p.reshape(-1, V), target), rtol=0, atol=1e-12)


def test_gradients_reach_every_expert_and_every_layer():
    model = _model(dropouts=(0.1, 0.3, 0.2, 0.3), weight_drop=0.5, latent_dropout=0.3).train()
    log_p, _ = model(_tokens(10, 3))
    F.nll_loss(log_p.reshape(-1, V), _tokens(10, 3, seed=2).reshape(-1)).backward()
    latent_w, latent_b = model.latent.weight.grad.view(K, E, -1), model.latent.bias.grad.view(K, E)
    for k in range(K):
        assert latent_w[k].abs().sum() > 0 and latent_b[k].abs().sum() > 0, f"expert {k} gets no gradient"
        assert model.prior.weight.grad[k].abs().sum() > 0, f"prior of expert {k} gets no gradient"
    for name, p in model.named_parameters():
        assert p.grad is not None and p.grad.abs().sum() > 0, name


# --------------------------------------------------------------------------- regularisers

def test_weight_drop_is_one_inverted_dropconnect_mask_of_the_raw_weight():
    torch.manual_seed(0)
    w = torch.randn(40, 30)
    w[:, :5] = 0.0  # pruned columns
    dropped = weight_drop(w, 0.25, training=True)
    kept = dropped != 0
    torch.testing.assert_close(dropped[kept], w[kept] / 0.75)
    assert not kept[:, :5].any()
    assert 0.6 < kept[:, 5:].float().mean() < 0.9
    assert weight_drop(w, 0.25, training=False) is w and weight_drop(w, 0.0, training=True) is w


def test_dropout_and_weight_drop_only_in_training_and_the_raw_weights_untouched():
    model = _model(dropouts=(0.0, 0.0, 0.0, 0.0), weight_drop=0.5)
    raw = {n: p.detach().clone() for n, p in model.named_parameters()}
    tokens = _tokens(6, 2)
    model.eval()
    a, b = model(tokens)[0], model(tokens)[0]
    assert torch.equal(a, b)
    model.train()
    c = model(tokens)[0]
    assert not torch.allclose(a, c)  # weight drop alone changes the training-mode output
    for n, p in model.named_parameters():
        assert torch.equal(p, raw[n]), f"{n} changed by a forward pass"


# ------------------------------------------------------------------------ map and spectrum

def test_step_is_the_eval_mode_recurrence_and_the_output_reads_its_last_h():
    model = _model(dropouts=(0.1, 0.3, 0.2, 0.3), weight_drop=0.5, latent_dropout=0.3)
    tokens = _tokens(9, 3)
    log_p, state = model(tokens)
    x, s = model.embed(tokens), model.init_state(3)
    n_h = sum(model.layer_sizes)
    for t in range(9):
        s = model.step(x[t], s)
        g = s[:, n_h - H_LAST:n_h]  # the last layer's h
        logits = model.decoder(torch.tanh(model.latent(g)).view(3, K, E))
        torch.testing.assert_close(mixture_of_softmaxes(logits, model.prior(g)), log_p[t], rtol=0, atol=1e-12)
    torch.testing.assert_close(s, state, rtol=0, atol=1e-12)
    assert model.state_size == 2 * (H + H + H_LAST)


def test_analytic_jacobians_equal_autograd_in_both_conventions():
    model = _model(gain=0.8, weight_drop=0.5)
    torch.manual_seed(2)
    B, n_h = 3, 2 * H + H_LAST
    s, x = 0.5 * torch.randn(B, model.state_size, dtype=F64), torch.randn(B, E, dtype=F64)
    J = _autograd_jacobian(lambda s, x: model.step(x, s), s, x)
    # The authors' convention: h of every layer, c held as a constant input, J^T.
    J_h = _autograd_jacobian(lambda h, c, x: model.step(x, torch.cat([h, c], 1))[:, :n_h], s[:, :n_h], s[:, n_h:], x)
    for convention, n_want, want in (("full", model.state_size, J), ("paper", n_h, J_h.mT)):
        linearise, n = tangent_map(model, convention)
        assert n == n_want
        s_next, propagate = linearise(s, x)
        torch.testing.assert_close(s_next, model.step(x, s), rtol=0, atol=1e-14)
        torch.testing.assert_close(propagate(torch.eye(n, dtype=F64).expand(B, n, n)), want, rtol=0, atol=1e-13)


def test_analytic_spectrum_equals_the_autograd_engine():
    model = _model(gain=0.5)
    tokens = _tokens(15, 2)
    lam = model_spectrum(model, tokens, warmup=3)
    ref = lyapunov_spectrum(lambda h, x: model.step(x, h), model.init_state(2), model.embed(tokens).detach(),
                            warmup=3)
    assert lam.shape == (model.state_size,)
    # The lowest exponents (about -5) agree to 2e-10 relative: rounding, where a wrong Jacobian is off by 1e-2.
    torch.testing.assert_close(lam, ref, rtol=1e-8, atol=1e-12)
    paper, info = model_spectrum(model, tokens, convention="paper", return_info=True)
    assert info["n"] == 2 * H + H_LAST and torch.isfinite(paper).all()
    # Dropout settings do not enter the map: the same weights give the same spectrum.
    dropped = _model(gain=0.5, dropouts=(0.1, 0.5, 0.5, 0.5), weight_drop=0.5, latent_dropout=0.5)
    torch.testing.assert_close(model_spectrum(dropped.train(), tokens, warmup=3), lam, rtol=0, atol=0)


# --------------------------------------------------------------------- DST and training

def _masked_names():
    names = ["encoder.weight", "latent.weight", "prior.weight"]
    return sorted(names + [f"rnns.{l}.weight_{m}_l0" for l in range(3) for m in ("ih", "hh")])


@pytest.mark.parametrize("death", DEATH_MODES)
def test_dst_masks_every_matrix_once_and_holds_exact_counts(death):
    torch.set_num_threads(1)
    cfg = TrainConfig.preset("smoke", "awd_mos").replace(epochs=3, epoch_tokens=5 * 35 * 4)
    sparse = SparseConfig(density=0.45, sparse_init="ER" if death == "SET" else "uniform", death=death,
                          redistribution="nonzeros", death_rate=0.5)
    trainer = Trainer(cfg, load_corpus("smoke"), sparse, progress=False)
    dst = trainer.sparsity
    assert sorted(dst.masks) == _masked_names()  # the tied decoder is the embedding: masked once
    numels = {n: m.numel() for n, m in dst.masks.items()}
    if sparse.sparse_init == "uniform":  # every matrix at the density
        assert {n: int(m.sum()) for n, m in dst.masks.items()} == {n: round(0.45 * c) for n, c in numels.items()}
        total = sum(round(0.45 * c) for c in numels.values())
    else:  # ER: the total at the density
        total = round(0.45 * sum(numels.values()))
    assert dst.total_active == total
    params = dict(trainer.model.named_parameters())
    for _ in range(cfg.epochs):
        trainer.train_epoch()
        assert sum(int(m.sum()) for m in dst.masks.values()) == total
        for name, mask in dst.masks.items():
            assert (params[name][~mask] == 0).all(), name
    assert trainer.model.decoder.weight is trainer.model.encoder.weight
    assert dst.cycle == cfg.epochs - 1


def test_a_tiny_model_lowers_validation_perplexity_on_the_smoke_corpus():
    torch.set_num_threads(1)
    corpus = load_corpus("smoke")
    trainer = Trainer(TrainConfig.preset("smoke", "awd_mos").replace(epochs=2), corpus, progress=False)
    before = math.exp(trainer.evaluate("valid"))
    history = trainer.fit(2)
    after = history[-1]["valid_ppl"]
    # Below half the unigram perplexity (34.6): the model uses context, not just word frequencies.
    assert after < 0.5 * unigram_perplexity(corpus, "valid") and after < before / 4


# ------------------------------------------------------------------------ configuration

def test_presets_and_the_paper_size():
    paper = TrainConfig.preset("paper", "awd_mos")
    assert (paper.hidden_size, paper.num_layers, paper.last_hidden_size) == (1150, 3, 650)
    assert (paper.lr, paper.batch_size, paper.bptt, paper.dropouts) == (15.0, 15, 70, (0.1, 0.55, 0.2, 0.4))
    # Table 1: 35.0M parameters for the dense model on WikiText-2 (33,278 words).
    model = build_model("awd_mos", 33_278, emb_size=paper.emb_size, hidden_size=paper.hidden_size,
                        num_layers=3, last_hidden_size=paper.last_hidden_size, experts=paper.experts,
                        tie_weights=paper.tied)
    assert round(sum(p.numel() for p in model.parameters()) / 1e6, 1) == 34.9
    for scale in ("smoke", "cpu"):
        cfg = TrainConfig.preset(scale, "awd_mos")
        assert cfg.model == "awd_mos" and cfg.num_layers == 3 and cfg.experts >= 2
        assert TrainConfig.from_dict(cfg.to_dict()) == cfg


def test_other_models_keep_their_json_and_reject_mos_fields():
    lstm = TrainConfig.preset("smoke", "lstm")
    assert not {"last_hidden_size", "experts", "weight_drop", "latent_dropout"} & set(lstm.to_dict())
    assert TrainConfig.from_dict(lstm.to_dict()) == lstm
    with pytest.raises(ValueError, match=r"TrainConfig.experts applies only to model 'awd_mos'"):
        lstm.replace(experts=3)
    with pytest.raises(ValueError, match=r"TrainConfig.experts=None is not valid"):
        TrainConfig(model="awd_mos")
    with pytest.raises(ValueError, match=r"TrainConfig.weight_drop=1.0 is not valid"):
        TrainConfig.preset("smoke", "awd_mos").replace(weight_drop=1.0)


def test_bad_model_arguments_fail_before_building():
    with pytest.raises(ValueError, match=r"experts=0 is not valid"):
        AWDLSTMMoS(V, E, H, 3, experts=0)
    with pytest.raises(ValueError, match=r"last_hidden_size=-1 is not valid"):
        AWDLSTMMoS(V, E, H, 3, last_hidden_size=-1)
    with pytest.raises(ValueError, match=r"weight_drop=1.5 is not valid"):
        AWDLSTMMoS(V, E, H, 3, weight_drop=1.5)
    with pytest.raises(ValueError, match=r"dropouts must be four probabilities"):
        AWDLSTMMoS(V, E, H, 3, dropouts=(0.1, 0.2))


def test_lsh_search_selects_a_candidate_at_exactly_table_a1s_sparsity(tmp_path):
    """The search takes AWD-LSTM-MoS (Table 1's third model): its pick is pruned at 0.55, not
    at another model's sparsity, and its masks hold exactly that density."""
    torch.set_num_threads(1)
    config = tiny_search(pool=3, model="awd_mos", ls_steps=12, train_overrides={
        "batch_size": 8, "hidden_size": 8, "emb_size": 8, "last_hidden_size": 8, "experts": 2,
        "epoch_tokens": 8 * 35 * 4, "valid_tokens": 700})
    assert SearchConfig.from_json(config.to_json()) == config
    summary = run_search(config, tmp_path, device="cpu", reference_dir=tmp_path / "ref", progress=False)
    assert summary["selected"] is not None and summary["config"]["sparsity"] == 0.55
    study = SearchConfig.from_json(summary["config_json"]).resolved("cpu").study_name()
    path = tmp_path / "checkpoints" / study / f"c{summary['selected_candidate']:04d}.pt"
    trainer = Trainer.from_checkpoint(path, load_corpus("smoke"))
    dst = trainer.sparsity
    assert trainer.cfg.model == "awd_mos" and dst.config.density == 0.45
    kept = sum(int(m.sum()) for m in dst.masks.values())
    # Each weight matrix keeps round(0.45 n) (uniform) or the whole round(0.45 N) (ER), and DST keeps it.
    target = (sum(round(0.45 * m.numel()) for m in dst.masks.values()) if dst.config.sparse_init == "uniform"
              else round(0.45 * sum(m.numel() for m in dst.masks.values())))
    assert kept == target == dst.total_active
    for name, p in dst.params.items():
        assert not p[~dst.masks[name]].any(), f"{name} has non-zero pruned weights"
    # Run again: the finished search is read back, not retrained.
    assert run_search(config, tmp_path, device="cpu", reference_dir=tmp_path / "ref",
                      progress=False)["selected"] == summary["selected"]


def test_the_row_runs_on_the_smoke_corpus_at_budget_smoke():
    config = FX.sized(SearchConfig(model="awd_mos", budget="smoke"))
    same, says = T1.mos_search_config(config, "cpu")
    assert same == config and same.resolved("cpu").train_config().dataset == "smoke" and "smoke" in says
    assert FX.selfish_rnn_config(config, "cpu") == SparseConfig(density=0.45, **FX.SELFISH_RNN_MOS)
    with pytest.raises(ValueError, match=r"config.model must be 'awd_mos'; got 'lstm'"):
        T1.mos_search_config(SearchConfig(model="lstm", budget="smoke"))


def test_resume_equals_the_uninterrupted_run_bitwise(tmp_path):
    """Weight drop and every dropout draw from the trainer's own streams, which a checkpoint carries."""
    torch.set_num_threads(1)
    cfg = TrainConfig.preset("smoke", "awd_mos").replace(epochs=2, epoch_tokens=5 * 35 * 8, valid_tokens=700)
    sparse = SparseConfig(density=0.45, death_rate=0.5)
    corpus = load_corpus("smoke")
    straight = Trainer(cfg, corpus, sparse, progress=False)
    straight.fit(2)
    first = Trainer(cfg, corpus, sparse, progress=False)
    first.fit(1, checkpoint=tmp_path / "ckpt.pt")
    resumed = Trainer(cfg, corpus, sparse, progress=False)
    resumed.fit(2, checkpoint=tmp_path / "ckpt.pt")
    assert resumed.history[-1]["valid_loss"] == straight.history[-1]["valid_loss"]
    for (name, a), b in zip(straight.model.state_dict().items(), resumed.model.state_dict().values()):
        assert torch.equal(a, b), name


def test_the_row_runs_on_wikitext2_where_present_and_on_ptb_otherwise(monkeypatch):
    def missing(name, *a, **k):
        raise FileNotFoundError(f"{name} files not found")

    monkeypatch.setattr(T1, "load_corpus", missing)
    cpu = SearchConfig(model="awd_mos", budget="low", scale="cpu", seed=3)
    config, says = T1.mos_search_config(cpu, "cpu")
    assert config == cpu and config.resolved("cpu").train_config().dataset == "ptb"  # the cpu preset's
    assert "PTB" in says and "WikiText-2 files are not here" in says
    config, says = T1.mos_search_config(SearchConfig(model="awd_mos", budget="high", scale="paper"), "cpu")
    assert config.train_overrides == {"dataset": "ptb"}
    monkeypatch.setattr(T1, "load_corpus", lambda name, *a, **k: object())
    config, says = T1.mos_search_config(cpu, "cpu")
    train = config.resolved("cpu").train_config()
    assert train == TrainConfig.preset("cpu", "awd_mos").replace(dataset="wikitext2", seed=3)
    assert says.startswith("cpu scale on WikiText-2")
