"""Output tokens/s of the embedded backend: continuous batching against one request at a time.

The same QA prompts (real passages, the shipped `qa` prompt and schema) are generated twice with
the embedded SmolLM2 on this machine, by the same decoding loop: with `--batch` slots (a finished
row's slot goes to the next prompt at once, as in a build-qa run, where requests keep coming), then
with one slot. Greedy decoding, so both ways give the same replies (the script checks it); it
prints tokens/s both ways, their ratio (target: at least 5x) and how many replies validate, then
where each way's time went (`DecodeStats`: prefills, decoding steps by rows, the rest) and what
the ratio would be with every slot full, as in a long build-qa run, where no slot idles while the
last replies of a finite batch finish.

    .venv/bin/python tests/perf/bench_embedded_batch.py                      # fixture e-prints
    .venv/bin/python tests/perf/bench_embedded_batch.py --corpus CORPUS_DIR --prompts 32 --batch 12
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

from pydantic import BaseModel  # noqa: E402

from astrodata.core.shards import read_rows  # noqa: E402
from astrodata.corpus.build import CorpusOptions, build_corpus  # noqa: E402
from astrodata.qa.backends import DecodeStats, EmbeddedBackend, Reply  # noqa: E402
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


def run(backend: EmbeddedBackend, items: list[str], schema: type[BaseModel], batch: int,
        max_tokens: int) -> tuple[float, float, list[Reply], DecodeStats]:
    """(wall s, CPU s of this process's threads, replies, the loop's time) with `batch` slots."""
    backend.max_batch, backend.stats = batch, DecodeStats()
    t0, c0 = time.perf_counter(), time.process_time()
    replies = backend.generate_batch(items, schema, max_tokens)
    return time.perf_counter() - t0, time.process_time() - c0, replies, backend.stats


def breakdown(name: str, wall: float, tokens: int, stats: DecodeStats) -> str:
    steps, step_s = sum(stats.steps.values()), sum(stats.step_s.values())
    rows = sum(r * n for r, n in stats.steps.items()) / steps
    return (f"{name:<14} {stats.prefills:>8} {stats.prefill_s:>9.1f} {steps:>6} {rows:>9.2f} "
            f"{1000 * step_s / steps:>8.1f} {wall - stats.prefill_s - step_s:>7.1f} {1000 * wall / tokens:>8.1f}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--corpus", type=Path, help="corpus folder (default: built from tests/fixtures/eprints)")
    ap.add_argument("--prompts", type=int, default=32)
    ap.add_argument("--batch", type=int, default=12, help="decoding slots (EmbeddedBackend's default)")
    ap.add_argument("--dtype", choices=["bfloat16", "float32"], help="default: native_dtype() of this CPU")
    ap.add_argument("--max-tokens", type=int, default=256)
    args = ap.parse_args()
    backend = EmbeddedBackend(max_batch=args.batch, dtype=args.dtype)
    with tempfile.TemporaryDirectory() as tmp:
        corpus = args.corpus
        if corpus is None:
            corpus = Path(tmp) / "corpus"
            build_corpus(Path(tmp) / "work", CorpusOptions(out=corpus, eprints=[ROOT / "tests/fixtures/eprints"],
                                                           workers=1, progress=False))
        items = prompts(corpus, args.prompts, backend)
    recipe = load_qa_recipe(None)
    backend.generate_batch(items[:1], qa_schema(3, 300, 800), 4)  # load the model, compile the schema
    print(f"{len(items)} QA prompts, max {args.max_tokens} new tokens, greedy, {backend.dtype}, load average "
          f"{os.getloadavg()[0]:.1f}")
    print(f"{'way':<14} {'wall s':>7} {'CPU s':>7} {'tokens':>7} {'tok/s':>7} {'tok/CPU-s':>9} {'valid':>6}",
          flush=True)
    schema = qa_schema(recipe.qa.pairs_per_passage, recipe.qa.max_question_chars, recipe.qa.max_answer_chars)
    rows = {}
    for name, size in ((f"{args.batch} slots", args.batch), ("one at a time", 1)):
        wall, cpu, replies, _ = rows[name] = run(backend, items, schema, size, args.max_tokens)
        n = sum(r.tokens_out for r in replies)
        valid = sum(validate_reply(r.text, schema)[0] is not None for r in replies)
        print(f"{name:<14} {wall:>7.1f} {cpu:>7.1f} {n:>7} {n / wall:>7.1f} {n / cpu:>9.1f} {valid:>3}/{len(items)}",
              flush=True)
    (wb, cb, batched, sb), (w1, c1, alone, s1) = rows.values()
    nb, n1 = (sum(r.tokens_out for r in replies) for replies in (batched, alone))
    same = sum(a.text == b.text for a, b in zip(batched, alone, strict=True))
    print(f"batched / one at a time: {(nb / wb) / (n1 / w1):.2f}x tokens/s wall, {(nb / cb) / (n1 / c1):.2f}x tokens "
          f"per CPU-second (target >= 5x; {same}/{len(items)} replies identical both ways); load average "
          f"{os.getloadavg()[0]:.1f}")
    print(f"\n{'way':<14} {'prefills':>8} {'prefill s':>9} {'steps':>6} {'rows/step':>9} {'ms/step':>8} "
          f"{'other s':>7} {'ms/token':>8}")
    for (name, (wall, _, replies, stats)) in rows.items():
        print(breakdown(name, wall, sum(r.tokens_out for r in replies), stats))
    if sb.steps[args.batch] and s1.steps[1]:
        full, one = (s.step_s[k] / s.steps[k] for s, k in ((sb, args.batch), (s1, 1)))
        per_reply = sb.prefill_s / sb.prefills + (nb / len(items)) * (full / args.batch) \
            + (wb - sb.prefill_s - sum(sb.step_s.values())) / len(items)
        steady = (nb / len(items)) / per_reply
        print(f"every slot full: a {args.batch}-row step {1000 * full:.1f} ms against a 1-row step {1000 * one:.1f} ms, "
              f"so decoding steps alone give {args.batch * one / full:.2f}x; with the prefills and the rest as "
              f"measured, {steady:.1f} tok/s = {steady / (n1 / w1):.2f}x one at a time")


if __name__ == "__main__":
    main()
