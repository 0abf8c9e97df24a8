"""AstroMLab-1 evaluator on the real embedded SmolLM2: methods, batching, outputs, report, CLI errors."""

from __future__ import annotations

import csv
import hashlib
import json

import pytest
from conftest import FIXTURES
from lm_eval_yaml import load_lm_eval_yaml
from PIL import Image
from typer.testing import CliRunner

from astrodata.cli import app
from astrodata.core.mcq import load_mcqs
from astrodata.core.models import embedded_model_path
from benchmarks.astromlab1 import bootstrap_ci, evaluate
from benchmarks.general import LmEvalMissing, fold_lm_eval, lm_eval_command, run_general
from benchmarks.lm_eval_export import export_task
from benchmarks.methods import DEFAULT_PROMPTS, Prompts, base_context, chat, extract_letter, shots_for
from benchmarks.report import build_report, parse_costs

KEYED = FIXTURES / "mcq" / "astro_keyed.jsonl"
LM_EVAL_RESULTS = FIXTURES / "lm_eval" / "results_astromlab1.json"


@pytest.fixture(scope="session")
def backend(embedded_model):
    from benchmarks.backends import HFBackend

    return HFBackend(str(embedded_model), dtype="float32")


@pytest.fixture(scope="session")
def three_runs(backend, tmp_path_factory):
    """One run per method on a few questions (generation is slow on CPU: 2 questions, short replies)."""
    root = tmp_path_factory.mktemp("runs")
    runs = {}
    for method, limit in (("base-token", 6), ("instruct-token", 4), ("generate", 2)):
        runs[method] = evaluate(KEYED, "embedded", method, root / method, limit=limit, backend=backend,
                                max_new_tokens=24, batch_size=4)
    return root, runs


def read_jsonl(path):
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_batch_size_one_and_eight_agree(backend):
    """Right padding + per-row positions + the shared-prefix cache give the same numbers as one at a time."""
    questions = load_mcqs(KEYED).questions[:4]
    prompts = Prompts.load()
    contexts = [base_context(q, [], prompts) for q in questions]
    letters = [" A", " B", " C", " D"]
    alone = backend.score_letters(contexts, letters, batch_size=1, groups=list(range(len(contexts))))
    batched = backend.score_letters(contexts, letters, batch_size=8)
    assert backend._shared_prefix([(backend.encode(c), [(0, [(5, 0)])], 0) for c in contexts]) == 0
    for a, b in zip(alone, batched, strict=True):
        assert max(abs(x - y) for x, y in zip(a, b, strict=True)) < 1e-4
    assert len({tuple(round(x, 3) for x in row) for row in alone}) == len(alone)  # real, distinct scores


def test_three_methods_write_predictions_and_results(three_runs):
    root, runs = three_runs
    data_hash = load_mcqs(KEYED).data_hash
    prompt_hash = hashlib.sha256(DEFAULT_PROMPTS.read_bytes()).hexdigest()
    for method, r in runs.items():
        preds = read_jsonl(root / method / "predictions.jsonl")
        assert len(preds) == r["n_questions"]
        assert r["method"] == method and r["data_hash"] == data_hash and r["prompt_hash"] == prompt_hash
        assert r["ci95"][0] <= r["accuracy"] <= r["ci95"][1]
        assert r["n_correct"] == sum(p["correct"] for p in preds)
        assert r["fallbacks"] == sum(p["fallback"] for p in preds)
        assert r["questions_per_s"] > 0 and r["dtype"] == "float32"
        assert set(r["by_difficulty"]) <= {"easy", "medium", "hard"} and r["by_topic"]
        for p in preds:
            assert p["prediction"] in "ABCD" and abs(sum(p["probs"].values()) - 1) < 1e-6
            assert p["prediction"] == max(p["probs"], key=p["probs"].get) or p["raw"]
    generated = read_jsonl(root / "generate" / "predictions.jsonl")
    assert all(p["raw"] for p in generated)
    for p in generated:  # a letter found in the text wins; otherwise the token scores decide (fallback)
        assert p["fallback"] == (extract_letter(p["raw"]) is None)


def test_report_markdown_html_and_plot(three_runs, tmp_path):
    root, runs = three_runs
    paths = build_report([root / m / "results.json" for m in runs] + [LM_EVAL_RESULTS], tmp_path / "report",
                         costs=parse_costs(["embedded=0.002", "GPT-4o=0.75"]))
    md = paths["markdown"].read_text()
    assert "| **embedded (base-token)** | ours |" in md and "| AstroSage-Llama-3.1-8B | published | 80.9 |" in md
    assert "General benchmarks" in md and "astromlab1" in md
    assert "<table>" in paths["html"].read_text()
    with Image.open(paths["png"]) as img:
        assert img.size[0] > 800 and len(img.getcolors(1 << 16) or []) > 10
    assert paths["svg"].read_text().lstrip().startswith("<?xml")
    with pytest.raises(ValueError, match="expected LABEL=USD"):
        parse_costs(["GPT-4o"])
    with pytest.raises(ValueError, match="expected LABEL=USD"):
        parse_costs(["GPT-4o=-1"])


def test_keyless_set_gets_a_submission_in_dataset_order(backend, tmp_path):
    rows = [json.loads(line) for line in KEYED.read_text().splitlines()[:3]]
    public = tmp_path / "public.jsonl"
    public.write_text("".join(json.dumps({k: r[k] for k in ("question", "A", "B", "C", "D")}) + "\n" for r in rows))
    r = evaluate(public, "embedded", "base-token", tmp_path / "out", backend=backend)
    assert r["accuracy"] is None and r["keyed"] is False
    with (tmp_path / "out" / "submission.csv").open() as fh:
        sub = list(csv.reader(fh))
    preds = read_jsonl(tmp_path / "out" / "predictions.jsonl")
    assert sub == [["id", "answer"], *[[str(i), p["prediction"]] for i, p in enumerate(preds)]]


def test_extract_letter():
    assert extract_letter('{"ANSWER": "c", "EXPLANATION": "x"}') == "C"
    assert extract_letter("I think the answer is (B).") == "B"
    assert extract_letter("  D ") == "D"
    assert extract_letter("C: Chemical burning") == "C"
    assert extract_letter("A black hole") is None
    assert extract_letter("no idea") is None
    assert bootstrap_ci([True] * 10) == [1.0, 1.0]


def test_few_shot_examples_follow_lm_eval_first_n():
    qs = load_mcqs(KEYED).questions
    assert [s.id for s in shots_for(qs[1], qs, 2)] == ["astro-001", "astro-003"]
    assert [s.id for s in shots_for(qs[9], qs, 2)] == ["astro-001", "astro-002"]
    prompts = Prompts.load()
    context = base_context(qs[9], shots_for(qs[9], qs, 2), prompts)
    assert context.count("\nAnswer:") == 3 and "\nAnswer: A\n\n" in context
    messages = chat(qs[9], shots_for(qs[9], qs, 1), prompts)
    assert [m["role"] for m in messages] == ["system", "user", "assistant", "user"]
    assert json.loads(messages[2]["content"])["ANSWER"] == "A"


def test_lm_eval_export_renders_our_prompt(tmp_path):
    import jinja2

    path = export_task(KEYED, tmp_path / "task", few_shot=2)
    cfg = load_lm_eval_yaml(path)
    assert cfg["num_fewshot"] == 2 and cfg["fewshot_config"] == {"sampler": "first_n"}
    rows = read_jsonl(tmp_path / "task" / "astromlab1.jsonl")
    q = load_mcqs(KEYED).questions[4]
    rendered = cfg["description"] + jinja2.Template(cfg["doc_to_text"]).render(**rows[4])
    assert rendered == base_context(q, [], Prompts.load())
    assert cfg["doc_to_choice"][rows[4]["label"]] == q.answer
    public = tmp_path / "public.jsonl"
    public.write_text(json.dumps({"question": "q", "A": "a", "B": "b", "C": "c", "D": "d"}) + "\n")
    with pytest.raises(ValueError, match="needs an answer key"):
        export_task(public, tmp_path / "t2")


def test_general_benchmarks_fold_and_missing_lm_eval(tmp_path, monkeypatch):
    folded = fold_lm_eval(json.loads(LM_EVAL_RESULTS.read_text()))
    assert folded["scores"]["astromlab1"]["metric"] == "acc"
    assert 0 <= folded["scores"]["astromlab1"]["value"] <= 100
    monkeypatch.setenv("PATH", str(tmp_path))
    try:
        lm_eval_command()
    except LmEvalMissing as exc:
        assert "pip install" in str(exc)
        with pytest.raises(LmEvalMissing, match="not installed"):
            run_general("embedded", tmp_path / "g")
    else:
        pytest.skip("lm-eval is importable in this environment; the missing-tool message cannot be shown")
    with pytest.raises(LmEvalMissing, match="nope/lm_eval: lm_eval executable does not exist"):
        lm_eval_command(str(tmp_path / "nope" / "lm_eval"))


def _bad(tmp_path, name, mutate):
    rows = [json.loads(line) for line in KEYED.read_text().splitlines()[:4]]
    mutate(rows)
    path = tmp_path / name
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


@pytest.mark.parametrize(
    ("name", "mutate", "expected"),
    [
        ("missing.jsonl", lambda r: r[1].pop("D"), "missing.jsonl: row 2: option D is missing"),
        ("key.jsonl", lambda r: r[2].update(correct="F"), "key.jsonl: row 3: answer 'F' is not one of A, B, C, D"),
        ("dup.jsonl", lambda r: r[3].update(id="astro-001"), "dup.jsonl: row 4: duplicate id 'astro-001'"),
        ("empty.jsonl", lambda r: r.clear(), "empty.jsonl: empty file"),
    ],
)
def test_cli_bad_data_is_one_line_naming_the_row(tmp_path, name, mutate, expected):
    path = _bad(tmp_path, name, mutate)
    result = CliRunner().invoke(app, ["eval", "--data", str(path), "--model", "embedded", "--method", "base-token",
                                      "--out", str(tmp_path / "out")])
    assert result.exit_code == 1
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and expected in lines[0], result.output
    assert not (tmp_path / "out").exists()


def test_cli_missing_model_path_and_bad_method(tmp_path):
    runner = CliRunner()
    result = runner.invoke(app, ["eval", "--data", str(KEYED), "--model", str(tmp_path / "no-model"),
                                 "--method", "base-token", "--out", str(tmp_path / "out")])
    assert result.exit_code == 1 and f"{tmp_path / 'no-model'}: model path does not exist" in result.output
    assert len(result.output.strip().splitlines()) == 1
    result = runner.invoke(app, ["report", str(tmp_path / "none.json"), "--out", str(tmp_path / "r")])
    assert result.exit_code == 1 and "none.json: results file does not exist" in result.output


def test_cli_eval_then_report(tmp_path, embedded_model):
    runner = CliRunner()
    result = runner.invoke(app, ["eval", "--data", str(KEYED), "--model", "embedded", "--method", "base-token",
                                 "--limit", "3", "--out", str(tmp_path / "run")])
    assert result.exit_code == 0, result.output
    assert "eval: 3 questions, accuracy" in result.output
    results = json.loads((tmp_path / "run" / "results.json").read_text())
    # float32 asked (eval's default): the float32 conversion, not the bf16 weights cast up
    assert results["model_path"] == str(embedded_model_path("float32")) and results["n_questions"] == 3
    result = runner.invoke(app, ["report", str(tmp_path / "run" / "results.json"), "--out", str(tmp_path / "rep"),
                                 "--cost", "embedded=0.001"])
    assert result.exit_code == 0, result.output
    assert (tmp_path / "rep" / "score_vs_cost.png").stat().st_size > 10_000
