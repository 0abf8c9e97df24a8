"""Questions per second of our base-token scoring against lm-evaluation-harness, same model and data.

Both score the same exported task (fixture questions repeated with rotated options), fp32 on CPU,
with the model already loaded (load time is printed apart). lm-eval runs in its side environment
(see scripts/agreement_lm_eval.py) through its Python API, so its process start and import time
are not counted against it. Each configuration runs `--reps` times, alternating, best time kept
(the machine is shared; the load average is printed).

Usage: .venv/bin/python tests/perf/bench_eval.py [--copies 4] [--batch-size 8] [--few-shot 0]
       [--lm-eval-python /work/lmeval-venv/bin/python] [--reps 2] [--skip-batch-one]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from astrodata.core.models import resolve_model  # noqa: E402
from benchmarks.astromlab1 import evaluate  # noqa: E402
from benchmarks.backends import HFBackend  # noqa: E402
from benchmarks.lm_eval_export import export_task  # noqa: E402

FIXTURE = ROOT / "tests" / "fixtures" / "mcq" / "astro_keyed.jsonl"
LETTERS = "ABCD"

LM_EVAL_RUN = """
import json, sys, time
from lm_eval import simple_evaluate
from lm_eval.models.huggingface import HFLM
from lm_eval.tasks import TaskManager
path, task_dir, batch_size = sys.argv[1], sys.argv[2], int(sys.argv[3])
t = time.perf_counter()
lm = HFLM(pretrained=path, dtype="float32", batch_size=batch_size, device="cpu")
load = time.perf_counter() - t
t = time.perf_counter()
res = simple_evaluate(model=lm, tasks=["astromlab1"], task_manager=TaskManager(include_path=task_dir))
run = time.perf_counter() - t
print("RESULT " + json.dumps({"load_s": load, "run_s": run, "acc": res["results"]["astromlab1"]["acc,none"]}))
"""


def make_data(copies: int, path: Path) -> int:
    """The fixture `copies` times, each copy with options rotated (distinct prompts, same difficulty)."""
    rows = [json.loads(line) for line in FIXTURE.read_text().splitlines()]
    with path.open("w") as fh:
        for c in range(copies):
            for r in rows:
                opts = [r[x] for x in LETTERS]
                rotated = opts[c % 4:] + opts[:c % 4]
                answer = LETTERS[rotated.index(r[r["correct"]])]
                fh.write(json.dumps({**r, "id": f"{r['id']}-c{c}", **dict(zip(LETTERS, rotated, strict=True)),
                                     "correct": answer}) + "\n")
    return copies * len(rows)


def run_lm_eval(python: str, model_path: str, task_dir: Path, batch_size: int) -> dict:
    proc = subprocess.run([python, "-c", LM_EVAL_RUN, model_path, str(task_dir), str(batch_size)],
                          capture_output=True, text=True, check=True)
    line = next(ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT "))
    return json.loads(line[len("RESULT "):])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--copies", type=int, default=4)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--few-shot", type=int, default=0)
    parser.add_argument("--reps", type=int, default=2)
    parser.add_argument("--model", default="embedded")
    parser.add_argument("--lm-eval-python", default="/work/lmeval-venv/bin/python")
    parser.add_argument("--skip-batch-one", action="store_true", help="Skip lm-eval at its default batch size 1.")
    args = parser.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="bench-eval-"))
    n = make_data(args.copies, tmp / "questions.jsonl")
    export_task(tmp / "questions.jsonl", tmp / "task", few_shot=args.few_shot)
    model_path = resolve_model(args.model)
    print(f"{n} questions, {args.few_shot}-shot, fp32, torch threads {os.cpu_count()} cores, "
          f"load average {os.getloadavg()[0]:.1f}")

    t = time.perf_counter()
    backend = HFBackend(model_path, dtype="float32")
    print(f"our model load {time.perf_counter() - t:.1f} s")
    configs = {
        f"ours (batch {args.batch_size})": lambda: evaluate(
            tmp / "questions.jsonl", args.model, "base-token", tmp / "ours", backend=backend,
            batch_size=args.batch_size, few_shot=args.few_shot),
        f"lm-eval (batch {args.batch_size})": lambda: run_lm_eval(args.lm_eval_python, model_path, tmp / "task",
                                                                  args.batch_size),
        "lm-eval (batch 1, its default)": lambda: run_lm_eval(args.lm_eval_python, model_path, tmp / "task", 1),
    }
    if args.skip_batch_one:
        configs.pop("lm-eval (batch 1, its default)")
    best: dict[str, float] = {}
    accuracy: dict[str, float] = {}
    for rep in range(args.reps):
        for name, fn in configs.items():
            result = fn()
            seconds = result["elapsed_s"] if "elapsed_s" in result else result["run_s"]
            accuracy[name] = result["accuracy"] if "accuracy" in result else result["acc"]
            best[name] = min(best.get(name, float("inf")), seconds)
            print(f"  rep {rep + 1}: {name}: {seconds:.1f} s", flush=True)
    ours = next(iter(best))
    print(f"\n{'configuration':<34} {'seconds':>8} {'questions/s':>12} {'ours is x faster':>17} {'accuracy':>9}")
    for name, seconds in best.items():
        speedup = "" if name == ours else f"{seconds / best[ours]:.2f}"
        print(f"{name:<34} {seconds:>8.1f} {n / seconds:>12.2f} {speedup:>17} {accuracy[name]:>9.3f}")
    print(f"load average at the end {os.getloadavg()[0]:.1f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
