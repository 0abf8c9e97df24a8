"""Document quality filters: length, language, symbol/digit ratios, Gopher repetition, boilerplate.

Each filter is a small function `(doc, settings) -> (keep, value)` over a `Doc`, which caches
the views of the text the filters share (words, lines, paragraphs, word hashes), so a document
is split once. `apply_filters` runs them cheapest first and stops at the first failure; the
dropped document is reported with the filter's name, the measured value and the rule, which is
what the catalog keeps. `measure` runs them all, to tune thresholds on real data.

Repetition follows Gopher (Rae et al. 2021, appendix A): duplicate line/paragraph fractions
(by count and by characters), the character share of the most frequent 2/3/4-gram, and the
character share of words covered by repeated 5..10-grams. We implement them with numpy over
64-bit n-gram hashes because no maintained library exposes them as plain functions (datatrove's
are tied to its pipeline objects); words for n-grams are lowercased `\\w+` runs.
Thresholds live in the recipe (`filters:`); defaults were checked so that real math-heavy
astro-ph papers pass (see tests/perf/bench_filters.py).
"""

from __future__ import annotations

import bisect
import re
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from functools import cached_property, lru_cache, partial
from typing import Annotated, Any

import numpy as np
from pydantic import Field

from astrodata.core.config import Count, Fraction, NonNegative, Positive, Strict


class FilterSettings(Strict):
    """Document quality thresholds; a threshold set to null switches its filter off."""

    min_words: Count | None
    max_words: Count | None
    language: str
    min_language_score: Fraction | None  # probability of `language` from py3langid
    language_sample_chars: Positive  # identify on the first N characters of prose (speed)
    max_symbol_word_ratio: NonNegative | None  # '#' and ellipses per word (Gopher)
    max_non_alpha_words: Fraction | None  # share of words with no letter
    max_digit_ratio: Fraction | None  # digits per non-space character
    max_dup_line_fraction: Fraction | None
    max_dup_line_char_fraction: Fraction | None
    max_dup_paragraph_fraction: Fraction | None
    max_dup_paragraph_char_fraction: Fraction | None
    max_top_ngram_char_fraction: dict[Annotated[int, Field(ge=2)], Fraction]
    max_dup_ngram_char_fraction: dict[Annotated[int, Field(ge=2)], Fraction]
    boilerplate_phrases: list[str]
    max_boilerplate_line_fraction: Fraction | None
    short_line_chars: Count
    max_short_line_fraction: Fraction | None



WORD = re.compile(r"\w+")
LETTER = re.compile(r"[^\W\d_]")
DIGIT = re.compile(r"\d")
SPACE = re.compile(r"\s")
PARAGRAPH_BREAK = re.compile(r"\n\s*\n")
HEADING_MARK = re.compile(r"(?m)^#{1,6}(?= )")
ELLIPSIS = re.compile(r"\.\.\.|…")
# Math as our LaTeX and wikitext stages write it: display blocks standing on their own lines
# ($$...$$, \[...\], equation-like environments) and one-line inline $...$ (bounded, so two
# prices on a line of prose are not taken for one formula). `MATH` states the rule; `strip_math`
# applies it in linear time (see there).
MATH = re.compile(
    r"(?ms)^[ \t]*(?:\$\$.*?\$\$|\\\[.*?\\\])[ \t]*$"
    r"|\\begin\{(equation|align|gather|multline|eqnarray|displaymath)(\*?)\}.*?\\end\{\1\2\}"
    r"|\$[^$\n]{1,300}\$"
)
_MATH_OPEN = re.compile(
    r"(?m)(?P<display>^[ \t]*(?P<delim>\$\$|\\\[))"
    r"|\\begin\{(?P<env>equation|align|gather|multline|eqnarray|displaymath)(?P<star>\*?)\}"
    r"|(?P<inline>\$[^$\n]{1,300}\$)"
)
_DISPLAY_CLOSE = {"$$": re.compile(r"(?m)(?=\$\$[ \t]*$)"), "\\[": re.compile(r"(?m)(?=\\\][ \t]*$)")}
_LINE_END_BLANKS = re.compile(r"[ \t]*")


@lru_cache(maxsize=16)
def _env_closer(end: str) -> re.Pattern[str]:
    return re.compile(re.escape(end))


def strip_math(text: str) -> str:
    """`MATH.sub(" ", text)`, in time linear in the text.

    The regex's lazy `.*?` bodies rescan the rest of the text from every opener that never
    closes (40k lines of `$$a$$b`, or one unclosed `\\begin{equation}` per line, took 130-190 s
    per document). Here the closers are found once, and each opener takes the first closer after
    it by binary search: the same spans, the same result."""
    closers: dict[str, list[int]] = {}

    def first_closer(kind: str, pattern: re.Pattern[str], after: int) -> int | None:
        if kind not in closers:
            closers[kind] = [m.start() for m in pattern.finditer(text)]
        found = closers[kind]
        i = bisect.bisect_left(found, after)
        return found[i] if i < len(found) else None

    out, pos, keep_from = [], 0, 0
    while m := _MATH_OPEN.search(text, pos):
        if m["inline"]:
            end: int | None = m.end()
        elif m["display"]:
            delim = m["delim"]
            close = first_closer(delim, _DISPLAY_CLOSE[delim], m.end())
            end = None if close is None else _LINE_END_BLANKS.match(text, close + 2).end()
        else:
            env = f"\\end{{{m['env']}{m['star']}}}"
            close = first_closer(env, _env_closer(env), m.end())
            end = None if close is None else close + len(env)
        if end is None:  # no closer: the regex goes on from the next character
            pos = m.start() + 1
            continue
        out += [text[keep_from:m.start()], " "]
        pos = keep_from = end
    out.append(text[keep_from:])
    return "".join(out)


HASH_MULT = np.uint64(0x9E3779B97F4A7C15)


class Doc:
    """A document's text with the views the filters share, each computed once on first use.

    Every filter but `length` looks at the prose: math spans are set aside, since a formula's
    symbols, digits and repeated `$$\\begin{aligned}` lines say nothing about quality, and
    math-heavy papers would otherwise read as junk.
    """

    def __init__(self, text: str):
        self.text = text

    @cached_property
    def words(self) -> list[str]:
        return self.text.split()

    @cached_property
    def prose(self) -> str:
        return strip_math(self.text)

    @cached_property
    def prose_words(self) -> list[str]:
        return self.prose.split()

    @cached_property
    def lines(self) -> list[str]:
        return [line.strip() for line in self.prose.splitlines() if line.strip()]

    @cached_property
    def paragraphs(self) -> list[str]:
        return [p.strip() for p in PARAGRAPH_BREAK.split(self.prose) if p.strip()]

    @cached_property
    def ngram_words(self) -> tuple[np.ndarray, np.ndarray]:
        """(hash per word, characters per word) of the lowercased `\\w+` words."""
        words = WORD.findall(self.prose.lower())
        hashes = np.fromiter((hash(w) for w in words), dtype=np.int64, count=len(words)).view(np.uint64)
        lengths = np.fromiter((len(w) for w in words), dtype=np.int64, count=len(words))
        return hashes, lengths

    @cached_property
    def _grams(self) -> dict[int, np.ndarray]:
        return {1: self.ngram_words[0]}

    def ngram_hashes(self, n: int) -> np.ndarray:
        """One 64-bit hash per n-gram (position i covers words i..i+n-1), built from the
        (n-1)-gram hashes so the 2..10-gram filters share the work."""
        grams = self._grams
        if n not in grams:
            shorter = self.ngram_hashes(n - 1)
            grams[n] = shorter[:-1] * HASH_MULT + self.ngram_words[0][n - 1:]
        return grams[n]

    @cached_property
    def char_cumsum(self) -> np.ndarray:
        """Characters in words [0, i) at index i: an n-gram's characters in O(1)."""
        return np.concatenate([[0], np.cumsum(self.ngram_words[1])])


# -- the filters: (doc, settings) -> (keep, value) --------------------------------------------
def length(doc: Doc, s: FilterSettings) -> tuple[bool, float]:
    n = len(doc.words)
    return (s.min_words is None or n >= s.min_words) and (s.max_words is None or n <= s.max_words), n


@lru_cache(maxsize=1)
def _identifier() -> Any:
    from py3langid.langid import MODEL_FILE, LanguageIdentifier

    return LanguageIdentifier.from_model_file(MODEL_FILE, norm_probs=True)


def language_score(text: str, language: str = "en") -> float:
    """Probability of `language` (py3langid's model ships inside the package: nothing is downloaded)."""
    return float(dict(_identifier().rank(text)).get(language, 0.0))


def language(doc: Doc, s: FilterSettings) -> tuple[bool, float]:
    p = language_score(doc.prose[: s.language_sample_chars], s.language)
    return p >= s.min_language_score, p


def symbol_word_ratio(doc: Doc, s: FilterSettings) -> tuple[bool, float]:
    """Gopher: '#' and ellipses per word (Markdown heading marks are structure, not symbols)."""
    hashes = doc.prose.count("#") - sum(len(m) for m in HEADING_MARK.findall(doc.prose))
    value = (hashes + len(ELLIPSIS.findall(doc.prose))) / max(1, len(doc.prose_words))
    return value <= s.max_symbol_word_ratio, value


def non_alpha_words(doc: Doc, s: FilterSettings) -> tuple[bool, float]:
    """Share of words with no letter at all (Gopher keeps documents where >= 80% have one)."""
    # words (whitespace-separated, as `prose_words`) with a letter; a regex over the whole prose
    # (`\S*[^\W\d_]\S*`) backtracks quadratically through long letterless runs
    value = 1.0 - sum(1 for w in doc.prose_words if LETTER.search(w)) / max(1, len(doc.prose_words))
    return value <= s.max_non_alpha_words, value


def digit_ratio(doc: Doc, s: FilterSettings) -> tuple[bool, float]:
    non_space = len(doc.prose) - len(SPACE.findall(doc.prose))
    value = len(DIGIT.findall(doc.prose)) / max(1, non_space)
    return value <= s.max_digit_ratio, value


def _duplicates(items: list[str]) -> tuple[float, float]:
    """(share of items equal to an earlier one, share of characters in those items)."""
    seen: set[str] = set()
    dup_n = dup_chars = total_chars = 0
    for item in items:
        total_chars += len(item)
        if item in seen:
            dup_n += 1
            dup_chars += len(item)
        else:
            seen.add(item)
    return dup_n / max(1, len(items)), dup_chars / max(1, total_chars)


def dup_line_fraction(doc: Doc, s: FilterSettings) -> tuple[bool, float]:
    value = _duplicates(doc.lines)[0]
    return value <= s.max_dup_line_fraction, value


def dup_line_char_fraction(doc: Doc, s: FilterSettings) -> tuple[bool, float]:
    value = _duplicates(doc.lines)[1]
    return value <= s.max_dup_line_char_fraction, value


def dup_paragraph_fraction(doc: Doc, s: FilterSettings) -> tuple[bool, float]:
    value = _duplicates(doc.paragraphs)[0]
    return value <= s.max_dup_paragraph_fraction, value


def dup_paragraph_char_fraction(doc: Doc, s: FilterSettings) -> tuple[bool, float]:
    value = _duplicates(doc.paragraphs)[1]
    return value <= s.max_dup_paragraph_char_fraction, value


def top_ngram_char_fraction(doc: Doc, s: FilterSettings, n: int) -> tuple[bool, float]:
    """Characters in all occurrences of the most frequent n-gram / characters in all words."""
    grams = doc.ngram_hashes(n)
    value = 0.0
    if len(grams):
        _, first, counts = np.unique(grams, return_index=True, return_counts=True)
        top = counts.max()
        if top > 1:  # ties: the n-gram with the most characters
            cs = doc.char_cumsum
            chars = (cs[first + n] - cs[first])[counts == top].max()
            value = float(top * chars / max(1, cs[-1]))
    return value <= s.max_top_ngram_char_fraction[n], value


def dup_ngram_char_fraction(doc: Doc, s: FilterSettings, n: int) -> tuple[bool, float]:
    """Characters of words covered by a repeat (2nd, 3rd... occurrence) of an n-gram / all."""
    grams = doc.ngram_hashes(n)
    _, lengths = doc.ngram_words
    value = 0.0
    if len(grams):
        _, first = np.unique(grams, return_index=True)
        repeats = np.ones(len(grams), dtype=bool)
        repeats[first] = False
        starts = np.flatnonzero(repeats)
        if len(starts):
            cover = np.zeros(len(lengths) + 1, dtype=np.int64)
            np.add.at(cover, starts, 1)
            np.add.at(cover, starts + n, -1)
            covered = np.cumsum(cover[:-1]) > 0
            value = float(lengths[covered].sum() / max(1, lengths.sum()))
    return value <= s.max_dup_ngram_char_fraction[n], value


@lru_cache(maxsize=8)
def _boilerplate_pattern(phrases: tuple[str, ...]) -> re.Pattern[str] | None:
    if not phrases:
        return None
    return re.compile(r"\b(?:" + "|".join(re.escape(p.lower()) for p in phrases) + r")\b", re.IGNORECASE)


def boilerplate_line_fraction(doc: Doc, s: FilterSettings) -> tuple[bool, float]:
    """Share of lines naming cookies, javascript, rights reserved... (web/legal boilerplate)."""
    pattern = _boilerplate_pattern(tuple(s.boilerplate_phrases))
    hits = sum(1 for line in doc.lines if pattern.search(line)) if pattern else 0
    value = hits / max(1, len(doc.lines))
    return value <= s.max_boilerplate_line_fraction, value


def short_line_fraction(doc: Doc, s: FilterSettings) -> tuple[bool, float]:
    """Share of lines under `short_line_chars` characters (menus, lists of links, ragged scraps)."""
    value = sum(1 for line in doc.lines if len(line) < s.short_line_chars) / max(1, len(doc.lines))
    return value <= s.max_short_line_fraction, value


# -- running them ----------------------------------------------------------------------------
Filter = Callable[[Doc], tuple[bool, float]]


def active_filters(s: FilterSettings) -> list[tuple[str, Filter, str]]:
    """(name, filter, rule) for every filter the settings switch on, cheapest first."""
    out: list[tuple[str, Filter, str]] = []

    def add(name: str, fn: Callable[..., tuple[bool, float]], threshold: Any, rule: str, **kw: Any) -> None:
        if threshold is not None:
            out.append((name, partial(fn, s=s, **kw), rule))

    bounds = [f">= {s.min_words}" if s.min_words is not None else "", f"<= {s.max_words}" if s.max_words else ""]
    add("length", length, s.min_words if s.min_words is not None else s.max_words,
        "words " + " and ".join(b for b in bounds if b))
    add("symbol_word_ratio", symbol_word_ratio, s.max_symbol_word_ratio, f"<= {s.max_symbol_word_ratio}")
    add("non_alpha_words", non_alpha_words, s.max_non_alpha_words, f"<= {s.max_non_alpha_words}")
    add("digit_ratio", digit_ratio, s.max_digit_ratio, f"<= {s.max_digit_ratio}")
    add("boilerplate_line_fraction", boilerplate_line_fraction, s.max_boilerplate_line_fraction,
        f"<= {s.max_boilerplate_line_fraction}")
    add("short_line_fraction", short_line_fraction, s.max_short_line_fraction, f"<= {s.max_short_line_fraction}")
    for name, fn, threshold in [
        ("dup_line_fraction", dup_line_fraction, s.max_dup_line_fraction),
        ("dup_line_char_fraction", dup_line_char_fraction, s.max_dup_line_char_fraction),
        ("dup_paragraph_fraction", dup_paragraph_fraction, s.max_dup_paragraph_fraction),
        ("dup_paragraph_char_fraction", dup_paragraph_char_fraction, s.max_dup_paragraph_char_fraction),
    ]:
        add(name, fn, threshold, f"<= {threshold}")
    for n, threshold in sorted(s.max_top_ngram_char_fraction.items()):
        add(f"top_{n}gram_char_fraction", top_ngram_char_fraction, threshold, f"<= {threshold}", n=n)
    for n, threshold in sorted(s.max_dup_ngram_char_fraction.items()):
        add(f"dup_{n}gram_char_fraction", dup_ngram_char_fraction, threshold, f"<= {threshold}", n=n)
    add("language", language, s.min_language_score, f"P({s.language}) >= {s.min_language_score}")
    return out


@dataclass(frozen=True)
class Drop:
    """Why one document was dropped: the first filter it failed, what was measured, the rule."""

    doc_id: str
    filter: str
    value: float
    rule: str

    def details(self) -> dict[str, Any]:
        return {"filter": self.filter, "value": self.value, "rule": self.rule}


def first_failure(text: str, filters: list[tuple[str, Filter, str]]) -> tuple[str, float, str] | None:
    """(name, value, rule) of the first filter the text fails, or None when it passes them all."""
    doc = Doc(text)
    for name, fn, rule in filters:
        keep, value = fn(doc)
        if not keep:
            return name, float(value), rule
    return None


def apply_filters(
    docs: Iterable[dict[str, Any]],
    settings: FilterSettings,
    on_drop: Callable[[dict[str, Any], Drop], None] | None = None,
) -> Iterator[dict[str, Any]]:
    """Yield the documents that pass every filter; report each dropped one to `on_drop`."""
    filters = active_filters(settings)
    for doc in docs:
        failure = first_failure(doc.get("text") or "", filters)
        if failure is None:
            yield doc
        elif on_drop is not None:
            on_drop(doc, Drop(str(doc.get("id")), *failure))


def measure(text: str, settings: FilterSettings) -> dict[str, tuple[bool, float]]:
    """Every active filter's (keep, value) on one text: for tuning thresholds and reports."""
    doc = Doc(text)
    return {name: (bool(keep), float(value)) for name, fn, _ in active_filters(settings)
            for keep, value in [fn(doc)]}
