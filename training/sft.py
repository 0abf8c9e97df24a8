"""Supervised fine-tuning on the QA dataset (`messages`), loss on assistant tokens only.

config -> tokenizer (+ target chat template) -> model (chat special tokens made trainable) ->
dataset (rendered, masked from token offsets, optionally packed; cached) -> Trainer. Run it as
`python -m training.sft --config training/configs/smollm2-cpu-sft.yaml [key=value ...]`,
`accelerate launch -m training.sft --config ...` or `astrodata train sft --config ...`.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from training.config import SFTConfig
from training.data import (
    IGNORE,
    SFTCollator,
    build_sft_dataset,
    chat_template_tokens,
    check_dataset,
    prepare_chat_tokens,
)
from training.run import RunResult, cache_dir, load_model, main, train, training_arguments

log = logging.getLogger("training.sft")


def setup_chat(cfg: SFTConfig, model: Any, tokenizer: Any) -> int:
    """Install the target chat template, make its special tokens trainable, stop generation at the
    end-of-turn token. Returns the end-of-turn token id."""
    if cfg.chat_template:
        path = Path(cfg.chat_template)
        if not path.is_file() and path.parent == Path("training/templates"):  # shipped, run from elsewhere
            path = Path(__file__).resolve().parent / "templates" / path.name
        if not path.is_file():
            raise FileNotFoundError(f"chat template {cfg.chat_template} does not exist")
        tokenizer.chat_template = path.read_text()
    if not tokenizer.chat_template:
        raise ValueError(f"{cfg.model}: the tokenizer has no chat template; set chat_template in the config")
    eot = cfg.eot_token or tokenizer.eos_token
    tokens = list(dict.fromkeys([*(cfg.chat_tokens or chat_template_tokens(tokenizer.chat_template)), eot]))
    vocab = tokenizer.get_vocab()
    if cfg.fix_untrained_tokens:
        fixed = prepare_chat_tokens(model, tokenizer, tokens)
        if fixed:
            log.info("initialised chat tokens to the mean embedding: %s", ", ".join(fixed))
    elif missing := [t for t in tokens if t not in vocab]:
        raise ValueError(f"chat tokens {missing} are not in the vocabulary; enable fix_untrained_tokens")
    eot_id = tokenizer.convert_tokens_to_ids(eot)
    stops = model.generation_config.eos_token_id
    stops = [] if stops is None else [stops] if isinstance(stops, int) else list(stops)
    model.generation_config.eos_token_id = sorted({*stops, eot_id})
    return eot_id


def check_turn_ends(dataset: Any, eot_id: int, eot: str, sample: int = 200) -> None:
    """Every labelled run must end with the end-of-turn token, or the model never learns to stop."""
    for row in dataset.select(range(min(sample, len(dataset))))["labels"]:
        ends = [row[i] for i in range(len(row)) if row[i] != IGNORE and (i + 1 == len(row) or row[i + 1] == IGNORE)]
        if any(tok != eot_id for tok in ends):
            raise ValueError(f"assistant turns do not end with the end-of-turn token {eot!r}; set eot_token "
                             "to the token the chat template closes assistant turns with")


def run(cfg: SFTConfig) -> RunResult:
    """Fine-tune `cfg.model` on the QA dataset at `cfg.dataset`; the model lands in `cfg.output_dir`."""
    check_dataset(cfg.dataset, cfg.messages_column)  # before the model loads (minutes for an 8B model)
    args = training_arguments(cfg, count_tokens="all" if cfg.packing else "non_padding")
    model, tokenizer = load_model(cfg)
    eot_id = setup_chat(cfg, model, tokenizer)
    with args.main_process_first(desc="render and tokenize the QA set", local=False):
        dataset = build_sft_dataset(cfg.dataset, tokenizer, cfg.seq_len, cache_dir(cfg),
                                    messages_column=cfg.messages_column, packing=cfg.packing,
                                    pack_batch=cfg.pack_batch, num_proc=cfg.num_proc)
    check_turn_ends(dataset, eot_id, tokenizer.convert_ids_to_tokens(eot_id))
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else eot_id
    return train(cfg, args, model, tokenizer, dataset, SFTCollator(pad_id))


if __name__ == "__main__":
    main(SFTConfig, run)
