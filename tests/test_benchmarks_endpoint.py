"""The endpoint backend against a real `transformers serve` on 127.0.0.1 (the session fixture `served_model`).

transformers serve 5.x accepts `logprobs`/`echo`/`top_logprobs` but ignores them, so the token
methods must notice the missing log-probabilities and fall back to generated text, counting it.
"""

from __future__ import annotations

import json
import math
import threading
from http.server import BaseHTTPRequestHandler, HTTPServer

from conftest import FIXTURES

from benchmarks.astromlab1 import evaluate
from benchmarks.backends import EndpointBackend

KEYED = FIXTURES / "mcq" / "astro_keyed.jsonl"


def test_endpoint_token_method_falls_back_and_generate_runs(served_model, embedded_model, tmp_path, monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test-never-written-anywhere")
    r = evaluate(KEYED, str(embedded_model), "base-token", tmp_path / "base", endpoint=served_model, limit=2,
                 batch_size=2)
    assert r["backend"] == "endpoint" and r["endpoint"] == f"{served_model}/v1"
    assert r["fallbacks"] == 2 and r["n_questions"] == 2  # no logprobs from this server: text decides
    preds = [json.loads(line) for line in (tmp_path / "base" / "predictions.jsonl").read_text().splitlines()]
    assert all(p["raw"] is not None and p["logprobs"] is None for p in preds)

    r = evaluate(KEYED, str(embedded_model), "generate", tmp_path / "gen", endpoint=served_model, limit=2,
                 batch_size=2, max_new_tokens=12)
    preds = [json.loads(line) for line in (tmp_path / "gen" / "predictions.jsonl").read_text().splitlines()]
    assert all(p["raw"] for p in preds)
    assert r["unanswered"] == sum(p["prediction"] is None for p in preds)
    for folder in ("base", "gen"):
        for name in ("results.json", "predictions.jsonl"):
            assert "sk-test" not in (tmp_path / folder / name).read_text()


class _Replay(BaseHTTPRequestHandler):
    """Answers /v1/completions with llama-cpp-python 0.3.36's recorded replies: an `echo` request
    gets the recorded echo (prompt tokens only, shifted by one), any other the recorded top-20 reply."""

    def do_POST(self) -> None:  # noqa: N802 - the http.server API
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        self.server.bodies.append(body)
        name = "completions-echo.json" if body.get("echo") else "completions-top20.json"
        data = (FIXTURES / "llamacpp" / name).read_bytes()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args: object) -> None:
        pass


def test_misaligned_echo_falls_back_to_next_token_logprobs():
    """Recorded from llama-cpp-python's server (scripts/llamacpp_check.py): its echoed
    log-probabilities lack the generated token, so the first generated token's top-20 decide."""
    server = HTTPServer(("127.0.0.1", 0), _Replay)
    server.bodies = []
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        backend = EndpointBackend(f"http://127.0.0.1:{server.server_port}", "smol", concurrency=1)
        (scores,) = backend.score_letters(["The capital of France is"], [" Paris", " London", " Rome"])
    finally:
        server.shutdown()
    top = json.loads((FIXTURES / "llamacpp" / "completions-top20.json").read_text())
    top = top["choices"][0]["logprobs"]["top_logprobs"][0]
    assert scores == [top[" Paris"], top[" London"], -math.inf] and " Rome" not in top
    assert [b.get("echo", False) for b in server.bodies] == [True, False]  # one echo probe, then one per question
    assert server.bodies[1]["logprobs"] == 20 and server.bodies[1]["prompt"] == "The capital of France is"
