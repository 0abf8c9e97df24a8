"""QA dedup, decontamination and the SFT mix.

- Duplicate questions: exact (same normalised text, `astrodata.core.textnorm`) and near (MinHash-LSH
  over question word n-grams, `astrodata.corpus.dedup`); of each group the best-graded pair is kept
  (then the smallest id, so the choice is stable).
- Decontamination: an item is dropped when its whole text (question and answer together, so an
  n-gram spanning both is found) shares n-grams with a benchmark question (`astrodata.corpus.decontam`).
- Mix: per-kind quotas from proportions; within a kind a seeded hash order picks the rows, so
  the same inputs give the same mix.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Iterator, Sequence
from itertools import islice
from pathlib import Path

import duckdb
import pyarrow as pa
import xxhash

from astrodata.core.textnorm import text_hash
from astrodata.corpus.decontam import Decontaminator
from astrodata.corpus.dedup import MinHashParams, compute_signatures, doc_key, find_near_duplicates

Candidate = tuple[str, str, int | None]  # (item id, text, grade)


def duplicate_items(con: duckdb.DuckDBPyConnection, items: Iterable[Candidate], near_threshold: float | None,
                    ngram: int, signatures: Path, batch_rows: int = 50_000) -> dict[str, str]:
    """Item id -> reason (`exact-duplicate` / `near-duplicate` of <kept id>) for every item that
    loses to a better one with the same or a near-identical question.

    Out of core: the questions are streamed into a DuckDB table (which spills to disk) and ranked
    there, so millions of pairs never sit in Python memory; only the dropped ids come back."""
    con.execute("CREATE OR REPLACE TEMP TABLE qa_questions "
                "(id VARCHAR, key BIGINT, question VARCHAR, grade INTEGER, h VARCHAR)")
    it = iter(items)
    while batch := list(islice(it, batch_rows)):
        ids, texts, grades = zip(*batch, strict=True)
        table = pa.table({"id": ids, "key": [doc_key(i) for i in ids], "question": texts, "grade": grades,
                          "h": [text_hash(t) for t in texts]})
        con.register("qa_batch", table)
        con.execute("INSERT INTO qa_questions SELECT * FROM qa_batch")
        con.unregister("qa_batch")
    # rank: best grade first (no grade counts as 0), then the smallest id, so the choice is stable
    con.execute("""
        CREATE OR REPLACE TEMP TABLE qa_ranked AS
        SELECT id, key, question, h, coalesce(grade, 0) AS g,
               first_value(id) OVER (PARTITION BY h ORDER BY coalesce(grade, 0) DESC, id) AS keep
        FROM qa_questions;
        DROP TABLE qa_questions;
    """)
    dropped = {i: f"exact-duplicate of {k}" for i, k in
               con.execute("SELECT id, keep FROM qa_ranked WHERE id <> keep").fetchall()}
    if near_threshold is not None:
        params = MinHashParams(ngram=ngram, threshold=near_threshold)
        survivors = con.execute("SELECT id, question AS text FROM qa_ranked WHERE id = keep")
        compute_signatures(_stream(survivors), signatures, params)
        near = find_near_duplicates(con, signatures, params)
        con.register("qa_near", pa.table({"key": near.nodes, "root": near.roots}))
        losers = con.execute("""
            WITH members AS (
                SELECT r.id, n.root,
                       first_value(r.id) OVER (PARTITION BY n.root ORDER BY r.g DESC, r.id) AS best
                FROM qa_near n JOIN qa_ranked r ON r.key = n.key AND r.id = r.keep)
            SELECT id, best FROM members WHERE id <> best
        """).fetchall()
        con.unregister("qa_near")
        dropped.update({i: f"near-duplicate of {k}" for i, k in losers})
        signatures.unlink(missing_ok=True)
    con.execute("DROP TABLE qa_ranked")
    return dropped


def _stream(cursor: duckdb.DuckDBPyConnection, size: int = 10_000) -> Iterator[dict[str, str]]:
    while rows := cursor.fetchmany(size):
        yield from ({"id": i, "text": t} for i, t in rows)


def contaminated_items(decontaminator: Decontaminator, items: Iterable[tuple[str, str]],
                       batch_size: int = 256) -> dict[str, str]:
    """Item id -> `benchmark overlap: [names]` for items sharing n-grams with a benchmark (streamed)."""
    out = {}
    it = iter(items)
    while batch := list(islice(it, batch_size)):
        kept = {d["id"] for d in decontaminator.run({"id": i, "text": t} for i, t in batch)}
        out.update({i: f"benchmark overlap: {sorted(decontaminator.matches(t))}" for i, t in batch if i not in kept})
    return out


def quotas(available: dict[str, int], proportions: dict[str, float] | None, total: int | None) -> dict[str, int]:
    """Rows to take per kind. Without proportions, everything. With them, the largest total the
    scarcest kind allows (capped by `total`), split by the normalised proportions."""
    if not proportions:
        return dict(available)
    weights = {k: v for k, v in proportions.items() if v > 0}
    norm = sum(weights.values())
    if not weights:
        raise ValueError("mix.proportions: every proportion is 0")
    share = {k: v / norm for k, v in weights.items()}
    largest = min(available.get(k, 0) / p for k, p in share.items())
    size = min(largest, total) if total is not None else largest
    return {k: min(available.get(k, 0), math.floor(share.get(k, 0.0) * size + 1e-9)) for k in available}


def pick(ids: Sequence[str], n: int, seed: int) -> set[str]:
    """`n` of the ids in a seeded hash order (stable across runs and machines)."""
    order = sorted(ids, key=lambda i: xxhash.xxh3_64_intdigest(f"{seed}|{i}".encode()))
    return set(order[:n])
