"""Neighbouring studies: three papers whose claims the kit checks beside the one it reproduces,
each run by its notebook. The core (data, models, dst, train, ls, embedding, search, atlas)
never imports from here; the studies use the core's graph measures and statistics.

- LEGCNet, chaos-causality pruning of dense networks (Sahu et al., arXiv 2308.09955;
  ``legcnet.ipynb``): :mod:`~lshkit.studies.legcnet` (the method and its runs),
  :mod:`~lshkit.studies.legcnet_claims` (the paper's claims in our numbers),
  :mod:`~lshkit.studies.chaos_causality` (the windowed Lyapunov exponent and Granger test
  estimators) and :mod:`~lshkit.studies.tabular` (the data and the one-hidden-layer MLP).
- Sparsity in RNNs on the Reber grammar (Darji, arXiv 2407.20601; ``reber_sparsity.ipynb``):
  :mod:`~lshkit.studies.reber_sparsity` (the pruning curves, the random-graph networks and the
  thesis's claims), :mod:`~lshkit.studies.random_graphs` (random graphs as hidden-to-hidden
  masks) and :mod:`~lshkit.studies.reber` (the grammars as data).
- The spectral gap of pruned RNN layers (Kalra et al., arXiv 2403.11100; ``spectral_gap.ipynb``):
  :mod:`~lshkit.studies.spectral_gap`.

Both RNN studies train the small sequence models of :mod:`~lshkit.studies.sequence`.
"""
