"""What every candidate generator shares (paper §3.2 "adaptive generation"): seeded,
duplicate-free ``initial`` and ``propose`` over a :class:`~lshkit.search.space.SearchSpace`.

``initial(n)`` is the same for every generator except grid: random draws seeded by the seed
alone, so generators compared under one seed start from the same pool. ``propose`` derives its
randomness from ``(seed, len(history))``, so re-running a search proposes the same candidates,
which resumption relies on. It never returns a configuration already in the history or twice
in one call while an unseen one exists, nor one outside a partial space: such draws are
redrawn (at most ``_DRAWS_PER_PROPOSAL`` draws per wanted candidate), then a finite space is
completed from the unseen grid points in seeded order; when the space is exhausted fewer come
back, with a warning.
"""
from __future__ import annotations

import itertools
import math
import warnings
from abc import ABC, abstractmethod
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
import optuna
from optuna.trial import TrialState, create_trial

from lshkit.env import quiet_optuna
from lshkit.search.space import SearchSpace

__all__ = ["Observation", "Sampler", "derive_seed", "optuna_draws"]

# A sampler that keeps returning seen configurations is redrawn at most this many times per
# wanted candidate before the unseen grid points are used (finite spaces) or it gives up.
_DRAWS_PER_PROPOSAL = 20
# Enumerating the grid as a last resort is skipped beyond this many points: in spaces that big
# a sampler hardly ever runs out of unseen draws.
_MAX_FALLBACK_GRID = 100_000
# Independent random streams derived from the user's seed.
_INITIAL, _PROPOSE, _GRID = 0, 1, 2


def derive_seed(*keys: int) -> int:
    """A seed of its own for each stream keyed by ``keys`` (NumPy's SeedSequence)."""
    return int(np.random.SeedSequence(list(keys)).generate_state(1)[0])


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
        seed = derive_seed(self.seed, _INITIAL)
        draws = optuna_draws(self.space, optuna.samplers.RandomSampler(seed=seed), [])
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
        seed = derive_seed(self.seed, _PROPOSE, len(history))
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
        order = np.random.default_rng(derive_seed(self.seed, _GRID)).permutation(len(points))
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


def _frozen_trial(space: SearchSpace, obs: Observation, distributions: dict):
    params = space.snap(obs.params)
    score = float(obs.score)
    if obs.survived:
        # A COMPLETE trial cannot hold NaN; a NaN score is simply the worst one.
        return create_trial(params=params, distributions=distributions,
                            value=math.inf if math.isnan(score) else score)
    return create_trial(params=params, distributions=distributions, state=TrialState.PRUNED,
                        intermediate_values={int(obs.step): score})


def optuna_draws(space: SearchSpace, sampler, history: list[Observation]) -> Iterator[dict]:
    distributions = space.to_optuna()
    with quiet_optuna():
        study = optuna.create_study(direction="minimize", sampler=sampler)
        study.add_trials([_frozen_trial(space, obs, distributions) for obs in history])
    while True:
        # Asked trials stay RUNNING; with constant_liar off TPE ignores them, so every draw of a
        # call comes from the same model of the history.
        yield study.ask(distributions).params
