"""Tasks: versioned prompt templates (data files in `prompts/`), pydantic output schemas, passages.

A task is a template plus the schema its reply must satisfy. The template's `version` is stored
on every item and is part of each request, so a change of wording never mixes with cached
replies to the old one. String bounds are part of the schema: the embedded backend constrains
generation to them (unbounded strings let a small model ramble past max_tokens and come back
truncated), and every endpoint reply is validated against them.

Metadata tasks need no LLM: they fill templates from the catalog's `papers` table.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from string import Template
from typing import Annotated, Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, StringConstraints, create_model

PROMPTS_DIR = Path(__file__).resolve().parent / "prompts"


@dataclass(frozen=True)
class PromptTemplate:
    """One prompt: system text, user template, and worked examples shown before the request."""

    name: str
    version: str
    system: str | None
    user: str
    examples: tuple[tuple[str, str], ...] = ()
    item_user: str | None = None  # the user turn stored in the SFT item, when it differs

    def messages(self, **fields: Any) -> list[dict[str, str]]:
        """The chat messages for one request (unknown placeholders are errors)."""
        msgs = [{"role": "system", "content": self.system}] if self.system else []
        for user, assistant in self.examples:
            msgs += [{"role": "user", "content": user}, {"role": "assistant", "content": assistant}]
        msgs.append({"role": "user", "content": Template(self.user).substitute(fields)})
        return msgs


@cache
def load_prompt(name: str) -> PromptTemplate:
    """Read `prompts/<name>.yaml`."""
    data = yaml.safe_load((PROMPTS_DIR / f"{name}.yaml").read_text())
    return PromptTemplate(
        name=data["name"], version=str(data["version"]), system=data.get("system"), user=data["user"],
        examples=tuple((e["user"], e["assistant"]) for e in data.get("examples") or ()),
        item_user=data.get("item_user"),
    )


@cache
def metadata_templates() -> tuple[str, dict[str, dict[str, Any]]]:
    """(version, {task: {needs, user, assistant}}) from `prompts/metadata.yaml`."""
    data = yaml.safe_load((PROMPTS_DIR / "metadata.yaml").read_text())
    return str(data["version"]), data["tasks"]


# -- output schemas -------------------------------------------------------------------------------
class _Reply(BaseModel):
    """Extra keys in a reply are ignored (weak models add some), missing or wrong ones are errors."""

    model_config = ConfigDict(extra="ignore")


@cache
def qa_schema(k: int, max_question: int, max_answer: int) -> type[BaseModel]:
    """`{"pairs": [{"question", "answer"}]}` with 1..k pairs and bounded strings."""
    pair = create_model(
        "QAPair", __base__=_Reply,
        question=(Annotated[str, StringConstraints(strip_whitespace=True, min_length=10, max_length=max_question)], ...),
        answer=(Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=max_answer)], ...),
    )
    return create_model("QAPairs", __base__=_Reply, pairs=(list[pair], Field(min_length=1, max_length=k)))


@cache
def summary_schema(max_chars: int) -> type[BaseModel]:
    return create_model(
        "Summary", __base__=_Reply,
        summary=(Annotated[str, StringConstraints(strip_whitespace=True, min_length=20, max_length=max_chars)], ...),
    )


Score = Literal[1, 2, 3, 4, 5]


class Grade(_Reply):
    """The judge's scores, 1 (bad) to 5 (excellent)."""

    correctness: Score
    standalone: Score
    pertinence: Score
    overall: Score


# -- passages -------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Passage:
    doc_id: str
    index: int
    start: int  # character span in the corpus document's text
    end: int
    text: str

    @property
    def passage_id(self) -> str:
        return f"{self.doc_id}#p{self.index:04d}"


_SPACE = re.compile(r"\s+")
_BREAKS = (re.compile(r"\n\s*\n"), re.compile(r"(?<=[.!?])\s+"), _SPACE)


def _cut(text: str, start: int, limit: int) -> int:
    """The best end for a passage starting at `start`: a paragraph break, else a sentence end,
    else a space, in the second half of the window; the hard limit when there is none."""
    if limit >= len(text):
        return len(text)
    lo = start + (limit - start) // 2
    for pattern in _BREAKS:
        ends = [m.start() for m in pattern.finditer(text, lo, limit)]
        if ends:
            return ends[-1]
    return limit


def split_passages(doc_id: str, text: str, size: int, overlap: int, min_chars: int) -> list[Passage]:
    """Windows of about `size` characters cut at natural breaks, each overlapping the previous one
    by about `overlap` characters (starting on a word); a tail shorter than `min_chars` is merged
    into the last passage. Spans index the original text, surrounding whitespace trimmed."""
    passages: list[Passage] = []
    start = len(text) - len(text.lstrip())
    while start < len(text):
        end = _cut(text, start, start + size)
        if len(text[end:].strip()) < min_chars:
            end = len(text)
        s = start + len(text[start:end]) - len(text[start:end].lstrip())
        e = end - (len(text[start:end]) - len(text[start:end].rstrip()))
        if e > s:
            passages.append(Passage(doc_id, len(passages), s, e, text[s:e]))
        if end >= len(text):
            break
        nxt = end
        if overlap:
            m = _SPACE.search(text, max(end - overlap, start + 1), end)
            nxt = m.end() if m else end
        while nxt < len(text) and text[nxt].isspace():
            nxt += 1
        start = nxt
    return passages


def abstract_of(text: str, title: str | None) -> str | None:
    """The corpus convention puts `# Title` then the abstract as the first paragraph; return that
    paragraph when the document starts so (used when the catalog has no abstract)."""
    m = re.match(r"\s*#\s+([^\n]+)\n\s*\n(.+?)(?:\n\s*\n|$)", text, re.S)
    if not m or m.group(2).lstrip().startswith("#"):
        return None
    if title and m.group(1).strip().lower() != title.strip().lower():
        return None
    return m.group(2).strip()


# -- metadata tasks ---------------------------------------------------------------------------------
def _authors(authors: list[str]) -> str:
    if len(authors) <= 3:
        return " and ".join([", ".join(authors[:-1]), authors[-1]]) if len(authors) > 1 else authors[0]
    return f"{', '.join(authors[:3])} and {len(authors) - 3} other authors"


def metadata_fields(title: str | None, arxiv_id: str | None, paper: dict[str, Any] | None) -> dict[str, str]:
    """The template fields known for one paper: from its catalog row when there is one, else the
    corpus row's title and arXiv id only (unknown fields stay absent, so their tasks are skipped)."""
    paper = paper or {}
    fields: dict[str, str] = {}
    title = (paper.get("title") or title or "").strip()
    title = re.sub(r"\s+", " ", title)
    if title:
        fields["title"] = title
    if arxiv_id:
        fields["arxiv_id"] = arxiv_id
    authors = [a for a in (paper.get("authors") or []) if a and a.strip()]
    if authors:
        fields["authors"] = _authors(authors)
        fields["authors_short"] = authors[0] + (" et al." if len(authors) > 1 else "")
    published = paper.get("published")
    if published:
        fields["year"] = str(published)[:4]
    fields["year_suffix"] = f" ({fields['year']})" if "year" in fields else ""
    category = paper.get("primary_category") or (paper.get("categories") or [None])[0]
    if category:
        fields["category"] = category
    abstract = re.sub(r"\s+", " ", paper.get("abstract") or "").strip()
    first = re.split(r"(?<=[.!?])\s", abstract, maxsplit=1)[0] if abstract else ""
    if 40 <= len(first) <= 400:
        fields["first_sentence"] = first
    return fields


def metadata_pairs(fields: dict[str, str]) -> list[tuple[str, str, str]]:
    """(task, question, answer) for every metadata task whose fields are all known."""
    _, tasks = metadata_templates()
    out = []
    for name, t in tasks.items():
        if all(fields.get(n) for n in t["needs"]):
            out.append((name, Template(t["user"]).substitute(fields), Template(t["assistant"]).substitute(fields)))
    return out
