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


def split_batch(paths: list[Path], parts: int) -> list[Path]:
    """Re-split written request files into `parts` files of near-equal size, `NAME-01-of-N.jsonl`,
    one per node for `vllm run-batch -i FILE -o RESULT` (each node's results are ingested back
    together: `--batch-ingest` repeated, or a folder). Lines keep their order; returns the files."""
    if parts < 1:
        raise ValueError("--batch-split must be >= 1")
    lines = [line for p in paths for line in p.read_text(encoding="utf-8").splitlines(keepends=True)]
    base = paths[0].with_name(paths[0].name.split("-00001")[0]) if len(paths) > 1 else paths[0]
    stem, suffix = base.stem, base.suffix or ".jsonl"
    size = -(-len(lines) // parts) if lines else 0
    targets = [base.with_name(f"{stem}-{i + 1:02d}-of-{parts:02d}{suffix}") for i in range(parts)]
    for i, target in enumerate(targets):
        tmp = target.with_name(f".{target.name}.tmp")
        tmp.write_text("".join(lines[i * size:(i + 1) * size]), encoding="utf-8")
        os.replace(tmp, target)
    for p in paths:
        if p not in targets:
            p.unlink()
    return targets


def result_files(paths: str | os.PathLike | list[str | os.PathLike]) -> list[Path]:
    """Result files to ingest: the given files, and the `*.jsonl` files of given folders."""
    items = [paths] if isinstance(paths, str | os.PathLike) else list(paths)
    out: list[Path] = []
    for item in map(Path, items):
        out += sorted(item.glob("*.jsonl")) if item.is_dir() else [item]
    return out


def _content(body: dict[str, Any]) -> tuple[str, int, int]:
    choice = body["choices"][0]
    text = choice["message"].get("content") or ""
    usage = body.get("usage") or {}
    return text, int(usage.get("prompt_tokens") or 0), int(usage.get("completion_tokens") or 0)


def ingest_batch(con: duckdb.DuckDBPyConnection, paths: str | os.PathLike | list[str | os.PathLike],
                 prices: dict[str, Price], discount: float, run_id: str | None = None) -> dict[str, int]:
    """Store Batch API result files' replies (a file, files, or folders of `*.jsonl`: one per node
    of a split batch) in the request cache; validation happens when the build uses them. Raises
    ValueError naming the line for a malformed line; results for requests this workspace never
    wrote are counted as `unknown` and skipped."""
    con.execute(SCHEMA)
    counts = {"replied": 0, "failed": 0, "already": 0, "unknown": 0}
    for path in result_files(paths):
        _ingest_file(con, path, prices, discount, run_id, counts)
    return counts


def _ingest_file(con: duckdb.DuckDBPyConnection, path: Path, prices: dict[str, Price], discount: float,
                 run_id: str | None, counts: dict[str, int]) -> None:
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
