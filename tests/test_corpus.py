"""End-to-end build-corpus: fixtures, real papers, hostile e-prints, SIGKILL + resume, shards."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import duckdb
import pyarrow.parquet as pq
import pytest
from conftest import FIXTURES, ROOT, shared

from astrodata.core.shards import read_rows
from astrodata.corpus.build import CorpusOptions, build_corpus, in_shard, parse_shard

EPRINTS = FIXTURES / "eprints"
CORPUS_COLUMNS = {"id", "source", "source_id", "title", "text", "n_tokens", "license", "url", "date"}


def cli(*args: str, cwd: Path, timeout: float = 600) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "astrodata.cli", *args], cwd=cwd, capture_output=True,
                          text=True, timeout=timeout, env={**os.environ, "PYTHONPATH": str(ROOT)})


def rows(out: Path) -> list[dict]:
    return list(read_rows(out))


def catalog(workdir: Path, query: str) -> list[tuple]:
    con = duckdb.connect(str(workdir / "catalog.duckdb"), read_only=True)
    try:
        return con.execute(query).fetchall()
    finally:
        con.close()


def test_fixture_build_through_cli(tmp_path):
    res = cli("build-corpus", "--eprints", str(EPRINTS), "--out", "corpus", "--workdir", "work", cwd=tmp_path)
    assert res.returncode == 0, res.stderr
    assert "extracted 3 arxiv" in res.stderr
    out = tmp_path / "corpus"
    docs = {r["source_id"]: r for r in rows(out)}
    assert set(docs) == {"2401.00001v1", "2402.00002v2", "2403.00003v1"}
    assert set(pq.read_schema(next((out / "data").glob("*.parquet"))).names) >= CORPUS_COLUMNS
    dwarf = docs["2401.00001v1"]["text"]
    assert "\\mathrm{M}_\\odot" in dwarf and "\\msun" not in dwarf  # macro uses expanded inside math
    assert "dark-matter halo of modest mass" in dwarf  # a macro with an argument
    assert "must not reach the output" not in dwarf  # comments stripped
    assert "Example University" not in dwarf  # affiliation block out of the text
    assert "## Introduction" in dwarf or "# Introduction" in dwarf
    ring = docs["2403.00003v1"]["text"]
    assert "M_{\\rm f}" in ring and "damped sinusoid" in ring and "62" in ring  # \input and \include flattened
    missing = catalog(tmp_path / "work", "SELECT missing_inputs FROM documents WHERE source_id = '2403.00003v1'")
    assert any("missing_section" in m for m in missing[0][0])
    assert (out / "README.md").read_text().count("arxiv") >= 1
    stats = json.loads((out / "stats.json").read_text())
    assert stats["documents"] == 3
    # Loadable as a Hugging Face dataset, exactly as the contract says.
    from datasets import load_dataset

    ds = load_dataset("parquet", data_dir=str(out / "data"), split="train")
    assert ds.num_rows == 3 and CORPUS_COLUMNS <= set(ds.column_names)

    again = cli("build-corpus", "--eprints", str(EPRINTS), "--out", "corpus", "--workdir", "work", cwd=tmp_path)
    assert again.returncode == 0 and "3 already done" in again.stderr
    assert sorted(r["id"] for r in rows(out)) == sorted(f"arxiv:{k}" for k in docs)


def test_missing_eprints_folder_is_one_line_error(tmp_path):
    res = cli("build-corpus", "--eprints", "nope", "--out", "c", "--workdir", "w", cwd=tmp_path)
    assert res.returncode == 1
    assert "nope" in res.stderr and "Traceback" not in res.stderr


def test_shard_runs_then_merge(tmp_path):
    work, out = tmp_path / "work", tmp_path / "out"
    for k in (1, 2):
        build_corpus(work, CorpusOptions(out=out, eprints=[EPRINTS], workers=1, shard=(k, 2), progress=False))
    assert not out.exists()  # shard runs only extract
    summary = build_corpus(work, CorpusOptions(out=out, eprints=[EPRINTS], workers=1, progress=False))
    assert summary["shard_catalogs_merged"] == 2 and summary["extracted"] == {}  # nothing left to redo
    assert len(rows(out)) == 3
    assert catalog(work, "SELECT count(*) FROM documents WHERE status = 'done'") == [(3,)]


def test_shard_assignment_is_a_partition():
    ids = [f"arxiv:{i}" for i in range(500)]
    owners = [sum(in_shard(i, (k, 4)) for k in range(1, 5)) for i in ids]
    assert owners == [1] * 500
    assert parse_shard("2/8") == (2, 8)
    with pytest.raises(ValueError, match="K/N"):
        parse_shard("9/8")


def write_distinct_papers(folder: Path, n: int, seed: int = 7) -> None:
    """n small LaTeX papers made of different random sentences (so dedup keeps them all)."""
    import random

    vocab = sorted(set((EPRINTS / "2401.00001v1.tex").read_text().split()) | set(
        (EPRINTS / "2402.00002v2.tex").read_text().split()))
    vocab = [w for w in vocab if w.isalpha() and w.islower()]
    rng = random.Random(seed)
    for i in range(n):
        sentences = [" ".join(rng.choices(vocab, k=12)).capitalize() + "." for _ in range(30)]
        body = "\n\n".join(" ".join(sentences[j:j + 5]) for j in range(0, 30, 5))
        (folder / f"2405.{i:05d}v1.tex").write_text(
            f"\\documentclass{{article}}\n\\begin{{document}}\n\\title{{Paper {i}}}\n\\maketitle\n"
            f"\\section{{Introduction}}\n{body}\n\\end{{document}}\n")


def test_sigkill_mid_run_then_resume_is_exactly_once(tmp_path):
    """Kill -9 the build after its first shard lands; the re-run completes with no loss or duplicate."""
    src = tmp_path / "eprints"
    src.mkdir()
    n = 200
    write_distinct_papers(src, n)
    args = [sys.executable, "-c",
            "from astrodata.corpus.build import CorpusOptions, build_corpus; from pathlib import Path; "
            f"build_corpus(Path('work'), CorpusOptions(out=Path('out'), eprints=[Path('{src}')], workers=1, "
            "flush_every=4, progress=False))"]
    proc = subprocess.Popen(args, cwd=tmp_path, env={**os.environ, "PYTHONPATH": str(ROOT)},
                            start_new_session=True)
    extracted = tmp_path / "work" / "extracted" / "data"
    deadline = time.time() + 120
    while time.time() < deadline and len(list(extracted.glob("*.parquet"))) < 2:
        time.sleep(0.05)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    done_before = len(list(extracted.glob("*.parquet")))
    assert 2 <= done_before < n / 4 - 5, f"the kill should land mid-run ({done_before} shards)"
    assert not (tmp_path / "out" / "data").exists(), "no dataset is visible before the build finishes"

    summary = build_corpus(tmp_path / "work", CorpusOptions(out=tmp_path / "out", eprints=[src], workers=1,
                                                            progress=False))
    assert summary["skipped_already_done"] >= 4 * done_before
    errors = duckdb.connect(str(tmp_path / "work" / "catalog.duckdb"), read_only=True).execute(
        "SELECT doc_id, error FROM documents WHERE status = 'error'").fetchall()
    assert errors == []
    ids = [r["id"] for r in rows(tmp_path / "out")]
    assert len(ids) == len(set(ids)) == n


def test_hostile_eprints_are_recorded_and_contained(tmp_path):
    from hostile import make_hostile_eprints

    hostile = tmp_path / "sandbox" / "hostile"
    hostile.mkdir(parents=True)
    expected = make_hostile_eprints(hostile)
    assert len(expected) >= 50
    before = {p for p in tmp_path.rglob("*")}
    res = cli("build-corpus", "--eprints", str(hostile), "--out", "sandbox/out", "--workdir", "sandbox/work",
              "--timeout", "20", cwd=tmp_path, timeout=900)
    assert res.returncode == 0, res.stderr[-2000:]
    assert "failed" in res.stderr  # the one-line summary
    new = {p for p in tmp_path.rglob("*")} - before
    outside = [p for p in new if not p.is_relative_to(tmp_path / "sandbox" / "out")
               and not p.is_relative_to(tmp_path / "sandbox" / "work")]
    assert outside == [], f"files written outside the workspace: {outside[:5]}"
    from astrodata.sources.eprints import iter_local_eprints

    work = tmp_path / "sandbox" / "work"
    status = dict(catalog(work, "SELECT source_id, status FROM documents"))
    reasons = dict(catalog(work, "SELECT doc_id, reason FROM errors"))
    names = {eprint_id: path.name for eprint_id, path in iter_local_eprints(hostile)}
    assert set(status) == set(names), "every hostile e-print has exactly one catalog outcome"
    for eprint_id, name in names.items():
        stage, _, what = expected[name].partition(":")
        if stage in ("unpack", "flatten"):
            assert status[eprint_id] == "error", f"{name} should fail at {stage}"
            assert reasons[f"arxiv:{eprint_id}"] == what, f"{name}: {reasons[f'arxiv:{eprint_id}']} != {what}"
        elif status[eprint_id] == "error":
            assert reasons.get(f"arxiv:{eprint_id}"), f"{name} failed without a reason"


def test_real_papers_all_convert(tmp_path):
    papers = shared("arxiv-eprints")
    work, out = tmp_path / "work", tmp_path / "out"
    summary = build_corpus(work, CorpusOptions(out=out, eprints=[papers], workers=2, progress=False))
    from astrodata.sources.eprints import iter_local_eprints

    n_papers = len(list(iter_local_eprints(papers)))  # one e-print per id (.tar.gz wins over .gz)
    assert summary["failed"] == 0, catalog(work, "SELECT doc_id, stage, reason, detail FROM errors")
    assert summary["extracted"] == {"arxiv": n_papers} and n_papers == 30
    per_doc = catalog(work, "SELECT source_id, words, residue_per_1k FROM documents")
    assert all(words > 300 for _, words, _ in per_doc), per_doc
    worst = max(per_doc, key=lambda r: r[2])
    assert worst[2] <= 0.5, f"LaTeX residue above 0.5 per 1k words: {worst}"
    texts = {r["source_id"]: r["text"] for r in rows(out)}
    assert all(t.strip() for t in texts.values())
    # spectral-sirens defines \Msun in its own macros.sty: package macros are expanded too.
    assert "\\Msun" not in texts["spectral-sirens-gps"] and "\\odot" in texts["spectral-sirens-gps"]


def test_build_from_harvested_catalog(tmp_path):
    """harvest (snapshot) -> download e-prints from a local server -> corpus rows carry the metadata."""
    import http.server
    import threading

    from astrodata.core.workspace import Workspace
    from astrodata.sources.arxiv_meta import harvest_snapshot

    work = tmp_path / "work"
    with Workspace(work) as ws:
        harvest_snapshot(ws, FIXTURES / "arxiv_snapshot_sample.jsonl", ["astro-ph", "gr-qc"])
        ids = [r[0] for r in ws.con.execute(
            "SELECT arxiv_id || 'v' || latest_version FROM papers ORDER BY 1").fetchall()]
    assert ids and all("v" in i for i in ids)
    payloads = {ids[0]: (EPRINTS / "2401.00001v1.tex").read_bytes()}  # the others answer 404
    requests: list[str] = []

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self):  # noqa: N802 - http.server's naming
            eprint_id = self.path.removeprefix("/e-print/")
            requests.append(self.headers.get("User-Agent", ""))
            body = payloads.get(eprint_id)
            self.send_response(200 if body else 404)
            self.end_headers()
            self.wfile.write(body or b"not found")

        def log_message(self, *a):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        opts = CorpusOptions(out=tmp_path / "out", from_catalog=True, workers=1, progress=False,
                             eprint_url=f"http://127.0.0.1:{server.server_port}/e-print/", download_delay_s=0.0)
        summary = build_corpus(work, opts)
    finally:
        server.shutdown()
    assert requests and all(ua.startswith("astrodata") for ua in requests)
    assert summary["downloads"]["downloaded"] == 1 and summary["downloads"]["failed"] == len(ids) - 1
    (row,) = rows(tmp_path / "out")
    with Workspace(work) as ws:
        title, = ws.con.execute("SELECT title FROM papers WHERE arxiv_id || 'v' || latest_version = ?",
                                [ids[0]]).fetchall()[0]
        assert ws.con.execute("SELECT count(*) FROM errors WHERE stage = 'download'").fetchall() == [(len(ids) - 1,)]
    assert row["source_id"] == ids[0] and row["title"] == title  # metadata wins over the LaTeX title
    assert row["url"].endswith(ids[0]) and row["date"]


def test_all_sources_filters_dedup_decontam(tmp_path):
    """One build over e-prints (with a duplicate and two versions), a Wikipedia dump and local
    documents, decontaminated against a benchmark file; checks every stage left its trace."""
    src = tmp_path / "eprints"
    shutil.copytree(EPRINTS, src)
    shutil.copy(src / "2402.00002v2.tex", src / "2402.00002v3.tex")  # a newer version, same text
    near_copy = (EPRINTS / "2401.00001v1.tex").read_text().replace("Toy Survey", "Toy Survey (copy)")
    (src / "2409.00009v1.tex").write_text(near_copy.replace("and their rotation speeds", "and they rotate slowly, at speeds that"))
    bench = tmp_path / "bench.jsonl"
    bench.write_text(json.dumps({
        "question": "Each one sits in a dark-matter halo of modest mass, and their rotation speeds rarely exceed what?",
        "A": "a", "B": "b", "C": "c", "D": "d", "answer": "A"}) + "\n")
    work, out = tmp_path / "work", tmp_path / "out"
    res = cli("build-corpus", "--eprints", str(src), "--wikipedia", str(FIXTURES / "wikipedia" / "mini-pages-articles.xml"),
              "--docs", str(FIXTURES / "local_docs"), "--license", "CC-BY-4.0", "--benchmark", str(bench),
              "--out", str(out), "--workdir", str(work), cwd=tmp_path)
    assert res.returncode == 0, res.stderr
    got = {r["id"]: r for r in rows(out)}
    sources = {r["source"] for r in got.values()}
    assert sources == {"arxiv", "wikipedia", "textbook"}
    assert all(r["n_tokens"] and r["n_tokens"] > 0 for r in got.values())
    assert all(r["license"] == "CC-BY-4.0" for r in got.values() if r["source"] == "textbook")
    clusters = {d: (kept, reason, keep) for d, kept, reason, keep in catalog(
        work, "SELECT doc_id, kept, reason, kept_doc_id FROM dedup_clusters")}
    assert clusters["arxiv:2402.00002v2"] == (False, "older-version", "arxiv:2402.00002v3")
    assert "arxiv:2402.00002v3" in got and "arxiv:2402.00002v2" not in got
    # 2401.00001v1 overlaps the benchmark question: dropped before dedup; its near copy survives.
    assert "arxiv:2401.00001v1" not in got
    status = dict(catalog(work, "SELECT doc_id, error FROM documents WHERE status = 'dropped'"))
    assert status["arxiv:2401.00001v1"] == "decontam: benchmark-overlap"
    assert "arxiv:2409.00009v1" in got  # the near copy, reworded where the question was, stays
    stats = json.loads((out / "stats.json").read_text())
    assert stats["documents"] == len(got)
    assert stats["per_source"]["wikipedia"]["documents"] == sum(r["source"] == "wikipedia" for r in got.values())
    assert (out / "stats.md").exists() and list((out / "plots").glob("*.png"))
    selection = (work / "logs" / "wikipedia-selection.jsonl").read_text().splitlines()
    assert any(json.loads(line)["action"] == "dropped" for line in selection)
    card = (out / "README.md").read_text()
    assert "wikipedia" in card and "textbook" in card and "CC-BY-4.0" in card
