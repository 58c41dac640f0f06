import itertools
import json
import math
import warnings

import pytest
import torch
from torch import nn

from lshkit.dst import (DEATH_MODES, GROWTH_MODES, REDISTRIBUTION_MODES, SPARSE_INITS, THRESHOLD_TOLERANCE,
                        DynamicSparsity, SNTASGD, SparseConfig, apportion, erdos_renyi_densities)
from lshkit.models import RHN, StackedLSTM

V, E, H = 30, 16, 16


def _lstm():
    torch.manual_seed(0)
    return StackedLSTM(V, E, H, 2)


def _train_step(model, opt, ds=None):
    tokens = torch.randint(V, (6, 3))
    logits, _ = model(tokens[:-1])
    loss = nn.functional.cross_entropy(logits.reshape(-1, V), tokens[1:].reshape(-1))
    opt.zero_grad()
    loss.backward()
    opt.step()
    if ds is not None:
        ds.apply_masks()


class OneLayer(nn.Module):
    """Hand-made layers: one weight matrix per given value table."""

    def __init__(self, *tables):
        super().__init__()
        self.w = nn.ParameterList(nn.Parameter(torch.tensor(t, dtype=torch.float64)) for t in tables)


def _killed(ds, before):
    """Positions whose weight was set to 0 by the cycle (at density 1 every killed
    weight is regrown at 0, so the killed set is exactly where a value became 0)."""
    return {n: (before[n] != 0) & (p.detach() == 0) for n, p in ds.params.items()}


def _cycle(ds, optimizer=None):
    before = {n: p.detach().clone() for n, p in ds.params.items()}
    stats = ds.prune_and_regrow(optimizer)
    return stats, _killed(ds, before)


# -- SparseConfig -------------------------------------------------------------------


def test_config_json_round_trip():
    cfg = SparseConfig(density=0.2, sparse_init="uniform", death="SET", growth="gradient",
                       redistribution="magnitude", death_rate=0.45, decay="constant", update_every=100)
    assert SparseConfig.from_json(cfg.to_json()) == cfg
    assert json.loads(cfg.to_json())["death"] == "SET"
    assert SparseConfig.from_dict(SparseConfig().to_dict()) == SparseConfig()


@pytest.mark.parametrize("field, value, valid", [
    ("sparse_init", "er", "['uniform', 'ER']"),
    ("death", "set", "'SET'"),
    ("growth", "rigl", "'gradient'"),
    ("redistribution", "momentum", "'nonzeros'"),
    ("decay", "linear", "'cosine'"),
    ("density", 0.0, "(0, 1]"),
    ("density", 1.5, "(0, 1]"),
    ("death_rate", -0.1, "[0, 1]"),
    ("death_rate_final", True, "[0, 1]"),
    ("update_every", 0, "positive int"),
    ("update_every", 2.0, "positive int"),
])
def test_config_bad_values_name_the_valid_ones(field, value, valid):
    with pytest.raises(ValueError) as err:
        SparseConfig(**{field: value})
    assert field in str(err.value) and repr(value) in str(err.value) and valid in str(err.value)


def test_config_unknown_field():
    with pytest.raises(ValueError, match="valid fields are"):
        SparseConfig.from_dict({"density": 0.5, "prune_rate": 0.3})


# -- counts: apportion, uniform and ER initialisation -------------------------------------


def test_apportion_is_exact_with_caps():
    assert apportion([1, 1, 1], 10, [100] * 3) == [4, 3, 3]
    assert apportion([10, 1, 1], 20, [2, 100, 100]) == [2, 9, 9]  # the capped part's excess moves on
    assert apportion([0.0, 0.0], 5, [2, 10]) == [1, 4]  # no shares: split by free room (5·2/12, 5·10/12)
    assert sum(apportion([0.3, 0.7, 1e-9], 7, [7, 3, 7])) == 7
    with pytest.raises(ValueError):
        apportion([1, 1], 5, [2, 2])


def test_er_densities_follow_formula_and_cap():
    shapes = [(2, 2), (30, 50), (80, 20), (100, 100)]
    density = 0.3
    probs = erdos_renyi_densities(shapes, density)
    numels = [r * c for r, c in shapes]
    assert probs[0] == 1.0  # (2+2)/(2·2) = 1 per unit ε: this layer caps at 1
    eps = [p * r * c / (r + c) for p, (r, c) in zip(probs[1:], shapes[1:])]
    assert max(eps) - min(eps) < 1e-12 * max(eps)  # one ε for every uncapped layer
    assert sum(p * n for p, n in zip(probs, numels)) == pytest.approx(density * sum(numels), rel=1e-12)
    # the ε solved without layer 0 is the one used: cap, then redistribute the excess
    expected_eps = (density * sum(numels) - 4) / sum(r + c for r, c in shapes[1:])
    assert eps[0] == pytest.approx(expected_eps, rel=1e-12)


def test_er_and_uniform_masks_hold_exact_counts():
    model = OneLayer(torch.randn(2, 2).tolist(), torch.randn(30, 50).tolist(), torch.randn(80, 20).tolist())
    numels = [4, 1500, 1600]
    er = DynamicSparsity(model, SparseConfig(density=0.3, sparse_init="ER"), total_updates=1)
    counts = [int(m.sum()) for m in er.masks.values()]
    assert sum(counts) == er.total_active == round(0.3 * sum(numels))
    probs = erdos_renyi_densities([(2, 2), (30, 50), (80, 20)], 0.3)
    assert counts == apportion([p * n for p, n in zip(probs, numels)], round(0.3 * sum(numels)), numels)
    assert counts[0] == 4
    uni = DynamicSparsity(model, SparseConfig(density=0.3, sparse_init="uniform"), total_updates=1)
    assert [int(m.sum()) for m in uni.masks.values()] == [round(0.3 * n) for n in numels]


def test_masked_parameters_are_the_weight_matrices():
    ds = DynamicSparsity(_lstm(), SparseConfig(), total_updates=3)
    assert set(ds.masks) == {"encoder.weight", "decoder.weight"} | {
        f"rnn.weight_{k}_l{i}" for k in ("ih", "hh") for i in (0, 1)}
    assert all(m.dtype == torch.bool for m in ds.masks.values())
    tied = RHN(V, H, H, depth=2, tie_weights=True)
    names = set(DynamicSparsity(tied, SparseConfig(), total_updates=3).masks)
    assert names == {"encoder.weight", "W.weight", "R.0.weight", "R.1.weight"}  # tied decoder once


# -- the whole method space -------------------------------------------------------------------


@pytest.mark.parametrize("init, death, growth, redistribution",
                         list(itertools.product(SPARSE_INITS, DEATH_MODES, GROWTH_MODES, REDISTRIBUTION_MODES)))
def test_every_combination_keeps_exact_counts(init, death, growth, redistribution):
    model = _lstm()
    cfg = SparseConfig(density=0.3, sparse_init=init, death=death, growth=growth,
                       redistribution=redistribution, death_rate=0.5)
    ds = DynamicSparsity(model, cfg, total_updates=4, seed=1)
    opt = torch.optim.SGD(model.parameters(), lr=0.5, momentum=0.9)
    total = ds.total_active
    for _ in range(3):
        _train_step(model, opt, ds)
        old = {n: m.clone() for n, m in ds.masks.items()}
        rate = ds.death_rate
        stats = ds.prune_and_regrow(opt)
        assert sum(int(m.sum()) for m in ds.masks.values()) == total
        assert stats["removed"] == stats["regrown"] > 0
        for n, m in ds.masks.items():
            layer = stats["layers"][n]
            # regrown positions were all free: the new count adds exactly the budget
            assert int(m.sum()) == int(old[n].sum()) - layer["removed"] + layer["regrown"]
            if death in ("magnitude", "SET"):
                assert layer["removed"] == math.ceil(rate * int(old[n].sum()))
            if redistribution == "none":
                assert int(m.sum()) == int(old[n].sum())
            w = ds.params[n].detach()
            assert torch.all(w[~m] == 0)
            assert torch.all(w[m & ~old[n]] == 0)  # newly grown weights start at 0
        if death == "global_magnitude":
            assert stats["removed"] == math.ceil(rate * total)
        assert any(not torch.equal(ds.masks[n], old[n]) for n in old)  # topology moved


# -- death modes on hand-made layers --------------------------------------------------------


def _dense(*tables, death, rate=0.5, **kw):
    cfg = SparseConfig(density=1.0, sparse_init="uniform", death=death, growth="random",
                       redistribution="none", death_rate=rate, decay="constant", **kw)
    return DynamicSparsity(OneLayer(*tables), cfg, total_updates=10)


def test_magnitude_death_removes_smallest():
    ds = _dense([[0.5, -0.1, 0.2, -0.9, 0.05], [-0.3, 0.7, -0.02, 0.4, -0.6]], death="magnitude", rate=0.3)
    _, killed = _cycle(ds)  # k = ceil(0.3·10) = 3
    assert killed["w.0"].nonzero().tolist() == [[0, 1], [0, 4], [1, 2]]  # |w| = 0.1, 0.05, 0.02


def test_set_death_removes_weights_closest_to_zero_on_each_side():
    values = [[0.5, -0.1, 0.2, -0.9, 0.05], [-0.3, 0.7, -0.02, 0.4, -0.6]]
    ds = _dense(values, death="SET", rate=0.5)
    _, killed = _cycle(ds)  # k = 5: 3 smallest positive, 2 negatives nearest zero (not -0.9, -0.6)
    got = sorted(values[i][j] for i, j in killed["w.0"].nonzero().tolist())
    assert got == sorted([0.05, 0.2, 0.4, -0.02, -0.1])
    values = [[0.1, 0.2, 0.3, 0.4, 0.5], [0.6, 0.7, 0.8, 0.9, -0.05]]
    ds = _dense(values, death="SET", rate=0.5)
    _, killed = _cycle(ds)  # one negative only: the rest of its share goes to the positive side
    got = sorted(values[i][j] for i, j in killed["w.0"].nonzero().tolist())
    assert got == [-0.05, 0.1, 0.2, 0.3, 0.4]


def test_threshold_death_keeps_its_own_tau_within_tolerance():
    mags = torch.arange(1, 201, dtype=torch.float64) / 100  # 200 distinct magnitudes
    signs = torch.tensor([1.0, -1.0]).repeat(100)
    ds = _dense((mags * signs).reshape(10, 20).tolist(), death="threshold", rate=0.5)
    stats, killed = _cycle(ds)  # first cycle: τ = 100th smallest |w| = 1.00
    assert ds.thresholds["w.0"] == 1.0 and stats["removed"] == 100
    assert torch.equal(killed["w.0"].reshape(-1), mags <= 1.0)
    assert 101 <= (1 + THRESHOLD_TOLERANCE) * 100
    w = ds.params["w.0"]
    with torch.no_grad():  # 101 weights at or below τ: inside the band, so τ stays and 101 die
        w.copy_(torch.cat([torch.linspace(0.2, 1.0, 101), torch.linspace(1.5, 3.0, 99)]).reshape(10, 20))
    stats, killed = _cycle(ds)
    assert ds.thresholds["w.0"] == 1.0 and stats["removed"] == 101 and int(killed["w.0"].sum()) == 101
    with torch.no_grad():  # 150 below τ: outside the band, so τ resets to the 100th smallest
        w.copy_(torch.cat([torch.linspace(0.1, 0.9, 150), torch.linspace(1.5, 3.0, 50)]).reshape(10, 20))
    stats, _ = _cycle(ds)
    assert stats["removed"] == 100 and ds.thresholds["w.0"] == pytest.approx(0.1 + 99 * 0.8 / 149)


def test_global_magnitude_uses_one_threshold_across_layers():
    a = [[0.01, -0.02, 0.03], [0.04, -0.05, 0.06]]
    b = [[-0.9, 0.8, 0.035], [0.7, -0.6, 0.5]]
    ds = _dense(a, b, death="global_magnitude", rate=0.5)
    stats, killed = _cycle(ds)  # k = 6 smallest of all 12: 0.01 .. 0.05 in a and 0.035 in b
    assert int(killed["w.0"].sum()) == 5 and killed["w.1"].nonzero().tolist() == [[0, 2]]
    assert killed["w.0"].nonzero().tolist() == [[0, 0], [0, 1], [0, 2], [1, 0], [1, 1]]
    assert stats["threshold"] == pytest.approx(0.05)
    assert all(t is None for t in ds.thresholds.values())  # no state shared with threshold death


# -- growth and redistribution ---------------------------------------------------------------


def _custom_masks(ds, masks):
    sd = ds.state_dict()
    sd["masks"] = masks
    sd["total_active"] = sum(int(m.sum()) for m in masks.values())
    ds.load_state_dict(sd)


@pytest.mark.parametrize("growth", ["gradient", "momentum"])
def test_score_growth_picks_largest_among_inactive(growth):
    torch.manual_seed(3)
    model = OneLayer(torch.randn(6, 8).tolist())
    cfg = SparseConfig(density=0.5, sparse_init="uniform", death="magnitude", growth=growth,
                       redistribution="none", death_rate=0.25, decay="constant")
    ds = DynamicSparsity(model, cfg, total_updates=5)
    w = model.w[0]
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    (w * torch.randn(6, 8, dtype=torch.float64)).sum().backward()
    opt.step()
    ds.apply_masks()
    score = (w.grad if growth == "gradient" else opt.state[w]["momentum_buffer"]).abs().reshape(-1)
    old = ds.masks["w.0"].reshape(-1).clone()
    mags = w.detach().abs().reshape(-1)
    active = old.nonzero().squeeze(1).tolist()
    k = math.ceil(0.25 * len(active))
    killed = sorted(active, key=lambda i: mags[i].item())[:k]
    candidates = [i for i in range(48) if not old[i] or i in killed]
    grown = sorted(candidates, key=lambda i: -score[i].item())[:k]
    ds.prune_and_regrow(opt)
    expected = old.clone()
    expected[killed] = False
    expected[grown] = True
    assert torch.equal(ds.masks["w.0"].reshape(-1), expected)


def test_growth_errors_leave_masks_untouched():
    model = _lstm()
    ds = DynamicSparsity(model, SparseConfig(growth="gradient"), total_updates=3)
    before = {n: m.clone() for n, m in ds.masks.items()}
    with pytest.raises(RuntimeError, match="backward"):
        ds.prune_and_regrow()
    assert all(torch.equal(before[n], ds.masks[n]) for n in before)
    ds = DynamicSparsity(model, SparseConfig(growth="momentum"), total_updates=3)
    with pytest.raises(RuntimeError, match="optimizer"):
        ds.prune_and_regrow()
    opt = torch.optim.SGD(model.parameters(), lr=0.1)  # no momentum
    _train_step(model, opt, ds)
    with pytest.raises(RuntimeError, match="momentum_buffer"):
        ds.prune_and_regrow(opt)


@pytest.mark.parametrize("redistribution", ["magnitude", "nonzeros"])
def test_redistribution_shares_and_caps(redistribution):
    torch.manual_seed(0)
    big = (torch.rand(10, 10, dtype=torch.float64) + 1.0)  # |w| in [1, 2)
    small = (torch.rand(10, 10, dtype=torch.float64) * 0.1 + 0.1)  # |w| in [0.1, 0.2)
    cfg = SparseConfig(density=0.5, sparse_init="uniform", death="magnitude", growth="random",
                       redistribution=redistribution, death_rate=0.4, decay="constant")
    ds = DynamicSparsity(OneLayer(big.tolist(), small.tolist(), big.tolist()), cfg, total_updates=3)
    # layer 0 nearly full (45 of 100 free), layers 1 and 2 half full
    full = torch.zeros(100, dtype=torch.bool)
    full[:55] = True
    half = torch.zeros(100, dtype=torch.bool)
    half[::2] = True
    _custom_masks(ds, {"w.0": full.reshape(10, 10), "w.1": half.reshape(10, 10), "w.2": half.reshape(10, 10)})
    survivors = {}
    for n, m in ds.masks.items():
        a = ds.params[n].detach()[m]
        survivors[n] = a.sort().values[math.ceil(0.4 * a.numel()):]
    stats = ds.prune_and_regrow()
    removed = sum(layer["removed"] for layer in stats["layers"].values())
    assert removed == 22 + 20 + 20
    free = [100 - s.numel() for s in survivors.values()]
    shares = [float(s.mean()) if redistribution == "magnitude" else float(s.numel()) for s in survivors.values()]
    assert [layer["regrown"] for layer in stats["layers"].values()] == apportion(shares, removed, free)
    if redistribution == "magnitude":  # the small-magnitude layer gets far less than it lost
        assert stats["layers"]["w.1"]["regrown"] < 10


# -- schedule, masks in place, checkpoint ------------------------------------------------------


def test_death_rate_cosine_schedule_and_due():
    cfg = SparseConfig(death_rate=0.6, death_rate_final=0.005, update_every=7)
    ds = DynamicSparsity(_lstm(), cfg, total_updates=4)
    seen = []
    for _ in range(6):
        seen.append(ds.death_rate)
        ds.cycle += 1
    expected = [0.005 + 0.5 * 0.595 * (1 + math.cos(math.pi * min(t, 4) / 4)) for t in range(6)]
    assert seen == pytest.approx(expected, abs=1e-15)
    assert seen[0] == pytest.approx(0.6) and seen[2] == pytest.approx(0.3025) and seen[5] == pytest.approx(0.005)
    const = DynamicSparsity(_lstm(), SparseConfig(death_rate=0.6, decay="constant"), total_updates=4)
    const.cycle = 3
    assert const.death_rate == 0.6
    assert [ds.due(s) for s in (0, 6, 7, 13, 14)] == [False, False, True, False, True]
    assert not const.due(7)  # per epoch: the trainer calls prune_and_regrow itself
    with pytest.raises(ValueError, match="total_updates"):
        DynamicSparsity(_lstm(), cfg, total_updates=0)


def test_masks_in_place_keep_fused_lstm_storage():
    model = _lstm()
    ptr = model.rnn.weight_hh_l0.data_ptr()
    flat = [w.data_ptr() for w in model.rnn._flat_weights]
    ds = DynamicSparsity(model, SparseConfig(), total_updates=3)
    opt = torch.optim.SGD(model.parameters(), lr=1.0)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        for _ in range(2):
            _train_step(model, opt, ds)
            for n, p in ds.params.items():
                assert torch.all(p.detach()[~ds.masks[n]] == 0)  # exactly zero after step + apply_masks
            ds.prune_and_regrow(opt)
    assert model.rnn.weight_hh_l0.data_ptr() == ptr
    assert [w.data_ptr() for w in model.rnn._flat_weights] == flat


def test_state_dict_resumes_exactly():
    cfg = SparseConfig(density=0.3, death="threshold", growth="random", redistribution="magnitude")
    model = _lstm()
    a = DynamicSparsity(model, cfg, total_updates=5, seed=7)
    opt = torch.optim.SGD(model.parameters(), lr=0.5)
    _train_step(model, opt, a)
    a.prune_and_regrow()
    sd = a.state_dict()

    twin = _lstm()
    b = DynamicSparsity(twin, cfg, total_updates=5, seed=99)  # different seed: the checkpoint wins
    b.load_state_dict(sd)
    twin.load_state_dict(model.state_dict())  # as a resume: weights after building the sparsity
    assert b.cycle == 1 and b.thresholds == a.thresholds
    for _ in range(2):
        sa, sb = a.prune_and_regrow(), b.prune_and_regrow()
        assert sa == sb
    assert all(torch.equal(a.masks[n], b.masks[n]) for n in a.masks)
    assert all(torch.equal(p, q) for p, q in zip(model.parameters(), twin.parameters()))
    other = DynamicSparsity(_lstm(), SparseConfig(density=0.5), total_updates=5)
    with pytest.raises(ValueError, match="SparseConfig"):
        other.load_state_dict(sd)


# -- SNT-ASGD -------------------------------------------------------------------------------


def test_nonmonotone_trigger_as_awd_lstm():
    opt = SNTASGD([nn.Parameter(torch.zeros(1))], lr=1.0, nonmono=2)
    # log[:-2] is the history without the last two; trigger when worse than its best
    assert [opt.observe(v) for v in (5.0, 4.0, 3.0, 3.1, 4.5)] == [False, False, False, False, True]
    assert opt.averaging and opt.observe(1.0)
    with pytest.raises(ValueError, match="nonmono"):
        SNTASGD([nn.Parameter(torch.zeros(1))], lr=1.0, nonmono=0)
    with pytest.raises(ValueError, match="lr"):
        SNTASGD([nn.Parameter(torch.zeros(1))], lr=-1.0)


def _trigger(opt):
    for v in [1.0] * (opt.nonmono + 1) + [2.0]:
        opt.observe(v)
    assert opt.averaging


def test_snt_asgd_averages_each_life_by_hand():
    """Three scalar weights, known gradients g_t (loss = Σ g_t·w), lr 0.5, wd 0.1:
    weight 0 lives throughout; weight 1 is regrown (set to 0, life reset) after the
    3rd averaged step; weight 2 is pruned then (kept at 0 by its mask)."""
    lr, wd = 0.5, 0.1
    w = nn.Parameter(torch.tensor([1.0, 2.0, -1.0], dtype=torch.float64))
    opt = SNTASGD([w], lr=lr, weight_decay=wd, nonmono=1)
    grads = torch.tensor([[0.1, -0.2, 0.3], [0.4, 0.1, -0.1], [-0.3, 0.2, 0.2], [0.2, 0.2, 0.2],
                          [0.5, -0.4, 0.1], [-0.1, 0.3, 0.3], [0.2, -0.2, 0.4]], dtype=torch.float64)
    mask = torch.ones(3, dtype=torch.bool)
    hand = w.detach().clone()
    iterates = [[], [], []]  # per weight, the values after each averaged step of its life

    def step(t):
        opt.zero_grad()
        (grads[t] * w).sum().backward()
        opt.step()
        with torch.no_grad():
            w.mul_(mask)  # apply_masks

    for t in range(2):  # plain SGD before the trigger
        step(t)
        hand = (hand - lr * (grads[t] + wd * hand)) * mask
    torch.testing.assert_close(w.detach(), hand, rtol=0, atol=1e-15)
    _trigger(opt)
    for t in range(2, 7):
        if t == 5:  # DST cycle between steps: weight 1 regrown at 0, weight 2 pruned
            with torch.no_grad():
                w[1] = 0.0
                w[2] = 0.0
            mask[2] = False
            hand[1] = hand[2] = 0.0
            opt.reset_life(w, torch.tensor([False, True, True]))
            iterates[1], iterates[2] = [], []
        step(t)
        hand = (hand - lr * (grads[t] + wd * hand)) * mask
        for i in range(3):
            iterates[i].append(hand[i].item())
    torch.testing.assert_close(w.detach(), hand, rtol=0, atol=1e-15)
    expected = torch.tensor([sum(v) / len(v) for v in iterates], dtype=torch.float64)
    assert len(iterates[0]) == 5 and len(iterates[1]) == 2
    raw, ptr = w.detach().clone(), w.data_ptr()
    with opt.averaged():
        torch.testing.assert_close(w.detach(), expected, rtol=0, atol=1e-15)
        assert w[2].item() == 0.0 and w.data_ptr() == ptr
    assert torch.equal(w.detach(), raw)

    # a regrown weight with no step in its life yet evaluates at its current value (0)
    opt.reset_life(w, torch.tensor([True, False, False]))
    with torch.no_grad():
        w[0] = 0.0
    with opt.averaged():
        assert w[0].item() == 0.0 and w[1].item() == pytest.approx(expected[1].item(), abs=1e-15)

    # state round trip: a fresh optimiser on a copy continues identically
    w2 = nn.Parameter(w.detach().clone())
    opt2 = SNTASGD([w2], lr=lr, weight_decay=wd, nonmono=1)
    opt2.load_state_dict(opt.state_dict())
    assert opt2.averaging and opt2.state_dict()["state"]["nt_asgd"] == opt.state_dict()["state"]["nt_asgd"]
    for p, o in ((w, opt), (w2, opt2)):
        o.zero_grad()
        (grads[0] * p).sum().backward()
        o.step()
    with opt.averaged(), opt2.averaged():
        assert torch.equal(w.detach(), w2.detach())
    opt2.observe(5.0)  # the loaded log is a copy, not shared with the source optimiser
    assert len(opt.state["nt_asgd"]["val_losses"]) + 1 == len(opt2.state["nt_asgd"]["val_losses"])


def test_averaged_is_identity_before_trigger():
    w = nn.Parameter(torch.tensor([1.0, 2.0]))
    opt = SNTASGD([w], lr=0.1)
    w.grad = torch.ones(2)
    opt.step()
    with opt.averaged():
        assert torch.equal(w.detach(), torch.tensor([0.9, 1.9]))
        with pytest.raises(RuntimeError, match="already active"):
            with opt.averaged():  # nested: would average the averages
                pass
    assert not opt.averaging
    with opt.averaged():  # usable again after the error
        pass


def test_snt_asgd_with_dynamic_sparsity():
    """Pruned weights average to 0 and regrown ones restart their average."""
    model = _lstm()
    ds = DynamicSparsity(model, SparseConfig(death="magnitude", redistribution="nonzeros"), total_updates=3)
    opt = SNTASGD(model.parameters(), lr=0.5)
    _trigger(opt)
    for _ in range(3):
        _train_step(model, opt, ds)
    old = {n: m.clone() for n, m in ds.masks.items()}
    ds.prune_and_regrow(opt)
    _train_step(model, opt, ds)
    with opt.averaged():
        avg = {n: p.detach().clone() for n, p in ds.params.items()}
    for n, p in ds.params.items():
        m = ds.masks[n]
        assert torch.all(avg[n][~m] == 0)
        # one step since birth: a regrown weight's average is its current value
        assert torch.equal(avg[n][m & ~old[n]], p.detach()[m & ~old[n]])
        kept = m & old[n]  # survivors average over all four steps
        assert not torch.equal(avg[n][kept], p.detach()[kept])
