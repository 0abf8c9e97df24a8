"""OpenAI Batch API files: write the requests a build still needs, ingest the results.

The request file is the format both the OpenAI Batch API and `vllm run-batch` take: one JSON line
per request, `{"custom_id", "method": "POST", "url": "/v1/chat/completions", "body"}`, where
`custom_id` is the engine's cache key. Ingesting a result file (`{"custom_id", "response":
{"status_code", "body"}, "error"}` per line) stores each reply in the request cache; the next
build validates it exactly like an online reply, and a build that needs another round (grading
after generation, repair turns) writes the next file. So millions of pairs can run on a GPU
cluster or at the Batch API's discount with the same code path as online generation.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import duckdb

from astrodata.core.files import atomic_open
from astrodata.core.workspace import utc_now
from astrodata.qa.engine import REPLIED, SCHEMA
from astrodata.qa.recipe import Price

MAX_LINES = 50_000  # the OpenAI Batch API's limit per file


def write_batch(path: str | os.PathLike, pending: dict[str, dict[str, Any]]) -> list[Path]:
    """Write the pending requests (key -> body) as Batch API JSONL, split every 50,000 lines into
    `NAME-00001.jsonl`, ... when larger. Each file is written to a temporary name and renamed."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    items = sorted(pending.items())
    chunks = [items[i:i + MAX_LINES] for i in range(0, len(items), MAX_LINES)] or [[]]
    paths = [path] if len(chunks) == 1 else \
        [path.with_name(f"{path.stem}-{i + 1:05d}{path.suffix}") for i in range(len(chunks))]
    for target, chunk in zip(paths, chunks, strict=True):
        with atomic_open(target) as f:
            for key, body in chunk:
                f.write(json.dumps({"custom_id": key, "method": "POST", "url": "/v1/chat/completions",
                                    "body": body}, ensure_ascii=False) + "\n")
    return paths


def _content(body: dict[str, Any]) -> tuple[str, int, int]:
    choice = body["choices"][0]
    text = choice["message"].get("content") or ""
    usage = body.get("usage") or {}
    return text, int(usage.get("prompt_tokens") or 0), int(usage.get("completion_tokens") or 0)


def ingest_batch(con: duckdb.DuckDBPyConnection, path: str | os.PathLike, prices: dict[str, Price],
                 discount: float, run_id: str | None = None) -> dict[str, int]:
    """Store a Batch API result file's replies in the request cache (validation happens when the
    build uses them). Raises ValueError naming the line for a malformed line; results for
    requests this workspace never wrote are counted as `unknown` and skipped."""
    con.execute(SCHEMA)
    counts = {"replied": 0, "failed": 0, "already": 0, "unknown": 0}
    path = Path(path)
    with path.open(encoding="utf-8") as f:
        for line_no, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                rec = json.loads(line)
                key = rec["custom_id"]
            except (json.JSONDecodeError, KeyError, TypeError):
                raise ValueError(f"{path}: line {line_no}: not a Batch API result (JSON with custom_id)") from None
            row = con.execute("SELECT status, model FROM generation_requests WHERE key = ?", [key]).fetchall()
            if not row:
                counts["unknown"] += 1
                continue
            if row[0][0] in REPLIED:
                counts["already"] += 1
                continue
            response = rec.get("response") or {}
            status = response.get("status_code")
            try:
                if status != 200 or rec.get("error"):
                    raise LookupError
                text, tokens_in, tokens_out = _content(response["body"])
            except (LookupError, TypeError, ValueError, AttributeError):
                err = rec.get("error") or (response.get("body") or {}).get("error") or "no reply"
                con.execute("UPDATE generation_requests SET status = 'failed', error = ?, via = 'batch', "
                            "run_id = ?, updated_at = ? WHERE key = ?",
                            [f"batch: HTTP {status}: {json.dumps(err)[:300]}", run_id, utc_now(), key])
                counts["failed"] += 1
                continue
            price = prices.get(row[0][1])
            cost = 0.0 if price is None else discount * (tokens_in * price.input + tokens_out * price.output) / 1e6
            con.execute(
                "UPDATE generation_requests SET status = 'replied', response = ?, error = NULL, via = 'batch', "
                "attempts = attempts + 1, tokens_in = ?, tokens_out = ?, cost_usd = ?, run_id = ?, updated_at = ? "
                "WHERE key = ?", [text, tokens_in, tokens_out, cost, run_id, utc_now(), key])
            counts["replied"] += 1
    return counts
