"""LSH-Bench: a tabulated atlas of pruned candidates, trained once, on which searches replay.

As NAS-Bench-201 (Dong & Yang, ICLR 2020) does for architectures and HPOBench / YAHPO Gym do
for hyperparameters, the atlas trains every candidate of a finite search space once and
records everything a search could ask of it, so that any search (LSH, its loss-based baseline,
grid, random, TPE, ATPE, BOHB, Hyperband; :mod:`lshkit.atlas.replay`) can be replayed on the records
in seconds, with as many repeats as statistics need.

The space (:class:`AtlasSpec`): the authors' 24 methodological variants (paper §3.2: 2 sparse
inits × 4 death modes × 3 redistributions, growth random) × the death rates
``death_rates`` at sparsity ``sparsity``, each trained with seed ``seed``, plus the dense
reference; then seed replicates (``replicate_seeds``) of ``replicates`` candidates spread over
the grid and of the dense model, which measure the noise floor.

One concept per module: :mod:`~lshkit.atlas.spec` (the space and the candidates' names),
:mod:`~lshkit.atlas.build` (training and recording them), :mod:`~lshkit.atlas.table` (reading
the records back) and :mod:`~lshkit.atlas.replay` (searches replayed on them).
"""
from lshkit.atlas.build import build_atlas, forget, graph_candidate, record_graphs, train_candidate
from lshkit.atlas.spec import (ATLAS_ROOT, CONVENTIONS, PARAMETERS, PASS_EPOCHS, PRESETS, AtlasSpec, candidate_name,
                               check_spec_file, configuration_name, covering_variants, stored_spec)
from lshkit.atlas.table import Atlas, AtlasDamaged, atlas_status, load_atlas

__all__ = ["AtlasSpec", "Atlas", "build_atlas", "covering_variants", "record_graphs", "graph_candidate", "atlas_status",
           "load_atlas", "candidate_name", "configuration_name", "ATLAS_ROOT", "CONVENTIONS", "PARAMETERS",
           "PASS_EPOCHS", "PRESETS", "AtlasDamaged", "train_candidate", "forget", "check_spec_file", "stored_spec"]
