import torch

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
