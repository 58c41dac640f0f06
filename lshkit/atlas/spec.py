"""The atlas's space and names: :class:`AtlasSpec` and its presets."""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from lshkit.checks import check_choice, check_int, check_number, check_positive_int
from lshkit.io import JSONConfig, read_json, write_json
from lshkit.vocab import LS_CONVENTIONS


#: Where ``python -m lshkit atlas`` keeps atlases, one folder per scale.
ATLAS_ROOT = Path("results") / "atlas"

#: Both LS conventions are recorded (:func:`lshkit.ls.model_spectrum`).
CONVENTIONS = LS_CONVENTIONS

SPEC_FILE = "atlas.json"


#: The dense model's validation perplexity after each full pass (seed 0, lr 40): 222.2, 176.3, 163.1,
#: 151.6, 149.8, 145.3, 145.4, 141.5, 145.2, 143.4. Its best so far first improves by less than
#: 1% an epoch over three epochs (the noise of SGD at lr 40 needs the three) after epoch 9.
PASS_EPOCHS = 9

GRAPHS_FILE = "graphs.json"


#: The space's dimensions in one fixed order (names, grids and the samplers' draws depend on it,
#: and a spec read back from JSON has its keys sorted).
PARAMETERS = ("sparse_init", "growth", "death", "redistribution", "death_rate")


def _ordered(names) -> list[str]:
    return sorted(names, key=lambda n: (PARAMETERS.index(n) if n in PARAMETERS else len(PARAMETERS), n))


@dataclass
class AtlasSpec(JSONConfig):
    """The finite space an atlas covers and how each candidate is trained."""

    model: str = "lstm"                            # TrainConfig.model
    scale: str = "atlas"                           # TrainConfig preset (lshkit.train.TrainConfig.preset)
    sparsity: float = 0.67                         # Table A1 (stacked LSTM)
    death_rates: tuple = (0.4, 0.65, 0.9)          # spans the paper's [0.4, 0.9]
    seed: int = 0                                  # training seed of the main grid
    replicate_seeds: tuple = (1, 2, 3)             # extra training seeds for the noise floor
    replicates: int = 4                            # grid candidates re-trained with each replicate seed
    ls_samples: int = 2                            # K (Table A1's LS batch size)
    ls_steps: int = 35                             # T
    variants: dict | None = None                   # name -> choices of the methodological dimensions (None: the authors')
    variants_per_rate: dict | None = None          # death rate -> how many covering variants it holds (others: all)
    train_overrides: dict = field(default_factory=dict)  # TrainConfig fields changed from the preset

    def __post_init__(self):
        from lshkit.train import MODELS, SCALES

        self.death_rates = tuple(self.death_rates)
        self.replicate_seeds = tuple(self.replicate_seeds)
        check_choice("AtlasSpec.model", self.model, MODELS)
        check_choice("AtlasSpec.scale", self.scale, SCALES)
        check_number("AtlasSpec.sparsity", self.sparsity, low=0, high=1, high_open=True)
        if not self.death_rates:
            raise ValueError("AtlasSpec.death_rates must name at least one death rate")
        for rate in self.death_rates:
            check_number("AtlasSpec.death_rates entry", rate, low=0, high=1)
        for name in ("seed", "replicates"):
            value = getattr(self, name)
            check_int(f"AtlasSpec.{name}", value)
        for s in self.replicate_seeds:
            check_int("AtlasSpec.replicate_seeds entry", s)
            if s == self.seed:
                raise ValueError(f"AtlasSpec.replicate_seeds entry {s!r} is not valid; each must be an "
                                 f"integer >= 0 other than seed={self.seed}")
        if self.variants_per_rate is not None:
            # JSON keys are strings: one canonical spelling of each rate, so a spec read back equals it.
            per_rate = {}
            for rate, count in self.variants_per_rate.items():
                try:
                    key = float(rate)
                except (TypeError, ValueError):
                    key = None
                if key not in self.death_rates:
                    raise ValueError(f"AtlasSpec.variants_per_rate names death rate {rate!r}, which is not "
                                     f"one of death_rates {list(self.death_rates)}")
                check_positive_int(f"AtlasSpec.variants_per_rate[{rate!r}]", count)
                per_rate[repr(key)] = count
            self.variants_per_rate = dict(sorted(per_rate.items()))
        check_positive_int("AtlasSpec.ls_samples", self.ls_samples)
        check_positive_int("AtlasSpec.ls_steps", self.ls_steps)
        self.train_config()  # the overrides must make a valid TrainConfig
        if self.replicates > len(self.grid()):
            raise ValueError(f"AtlasSpec.replicates={self.replicates} exceeds the {len(self.grid())} "
                             "grid candidates")

    def to_dict(self) -> dict:
        d = super().to_dict()
        if d["variants_per_rate"] is None:  # left out, so atlases specified before the field keep their keys
            del d["variants_per_rate"]
        return d

    @classmethod
    def preset(cls, name: str) -> "AtlasSpec":
        """The atlas called ``name`` (:data:`PRESETS`); it lives in ``ATLAS_ROOT / name``."""
        check_choice("atlas", name, tuple(PRESETS))
        return cls(**PRESETS[name])

    def train_config(self, seed: int | None = None):
        from lshkit.train import TrainConfig

        base = TrainConfig.preset(self.scale, self.model)
        return base.replace(seed=self.seed if seed is None else seed, **self.train_overrides)

    def search_fields(self) -> dict:
        """The :class:`~lshkit.search.SearchConfig` fields the atlas fixes for a search replayed on
        it (its epochs are the search's final_epochs)."""
        overrides = {k: v for k, v in sorted(self.train_overrides.items()) if k != "epochs"}
        return dict(model=self.model, scale=self.scale, sparsity=self.sparsity, ls_samples=self.ls_samples,
                    ls_steps=self.ls_steps, stable_warmup=True, final_epochs=self.train_config().epochs,
                    train_overrides=overrides)

    def space(self):
        """The atlas grid as a :class:`~lshkit.search.space.SearchSpace` (death rate categorical over
        ``death_rates``): the space the samplers see when a search replays on this atlas once it
        is complete (:meth:`Atlas.space` while it is not). With ``variants_per_rate`` the grid is
        partial by design: at those death rates, that many :func:`covering_variants`."""
        from lshkit.search.space import Categorical, SearchSpace

        dims = {name: dim for name, dim in SearchSpace.authors().items() if name != "death_rate"}
        if self.variants is not None:
            dims = {name: Categorical(tuple(choices)) for name, choices in self.variants.items()}
        dims["death_rate"] = Categorical(tuple(float(r) for r in self.death_rates))
        full = SearchSpace({name: dims[name] for name in _ordered(dims)})
        if not self.variants_per_rate:
            return full
        variants = SearchSpace({k: v for k, v in full.items() if k != "death_rate"}).grid_points()
        chosen = {rate: covering_variants(variants, self.variants_per_rate.get(repr(rate), len(variants)))
                  for rate in full["death_rate"].values()}
        points = [p for p in full.grid_points()
                  if {k: v for k, v in p.items() if k != "death_rate"} in chosen[p["death_rate"]]]
        return SearchSpace(dict(full.items()), points=points)

    def grid(self) -> list[dict]:
        return self.space().grid_points()

    def replicate_params(self) -> list[dict]:
        """``replicates`` grid candidates evenly spread over the grid's order, so that the
        replicated ones differ in every dimension."""
        grid = self.grid()
        if self.replicates == 0:
            return []
        if self.replicates == 1:
            return [grid[0]]
        return [grid[round(i * (len(grid) - 1) / (self.replicates - 1))] for i in range(self.replicates)]

    def candidates(self) -> list[tuple[dict | None, int]]:
        """Every (params, seed) of the atlas, the dense model first (params None), then the grid,
        then the replicates."""
        out = [(None, self.seed)] + [(p, self.seed) for p in self.grid()]
        for s in self.replicate_seeds:
            out += [(None, s)] + [(p, s) for p in self.replicate_params()]
        return out


#: The atlases by name (their folder under :data:`ATLAS_ROOT`). ``atlas``: the first, committed,
#: whose epochs are 40,000 training tokens, so its E = 3 comes before the models leave the unigram
#: plateau. ``pass``: the paper's epoch, one full pass over PTB's training split, validated on the
#: whole validation split, for :data:`PASS_EPOCHS` epochs; every variant at death rate 0.65 (the
#: grid search's space) and twelve covering ones at 0.4 and 0.9 (:func:`covering_variants`), two
#: of them and the dense model with two more seeds: 55 trainings, sized to about 20 CPU-hours from
#: the measured 1,250 CPU-seconds a candidate. ``smoke``, ``cpu``, ``paper``: the full grid at
#: those TrainConfig presets.
PRESETS = {
    "atlas": dict(scale="atlas"),
    "pass": dict(scale="atlas", variants_per_rate={0.4: 12, 0.9: 12}, replicates=2, replicate_seeds=(1, 2),
                 train_overrides=dict(epoch_tokens=None, valid_tokens=None, epochs=PASS_EPOCHS)),
    "smoke": dict(scale="smoke"),
    "cpu": dict(scale="cpu"),
    "paper": dict(scale="paper"),
}


def covering_variants(variants: list[dict], count: int) -> list[dict]:
    """``count`` of ``variants`` (configurations in grid order) that cover every value of every
    dimension as evenly as ``count`` allows: each pick is the variant whose values have been
    picked least so far (the sum of their counts), the earliest in grid order on a tie. With 6 of
    the authors' 24: both inits three times, every death mode at least once, every redistribution
    twice. Deterministic, so an atlas spec names its configurations by ``count`` alone."""
    if count > len(variants):
        raise ValueError(f"{count} variants asked for; the space has {len(variants)}")
    counts, picked = {}, []
    remaining = list(variants)
    for _ in range(count):
        best = min(remaining, key=lambda v: sum(counts.get(item, 0) for item in v.items()))
        remaining.remove(best)
        picked.append(best)
        for item in best.items():
            counts[item] = counts.get(item, 0) + 1
    return [v for v in variants if v in picked]


def configuration_name(params: dict | None) -> str:
    """A configuration's readable name, the same for all its training seeds: ``dense`` or
    ``ER-random-global_magnitude-nonzeros-dr0.65``."""
    if params is None:
        return "dense"
    return "-".join(f"dr{params[k]:g}" if k == "death_rate" else str(params[k]) for k in _ordered(params))


def candidate_name(params: dict | None, seed: int) -> str:
    """A readable, unique folder name: ``dense-s0`` or ``ER-random-global_magnitude-nonzeros-dr0.65-s0``."""
    return f"{configuration_name(params)}-s{seed}"


# ------------------------------------------------------------------------------ files


def check_spec_file(root: Path, spec: AtlasSpec, write: bool = True) -> None:
    """``root`` holds no atlas (then the spec is written there, with ``write``) or one of ``spec``."""
    path = root / SPEC_FILE
    if path.exists():
        stored = stored_spec(root)
        if stored != spec:
            diff = {k: (getattr(stored, k), getattr(spec, k)) for k in spec.to_dict()
                    if getattr(stored, k) != getattr(spec, k)}
            preset = next((n for n in PRESETS if AtlasSpec(**PRESETS[n]) == stored), None)
            which = f"--scale {preset} builds it, or " if preset else ""
            raise ValueError(f"{root} holds an atlas of another specification (field: stored, asked "
                             f"= {diff}); {which}build into another folder")
    elif write:
        write_json(path, spec.to_dict())


def stored_spec(root: Path) -> AtlasSpec:
    try:
        return AtlasSpec.from_dict(read_json(root / SPEC_FILE))
    except (ValueError, TypeError) as err:  # cut JSON, or fields of no AtlasSpec
        raise ValueError(f"{root / SPEC_FILE} is corrupt ({err}); restore it from the atlas's "
                         "repository or build into another folder") from None
