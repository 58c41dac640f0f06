"""Where a search lives: an Optuna storage given by URL, and the job queue over it.

Storage URLs (:func:`open_storage`):

- ``sqlite:///path/study.db`` (the default, ``<out>/study.db``): one process.
  SQLite's file lock serialises writers badly under contention, so the search
  refuses ``--workers`` > 1 on it.
- ``journal:///abs/path/search.log``, ``journal://relative.log`` or any path
  ending in ``.log``: Optuna's JournalStorage over a JournalFileBackend, an
  append-only log guarded by a lock file: several processes on one machine
  (``--workers N``, or N commands started by hand). On NFS, file locks are
  unreliable; use a database instead.
- ``postgresql://user:password@host:5432/dbname`` (or ``postgresql+psycopg2://``,
  ``mysql+pymysql://...``): Optuna's RDBStorage, for several machines. To set
  one up on Debian/Ubuntu::

      apt-get install postgresql            # the server, on one machine
      pg_ctlcluster 15 main start           # as root (the version apt installed)
      su postgres -c "createuser --pwprompt lsh"
      su postgres -c "createdb -O lsh lshsearch"
      # allow the other machines in /etc/postgresql/15/main/pg_hba.conf and
      # listen_addresses in postgresql.conf, then restart the cluster
      python -m lshkit search ... --storage postgresql://lsh:PASSWORD@server/lshsearch \
          --checkpoints /shared/lsh/checkpoints

  and start the same command on every machine. The Python client is
  ``psycopg2-binary`` (the kit's ``postgres`` extra). Candidate checkpoints are
  files, not database rows: every machine must see the same checkpoint
  directory (NFS or another shared file system), since a unit of work started
  on one machine may be resumed on another.

The job queue (:class:`JobQueue`): a unit of work is one Optuna trial of a
separate "jobs" study, created WAITING with a ``key`` user attribute naming it.
A process claims a unit with ``storage.set_trial_state_values(id, RUNNING)``,
which returns False when another process changed it first; Optuna's own queue of
enqueued trials relies on exactly this (``Study._pop_waiting_trial_id`` in
optuna/study/study.py; the RDB storage does the WAITING -> RUNNING check under a
row lock, the journal storage by replaying the ordered log). The claimant records
its host and pid, refreshes a ``heartbeat`` attribute while it works, stores the
result as the ``result`` user attribute and marks the trial COMPLETE (its value:
the seconds the unit took).

Every process enqueues what it needs, so two processes may enqueue the same key
at once. The lowest-numbered *live* (waiting, running or complete) trial of a
key is its canonical one: a process that claims a higher-numbered duplicate while
a lower live one exists marks its own PRUNED and moves on, so a unit is run by
one process. A RUNNING unit whose owner is a dead process on this host, or whose
heartbeat is older than ``stale_after`` seconds, is marked FAIL and enqueued
again; its checkpoint lets the next claimant continue where it stopped.
"""
from __future__ import annotations

import contextlib
import importlib.util
import json
import os
import socket
import threading
import time
import traceback
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import optuna
from optuna.exceptions import UpdateFinishedTrialError
from optuna.storages import BaseStorage, JournalStorage, RDBStorage
from optuna.storages.journal import JournalFileBackend
from optuna.trial import TrialState

from lshkit.env import quiet_optuna
from lshkit.io import check_writable, os_error_line

__all__ = ["open_storage", "storage_kind", "default_storage_url", "check_workers", "JobQueue", "Job",
           "StorageUnavailable"]

RDB_SCHEMES = ("sqlite", "postgresql", "mysql")
PENDING = (TrialState.WAITING, TrialState.RUNNING)


def default_storage_url(out) -> str:
    """``sqlite:///<out>/study.db`` with ``out`` made absolute."""
    return f"sqlite:///{Path(out).resolve() / 'study.db'}"


def storage_kind(url: str) -> str:
    """"sqlite", "journal" or "rdb" (PostgreSQL, MySQL) for a storage URL; a clear error otherwise."""
    if not isinstance(url, str) or not url:
        raise ValueError(f"storage must be a URL string; got {url!r}")
    if url.startswith("journal://") or (url.endswith(".log") and "://" not in url):
        return "journal"
    scheme = url.split("://", 1)[0].split("+", 1)[0] if "://" in url else ""
    if scheme == "sqlite":
        if not url.startswith("sqlite:///"):
            raise ValueError(f"storage {url!r}: a SQLite URL has three slashes and then the path, "
                             "sqlite:///relative.db or sqlite:////absolute/path.db")
        return "sqlite"
    if scheme in RDB_SCHEMES:
        return "rdb"
    raise ValueError(
        f"unknown storage {url!r}; valid forms: sqlite:///path.db (one process), "
        "journal:///path.log or path.log (several processes on one machine), "
        "postgresql://user:pw@host/db or mysql+pymysql://... (several machines)")


def _journal_path(url: str) -> Path:
    return Path(url[len("journal://"):] if url.startswith("journal://") else url)


def _with_driver(url: str) -> str:
    """``postgresql://`` with the driver the kit installs: SQLAlchemy 2.1 reads a bare
    ``postgresql://`` as psycopg 3, the kit's ``postgres`` extra is psycopg2."""
    if url.startswith("postgresql://") and importlib.util.find_spec("psycopg") is None \
            and importlib.util.find_spec("psycopg2") is not None:
        return "postgresql+psycopg2://" + url[len("postgresql://"):]
    return url


class StorageUnavailable(ValueError):
    """A storage that cannot be opened: its folder cannot be written, or its server cannot be
    reached. The message is one line naming the storage, the cause and what to do."""


def _check_file(url: str, path: Path) -> None:
    """The storage's file can be created and written, and so can its folder (the journal's lock
    file, SQLite's journal): checked at open, before any compute, not at the first write."""
    try:
        check_writable(path.parent, "the folder of the storage")
        if path.exists() and not os.access(path, os.W_OK):
            raise PermissionError(13, os.strerror(13), str(path))
        open(path, "ab").close()  # an empty file is a new journal, and a new SQLite database
    except (ValueError, OSError) as err:
        cause = str(err) if isinstance(err, ValueError) else f"{os_error_line(err)}; give a path on a writable disk"
        raise StorageUnavailable(f"cannot open the storage {url}: {cause}") from None


def _unreachable(url: str, err: Exception) -> StorageUnavailable | None:
    """For a database server that refused or never answered (nothing listening, wrong host, port,
    user or password): one line with its host and port, the driver's words and how to start one."""
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import OperationalError

    if not isinstance(err, OperationalError):
        return None
    address = make_url(url)
    name = "PostgreSQL" if address.get_backend_name() == "postgresql" else "database"
    port = address.port or {"postgresql": 5432, "mysql": 3306}.get(address.get_backend_name())
    words = " ".join(str(getattr(err, "orig", None) or err).split())  # the driver's words, on one line
    start = (" (as .ci/postgres.sh does: apt-get install postgresql, pg_ctlcluster <version> main start, "
             "then createuser and createdb)" if name == "PostgreSQL" else "")
    return StorageUnavailable(
        f"cannot open the storage {address.render_as_string(hide_password=True)}: the {name} server at "
        f"{address.host or 'localhost'}:{port} is not reachable ({words}); start one{start}, or give the "
        "--storage of a running server")


def open_storage(url: str) -> BaseStorage:
    """The Optuna storage ``url`` names (see the module docstring for the forms). One that
    cannot be opened raises :class:`StorageUnavailable`, a ValueError of one line."""
    kind = storage_kind(url)
    if kind == "journal":
        path = _journal_path(url)
        _check_file(url, path)
        return JournalStorage(JournalFileBackend(str(path)))
    if kind == "sqlite":
        _check_file(url, Path(url[len("sqlite:///"):]))
    given, url = url, _with_driver(url)
    # Processes started together may all try to create the schema of a fresh database;
    # the losers see an integrity error once and then find the tables there.
    for attempt in range(5):
        try:
            return RDBStorage(url)
        except ImportError as err:
            raise ImportError(f"storage {url!r} needs its database driver ({err}); for "
                              "PostgreSQL: pip install psycopg2-binary") from err
        except Exception as err:
            unreachable = _unreachable(given, err) if kind == "rdb" else None
            if unreachable is not None:  # no server: waiting does not make one
                raise unreachable from None
            if attempt == 4:
                raise
            time.sleep(0.5 * (attempt + 1))
    raise AssertionError("unreachable")


def check_workers(url: str, workers: int) -> None:
    """Check the URL's form and refuse several processes on a SQLite file, before any compute."""
    if isinstance(workers, bool) or not isinstance(workers, int) or workers < 1:
        raise ValueError(f"workers must be an integer >= 1; got {workers!r}")
    if storage_kind(url) == "sqlite" and workers > 1:
        raise ValueError(
            f"--workers {workers} needs a storage several processes can share; SQLite ({url}) is "
            "for one process. Use a journal file (--storage journal:///path/search.log) on one "
            "machine, or PostgreSQL/MySQL across machines.")


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # A killed child its parent has not reaped yet still answers signal 0.
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
        return stat.rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return True


@dataclass
class Job:
    """A claimed unit of work: its trial, key and the spec it was enqueued with."""

    trial_id: int
    number: int
    key: str
    spec: dict


class JobQueue:
    """Units of work as trials of the Optuna study ``study_name`` in ``storage``.

    ``run(specs, work)`` makes sure every key of ``specs`` has a result: it
    enqueues the missing ones, runs ``work(job)`` on those it can claim, waits
    for those other processes hold, reaps stale ones, and returns
    ``{key: result}``. Results are read from
    the storage, so a key finished by any process, in this run or an earlier
    one, is never computed again.
    """

    def __init__(self, storage: BaseStorage, study_name: str, *, stale_after: float = 1800.0,
                 poll: float = 1.0):
        if not (isinstance(stale_after, (int, float)) and stale_after > 0):
            raise ValueError(f"stale_after must be a positive number of seconds; got {stale_after!r}")
        self.storage = storage
        with quiet_optuna():
            self.study = optuna.create_study(storage=storage, study_name=study_name, load_if_exists=True)
        self.study_id = storage.get_study_id_from_name(study_name)
        self.stale_after = float(stale_after)
        self.poll = poll
        self.host = socket.gethostname()
        self.pid = os.getpid()
        self._results: dict[str, dict] = {}
        self._seen_pending: set[int] = set()
        self._refresh_finished()

    # ----------------------------------------------------------------- reading
    def _refresh_finished(self) -> None:
        for t in self.storage.get_all_trials(self.study_id, deepcopy=False, states=(TrialState.COMPLETE,)):
            self._take(t)

    def _take(self, t) -> None:
        key = t.user_attrs.get("key")
        if t.state == TrialState.COMPLETE and key is not None and "result" in t.user_attrs:
            # The first COMPLETE trial of a key wins; duplicates hold equal results.
            known = self._results.get(key)
            if known is None or t.number < known["_number"]:
                self._results[key] = dict(t.user_attrs["result"], _number=t.number)

    def _pending(self) -> list:
        """Waiting and running trials; trials that stopped pending since the last look are
        fetched one by one, so finished results are read once, not on every poll."""
        pending = self.storage.get_all_trials(self.study_id, deepcopy=False, states=PENDING)
        ids = {t._trial_id for t in pending}
        for trial_id in self._seen_pending - ids:
            self._take(self.storage.get_trial(trial_id))
        self._seen_pending = ids
        return pending

    def result(self, key: str) -> dict | None:
        r = self._results.get(key)
        return None if r is None else {k: v for k, v in r.items() if k != "_number"}

    def trials(self, states=None) -> list:
        return self.storage.get_all_trials(self.study_id, deepcopy=False, states=states)

    # ----------------------------------------------------------------- writing
    def enqueue(self, key: str, spec: dict) -> None:
        """A WAITING trial for ``key`` unless a live one exists (a race may add a
        duplicate; :meth:`claim` resolves it)."""
        json.dumps(spec)  # fail here, not in the storage, on an unserialisable spec
        if key in self._results or any(t.user_attrs.get("key") == key for t in self._pending()):
            return
        self.study.enqueue_trial({}, user_attrs={"key": key, "spec": spec})

    def claim(self, keys=None) -> Job | None:
        """Claim the first waiting unit (among ``keys``, if given) this process can win, or None."""
        for t in self.trials(states=(TrialState.WAITING,)):
            if keys is not None and t.user_attrs.get("key") not in keys:
                continue
            try:
                if not self.storage.set_trial_state_values(t._trial_id, TrialState.RUNNING):
                    continue
            except UpdateFinishedTrialError:
                continue
            key = t.user_attrs["key"]
            twins = [u.number for u in self._pending() if u.user_attrs.get("key") == key and u.number < t.number]
            if key in self._results or twins:
                # Finished trials are known from the cache (``run`` refreshes it before enqueueing).
                self.storage.set_trial_user_attr(t._trial_id, "duplicate_of",
                                                 twins[0] if twins else self._results[key]["_number"])
                self.storage.set_trial_state_values(t._trial_id, TrialState.PRUNED)
                continue
            self.storage.set_trial_user_attr(t._trial_id, "owner", {"host": self.host, "pid": self.pid})
            self.heartbeat(t._trial_id)
            return Job(t._trial_id, t.number, key, t.user_attrs["spec"])
        return None

    def heartbeat(self, trial_id: int, **attrs) -> None:
        """Mark the unit alive now; ``attrs`` are stored beside (e.g. progress)."""
        for name, value in attrs.items():
            self.storage.set_trial_user_attr(trial_id, name, value)
        self.storage.set_trial_user_attr(trial_id, "heartbeat", time.time())

    def complete(self, job: Job, result: dict, seconds: float) -> bool:
        """Store the result; False (and nothing stored) when another process took the unit over
        meanwhile: then its result is the one that counts."""
        try:
            if self.storage.get_trial(job.trial_id).state != TrialState.RUNNING:
                return False
            self.storage.set_trial_user_attr(job.trial_id, "result", result)
            self.storage.set_trial_state_values(job.trial_id, TrialState.COMPLETE, values=[float(seconds)])
        except UpdateFinishedTrialError:
            return False
        self._results[job.key] = dict(result, _number=job.number)
        return True

    @contextlib.contextmanager
    def beating(self, job: Job):
        """Heartbeats for ``job`` from a background thread while the block runs, every quarter
        of ``stale_after`` (at most a minute), so that a unit is taken over only when its
        process is gone or hung, however long an epoch takes."""
        done = threading.Event()
        interval = min(max(self.stale_after / 4, 0.05), 60.0)

        def beat():
            while not done.wait(interval):
                try:
                    self.heartbeat(job.trial_id)
                except Exception:  # a storage hiccup must not kill the unit; the next beat retries
                    pass

        thread = threading.Thread(target=beat, name=f"heartbeat-{job.key}", daemon=True)
        thread.start()
        try:
            yield
        finally:
            done.set()
            thread.join()

    def fail(self, job: Job, error: str) -> None:
        self.storage.set_trial_user_attr(job.trial_id, "error", error)
        self.storage.set_trial_state_values(job.trial_id, TrialState.FAIL)

    def reap_stale(self) -> list[str]:
        """Mark FAIL every RUNNING unit whose owner died on this host or whose heartbeat is
        older than ``stale_after``; enqueue its key again. Returns the keys."""
        reaped = []
        now = time.time()
        for t in self.trials(states=(TrialState.RUNNING,)):
            owner = t.user_attrs.get("owner")
            beat = t.user_attrs.get("heartbeat")
            if beat is None and t.datetime_start is not None:
                beat = t.datetime_start.timestamp()
            dead = (owner is not None and owner["host"] == self.host and owner["pid"] != self.pid
                    and not _alive(owner["pid"]))
            if dead or (beat is not None and now - beat > self.stale_after):
                try:
                    self.storage.set_trial_user_attr(t._trial_id, "error", "stale: owner died or "
                                                     f"no heartbeat for {self.stale_after:g} s")
                    self.storage.set_trial_state_values(t._trial_id, TrialState.FAIL)
                except UpdateFinishedTrialError:
                    continue
                self.enqueue(t.user_attrs["key"], t.user_attrs["spec"])
                reaped.append(t.user_attrs["key"])
        return reaped

    # ----------------------------------------------------------------- running
    def run(self, specs: dict[str, dict], work: Callable[[Job], dict],
            on_result: Callable[[str, dict], None] | None = None) -> dict[str, dict]:
        """Results of every key in ``specs`` (key -> spec), computing what no process has.

        ``work(job)`` returns the result dict (JSON-serialisable); an exception marks the
        unit FAIL, with its traceback, and propagates. ``on_result(key, result)`` is called
        once per key of ``specs`` as its result becomes known here (progress bars).
        """
        reported: set[str] = set()

        def report():
            for key in specs:
                if key not in reported and key in self._results:
                    reported.add(key)
                    if on_result is not None:
                        on_result(key, self.result(key))

        self.reap_stale()
        missing = [k for k in specs if k not in self._results]
        if missing:
            self._refresh_finished()
            for key in specs:
                if key not in self._results:
                    self.enqueue(key, specs[key])
        while True:
            pending = self._pending()
            report()
            if all(k in self._results for k in specs):
                return {k: self.result(k) for k in specs}
            job = self.claim(specs)
            if job is not None:
                start = time.perf_counter()
                try:
                    with self.beating(job):
                        result = work(job)
                except BaseException:
                    self.fail(job, traceback.format_exc())
                    raise
                self.complete(job, result, time.perf_counter() - start)
                continue
            live = {t.user_attrs.get("key") for t in pending}
            lost = [k for k in specs if k not in self._results and k not in live]
            if lost:
                # Finished between two looks, or failed and not yet enqueued again.
                self._refresh_finished()
                for key in lost:
                    if key not in self._results:
                        self.enqueue(key, specs[key])
                continue
            self.reap_stale()
            time.sleep(self.poll)
