"""Linear merge of two SmolLM2 variants saved as sharded safetensors: exact against a direct fp32
computation, loadable, metadata from the instruct side, and clear refusals of incompatible inputs.

The variants keep SmolLM2's first 4 layers (real weights, tied embeddings, 10 MB shards) to fit the
test budget; scripts/compare_mergekit.py merges the full model."""

from __future__ import annotations

import json
import shutil

import pytest
import torch
from safetensors import safe_open
from training_data import make_variants
from typer.testing import CliRunner

from training.config import MergeConfig
from training.merge import merge, parse_model_spec, read_checkpoint


@pytest.fixture(scope="module")
def variants(embedded_model, tmp_path_factory):
    return make_variants(embedded_model, tmp_path_factory.mktemp("variants"), max_shard_size="10MB",
                         vocab_extra=64, num_hidden_layers=4)


@pytest.fixture(scope="module")
def direct(variants) -> dict[str, torch.Tensor]:
    """0.75 * a + 0.25 * b computed directly in fp32 from the full tensors."""
    ta, tb = _tensors(variants[0]), _tensors(variants[1])
    return {k: ta[k].to(torch.float32) * 0.75 + tb[k].to(torch.float32) * 0.25 for k in ta}


def _tensors(folder) -> dict[str, torch.Tensor]:
    ckpt = read_checkpoint(folder)
    out = {}
    for name, shard in ckpt.files.items():
        with safe_open(shard, "pt") as fh:
            out[name] = fh.get_tensor(name)
    return out


def test_merge_equals_direct_fp32(variants, direct, tmp_path):
    a, b = variants[:2]
    assert len(read_checkpoint(a).files) == 2 + 4 * 9 and len(set(read_checkpoint(a).files.values())) > 4
    out = tmp_path / "merged"
    summary = merge(MergeConfig(models=[{"path": a, "weight": 0.75}, {"path": b, "weight": 0.25}], out=out,
                                dtype="float32", base_from=b, max_shard_size="20MB"))
    merged = _tensors(out)
    assert merged.keys() == direct.keys() and "lm_head.weight" not in merged  # tied: the head is the embedding
    for name, tensor in direct.items():
        assert merged[name].dtype == torch.float32
        assert torch.equal(merged[name], tensor), name
    index = json.loads((out / "model.safetensors.index.json").read_text())
    assert set(index["weight_map"]) == set(direct) and summary["shards"] == len(set(index["weight_map"].values()))
    assert summary["shards"] > 3
    # Metadata comes from base_from: its generation config stops on [2, 0].
    assert json.loads((out / "generation_config.json").read_text())["eos_token_id"] == [2, 0]
    assert json.loads((out / "config.json").read_text())["dtype"] == "float32"
    assert (out / "tokenizer.json").is_file() and (out / "chat_template.jinja").is_file()

    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(out)
    assert torch.equal(model.get_output_embeddings().weight, direct["model.embed_tokens.weight"])


def test_cli_merge_bfloat16_normalised_weights(variants, direct, tmp_path):
    from astrodata.cli import app

    a, b = variants[:2]
    out = tmp_path / "cli-merged"
    res = CliRunner().invoke(app, ["merge", "--model", f"{a}:3", "--model", f"{b}:1", "--out", str(out),
                                   "--base-from", str(b)])
    assert res.exit_code == 0, res.output
    merged = _tensors(out)
    for name, tensor in direct.items():
        assert merged[name].dtype == torch.bfloat16
        assert torch.equal(merged[name], tensor.to(torch.bfloat16)), name
    res = CliRunner().invoke(app, ["merge", "--model", f"{a}:3", "--model", f"{b}:1", "--out", str(out)])
    assert res.exit_code == 1 and "exists and is not empty" in " ".join(res.output.split())


def test_merge_refuses_incompatible_inputs(variants, tmp_path, embedded_model):
    a, b, big = variants
    from transformers import AutoConfig, AutoModelForCausalLM

    from astrodata.cli import app

    def cfg(*models, out="out"):
        return MergeConfig(models=[{"path": m, "weight": 1.0} for m in models], out=tmp_path / out)

    with pytest.raises(ValueError, match=r"vocabulary mismatch: .*variant-a has 49152 rows in model.embed_tokens"
                                         r".weight, .*variant-bigvocab has 49216"):
        merge(cfg(a, big))
    # config vocabulary of the metadata donor must match the tensors too
    with pytest.raises(ValueError, match="vocabulary mismatch: .*vocab_size=49216"):
        merge(cfg(a, b).model_copy(update={"base_from": big}))

    wide = tmp_path / "wide"  # same vocabulary, another hidden size
    config = AutoConfig.from_pretrained(embedded_model, num_hidden_layers=4, hidden_size=192, intermediate_size=256,
                                        num_attention_heads=3, num_key_value_heads=1)
    AutoModelForCausalLM.from_config(config).save_pretrained(wide)
    with pytest.raises(ValueError, match=r"hidden-size mismatch: model.embed_tokens.weight .* \(hidden size 576 "
                                         r"vs 192\)"):
        merge(cfg(a, wide))
    for bad in ("nan", "inf", "-inf"):
        with pytest.raises(ValueError, match="the weight must be a finite number"):
            parse_model_spec(f"{a}:{bad}")
    res = CliRunner().invoke(app, ["merge", "--model", f"{a}:nan", "--out", str(tmp_path / "nan-out")])
    assert res.exit_code == 1 and "finite number" in res.output and not (tmp_path / "nan-out").exists()
    with pytest.raises(ValueError, match=r"models.0.weight: Input should be a finite number"):
        from training.config import load_config

        load_config(MergeConfig, None, {"models": [{"path": str(a), "weight": float("nan")}], "out": "x"})

    broken = tmp_path / "broken"
    shutil.copytree(a, broken)
    victim = sorted(broken.glob("model-*.safetensors"))[2]
    victim.unlink()
    with pytest.raises(FileNotFoundError, match=f"shard\\(s\\) {victim.name} listed in model.safetensors.index.json"):
        merge(cfg(broken, b))

    shallow = tmp_path / "shallow"
    AutoModelForCausalLM.from_pretrained(embedded_model, num_hidden_layers=2).save_pretrained(shallow)
    with pytest.raises(ValueError, match=r"different tensor names: only in .*variant-a: \['model.layers.2"):
        merge(cfg(a, shallow))
    with pytest.raises(FileNotFoundError, match="no model.safetensors or model.safetensors.index.json"):
        merge(cfg(a, tmp_path))
    assert not (tmp_path / "out").exists() and not (tmp_path / "out.partial").exists()  # nothing written
    with pytest.raises(ValueError, match="expected PATH:WEIGHT"):
        parse_model_spec("models/sft")
    assert parse_model_spec("C:/x:y:0.25") == {"path": "C:/x:y", "weight": 0.25}
