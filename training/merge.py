"""Linear merge of safetensors checkpoints, tensor by tensor: `sum_i w_i * theta_i` in fp32.

AstroSage's last step: 75% of the CPT+SFT model plus 25% of Llama-3.1-8B-Instruct. Tensors are read
lazily through `safe_open` (memory-mapped), so peak memory is about one output shard plus one tensor in
fp32, not whole models. Every input is checked before anything is written: the same tensor names,
the same shapes (a different vocabulary is reported as such), the same tying of embeddings. Config,
tokenizer, generation config and chat template are copied from `base_from` (the instruct model):
a base-derived generation config would not stop on `<|eot_id|>`.

Hand-written rather than calling mergekit because we need the bounded memory, the checks and the
instruct-side metadata in one short, dependency-free step; `scripts/compare_mergekit.py` checks that
the tensors equal mergekit's `linear` merge.
"""

from __future__ import annotations

import json
import math
import re
import shutil
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from safetensors import safe_open
from safetensors.torch import save_file

from astrodata.core.files import atomic_dir
from training.config import MergeConfig

DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}
INDEX = "model.safetensors.index.json"
HEAD = "lm_head.weight"
METADATA_FILES = ("config.json", "generation_config.json", "tokenizer.json", "tokenizer_config.json",
                  "special_tokens_map.json", "chat_template.jinja", "chat_template.json", "tokenizer.model",
                  "added_tokens.json", "vocab.json", "merges.txt")


def resolve_input(ref: str | Path, dtype: str = "bfloat16") -> Path:
    """A merge input as a local folder: `embedded` -> the cached SmolLM2 in `dtype`; an existing
    folder as is; anything shaped like a Hub id (`org/name`) -> its snapshot through
    `huggingface_hub.snapshot_download` (weights, config, tokenizer; the local cache answers when
    offline). Raises FileNotFoundError naming the input when none of these applies."""
    from astrodata.core.models import EMBEDDED_NAME, embedded_model_path

    text = str(ref)
    if text == EMBEDDED_NAME:
        return embedded_model_path(dtype)
    path = Path(text)
    if path.exists() or not _HUB_ID.fullmatch(text):
        return path
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import HfHubHTTPError, LocalEntryNotFoundError

    try:
        return Path(snapshot_download(text, allow_patterns=["*.safetensors", "*.json", "*.jinja", "tokenizer*",
                                                            "*.model", "*.txt"]))
    except LocalEntryNotFoundError:
        raise FileNotFoundError(f"{text}: not a local folder, and not in the Hub cache while offline "
                                f"(connect, or download it first: hf download {text})") from None
    except HfHubHTTPError as exc:
        raise FileNotFoundError(f"{text}: not a local folder, and the Hub download failed "
                                f"({str(exc).splitlines()[0]})") from None


_HUB_ID = re.compile(r"[A-Za-z0-9][\w.-]*/[\w.-]+")


@dataclass
class Checkpoint:
    """A model folder's tensors: name -> shard file, shapes, and whether embeddings are tied."""

    path: Path
    files: dict[str, Path]
    shapes: dict[str, tuple[int, ...]]
    tied: bool
    config: dict[str, Any]


def read_checkpoint(path: Path) -> Checkpoint:
    """Index a safetensors model folder without loading tensors; clear errors for missing pieces."""
    path = Path(path)
    if not path.is_dir():
        raise FileNotFoundError(f"{path}: not a model folder (merge takes local folders)")
    if (path / INDEX).is_file():
        weight_map = json.loads((path / INDEX).read_text())["weight_map"]
        missing = sorted({f for f in weight_map.values() if not (path / f).is_file()})
        if missing:
            raise FileNotFoundError(f"{path}: shard(s) {', '.join(missing)} listed in {INDEX} are missing")
        files = {name: path / f for name, f in weight_map.items()}
    elif (path / "model.safetensors").is_file():
        with safe_open(path / "model.safetensors", "pt") as fh:
            files = {name: path / "model.safetensors" for name in fh.keys()}
    else:
        raise FileNotFoundError(f"{path}: no model.safetensors or {INDEX} (only safetensors checkpoints merge)")
    shapes: dict[str, tuple[int, ...]] = {}
    for shard in sorted(set(files.values())):
        with safe_open(shard, "pt") as fh:
            present = set(fh.keys())
            for name in [n for n, f in files.items() if f == shard]:
                if name not in present:
                    raise ValueError(f"{shard}: tensor {name} listed in the index is not in the shard")
                shapes[name] = tuple(fh.get_slice(name).get_shape())
    config = json.loads((path / "config.json").read_text()) if (path / "config.json").is_file() else {}
    tied = bool(config.get("tie_word_embeddings", HEAD not in files))
    return Checkpoint(path, files, shapes, tied, config)


def _merged_names(ckpt: Checkpoint) -> list[str]:
    """Tensor names that take part: a tied model's duplicate head is left out (it is the embedding)."""
    return [n for n in ckpt.files if not (ckpt.tied and n == HEAD)]


def check_compatible(ckpts: list[Checkpoint]) -> list[str]:
    """Refuse inputs that cannot be averaged; return the tensor names to merge, in the first model's order."""
    ref = ckpts[0]
    names = _merged_names(ref)
    for other in ckpts[1:]:
        if other.tied != ref.tied:
            raise ValueError(f"{ref.path} {'ties' if ref.tied else 'does not tie'} its embeddings and "
                             f"{other.path} {'does' if other.tied else 'does not'}: cannot merge")
        theirs = set(_merged_names(other))
        if theirs != set(names):
            only_ref, only_other = sorted(set(names) - theirs)[:5], sorted(theirs - set(names))[:5]
            raise ValueError(f"different tensor names: only in {ref.path}: {only_ref}; only in {other.path}: "
                             f"{only_other}")
        for name in names:
            mine, theirs_shape = ref.shapes[name], other.shapes[name]
            if mine == theirs_shape:
                continue
            embedding = name.endswith("embed_tokens.weight") or name == HEAD
            if embedding and mine[1:] == theirs_shape[1:]:
                raise ValueError(f"vocabulary mismatch: {ref.path} has {mine[0]} rows in {name}, "
                                 f"{other.path} has {theirs_shape[0]}; merge only models that share a tokenizer")
            if embedding:
                raise ValueError(f"hidden-size mismatch: {name} is {mine} in {ref.path}, {theirs_shape} in "
                                 f"{other.path} (hidden size {mine[-1]} vs {theirs_shape[-1]}); merge only models "
                                 "of one architecture")
            raise ValueError(f"shape mismatch for {name}: {mine} in {ref.path}, {theirs_shape} in {other.path}")
    return names


class ShardReader:
    """Lazily opened `safe_open` handles, each closed as soon as its last needed tensor is read.

    A memory-mapped shard counts towards RSS for the pages already read while it stays mapped, so
    keeping every input open would grow to the size of all inputs; closing spent shards keeps the
    resident set at about one shard per input.
    """

    def __init__(self, ckpts: list[Checkpoint], names: list[str]):
        self.ckpts = ckpts
        self.left = [Counter(c.files[n] for n in names) for c in ckpts]
        self.open: list[dict[Path, Any]] = [{} for _ in ckpts]

    def get(self, k: int, name: str) -> torch.Tensor:
        shard = self.ckpts[k].files[name]
        handles = self.open[k]
        if shard not in handles:
            handles[shard] = safe_open(shard, "pt").__enter__()
        tensor = handles[shard].get_tensor(name)
        self.left[k][shard] -= 1
        if self.left[k][shard] == 0:
            handles.pop(shard).__exit__(None, None, None)
        return tensor

    def __enter__(self) -> ShardReader:
        return self

    def __exit__(self, *exc: object) -> None:
        for handles in self.open:
            for fh in handles.values():
                fh.__exit__(None, None, None)
            handles.clear()


def _parse_size(text: str) -> int:
    units = {"KB": 10**3, "MB": 10**6, "GB": 10**9, "KIB": 2**10, "MIB": 2**20, "GIB": 2**30, "B": 1}
    t = text.strip().upper()
    for unit, factor in sorted(units.items(), key=lambda u: -len(u[0])):
        if t.endswith(unit):
            return int(float(t[: -len(unit)]) * factor)
    return int(t)


def plan_shards(names: list[str], shapes: dict[str, tuple[int, ...]], dtype: torch.dtype,
                max_bytes: int) -> list[list[str]]:
    """Group tensor names into output shards of at most `max_bytes` (a bigger tensor gets its own)."""
    item = torch.empty(0, dtype=dtype).element_size()
    shards: list[list[str]] = [[]]
    size = 0
    for name in names:
        n = item * int(torch.Size(shapes[name]).numel())
        if shards[-1] and size + n > max_bytes:
            shards.append([])
            size = 0
        shards[-1].append(name)
        size += n
    return shards


def merge(cfg: MergeConfig) -> dict[str, Any]:
    """Write the linear merge described by `cfg` to `cfg.out`; returns counts for the caller to print."""
    out = Path(cfg.out)
    if out.exists() and any(out.iterdir()):
        raise FileExistsError(f"{out} exists and is not empty; remove it or choose another --out")
    ckpts = [read_checkpoint(resolve_input(m.path, cfg.dtype)) for m in cfg.models]
    names = check_compatible(ckpts)
    total = sum(m.weight for m in cfg.models) if cfg.normalize else 1.0
    weights = [m.weight / total for m in cfg.models]
    base_dir = resolve_input(cfg.base_from, cfg.dtype) if cfg.base_from else ckpts[0].path
    _check_base(base_dir, ckpts[0], names)
    dtype = DTYPES[cfg.dtype]
    shards = plan_shards(names, ckpts[0].shapes, dtype, _parse_size(cfg.max_shard_size))

    with atomic_dir(out) as tmp:
        weight_map: dict[str, str] = {}
        total_bytes = 0
        with ShardReader(ckpts, names) as reader:
            for i, shard in enumerate(shards):
                file_name = f"model-{i + 1:05d}-of-{len(shards):05d}.safetensors"
                tensors = {}
                for name in shard:
                    acc = reader.get(0, name).to(torch.float32).mul_(weights[0])
                    for k in range(1, len(weights)):
                        acc.add_(reader.get(k, name).to(torch.float32).mul_(weights[k]))
                    tensors[name] = acc.to(dtype).contiguous()
                    del acc
                    total_bytes += tensors[name].numel() * tensors[name].element_size()
                    weight_map[name] = file_name
                save_file(tensors, str(tmp / file_name), metadata={"format": "pt"})
                del tensors
        index = {"metadata": {"total_size": total_bytes}, "weight_map": weight_map}
        (tmp / INDEX).write_text(json.dumps(index, indent=2, sort_keys=True))
        copied = _copy_metadata(base_dir, tmp, cfg.dtype)
    write_card(cfg, weights, base_dir)
    return {"out": str(out), "tensors": len(names), "shards": len(shards), "bytes": total_bytes,
            "weights": weights, "metadata_from": str(base_dir), "copied": copied}


def write_card(cfg: MergeConfig, weights: list[float], base_dir: Path) -> None:
    """The merge recipe beside the model (`astrodata_merge.json`: what the model card reads), then the card.
    Inputs are named by folder and origin, never by local path."""
    from cards.render import MERGE_RECORD, TRAINING_RECORD, base_license, model_origin, write_model_card

    origins = [model_origin(str(m.path)) for m in cfg.models]
    trained = [json.loads((Path(m.path) / TRAINING_RECORD).read_text()) for m in cfg.models
               if (Path(m.path) / TRAINING_RECORD).is_file()]
    record = {"models": [{"label": label, "weight": w} for (label, _), w in zip(origins, weights, strict=True)],
              "datasets": [{"stage": t["stage"].upper(), **t["dataset"]} for t in trained],
              "base_models": list(dict.fromkeys(b for _, bases in origins for b in bases)),
              "base_from": model_origin(str(base_dir))[0], "dtype": cfg.dtype, "license": base_license(str(base_dir))}
    (Path(cfg.out) / MERGE_RECORD).write_text(json.dumps(record, indent=2) + "\n")
    write_model_card(Path(cfg.out))


def _check_base(base_dir: Path, ref: Checkpoint, names: list[str]) -> None:
    """The config donor must describe the merged tensors: same vocabulary size and tying."""
    config_path = base_dir / "config.json"
    if not config_path.is_file():
        raise FileNotFoundError(f"{base_dir}: no config.json to copy into the merged model")
    config = json.loads(config_path.read_text())
    embed = next((n for n in names if n.endswith("embed_tokens.weight")), None)
    vocab = config.get("vocab_size") or config.get("text_config", {}).get("vocab_size")
    if embed and vocab and vocab != ref.shapes[embed][0]:
        raise ValueError(f"vocabulary mismatch: {config_path} says vocab_size={vocab}, the merged "
                         f"{embed} has {ref.shapes[embed][0]} rows")
    if bool(config.get("tie_word_embeddings", ref.tied)) != ref.tied:
        raise ValueError(f"{config_path}: tie_word_embeddings disagrees with the merged checkpoints")


def _copy_metadata(src: Path, dst: Path, dtype: str) -> list[str]:
    copied = []
    for name in METADATA_FILES:
        if (src / name).is_file():
            shutil.copy2(src / name, dst / name)
            copied.append(name)
    config = json.loads((dst / "config.json").read_text())
    config["dtype"] = dtype
    config.pop("torch_dtype", None)
    (dst / "config.json").write_text(json.dumps(config, indent=2, sort_keys=True) + "\n")
    return copied


def parse_model_spec(spec: str) -> dict[str, Any]:
    """`PATH:WEIGHT` -> {"path", "weight"}; the weight is after the last colon."""
    path, sep, weight = spec.rpartition(":")
    try:
        if not sep or not path:
            raise ValueError
        value = float(weight)
    except ValueError:
        raise ValueError(f"--model {spec!r}: expected PATH:WEIGHT (a folder, a Hub id or `embedded`), "
                         f"e.g. out/sft:0.75") from None
    if not math.isfinite(value):
        raise ValueError(f"--model {spec!r}: the weight must be a finite number, got {weight!r}")
    return {"path": path, "weight": value}
