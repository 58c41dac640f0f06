import pytest
import torch

from lshkit.models import GRULM, RHN, RNNLM, StackedLSTM, build_model

V, E, H, T, B = 23, 8, 6, 7, 3


def _models():
    return [
        StackedLSTM(V, E, H, 2),
        StackedLSTM(V, H, H, 3, tie_weights=True),
        GRULM(V, E, H, 2),
        RNNLM(V, E, H, 2, nonlinearity="tanh"),
        RNNLM(V, E, H, 1, nonlinearity="relu"),
        RHN(V, H, H, depth=3, coupled=True),
        RHN(V, E, H, depth=2, coupled=False, tie_weights=False),
    ]


@pytest.mark.parametrize("model", _models(), ids=lambda m: type(m).__name__)
def test_step_agrees_with_forward(model):
    """Iterating `step` over time reproduces `forward`'s states and logits (eval mode)."""
    torch.manual_seed(0)
    model = model.double().eval()
    for p in model.parameters():  # move biases away from zero so every term is exercised
        torch.nn.init.uniform_(p, -0.5, 0.5)
    tokens = torch.randint(V, (T, B))
    s0 = torch.randn(B, model.state_size, dtype=torch.double) * 0.3
    logits, s_forward = model(tokens, s0)
    x = model.embed(tokens)
    s, tops = s0, []
    for t in range(T):
        s = model.step(x[t], s)
        tops.append(s)
    torch.testing.assert_close(s, s_forward, rtol=1e-10, atol=1e-12)
    assert logits.shape == (T, B, V)
    if isinstance(model, RHN):
        out = torch.stack(tops)
    else:  # the decoder reads the top layer's h
        L = model.num_layers
        out = torch.stack(tops)[:, :, (L - 1) * H:L * H]
    torch.testing.assert_close(model.decoder(out), logits, rtol=1e-10, atol=1e-12)


def test_lstm_state_layout_and_fused_module():
    m = StackedLSTM(V, E, H, 2)
    assert isinstance(m.rnn, torch.nn.LSTM)
    assert m.state_size == 2 * 2 * H
    m.eval()
    tokens = torch.randint(V, (4, B))
    _, s = m(tokens)
    # h of the top layer sits at [H:2H] and matches nn.LSTM's own output.
    out, (h, c) = m.rnn(m.embed(tokens))
    torch.testing.assert_close(s[:, H:2 * H], out[-1])
    torch.testing.assert_close(s[:, 2 * H:3 * H], c[0])


def test_dropout_only_in_training():
    m = StackedLSTM(V, E, H, 2, dropouts=(0.3, 0.5, 0.5, 0.5))
    tokens = torch.randint(V, (5, B))
    plain = StackedLSTM(V, E, H, 2)
    plain.load_state_dict(m.state_dict())
    m.eval(), plain.eval()
    torch.testing.assert_close(m(tokens)[0], plain(tokens)[0])  # eval: as if it had no dropout
    m.train()
    assert not torch.equal(m(tokens)[0], m(tokens)[0])


def test_tied_weights_share_storage():
    m = RHN(V, H, H, depth=2)
    assert m.decoder.weight is m.encoder.weight
    names = [n for n, _ in m.named_parameters()]
    assert "decoder.weight" not in names and "encoder.weight" in names


def test_bad_arguments_name_the_valid_values():
    with pytest.raises(ValueError, match="valid kinds"):
        build_model("transformer", V)
    with pytest.raises(ValueError, match="tanh"):
        RNNLM(V, E, H, nonlinearity="sigmoid")
    with pytest.raises(ValueError, match="tied weights"):
        StackedLSTM(V, E, H, 2, tie_weights=True)
    with pytest.raises(ValueError, match="dropouts"):
        StackedLSTM(V, E, H, 2, dropouts=(0.1, 0.2))
    with pytest.raises(ValueError, match="tokens must be"):
        StackedLSTM(V, E, H, 2)(torch.randint(V, (5,)))
