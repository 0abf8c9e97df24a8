"""Real training inputs for the training tests, smoke script and benchmark.

Corpus: `astrodata.corpus.build.build_corpus` over the shared e-prints when that stage is present; until then a
crude stand-in (main .tex body with commands stripped) written with `ShardWriter`, which is enough
to train on real astronomy prose. QA: the shared ShareGPT conversations mapped to `messages`
(human->user, gpt->assistant, function_call->assistant, observation->tool).
"""

from __future__ import annotations

import gzip
import json
import re
import tarfile
from pathlib import Path
from typing import Any

import pyarrow as pa

from astrodata.core.shards import CORPUS_SCHEMA, ShardWriter, shard_files

QA_SCHEMA = pa.schema([
    ("id", pa.string()), ("kind", pa.string()),
    ("messages", pa.list_(pa.struct([("role", pa.string()), ("content", pa.string())]))),
    ("source_id", pa.string()),
])
SHAREGPT_ROLES = {"human": "user", "gpt": "assistant", "function_call": "assistant", "observation": "tool"}


def _main_tex(archive: Path, main: str) -> str:
    if archive.name.endswith(".tar.gz"):
        with tarfile.open(archive) as tar:
            member = next((m for m in tar.getmembers() if m.name.endswith(main)), None)
            if member is None:
                return ""
            return tar.extractfile(member).read().decode("utf-8", "replace")
    return gzip.decompress(archive.read_bytes()).decode("utf-8", "replace")


def crude_text(tex: str) -> str:
    """LaTeX body -> rough prose (comments, environments' names, commands and braces removed)."""
    body = tex.split("\\begin{document}", 1)[-1].split("\\end{document}", 1)[0]
    body = re.sub(r"(?<!\\)%.*", "", body)
    body = re.sub(r"\\(begin|end)\{[^}]*\}", "", body)
    body = re.sub(r"\\(cite[pt]?|ref|label|eqref|includegraphics)(\[[^\]]*\])?\{[^}]*\}", "", body)
    body = re.sub(r"\\[A-Za-z]+\*?", " ", body)
    body = re.sub(r"[{}]", "", body)
    return re.sub(r"[ \t]+", " ", re.sub(r"\n\s*\n\s*", "\n\n", body)).strip()


def build_eprint_corpus(eprints: Path, out_dir: Path, limit: int | None = None, real: bool = True) -> str:
    """Corpus dataset from the shared e-prints; returns which builder made it.

    `real`: the project's corpus stage (`astrodata.corpus.build.build_corpus`); when it yields no document
    (or `real` is False, as in the fast tests) the crude stand-in writes the dataset instead.
    """
    if real:
        from astrodata.corpus.build import CorpusOptions, build_corpus

        opts = CorpusOptions(out=out_dir, eprints=[eprints], workers=2, limit=limit, progress=False)
        build_corpus(out_dir.parent / f"{out_dir.name}-work", opts)
        if shard_files(out_dir):
            return "astrodata.corpus.build.build_corpus"
    manifest = json.loads((eprints / "MANIFEST.json").read_text())
    with ShardWriter(out_dir, CORPUS_SCHEMA, rows_per_shard=8) as writer:
        for paper in manifest[:limit]:
            archive = eprints / f"{paper['slug']}.tar.gz"
            if not archive.exists():
                archive = eprints / f"{paper['slug']}.gz"
            text = crude_text(_main_tex(archive, paper["main_tex"]))
            if len(text) < 2000:
                continue
            writer.add({"id": paper["slug"], "source": "arxiv", "source_id": paper.get("doi") or paper["slug"],
                        "title": paper["title"], "text": text, "n_tokens": None,
                        "license": paper["license"]["spdx"], "url": paper["repo_url"], "date": None})
    return "crude LaTeX strip (tests/training_data.py)"


def sharegpt_messages(path: Path) -> list[dict[str, Any]]:
    """ShareGPT rows -> QA rows with `messages` (roles mapped explicitly; unknown roles raise)."""
    rows = []
    for i, row in enumerate(json.loads(Path(path).read_text())):
        messages = []
        for turn in row["conversations"]:
            if turn["from"] not in SHAREGPT_ROLES:
                raise ValueError(f"{path} row {i}: unknown ShareGPT role {turn['from']!r}")
            messages.append({"role": SHAREGPT_ROLES[turn["from"]], "content": turn["value"]})
        rows.append({"id": f"sharegpt-{i}", "kind": "instruct", "messages": messages, "source_id": str(path.name)})
    return rows


def write_qa(out_dir: Path, rows: list[dict[str, Any]], rows_per_shard: int = 100) -> Path:
    with ShardWriter(out_dir, QA_SCHEMA, rows_per_shard=rows_per_shard) as writer:
        for row in rows:
            writer.add(row)
    return out_dir


def make_variants(base: Path, out_root: Path, max_shard_size: str = "40MB", vocab_extra: int = 0,
                  num_hidden_layers: int | None = None) -> list[Path]:
    """Two SmolLM2 variants (base weights plus/minus 1% of themselves rolled by one element, a cheap
    deterministic perturbation that differs per tensor), saved as sharded bf16 safetensors.

    The second one gets a generation config that stops on an extra token, so a merge can show whose
    metadata it copied. `vocab_extra` > 0 also writes a third variant with a larger vocabulary;
    `num_hidden_layers` keeps only the first layers (the tests' budget).
    """
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(base)
    paths = []
    for i, sign in enumerate((1.0, -1.0)):
        extra = {"num_hidden_layers": num_hidden_layers} if num_hidden_layers else {}
        model = AutoModelForCausalLM.from_pretrained(base, dtype=torch.bfloat16, **extra)
        with torch.no_grad():
            for p in model.parameters():
                p.add_(sign * 0.01 * p.flatten().roll(1).view_as(p))
        if i == 1:
            model.generation_config.eos_token_id = [2, 0]
        path = out_root / f"variant-{'ab'[i]}"
        model.save_pretrained(path, max_shard_size=max_shard_size)
        tokenizer.save_pretrained(path)
        paths.append(path)
    if vocab_extra:
        model.resize_token_embeddings(model.config.vocab_size + vocab_extra, mean_resizing=False)
        path = out_root / "variant-bigvocab"
        model.save_pretrained(path, max_shard_size=max_shard_size)
        paths.append(path)
    return paths
