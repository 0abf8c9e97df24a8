"""Speed of decontamination checks: documents per second per core against a benchmark index.

    .venv/bin/python tests/perf/bench_decontam.py [--questions 4425]

The index is built from sentences of half of the real papers in ../shared/data/arxiv-eprints
standing in for questions (4,425 by default: AstroMLab-1's full size; sentences may repeat), so
n-grams have a real vocabulary. The documents are windows of ~300 words and whole papers of the
other half; every 10th window gets a planted question. The baseline is the obvious pure-Python check: a set of n-gram tuples and
one lookup per document n-gram.
"""

from __future__ import annotations

import argparse
import random
import re
import sys
import time
from pathlib import Path

from astrodata.core.textnorm import words
from astrodata.corpus.decontam import BenchmarkIndex, Decontaminator

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "scripts"))
from neardup_accuracy import DEFAULT_EPRINTS, build_documents, crude_text, tex_sources  # noqa: E402


def python_set_check(questions: list[str], docs: list[dict], n: int) -> tuple[float, int]:
    """Baseline: tuples of n words in a Python set, one membership test per document n-gram."""
    grams = set()
    for q in questions:
        w = words(q)
        grams.update(tuple(w[i:i + n]) for i in range(len(w) - n + 1))
    t = time.perf_counter()
    hits = 0
    for d in docs:
        w = words(d["text"])
        hits += any(tuple(w[i:i + n]) in grams for i in range(len(w) - n + 1))
    return time.perf_counter() - t, hits


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--questions", type=int, default=4425)
    args = ap.parse_args()
    if not DEFAULT_EPRINTS.is_dir():
        print(f"skipped: no real papers at {DEFAULT_EPRINTS}")
        return 0
    rng = random.Random(0)
    files = sorted(p for p in DEFAULT_EPRINTS.iterdir() if p.name.endswith(".tar.gz"))
    papers = {p.name: " ".join(crude_text(t) for t in tex_sources(p)) for p in files}
    question_papers = set(list(papers)[1::2])  # questions and documents come from different papers
    sentences = [s for name in question_papers for s in re.split(r"(?<=[.?!]) ", papers[name])
                 if 14 <= len(s.split()) <= 60]
    questions = [rng.choice(sentences) for _ in range(args.questions)]
    t = time.perf_counter()
    index = BenchmarkIndex.from_texts("bench", questions)
    print(f"index: {len(questions)} questions -> {sum(len(g) for g in index.grams.values()):,} 13-gram hashes "
          f"in {time.perf_counter() - t:.2f} s")
    windows = [d for d in build_documents(DEFAULT_EPRINTS)
               if d["id"].endswith("/orig") and d["id"].split("/")[0] + ".gz" not in question_papers]
    for i in range(0, len(windows), 10):
        windows[i] = {**windows[i], "text": windows[i]["text"] + " " + rng.choice(questions)}
    whole = [{"id": name, "text": text} for name, text in papers.items() if name not in question_papers]
    print(f"{'documents':<30}{'astrodata docs/s':>18}{'MB/s':>8}{'python-set docs/s':>20}{'ratio':>8}{'matched':>9}")
    for label, docs in ((f"{len(windows)} windows (1 in 10 planted)", windows), (f"{len(whole)} whole papers", whole)):
        dc = Decontaminator([index])
        t = time.perf_counter()
        kept = list(dc.run(docs))
        ours = time.perf_counter() - t
        base, base_hits = python_set_check(questions, docs, index.n)
        mb = sum(len(d["text"].encode()) for d in docs) / 2**20
        matched = len(docs) - len(kept)
        assert matched >= base_hits, "the hashed index must find everything the tuple set finds"
        print(f"{label:<30}{len(docs) / ours:>18.0f}{mb / ours:>8.1f}{len(docs) / base:>20.0f}"
              f"{base / ours:>8.1f}{matched:>9}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
