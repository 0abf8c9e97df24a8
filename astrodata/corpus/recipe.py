"""The corpus recipe: every threshold and selection setting of a build, in one validated model.

The defaults live in `astrodata/recipes/corpus.yaml` (shipped with the package) so a build is
described by data, not code; a user's recipe file overrides any subset of it (deep merge).
Unknown keys are errors, so a typo in a threshold name fails loudly instead of being ignored.
Each stage owns its settings model (next to the code that reads it); this module composes them.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import Field

from astrodata.core.config import Count, Fraction, NonNegative, Positive, Strict, load_config
from astrodata.corpus.filters import FilterSettings
from astrodata.sources.wikipedia import WikipediaSettings
from astrodata.textbooks.local_docs import LocalDocsSettings

DEFAULT_RECIPE = Path(__file__).resolve().parents[1] / "recipes" / "corpus.yaml"


class TokenizerSettings(Strict):
    name: str  # `embedded` (SmolLM2, offline), a Hub id in the local cache, or a local folder
    batch_size: Positive


class DedupSettings(Strict):
    ngram: Positive  # word n-gram shingles
    bands: Positive
    rows: Positive  # bands * rows MinHash permutations
    threshold: Fraction  # Jaccard at or above which two documents are near-duplicates
    seed: Count
    max_bucket: Annotated[int, Field(ge=2)]
    check: Literal["exact", "estimate"]  # verify LSH candidates on exact shingle Jaccard or the signatures


class DecontamSettings(Strict):
    benchmarks: list[str]  # question files (AstroMLab-1 MCQs, MMLU CSVs, JSONL of questions)
    mode: Literal["drop", "redact"]
    ngram: Positive
    min_words: Count  # benchmark items shorter than this are not indexed


class LossSettings(Strict):
    """What to do with a document whose converter met many constructs it could not render
    faithfully (catalog table `losses`, counted per document)."""

    max_per_1k_words: NonNegative | None  # losses per 1,000 words above which `action` applies; null: never
    action: Literal["flag", "drop"]  # flag: details.losses_flagged in the catalog; drop: status dropped


class LatexSettings(Strict):
    tables: Literal["markdown", "drop"]  # table bodies as Markdown tables, or dropped (captions stay)


class Recipe(Strict):
    filters: FilterSettings
    wikipedia: WikipediaSettings
    tokenizer: TokenizerSettings
    local_docs: LocalDocsSettings
    dedup: DedupSettings
    decontam: DecontamSettings
    latex: LatexSettings
    losses: LossSettings


def load_recipe(path: str | Path | None = None, overrides: dict[str, Any] | None = None) -> Recipe:
    """The default corpus recipe, deep-merged with a user's YAML file and then with `overrides`."""
    return load_config(Recipe, path, overrides, default=DEFAULT_RECIPE)
