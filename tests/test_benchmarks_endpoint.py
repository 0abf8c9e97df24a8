"""The endpoint backend against a real `transformers serve` on 127.0.0.1 (started and stopped here).

transformers serve 5.x accepts `logprobs`/`echo`/`top_logprobs` but ignores them, so the token
methods must notice the missing log-probabilities and fall back to generated text, counting it.
"""

from __future__ import annotations

import importlib.util
import json
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
from conftest import FIXTURES

from benchmarks.astromlab1 import evaluate

KEYED = FIXTURES / "mcq" / "astro_keyed.jsonl"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def served(embedded_model, tmp_path_factory):
    exe = shutil.which("transformers", path=str(Path(sys.executable).parent)) or shutil.which("transformers")
    if exe is None or importlib.util.find_spec("fastapi") is None or importlib.util.find_spec("uvicorn") is None:
        pytest.skip("transformers serve needs the serving extra: pip install 'transformers[serving]'")
    port = _free_port()
    log = (tmp_path_factory.mktemp("serve") / "serve.log").open("w")
    proc = subprocess.Popen([exe, "serve", str(embedded_model), "--host", "127.0.0.1", "--port", str(port),
                             "--device", "cpu"], stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 240
        while time.monotonic() < deadline:
            assert proc.poll() is None, f"transformers serve exited early; see {log.name}"
            try:
                if httpx.get(f"{url}/v1/models", timeout=5).status_code == 200:
                    break
            except httpx.HTTPError:
                time.sleep(1)
        else:
            pytest.fail(f"transformers serve not ready after 240 s; see {log.name}")
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
        log.close()


def test_endpoint_token_method_falls_back_and_generate_runs(served, embedded_model, tmp_path, monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test-never-written-anywhere")
    r = evaluate(KEYED, str(embedded_model), "base-token", tmp_path / "base", endpoint=served, limit=2,
                 batch_size=2)
    assert r["backend"] == "endpoint" and r["endpoint"] == f"{served}/v1"
    assert r["fallbacks"] == 2 and r["n_questions"] == 2  # no logprobs from this server: text decides
    preds = [json.loads(line) for line in (tmp_path / "base" / "predictions.jsonl").read_text().splitlines()]
    assert all(p["raw"] is not None and p["logprobs"] is None for p in preds)

    r = evaluate(KEYED, str(embedded_model), "generate", tmp_path / "gen", endpoint=served, limit=2,
                 batch_size=2, max_new_tokens=12)
    preds = [json.loads(line) for line in (tmp_path / "gen" / "predictions.jsonl").read_text().splitlines()]
    assert all(p["raw"] for p in preds)
    assert r["unanswered"] == sum(p["prediction"] is None for p in preds)
    for folder in ("base", "gen"):
        for name in ("results.json", "predictions.jsonl"):
            assert "sk-test" not in (tmp_path / folder / name).read_text()
