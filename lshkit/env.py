"""The running environment, decided in one place: the device, whether progress bars show, and
the thread count of tiny models. The bottom of the package: it imports nothing from lshkit."""
from __future__ import annotations

import contextlib
import os
import re
import sys
import time

__all__ = ["resolve_device", "quiet", "auto_progress", "small_model_threads", "small_matrix_blas", "quiet_optuna",
           "child_process_init", "children_ignore_interrupts", "spawn_pool", "stop_children"]


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


def auto_progress(progress: bool | None = None) -> bool:
    """Whether progress bars show: ``progress`` itself when given, else the default: off wherever
    :func:`quiet` says (CI, pytest and nbval, which compares stderr) and in notebooks run headless
    (papermill); on in a terminal or in a notebook open in JupyterLab. Every ``progress=None``
    argument in the kit is resolved here."""
    if progress is not None:
        return bool(progress)
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


# ------------------------------------------------------------------------------ child processes
# Ctrl-C sends SIGINT to every process of the terminal's foreground group. The kit's worker
# processes ignore it: the parent alone is interrupted, and stops them (a Pool's exit terminates
# its workers; lshkit.search.parallel terminates its own), so nothing prints a traceback from a
# child and nothing is left running. They are started with SIGINT blocked (a blocked mask is
# inherited across fork and exec), so one that arrives while a worker still imports torch waits,
# and is then ignored by child_process_init.


def child_process_init() -> None:
    """Run first in every worker process the kit starts (a Pool's ``initializer``): ignore
    SIGINT (the parent stops the worker), and give tqdm a thread lock. tqdm otherwise creates a
    multiprocessing lock, a named semaphore that a killed worker leaves to the resource tracker,
    which then warns of "leaked semaphore objects" after a search that completed."""
    import signal
    import threading

    from tqdm import std

    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGINT})  # blocked since birth: now ignored
    std.tqdm.set_lock(threading.RLock())


@contextlib.contextmanager
def children_ignore_interrupts():
    """Processes started inside the block hold SIGINT blocked from birth until their
    :func:`child_process_init` ignores it: a Ctrl-C while a worker still imports torch would
    otherwise print its traceback. A Ctrl-C to this process within the block is raised (as
    KeyboardInterrupt) when the block ends: stop what it started then (:func:`spawn_pool`)."""
    import signal
    from multiprocessing import resource_tracker

    # Starting the resource tracker unblocks SIGINT when done (multiprocessing/resource_tracker.py,
    # ensure_running): start it first, or the workers started after it would not have it blocked.
    resource_tracker.ensure_running()
    previous = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT})
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, previous)


def spawn_pool(processes: int, initializer=child_process_init, initargs=()):
    """A ``spawn`` multiprocessing Pool whose workers ignore Ctrl-C (``initializer`` must call
    :func:`child_process_init`); use it as ``with spawn_pool(n) as pool:``, whose exit (Ctrl-C
    in this process included) terminates them. A Ctrl-C while it starts terminates it at once."""
    import multiprocessing

    pool = None
    try:
        with children_ignore_interrupts():
            pool = multiprocessing.get_context("spawn").Pool(processes, initializer=initializer,
                                                             initargs=initargs)
    except BaseException:
        if pool is not None:
            pool.terminate()
        raise
    return pool


def _descendants(pid: int) -> list[int]:
    """Every living descendant of ``pid`` (Linux /proc; none elsewhere), children before theirs."""
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc") if os.path.isdir("/proc") else ():
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue  # gone meanwhile
        if fields[0] != "Z":
            children.setdefault(int(fields[1]), []).append(int(entry))
    out, todo = [], [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            out.append(child)
            todo.append(child)
    return out


def stop_children(timeout: float = 5.0, spared=()) -> list[int]:
    """Terminate every process this one started, theirs too (pool workers, a notebook's kernel
    and its workers), but those in ``spared`` (running before a command began, when it is called
    in-process), then kill what is still there after ``timeout`` seconds; returns their pids.
    multiprocessing's resource tracker is left alone: it exits with this process, unlinking what
    the killed workers left."""
    import signal
    from multiprocessing import resource_tracker

    spared = {getattr(resource_tracker._resource_tracker, "_pid", None), *spared}
    pids = [p for p in _descendants(os.getpid()) if p not in spared]
    for sig in (signal.SIGTERM, signal.SIGKILL):
        for pid in pids:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(pid, sig)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and any(_running(p) for p in pids):
            time.sleep(0.05)
        if not any(_running(p) for p in pids):
            break
    return pids


def _running(pid: int) -> bool:
    """Alive and not a zombie (an exited child is reaped when this process exits)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return False
