"""Table 4: the schedule E of LS ranking, and the claim that the optimum is selected only from E = 3 on.
"""
from __future__ import annotations


import pandas as pd


def optimal_only_from(searches: pd.DataFrame, first: int = 3) -> tuple[pd.DataFrame, str]:
    """Table 4's claim that the optimal configuration is selected only for E ≥ ``first``: per
    schedule E (one search each, columns ``E`` and ``optimal_selected``), whether it selected the
    optimum and whether the claim says it should; the claim holds when every E agrees. Each E is
    one deterministic search on the atlas, so there is no interval here: a single disagreement
    decides."""
    table = searches[["E", "optimal_selected"]].astype({"E": int, "optimal_selected": bool}).sort_values("E")
    table["claimed"] = table.E >= first
    return table.reset_index(drop=True), "holds" if (table.optimal_selected == table.claimed).all() else "does not hold"
