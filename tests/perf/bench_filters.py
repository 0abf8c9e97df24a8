"""Quality filters, token counting and Wikipedia selection on real data: what they drop and how fast.

Run: .venv/bin/python tests/perf/bench_filters.py [--repeat N]

Inputs are the real documents of ../shared/data: the 30 astro-ph e-prints (through the LaTeX
stage) and every article of the two Wikipedia dump fragments (wikitext -> text). Prints:
1. which documents each filter drops (first failure, as `apply_filters` records it) and every
   filter each document fails (all of them measured);
2. per-core throughput (one thread for numpy and the Rust tokenizer), side by side with a
   baseline: our numpy n-gram filters vs the same measures in plain Python (values must agree),
   batched token counting vs one `encode` per text, Wikipedia selection with the raw-wikitext
   prefilter vs parsing every page.
"""

from __future__ import annotations

import os

for var in ("RAYON_NUM_THREADS", "OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ[var] = "1"  # per-core figures

import argparse  # noqa: E402
import json  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]
SHARED = ROOT.parent / "shared" / "data"
DUMP = SHARED / "wikipedia-dumps" / "gensim__enwiki-latest-pages-articles1.xml-p000000010p000030302-shortened.bz2"
TABLES = SHARED / "wikipedia-dumps" / "gensim__enwiki-table-markup.xml.bz2"


def real_documents() -> list[dict]:
    from astrodata.corpus.recipe import load_recipe
    from astrodata.latex.flatten import flatten
    from astrodata.latex.to_text import latex_to_text
    from astrodata.sources.eprints import unpack_eprint
    from astrodata.sources.wikipedia import iter_xml_pages, wikitext_to_text

    folder = SHARED / "arxiv-eprints"
    docs = []
    for paper in json.loads((folder / "MANIFEST.json").read_text()):
        path = next(folder.glob(f"{paper['slug']}.*gz"))
        flat = flatten(unpack_eprint(path, paper["slug"]))
        docs.append({"id": f"arxiv:{paper['slug']}", "source": "arxiv",
                     "text": latex_to_text(flat.text, preamble="\n".join(flat.packages.values())).text})
    drop = load_recipe().wikipedia.drop_sections
    for dump in (DUMP, TABLES):
        for page in iter_xml_pages(dump):
            if page.redirect is None and page.ns == 0:
                docs.append({"id": f"wikipedia:{page.title}", "source": "wikipedia",
                             "text": wikitext_to_text(page.text, drop)})
    return docs


def naive_top_ngram(words: list[str], n: int) -> float:
    counts: dict[tuple[str, ...], int] = {}
    for i in range(len(words) - n + 1):
        gram = tuple(words[i:i + n])
        counts[gram] = counts.get(gram, 0) + 1
    if not counts:
        return 0.0
    gram, count = max(counts.items(), key=lambda kv: (kv[1], sum(map(len, kv[0]))))  # ties: most characters
    total = sum(len(w) for w in words)
    return count * sum(len(w) for w in gram) / total if count > 1 else 0.0


def naive_dup_ngram(words: list[str], n: int) -> float:
    seen: set[tuple[str, ...]] = set()
    covered = [False] * len(words)
    for i in range(len(words) - n + 1):
        gram = tuple(words[i:i + n])
        if gram in seen:
            covered[i:i + n] = [True] * n
        else:
            seen.add(gram)
    total = sum(len(w) for w in words)
    return sum(len(w) for w, c in zip(words, covered, strict=True) if c) / max(1, total)


def timed(fn, *args, **kwargs):
    """(result, CPU seconds of this process): per-core cost, whatever else shares the machine."""
    start = time.process_time()
    out = fn(*args, **kwargs)
    return out, time.process_time() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=3, help="timing passes (best is kept)")
    args = parser.parse_args()
    if not SHARED.exists():
        sys.exit(f"needs the shared real-data folder {SHARED}")
    from astrodata.corpus import filters as F
    from astrodata.corpus.recipe import load_recipe
    from astrodata.corpus.tokens import count_tokens, load_tokenizer

    settings = load_recipe().filters
    docs = real_documents()
    mb = sum(len(d["text"].encode()) for d in docs) / 1e6
    print(f"{len(docs)} real documents ({sum(d['source'] == 'arxiv' for d in docs)} papers), {mb:.1f} MB of text\n")

    # 1. what the filters drop
    drops: list[tuple[dict, F.Drop]] = []
    kept = list(F.apply_filters(docs, settings, on_drop=lambda d, drop: drops.append((d, drop))))
    print(f"kept {len(kept)}, dropped {len(drops)} (first failing filter):")
    for doc, drop in drops:
        print(f"  {drop.filter:28s} {drop.value:8.3f} ({drop.rule})  {doc['id']}")
    print("every filter each document fails:")
    for doc in docs:
        failed = {k: round(v, 3) for k, (ok, v) in F.measure(doc["text"], settings).items() if not ok}
        if failed:
            print(f"  {doc['id']}: {failed}")

    # 2. throughput, best of N passes
    filters_time = min(timed(lambda: list(F.apply_filters(docs, settings)))[1] for _ in range(args.repeat))
    texts = [d["text"] for d in docs]
    F.language_score("warm up the model")
    lang_time = min(timed(lambda: [F.language(F.Doc(d["text"]), settings) for d in docs])[1]
                    for _ in range(args.repeat))
    ngram_specs = [(F.top_ngram_char_fraction, naive_top_ngram, n) for n in settings.max_top_ngram_char_fraction]
    ngram_specs += [(F.dup_ngram_char_fraction, naive_dup_ngram, n) for n in settings.max_dup_ngram_char_fraction]

    def ours():
        return [[fn(doc, settings, n=n)[1] for fn, _, n in ngram_specs] for doc in map(F.Doc, texts)]

    def naive():  # same words (lowercased \w+ runs of the prose), tuples and sets
        return [[ref(words, n) for _, ref, n in ngram_specs]
                for words in (F.WORD.findall(F.Doc(t).prose.lower()) for t in texts)]

    ours_vals, ours_time = min((timed(ours) for _ in range(args.repeat)), key=lambda r: r[1])
    naive_vals, naive_time = min((timed(naive) for _ in range(args.repeat)), key=lambda r: r[1])
    worst = max(abs(a - b) for ra, rb in zip(ours_vals, naive_vals, strict=True)
                for a, b in zip(ra, rb, strict=True))

    load_tokenizer("embedded")
    counts, batched_time = min((timed(count_tokens, texts) for _ in range(args.repeat)), key=lambda r: r[1])
    tok = load_tokenizer("embedded")
    single, single_time = min((timed(lambda: [len(tok.encode(t, add_special_tokens=False).ids) for t in texts])
                               for _ in range(args.repeat)), key=lambda r: r[1])
    assert counts == single, "batched and single counts differ"

    print(f"\nper core (CPU time, one thread), {len(docs)} docs / {mb:.1f} MB (best of {args.repeat}):")
    rows = [
        ("all filters (apply_filters)", filters_time, None),
        ("  of which language id", lang_time, None),
        ("n-gram filters, numpy (ours)", ours_time, "baseline: plain-Python n-grams"),
        ("n-gram filters, plain Python", naive_time, None),
        ("token counts, batched", batched_time, f"{sum(counts):,} tokens"),
        ("token counts, one encode per text", single_time, None),
    ]
    print(f"  {'stage':38s} {'docs/s':>9s} {'MB/s':>7s}")
    for name, seconds, note in rows:
        print(f"  {name:38s} {len(docs) / seconds:9.1f} {mb / seconds:7.2f}  {note or ''}")
    print(f"  n-gram speed-up over plain Python: {naive_time / ours_time:.1f}x (max |difference| {worst:.2e})")
    print(f"  tokens/s batched: {sum(counts) / batched_time:,.0f}")

    # 3. Wikipedia selection: prefilter on raw wikitext vs parsing every page
    from astrodata.sources.wikipedia import iter_wikipedia_documents, iter_xml_pages, wikitext_to_text

    wiki = load_recipe().wikipedia
    pages = [p for p in iter_xml_pages(DUMP) if p.redirect is None and p.ns == 0]
    wiki_mb = sum(len(p.text.encode()) for p in pages) / 1e6
    _, select_time = timed(lambda: list(iter_wikipedia_documents(DUMP, wiki)))  # includes XML parsing
    _, parse_all_time = timed(lambda: [wikitext_to_text(p.text, wiki.drop_sections) for p in pages])
    print(f"\nWikipedia 2016 fragment: {len(pages)} articles, {wiki_mb:.1f} MB wikitext")
    print(f"  selection with raw prefilter (whole dump pass): {select_time:6.2f} s  {wiki_mb / select_time:6.2f} MB/s")
    print(f"  baseline: parse every article                 : {parse_all_time:6.2f} s  "
          f"{wiki_mb / parse_all_time:6.2f} MB/s ({parse_all_time / select_time:.1f}x slower)")
    print(f"  wikitext -> text, parsed pages only           : {len(pages) / parse_all_time:6.1f} pages/s")


if __name__ == "__main__":
    main()
