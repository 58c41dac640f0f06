"""The Lyapunov-spectrum engine against ground truths (README, "The Lyapunov spectrum", paper Eq. 1, Appendix C)."""
import math

import pytest
import torch

from lshkit.ls import R_FLOOR, lyapunov_spectrum, model_spectrum, tangent_map
from lshkit.models import GRULM, RHN, RNNLM, StackedLSTM

V, E, H = 30, 5, 6
F64 = torch.float64


def _model(kind, gain=0.8):
    """A small model with weights uniform in [-gain, gain] (biases too, so every term matters)."""
    torch.manual_seed(0)
    model = {
        "lstm1": lambda: StackedLSTM(V, E, H, 1),
        "lstm3": lambda: StackedLSTM(V, E, H, 3),
        "gru": lambda: GRULM(V, E, H, 2),
        "rnn_tanh": lambda: RNNLM(V, E, H, 2, nonlinearity="tanh"),
        "rnn_relu": lambda: RNNLM(V, E, H, 2, nonlinearity="relu"),
        "rnn_relu_active": lambda: RNNLM(V, E, H, 2, nonlinearity="relu"),
        "rhn_coupled": lambda: RHN(V, E, H, depth=3, coupled=True, tie_weights=False),
        "rhn_uncoupled": lambda: RHN(V, E, H, depth=2, coupled=False, tie_weights=False),
    }[kind]().double().eval()
    with torch.no_grad():
        for p in model.parameters():
            p.uniform_(-gain, gain)
        if kind == "rnn_relu_active":  # positive weights and inputs keep every unit active
            for p in model.parameters():
                p.uniform_(0.0, gain / 2)
    return model


KINDS = ["lstm1", "lstm3", "gru", "rnn_tanh", "rnn_relu", "rhn_coupled", "rhn_uncoupled"]


def _tokens(T, K, seed=1):
    return torch.randint(V, (T, K), generator=torch.Generator().manual_seed(seed))


def _autograd_jacobian(f, *args):
    """Per-sample Jacobian of f w.r.t. its first argument, by autograd."""
    return torch.func.vmap(torch.func.jacrev(lambda *a: f(*(t.unsqueeze(0) for t in a)).squeeze(0)))(*args)


def _h_only(model):
    """The authors' LSTM map: h of every layer -> new h, with c held as a constant input."""
    LH = model.num_layers * model.hidden_size
    return lambda h, c, x: model.step(x, torch.cat([h, c], dim=1))[:, :LH]


# ----------------------------------------------------------------------- ground truths

def test_constant_non_normal_map_gives_log_abs_eigenvalues():
    """h -> W h: the exponents are log|eig W|, not the log singular values (README, "The Lyapunov spectrum")."""
    torch.manual_seed(0)
    eig = torch.tensor([1.2, -0.9, 0.6, 0.3], dtype=F64)
    S = torch.eye(4, dtype=F64) + 2.0 * torch.randn(4, 4, dtype=F64).triu(1)
    W = S @ torch.diag(eig) @ torch.linalg.inv(S)
    svals = torch.linalg.svdvals(W).log()
    expected = eig.abs().log()
    assert (svals - expected).abs().max() > 0.5  # the map is far from normal
    jacobian = lambda h, x: (h @ W.T, W.expand(2, 4, 4))  # noqa: E731
    lam = lyapunov_spectrum(lambda h, x: h @ W.T, torch.randn(2, 4, dtype=F64),
                            torch.zeros(250, 2, 1, dtype=F64), warmup=100, jacobian=jacobian)
    torch.testing.assert_close(lam, expected, rtol=0, atol=1e-9)


def test_sum_rule_on_a_nonlinear_map():
    """sum(lambda) = mean log|det J| over steps and samples, exactly, for the full spectrum."""
    torch.manual_seed(0)
    N, D, T, B = 5, 3, 30, 3
    W, U = 1.5 * torch.randn(N, N, dtype=F64) / N ** 0.5, torch.randn(N, D, dtype=F64)
    step = lambda h, x: torch.tanh(h @ W.T + x @ U.T)  # noqa: E731
    h0, xs = torch.randn(B, N, dtype=F64), torch.randn(T, B, D, dtype=F64)
    lam = lyapunov_spectrum(step, h0, xs, warmup=4)
    h, logdets = h0, []
    for t in range(T):
        if t >= 4:
            logdets.append(torch.linalg.slogdet(_autograd_jacobian(step, h, xs[t])).logabsdet)
        h = step(h, xs[t])
    assert math.isclose(lam.sum().item(), torch.stack(logdets).mean().item(), rel_tol=0, abs_tol=1e-10)
    assert torch.all(lam[:-1] >= lam[1:])


def test_henon_map():
    """Henon map (a = 1.4, b = 0.3): (0.41922, -1.62319); the Jacobians come from autograd."""
    torch.manual_seed(0)
    a, b = 1.4, 0.3

    def henon(h, x):
        return torch.stack([1 - a * h[:, 0] ** 2 + h[:, 1], b * h[:, 0]], dim=1)

    B = 256
    lam = lyapunov_spectrum(henon, 0.1 * torch.rand(B, 2, dtype=F64), torch.zeros(400, B, 1, dtype=F64),
                            warmup=100)
    torch.testing.assert_close(lam, torch.tensor([0.41922, -1.62319], dtype=F64), rtol=0, atol=0.01)
    assert math.isclose(lam.sum().item(), math.log(b), abs_tol=1e-9)  # det J = -b at every step


def test_given_jacobian_matches_autograd_and_top_k_is_the_leading_part():
    torch.manual_seed(0)
    N, B, T = 6, 2, 40
    W = 2.0 * torch.randn(N, N, dtype=F64) / N ** 0.5
    step = lambda h, x: torch.tanh(h @ W.T + x)  # noqa: E731

    def jacobian(h, x):
        h_next = step(h, x)
        return h_next, (1 - h_next ** 2).unsqueeze(-1) * W

    h0, xs = torch.randn(B, N, dtype=F64), torch.randn(T, B, N, dtype=F64)
    full = lyapunov_spectrum(step, h0, xs, warmup=5)
    torch.testing.assert_close(lyapunov_spectrum(step, h0, xs, warmup=5, jacobian=jacobian), full)
    # The first k columns of Q evolve independently of the others (Gram-Schmidt order).
    torch.testing.assert_close(lyapunov_spectrum(step, h0, xs, warmup=5, jacobian=jacobian, k=3), full[:3])


def test_zero_r_is_floored_not_infinite():
    """A singular direction gives r_ii = 0 exactly; its exponent is log(R_FLOOR), finite."""
    W = torch.tensor([[2.0, 1.0, 3.0], [0.0, 0.5, -1.0], [0.0, 0.0, 0.0]], dtype=F64)
    lam = lyapunov_spectrum(lambda h, x: h @ W.T, torch.ones(1, 3, dtype=F64), torch.zeros(10, 1, 1, dtype=F64))
    torch.testing.assert_close(lam, torch.tensor([math.log(2.0), math.log(0.5), math.log(R_FLOOR)], dtype=F64))


# ----------------------------------------------------------------- analytic Jacobians

@pytest.mark.parametrize("kind", KINDS)
def test_analytic_jacobians_equal_autograd(kind):
    """Appendix C Jacobians (both conventions) equal autograd's of model.step, and the
    linearisation's next state is model.step's."""
    model = _model(kind)
    torch.manual_seed(2)
    B = 3
    s, x = 0.5 * torch.randn(B, model.state_size, dtype=F64), torch.randn(B, E, dtype=F64)
    J = _autograd_jacobian(lambda s, x: model.step(x, s), s, x)
    for convention in ("full", "paper"):
        linearise, n = tangent_map(model, convention)
        s_next, propagate = linearise(s, x)
        torch.testing.assert_close(s_next, model.step(x, s), rtol=0, atol=1e-14)
        got = propagate(torch.eye(n, dtype=F64).expand(B, n, n))
        if convention == "full" or isinstance(model, RHN):
            want = J  # the authors' RHN code effectively propagates J.Q
        elif isinstance(model, StackedLSTM):
            LH = model.num_layers * H
            want = _autograd_jacobian(_h_only(model), s[:, :LH], s[:, LH:], x).mT
            assert n == LH
        else:
            want = J.mT
        assert got.shape == want.shape
        torch.testing.assert_close(got, want, rtol=0, atol=1e-13)


# A relu RNN with inactive units has a singular J whose lower exponents are rounding
# noise (different in any two correct implementations): compare on an active one
# (test_analytic_jacobians_equal_autograd covers inactive units).
@pytest.mark.parametrize("kind", [k for k in KINDS if k != "rnn_relu"] + ["rnn_relu_active"])
def test_full_convention_equals_generic_engine_on_model_step(kind):
    model = _model(kind)
    tokens = _tokens(12, 2)
    lam = model_spectrum(model, tokens, warmup=3)
    x = model.embed(tokens).detach()
    ref = lyapunov_spectrum(lambda h, x: model.step(x, h), model.init_state(2), x, warmup=3)
    # Float64 rounding apart, which the CPU's kernels set (up to 1.4e-12 on an AVX-512 Xeon).
    torch.testing.assert_close(lam, ref, rtol=0, atol=1e-11)
    assert lam.shape == (model.state_size,)


@pytest.mark.parametrize("kind", ["lstm3", "gru", "rhn_coupled"])
def test_top_k_is_the_leading_part_of_the_full_spectrum(kind):
    """The first k columns of Q evolve on their own: "paper" (unsorted) top-k is exactly
    its first k exponents at any T; "full" top-k is the top of the sorted spectrum once
    the run is long enough for the column means to be in order."""
    model = _model(kind)
    tokens = _tokens(15, 2)
    paper = model_spectrum(model, tokens, convention="paper", warmup=3, stable_warmup=True)
    torch.testing.assert_close(model_spectrum(model, tokens, convention="paper", warmup=3, stable_warmup=True, k=4),
                               paper[:4], rtol=0, atol=1e-12)
    tokens = _tokens(40, 2)
    full = model_spectrum(model, tokens, warmup=10)
    torch.testing.assert_close(model_spectrum(model, tokens, k=4, warmup=10), full[:4], rtol=0, atol=1e-12)


def test_float32_close_to_float64():
    model = _model("lstm3", gain=0.5)
    tokens = _tokens(35, 2)
    lam64 = model_spectrum(model, tokens)
    lam32 = model_spectrum(model, tokens, dtype=torch.float32)
    assert lam32.dtype == torch.float32 and next(model.parameters()).dtype == F64
    torch.testing.assert_close(lam32.double(), lam64, rtol=0, atol=1e-4)
    p64 = model_spectrum(model, tokens, convention="paper", stable_warmup=True)
    p32 = model_spectrum(model, tokens, convention="paper", stable_warmup=True, dtype=torch.float32)
    torch.testing.assert_close(p32.double(), p64, rtol=0, atol=1e-4)


# ------------------------------------------------------------------- paper convention

def _paper_reference(model, tokens, warmup, transpose):
    """A plain implementation of the authors' loop (README, "The Lyapunov spectrum") with autograd Jacobians:
    warm-up products without QR on the first `warmup` inputs, one QR, then QR every step
    over all T inputs again, log2, unsorted. `transpose` picks J^T.Q (theirs) or J.Q."""
    x = model.embed(tokens).detach()
    T, K = tokens.shape
    state = model.init_state(K)
    lstm = isinstance(model, StackedLSTM)
    n = model.num_layers * H if lstm else model.state_size

    def jac(state, x_t):
        if lstm:
            return _autograd_jacobian(_h_only(model), state[:, :n], state[:, n:], x_t)
        return _autograd_jacobian(lambda s, x: model.step(x, s), state, x_t)

    Q = torch.eye(n, dtype=F64).expand(K, n, n)
    for t in range(warmup):
        J = jac(state, x[t])
        Q = (J.mT if transpose else J) @ Q
        state = model.step(x[t], state)
    if warmup:
        Q = torch.linalg.qr(Q).Q
    total = torch.zeros(n, dtype=F64)
    for t in range(T):
        J = jac(state, x[t])
        Q, R = torch.linalg.qr((J.mT if transpose else J) @ Q)
        total += R.diagonal(dim1=-2, dim2=-1).abs().log2().sum(0)
        state = model.step(x[t], state)
    return total / (K * T)


@pytest.mark.parametrize("kind", ["lstm3", "gru", "rnn_tanh"])
def test_paper_convention_is_the_authors_transposed_loop(kind):
    """"paper" = J^T.Q (h only, c frozen for the LSTM), replayed warm-up without QR, log2,
    unsorted; and J^T really is applied: the J.Q loop gives a different spectrum."""
    model = _model(kind, gain=1.5)
    tokens = _tokens(20, 2)
    lam, info = model_spectrum(model, tokens, convention="paper", warmup=3, return_info=True)
    ref = _paper_reference(model, tokens, 3, transpose=True)
    # The warm-up multiplies Jacobians without QR, so the weakest directions carry its condition
    # number times the rounding, which the CPU's kernels set (3e-8 on an AVX-512 Xeon).
    torch.testing.assert_close(lam, ref, rtol=0, atol=1e-6)
    assert (lam - _paper_reference(model, tokens, 3, transpose=False)).abs().max() > 0.02
    assert info["warmup_mode"] == "paper (no QR)" and info["log_base"] == 2 and info["replay"]
    assert (info["K"], info["T"], info["n"], info["dtype"]) == (2, 20, model.num_layers * H, "float64")
    assert isinstance(info["seconds"], float)
    assert not torch.all(lam[:-1] >= lam[1:])  # unsorted: the QR's column order


def test_paper_rhn_is_full_in_bits_unsorted():
    """For the RHN the authors propagate J.Q on the whole state: without warm-up "paper"
    is "full" in log base 2 and QR column order."""
    model = _model("rhn_coupled", gain=1.5)
    tokens = _tokens(20, 2)
    paper = model_spectrum(model, tokens, convention="paper", warmup=0)
    full = model_spectrum(model, tokens)
    torch.testing.assert_close(paper.sort(descending=True).values * math.log(2), full, rtol=0, atol=1e-12)


def test_stable_warmup_switch():
    """Without warm-up both modes are one computation. With the authors' 10 warm-up
    steps without QR the result depends on rounding (float32 against float64); how much
    depends on the threads and BLAS kernels, so the test asks what holds on any machine: the
    stable warm-up agrees to 1e-4, and the authors' is worse by a wide margin."""
    model = _model("lstm3", gain=1.5)
    tokens = _tokens(15, 2)
    ill = model_spectrum(model, tokens, convention="paper", warmup=0, stable_warmup=False)
    stable, info = model_spectrum(model, tokens, convention="paper", warmup=0, stable_warmup=True,
                                  return_info=True)
    assert torch.equal(ill, stable) and info["warmup_mode"] == "stable"
    torch.manual_seed(0)
    model = StackedLSTM(V, 16, 16, 2).double().eval()
    tokens = _tokens(35, 2)
    gap = {}
    for stable_warmup in (False, True):
        runs = [model_spectrum(model, tokens, convention="paper", stable_warmup=stable_warmup, dtype=dtype)
                for dtype in (torch.float32, F64)]
        gap[stable_warmup] = (runs[0].double() - runs[1]).abs().max().item()
    assert gap[True] < 1e-4 and gap[False] > 30 * max(gap[True], 1e-7)


# ------------------------------------------------------------------ pruning and misc

def test_pruned_row_gives_finite_exponents():
    """A hidden unit whose rows of W_ih and W_hh are all zero: J is singular (r_ii -> 0),
    yet every exponent is finite; for the RNN the zero stays exact and hits the floor."""
    rnn = _model("rnn_tanh")
    with torch.no_grad():  # the last unit of the top layer: J's last row is exactly zero
        rnn.rnn.weight_ih_l1[-1].zero_()
        rnn.rnn.weight_hh_l1[-1].zero_()
    lam = model_spectrum(rnn, _tokens(10, 2))
    assert torch.isfinite(lam).all() and lam[-1].item() == pytest.approx(math.log(R_FLOOR))
    lstm = _model("lstm3")
    with torch.no_grad():
        for gate in range(4):
            lstm.rnn.weight_ih_l2[gate * H + H - 1].zero_()
            lstm.rnn.weight_hh_l2[gate * H + H - 1].zero_()
    for dtype in (torch.float32, F64):
        for convention in ("full", "paper"):
            lam = model_spectrum(lstm, _tokens(10, 2), convention=convention, dtype=dtype)
            assert torch.isfinite(lam).all()


def test_model_left_as_it_was():
    model = _model("lstm1").train()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    model_spectrum(model, _tokens(5, 2), dtype=torch.float32)
    assert model.training and all(torch.equal(v, before[k]) for k, v in model.state_dict().items())
    assert next(model.parameters()).dtype == F64


@pytest.mark.parametrize("kwargs, match", [
    ({"convention": "exact"}, "convention"),
    ({"k": 0}, "k=0"),
    ({"k": 2 * 2 * H + 1}, "k="),
    ({"warmup": 8}, "warmup=8"),
    ({"warmup": -1}, "warmup"),
    ({"dtype": torch.float16}, "dtype"),
    ({"stable_warmup": "yes"}, "stable_warmup"),
])
def test_bad_arguments_raise_before_compute(kwargs, match):
    with pytest.raises(ValueError, match=match):
        model_spectrum(_model("lstm1"), _tokens(8, 2), **kwargs)


def test_bad_inputs_raise():
    with pytest.raises(ValueError, match="tokens"):
        model_spectrum(_model("lstm1"), _tokens(8, 2)[:, 0])
    with pytest.raises(TypeError, match="StackedLSTM"):
        model_spectrum(torch.nn.Linear(2, 2), _tokens(8, 2))
    with pytest.raises(ValueError, match="inputs"):
        lyapunov_spectrum(lambda h, x: h, torch.zeros(2, 3), torch.zeros(5, 3, 1))
