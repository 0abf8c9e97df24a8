"""The "unhandled constructs" table (issue 10) for a folder of e-prints and/or Wikipedia dumps,
without a build: what the converters met and could not render faithfully, by kind and name, with
the number of documents it was met in and its occurrences (the same figures a build writes to
the catalog's `losses` table and to stats.md).

    PYTHONPATH=. .venv/bin/python scripts/unhandled_constructs.py [--eprints DIR] [--wikipedia DUMP ...] [--top 30]

With no argument: ../shared/data/arxiv-eprints and the two dumps in ../shared/data/wikipedia-dumps.
Wikipedia: every article page (namespace 0, not a redirect), References/External links dropped.
"""

from __future__ import annotations

import argparse
from collections import Counter
from pathlib import Path

from astrodata.corpus.recipe import load_recipe
from astrodata.latex.to_text import convert_eprint
from astrodata.sources.eprints import iter_local_eprints
from astrodata.sources.wikipedia import iter_xml_pages, wikitext_to_text

SHARED = Path(__file__).resolve().parents[1].parent / "shared" / "data"


def table(title: str, per_doc: list[Counter], top: int) -> None:
    docs: Counter = Counter()
    occurrences: Counter = Counter()
    for losses in per_doc:
        occurrences.update(losses)
        docs.update(k for k, n in losses.items() if n)
    print(f"\n### {title}: {len(per_doc)} documents, {sum(occurrences.values())} losses, "
          f"{len(occurrences)} distinct constructs, {sum(1 for d in per_doc if d)} documents with any\n")
    print("| kind | name | documents | occurrences |\n|---|---|---:|---:|")
    for (kind, name), n in sorted(docs.items(), key=lambda x: (-x[1], -occurrences[x[0]], x[0]))[:top]:
        print(f"| {kind} | `{name}` | {n} | {occurrences[kind, name]} |")
    kinds: Counter = Counter()
    for (kind, _), n in occurrences.items():
        kinds[kind] += n
    print("\nper kind: " + ", ".join(f"{k} {n}" for k, n in kinds.most_common()))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--eprints", type=Path)
    ap.add_argument("--wikipedia", type=Path, nargs="*", default=None)
    ap.add_argument("--top", type=int, default=30)
    args = ap.parse_args()
    if args.eprints is None and args.wikipedia is None:
        args.eprints = SHARED / "arxiv-eprints"
        args.wikipedia = sorted((SHARED / "wikipedia-dumps").glob("*.bz2"))
    if args.eprints:
        per_doc = []
        for eprint_id, path in iter_local_eprints(args.eprints):
            try:
                per_doc.append(convert_eprint(path)[0].losses)
            except Exception as exc:  # noqa: BLE001 - a failed paper is a row of its own
                per_doc.append(Counter({("failed", type(exc).__name__): 1}))
                print(f"{eprint_id}: {exc}")
        table(f"e-prints in {args.eprints}", per_doc, args.top)
    drop = load_recipe().wikipedia.drop_sections
    for dump in args.wikipedia or []:
        per_doc = []
        for page in iter_xml_pages(dump):
            if page.redirect is None and page.ns == 0:
                losses: Counter = Counter()
                wikitext_to_text(page.text, drop, losses)
                per_doc.append(losses)
        table(f"Wikipedia dump {dump.name}", per_doc, args.top)


if __name__ == "__main__":
    main()
