"""Output tokens/s of the embedded backend: batched decoding against one request at a time.

The same QA prompts (real passages, the shipped `qa` prompt and schema) are generated twice with
the embedded SmolLM2 on this machine: one `generate_batch` call per prompt, then batches of
`--batch` prompts. Greedy decoding, so both ways produce the same kind of replies; the script
prints tokens/s both ways, their ratio (target: at least 5x) and how many replies validate.

    .venv/bin/python tests/perf/bench_embedded_batch.py                      # fixture e-prints
    .venv/bin/python tests/perf/bench_embedded_batch.py --corpus CORPUS_DIR --prompts 16 --batch 8
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path[:0] = [str(ROOT)]

from astrodata.core.shards import read_rows  # noqa: E402
from astrodata.corpus.build import CorpusOptions, build_corpus  # noqa: E402
from astrodata.qa.backends import EmbeddedBackend  # noqa: E402
from astrodata.qa.engine import validate_reply  # noqa: E402
from astrodata.qa.recipe import load_qa_recipe  # noqa: E402
from astrodata.qa.tasks import load_prompt, qa_schema, split_passages  # noqa: E402


def prompts(corpus: Path, n: int, backend: EmbeddedBackend) -> list[str]:
    recipe = load_qa_recipe(None)
    p, q = recipe.passages, recipe.qa
    out = []
    for doc in read_rows(corpus, columns=["id", "title", "text"]):
        for passage in split_passages(doc["id"], doc["text"], p.size_chars, p.overlap_chars, p.min_chars):
            messages = load_prompt("qa").messages(passage=passage.text, k=q.pairs_per_passage,
                                                  title=doc.get("title") or doc["id"], abstract="(not available)")
            out.append(backend._prompt(messages))
            if len(out) == n:
                return out
    if not out:
        raise SystemExit(f"no passages in {corpus}")
    return (out * n)[:n]


def run(backend: EmbeddedBackend, items: list[str], batch: int, max_tokens: int) -> tuple[float, float, int, int]:
    """(wall s, CPU s of this process's threads, output tokens, valid replies)."""
    recipe = load_qa_recipe(None)
    schema = qa_schema(recipe.qa.pairs_per_passage, recipe.qa.max_question_chars, recipe.qa.max_answer_chars)
    t0, c0, tokens, valid = time.perf_counter(), time.process_time(), 0, 0
    for i in range(0, len(items), batch):
        for reply in backend.generate_batch(items[i:i + batch], schema, max_tokens):
            tokens += reply.tokens_out
            valid += validate_reply(reply.text, schema)[0] is not None
    return time.perf_counter() - t0, time.process_time() - c0, tokens, valid


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--corpus", type=Path, help="corpus folder (default: built from tests/fixtures/eprints)")
    ap.add_argument("--prompts", type=int, default=8)
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--max-tokens", type=int, default=256)
    args = ap.parse_args()
    backend = EmbeddedBackend(max_batch=args.batch)
    with tempfile.TemporaryDirectory() as tmp:
        corpus = args.corpus
        if corpus is None:
            corpus = Path(tmp) / "corpus"
            build_corpus(Path(tmp) / "work", CorpusOptions(out=corpus, eprints=[ROOT / "tests/fixtures/eprints"],
                                                           workers=1, progress=False))
        items = prompts(corpus, args.prompts, backend)
    backend.generate_batch(items[:1], qa_schema(3, 300, 800), 4)  # load the model, compile the schema
    print(f"{len(items)} QA prompts, max {args.max_tokens} new tokens, greedy, float32, load average "
          f"{os.getloadavg()[0]:.1f}")
    print(f"{'way':<14} {'wall s':>7} {'CPU s':>7} {'tokens':>7} {'tok/s':>7} {'tok/CPU-s':>9} {'valid':>6}",
          flush=True)
    rows = {}
    for name, size in ((f"batch of {args.batch}", args.batch), ("one at a time", 1)):
        wall, cpu, n, valid = rows[name] = run(backend, items, size, args.max_tokens)
        print(f"{name:<14} {wall:>7.1f} {cpu:>7.1f} {n:>7} {n / wall:>7.1f} {n / cpu:>9.1f} {valid:>3}/{len(items)}",
              flush=True)
    (wb, cb, nb, _), (w1, c1, n1, _) = rows.values()
    print(f"batched / one at a time: {(nb / wb) / (n1 / w1):.2f}x tokens/s wall, {(nb / cb) / (n1 / c1):.2f}x tokens "
          f"per CPU-second (target >= 5x; CPU time is what an idle machine's wall time follows); load average "
          f"{os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
