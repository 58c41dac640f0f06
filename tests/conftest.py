import torch

# The tests train tiny models, for which a second thread costs more in synchronisation than it
# gains, and under load (nbval kernels, worker processes) two threads per process thrash.
torch.set_num_threads(1)
