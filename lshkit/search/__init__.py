"""LS-based Hyperpruning (LSH): the search of paper §3.2 (Fig. 2, Algorithm 1).

One concept per module:

- :mod:`~lshkit.search.config`: :class:`SearchConfig`, what defines one search;
- :mod:`~lshkit.search.schedule`: the keep rule, the pool sizes and the Hyperband brackets;
- :mod:`~lshkit.search.runner`: the runner interface and :class:`TrainingRunner`, which trains;
- :mod:`~lshkit.search.loop`: :class:`LSHSearch`, the loop itself;
- :mod:`~lshkit.search.records`: the tidy tables, LS vectors and summary it writes;
- :mod:`~lshkit.search.parallel`: :func:`run_search`, one search over local processes.

Replaying a search on a tabulated atlas instead of training is :mod:`lshkit.atlas.replay`.
"""
from lshkit.search.config import (BUDGETS, DISTANCES, EMBEDDING_FITS, EMBEDDINGS, LS_CONVENTIONS, MODELS,
                                  RANKINGS, REFERENCES, SCALES, SearchConfig)
from lshkit.search.loop import Candidate, LSHSearch
from lshkit.search.parallel import run_search
from lshkit.search.runner import Runner, TrainingRunner, reference_key, train_reference
from lshkit.search.schedule import hyperband_resources, keep_count, pool_schedule, scaled_brackets

__all__ = ["SearchConfig", "LSHSearch", "Candidate", "Runner", "TrainingRunner", "run_search",
           "train_reference", "reference_key", "keep_count", "pool_schedule", "hyperband_resources",
           "scaled_brackets", "MODELS", "SCALES", "BUDGETS", "RANKINGS", "EMBEDDINGS", "REFERENCES", "DISTANCES",
           "EMBEDDING_FITS", "LS_CONVENTIONS"]
