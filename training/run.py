"""Trainer plumbing shared by CPT and SFT: TrainingArguments from a config, model loading, resume, CLI.

The same code runs on one CPU (`python -m training.cpt --config ...`) and on many GPUs under
`accelerate launch` (FSDP2 or DeepSpeed ZeRO-3 from the accelerate config: the Trainer picks the
plugin up from the environment accelerate sets, so nothing here branches on the backend except
activation checkpointing, which FSDP2 must own when its config enables it).
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from training.config import C, TrainConfig, load_config

log = logging.getLogger("training")


@dataclass
class RunResult:
    """What a training run produced: where the model is, the step reached, the loss curve, throughput.

    `tokens_seen` counts token positions fed to the model: exact for CPT blocks and unpacked SFT (the
    attention mask excludes padding); packed SFT rows also count the padding at their ends (1 - fill
    of the packed dataset, a few percent)."""

    output_dir: Path
    global_step: int
    losses: list[tuple[int, float]]
    train_runtime: float
    tokens_seen: int

    @property
    def tokens_per_second(self) -> float:
        return self.tokens_seen / self.train_runtime if self.train_runtime else 0.0


def use_bf16(setting: bool | str) -> bool:
    """`auto`: bf16 mixed precision where the accelerator supports it (never on CPU, where it is slower)."""
    if setting != "auto":
        return bool(setting)
    return torch.cuda.is_available() and torch.cuda.is_bf16_supported()


def cache_dir(cfg: TrainConfig) -> Path:
    return Path(cfg.cache_dir) if cfg.cache_dir else Path(cfg.output_dir) / "dataset-cache"


def training_arguments(cfg: TrainConfig, count_tokens: str = "all") -> Any:
    """TrainingArguments for `cfg`. `count_tokens` is how `num_input_tokens_seen` counts: `all` positions
    (right when batches hold no padding) or `non_padding` (from the attention mask)."""
    from transformers import TrainingArguments

    fsdp_owns_checkpointing = os.environ.get("FSDP_ACTIVATION_CHECKPOINTING", "").lower() == "true"
    args: dict[str, Any] = {
        "output_dir": str(cfg.output_dir),
        "per_device_train_batch_size": cfg.batch_size,
        "gradient_accumulation_steps": cfg.grad_accum,
        "learning_rate": cfg.learning_rate,
        "lr_scheduler_type": "cosine_with_min_lr" if cfg.min_lr_rate else "cosine",
        "lr_scheduler_kwargs": {"min_lr_rate": cfg.min_lr_rate} if cfg.min_lr_rate else {},
        "warmup_steps": int(cfg.warmup) if cfg.warmup >= 1 else cfg.warmup,
        "weight_decay": cfg.weight_decay,
        "max_grad_norm": cfg.max_grad_norm,
        "num_train_epochs": cfg.epochs,
        "max_steps": cfg.max_steps,
        "bf16": use_bf16(cfg.bf16),
        "activation_checkpointing": cfg.gradient_checkpointing and not fsdp_owns_checkpointing,
        "logging_steps": cfg.logging_steps,
        "save_steps": cfg.save_steps,
        "save_total_limit": cfg.save_total_limit,
        "seed": cfg.seed,
        "report_to": "none",
        "include_num_input_tokens_seen": count_tokens,
        "dataloader_pin_memory": torch.cuda.is_available(),
    }
    args.update(cfg.trainer)
    return TrainingArguments(**args)


def load_model(cfg: TrainConfig) -> tuple[Any, Any]:
    """Model (fp32 master weights by default: mixed precision casts per op) and its tokenizer."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from astrodata.core.models import resolve_model

    path = resolve_model(cfg.model)
    if not Path(path, "config.json").is_file():
        raise FileNotFoundError(f"model {cfg.model!r}: {path}/config.json not found (expects a local model folder)")
    tokenizer = AutoTokenizer.from_pretrained(path)
    model = AutoModelForCausalLM.from_pretrained(
        path, dtype=getattr(torch, cfg.model_dtype), attn_implementation=cfg.attn_implementation
    )
    return model, tokenizer


def resume_point(cfg: TrainConfig) -> str | None:
    """Checkpoint to resume from: the newest in output_dir for `auto`, the given folder, or none."""
    from transformers.trainer_utils import get_last_checkpoint

    if cfg.resume is None:
        return None
    if cfg.resume == "auto":
        return get_last_checkpoint(str(cfg.output_dir)) if Path(cfg.output_dir).is_dir() else None
    if not Path(cfg.resume).is_dir():
        raise FileNotFoundError(f"resume checkpoint {cfg.resume} does not exist")
    return str(cfg.resume)


def train(cfg: TrainConfig, args: Any, model: Any, tokenizer: Any, dataset: Any, collator: Any) -> RunResult:
    """Run the Trainer (resuming when asked), save model + tokenizer to output_dir, return the curve."""
    from transformers import Trainer

    trainer = Trainer(model=model, args=args, train_dataset=dataset, data_collator=collator,
                      processing_class=tokenizer)
    checkpoint = resume_point(cfg)
    if checkpoint:
        log.info("resuming from %s", checkpoint)
    output = trainer.train(resume_from_checkpoint=checkpoint)
    trainer.save_model(str(cfg.output_dir))
    trainer.save_state()
    losses = [(h["step"], h["loss"]) for h in trainer.state.log_history if "loss" in h]
    result = RunResult(Path(cfg.output_dir), trainer.state.global_step, losses,
                       output.metrics.get("train_runtime", 0.0), int(trainer.state.num_input_tokens_seen))
    if trainer.is_world_process_zero():
        write_card(cfg, args, result, dataset)
    return result


def write_card(cfg: TrainConfig, args: Any, result: RunResult, dataset: Any) -> None:
    """The run's facts beside the model (`astrodata_training.json`: what the model card reads), then the card."""
    import json

    from cards.render import TRAINING_RECORD, base_license, model_origin, write_model_card
    from training.data import _n_tokens

    hardware = (f"{args.world_size} x {torch.cuda.get_device_name(0)}" if torch.cuda.is_available()
                else f"CPU ({os.cpu_count()} cores)")
    record = {
        "stage": type(cfg).__name__.removesuffix("Config").lower(),
        "base_models": model_origin(cfg.model)[1],
        "license": base_license(cfg.model),
        "dataset": {"name": Path(cfg.dataset).name, "examples": len(dataset), "tokens": _n_tokens(dataset)},
        "config": {k: cfg.model_dump(mode="json")[k] for k in ("seq_len", "batch_size", "grad_accum",
                                                                "learning_rate", "min_lr_rate", "warmup",
                                                                "epochs", "max_steps", "seed")},
        "world_size": args.world_size,
        "precision": "bf16 mixed" if args.bf16 else cfg.model_dtype,
        "hardware": hardware,
        "global_step": result.global_step,
        "tokens_seen": result.tokens_seen,
        "final_loss": result.losses[-1][1] if result.losses else None,
        "train_runtime": result.train_runtime,
    }
    (Path(cfg.output_dir) / TRAINING_RECORD).write_text(json.dumps(record, indent=2) + "\n")
    write_model_card(Path(cfg.output_dir))


def main(config_cls: type[C], run: Callable[[C], RunResult], argv: list[str] | None = None) -> None:
    """`python -m training.<stage> --config FILE [key=value ...]` (also under `accelerate launch -m`)."""
    stage = run.__module__.rsplit(".", 1)[-1]
    parser = argparse.ArgumentParser(prog=f"python -m training.{stage}", description=f"{stage.upper()} training")
    parser.add_argument("--config", required=True, help="YAML config (training/configs/)")
    parser.add_argument("overrides", nargs="*", help="key=value overrides, e.g. max_steps=20")
    ns = parser.parse_args(sys.argv[1:] if argv is None else argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    result = run(load_config(config_cls, ns.config, ns.overrides))
    print(f"{stage}: {result.global_step} steps, model in {result.output_dir}, "
          f"{result.tokens_per_second:.0f} tokens/s", flush=True)
