"""CPT and SFT runs through the Trainer on CPU: resume continues the step count (and reproduces the
uninterrupted run), SFT with the Llama-3.1 template on a base vocabulary trains and saves a model that
stops at `<|eot_id|>`, and the CLI wraps bad configs into one-line errors.

To stay within the test budget on 2 busy cores the runs use the first 4 layers of SmolLM2 (its real
weights and tokenizer, saved as a model folder) at tiny sequence lengths; the full 30-layer model runs
20 steps in `scripts/train_smoke.py`.
"""

from __future__ import annotations

import json
import math
import shutil

import pytest
from conftest import shared
from training_data import build_eprint_corpus, sharegpt_messages, write_qa
from typer.testing import CliRunner

from training import cpt, sft
from training.config import CPTConfig, SFTConfig, load_config

LLAMA_TEMPLATE = "training/templates/llama-3.1.jinja"


@pytest.fixture(scope="module")
def small_model(embedded_model, tmp_path_factory):
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    out = tmp_path_factory.mktemp("smollm2-4l")
    AutoModelForCausalLM.from_pretrained(embedded_model, dtype=torch.float32, num_hidden_layers=4).save_pretrained(out)
    AutoTokenizer.from_pretrained(embedded_model).save_pretrained(out)
    return out


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    out = tmp_path_factory.mktemp("corpus") / "corpus"
    build_eprint_corpus(shared("arxiv-eprints"), out, limit=3, real=False)
    return out


def test_cpt_resume_continues_the_step_count(tmp_path, small_model, corpus):
    overrides = [f"model={small_model}", f"dataset={corpus}", f"output_dir={tmp_path / 'run'}", "seq_len=32",
                 "batch_size=2", "max_steps=3", "save_steps=2", "save_total_limit=null", "logging_steps=1",
                 "warmup=1", "learning_rate=1e-3", "gradient_checkpointing=true"]
    cfg = load_config(CPTConfig, "training/configs/smollm2-cpu-cpt.yaml", overrides)
    first = cpt.run(cfg)
    assert first.global_step == 3 and [s for s, _ in first.losses] == [1, 2, 3]
    assert first.tokens_seen == 3 * 2 * 32

    # Interrupted after step 2: the last checkpoint and the final model are gone.
    shutil.rmtree(tmp_path / "run" / "checkpoint-3")
    (tmp_path / "run" / "model.safetensors").unlink()
    resumed = cpt.run(cfg)
    assert resumed.global_step == 3
    assert [s for s, _ in resumed.losses] == [1, 2, 3]  # history restored from checkpoint-2, one new step
    assert resumed.tokens_seen == first.tokens_seen
    # Same weights, optimizer, schedule and data order as the uninterrupted run.
    assert math.isclose(resumed.losses[-1][1], first.losses[-1][1], rel_tol=1e-3)
    assert (tmp_path / "run" / "model.safetensors").is_file()


def test_sft_llama_template_on_a_base_vocabulary(tmp_path, small_model):
    qa = write_qa(tmp_path / "qa", sharegpt_messages(shared("sharegpt", "llamafactory__glaive_toolcall_en_demo.json")))
    out = tmp_path / "sft"
    cfg = load_config(SFTConfig, "training/configs/smollm2-cpu-sft.yaml", [
        f"model={small_model}", f"dataset={qa}", f"output_dir={out}", "seq_len=128", "max_steps=2",
        "save_steps=100", f"chat_template={LLAMA_TEMPLATE}", "eot_token=<|eot_id|>"])
    result = sft.run(cfg)
    assert result.global_step == 2
    assert all(math.isfinite(loss) for _, loss in result.losses)

    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(out)
    eot = tok.convert_tokens_to_ids("<|eot_id|>")
    assert eot == 49152 + 3  # the template's 4 tokens were added after SmolLM2's 49152
    assert "<|start_header_id|>" in tok.chat_template
    assert eot in json.loads((out / "generation_config.json").read_text())["eos_token_id"]
    assert json.loads((out / "config.json").read_text())["vocab_size"] == 49156
    stats = json.loads(next((out / "dataset-cache").glob("sft-*/build_stats.json")).read_text())
    assert stats["rejected"]["longer than seq_len=128"] > 200 and stats["examples"] >= 8


def test_cli_reports_bad_config_in_one_line(tmp_path):
    from astrodata.cli import app

    bad = tmp_path / "bad.yaml"
    bad.write_text(f"dataset: {tmp_path}\noutput_dir: {tmp_path / 'o'}\nbatch_size: 0\n")
    res = CliRunner().invoke(app, ["train", "sft", "--config", str(bad)])
    assert res.exit_code == 1
    assert "batch_size: Input should be greater than 0" in " ".join(res.output.split())
    res = CliRunner().invoke(app, ["train", "dpo", "--config", str(bad)])  # refused by the parser (usage error)
    assert res.exit_code == 2 and "'dpo' is not one of 'cpt', 'sft'" in res.output
