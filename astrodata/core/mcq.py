"""Four-option multiple-choice questions (AstroMLab-1, MMLU-style) loaded from one place.

The evaluator (`benchmarks`) scores these questions and decontamination (`astrodata.corpus.decontam`)
removes their text from training data, so both must read the very same files the same way.
Accepted inputs:

- a Hub dataset id (`AstroMLab/Astrobench_MCQ_v1_Public`): its data files are fetched with
  `huggingface_hub.snapshot_download` (or read from the local Hub cache when offline);
- a local Parquet, JSONL (or JSON list), or CSV file, or a folder of such files (e.g. a dataset
  saved in Hub layout, `data/*.parquet`), read in sorted file order;
- the public form (`question, A, B, C, D`, no key), the keyed form (`correct` or `answer` letter,
  optional `explanation`, `difficulty`, `topic`/`subject`, `paper_id`), MMLU-style CSV
  (`question, A, B, C, D, answer`, with or without a header) and `choices` lists with integer
  answers (the `cais/mmlu` layout);
- an optional separate answer-key file: a table with `answer`/`correct` (and `id`, matched by id,
  else by position) or a text file with one letter per line.

Errors are `MCQError`s that name the file and the 1-based row (record number after any header).
Only the standard library is needed, except `pyarrow` for Parquet and `huggingface_hub` for Hub ids.
"""

from __future__ import annotations

import csv
import hashlib
import json
import os
import re
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

LETTERS = ("A", "B", "C", "D")
EXTRA_OPTIONS = ("e", "f", "g", "h", "i", "j")  # columns of 5-10-option MCQs (MMLU-Pro has up to J)
DATA_SUFFIXES = (".parquet", ".jsonl", ".json", ".csv")
ID_COLUMNS = ("id", "question_id", "qid")
ANSWER_COLUMNS = ("correct", "answer")
TOPIC_COLUMNS = ("topic", "subject")
HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")


class MCQError(ValueError):
    """Bad MCQ input; the message names the file and, where it applies, the row."""


@dataclass(frozen=True)
class MCQ:
    """One question. `answer` is a letter A-D or None for keyless (public) sets."""

    id: str
    question: str
    options: tuple[str, str, str, str]
    answer: str | None = None
    explanation: str | None = None
    difficulty: str | None = None
    topic: str | None = None
    paper_id: str | None = None

    @property
    def text(self) -> str:
        """Question and options as one string (what decontamination looks for in training data)."""
        return "\n".join([self.question, *self.options])


@dataclass
class MCQSet:
    """Questions in the dataset's order plus where they came from."""

    source: str
    questions: list[MCQ] = field(default_factory=list)

    @property
    def keyed(self) -> bool:
        return all(q.answer is not None for q in self.questions)

    @property
    def data_hash(self) -> str:
        """sha256 of the questions' content (not the file bytes: CSV and Parquet of one set agree)."""
        digest = hashlib.sha256()
        for q in self.questions:
            digest.update(json.dumps(asdict(q), sort_keys=True, ensure_ascii=False).encode())
            digest.update(b"\n")
        return digest.hexdigest()

    def __len__(self) -> int:
        return len(self.questions)

    def __iter__(self):
        return iter(self.questions)


def load_mcqs(
    source: str | Path,
    answer_key: str | Path | None = None,
    *,
    hub_cache: str | Path | None = None,
    offline: bool | None = None,
) -> MCQSet:
    """Load and validate MCQs from a file, a folder or a Hub dataset id.

    `offline` (default: the `HF_HUB_OFFLINE` environment variable) reads a Hub id from the local
    Hub cache only (`hub_cache`, default the usual Hub cache).
    """
    files = _resolve_files(str(source), hub_cache, offline)
    questions: list[MCQ] = []
    seen: dict[str, tuple[Path, int]] = {}
    for path in files:
        for row_no, record in read_records(path):
            q = _to_mcq(record, path, row_no, default_id=str(len(questions)))
            if q.id in seen:
                first_path, first_row = seen[q.id]
                where = f"row {first_row}" if first_path == path else f"{first_path} row {first_row}"
                raise MCQError(f"{path}: row {row_no}: duplicate id {q.id!r} (also {where})")
            seen[q.id] = (path, row_no)
            questions.append(q)
    if not questions:
        raise MCQError(f"{source}: empty file (no questions)")
    mcqs = MCQSet(source=str(source), questions=questions)
    if answer_key is not None:
        apply_answer_key(mcqs, Path(answer_key))
    return mcqs


def apply_answer_key(mcqs: MCQSet, path: Path) -> None:
    """Fill `answer` from a key file: matched by `id` when the key has ids, otherwise by position."""
    if not path.exists():
        raise MCQError(f"{path}: answer-key file does not exist")
    if path.suffix.lower() == ".txt":
        lines = [line.strip() for line in path.read_text(encoding="utf-8").splitlines()]
        entries = [(None, i + 1, letter) for i, letter in enumerate(line for line in lines if line)]
    else:
        entries = []
        for row_no, record in read_records(path):
            record = {str(k).strip().lower(): v for k, v in record.items()}
            key_id = next((record[c] for c in ID_COLUMNS if _present(record.get(c))), None)
            answer = next((record[c] for c in ANSWER_COLUMNS if c in record), None)
            if answer is None:
                raise MCQError(f"{path}: row {row_no}: no 'answer' or 'correct' column")
            entries.append((None if key_id is None else str(key_id).strip(), row_no, answer))
    if not entries:
        raise MCQError(f"{path}: empty file (no answers)")
    letters = {}
    for key_id, row_no, answer in entries:
        letters[key_id if key_id is not None else row_no] = _letter(answer, path, row_no)
    by_id = all(key_id is not None for key_id, _, _ in entries)
    if by_id:
        missing = [q.id for q in mcqs.questions if q.id not in letters]
        unknown = sorted(set(letters) - {q.id for q in mcqs.questions})
        if missing:
            raise MCQError(f"{path}: no answer for question id {missing[0]!r} ({len(missing)} missing)")
        if unknown:
            raise MCQError(f"{path}: answer for unknown question id {unknown[0]!r}")
        answers = [letters[q.id] for q in mcqs.questions]
    else:
        if len(entries) != len(mcqs.questions):
            raise MCQError(f"{path}: {len(entries)} answers for {len(mcqs.questions)} questions")
        answers = [letters[row_no] for _, row_no, _ in entries]
    mcqs.questions = [_replace_answer(q, a) for q, a in zip(mcqs.questions, answers, strict=True)]


def _replace_answer(q: MCQ, answer: str) -> MCQ:
    return MCQ(**{**asdict(q), "answer": answer, "options": q.options})


def _resolve_files(source: str, hub_cache: str | Path | None, offline: bool | None) -> list[Path]:
    path = Path(source)
    if path.is_dir():
        files = sorted(p for p in path.rglob("*") if p.suffix.lower() in DATA_SUFFIXES and p.is_file()
                       and not any(part.startswith(".") for part in p.relative_to(path).parts))
        if not files:
            raise MCQError(f"{path}: folder holds no .parquet/.jsonl/.json/.csv files")
        return files
    if path.exists():
        if path.suffix.lower() not in DATA_SUFFIXES:
            raise MCQError(f"{path}: unsupported file type (use .parquet, .jsonl, .json or .csv)")
        return [path]
    if HUB_ID.match(source) and path.suffix.lower() not in DATA_SUFFIXES:
        return _resolve_files(_hub_snapshot(source, hub_cache, offline), None, None)
    raise MCQError(f"{path}: file does not exist")


def _hub_snapshot(repo_id: str, hub_cache: str | Path | None, offline: bool | None) -> str:
    from huggingface_hub import snapshot_download

    if offline is None:
        offline = os.environ.get("HF_HUB_OFFLINE", "").strip().lower() in {"1", "true", "yes", "on"}
    try:
        return snapshot_download(
            repo_id, repo_type="dataset", cache_dir=hub_cache, local_files_only=offline,
            allow_patterns=[f"*{suffix}" for suffix in DATA_SUFFIXES],
        )
    except Exception as exc:  # the Hub client raises many types; the user needs the id and the cause
        raise MCQError(f"{repo_id}: cannot load Hub dataset ({type(exc).__name__}: {exc})") from exc


def read_records(path: Path) -> Iterable[tuple[int, dict[str, Any]]]:
    """Yield (1-based row number, record) for every row of a data file; MCQError naming the file
    for bytes that are not UTF-8 and for JSON nested too deep to read."""
    try:
        yield from _records(path)
    except UnicodeDecodeError as exc:
        raise MCQError(f"{path}: not UTF-8 text (byte {exc.start}: {exc.reason})") from None
    except RecursionError:
        raise MCQError(f"{path}: JSON nested too deeply to read") from None


def _records(path: Path) -> Iterable[tuple[int, dict[str, Any]]]:
    suffix = path.suffix.lower()
    if suffix == ".parquet":
        import pyarrow.parquet as pq

        try:
            rows = pq.read_table(path).to_pylist()
        except Exception as exc:  # pyarrow's errors do not name the file
            raise MCQError(f"{path}: unreadable Parquet ({exc})") from exc
        yield from enumerate(rows, start=1)
    elif suffix in (".jsonl", ".json"):
        yield from _json_records(path)
    elif suffix == ".csv":
        yield from _csv_records(path)
    else:
        raise MCQError(f"{path}: unsupported file type (use .parquet, .jsonl, .json or .csv)")


def _json_records(path: Path) -> Iterable[tuple[int, dict[str, Any]]]:
    text = path.read_text(encoding="utf-8")
    if text.lstrip().startswith("["):
        try:
            rows = json.loads(text)
        except json.JSONDecodeError as exc:
            raise MCQError(f"{path}: invalid JSON ({exc})") from exc
        numbered = enumerate(rows, start=1)
    else:
        numbered = []
        for line_no, line in enumerate(text.splitlines(), start=1):
            if not line.strip():
                continue
            try:
                numbered.append((line_no, json.loads(line)))
            except json.JSONDecodeError as exc:
                raise MCQError(f"{path}: row {line_no}: invalid JSON ({exc.msg})") from exc
    for row_no, record in numbered:
        if not isinstance(record, dict):
            raise MCQError(f"{path}: row {row_no}: expected a JSON object, got {type(record).__name__}")
        yield row_no, record


def _csv_records(path: Path) -> Iterable[tuple[int, dict[str, Any]]]:
    """CSV with a header naming `question` and `A`..`D`, or headerless MMLU style (question, A-D[, answer])."""
    with path.open(newline="", encoding="utf-8-sig") as fh:
        rows = [row for row in csv.reader(fh) if any(cell.strip() for cell in row)]
    if not rows:
        return
    header = [cell.strip().lower() for cell in rows[0]]
    if "question" in header and {"a", "b", "c", "d"} <= set(header) or "question" in header and "choices" in header:
        names, body = header, rows[1:]
    else:
        names, body = ["question", "a", "b", "c", "d", "answer"], rows
    for row_no, row in enumerate(body, start=1):
        if len(row) < 5 or len(row) > len(names):
            raise MCQError(f"{path}: row {row_no}: expected question and 4 options (+ answer), got {len(row)} cells")
        yield row_no, dict(zip(names, row, strict=False))


def _present(value: Any) -> bool:
    return value is not None and str(value).strip() != ""


def _letter(value: Any, path: Path, row_no: int) -> str:
    """An answer as a letter A-D; integers 0-3 are accepted as indices (the `cais/mmlu` layout)."""
    if isinstance(value, int) and not isinstance(value, bool) and 0 <= value <= 3:
        return LETTERS[value]
    text = str(value).strip().upper() if value is not None else ""
    if text not in LETTERS:
        raise MCQError(f"{path}: row {row_no}: answer {value!r} is not one of A, B, C, D")
    return text


def _to_mcq(record: dict[str, Any], path: Path, row_no: int, default_id: str) -> MCQ:
    rec = {str(k).strip().lower(): v for k, v in record.items()}
    where = f"{path}: row {row_no}"
    question = rec.get("question")
    if not _present(question):
        raise MCQError(f"{where}: the question is missing or empty")
    if "choices" in rec and not any(letter.lower() in rec for letter in LETTERS):
        choices = rec["choices"]
        if not isinstance(choices, list | tuple) or len(choices) != 4:
            raise MCQError(f"{where}: 'choices' must be a list of 4 options")
        rec.update({letter.lower(): choice for letter, choice in zip(LETTERS, choices, strict=True)})
    extra = sorted(k.upper() for k in rec if k in EXTRA_OPTIONS and _present(rec[k]))
    if extra:  # never dropped silently: the question would be scored without one of its options
        raise MCQError(f"{where}: option {', '.join(extra)} given, but AstroMLab-1 questions have four "
                       "options (A-D); remove the extra option or the question")
    options = []
    for letter in LETTERS:
        value = rec.get(letter.lower())
        if not _present(value):
            raise MCQError(f"{where}: option {letter} is missing or empty")
        options.append(str(value).strip())
    answer_col = next((c for c in ANSWER_COLUMNS if c in rec and _present(rec[c])), None)
    answer = _letter(rec[answer_col], path, row_no) if answer_col else None
    qid = next((str(rec[c]).strip() for c in ID_COLUMNS if _present(rec.get(c))), default_id)

    def optional(*names: str) -> str | None:
        return next((str(rec[n]).strip() for n in names if _present(rec.get(n))), None)

    return MCQ(
        id=qid, question=str(question).strip(), options=tuple(options), answer=answer,
        explanation=optional("explanation"), difficulty=optional("difficulty"),
        topic=optional(*TOPIC_COLUMNS), paper_id=optional("paper_id"),
    )
