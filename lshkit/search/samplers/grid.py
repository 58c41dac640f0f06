"""Grid search (Table 2's GS): the grid points of a finite space in one seeded order. With
:meth:`~lshkit.search.space.SearchSpace.authors` ``(grid=True)`` that is the paper's 24
methodological variants at death rate 0.8."""
from __future__ import annotations

from lshkit.search.samplers.base import Sampler
from lshkit.search.space import SearchSpace

__all__ = ["GridSampler"]


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
