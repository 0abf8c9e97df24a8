"""Atomic writes (astrodata.core.files): the target is its old self or complete, whatever happens."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from astrodata.core.files import (
    atomic_dir,
    atomic_open,
    atomic_path,
    atomic_write_bytes,
    atomic_write_json,
    atomic_write_text,
)


def test_kill_between_write_and_replace_leaves_the_old_file(tmp_path):
    """A process killed (SIGKILL) after writing the new content but before the rename."""
    target = tmp_path / "stats.json"
    target.write_text('{"old": true}')
    script = textwrap.dedent(f"""
        import os, signal
        from astrodata.core.files import atomic_open
        with atomic_open({str(target)!r}) as fh:
            fh.write('{{"new": ' + '1' * 100000 + '}}')
            fh.flush()
            os.kill(os.getpid(), signal.SIGKILL)
    """)
    proc = subprocess.run([sys.executable, "-c", script], env={**os.environ, "PYTHONPATH": os.getcwd()})
    assert proc.returncode == -9
    assert json.loads(target.read_text()) == {"old": True}
    leftovers = [p.name for p in tmp_path.iterdir() if p != target]
    assert len(leftovers) == 1 and leftovers[0].startswith(".stats.json.") and leftovers[0].endswith(".tmp")
    assert list(tmp_path.glob("*.json")) == [target]  # hidden: globs for the real files skip it


@pytest.mark.parametrize("where", ["writing", "replacing"])
def test_error_keeps_old_file_and_removes_the_temporary(tmp_path, monkeypatch, where):
    target = tmp_path / "data" / "part-00000.parquet"
    old = pa.table({"id": ["a", "b"]})
    target.parent.mkdir()
    pq.write_table(old, target)
    if where == "replacing":
        def refuse(*args: object) -> None:
            raise OSError("disk full")

        monkeypatch.setattr(os, "replace", refuse)
    with pytest.raises((OSError, RuntimeError)), atomic_path(target) as tmp:
        pq.write_table(pa.table({"id": ["c"]}), tmp)
        if where == "writing":
            raise RuntimeError("crash after the write")
    assert pq.read_table(target).equals(old)
    assert sorted(p.name for p in target.parent.iterdir()) == ["part-00000.parquet"]


def test_whole_content_variants(tmp_path):
    assert atomic_write_text(tmp_path / "a" / "t.txt", "héllo\n").read_bytes() == "héllo\n".encode()
    assert atomic_write_bytes(tmp_path / "b.bin", b"\x00\xff").read_bytes() == b"\x00\xff"
    path = atomic_write_json(tmp_path / "c.json", {"b": 1, "a": [1, 2]}, indent=2, sort_keys=True)
    assert path.read_text() == '{\n  "a": [\n    1,\n    2\n  ],\n  "b": 1\n}'
    atomic_write_text(path, "replaced")
    assert path.read_text() == "replaced"
    with atomic_open(tmp_path / "d.jsonl") as fh:
        fh.writelines(f"{i}\n" for i in range(3))
    assert (tmp_path / "d.jsonl").read_text() == "0\n1\n2\n"
    with pytest.raises(ValueError, match="mode must be"):
        with atomic_open(tmp_path / "e.txt", "a"):
            pass
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a", "b.bin", "c.json", "d.jsonl"]


def test_folder_replaced_whole_or_not_at_all(tmp_path):
    target = tmp_path / "model"
    (tmp_path / "model.partial").mkdir()  # left by a killed run: cleared, not reused
    (tmp_path / "model.partial" / "stale.bin").write_bytes(b"x")
    (tmp_path / "model.partial-999999999").mkdir()  # a killed process's own folder: cleared too
    with atomic_dir(target) as tmp:
        assert tmp == tmp_path / f"model.partial-{os.getpid()}" and list(tmp.iterdir()) == []
        assert sorted(p.name for p in tmp_path.iterdir()) == [tmp.name]
        (tmp / "config.json").write_text("{}")
        (tmp / "sub").mkdir()
        (tmp / "sub" / "w.bin").write_bytes(b"1")
    assert sorted(str(p.relative_to(target)) for p in target.rglob("*")) == ["config.json", "sub", "sub/w.bin"]

    with pytest.raises(RuntimeError), atomic_dir(target) as tmp:
        (tmp / "config.json").write_text('{"half": 1}')
        raise RuntimeError("crash while saving")
    assert (target / "config.json").read_text() == "{}" and (target / "sub" / "w.bin").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model"]
