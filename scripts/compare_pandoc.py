"""Our LaTeX-to-text side by side with pandoc on the same flattened e-prints.

    .venv/bin/python scripts/compare_pandoc.py [EPRINTS_DIR] [--timeout 60]

EPRINTS_DIR defaults to ../shared/data/arxiv-eprints. Each e-print is unpacked and flattened
once (astrodata's unpack + flatten); the same flattened LaTeX goes to our converter and to
`pandoc -f latex -t plain` (pandoc must be on PATH: `apt-get install pandoc`; this script
installs nothing). pandoc runs with a small Lua filter that removes math, citations, reference
links, code blocks and the bibliography (which we drop by design), so both sides are compared on
prose only; figure captions and table cells stay in pandoc's text (we keep captions only).

Definitions (per paper, and summed over papers for the totals):
- prose words: lower-cased runs of two or more ASCII letters (`[a-z]{2,}` after splitting on
  anything else), counted outside math. On our side math spans and fenced code are removed
  first (the same spans `residue_per_1k` skips) and the `[cite]`/`[ref]` markers are not words.
- retention: the share of pandoc's prose words that appear in ours, as multisets:
  sum over words w of min(ours[w], pandoc[w]) / sum of pandoc[w]. A paper pandoc fails on has
  no retention. Words we have that pandoc lacks (the abstract, which pandoc's plain writer
  omits) do not count either way.
- failures: pandoc exiting non-zero or running past the timeout; ours raising an error or
  producing no text.
"""

from __future__ import annotations

import argparse
import re
import shutil
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

from astrodata.latex.flatten import flatten
from astrodata.latex.residue import prose_only
from astrodata.latex.to_text import latex_to_text
from astrodata.sources.eprints import iter_local_eprints, unpack_eprint

DEFAULT_DIR = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "arxiv-eprints"
LUA_FILTER = """
function Math(el) return {} end
function Cite(el) return {} end
function Link(el) if el.attributes["reference-type"] then return {} end end
function CodeBlock(el) return {} end
function Div(el)
  if el.classes:includes("thebibliography") or el.classes:includes("references") then return {} end
end
"""
_WORD = re.compile(r"[a-z]{2,}")
_MARKER = re.compile(r"\[(?:cite|ref)\]")


def prose_words(text: str) -> Counter[str]:
    return Counter(_WORD.findall(text.lower()))


def retention(ours: Counter[str], theirs: Counter[str]) -> tuple[int, int]:
    """(pandoc words found in ours, pandoc words), multiset-wise."""
    return sum(min(ours[w], n) for w, n in theirs.items()), sum(theirs.values())


def run_pandoc(tex: str, lua: Path, timeout: float) -> tuple[str | None, str]:
    """pandoc's plain text, or None and the reason it failed."""
    try:
        proc = subprocess.run(
            ["pandoc", "-f", "latex", "-t", "plain", "--wrap=none", "-L", str(lua)],
            input=tex, capture_output=True, text=True, timeout=timeout,
        )
    except subprocess.TimeoutExpired:
        return None, f"timeout {timeout:.0f}s"
    if proc.returncode != 0:
        lines = [ln.strip() for ln in proc.stderr.splitlines() if ln.strip() and not ln.startswith("[WARNING")]
        return None, " ".join(lines[:2])[:80] or f"exit {proc.returncode}"
    return proc.stdout, ""


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("eprints", nargs="?", type=Path, default=DEFAULT_DIR)
    ap.add_argument("--timeout", type=float, default=60.0, help="seconds per paper for pandoc")
    args = ap.parse_args()
    if shutil.which("pandoc") is None:
        print("pandoc is not on PATH (apt-get install pandoc)", file=sys.stderr)
        return 1
    version = subprocess.run(["pandoc", "--version"], capture_output=True, text=True).stdout.split("\n")[0]
    print(f"# Ours vs {version} (`-f latex -t plain`), {args.eprints}\n")
    print("| paper | our words | pandoc words | retention | our s | pandoc s | our failure | pandoc failure |")
    print("|---|---:|---:|---:|---:|---:|---|---|")
    tot_found = tot_pandoc = tot_ours = n = our_fail = pandoc_fail = 0
    t_ours = t_pandoc = 0.0
    with tempfile.TemporaryDirectory() as tmp:
        lua = Path(tmp) / "prose.lua"
        lua.write_text(LUA_FILTER)
        for eprint_id, path in iter_local_eprints(args.eprints):
            n += 1
            flat = flatten(unpack_eprint(path, eprint_id))
            start = time.perf_counter()
            ours_err = ""
            try:
                doc = latex_to_text(flat.text, preamble="\n".join(flat.packages.values()))
                ours = prose_words(_MARKER.sub(" ", prose_only(doc.text)))
                if not doc.text.strip():
                    ours_err = "empty text"
            except Exception as exc:  # noqa: BLE001 - a failure is a row of the table
                ours, ours_err = Counter(), f"{type(exc).__name__}: {exc}"[:60]
            s_ours = time.perf_counter() - start
            start = time.perf_counter()
            plain, pandoc_err = run_pandoc(flat.text, lua, args.timeout)
            s_pandoc = time.perf_counter() - start
            theirs = prose_words(plain) if plain is not None else Counter()
            our_fail += bool(ours_err)
            pandoc_fail += bool(pandoc_err)
            t_ours, t_pandoc = t_ours + s_ours, t_pandoc + s_pandoc
            ret = "n/a"
            if plain is not None:
                found, total = retention(ours, theirs)
                tot_found, tot_pandoc = tot_found + found, tot_pandoc + total
                ret = f"{100 * found / max(total, 1):.1f}%"
            tot_ours += sum(ours.values())
            print(f"| {eprint_id} | {sum(ours.values())} | {sum(theirs.values()) if plain else '-'} | {ret} "
                  f"| {s_ours:.2f} | {s_pandoc:.2f} | {ours_err} | {pandoc_err} |")
    overall = f"{100 * tot_found / max(tot_pandoc, 1):.1f}%"
    print(f"| **total ({n} papers)** | {tot_ours} | {tot_pandoc} | {overall} | {t_ours:.1f} | {t_pandoc:.1f} "
          f"| {our_fail} failed | {pandoc_fail} failed |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
