"""Decontamination: drop or redact training documents that share 13-grams with benchmark questions.

Both sides are tokenised by `astrodata.core.textnorm.words` (NFKC, lowercase, punctuation stripped).
Each benchmark becomes a sorted numpy array of 64-bit n-gram hashes (the hashed set), and a
document is checked with one `np.searchsorted` over all its n-gram hashes: no Python loop per
n-gram. Document tokens are hashed by a dict lookup into the benchmarks' vocabulary, so a
check costs little more than tokenising the document (tests/perf/bench_decontam.py measures it
against a set of n-gram tuples).

A question shorter than n words is matched as a whole (its full word sequence), provided it has
at least `min_words` words; shorter ones are too generic to look for and are counted as skipped.
Each benchmark item contributes its question alone and its question followed by its options, so
both a bare question and a copied MCQ block are found.

Benchmark files: MCQ files go through `astrodata.core.mcq.load_mcqs` (AstroMLab-1 Parquet/CSV/JSONL,
MMLU-style CSV with or without header); a JSONL/JSON file whose records have no options is read
as free questions from its `question`, `prompt` or `text` field.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from itertools import chain, islice, repeat
from pathlib import Path
from typing import Any

import numpy as np

from astrodata.core.mcq import LETTERS, MCQError, load_mcqs
from astrodata.core.mcq import read_records as mcq_records  # the one JSON/JSONL reader, row-numbered errors
from astrodata.core.textnorm import ngram_hashes, token_hashes, word_spans, words

QUESTION_FIELDS = ("question", "prompt", "text")
MODES = ("drop", "redact")


def _contains(sorted_hashes: np.ndarray, values: np.ndarray) -> np.ndarray:
    """Vectorised membership test against a sorted array."""
    if len(sorted_hashes) == 0 or len(values) == 0:
        return np.zeros(len(values), dtype=bool)
    idx = np.searchsorted(sorted_hashes, values)
    idx[idx == len(sorted_hashes)] = 0
    return sorted_hashes[idx] == values


@dataclass
class BenchmarkIndex:
    """The hashed word n-grams of one benchmark's texts, by n-gram length, and their vocabulary."""

    name: str
    n: int
    grams: dict[int, np.ndarray]  # length -> sorted unique n-gram hashes
    vocab: frozenset[str]
    items: int = 0
    skipped: int = 0  # texts shorter than min_words

    @classmethod
    def from_texts(cls, name: str, texts: Iterable[str], n: int = 13, min_words: int = 8) -> BenchmarkIndex:
        parts: dict[int, list[np.ndarray]] = {}
        vocab: set[str] = set()
        items = skipped = 0
        for text in texts:
            items += 1
            tokens = words(text)
            if len(tokens) < min(n, min_words):
                skipped += 1
                continue
            vocab.update(tokens)
            length = min(n, len(tokens))
            parts.setdefault(length, []).append(ngram_hashes(token_hashes(tokens), length))
        grams = {length: np.unique(np.concatenate(p)) for length, p in parts.items()}
        return cls(name=name, n=n, grams=grams, vocab=frozenset(vocab), items=items, skipped=skipped)

    def covered(self, hashes: np.ndarray, unknown: np.ndarray) -> np.ndarray:
        """Boolean mask over a document's tokens: True where a matching n-gram covers the token.

        `unknown[i]` marks tokens outside every index's vocabulary: n-grams holding one cannot
        match, so they are excluded even if their hash happened to collide.
        """
        delta = np.zeros(len(hashes) + 1, dtype=np.int32)
        seen_unknown = np.concatenate([[0], np.cumsum(unknown)])
        for length, grams in self.grams.items():
            hit = _contains(grams, ngram_hashes(hashes, length))
            hit &= seen_unknown[length:] == seen_unknown[:-length]
            starts = np.flatnonzero(hit)
            delta[starts] += 1
            delta[starts + length] -= 1
        return np.cumsum(delta[:-1]) > 0


def _item_texts(question: str, options: Iterable[str]) -> list[str]:
    opts = [o for o in options if o]
    return [question, " ".join([question, *opts])] if opts else [question]


def load_benchmark(path: str | os.PathLike, name: str | None = None, n: int = 13,
                   min_words: int = 8) -> BenchmarkIndex:
    """Index one benchmark file (MCQs through `astrodata.core.mcq`, or a JSONL of free questions)."""
    path = Path(path)
    name = name or path.stem
    if path.suffix.lower() in (".jsonl", ".json") and not _has_options(path):
        texts = [t for q in _free_questions(path) for t in _item_texts(q, [])]
        return BenchmarkIndex.from_texts(name, texts, n=n, min_words=min_words)
    mcqs = load_mcqs(path)
    texts = [t for q in mcqs for t in _item_texts(q.question, q.options)]
    index = BenchmarkIndex.from_texts(name, texts, n=n, min_words=min_words)
    index.items = len(mcqs)
    return index


def _has_options(path: Path) -> bool:
    """Whether the JSON records look like MCQs (options A-D or a choices list)."""
    for _, record in mcq_records(path):
        return bool({str(k).lower() for k in record} & {"choices", *(c.lower() for c in LETTERS)})
    return False


def _free_questions(path: Path) -> list[str]:
    out = []
    for row_no, record in mcq_records(path):
        value = next((record.get(f) for f in QUESTION_FIELDS if record.get(f)), None)
        if not isinstance(value, str) or not value.strip():
            raise MCQError(f"{path}: row {row_no}: no non-empty {'/'.join(QUESTION_FIELDS)} field")
        out.append(value)
    if not out:
        raise MCQError(f"{path}: empty file (no questions)")
    return out


@dataclass
class DecontamStats:
    docs: int = 0
    clean: int = 0
    dropped: int = 0
    redacted: int = 0
    per_benchmark: dict[str, int] = field(default_factory=dict)  # documents matching each benchmark
    tokens_redacted: int = 0


class Decontaminator:
    """Checks documents against benchmark indexes; drops them or redacts the matched spans."""

    def __init__(self, indexes: list[BenchmarkIndex], mode: str = "drop", redact_with: str = " "):
        if mode not in MODES:
            raise ValueError(f"decontamination mode must be one of {MODES}, got {mode!r}")
        self.indexes = indexes
        self.mode = mode
        self.redact_with = redact_with
        self.stats = DecontamStats(per_benchmark={ix.name: 0 for ix in indexes})
        # Token hashes come from a lookup over the benchmarks' vocabulary (one dict probe per
        # document token instead of hashing it); unknown tokens get slot `len(vocab)`.
        vocab = sorted(set().union(*(ix.vocab for ix in indexes)))
        self._slot = {tok: i for i, tok in enumerate(vocab)}
        self._unknown = len(vocab)
        self._slot_hashes = np.append(token_hashes(vocab), np.uint64(0))

    @classmethod
    def from_files(cls, paths: Iterable[str | os.PathLike], mode: str = "drop", n: int = 13,
                   min_words: int = 8, redact_with: str = " ") -> Decontaminator:
        """Index each benchmark file (named after its file stem) and check against all of them."""
        return cls([load_benchmark(p, n=n, min_words=min_words) for p in paths], mode, redact_with)

    def _covered(self, token_lists: list[list[str]]) -> list[dict[str, np.ndarray]]:
        """Per document: benchmark name -> token mask, for the benchmarks that match it.

        The documents are checked together, joined by an unknown separator token (so no n-gram
        spans two of them): a few dozen numpy calls per batch instead of per document.
        """
        flat = list(chain.from_iterable([*tokens, ""] for tokens in token_lists))  # "" is never a word
        slots = np.fromiter(map(self._slot.get, flat, repeat(self._unknown)), dtype=np.int64, count=len(flat))
        hashes, unknown = self._slot_hashes[slots], slots == self._unknown
        bounds = np.cumsum([len(t) + 1 for t in token_lists])[:-1]
        per_doc: list[dict[str, np.ndarray]] = [{} for _ in token_lists]
        for ix in self.indexes:
            mask = ix.covered(hashes, unknown)
            if not mask.any():
                continue
            for found, part in zip(per_doc, np.split(mask, bounds), strict=True):
                if part.any():
                    found[ix.name] = part[:-1]
        return per_doc

    def matches(self, text: str) -> dict[str, int]:
        """Benchmark name -> number of the document's tokens covered by its n-grams (non-zero only)."""
        return {name: int(m.sum()) for name, m in self._covered([words(text)])[0].items()}

    def apply(self, doc: Mapping[str, Any]) -> dict[str, Any] | None:
        """The document unchanged when clean, redacted, or None when dropped."""
        return self._decide(doc, self._covered([words(doc["text"])])[0])

    def run(self, docs: Iterable[Mapping[str, Any]], batch_size: int = 256) -> Iterator[dict[str, Any]]:
        """Stream documents through the check in batches, yielding those that remain."""
        it = iter(docs)
        while batch := list(islice(it, batch_size)):
            for doc, found in zip(batch, self._covered([words(d["text"]) for d in batch]), strict=True):
                out = self._decide(doc, found)
                if out is not None:
                    yield out

    def _decide(self, doc: Mapping[str, Any], found: dict[str, np.ndarray]) -> dict[str, Any] | None:
        self.stats.docs += 1
        if not found:
            self.stats.clean += 1
            return dict(doc)
        for name in found:
            self.stats.per_benchmark[name] += 1
        if self.mode == "redact":
            redacted, n_tokens = self._redact(doc["text"])
            if n_tokens:
                self.stats.redacted += 1
                self.stats.tokens_redacted += n_tokens
                return {**doc, "text": redacted}
        # drop mode, or the rare text whose per-token normalisation hides the match from redaction
        self.stats.dropped += 1
        return None

    def _redact(self, text: str) -> tuple[str, int]:
        spans = word_spans(text)
        masks = self._covered([[tok for tok, _, _ in spans]])[0]
        if not masks:
            return text, 0
        mask = np.logical_or.reduce(list(masks.values()))
        pieces, pos, i = [], 0, 0
        while i < len(spans):
            if not mask[i]:
                i += 1
                continue
            j = i
            while j + 1 < len(spans) and mask[j + 1]:
                j += 1
            pieces += [text[pos : spans[i][1]], self.redact_with]
            pos = spans[j][2]
            i = j + 1
        pieces.append(text[pos:])
        return "".join(pieces), int(mask.sum())
