"""Candidate generators for LSH by the paper's names (§3.2 "adaptive generation", Table 2).

Every generator offers ``initial(n)``, the first pool, deterministic under the seed, and
``propose(n, history)``: ``n`` new configurations conditioned on ``history``, a list of
:class:`~lshkit.search.samplers.base.Observation` (every candidate seen so far, its latest
ranking score, lower is better, whether it survived, and the epoch of that score).

- ``grid``: :mod:`~lshkit.search.samplers.grid`, the grid points in one seeded order.
- ``random``: Optuna's ``RandomSampler``; ignores the history.
- ``tpe``: Optuna's multivariate ``TPESampler`` with the survivors as its good group and the
  removed candidates as its bad group (:mod:`~lshkit.search.samplers.optuna`).
- ``atpe``: hyperopt's adaptive TPE (:mod:`~lshkit.search.samplers.atpe`; needs
  ``pip install hyperopt lightgbm``).
- ``bohb``: generation as in Optuna's BOHB, i.e. multivariate TPE (same generator as ``tpe``);
  the successive-halving brackets are the search loop's part
  (:func:`lshkit.search.schedule.hyperband_brackets`).
- ``hyperband``: Hyperband draws uniformly at random (same generator as ``random``); its
  brackets are again the schedule's.
"""
from __future__ import annotations

from lshkit.search.samplers.atpe import ATPESampler
from lshkit.search.samplers.base import Observation, Sampler
from lshkit.search.samplers.grid import GridSampler
from lshkit.search.samplers.optuna import OptunaSampler
from lshkit.search.space import SearchSpace
from lshkit.vocab import SAMPLERS

__all__ = ["SAMPLERS", "make_sampler", "Observation", "Sampler", "GridSampler", "OptunaSampler", "ATPESampler"]



def make_sampler(name: str, space: SearchSpace, seed: int = 0) -> Sampler:
    """The generator called ``name`` (one of :data:`SAMPLERS`) over ``space``, seeded."""
    if name not in SAMPLERS:
        raise ValueError(f"unknown sampler {name!r}; valid: {', '.join(SAMPLERS)}")
    if name == "grid":
        return GridSampler(space, seed)
    if name == "atpe":
        return ATPESampler(space, seed)
    return OptunaSampler(space, seed, name)
