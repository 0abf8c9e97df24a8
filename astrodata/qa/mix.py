"""QA dedup, decontamination and the SFT mix.

- Duplicate questions: exact (same normalised text, `astrodata.textnorm`) and near (MinHash-LSH
  over question word n-grams, `astrodata.dedup`); of each group the best-graded pair is kept
  (then the smallest id, so the choice is stable).
- Decontamination: an item is dropped when its whole text (question and answer together, so an
  n-gram spanning both is found) shares n-grams with a benchmark question (`astrodata.decontam`).
- Mix: per-kind quotas from proportions; within a kind a seeded hash order picks the rows, so
  the same inputs give the same mix.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path

import duckdb
import xxhash

from astrodata.decontam import Decontaminator
from astrodata.dedup import MinHashParams, compute_signatures, doc_key, find_near_duplicates
from astrodata.textnorm import text_hash

Candidate = tuple[str, str, int | None]  # (item id, text, grade)


def _rank(c: Candidate) -> tuple[int, str]:
    return (-(c[2] if c[2] is not None else 0), c[0])


def duplicate_items(con: duckdb.DuckDBPyConnection, items: Sequence[Candidate], near_threshold: float | None,
                    ngram: int, signatures: Path) -> dict[str, str]:
    """Item id -> reason (`exact-duplicate` / `near-duplicate` of <kept id>) for every item that
    loses to a better one with the same or a near-identical question."""
    dropped: dict[str, str] = {}
    best: dict[str, Candidate] = {}
    for c in sorted(items, key=_rank):
        h = text_hash(c[1])
        if h in best:
            dropped[c[0]] = f"exact-duplicate of {best[h][0]}"
        else:
            best[h] = c
    survivors = sorted(best.values(), key=_rank)
    if near_threshold is None or len(survivors) < 2:
        return dropped
    params = MinHashParams(ngram=ngram, threshold=near_threshold)
    compute_signatures(({"id": c[0], "text": c[1]} for c in survivors), signatures, params)
    near = find_near_duplicates(con, signatures, params)
    by_key = {doc_key(c[0]): c for c in survivors}
    clusters: dict[int, list[Candidate]] = {}
    for node, root in zip(near.nodes.tolist(), near.roots.tolist(), strict=True):
        clusters.setdefault(root, []).append(by_key[node])
    for members in clusters.values():
        keep, *rest = sorted(members, key=_rank)
        for c in rest:
            dropped[c[0]] = f"near-duplicate of {keep[0]}"
    signatures.unlink(missing_ok=True)
    return dropped


def contaminated_items(decontaminator: Decontaminator, items: Sequence[tuple[str, str]]) -> dict[str, str]:
    """Item id -> `benchmark overlap: [names]` for items sharing n-grams with a benchmark."""
    kept = {d["id"] for d in decontaminator.run({"id": i, "text": t} for i, t in items)}
    return {i: f"benchmark overlap: {sorted(decontaminator.matches(t))}" for i, t in items if i not in kept}


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
