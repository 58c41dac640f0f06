"""Recurrent language models of the paper (Table A1), each with a one-step map.

Every model exposes the same surface so that training, dynamic sparse
training and the Lyapunov spectrum can treat them alike:

- ``forward(tokens [T,B], state=None) -> (logits [T,B,V], state [B,N])``
- ``embed(tokens) -> x [T,B,D]``: what the recurrence sees (dropout only in train mode)
- ``init_state(batch) -> zeros [B,N]``
- ``step(x [B,D], state [B,N]) -> state [B,N]``: the eval-mode recurrent map of
  paper Eq. 1, ``h_t = f(h_{t-1}, x_t)``, on a flat state. It equals what
  ``forward`` computes in eval mode, bit for bit up to kernel rounding.

Flat state layouts: StackedLSTM ``[h_1..h_L, c_1..c_L]`` (the first L*H
entries are the state of the authors' LS convention); AWDLSTMMoS the same with
layers of their own sizes; GRULM and RNNLM ``[h_1..h_L]``; RHN ``[s]``.

AWDLSTMMoS's ``forward`` returns log-probabilities rather than logits (its
mixture of softmaxes is not one softmax of anything). Cross-entropy on them is
still the negative log-likelihood, since ``log_softmax`` leaves a normalised
log-distribution unchanged, so every model trains and evaluates alike.
"""
from __future__ import annotations

import warnings

import torch
from torch import nn
import torch.nn.functional as F

from lshkit.checks import check_number, check_positive_int

__all__ = ["StackedLSTM", "RHN", "GRULM", "RNNLM", "AWDLSTMMoS", "build_model", "MODEL_KINDS",
           "weight_drop", "mixture_of_softmaxes"]


def word_dropout(embedding: nn.Embedding, tokens: torch.Tensor, p: float, training: bool) -> torch.Tensor:
    """Embedding lookup that drops whole words (rows of the table) with probability ``p``
    (Gal & Ghahramani; Table A1's first "word-level" dropout)."""
    if not training or p == 0:
        return embedding(tokens)
    keep = embedding.weight.new_empty(embedding.weight.size(0), 1).bernoulli_(1 - p) / (1 - p)
    return F.embedding(tokens, embedding.weight * keep)


def locked_dropout(x: torch.Tensor, p: float, training: bool) -> torch.Tensor:
    """Variational dropout: one mask per sequence, shared over time (x is [T,B,D])."""
    if not training or p == 0:
        return x
    mask = x.new_empty(1, x.size(1), x.size(2)).bernoulli_(1 - p) / (1 - p)
    return x * mask


def weight_drop(weight: torch.Tensor, p: float, training: bool) -> torch.Tensor:
    """DropConnect on a whole weight matrix (Wan et al. 2013): the weight-dropped LSTM of
    Merity et al. 2017 (arXiv 1708.02182, §2), applied to the hidden-to-hidden matrix.

    One mask per call, shared by every time step and every sequence of the batch (the
    recurrence itself is untouched, so the fused kernel still runs), inverted scaling
    ``1/(1-p)``. It acts on the raw parameter, which is what dynamic sparse training masks:
    a pruned weight stays exactly 0 and DST sees one tensor per matrix.
    """
    if not training or p == 0:
        return weight
    return F.dropout(weight, p, training=True)


def mixture_of_softmaxes(logits: torch.Tensor, prior_logits: torch.Tensor) -> torch.Tensor:
    """Log-probabilities of a mixture of K softmaxes (Yang et al. 2018, arXiv 1711.03953):
    ``P(w) = sum_k pi_k softmax(l_k)_w`` with ``pi = softmax(prior_logits)``.

    ``logits [..., K, V]``, ``prior_logits [..., K]`` -> ``log P [..., V]``. The mixture is
    summed in probability space (one batched ``pi @ softmax(l)`` product; measured ~1.5x
    faster on CPU than the same sum by ``logsumexp`` in log space, and as exact wherever
    ``P(w)`` is a normal float). Where ``P(w)`` underflows (below ``finfo.tiny``,
    1.2e-38 in float32, a token at least 87 nats unlikely under every expert) it is floored
    there, so log-probabilities are always finite. The authors instead add 1e-8 to every
    probability, which makes rows sum to ``1 + 1e-8 V`` and floors every log-probability
    at -18.4.
    """
    if logits.dim() < 2 or prior_logits.shape != logits.shape[:-1]:
        raise ValueError(f"logits must be [..., K, V] and prior_logits [..., K] with the same leading "
                         f"shape; got {tuple(logits.shape)} and {tuple(prior_logits.shape)}")
    prior = F.softmax(prior_logits, dim=-1).unsqueeze(-2)  # [..., 1, K]
    probs = (prior @ F.softmax(logits, dim=-1)).squeeze(-2)
    return probs.clamp_min(torch.finfo(probs.dtype).tiny).log()


class _LanguageModel(nn.Module):
    """Embedding -> recurrence -> linear decoder; subclasses define the recurrence."""

    def __init__(self, vocab_size: int, emb_size: int, out_size: int, dropouts, tie_weights: bool):
        super().__init__()
        if len(dropouts) != 4 or not all(0 <= p < 1 for p in dropouts):
            raise ValueError(f"dropouts must be four probabilities in [0, 1) "
                             f"(word, embedding, hidden, output), got {dropouts!r}")
        for name, value in (("vocab_size", vocab_size), ("emb_size", emb_size), ("hidden size", out_size)):
            check_positive_int(name, value)
        self.vocab_size = vocab_size
        self.dropout_word, self.dropout_emb, self.dropout_hidden, self.dropout_out = dropouts
        self.encoder = nn.Embedding(vocab_size, emb_size)
        self.decoder = nn.Linear(out_size, vocab_size)
        if tie_weights:
            if out_size != emb_size:
                raise ValueError(f"tied weights need the decoder input size ({out_size}) "
                                 f"to equal the embedding size ({emb_size})")
            self.decoder.weight = self.encoder.weight
        # Uniform(-0.1, 0.1) encoder/decoder and zero decoder bias, as the authors' models.
        nn.init.uniform_(self.encoder.weight, -0.1, 0.1)
        if not tie_weights:
            nn.init.uniform_(self.decoder.weight, -0.1, 0.1)
        nn.init.zeros_(self.decoder.bias)

    def embed(self, tokens: torch.Tensor) -> torch.Tensor:
        x = word_dropout(self.encoder, tokens, self.dropout_word, self.training)
        return self._emb_dropout(x)

    def _emb_dropout(self, x):
        return locked_dropout(x, self.dropout_emb, self.training)

    def _out_dropout(self, y):
        return locked_dropout(y, self.dropout_out, self.training)

    def init_state(self, batch: int) -> torch.Tensor:
        w = self.decoder.weight
        return w.new_zeros(batch, self.state_size)

    def _run(self, tokens: torch.Tensor, state: torch.Tensor | None):
        """``tokens`` [T, B] through the embedding and the recurrence: (output, state)."""
        if tokens.dim() != 2:
            raise ValueError(f"tokens must be [T, B], got shape {tuple(tokens.shape)}")
        if state is None:
            state = self.init_state(tokens.size(1))
        return self._recur(self.embed(tokens), state)

    def forward(self, tokens: torch.Tensor, state: torch.Tensor | None = None):
        output, state = self._run(tokens, state)
        return self.decoder(self._out_dropout(output)), state


class _FusedRNN(_LanguageModel):
    """Models whose recurrence is one fused ``torch.nn`` RNN module at ``self.rnn``."""

    cell = None  # the torch.nn class: nn.LSTM, nn.GRU or nn.RNN
    state_copies = 1  # 2 for the LSTM: h and c

    def __init__(self, vocab_size, emb_size, hidden_size, num_layers=1, *,
                 dropouts=(0.0, 0.0, 0.0, 0.0), tie_weights=False, **rnn_kwargs):
        super().__init__(vocab_size, emb_size, hidden_size, dropouts, tie_weights)
        if int(num_layers) < 1:
            raise ValueError(f"num_layers must be >= 1, got {num_layers!r}")
        self.hidden_size, self.num_layers = hidden_size, num_layers
        self.rnn = self.cell(emb_size, hidden_size, num_layers,
                             dropout=self.dropout_hidden if num_layers > 1 else 0.0, **rnn_kwargs)
        self.state_size = self.state_copies * num_layers * hidden_size

    def _unflatten(self, state):
        L, H = self.num_layers, self.hidden_size
        parts = state.reshape(state.size(0), self.state_copies, L, H).permute(1, 2, 0, 3)
        return tuple(p.contiguous() for p in parts)

    def _flatten(self, parts):
        return torch.stack(parts).permute(2, 0, 1, 3).reshape(parts[0].size(1), -1)

    def _recur(self, x, state):
        parts = self._unflatten(state)
        output, new = self.rnn(x, parts if self.state_copies > 1 else parts[0])
        return output, self._flatten(new if self.state_copies > 1 else (new,))

    def layer_weights(self, layer: int):
        """(W_ih, W_hh, b_ih, b_hh) of one layer, as the fused module holds them."""
        r = self.rnn
        return (getattr(r, f"weight_ih_l{layer}"), getattr(r, f"weight_hh_l{layer}"),
                getattr(r, f"bias_ih_l{layer}"), getattr(r, f"bias_hh_l{layer}"))


class StackedLSTM(_FusedRNN):
    """Stacked LSTM language model (paper §4, Table A1 column 1; Appendix C.1).

    ``dropouts = (word, embedding, hidden, output)`` as Table A1's tuple: word-level
    dropout on embedding rows, dropout on the embedding output, dropout between
    layers (inside the fused ``nn.LSTM``), dropout on the top output. The recurrent weights live in ``self.rnn``, a ``torch.nn.LSTM``, so
    training uses the fused kernel. Gate order is PyTorch's (i, f, g, o).
    """

    cell = nn.LSTM
    state_copies = 2

    # The authors' stacked LSTM (PyTorch word_language_model lineage) uses plain
    # element-wise dropout on the embedding output and the top output.
    def _emb_dropout(self, x):
        return F.dropout(x, self.dropout_emb, self.training)

    def _out_dropout(self, y):
        return F.dropout(y, self.dropout_out, self.training)

    def step(self, x, state):
        H, L = self.hidden_size, self.num_layers
        h, c = state[:, :L * H], state[:, L * H:]
        hs, cs = [], []
        inp = x
        for l in range(L):
            w_ih, w_hh, b_ih, b_hh = self.layer_weights(l)
            h_l, c_l = h[:, l * H:(l + 1) * H], c[:, l * H:(l + 1) * H]
            i, f, g, o = (F.linear(inp, w_ih, b_ih) + F.linear(h_l, w_hh, b_hh)).chunk(4, dim=1)
            c_new = torch.sigmoid(f) * c_l + torch.sigmoid(i) * torch.tanh(g)
            h_new = torch.sigmoid(o) * torch.tanh(c_new)
            hs.append(h_new)
            cs.append(c_new)
            inp = h_new
        return torch.cat(hs + cs, dim=1)


class GRULM(_FusedRNN):
    """GRU language model; recurrent weights in ``self.rnn`` (``torch.nn.GRU``, gates r, z, n)."""

    cell = nn.GRU

    def step(self, x, state):
        H = self.hidden_size
        hs, inp = [], x
        for l in range(self.num_layers):
            w_ih, w_hh, b_ih, b_hh = self.layer_weights(l)
            h_l = state[:, l * H:(l + 1) * H]
            xr, xz, xn = F.linear(inp, w_ih, b_ih).chunk(3, dim=1)
            hr, hz, hn = F.linear(h_l, w_hh, b_hh).chunk(3, dim=1)
            r, z = torch.sigmoid(xr + hr), torch.sigmoid(xz + hz)
            n = torch.tanh(xn + r * hn)
            h_new = (1 - z) * n + z * h_l
            hs.append(h_new)
            inp = h_new
        return torch.cat(hs, dim=1)


class RNNLM(_FusedRNN):
    """Vanilla (Elman) RNN language model, ``nonlinearity`` "tanh" or "relu";
    recurrent weights in ``self.rnn`` (``torch.nn.RNN``)."""

    cell = nn.RNN

    def __init__(self, vocab_size, emb_size, hidden_size, num_layers=1, *, nonlinearity="tanh", **kwargs):
        if nonlinearity not in ("tanh", "relu"):
            raise ValueError(f"nonlinearity must be 'tanh' or 'relu', got {nonlinearity!r}")
        super().__init__(vocab_size, emb_size, hidden_size, num_layers, nonlinearity=nonlinearity, **kwargs)
        self.nonlinearity = nonlinearity

    def step(self, x, state):
        H = self.hidden_size
        act = torch.tanh if self.nonlinearity == "tanh" else torch.relu
        hs, inp = [], x
        for l in range(self.num_layers):
            w_ih, w_hh, b_ih, b_hh = self.layer_weights(l)
            h_new = act(F.linear(inp, w_ih, b_ih) + F.linear(state[:, l * H:(l + 1) * H], w_hh, b_hh))
            hs.append(h_new)
            inp = h_new
        return torch.cat(hs, dim=1)


class RHN(_LanguageModel):
    """Recurrent Highway Network language model (Zilly et al.; paper Appendix C.2, Eqs. C1-C3).

    One RHN layer of recurrence ``depth`` L. Micro-step l maps ``s_{l-1} -> s_l``::

        p_l = tanh(W_P x 1{l=1} + R_P,l s_{l-1} + b_P,l)
        e_l = sigmoid(W_E x 1{l=1} + R_E,l s_{l-1} + b_E,l)      (transform gate)
        c_l = 1 - e_l if coupled else sigmoid(W_C x 1{l=1} + R_C,l s_{l-1} + b_C,l)
        s_l = p_l * e_l + s_{l-1} * c_l

    The input enters at the first micro-step only; the new state is ``s_L``.
    ``dropouts = (word, embedding/input, hidden, output)`` as Table A1; the hidden
    dropout is a variational mask on ``s`` where it feeds the ``R`` matrices,
    drawn once per forward call. Biases live in the ``R`` layers (the input
    projection ``W`` has none), so none of them is dropped from the map.
    """

    def __init__(self, vocab_size, emb_size, hidden_size, depth=10, *, coupled=True,
                 dropouts=(0.0, 0.0, 0.0, 0.0), tie_weights=True):
        super().__init__(vocab_size, emb_size, hidden_size, dropouts, tie_weights)
        if int(depth) < 1:
            raise ValueError(f"depth must be >= 1, got {depth!r}")
        self.hidden_size, self.depth, self.coupled = hidden_size, depth, coupled
        self.state_size = hidden_size
        gates = 2 if coupled else 3
        self.W = nn.Linear(emb_size, gates * hidden_size, bias=False)
        # PyTorch's default initialisation for every bias, as the authors' code and Selfish-RNN
        # leave it: no negative transform-gate bias.
        self.R = nn.ModuleList(nn.Linear(hidden_size, gates * hidden_size) for _ in range(depth))

    def _micro(self, l, s, s_masked, wx):
        H = self.hidden_size
        pre = self.R[l](s_masked)
        if l == 0:
            pre = pre + wx
        p = torch.tanh(pre[:, :H])
        e = torch.sigmoid(pre[:, H:2 * H])
        c = 1 - e if self.coupled else torch.sigmoid(pre[:, 2 * H:])
        return p * e + s * c

    def step(self, x, state):
        wx = self.W(x)
        s = state
        for l in range(self.depth):
            s = self._micro(l, s, s, wx)
        return s

    def _recur(self, x, state):
        wx_all = self.W(x)
        mask = None
        if self.training and self.dropout_hidden > 0:
            mask = state.new_empty(state.shape).bernoulli_(1 - self.dropout_hidden) / (1 - self.dropout_hidden)
        s, outputs = state, []
        for wx in wx_all:
            for l in range(self.depth):
                s = self._micro(l, s, s if mask is None else s * mask, wx)
            outputs.append(s)
        return torch.stack(outputs), s


class AWDLSTMMoS(_LanguageModel):
    """AWD-LSTM-MoS language model (paper Table A1 column 3; Merity et al. 2017, arXiv
    1708.02182; Yang et al. 2018, arXiv 1711.03953).

    ``num_layers`` single-layer ``nn.LSTM`` modules, layer l of ``hidden_size`` units except
    the last, of ``last_hidden_size`` (Table A1: 1150, 1150, 650), each step
    ``h_t = f(h_{t-1}, x_t)`` of paper Eq. 1 an LSTM step per layer (Appendix C.1, gate
    order (i, f, g, o)). Each regulariser is one named function:

    - ``dropouts = (word, input, hidden, output)``, Table A1's (0.1, 0.55, 0.2, 0.4), i.e.
      the authors' (dropoute, dropouti, dropouth, dropout): embedding dropout of whole words
      (:func:`word_dropout`, Merity §4.3), then locked (variational) dropout
      (:func:`locked_dropout`, Merity §4.2) on the embeddings, between layers and on the
      last layer's output;
    - ``weight_drop``: DropConnect on every ``W_hh`` (:func:`weight_drop`, Merity §2);
    - ``latent_dropout``: locked dropout on the experts' latent vectors (Yang et al.'s
      dropoutl);
    - the decoder is a mixture of ``experts`` softmaxes (:func:`mixture_of_softmaxes`):
      from the last output ``g``, latent ``h_k = tanh(W_k g + b_k)`` (``emb_size`` each),
      expert logits ``h_k^T E + b`` with ``E`` the (tied) embedding, prior
      ``pi = softmax(W_pi g)``.

    ``forward`` returns log-probabilities ``[T, B, V]`` (see the module docstring). All
    dropout is off in eval mode, so ``step`` (the map of the LS) has none of it. The
    recurrent weights are plain parameters of ``self.rnns[l]`` (``weight_hh_l0`` etc.):
    DST masks each matrix as one tensor, and weight drop reads the masked raw weight.
    """

    def __init__(self, vocab_size, emb_size, hidden_size, num_layers=3, *, last_hidden_size=None,
                 experts=15, dropouts=(0.0, 0.0, 0.0, 0.0), weight_drop=0.0, latent_dropout=0.0,
                 tie_weights=True):
        last_hidden_size = hidden_size if last_hidden_size is None else last_hidden_size
        for name, value in (("hidden_size", hidden_size), ("num_layers", num_layers),
                            ("last_hidden_size", last_hidden_size),
                            ("experts", experts)):
            check_positive_int(name, value)
        for name, value in (("weight_drop", weight_drop), ("latent_dropout", latent_dropout)):
            check_number(name, value, low=0, high=1, high_open=True)
        # The decoder reads the experts' latent vectors, emb_size each: tying needs no equal sizes.
        super().__init__(vocab_size, emb_size, emb_size, dropouts, tie_weights)
        self.hidden_size, self.num_layers, self.last_hidden_size = hidden_size, num_layers, last_hidden_size
        self.experts, self.weight_drop, self.latent_dropout = experts, weight_drop, latent_dropout
        self.layer_sizes = tuple([hidden_size] * (num_layers - 1) + [last_hidden_size])
        inputs = (emb_size,) + self.layer_sizes[:-1]
        self.rnns = nn.ModuleList(nn.LSTM(i, h) for i, h in zip(inputs, self.layer_sizes))
        self.latent = nn.Linear(last_hidden_size, experts * emb_size)
        self.prior = nn.Linear(last_hidden_size, experts, bias=False)
        self.state_size = 2 * sum(self.layer_sizes)

    def layer_weights(self, layer: int):
        """(W_ih, W_hh, b_ih, b_hh) of one layer: the raw parameters (no weight drop)."""
        r = self.rnns[layer]
        return r.weight_ih_l0, r.weight_hh_l0, r.bias_ih_l0, r.bias_hh_l0

    def _split(self, state):
        """[B, state_size] -> per-layer h and c lists."""
        parts = state.split(self.layer_sizes * 2, dim=1)
        return parts[:self.num_layers], parts[self.num_layers:]

    def _layer(self, l, x, h, c):
        rnn = self.rnns[l]
        hc = (h.unsqueeze(0).contiguous(), c.unsqueeze(0).contiguous())
        if not self.training or self.weight_drop == 0:
            return rnn(x, hc)
        dropped = {"weight_hh_l0": weight_drop(rnn.weight_hh_l0, self.weight_drop, True)}
        with warnings.catch_warnings():
            # cuDNN warns that a swapped-in weight is not in its flat buffer (it copies it); expected.
            warnings.filterwarnings("ignore", message="RNN module weights are not part of single")
            return torch.func.functional_call(rnn, dropped, (x, hc))

    def _recur(self, x, state):
        hs, cs = self._split(state)
        new_h, new_c = [], []
        for l in range(self.num_layers):
            x, (h, c) = self._layer(l, x, hs[l], cs[l])
            new_h.append(h[0])
            new_c.append(c[0])
            if l < self.num_layers - 1:
                x = locked_dropout(x, self.dropout_hidden, self.training)
        return x, torch.cat(new_h + new_c, dim=1)

    def forward(self, tokens: torch.Tensor, state: torch.Tensor | None = None):
        """``(log_probs [T, B, V], state [B, state_size])``."""
        output, state = self._run(tokens, state)
        g = self._out_dropout(output)
        latent = locked_dropout(torch.tanh(self.latent(g)), self.latent_dropout, self.training)
        T, B = tokens.shape
        logits = self.decoder(latent.view(T, B, self.experts, -1))
        return mixture_of_softmaxes(logits, self.prior(g)), state

    def step(self, x, state):
        hs, cs = self._split(state)
        new_h, new_c, inp = [], [], x
        for l in range(self.num_layers):
            w_ih, w_hh, b_ih, b_hh = self.layer_weights(l)
            i, f, g, o = (F.linear(inp, w_ih, b_ih) + F.linear(hs[l], w_hh, b_hh)).chunk(4, dim=1)
            c_new = torch.sigmoid(f) * cs[l] + torch.sigmoid(i) * torch.tanh(g)
            h_new = torch.sigmoid(o) * torch.tanh(c_new)
            new_h.append(h_new)
            new_c.append(c_new)
            inp = h_new
        return torch.cat(new_h + new_c, dim=1)


MODEL_KINDS = {"lstm": StackedLSTM, "rhn": RHN, "gru": GRULM, "rnn": RNNLM, "awd_mos": AWDLSTMMoS}


def build_model(kind: str, vocab_size: int, **kwargs) -> nn.Module:
    """Build one of the kit's models by its short name (``MODEL_KINDS``)."""
    if kind not in MODEL_KINDS:
        raise ValueError(f"unknown model kind {kind!r}; valid kinds: {sorted(MODEL_KINDS)}")
    return MODEL_KINDS[kind](vocab_size, **kwargs)
