"""Our linear merge against mergekit's `linear` on the same two SmolLM2 variants: tensors and peak RSS.

mergekit lives in a side virtualenv (/work/mergekit-venv, created here on first use) so it never
touches the project's pinned set. Both merges run in their own process under `/usr/bin/time -v`, which
reports the peak resident set size; both accumulate in fp32 and write bfloat16 shards.

    .venv/bin/python scripts/compare_mergekit.py [--work /tmp/merge-compare] [--venv /work/mergekit-venv]
"""

from __future__ import annotations

import argparse
import json
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import torch
import yaml
from safetensors import safe_open

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))

from training_data import make_variants  # noqa: E402

from astrodata.core.models import embedded_model_path  # noqa: E402

MERGEKIT = "mergekit==0.1.5"
PINS = ["torch==2.13.0", "transformers==5.24.0"]


def ensure_venv(venv: Path) -> Path:
    exe = venv / "bin" / "mergekit-yaml"
    if not exe.exists():
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
        subprocess.run([str(venv / "bin" / "pip"), "install", "-q", MERGEKIT, *PINS], check=True)
    return exe


def timed(cmd: list[str]) -> tuple[float, float]:
    """Run `cmd` under /usr/bin/time -v; return (wall seconds, peak RSS in MB)."""
    t = time.time()
    proc = subprocess.run(["/usr/bin/time", "-v", *cmd], capture_output=True, text=True)
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed:\n{proc.stdout[-2000:]}\n{proc.stderr[-3000:]}")
    rss_kb = int(re.search(r"Maximum resident set size \(kbytes\): (\d+)", proc.stderr).group(1))
    return time.time() - t, rss_kb / 1024


def tensors(folder: Path) -> dict[str, torch.Tensor]:
    index = folder / "model.safetensors.index.json"
    files = sorted(set(json.loads(index.read_text())["weight_map"].values())) if index.exists() else ["model.safetensors"]
    out = {}
    for name in files:
        with safe_open(folder / name, "pt") as fh:
            out.update({k: fh.get_tensor(k) for k in fh.keys()})
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--work", type=Path, default=Path("/tmp/merge-compare"))
    parser.add_argument("--venv", type=Path, default=Path("/work/mergekit-venv"))
    ns = parser.parse_args()
    mergekit_yaml = ensure_venv(ns.venv)
    shutil.rmtree(ns.work, ignore_errors=True)
    a, b = make_variants(embedded_model_path(), ns.work, max_shard_size="40MB")
    ours, theirs = ns.work / "ours", ns.work / "mergekit"

    ours_s, ours_rss = timed([str(ROOT / ".venv" / "bin" / "astrodata"), "merge", "--model", f"{a}:0.75",
                              "--model", f"{b}:0.25", "--out", str(ours), "--dtype", "bfloat16",
                              "--max-shard-size", "60MB"])
    config = ns.work / "mergekit.yaml"
    config.write_text(yaml.safe_dump({
        "merge_method": "linear", "dtype": "float32", "out_dtype": "bfloat16",
        "models": [{"model": str(a), "parameters": {"weight": 0.75}},
                   {"model": str(b), "parameters": {"weight": 0.25}}],
    }))
    theirs_s, theirs_rss = timed([str(mergekit_yaml), str(config), str(theirs), "--lazy-unpickle", "--quiet",
                                  "--no-write-model-card", "--out-shard-size", "30M"])  # 30M bf16 params = 60MB

    mine, ref = tensors(ours), tensors(theirs)
    only_mine, only_ref = sorted(set(mine) - set(ref)), sorted(set(ref) - set(mine))
    common = sorted(set(mine) & set(ref))
    max_diff = max((mine[k].float() - ref[k].float()).abs().max().item() for k in common)
    n_equal = sum(torch.equal(mine[k], ref[k]) for k in common)
    print(f"mergekit: {MERGEKIT} in {ns.venv}")
    print(f"tensors compared: {len(common)} (only ours: {only_mine or 'none'}; only mergekit: {only_ref or 'none'})")
    print(f"bit-identical tensors: {n_equal}/{len(common)}; max abs diff: {max_diff:.3g}")
    print(f"{'':10} {'wall s':>8} {'peak RSS MB':>12} {'shards':>7}")
    for name, secs, rss, folder in (("ours", ours_s, ours_rss, ours), ("mergekit", theirs_s, theirs_rss, theirs)):
        print(f"{name:10} {secs:8.1f} {rss:12.0f} {len(list(folder.glob('*.safetensors'))):7d}")
    return 0 if max_diff == 0 and not only_mine else 1


if __name__ == "__main__":
    sys.exit(main())
