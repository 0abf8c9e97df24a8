"""build-qa across several real `transformers serve` processes on 127.0.0.1, one killed mid-run:
the same items as one server, and no reply paid twice (counted in the servers' own access logs).
Plus the batch file split for `vllm run-batch` on N nodes, ingested back."""

from __future__ import annotations

import json
import os
import signal
import threading
import time
from pathlib import Path

import pytest
from conftest import start_serve, stop
from qa_support import write_corpus

from astrodata.core.shards import read_rows
from astrodata.core.workspace import Workspace
from astrodata.qa.batch import ingest_batch, split_batch, write_batch
from astrodata.qa.build import build_qa
from astrodata.qa.engine import REPLIED

RECIPE = """
passages: {size_chars: 400, overlap_chars: 30, min_chars: 80, max_per_doc: 1}
qa: {pairs_per_passage: 1, max_question_chars: 300, max_answer_chars: 600, max_tokens: 96, abstract_chars: 100}
summary: {enabled: false}
judge: {enabled: false}
metadata: {enabled: false}
engine: {concurrency: 1, invalid_retries: 0, timeout_s: 600, backoff_base_s: 0.1, backoff_max_s: 1.0,
         max_attempts: 10}
"""
TEXTS = [
    "Cepheid variables pulsate with periods tied to their luminosity, which lets astronomers measure distances "
    "to nearby galaxies. Henrietta Leavitt found the relation in the Small Magellanic Cloud in 1908. ",
    "Hot Jupiters are gas giants orbiting within a tenth of an astronomical unit of their stars. Their transits "
    "reveal radii, and radial velocities reveal masses, so their densities can be compared with models. ",
    "The cosmic microwave background is the cooled radiation of the early Universe, now at 2.7 kelvin. Its "
    "anisotropies measured by Planck constrain the baryon density and the Hubble constant. ",
]
CHAT_200 = '"POST /v1/chat/completions HTTP/1.1" 200'
RECEIVED = "[Request received]"


def count(log: Path, line: str) -> int:
    """Lines of a server's log holding `line` (uvicorn's access lines: replies delivered)."""
    return log.read_text(errors="replace").count(line) if log.exists() else 0


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    root = tmp_path_factory.mktemp("pool")
    rows = [{"id": f"arxiv:2401.0000{i}v1", "source_id": f"2401.0000{i}v1", "title": t.split(".")[0],
             "text": t} for i, t in enumerate(TEXTS)]
    (root / "recipe.yaml").write_text(RECIPE)
    return root, write_corpus(root / "corpus", rows)


def build(root: Path, corpus: Path, name: str, endpoint, model: str) -> tuple[dict, list[dict]]:
    stats = build_qa(corpus, root / name / "out", root / name / "work", endpoint=endpoint, model=model,
                     dialect="none", recipe=root / "recipe.yaml", progress=False)
    return stats, list(read_rows(root / name / "out"))


def replied_keys(work: Path) -> int:
    with Workspace(work) as ws:
        return ws.con.execute(f"SELECT count(*) FROM generation_requests WHERE status IN {REPLIED}").fetchall()[0][0]


def replies(work: Path) -> list[tuple]:
    """Every cached request with its outcome and reply text, by key (greedy decoding: the same
    request gets the same reply from either server)."""
    with Workspace(work) as ws:
        return ws.con.execute("SELECT key, status, response FROM generation_requests ORDER BY key").fetchall()


@pytest.mark.slow
def test_two_servers_one_killed_mid_run_same_items_nothing_paid_twice(corpus, embedded_model, tmp_path):
    root, data = corpus
    model = str(embedded_model)
    logs = [tmp_path / "a.log", tmp_path / "b.log"]
    a, url_a = start_serve(embedded_model, logs[0])
    try:
        b, url_b = start_serve(embedded_model, logs[1])
        try:
            # One server: the reference items, and how many replies that build needed.
            one_stats, one_rows = build(root, data, "one", url_a, model)
            one_paid = count(logs[0], CHAT_200)
            engine = one_stats["engine"]
            # the endpoint's one-token probe (`check`) is a delivered request too, outside the cache
            one_probes = one_stats["probe_requests"]
            assert one_probes >= 1
            assert one_paid == engine["requests_sent"] - sum(engine["transient_errors"].values()) + one_probes
            # SmolLM2 behind a server that ignores response_format may reply without JSON (no item
            # kept); the replies themselves are what both builds must agree on
            assert one_paid - one_probes == replied_keys(root / "one" / "work") == 3

            # Two servers; B is killed (SIGKILL, by PID) while it generates its first reply (the
            # request after its probe).
            def kill_b_mid_request() -> None:
                deadline = time.monotonic() + 900
                while count(logs[1], RECEIVED) < 2 and time.monotonic() < deadline and b.poll() is None:
                    time.sleep(0.05)
                os.kill(b.pid, signal.SIGKILL)

            killer = threading.Thread(target=kill_b_mid_request, daemon=True)
            killer.start()
            stats, rows = build(root, data, "pool", [url_a, url_b], model)
            killer.join(timeout=5)
            assert b.poll() == -signal.SIGKILL
        finally:
            stop(b)
        pool, a_v1, b_v1 = stats["pool"], f"{url_a}/v1", f"{url_b}/v1"
        assert pool["probes"] == {a_v1: 1, b_v1: 1} and stats["probe_requests"] == 2
        served_a = count(logs[0], CHAT_200) - one_paid - pool["probes"][a_v1]
        # B answered its probe, then its first real request died with it
        assert count(logs[1], RECEIVED) == 2 and count(logs[1], CHAT_200) == pool["probes"][b_v1]
        assert pool["served"] == {a_v1: served_a, b_v1: 0}
        assert pool["failovers"] >= 1 and set(pool["marked_down"]) == {b_v1}
        # Same items as the one-server build; every delivered reply is a distinct request, and
        # exactly as many as one server needed: none paid twice.
        assert rows == one_rows and replies(root / "pool" / "work") == replies(root / "one" / "work")
        assert served_a == replied_keys(root / "pool" / "work") == one_paid - one_probes
    finally:
        stop(a)


def test_batch_split_for_n_nodes_and_ingest_back(tmp_path, workspace):
    pending = {f"{i:064x}": {"model": "m", "messages": [{"role": "user", "content": f"q{i}"}]} for i in range(7)}
    files = write_batch(tmp_path / "req.jsonl", pending)
    parts = split_batch(files, 3)
    assert [p.name for p in parts] == ["req-01-of-03.jsonl", "req-02-of-03.jsonl", "req-03-of-03.jsonl"]
    assert not (tmp_path / "req.jsonl").exists()
    lines = [json.loads(line) for p in parts for line in p.read_text().splitlines()]
    assert [len(p.read_text().splitlines()) for p in parts] == [3, 3, 1]
    assert sorted(rec["custom_id"] for rec in lines) == sorted(pending)
    assert all(rec["url"] == "/v1/chat/completions" and rec["method"] == "POST" for rec in lines)

    # Each node's `vllm run-batch` writes its results; a folder of them is ingested in one go.
    from astrodata.qa.engine import SCHEMA

    workspace.con.execute(SCHEMA)
    for key in pending:
        workspace.con.execute("INSERT INTO generation_requests (key, model, status) VALUES (?, 'm', 'pending')", [key])
    results = tmp_path / "results"
    results.mkdir()
    for i, p in enumerate(parts):
        with (results / f"node{i}.jsonl").open("w") as f:
            for line in p.read_text().splitlines():
                rec = json.loads(line)
                f.write(json.dumps({"custom_id": rec["custom_id"], "error": None, "response": {"status_code": 200, "body": {
                    "choices": [{"message": {"content": "reply " + rec["body"]["messages"][0]["content"]}}],
                    "usage": {"prompt_tokens": 3, "completion_tokens": 2}}}}) + "\n")
    counts = ingest_batch(workspace.con, [results], {}, 0.5)
    assert counts == {"replied": 7, "failed": 0, "already": 0, "unknown": 0}
    got = dict(workspace.con.execute("SELECT key, response FROM generation_requests").fetchall())
    assert got == {k: f"reply {v['messages'][0]['content']}" for k, v in pending.items()}
