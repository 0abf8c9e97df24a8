"""The endpoint backend against a real `transformers serve` on 127.0.0.1 (the session fixture `served_model`).

transformers serve 5.x accepts `logprobs`/`echo`/`top_logprobs` but ignores them, so the token
methods must notice the missing log-probabilities and fall back to generated text, counting it.
"""

from __future__ import annotations

import json

from conftest import FIXTURES

from benchmarks.astromlab1 import evaluate

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
