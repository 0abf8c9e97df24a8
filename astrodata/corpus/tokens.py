"""Token counts with a Hugging Face fast tokenizer, batched, no special tokens.

The default is the embedded SmolLM2 tokenizer (offline); `meta-llama/Llama-3.1-8B` (the model
AstroSage was trained from) counts the same way when its files are in the local HF cache.
We load `tokenizer.json` with `tokenizers` directly rather than through `transformers`: same
Rust tokenizer, without the seconds-long `transformers` import in every worker process.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable, Iterator, Sequence
from functools import lru_cache
from pathlib import Path
from typing import Any

from tokenizers import Tokenizer

from astrodata.core.models import EMBEDDED_NAME, embedded_model_path


def tokenizer_file(name_or_path: str) -> Path:
    """`embedded`, a folder or a tokenizer.json, or a Hub id already in the local HF cache."""
    if name_or_path == EMBEDDED_NAME:
        return embedded_model_path() / "tokenizer.json"
    path = Path(name_or_path)
    if path.is_dir():
        path = path / "tokenizer.json"
        if not path.exists():
            raise FileNotFoundError(f"{name_or_path}: no tokenizer.json (a fast tokenizer is needed)")
        return path
    if path.suffix == ".json" or path.exists():
        if not path.exists():
            raise FileNotFoundError(f"tokenizer file not found: {path}")
        return path
    from huggingface_hub import hf_hub_download

    try:  # the local cache only: a build never downloads
        return Path(hf_hub_download(name_or_path, "tokenizer.json", local_files_only=True))
    except Exception as exc:  # noqa: BLE001 - offline, gated or unknown: one clear reason
        raise FileNotFoundError(
            f"tokenizer {name_or_path!r} is neither `embedded`, a local path, nor in the Hugging Face "
            f"cache ({type(exc).__name__}); download it once with `hf download {name_or_path}`"
        ) from None


@lru_cache(maxsize=4)
def load_tokenizer(name_or_path: str = EMBEDDED_NAME) -> Tokenizer:
    tok = Tokenizer.from_file(str(tokenizer_file(name_or_path)))
    tok.no_truncation()  # count every token of long documents
    tok.no_padding()
    return tok


def count_tokens(texts: Sequence[str], tokenizer_name_or_path: str = EMBEDDED_NAME,
                 batch_size: int = 64) -> list[int]:
    """Number of tokens of each text (no BOS/EOS), encoded `batch_size` texts per call."""
    tok = load_tokenizer(tokenizer_name_or_path)
    counts: list[int] = []
    for start in range(0, len(texts), batch_size):
        batch = [t or "" for t in texts[start:start + batch_size]]
        counts.extend(len(enc.ids) for enc in tok.encode_batch_fast(batch, add_special_tokens=False))
    return counts


def add_token_counts(docs: Iterable[dict[str, Any]], tokenizer_name_or_path: str = EMBEDDED_NAME,
                     batch_size: int = 64) -> Iterator[dict[str, Any]]:
    """Fill `n_tokens` of each document, tokenizing in batches; documents come out in order."""
    it = iter(docs)
    while batch := list(itertools.islice(it, batch_size)):
        counts = count_tokens([d.get("text") or "" for d in batch], tokenizer_name_or_path, batch_size)
        for doc, n in zip(batch, counts, strict=True):
            doc["n_tokens"] = n
            yield doc
