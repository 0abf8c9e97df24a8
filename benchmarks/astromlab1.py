"""AstroMLab-1 evaluation: load the questions, score them with one method, write the run's files.

`evaluate()` is the stage's one entry function (the `astrodata eval` command is a shell over it).
It writes to `out_dir`:
- `predictions.jsonl`: per question `id`, `prediction`, `answer` (when keyed), `correct`,
  `probs` and `logprobs` per letter, `raw` generated text, `fallback`;
- `results.json`: accuracy with a 95% bootstrap interval, breakdowns by difficulty and topic,
  fallbacks, model, method, prompt and data hashes, questions per second;
- `submission.csv` (`id,answer`, the dataset's order) for a set without an answer key, which is
  what the AstroMLab maintainers score for the public release.
"""

from __future__ import annotations

import csv
import json
import time
from collections import defaultdict
from collections.abc import Sequence
from datetime import UTC, datetime
from importlib.metadata import version
from pathlib import Path
from typing import Any

import numpy as np

from astrodata.core.mcq import MCQ, load_mcqs

from .backends import load_backend
from .methods import Prediction, Prompts, run_method

BOOTSTRAP_SAMPLES = 2000


def bootstrap_ci(correct: Sequence[bool], samples: int = BOOTSTRAP_SAMPLES, seed: int = 0) -> list[float]:
    """95% percentile bootstrap interval of the accuracy (resampling questions)."""
    values = np.asarray(correct, dtype=float)
    rng = np.random.default_rng(seed)
    means = values[rng.integers(0, len(values), size=(samples, len(values)))].mean(axis=1)
    return [float(np.percentile(means, 2.5)), float(np.percentile(means, 97.5))]


def _breakdown(questions: Sequence[MCQ], correct: Sequence[bool], attr: str) -> dict[str, dict[str, Any]]:
    groups: dict[str, list[bool]] = defaultdict(list)
    for q, ok in zip(questions, correct, strict=True):
        value = getattr(q, attr)
        if value is not None:
            groups[value].append(ok)
    return {k: {"n": len(v), "accuracy": sum(v) / len(v)} for k, v in sorted(groups.items())}


def summarize(questions: Sequence[MCQ], preds: Sequence[Prediction]) -> dict[str, Any]:
    """Accuracy, its interval and breakdowns (keyed sets); counts of fallbacks and unanswered questions."""
    summary: dict[str, Any] = {
        "n_questions": len(questions),
        "fallbacks": sum(p.fallback for p in preds),
        "unanswered": sum(p.prediction is None for p in preds),
        "keyed": all(q.answer is not None for q in questions),
    }
    if not summary["keyed"]:
        return {**summary, "accuracy": None, "ci95": None, "n_correct": None}
    correct = [p.prediction == q.answer for q, p in zip(questions, preds, strict=True)]
    return {
        **summary,
        "accuracy": sum(correct) / len(correct),
        "ci95": bootstrap_ci(correct),
        "n_correct": sum(correct),
        "by_difficulty": _breakdown(questions, correct, "difficulty"),
        "by_topic": _breakdown(questions, correct, "topic"),
    }


def evaluate(
    data: str | Path,
    model: str,
    method: str,
    out_dir: str | Path,
    *,
    dtype: str = "float32",
    batch_size: int = 8,
    endpoint: str | None = None,
    answer_key: str | Path | None = None,
    few_shot: int = 0,
    limit: int | None = None,
    max_new_tokens: int = 256,
    prompts_path: str | Path | None = None,
    backend: Any = None,
) -> dict[str, Any]:
    """Evaluate `model` on the MCQs in `data` with `method`; returns what results.json holds.

    `backend` lets callers reuse a loaded model across runs (tests, the speed benchmark).
    """
    mcqs = load_mcqs(data, answer_key=answer_key)
    questions = mcqs.questions[:limit] if limit else mcqs.questions
    prompts = Prompts.load(prompts_path)
    if backend is None:
        backend = load_backend(model, endpoint=endpoint, dtype=dtype, concurrency=batch_size)
    start = time.perf_counter()
    preds = run_method(method, questions, backend, prompts, few_shot=few_shot, batch_size=batch_size,
                       max_new_tokens=max_new_tokens, pool=mcqs.questions)
    elapsed = time.perf_counter() - start

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    with (out / "predictions.jsonl").open("w", encoding="utf-8") as fh:
        for q, p in zip(questions, preds, strict=True):
            row = {"id": p.id, "prediction": p.prediction, "answer": q.answer,
                   "correct": None if q.answer is None else p.prediction == q.answer,
                   "probs": p.probs, "logprobs": p.logprobs, "raw": p.raw, "fallback": p.fallback}
            fh.write(json.dumps(row, ensure_ascii=False) + "\n")
    results = {
        "benchmark": "AstroMLab-1",
        "method": method,
        **backend.describe(),
        "model": model,
        "data": str(data),
        "data_hash": mcqs.data_hash,
        "answer_key": str(answer_key) if answer_key else None,
        "few_shot": few_shot,
        "limit": limit,
        "batch_size": batch_size,
        "max_new_tokens": max_new_tokens if method == "generate" else None,
        "prompt_file": prompts.path.name,
        "prompt_hash": prompts.sha256,
        **summarize(questions, preds),
        "elapsed_s": round(elapsed, 3),
        "questions_per_s": round(len(questions) / elapsed, 3) if elapsed > 0 else None,
        "created": datetime.now(UTC).isoformat(timespec="seconds"),
        "astrodata_version": version("astrodata"),
    }
    if not results["keyed"]:
        with (out / "submission.csv").open("w", newline="", encoding="utf-8") as fh:
            writer = csv.writer(fh)
            writer.writerow(["id", "answer"])
            writer.writerows((p.id, p.prediction or "") for p in preds)
        results["submission"] = "submission.csv"
    (out / "results.json").write_text(json.dumps(results, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    return results
