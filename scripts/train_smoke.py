"""CPU smoke run of the training recipe with SmolLM2-135M (not part of CI: ~10-40 min on 2 cores).

1. corpus from the shared e-prints (`astrodata.corpus.build_corpus`; the crude stand-in if it yields none)
2. CPT for 20 steps with training/configs/smollm2-cpu-cpt.yaml, loss curve printed
3. QA dataset from the shared ShareGPT conversations, SFT of the CPT model for 20 steps with
   training/configs/smollm2-cpu-sft.yaml, loss curve printed

    .venv/bin/python scripts/train_smoke.py [--work /tmp/train-smoke] [--steps 20]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))

from training_data import build_eprint_corpus, sharegpt_messages, write_qa  # noqa: E402

from training import cpt, sft  # noqa: E402
from training.config import CPTConfig, SFTConfig, load_config  # noqa: E402

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


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--work", type=Path, default=Path("/tmp/train-smoke"))
    parser.add_argument("--steps", type=int, default=20)
    ns = parser.parse_args()
    work = ns.work
    if not SHARED.is_dir():
        print(f"needs the shared data folder {SHARED}")
        return 2

    t = time.time()
    corpus = work / "corpus"
    builder = "existing" if (corpus / "data").is_dir() else build_eprint_corpus(SHARED / "arxiv-eprints", corpus)
    print(f"corpus: {corpus} built by {builder} in {time.time() - t:.0f} s")
    cpt_cfg = load_config(CPTConfig, ROOT / "training/configs/smollm2-cpu-cpt.yaml", [
        f"dataset={corpus}", f"output_dir={work / 'cpt'}", f"max_steps={ns.steps}", "resume=null"])
    cpt_ok = report("CPT", cpt.run(cpt_cfg))

    qa = work / "qa"
    if not (qa / "data").is_dir():
        write_qa(qa, sharegpt_messages(SHARED / "sharegpt" / "llamafactory__glaive_toolcall_en_demo.json"))
    sft_cfg = load_config(SFTConfig, ROOT / "training/configs/smollm2-cpu-sft.yaml", [
        f"model={work / 'cpt'}", f"dataset={qa}", f"output_dir={work / 'sft'}", f"max_steps={ns.steps}",
        "resume=null"])
    sft_ok = report("SFT", sft.run(sft_cfg))
    return 0 if cpt_ok and sft_ok else 1


if __name__ == "__main__":
    sys.exit(main())
