"""Infinity-Instruct rows -> chat items: roles, filters, rejections with reasons, and the SFT mix.

Offline inputs: a small self-written Parquet in Infinity-Instruct's schema, and the 300 real
ShareGPT-layout conversations in ../shared/data/sharegpt (which hold function_call/observation
turns: those rows must be rejected with a reason, never folded into a neighbouring turn).
"""

from __future__ import annotations

import json
from collections import Counter

import datasets
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from conftest import FIXTURES, shared
from qa_support import write_corpus

from astrodata.core.shards import read_rows
from astrodata.core.workspace import Workspace
from astrodata.qa.build import build_qa
from astrodata.qa.instruct import Rejected, to_messages

NO_LLM = {"qa": {"enabled": False}, "summary": {"enabled": False}, "judge": {"enabled": False},
          "metadata": {"enabled": False}}


def turns(*pairs: tuple[str, str]) -> list[dict[str, str]]:
    return [{"from": f, "value": v} for f, v in pairs]


def test_roles_map_or_reject_with_a_reason():
    assert to_messages(turns(("system", "Be brief."), ("human", "Hi"), ("gpt", "Hello"))) == [
        {"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi"},
        {"role": "assistant", "content": "Hello"}]
    assert to_messages(json.dumps(turns(("human", "Hi"), ("gpt", "Hello"))))[1]["role"] == "assistant"
    cases = {
        "turn 2: unsupported role 'function_call'": turns(("human", "Hi"), ("function_call", "{}"), ("gpt", "x")),
        "turn 1: gpt where a human turn was expected": turns(("gpt", "Hello"), ("human", "Hi")),
        "does not end with a gpt turn": turns(("human", "Hi"), ("gpt", "Hello"), ("human", "Again")),
        "turn 2: empty gpt text": turns(("human", "Hi"), ("gpt", "  ")),
        "turn 3: system turn after": turns(("human", "Hi"), ("gpt", "Hello"), ("system", "x")),
        "no conversation turns": [],
    }
    for reason, conv in cases.items():
        with pytest.raises(Rejected, match=reason):
            to_messages(conv)
    with pytest.raises(Rejected) as exc:
        to_messages(turns(("human", "Hi"), ("observation", "{}")))
    assert exc.value.category == "role"


INFINITY_SCHEMA = pa.schema([
    ("id", pa.int64()),
    ("conversations", pa.list_(pa.struct([("from", pa.string()), ("value", pa.string())]))),
    ("label", pa.struct([("ability_en", pa.list_(pa.string())), ("cate_ability_en", pa.list_(pa.string()))])),
    ("langdetect", pa.string()),
    ("source", pa.string()),
])


def infinity_rows() -> list[dict]:
    mcq = json.loads((FIXTURES / "mcq" / "astro_keyed.jsonl").read_text().splitlines()[0])
    good = "Explain why the sky is blue in two sentences."
    rows = [
        (1, turns(("human", good), ("gpt", "Rayleigh scattering favours short wavelengths. So blue light spreads.")),
         ["physics"], "en"),
        (2, turns(("system", "You are a tutor."), ("human", "What is a light year?"),
                  ("gpt", "The distance light travels in one year."), ("human", "In km?"),
                  ("gpt", "About 9.46 trillion km.")), ["astronomy"], "en"),
        (3, turns(("human", "天空为什么是蓝色的？"), ("gpt", "因为瑞利散射。")), ["physics"], "zh-cn"),
        (4, turns(("human", good), ("gpt", "A different answer to the same instruction.")), ["physics"], "en"),
        (5, turns(("human", "Write a poem."), ("gpt", "x" * 30000)), ["creative writing"], "en"),
        (6, turns(("human", "Write a limerick about a cat."), ("gpt", "There once was a cat from Peru...")),
         ["creative writing"], "en"),
        (7, turns(("human", "Find the weather."), ("function_call", '{"name": "weather"}'),
                  ("observation", '{"t": 20}'), ("gpt", "It is 20 degrees.")), ["tool use"], "en"),
        (8, turns(("human", mcq["question"]), ("gpt", "The answer is B.")), ["astronomy"], "en"),
    ]
    return [{"id": i, "conversations": c, "label": {"ability_en": a, "cate_ability_en": a}, "langdetect": lang,
             "source": "self-written"} for i, c, a, lang in rows]


@pytest.fixture
def corpus(tmp_path):
    return write_corpus(tmp_path / "corpus", [{"id": "arxiv:x", "source_id": "x", "title": "X", "text": "Text."}])


def test_infinity_instruct_parquet_filters_and_reasons(tmp_path, corpus):
    src = tmp_path / "infinity.parquet"
    pq.write_table(pa.Table.from_pylist(infinity_rows(), schema=INFINITY_SCHEMA), src)
    overrides = {**NO_LLM, "instruct": {"source": str(src), "exclude_labels": {"ability_en": ["creative writing"]},
                                        "max_chars": 10000, "decontam": True},
                 "decontam": {"benchmarks": [str(FIXTURES / "mcq" / "astro_keyed.jsonl")], "ngram": 8, "min_words": 4}}
    stats = build_qa(corpus, tmp_path / "out", tmp_path / "work", overrides=overrides, progress=False)
    assert stats["instruct"] == {"read": 8, "kept": 2, "rejected_language": 1, "rejected_duplicate": 1,
                                 "rejected_length": 1, "rejected_label": 1, "rejected_role": 1,
                                 "rejected_benchmark": 1}
    rows = list(read_rows(tmp_path / "out"))
    assert [r["source_id"] for r in rows] == ["1", "2"]
    assert rows[1]["messages"][0] == {"role": "system", "content": "You are a tutor."}
    assert [m["role"] for m in rows[1]["messages"]] == ["system", "user", "assistant", "user", "assistant"]
    assert all(r["kind"] == "instruct" and r["generator"] == "infinity.parquet" for r in rows)
    with Workspace(tmp_path / "work") as ws:
        reasons = dict(ws.con.execute("SELECT doc_id, reason FROM errors WHERE stage = 'qa-instruct'").fetchall())
    assert reasons["instruct:3"].startswith("language zh-cn")
    assert reasons["instruct:4"] == "duplicate first user turn"
    assert reasons["instruct:5"].startswith("length 30")
    assert reasons["instruct:6"] == "label ability_en has ['creative writing']"
    assert reasons["instruct:7"].startswith("turn 2: unsupported role 'function_call'")
    assert reasons["instruct:8"] == "benchmark overlap: ['astro_keyed']"


def test_real_sharegpt_conversations(tmp_path, corpus):
    src = shared("sharegpt", "llamafactory__glaive_toolcall_en_demo.json")
    raw = json.loads(src.read_text())
    with_tools = [i for i, r in enumerate(raw) if {t["from"] for t in r["conversations"]} - {"human", "gpt"}]
    stats = build_qa(corpus, tmp_path / "out", tmp_path / "work",
                     overrides={**NO_LLM, "instruct": {"source": str(src), "dedup": False}}, progress=False)
    counts = stats["instruct"]
    assert counts["read"] == 300 and counts["rejected_role"] == len(with_tools) > 0
    assert counts["kept"] + sum(v for k, v in counts.items() if k.startswith("rejected_")) == 300
    rows = list(read_rows(tmp_path / "out"))
    assert len(rows) == counts["kept"] > 0
    for row in rows:
        source = raw[int(row["source_id"].rsplit(":", 1)[1])]["conversations"]
        assert [(m["role"], m["content"]) for m in row["messages"]] == \
            [({"human": "user", "gpt": "assistant"}[t["from"]], t["value"]) for t in source]
    with Workspace(tmp_path / "work") as ws:
        role_errors = ws.con.execute("SELECT count(*) FROM errors WHERE stage = 'qa-instruct' "
                                     "AND reason LIKE '%unsupported role%'").fetchall()[0][0]
    assert role_errors == len(with_tools)
    ds = datasets.load_dataset("parquet", data_dir=str(tmp_path / "out" / "data"), split="train")
    assert ds.num_rows == len(rows) and ds[0]["messages"] == rows[0]["messages"]


def test_mix_proportions(tmp_path):
    src = shared("sharegpt", "llamafactory__glaive_toolcall_en_demo.json")
    docs = [{"id": f"arxiv:24{i:02d}.0000{i}v1", "source_id": f"24{i:02d}.0000{i}v1", "title": f"Paper number {i}",
             "text": "Text."} for i in range(1, 6)]
    corpus = write_corpus(tmp_path / "corpus", docs)
    overrides = {**NO_LLM, "metadata": {"enabled": True}, "instruct": {"source": str(src)},
                 "mix": {"proportions": {"metadata": 0.5, "instruct": 0.5}}}
    stats = build_qa(corpus, tmp_path / "out", tmp_path / "work", overrides=overrides, progress=False)
    assert stats["output"] == {"metadata": 10, "instruct": 10}  # 2 metadata tasks per paper: the scarcer kind
    first = {r["id"] for r in read_rows(tmp_path / "out")}
    overrides["mix"]["total"] = 8
    stats = build_qa(corpus, tmp_path / "out", tmp_path / "work", overrides=overrides, progress=False)
    assert stats["output"] == {"metadata": 4, "instruct": 4}
    second = Counter(r["kind"] for r in read_rows(tmp_path / "out"))
    assert second == {"metadata": 4, "instruct": 4}
    assert {r["id"] for r in read_rows(tmp_path / "out")} < first  # re-running replaced the output, same picks pool
