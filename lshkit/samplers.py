"""Search spaces and candidate generators for LSH (paper §3.2 "adaptive generation", Table 2).

A :class:`SearchSpace` declares the pruning configurations; :func:`make_sampler` gives a
generator by the paper's names. Every sampler offers

- ``initial(n)``: the first pool, deterministic under the seed;
- ``propose(n, history)``: ``n`` new configurations conditioned on ``history``, a list of
  :class:`Observation` (every candidate seen so far, its latest ranking score, lower is better,
  whether it survived, and the epoch of that score).

What each name does here:

- ``grid``: the grid points (finite spaces only) in one seeded shuffled order, skipping those
  already seen. With :meth:`SearchSpace.authors` ``(grid=True)`` that is the paper's GS: the 24
  methodological variants at death rate 0.8.
- ``random``: Optuna's ``RandomSampler``; ignores the history.
- ``tpe``: Optuna's multivariate ``TPESampler`` with the survivors as its good group and the
  removed candidates as its bad group (see :class:`OptunaSampler`).
- ``atpe``: hyperopt's adaptive TPE (needs ``pip install hyperopt lightgbm``).
- ``bohb``: generation as in Optuna's BOHB, i.e. multivariate TPE (same generator as ``tpe``);
  the successive-halving brackets are the search loop's part, see :func:`hyperband_brackets`.
- ``hyperband``: Hyperband draws uniformly at random (same generator as ``random``); its
  brackets are again :func:`hyperband_brackets`.

``initial(n)`` is the same for every name except ``grid``: random draws seeded by the seed
alone, so samplers compared under one seed start from the same pool. ``propose`` derives its
randomness from ``(seed, len(history))``, so re-running a search proposes the same candidates,
which resumption relies on. It never returns a configuration already in the history or twice
in one call while an unseen one exists, nor one outside a partial space: such draws are redrawn (at most
``_DRAWS_PER_PROPOSAL`` draws per wanted candidate), then a finite space is completed from the
unseen grid points in seeded order; when the space is exhausted fewer come back, with a warning.
"""

from __future__ import annotations

import copy
import datetime
import itertools
import json
import math
import random
import warnings
from abc import ABC, abstractmethod
from collections.abc import Iterator, Mapping
from dataclasses import asdict, dataclass
from typing import Union
from unittest import mock

import numpy as np
import optuna
from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution
from optuna.trial import TrialState, create_trial
from threadpoolctl import threadpool_limits

from lshkit.env import quiet_optuna

SAMPLERS = ("grid", "random", "tpe", "atpe", "bohb", "hyperband")

# A sampler that keeps returning seen configurations is redrawn at most this many times per
# wanted candidate before the unseen grid points are used (finite spaces) or it gives up.
_DRAWS_PER_PROPOSAL = 20
# Enumerating the grid as a last resort is skipped beyond this many points: in spaces that big
# a sampler hardly ever runs out of unseen draws.
_MAX_FALLBACK_GRID = 100_000
# Independent random streams derived from the user's seed.
_INITIAL, _PROPOSE, _GRID = 0, 1, 2
_DECIMALS = 12
# The key under which SearchSpace.to_dict keeps a partial space's configurations.
_POINTS = "_points"


def _derive_seed(*keys: int) -> int:
    return int(np.random.SeedSequence(list(keys)).generate_state(1)[0])


def _is_number(value) -> bool:
    return isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(value, bool)


# ---------------------------------------------------------------------------------------------
# Dimensions and the search space


@dataclass(frozen=True)
class Categorical:
    """One of ``choices`` (str, int, float, bool or None), unordered."""

    choices: tuple

    def __post_init__(self):
        choices = tuple(self.choices)
        object.__setattr__(self, "choices", choices)
        if not choices:
            raise ValueError("Categorical needs at least one choice")
        bad = [c for c in choices if not (c is None or isinstance(c, (str, bool, int, float)))]
        if bad:
            raise ValueError(f"Categorical choices must be str, int, float, bool or None: {bad!r}")
        if len(set(choices)) != len(choices):
            raise ValueError(f"Categorical choices repeat: {choices!r}")

    def contains(self, value) -> bool:
        return value in self.choices

    def values(self) -> list:
        return list(self.choices)

    def snap(self, value):
        return value

    def to_optuna(self):
        return CategoricalDistribution(self.choices)


@dataclass(frozen=True)
class Float:
    """A real in ``[low, high]``; ``step``: only ``low + k*step``; ``log``: log-uniform prior."""

    low: float
    high: float
    step: float | None = None
    log: bool = False

    def __post_init__(self):
        if not (_is_number(self.low) and _is_number(self.high) and self.low < self.high):
            raise ValueError(f"Float needs numbers low < high, got low={self.low!r} high={self.high!r}")
        if self.step is not None:
            if self.log:
                raise ValueError("Float cannot have both step and log")
            if not (_is_number(self.step) and self.step > 0):
                raise ValueError(f"Float step must be a positive number, got {self.step!r}")
            n = (self.high - self.low) / self.step
            if abs(n - round(n)) > 1e-9:
                raise ValueError(
                    f"Float high - low = {self.high - self.low} is not a multiple of step={self.step}"
                )
        if self.log and self.low <= 0:
            raise ValueError(f"Float with log=True needs low > 0, got low={self.low!r}")

    @property
    def n_steps(self) -> int:
        return round((self.high - self.low) / self.step)

    def contains(self, value) -> bool:
        if not (_is_number(value) and math.isfinite(value)):
            return False
        tol = 1e-9 * max(1.0, abs(self.high - self.low))
        if not (self.low - tol <= value <= self.high + tol):
            return False
        if self.step is None:
            return True
        k = (value - self.low) / self.step
        return abs(k - round(k)) <= 1e-9

    def values(self) -> list | None:
        if self.step is None:
            return None
        return [round(self.low + k * self.step, _DECIMALS) for k in range(self.n_steps + 1)]

    def snap(self, value) -> float:
        if self.step is None:
            return float(min(max(value, self.low), self.high))
        k = min(max(round((value - self.low) / self.step), 0), self.n_steps)
        return round(self.low + k * self.step, _DECIMALS)

    def to_optuna(self):
        return FloatDistribution(self.low, self.high, log=self.log, step=self.step)


@dataclass(frozen=True)
class Int:
    """An integer in ``[low, high]`` on the grid ``low + k*step``."""

    low: int
    high: int
    step: int = 1

    def __post_init__(self):
        ints = all(isinstance(v, (int, np.integer)) and not isinstance(v, bool)
                   for v in (self.low, self.high, self.step))
        if not (ints and self.low <= self.high and self.step >= 1):
            raise ValueError(
                f"Int needs integers low <= high and step >= 1, got "
                f"low={self.low!r} high={self.high!r} step={self.step!r}"
            )
        if (self.high - self.low) % self.step:
            raise ValueError(
                f"Int high - low = {self.high - self.low} is not a multiple of step={self.step}"
            )

    @property
    def n_steps(self) -> int:
        return (self.high - self.low) // self.step

    def contains(self, value) -> bool:
        return (isinstance(value, (int, np.integer)) and not isinstance(value, bool)
                and self.low <= value <= self.high and (value - self.low) % self.step == 0)

    def values(self) -> list:
        return list(range(self.low, self.high + 1, self.step))

    def snap(self, value) -> int:
        k = min(max(round((value - self.low) / self.step), 0), self.n_steps)
        return int(self.low + k * self.step)

    def to_optuna(self):
        return IntDistribution(self.low, self.high, step=self.step)


Dimension = Union[Categorical, Float, Int]
_DIMENSION_TYPES = {"categorical": Categorical, "float": Float, "int": Int}


class SearchSpace(Mapping):
    """Ordered mapping ``name -> dimension`` of the configurations a search explores.

    The parameter names are those of the configuration they feed (for :meth:`authors`, the
    fields of ``lshkit.dst.SparseConfig``); the target density is not searched.

    ``points``: where only some configurations of the product exist (an atlas that recorded part
    of its grid), those configurations. The samplers still draw in the product of the dimensions,
    which keeps their model of each dimension; a draw outside ``points`` is drawn again as a
    duplicate is, and the fallback completes from the unseen ``points`` (:class:`Sampler`), so a
    search never holds a configuration the space lacks.
    """

    def __init__(self, dimensions: Mapping[str, Dimension], points=None):
        dims = dict(dimensions)
        if not dims:
            raise ValueError("a SearchSpace needs at least one dimension")
        for name, dim in dims.items():
            if not isinstance(name, str) or not name or name == _POINTS:
                raise ValueError(f"dimension names must be non-empty strings other than {_POINTS!r}, "
                                 f"got {name!r}")
            if not isinstance(dim, (Categorical, Float, Int)):
                raise ValueError(f"dimension {name!r} must be Categorical, Float or Int, got {dim!r}")
        self._dims = dims
        self._points = None
        if points is not None:
            if not points:
                raise ValueError("SearchSpace points, where given, must hold at least one configuration")
            for p in points:
                self.validate(p)
            self._points = [self.snap(p) for p in points]
            self._keys = {self.key(p) for p in self._points}
            if len(self._keys) != len(self._points):
                raise ValueError("SearchSpace points must be distinct configurations")

    def __getitem__(self, name: str) -> Dimension:
        return self._dims[name]

    def __iter__(self):
        return iter(self._dims)

    def __len__(self) -> int:
        return len(self._dims)

    def __repr__(self) -> str:
        extra = "" if self._points is None else f", points=<{len(self._points)} configurations>"
        return f"SearchSpace({self._dims!r}{extra})"

    @property
    def points(self) -> list[dict] | None:
        """The configurations of a partial space (None: the whole product)."""
        return None if self._points is None else [dict(p) for p in self._points]

    def contains(self, params: Mapping) -> bool:
        """Whether ``params`` (a configuration valid in the dimensions) is one of this space's."""
        return self._points is None or self.key(params) in self._keys

    @classmethod
    def authors(cls, grid: bool = False, death_rate_step: float | None = None) -> "SearchSpace":
        """The authors' space (the authors' released code): 2 inits x 4 deaths x 3 redistributions = 24
        methodological variants, growth random, death rate in [0.4, 0.9] (continuous as in the
        paper; ``death_rate_step=0.1`` gives their code's {0.4, ..., 0.9}).

        ``grid=True``: the paper's grid-search space (§4, Table 2/Table 4): death rate fixed at
        0.8, so exactly the 24 variants.
        """
        if grid:
            death_rate: Dimension = Categorical((0.8,))
        else:
            death_rate = Float(0.4, 0.9, step=death_rate_step)
        return cls({
            "sparse_init": Categorical(("uniform", "ER")),
            "growth": Categorical(("random",)),
            "death": Categorical(("magnitude", "SET", "threshold", "global_magnitude")),
            "redistribution": Categorical(("magnitude", "nonzeros", "none")),
            "death_rate": death_rate,
        })

    @property
    def is_finite(self) -> bool:
        return all(dim.values() is not None for dim in self._dims.values())

    def size(self) -> float:
        """Number of grid points; ``inf`` when a dimension is continuous."""
        if self._points is not None:
            return len(self._points)
        if not self.is_finite:
            return math.inf
        return math.prod(len(dim.values()) for dim in self._dims.values())

    def grid_points(self) -> list[dict]:
        """Every configuration of a finite space, in the fixed order of ``itertools.product``
        over the dimensions in declaration order (choices in their given order); of a partial
        space, its ``points`` in their given order."""
        if self._points is not None:
            return self.points
        continuous = [name for name, dim in self._dims.items() if dim.values() is None]
        if continuous:
            raise ValueError(
                f"the space has no grid: {', '.join(continuous)} continuous (give Float a step, "
                f"or use a Categorical)"
            )
        names = list(self._dims)
        values = [self._dims[name].values() for name in names]
        return [dict(zip(names, combo)) for combo in itertools.product(*values)]

    def to_optuna(self) -> dict:
        return {name: dim.to_optuna() for name, dim in self._dims.items()}

    def validate(self, params: Mapping) -> None:
        """Raise ValueError naming the first missing, unknown or out-of-domain parameter."""
        if not isinstance(params, Mapping):
            raise ValueError(f"a configuration must be a mapping name -> value, got {params!r}")
        missing = [name for name in self._dims if name not in params]
        unknown = [name for name in params if name not in self._dims]
        if missing or unknown:
            raise ValueError(
                f"configuration {dict(params)!r}: missing {missing}, unknown {unknown}; "
                f"the space has {list(self._dims)}"
            )
        for name, dim in self._dims.items():
            if not dim.contains(params[name]):
                raise ValueError(f"{name}={params[name]!r} is outside its dimension {dim!r}")
        if self._points is not None and not self.contains(params):
            raise ValueError(f"configuration {dict(params)!r} is not one of the {len(self._points)} "
                             "configurations this partial space holds")

    def snap(self, params: Mapping) -> dict:
        """Canonical values: plain Python types, stepped floats rounded onto their grid."""
        out = {}
        for name, dim in self._dims.items():
            value = params[name]
            value = value.item() if isinstance(value, np.generic) else value
            out[name] = dim.snap(value)
        return out

    def key(self, params: Mapping) -> tuple:
        """Hashable identity of a configuration, equal for equal configurations."""
        snapped = self.snap(params)
        return tuple(round(v, _DECIMALS) if isinstance(v, float) else v for v in snapped.values())

    def to_dict(self) -> dict:
        out = {name: {"type": type(dim).__name__.lower(), **asdict(dim)}
               for name, dim in self._dims.items()}
        if self._points is not None:
            out[_POINTS] = self.points
        return out

    @classmethod
    def from_dict(cls, data: Mapping) -> "SearchSpace":
        data = dict(data)
        points = data.pop(_POINTS, None)
        dims = {}
        for name, spec in data.items():
            spec = dict(spec)
            kind = spec.pop("type", None)
            if kind not in _DIMENSION_TYPES:
                raise ValueError(
                    f"dimension {name!r} has type {kind!r}; valid: {', '.join(_DIMENSION_TYPES)}"
                )
            dims[name] = _DIMENSION_TYPES[kind](**spec)
        return cls(dims, points)

    def to_json(self) -> str:
        return json.dumps(self.to_dict())

    @classmethod
    def from_json(cls, text: str) -> "SearchSpace":
        return cls.from_dict(json.loads(text))


# ---------------------------------------------------------------------------------------------
# Samplers


@dataclass(frozen=True)
class Observation:
    """A candidate as the generator sees it: ``score`` is its latest ranking score (lower is
    better: an LS distance or a validation loss), taken at epoch ``step``; ``survived`` is
    whether it is still in the pool."""

    params: dict
    score: float
    survived: bool
    step: int


class Sampler(ABC):
    """Base of every generator: seeded, duplicate-free ``initial`` and ``propose``."""

    name = ""

    def __init__(self, space: SearchSpace, seed: int = 0):
        if not isinstance(space, SearchSpace):
            raise ValueError(f"space must be a SearchSpace, got {type(space).__name__}")
        if not isinstance(seed, (int, np.integer)) or seed < 0:
            raise ValueError(f"seed must be a non-negative int, got {seed!r}")
        self.space = space
        self.seed = int(seed)

    def __repr__(self) -> str:
        return f"{type(self).__name__}(name={self.name!r}, seed={self.seed})"

    def initial(self, n: int) -> list[dict]:
        """The first pool: ``n`` distinct configurations drawn at random (seed only)."""
        self._check_n(n)
        seed = _derive_seed(self.seed, _INITIAL)
        draws = _optuna_draws(self.space, optuna.samplers.RandomSampler(seed=seed), [])
        return self._unique(n, draws, set())

    def propose(self, n: int, history: list[Observation]) -> list[dict]:
        """``n`` new configurations conditioned on ``history``, none of them already seen."""
        self._check_n(n)
        history = list(history)
        for obs in history:
            if not isinstance(obs, Observation):
                raise ValueError(f"history must hold Observation objects, got {obs!r}")
            self.space.validate(obs.params)
        seen = {self.space.key(obs.params) for obs in history}
        if n == 0:
            return []
        seed = _derive_seed(self.seed, _PROPOSE, len(history))
        return self._unique(n, self._draws(n, history, seed), seen)

    @abstractmethod
    def _draws(self, n: int, history: list[Observation], seed: int) -> Iterator[dict]:
        """An endless (or, for grid, exhaustive) stream of candidate configurations."""

    @staticmethod
    def _check_n(n) -> None:
        if not isinstance(n, (int, np.integer)) or isinstance(n, bool) or n < 0:
            raise ValueError(f"n must be a non-negative int, got {n!r}")

    def _grid_order(self) -> list[dict]:
        points = self.space.grid_points()
        order = np.random.default_rng(_derive_seed(self.seed, _GRID)).permutation(len(points))
        return [points[i] for i in order]

    def _unique(self, n: int, draws: Iterator[dict], seen: set) -> list[dict]:
        out = []
        seen = set(seen)
        for params in itertools.islice(draws, n * _DRAWS_PER_PROPOSAL):
            key = self.space.key(params)
            if key not in seen and self.space.contains(params):
                seen.add(key)
                out.append(self.space.snap(params))
                if len(out) == n:
                    return out
        if self.space.size() > _MAX_FALLBACK_GRID:
            reason = f"{n * _DRAWS_PER_PROPOSAL} draws gave no other unseen configuration"
        else:
            reason = "the search space is exhausted"
            for params in self._grid_order():
                key = self.space.key(params)
                if key not in seen:
                    seen.add(key)
                    out.append(params)
                    if len(out) == n:
                        return out
        warnings.warn(
            f"sampler {self.name!r} returns only {len(out)} of {n} configurations: {reason}",
            RuntimeWarning,
            stacklevel=3,
        )
        return out


class GridSampler(Sampler):
    """Grid search: the grid points in one shuffled order fixed by the seed; ``initial(n)`` is
    its first ``n`` points and ``propose`` continues with the unseen ones (history ignored
    otherwise)."""

    name = "grid"

    def __init__(self, space: SearchSpace, seed: int = 0):
        super().__init__(space, seed)
        space.grid_points()  # raises for a continuous space, before any search starts

    def initial(self, n: int) -> list[dict]:
        self._check_n(n)
        return self._unique(n, iter(self._grid_order()), set())

    def _draws(self, n, history, seed):
        return iter(self._grid_order())


def _frozen_trial(space: SearchSpace, obs: Observation, distributions: dict):
    params = space.snap(obs.params)
    score = float(obs.score)
    if obs.survived:
        # A COMPLETE trial cannot hold NaN; a NaN score is simply the worst one.
        return create_trial(params=params, distributions=distributions,
                            value=math.inf if math.isnan(score) else score)
    return create_trial(params=params, distributions=distributions, state=TrialState.PRUNED,
                        intermediate_values={int(obs.step): score})


def _optuna_draws(space: SearchSpace, sampler, history: list[Observation]) -> Iterator[dict]:
    distributions = space.to_optuna()
    with quiet_optuna():
        study = optuna.create_study(direction="minimize", sampler=sampler)
        study.add_trials([_frozen_trial(space, obs, distributions) for obs in history])
    while True:
        # Asked trials stay RUNNING; with constant_liar off TPE ignores them, so every draw of a
        # call comes from the same model of the history.
        yield study.ask(distributions).params


class OptunaSampler(Sampler):
    """``random`` / ``hyperband``: Optuna's ``RandomSampler``. ``tpe`` / ``bohb``: Optuna's
    ``TPESampler(multivariate=True, constant_liar=False, n_startup_trials=1)`` whose "below"
    (good, l(x)) group is exactly the survivors.

    Each ``propose`` builds a fresh in-memory study from the history: survivors are COMPLETE
    trials valued by their score, removed candidates PRUNED trials reporting their last score
    at their step. Optuna 5.0's TPE (optuna/samplers/_tpe/sampler.py, ``_split_trials``) fills
    the below group with the first ``gamma(n)`` trials, taking COMPLETE trials sorted by value
    before PRUNED ones sorted by ``_get_pruned_trial_score`` = (-step, value); everything else
    forms the "above" (bad, g(x)) group. Its default ``gamma(n) = min(ceil(0.1 n), 25)`` would
    put most survivors in the bad group with the removed ones, and l(x)/g(x) then peaks in
    the gaps between survivors and removed candidates rather than among the survivors:
    measured on a 2-D space with 10 survivors in one region and 10 removed elsewhere, 0-22% of
    40 proposals fell in the survivors' region (random: 5-8%). So ``gamma`` returns the number
    of survivors: l(x) models the survivors, g(x) the removed candidates (100% in that region),
    which is the paper's generation "leveraging the knowledge of remaining candidates" (§3.2).
    Survivors' scores then no longer matter to TPE; removed ones only through that split.
    ``gamma`` is deprecated since Optuna 4.9 (removed in 6.0; requirements pin optuna<6).

    ``constant_liar=False`` because Optuna 5 defaults it on (its 5.0 release notes), which would count
    the proposals of the same call as bad trials. ``n_startup_trials=1``: TPE's random start-up
    phase is the initial pool (``initial``), so from the first ``propose`` on it models whatever
    history it is given, however small the pool.
    """

    def __init__(self, space: SearchSpace, seed: int = 0, name: str = "tpe"):
        if name not in ("random", "hyperband", "tpe", "bohb"):
            raise ValueError(f"OptunaSampler name {name!r}; valid: 'random', 'hyperband', 'tpe', 'bohb'")
        super().__init__(space, seed)
        self.name = name

    def _draws(self, n, history, seed):
        if self.name in ("random", "hyperband"):
            sampler = optuna.samplers.RandomSampler(seed=seed)
        else:
            n_survivors = sum(obs.survived for obs in history)
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", FutureWarning)  # the gamma deprecation notice
                sampler = optuna.samplers.TPESampler(
                    seed=seed, multivariate=True, constant_liar=False, n_startup_trials=1,
                    gamma=lambda n_finished: n_survivors,
                )
        return _optuna_draws(self.space, sampler, history)


class ATPESampler(Sampler):
    """Hyperopt's adaptive TPE (``hyperopt.atpe.suggest``) driven by hand: hyperopt has no
    ask-and-tell, so each ``propose`` rebuilds a ``Trials`` object from the history and asks
    ATPE for new points.

    Encoding: Categorical -> ``hp.choice`` over choice indices; stepped Float and Int ->
    ``hp.quniform`` over the step index ``k`` in [-0.5, n_steps + 0.5] (rounded, clipped, so
    every grid value has equal prior mass and the order is kept); Float -> ``hp.uniform`` or
    ``hp.loguniform``.

    Losses: survivors keep their score. ATPE knows no pruned state, so removed candidates keep
    their scores shifted up by one common amount, just enough that the best removed one lies
    above the worst survivor (as Optuna's TPE ranks PRUNED after COMPLETE trials), keeping their
    order and spacing. Non-finite scores (diverged candidates) get the worst finite loss plus
    a gap. ATPE draws from Python's ``random`` and NumPy's global RNG, ignoring its ``seed``
    argument, so both are seeded around each call and restored after.

    Speed (benchmarks/replay_speed.py), with the same proposals: each call runs on one thread
    (LightGBM's OpenMP and BLAS threads otherwise wait for each other on a shared machine: its
    single-row predictions took 7 ms instead of 0.6 ms beside one busy process), and the
    optimiser's 13 LightGBM models are read from disk once per process rather than per call, and
    the statistics of one history are computed once per ``propose`` rather than per draw
    (:func:`_atpe_optimizer`).
    """

    name = "atpe"

    def __init__(self, space: SearchSpace, seed: int = 0):
        super().__init__(space, seed)
        try:
            import hyperopt  # noqa: F401
            import lightgbm  # noqa: F401
        except ImportError as exc:
            raise ImportError(
                f"sampler 'atpe' needs hyperopt and lightgbm ({exc}): pip install hyperopt lightgbm"
            ) from exc

    def _hp_space(self) -> dict:
        from hyperopt import hp

        out = {}
        for name, dim in self.space.items():
            if isinstance(dim, Categorical):
                out[name] = hp.choice(name, list(range(len(dim.choices))))
            elif isinstance(dim, Int) or dim.step is not None:
                out[name] = hp.quniform(name, -0.5, dim.n_steps + 0.5, 1)
            elif dim.log:
                out[name] = hp.loguniform(name, math.log(dim.low), math.log(dim.high))
            else:
                out[name] = hp.uniform(name, dim.low, dim.high)
        return out

    def _encode(self, params: Mapping) -> dict:
        out = {}
        for name, dim in self.space.items():
            value = params[name]
            if isinstance(dim, Categorical):
                out[name] = dim.choices.index(value)
            elif isinstance(dim, Int) or dim.step is not None:
                out[name] = float(round((value - dim.low) / dim.step))
            else:
                out[name] = float(value)
        return out

    def _decode(self, vals: Mapping) -> dict:
        out = {}
        for name, dim in self.space.items():
            value = vals[name][0]
            if isinstance(dim, Categorical):
                out[name] = dim.choices[int(value)]
            elif isinstance(dim, Int) or dim.step is not None:
                k = min(max(int(round(value)), 0), dim.n_steps)
                out[name] = dim.snap(dim.low + k * dim.step)
            else:
                out[name] = dim.snap(float(value))
        return out

    @staticmethod
    def _losses(history: list[Observation]) -> list[float]:
        scores = np.array([float(o.score) for o in history])
        finite = np.isfinite(scores)
        survived = np.array([o.survived for o in history], dtype=bool)
        spread = float(np.ptp(scores[finite])) if finite.any() else 0.0
        gap = 1e-3 * spread if spread > 0 else 1e-3
        losses = scores.copy()
        removed = finite & ~survived
        if (finite & survived).any() and removed.any():
            worst_survivor = scores[finite & survived].max()
            losses[removed] += max(0.0, worst_survivor + gap - scores[removed].min())
        worst = losses[finite].max() if finite.any() else 0.0
        losses[~finite] = worst + gap
        return losses.tolist()

    def _trials(self, history: list[Observation], domain):
        from hyperopt import JOB_STATE_DONE, STATUS_OK, Trials

        trials = Trials()
        stamp = datetime.datetime(2000, 1, 1)
        docs = []
        for tid, (obs, loss) in enumerate(zip(history, self._losses(history))):
            vals = {k: [v] for k, v in self._encode(obs.params).items()}
            misc = dict(tid=tid, cmd=domain.cmd, workdir=domain.workdir,
                        idxs={k: [tid] for k in vals}, vals=vals)
            (doc,) = trials.new_trial_docs([tid], [None], [{"status": STATUS_OK, "loss": loss}], [misc])
            # ATPE reads each trial's duration from these two stamps.
            doc.update(state=JOB_STATE_DONE, book_time=stamp, refresh_time=stamp)
            docs.append(doc)
        trials.insert_trial_docs(docs)
        trials.refresh()
        return trials

    def _draws(self, n, history, seed):
        from hyperopt import Domain, atpe

        domain = Domain(lambda params: 0.0, self._hp_space())
        trials = self._trials(history, domain)
        factory = _atpe_optimizer()
        for batch in itertools.count():
            new_ids = list(range(len(history) + batch * n, len(history) + (batch + 1) * n))
            batch_seed = _derive_seed(seed, batch)
            py_state, np_state = random.getstate(), np.random.get_state()
            try:
                random.seed(batch_seed)
                np.random.seed(batch_seed)
                with threadpool_limits(limits=1), mock.patch.object(atpe, "ATPEOptimizer", factory):
                    docs = atpe.suggest(new_ids, domain, trials, batch_seed)
            finally:
                random.setstate(py_state)
                np.random.set_state(np_state)
            for doc in docs:
                yield self._decode(doc["misc"]["vals"])


_ATPE_MODELS = []


class _MemoScaler:
    """One of ATPE's fitted one-feature scalers, remembering what it transformed: the same
    statistic is scaled again at every recommendation from the same history."""

    def __init__(self, scaler):
        self.scaler, self.memo = scaler, {}

    def transform(self, x):
        key = tuple(map(tuple, x))
        if key not in self.memo:
            self.memo[key] = self.scaler.transform(x)
        return self.memo[key]


def _atpe_optimizer():
    """A factory of new ``hyperopt.atpe.ATPEOptimizer`` as ``atpe.suggest`` builds one per call,
    whose LightGBM models and scalers (read-only) are those of the first one this process built:
    each is a shallow copy with the three attributes an optimiser changes set as its constructor
    sets them. The statistics of the history (``computeAllResultStatistics``, deterministic and
    the same for every draw of one ``propose``) are computed once per factory and handed out
    as copies, because the optimiser adds keys to them; so are their scaled values."""
    from hyperopt.atpe import ATPEOptimizer

    if not _ATPE_MODELS:
        _ATPE_MODELS.append(ATPEOptimizer())
    # Both caches live as long as the factory (one propose): the same history, the same statistics.
    statistics = {}
    scalers = {k: _MemoScaler(v) for k, v in _ATPE_MODELS[0].featureScalingModels.items()}

    def all_result_statistics(space, results):
        key = json.dumps([space, results], sort_keys=True, default=repr)
        if key not in statistics:
            statistics[key] = _ATPE_MODELS[0].computeAllResultStatistics(space, results)
        return copy.deepcopy(statistics[key])

    def new():
        optimizer = copy.copy(_ATPE_MODELS[0])
        optimizer.lastATPEParameters, optimizer.lastLockedParameters, optimizer.atpeParamDetails = None, [], None
        optimizer.computeAllResultStatistics = all_result_statistics
        optimizer.featureScalingModels = scalers
        return optimizer

    return new


def make_sampler(name: str, space: SearchSpace, seed: int = 0) -> Sampler:
    """The generator called ``name`` (one of :data:`SAMPLERS`) over ``space``, seeded."""
    if name not in SAMPLERS:
        raise ValueError(f"unknown sampler {name!r}; valid: {', '.join(SAMPLERS)}")
    if name == "grid":
        return GridSampler(space, seed)
    if name == "atpe":
        return ATPESampler(space, seed)
    return OptunaSampler(space, seed, name)


def hyperband_brackets(
    max_resource: int, eta: int = 3, min_resource: int = 1
) -> list[list[tuple[int, int]]]:
    """Hyperband's bracket schedule (Li et al. 2018, Algorithm 1 and Table 1).

    Resources are in units of ``min_resource`` with ``R = max_resource / min_resource``;
    ``s_max = floor(log_eta R)`` and ``B = (s_max + 1) R``. Bracket ``s = s_max, ..., 0`` starts
    ``n = ceil(B/R * eta^s / (s+1))`` candidates at resource ``r = R eta^-s`` and runs successive
    halving: rung ``i = 0..s`` keeps ``floor(n eta^-i)`` candidates at resource ``r eta^i``.
    Returns one list of ``(n_candidates, resource)`` rungs per bracket, most exploratory first;
    resources are ``floor(max_resource / eta^(s-i))`` (epochs are integers; exact when
    ``max_resource / min_resource`` is a power of ``eta``).
    """
    for label, value, least in (("max_resource", max_resource, 1), ("eta", eta, 2),
                                ("min_resource", min_resource, 1)):
        if not isinstance(value, (int, np.integer)) or isinstance(value, bool) or value < least:
            raise ValueError(f"{label} must be an int >= {least}, got {value!r}")
    if min_resource > max_resource:
        raise ValueError(f"min_resource={min_resource} exceeds max_resource={max_resource}")
    s_max = 0
    while min_resource * eta ** (s_max + 1) <= max_resource:
        s_max += 1
    brackets = []
    for s in range(s_max, -1, -1):
        n = -(-(s_max + 1) * eta**s // (s + 1))
        brackets.append([(n // eta**i, max_resource // eta ** (s - i)) for i in range(s + 1)])
    return brackets
