"""Run control shared by the long builds: interrupts, one writer per output folder, kill points.

- `Interrupted`: what a build raises after Ctrl-C (SIGINT) or SIGTERM once its finished work is
  safe on disk; the CLI prints `interrupted: N done, re-run the same command to resume` and exits
  130 (128 + SIGINT, the shell's convention).
- `interrupt_handling`: SIGINT and SIGTERM both raise KeyboardInterrupt and are remembered, since
  DuckDB reports one that lands inside a query as a plain `RuntimeError`; `is_interrupt` tells.
  `asyncio_sigint` lends SIGINT back to asyncio's runner, which cancels its main task.
- `output_lock`: an exclusive `fcntl.flock` on `OUT/.astrodata.lock`, held for the whole run, so a second run on the same `--out` (from any workdir) fails at once with one
  line, as DuckDB's own lock does for the catalog. The kernel drops the lock when the process
  dies, so a killed run never leaves a stale lock.
- `fault_point`: with `ASTRODATA_FAULT=NAME` (or `NAME:K`, the K-th time) in the environment the
  process SIGKILLs itself when it reaches that point: tests use it to kill a build deterministically
  at each of its file writes and check that a resume ends equal to an uninterrupted run.
"""

from __future__ import annotations

import fcntl
import os
import signal
import threading
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

LOCK_NAME = ".astrodata.lock"
_FAULT_HITS: Counter[str] = Counter()
_REQUESTED = threading.Event()  # a SIGINT/SIGTERM arrived inside `interrupt_handling`


class Interrupted(KeyboardInterrupt):
    """A build stopped by SIGINT/SIGTERM after keeping its finished work; `done` counts it."""

    def __init__(self, done: int):
        super().__init__(f"interrupted: {done} done")
        self.done = done

    def message(self) -> str:
        return f"interrupted: {self.done} done, re-run the same command to resume"


@contextmanager
def interrupt_handling() -> Iterator[None]:
    """While inside, SIGINT and SIGTERM are remembered (`is_interrupt`) and raise KeyboardInterrupt.

    The memory matters because DuckDB turns a SIGINT that lands inside a query into a plain
    `RuntimeError("Query interrupted")`. Handlers are restored on exit; outside the main thread
    this is a no-op."""
    def on_sigint(signum: int, frame: object) -> None:
        _REQUESTED.set()
        raise KeyboardInterrupt

    def on_sigterm(signum: int, frame: object) -> None:  # as SIGINT, to whichever handler holds it now
        _REQUESTED.set()
        signal.raise_signal(signal.SIGINT)

    try:
        previous = {signal.SIGINT: signal.signal(signal.SIGINT, on_sigint),
                    signal.SIGTERM: signal.signal(signal.SIGTERM, on_sigterm)}
    except ValueError:  # not the main thread
        yield
        return
    _REQUESTED.clear()
    try:
        yield
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)


@contextmanager
def asyncio_sigint() -> Iterator[None]:
    """Python's default SIGINT handler while inside, so `asyncio.run` installs its own (which
    cancels the main task: every request ends cleanly) and raises KeyboardInterrupt at the end."""
    try:
        previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    except ValueError:
        yield
        return
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)


def is_interrupt(exc: BaseException) -> bool:
    """Whether `exc` is how a SIGINT/SIGTERM surfaced (see `interrupt_handling`)."""
    return isinstance(exc, KeyboardInterrupt) or (_REQUESTED.is_set() and isinstance(exc, Exception))


class OutputLocked(RuntimeError):
    """Another run holds the output folder."""


@contextmanager
def output_lock(out: Path) -> Iterator[Path]:
    """Hold the exclusive lock of output folder `out` (see the module docstring); yields the lock file.
    It lives inside `out`, which a build writes anyway (nothing is written beside it). A run that
    created `out` and ends having written nothing else there (bad input found late, Ctrl-C early)
    removes it again, so a failed run leaves no empty output folder behind."""
    out = Path(out).resolve()
    created = not out.exists()
    out.mkdir(parents=True, exist_ok=True)
    path = out / LOCK_NAME
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    locked = False
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 64, 0).decode("ascii", "replace").strip() or "another process"
            raise OutputLocked(f"{out} is being written by another run (pid {holder}; lock {path})") from None
        locked = True
        os.ftruncate(fd, 0)
        os.pwrite(fd, str(os.getpid()).encode(), 0)
        yield path
    finally:
        if locked and created and [p.name for p in out.iterdir()] == [LOCK_NAME]:
            path.unlink()  # still held: no other run can have taken it
            out.rmdir()
        os.close(fd)  # closing releases the lock


def require_utf8_path(path: Path, option: str) -> Path:
    """`path`, or ValueError naming `option` when its name has bytes that are not UTF-8: DuckDB
    and Arrow take paths as UTF-8 strings and cannot open such a folder (inputs that are only
    read by Python, such as e-print folders, work with any bytes)."""
    try:
        str(path).encode("utf-8")
    except UnicodeEncodeError:
        shown = str(path).encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")
        raise ValueError(f"{option} {shown}: the path is not valid UTF-8, which DuckDB and Arrow need; "
                         "rename the folder") from None
    return path


def fault_point(name: str) -> None:
    """SIGKILL this process here when `ASTRODATA_FAULT` names this point (see the module docstring)."""
    spec = os.environ.get("ASTRODATA_FAULT")
    if not spec:
        return
    point, _, nth = spec.partition(":")
    if point != name:
        return
    _FAULT_HITS[name] += 1
    if _FAULT_HITS[name] >= int(nth or 1):
        os.kill(os.getpid(), signal.SIGKILL)
