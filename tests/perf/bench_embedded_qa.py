"""`astrodata build-qa --limit 1` with the embedded model, paper by paper: wall time and kept pairs.

Each of the first `--papers` documents of a corpus becomes a one-paper corpus, and the real CLI
builds its QA set in a fresh workspace (no cache shared between papers). Goal: at least one
graded QA pair kept for most papers, in about two minutes a paper on 2 cores. Other work on the
machine slows the wall time, so the run's CPU time (user + system, all threads) and the load
average are printed beside it: on an otherwise idle 2-core machine the wall time is about the CPU
time / 2. `peak MB` is the run's largest resident set (ru_maxrss of the build-qa process).

    .venv/bin/python tests/perf/bench_embedded_qa.py --corpus CORPUS_DIR --papers 5
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
sys.path[:0] = [str(ROOT)]

import duckdb  # noqa: E402

from astrodata.core.shards import CORPUS_SCHEMA, ShardWriter, read_rows  # noqa: E402


def run_cli(argv: list[str], env: dict[str, str], log: Path) -> tuple[int, float, float, float]:
    """(exit status, wall s, CPU s, peak resident MB) of one CLI run, its output in `log`."""
    t0 = time.perf_counter()
    with log.open("w") as out:
        proc = subprocess.Popen([sys.executable, "-m", "astrodata.cli", *argv], env=env, stdout=out,
                                stderr=subprocess.STDOUT)
        _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    return (proc.returncode, time.perf_counter() - t0, usage.ru_utime + usage.ru_stime, usage.ru_maxrss / 1024)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--corpus", type=Path, required=True)
    ap.add_argument("--papers", type=int, default=5)
    ap.add_argument("--skip", type=int, default=0, help="start after this many corpus documents")
    ap.add_argument("--keep", type=Path, help="keep the outputs and workspaces here")
    args = ap.parse_args()
    root = args.keep or Path(tempfile.mkdtemp(prefix="bench-embedded-qa-"))
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    print(f"{'paper':<28} {'wall s':>6} {'CPU s':>6} {'peak MB':>7} {'passages':>8} {'pairs':>5} {'kept':>4} "
          f"{'grades (overall)':<18} {'load avg':>8}")
    for i, row in enumerate(read_rows(args.corpus)):
        if i < args.skip:
            continue
        if i == args.skip + args.papers:
            break
        work = root / f"paper{i}"
        with ShardWriter(work / "corpus", CORPUS_SCHEMA) as writer:
            writer.add({k: row.get(k) for k in CORPUS_SCHEMA.names})
        log = work / "build-qa.log"
        status, wall, cpu, peak = run_cli(["build-qa", "--corpus", str(work / "corpus"), "--out", str(work / "qa"),
                                           "--workdir", str(work / "ws"), "--limit", "1"], env, log)
        load = os.getloadavg()[0]
        if status != 0:
            print(f"{row['source_id']:<32} {wall:>7.0f} failed: {log.read_text().strip().splitlines()[-1]}")
            continue
        kept = sum(r["kind"] == "qa" for r in read_rows(work / "qa"))
        stats = json.loads((work / "qa" / "stats.json").read_text())
        with duckdb.connect(str(work / "ws" / "catalog.duckdb"), read_only=True) as con:
            grades = [g for (g,) in con.execute("SELECT grade FROM qa_items WHERE kind = 'qa' ORDER BY pos").fetchall()]
        print(f"{row['source_id']:<28} {wall:>6.0f} {cpu:>6.0f} {peak:>7.0f} {stats.get('passages', 0):>8} "
              f"{len(grades):>5} {kept:>4} "
              f"{','.join(str(g) for g in grades):<18} {load:>8.1f}", flush=True)
    print(f"outputs in {root}")


if __name__ == "__main__":
    main()
