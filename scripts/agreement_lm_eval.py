"""Per-question agreement of our `base-token` scoring with lm-evaluation-harness (`lm_eval --model hf`).

Runs both on the same model, data and prompt (our task exported with `export_task`), fp32, and
prints per question: our letter, lm-eval's letter, the largest log-likelihood difference, and
whether lm-eval built the same context string. lm-eval lives in a side environment (it is not a
test dependency); make one with

    python3.11 -m venv /work/lmeval-venv
    /work/lmeval-venv/bin/pip install torch==2.13.0 transformers==5.24.0 tokenizers==0.23.3 lm-eval==0.4.13

Usage: .venv/bin/python scripts/agreement_lm_eval.py [--data FILE] [--model embedded] [--few-shot K]
       [--lm-eval /work/lmeval-venv/bin/lm_eval] [--out DIR]
Exit status 0 only when every question agrees.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from astrodata.core.models import resolve_model  # noqa: E402
from benchmarks.astromlab1 import evaluate  # noqa: E402
from benchmarks.lm_eval_export import export_task  # noqa: E402
from benchmarks.methods import Prompts, base_context, shots_for  # noqa: E402

LETTERS = "ABCD"


def run_lm_eval(lm_eval: str, model_path: str, task_dir: Path, out: Path, batch_size: int) -> list[dict]:
    """Run lm_eval on the exported task and return its logged samples in document order."""
    cmd = [lm_eval, "--model", "hf", "--model_args", f"pretrained={model_path},dtype=float32",
           "--tasks", "astromlab1", "--include_path", str(task_dir), "--output_path", str(out),
           "--log_samples", "--batch_size", str(batch_size), "--device", "cpu"]
    subprocess.run(cmd, check=True)
    samples = sorted(out.rglob("samples_astromlab1_*.jsonl"), key=lambda p: p.stat().st_mtime)
    if not samples:
        raise SystemExit(f"lm_eval wrote no samples under {out}")
    rows = [json.loads(line) for line in samples[-1].read_text().splitlines() if line.strip()]
    return sorted(rows, key=lambda r: r["doc_id"])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default=str(ROOT / "tests/fixtures/mcq/astro_keyed.jsonl"))
    parser.add_argument("--model", default="embedded")
    parser.add_argument("--few-shot", type=int, default=0)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--lm-eval", default="/work/lmeval-venv/bin/lm_eval")
    parser.add_argument("--out", default=None)
    args = parser.parse_args()
    out = Path(args.out or tempfile.mkdtemp(prefix="agreement-"))
    model_path = resolve_model(args.model)

    ours = evaluate(args.data, args.model, "base-token", out / "ours", dtype="float32",
                    batch_size=args.batch_size, few_shot=args.few_shot)
    our_preds = [json.loads(line) for line in (out / "ours" / "predictions.jsonl").read_text().splitlines()]
    task_dir = out / "task"
    export_task(args.data, task_dir, few_shot=args.few_shot)
    theirs = run_lm_eval(args.lm_eval, model_path, task_dir, out / "lm_eval", args.batch_size)

    from astrodata.core.mcq import load_mcqs

    questions = load_mcqs(args.data).questions
    prompts = Prompts.load()
    agree = same_context = 0
    worst = 0.0
    print(f"{'id':<12} {'ours':>4} {'lm-eval':>7} {'max|dlogp|':>11} {'context':>8}")
    for q, mine, sample in zip(questions, our_preds, theirs, strict=True):
        lls = [float(r[0][0]) if isinstance(r[0], list) else float(r[0]) for r in sample["resps"]]
        their_letter = LETTERS[max(range(4), key=lambda i: (lls[i], -i))]
        diff = max(abs(a - b) for a, b in zip(mine["logprobs"], lls, strict=True))
        worst = max(worst, diff)
        context = sample["arguments"]["gen_args_0"]["arg_0"]
        ctx_ok = context == base_context(q, shots_for(q, questions, args.few_shot), prompts)
        agree += mine["prediction"] == their_letter
        same_context += ctx_ok
        print(f"{q.id:<12} {mine['prediction']:>4} {their_letter:>7} {diff:>11.2e} {'same' if ctx_ok else 'DIFF':>8}")
    n = len(questions)
    print(f"\nagreement: {agree}/{n} predictions, {same_context}/{n} identical contexts, "
          f"max |log-likelihood difference| {worst:.2e}; our accuracy {ours['accuracy']:.3f}; outputs in {out}")
    return 0 if agree == n else 1


if __name__ == "__main__":
    raise SystemExit(main())
