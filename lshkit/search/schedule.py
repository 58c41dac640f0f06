"""The schedules of a search, written once: LSH's removal rule and pool sizes (paper §3.2,
Algorithm 1) and the Hyperband/BOHB brackets (Li et al. 2018; Falkner et al. 2018)."""
from __future__ import annotations

import math

import numpy as np

__all__ = ["hyperband_brackets", "keep_count", "pool_schedule", "hyperband_resources", "scaled_brackets"]


def keep_count(p: int, final_survivors: int = 2) -> int:
    """How many of ``p`` ranked candidates one LSH round keeps: the nearer half, ``ceil(p/2)``
    (the far ``p // 2`` are removed), never fewer than ``final_survivors`` while the pool has
    them. The authors' code keeps ``floor(p/2) + 1`` (24 -> 13): the README's departures table."""
    return max(p - p // 2, min(p, final_survivors))


def pool_schedule(n: int, final_survivors: int = 2, rounds: int | None = None,
                  generate: bool = True) -> list[int]:
    """Pool sizes of the LSH rounds without failures (§3.2): ``p -> keep_count(p) + p // 4``
    (``keep_count(p)`` alone without generation) until at most ``final_survivors`` remain,
    or for ``rounds`` rounds."""
    sizes, p = [], n
    while True:
        sizes.append(p)
        keep = keep_count(p, final_survivors)
        if keep <= final_survivors or (rounds is not None and len(sizes) >= rounds):
            return sizes
        p = keep + (p // 4 if generate else 0)


def hyperband_resources(epochs_per_round: int, eta: int, final_epochs: int) -> tuple[int, int]:
    """(min_resource, max_resource) of the Hyperband/BOHB schedule: E and E·eta^s for the
    largest s <= 2 within ``final_epochs``."""
    s = 2
    while s > 0 and epochs_per_round * eta ** s > final_epochs:
        s -= 1
    return epochs_per_round, epochs_per_round * eta ** s


def scaled_brackets(n: int, epochs_per_round: int, eta: int, final_epochs: int) -> list[list[tuple[int, int]]]:
    """One Hyperband iteration's brackets ``[(candidates, epochs) per rung]``, their first rungs
    scaled (largest remainders) to add up to the pool size ``n``; rung ``i`` of a bracket
    starting ``n_s`` candidates keeps ``max(1, n_s // eta**i)``."""
    low, high = hyperband_resources(epochs_per_round, eta, final_epochs)
    brackets = hyperband_brackets(high, eta, low)
    firsts = [b[0][0] for b in brackets]
    exact = [n * f / sum(firsts) for f in firsts]
    sizes = [math.floor(x) for x in exact]
    for i in sorted(range(len(exact)), key=lambda i: (sizes[i] - exact[i], i))[: n - sum(sizes)]:
        sizes[i] += 1
    return [[(max(1, size // eta ** i), r) for i, (_, r) in enumerate(bracket)]
            for size, bracket in zip(sizes, brackets) if size]


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
