"""`make demo`'s work, timed: `astrodata run demo.yaml` from an empty run folder, then again
(nothing to do), against the 6-minute target on this 2-core machine.

    .venv/bin/python tests/perf/bench_demo.py [--workdir /tmp/demo-bench]

Uses ../shared/data/arxiv-eprints when present (as `make demo` does), else tests/fixtures/eprints.
Prints wall and CPU seconds per run and per stage (from the run's `stage_runs` record), the ratio
to the target, and the load average, since other processes on the machine stretch wall time.
"""

from __future__ import annotations

import argparse
import os
import resource
import shutil
import subprocess
import sys
import time
from pathlib import Path

import duckdb

ROOT = Path(__file__).resolve().parents[2]
SHARED = ROOT.parent / "shared" / "data" / "arxiv-eprints"
TARGET_S = 360.0


def run(workdir: Path, eprints: Path) -> tuple[float, float, str]:
    cmd = [sys.executable, "-m", "astrodata.cli", "run", "demo.yaml", f"workdir={workdir}",
           f"corpus.eprints=[{eprints}]"]
    kids = resource.getrusage(resource.RUSAGE_CHILDREN)
    c0, t0 = kids.ru_utime + kids.ru_stime, time.perf_counter()
    done = subprocess.run(cmd, cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT), "COLUMNS": "200"},
                          capture_output=True, text=True)
    wall = time.perf_counter() - t0
    kids = resource.getrusage(resource.RUSAGE_CHILDREN)
    if done.returncode != 0:
        raise SystemExit(f"astrodata run failed:\n{done.stderr[-3000:]}")
    return wall, kids.ru_utime + kids.ru_stime - c0, done.stderr.strip().splitlines()[-1]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--workdir", type=Path, default=Path("/tmp/astrodata-demo-bench"))
    args = ap.parse_args()
    eprints = SHARED if SHARED.exists() else ROOT / "tests" / "fixtures" / "eprints"
    shutil.rmtree(args.workdir, ignore_errors=True)
    load0 = os.getloadavg()[0]
    first = run(args.workdir, eprints)
    second = run(args.workdir, eprints)
    with duckdb.connect(str(args.workdir / "catalog.duckdb"), read_only=True) as con:
        stages = con.execute("SELECT stage, seconds FROM stage_runs ORDER BY started_at").fetchall()
    print(f"input: {eprints}; load average {load0:.1f} at start, {os.getloadavg()[0]:.1f} at end, "
          f"{os.cpu_count()} CPUs")
    print("per stage (s): " + ", ".join(f"{s} {sec:.1f}" for s, sec in stages))
    print(f"{'run':<22}{'wall s':>8}{'CPU s':>8}{'/ 360 s target':>16}")
    for name, (wall, cpu, _) in (("first (everything)", first), ("second (nothing)", second)):
        print(f"{name:<22}{wall:>8.1f}{cpu:>8.1f}{wall / TARGET_S:>16.2f}")
    print(f"second run said: {second[2]}")
    print(f"report: {args.workdir / 'report.md'}")


if __name__ == "__main__":
    main()
