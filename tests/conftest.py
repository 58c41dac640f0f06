import pytest
import torch

from lshkit.atlas import AtlasSpec, build_atlas
from lshkit.search import SearchConfig


# The tests train tiny models, for which a second thread costs more in synchronisation than it
# gains, and under load (nbval kernels, worker processes) two threads per process thrash.
torch.set_num_threads(1)

#: A search small enough for a unit test: 16-unit models, 2 epochs, 20 LS steps.
TINY = {"batch_size": 64, "hidden_size": 16, "emb_size": 16}


def tiny_search(pool: int = 4, **kw) -> SearchConfig:
    args = dict(budget="smoke", pool=pool, epochs_per_round=1, final_epochs=2, ls_steps=20,
                train_overrides=dict(TINY))
    args.update(kw)
    return SearchConfig(**args)


# A small space at smoke scale: 2 inits x 2 deaths x 2 death rates, 4 epochs of 16-unit models.
SPEC = AtlasSpec(scale="smoke", death_rates=(0.5, 0.9), replicates=0, replicate_seeds=(),
                 variants={"sparse_init": ["uniform", "ER"], "growth": ["random"],
                           "death": ["magnitude", "SET"], "redistribution": ["nonzeros"]},
                 train_overrides={"epochs": 4, **TINY})


@pytest.fixture(scope="session")
def atlas_dir(tmp_path_factory):
    root = tmp_path_factory.mktemp("atlas") / "smoke"
    build_atlas(SPEC, root, progress=False)
    return root
