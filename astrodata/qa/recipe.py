"""The QA recipe: every setting of `astrodata build-qa` in one validated model.

Defaults live in `astrodata/recipes/qa.yaml`; a user's YAML overrides any subset (deep merge, as
the corpus recipe does) and unknown keys are errors, so a typo fails loudly.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import Field

from astrodata.core.config import Strict, load_config

DEFAULT_QA_RECIPE = Path(__file__).resolve().parents[1] / "recipes" / "qa.yaml"

Dialect = Literal["auto", "json_schema", "json_object_schema", "none"]
KINDS = ("qa", "summary", "metadata", "instruct")


class ModelSettings(Strict):
    model: str
    endpoint: str | list[str] | None  # several: one pool (astrodata/qa/pool.py), concurrency per endpoint
    dialect: Dialect
    temperature: float
    seed: int | None
    context_tokens: int | None


class JudgeSettings(Strict):
    enabled: bool
    model: str | None
    endpoint: str | list[str] | None
    dialect: Dialect | None
    method: Literal["auto", "llm", "grounding"] = "auto"  # astrodata.qa.grade
    threshold: int = Field(ge=1, le=5)
    max_tokens: int
    passage_chars: int


class PassageSettings(Strict):
    size_chars: int = Field(gt=0)
    overlap_chars: int = Field(ge=0)
    min_chars: int = Field(ge=0)
    max_per_doc: int | None
    embedded_max_per_doc: int | None = Field(None, ge=1)  # the cap when the generator is the embedded model


class QASettings(Strict):
    enabled: bool
    pairs_per_passage: int = Field(ge=1)
    max_question_chars: int = Field(ge=16)
    max_answer_chars: int = Field(ge=16)
    max_tokens: int
    abstract_chars: int


class SummarySettings(Strict):
    enabled: bool
    input_chars: int
    max_summary_chars: int = Field(ge=32)
    max_tokens: int


class MetadataSettings(Strict):
    enabled: bool


class EngineSettings(Strict):
    concurrency: int = Field(ge=1)
    requests_per_minute: float | None = Field(gt=0, allow_inf_nan=False)
    tokens_per_minute: float | None = Field(gt=0, allow_inf_nan=False)
    max_attempts: int = Field(ge=1)
    invalid_retries: int = Field(ge=0)
    timeout_s: float = Field(gt=0, allow_inf_nan=False)
    backoff_base_s: float = Field(ge=0, allow_inf_nan=False)
    backoff_max_s: float = Field(ge=0, allow_inf_nan=False)
    chunk_docs: int = Field(ge=1)
    # The build ends non-zero when more than this share of its requests failed for good; null
    # (the default): only when every one did. A fatal error (bad key, unknown model) always does.
    max_failed_share: float | None = Field(default=None, ge=0, le=1, allow_inf_nan=False)


class Price(Strict):
    input: float  # USD per million prompt tokens
    output: float  # USD per million completion tokens


class QADedupSettings(Strict):
    exact: bool
    near_threshold: float | None
    ngram: int


class QADecontamSettings(Strict):
    benchmarks: list[str]
    ngram: int
    min_words: int


class InstructSettings(Strict):
    source: str | None
    subset: str | None
    split: str
    limit: int | None
    languages: list[str]
    min_language_score: float
    min_chars: int
    max_chars: int
    dedup: bool
    decontam: bool
    include_labels: dict[str, list[str]]
    exclude_labels: dict[str, list[str]]


class MixSettings(Strict):
    proportions: dict[Literal["qa", "summary", "metadata", "instruct"], float] | None
    total: int | None
    seed: int


class QARecipe(Strict):
    generator: ModelSettings
    judge: JudgeSettings
    passages: PassageSettings
    qa: QASettings
    summary: SummarySettings
    metadata: MetadataSettings
    engine: EngineSettings
    prices: dict[str, Price]
    batch_discount: float
    dedup: QADedupSettings
    decontam: QADecontamSettings
    instruct: InstructSettings
    mix: MixSettings


def load_qa_recipe(path: str | Path | None = None, overrides: dict[str, Any] | None = None) -> QARecipe:
    """The default QA recipe, deep-merged with a user's YAML file and then with `overrides`."""
    recipe = load_config(QARecipe, path, overrides, default=DEFAULT_QA_RECIPE)
    if recipe.passages.overlap_chars >= recipe.passages.size_chars:
        raise ValueError("recipe: passages.overlap_chars must be smaller than passages.size_chars")
    if recipe.mix.proportions is not None and any(v < 0 for v in recipe.mix.proportions.values()):
        raise ValueError("recipe: mix.proportions must be >= 0")
    return recipe
