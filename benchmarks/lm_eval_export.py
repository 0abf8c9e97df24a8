"""Export MCQs plus our base-token prompt as an lm-evaluation-harness task (tasks are data there too).

`lm_eval --model hf --tasks astromlab1 --include_path OUT` then scores exactly what `base-token`
scores: the same description, question layout, " A".."D" continuations, `first_n` few-shot
examples from the same file (the evaluated question excluded), accuracy = argmax log-likelihood.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import yaml

from astrodata.core.mcq import LETTERS, load_mcqs

from .methods import Prompts


def to_jinja(template: str) -> str:
    """Our `{question}`/`{A}` placeholders as Jinja `{{question}}`/`{{A}}` (lm-eval's templates)."""
    return re.sub(r"\{(question|A|B|C|D)\}", r"{{\1}}", template)


def export_task(data: str | Path, out_dir: str | Path, *, task: str = "astromlab1", few_shot: int = 0,
                answer_key: str | Path | None = None, prompts_path: str | Path | None = None) -> Path:
    """Write `OUT/<task>.jsonl` (the questions) and `OUT/<task>.yaml` (the task); return the YAML path."""
    mcqs = load_mcqs(data, answer_key=answer_key)
    if not mcqs.keyed:
        raise ValueError(f"{data}: lm-evaluation-harness needs an answer key (pass --answer-key)")
    prompts = Prompts.load(prompts_path)
    out = Path(out_dir).resolve()
    out.mkdir(parents=True, exist_ok=True)
    data_file = out / f"{task}.jsonl"
    with data_file.open("w", encoding="utf-8") as fh:
        for q in mcqs:
            row = {"id": q.id, "question": q.question, **dict(zip(LETTERS, q.options, strict=True)),
                   "answer": q.answer, "label": LETTERS.index(q.answer)}
            fh.write(json.dumps(row, ensure_ascii=False) + "\n")
    base = prompts.base
    config = {
        "task": task,
        "dataset_path": "json",
        "dataset_kwargs": {"data_files": {"test": str(data_file)}},
        "test_split": "test",
        "fewshot_split": "test",
        "fewshot_config": {"sampler": "first_n"},
        "num_fewshot": few_shot,
        "output_type": "multiple_choice",
        "description": base["description"],
        "doc_to_text": to_jinja(base["question"]),
        "doc_to_choice": list(LETTERS),
        "doc_to_target": "label",
        "target_delimiter": base["target_delimiter"],
        "fewshot_delimiter": base["fewshot_delimiter"],
        "metric_list": [{"metric": "acc", "aggregation": "mean", "higher_is_better": True}],
        "metadata": {"version": 1.0, "prompt_sha256": prompts.sha256, "data_sha256": mcqs.data_hash},
    }
    path = out / f"{task}.yaml"
    path.write_text(yaml.safe_dump(config, sort_keys=False, allow_unicode=True, width=10_000), encoding="utf-8")
    return path
