"""Search spaces of LSH (paper §3.2, Table A1): the dimensions a pruning configuration varies
along, and :class:`SearchSpace`, by default the authors' space (:meth:`SearchSpace.authors`).

A space is finite when every dimension is (categorical, stepped float, int) and then has grid
points; a partial space (``points=``) holds only the listed configurations, as an atlas that is
still being built does. Values are snapped to the grid and rounded to ``_DECIMALS`` places, so
that a configuration has one key however it was computed.
"""
from __future__ import annotations

import itertools
import json
import math
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from typing import Union

import numpy as np
from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution

__all__ = ["Categorical", "Float", "Int", "Dimension", "SearchSpace"]

_DECIMALS = 12
# The key under which SearchSpace.to_dict keeps a partial space's configurations.
_POINTS = "_points"


def _is_number(value) -> bool:
    return isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(value, bool)


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
