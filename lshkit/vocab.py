"""Every choice the kit offers, named once and importing nothing heavy: the command line refuses a
bad value from these before torch, Optuna or scikit-learn load, and the configs, modules and
notebooks check against the same tuples.
"""
from lshkit.paper import TABLE1_MODELS

#: Models (Table A1) and the data they train on.
MODELS = ("lstm", "rhn", "gru", "rnn", "awd_mos")
DATASETS = ("ptb", "wikitext2", "smoke")
#: The models a search compares (Table 1's rows).
SEARCH_MODELS = TABLE1_MODELS
#: TrainConfig presets: CI, a laptop CPU, the atlas's small models, Table A1.
SCALES = ("smoke", "cpu", "atlas", "paper")
#: A search's scale: a preset, or auto (paper on CUDA, cpu otherwise).
SEARCH_SCALES = SCALES + ("auto",)
#: A notebook's scale: auto first, its default.
NOTEBOOK_SCALES = ("auto", "atlas", "cpu", "paper")
#: Table 2's budgets (24/30/40 initial candidates) and CI's smoke one.
BUDGETS = ("smoke", "low", "moderate", "high")
#: Where a notebook's candidates come from: replayed on an atlas or trained.
SOURCES = ("atlas", "train")
#: The named atlases (lshkit.atlas.spec.PRESETS).
ATLAS_PRESETS = ("atlas", "pass", "smoke", "cpu", "paper")

#: Candidate generators (Table 2) and the removal rankings.
SAMPLERS = ("grid", "random", "tpe", "atpe", "bohb", "hyperband")
RANKINGS = ("ls", "loss", "gap")
#: The LS space (Appendix B): embeddings, which dense LS a candidate is compared with (the authors'
#: code's first), distances, and fits ("candidate": one per candidate over the reference and its
#: history, as the Appendix B equation writes it; "joint": one over the reference and every history).
EMBEDDINGS = ("pca", "tsne", "raw")
REFERENCES = ("same_epoch", "final")
DISTANCES = ("l2", "cos")
FITS = ("candidate", "joint")
#: LS conventions (lshkit.ls): the authors' (paper) and the full Jacobian (full).
LS_CONVENTIONS = ("paper", "full")

#: LSH-Bench's Optuna side: samplers, the one refused (its space is categorical), pruners, metrics.
BENCH_SAMPLERS = ("tpe", "random")
BENCH_REFUSED = ("cmaes",)
PRUNERS = ("median", "hyperband", "successive_halving", "none")
METRICS = ("valid_loss", "valid_ppl")
