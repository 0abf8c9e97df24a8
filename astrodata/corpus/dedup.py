"""Deduplication backed by DuckDB: arXiv versions, exact duplicates and MinHash-LSH near-duplicates.

Two steps, so the expensive part shards and the global part stays out of core:

1. `compute_signatures(docs, out.parquet, params)` (per shard, one pass over the texts): for each
   document its normalised-text hash, its arXiv paper id and version, its length, a MinHash
   signature and the LSH band hashes, appended in batches to one Parquet file.
2. `deduplicate(con, signature_files, params)` (once, over all shards' files): DuckDB groups
   documents by paper id, by text hash and by band hash; candidate pairs from shared buckets are
   streamed out in Arrow batches and checked on their signatures; connected components of all
   three kinds of links form the clusters; the kept document of each cluster is chosen by
   (latest arXiv version, longest text, smallest doc id). Results go to `dedup_clusters`.

MinHash is written here rather than taken from datasketch because the signatures must be
columns of a Parquet file that DuckDB bands, and because datasketch's LSH index is an in-memory
Python dict per band (tests/perf/bench_lsh.py compares both). Details:
- shingles are word n-grams (`astrodata.core.textnorm`), each hashed to 64 bits and folded to 32;
- the permutations are multiply-add-shift hashes `(a*x + b) >> 32` in uint64 arithmetic with
  random 64-bit a, b: a 2-universal family for 32-bit keys (Dietzfelbinger 1996) that numpy
  evaluates exactly, whereas `(a*x + b) mod p` with p = 2**61 - 1 overflows uint64;
- signatures of a batch are one matrix product-like pass and `np.minimum.reduceat` per document.

The similarity check defaults to the signature estimate (share of equal signature positions):
it needs nothing but the signature files. Passing `jaccard=ExactJaccard...` checks the candidates
on exact shingle-set Jaccard instead, fetching only the candidates' texts. Measured by
scripts/neardup_accuracy.py on ~1,900 windows of real papers with known perturbations at
threshold 0.8 (true pairs spread evenly over [0.8, 1]): estimate precision 0.935 / recall 0.920,
exact check precision 1.000 / recall 0.991 (the misses are LSH misses just above 0.8). Use the
exact check when the texts are at hand (the corpus build has them in its extracted shards).
"""

from __future__ import annotations

import json
import os
import re
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from itertools import islice
from pathlib import Path
from typing import Any

import duckdb
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import xxhash

from astrodata.core.arxiv_ids import parse_arxiv_id
from astrodata.core.files import atomic_path
from astrodata.core.textnorm import WORD_RE, digest, fmix64, normalize, shingle_hashes, word_shingles

SCHEMA = """
CREATE TABLE IF NOT EXISTS dedup_clusters (
    doc_id       VARCHAR PRIMARY KEY,
    cluster_id   BIGINT NOT NULL,
    kept         BOOLEAN NOT NULL,
    reason       VARCHAR NOT NULL,   -- kept | older-version | exact-duplicate | near-duplicate
    kept_doc_id  VARCHAR NOT NULL,   -- the document kept for this cluster (itself when kept)
    run_id       VARCHAR
);
"""

META_KEY = b"astrodata.minhash"
EMPTY = np.uint32(0xFFFFFFFF)  # signature value of a document without shingles
_CHUNK = 1 << 15  # shingles hashed per numpy pass: (num_perm x _CHUNK) uint64 is ~30 MB
_BAND_POLY = np.uint64(0xD6E8FEB86659FD93)
_IDENT = re.compile(r"^[A-Za-z_][A-Za-z0-9_.]*$")


@dataclass(frozen=True)
class MinHashParams:
    """Shingle size, LSH layout and similarity threshold; `bands * rows` permutations."""

    ngram: int = 5
    bands: int = 14
    rows: int = 8
    threshold: float = 0.8
    seed: int = 1
    max_bucket: int = 100  # larger buckets link members to one representative instead of all pairs

    def __post_init__(self) -> None:
        for name in ("ngram", "bands", "rows", "max_bucket"):
            if int(getattr(self, name)) < 1:
                raise ValueError(f"MinHashParams.{name} must be >= 1, got {getattr(self, name)!r}")
        if not 0.0 < self.threshold <= 1.0:
            raise ValueError(f"MinHashParams.threshold must be in (0, 1], got {self.threshold!r}")

    @property
    def num_perm(self) -> int:
        return self.bands * self.rows

    def signature_meta(self) -> dict[str, int]:
        """What signatures depend on: files made with other values cannot be compared."""
        return {"ngram": self.ngram, "bands": self.bands, "rows": self.rows, "seed": self.seed}

    def coefficients(self) -> tuple[np.ndarray, np.ndarray]:
        """The (a, b) of each permutation, shape (num_perm, 1); a is odd."""
        rng = np.random.default_rng(self.seed)
        a = rng.integers(0, 2**64, size=(self.num_perm, 1), dtype=np.uint64) | np.uint64(1)
        b = rng.integers(0, 2**64, size=(self.num_perm, 1), dtype=np.uint64)
        return a, b


# -- signatures ---------------------------------------------------------------------------------

def minhash_signatures(shingles: Sequence[np.ndarray], params: MinHashParams) -> np.ndarray:
    """MinHash signatures (n_docs x num_perm, uint32) of documents given as shingle-hash arrays.

    Short documents are concatenated so that one numpy pass covers many of them; a document
    without shingles gets the all-EMPTY signature (and is left out of LSH by its n_shingles).
    """
    a, b = params.coefficients()
    out = np.full((len(shingles), params.num_perm), EMPTY, dtype=np.uint32)

    def permuted_min(keys: np.ndarray, starts: np.ndarray) -> np.ndarray:
        h = a * (keys >> np.uint64(32))  # the 32-bit key of each shingle
        h += b
        h >>= np.uint64(32)
        return np.minimum.reduceat(h, starts, axis=1).T

    group: list[int] = []
    size = 0

    def flush() -> None:
        if group:
            lengths = [len(shingles[i]) for i in group]
            starts = np.concatenate([[0], np.cumsum(lengths[:-1])]).astype(np.intp)
            out[group] = permuted_min(np.concatenate([shingles[i] for i in group]), starts)

    for i, s in enumerate(shingles):
        if len(s) == 0:
            continue
        if len(s) > _CHUNK:  # a long document: running minimum over chunks of its own
            for lo in range(0, len(s), _CHUNK):
                part = permuted_min(s[lo : lo + _CHUNK], np.zeros(1, dtype=np.intp))[0]
                out[i] = np.minimum(out[i], part)
            continue
        if size + len(s) > _CHUNK:
            flush()
            group, size = [], 0
        group.append(i)
        size += len(s)
    flush()
    return out


def band_hashes(signatures: np.ndarray, params: MinHashParams) -> np.ndarray:
    """One 63-bit hash per LSH band (n_docs x bands, int64), salted by band number.

    The salt makes equal rows in different bands hash apart, so DuckDB can group on the hash
    alone instead of (band, hash).
    """
    n = len(signatures)
    v = signatures.reshape(n, params.bands, params.rows).astype(np.uint64)
    h = v[:, :, 0].copy()
    for r in range(1, params.rows):
        h *= _BAND_POLY
        h += v[:, :, r]
    salt = (np.arange(1, params.bands + 1, dtype=np.uint64) * np.uint64(0x9E3779B97F4A7C15))
    return (fmix64(h ^ salt) >> np.uint64(1)).astype(np.int64)


def doc_key(doc_id: str) -> int:
    """A 63-bit integer key per doc id, so DuckDB joins and groups integers, not strings."""
    return xxhash.xxh3_64_intdigest(doc_id.encode("utf-8")) >> 1


def signature_schema(params: MinHashParams) -> pa.Schema:
    return pa.schema(
        [
            ("doc_id", pa.string()),
            ("key", pa.int64()),
            ("paper_id", pa.string()),
            ("version", pa.int32()),
            ("n_chars", pa.int64()),
            ("n_shingles", pa.int32()),
            ("text_hash", pa.string()),
            ("sig", pa.list_(pa.uint32(), params.num_perm)),
            ("bands", pa.list_(pa.int64(), params.bands)),
        ],
        metadata={META_KEY: json.dumps(params.signature_meta()).encode()},
    )


@dataclass
class SignatureStats:
    path: Path
    docs: int = 0
    empty: int = 0  # documents without a single word
    unparsed_arxiv_ids: list[str] = field(default_factory=list)
    seconds: float = 0.0


def _batched(items: Iterable[Any], n: int) -> Iterator[list[Any]]:
    it = iter(items)
    while batch := list(islice(it, n)):
        yield batch


def compute_signatures(
    docs: Iterable[Mapping[str, Any]],
    out: str | os.PathLike,
    params: MinHashParams | None = None,
    batch_size: int = 512,
) -> SignatureStats:
    """Write one signature row per document to the Parquet file `out` (atomically).

    `docs` yields mappings with `id` and `text`, optionally `source` and `source_id`
    (arXiv documents, `source == "arxiv"`, get their paper id and version from `source_id`).
    Only one batch is in memory at a time.
    """
    params = params or MinHashParams()
    out = Path(out)
    schema = signature_schema(params)
    stats = SignatureStats(path=out)
    t0 = time.perf_counter()
    with atomic_path(out) as tmp, pq.ParquetWriter(tmp, schema) as writer:
        for batch in _batched(docs, batch_size):
            writer.write_table(_signature_batch(batch, params, schema, stats))
    stats.seconds = time.perf_counter() - t0
    return stats


def _signature_batch(
    batch: list[Mapping[str, Any]], params: MinHashParams, schema: pa.Schema, stats: SignatureStats
) -> pa.Table:
    cols: dict[str, list[Any]] = {name: [] for name in ("doc_id", "key", "paper_id", "version",
                                                         "n_chars", "n_shingles", "text_hash")}
    shingles = []
    for i, doc in enumerate(batch):
        doc_id, text = doc.get("id"), doc.get("text")
        if not isinstance(doc_id, str) or not doc_id or not isinstance(text, str):
            raise ValueError(f"document {stats.docs + i + 1} (id {doc_id!r}): needs a string 'id' and 'text'")
        paper = None
        if doc.get("source") == "arxiv":
            paper = parse_arxiv_id(str(doc.get("source_id") or ""))
            if paper is None:
                stats.unparsed_arxiv_ids.append(doc_id)
        norm = normalize(text)  # once for both the exact key and the shingles
        s = word_shingles(WORD_RE.findall(norm), params.ngram)
        shingles.append(s)
        stats.empty += len(s) == 0
        for name, value in (("doc_id", doc_id), ("key", doc_key(doc_id)),
                            ("paper_id", paper[0] if paper else None),
                            ("version", paper[1] if paper else None), ("n_chars", len(text)),
                            ("n_shingles", len(s)), ("text_hash", digest(norm))):
            cols[name].append(value)
    sigs = minhash_signatures(shingles, params)
    stats.docs += len(batch)
    arrays = [pa.array(cols[f.name], type=f.type) for f in schema if f.name in cols]
    arrays.append(pa.FixedSizeListArray.from_arrays(pa.array(sigs.ravel()), params.num_perm))
    arrays.append(pa.FixedSizeListArray.from_arrays(pa.array(band_hashes(sigs, params).ravel()), params.bands))
    return pa.Table.from_arrays(arrays, schema=schema)


# -- LSH in DuckDB ------------------------------------------------------------------------------

SignatureSource = str | os.PathLike | Sequence[str | os.PathLike]
JaccardFn = Callable[[list[tuple[str, str]]], Sequence[float]]


def _source_view(con: duckdb.DuckDBPyConnection, source: SignatureSource, params: MinHashParams) -> str:
    """The name to select signatures from: an existing table's name as given, or a temporary view
    `signature_files` over the signature files (path, glob, folder or list; the paths reach DuckDB
    as values, never inside SQL text)."""
    if isinstance(source, str) and _IDENT.match(source) and not source.endswith(".parquet"):
        return source
    paths = [Path(p) for p in source] if isinstance(source, Sequence) and not isinstance(source, str) \
        else [Path(source)]
    files: list[Path] = []
    for p in paths:
        if p.is_dir():
            files += sorted(p.glob("*.parquet"))
        elif any(ch in str(p) for ch in "*?["):
            files += sorted(p.parent.glob(p.name))
        elif p.exists():
            files.append(p)
        else:
            raise FileNotFoundError(f"signature file not found: {p}")
    if not files:
        raise FileNotFoundError(f"no signature files in {source}")
    want = params.signature_meta()
    for f in files:
        meta = (pq.read_schema(f).metadata or {}).get(META_KEY)
        got = json.loads(meta) if meta else None
        if got != want:
            raise ValueError(f"{f}: signatures were made with {got}, not {want}; recompute them")
    con.read_parquet([str(f) for f in files]).create_view("signature_files", replace=True)
    return "signature_files"


def _union_find(a: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Connected components of the edges (a[i], b[i]): (node keys, root key of each)."""
    parent: dict[int, int] = {}

    def find(x: int) -> int:
        parent.setdefault(x, x)
        while parent[x] != x:
            parent[x] = parent[parent[x]]
            x = parent[x]
        return x

    for x, y in zip(a.tolist(), b.tolist(), strict=True):
        rx, ry = find(x), find(y)
        if rx != ry:
            parent[max(rx, ry)] = min(rx, ry)
    nodes = np.fromiter(parent.keys(), dtype=np.int64, count=len(parent))
    roots = np.fromiter((find(x) for x in nodes.tolist()), dtype=np.int64, count=len(nodes))
    return nodes, roots


class ExactJaccard:
    """Exact Jaccard of candidate pairs' shingle sets, fetching the texts by doc id on demand.

    The signature estimate has a standard error of about 0.038 at Jaccard 0.8 with 112
    permutations, so pairs near the threshold fall on the wrong side of it often enough to cost
    several points of precision and recall; checking the (few) candidates exactly removes that.
    `fetch(ids)` returns {id: text} for the ids asked; only one batch's texts are held at once.
    """

    def __init__(self, fetch: Callable[[list[str]], Mapping[str, str]], ngram: int = 5):
        self.fetch = fetch
        self.ngram = ngram

    @classmethod
    def from_parquet(cls, files: Sequence[str | os.PathLike], ngram: int = 5,
                     id_column: str = "id", text_column: str = "text") -> ExactJaccard:
        """Texts from Parquet files (e.g. the corpus's extracted shards), read with DuckDB."""
        con = duckdb.connect()  # its own connection: the dedup connection is busy streaming candidates
        paths = [str(f) for f in files]
        for col in (id_column, text_column):
            if not _IDENT.match(col):
                raise ValueError(f"not a column name: {col!r}")

        def fetch(ids: list[str]) -> dict[str, str]:
            rows = con.execute(
                f"SELECT {id_column}, {text_column} FROM read_parquet(?) WHERE {id_column} IN (SELECT unnest(?))",
                [paths, ids],
            ).fetchall()
            return dict(rows)

        return cls(fetch, ngram)

    def __call__(self, pairs: list[tuple[str, str]]) -> list[float]:
        ids = sorted({d for pair in pairs for d in pair})
        texts = self.fetch(ids)
        missing = [d for d in ids if d not in texts]
        if missing:
            raise KeyError(f"no text for doc id {missing[0]!r} ({len(missing)} missing) to check near-duplicates")
        sets = {d: set(shingle_hashes(texts[d], self.ngram).tolist()) for d in ids}
        return [len(sets[a] & sets[b]) / max(len(sets[a] | sets[b]), 1) for a, b in pairs]


def _verify_batch(batch: pa.RecordBatch | None, threshold: float, jaccard: JaccardFn | None) -> pa.Table:
    """The candidate pairs of one batch whose similarity reaches the threshold."""
    if batch is None or len(batch) == 0:
        return pa.table({"key_a": pa.array([], pa.int64()), "key_b": pa.array([], pa.int64()),
                         "doc_a": pa.array([], pa.string()), "doc_b": pa.array([], pa.string()),
                         "similarity": pa.array([], pa.float64())})
    if jaccard is not None:
        pairs = list(zip(batch.column("doc_a").to_pylist(), batch.column("doc_b").to_pylist(), strict=True))
        sim = np.asarray(jaccard(pairs), dtype=np.float64)
    else:
        sa = batch.column("sig_a").values.to_numpy().reshape(len(batch), -1)
        sb = batch.column("sig_b").values.to_numpy().reshape(len(batch), -1)
        sim = (sa == sb).mean(axis=1)
    ok = pa.array(sim >= threshold)
    table = pa.Table.from_batches([batch.select(["key_a", "key_b", "doc_a", "doc_b"])])
    return table.append_column("similarity", pa.array(sim)).filter(ok)


@dataclass
class NearDuplicates:
    """Outcome of the LSH stage. Verified pairs stay in the temporary DuckDB table
    `near_duplicate_pairs` (key_a, key_b, doc_a, doc_b, similarity); `nodes[i]` (a key) belongs
    to the cluster whose smallest key is `roots[i]`."""

    candidates: int
    pairs: int
    clusters: int
    docs_in_clusters: int
    seconds: dict[str, float]
    nodes: np.ndarray = field(repr=False)
    roots: np.ndarray = field(repr=False)


def find_near_duplicates(
    con: duckdb.DuckDBPyConnection,
    signature_source: SignatureSource,
    params: MinHashParams | None = None,
    jaccard: JaccardFn | None = None,
    batch_rows: int | None = None,
) -> NearDuplicates:
    """Banding -> candidate pairs (DuckDB GROUP BY) -> similarity check -> connected components.

    Candidates are streamed out of DuckDB in Arrow batches with both signatures; a pair is kept
    when its estimated Jaccard (share of equal signature positions) reaches the threshold, or,
    when `jaccard` is given (e.g. an `ExactJaccard`), when the Jaccard it returns for the pair's
    doc ids does. Batches are 65,536 pairs, or 2,048 with `jaccard` (texts are held per batch).
    """
    params = params or MinHashParams()
    src = _source_view(con, signature_source, params)
    seconds: dict[str, float] = {}
    t = time.perf_counter()
    # count/min aggregates are cheaper than collecting lists over millions of one-member buckets
    con.execute(f"""
        CREATE OR REPLACE TEMP TABLE lsh_rows AS
        SELECT key, unnest(bands) AS h FROM {src} WHERE n_shingles > 0;
        CREATE OR REPLACE TEMP TABLE lsh_buckets AS
        SELECT h, count(*) AS size, min(key) AS first FROM lsh_rows GROUP BY h HAVING count(*) > 1;
        CREATE OR REPLACE TEMP TABLE lsh_members AS
        SELECT r.h, r.key, b.size, b.first FROM lsh_rows r JOIN lsh_buckets b USING (h);
        DROP TABLE lsh_rows;
    """)
    seconds["banding"] = time.perf_counter() - t
    t = time.perf_counter()
    con.execute("""
        CREATE OR REPLACE TEMP TABLE lsh_candidates AS
        SELECT DISTINCT x.key AS key_a, y.key AS key_b
        FROM lsh_members x JOIN lsh_members y ON x.h = y.h AND x.key < y.key
        WHERE x.size <= $max_bucket
        UNION
        SELECT first, key FROM lsh_members WHERE size > $max_bucket AND key <> first
    """, {"max_bucket": params.max_bucket})
    candidates = con.execute("SELECT count(*) FROM lsh_candidates").fetchall()[0][0]
    con.execute(f"""
        CREATE OR REPLACE TEMP TABLE lsh_sigs AS
        SELECT key, any_value(doc_id) AS doc_id, any_value(sig) AS sig FROM {src}
        WHERE key IN (SELECT key_a FROM lsh_candidates UNION SELECT key_b FROM lsh_candidates)
        GROUP BY key
    """)
    seconds["candidates"] = time.perf_counter() - t
    t = time.perf_counter()
    candidate_rows = con.sql("""
        SELECT c.key_a, c.key_b, x.doc_id AS doc_a, y.doc_id AS doc_b, x.sig AS sig_a, y.sig AS sig_b
        FROM lsh_candidates c JOIN lsh_sigs x ON x.key = c.key_a JOIN lsh_sigs y ON y.key = c.key_b
    """)
    batch_rows = batch_rows or (2048 if jaccard else 65_536)
    with candidate_rows.to_arrow_reader(batch_size=batch_rows) as reader:
        verified = [_verify_batch(batch, params.threshold, jaccard) for batch in reader]
    pairs_table = pa.concat_tables(verified) if verified else _verify_batch(None, 1.0, None)
    a = pairs_table.column("key_a").to_numpy()
    b = pairs_table.column("key_b").to_numpy()
    con.register("lsh_pairs_arrow", pairs_table)
    con.execute("CREATE OR REPLACE TEMP TABLE near_duplicate_pairs AS SELECT * FROM lsh_pairs_arrow")
    con.unregister("lsh_pairs_arrow")
    seconds["verify"] = time.perf_counter() - t
    t = time.perf_counter()
    nodes, roots = _union_find(a, b)
    seconds["components"] = time.perf_counter() - t
    for table in ("lsh_buckets", "lsh_members", "lsh_candidates", "lsh_sigs"):
        con.execute(f"DROP TABLE IF EXISTS {table}")
    return NearDuplicates(
        candidates=int(candidates), pairs=len(a), clusters=len(np.unique(roots)),
        docs_in_clusters=len(nodes), seconds=seconds, nodes=nodes, roots=roots,
    )


# -- the whole dedup stage ----------------------------------------------------------------------

@dataclass
class DedupStats:
    docs: int
    kept: int
    dropped: dict[str, int]  # per reason
    clusters: int
    cluster_sizes: dict[int, int]  # cluster size -> number of clusters
    near: dict[str, Any]
    seconds: float

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def deduplicate(
    con: duckdb.DuckDBPyConnection,
    signature_source: SignatureSource,
    params: MinHashParams | None = None,
    jaccard: JaccardFn | None = None,
    run_id: str | None = None,
) -> DedupStats:
    """One document per arXiv paper, per normalised text and per near-duplicate cluster.

    Links documents of the same paper, of the same text hash and LSH-verified near-duplicate
    pairs, takes connected components, keeps per component the latest arXiv version, then the
    longest text, then the smallest doc id, and replaces the contents of `dedup_clusters`
    (members of clusters of two or more; everything absent from it is kept).
    """
    params = params or MinHashParams()
    t0 = time.perf_counter()
    src = _source_view(con, signature_source, params)
    con.execute(SCHEMA)
    con.execute(f"""
        CREATE OR REPLACE TEMP TABLE dedup_docs AS
        SELECT key, doc_id, any_value(paper_id) AS paper_id, any_value(version) AS version,
               any_value(n_chars) AS n_chars, any_value(text_hash) AS text_hash
        FROM {src} GROUP BY key, doc_id
    """)
    clash = con.execute("SELECT key, list(doc_id) FROM dedup_docs GROUP BY key HAVING count(*) > 1 LIMIT 1").fetchall()
    if clash:
        raise ValueError(f"doc ids {clash[0][1]} share the 63-bit key {clash[0][0]}; rename one of them")
    # Exact and same-paper links: every member to the smallest key of its group.
    same = con.sql("""
        SELECT a, b FROM (
            SELECT min(key) OVER (PARTITION BY text_hash) AS a, key AS b FROM dedup_docs
            UNION ALL
            SELECT min(key) OVER (PARTITION BY paper_id), key FROM dedup_docs WHERE paper_id IS NOT NULL
        ) WHERE a <> b
    """).to_arrow_table()
    near = find_near_duplicates(con, signature_source, params, jaccard)
    near_edges = con.sql("SELECT key_a, key_b FROM near_duplicate_pairs").to_arrow_table()
    a = np.concatenate([same.column("a").to_numpy(), near_edges.column("key_a").to_numpy()])
    b = np.concatenate([same.column("b").to_numpy(), near_edges.column("key_b").to_numpy()])
    nodes, roots = _union_find(a, b)
    con.register("dedup_components_arrow", pa.table({"key": nodes, "root": roots}))
    con.execute("""
        CREATE OR REPLACE TEMP TABLE dedup_ranked AS
        SELECT d.*, c.root,
               row_number() OVER (PARTITION BY c.root
                                  ORDER BY d.version DESC NULLS LAST, d.n_chars DESC, d.doc_id) AS rank
        FROM dedup_components_arrow c JOIN dedup_docs d USING (key)
    """)
    con.unregister("dedup_components_arrow")
    con.execute("DELETE FROM dedup_clusters")
    con.execute("""
        INSERT INTO dedup_clusters
        SELECT r.doc_id, dense_rank() OVER (ORDER BY k.doc_id) AS cluster_id, r.rank = 1 AS kept,
               CASE WHEN r.rank = 1 THEN 'kept'
                    WHEN r.paper_id = k.paper_id THEN 'older-version'
                    WHEN r.text_hash = k.text_hash THEN 'exact-duplicate'
                    ELSE 'near-duplicate' END AS reason,
               k.doc_id AS kept_doc_id, ? AS run_id
        FROM dedup_ranked r JOIN dedup_ranked k ON k.root = r.root AND k.rank = 1
    """, [run_id])
    n_docs = con.execute("SELECT count(*) FROM dedup_docs").fetchall()[0][0]
    dropped = dict(con.execute(
        "SELECT reason, count(*) FROM dedup_clusters WHERE NOT kept GROUP BY reason ORDER BY reason").fetchall())
    sizes = dict(con.execute("""
        SELECT size, count(*) FROM (SELECT count(*) AS size FROM dedup_clusters GROUP BY cluster_id)
        GROUP BY size ORDER BY size
    """).fetchall())
    con.execute("DROP TABLE IF EXISTS dedup_ranked; DROP TABLE IF EXISTS dedup_docs")
    return DedupStats(
        docs=int(n_docs), kept=int(n_docs - sum(dropped.values())), dropped=dropped,
        clusters=int(sum(sizes.values())), cluster_sizes=sizes,
        near={"candidates": near.candidates, "pairs": near.pairs, "clusters": near.clusters,
              "seconds": near.seconds},
        seconds=time.perf_counter() - t0,
    )


def dropped_ids(con: duckdb.DuckDBPyConnection) -> set[str]:
    """Doc ids that the last `deduplicate` run dropped (the corpus writer skips these)."""
    return {r[0] for r in con.execute("SELECT doc_id FROM dedup_clusters WHERE NOT kept").fetchall()}
