"""General benchmarks (the Open LLM Leaderboard v2 set the AstroSage model card reports) via lm-eval.

lm-evaluation-harness already implements IFEval, BBH, MATH hard, GPQA, MuSR and MMLU-PRO with the
leaderboard's prompts and metrics; re-implementing them would only make the numbers disagree. So
this module runs the `lm_eval` command when it is installed (it is not a dependency: it pins its
own stack) and folds its results file into a small `general_results.json` the report reads.
"""

from __future__ import annotations

import importlib.util
import json
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

LEADERBOARD_TASKS = (
    "leaderboard_ifeval", "leaderboard_bbh", "leaderboard_math_hard",
    "leaderboard_gpqa", "leaderboard_musr", "leaderboard_mmlu_pro",
)
# The metric the leaderboard reports first for each kind of task; the first present wins.
PRIMARY_METRICS = (
    "prompt_level_strict_acc,none", "acc_norm,none", "exact_match,none", "acc,none",
    "inst_level_strict_acc,none", "exact_match,flexible-extract",
)


class LmEvalMissing(RuntimeError):
    """lm-evaluation-harness is not installed where we can run it."""


def lm_eval_command(explicit: str | None = None) -> list[str]:
    """How to start lm_eval: the given executable, `lm_eval` on PATH, or `python -m lm_eval`."""
    if explicit:
        if not Path(explicit).exists():
            raise LmEvalMissing(f"{explicit}: lm_eval executable does not exist")
        return [explicit]
    if found := shutil.which("lm_eval"):
        return [found]
    if importlib.util.find_spec("lm_eval") is not None:
        return [sys.executable, "-m", "lm_eval"]
    raise LmEvalMissing(
        "lm-evaluation-harness is not installed: pip install 'lm-eval[hf,ifeval,math]' (a separate venv is "
        "fine) and pass --lm-eval /path/to/venv/bin/lm_eval"
    )


def fold_lm_eval(data: dict[str, Any], model: str | None = None) -> dict[str, Any]:
    """One primary score per top-level task or group of an lm-eval results file (0-100 scale)."""
    results: dict[str, dict[str, Any]] = data.get("results", {})
    subtasks = data.get("group_subtasks", {})
    children = {child for kids in subtasks.values() for child in kids}
    scores = {}
    for task, metrics in results.items():
        if task in children:
            continue
        metric = next((m for m in PRIMARY_METRICS if isinstance(metrics.get(m), int | float)), None)
        if metric is None:
            metric = next((m for m, v in metrics.items() if isinstance(v, int | float) and "stderr" not in m), None)
        if metric is not None:
            scores[task] = {"metric": metric.split(",")[0], "value": 100 * float(metrics[metric])}
    args = (data.get("config") or {}).get("model_args")
    if model is None and isinstance(args, dict):
        model = args.get("pretrained")
    elif model is None and isinstance(args, str):
        model = dict(kv.split("=", 1) for kv in args.split(",") if "=" in kv).get("pretrained")
    return {"benchmark": "general", "model": model, "scores": scores,
            "n_shot": data.get("n-shot", {}), "lm_eval_version": data.get("lm_eval_version")}


def run_general(model: str, out_dir: str | Path, *, tasks: list[str] | None = None, dtype: str = "bfloat16",
                batch_size: int = 8, limit: int | None = None, lm_eval: str | None = None) -> dict[str, Any]:
    """Run lm_eval on `tasks` (default: the leaderboard set) and write `OUT/general_results.json`."""
    from astrodata.core.models import resolve_model

    command = lm_eval_command(lm_eval)
    path = resolve_model(model, dtype)
    if not Path(path).exists() and path.startswith((".", "/", "~")):
        raise FileNotFoundError(f"{path}: model path does not exist")
    out = Path(out_dir)
    raw = out / "lm_eval"
    cmd = [*command, "--model", "hf", "--model_args", f"pretrained={path},dtype={dtype}",
           "--tasks", ",".join(tasks or LEADERBOARD_TASKS), "--batch_size", str(batch_size),
           "--output_path", str(raw)]
    if limit:
        cmd += ["--limit", str(limit)]
    subprocess.run(cmd, check=True)
    files = sorted(raw.rglob("results_*.json"), key=lambda p: p.stat().st_mtime)
    if not files:
        raise RuntimeError(f"lm_eval wrote no results_*.json under {raw}")
    summary = fold_lm_eval(json.loads(files[-1].read_text()), model=model)
    (out / "general_results.json").write_text(json.dumps(summary, indent=2) + "\n")
    return summary
