"""Optuna's generators behind the paper's random, TPE, BOHB and Hyperband (Table 2)."""
from __future__ import annotations

import warnings

import optuna

from lshkit.search.samplers.base import Sampler, optuna_draws
from lshkit.search.space import SearchSpace

__all__ = ["OptunaSampler"]


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
        return optuna_draws(self.space, sampler, history)
