"""build-qa with the embedded SmolLM2 (transformers + outlines), and bad input through the CLI.

The end-to-end run is kept small for CI (one real paper, one passage, short generations);
scripts/qa_smoke.py gives the 3-paper figures.
"""

from __future__ import annotations

import os
import subprocess
import sys
from bisect import bisect_right
from collections import Counter
from pathlib import Path

import datasets
import pytest
import yaml
from conftest import ROOT
from qa_support import real_corpus, write_corpus

from astrodata.core.shards import read_rows
from astrodata.core.workspace import Workspace
from astrodata.qa.build import QA_SCHEMA, build_qa
from astrodata.qa.grade import GROUNDING_BOUNDS
from astrodata.qa.tasks import load_prompt, qa_schema, summary_schema
from cards.render import write_qa_card

SMALL = {
    "passages": {"size_chars": 500, "overlap_chars": 50, "min_chars": 100, "max_per_doc": 1},
    "qa": {"pairs_per_passage": 1, "max_question_chars": 100, "max_answer_chars": 150, "max_tokens": 128,
           "abstract_chars": 300},
    "summary": {"input_chars": 500, "max_summary_chars": 200, "max_tokens": 96},
    "judge": {"threshold": 1, "max_tokens": 40, "passage_chars": 500},
    "engine": {"invalid_retries": 0},
}


def cli(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.run([sys.executable, "-m", "astrodata.cli", "build-qa", *args], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=600)


@pytest.mark.slow
def test_embedded_end_to_end_on_a_real_paper(tmp_path):
    corpus = real_corpus(tmp_path, ["v1298tau-tess.tar.gz"])
    doc = next(iter(read_rows(corpus)))
    stats = build_qa(corpus, tmp_path / "out", tmp_path / "work", overrides=SMALL, progress=False)
    e = stats["engine"]
    assert stats["generator"] == stats["judge"] == "embedded/SmolLM2-135M-Instruct" and stats["dialect"] == "outlines"
    assert stats["passages"] == 1 and e["tokens_out"] > 0 and e["cost_usd"] == 0.0
    rows = list(read_rows(tmp_path / "out"))
    kinds = {r["kind"] for r in rows}
    assert kinds <= {"qa", "summary"} and rows, stats
    with Workspace(tmp_path / "work") as ws:
        replies = dict(ws.con.execute("SELECT task, response FROM generation_requests WHERE status = 'ok'").fetchall())
    for r in rows:  # schema-valid, TRL conversational, with lineage
        assert set(r) == set(QA_SCHEMA.names)
        assert [m["role"] for m in r["messages"]] == ["user", "assistant"] and all(m["content"] for m in r["messages"])
        assert r["source_id"] == "v1298tau-tess" and r["doc_id"] == doc["id"]
        assert r["generator"] == "embedded/SmolLM2-135M-Instruct" and r["prompt_version"] == load_prompt(r["kind"]).version
        assert 0 <= r["char_start"] < r["char_end"] <= len(doc["text"])
        if r["kind"] == "qa":
            pair = qa_schema(1, 100, 150).model_validate_json(replies["qa"]).pairs[0]
            assert r["messages"][0]["content"] == pair.question and r["passage_id"] == f"{doc['id']}#p0000"
            # the embedded judge grades by grounding (no LLM grade request): the lower score's grade
            assert "grade" not in replies and r["judge"] == "embedded/SmolLM2-135M-Instruct (grounding-v1)"
            s = r["scores"]
            assert r["grade"] == s["overall"] == 1 + bisect_right(GROUNDING_BOUNDS, min(s["answer_pmi"], s["question_pmi"]))
        else:
            assert r["messages"][1]["content"] == summary_schema(200).model_validate_json(replies["summary"]).summary
    card = write_qa_card(tmp_path / "out").read_text()
    assert yaml.safe_load(card.split("---")[1])["configs"][0]["data_files"][0]["path"] == "data/*.parquet"
    for kind, n in Counter(r["kind"] for r in rows).items():
        assert f"| {kind} | {n:,} |" in card
    assert f"| **total** | **{len(rows):,}** |" in card and "`embedded/SmolLM2-135M-Instruct`: " in card
    assert all(r["kind"] != "qa" for r in rows) or "grounding" in card
    for grade, n in Counter(r["grade"] for r in rows if r["grade"] is not None).items():
        assert f"| {grade} | {n:,} |" in card
    ds = datasets.load_dataset("parquet", data_dir=str(tmp_path / "out" / "data"), split="train")
    assert ds.num_rows == len(rows)
    from transformers import AutoTokenizer

    from astrodata.core.models import embedded_model_path

    tok = AutoTokenizer.from_pretrained(embedded_model_path())  # what SFTTrainer does with `messages`
    for row in ds:
        text = tok.apply_chat_template(row["messages"], tokenize=False)
        user, answer = (m["content"] for m in row["messages"])
        assert text.endswith(f"<|im_start|>user\n{user}<|im_end|>\n<|im_start|>assistant\n{answer}<|im_end|>\n")
    again = build_qa(corpus, tmp_path / "out", tmp_path / "work", overrides=SMALL, progress=False)
    assert again["engine"]["requests_sent"] == 0 and again["engine"]["cache_hits"] == e["requests_sent"]
    assert list(read_rows(tmp_path / "out")) == rows


def test_bad_input_is_one_line_and_writes_nothing(tmp_path):
    empty = write_corpus(tmp_path / "empty", [])
    res = cli("--corpus", str(empty), "--out", str(tmp_path / "out1"), "--workdir", str(tmp_path / "w"), cwd=tmp_path)
    assert res.returncode == 1 and res.stderr.strip().count("\n") == 0, res.stderr
    assert "no documents" in res.stderr and not (tmp_path / "out1").exists()

    res = cli("--corpus", str(tmp_path / "nope"), "--out", str(tmp_path / "out2"), cwd=tmp_path)
    assert res.returncode == 1 and "no data/*.parquet" in res.stderr and res.stderr.strip().count("\n") == 0

    text = "The star V1298 Tau hosts four planets. " * 4000  # ~40k tokens: over the embedded model's 8192
    long = write_corpus(tmp_path / "long", [{"id": "arxiv:long", "source_id": "long", "title": "Long", "text": text}])
    recipe = tmp_path / "recipe.yaml"
    recipe.write_text("passages: {size_chars: 200000}\n")
    res = cli("--corpus", str(long), "--out", str(tmp_path / "out3"), "--workdir", str(tmp_path / "w"),
              "--recipe", str(recipe), cwd=tmp_path)
    assert res.returncode == 1 and res.stderr.strip().count("\n") == 0, res.stderr
    assert "passage arxiv:long#p0000 needs" in res.stderr and "over the model context of 8192" in res.stderr
    assert not (tmp_path / "out3").exists()
    with Workspace(tmp_path / "w") as ws:
        assert ws.con.execute("SELECT count(*) FROM generation_requests").fetchall()[0][0] == 0
        assert {s for (s,) in ws.con.execute("SELECT status FROM runs").fetchall()} == {"failed"}

    res = cli("--corpus", str(long), "--out", str(tmp_path / "out4"), "--endpoint", "http://127.0.0.1:1",
              cwd=tmp_path)
    assert res.returncode == 1 and "--endpoint needs --model" in res.stderr
