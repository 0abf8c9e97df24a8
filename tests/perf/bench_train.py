"""Training throughput on CPU: our CPT and SFT against TRL's SFTTrainer, same model, data, steps.

Model: SmolLM2-135M (fp32, sdpa, no activation checkpointing), batch 2. CPT: the shared e-print corpus in
blocks of 256 tokens (ours) vs TRL's `wrapped` packing at max_length 256. SFT: the shared ShareGPT
conversations, packed rows of <= 512 tokens with per-example position ids (ours) vs TRL's `bfd`
padding-free packing at 512. Each run is its own process (TRL is importable only in its runs) and
tokens/s is the Trainer's own `num_input_tokens_seen / train_runtime` for both. TRL is installed with
`--no-deps` into a side folder (/work/trl-site) on first use; it is not a dependency of the project.

    .venv/bin/python tests/perf/bench_train.py [--steps 6] [--work /tmp/bench-train]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
SHARED = ROOT.parent / "shared" / "data"
TRL = "trl==1.16.0"  # the newest TRL; it declares transformers>=4.56.2 and runs on transformers 5.24
TRL_SITE = Path("/work/trl-site")
COMMON = {"batch_size": 2, "learning_rate": 5e-5, "warmup": 1}


def prepare(work: Path) -> tuple[Path, Path]:
    sys.path.insert(0, str(ROOT / "tests"))
    from training_data import build_eprint_corpus, sharegpt_messages, write_qa

    corpus, qa = work / "corpus", work / "qa"
    if not (corpus / "data").is_dir():
        build_eprint_corpus(SHARED / "arxiv-eprints", corpus)
    if not (qa / "data").is_dir():
        write_qa(qa, sharegpt_messages(SHARED / "sharegpt" / "llamafactory__glaive_toolcall_en_demo.json"))
    return corpus, qa


def run_ours(kind: str, data: Path, out: Path, steps: int) -> dict:
    from training import cpt, sft
    from training.config import CPTConfig, SFTConfig

    fields = {**COMMON, "dataset": data, "output_dir": out, "max_steps": steps, "save_steps": 10**6,
              "gradient_checkpointing": False, "resume": None, "logging_steps": 1}
    if kind == "cpt":
        result = cpt.run(CPTConfig(**fields, seq_len=256))
        fill = 1.0
    else:
        result = sft.run(SFTConfig(**fields, seq_len=512, packing=True, eot_token="<|im_end|>"))
        fill = json.loads(next((out / "dataset-cache").glob("sft-*/build_stats.json")).read_text())["fill"]
    return {"tokens": result.tokens_seen, "seconds": result.train_runtime, "fill": fill,
            "loss": [round(loss, 4) for _, loss in result.losses]}


def run_trl(kind: str, data: Path, out: Path, steps: int) -> dict:
    import datasets
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from trl import SFTConfig, SFTTrainer

    from astrodata.core.models import embedded_model_path

    path = embedded_model_path()
    tokenizer = AutoTokenizer.from_pretrained(path)
    model = AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32, attn_implementation="sdpa")
    rows = datasets.Dataset.from_parquet([str(f) for f in sorted((data / "data").glob("*.parquet"))])
    rows = rows.select_columns(["text"] if kind == "cpt" else ["messages"])
    settings = dict(output_dir=str(out), max_steps=steps, per_device_train_batch_size=COMMON["batch_size"],
                    learning_rate=COMMON["learning_rate"], warmup_steps=COMMON["warmup"], logging_steps=1,
                    lr_scheduler_type="cosine", save_strategy="no", report_to="none", bf16=False,
                    gradient_checkpointing=False, include_num_input_tokens_seen="all", packing=True,
                    max_length=256 if kind == "cpt" else 512,
                    packing_strategy="wrapped" if kind == "cpt" else "bfd")
    args = SFTConfig(**settings)
    refusal = None
    if kind == "sft":  # what TRL says about assistant-only loss with this template
        try:
            SFTTrainer(model=model, args=SFTConfig(**settings, assistant_only_loss=True), train_dataset=rows,
                       processing_class=tokenizer)
        except Exception as exc:  # noqa: BLE001 - recorded, not hidden
            refusal = f"{type(exc).__name__}: {str(exc).splitlines()[0][:200]}"
    trainer = SFTTrainer(model=model, args=args, train_dataset=rows, processing_class=tokenizer)
    output = trainer.train()
    return {"tokens": int(trainer.state.num_input_tokens_seen), "seconds": output.metrics["train_runtime"],
            "fill": 1.0, "loss": [round(h["loss"], 4) for h in trainer.state.log_history if "loss" in h],
            "assistant_only_loss": refusal}


def one(ns: argparse.Namespace) -> None:
    side, kind = ns.one.split("-")
    data = ns.work / ("corpus" if kind == "cpt" else "qa")
    fn = run_trl if side == "trl" else run_ours
    result = fn(kind, data, ns.work / f"out-{ns.one}", ns.steps)
    (ns.work / f"{ns.one}.json").write_text(json.dumps(result))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=6)
    parser.add_argument("--work", type=Path, default=Path("/tmp/bench-train"))
    parser.add_argument("--one", help=argparse.SUPPRESS)
    ns = parser.parse_args()
    if ns.one:
        one(ns)
        return 0
    ns.work.mkdir(parents=True, exist_ok=True)
    prepare(ns.work)
    if not (TRL_SITE / "trl").is_dir():
        subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--target", str(TRL_SITE), TRL],
                       check=True)
    results = {}
    for name in ("ours-cpt", "trl-cpt", "ours-sft", "trl-sft"):
        env = dict(os.environ, PYTHONPATH=str(TRL_SITE)) if name.startswith("trl") else dict(os.environ)
        t = time.time()
        with open(ns.work / f"{name}.log", "w") as log:
            proc = subprocess.run([sys.executable, __file__, "--one", name, "--steps", str(ns.steps),
                                   "--work", str(ns.work)], env=env, stdout=log, stderr=subprocess.STDOUT)
        if proc.returncode:
            print(f"{name} failed, see {ns.work / f'{name}.log'}")
            return 1
        results[name] = json.loads((ns.work / f"{name}.json").read_text())
        print(f"{name}: done in {time.time() - t:.0f} s (load average {os.getloadavg()[0]:.1f})", flush=True)

    print(f"\n{ns.steps} steps, batch 2, SmolLM2-135M fp32 on CPU ({os.cpu_count()} cores); TRL {TRL}")
    print(f"{'run':10} {'tokens':>7} {'seconds':>8} {'tokens/s':>9} {'real tok/s':>10}  losses")
    for name, r in results.items():
        tps = r["tokens"] / r["seconds"]
        print(f"{name:10} {r['tokens']:7d} {r['seconds']:8.1f} {tps:9.1f} {tps * r['fill']:10.1f}  {r['loss']}")
    for kind in ("cpt", "sft"):
        ours, trl = results[f"ours-{kind}"], results[f"trl-{kind}"]
        ratio = (ours["tokens"] * ours["fill"] / ours["seconds"]) / (trl["tokens"] / trl["seconds"])
        print(f"{kind.upper()}: ours / TRL real tokens per second = {ratio:.2f}")
    print(f"TRL assistant_only_loss=True on SmolLM2's template: {results['trl-sft']['assistant_only_loss']}")
    print("(real tok/s: our packed SFT rows carry end padding; tokens/s x dataset fill)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
