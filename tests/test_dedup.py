"""Dedup: normalisation, arXiv versions, exact and near duplicates, the dedup_clusters table."""

from __future__ import annotations

import random

import numpy as np
import pytest

from astrodata.core.textnorm import WORD_RE, normalize, shingle_hashes, text_hash, words
from astrodata.corpus.dedup import (
    ExactJaccard,
    MinHashParams,
    compute_signatures,
    deduplicate,
    dropped_ids,
    find_near_duplicates,
    minhash_signatures,
    parse_arxiv_id,
)

VOCAB = (
    "galaxy star accretion disc halo redshift spectrum photometry lensing cluster merger binary "
    "neutron black hole dwarf nebula dust gas jet outflow wind magnetic field rotation curve "
    "luminosity mass radius metallicity temperature density pressure shock turbulence emission "
    "absorption line continuum survey telescope catalogue sample model simulation fit posterior "
    "prior likelihood inference noise signal detector wave chirp ringdown orbit period transit"
).split()


def prose(seed: int, n_words: int = 300) -> str:
    """Deterministic pseudo-prose: sentences of random astronomy words."""
    rng = random.Random(seed)
    sentences = []
    while sum(len(s.split()) for s in sentences) < n_words:
        sentences.append(" ".join(rng.choice(VOCAB) for _ in range(rng.randint(8, 16))).capitalize() + ".")
    return " ".join(sentences)


def edit(text: str, n_edits: int, seed: int) -> str:
    """Replace a few words: a small edit whose Jaccard stays high."""
    rng = random.Random(seed)
    toks = text.split()
    for _ in range(n_edits):
        toks[rng.randrange(len(toks))] = "zzedit" + str(rng.randrange(1000))
    return " ".join(toks)


def jaccard(a: str, b: str, n: int = 5) -> float:
    sa, sb = set(shingle_hashes(a, n).tolist()), set(shingle_hashes(b, n).tolist())
    return len(sa & sb) / len(sa | sb)


def test_normalisation_and_text_hash():
    assert normalize("  The  ﬁrst\tLine\n\nGALAXY ") == "the first line galaxy"
    assert text_hash("Dark  matter HALO") == text_hash("dark matter halo\n")
    assert text_hash("dark matter halo") != text_hash("dark matter halos")
    assert words("M31's disc, at z=0.1!") == ["m31", "s", "disc", "at", "z", "0", "1"]
    tricky = "Ｆｕｌｌ-width ＡＢＣ, x² and ½ of the\u00a0Ångström\tﬂux"
    assert words(tricky) == WORD_RE.findall(normalize(tricky))  # the shortcut compute_signatures takes


def test_parse_arxiv_id():
    assert parse_arxiv_id("2401.01234v2") == ("2401.01234", 2)
    assert parse_arxiv_id("arXiv:0704.0001") == ("0704.0001", None)
    assert parse_arxiv_id("astro-ph/0601001v3") == ("astro-ph/0601001", 3)
    assert parse_arxiv_id("math.GT/0309136v1") == ("math.GT/0309136", 1)
    assert parse_arxiv_id("Wikipedia:Albedo") is None


def test_signature_estimates_jaccard():
    params = MinHashParams()
    base = prose(1, 400)
    variants = [base, edit(base, 5, 2), edit(base, 25, 3), prose(4, 400)]
    sigs = minhash_signatures([shingle_hashes(t, params.ngram) for t in variants], params)
    assert sigs.shape == (4, params.num_perm) and sigs.dtype == np.uint32
    for i, text in enumerate(variants):
        estimate = float((sigs[0] == sigs[i]).mean())
        assert abs(estimate - jaccard(base, text)) < 0.12, (i, estimate, jaccard(base, text))
    # one document at a time gives the same signature as a batch
    alone = minhash_signatures([shingle_hashes(variants[2], params.ngram)], params)
    assert (alone[0] == sigs[2]).all()


def corpus_docs() -> list[dict]:
    base, other = prose(10), prose(11)
    return [
        # exact duplicates: same text up to case, whitespace and a ligature; the longest raw text is kept
        {"id": "wiki:a", "source": "wikipedia", "source_id": "A", "text": base},
        {"id": "wiki:b", "source": "wikipedia", "source_id": "B", "text": "  " + base.upper() + "\n\n"},
        # near duplicates of `other`: small edits; the longest text is kept
        {"id": "book:1", "source": "textbook", "source_id": "1", "text": other},
        {"id": "book:2", "source": "textbook", "source_id": "2", "text": edit(other, 3, 1) + " extra words here"},
        {"id": "book:3", "source": "textbook", "source_id": "3", "text": edit(other, 4, 2)},
        # three versions of one paper with unrelated texts, plus an old-style id in two versions
        {"id": "arxiv:2401.01234v1", "source": "arxiv", "source_id": "2401.01234v1", "text": prose(20)},
        {"id": "arxiv:2401.01234v3", "source": "arxiv", "source_id": "2401.01234v3", "text": prose(21, 50)},
        {"id": "arxiv:2401.01234v2", "source": "arxiv", "source_id": "2401.01234v2", "text": prose(22, 900)},
        {"id": "arxiv:astro-ph/0601001v1", "source": "arxiv", "source_id": "astro-ph/0601001v1", "text": prose(30)},
        {"id": "arxiv:astro-ph/0601001v2", "source": "arxiv", "source_id": "astro-ph/0601001v2",
         "text": edit(prose(30), 2, 9)},
        # unique documents
        {"id": "wiki:c", "source": "wikipedia", "source_id": "C", "text": prose(40)},
        {"id": "arxiv:2402.00001v1", "source": "arxiv", "source_id": "2402.00001v1", "text": prose(41)},
    ]


def clusters(con) -> dict[str, tuple]:
    rows = con.execute("SELECT doc_id, cluster_id, kept, reason, kept_doc_id FROM dedup_clusters").fetchall()
    return {r[0]: r[1:] for r in rows}


def test_dedup_clusters_table(workspace, tmp_path):
    docs = corpus_docs()
    stats = compute_signatures(docs, tmp_path / "sigs" / "all.parquet")
    assert stats.docs == len(docs) and stats.empty == 0 and stats.unparsed_arxiv_ids == []
    result = deduplicate(workspace.con, tmp_path / "sigs" / "all.parquet", run_id="r1")
    got = clusters(workspace.con)

    assert got["wiki:b"][1:] == (True, "kept", "wiki:b")
    assert got["wiki:a"][1:] == (False, "exact-duplicate", "wiki:b")
    assert got["book:2"][1:] == (True, "kept", "book:2")
    assert got["book:1"][1:] == (False, "near-duplicate", "book:2")
    assert got["book:3"][1:] == (False, "near-duplicate", "book:2")
    assert got["arxiv:2401.01234v3"][1:] == (True, "kept", "arxiv:2401.01234v3")  # latest beats longest
    assert got["arxiv:2401.01234v1"][1:] == (False, "older-version", "arxiv:2401.01234v3")
    assert got["arxiv:2401.01234v2"][1:] == (False, "older-version", "arxiv:2401.01234v3")
    assert got["arxiv:astro-ph/0601001v1"][1:] == (False, "older-version", "arxiv:astro-ph/0601001v2")
    assert not {"wiki:c", "arxiv:2402.00001v1"} & set(got)  # singletons are not clusters

    # one kept document per cluster, every member pointing at it
    by_cluster: dict[int, list] = {}
    for doc_id, (cid, kept, _, kept_doc) in got.items():
        by_cluster.setdefault(cid, []).append((doc_id, kept, kept_doc))
    assert len(by_cluster) == 4
    for members in by_cluster.values():
        kept = [d for d, k, _ in members if k]
        assert len(kept) == 1 and all(kd == kept[0] for _, _, kd in members)

    assert result.docs == 12 and result.kept == 12 - 6
    assert result.dropped == {"exact-duplicate": 1, "near-duplicate": 2, "older-version": 3}
    assert result.cluster_sizes == {2: 2, 3: 2}
    assert dropped_ids(workspace.con) == {d for d, v in got.items() if not v[1]}
    assert workspace.con.execute("SELECT DISTINCT run_id FROM dedup_clusters").fetchall() == [("r1",)]


def test_sharded_signatures_give_the_same_clusters(workspace, tmp_path):
    docs = corpus_docs()
    compute_signatures(docs, tmp_path / "one" / "all.parquet")
    deduplicate(workspace.con, tmp_path / "one" / "all.parquet")
    whole = clusters(workspace.con)
    random.Random(5).shuffle(docs)
    compute_signatures(docs[:5], tmp_path / "shards" / "part-1-of-2.parquet", batch_size=2)
    compute_signatures(docs[5:], tmp_path / "shards" / "part-2-of-2.parquet", batch_size=3)
    deduplicate(workspace.con, tmp_path / "shards")
    assert clusters(workspace.con) == whole
    quoted = tmp_path / "O'Neil's shards; DROP TABLE x"  # a path reaches DuckDB as a value, not SQL
    (tmp_path / "shards").rename(quoted)
    deduplicate(workspace.con, quoted)
    assert clusters(workspace.con) == whole


def test_near_duplicates_threshold_and_large_buckets(tmp_path):
    import duckdb

    base = prose(50, 400)
    far = edit(base, 40, 7)  # Jaccard well below 0.8
    docs = [{"id": f"copy{i}", "text": base} for i in range(6)]
    docs += [{"id": "far", "text": far}, {"id": "other", "text": prose(51, 400)}]
    assert jaccard(base, far) < 0.6
    params = MinHashParams(max_bucket=3)  # a bucket of 6 copies is linked through one representative
    compute_signatures(docs, tmp_path / "s.parquet", params)
    con = duckdb.connect()
    near = find_near_duplicates(con, tmp_path / "s.parquet", params)
    members = {int(k) for k in near.nodes}
    assert near.clusters == 1 and near.docs_in_clusters == 6
    pairs = con.execute("SELECT doc_a, doc_b FROM near_duplicate_pairs").fetchall()
    assert {d for p in pairs for d in p} == {f"copy{i}" for i in range(6)}
    assert len(pairs) == 5 and len(members) == 6


def test_exact_jaccard_check_and_parameter_mismatch(tmp_path):
    import duckdb
    import pyarrow as pa
    import pyarrow.parquet as pq

    base = prose(60, 300)
    texts = {"a": base, "b": edit(base, 2, 1), "c": prose(61, 300), "d": edit(base, 30, 2)}
    docs = [{"id": k, "text": v} for k, v in texts.items()]
    compute_signatures(docs, tmp_path / "s.parquet")
    pq.write_table(pa.Table.from_pylist(docs), tmp_path / "corpus.parquet")
    con = duckdb.connect()
    near = find_near_duplicates(con, tmp_path / "s.parquet",
                                jaccard=ExactJaccard.from_parquet([tmp_path / "corpus.parquet"]))
    assert near.pairs == 1
    row = con.execute("SELECT doc_a, doc_b, similarity FROM near_duplicate_pairs").fetchall()[0]
    assert sorted(row[:2]) == ["a", "b"] and row[2] == pytest.approx(jaccard(texts["a"], texts["b"]))
    with pytest.raises(KeyError, match="no text for doc id"):
        find_near_duplicates(con, tmp_path / "s.parquet", jaccard=ExactJaccard(lambda ids: {}))
    with pytest.raises(ValueError, match="s.parquet: signatures were made with"):
        find_near_duplicates(con, tmp_path / "s.parquet", MinHashParams(bands=16, rows=7))
    with pytest.raises(ValueError, match="document 1 .*needs a string 'id' and 'text'"):
        compute_signatures([{"id": "x", "text": None}], tmp_path / "bad.parquet")
    assert list(tmp_path.glob("*bad*")) == []
