"""What one core does in `build-corpus`: documents/s and MB/s of LaTeX per phase, one worker.

Runs the whole build (unpack -> flatten -> LaTeX -> filters -> tokens -> signatures, then dedup
and the output) on the real e-prints in ../shared/data/arxiv-eprints, repeated R times under
new ids so the run is long enough to time, and prints the figures a cluster plan needs:

    .venv/bin/python tests/perf/bench_corpus.py [--repeat 5]

Copies are exact duplicates, so phase 2 also exercises dedup (it keeps one of each).
"""

from __future__ import annotations

import argparse
import resource
import shutil
import tempfile
import time
from pathlib import Path

from astrodata.corpus.build import CorpusOptions, build_corpus
from astrodata.sources.eprints import iter_local_eprints

PAPERS = Path(__file__).resolve().parents[2].parent / "shared" / "data" / "arxiv-eprints"


def cpu_seconds() -> float:
    """CPU time of this process and its finished children (the pool's workers)."""
    me, kids = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return me.ru_utime + me.ru_stime + kids.ru_utime + kids.ru_stime


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeat", type=int, default=5)
    args = ap.parse_args()
    if not PAPERS.exists():
        raise SystemExit(f"needs {PAPERS}")
    with tempfile.TemporaryDirectory() as tmp:
        src = Path(tmp) / "eprints"
        src.mkdir()
        n_bytes = 0
        for r in range(args.repeat):
            for eprint_id, path in iter_local_eprints(PAPERS):
                suffix = "".join(path.suffixes)
                shutil.copy(path, src / f"{eprint_id}-copy{r}{suffix}")
                n_bytes += path.stat().st_size
        n_docs = len(list(iter_local_eprints(src)))
        opts = CorpusOptions(out=Path(tmp) / "out", eprints=[src], workers=1, progress=False)
        c0, t0 = cpu_seconds(), time.perf_counter()
        summary = build_corpus(Path(tmp) / "work", opts)
        cpu, wall = cpu_seconds() - c0, time.perf_counter() - t0
    print(f"documents: {n_docs} e-prints ({n_bytes / 1e6:.1f} MB compressed), one worker process")
    print(f"output: {summary['output']}")
    print(f"wall {wall:.1f} s, CPU {cpu:.1f} s (parent + worker)")
    print(f"per core: {n_docs / cpu:.2f} e-prints/s, {n_bytes / 1e6 / cpu:.3f} MB/s compressed e-prints")
    per_paper = cpu / n_docs
    print(f"=> 250,000 papers need about {250_000 * per_paper / 3600:.0f} core-hours "
          f"({250_000 * per_paper / 3600 / 64:.1f} h on 64 cores with --shard K/64)")


if __name__ == "__main__":
    main()
