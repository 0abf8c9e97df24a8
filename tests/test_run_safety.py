"""build-corpus runs that can be trusted: bad options refused before any work, hostile folders and
archives recorded per item, kill -9 at every file write resumed to the uninterrupted result,
Ctrl-C keeping every finished document, one run per output folder (issue 11)."""

from __future__ import annotations

import functools
import gzip
import io
import json
import os
import signal
import subprocess
import sys
import tarfile
import tempfile
import time
from pathlib import Path

import duckdb
import pytest
from conftest import ROOT
from test_corpus import EPRINTS, catalog, rows, write_distinct_papers
from typer.testing import CliRunner

from astrodata.cli import app

TIMINGS = ("seconds", "time", "elapsed")


def cli(*args: str, cwd: Path, env: dict[str, str] | None = None, timeout: float = 300) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "astrodata.cli", *args], cwd=cwd, capture_output=True, text=True,
                          timeout=timeout, env={**os.environ, "PYTHONPATH": str(ROOT), **(env or {})})


def without_timings(value):
    if isinstance(value, dict):
        return {k: without_timings(v) for k, v in value.items() if not any(t in k for t in TIMINGS)}
    if isinstance(value, list):
        return [without_timings(v) for v in value]
    return value


def snapshot(out: Path, work: Path) -> dict:
    """What must be equal between an interrupted-then-resumed build and an uninterrupted one."""
    return {
        "rows": sorted((r["id"], r["text"], r["n_tokens"], r["title"]) for r in rows(out)),
        "stats": without_timings(json.loads((out / "stats.json").read_text())),
        "files": sorted(p.relative_to(out).as_posix() for p in out.rglob("*") if p.is_file()
                        and p.parent.name != "data"),
        "documents": catalog(work, "SELECT doc_id, source_id, status, error, words, n_tokens, residue_per_1k "
                                   "FROM documents ORDER BY doc_id"),
        "errors": catalog(work, "SELECT doc_id, stage, reason FROM errors ORDER BY ALL"),
    }


# -- options and recipes are checked before any work ---------------------------------------------
BAD_OPTIONS = [
    (["--bbl", "bogus"], "--bbl"),
    (["--citations", "bogus"], "--citations"),
    (["--limit", "-1"], "--limit"),
    (["--timeout", "-5"], "--timeout"),
    (["--timeout", "nan"], "--timeout"),
    (["--workers", "0"], "--workers"),
    (["--workers", "-1"], "--workers"),
    (["--workers", "10000"], "--workers"),
    (["--shard", "3/2"], "--shard"),
    (["--eprints", "no-such-folder"], "--eprints"),
    (["--out", "."], "--out ."),
    (["--out", ".."], "--out .."),
    (["--out", "work"], "--out work"),
]
BAD_RECIPES = [
    ("tokenizer:\n  batch_size: 0\n", "tokenizer.batch_size"),
    ("filters:\n  max_digit_ratio: -0.1\n", "filters.max_digit_ratio"),
    ("filters:\n  min_language_score: 1.5\n", "filters.min_language_score"),
    ("dedup:\n  threshold: .nan\n", "dedup.threshold"),
    ("filters:\n  max_dup_ngram_char_fraction: {1: 0.1}\n", "filters.max_dup_ngram_char_fraction"),
    ("filters: [unclosed\n", "not valid YAML"),
    ("filters:\n  max_digit_ratio: \xff\n", "not valid YAML"),
]


@pytest.mark.parametrize("case", range(len(BAD_OPTIONS) + len(BAD_RECIPES)))
def test_bad_options_and_recipes_fail_in_one_line_before_any_work(tmp_path, monkeypatch, case):
    monkeypatch.chdir(tmp_path)
    args = ["build-corpus", "--eprints", str(EPRINTS), "--out", "out", "--workdir", "work"]
    if case < len(BAD_OPTIONS):
        extra, named = BAD_OPTIONS[case]
        if extra[0] in ("--out", "--eprints"):  # replace the good value
            i = args.index(extra[0])
            args[i + 1] = extra[1]
            extra = []
    else:
        text, named = BAD_RECIPES[case - len(BAD_OPTIONS)]
        (tmp_path / "r.yaml").write_bytes(text.encode("latin-1"))
        extra, named = ["--recipe", "r.yaml"], f"r.yaml: {named}" if "YAML" not in named else named
    result = CliRunner().invoke(app, [*args, *extra])
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert result.exit_code == 1, result.output
    assert len(lines) == 1 and lines[0].startswith("error:"), result.output
    assert named in lines[0], lines[0]
    assert not (tmp_path / "work").exists() and not (tmp_path / "out").exists(), "no work before the check"


@pytest.mark.parametrize(("out", "work", "named"), [
    ("in", "work", "--out"), ("in/out", "work", "--out"), (".", "work", "--out ."),
    ("out", "in", "--workdir in"), ("out", "in/work", "--workdir in/work")])
def test_out_or_workdir_overlapping_an_input_folder_is_refused(tmp_path, monkeypatch, out, work, named):
    """Outputs written into an input folder are read back as e-prints by the next run (or the data
    swap replaces the inputs): refused in one line before anything is written."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "in").mkdir()
    (tmp_path / "in" / "2401.00001v1.tex").write_text(paper(0))
    before = sorted(p.name for p in tmp_path.rglob("*"))
    result = CliRunner().invoke(app, ["build-corpus", "--eprints", "in", "--out", out, "--workdir", work])
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert result.exit_code == 1, result.output
    assert len(lines) == 1 and lines[0].startswith(f"error: ValueError: {named}"), result.output
    assert "input folder in" in lines[0] or named == "--out .", lines[0]
    assert sorted(p.name for p in tmp_path.rglob("*")) == before, "nothing written"


def test_workdir_that_is_a_file_is_a_one_line_error(tmp_path):
    (tmp_path / "work").write_text("not a folder")
    result = CliRunner().invoke(app, ["build-corpus", "--eprints", str(EPRINTS), "--out", str(tmp_path / "out"),
                                      "--workdir", str(tmp_path / "work")])
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert result.exit_code == 1 and len(lines) == 1, result.output
    assert lines[0].endswith("work: exists and is not a folder") and "--workdir" in lines[0], lines[0]
    assert not (tmp_path / "out").exists()


# -- hostile folders: every fault is a recorded per-item outcome ----------------------------------
def tar_bytes(members: dict[str, bytes], *, global_header: str | None = None) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.USTAR_FORMAT) as tf:
        if global_header is not None:  # as GNU tar --format=pax writes it (named /tmp/GlobalHead.<pid>.<n>)
            record = b"17 comment=hello\n"
            info = tarfile.TarInfo(global_header)
            info.type, info.size = tarfile.XGLTYPE, len(record)
            tf.addfile(info, io.BytesIO(record))
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tf.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def paper(i: int) -> str:
    """The i-th of ten distinct small papers (distinct, so deduplication keeps them all)."""
    return _papers()[i]


@functools.cache
def _papers() -> list[str]:
    with tempfile.TemporaryDirectory() as tmp:
        write_distinct_papers(Path(tmp), 10, seed=11)
        return [p.read_text() for p in sorted(Path(tmp).iterdir())]


def write_hostile_folder(src: Path) -> dict[str, str]:
    """The folder faults of issue 11; returns {source_id: what it is} for the papers that must convert."""
    src.mkdir(parents=True)
    good = {}
    nonutf8 = os.fsdecode(b"2406.10001v1-caf\xe9.tex")  # a Latin-1 file name
    (src / nonutf8).write_text(paper(1))
    good["2406.10001v1-caf\\xe9"] = "non-UTF-8 file name"
    (src / "2406.10002v1.tex").write_bytes(paper(2).encode() + b"\x00" * 700)
    good["2406.10002v1"] = "trailing NUL padding"
    body = paper(3)
    preamble, rest = body.split("\\begin{document}", 1)
    (src / "2406.10003v1.tar.gz").write_bytes(gzip.compress(tar_bytes(
        {"ms.tex": (preamble + "\\input{body}\n").encode(), "body.tex": ("\\begin{document}" + rest).encode()})))
    good["2406.10003v1"] = "\\begin{document} inside an \\input file"
    (src / "2406.10004v1.tar.gz").write_bytes(gzip.compress(tar_bytes(
        {"main.tex": paper(4).encode()}, global_header="/tmp/GlobalHead.4242.1")))
    good["2406.10004v1"] = "PAX global header"
    gz = {i: gzip.compress(paper(i).encode()) for i in (5, 6, 7)}
    (src / "arXiv_src_2406_001.tar").write_bytes(tar_bytes({"2406/2406.10005.gz": gz[5], "2406/2406.10006.gz": gz[6]}))
    good["2406.10005"] = "bulk tar"
    good["2406.10006"] = "bulk tar, id also in the second tar"
    second = tar_bytes({"2406/2406.10006.gz": gz[6], "2406/2406.10007.gz": gz[7],
                        "2406/2406.10008.gz": gzip.compress(paper(8).encode() * 40)})
    cut = second.index(b"2406/2406.10008.gz") + 512 + 300  # inside the last member's data
    (src / "arXiv_src_2406_002.tar").write_bytes(second[:cut])
    good["2406.10007"] = "bulk tar member before a truncated member"
    return good


def test_hostile_folder_is_recorded_per_item_and_resumes(tmp_path):
    """Non-UTF-8 names, trailing NULs, \\begin{document} in an input, a PAX global header, duplicate ids
    across bulk tars, a bulk tar truncated inside a member, a single .tar.gz given to --eprints, and
    quotes/newlines in every path: one run converts every good paper, records every fault, and a
    re-run has nothing left to do and writes the same output."""
    base = tmp_path / "it's a\nfolder"
    good = write_hostile_folder(base / "eprints")
    single = base / "single 'one'.tar.gz"
    single.write_bytes(gzip.compress(tar_bytes({"main.tex": paper(9).encode()})))
    good["single 'one'"] = "single .tar.gz given to --eprints"
    work, out = base / "wo'rk\n", base / "o'ut\n"
    args = ["build-corpus", "--eprints", str(base / "eprints"), "--eprints", str(single), "--out", str(out),
            "--workdir", str(work), "--workers", "2"]
    first = cli(*args, cwd=tmp_path)
    assert first.returncode == 0, first.stderr[-3000:]
    converted = {r["source_id"] for r in rows(out)}
    assert converted == set(good), {k: v for k, v in good.items() if k not in converted}
    status = dict(catalog(work, "SELECT doc_id, status FROM documents WHERE source = 'arxiv'"))
    assert {f"arxiv:{s}" for s in good} == set(status) and set(status.values()) == {"done"}
    errors = catalog(work, "SELECT doc_id, stage, reason, detail FROM errors")
    dup = [e for e in errors if e[2] == "duplicate-id"]
    assert [e[0] for e in dup] == ["arxiv:2406.10006"] and "arXiv_src_2406" not in dup[0][3] or dup
    broken = [e for e in errors if e[0] == "arxiv-bulk:arXiv_src_2406_002.tar"]
    assert broken and broken[0][1:3] == ("unpack", "corrupt-archive"), errors
    assert len(errors) == 2, errors
    before = snapshot(out, work)

    again = cli(*args, cwd=tmp_path)
    assert again.returncode == 0, again.stderr[-3000:]
    assert f"{len(good)} already done" in " ".join(again.stderr.split()), again.stderr
    after = snapshot(out, work)
    assert after["rows"] == before["rows"] and after["documents"] == before["documents"]


def test_non_utf8_workdir_is_a_one_line_error(tmp_path):
    work = os.fsdecode(bytes(tmp_path) + b"/w\xff")
    res = CliRunner().invoke(app, ["build-corpus", "--eprints", str(EPRINTS), "--out", str(tmp_path / "out"),
                                   "--workdir", work])
    assert res.exit_code == 1 and "--workdir" in res.output and "UTF-8" in res.output, res.output


# -- kill -9 at every file write, then resume ----------------------------------------------------
KILL_POINTS = ["corpus-catalog-pending", "corpus-shard", "corpus-signatures", "corpus-out-partial",
               "corpus-stats", "corpus-swap"]


@pytest.fixture(scope="module")
def small_src(tmp_path_factory) -> Path:
    src = tmp_path_factory.mktemp("kill") / "eprints"
    src.mkdir()
    write_distinct_papers(src, 8)
    (src / "2405.99999v1.tex").write_text("\\documentclass{article}\n\\begin{document}\nToo short.\n\\end{document}\n")
    return src


@pytest.fixture(scope="module")
def reference(small_src, tmp_path_factory) -> dict:
    base = tmp_path_factory.mktemp("reference")
    res = cli("build-corpus", "--eprints", str(small_src), "--out", "out", "--workdir", "work", "--workers", "1",
              "--flush-every", "3", cwd=base)
    assert res.returncode == 0, res.stderr
    return snapshot(base / "out", base / "work")


@pytest.mark.parametrize("point", KILL_POINTS)
def test_kill_at_each_write_point_then_resume_equals_uninterrupted(tmp_path, small_src, reference, point):
    args = ["build-corpus", "--eprints", str(small_src), "--out", "out", "--workdir", "work", "--workers", "1",
            "--flush-every", "3"]
    killed = cli(*args, cwd=tmp_path, env={"ASTRODATA_FAULT": f"{point}:2" if point == "corpus-shard" else point})
    assert killed.returncode == -signal.SIGKILL, (point, killed.returncode, killed.stderr[-2000:])
    resumed = cli(*args, cwd=tmp_path)
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert snapshot(tmp_path / "out", tmp_path / "work") == reference
    assert not (tmp_path / "out.partial").exists()


# -- Ctrl-C and concurrent runs ----------------------------------------------------------------------
def test_sigint_stops_within_seconds_keeps_finished_documents(tmp_path):
    src = tmp_path / "eprints"
    src.mkdir()
    write_distinct_papers(src, 120)
    args = ["build-corpus", "--eprints", str(src), "--out", "out", "--workdir", "work", "--workers", "1",
            "--flush-every", "2"]
    proc = subprocess.Popen([sys.executable, "-m", "astrodata.cli", *args], cwd=tmp_path, text=True,
                            stderr=subprocess.PIPE, env={**os.environ, "PYTHONPATH": str(ROOT)},
                            start_new_session=True)
    shards = tmp_path / "work" / "extracted" / "data"
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and len(list(shards.glob("*.parquet"))) < 2:
        time.sleep(0.05)
    os.killpg(proc.pid, signal.SIGINT)  # as Ctrl-C does: the whole process group
    t0 = time.monotonic()
    _, err = proc.communicate(timeout=60)
    took = time.monotonic() - t0
    assert proc.returncode == 130, err[-2000:]
    assert took < 10, f"took {took:.1f} s to stop"
    message = [line for line in err.splitlines() if line.startswith("interrupted:")]
    assert message and message[0].endswith("done, re-run the same command to resume"), err[-2000:]
    n_done = int(message[0].split()[1])
    in_shards = {r["id"] for r in rows(tmp_path / "work" / "extracted")}
    assert n_done == len(in_shards) >= 4 and n_done < 120
    done = {d for (d,) in catalog(tmp_path / "work", "SELECT doc_id FROM documents WHERE status = 'done'")}
    assert done == in_shards
    assert catalog(tmp_path / "work", "SELECT status FROM runs") == [("interrupted",)]

    resumed = cli(*args, cwd=tmp_path)
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert f"{n_done} already done" in " ".join(resumed.stderr.split())
    ids = [r["id"] for r in rows(tmp_path / "out")]
    assert len(ids) == len(set(ids)) == 120


def test_second_run_on_the_same_out_fails_at_once(tmp_path):
    from astrodata.core.control import OutputLocked, output_lock

    with output_lock(tmp_path / "out"):
        res = cli("build-corpus", "--eprints", str(EPRINTS), "--out", "out", "--workdir", "other-work", cwd=tmp_path)
        assert res.returncode == 1
        assert "being written by another run" in res.stderr and len(res.stderr.strip().splitlines()) == 1
        with pytest.raises(OutputLocked), output_lock(tmp_path / "out"):
            pass
    assert not (tmp_path / "other-work" / "catalog.duckdb").exists() or not catalog(
        tmp_path / "other-work", "SELECT * FROM runs")
    with output_lock(tmp_path / "out"):  # released when the holder ends
        pass


def test_failures_from_settings_or_the_machine_are_not_final(tmp_path):
    """A paper failed by timeout, or dropped under another recipe, is tried again; --retry-failed
    retries input failures too; failures of the input under the same settings stay final."""
    src = tmp_path / "eprints"
    src.mkdir()
    write_distinct_papers(src, 3)
    (src / "2405.88888v1.tex").write_text("no LaTeX here at all")
    (tmp_path / "strict.yaml").write_text("filters:\n  min_words: 100000\n")
    base = ["build-corpus", "--eprints", str(src), "--out", "out", "--workdir", "work", "--workers", "1"]

    def outcome() -> dict:
        return dict(catalog(tmp_path / "work", "SELECT source_id, status FROM documents"))

    assert cli(*base, "--recipe", "strict.yaml", cwd=tmp_path).returncode == 0
    assert sorted(outcome().values()) == ["dropped"] * 3 + ["error"]
    con = duckdb.connect(str(tmp_path / "work" / "catalog.duckdb"))  # a timeout, as the machine would cause
    con.execute("UPDATE documents SET status = 'error', error = 'latex: timeout' WHERE source_id = '2405.00000v1'")
    con.close()
    res = cli(*base, cwd=tmp_path)  # the default recipe: the drops were the settings' doing
    assert res.returncode == 0, res.stderr
    assert outcome() == {"2405.00000v1": "done", "2405.00001v1": "done", "2405.00002v1": "done",
                         "2405.88888v1": "error"}
    assert "1 already done" in " ".join(res.stderr.split())  # the not-latex input failure stays final
    stale = catalog(tmp_path / "work", "SELECT source_id, error FROM documents WHERE status = 'done' AND error IS NOT NULL")
    assert stale == [], "a retried paper that is done keeps no error"
    retried = " ".join(cli(*base, "--retry-failed", cwd=tmp_path).stderr.split())
    assert "1 failed" in retried and "3 already done" in retried, retried


def test_entries_an_eprints_folder_does_not_read_are_recorded(tmp_path):
    """A subfolder (e.g. unpacked bulk tars' YYMM/), a FIFO or a broken link is not read: each is a
    recorded `discover` error, so an empty corpus from a nested folder is never silent."""
    from astrodata.corpus.steps import arxiv_tasks

    (tmp_path / "2401.00001v1.tex").write_text(paper(0))
    (tmp_path / "2402").mkdir()
    (tmp_path / "2402" / "2402.00002v1.tex").write_text(paper(1))
    os.mkfifo(tmp_path / "2403.00003v1.tex")
    (tmp_path / "2404.00004v1.tex").symlink_to(tmp_path / "missing")
    (tmp_path / os.fsdecode(b"d\xe9")).mkdir()
    rejected = []
    tasks = list(arxiv_tasks([tmp_path], rejected.append))
    assert [t.doc_id for t in tasks] == ["arxiv:2401.00001v1"]
    assert sorted((r.doc_id, r.stage, r.reason) for r in rejected) == [
        ("arxiv-skipped:2402", "discover", "subfolder"),
        ("arxiv-skipped:2403.00003v1.tex", "discover", "not-a-file"),
        ("arxiv-skipped:2404.00004v1.tex", "discover", "not-a-file"),
        ("arxiv-skipped:d\\xe9", "discover", "subfolder")]


def test_interrupt_after_the_last_document_still_says_interrupted(tmp_path, monkeypatch):
    """A Ctrl-C landing after the extraction loop (while signatures are computed) ends like any other:
    exit 130 with `interrupted: N done`, N the documents this run finished."""
    import astrodata.corpus.build as build

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(build, "write_signatures", interrupted)
    result = CliRunner().invoke(app, ["build-corpus", "--eprints", str(EPRINTS), "--out", str(tmp_path / "out"),
                                      "--workdir", str(tmp_path / "work"), "--workers", "1"])
    assert result.exit_code == 130, result.output
    done = catalog(tmp_path / "work", "SELECT count(*) FROM documents WHERE status = 'done'")[0][0]
    assert done > 0 and f"interrupted: {done} done" in result.output, result.output
