"""A search spread over local processes: every process runs the same loop against one storage
(a journal file or a database), claiming units of work atomically (:mod:`lshkit.storage`)."""
from __future__ import annotations

import multiprocessing
import time
import warnings

import torch

from lshkit.env import child_process_init, children_ignore_interrupts
from lshkit.search.config import SearchConfig
from lshkit.search.loop import LSHSearch
from lshkit.storage import check_workers

__all__ = ["run_search"]


def _worker(config_json: str, out: str, options: dict, ready) -> None:
    child_process_init()
    torch.set_num_threads(options.pop("threads"))
    search = LSHSearch(SearchConfig.from_json(config_json), out, progress=False, write_outputs=False,
                       **options)
    ready.set()
    search.run()


def run_search(config: SearchConfig, out, *, storage: str | None = None, workers: int = 1,
               device="auto", checkpoints=None, reference_dir=None, progress: bool | None = None,
               stale_after: float = 1800.0) -> dict:
    """Run one search (see :class:`LSHSearch`), with ``workers - 1`` extra local processes
    (spawned) cooperating through ``storage``, which must then be a journal file or a
    database. Returns the summary."""
    search = LSHSearch(config, out, storage=storage, device=device, checkpoints=checkpoints,
                       reference_dir=reference_dir, progress=progress, stale_after=stale_after)
    check_workers(search.runner.storage_url, workers)
    if workers == 1:
        return search.run()
    own_threads = torch.get_num_threads()
    # The processes share the cores: each takes its part of this one's threads.
    threads = max(1, own_threads // workers) if search.runner.device.type == "cpu" else own_threads
    options = dict(storage=search.runner.storage_url, device=str(search.runner.device),
                   checkpoints=checkpoints, reference_dir=reference_dir, stale_after=stale_after,
                   threads=threads)
    context = multiprocessing.get_context("spawn")
    ready = [context.Event() for _ in range(1, workers)]
    procs = [context.Process(target=_worker, args=(search.config.to_json(), str(out), dict(options), event),
                             name=f"lshkit-worker-{i}") for i, event in enumerate(ready, 1)]
    finished = False
    try:
        with children_ignore_interrupts():  # a Ctrl-C meanwhile is raised at its end: the finally stops them
            for proc in procs:
                proc.start()
        # Start together, so that the first round is shared from its first unit on (a spawned
        # process needs seconds to import torch).
        while not all(e.is_set() or not p.is_alive() for e, p in zip(ready, procs)):
            time.sleep(0.05)
        torch.set_num_threads(threads)
        summary = search.run()
        finished = True
    finally:
        torch.set_num_threads(own_threads)
        for proc in procs:
            if proc.pid is None:  # never started
                continue
            # Stopped early (Ctrl-C, an error): the workers stop now; what they finished is in the
            # storage and a re-run resumes. Finished: they have nothing left to claim.
            proc.join(timeout=60 if finished else 0)
            if proc.is_alive():
                proc.terminate()
                proc.join()
    bad = [p.exitcode for p in procs if p.exitcode]
    if bad:
        # This process finished every unit the dead ones held: the search is complete.
        warnings.warn(f"worker process(es) exited with code(s) {bad}; their units were taken over "
                      "and the search completed", RuntimeWarning, stacklevel=2)
        summary["worker_exit_codes"] = bad
    return summary
