"""build-qa against a real `transformers serve` on 127.0.0.1 (the session fixture `served_model`).

The server ignores `response_format`, so the client runs dialect `none`: prompt, validate, repair.
A fault proxy (tests/qa_support.py) sits in front: the first run forwards every request and records
the real replies; later runs (faults, kill -9 and resume, batch files) are answered from those
recordings, so they cost no generation and must reproduce the first run's items exactly.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
from conftest import ROOT, free_port
from qa_support import FaultProxy, body_key, real_corpus

from astrodata.core.shards import read_rows
from astrodata.core.workspace import Workspace
from astrodata.qa.backends import EndpointBackend
from astrodata.qa.build import build_qa, probe_dialect
from astrodata.qa.engine import REPLIED, Engine, validate_reply
from astrodata.qa.recipe import load_qa_recipe
from astrodata.qa.tasks import Grade, load_prompt, qa_schema

pytestmark = pytest.mark.slow

SECRET = "sk-test-qa-SECRET-0123456789"
# Answers are capped at 40 characters, shorter than what this model writes for most passages, so
# the run meets invalid replies (repair turns, recorded failures) as well as valid ones.
RECIPE = """
passages: {size_chars: 300, overlap_chars: 30, min_chars: 80, max_per_doc: 2}
qa: {pairs_per_passage: 1, max_question_chars: 200, max_answer_chars: 40, max_tokens: 64, abstract_chars: 200}
summary: {enabled: false}
judge: {max_tokens: 40, threshold: 1, passage_chars: 300}
engine: {concurrency: 2, timeout_s: 900, backoff_base_s: 0.05, backoff_max_s: 0.5, max_attempts: 10}
"""


@pytest.fixture(scope="module")
def setup(tmp_path_factory, embedded_model):
    root = tmp_path_factory.mktemp("qa-serve")
    recipe = root / "recipe.yaml"
    recipe.write_text(RECIPE)
    return {"root": root, "recipe": recipe, "corpus": real_corpus(root, ["v1298tau-tess.tar.gz"]),
            "model": str(embedded_model), "recordings": {}}


def run_build(setup: dict, url: str, name: str, **kwargs) -> tuple[dict, list[dict]]:
    root = setup["root"]
    stats = build_qa(setup["corpus"], root / name / "out", root / name / "work", endpoint=url, model=setup["model"],
                     dialect="none", recipe=setup["recipe"], progress=False, **kwargs)
    return stats, list(read_rows(root / name / "out")) if "output" in stats else []


def cli(setup: dict, url: str, name: str, key: str, *extra: str) -> subprocess.Popen:
    root = setup["root"]
    args = [sys.executable, "-m", "astrodata.cli", "build-qa", "--corpus", str(setup["corpus"]),
            "--out", str(root / name / "out"), "--workdir", str(root / name / "work"), "--endpoint", url,
            "--model", setup["model"], "--dialect", "none", "--recipe", str(setup["recipe"]), *extra]
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OPENAI_API_KEY": key}
    return subprocess.Popen(args, cwd=root, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def cached(work: Path) -> dict[str, dict]:
    """body key -> request body, for every request whose reply the catalog holds."""
    with Workspace(work) as ws:
        rows = ws.con.execute("SELECT request, status FROM generation_requests").fetchall()
    return {body_key(json.loads(r)): json.loads(r) for r, status in rows if status in REPLIED}


def assert_no_secret(*folders: Path) -> None:
    for folder in folders:
        for f in folder.rglob("*"):
            if f.is_file():
                assert SECRET.encode() not in f.read_bytes(), f"API key written to {f}"


@pytest.fixture(scope="module")
def baseline(served_model, setup):
    """The fault-free run through a counting proxy that records the server's replies."""
    proxy = FaultProxy(served_model, recordings=setup["recordings"])
    old = os.environ.get("OPENAI_API_KEY")
    os.environ["OPENAI_API_KEY"] = SECRET
    try:
        stats, rows = run_build(setup, proxy.url, "baseline")
    finally:
        os.environ.pop("OPENAI_API_KEY") if old is None else os.environ.__setitem__("OPENAI_API_KEY", old)
        proxy.close()
    return {"stats": stats, "rows": rows, "proxy": proxy}


def test_only_valid_items_stored_and_failures_counted(baseline, setup):
    stats, rows, proxy = baseline["stats"], baseline["rows"], baseline["proxy"]
    e = stats["engine"]
    assert stats["dialect"] == "none" and stats["passages"] == 2
    assert e["requests_sent"] == proxy.forwarded == sum(proxy.arrivals.values()) >= 2 and not proxy.repeats
    assert e["replies_ok"] + e["replies_invalid"] == e["requests_sent"] and e["replies_invalid"] >= 1
    # every stored QA item is a pair from a reply that validates against the schema
    work = setup["root"] / "baseline" / "work"
    with Workspace(work) as ws:
        replies = ws.con.execute("SELECT task, label, status, response FROM generation_requests").fetchall()
        errors = ws.con.execute("SELECT stage, reason FROM errors").fetchall()
        statuses = dict(ws.con.execute("SELECT status, count(*) FROM generation_requests GROUP BY status").fetchall())
        items = ws.con.execute("SELECT messages, status FROM qa_items WHERE kind = 'qa'").fetchall()
    schema = qa_schema(1, 200, 40)
    valid_pairs = sorted((p.question, p.answer) for task, _, status, text in replies if task == "qa" and status == "ok"
                         for p in validate_reply(text, schema)[0].pairs)
    assert all(validate_reply(text, Grade if task == "grade" else schema)[0] is None
               for task, _, status, text in replies if status == "invalid")
    # every valid pair became an item; the stored ones are those the judge, dedup and mix kept
    assert sorted((json.loads(m)[0]["content"], json.loads(m)[1]["content"]) for m, _ in items) == valid_pairs
    stored = [(r["messages"][0]["content"], r["messages"][1]["content"]) for r in rows if r["kind"] == "qa"]
    assert len(stored) == sum(status == "kept" for _, status in items) and set(stored) <= set(valid_pairs)
    assert statuses.get("invalid", 0) == e["replies_invalid"] and statuses.get("ok", 0) == e["replies_ok"]
    failed_passages = stats.get("qa_invalid", 0) + stats.get("qa_failed", 0)
    assert stats["passages"] == stats.get("qa_ok", 0) + failed_passages
    assert sum(1 for stage, _ in errors if stage == "qa-qa") == failed_passages
    for r in rows:
        assert r["generator"] == setup["model"] and r["prompt_version"] == load_prompt("qa").version and r["source_id"] == "v1298tau-tess"
        assert r["passage_id"].startswith("arxiv:v1298tau-tess#p") and r["char_end"] > r["char_start"] >= 0
        assert r["grade"] is None or r["scores"]["overall"] == r["grade"]
    # the key reached the server in the Authorization header and nowhere else
    assert f"Bearer {SECRET}" in proxy.auth_seen
    assert_no_secret(setup["root"] / "baseline")


def test_faults_leave_the_same_items(served_model, baseline, setup):
    proxy = FaultProxy(served_model, fault_rate=0.3, seed=11, hang_s=3.0, recordings=setup["recordings"],
                       force=("429", "timeout", "500", "truncated"))
    try:
        stats, rows = run_build(setup, proxy.url, "faults", overrides={"engine": {"timeout_s": 1.5}})
    finally:
        proxy.close()
    assert rows == baseline["rows"]
    assert proxy.forwarded == 0  # every chat request was one the fault-free run made
    assert set(proxy.faults) == {"429", "500", "timeout", "truncated"}, proxy.faults
    assert not proxy.repeats, "a request was sent again after a successful reply"
    assert all(n == 1 for n in proxy.delivered.values())
    assert stats["engine"]["retries"] == sum(proxy.faults.values())
    print("faults injected:", dict(proxy.faults), "arrivals:", sum(proxy.arrivals.values()))


def test_sigkill_and_resume(served_model, baseline, setup):
    work = setup["root"] / "killed" / "work"
    slow = FaultProxy(served_model, recordings=setup["recordings"], delay_s=1.5)
    try:
        proc = cli(setup, slow.url, "killed", SECRET)
        deadline = time.monotonic() + 300
        while sum(slow.delivered.values()) < 2 and time.monotonic() < deadline and proc.poll() is None:
            time.sleep(0.05)
        time.sleep(0.3)  # let the client store the replies it has
        assert proc.poll() is None, f"the run ended before the kill: {proc.communicate()}"
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    finally:
        slow.close()
    assert not (setup["root"] / "killed" / "out" / "data").exists()  # nothing half-written
    before = cached(work)
    assert 2 <= len(before) < len(baseline["proxy"].arrivals)
    resume = FaultProxy(served_model, recordings=setup["recordings"])
    try:
        proc = cli(setup, resume.url, "killed", SECRET)
        _, err = proc.communicate(timeout=600)
    finally:
        resume.close()
    assert proc.returncode == 0, err
    assert not set(resume.arrivals) & set(before), "a request answered before the kill was sent again"
    assert not resume.repeats
    rows = list(read_rows(setup["root"] / "killed" / "out"))
    assert rows == baseline["rows"] and len({r["id"] for r in rows}) == len(rows)
    assert SECRET not in err
    assert_no_secret(setup["root"] / "killed")


def test_batch_files_in_rounds(served_model, baseline, setup):
    """Write the Batch API file, run it against the server as `vllm run-batch` would, ingest, repeat
    until every reply is in: the items equal the online run's."""
    proxy = FaultProxy(served_model, recordings=setup["recordings"])
    root, results, rounds = setup["root"] / "batch", None, 0
    try:
        while True:
            rounds += 1
            requests = root / f"requests-{rounds}.jsonl"
            stats, rows = run_build(setup, proxy.url, "batch", batch_write=requests, batch_ingest=results)
            if "output" in stats:
                break
            results = root / f"results-{rounds}.jsonl"
            with results.open("w") as f:
                for line in requests.read_text().splitlines():
                    req = json.loads(line)
                    r = httpx.post(proxy.url + req["url"], json=req["body"], timeout=60)
                    f.write(json.dumps({"id": f"batch-{rounds}", "custom_id": req["custom_id"], "error": None,
                                        "response": {"status_code": r.status_code, "body": r.json()}}) + "\n")
            assert rounds < 6
    finally:
        proxy.close()
    assert rounds >= 2 and rows == baseline["rows"] and proxy.forwarded == 0


def test_probe_finds_that_transformers_serve_ignores_response_format(served_model, setup, workspace):
    recipe = load_qa_recipe()
    engine = Engine(workspace.con, recipe.engine, recipe.prices)
    backend = EndpointBackend(served_model, setup["model"])
    assert asyncio.run(probe_dialect(engine, backend)) == "none"
    assert engine.stats.requests_sent == 2 and engine.stats.replies_invalid == 2
    engine2 = Engine(workspace.con, recipe.engine, recipe.prices)
    assert asyncio.run(probe_dialect(engine2, EndpointBackend(served_model, setup["model"]))) == "none"
    assert engine2.stats.requests_sent == 0  # probes are cached like any request
    engine.close()
    engine2.close()


def test_wrong_key_and_unknown_endpoint_fail_in_one_line(served_model, setup):
    guard = FaultProxy(served_model, require_key="sk-the-right-one")
    try:
        proc = cli(setup, guard.url, "wrongkey", SECRET)
        out, err = proc.communicate(timeout=300)
    finally:
        guard.close()
    assert proc.returncode == 1
    lines = [x for x in err.splitlines() if x.strip()]
    assert len(lines) == 1 and "rejected the API key" in lines[0] and "401" in lines[0], err
    assert SECRET not in err + out and not (setup["root"] / "wrongkey" / "out" / "data").exists()
    assert_no_secret(setup["root"] / "wrongkey")
    proc = cli(setup, f"http://127.0.0.1:{free_port()}", "unreachable", SECRET)
    out, err = proc.communicate(timeout=300)
    lines = [x for x in err.splitlines() if x.strip()]
    assert proc.returncode == 1 and len(lines) == 1 and "cannot reach endpoint" in lines[0], err
    assert not (setup["root"] / "unreachable" / "out" / "data").exists()
