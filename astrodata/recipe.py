"""The corpus recipe: every threshold and selection setting of a build, in one validated model.

The defaults live in `astrodata/recipes/corpus.yaml` (shipped with the package) so a build is
described by data, not code; a user's recipe file overrides any subset of it (deep merge).
Unknown keys are errors, so a typo in a threshold name fails loudly instead of being ignored.
Other stages extend `Recipe` by adding one settings model and one field here.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal, TypeVar

import yaml
from pydantic import BaseModel, ConfigDict, ValidationError

DEFAULT_RECIPE = Path(__file__).resolve().parent / "recipes" / "corpus.yaml"


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


# Values live in recipes/corpus.yaml only (one source of truth); the models say what is allowed.
class LexiconSettings(Strict):
    """Keyword scorer: weighted term hits per 1,000 words (`astronom*` = prefix match)."""

    terms: dict[str, float]
    threshold: float  # weighted hits per 1,000 words
    min_distinct: int  # distinct terms seen, so one repeated word cannot carry a page
    # Parse only pages whose score on the raw wikitext reaches this share of the threshold:
    # the wikitext parse costs ~100x the scoring, and clean/raw scores stay within ~2x.
    raw_prefilter: float


class WikipediaSettings(Strict):
    """Which Wikipedia pages count as astronomy, and how their wikitext becomes text."""

    # either: category graph OR lexicon; category / lexicon: that signal alone
    selection: Literal["either", "category", "lexicon"]
    category_roots: list[str]
    category_depth: int  # subcategory hops below the roots
    # Category names that count as astronomy on their own (case-insensitive regexes): the
    # fallback when the dump carries no category hierarchy (no Category: pages, no links file).
    category_patterns: list[str]
    lexicon: LexiconSettings
    drop_sections: list[str]  # headings whose sections are dropped
    namespaces: list[int]
    dataset_config: str  # config of the `wikimedia/wikipedia` Hub dataset


class FilterSettings(Strict):
    """Document quality thresholds; a threshold set to null switches its filter off."""

    min_words: int | None
    max_words: int | None
    language: str
    min_language_score: float | None  # probability of `language` from py3langid
    language_sample_chars: int  # identify on the first N characters of prose (speed)
    max_symbol_word_ratio: float | None  # '#' and ellipses per word (Gopher)
    max_non_alpha_words: float | None  # share of words with no letter
    max_digit_ratio: float | None  # digits per non-space character
    max_dup_line_fraction: float | None
    max_dup_line_char_fraction: float | None
    max_dup_paragraph_fraction: float | None
    max_dup_paragraph_char_fraction: float | None
    max_top_ngram_char_fraction: dict[int, float]
    max_dup_ngram_char_fraction: dict[int, float]
    boilerplate_phrases: list[str]
    max_boilerplate_line_fraction: float | None
    short_line_chars: int
    max_short_line_fraction: float | None


class TokenizerSettings(Strict):
    name: str  # `embedded` (SmolLM2, offline), a Hub id in the local cache, or a local folder
    batch_size: int


class LocalDocsSettings(Strict):
    source: str
    min_chapter_words: int  # shorter "chapters" (a table of contents, a title page) join the next


class DedupSettings(Strict):
    ngram: int  # word n-gram shingles
    bands: int
    rows: int  # bands * rows MinHash permutations
    threshold: float  # Jaccard at or above which two documents are near-duplicates
    seed: int
    max_bucket: int
    check: Literal["exact", "estimate"]  # verify LSH candidates on exact shingle Jaccard or the signatures


class DecontamSettings(Strict):
    benchmarks: list[str]  # question files (AstroMLab-1 MCQs, MMLU CSVs, JSONL of questions)
    mode: Literal["drop", "redact"]
    ngram: int
    min_words: int  # benchmark items shorter than this are not indexed


class Recipe(Strict):
    filters: FilterSettings
    wikipedia: WikipediaSettings
    tokenizer: TokenizerSettings
    local_docs: LocalDocsSettings
    dedup: DedupSettings
    decontam: DecontamSettings


def _merge(base: dict[str, Any], override: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for key, value in override.items():
        out[key] = _merge(out[key], value) if isinstance(value, dict) and isinstance(out.get(key), dict) else value
    return out


M = TypeVar("M", bound=BaseModel)


def load_yaml_model(model: type[M], default: Path, path: str | Path | None = None,
                    overrides: dict[str, Any] | None = None) -> M:
    """`default` YAML deep-merged with a user's file, then `overrides`, validated as `model`.

    One loader for every stage's recipe, so they all merge and report errors the same way."""
    data = yaml.safe_load(default.read_text()) or {}
    if path is not None:
        user = yaml.safe_load(Path(path).read_text()) or {}
        if not isinstance(user, dict):
            raise ValueError(f"recipe {path}: expected a mapping at the top level")
        data = _merge(data, user)
    if overrides:
        data = _merge(data, overrides)
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"])
        raise ValueError(f"recipe {path or default}: {where}: {first['msg']}") from None


def load_recipe(path: str | Path | None = None, overrides: dict[str, Any] | None = None) -> Recipe:
    """The default corpus recipe, deep-merged with a user's YAML file and then with `overrides`."""
    return load_yaml_model(Recipe, DEFAULT_RECIPE, path, overrides)
