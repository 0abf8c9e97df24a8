"""Speed of the dedup stage: MinHash signatures per second per core, and the DuckDB LSH stage on
1M documents' signatures side by side with datasketch's MinHashLSH on the same signatures.

    .venv/bin/python tests/perf/bench_lsh.py [--docs 1000000] [--datasketch-docs N] [--skip-datasketch]

datasketch is a comparison baseline only, not a dependency: `.venv/bin/pip install datasketch`
(the column is skipped with a message when it is missing).

1. Signatures: `astrodata.corpus.dedup.compute_signatures` in this one process (= one core) on windows
   and whole papers of real text from ../shared/data/arxiv-eprints (tokenising, shingling,
   hashing and writing Parquet included); datasketch's `MinHash.bulk` on the same shingles.
2. LSH stage: synthetic signatures with planted near-duplicate clusters (members agree with
   their cluster's base on 88-100% of positions, decoys on 50-65%) are written to Parquet, then
   `find_near_duplicates` runs banding -> candidate pairs -> signature check -> components.
   datasketch does the same with MinHashLSH (insert all, query each) plus the same check and
   union-find. Both report how many planted clusters they recover exactly.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

import duckdb
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from astrodata.core.textnorm import words
from astrodata.corpus.dedup import (
    MinHashParams,
    _union_find,
    band_hashes,
    compute_signatures,
    doc_key,
    find_near_duplicates,
    signature_schema,
)

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "scripts"))
from neardup_accuracy import DEFAULT_EPRINTS, build_documents, crude_text, tex_sources  # noqa: E402


def datasketch_or_none():
    try:
        import datasketch
    except ImportError:
        print("datasketch: not installed, column skipped (.venv/bin/pip install datasketch; not a project dependency)")
        return None
    return datasketch


# -- 1. signatures per second -------------------------------------------------------------------

def bench_signatures(params: MinHashParams, ds) -> None:
    if not DEFAULT_EPRINTS.is_dir():
        print(f"signatures: skipped, no real papers at {DEFAULT_EPRINTS}")
        return
    windows = build_documents(DEFAULT_EPRINTS)
    papers = [{"id": p.name, "text": " ".join(crude_text(t) for t in tex_sources(p))}
              for p in sorted(DEFAULT_EPRINTS.iterdir()) if p.name.endswith(".gz")]
    print(f"\n== signatures, one core, {params.num_perm} permutations, word {params.ngram}-grams ==")
    print(f"{'documents':<34}{'astrodata docs/s':>18}{'words/s':>12}{'datasketch docs/s':>20}{'ratio':>8}")
    with tempfile.TemporaryDirectory() as tmp:
        for label, docs in ((f"{len(windows)} windows of ~300 words", windows), (f"{len(papers)} whole papers", papers)):
            n_words = sum(len(d["text"].split()) for d in docs)
            t = time.perf_counter()
            compute_signatures(docs, Path(tmp) / "s.parquet", params)
            ours = len(docs) / (time.perf_counter() - t)
            theirs = ratio = float("nan")
            if ds is not None:
                t = time.perf_counter()
                shingle_sets = []
                for d in docs:
                    w = words(d["text"])
                    n = min(params.ngram, len(w)) or 1
                    shingle_sets.append([" ".join(w[i:i + n]).encode() for i in range(max(len(w) - n + 1, 1))])
                ds.MinHash.bulk(shingle_sets, num_perm=params.num_perm)
                theirs = len(docs) / (time.perf_counter() - t)
                ratio = ours / theirs
            print(f"{label:<34}{ours:>18.0f}{n_words / len(docs) * ours:>12.0f}{theirs:>20.0f}{ratio:>8.1f}")


# -- 2. the LSH stage on synthetic signatures -----------------------------------------------------

def synthetic_signatures(path: Path, n_docs: int, params: MinHashParams, seed: int = 0) -> list[np.ndarray]:
    """Write n_docs signatures with planted clusters; returns the planted clusters (row numbers)."""
    rng = np.random.default_rng(seed)
    k = params.num_perm
    n_planted = n_docs // 20  # ~17% of documents sit in clusters of 2-5
    sizes = rng.integers(2, 6, size=n_planted)
    sig = rng.integers(0, 2**32 - 1, size=(n_docs, k), dtype=np.uint32)
    clusters, row = [], 0
    for size in sizes.tolist():
        members = np.arange(row, row + size)
        for m in members[1:]:
            agree = rng.random(k) < rng.uniform(0.88, 1.0)
            sig[m, agree] = sig[row, agree]
        clusters.append(members)
        row += size
    for _ in range(n_docs // 50):  # decoys: pairs agreeing on 50-65% of positions, below the threshold
        agree = rng.random(k) < rng.uniform(0.5, 0.65)
        sig[row + 1, agree] = sig[row, agree]
        row += 2
    schema = signature_schema(params)
    with pq.ParquetWriter(path, schema) as writer:
        for lo in range(0, n_docs, 100_000):
            s = sig[lo:lo + 100_000]
            ids = [f"doc{i:08d}" for i in range(lo, lo + len(s))]
            writer.write_table(pa.Table.from_arrays([
                pa.array(ids), pa.array([doc_key(i) for i in ids], pa.int64()),
                pa.nulls(len(s), pa.string()), pa.nulls(len(s), pa.int32()),
                pa.array(np.full(len(s), 2000, np.int64)), pa.array(np.full(len(s), 300, np.int32)),
                pa.array([f"h{i}" for i in range(lo, lo + len(s))]),
                pa.FixedSizeListArray.from_arrays(pa.array(s.ravel()), k),
                pa.FixedSizeListArray.from_arrays(pa.array(band_hashes(s, params).ravel()), params.bands),
            ], schema=schema))
    return clusters


def recovered(clusters: list[np.ndarray], nodes: np.ndarray, roots: np.ndarray) -> float:
    """Share of planted clusters found exactly (same component, and nothing else in it)."""
    root_of = dict(zip(nodes.tolist(), roots.tolist(), strict=True))
    sizes: dict[int, int] = {}
    for r in roots.tolist():
        sizes[r] = sizes.get(r, 0) + 1
    ok = 0
    for members in clusters:
        rs = {root_of.get(int(m)) for m in members}
        ok += len(rs) == 1 and None not in rs and sizes[rs.pop()] == len(members)
    return ok / len(clusters)


def bench_lsh(n_docs: int, params: MinHashParams, ds, ds_docs: int | None) -> None:
    print(f"\n== LSH stage on {n_docs:,} signatures ({params.bands} bands x {params.rows} rows, "
          f"threshold {params.threshold}) ==")
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "signatures.parquet"
        t = time.perf_counter()
        clusters = synthetic_signatures(path, n_docs, params)
        print(f"synthetic signatures written in {time.perf_counter() - t:.1f} s "
              f"({len(clusters):,} planted clusters, {path.stat().st_size / 2**20:.0f} MiB)")
        keys = pq.read_table(path, columns=["key"]).column("key").to_numpy()
        con = duckdb.connect()
        t = time.perf_counter()
        near = find_near_duplicates(con, path, params)
        ours = time.perf_counter() - t
        rows = {int(k): i for i, k in enumerate(keys.tolist())}
        nodes = np.array([rows[k] for k in near.nodes.tolist()], dtype=np.int64)
        roots = np.array([rows[k] for k in near.roots.tolist()], dtype=np.int64)
        stages = ", ".join(f"{k} {v:.1f} s" for k, v in near.seconds.items())
        print(f"astrodata (DuckDB): {ours:.1f} s [{stages}]; {near.candidates:,} candidates, "
              f"{near.pairs:,} pairs, {near.clusters:,} clusters, planted recovered {recovered(clusters, nodes, roots):.4f}")
        print(f"  target: under 60 s -> {'PASS' if ours < 60 else 'FAIL'}")
        if ds is None:
            return
        n = min(ds_docs or n_docs, n_docs)
        sig = np.stack(pq.read_table(path, columns=["sig"]).column("sig").combine_chunks().values.to_numpy()
                       .reshape(-1, params.num_perm)[:n])
        t = time.perf_counter()
        theirs = datasketch_lsh(ds, sig, params)
        elapsed = time.perf_counter() - t
        d_nodes, d_roots = theirs
        planted = [c for c in clusters if c[-1] < n]
        print(f"datasketch MinHashLSH on {n:,} of them: {elapsed:.1f} s; "
              f"{len(np.unique(d_roots)):,} clusters, planted recovered {recovered(planted, d_nodes, d_roots):.4f}")
        scale = n_docs / n
        print(f"ratio datasketch / astrodata: {elapsed * scale / ours:.1f}x"
              + ("" if n == n_docs else f" (datasketch time scaled linearly from {n:,} docs)"))


def datasketch_lsh(ds, sig: np.ndarray, params: MinHashParams) -> tuple[np.ndarray, np.ndarray]:
    """MinHashLSH banding and querying, then the same signature check and union-find as ours."""
    lsh = ds.MinHashLSH(threshold=params.threshold, num_perm=params.num_perm, params=(params.bands, params.rows))
    hashes = [ds.LeanMinHash(seed=params.seed, hashvalues=row, scheme="affine32") for row in sig]
    with lsh.insertion_session() as session:
        for i, m in enumerate(hashes):
            session.insert(i, m, check_duplication=False)
    a, b = [], []
    for i, m in enumerate(hashes):
        for j in lsh.query(m):
            if j > i:
                a.append(i)
                b.append(j)
    a, b = np.array(a, dtype=np.int64), np.array(b, dtype=np.int64)
    ok = (sig[a] == sig[b]).mean(axis=1) >= params.threshold if len(a) else np.zeros(0, bool)
    return _union_find(a[ok], b[ok])


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--docs", type=int, default=1_000_000)
    ap.add_argument("--datasketch-docs", type=int, default=None, help="run datasketch on the first N only")
    ap.add_argument("--skip-datasketch", action="store_true")
    ap.add_argument("--skip-signatures", action="store_true")
    args = ap.parse_args()
    params = MinHashParams()
    ds = None if args.skip_datasketch else datasketch_or_none()
    print(f"machine: {os.cpu_count()} cores, load average {os.getloadavg()[0]:.1f} (shared machine: "
          f"timings vary with the other users' load); duckdb {duckdb.__version__}")
    if not args.skip_signatures:
        bench_signatures(params, ds)
    bench_lsh(args.docs, params, ds, args.datasketch_docs)
    return 0


if __name__ == "__main__":
    sys.exit(main())
