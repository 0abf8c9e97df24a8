"""Export MCQs plus our base-token prompt as an lm-evaluation-harness task (tasks are data there too).

`lm_eval --model hf --tasks astromlab1 --include_path OUT` then scores exactly what `base-token`
scores: the same description, question layout, " A".."D" continuations, `first_n` few-shot
examples from the same file (the evaluated question excluded), accuracy = argmax log-likelihood.

The folder can be moved or shared: lm-eval hands `dataset_kwargs.data_files` to
`datasets.load_dataset`, which resolves a relative path against the working directory, not the
YAML. So the task loads its questions through `custom_dataset: !function <task>_data.load`
(lm-eval >= 0.4.8 imports such a module from the YAML's own folder), a five-line loader written
beside the YAML that reads the JSONL next to itself.
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


LOADER = '''"""Loads the questions of the lm-eval task `{task}` from {data_name} beside this file, so the task
folder can be moved. Written by `astrodata export-lm-eval`; lm-eval calls `load` (custom_dataset)."""
from pathlib import Path

import datasets


def load(**kwargs):
    return datasets.load_dataset("json", data_files={{"test": str(Path(__file__).with_name("{data_name}"))}})
'''


def lm_eval_command(task: str, out_dir: str | Path, model: str = "MODEL") -> str:
    """The command that runs an exported task."""
    return f"lm_eval --model hf --model_args pretrained={model} --tasks {task} --include_path {out_dir}"


def export_task(data: str | Path, out_dir: str | Path, *, task: str = "astromlab1", few_shot: int = 0,
                answer_key: str | Path | None = None, prompts_path: str | Path | None = None) -> Path:
    """Write `OUT/<task>.jsonl` (the questions), `OUT/<task>_data.py` (their loader) and
    `OUT/<task>.yaml` (the task); return the YAML path. No absolute path is written anywhere."""
    if not re.fullmatch(r"[A-Za-z0-9_-]+", task):
        raise ValueError(f"task name {task!r}: use letters, digits, _ and - only")
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
    (out / f"{task}_data.py").write_text(LOADER.format(task=task, data_name=data_file.name), encoding="utf-8")
    path = out / f"{task}.yaml"
    path.write_text(yaml.safe_dump(config, sort_keys=False, allow_unicode=True, width=10_000)
                    + f"custom_dataset: !function {task}_data.load\n", encoding="utf-8")
    return path
