"""The corpus recipe: every threshold and selection setting of a build, in one validated model.

The defaults live in `astrodata/recipes/corpus.yaml` (shipped with the package) so a build is
described by data, not code; a user's recipe file overrides any subset of it (deep merge).
Unknown keys are errors, so a typo in a threshold name fails loudly instead of being ignored.
Other stages extend `Recipe` by adding one settings model and one field here.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field

DEFAULT_RECIPE = Path(__file__).resolve().parent / "recipes" / "corpus.yaml"


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class LexiconSettings(Strict):
    """Keyword scorer: weighted term hits per 1,000 words (`astronom*` = prefix match)."""

    terms: dict[str, float]
    threshold: float = 8.0  # weighted hits per 1,000 words
    min_distinct: int = 3  # distinct terms seen, so one repeated word cannot carry a page
    # Parse only pages whose score on the raw wikitext reaches this share of the threshold:
    # the wikitext parse costs ~100x the scoring, and clean/raw scores stay within ~2x.
    raw_prefilter: float = 0.5


class WikipediaSettings(Strict):
    """Which Wikipedia pages count as astronomy, and how their wikitext becomes text."""

    # either: category graph OR lexicon; category / lexicon: that signal alone
    selection: Literal["either", "category", "lexicon"] = "either"
    category_roots: list[str]
    category_depth: int = 3  # subcategory hops below the roots
    # Category names that count as astronomy on their own (case-insensitive regexes): the
    # fallback when the dump carries no category hierarchy (no Category: pages, no links file).
    category_patterns: list[str] = Field(default_factory=list)
    lexicon: LexiconSettings
    drop_sections: list[str] = Field(default_factory=list)  # headings whose sections are dropped
    namespaces: list[int] = Field(default_factory=lambda: [0])
    dataset_config: str = "20231101.en"  # config of the `wikimedia/wikipedia` Hub dataset


class FilterSettings(Strict):
    """Document quality thresholds; set one to null to switch that filter off."""

    min_words: int | None = 50
    max_words: int | None = 250_000
    language: str = "en"
    min_language_score: float | None = 0.5  # probability of `language` from py3langid
    language_sample_chars: int = 20_000  # identify on the first N characters (speed)
    max_symbol_word_ratio: float | None = 0.1  # '#' and ellipses per word (Gopher)
    max_non_alpha_words: float | None = 0.5  # share of words with no letter
    max_digit_ratio: float | None = 0.25  # digits per non-space character
    max_dup_line_fraction: float | None = 0.3
    max_dup_line_char_fraction: float | None = 0.2
    max_dup_paragraph_fraction: float | None = 0.3
    max_dup_paragraph_char_fraction: float | None = 0.2
    max_top_ngram_char_fraction: dict[int, float] = Field(default_factory=lambda: {2: 0.2, 3: 0.18, 4: 0.16})
    max_dup_ngram_char_fraction: dict[int, float] = Field(
        default_factory=lambda: {5: 0.15, 6: 0.14, 7: 0.13, 8: 0.12, 9: 0.11, 10: 0.10})
    boilerplate_phrases: list[str] = Field(default_factory=list)
    max_boilerplate_line_fraction: float | None = 0.2
    short_line_chars: int = 20
    max_short_line_fraction: float | None = 0.7


class TokenizerSettings(Strict):
    name: str = "embedded"  # `embedded` (SmolLM2, offline), a Hub id or a local folder
    batch_size: int = 64


class LocalDocsSettings(Strict):
    source: str = "textbook"
    min_chapter_words: int = 200  # shorter "chapters" are merged into the next one (e.g. a table of contents)


class Recipe(Strict):
    filters: FilterSettings = Field(default_factory=FilterSettings)
    wikipedia: WikipediaSettings
    tokenizer: TokenizerSettings = Field(default_factory=TokenizerSettings)
    local_docs: LocalDocsSettings = Field(default_factory=LocalDocsSettings)


def _merge(base: dict[str, Any], override: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for key, value in override.items():
        out[key] = _merge(out[key], value) if isinstance(value, dict) and isinstance(out.get(key), dict) else value
    return out


def load_recipe(path: str | Path | None = None, overrides: dict[str, Any] | None = None) -> Recipe:
    """The default recipe, deep-merged with a user's YAML file and then with `overrides`."""
    data = yaml.safe_load(DEFAULT_RECIPE.read_text()) or {}
    if path is not None:
        user = yaml.safe_load(Path(path).read_text()) or {}
        if not isinstance(user, dict):
            raise ValueError(f"recipe {path}: expected a mapping at the top level")
        data = _merge(data, user)
    if overrides:
        data = _merge(data, overrides)
    return Recipe.model_validate(data)
