"""Dataset cards rendered from the real build artifacts (the shards and `stats.json`).

The figures in a card are read back from the output folder, never passed in by hand, so a card
cannot disagree with the data it describes.
"""

from __future__ import annotations

import json
from collections import Counter
from datetime import UTC, datetime
from importlib.metadata import version
from pathlib import Path
from typing import Any

import duckdb
import jinja2
import pyarrow.dataset as pads

TEMPLATES = Path(__file__).parent / "templates"


def _environment() -> jinja2.Environment:
    return jinja2.Environment(loader=jinja2.FileSystemLoader(TEMPLATES), undefined=jinja2.StrictUndefined,
                              keep_trailing_newline=True)


def _size_category(n: int) -> str:
    for limit, label in ((1_000, "n<1K"), (10_000, "1K<n<10K"), (100_000, "10K<n<100K"),
                         (1_000_000, "100K<n<1M"), (10_000_000, "1M<n<10M")):
        if n < limit:
            return label
    return "n>10M"


def _stats(out: Path) -> dict:
    path = out / "stats.json"
    return json.loads(path.read_text()) if path.exists() else {}


def _render(out: Path, template: str, **fields: object) -> Path:
    path = out / "README.md"
    path.write_text(_environment().get_template(template).render(
        version=version("astrodata"), built_at=datetime.now(UTC).strftime("%Y-%m-%d"), **fields))
    return path


def write_corpus_card(out_dir: str | Path, title: str = "astrodata astronomy corpus") -> Path:
    """Write `OUT/README.md` for a corpus dataset from its shards and stats.json."""
    out = Path(out_dir)
    table = pads.dataset(out / "data", format="parquet").to_table(columns=["source", "n_tokens", "license"])
    docs = Counter(table.column("source").to_pylist())
    tokens: dict[str, int | None] = {}
    for src, n in zip(table.column("source").to_pylist(), table.column("n_tokens").to_pylist(), strict=True):
        tokens[src] = None if n is None or tokens.get(src, 0) is None else tokens.get(src, 0) + n
    total_tokens = None if any(v is None for v in tokens.values()) else sum(tokens.values())
    return _render(
        out, "corpus.md.j2",
        title=title,
        size_category=_size_category(table.num_rows),
        sources=[{"name": s, "documents": docs[s], "tokens": tokens[s]} for s in sorted(docs)],
        total_documents=table.num_rows,
        total_tokens=total_tokens,
        licenses=Counter(table.column("license").to_pylist()).most_common(),
        stats=_stats(out),
    )


def write_qa_card(out_dir: str | Path, title: str = "astrodata astronomy QA and SFT mix") -> Path:
    """Write `OUT/README.md` for a build-qa dataset from its shards and stats.json.

    The counts are DuckDB aggregates over the shards, so millions of rows are never loaded whole.
    Model names come from the rows; endpoint URLs and keys are never read, so none can reach the card."""
    out = Path(out_dir)
    with duckdb.connect() as con:
        con.read_parquet(str(out / "data" / "*.parquet")).create_view("qa")

        def counts(column: str) -> list[tuple[Any, int]]:
            return con.execute(f"SELECT {column}, count(*) AS n FROM qa WHERE {column} IS NOT NULL "
                               f"GROUP BY ALL ORDER BY n DESC, {column}").fetchall()

        total, papers = con.execute(
            "SELECT count(*), count(DISTINCT source_id) FILTER (WHERE kind <> 'instruct') FROM qa").fetchone()
        kinds, grades = sorted(counts("kind")), sorted(counts("grade"))
        generators, judges, prompts = counts("generator"), counts("judge"), counts("prompt_version")
    return _render(
        out, "qa.md.j2",
        title=title,
        size_category=_size_category(total),
        kinds=kinds,
        total=total,
        papers=papers,
        grades=grades,
        ungraded=total - sum(n for _, n in grades),
        generators=generators,
        judges=judges,
        prompts=prompts,
        stats=_stats(out),
    )
