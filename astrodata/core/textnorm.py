"""Text normalisation, word tokens and hashed n-grams: the one place that defines them.

Exact dedup, MinHash shingles, decontamination and QA dedup must agree on what "the same text"
means, so they all go through these functions:

- `normalize`: NFKC, lowercase, whitespace collapsed (the key for exact duplicates).
- `words`: lowercased NFKC word tokens with punctuation stripped (`\\w+` runs).
- `ngram_hashes`: 64-bit hashes of word n-grams, computed with numpy over per-token xxh3 hashes.

Token hashes come from xxh3 (stable across processes, unlike Python's salted `hash`), so
signatures computed by separate `--shard K/N` processes can be compared. N-gram hashes combine
token hashes with a polynomial in uint64 arithmetic (vectorised over shifted arrays: one pass
per n-gram position, not per n-gram) followed by the murmur3 finaliser to spread the bits.
"""

from __future__ import annotations

import hashlib
import re
import unicodedata

import numpy as np
import xxhash

WORD_RE = re.compile(r"\w+")
_SPACE_RE = re.compile(r"\s+")
_POLY = np.uint64(0x9E3779B97F4A7C15)  # odd, so powers stay invertible modulo 2**64


def normalize(text: str) -> str:
    """NFKC, lowercase, whitespace runs collapsed to one space, ends stripped."""
    return _SPACE_RE.sub(" ", unicodedata.normalize("NFKC", text).lower()).strip()


def digest(normalized: str) -> str:
    """128-bit hex digest of an already normalised text."""
    return hashlib.blake2b(normalized.encode("utf-8"), digest_size=16).hexdigest()


def text_hash(text: str) -> str:
    """Digest of the normalised text: equal digests mean exact duplicates."""
    return digest(normalize(text))


def words(text: str) -> list[str]:
    """Word tokens: NFKC, lowercase, punctuation and whitespace stripped."""
    return WORD_RE.findall(unicodedata.normalize("NFKC", text).lower())


def word_spans(text: str) -> list[tuple[str, int, int]]:
    """Word tokens with their character offsets in the original `text`.

    Tokens are normalised one by one (so offsets stay valid), which agrees with `words` except
    where NFKC merges characters across a token boundary (combining marks); callers that
    need offsets must tolerate that rare difference.
    """
    spans = []
    for m in WORD_RE.finditer(text):
        for tok in WORD_RE.findall(unicodedata.normalize("NFKC", m.group()).lower()):
            spans.append((tok, m.start(), m.end()))
    return spans


def token_hashes(tokens: list[str]) -> np.ndarray:
    """One stable 64-bit hash per token (uint64)."""
    h = xxhash.xxh3_64_intdigest
    return np.fromiter((h(t.encode("utf-8")) for t in tokens), dtype=np.uint64, count=len(tokens))


def fmix64(h: np.ndarray) -> np.ndarray:
    """murmur3's 64-bit finaliser, vectorised: every input bit affects every output bit."""
    h = h ^ (h >> np.uint64(33))
    h = h * np.uint64(0xFF51AFD7ED558CCD)
    h = h ^ (h >> np.uint64(33))
    h = h * np.uint64(0xC4CEB9FE1A85EC53)
    return h ^ (h >> np.uint64(33))


def ngram_hashes(hashes: np.ndarray, n: int) -> np.ndarray:
    """Hashes of all contiguous n-grams of a token-hash array (empty when shorter than n)."""
    m = len(hashes) - n + 1
    if m <= 0:
        return np.empty(0, dtype=np.uint64)
    out = hashes[:m].copy()
    for i in range(1, n):
        out *= _POLY
        out += hashes[i : i + m]
    return fmix64(out ^ np.uint64(n))


def shingle_hashes(text: str, n: int) -> np.ndarray:
    """Distinct word n-gram hashes of `text`; a text shorter than n words is one shingle."""
    return word_shingles(words(text), n)


def word_shingles(tokens: list[str], n: int) -> np.ndarray:
    """Distinct n-gram hashes of a token list (from `words`, or `WORD_RE.findall(normalize(t))`,
    which gives the same tokens since whitespace never belongs to a word)."""
    th = token_hashes(tokens)
    if len(th) == 0:
        return th
    return np.unique(ngram_hashes(th, min(n, len(th))))
