"""Training configs: strict pydantic models, read by `astrodata.core.config.load_config` (YAML + `a.b=value`
overrides from the command line, the one loader every stage uses).

Unknown keys are refused so a typo in a recipe fails at load time instead of silently training with a
default. Anything of `TrainingArguments` not modelled here goes under `trainer:`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal, TypeVar

from pydantic import BaseModel, Field, model_validator

from astrodata.core.config import Strict, load_config

__all__ = ["C", "CPTConfig", "MergeConfig", "MergeInput", "SFTConfig", "TrainConfig", "find_config", "load_config"]

C = TypeVar("C", bound=BaseModel)
CONFIGS_DIR = Path(__file__).resolve().parent / "configs"  # shipped in the package (package data)


def shipped_configs() -> list[str]:
    """Names of the configs shipped with the package (`smollm2-cpu-cpt`, ...)."""
    return sorted(p.stem for p in CONFIGS_DIR.glob("*.yaml"))


def find_config(name_or_path: str | Path) -> Path:
    """The config file at `name_or_path`, else the shipped config of that name (`smollm2-cpu-cpt`,
    `.yaml` optional), so `--config NAME` works from any folder. FileNotFoundError lists the names."""
    path = Path(name_or_path)
    if path.is_file():
        return path
    shipped = CONFIGS_DIR / (path.name if path.suffix in (".yaml", ".yml") else f"{path.name}.yaml")
    # A bare name, or the repository-relative path the docs show, run from another folder.
    if path.parent in (Path("."), Path("training/configs")) and shipped.is_file():
        return shipped
    raise FileNotFoundError(f"config {name_or_path}: no such file, and no shipped config of that name "
                            f"(shipped: {', '.join(shipped_configs())})")


class TrainConfig(Strict):
    """Settings shared by CPT and SFT: model, data, optimisation schedule, checkpointing."""

    model: str = Field("embedded", description="model folder, or `embedded` for the offline SmolLM2")
    dataset: Path = Field(description="dataset folder in HF layout (data/*.parquet)")
    output_dir: Path
    cache_dir: Path | None = Field(None, description="tokenized-dataset cache; default OUTPUT_DIR/../cache")
    seq_len: int = Field(2048, gt=0)
    batch_size: int = Field(1, gt=0, description="per device")
    grad_accum: int = Field(1, gt=0)
    learning_rate: float = Field(2e-5, gt=0)
    min_lr_rate: float = Field(0.0, ge=0, lt=1, description="cosine floor as a fraction of the peak")
    warmup: float = Field(0.03, ge=0, description="< 1: fraction of the steps; >= 1: number of steps")
    weight_decay: float = 0.0
    max_grad_norm: float = 1.0
    epochs: float = 1.0
    max_steps: int = -1
    bf16: bool | Literal["auto"] = "auto"
    gradient_checkpointing: bool = True
    attn_implementation: str = "sdpa"
    model_dtype: Literal["float32", "bfloat16"] = "float32"
    logging_steps: int = 10
    save_steps: int = 500
    save_total_limit: int | None = 3
    seed: int = 42
    resume: Literal["auto"] | Path | None = Field(
        "auto", description="`auto`: newest checkpoint in output_dir if any; a path; or null"
    )
    num_proc: int | None = Field(None, description="worker processes for tokenization")
    trainer: dict[str, Any] = Field(default_factory=dict, description="extra TrainingArguments")


class CPTConfig(TrainConfig):
    text_column: str = "text"
    eos_token: str | None = Field(None, description="document separator; default the tokenizer's EOS")


class SFTConfig(TrainConfig):
    messages_column: str = "messages"
    chat_template: Path | None = Field(None, description="Jinja file; default the tokenizer's own template")
    eot_token: str | None = Field(None, description="token closing an assistant turn; default tokenizer EOS")
    chat_tokens: list[str] | None = Field(
        None, description="special tokens of the template; default: every <|...|> literal in the template"
    )
    fix_untrained_tokens: bool = True
    packing: bool = False
    pack_batch: int = Field(1000, gt=0, description="examples per packing group (first-fit decreasing)")


class MergeInput(Strict):
    path: Path
    weight: float = Field(allow_inf_nan=False)  # nan/inf would make every merged tensor nan


class MergeConfig(Strict):
    models: list[MergeInput] = Field(min_length=1)
    out: Path
    dtype: Literal["float32", "bfloat16", "float16"] = "bfloat16"
    base_from: Path | None = Field(None, description="config/tokenizer source; default the first model")
    normalize: bool = Field(True, description="divide by the sum of weights (mergekit's default)")
    max_shard_size: str = "5GB"

    @model_validator(mode="after")
    def _weights(self) -> MergeConfig:
        if sum(m.weight for m in self.models) == 0:
            raise ValueError("merge weights sum to 0")
        return self
