"""The run recipe: one YAML file describing the whole pipeline, one section per stage.

Each section carries the settings of that stage's own command (`astrodata harvest`, `build-corpus`,
`build-qa`, `train cpt|sft`, `merge`, `eval`, `report`, `publish`), minus the folders that wire the
stages together: those the orchestrator derives from `workdir` (corpus -> `WORKDIR/corpus`, QA ->
`WORKDIR/qa`, ...), so a recipe cannot point a stage at the wrong input. A section set to `null`
(or left out, for the optional ones) switches its stage off. Loaded with the one config loader
(`astrodata.core.config.load_config`): strict keys, `a.b=value` overrides from the command line.

Shipped recipes (`astrodata/recipes/`): `demo.yaml` (embedded SmolLM2, minutes on a laptop) and
`astrosage-8b.yaml` (the paper's settings). `astrodata run demo.yaml` finds them by name.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import Any, Literal

from pydantic import Field

from astrodata.core.config import Strict, load_config
from astrodata.corpus.executors import SlurmSettings

RECIPES = Path(__file__).resolve().parents[1] / "recipes"


class HarvestSection(Strict):
    """`astrodata harvest`: arXiv metadata into the catalog's `papers` table."""

    method: Literal["api", "oai", "snapshot"]
    categories: list[str] | None = None  # default: astro-ph and gr-qc
    date_from: str | None = None  # YYYY-MM-DD
    date_until: str | None = None
    snapshot: Path | None = None
    base_url: str | None = None
    metadata_prefix: str = "arXivRaw"
    ids: list[str] | None = None


class CorpusSection(Strict):
    """`astrodata build-corpus`: e-prints, Wikipedia and local documents -> `WORKDIR/corpus`."""

    eprints: list[Path] = Field(default_factory=list)
    from_catalog: bool = False  # download the e-prints of the harvested papers (needs `harvest`)
    eprint_url: str = "https://arxiv.org/e-print/"
    wikipedia: list[str] = Field(default_factory=list)
    categorylinks: Path | None = None
    docs: list[Path] = Field(default_factory=list)
    license: str | None = None
    recipe: Path | None = None  # corpus recipe YAML (thresholds); default astrodata/recipes/corpus.yaml
    benchmarks: list[Path] = Field(default_factory=list)
    workers: int = Field(2, ge=1)
    timeout: float = 120.0
    limit: int | None = None
    bbl: Literal["inline", "drop"] = "inline"
    citations: Literal["marker", "keys", "drop"] = "marker"
    executor: Literal["local", "ray", "slurm"] = "local"
    shards: int = Field(8, ge=1)  # phase-1 shards for ray and slurm
    ray_address: str = "local"  # `ray.init(address=...)`: `local` starts a cluster here, `auto` joins one
    slurm: SlurmSettings = Field(default_factory=SlurmSettings)


class QASection(Strict):
    """`astrodata build-qa`: the corpus -> graded QA, summaries, metadata tasks, SFT mix -> `WORKDIR/qa`."""

    limit: int | None = None
    endpoint: list[str] = Field(default_factory=list)  # none: the embedded model; several: spread over all
    model: str | None = None
    dialect: Literal["auto", "json_schema", "json_object_schema", "none"] | None = None
    recipe: Path | None = None  # QA recipe YAML; default astrodata/recipes/qa.yaml
    settings: dict[str, Any] = Field(default_factory=dict)  # QA recipe overrides, e.g. {qa: {pairs_per_passage: 1}}


class TrainSection(Strict):
    """`astrodata train cpt|sft`: a training config file plus overrides (`dataset`, `output_dir` and the
    starting `model` of SFT are set by the run: the corpus/QA folder, `WORKDIR/cpt|sft`, the CPT model)."""

    config: Path | None = None
    settings: dict[str, Any] = Field(default_factory=dict)


class MergeSection(Strict):
    """`astrodata merge`: `weight` x the SFT model + (1 - `weight`) x `instruct` (AstroSage: 0.75 / 0.25)."""

    instruct: str  # folder of the instruct model, or `embedded`
    weight: float = Field(0.75, gt=0, le=1)
    dtype: Literal["float32", "bfloat16", "float16"] = "bfloat16"
    max_shard_size: str = "5GB"


class EvalSection(Strict):
    """`astrodata eval`: the merged model (and `baselines`, for comparison) on AstroMLab-1-style MCQs."""

    data: str
    method: Literal["base-token", "instruct-token", "generate"] = "base-token"
    answer_key: Path | None = None
    limit: int | None = None
    few_shot: int = 0
    batch_size: int = 8
    dtype: Literal["float32", "bfloat16"] = "float32"
    max_new_tokens: int = 256
    endpoint: str | None = None  # evaluate baselines served at an endpoint
    baselines: list[str] = Field(default_factory=list)  # model folders, Hub ids or `embedded`


class ReportSection(Strict):
    """`astrodata report`: the eval runs beside published AstroMLab-1 scores."""

    costs: dict[str, float] = Field(default_factory=dict)  # label -> USD per 0.1M tokens


class CardsSection(Strict):
    """Dataset cards for the corpus and QA folders, the model card for the merged model."""

    corpus_title: str = "astrodata astronomy corpus"
    qa_title: str = "astrodata astronomy QA and SFT mix"


class PublishSection(Strict):
    """`astrodata publish`: runs only when asked (`astrodata run --publish`). A null repo is not pushed."""

    model_repo: str | None = None
    corpus_repo: str | None = None
    qa_repo: str | None = None
    private: bool = True
    revision: str | None = None
    commit_message: str | None = None
    dry_run: bool = False


class RunRecipe(Strict):
    """The whole pipeline. `workdir` is the run folder: catalog, every stage's output, report.md."""

    workdir: Path
    harvest: HarvestSection | None = None
    corpus: CorpusSection
    qa: QASection | None = None
    cpt: TrainSection | None = None
    sft: TrainSection | None = None
    merge: MergeSection | None = None
    eval: EvalSection | None = None
    report: ReportSection | None = None
    cards: CardsSection | None = None
    publish: PublishSection | None = None


def recipe_path(name: str | Path) -> Path:
    """A recipe file by path, or a shipped recipe by name (`demo.yaml`, `demo`, `astrosage-8b.yaml`).

    Raises FileNotFoundError naming the shipped recipes when neither exists."""
    path = Path(name)
    if path.is_file():
        return path
    for candidate in (RECIPES / path.name, RECIPES / f"{path.name}.yaml"):
        if candidate.is_file() and candidate.name not in ("corpus.yaml", "qa.yaml"):
            return candidate
    shipped = sorted(p.name for p in RECIPES.glob("*.yaml") if p.name not in ("corpus.yaml", "qa.yaml"))
    raise FileNotFoundError(f"recipe {name} not found (shipped recipes: {', '.join(shipped)})")


def load_run_recipe(name: str | Path, overrides: Iterable[str] | dict[str, Any] | None = None) -> RunRecipe:
    """Load a run recipe (file or shipped name) with `a.b=value` overrides; strict, one-line errors."""
    return load_config(RunRecipe, recipe_path(name), overrides)
