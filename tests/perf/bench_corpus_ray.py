"""Ray executor against the local one: the 30 real e-prints x R copies, wall time of each and
whether the outputs are equal row for row.

    .venv/bin/python tests/perf/bench_corpus_ray.py [--copies 5] [--shards 4]

Both builds run as `astrodata build-corpus` subprocesses from a clean workspace; the Ray one runs
inside a loopback-only network namespace (`unshare -n`, root: Ray otherwise binds the machine's
address) with `--executor ray --ray-address local`, so its time includes starting and stopping the
local Ray cluster. Copies are exact duplicates under new ids, so dedup works across shards.
"""

from __future__ import annotations

import argparse
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pyarrow.parquet as pq

ROOT = Path(__file__).resolve().parents[2]
PAPERS = ROOT.parent / "shared" / "data" / "arxiv-eprints"


def children_cpu() -> float:
    r = resource.getrusage(resource.RUSAGE_CHILDREN)
    return r.ru_utime + r.ru_stime


def build(cmd: list[str], env: dict[str, str]) -> tuple[float, float]:
    c0, t0 = children_cpu(), time.perf_counter()
    done = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True)
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(cmd[:6])} ... failed:\n{done.stderr[-2000:]}")
    return time.perf_counter() - t0, children_cpu() - c0


def rows(out: Path) -> list[dict]:
    return sorted(pq.ParquetDataset(str(out / "data")).read().to_pylist(), key=lambda r: r["id"])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--copies", type=int, default=5)
    ap.add_argument("--shards", type=int, default=4)
    args = ap.parse_args()
    if not PAPERS.exists():
        raise SystemExit(f"needs {PAPERS}")
    with tempfile.TemporaryDirectory(dir="/tmp") as tmp:
        src = Path(tmp) / "eprints"
        src.mkdir()
        for r in range(args.copies):
            for path in sorted(PAPERS.iterdir()):
                if path.name != "MANIFEST.json":
                    (src / (path.name if r == 0 else f"copy{r}-{path.name}")).symlink_to(path)
        n = len(list(src.iterdir()))
        env = {**os.environ, "PYTHONPATH": str(ROOT), "RAY_TMPDIR": str(Path(tmp) / "ray"),
               "RAY_AUTH_MODE": "disabled"}
        base = [sys.executable, "-m", "astrodata.cli", "build-corpus", "--eprints", str(src), "--workers", "2"]
        local_wall, local_cpu = build([*base, "--out", f"{tmp}/local/corpus", "--workdir", f"{tmp}/local"], env)
        netns = ["unshare", "-n", "sh", "-c", 'ip link set lo up && exec "$@"', "sh"]
        ray_wall, ray_cpu = build([*netns, *base, "--out", f"{tmp}/ray/corpus", "--workdir", f"{tmp}/ray",
                                   "--executor", "ray", "--shards", str(args.shards), "--ray-address", "local"], env)
        local_rows, ray_rows = rows(Path(tmp) / "local" / "corpus"), rows(Path(tmp) / "ray" / "corpus")
        shutil.rmtree(Path(tmp) / "ray", ignore_errors=True)
    print(f"input: {n} e-prints ({args.copies} copies of the 30 shared papers); load average at end "
          f"{os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs")
    print(f"{'executor':<28}{'wall s':>8}{'CPU s':>8}{'rows':>6}")
    print(f"{'local (2 workers)':<28}{local_wall:>8.1f}{local_cpu:>8.1f}{len(local_rows):>6}")
    print(f"{f'ray ({args.shards} shards, 2 CPUs)':<28}{ray_wall:>8.1f}{ray_cpu:>8.1f}{len(ray_rows):>6}")
    print(f"ray / local wall: {ray_wall / local_wall:.2f}x; outputs equal row for row: {ray_rows == local_rows}")


if __name__ == "__main__":
    main()
