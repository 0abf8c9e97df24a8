"""Datasets for training: corpus -> packed CPT blocks, QA `messages` -> SFT examples with assistant-only labels.

Both read our dataset layout as it is (`DIR/data/*.parquet`), tokenize once and cache the result under a
key made of the tokenizer, the settings and the data files' content, so a second run (or another rank)
reloads instead of re-tokenizing, and a changed tokenizer or shard never reuses a stale cache.

The SFT label mask is built from character spans rather than from `{% generation %}` markers: for each
assistant turn we render the conversation up to the turn with the generation prompt and up to the end
of the turn, and the difference is the assistant's text. Tokens whose offsets start inside such a span
carry loss. This works with any template that renders a prefix-stable conversation (Llama-3.1's and
ChatML both do), which is why we do not rely on TRL's `assistant_only_loss` (it needs the markers,
and Llama-3.1's template has none).
"""

from __future__ import annotations

import bisect
import hashlib
import json
import logging
import re
from itertools import chain
from pathlib import Path
from typing import Any

import datasets
import pyarrow.compute as pc
import torch

from astrodata.core.files import atomic_dir

log = logging.getLogger(__name__)

IGNORE = -100
SFT_ROLES = {"system", "user", "assistant", "tool", "ipython"}


# ---------------------------------------------------------------- reading and caching

def shard_files(dataset_dir: Path) -> list[Path]:
    """The parquet shards of a dataset folder; a clear error when there are none."""
    files = sorted(Path(dataset_dir, "data").glob("*.parquet"))
    if not files:
        raise FileNotFoundError(f"{dataset_dir}: no data/*.parquet shards (expected a dataset in HF layout)")
    return files


def check_dataset(dataset_dir: Path, column: str) -> None:
    """Fail before any model loads when the dataset has no shards, lacks `column` or has no rows
    (reads only the shards' Parquet footers)."""
    import pyarrow.parquet as pq

    files = shard_files(dataset_dir)
    names = pq.read_schema(files[0]).names
    if column not in names:
        raise ValueError(f"{dataset_dir}: dataset has no {column!r} column (columns: {', '.join(names)})")
    if sum(pq.read_metadata(f).num_rows for f in files) == 0:
        raise ValueError(f"{dataset_dir}: dataset has no rows (for a build-qa output: every item was dropped; "
                         "`astrodata sql \"SELECT status, reason, count(*) FROM qa_items GROUP BY ALL\"` says why)")


def load_rows(dataset_dir: Path, column: str, cache_dir: Path) -> datasets.Dataset:
    """Load the shards as one `datasets.Dataset`, refusing a dataset that lacks `column`."""
    files = shard_files(dataset_dir)
    ds = datasets.Dataset.from_parquet([str(f) for f in files], cache_dir=str(cache_dir / "hf"))
    if column not in ds.column_names:
        raise ValueError(
            f"{dataset_dir}: dataset has no {column!r} column (columns: {', '.join(ds.column_names)})"
        )
    return ds


def _sha256_file(path: Path) -> str:
    with open(path, "rb") as fh:
        return hashlib.file_digest(fh, "sha256").hexdigest()


def tokenizer_fingerprint(tokenizer: Any) -> str:
    """Hash of everything in the tokenizer that changes token ids or rendered text."""
    backend = tokenizer.backend_tokenizer.to_str() if hasattr(tokenizer, "backend_tokenizer") else repr(tokenizer)
    parts = [backend, json.dumps(tokenizer.special_tokens_map, sort_keys=True), tokenizer.chat_template or ""]
    return hashlib.sha256("\0".join(parts).encode()).hexdigest()


def cache_key(kind: str, tokenizer: Any, files: list[Path], settings: dict[str, Any]) -> str:
    """Key of a tokenized dataset: tokenizer + settings + content hash of every data file."""
    payload = {
        "kind": kind,
        "tokenizer": tokenizer_fingerprint(tokenizer),
        "settings": settings,
        "files": [[f.name, _sha256_file(f)] for f in files],
    }
    return f"{kind}-{hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()[:20]}"


def _cached(target: Path, build: Any) -> datasets.Dataset:
    """Return the dataset saved at `target`, or build it and save it there atomically."""
    if (target / "dataset_info.json").exists():
        log.info("reusing tokenized dataset %s", target)
        return datasets.load_from_disk(str(target))
    ds, stats = build()
    with atomic_dir(target) as tmp:
        ds.save_to_disk(str(tmp))
        (tmp / "build_stats.json").write_text(json.dumps(stats, indent=2, sort_keys=True))
    log.info("tokenized dataset %s: %s", target, stats)
    return datasets.load_from_disk(str(target))


def _n_tokens(ds: datasets.Dataset, column: str = "input_ids") -> int:
    """Total list length of a column, computed in arrow (a Python list of 3B token ids would not fit)."""
    return int(pc.sum(pc.list_value_length(ds.data.table.column(column))).as_py() or 0)


def build_stats(cache_path: Path) -> dict[str, Any]:
    """Counts recorded when a cached dataset was built (tokens, blocks, rejected rows by reason)."""
    return json.loads((Path(cache_path) / "build_stats.json").read_text())


# ---------------------------------------------------------------- CPT

def _tokenize_docs(batch: dict[str, list], tokenizer: Any, column: str, eos_id: int) -> dict[str, list]:
    ids = tokenizer([text or "" for text in batch[column]], add_special_tokens=False)["input_ids"]
    return {"input_ids": [doc + [eos_id] for doc in ids]}


def _pack_blocks(batch: dict[str, list], seq_len: int) -> dict[str, list]:
    flat = list(chain.from_iterable(batch["input_ids"]))
    usable = len(flat) // seq_len * seq_len
    return {"input_ids": [flat[i:i + seq_len] for i in range(0, usable, seq_len)]}


def build_cpt_dataset(dataset_dir: Path, tokenizer: Any, seq_len: int, cache_dir: Path,
                      text_column: str = "text", eos_token: str | None = None,
                      num_proc: int | None = None, docs_per_group: int = 1000) -> datasets.Dataset:
    """Corpus -> fixed blocks of `seq_len` tokens: every document ends with EOS, documents are concatenated.

    Packing is done per group of `docs_per_group` documents (so it parallelises and streams through
    arrow); only the tail of each group that does not fill a block is dropped, which is less than
    `seq_len` tokens per group (~0.03% of a group of 1000 papers at 4096 tokens). The count is in
    `build_stats.json` next to the cache.
    """
    eos = eos_token or tokenizer.eos_token
    if not eos or eos not in tokenizer.get_vocab():
        raise ValueError(f"EOS token {eos!r} is not in the tokenizer's vocabulary")
    eos_id = tokenizer.convert_tokens_to_ids(eos)
    files = shard_files(dataset_dir)
    settings = {"seq_len": seq_len, "eos": eos, "column": text_column, "group": docs_per_group}
    target = Path(cache_dir) / cache_key("cpt", tokenizer, files, settings)

    def build() -> tuple[datasets.Dataset, dict[str, Any]]:
        rows = load_rows(dataset_dir, text_column, Path(cache_dir))
        docs = rows.map(_tokenize_docs, batched=True, num_proc=num_proc, remove_columns=rows.column_names,
                        fn_kwargs={"tokenizer": tokenizer, "column": text_column, "eos_id": eos_id},
                        desc="tokenize")
        n_tokens = _n_tokens(docs)
        blocks = docs.map(_pack_blocks, batched=True, batch_size=docs_per_group, num_proc=num_proc,
                          fn_kwargs={"seq_len": seq_len}, desc="pack")
        if len(blocks) == 0:
            raise ValueError(f"{dataset_dir}: {n_tokens} tokens in {len(docs)} documents is less than one "
                             f"block of seq_len={seq_len}")
        stats = {"documents": len(docs), "tokens": n_tokens, "blocks": len(blocks), "seq_len": seq_len,
                 "dropped_tokens": n_tokens - len(blocks) * seq_len}
        return blocks, stats

    return _cached(target, build)


class CPTCollator:
    """Stack equal-length blocks; labels are the inputs (the model shifts them).

    Not `DataCollatorForLanguageModeling`: it masks every pad-token id in the labels, and tokenizers
    whose pad token is the EOS (SmolLM2's is) would lose the document-end signal.
    """

    def __call__(self, features: list[dict[str, Any]]) -> dict[str, torch.Tensor]:
        ids = torch.tensor([f["input_ids"] for f in features], dtype=torch.long)
        return {"input_ids": ids, "labels": ids.clone()}


# ---------------------------------------------------------------- SFT: rendering and masks

def chat_template_tokens(template: str) -> list[str]:
    """Special-token literals written in a chat template (`<|im_start|>`, `<|eot_id|>`, ...)."""
    return list(dict.fromkeys(re.findall(r"<\|[A-Za-z0-9_]+\|>", template)))


def check_messages(messages: Any) -> str | None:
    """Reason a `messages` value is unusable for SFT, or None when it is fine."""
    if not isinstance(messages, list) or not messages:
        return "messages is empty or not a list"
    for turn in messages:
        if not isinstance(turn, dict) or not isinstance(turn.get("content"), str):
            return "a turn has no string content"
        if turn.get("role") not in SFT_ROLES:
            return f"unknown role {turn.get('role')!r}"
    if not any(t["role"] == "assistant" and t["content"].strip() for t in messages):
        return "no assistant turn with content"
    return None


def _render(tokenizer: Any, messages: list[dict[str, str]], generation_prompt: bool = False) -> str:
    return tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=generation_prompt)


def assistant_spans(tokenizer: Any, messages: list[dict[str, str]]) -> tuple[str, list[tuple[int, int]]]:
    """Render `messages`; return the text and the character span of every assistant turn.

    A span runs from the end of the generation prompt to the end of the turn as the template closes
    it (end-of-turn token included), minus trailing whitespace the template adds after the token.
    """
    text = _render(tokenizer, messages)
    spans = []
    for i, turn in enumerate(messages):
        if turn["role"] != "assistant":
            continue
        prompt = _render(tokenizer, messages[:i], generation_prompt=True) if i else ""
        upto = _render(tokenizer, messages[: i + 1])
        if not (upto.startswith(prompt) and text.startswith(upto)):
            raise ValueError(
                f"the chat template is not prefix-stable at turn {i} (it rewrites earlier turns), so "
                "assistant spans cannot be derived from renders; use a template that renders history verbatim"
            )
        end = len(upto.rstrip())
        if end > len(prompt):
            spans.append((len(prompt), end))
    return text, spans


def tokenize_conversation(tokenizer: Any, messages: list[dict[str, str]]) -> dict[str, list[int]]:
    """Token ids and labels: a token carries loss iff its first character lies in an assistant span."""
    text, spans = assistant_spans(tokenizer, messages)
    enc = tokenizer(text, add_special_tokens=False, return_offsets_mapping=True)
    starts = [s for s, _ in spans]
    labels = []
    for tok, (start, _end) in zip(enc["input_ids"], enc["offset_mapping"], strict=True):
        k = bisect.bisect_right(starts, start) - 1
        labels.append(tok if k >= 0 and start < spans[k][1] else IGNORE)
    return {"input_ids": enc["input_ids"], "labels": labels}


def _tokenize_sft(batch: dict[str, list], tokenizer: Any, column: str, max_len: int) -> dict[str, list]:
    out: dict[str, list] = {"input_ids": [], "labels": [], "reject": []}
    for messages in batch[column]:
        reason = check_messages(messages)
        ex = {"input_ids": [], "labels": []}
        if reason is None:
            ex = tokenize_conversation(tokenizer, messages)
            if len(ex["input_ids"]) > max_len:
                reason = f"longer than seq_len={max_len}"
            elif all(x == IGNORE for x in ex["labels"]):
                reason = "no assistant token"
        out["input_ids"].append(ex["input_ids"] if reason is None else [])
        out["labels"].append(ex["labels"] if reason is None else [])
        out["reject"].append(reason or "")
    return out


def first_fit_decreasing(lengths: list[int], capacity: int) -> list[list[int]]:
    """Bins of indices whose lengths sum to at most `capacity` (first-fit decreasing, best-fit lookup)."""
    order = sorted(range(len(lengths)), key=lambda i: -lengths[i])
    free: list[tuple[int, int]] = []  # (remaining capacity, bin index), kept sorted
    bins: list[list[int]] = []
    for i in order:
        k = bisect.bisect_left(free, (lengths[i], -1))
        if k < len(free):
            room, b = free.pop(k)
        else:
            room, b = capacity, len(bins)
            bins.append([])
        bins[b].append(i)
        bisect.insort(free, (room - lengths[i], b))
    return bins


def _pack_examples(batch: dict[str, list], seq_len: int) -> dict[str, list]:
    out: dict[str, list] = {"input_ids": [], "labels": [], "position_ids": []}
    for members in first_fit_decreasing([len(x) for x in batch["input_ids"]], seq_len):
        out["input_ids"].append(list(chain.from_iterable(batch["input_ids"][i] for i in members)))
        out["labels"].append(list(chain.from_iterable(batch["labels"][i] for i in members)))
        out["position_ids"].append(list(chain.from_iterable(range(len(batch["input_ids"][i])) for i in members)))
    return out


def build_sft_dataset(dataset_dir: Path, tokenizer: Any, seq_len: int, cache_dir: Path,
                      messages_column: str = "messages", packing: bool = False, pack_batch: int = 1000,
                      num_proc: int | None = None) -> datasets.Dataset:
    """QA dataset -> tokenized examples with assistant-only labels, optionally packed into rows.

    Unusable rows (bad `messages`, too long, no assistant token) are dropped and counted by reason in
    `build_stats.json`; a dataset where every row is unusable is an error. With `packing`, examples are
    packed into rows of at most `seq_len` tokens with `position_ids` restarting at 0 for each example;
    the model then attends within each example only (transformers derives the block-diagonal mask from
    the position ids when no attention mask is passed).
    """
    files = shard_files(dataset_dir)
    settings = {"seq_len": seq_len, "column": messages_column, "packing": packing, "pack_batch": pack_batch}
    target = Path(cache_dir) / cache_key("sft", tokenizer, files, settings)

    def build() -> tuple[datasets.Dataset, dict[str, Any]]:
        rows = load_rows(dataset_dir, messages_column, Path(cache_dir))
        enc = rows.map(_tokenize_sft, batched=True, num_proc=num_proc, remove_columns=rows.column_names,
                       fn_kwargs={"tokenizer": tokenizer, "column": messages_column, "max_len": seq_len},
                       desc="render+tokenize")
        counts = pc.value_counts(enc.data.table.column("reject")).to_pylist()
        rejected = {c["values"]: c["counts"] for c in counts if c["values"]}
        kept = enc.filter(lambda r: not r, input_columns="reject").remove_columns("reject").flatten_indices()
        if len(kept) == 0:
            raise ValueError(f"{dataset_dir}: no usable conversation in {len(rows)} rows ({rejected})")
        n_tokens = _n_tokens(kept)
        labels = pc.list_flatten(kept.data.table.column("labels"))
        stats = {"rows": len(rows), "examples": len(kept), "tokens": n_tokens, "rejected": rejected,
                 "loss_tokens": int(pc.sum(pc.not_equal(labels, IGNORE)).as_py() or 0)}
        if packing:
            kept = kept.map(_pack_examples, batched=True, batch_size=pack_batch, num_proc=num_proc,
                            fn_kwargs={"seq_len": seq_len}, desc="pack")
            stats["packed_rows"] = len(kept)
            stats["fill"] = round(n_tokens / (len(kept) * seq_len), 4)
        return kept, stats

    return _cached(target, build)


class SFTCollator:
    """Right-pad a batch. Packed rows (with `position_ids`) get no attention mask and their padding is
    numbered as one more sequence, so the model's packed-sequence detection keeps examples apart;
    plain rows get the usual attention mask. Labels of padding are ignored.

    Hand-written because no stock collator pads `position_ids` that way for fixed packed rows.
    """

    def __init__(self, pad_id: int):
        self.pad_id = pad_id

    def __call__(self, features: list[dict[str, Any]]) -> dict[str, torch.Tensor]:
        width = max(len(f["input_ids"]) for f in features)
        packed = "position_ids" in features[0]
        batch: dict[str, list] = {"input_ids": [], "labels": [], "position_ids" if packed else "attention_mask": []}
        for f in features:
            n, pad = len(f["input_ids"]), width - len(f["input_ids"])
            batch["input_ids"].append(list(f["input_ids"]) + [self.pad_id] * pad)
            batch["labels"].append(list(f["labels"]) + [IGNORE] * pad)
            if packed:
                batch["position_ids"].append(list(f["position_ids"]) + list(range(pad)))
            else:
                batch["attention_mask"].append([1] * n + [0] * pad)
        return {k: torch.tensor(v, dtype=torch.long) for k, v in batch.items()}


# ---------------------------------------------------------------- SFT: the template's special tokens

def prepare_chat_tokens(model: Any, tokenizer: Any, tokens: list[str], rel_threshold: float = 1e-3) -> list[str]:
    """Make the chat template's special tokens trainable; return the tokens whose rows were (re)initialised.

    A base model either lacks the template's tokens (they are added and the embeddings resized) or
    has them with untrained rows (Llama-3.1 base: `<|eot_id|>`, `<|start_header_id|>`, ... have
    near-zero embeddings). Both kinds get the mean of the trained rows, in the input embeddings and,
    when untied, in the output head, so the first steps see a sensible vector and a logit the model
    can learn to raise (the end-of-turn token must be predicted for generation to stop).
    """
    vocab = tokenizer.get_vocab()
    missing = [t for t in tokens if t not in vocab]
    if missing:
        tokenizer.add_special_tokens({"additional_special_tokens": missing}, replace_extra_special_tokens=False)
        model.resize_token_embeddings(len(tokenizer), mean_resizing=False)
    ids = [tokenizer.convert_tokens_to_ids(t) for t in tokens]
    fixed: list[str] = []
    matrices = [model.get_input_embeddings().weight]
    out = model.get_output_embeddings()
    if out is not None and out.weight is not matrices[0]:
        matrices.append(out.weight)
    with torch.no_grad():
        for weight in matrices:
            norms = weight.float().norm(dim=1)
            untrained = norms < rel_threshold * norms.median()
            to_fix = [i for i, t in zip(ids, tokens, strict=True) if t in missing or untrained[i]]
            trained = ~untrained
            trained[ids] = False
            mean = weight[trained].float().mean(dim=0).to(weight.dtype)
            for i in to_fix:
                weight[i] = mean
            fixed += [tokens[ids.index(i)] for i in to_fix]
    return list(dict.fromkeys(fixed))
