"""Lyapunov spectrum (LS) of recurrent maps: paper Eq. 1 and Appendix C, README, "The Lyapunov spectrum".

Eq. 1 on a map ``h_t = f(h_{t-1}, x_t)``: start from ``Q_0 = I`` (its first k
columns for the top k exponents), then every step ``Q_t R_t = qr(J_t Q_{t-1})``
with ``J_t = df/dh`` at ``(h_{t-1}, x_t)``; the i-th exponent is the mean of
``log|r_ii|`` over the steps after warm-up and over the K samples. One batched
QR per step serves all K samples.

- :func:`lyapunov_spectrum`: any map ``step(h [B,N], x [B,D]) -> h [B,N]``, Jacobians
  by autograd (``torch.func.jacrev`` vectorised with ``vmap`` over the batch) or given.
- :func:`model_spectrum`: lshkit's models (:mod:`lshkit.models`) with analytic
  Jacobians (Appendix C), in the exact convention ``"full"`` or the authors'
  convention ``"paper"`` (the differences are listed in its docstring).
- :func:`tangent_map`: the one-step linearisation those analytic Jacobians define.

A zero ``r_ii`` (a fully pruned row or column makes ``J`` singular) would give
``log 0 = -inf``; every ``|r_ii|`` is clamped to :data:`R_FLOOR` before the log,
so a direction that is annihilated contributes ``log(1e-30)`` (-69.08 nats,
-99.66 bits) per step and the spectrum stays finite in float32 and float64 alike.
Column signs are never flipped (only ``|r_ii|`` enters), so a zero ``r_ii``
cannot zero a column of ``Q`` as the authors' sign fix does.
"""
from __future__ import annotations

import math
import time

import torch
from torch import nn

from .checks import check_choice, check_int
from .models import AWDLSTMMoS, GRULM, RHN, RNNLM, StackedLSTM
from .vocab import LS_CONVENTIONS as CONVENTIONS

__all__ = ["R_FLOOR", "CONVENTIONS", "lyapunov_spectrum", "model_spectrum", "tangent_map"]

#: Floor on |r_ii| before the log (representable in float32, dtype-independent).
R_FLOOR = 1e-30
#: Warm-up steps of the authors' code (README, "The Lyapunov spectrum").
PAPER_WARMUP = 10
_DTYPES = (torch.float32, torch.float64)


def _qr(a):
    """Q [B,N,k] and diag(R) [B,k] of a batched Householder QR. geqrf + orgqr
    (householder_product) gives the same Q as torch.linalg.qr without copying R out,
    which measures 10-15% faster on CPU at N = 512-2048."""
    a, tau = torch.geqrf(a)
    return torch.linalg.householder_product(a, tau), a.diagonal(dim1=-2, dim2=-1)


def _eq1(linearise, state, inputs, q, *, warmup, stable_warmup, replay):
    """Eq. 1's loop. Returns the mean natural log of |r_ii| per column of ``q`` (unsorted).

    ``linearise(state, x) -> (next_state, propagate)`` with ``propagate(Q)`` the
    tangent propagation of one step. Warm-up consumes ``inputs[:warmup]``; the mean
    then runs over ``inputs`` again (``replay``, the authors' code) or over
    ``inputs[warmup:]``.
    """
    for x in inputs[:warmup]:
        state, propagate = linearise(state, x)
        q = propagate(q)
        if stable_warmup:
            q = _qr(q)[0]
        else:
            # The authors multiply without QR. Unit columns keep float32 from
            # overflowing and leave every span (hence the result) unchanged in exact arithmetic.
            q = q / torch.linalg.vector_norm(q, dim=1, keepdim=True).clamp_min(R_FLOOR)
    if warmup and not stable_warmup:
        q = _qr(q)[0]
    steps = inputs if replay else inputs[warmup:]
    total = q.new_zeros(q.shape[-1])
    for x in steps:
        state, propagate = linearise(state, x)
        q, r = _qr(propagate(q))
        total += r.abs().clamp_min(R_FLOOR).log().sum(0)
    return total / (len(steps) * q.shape[0])


def _initial_basis(batch, n, k, dtype, device):
    return torch.eye(n, k, dtype=dtype, device=device).expand(batch, n, k).contiguous()


def _autograd_jacobian(step):
    """``(h, x) -> (step(h, x), J [B,N,N])`` by reverse-mode autograd, vmapped over the batch."""
    def one(h, x):
        out = step(h.unsqueeze(0), x.unsqueeze(0)).squeeze(0)
        return out, out

    jac = torch.func.vmap(torch.func.jacrev(one, has_aux=True))

    def jacobian(h, x):
        J, h_next = jac(h, x)
        return h_next, J
    return jacobian


def lyapunov_spectrum(step, h0, inputs, *, warmup=0, k=None, jacobian=None, dtype=None):
    """LS of any recurrent map (paper Eq. 1), natural log, sorted descending.

    Args:
        step: ``step(h [B,N], x [B,D]) -> h [B,N]``, one step of the map on a batch of
            independent samples.
        h0: initial state ``[B, N]``.
        inputs: ``[T, B, D]``.
        warmup: leading steps that evolve ``h`` and ``Q`` (orthonormalised every step)
            without entering the mean; the mean runs over the other ``T - warmup`` steps.
        k: number of exponents (default ``N``); only ``N x k`` tangent vectors are
            propagated, so a step costs ``O(N^2 k)`` besides forming ``J``.
        jacobian: optional analytic ``jacobian(h, x) -> (step(h, x), J [B,N,N])``;
            by default autograd (``torch.func.jacrev`` + ``vmap`` over the batch).
        dtype: float32 or float64 for ``h``, floating inputs and ``Q`` (default: ``h0``'s);
            ``step`` must compute in that dtype.

    Returns:
        Tensor ``[k]``: the top ``k`` exponents per step, each the mean over the
        ``B`` samples and the steps after warm-up of ``log|r_ii|``.
    """
    if not isinstance(h0, torch.Tensor) or h0.dim() != 2:
        raise ValueError(f"h0 must be a [B, N] tensor, got {getattr(h0, 'shape', type(h0))}")
    if not isinstance(inputs, torch.Tensor) or inputs.dim() != 3 or inputs.size(1) != h0.size(0):
        raise ValueError(f"inputs must be a [T, B, D] tensor with B = {h0.size(0)} (h0's batch), "
                         f"got {getattr(inputs, 'shape', type(inputs))}")
    batch, n = h0.shape
    check_int("warmup", warmup, 0, high=inputs.size(0) - 1)
    k = n if k is None else k
    check_int("k", k, 1, high=n)
    dtype = h0.dtype if dtype is None else dtype
    check_choice("dtype", dtype, _DTYPES)
    h = h0.to(dtype)
    xs = inputs.to(dtype) if inputs.is_floating_point() else inputs
    jac = _autograd_jacobian(step) if jacobian is None else jacobian

    def linearise(h, x):
        h_next, J = jac(h, x)
        return h_next.detach(), lambda q: J.detach() @ q

    q = _initial_basis(batch, n, k, dtype, h.device)
    with torch.no_grad():
        lam = _eq1(linearise, h, xs, q, warmup=warmup, stable_warmup=True, replay=False)
    return lam.sort(descending=True).values


# ---------------------------------------------------------------------------------
# Analytic Jacobians (Appendix C). Every ``propagate`` applies J (or J^T) to Q
# through the weight matrices with per-row scale vectors (diag(v) @ W as v[:, None] * W),
# never through dense diagonal matrices.


def _col(v):
    """[B, H] -> [B, H, 1]: a row scale for a stack of tangent vectors [B, H, k]."""
    return v.unsqueeze(-1)


def _gate_blocks_t(w, gates):
    """W [gates*H, M] -> the transposed gate blocks W_g^T as one contiguous [gates, M, H]."""
    return w.view(gates, w.size(0) // gates, -1).transpose(1, 2).contiguous()


def _scaled_sum_t(v, w_t):
    """(sum_g diag(v_g) W_g)^T = sum_g W_g^T diag(v_g) for row scales v [B, gates*H] and
    w_t = _gate_blocks_t(W) -> [B, M, H]. Scaling columns of the contiguous W_g^T runs
    along memory, which is several times faster than scaling rows of W_g."""
    gates, _, H = w_t.shape
    v = v.view(v.size(0), gates, 1, H)
    out = v[:, 0] * w_t[0]
    for g in range(1, gates):
        out.addcmul_(v[:, g], w_t[g])
    return out


def _fused_layers(model, dtype):
    """Per layer (W_ih, W_hh, b_ih, b_hh) of a fused torch RNN, detached, in ``dtype``."""
    rnn = model.rnn
    if getattr(rnn, "proj_size", 0):
        raise ValueError(f"LSTM proj_size={rnn.proj_size} is not supported; use proj_size=0")
    layers = []
    for l in range(model.num_layers):
        w_ih, w_hh = getattr(rnn, f"weight_ih_l{l}"), getattr(rnn, f"weight_hh_l{l}")
        b_ih = getattr(rnn, f"bias_ih_l{l}", None)
        b_hh = getattr(rnn, f"bias_hh_l{l}", None)
        b_ih = w_ih.new_zeros(w_ih.size(0)) if b_ih is None else b_ih
        b_hh = w_hh.new_zeros(w_hh.size(0)) if b_hh is None else b_hh
        layers.append(tuple(t.detach().to(dtype) for t in (w_ih, w_hh, b_ih, b_hh)))
    return layers


def _lstm(model, dtype, convention):
    """Stacked LSTM (Appendix C.1): :func:`_lstm_stack` on the layers of the fused ``nn.LSTM``."""
    return _lstm_stack(_fused_layers(model, dtype), [model.hidden_size] * model.num_layers, convention)


def _mos(model, dtype, convention):
    """AWD-LSTM-MoS: its recurrence is a stack of LSTM layers of their own sizes (Table A1:
    1150, 1150, 650); weight drop and every dropout are off in the map (eval mode), and the
    mixture-of-softmaxes decoder is not part of it."""
    layers = [tuple(t.detach().to(dtype) for t in model.layer_weights(l)) for l in range(model.num_layers)]
    return _lstm_stack(layers, list(model.layer_sizes), convention)


def _lstm_stack(layers, sizes, convention):
    """LSTM layers ``(W_ih, W_hh, b_ih, b_hh)`` of ``sizes`` H_l, state ``[h_1..h_L, c_1..c_L]``.

    "full": J.Q over (h, c). With pre-activation tangents ``G = W_hh dh_l + W_ih dh'_{l-1}``:
    ``dc' = i(1-i)g G_i + f(1-f)c G_f + i(1-g^2) G_g + f dc`` and
    ``dh' = o(1-o)tanh(c') G_o + o(1-tanh^2 c') dc'``.
    "paper": J^T.Q over h only with c frozen: ``dh'_l/dpre = v_l`` (the row scales
    above with ``dc = 0``), ``J_ll = sum_g diag(v_lg) U_lg``, and layer l sees the new
    h of layer l-1 through ``A_l = sum_g diag(v_lg) W_lg``, so J is block lower
    triangular (``J_lm = A_l J_(l-1)m``). ``J_ll^T`` and ``A_l^T`` are formed (O(H^2)
    each, as column-scaled ``W_g^T``) and J^T Q is applied block by block as a reverse
    sweep, ``out_l = J_ll^T cot_l``, ``cot_(l-1) = Q_(l-1) + A_l^T cot_l``: 2L-1
    products of H x H blocks (3/4 of the flops of one (LH x LH) product for L = 2),
    J itself is never built.
    """
    L, n_h = len(sizes), sum(sizes)
    starts = [sum(sizes[:l]) for l in range(L)]
    h_at = [slice(a, a + H) for a, H in zip(starts, sizes)]  # layer l's rows among the h
    c_at = [slice(n_h + a, n_h + a + H) for a, H in zip(starts, sizes)]
    if convention == "paper":  # layer 0's input matrix never enters J
        blocks_t = [(_gate_blocks_t(w_ih, 4) if l else None, _gate_blocks_t(w_hh, 4))
                    for l, (w_ih, w_hh, _, _) in enumerate(layers)]

    def linearise(state, x):
        hs, cs, scales = [], [], []
        inp = x
        for l, (w_ih, w_hh, b_ih, b_hh) in enumerate(layers):
            h_l, c_l = state[:, h_at[l]], state[:, c_at[l]]
            i, f, g, o = (torch.addmm(b_ih, inp, w_ih.T) + torch.addmm(b_hh, h_l, w_hh.T)).chunk(4, dim=1)
            i, f, g, o = i.sigmoid(), f.sigmoid(), g.tanh(), o.sigmoid()
            c_new = f * c_l + i * g
            tc = c_new.tanh()
            hs.append(o * tc)
            cs.append(c_new)
            inp = hs[-1]
            a_i, a_f, a_g, a_o = i * (1 - i) * g, f * (1 - f) * c_l, i * (1 - g * g), o * (1 - o) * tc
            b = o * (1 - tc * tc)
            scales.append((a_i, a_f, a_g, a_o, b, f))
        state_next = torch.cat(hs + cs, dim=1)

        if convention == "full":
            def propagate(q):
                dhs, dcs, dh_in = [], [], None
                for l, (w_ih, w_hh, _, _) in enumerate(layers):
                    a_i, a_f, a_g, a_o, b, f = scales[l]
                    G = torch.matmul(w_hh, q[:, h_at[l]])
                    if l:
                        G = G + torch.matmul(w_ih, dh_in)
                    G_i, G_f, G_g, G_o = G.split(sizes[l], dim=1)
                    dc = (_col(a_i) * G_i + _col(a_f) * G_f + _col(a_g) * G_g
                          + _col(f) * q[:, c_at[l]])
                    dh_in = _col(a_o) * G_o + _col(b) * dc
                    dhs.append(dh_in)
                    dcs.append(dc)
                return torch.cat(dhs + dcs, dim=1)
            return state_next, propagate

        J_t, A_t = [], [None]
        for l, (w_ih_t, w_hh_t) in enumerate(blocks_t):
            a_i, a_f, a_g, a_o, b, _ = scales[l]
            v = torch.cat([b * a_i, b * a_f, b * a_g, a_o], dim=1)
            J_t.append(_scaled_sum_t(v, w_hh_t))
            if l:
                A_t.append(_scaled_sum_t(v, w_ih_t))

        def propagate(q):
            out = [None] * L
            cot = q[:, h_at[L - 1]]
            for l in range(L - 1, -1, -1):
                out[l] = J_t[l] @ cot
                if l:
                    cot = q[:, h_at[l - 1]] + A_t[l] @ cot
            return torch.cat(out, dim=1)
        return state_next, propagate

    return linearise, (n_h if convention == "paper" else 2 * n_h)


def _stack_propagation(convention, L, H, up, down):
    """The tangent map of a stack of ``L`` layers of ``H`` units, whose state is the layers'
    states side by side. "full" applies J bottom-up: ``up(l, q_l, dh_below)`` is layer l's block
    of J q from its own block of q and the layer below's result (None at the bottom). "paper"
    applies J^T top-down: ``down(l, cot)`` is layer l's block of J^T q and the cotangent it
    passes to the layer below (None at the bottom), to which that layer's block of q is added."""
    if convention == "full":
        def propagate(q):
            outs, below = [], None
            for l in range(L):
                below = up(l, q[:, l * H:(l + 1) * H], below)
                outs.append(below)
            return torch.cat(outs, dim=1)
        return propagate

    def propagate(q):
        out = [None] * L
        cot = q[:, (L - 1) * H:]
        for l in range(L - 1, -1, -1):
            out[l], passed = down(l, cot)
            if l:
                cot = q[:, (l - 1) * H:l * H] + passed
        return torch.cat(out, dim=1)
    return propagate


def _gru(model, dtype, convention):
    """GRU (PyTorch gates r, z, n): ``n = tanh(x_n + r hh_n)``, ``h' = (1-z) n + z h``.

    With ``alpha = (1-z)(1-n^2)``: ``dh' = alpha (G^x_n + r G^h_n + hh_n r(1-r) dpre_r)
    + (h-n) z(1-z) dpre_z + z dh``, where G^h = W_hh dh and G^x = W_ih dh'_(l-1).
    "full" applies J, "paper" J^T (the reverse sweep of the same expression).
    """
    L, H = model.num_layers, model.hidden_size
    layers = _fused_layers(model, dtype)

    def linearise(state, x):
        hs, scales = [], []
        inp = x
        for l, (w_ih, w_hh, b_ih, b_hh) in enumerate(layers):
            h_l = state[:, l * H:(l + 1) * H]
            xr, xz, xn = torch.addmm(b_ih, inp, w_ih.T).chunk(3, dim=1)
            hr, hz, hn = torch.addmm(b_hh, h_l, w_hh.T).chunk(3, dim=1)
            r, z = (xr + hr).sigmoid(), (xz + hz).sigmoid()
            n = (xn + r * hn).tanh()
            hs.append((1 - z) * n + z * h_l)
            inp = hs[-1]
            alpha = (1 - z) * (1 - n * n)
            scales.append((alpha, r, alpha * hn * r * (1 - r), (h_l - n) * z * (1 - z), z))
        state_next = torch.cat(hs, dim=1)

        def up(l, q_l, dh_in):
            w_ih, w_hh = layers[l][0], layers[l][1]
            alpha, r, a_r, a_z, z = scales[l]
            d_r, d_z, Gh_n = torch.matmul(w_hh, q_l).split(H, dim=1)
            d_n = _col(r) * Gh_n
            if dh_in is not None:
                Gx_r, Gx_z, Gx_n = torch.matmul(w_ih, dh_in).split(H, dim=1)
                d_r, d_z, d_n = d_r + Gx_r, d_z + Gx_z, d_n + Gx_n
            return _col(alpha) * d_n + _col(a_r) * d_r + _col(a_z) * d_z + _col(z) * q_l

        def down(l, cot):
            w_ih, w_hh = layers[l][0], layers[l][1]
            alpha, r, a_r, a_z, z = scales[l]
            g_r, g_z, g_n = _col(a_r) * cot, _col(a_z) * cot, _col(alpha) * cot
            mine = torch.matmul(w_hh.T, torch.cat([g_r, g_z, _col(r) * g_n], dim=1)) + _col(z) * cot
            return mine, (torch.matmul(w_ih.T, torch.cat([g_r, g_z, g_n], dim=1)) if l else None)

        return state_next, _stack_propagation(convention, L, H, up, down)

    return linearise, L * H


def _rnn(model, dtype, convention):
    """Elman RNN: ``h' = phi(W_ih x + W_hh h + b)``, ``dh' = phi'(pre) (W_hh dh + W_ih dh'_(l-1))``;
    phi' is ``1 - h'^2`` (tanh) or ``1[pre > 0]`` (relu, autograd's choice at 0).
    "full" applies J, "paper" J^T."""
    L, H = model.num_layers, model.hidden_size
    layers = _fused_layers(model, dtype)
    relu = model.nonlinearity == "relu"

    def linearise(state, x):
        hs, slopes = [], []
        inp = x
        for l, (w_ih, w_hh, b_ih, b_hh) in enumerate(layers):
            pre = torch.addmm(b_ih, inp, w_ih.T) + torch.addmm(b_hh, state[:, l * H:(l + 1) * H], w_hh.T)
            h_new = pre.relu() if relu else pre.tanh()
            slopes.append((pre > 0).to(pre.dtype) if relu else 1 - h_new * h_new)
            hs.append(h_new)
            inp = h_new
        state_next = torch.cat(hs, dim=1)

        def up(l, q_l, dh_in):
            G = torch.matmul(layers[l][1], q_l)
            if dh_in is not None:
                G = G + torch.matmul(layers[l][0], dh_in)
            return _col(slopes[l]) * G

        def down(l, cot):
            P = _col(slopes[l]) * cot
            return torch.matmul(layers[l][1].T, P), (torch.matmul(layers[l][0].T, P) if l else None)

        return state_next, _stack_propagation(convention, L, H, up, down)

    return linearise, L * H


def _rhn(model, dtype, convention):
    """RHN (Appendix C.2): ``J = J_D ... J_1`` over the ``D`` micro-steps, each
    ``ds' = e(1-p^2) R_P ds + p e(1-e) R_E ds + c ds + s dc`` with ``dc = -de``
    (coupled) or ``c(1-c) R_C ds``. Both conventions apply J (the authors' RHN
    Jacobian is built transposed and transposed back, README, "The Lyapunov spectrum")."""
    H = model.hidden_size
    w_x = model.W.weight.detach().to(dtype)
    micro = [(m.weight.detach().to(dtype),
              (m.bias if m.bias is not None else m.weight.new_zeros(m.weight.size(0))).detach().to(dtype))
             for m in model.R]

    def linearise(state, x):
        wx = x @ w_x.T
        s, scales = state, []
        for l, (w, b) in enumerate(micro):
            pre = torch.addmm(b, s, w.T)
            if l == 0:
                pre = pre + wx
            p, e = pre[:, :H].tanh(), pre[:, H:2 * H].sigmoid()
            de = e * (1 - e)
            if model.coupled:
                c = 1 - e
                scales.append((e * (1 - p * p), (p - s) * de, None, c))
            else:
                c = pre[:, 2 * H:].sigmoid()
                scales.append((e * (1 - p * p), p * de, s * c * (1 - c), c))
            s = p * e + s * c

        def propagate(q):
            for (w, _), (a_p, a_e, a_c, c) in zip(micro, scales):
                Y = torch.matmul(w, q).split(H, dim=1)
                dq = _col(a_p) * Y[0] + _col(a_e) * Y[1] + _col(c) * q
                if a_c is not None:
                    dq = dq + _col(a_c) * Y[2]
                q = dq
            return q
        return s, propagate

    return linearise, H


_BUILDERS = ((StackedLSTM, _lstm), (AWDLSTMMoS, _mos), (GRULM, _gru), (RNNLM, _rnn), (RHN, _rhn))


def _resolve_dtype(model, dtype):
    dtype = next(model.parameters()).dtype if dtype is None else dtype
    check_choice("dtype", dtype, _DTYPES)
    return dtype


def tangent_map(model: nn.Module, convention: str = "full", dtype=None):
    """One-step linearisation of an lshkit model with analytic Jacobians (Appendix C).

    Returns ``(linearise, n)``: ``linearise(state [B, state_size], x [B, D]) ->
    (next_state, propagate)`` where ``next_state`` equals ``model.step(x, state)``
    and ``propagate(Q [B, n, k])`` is ``J @ Q`` for ``"full"`` (and for the RHN under
    ``"paper"``) or ``J^T @ Q`` for ``"paper"``; ``n`` is the tangent dimension
    (``state_size``, or ``L*H`` for the LSTMs under ``"paper"`` (StackedLSTM; the sum
    of the layer sizes for AWDLSTMMoS), whose J is that of
    h only with c frozen). Weights are detached copies in ``dtype`` (default: the
    model's); the model is not changed. Tensors stay on the model's device.
    """
    check_choice("convention", convention, CONVENTIONS)
    for cls, build in _BUILDERS:
        if isinstance(model, cls):
            return build(model, _resolve_dtype(model, dtype), convention)
    raise TypeError(f"model of type {type(model).__name__} has no analytic Jacobian; "
                    f"valid types: {[cls.__name__ for cls, _ in _BUILDERS]} "
                    f"(use lyapunov_spectrum(model.step, ...) for other maps)")


def model_spectrum(model: nn.Module, tokens: torch.Tensor, *, convention: str = "full",
                   warmup: int | None = None, k: int | None = None, dtype=None,
                   stable_warmup: bool | None = None, return_info: bool = False):
    """LS of an lshkit model driven by ``tokens`` (paper Eq. 1, Appendix C; README, "The Lyapunov spectrum").

    ``tokens`` is ``[T, K]``: K samples of T steps (the paper: K = 2 samples of 35
    validation tokens, README, "The Lyapunov spectrum"). The inputs are ``model.embed(tokens)`` in eval mode
    (the model's mode is restored afterwards); ``h_0 = 0``, ``Q_0 = I`` (first k
    columns), one QR per step batched over the K samples, ``|r_ii|`` floored at
    :data:`R_FLOOR`. ``dtype`` (float32/float64, default the model's) is the precision
    of the whole computation; the weights are cast copies, the model is untouched.

    ``convention="full"``, the exact LS of the recurrent map on its whole state
    (``model.step``): J.Q, natural log, sorted descending, ``warmup=0`` by default;
    warm-up steps (orthonormalised) consume the first ``warmup`` inputs and the mean
    runs over the remaining ``T - warmup``.

    ``convention="paper"``, the authors' convention, departs from "full" exactly here:

    1. state (StackedLSTM and AWDLSTMMoS; for the others it is the whole state in both):
       h of every layer, ``N = L*H`` instead of ``2*L*H`` (AWDLSTMMoS: the sum of its
       layer sizes, 1150 + 1150 + 650 = 2950 at Table A1's size);
       c follows its true trajectory but is held constant in J (no dh/dc, no c->c
       path); layer l still sees the new h of layer l-1, so J is block lower triangular;
    2. propagation: ``J^T . Q`` for StackedLSTM, AWDLSTMMoS, GRULM and RNNLM; ``J . Q`` for RHN
       (what their RHN code effectively computes);
    3. log base 2 instead of e;
    4. ``warmup=10`` by default, and the warm-up replays: it consumes the first
       ``warmup`` inputs, then the mean runs over all T inputs again from the
       warmed-up state and divides by T;
    5. warm-up without QR by default (``stable_warmup=False``): products of the
       propagation of item 2, columns rescaled to unit length (no effect in exact
       arithmetic, avoids float32 overflow), and one QR at the end. This is
       ill-posed: the lower directions collapse and the result then depends on
       rounding (README, "The Lyapunov spectrum").
       ``stable_warmup=True`` orthonormalises every warm-up step instead;
    6. exponents unsorted, in the order of Q's columns.
    Common to both: h_0, Q_0, QR every step, the mean over K and T, the floor. The
    authors also flip column signs so that ``diag R > 0``; that leaves ``|r_ii|``
    unchanged, so it is not done (their ``sign(0) = 0`` would zero a column).

    Args:
        k: top-k mode, propagating ``n x k`` tangent vectors (``O(n^2 k)`` per step).
        stable_warmup: default False for "paper", True for "full".
        return_info: also return a dict with convention, log_base, warmup,
            warmup_mode ("stable" or "paper (no QR)"), replay, dtype, device, K, T, n,
            k, seconds.

    Returns:
        Tensor ``[k]`` on the model's device, or ``(spectrum, info)``.
    """
    check_choice("convention", convention, CONVENTIONS)
    paper = convention == "paper"
    if not isinstance(tokens, torch.Tensor) or tokens.dim() != 2 or tokens.is_floating_point() \
            or tokens.size(0) < 1 or tokens.size(1) < 1:
        raise ValueError(f"tokens must be an integer tensor [T, K] with T, K >= 1, "
                         f"got {getattr(tokens, 'shape', type(tokens))}")
    T, K = tokens.shape
    warmup = (PAPER_WARMUP if paper else 0) if warmup is None else warmup
    # "paper" replays the warm-up inputs, so all T may be used for it; "full" needs a step left.
    check_int("warmup", warmup, 0, high=T if paper else T - 1)
    stable_warmup = (not paper) if stable_warmup is None else stable_warmup
    check_choice("stable_warmup", stable_warmup, (True, False))
    linearise, n = tangent_map(model, convention, dtype)
    k = n if k is None else k
    check_int("k", k, 1, high=n)
    dtype = _resolve_dtype(model, dtype)

    start = time.perf_counter()
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            device = next(model.parameters()).device
            inputs = model.embed(tokens.to(device)).to(dtype)
            state = model.init_state(K).to(dtype)
            q = _initial_basis(K, n, k, dtype, device)
            lam = _eq1(linearise, state, inputs, q, warmup=warmup, stable_warmup=stable_warmup, replay=paper)
    finally:
        model.train(was_training)
    lam = lam / math.log(2) if paper else lam.sort(descending=True).values
    if not return_info:
        return lam
    info = {"convention": convention, "log_base": 2 if paper else "e", "warmup": warmup,
            "warmup_mode": "stable" if stable_warmup else "paper (no QR)", "replay": paper,
            "dtype": str(dtype).replace("torch.", ""), "device": str(device), "K": K, "T": T,
            "n": n, "k": k, "seconds": time.perf_counter() - start}
    return lam, info
