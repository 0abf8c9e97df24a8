"""Peak memory and time of build-qa's exact question dedup at scale: ours (questions streamed into
DuckDB and ranked there, spilling to disk past its memory_limit) against the plain in-Python way (every question held in a list, sorted by
rank, a dict of normalised-text hashes).

    .venv/bin/python tests/perf/bench_qa_select.py [--questions 1000000] [--duplicates 0.1]

Questions are synthetic: 12 words drawn from a 20,000-word vocabulary, about 70 characters, with a
share re-spaced and re-cased into exact duplicates. Each side runs in its own process, so peak RSS
(ru_maxrss) is that side's alone; both must drop the same ids.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import resource
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))


def questions(n: int, dup_share: float, seed: int = 5) -> Iterator[tuple[str, str, int]]:
    """(id, question, grade); the last `dup_share` of the rows copy earlier questions."""
    rng = random.Random(seed)
    vocab = [f"w{i}" for i in range(20_000)]
    originals = int(n * (1 - dup_share))
    state = random.Random(seed)
    for i in range(originals):
        yield f"q{i:08d}", " ".join(rng.choices(vocab, k=12)) + "?", rng.randint(1, 5)
    replay = random.Random(seed)  # re-draws the originals' questions in order, without storing them
    for i in range(n - originals):
        text = " ".join(replay.choices(vocab, k=12)) + "?"
        replay.randint(1, 5)
        yield f"r{i:08d}", "  " + text.upper(), state.randint(1, 5)


def run_side(side: str, n: int, dup_share: float, work: Path, memory_limit: str) -> dict:
    from astrodata.core.textnorm import text_hash

    t = time.perf_counter()
    if side == "ours":
        import duckdb

        from astrodata.qa.mix import duplicate_items

        con = duckdb.connect(str(work / "bench.duckdb"), config={"memory_limit": memory_limit})
        dropped = duplicate_items(con, questions(n, dup_share), None, 3, work / "sig.parquet")
    else:
        items = sorted(questions(n, dup_share), key=lambda c: (-c[2], c[0]))
        best: dict[str, str] = {}
        dropped = {}
        for item_id, text, _ in items:
            h = text_hash(text)
            if h in best:
                dropped[item_id] = f"exact-duplicate of {best[h]}"
            else:
                best[h] = item_id
    seconds = time.perf_counter() - t
    return {"side": side, "seconds": seconds, "dropped": len(dropped),
            "checksum": hash(frozenset(dropped.items())) & 0xFFFFFFFF,
            "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--questions", type=int, default=1_000_000)
    parser.add_argument("--duplicates", type=float, default=0.1)
    parser.add_argument("--memory-limit", default="256MB", help="DuckDB's memory_limit for our side")
    parser.add_argument("--side", choices=["ours", "python"], help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.side:
        with tempfile.TemporaryDirectory() as tmp:
            print(json.dumps(run_side(args.side, args.questions, args.duplicates, Path(tmp), args.memory_limit)))
        return
    results = []
    for side in ("ours", "python"):
        out = subprocess.run([sys.executable, __file__, "--side", side, "--questions", str(args.questions),
                              "--duplicates", str(args.duplicates), "--memory-limit", args.memory_limit], capture_output=True, text=True, check=True,
                             env={**os.environ, "PYTHONHASHSEED": "0"})
        results.append(json.loads(out.stdout.strip().splitlines()[-1]))
    ours, base = results
    print(f"{args.questions:,} questions, {args.duplicates:.0%} exact duplicates; DuckDB memory_limit "
          f"{args.memory_limit}")
    print(f"{'side':10} {'seconds':>8} {'peak RSS MB':>12} {'dropped':>9}")
    for r in results:
        print(f"{r['side']:10} {r['seconds']:8.1f} {r['peak_rss_mb']:12.0f} {r['dropped']:9,}")
    same = ours["dropped"] == base["dropped"] and ours["checksum"] == base["checksum"]
    print(f"same drops: {same}; memory python/ours = {base['peak_rss_mb'] / ours['peak_rss_mb']:.2f}x; "
          f"time ours/python = {ours['seconds'] / base['seconds']:.2f}x")


if __name__ == "__main__":
    main()
