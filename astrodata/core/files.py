"""Atomic writes: a file or folder is either its old self or complete, never half written.

A file is written to a hidden temporary name in the same folder (so the rename never crosses a
file system), flushed to disk with `fsync`, then moved over the target with `os.replace`, which
POSIX makes atomic; on any error the temporary file is removed and the target is left untouched.
A reader, or a run resumed after kill -9, therefore sees the old content or the new, never a mix.

- `atomic_path(target)`: a temporary path for writers that take a path (pyarrow, safetensors);
- `atomic_write_text`, `atomic_write_bytes`, `atomic_write_json`: whole contents at once;
- `atomic_open(target)`: a file object for streamed writes (JSONL line by line);
- `atomic_dir(target)`: a folder built at `<target>.partial`, then moved into place. Replacing a
  non-empty folder cannot be one system call, so between removing the old folder and the rename
  neither exists; a folder either is complete or absent, never partial.

Why our own code: `atomicwrites` (the library for this) is archived by its author (2022) and
covers files only; the standard library's `tempfile` and `os.replace` do the work in a few lines.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any


def _fsync_file(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _fsync_dir(path: Path) -> None:
    """Make a rename inside `path` durable (a no-op where folders cannot be opened, e.g. Windows)."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


@contextmanager
def atomic_path(target: str | os.PathLike[str]) -> Iterator[Path]:
    """Yield a temporary path next to `target`; write it, and on a clean exit it becomes `target`.

    The temporary name is hidden and unique (`.<name>.<random>.tmp`), so concurrent writers never
    share one and globs such as `*.parquet` never match it. The parent folder is created."""
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    os.close(fd)
    tmp = Path(name)
    try:
        yield tmp
        _fsync_file(tmp)
        os.replace(tmp, target)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    _fsync_dir(target.parent)


@contextmanager
def atomic_open(target: str | os.PathLike[str], mode: str = "w", encoding: str | None = "utf-8") -> Iterator[IO[Any]]:
    """`open(target, mode)` written atomically: the file appears complete when the block ends cleanly.

    `mode` is "w" (text, `encoding`) or "wb" (bytes)."""
    if mode not in ("w", "wb"):
        raise ValueError(f"atomic_open writes a new file: mode must be 'w' or 'wb', got {mode!r}")
    with atomic_path(target) as tmp, open(tmp, mode, encoding=None if mode == "wb" else encoding) as fh:
        yield fh


def atomic_write_bytes(target: str | os.PathLike[str], data: bytes) -> Path:
    """Write `data` to `target` atomically; returns `target` as a Path."""
    with atomic_open(target, "wb") as fh:
        fh.write(data)
    return Path(target)


def atomic_write_text(target: str | os.PathLike[str], text: str, encoding: str = "utf-8") -> Path:
    """Write `text` to `target` atomically; returns `target` as a Path."""
    with atomic_open(target, "w", encoding) as fh:
        fh.write(text)
    return Path(target)


def atomic_write_json(target: str | os.PathLike[str], obj: Any, **dumps: Any) -> Path:
    """`json.dumps(obj, **dumps)` written to `target` atomically; returns `target` as a Path."""
    return atomic_write_text(target, json.dumps(obj, **dumps))


def pid_alive(pid: object) -> bool:
    """Whether `pid` is the id of a running process (signal 0 checks without signalling)."""
    if not isinstance(pid, int):
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


@contextmanager
def atomic_dir(target: str | os.PathLike[str]) -> Iterator[Path]:
    """Yield an empty folder `<target>.partial-<pid>` to fill; on a clean exit it replaces `target`.

    The temporary folder is this process's own, so two processes building the same target at once
    (e.g. two commands converting the embedded model) never delete each other's files; the one that
    finishes second replaces the first one's identical result. Leftovers of killed processes are
    cleared first; on an error the partial folder is removed and `target` is left as it was. Files
    are fsynced before the rename."""
    target = Path(target)
    for stale in target.parent.glob(f"{target.name}.partial*"):
        pid = stale.name.rpartition("-")[2]
        if not (pid.isdigit() and pid_alive(int(pid))) or int(pid) == os.getpid():
            shutil.rmtree(stale, ignore_errors=True)
    tmp = target.with_name(f"{target.name}.partial-{os.getpid()}")
    tmp.mkdir(parents=True)
    try:
        yield tmp
        for path in tmp.rglob("*"):
            if path.is_file() and not path.is_symlink():
                _fsync_file(path)
        shutil.rmtree(target, ignore_errors=True)
        tmp.rename(target)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    _fsync_dir(target.parent)
