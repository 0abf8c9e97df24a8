"""Per-e-print conversion table: words, residue, headings, math spans, macros, missing inputs.

    PYTHONPATH=. .venv/bin/python scripts/latex_table.py [EPRINTS_DIR]

EPRINTS_DIR defaults to ../shared/data/arxiv-eprints. Each e-print goes through
`convert_eprint` (unpack -> flatten -> convert); a failure is a row with its reason.
"""

from __future__ import annotations

import sys
from pathlib import Path

from astrodata.latex.to_text import convert_eprint
from astrodata.sources.eprints import iter_local_eprints

DEFAULT_DIR = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "arxiv-eprints"


def print_table(folder: Path) -> None:
    print("| e-print | words | residue/1k | headings | math spans | macros expanded | unknown commands | missing inputs |")
    print("|---|---:|---:|---:|---:|---:|---:|---|")
    for eprint_id, path in iter_local_eprints(folder):
        try:
            doc, flat = convert_eprint(path)
        except Exception as exc:  # noqa: BLE001 - a failure is a row of the table
            print(f"| {eprint_id} | error: {getattr(exc, 'reason', type(exc).__name__)} |||||||")
            continue
        print(f"| {eprint_id} | {doc.words} | {doc.residue_per_1k:.2f} | {doc.headings} | {doc.math_spans} "
              f"| {doc.macros_expanded} | {doc.unknown_commands} | {', '.join(flat.missing_inputs)} |")


if __name__ == "__main__":
    print_table(Path(sys.argv[1]) if len(sys.argv) > 1 else DEFAULT_DIR)
