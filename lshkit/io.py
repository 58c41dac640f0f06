"""Atomic result files and run metadata.

Every result lshkit writes goes through these helpers, so a run killed at any
moment leaves either the old file or the new one, never half of one.
"""
from __future__ import annotations

import dataclasses
import errno
import json
import os
import platform
import socket
import sys
import tempfile
import time
from contextlib import contextmanager, suppress
from pathlib import Path

__all__ = ["JSONConfig", "atomic_write", "write_json", "read_json", "write_csv", "atomic_torch_save",
           "Journal", "versions", "run_record", "os_error_line", "check_writable", "DISK_FULL"]

#: The errors of a disk (or a quota) with no room left: the command stops, and re-running it resumes.
DISK_FULL = (errno.ENOSPC, errno.EDQUOT)


def os_error_line(err: OSError) -> str:
    """``err`` as one line: the path, the system's words and, for a full disk, which disk (its
    mount point). The one spelling of a file-system error every command prints."""
    words = err.strerror or str(err) or type(err).__name__
    line = f"{err.filename}: {words}" if err.filename is not None else words
    if err.filename2 is not None:
        line += f" ({err.filename2})"
    if err.errno in DISK_FULL and err.filename is not None:
        line += f" (the disk mounted at {_mount_point(err.filename)})"
    return line


def _mount_point(path) -> str:
    path = Path(os.path.abspath(path))
    while not os.path.ismount(path) and path != path.parent:
        path = path.parent
    return str(path)


def check_writable(folder, what: str = "folder") -> Path:
    """Create ``folder`` (and its parents) and a scratch file in it, before any compute: a
    folder that is a file, on a read-only disk or not ours is a ValueError of one line naming
    ``what`` (an option, such as ``--out``), the folder and the system's words."""
    folder = Path(folder)
    file = next((p for p in (folder, *folder.parents) if p.exists() and not p.is_dir()), None)
    if file is not None:
        raise ValueError(f"{what} {folder} cannot be written: {file} is a file, not a folder; give a folder")
    try:
        folder.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=folder):
            pass
    except OSError as err:
        err.filename = str(folder)  # not the scratch file's name
        raise ValueError(f"{what} {folder} cannot be written: {os_error_line(err)}; give a folder on a "
                         "writable disk") from None
    return folder


def _named(err: OSError, path) -> OSError:
    """A write's OSError with the file it was writing (``f.write`` names none), so that a full
    disk is reported with its path."""
    if err.filename is None and err.errno is not None:  # a message-only OSError keeps its words
        err.filename = str(path)
    return err


class JSONConfig:
    """JSON round trip for the kit's config dataclasses (``SparseConfig``, ``TrainConfig``,
    ``SearchConfig``); ``from_dict`` names unknown fields and the valid ones. Keys keep the
    field order: a search space's dimension order changes what the samplers draw, and
    ``SearchConfig.key`` hashes this text."""

    def to_dict(self) -> dict:
        return {k: list(v) if isinstance(v, tuple) else v for k, v in dataclasses.asdict(self).items()}

    @classmethod
    def from_dict(cls, d: dict):
        names = [f.name for f in dataclasses.fields(cls)]
        unknown = sorted(set(d) - set(names))
        if unknown:
            raise ValueError(f"unknown {cls.__name__} field(s) {unknown}; valid fields are {names}")
        return cls(**d)

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2)

    @classmethod
    def from_json(cls, text: str):
        return cls.from_dict(json.loads(text))


@contextmanager
def _atomic_path(path):
    """Yield a temporary path beside ``path``; on success fsync it and rename it into place."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        yield tmp
        with open(tmp, "rb+") as f:
            os.fsync(f.fileno())
        # mkstemp makes the file private (0600); results are shared, so follow the umask.
        os.chmod(tmp, 0o666 & ~_umask())
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    # The rename itself must survive a power cut too (not possible on every platform).
    with suppress(OSError):
        folder = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(folder)
        finally:
            os.close(folder)


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def atomic_write(path, data: str | bytes) -> Path:
    try:
        with _atomic_path(path) as tmp:
            with open(tmp, "wb") as f:
                f.write(data.encode() if isinstance(data, str) else data)
    except OSError as err:
        raise _named(err, path)
    return Path(path)


def write_json(path, obj) -> Path:
    return atomic_write(path, json.dumps(obj, indent=2, sort_keys=True, default=_jsonable) + "\n")


def read_json(path):
    with open(path) as f:
        return json.load(f)


def write_csv(path, frame) -> Path:
    """Write a pandas DataFrame as CSV, atomically, without its index."""
    return atomic_write(path, frame.to_csv(index=False))


def atomic_torch_save(obj, path) -> Path:
    import torch

    with _atomic_path(path) as tmp:
        torch.save(obj, tmp)
    return Path(path)


class Journal:
    """The finished items of a long loop, kept in ``path`` as JSON lines under a ``key`` (the
    experiment that makes them), so a killed loop resumes with the items it had finished.

    ``done`` maps each finished item's id to its value. A journal of another key is started
    afresh; the line a kill cut short is dropped (the journal is rewritten without it, atomically,
    when opened). :meth:`add` appends one line per item, unsynced: a killed process loses nothing
    the OS was given, and a power cut at worst a last line, dropped as cut; :meth:`close` removes
    the file once the loop's own results are written."""

    def __init__(self, path, key):
        self.path = Path(path)
        self.key = json.loads(json.dumps(key, default=_jsonable))
        self.done = {}
        lines = self.path.read_text().splitlines() if self.path.exists() else []
        if lines and _json_line(lines[0]) == self.key:
            for line in lines[1:]:
                item = _json_line(line)
                if item is None:
                    break
                self.done[item["id"]] = item["value"]
        atomic_write(self.path, "".join(json.dumps(x, default=_jsonable) + "\n" for x in
                                        [self.key] + [{"id": k, "value": v} for k, v in self.done.items()]))

    def add(self, item_id, value):
        """Append a finished item; returns its value as the journal reads it back (JSON types),
        so a resumed loop and an uninterrupted one see the same values."""
        line = json.dumps({"id": item_id, "value": value}, default=_jsonable)
        try:
            with open(self.path, "a") as f:
                f.write(line + "\n")
        except OSError as err:
            raise _named(err, self.path)
        self.done[item_id] = json.loads(line)["value"]
        return self.done[item_id]

    def close(self) -> None:
        self.path.unlink(missing_ok=True)


def _json_line(line: str):
    try:
        return json.loads(line)
    except json.JSONDecodeError:
        return None


def _jsonable(x):
    if hasattr(x, "tolist"):
        return x.tolist()
    if hasattr(x, "item"):
        return x.item()
    if isinstance(x, Path):
        return str(x)
    if hasattr(x, "__dataclass_fields__"):
        from dataclasses import asdict
        return asdict(x)
    raise TypeError(f"cannot write {type(x).__name__} to JSON")


def versions() -> dict:
    """Versions of everything that can change a result."""
    import numpy
    import torch
    from importlib.metadata import PackageNotFoundError, version

    # The CPU too: its instruction set picks torch's and MKL's kernels, whose rounding differs,
    # and a DST run's masks follow the weights' last bits (a retraining on another CPU diverges).
    out = {"python": platform.python_version(), "platform": platform.platform(),
           "torch": torch.__version__, "numpy": numpy.__version__,
           "cuda": torch.version.cuda, "threads": torch.get_num_threads(),
           "cpu": _cpu_model(), "cpu_capability": torch.backends.cpu.get_cpu_capability()}
    for pkg in ("lshkit", "optuna", "scikit-learn", "pandas", "hyperopt"):
        try:
            out[pkg] = version(pkg)
        except PackageNotFoundError:
            out[pkg] = None
    if torch.cuda.is_available():
        out["gpu"] = torch.cuda.get_device_name(0)
    return out


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


class run_record(dict):
    """Record a run's parameters, versions and timings in ``directory/run.json``, with the
    start, status and wall time of every earlier run into the same directory (``earlier_runs``).

    The file is written at once (status "running") and rewritten by :meth:`finish` with
    the wall time and status "done" or "failed: ...", so a result directory always says
    what produced it. Use it as a context manager, or, in a notebook whose run spans
    cells, create it in one cell and call ``finish()`` in the last: a later cell that raises
    (or is interrupted) before then marks it "failed: ..." (an IPython hook). Entries added to the
    record (it is a dict) are written too.
    """

    def __init__(self, directory, params: dict):
        self.path = Path(directory) / "run.json"
        earlier = []
        if self.path.exists():  # a re-run keeps what the earlier runs took
            with suppress(OSError, ValueError):
                before = read_json(self.path)
                earlier = before.pop("earlier_runs", []) + [
                    {k: before.get(k) for k in ("started", "status", "wall_seconds", "params")}]
        super().__init__(params=params, versions=versions(), host=socket.gethostname(), argv=sys.argv,
                         started=time.strftime("%Y-%m-%dT%H:%M:%S%z"), status="running",
                         earlier_runs=earlier)
        self._t0 = time.perf_counter()
        write_json(self.path, dict(self))
        self._watch_cells()

    def _watch_cells(self) -> None:
        """In IPython, a cell that raises before :meth:`finish` finishes the record as failed:
        papermill stops at the failing cell, and the last cell's ``finish()`` never runs."""
        shell = sys.modules["IPython"].get_ipython() if "IPython" in sys.modules else None
        if shell is None:
            return

        def after_cell(result):
            err = result.error_in_exec or result.error_before_exec
            if self["status"] == "running" and err is not None:
                words = str(err).splitlines()[0] if str(err) else ""
                self.finish(f"failed: {type(err).__name__}: {words}")
            if self["status"] != "running":
                shell.events.unregister("post_run_cell", after_cell)

        shell.events.register("post_run_cell", after_cell)

    def finish(self, status: str = "done") -> "run_record":
        self["status"] = status
        self["wall_seconds"] = round(time.perf_counter() - self._t0, 3)
        write_json(self.path, dict(self))
        return self

    def __enter__(self):
        return self

    def __exit__(self, kind, exc, tb):
        self.finish("done" if kind is None else f"failed: {kind.__name__}: {exc}")
        return False
