"""What defines one search (:class:`SearchConfig`): the model and scale, the budget (Table 2's
initial pool sizes), the generator, the ranking (LS distance, validation loss or spectral gap), the LS space
(Appendix B), E, the LS settings (Eq. 1) and the search space."""
from __future__ import annotations

import dataclasses
import hashlib
from dataclasses import dataclass, field

from lshkit.checks import check_choice, check_int
from lshkit.dst import SparseConfig
from lshkit.io import JSONConfig
from lshkit.paper import BUDGET_POOL, SPARSITY
from lshkit.presets import resolve_scale
from lshkit.search.samplers import SAMPLERS
from lshkit.vocab import (DISTANCES, EMBEDDINGS, LS_CONVENTIONS, RANKINGS, REFERENCES, SEARCH_MODELS as MODELS,
                          SEARCH_SCALES as SCALES, FITS as EMBEDDING_FITS)
from lshkit.search.space import SearchSpace
from lshkit.search.schedule import hyperband_resources, pool_schedule
from lshkit.train import TrainConfig

__all__ = ["SearchConfig", "MODELS", "SCALES", "BUDGETS", "RANKINGS", "EMBEDDINGS", "REFERENCES", "DISTANCES",
           "EMBEDDING_FITS", "LS_CONVENTIONS", "LS_SPACE_FIELDS", "unread_dropped"]

#: Each budget's initial pool (Table 2), and CI's smoke one.
BUDGETS = {"smoke": 8, **BUDGET_POOL}
#: The LS space's options (Appendix B), read only when a search ranks by LS.
LS_SPACE_FIELDS = ("embedding", "reference", "distance", "embedding_fit")
# Parameters a search space may not set: they define the comparison itself.
_FIXED_TRAIN_FIELDS = ("model", "dataset", "epochs", "seed")
# Of those, the ones SearchConfig sets with its own fields; the dataset may be overridden, since
# train_overrides change the dense reference and every candidate alike.
_SEARCH_FIELDS = ("model", "epochs", "seed")


@dataclass
class SearchConfig(JSONConfig):
    """Everything that defines one search; ``None`` fields are filled by :meth:`resolved`."""

    model: str = "lstm"                # stacked LSTM, RHN or AWD-LSTM-MoS (Table A1)
    scale: str = "auto"                # TrainConfig preset; "auto": paper on CUDA, else cpu
    budget: str = "low"                # initial pool: smoke 8, low 24, moderate 30, high 40 (Table 2)
    sampler: str = "tpe"               # candidate generator (lshkit.search.samplers)
    ranking: str = "ls"                # "ls": distance to the dense LS (LSH); "loss": the baseline;
                                       # "gap": the masks' spectral gap (lshkit.graph, arXiv 2403.11100)
    embedding: str = "pca"             # LS space (Appendix B; lshkit.embedding.ls_space)
    reference: str = "same_epoch"      # the dense LS compared with: at the candidate's epoch (the authors'
                                       # code, which made the paper's numbers) or "final" (its last epoch)
    distance: str = "l2"               # l2 or cos in that space
    embedding_fit: str = "candidate"   # "candidate": one fit per candidate (Appendix B); "joint": one for all
    epochs_per_round: int | None = None  # E (§3.2; paper 3, smoke 1)
    rounds: int | None = None          # m; None: until final_survivors remain
    sparsity: float | None = None      # None: Table A1's (0.67 LSTM, 0.53 RHN, 0.55 AWD-LSTM-MoS)
    seed: int = 0                      # seeds the sampler and every model's training
    pool: int | None = None            # overrides the budget's initial pool size
    ls_samples: int = 2                # K (Table A1's LS batch size)
    ls_steps: int = 35                 # T
    ls_convention: str = "paper"       # "paper": authors' h-only, J^T, log2; "full": the exact LS
    stable_warmup: bool = True         # orthonormalise during the warm-up (the authors' is ill-posed)
    final_survivors: int = 2           # candidates trained fully at the end (the authors: 2)
    final_epochs: int | None = None    # None: the scale's TrainConfig epochs
    target_ppl: float | None = None    # Fig. 3 (right): the validation perplexity to reach
    eta: int = 3                       # Hyperband/BOHB reduction factor
    space: dict | None = None          # SearchSpace as a dict; None: the authors' (grid variant for "grid")
    train_overrides: dict = field(default_factory=dict)  # TrainConfig fields changed for every model

    def __post_init__(self):
        check_choice("SearchConfig.model", self.model, MODELS)
        check_choice("SearchConfig.scale", self.scale, SCALES)
        check_choice("SearchConfig.budget", self.budget, tuple(BUDGETS))
        check_choice("SearchConfig.sampler", self.sampler, SAMPLERS)
        check_choice("SearchConfig.ranking", self.ranking, RANKINGS)
        if self.embedding == "same_epoch":
            raise ValueError("SearchConfig.embedding='same_epoch' is now embedding='raw' with "
                             "reference='same_epoch'")
        check_choice("SearchConfig.embedding", self.embedding, EMBEDDINGS)
        check_choice("SearchConfig.reference", self.reference, REFERENCES)
        check_choice("SearchConfig.distance", self.distance, DISTANCES)
        check_choice("SearchConfig.embedding_fit", self.embedding_fit, EMBEDDING_FITS)
        check_choice("SearchConfig.ls_convention", self.ls_convention, LS_CONVENTIONS)
        self._check_ls_space()
        check_choice("SearchConfig.stable_warmup", self.stable_warmup, (True, False))
        if self.budget == "smoke" and self.scale not in ("smoke", "auto"):
            raise ValueError(f"SearchConfig.budget='smoke' runs at scale 'smoke'; got scale={self.scale!r}")
        check_int("SearchConfig.epochs_per_round", self.epochs_per_round, low=1, optional=True)
        check_int("SearchConfig.rounds", self.rounds, low=1, optional=True)
        check_int("SearchConfig.seed", self.seed, low=0)
        check_int("SearchConfig.pool", self.pool, low=2, optional=True)
        check_int("SearchConfig.ls_samples", self.ls_samples, low=1)
        check_int("SearchConfig.ls_steps", self.ls_steps, low=2)
        check_int("SearchConfig.final_survivors", self.final_survivors, low=1)
        check_int("SearchConfig.final_epochs", self.final_epochs, low=1, optional=True)
        check_int("SearchConfig.eta", self.eta, low=2)
        if self.sparsity is not None and not (isinstance(self.sparsity, (int, float))
                                              and not isinstance(self.sparsity, bool)
                                              and 0 <= self.sparsity < 1):
            raise ValueError(f"SearchConfig.sparsity={self.sparsity!r} is not valid; it must be in [0, 1)")
        if self.target_ppl is not None and not (isinstance(self.target_ppl, (int, float))
                                                and not isinstance(self.target_ppl, bool)
                                                and self.target_ppl > 1):
            raise ValueError(f"SearchConfig.target_ppl={self.target_ppl!r} is not valid; it must be a "
                             "perplexity > 1 or None")
        if self.space is not None:
            if isinstance(self.space, SearchSpace):
                self.space = self.space.to_dict()
            SearchSpace.from_dict(self.space)
        if not isinstance(self.train_overrides, dict):
            raise ValueError(f"SearchConfig.train_overrides must be a dict of TrainConfig fields; "
                             f"got {self.train_overrides!r}")
        self.train_overrides = dict(sorted(self.train_overrides.items()))
        valid = [f.name for f in dataclasses.fields(TrainConfig) if f.name not in _SEARCH_FIELDS]
        unknown = [k for k in self.train_overrides if k not in valid and k not in _SEARCH_FIELDS]
        if unknown:
            raise ValueError(f"SearchConfig.train_overrides: unknown TrainConfig field(s) {unknown}; "
                             f"valid: {valid}")
        bad = [k for k in self.train_overrides if k in _SEARCH_FIELDS]
        if bad:
            raise ValueError(f"SearchConfig.train_overrides may not set {bad}: use model, scale, seed "
                             "and final_epochs")

    # ------------------------------------------------------------- round trip

    # ------------------------------------------------------------- resolution
    def resolved(self, device="cpu") -> "SearchConfig":
        """A copy with every None filled and ``scale`` resolved for ``device``, checked as a
        whole (the space's parameters, the epochs a candidate can reach)."""
        d = self.to_dict()
        d["scale"] = resolve_scale(d["scale"], d["budget"], device)
        if d["epochs_per_round"] is None:
            d["epochs_per_round"] = 1 if d["budget"] == "smoke" else 3
        if d["pool"] is None:
            d["pool"] = BUDGETS[d["budget"]]
        if d["sparsity"] is None:
            d["sparsity"] = SPARSITY[d["model"]]
        if d["space"] is None:
            d["space"] = SearchSpace.authors(grid=d["sampler"] == "grid").to_dict()
        base = TrainConfig.preset(d["scale"], d["model"])
        if d["final_epochs"] is None:
            d["final_epochs"] = base.epochs
        cfg = SearchConfig.from_dict(d)
        cfg.train_config()  # the overrides must make a valid TrainConfig
        cfg._check_space()
        cfg._check_epochs()
        cfg._check_grid_pool()
        return cfg

    def _check_resolved(self):
        if self.scale == "auto" or None in (self.epochs_per_round, self.pool, self.sparsity,
                                            self.final_epochs, self.space):
            raise ValueError("call SearchConfig.resolved(device) first")

    def train_config(self) -> TrainConfig:
        """The TrainConfig every model starts from (the dense reference uses it as is)."""
        base = TrainConfig.preset(self.scale, self.model)
        return base.replace(seed=self.seed, epochs=self.final_epochs, **self.train_overrides)

    def search_space(self) -> SearchSpace:
        self._check_resolved()
        return SearchSpace.from_dict(self.space)

    def _check_space(self):
        sparse = {f.name for f in dataclasses.fields(SparseConfig)}
        train = {f.name for f in dataclasses.fields(TrainConfig)} - set(_FIXED_TRAIN_FIELDS)
        bad = [name for name in SearchSpace.from_dict(self.space) if name not in sparse | train]
        if bad:
            raise ValueError(f"search space parameter(s) {bad} are neither SparseConfig fields "
                             f"{sorted(sparse)} nor TrainConfig fields {sorted(train)}")

    def _check_ls_space(self):
        """The LS space's options (LS_SPACE_FIELDS) shape the LS distance alone: set away from their
        defaults for a ranking that reads no LS, they would change nothing, so they are refused."""
        if self.ranking == "ls":
            return
        defaults = ls_space_defaults()
        moved = {k: getattr(self, k) for k in LS_SPACE_FIELDS if getattr(self, k) != defaults[k]}
        if moved:
            given = ", ".join(f"{k}={v!r}" for k, v in moved.items())
            kept = ", ".join(f"{k}={defaults[k]!r}" for k in moved)
            raise ValueError(f"SearchConfig {given}: these shape the LS distance, which ranking={self.ranking!r} "
                             f"never reads; leave them at their defaults ({kept}) or rank by 'ls'")

    def _check_grid_pool(self):
        """Grid search's pool is at most the grid: a pool asked for (not the budget's) beyond it
        would be cut without a word."""
        if self.sampler != "grid" or self.pool == BUDGETS[self.budget]:
            return
        grid = int(SearchSpace.from_dict(self.space).size())
        if self.pool > grid:
            raise ValueError(f"SearchConfig.pool={self.pool}: grid search's pool is its grid of {grid} "
                             f"configurations; give pool <= {grid} (or leave it to the budget)")

    def _check_epochs(self):
        if self.pool <= self.final_survivors:
            raise ValueError(f"pool={self.pool} must exceed final_survivors={self.final_survivors}")
        if self.sampler in ("hyperband", "bohb"):
            need = hyperband_resources(self.epochs_per_round, self.eta, self.final_epochs)[1]
        else:
            rounds = len(pool_schedule(self.pool_size(), self.final_survivors, self.rounds,
                                       self.sampler != "grid"))
            need = rounds * self.epochs_per_round
        if need > self.final_epochs:
            raise ValueError(
                f"the selection would train a candidate for {need} epochs, more than "
                f"final_epochs={self.final_epochs}: lower epochs_per_round "
                f"({self.epochs_per_round}), set rounds, or raise final_epochs")

    def pool_size(self) -> int:
        if self.sampler == "grid":
            return min(self.pool, int(SearchSpace.from_dict(self.space).size()))
        return self.pool

    def key(self) -> str:
        """A short hash naming this search (its study and checkpoints)."""
        self._check_resolved()
        return hashlib.sha256(self.to_json().encode()).hexdigest()[:10]

    def study_name(self, prefix: str = "lsh") -> str:
        return f"{prefix}-{self.model}-{self.scale}-{self.sampler}-{self.ranking}-{self.key()}"


def ls_space_defaults() -> dict:
    """The defaults of the LS space's options (:data:`LS_SPACE_FIELDS`)."""
    return {f.name: f.default for f in dataclasses.fields(SearchConfig) if f.name in LS_SPACE_FIELDS}


def unread_dropped(fields: dict, base: dict | None = None) -> dict:
    """``fields`` (SearchConfig fields) less the LS space's options where the ranking they name
    (else ``base``'s, else the default) reads no LS: such a search is one search for all of them,
    and :class:`SearchConfig` refuses them away from their defaults."""
    ranking = fields.get("ranking", (base or {}).get("ranking", SearchConfig.ranking))
    return dict(fields) if ranking == "ls" else {k: v for k, v in fields.items() if k not in LS_SPACE_FIELDS}
