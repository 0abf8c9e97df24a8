"""MCQ loading: every accepted form, the answer-key file, the Hub cache path, and errors naming row/path."""

from __future__ import annotations

import csv
import json

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from conftest import FIXTURES

from astrodata.core.mcq import MCQError, load_mcqs

KEYED = FIXTURES / "mcq" / "astro_keyed.jsonl"


def rows() -> list[dict]:
    return [json.loads(line) for line in KEYED.read_text().splitlines()]


def write_jsonl(path, records) -> None:
    path.write_text("".join(json.dumps(r) + "\n" for r in records))


def test_keyed_jsonl_fields():
    mcqs = load_mcqs(KEYED)
    assert len(mcqs) == 30 and mcqs.keyed
    first = mcqs.questions[0]
    assert first.id == "astro-001" and first.answer == "A" and first.difficulty == "easy"
    assert first.topic == "stellar" and first.paper_id == "self-1" and first.explanation
    assert first.options[0] == "Hydrogen fusion into helium in the core"
    assert "Gravitational contraction" in first.text


def test_same_content_same_hash_across_formats(tmp_path):
    records = rows()
    pq.write_table(pa.Table.from_pylist(records), tmp_path / "q.parquet")
    with (tmp_path / "q.csv").open("w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(records[0]))
        writer.writeheader()
        writer.writerows(records)
    hashes = {load_mcqs(p).data_hash for p in (KEYED, tmp_path / "q.parquet", tmp_path / "q.csv")}
    assert len(hashes) == 1
    records[3]["A"] = "changed"
    write_jsonl(tmp_path / "changed.jsonl", records)
    assert load_mcqs(tmp_path / "changed.jsonl").data_hash not in hashes


def test_public_form_has_no_key_and_row_index_ids(tmp_path):
    public = [{k: r[k] for k in ("question", "A", "B", "C", "D")} for r in rows()[:5]]
    pq.write_table(pa.Table.from_pylist(public), tmp_path / "public.parquet")
    mcqs = load_mcqs(tmp_path / "public.parquet")
    assert not mcqs.keyed and [q.id for q in mcqs] == ["0", "1", "2", "3", "4"]
    assert all(q.answer is None for q in mcqs)


def test_mmlu_csv_headerless_and_with_header(tmp_path):
    body = 'What is 2+2?,3,4,5,6,B\n"Largest planet, by mass?",Earth,Mars,Jupiter,Venus,c\n'
    (tmp_path / "mmlu.csv").write_text(body)
    (tmp_path / "mmlu_h.csv").write_text("question,A,B,C,D,answer\n" + body)
    for name in ("mmlu.csv", "mmlu_h.csv"):
        mcqs = load_mcqs(tmp_path / name)
        assert [q.answer for q in mcqs] == ["B", "C"]
        assert mcqs.questions[1].question == "Largest planet, by mass?"
    (tmp_path / "nokey.csv").write_text("What is 2+2?,3,4,5,6\n")
    assert load_mcqs(tmp_path / "nokey.csv").questions[0].answer is None


def test_choices_list_with_integer_answer(tmp_path):
    write_jsonl(tmp_path / "c.jsonl", [{"question": "q?", "choices": ["w", "x", "y", "z"], "answer": 3,
                                        "subject": "astronomy"}])
    q = load_mcqs(tmp_path / "c.jsonl").questions[0]
    assert q.options == ("w", "x", "y", "z") and q.answer == "D" and q.topic == "astronomy"


def test_answer_key_by_id_and_by_position(tmp_path):
    public = [{k: r[k] for k in ("id", "question", "A", "B", "C", "D")} for r in rows()[:4]]
    write_jsonl(tmp_path / "pub.jsonl", public)
    key = [{"id": r["id"], "correct": r["correct"]} for r in reversed(rows()[:4])]
    write_jsonl(tmp_path / "key.jsonl", key)
    by_id = load_mcqs(tmp_path / "pub.jsonl", answer_key=tmp_path / "key.jsonl")
    assert [q.answer for q in by_id] == [r["correct"] for r in rows()[:4]]
    (tmp_path / "key.txt").write_text("A\nB\nC\nD\n")
    assert [q.answer for q in load_mcqs(tmp_path / "pub.jsonl", answer_key=tmp_path / "key.txt")] == list("ABCD")
    (tmp_path / "short.txt").write_text("A\nB\n")
    with pytest.raises(MCQError, match="short.txt: 2 answers for 4 questions"):
        load_mcqs(tmp_path / "pub.jsonl", answer_key=tmp_path / "short.txt")
    write_jsonl(tmp_path / "partial.jsonl", key[:3])
    with pytest.raises(MCQError, match="partial.jsonl: no answer for question id 'astro-001'"):
        load_mcqs(tmp_path / "pub.jsonl", answer_key=tmp_path / "partial.jsonl")


def test_hub_id_from_local_hub_cache(tmp_path):
    """A Hub id resolves through huggingface_hub's cache layout (offline: no network here)."""
    commit = "0c409d9" + "0" * 33
    repo = tmp_path / "hub" / "datasets--AstroMLab--Astrobench_MCQ_v1_Public"
    snap = repo / "snapshots" / commit / "data"
    snap.mkdir(parents=True)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text(commit)
    public = [{k: r[k] for k in ("question", "A", "B", "C", "D")} for r in rows()[:6]]
    pq.write_table(pa.Table.from_pylist(public), snap / "train-00000-of-00001.parquet")
    mcqs = load_mcqs("AstroMLab/Astrobench_MCQ_v1_Public", hub_cache=tmp_path / "hub", offline=True)
    assert len(mcqs) == 6 and not mcqs.keyed and mcqs.questions[2].question == public[2]["question"]
    with pytest.raises(MCQError, match="AstroMLab/absent: cannot load Hub dataset"):
        load_mcqs("AstroMLab/absent", hub_cache=tmp_path / "hub", offline=True)


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        (lambda r: r[2].pop("C"), r"bad.jsonl: row 3: option C is missing"),
        (lambda r: r[4].update(B="  "), r"bad.jsonl: row 5: option B is missing"),
        (lambda r: r[1].update(correct="E"), r"bad.jsonl: row 2: answer 'E' is not one of A, B, C, D"),
        (lambda r: r[6].update(id="astro-002"), r"bad.jsonl: row 7: duplicate id 'astro-002' \(also row 2\)"),
        (lambda r: r[0].update(question=""), r"bad.jsonl: row 1: the question is missing"),
        (lambda r: r[3].update(E="a fifth option"), r"bad.jsonl: row 4: option E given, but .* four options"),
        (lambda r: r[3].update(e="x", F="y"), r"bad.jsonl: row 4: option E, F given"),
    ],
)
def test_bad_rows_are_named(tmp_path, mutate, message):
    records = rows()
    mutate(records)
    write_jsonl(tmp_path / "bad.jsonl", records)
    with pytest.raises(MCQError, match=message):
        load_mcqs(tmp_path / "bad.jsonl")


def test_empty_missing_and_unsupported_files(tmp_path):
    for name in ("empty.jsonl", "empty.csv"):
        (tmp_path / name).write_text("\n")
        with pytest.raises(MCQError, match=f"{name}: empty file"):
            load_mcqs(tmp_path / name)
    with pytest.raises(MCQError, match="nowhere.jsonl: file does not exist"):
        load_mcqs(tmp_path / "nowhere.jsonl")
    (tmp_path / "q.xlsx").write_text("x")
    with pytest.raises(MCQError, match="q.xlsx: unsupported file type"):
        load_mcqs(tmp_path / "q.xlsx")
    (tmp_path / "broken.jsonl").write_text('{"question": "a"}\n{not json\n')
    with pytest.raises(MCQError, match="broken.jsonl: row 2: invalid JSON"):
        load_mcqs(tmp_path / "broken.jsonl")
    (tmp_path / "short.csv").write_text("q,a,b\n")
    with pytest.raises(MCQError, match="short.csv: row 1: expected question and 4 options"):
        load_mcqs(tmp_path / "short.csv")


def test_option_e_column_in_csv_and_unreadable_files_name_the_file(tmp_path):
    """An option-E column was dropped silently by eval and export-lm-eval; decode and nesting errors
    did not say which file."""
    (tmp_path / "five.csv").write_text("question,A,B,C,D,E,answer\nWhich?,a,b,c,d,e,A\n")
    with pytest.raises(MCQError, match=r"five.csv: row 1: option E given"):
        load_mcqs(tmp_path / "five.csv")
    (tmp_path / "latin.jsonl").write_bytes('{"question": "caf\u00e9?"}'.encode("latin-1"))
    with pytest.raises(MCQError, match=r"latin.jsonl: not UTF-8 text"):
        load_mcqs(tmp_path / "latin.jsonl")
    (tmp_path / "deep.json").write_text("[" * 100_000)
    with pytest.raises(MCQError, match=r"deep.json: JSON nested too deeply"):
        load_mcqs(tmp_path / "deep.json")
