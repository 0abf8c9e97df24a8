"""build-qa runs that can be trusted (issue 11): loud failures, kill -9 at every write resumed to the
uninterrupted result, Ctrl-C keeping every reply (endpoint and embedded), bad options refused.

The endpoint is a small OpenAI-compatible server written here (stdlib `http.server` on 127.0.0.1):
it answers deterministically from the request (so two runs can be compared), can answer every
chat request with an HTTP status, reject a share of them, or answer slowly, and records what it
received. The replies are not the schema's JSON: each is stored as an `invalid` reply, which is
what these tests need (a reply the engine keeps and must never ask for again)."""

from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import duckdb
import pytest
from conftest import ROOT
from qa_support import write_corpus

from astrodata.core.shards import read_rows

RECIPE = """
generator: {dialect: none}
engine: {concurrency: 2, max_attempts: 2, backoff_base_s: 0, backoff_max_s: 0, invalid_retries: 1, chunk_docs: 2}
"""


class StubServer:
    """OpenAI-compatible chat completions on 127.0.0.1 (see the module docstring)."""

    def __init__(self, status: int | None = None, reject_share: float = 0.0, delay_s: float = 0.0):
        self.status, self.reject_share, self.delay_s = status, reject_share, delay_s
        self.received: list[dict] = []
        self.answered = 0
        stub = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: object) -> None:
                pass

            def reply(self, code: int, payload: dict) -> None:
                data = json.dumps(payload).encode()
                self.send_response(code)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def do_GET(self) -> None:  # noqa: N802 - http.server's naming
                self.reply(200, {"object": "list", "data": [{"id": "stub", "object": "model"}]})

            def do_POST(self) -> None:  # noqa: N802
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                stub.received.append(body)
                digest = hashlib.sha256(json.dumps(body["messages"], sort_keys=True).encode()).hexdigest()
                probe = body.get("max_tokens") == 1
                if stub.status is not None:
                    return self.reply(stub.status, {"error": {"message": f"status {stub.status} from the stub"}})
                if not probe and int(digest[:8], 16) / 0xFFFFFFFF < stub.reject_share:
                    return self.reply(400, {"error": {"message": "rejected by the stub"}})
                time.sleep(stub.delay_s)
                stub.answered += 1
                self.reply(200, {"id": "c", "object": "chat.completion", "created": 0, "model": body["model"],
                                 "choices": [{"index": 0, "finish_reason": "stop", "message": {
                                     "role": "assistant", "content": f"not JSON {digest[:12]}"}}],
                                 "usage": {"prompt_tokens": 10, "completion_tokens": 3, "total_tokens": 13}})

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/v1"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def make_corpus(folder: Path) -> Path:
    words = "stars gas dust planets orbit the galaxy halo disk mass light spectra young old bright faint".split()
    rows = [{"id": f"arxiv:2406.1000{i}v1", "source_id": f"2406.1000{i}v1", "title": f"Paper {i}",
             "text": " ".join(words[(i * 7 + j) % len(words)] + ("." if j % 9 == 8 else "") for j in range(450))}
            for i in range(4)]
    return write_corpus(folder / "corpus", rows)


@pytest.fixture
def corpus(tmp_path) -> Path:
    return make_corpus(tmp_path)


@pytest.fixture(scope="module")
def reference(tmp_path_factory) -> dict:
    """An uninterrupted build against the stub: its state and how many requests it sent."""
    base = tmp_path_factory.mktemp("qa-reference")
    stub = StubServer()
    try:
        res = build_qa(base, make_corpus(base), stub)
    finally:
        stub.close()
    assert res.returncode == 0, res.stderr[-2000:]
    return {"state": state(base), "sent": len(stub.received)}


def build_qa(tmp_path: Path, corpus: Path, stub: StubServer, *extra: str, env: dict | None = None,
             out: str = "qa", work: str = "work") -> subprocess.CompletedProcess:
    (tmp_path / "r.yaml").write_text(RECIPE)
    return subprocess.run(
        [sys.executable, "-m", "astrodata.cli", "build-qa", "--corpus", str(corpus), "--out", out, "--workdir", work,
         "--endpoint", stub.url, "--model", "stub", "--recipe", "r.yaml", *extra],
        cwd=tmp_path, capture_output=True, text=True, timeout=300,
        env={**os.environ, "PYTHONPATH": str(ROOT), "OPENAI_API_KEY": "sk-test", **(env or {})})


def query(work: Path, sql: str) -> list[tuple]:
    con = duckdb.connect(str(work / "catalog.duckdb"), read_only=True)
    try:
        return con.execute(sql).fetchall()
    finally:
        con.close()


def stored_messages(work: Path) -> set[str]:
    """The messages of every request whose outcome the catalog holds."""
    rows = query(work, "SELECT request FROM generation_requests WHERE status <> 'pending'")
    return {json.dumps(json.loads(r)["messages"], sort_keys=True) for (r,) in rows}


def state(tmp_path: Path, out: str = "qa", work: str = "work") -> dict:
    return {
        "rows": sorted((r["id"], json.dumps(r["messages"])) for r in read_rows(tmp_path / out)),
        "files": sorted(p.relative_to(tmp_path / out).as_posix() for p in (tmp_path / out).rglob("*")
                        if p.is_file() and p.parent.name != "data"),
        "requests": query(tmp_path / work, "SELECT key, status, response FROM generation_requests ORDER BY key"),
        "items": query(tmp_path / work, "SELECT id, kind, status FROM qa_items ORDER BY id"),
    }


# -- loud failures ---------------------------------------------------------------------------------
@pytest.mark.parametrize("status", [501, 404])
def test_endpoint_that_cannot_serve_chat_fails_at_the_probe(tmp_path, corpus, status):
    stub = StubServer(status=status)
    try:
        res = build_qa(tmp_path, corpus, stub)
    finally:
        stub.close()
    assert res.returncode == 1
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1 and f"HTTP {status}" in lines[0] and "does not serve chat completions" in lines[0], lines
    assert len(stub.received) == 1, "one probe request, nothing else"
    assert not (tmp_path / "qa" / "data").exists()


def test_failed_share_over_the_limit_ends_non_zero_with_counts(tmp_path, corpus):
    stub = StubServer(reject_share=0.5)
    try:
        ok = build_qa(tmp_path, corpus, stub)  # default: fails only when every request fails
        strict = build_qa(tmp_path, corpus, stub, "--max-failed-share", "0.1", out="qa2", work="work2")
        bad = build_qa(tmp_path, corpus, stub, "--max-failed-share", "2", out="qa3", work="work3")
    finally:
        stub.close()
    assert ok.returncode == 0, ok.stderr[-2000:]
    rejected = query(tmp_path / "work", "SELECT count(*) FROM generation_requests WHERE status = 'rejected'")[0][0]
    assert rejected > 0 and f"{rejected} rejected" in " ".join(ok.stderr.split())
    assert strict.returncode == 1, strict.stderr[-2000:]
    line = " ".join(strict.stderr.split())
    finished = query(tmp_path / "work2", "SELECT count(*) FROM generation_requests")[0][0]
    assert f"{rejected} of {finished} requests failed" in line and f"{rejected} rejected" in line, line
    assert (tmp_path / "qa2" / "data").is_dir(), "what succeeded is still written"
    assert bad.returncode == 1 and "max_failed_share" in bad.stderr and not (tmp_path / "work3").exists()


@pytest.mark.parametrize(("args", "named"), [(["--limit", "-1"], "--limit"), (["--dialect", "bogus"], "--dialect"),
                                             (["--out", "."], "--out .")])
def test_bad_options_fail_before_any_work(tmp_path, corpus, args, named):
    stub = StubServer()
    try:
        res = build_qa(tmp_path, corpus, stub, *args)
    finally:
        stub.close()
    assert res.returncode == 1 and named in res.stderr and len(res.stderr.strip().splitlines()) == 1, res.stderr
    assert stub.received == [] and not (tmp_path / "work").exists()


@pytest.mark.parametrize(("out", "work", "named"), [("corpus/data", "work", "--out corpus/data"),
                                                     (".", "work", "--out ."), ("qa", "corpus", "--workdir corpus"),
                                                     ("qa", "corpus/work", "--workdir corpus/work")])
def test_out_or_workdir_inside_the_corpus_is_refused(tmp_path, corpus, out, work, named):
    """QA files or the catalog written into the corpus folder would be read or published with it."""
    before = sorted(p.relative_to(corpus).as_posix() for p in corpus.rglob("*"))
    stub = StubServer()
    try:
        res = build_qa(tmp_path, corpus, stub, out=out, work=work)
    finally:
        stub.close()
    assert res.returncode == 1 and named in res.stderr and len(res.stderr.strip().splitlines()) == 1, res.stderr
    assert stub.received == [] and sorted(p.relative_to(corpus).as_posix() for p in corpus.rglob("*")) == before


# -- kill -9 at every write, then resume --------------------------------------------------------------
QA_KILL_POINTS = ["qa-cache", "qa-items", "qa-out-partial", "qa-swap", "qa-stats"]


@pytest.mark.parametrize("point", QA_KILL_POINTS)
def test_kill_at_each_write_point_then_resume_equals_uninterrupted(tmp_path, corpus, reference, point):
    stub = StubServer()
    try:
        if point == "qa-swap":  # this point moves an earlier output aside: there must be one
            assert build_qa(tmp_path, corpus, stub).returncode == 0
        killed = build_qa(tmp_path, corpus, stub, env={"ASTRODATA_FAULT": point})
        assert killed.returncode == -signal.SIGKILL, (point, killed.stderr[-2000:])
        stored = stored_messages(tmp_path / "work")
        sent_before = len(stub.received)
        resumed = build_qa(tmp_path, corpus, stub)
        assert resumed.returncode == 0, resumed.stderr[-2000:]
    finally:
        stub.close()
    assert state(tmp_path) == reference["state"]
    assert stored, "the kill came after replies were stored"
    asked_again = [b for b in stub.received[sent_before:] if json.dumps(b["messages"], sort_keys=True) in stored]
    assert asked_again == [], "a reply stored before the kill was asked for again"
    assert len(stub.received) - sent_before <= reference["sent"], "the resume asked for more than a whole run"
    assert not [p for p in (tmp_path / "qa").iterdir() if p.name.startswith((".partial", ".old"))]


# -- Ctrl-C ---------------------------------------------------------------------------------------------
def test_sigint_on_endpoint_run_exits_130_and_keeps_every_reply(tmp_path, corpus):
    stub = StubServer(delay_s=0.4)
    try:
        (tmp_path / "r.yaml").write_text(RECIPE)
        proc = subprocess.Popen(
            [sys.executable, "-m", "astrodata.cli", "build-qa", "--corpus", str(corpus), "--out", "qa", "--workdir",
             "work", "--endpoint", stub.url, "--model", "stub", "--recipe", "r.yaml"], cwd=tmp_path, text=True,
            stderr=subprocess.PIPE, start_new_session=True,
            env={**os.environ, "PYTHONPATH": str(ROOT), "OPENAI_API_KEY": "sk-test"})
        deadline = time.monotonic() + 120
        while stub.answered < 5 and time.monotonic() < deadline:
            time.sleep(0.05)
        os.killpg(proc.pid, signal.SIGINT)
        t0 = time.monotonic()
        _, err = proc.communicate(timeout=60)
        took = time.monotonic() - t0
        assert proc.returncode == 130, err[-2000:]
        assert took < 10, f"{took:.1f} s to stop"
        message = [line for line in err.splitlines() if line.startswith("interrupted:")]
        assert message and message[0].endswith("re-run the same command to resume"), err[-2000:]
        stored = stored_messages(tmp_path / "work")
        assert int(message[0].split()[1]) == len(stored) >= 1
        assert query(tmp_path / "work", "SELECT status FROM runs") == [("interrupted",)]
        before = len(stub.received)
        resumed = build_qa(tmp_path, corpus, stub)
        assert resumed.returncode == 0, resumed.stderr[-2000:]
        asked_again = [b for b in stub.received[before:] if json.dumps(b["messages"], sort_keys=True) in stored]
        assert asked_again == [], "a reply stored before Ctrl-C was asked for again"
    finally:
        stub.close()


@pytest.mark.slow
def test_sigint_on_embedded_run_exits_130_within_seconds(tmp_path, corpus, embedded_model):
    """The embedded model generates in a thread; Ctrl-C used to wait for it (minutes on a CPU)."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "astrodata.cli", "build-qa", "--corpus", str(corpus), "--out", "qa", "--workdir",
         "work", "--limit", "1"], cwd=tmp_path, text=True, stderr=subprocess.PIPE, start_new_session=True,
        env={**os.environ, "PYTHONPATH": str(ROOT)})

    def rss_mb() -> float:
        for line in Path(f"/proc/{proc.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
        return 0.0

    deadline = time.monotonic() + 240
    while proc.poll() is None and rss_mb() < 900 and time.monotonic() < deadline:  # fp32 weights loaded
        time.sleep(0.2)
    time.sleep(3)  # generating
    os.killpg(proc.pid, signal.SIGINT)
    t0 = time.monotonic()
    _, err = proc.communicate(timeout=120)
    took = time.monotonic() - t0
    assert proc.returncode == 130, err[-2000:]
    assert took < 10, f"{took:.1f} s to stop"
    message = [line for line in err.splitlines() if line.startswith("interrupted:")]
    stored = query(tmp_path / "work", "SELECT count(*) FROM generation_requests WHERE status <> 'pending'")[0][0]
    assert message and int(message[0].split()[1]) == stored, err[-2000:]
    assert query(tmp_path / "work", "SELECT status FROM runs") == [("interrupted",)]
