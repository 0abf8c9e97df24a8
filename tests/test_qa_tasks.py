"""build-qa without an LLM: passages, prompts, reply validation, cache keys, rate limits, metadata
tasks from the catalog, question dedup, decontamination, mix quotas and the batch file round trip."""

from __future__ import annotations

import asyncio
import json
import re
import socket

import datasets
import pytest
from conftest import FIXTURES
from qa_support import real_corpus, write_corpus

from astrodata.core.shards import read_rows
from astrodata.corpus.decontam import Decontaminator
from astrodata.qa.backends import DIALECTS, EndpointBackend
from astrodata.qa.batch import ingest_batch, write_batch
from astrodata.qa.build import QA_SCHEMA, build_qa
from astrodata.qa.engine import Engine, Job, RateLimiter, request_key, validate_reply
from astrodata.qa.mix import contaminated_items, duplicate_items, pick, quotas
from astrodata.qa.recipe import load_qa_recipe
from astrodata.qa.tasks import Grade, load_prompt, qa_schema, split_passages, summary_schema

NO_LLM = {"qa": {"enabled": False}, "summary": {"enabled": False}, "judge": {"enabled": False}}


@pytest.fixture(scope="module")
def paper(tmp_path_factory) -> dict:
    corpus = real_corpus(tmp_path_factory.mktemp("corpus"), ["v1298tau-tess.tar.gz"])
    return next(iter(read_rows(corpus)))


def test_passages_cover_a_real_paper_with_overlap(paper):
    text = paper["text"]
    ps = split_passages(paper["id"], text, 2000, 200, 300)
    assert len(ps) > 5
    for p in ps:
        assert text[p.start:p.end] == p.text and p.text == p.text.strip()
        assert len(p.text) <= 2000 + 300  # the size, plus at most a merged short tail
    for a, b in zip(ps, ps[1:], strict=False):
        assert b.start < a.end, "consecutive passages overlap"
        assert b.start > a.start
        assert text[b.start - 1].isspace(), "a passage starts on a word"
    covered = set()
    for p in ps:
        covered.update(range(p.start, p.end))
    assert all(i in covered for i, ch in enumerate(text) if not ch.isspace())
    assert ps[-1].end == len(text.rstrip())
    assert [p.passage_id for p in ps[:2]] == [f"{paper['id']}#p0000", f"{paper['id']}#p0001"]


def test_passages_edge_cases():
    assert split_passages("d", "   \n ", 100, 10, 5) == []
    one = split_passages("d", "  A short text.  ", 100, 10, 5)
    assert [(p.start, p.end, p.text) for p in one] == [(2, 15, "A short text.")]
    word = "x" * 250  # no break anywhere: hard cuts at the size
    assert [len(p.text) for p in split_passages("d", word, 100, 0, 10)] == [100, 100, 50]
    tail = "Sentence one is here. " * 10 + "End."  # a tail under min_chars joins the last passage
    ps = split_passages("d", tail, 120, 0, 50)
    assert ps[-1].text.endswith("End.") and all(len(p.text) >= 50 for p in ps)


def test_prompts_are_versioned_data():
    for name in ("qa", "summary", "judge"):
        prompt = load_prompt(name)
        # no worked example: small models copy it (SmolLM2 asked about the Crab Nebula of qa-v2's example)
        assert prompt.version.startswith(name) and not prompt.examples
    msgs = load_prompt("qa").messages(title="T", abstract="A", passage="The passage text.", k=2)
    assert [m["role"] for m in msgs] == ["system", "user"]
    assert "The passage text." in msgs[-1]["content"] and "Write 2 question-answer" in msgs[-1]["content"]
    judge = load_prompt("judge").messages(passage="P", question="Q", answer="A")[-1]["content"]
    assert not re.search(r'"overall":\s*\d', judge)  # no sample grade to copy (judge-v1 showed all 1s)
    with pytest.raises(KeyError):
        load_prompt("qa").messages(title="T")


def test_reply_validation():
    s = qa_schema(2, 100, 50)
    ok, err = validate_reply('```json\n{"pairs": [{"question": "What rotates 30 times a second?", '
                             '"answer": "The Crab pulsar $\\Omega$", "extra": 1}]}\n```', s)
    assert err is None and ok.pairs[0].answer == "The Crab pulsar $\\Omega$"
    assert validate_reply('{"pairs": [{"question": "Why?", "answer": "x"}]}', s)[1].startswith("pairs.0.question")
    assert "at most 50" in validate_reply('{"pairs": [{"question": "What is long here?", "answer": "' + "a" * 51 + '"}]}', s)[1]
    assert validate_reply('{"pairs": [{"question": "What is cut', s)[0] is None
    assert validate_reply('{"summary": "' + "s" * 30 + '"}', summary_schema(100))[0] is not None
    assert validate_reply('{"correctness": 5, "standalone": 4, "pertinence": 3, "overall": 6}', Grade)[0] is None


def test_request_key_covers_what_shapes_the_reply():
    msgs = [{"role": "user", "content": "hi"}]
    s = qa_schema(1, 100, 100)
    base = request_key("m", msgs, {"max_tokens": 5}, s)
    assert base == request_key("m", [dict(m) for m in msgs], {"max_tokens": 5}, s)
    assert len({base, request_key("m2", msgs, {"max_tokens": 5}, s), request_key("m", msgs, {"max_tokens": 6}, s),
                request_key("m", [{"role": "user", "content": "hi!"}], {"max_tokens": 5}, s),
                request_key("m", msgs, {"max_tokens": 5}, qa_schema(1, 100, 101))}) == 5


def test_rate_limiter_holds_both_budgets():
    now = [0.0]

    async def sleep(s: float) -> None:
        now[0] += s

    async def scenario() -> None:
        lim = RateLimiter(60, None, clock=lambda: now[0], sleep=sleep)
        for _ in range(60):
            await lim.acquire(1)
        assert now[0] == 0.0  # a full minute's budget to start with
        await lim.acquire(1)
        assert now[0] == pytest.approx(1.0)  # then one request per second
        tok = RateLimiter(None, 600, clock=lambda: now[0], sleep=sleep)
        start = now[0]
        await tok.acquire(500)
        await tok.acquire(500)  # 100 left: waits for 400 more tokens at 10 tokens/s
        assert now[0] - start == pytest.approx(40.0)
        tok.settle(500, 100)  # the reply used fewer tokens than estimated: refunded
        assert tok.tokens == pytest.approx(400.0)

    asyncio.run(scenario())


def test_recipe_errors_are_clear(tmp_path):
    bad = tmp_path / "r.yaml"
    bad.write_text("qa:\n  pairs_per_pasage: 2\n")
    with pytest.raises(ValueError, match="qa.pairs_per_pasage"):
        load_qa_recipe(bad)
    with pytest.raises(ValueError, match="overlap_chars"):
        load_qa_recipe(overrides={"passages": {"size_chars": 100, "overlap_chars": 100}})


def test_metadata_tasks_from_the_catalog(tmp_path, paper):
    corpus = write_corpus(tmp_path / "corpus", [
        {"id": "arxiv:1111.2011v2", "source_id": "1111.2011v2", "title": "Corpus title", "text": paper["text"]},
        {"id": "arxiv:2401.00001v1", "source_id": "2401.00001v1", "title": "Uncatalogued Paper", "text": "Text."},
        {"id": "arxiv:slug", "source_id": "v1298tau-tess", "title": "A Slug Paper", "text": "Text."},
    ])
    from astrodata.core.workspace import Workspace

    with Workspace(tmp_path / "work") as ws:
        ws.con.execute("INSERT INTO papers (arxiv_id, title, authors, abstract, categories, primary_category, published)"
                       " VALUES ('1111.2011', 'The Catalog Title', ['A. Astronomer', 'B. Observer'], "
                       "'We detect a second transit of the outer planet of a young star with TESS. More.', "
                       "['astro-ph.EP'], 'astro-ph.EP', DATE '2011-11-09')")
    stats = build_qa(corpus, tmp_path / "out", tmp_path / "work", overrides=NO_LLM, progress=False)
    rows = list(read_rows(tmp_path / "out"))
    assert stats["output"] == {"metadata": len(rows)}
    by_doc: dict[str, dict[str, str]] = {}
    for r in rows:
        assert r["kind"] == "metadata" and r["prompt_version"] == "metadata-v1" and r["grade"] is None
        by_doc.setdefault(r["doc_id"], {})[r["messages"][0]["content"]] = r["messages"][1]["content"]
    catalogued = by_doc["arxiv:1111.2011v2"]
    assert len(catalogued) == 6  # title, authors, year, arXiv id, category, introduced-by
    assert catalogued["Who wrote the paper \"The Catalog Title\"?"] == \
        "The paper \"The Catalog Title\" was written by A. Astronomer and B. Observer."
    assert any("2011" in a for a in catalogued.values()) and any("astro-ph.EP" in a for a in catalogued.values())
    assert any(q.startswith("Which paper introduced") for q in catalogued)
    # no catalog row: only what the corpus row knows (title and arXiv id); no arXiv id: nothing
    assert len(by_doc["arxiv:2401.00001v1"]) == 2 and "arxiv:slug" not in by_doc
    ds = datasets.load_dataset("parquet", data_dir=str(tmp_path / "out" / "data"), split="train")
    assert ds.num_rows == len(rows) and set(ds.column_names) == set(QA_SCHEMA.names)


def test_question_dedup_keeps_the_best_graded(workspace, tmp_path):
    items = [
        ("a", "What is the orbital period of V1298 Tau e in days?", 3),
        ("b", "what is the orbital period of  V1298 Tau e in days?", 5),  # exact after normalisation
        ("c", "What is the orbital period of V1298 Tau e in days exactly?", 4),  # near: 3-gram Jaccard 0.9
        ("d", "Which instrument at Keck detected the moon Mab in the near infrared?", 2),
    ]
    dropped = duplicate_items(workspace.con, items, 0.7, 3, tmp_path / "sig.parquet")
    assert dropped == {"a": "exact-duplicate of b", "c": "near-duplicate of b"}
    assert duplicate_items(workspace.con, items, None, 3, tmp_path / "sig.parquet") == {"a": "exact-duplicate of b"}


def test_question_dedup_streams_many_items(workspace, tmp_path):
    """A generator of 12,000 questions (2,000 re-spaced, re-cased copies): every copy loses to the
    better-graded of its pair, and nothing else is dropped."""
    import random

    rng = random.Random(3)
    vocab = [f"w{i}" for i in range(5000)]
    originals = [(f"q{i:05d}", " ".join(rng.choices(vocab, k=12)) + "?", rng.randint(1, 5)) for i in range(10_000)]
    copies = [(f"r{i:05d}", "  " + q.upper(), rng.randint(1, 5)) for i, (_, q, _) in enumerate(originals[:2_000])]

    def stream():
        yield from originals
        yield from copies

    dropped = duplicate_items(workspace.con, stream(), None, 3, tmp_path / "sig.parquet", batch_rows=3_000)
    assert len(dropped) == 2_000
    for (oid, _, og), (cid, _, cg) in zip(originals, copies, strict=False):
        loser, winner = (cid, oid) if (-og, oid) < (-cg, cid) else (oid, cid)
        assert dropped[loser] == f"exact-duplicate of {winner}" and winner not in dropped


def test_dialect_request_shapes():
    """llama.cpp's dialect gets the schema without string bounds: its grammar compiler fails on a
    1,200-character bound and llama-cpp-python's server then dies (scripts/llamacpp_check.py)."""
    schema = summary_schema(1200)
    sent = {d: EndpointBackend("http://127.0.0.1:9", "m", d).params(schema, 10).get("response_format")
            for d in DIALECTS}
    assert sent["none"] is None
    assert sent["json_schema"]["type"] == "json_schema" and sent["json_schema"]["json_schema"]["strict"] is True
    assert sent["json_object_schema"]["type"] == "json_object"
    for fmt in (sent["json_schema"]["json_schema"]["schema"], sent["json_object_schema"]["schema"]):
        assert "maxLength" not in json.dumps(fmt) and fmt["additionalProperties"] is False
        assert fmt["required"] == ["summary"]


def test_decontamination_spans_question_and_answer():
    mcq = json.loads((FIXTURES / "mcq" / "astro_keyed.jsonl").read_text().splitlines()[0])
    dec = Decontaminator.from_files([FIXTURES / "mcq" / "astro_keyed.jsonl"], n=8, min_words=4)
    words = mcq["question"].split()
    half = len(words) // 2
    items = [("copied", " ".join(words[:half]) + "\n" + " ".join(words[half:])),
             ("clean", "What is the orbital period of V1298 Tau e?\nAbout 48 days.")]
    assert set(contaminated_items(dec, items)) == {"copied"}


def test_mix_quotas_and_pick():
    assert quotas({"qa": 10, "instruct": 100}, None, None) == {"qa": 10, "instruct": 100}
    assert quotas({"qa": 10, "instruct": 100}, {"qa": 0.5, "instruct": 0.5}, None) == {"qa": 10, "instruct": 10}
    assert quotas({"qa": 100, "instruct": 100}, {"qa": 3, "instruct": 1}, 40) == {"qa": 30, "instruct": 10}
    assert quotas({"qa": 100, "summary": 5}, {"qa": 1.0}, None) == {"qa": 100, "summary": 0}
    ids = [f"id{i}" for i in range(50)]
    assert pick(ids, 10, 0) == pick(list(reversed(ids)), 10, 0) and len(pick(ids, 10, 0)) == 10
    assert pick(ids, 10, 0) != pick(ids, 10, 1)


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_batch_file_round_trip_through_the_cache(workspace, tmp_path):
    """Collect mode writes the Batch API file; ingested results are served from the cache (the
    endpoint is a closed port, so any request actually sent would fail)."""
    recipe = load_qa_recipe(overrides={"engine": {"max_attempts": 1, "invalid_retries": 0}})
    backend = EndpointBackend(f"http://127.0.0.1:{_closed_port()}", "some-model", "json_schema")
    schema = qa_schema(1, 200, 200)
    jobs = [Job(backend, "qa", f"p{i}", [{"role": "user", "content": f"passage {i}"}], schema, 50) for i in range(3)]

    async def run_all(engine):
        return [await engine.run(j) for j in jobs]

    collect = Engine(workspace.con, recipe.engine, recipe.prices, collect=True)
    assert [o.status for o in asyncio.run(run_all(collect))] == ["deferred"] * 3
    (path,) = write_batch(tmp_path / "batch.jsonl", collect.pending)
    lines = [json.loads(x) for x in path.read_text().splitlines()]
    assert {x["custom_id"] for x in lines} == set(collect.pending)
    assert all(x["url"] == "/v1/chat/completions" and x["body"]["response_format"]["type"] == "json_schema"
               for x in lines)
    good = '{"pairs": [{"question": "What is in passage zero?", "answer": "Text."}]}'
    results = [
        {"custom_id": lines[0]["custom_id"], "response": {"status_code": 200, "body": {
            "choices": [{"message": {"content": good}, "finish_reason": "stop"}],
            "usage": {"prompt_tokens": 10, "completion_tokens": 20}}}, "error": None},
        {"custom_id": lines[1]["custom_id"], "response": {"status_code": 200, "body": {
            "choices": [{"message": {"content": '{"pairs": []}'}}], "usage": {}}}, "error": None},
        {"custom_id": lines[2]["custom_id"], "response": None, "error": {"code": "server_error", "message": "x"}},
        {"custom_id": "not-ours", "response": {"status_code": 200, "body": {}}, "error": None},
    ]
    out = tmp_path / "results.jsonl"
    out.write_text("".join(json.dumps(r) + "\n" for r in results))
    prices = load_qa_recipe(overrides={"prices": {"some-model": {"input": 1.0, "output": 2.0}}}).prices
    assert ingest_batch(workspace.con, out, prices, 0.5) == {"replied": 2, "failed": 1, "already": 0, "unknown": 1}
    assert ingest_batch(workspace.con, out, prices, 0.5)["already"] == 2  # idempotent
    cost = workspace.con.execute("SELECT cost_usd FROM generation_requests WHERE key = ?",
                                 [lines[0]["custom_id"]]).fetchall()[0][0]
    assert cost == pytest.approx(0.5 * (10 * 1.0 + 20 * 2.0) / 1e6)
    online = Engine(workspace.con, recipe.engine, recipe.prices)
    outcomes = {o.key: o for o in asyncio.run(run_all(online))}
    assert outcomes[lines[0]["custom_id"]].status == "ok"
    assert outcomes[lines[1]["custom_id"]].status == "invalid"
    assert online.stats.cache_hits == 2 and online.stats.requests_sent == 1  # only the failed one is retried
    assert outcomes[lines[2]["custom_id"]].status == "failed"
    collect.close()
    online.close()
    out.write_text('{"custom_id": "x"}\nnot json\n')
    with pytest.raises(ValueError, match="line 2"):
        ingest_batch(workspace.con, out, prices, 0.5)
