"""Training configs: pydantic models loaded from YAML, with `key=value` overrides from the command line.

Unknown keys are refused (`extra="forbid"`) so a typo in a recipe fails at load time instead of silently
training with a default. Anything of `TrainingArguments` not modelled here goes under `trainer:`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal, TypeVar

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

C = TypeVar("C", bound=BaseModel)


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class TrainConfig(_Strict):
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


class MergeInput(_Strict):
    path: Path
    weight: float


class MergeConfig(_Strict):
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


def _set_dotted(data: dict[str, Any], key: str, value: Any) -> None:
    *parents, leaf = key.split(".")
    for part in parents:
        data = data.setdefault(part, {})
    data[leaf] = value


def load_config(cls: type[C], path: str | Path | None, overrides: list[str] | None = None) -> C:
    """Read YAML (optional), apply `a.b=value` overrides (values parsed as YAML), validate.

    Errors name the file and the offending key, so `astrodata train` fails in one readable line.
    """
    data: dict[str, Any] = {}
    if path is not None:
        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"config file {path} does not exist")
        data = yaml.safe_load(path.read_text()) or {}
        if not isinstance(data, dict):
            raise ValueError(f"{path}: expected a mapping at the top level")
    for item in overrides or []:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise ValueError(f"override {item!r} is not of the form key=value")
        _set_dotted(data, key.strip(), yaml.safe_load(value))
    try:
        return cls.model_validate(data)
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(map(str, e['loc'])) or '<root>'}: {e['msg']}" for e in exc.errors())
        raise ValueError(f"{path or 'config'}: {problems}") from None
