"""Near-duplicate accuracy of the MinHash-LSH stage against brute-force Jaccard truth.

The test set is built from the real papers in ../shared/data/arxiv-eprints: their LaTeX is
turned into text crudely (comments, preamble, math and commands removed: good enough for
shingles), split into windows of a few hundred words, and a share of the windows gets known
perturbations: small word edits, truncations, reordered sentences, overlapping windows and
arXiv-version-like revisions (edits + an added sentence + changed numbers).

Truth: every pair of documents whose word-5-gram shingle sets (the 64-bit shingle hashes the
pipeline uses) have Jaccard >= threshold, computed exhaustively by a DuckDB self-join on shingles
(every pair sharing at least one shingle gets its exact intersection; all others have Jaccard 0).
Found: the verified pairs of `astrodata.corpus.dedup.find_near_duplicates`, once with the signature
estimate as the check (the default) and once with exact Jaccard on the candidates
(`ExactJaccard`). Precision = found true pairs / found pairs; recall = found true pairs / true pairs.

    .venv/bin/python scripts/neardup_accuracy.py [--eprints DIR] [--threshold 0.8] [--seed 0]
"""

from __future__ import annotations

import argparse
import gzip
import io
import random
import re
import sys
import tarfile
import tempfile
import time
from pathlib import Path

import duckdb
import numpy as np
import pyarrow as pa

from astrodata.core.textnorm import shingle_hashes
from astrodata.corpus.dedup import ExactJaccard, MinHashParams, compute_signatures, find_near_duplicates

DEFAULT_EPRINTS = Path(__file__).resolve().parents[2] / "shared" / "data" / "arxiv-eprints"
_MATH_ENVS = r"equation|align|eqnarray|gather|multline|figure|table|tabular|displaymath|math"


def tex_sources(path: Path) -> list[str]:
    """The .tex members of an e-print (tar.gz or lone gzipped .tex), decoded leniently."""
    data = path.read_bytes()
    try:
        with tarfile.open(fileobj=io.BytesIO(data), mode="r:gz") as tar:
            return [tar.extractfile(m).read().decode("utf-8", "replace")
                    for m in sorted(tar.getmembers(), key=lambda m: m.name)
                    if m.isfile() and m.name.endswith(".tex")]
    except tarfile.ReadError:
        return [gzip.decompress(data).decode("utf-8", "replace")]


def crude_text(tex: str) -> str:
    """LaTeX to rough prose: body only, no comments, math, floats or commands."""
    tex = re.sub(r"(?<!\\)%[^\n]*", "", tex)
    body = re.search(r"\\begin\{document\}(.*?)(?:\\end\{document\}|\Z)", tex, re.S)
    tex = body.group(1) if body else tex
    tex = re.sub(rf"\\begin\{{({_MATH_ENVS})\*?\}}.*?\\end\{{\1\*?\}}", " ", tex, flags=re.S)
    tex = re.sub(r"\$\$.*?\$\$|\$[^$]*\$|\\\[.*?\\\]", " ", tex, flags=re.S)
    tex = re.sub(r"\\(?:cite\w*|ref|eqref|label|includegraphics|bibliography\w*|url)\*?(?:\[[^\]]*\])*\{[^}]*\}",
                 " ", tex)
    tex = re.sub(r"\\[A-Za-z@]+\*?|\\.", " ", tex)
    return re.sub(r"\s+", " ", re.sub(r"[{}~&]", " ", tex)).strip()


def _edit(words: list[str], rate: float, rng: random.Random) -> list[str]:
    out = []
    for w in words:
        r = rng.random()
        if r < rate / 3:
            continue  # delete
        if r < 2 * rate / 3:
            out.append(rng.choice(words))  # substitute
        else:
            out.append(w)
        if rng.random() < rate / 3:
            out.append(rng.choice(words))  # insert
    return out


def _reorder(words: list[str], rng: random.Random) -> list[str]:
    sentences = re.split(r"(?<=[.!?]) ", " ".join(words))
    if len(sentences) < 3:
        cut = rng.randrange(1, len(words))
        return words[cut:] + words[:cut]
    i, j = sorted(rng.sample(range(len(sentences)), 2))
    sentences[i], sentences[j] = sentences[j], sentences[i]
    return " ".join(sentences).split()


def _version(words: list[str], rng: random.Random) -> list[str]:
    out = [str(rng.randint(2, 99)) if re.fullmatch(r"\d+(\.\d+)?", w) else w for w in _edit(words, 0.02, rng)]
    extra = "In the revised version we also discuss the systematic uncertainties in more detail ."
    return out + extra.split() if rng.random() < 0.5 else extra.split() + out


KINDS = ["edit", "trunc", "reorder", "version", "shift"]


def perturb(kind: str, base: list[str], following: list[str], rng: random.Random) -> list[str]:
    """One known perturbation of a window; `following` is the paper text after the window's start."""
    if kind == "edit":
        return _edit(base, rng.uniform(0.005, 0.06), rng)
    if kind == "trunc":
        keep = rng.uniform(0.6, 0.97)
        return base[: int(len(base) * keep)] if rng.random() < 0.5 else base[int(len(base) * (1 - keep)):]
    if kind == "reorder":
        return _reorder(base, rng)
    if kind == "version":
        return _version(base, rng)
    return following[int(len(base) * rng.uniform(0.0, 0.23)):][: len(base)]  # shift: an overlapping window


def build_documents(eprints: Path, window: int = 300, seed: int = 0) -> list[dict]:
    """Windows of real paper text plus perturbed variants; ids name their origin and kind."""
    rng = random.Random(seed)
    docs: list[dict] = []
    for path in sorted(eprints.iterdir()):
        if not path.name.endswith(".gz"):
            continue
        words = " ".join(crude_text(t) for t in tex_sources(path)).split()
        slug = path.name.removesuffix(".gz")  # x.tar.gz and x.gz are two e-prints
        for k, start in enumerate(range(0, len(words) - window // 2, window)):
            base = words[start : start + window]
            wid = f"{slug}/{k}"
            docs.append({"id": f"{wid}/orig", "text": " ".join(base)})
            for kind in rng.sample(KINDS, rng.randint(0, 3)):
                text = " ".join(perturb(kind, base, words[start + window // 50:], rng))
                if text:
                    docs.append({"id": f"{wid}/{kind}", "text": text})
    return docs


def true_pairs(docs: list[dict], ngram: int, threshold: float) -> dict[tuple[str, str], float]:
    """All pairs with Jaccard >= threshold, exhaustively, via a DuckDB join on shingle hashes."""
    ids, shingles = [], []
    for i, d in enumerate(docs):
        s = shingle_hashes(d["text"], ngram)
        ids.append(np.full(len(s), i, dtype=np.int32))
        shingles.append(s.view(np.int64))
    con = duckdb.connect()
    con.register("sh", pa.table({"doc": np.concatenate(ids), "h": np.concatenate(shingles)}))
    rows = con.execute("""
        WITH sizes AS (SELECT doc, count(*) AS n FROM sh GROUP BY doc),
             inter AS (SELECT a.doc AS x, b.doc AS y, count(*) AS i
                       FROM sh a JOIN sh b ON a.h = b.h AND a.doc < b.doc GROUP BY ALL)
        SELECT x, y, i / (sx.n + sy.n - i) AS j
        FROM inter JOIN sizes sx ON sx.doc = x JOIN sizes sy ON sy.doc = y
        WHERE i / (sx.n + sy.n - i) >= ?
    """, [threshold]).fetchall()
    return {tuple(sorted((docs[x]["id"], docs[y]["id"]))): j for x, y, j in rows}


def score(found: set[tuple[str, str]], truth: set[tuple[str, str]]) -> tuple[float, float]:
    hit = len(found & truth)
    return hit / max(len(found), 1), hit / max(len(truth), 1)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--eprints", type=Path, default=DEFAULT_EPRINTS)
    ap.add_argument("--threshold", type=float, default=0.8)
    ap.add_argument("--bands", type=int, default=14)
    ap.add_argument("--rows", type=int, default=8)
    ap.add_argument("--window", type=int, default=300, help="words per base document")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    if not args.eprints.is_dir():
        print(f"no e-prints folder at {args.eprints}", file=sys.stderr)
        return 2
    params = MinHashParams(bands=args.bands, rows=args.rows, threshold=args.threshold)
    docs = build_documents(args.eprints, args.window, args.seed)
    texts = {d["id"]: d["text"] for d in docs}
    kinds = sorted({d["id"].rsplit("/", 1)[1] for d in docs})
    counts = ", ".join(f"{k} {sum(d['id'].endswith('/' + k) for d in docs)}" for k in kinds)
    print(f"documents: {len(docs)} from {args.eprints} ({counts})")
    t = time.perf_counter()
    truth = true_pairs(docs, params.ngram, params.threshold)
    print(f"truth: {len(truth)} pairs with Jaccard >= {params.threshold} ({time.perf_counter() - t:.1f} s brute force)")
    hist = np.histogram(list(truth.values()), bins=[params.threshold, 0.85, 0.9, 0.95, 1.0 + 1e-9])[0]
    print("  by Jaccard  [0.80,0.85) {} [0.85,0.90) {} [0.90,0.95) {} [0.95,1] {}".format(*hist))

    exact = ExactJaccard(lambda ids: {i: texts[i] for i in ids}, params.ngram)
    with tempfile.TemporaryDirectory() as tmp:
        sig_file = Path(tmp) / "signatures.parquet"
        stats = compute_signatures(docs, sig_file, params)
        print(f"signatures: {stats.docs} docs in {stats.seconds:.2f} s ({stats.docs / stats.seconds:.0f} docs/s)")
        print(f"params: {params.bands} bands x {params.rows} rows, word {params.ngram}-grams, "
              f"threshold {params.threshold}")
        truth_set = set(truth)
        results = {}
        for label, check in (("signature estimate", None), ("exact Jaccard on candidates", exact)):
            con = duckdb.connect()
            t = time.perf_counter()
            near = find_near_duplicates(con, sig_file, params, jaccard=check)
            elapsed = time.perf_counter() - t
            found = {tuple(sorted(p)) for p in con.execute("SELECT doc_a, doc_b FROM near_duplicate_pairs").fetchall()}
            precision, recall = score(found, truth_set)
            results[label] = (precision, recall)
            print(f"{label}: {near.candidates} candidates, {len(found)} pairs in {elapsed:.2f} s -> "
                  f"precision {precision:.4f}  recall {recall:.4f}")
            missed = sorted(truth_set - found, key=truth.get)
            if missed:
                print(f"  missed {len(missed)}, e.g. " + "; ".join(f"{a} ~ {b} (J={truth[a, b]:.3f})" for a, b in missed[:3]))
            extra = sorted(found - truth_set)
            if extra:
                print(f"  false {len(extra)}, e.g. " + "; ".join(f"{a} ~ {b}" for a, b in extra[:3]))
    precision, recall = results["exact Jaccard on candidates"]
    ok = precision >= 0.98 and recall >= 0.97
    print(f"acceptance (precision >= 0.98, recall >= 0.97) with the exact check: {'PASS' if ok else 'FAIL'}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
