"""Search spaces and candidate generation (paper §3.2, Table 2; the authors' released code; Optuna 5)."""

import json
import random
import sys
import warnings

import numpy as np
import optuna
import pytest
import torch

from lshkit.search.samplers import SAMPLERS, Observation, make_sampler
from lshkit.search.schedule import hyperband_brackets
from lshkit.search.space import Categorical, Float, Int, SearchSpace

DEATHS = ("magnitude", "SET", "threshold", "global_magnitude")


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)


def _variant(p):
    return (p["sparse_init"], p["growth"], p["death"], p["redistribution"])


def test_authors_space_has_24_variants_times_death_rates():
    stepped = SearchSpace.authors(death_rate_step=0.1)
    points = stepped.grid_points()
    assert len(points) == 144 == stepped.size()
    assert len({_variant(p) for p in points}) == 24
    assert sorted({p["death_rate"] for p in points}) == [0.4, 0.5, 0.6, 0.7, 0.8, 0.9]
    assert {p["growth"] for p in points} == {"random"}
    continuous = SearchSpace.authors()
    assert continuous["death_rate"] == Float(0.4, 0.9) and continuous.size() == float("inf")
    with pytest.raises(ValueError, match="death_rate continuous"):
        continuous.grid_points()
    # the authors' best stacked-LSTM pick (the authors' released code) lies in their space
    continuous.validate({"sparse_init": "ER", "growth": "random", "death": "global_magnitude",
                         "redistribution": "nonzeros", "death_rate": 0.7})


def test_grid_space_is_exactly_the_24_variants_at_death_rate_08():
    space = SearchSpace.authors(grid=True)
    points = space.grid_points()
    assert len(points) == 24 and len({_variant(p) for p in points}) == 24
    assert {p["death_rate"] for p in points} == {0.8}
    sampler = make_sampler("grid", space, seed=1)
    first = sampler.initial(24)
    assert sorted(map(_variant, first)) == sorted(map(_variant, points))
    assert first != points  # seeded shuffle, not the declaration order
    assert first == make_sampler("grid", space, seed=1).initial(24)
    assert first[:5] == sampler.initial(5)
    history = [Observation(p, 0.0, True, 1) for p in first[:20]]
    assert sampler.propose(10, history[:10]) == first[10:20]
    with pytest.warns(RuntimeWarning, match="only 4 of 6 configurations: the search space is exhausted"):
        assert sampler.propose(6, history) == first[20:]
    with pytest.raises(ValueError, match="no grid: death_rate continuous"):
        make_sampler("grid", SearchSpace.authors(), seed=0)


def _history(space, n, seed):
    pool = make_sampler("random", space, seed).initial(n)
    return [Observation(p, float(i), i < n // 2, 3) for i, p in enumerate(pool)]


@pytest.mark.parametrize("name", [s for s in SAMPLERS if s not in ("atpe", "grid")])
def test_deterministic_under_seed_and_history_length(name):
    space = SearchSpace.authors()
    a, b = make_sampler(name, space, seed=7), make_sampler(name, space, seed=7)
    assert a.initial(12) == b.initial(12)
    assert a.initial(12) != make_sampler(name, space, seed=8).initial(12)
    history = _history(space, 12, seed=7)
    proposed = a.propose(6, history)
    assert proposed == b.propose(6, history)  # a resumed search proposes the same candidates
    assert proposed != a.propose(6, history + [Observation(proposed[0], 0.0, True, 1)])[:6]
    for p in proposed:
        space.validate(p)


def test_initial_pool_is_the_same_for_every_generator():
    space = SearchSpace.authors()
    pools = [make_sampler(name, space, seed=3).initial(10) for name in ("random", "tpe", "bohb", "hyperband")]
    assert all(pool == pools[0] for pool in pools)


@pytest.mark.parametrize("name", [s for s in SAMPLERS if s not in ("atpe",)])
def test_no_duplicates_and_grid_fallback_when_nearly_exhausted(name):
    space = SearchSpace({"death": Categorical(DEATHS), "k": Int(0, 2)})  # 12 points
    points = space.grid_points()
    # 9 seen, survivors all at one point, so TPE keeps proposing seen configurations
    history = [Observation(p, 0.1 if p["death"] == "SET" else 1.0, p["death"] == "SET", 2)
               for p in points[:9]]
    proposed = make_sampler(name, space, seed=0).propose(3, history)
    assert len(proposed) == 3
    keys = {space.key(p) for p in proposed}
    assert len(keys) == 3 and keys.isdisjoint(space.key(o.params) for o in history)
    with pytest.warns(RuntimeWarning, match="only 3 of 5"):
        assert len(make_sampler(name, space, seed=0).propose(5, history)) == 3
    stepped = SearchSpace.authors(death_rate_step=0.1)
    initial = make_sampler(name if name != "grid" else "random", stepped, seed=0).initial(100)
    assert len({stepped.key(p) for p in initial}) == 100


@pytest.mark.parametrize("name", SAMPLERS)
def test_partial_space_only_ever_yields_its_points(name):
    """An atlas that recorded part of its grid: every sampler draws in the product of the
    dimensions but returns only recorded configurations, until they are exhausted."""
    full = SearchSpace({"death": Categorical(DEATHS), "death_rate": Categorical((0.4, 0.65, 0.9))})
    points = [p for p in full.grid_points() if p["death_rate"] == 0.65 or p["death"] == "SET"]  # 6 of 12
    space = SearchSpace(dict(full.items()), points=points)
    assert space.size() == 6 and space.grid_points() == points
    assert SearchSpace.from_dict(json.loads(json.dumps(space.to_dict()))).grid_points() == points
    with pytest.raises(ValueError, match="not one of the 6 configurations"):
        space.validate({"death": "magnitude", "death_rate": 0.4})
    keys = {space.key(p) for p in points}
    sampler = make_sampler(name, space, seed=1)
    initial = sampler.initial(3)
    history = [Observation(p, float(i), i < 2, 3) for i, p in enumerate(initial)]
    proposed = sampler.propose(3, history)
    assert {space.key(p) for p in initial + proposed} == keys  # all six, none outside, no repeat
    with pytest.warns(RuntimeWarning, match="only 0 of 1"):
        assert sampler.propose(1, history + [Observation(p, 9.0, False, 3) for p in proposed]) == []


def _concentrated_history(seed=0):
    """10 survivors: death SET, death rate in [0.8, 0.9]; 10 removed elsewhere."""
    rng = np.random.default_rng(seed)
    survivors = [Observation({"death": "SET", "death_rate": float(rng.uniform(0.8, 0.9))},
                             float(rng.uniform(0, 1)), True, 3) for _ in range(10)]
    removed = [Observation({"death": DEATHS[[0, 2, 3][i % 3]], "death_rate": float(rng.uniform(0.4, 0.7))},
                           float(rng.uniform(2, 3)), False, 3) for i in range(10)]
    return survivors + removed


def _near_survivors(proposals):
    return np.mean([p["death"] == "SET" and p["death_rate"] >= 0.75 for p in proposals])


def test_tpe_and_bohb_generation_is_conditioned_on_survivors():
    space = SearchSpace({"death": Categorical(DEATHS), "death_rate": Float(0.4, 0.9)})
    history = _concentrated_history()
    random_share = _near_survivors(make_sampler("random", space, seed=0).propose(40, history))
    tpe = make_sampler("tpe", space, seed=0).propose(40, history)
    assert random_share < 0.2  # the region holds 1/4 x 0.3 = 7.5% of the space
    assert _near_survivors(tpe) >= 0.8
    assert make_sampler("bohb", space, seed=0).propose(40, history) == tpe  # BOHB = multivariate TPE
    # swapping which group survived moves TPE's proposals away from the SET region
    flipped = [Observation(o.params, o.score, not o.survived, o.step) for o in history]
    assert _near_survivors(make_sampler("tpe", space, seed=0).propose(40, flipped)) <= 0.1


def test_tpe_accepts_non_finite_scores():
    space = SearchSpace.authors(death_rate_step=0.1)
    history = _history(space, 8, seed=2)
    history[0] = Observation(history[0].params, float("nan"), True, 3)
    history[-1] = Observation(history[-1].params, float("inf"), False, 2)
    assert len(make_sampler("tpe", space, seed=0).propose(4, history)) == 4


def test_space_validation_optuna_and_json_round_trip():
    space = SearchSpace({"death": Categorical(DEATHS), "lr": Float(1e-3, 1.0, log=True),
                         "rate": Float(0.4, 0.9, step=0.1), "k": Int(2, 10, step=2)})
    dists = space.to_optuna()
    assert dists["lr"] == optuna.distributions.FloatDistribution(1e-3, 1.0, log=True)
    assert dists["rate"].step == 0.1 and dists["k"] == optuna.distributions.IntDistribution(2, 10, step=2)
    assert dists["death"].choices == DEATHS
    again = SearchSpace.from_json(json.dumps(json.loads(space.to_json())))
    assert again == space and list(again) == list(space)
    good = {"death": "SET", "lr": 0.01, "rate": 0.7, "k": 4}
    space.validate(good)
    for bad, message in [
        (dict(good, death="prune"), r"death='prune' is outside its dimension Categorical"),
        (dict(good, rate=0.75), "rate=0.75 is outside"),
        (dict(good, k=5), "k=5 is outside"),
        (dict(good, lr=2.0), "lr=2.0 is outside"),
        ({k: v for k, v in good.items() if k != "k"}, r"missing \['k'\], unknown \[\]"),
        (dict(good, extra=1), r"missing \[\], unknown \['extra'\]"),
    ]:
        with pytest.raises(ValueError, match=message):
            space.validate(bad)
    with pytest.raises(ValueError, match="not a multiple of step"):
        Float(0.4, 0.9, step=0.3)
    with pytest.raises(ValueError, match="low < high"):
        Float(1.0, 0.5)
    with pytest.raises(ValueError, match="repeat"):
        Categorical(("a", "a"))
    with pytest.raises(ValueError, match="type 'real'; valid: categorical, float, int"):
        SearchSpace.from_dict({"x": {"type": "real", "low": 0, "high": 1}})


def test_bad_sampler_arguments():
    space = SearchSpace.authors()
    with pytest.raises(ValueError, match="unknown sampler 'smac'; valid: grid, random, tpe, atpe, bohb, hyperband"):
        make_sampler("smac", space)
    with pytest.raises(ValueError, match="n must be a non-negative int"):
        make_sampler("tpe", space).propose(-1, [])
    with pytest.raises(ValueError, match="death_rate=0.95 is outside"):
        bad = dict(make_sampler("random", space).initial(1)[0], death_rate=0.95)
        make_sampler("tpe", space).propose(2, [Observation(bad, 0.0, True, 1)])


def test_atpe_missing_dependency_says_what_to_install(monkeypatch):
    monkeypatch.setitem(sys.modules, "hyperopt", None)
    with pytest.raises(ImportError, match="pip install hyperopt lightgbm"):
        make_sampler("atpe", SearchSpace.authors())


def test_atpe_end_to_end():
    pytest.importorskip("hyperopt", reason="ATPE needs the optional hyperopt extra")
    pytest.importorskip("lightgbm", reason="hyperopt's ATPE needs lightgbm")
    space = SearchSpace({"death": Categorical(DEATHS), "death_rate": Float(0.4, 0.9)})
    history = _concentrated_history()
    states = random.getstate(), np.random.get_state()
    sampler = make_sampler("atpe", space, seed=0)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no duplicates, nothing exhausted
        proposed = sampler.propose(8, history)
    assert random.getstate() == states[0]  # ATPE's global RNG use is sealed off
    assert np.array_equal(np.random.get_state()[1], states[1][1])
    assert proposed == make_sampler("atpe", space, seed=0).propose(8, history)
    for p in proposed:
        space.validate(p)
    assert _near_survivors(proposed) >= 0.5  # random: 7.5%
    grid = SearchSpace.authors(grid=True)
    small = [Observation(p, float(i), i < 3, 2) for i, p in enumerate(grid.grid_points()[:6])]
    more = make_sampler("atpe", grid, seed=1).propose(2, small)
    assert len({grid.key(p) for p in more + [o.params for o in small]}) == 8



def test_atpe_shared_models_propose_what_hyperopt_would(monkeypatch):
    # The speed-up (models read once per process) must not change a proposal: compare with
    # hyperopt building a new optimiser per call, over two successive histories so that state
    # left in a shared optimiser would show.
    pytest.importorskip("hyperopt", reason="ATPE needs the optional hyperopt extra")
    pytest.importorskip("lightgbm", reason="hyperopt's ATPE needs lightgbm")
    from hyperopt.atpe import ATPEOptimizer

    from lshkit.search.samplers import atpe

    space = SearchSpace({"death": Categorical(DEATHS), "death_rate": Float(0.4, 0.9)})
    history = _concentrated_history()
    later = [Observation(o.params, o.score, not o.survived, o.step) for o in history]

    def proposals():
        sampler = make_sampler("atpe", space, seed=3)
        return sampler.propose(4, history), sampler.propose(4, later)

    shared = proposals()
    monkeypatch.setattr(atpe, "_atpe_optimizer", lambda: ATPEOptimizer)
    assert proposals() == shared

def test_hyperband_brackets_li_et_al_table():
    # Li et al. 2018, Table 1: R = 81, eta = 3 (n_i, r_i) per bracket s = 4..0
    assert hyperband_brackets(81, eta=3) == [
        [(81, 1), (27, 3), (9, 9), (3, 27), (1, 81)],
        [(34, 3), (11, 9), (3, 27), (1, 81)],
        [(15, 9), (5, 27), (1, 81)],
        [(8, 27), (2, 81)],
        [(5, 81)],
    ]
    assert hyperband_brackets(81, eta=3, min_resource=3) == [
        [(27, 3), (9, 9), (3, 27), (1, 81)],
        [(12, 9), (4, 27), (1, 81)],
        [(6, 27), (2, 81)],
        [(4, 81)],
    ]
    assert hyperband_brackets(1) == [[(1, 1)]]
    with pytest.raises(ValueError, match="eta must be an int >= 2"):
        hyperband_brackets(81, eta=1)
    with pytest.raises(ValueError, match="min_resource=5 exceeds max_resource=3"):
        hyperband_brackets(3, min_resource=5)
