"""The three AstroMLab scoring methods, written once over any backend (`benchmarks.backends`).

- `base-token`: the MMLU prompt ending in `Answer:`; each letter is scored as the continuation
  " A" .. " D" exactly as lm-evaluation-harness scores MMLU; the prediction is the argmax.
- `instruct-token`: the chat template plus the AstroMLab-style prompt; the letter right after
  `{"ANSWER": "` at the start of the reply is scored.
- `generate`: the model writes its reply; the letter is extracted (JSON field, "the answer is X",
  a lone letter); when nothing is found, the instruct-token scores decide and the question counts
  as a fallback.
Endpoints without log-probabilities fall back to generated text for the token methods.
"""

from __future__ import annotations

import hashlib
import math
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from astrodata.core.mcq import LETTERS, MCQ

from .backends import NoLogprobs

METHODS = ("base-token", "instruct-token", "generate")
PROMPTS_DIR = Path(__file__).parent / "prompts"
DEFAULT_PROMPTS = PROMPTS_DIR / "astromlab1.yaml"


@dataclass(frozen=True)
class Prompts:
    """The prompt data file and its sha256 (recorded with every result)."""

    path: Path
    sha256: str
    base: dict[str, str]
    instruct: dict[str, str]

    @classmethod
    def load(cls, path: str | Path | None = None) -> Prompts:
        path = Path(path) if path else DEFAULT_PROMPTS
        raw = path.read_bytes()
        data = yaml.safe_load(raw)
        missing = [k for k in ("base", "instruct") if not isinstance(data, dict) or k not in data]
        if missing:
            raise ValueError(f"prompt file {path}: missing {', '.join(missing)} (see {DEFAULT_PROMPTS})")
        return cls(path=path, sha256=hashlib.sha256(raw).hexdigest(), base=data["base"], instruct=data["instruct"])


@dataclass
class Prediction:
    """One question's outcome; `logprobs` are per letter A-D (None when the backend gave none)."""

    id: str
    prediction: str | None
    logprobs: list[float] | None = None
    raw: str | None = None
    fallback: bool = False

    @property
    def probs(self) -> dict[str, float] | None:
        """Letter probabilities normalised over the four letters."""
        if self.logprobs is None or all(math.isinf(v) for v in self.logprobs):
            return None
        top = max(self.logprobs)
        weights = [math.exp(v - top) for v in self.logprobs]
        return {letter: w / sum(weights) for letter, w in zip(LETTERS, weights, strict=True)}


def fill(template: str, q: MCQ, **extra: str) -> str:
    """Replace {question} {A}..{D} (and extras) literally: no str.format, so braces in text are safe."""
    values = {"question": q.question, **dict(zip(LETTERS, q.options, strict=True)), **extra}
    return re.sub(r"\{(\w+)\}", lambda m: values.get(m.group(1), m.group(0)), template)


def shots_for(q: MCQ, pool: Sequence[MCQ], k: int) -> list[MCQ]:
    """lm-evaluation-harness's `first_n` sampler: the first k questions of the file other than q."""
    if k <= 0:
        return []
    if any(s.answer is None for s in pool[:k + 1]):
        raise ValueError("few-shot examples need an answer key (the first questions have none)")
    return [s for s in pool[:k + 1] if s.id != q.id][:k]


def base_context(q: MCQ, shots: Sequence[MCQ], prompts: Prompts) -> str:
    p = prompts.base
    examples = "".join(
        fill(p["question"], s) + p["target_delimiter"] + s.answer + p["fewshot_delimiter"] for s in shots
    )
    return p["description"] + examples + fill(p["question"], q)


def chat(q: MCQ, shots: Sequence[MCQ], prompts: Prompts) -> list[dict[str, str]]:
    p = prompts.instruct
    messages = [{"role": "system", "content": p["system"]}] if p.get("system") else []
    for s in shots:
        reply = fill(p["shot_reply"], s, letter=s.answer, explanation=(s.explanation or "").replace('"', "'"))
        messages += [{"role": "user", "content": fill(p["user"], s)}, {"role": "assistant", "content": reply}]
    return messages + [{"role": "user", "content": fill(p["user"], q)}]


_JSON_ANSWER = re.compile(r"""["']?answer["']?\s*:\s*["']\s*\(?([A-Da-d])\)?\s*["']|"""
                          r"""["']answer["']\s*:\s*\(?([A-D])\b""", re.IGNORECASE)
# "answer is (D)", "Answer: b", "option c", "correct choice is C": keyword, separator, letter
_KEYWORD = re.compile(r"(?i:answer|option|choice)\s*(?P<sep>is|would be|:|=|-)?\s*(?P<open>[*(\[\"']*)"
                      r"(?P<letter>[A-Da-d])(?![A-Za-z0-9])")
_LONE = re.compile(r"^\W*([A-Da-d])\W*$")
_LEADING = re.compile(r"^[\s*(\[]*([A-Da-d])\s*[:.)\]]")
_CHOOSE = re.compile(r"(?i:\b(?:choose|pick|select|go with))\s+\(?([A-D])(?![A-Za-z0-9])")
_ARTICLE_NEXT = re.compile(r"\s+[a-z]")


def extract_letter(text: str) -> str | None:
    """The option letter a careful reader takes from a reply, in any case; None when the reply
    names no option (the caller counts that as a fallback, it never guesses).

    In order: a JSON `ANSWER` field; a letter after "answer", "option" or "choice" ("The correct
    answer is (D).", "Option c: ..."); a reply that is only a letter or opens with one
    ("(c) the ...", "C: ..."); "I choose B". An English article is never a letter: "a"/"A"
    followed by a word ("The answer is a neutron star", "A neutron star is ...") is skipped
    unless it follows "answer:" or sits in brackets or quotes."""
    text = text.strip()
    m = _JSON_ANSWER.search(text)
    if m:
        return (m.group(1) or m.group(2)).upper()
    for m in _KEYWORD.finditer(text):
        letter = m.group("letter")
        article = letter in "aA" and _ARTICLE_NEXT.match(text, m.end()) is not None
        if article and m.group("sep") != ":" and not m.group("open"):
            continue
        return letter.upper()
    for pattern in (_LONE, _LEADING, _CHOOSE):
        m = pattern.search(text)
        if m:
            return m.group(1).upper()
    return None


def _argmax(scores: Sequence[float]) -> str | None:
    if all(math.isinf(v) and v < 0 for v in scores):
        return None
    return LETTERS[max(range(len(scores)), key=lambda i: (scores[i], -i))]


def run_method(method: str, questions: Sequence[MCQ], backend: Any, prompts: Prompts, *,
               few_shot: int = 0, batch_size: int = 8, max_new_tokens: int = 256,
               pool: Sequence[MCQ] | None = None) -> list[Prediction]:
    """Score `questions` with one method; few-shot examples come from `pool` (default: the questions)."""
    if method not in METHODS:
        raise ValueError(f"method {method!r} is not one of {', '.join(METHODS)}")
    pool = list(pool if pool is not None else questions)
    shots = [shots_for(q, pool, few_shot) for q in questions]
    groups = [tuple(s.id for s in qs) for qs in shots]  # questions with the same examples share a prefix
    if method == "base-token":
        contexts = [base_context(q, qs, prompts) for q, qs in zip(questions, shots, strict=True)]
        continuations = [prompts.base["target_delimiter"] + letter for letter in LETTERS]
        try:
            scores = backend.score_letters(contexts, continuations, batch_size=batch_size, groups=groups)
        except NoLogprobs:
            texts = backend.generate_text(contexts, max_new_tokens=4, batch_size=batch_size)
            return [Prediction(q.id, extract_letter(t), None, t, fallback=True) for q, t in zip(questions, texts, strict=True)]
        return [Prediction(q.id, _argmax(s), s) for q, s in zip(questions, scores, strict=True)]

    chats = [chat(q, qs, prompts) for q, qs in zip(questions, shots, strict=True)]
    prefix = prompts.instruct["answer_prefix"]
    try:
        scores = backend.chat_letter_scores(chats, prefix, list(LETTERS), batch_size=batch_size, groups=groups)
    except NoLogprobs:
        scores = None
    if method == "instruct-token" and scores is not None:
        # an endpoint reply that did not open with the answer prefix has no scores: its text decides
        missing = [i for i, s in enumerate(scores) if s is None]
        texts = backend.generate_chat([chats[i] for i in missing], max_new_tokens=max_new_tokens,
                                      batch_size=batch_size) if missing else []
        replies = dict(zip(missing, texts, strict=True))
        return [Prediction(q.id, _argmax(s), s) if s is not None else
                Prediction(q.id, extract_letter(replies[i]), None, replies[i], fallback=True)
                for i, (q, s) in enumerate(zip(questions, scores, strict=True))]
    texts = backend.generate_chat(chats, max_new_tokens=max_new_tokens, batch_size=batch_size)
    out = []
    for i, (q, text) in enumerate(zip(questions, texts, strict=True)):
        letter = extract_letter(text)
        s = scores[i] if scores is not None else None
        if letter is None and s is not None:
            out.append(Prediction(q.id, _argmax(s), s, text, fallback=True))
        else:
            # an instruct-token run on an endpoint without logprobs also lands here: text is its fallback
            out.append(Prediction(q.id, letter, s, text, fallback=method == "instruct-token" or letter is None))
    return out
