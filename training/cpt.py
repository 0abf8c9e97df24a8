"""Continued pre-training: corpus dataset -> packed blocks -> causal-LM loss on every token.

config -> tokenizer + model -> dataset (tokenized once, cached) -> Trainer. Run it as
`python -m training.cpt --config training/configs/smollm2-cpu-cpt.yaml [key=value ...]`,
`accelerate launch -m training.cpt --config ...` or `astrodata train cpt --config ...`.
"""

from __future__ import annotations

from training.config import CPTConfig
from training.data import CPTCollator, build_cpt_dataset, check_dataset
from training.run import RunResult, cache_dir, load_model, main, train, training_arguments


def run(cfg: CPTConfig) -> RunResult:
    """Train `cfg.model` on the corpus at `cfg.dataset`; the model lands in `cfg.output_dir`."""
    check_dataset(cfg.dataset, cfg.text_column)  # before the model loads (minutes for an 8B model)
    args = training_arguments(cfg)
    model, tokenizer = load_model(cfg)
    with args.main_process_first(desc="tokenize the corpus", local=False):
        dataset = build_cpt_dataset(cfg.dataset, tokenizer, cfg.seq_len, cache_dir(cfg),
                                    text_column=cfg.text_column, eos_token=cfg.eos_token,
                                    num_proc=cfg.num_proc)
    return train(cfg, args, model, tokenizer, dataset, CPTCollator())


if __name__ == "__main__":
    main(CPTConfig, run)
