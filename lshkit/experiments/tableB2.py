"""Table B2: LS ranking under each embedding and distance, and the claim that PCA with L2 is the best.
"""
from __future__ import annotations


import pandas as pd

from lshkit.stats import overall_verdict
from lshkit.experiments.readings import paired_replays


def best_combination(frame: pd.DataFrame, best=("pca", "l2"), *, columns=("embedding", "distance"),
                     by=("embedding_fit",), value: str = "test_ppl") -> tuple[pd.DataFrame, str]:
    """Table B2's claim that one combination of ``columns`` (PCA with L2) is the best: per other
    combination present, :func:`paired_replays` of ``best`` minus it, and the claim's state: it
    holds when ``best`` is better than every other, judged by the intervals (:func:`lshkit.stats.overall_verdict`)."""
    combination = frame[list(columns)].astype(str).agg("/".join, axis=1)
    label = "/".join(best)
    others = [c for c in dict.fromkeys(combination) if c != label]
    if label not in set(combination) or not others:
        raise ValueError(f"best={best!r} and at least one other combination of {list(columns)} must be in the frame; "
                         f"it has {sorted(set(combination))}")
    rows = [paired_replays(frame.assign(combination=combination), a=label, b=other, column="combination", by=by,
                           value=value).rename(columns={f"{label}_better": "best_better", f"{other}_better": "other_better"})
            .assign(other=other) for other in others]
    table = pd.concat(rows, ignore_index=True)
    return table, overall_verdict(table.verdict)
