"""Infinity-Instruct (and any ShareGPT-layout data) -> filtered chat items in `messages` form.

BAAI/Infinity-Instruct rows hold `conversations`, a list of `{"from", "value"}` turns, plus `id`,
`label` (ability tags) and `langdetect`. Roles map human -> user, gpt -> assistant, system ->
system. A row with any other role (function_call, observation, tool, ...) or with turns out of
order is rejected with its reason recorded; it is never merged into a neighbouring turn, which
would teach the model to answer tool output as if a person had said it.

Filters, in order: structure, language (the `langdetect` column when present, else py3langid on
the text), length, label include/exclude lists, exact duplicates of the first user turn
(`astrodata.core.textnorm`), and benchmark decontamination (`astrodata.corpus.decontam`).
"""

from __future__ import annotations

import json
import os
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq

from astrodata.core.textnorm import text_hash
from astrodata.corpus.decontam import Decontaminator
from astrodata.corpus.filters import language_score
from astrodata.qa.recipe import InstructSettings

ROLES = {"human": "user", "user": "user", "gpt": "assistant", "assistant": "assistant", "system": "system"}
LOCAL_SUFFIXES = (".parquet", ".jsonl", ".json")


class Rejected(ValueError):
    """A row that cannot become a chat example; the message is the recorded reason and
    `category` (role, structure, language, length, label, duplicate, benchmark) what it counts as."""

    def __init__(self, reason: str, category: str = "structure"):
        super().__init__(reason)
        self.category = category


def to_messages(conversations: Any) -> list[dict[str, str]]:
    """ShareGPT turns -> TRL messages: an optional system turn, then user/assistant alternating,
    ending with the assistant. Anything else raises `Rejected` with the first problem found."""
    if isinstance(conversations, str):
        try:
            conversations = json.loads(conversations)
        except json.JSONDecodeError:
            raise Rejected("conversations is a string that is not JSON") from None
    if not isinstance(conversations, list) or not conversations:
        raise Rejected("no conversation turns")
    messages: list[dict[str, str]] = []
    for i, turn in enumerate(conversations, 1):
        if not isinstance(turn, dict) or "from" not in turn or "value" not in turn:
            raise Rejected(f"turn {i}: not a {{from, value}} object")
        role = ROLES.get(str(turn["from"]).strip().lower())
        if role is None:
            raise Rejected(f"turn {i}: unsupported role {turn['from']!r} (only human, gpt and system map to chat roles)",
                           "role")
        text = turn["value"] if isinstance(turn["value"], str) else ""
        if not text.strip():
            raise Rejected(f"turn {i}: empty {turn['from']} text")
        if role == "system":
            if messages:
                raise Rejected(f"turn {i}: system turn after the conversation started")
        else:
            expected = "user" if not messages or messages[-1]["role"] in ("system", "assistant") else "assistant"
            if role != expected:
                raise Rejected(f"turn {i}: {turn['from']} where a {'human' if expected == 'user' else 'gpt'} turn was expected")
        messages.append({"role": role, "content": text})
    if messages[-1]["role"] != "assistant":
        raise Rejected("the conversation does not end with a gpt turn")
    return messages


def _local_files(path: Path) -> list[Path]:
    if path.is_dir():
        files = sorted(p for p in path.rglob("*") if p.suffix in LOCAL_SUFFIXES and not p.name.startswith("."))
        if not files:
            raise FileNotFoundError(f"instruct source {path}: no .parquet/.jsonl/.json files")
        return files
    if path.suffix not in LOCAL_SUFFIXES:
        raise ValueError(f"instruct source {path}: expected .parquet, .jsonl or .json")
    return [path]


def _read_file(path: Path) -> Iterator[dict[str, Any]]:
    if path.suffix == ".parquet":
        for batch in pq.ParquetFile(path).iter_batches(batch_size=1024):
            yield from batch.to_pylist()
    elif path.suffix == ".jsonl":
        with path.open(encoding="utf-8") as f:
            for line_no, line in enumerate(f, 1):
                if line.strip():
                    try:
                        yield json.loads(line)
                    except json.JSONDecodeError as exc:
                        raise ValueError(f"{path}: line {line_no}: not JSON ({exc.msg})") from None
    else:
        data = json.loads(path.read_text(encoding="utf-8"))
        if not isinstance(data, list):
            raise ValueError(f"{path}: expected a JSON list of rows")
        yield from data


def read_rows(source: str, subset: str | None = None, split: str = "train") -> Iterator[tuple[str, dict[str, Any]]]:
    """(row name, record) from a local Parquet/JSON/JSONL file or folder, else from the Hub
    (streamed with `datasets`, so the 7M rows are never held in memory)."""
    path = Path(source)
    if path.exists():
        for f in _local_files(path):
            for i, rec in enumerate(_read_file(f)):
                yield f"{f.name}:{i}", rec
        return
    if not source.count("/") == 1 or os.path.isabs(source):
        raise FileNotFoundError(f"instruct source {source}: no such file, folder or Hub dataset id")
    from datasets import load_dataset

    for i, rec in enumerate(load_dataset(source, subset, split=split, streaming=True)):
        yield f"{source}:{i}", rec


def _labels(record: dict[str, Any]) -> dict[str, list[str]]:
    label = record.get("label")
    if isinstance(label, str):
        try:
            label = json.loads(label)
        except json.JSONDecodeError:
            return {}
    if not isinstance(label, dict):
        return {}
    return {k: [str(x) for x in (v if isinstance(v, list) else [v])] for k, v in label.items() if v is not None}


def label_reason(record: dict[str, Any], s: InstructSettings) -> str | None:
    """Why the label filters drop this row, or None."""
    labels = _labels(record)
    for key, allowed in s.include_labels.items():
        if not set(labels.get(key, [])) & set(allowed):
            return f"label {key} has none of {allowed}"
    for key, banned in s.exclude_labels.items():
        hit = set(labels.get(key, [])) & set(banned)
        if hit:
            return f"label {key} has {sorted(hit)}"
    return None


def language_reason(record: dict[str, Any], text: str, s: InstructSettings) -> str | None:
    if not s.languages:
        return None
    detected = record.get("langdetect")
    if isinstance(detected, str) and detected:
        return None if detected in s.languages else f"language {detected} (langdetect column)"
    score = max(language_score(text[:5000], lang) for lang in s.languages)
    return None if score >= s.min_language_score else f"language score {score:.2f} < {s.min_language_score}"


def instruct_items(s: InstructSettings, decontaminator: Decontaminator | None, reject: Any,
                   counts: Counter[str]) -> Iterator[dict[str, Any]]:
    """Read, convert and filter the instruct source, yielding the kept items (QA layout fields).
    `reject(row_id, reason)` records each dropped row; `counts` collects the outcomes."""
    if not s.source:
        return
    seen: set[str] = set()
    generator = Path(s.source).name if Path(s.source).exists() else f"{s.source}:{s.subset or 'default'}"
    for name, record in read_rows(s.source, s.subset, s.split):
        if s.limit is not None and counts["read"] >= s.limit:
            break
        counts["read"] += 1
        row_id = str(record.get("id")) if record.get("id") is not None else name
        try:
            messages = to_messages(record.get("conversations"))
            text = "\n".join(m["content"] for m in messages)
            reason = language_reason(record, text, s)
            if reason:
                raise Rejected(reason, "language")
            if not s.min_chars <= len(text) <= s.max_chars:
                raise Rejected(f"length {len(text)} chars outside [{s.min_chars}, {s.max_chars}]", "length")
            reason = label_reason(record, s)
            if reason:
                raise Rejected(reason, "label")
            first_user = next(m["content"] for m in messages if m["role"] == "user")
            digest = text_hash(first_user)
            if s.dedup and digest in seen:
                raise Rejected("duplicate first user turn", "duplicate")
            if s.decontam and decontaminator is not None:
                found = decontaminator.matches(text)
                if found:
                    raise Rejected(f"benchmark overlap: {sorted(found)}", "benchmark")
        except Rejected as exc:
            counts[f"rejected_{exc.category}"] += 1
            reject(row_id, str(exc))
            continue
        seen.add(digest)
        counts["kept"] += 1
        yield {"id": f"instruct-{text_hash(generator + '|' + row_id)[:20]}", "kind": "instruct",
               "messages": messages, "source_id": row_id, "generator": generator}
