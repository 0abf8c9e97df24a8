"""The judge: grades each generated pair 1-5 on correctness, stand-alone, pertinence and overall.

The judge sees the passage the pair came from, so correctness is checked against the source and
not against the judge's own knowledge. It may be another model (or endpoint) than the generator;
a pair is kept when its overall grade reaches the recipe's threshold.
"""

from __future__ import annotations

from typing import Any

from astrodata.qa.backends import Backend
from astrodata.qa.engine import Job
from astrodata.qa.recipe import JudgeSettings
from astrodata.qa.tasks import Grade, load_prompt


def judge_job(backend: Backend, item_id: str, question: str, answer: str, passage: str,
              settings: JudgeSettings) -> Job:
    """The grading request for one pair (the passage is cut to `passage_chars`)."""
    messages = load_prompt("judge").messages(passage=passage[:settings.passage_chars], question=question,
                                             answer=answer)
    return Job(backend, "grade", item_id, messages, Grade, settings.max_tokens)


def grade_fields(grade: Grade, judge: str) -> dict[str, Any]:
    """The item columns a grade fills."""
    return {"grade": grade.overall, "scores": grade.model_dump(), "judge": judge}


def passes(grade: Grade, threshold: int) -> bool:
    return grade.overall >= threshold
