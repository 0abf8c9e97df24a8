"""The judge: grades each generated pair 1-5; a pair is kept when its grade reaches the threshold.

Two methods (recipe `judge.method`):

- `llm`: the judge model grades correctness, stand-alone, pertinence and overall 1-5 (prompt
  `judge`), seeing the passage the pair came from, so correctness is checked against the source
  and not against the judge's own knowledge. It may be another model (or endpoint) than the
  generator. Right for an 8B+ instruct judge.
- `grounding`: for the embedded SmolLM2-135M, whose 1-5 grades carry no signal (see
  `prompts/grounding.yaml` for what was measured). The pair is scored by how much the passage
  raises the model's likelihood of the answer (after the question) and of the question: the
  pointwise mutual information between passage and text, per token, in nats -
  mean_t [log p(x_t | passage, ...) - log p(x_t | ...)] - the measure van der Poel et al. use
  against hallucination in summaries ("Mutual Information Alleviates Hallucinations in
  Abstractive Summarization", EMNLP 2022). A pair copied from nowhere, a template with
  placeholders or an answer the passage does not support gains little from the passage. The
  lower of the two scores maps to the 1-5 grade through `GROUNDING_BOUNDS`.

`auto` picks `grounding` when the judge is the embedded model, `llm` otherwise.
"""

from __future__ import annotations

import re
from bisect import bisect_right
from dataclasses import dataclass
from functools import cache
from string import Template
from typing import Any

import yaml

from astrodata.qa.backends import Backend, EmbeddedBackend
from astrodata.qa.engine import Job
from astrodata.qa.recipe import JudgeSettings
from astrodata.qa.tasks import PROMPTS_DIR, Grade, load_prompt

# Grounding (nats per token) at which grades 2, 3, 4 and 5 begin: below 0 the passage makes the
# pair less likely (grade 1). Our choice, fitted on the 36 hand-labelled SmolLM2 pairs of
# prompts/grounding.yaml: at 0.5 (grade 4, the default threshold) 4 of 5 good pairs were kept and
# 3 of 23 junk ones; provisional until more pairs are labelled.
GROUNDING_BOUNDS = (0.0, 0.25, 0.5, 1.0)


# A question or answer is junk, whatever a judge says, when more than this share of its characters
# (whitespace aside) are neither letters nor digits: the bracket soup (`}]}]]}{}`) a small model
# writes when it cannot close a JSON string. Numbers, units and light LaTeX stay well below it.
MAX_SYMBOL_SHARE = 0.5
# Closing brackets of both kinds in a row (`}]`, `] }`): the JSON structure a small model writes
# inside a string it cannot close. Nested LaTeX groups close with `}}`, which is not matched.
_JSON_DEBRIS = re.compile(r"\}\s*\]|\]\s*\}")
# A placeholder left from a template, e.g. "[instrument]" or "[cite]" (lower-case words in
# brackets; "[Fe/H]" and "[O III]" are not placeholders).
_PLACEHOLDER = re.compile(r"\[[a-z][a-z ]*\]")


def pair_defect(question: str, answer: str) -> str | None:
    """Why a generated pair is junk before any judge sees it, or None."""
    for name, text in (("question", question), ("answer", answer)):
        chars = [c for c in text if not c.isspace()]
        symbols = sum(not c.isalnum() for c in chars)
        if chars and symbols / len(chars) > MAX_SYMBOL_SHARE:
            return f"{name} is {symbols / len(chars):.0%} symbols"
        if m := _PLACEHOLDER.search(text):
            return f"{name} holds the placeholder {m.group()}"
        if m := _JSON_DEBRIS.search(text):
            return f"{name} holds JSON debris {m.group()!r}"
    return None


def judge_method(settings: JudgeSettings, judge: Backend) -> str:
    """`llm` or `grounding` (ValueError: grounding asked of a judge that cannot score text)."""
    if settings.method == "auto":
        return "grounding" if isinstance(judge, EmbeddedBackend) else "llm"
    if settings.method == "grounding" and not isinstance(judge, EmbeddedBackend):
        raise ValueError("judge.method grounding needs the embedded judge (it reads the model's "
                         "log-likelihoods); use method llm with an endpoint")
    return settings.method


def judge_job(backend: Backend, item_id: str, question: str, answer: str, passage: str,
              settings: JudgeSettings) -> Job:
    """The LLM grading request for one pair (the passage is cut to `passage_chars`)."""
    messages = load_prompt("judge").messages(passage=passage[:settings.passage_chars], question=question,
                                             answer=answer)
    return Job(backend, "grade", item_id, messages, Grade, settings.max_tokens)


def grade_fields(grade: Grade, judge: str) -> dict[str, Any]:
    """The item columns an LLM grade fills."""
    return {"grade": grade.overall, "scores": grade.model_dump(), "judge": judge}


@dataclass(frozen=True)
class GroundingPrompt:
    version: str
    system: str
    templates: dict[str, dict[str, str]]  # scored text (answer | question) -> with | without -> user turn

    def messages(self, scored: str, side: str, **fields: str) -> list[dict[str, str]]:
        user = Template(self.templates[scored][side]).substitute(fields)
        return [{"role": "system", "content": self.system}, {"role": "user", "content": user}]


@cache
def grounding_prompt() -> GroundingPrompt:
    data = yaml.safe_load((PROMPTS_DIR / "grounding.yaml").read_text())
    return GroundingPrompt(str(data["version"]), data["system"],
                           {k: data[k] for k in ("answer", "question")})


async def grounding_fields(backend: EmbeddedBackend, question: str, answer: str, passage: str,
                           settings: JudgeSettings) -> dict[str, Any]:
    """The item columns a grounding grade fills: `grade` 1-5, `scores` with `answer_pmi` and
    `question_pmi` (nats per token), `judge` naming the model and the prompt version."""
    prompt = grounding_prompt()
    fields = {"passage": passage[:settings.passage_chars], "question": question}
    pairs = [(prompt.messages(scored, side, **fields), text)
             for scored, text in (("answer", answer), ("question", question)) for side in ("with", "without")]
    (a_with, n_a), (a_without, _), (q_with, n_q), (q_without, _) = await backend.loglikelihoods(pairs)
    answer_pmi = (a_with - a_without) / max(n_a, 1)
    question_pmi = (q_with - q_without) / max(n_q, 1)
    grade = 1 + bisect_right(GROUNDING_BOUNDS, min(answer_pmi, question_pmi))
    return {"grade": grade, "judge": f"{backend.name} ({prompt.version})",
            "scores": {"overall": grade, "answer_pmi": round(answer_pmi, 4), "question_pmi": round(question_pmi, 4)}}
