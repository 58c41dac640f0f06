"""Argument checks shared by every module: bad input fails before any compute,
with a message naming the bad value and the valid ones."""
from __future__ import annotations

import math

__all__ = ["check_choice", "check_int", "check_positive_int", "check_number", "check_ratio", "check_ratios", "optional", "list_of"]


def check_choice(name: str, value, valid) -> None:
    if value not in valid:
        raise ValueError(f"{name}={value!r} is not valid; choose one of {list(valid)}")


def check_int(name: str, value, low: int = 0, optional: bool = False, *, high: int | None = None,
              why: str = "") -> None:
    """``value`` must be an integer in [``low``, ``high``] (no upper end when ``high`` is None),
    or None where ``optional``. A bool is not an integer here. ``why`` ends the message (what the
    number counts, or the paper's value)."""
    if optional and value is None:
        return
    if isinstance(value, bool) or not isinstance(value, int) or value < low or (high is not None and value > high):
        what = (f"an integer in [{low}, {high}]" if high is not None else "a non-negative integer" if low == 0
                else "a positive integer" if low == 1 else f"an integer >= {low}")
        raise ValueError(f"{name}={value!r} is not valid; it must be {what}" + (" or None" if optional else "")
                         + (f" {why}" if why else ""))


def check_positive_int(name: str, value) -> None:
    check_int(name, value, low=1)


def check_number(name: str, value, *, low: float | None = None, high: float | None = None,
                 low_open: bool = False, high_open: bool = False) -> None:
    """``value`` must be a finite real in the interval given (open ends where asked)."""
    ok = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
    if ok and low is not None:
        ok = value > low if low_open else value >= low
    if ok and high is not None:
        ok = value < high if high_open else value <= high
    if not ok:
        lo = "-inf" if low is None else f"{low}"
        hi = "inf" if high is None else f"{high}"
        interval = f"{'(' if low_open or low is None else '['}{lo}, {hi}{')' if high_open or high is None else ']'}"
        raise ValueError(f"{name}={value!r} is not valid; it must be a number in {interval}")


def check_ratio(name: str, value) -> None:
    """A pruning ratio (sparsity): a number in [0, 1)."""
    check_number(name, value, low=0, high=1, high_open=True)


def optional(check):
    """``check(name, value)`` that also accepts None (a parameter whose None means "the default")."""
    def checked(name, value):
        if value is not None:
            check(name, value)
    return checked


def list_of(check, *, what: str, distinct: bool = False):
    """A check of a non-empty list (or tuple) whose items each pass ``check(f"{name}[i]", item)``
    and, where ``distinct``, differ; ``what`` names the items in the message."""
    def checked(name, values):
        if (not isinstance(values, (list, tuple)) or not values
                or (distinct and len(set(values)) != len(values))):
            raise ValueError(f"{name}={values!r} is not valid; it must be a non-empty list of "
                             f"{'distinct ' if distinct else ''}{what}")
        for i, value in enumerate(values):
            check(f"{name}[{i}]", value)
    return checked


#: A non-empty list of pruning ratios (Fig. 3 left's sparsities).
check_ratios = list_of(check_ratio, what="pruning ratios in [0, 1)")
