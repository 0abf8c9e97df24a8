"""CPU smoke run of the training recipe with SmolLM2-135M (not part of CI: ~10-40 min on 2 cores).

1. corpus from the shared e-prints (`astrodata.corpus.build.build_corpus`; the crude stand-in if it yields none),
   split into training papers and 5 held-out papers
2. CPT for 20 steps with training/configs/smollm2-cpu-cpt.yaml, loss curve printed, and the loss on
   16 blocks of the held-out papers before and after (per-batch training loss is noisy: each step
   sees 512 new tokens of a different paper)
3. QA dataset from the shared ShareGPT conversations, SFT of the CPT model for 20 steps with
   training/configs/smollm2-cpu-sft.yaml, loss curve printed

    .venv/bin/python scripts/train_smoke.py [--work /tmp/train-smoke] [--steps 20] [--stages cpt,sft]
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))

from training_data import build_eprint_corpus, sharegpt_messages, write_qa  # noqa: E402

from astrodata.core.shards import CORPUS_SCHEMA, ShardWriter, read_rows  # noqa: E402
from training import cpt, sft  # noqa: E402
from training.config import CPTConfig, SFTConfig, load_config  # noqa: E402
from training.data import build_cpt_dataset  # noqa: E402

SHARED = ROOT.parent / "shared" / "data"


def report(name: str, result) -> bool:
    losses = [loss for _, loss in result.losses]
    print(f"\n{name}: {result.global_step} steps, {result.tokens_seen} tokens, {result.train_runtime:.0f} s, "
          f"{result.tokens_per_second:.0f} tokens/s")
    print("step  loss")
    for step, loss in result.losses:
        print(f"{step:4d}  {loss:.4f}")
    k = max(1, len(losses) // 4)
    first, last = statistics.mean(losses[:k]), statistics.mean(losses[-k:])
    falls = last < first
    print(f"mean of the first {k}: {first:.4f}  mean of the last {k}: {last:.4f}  -> loss falls: {falls}")
    return falls


def split_corpus(corpus: Path, work: Path, n_heldout: int = 5) -> tuple[Path, Path]:
    rows = sorted(read_rows(corpus), key=lambda r: r["id"])
    parts = {"train": rows[:-n_heldout], "heldout": rows[-n_heldout:]}
    for name, part in parts.items():
        shutil.rmtree(work / f"corpus-{name}", ignore_errors=True)
        with ShardWriter(work / f"corpus-{name}", CORPUS_SCHEMA) as writer:
            for row in part:
                writer.add(row)
    return work / "corpus-train", work / "corpus-heldout"


def heldout_loss(model_dir: str | Path, heldout: Path, cache: Path, n_blocks: int = 16) -> float:
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from astrodata.core.models import resolve_model

    path = resolve_model(str(model_dir))
    tokenizer = AutoTokenizer.from_pretrained(path)
    blocks = build_cpt_dataset(heldout, tokenizer, 256, cache)["input_ids"][:n_blocks]
    model = AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32).eval()
    with torch.no_grad():
        losses = [model(input_ids=torch.tensor(blocks[i:i + 4]), labels=torch.tensor(blocks[i:i + 4])).loss.item()
                  for i in range(0, len(blocks), 4)]
    return statistics.mean(losses)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--work", type=Path, default=Path("/tmp/train-smoke"))
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--stages", default="cpt,sft")
    ns = parser.parse_args()
    work = ns.work
    if not SHARED.is_dir():
        print(f"needs the shared data folder {SHARED}")
        return 2

    stages = ns.stages.split(",")
    ok = True
    if "cpt" in stages:
        t = time.time()
        corpus = work / "corpus"
        builder = "existing" if (corpus / "data").is_dir() else build_eprint_corpus(SHARED / "arxiv-eprints", corpus)
        train, heldout = split_corpus(corpus, work)
        print(f"corpus: {corpus} built by {builder} in {time.time() - t:.0f} s; held out: "
              f"{', '.join(r['id'] for r in read_rows(heldout, ['id']))}")
        cpt_cfg = load_config(CPTConfig, ROOT / "training/configs/smollm2-cpu-cpt.yaml", [
            f"dataset={train}", f"output_dir={work / 'cpt'}", f"max_steps={ns.steps}", "resume=null"])
        before = heldout_loss(cpt_cfg.model, heldout, work / "heldout-cache")
        report("CPT", cpt.run(cpt_cfg))  # informational: per-batch loss over new papers is noisy
        after = heldout_loss(work / "cpt", heldout, work / "heldout-cache")
        print(f"held-out loss (16 blocks of 256 tokens from 5 unseen papers): before {before:.4f}, "
              f"after {after:.4f} -> falls: {after < before}")
        ok &= after < before
    if "sft" not in stages:
        return 0 if ok else 1
    qa = work / "qa"
    if not (qa / "data").is_dir():
        write_qa(qa, sharegpt_messages(SHARED / "sharegpt" / "llamafactory__glaive_toolcall_en_demo.json"))
    # SFT starts from the CPT model when this work folder has one (the recipe's order), else from SmolLM2.
    sft_model = work / "cpt" if (work / "cpt" / "model.safetensors").is_file() else "embedded"
    sft_cfg = load_config(SFTConfig, ROOT / "training/configs/smollm2-cpu-sft.yaml", [
        f"model={sft_model}", f"dataset={qa}", f"output_dir={work / 'sft'}", f"max_steps={ns.steps}",
        "resume=null"])
    ok &= report("SFT", sft.run(sft_cfg))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
