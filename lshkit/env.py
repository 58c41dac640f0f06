"""The running environment, decided in one place: the device, whether progress bars show, and
the thread count of tiny models. The bottom of the package: it imports nothing from lshkit."""
from __future__ import annotations

import contextlib
import os
import re
import sys

__all__ = ["resolve_device", "quiet", "auto_progress", "small_model_threads", "small_matrix_blas", "quiet_optuna"]


def resolve_device(device="auto"):
    """``"auto"`` (or None): CUDA when there is one, else the CPU; otherwise ``device`` itself,
    checked: a device this machine lacks is an error naming the valid ones."""
    import torch

    n = torch.cuda.device_count() if torch.cuda.is_available() else 0
    if device in (None, "auto"):
        return torch.device("cuda" if n else "cpu")
    if isinstance(device, torch.device):
        device = str(device)
    valid = ["auto", "cpu"] + (["cuda"] + [f"cuda:{i}" for i in range(n)] if n else [])
    if device not in valid:
        why = (" (CUDA is not available here)" if not n and isinstance(device, str)
               and re.fullmatch(r"cuda(:\d+)?", device) else "")
        raise ValueError(f"device={device!r} is not valid{why}; choose one of {valid}")
    return torch.device(device)


def quiet() -> bool:
    """True where progress bars must stay off: under CI (the ``CI`` variable every CI service
    sets) or pytest. nbval's kernels inherit ``PYTEST_VERSION`` and ``PYTEST_CURRENT_TEST``
    from the pytest process that starts them (checked with nbval 0.11, pytest 9)."""
    ci = os.environ.get("CI", "").strip().lower() not in ("", "0", "false", "no")
    return ci or "PYTEST_VERSION" in os.environ or "PYTEST_CURRENT_TEST" in os.environ


def auto_progress() -> bool:
    """Progress bars by default: off wherever :func:`quiet` says (CI, pytest and nbval, which
    compares stderr) and in notebooks run headless (papermill); on in a terminal or in a
    notebook open in JupyterLab."""
    if quiet():
        return False
    if sys.stderr is not None and sys.stderr.isatty():
        return True
    # A kernel that a Jupyter server started (JupyterLab sets JPY_SESSION_NAME) has someone
    # watching; one that papermill started has not, and its bars would be saved frozen.
    return "ipykernel" in sys.modules and "JPY_SESSION_NAME" in os.environ


@contextlib.contextmanager
def small_model_threads(small: bool):
    """One torch thread while ``small``: smoke-scale models are so small that more OpenMP
    threads only add synchronisation, and collapse when the cores are shared (measured on 2
    busy cores: 1 s per smoke epoch on one thread, 20-100 s on two)."""
    import torch

    threads = torch.get_num_threads()
    if small:
        torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


def small_matrix_blas():
    """One BLAS thread, as a context manager, for the LS embeddings' factorisations of a few
    dozen rows: beside another process working on the same cores, OpenBLAS's threads wait for
    each other (``exec_blas_async_wait``). Measured by benchmarks/embedding_threads.py on 2 cores:
    a BOHB replay with LS ranking takes 0.42 s on one thread against 3.64 s on the default
    threads with one busy neighbour, and 0.32 s against 0.27 s on idle cores."""
    from threadpoolctl import threadpool_limits

    return threadpool_limits(limits=1, user_api="blas")


@contextlib.contextmanager
def quiet_optuna():
    """Optuna logs every study creation at INFO (and notebooks compare stderr): mute it for the
    duration, then restore the caller's level."""
    import optuna

    level = optuna.logging.get_verbosity()
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    try:
        yield
    finally:
        optuna.logging.set_verbosity(level)
