"""LaTeX residue: how much LaTeX markup a conversion left in its prose, the converter's quality
figure (`LatexText.residue_per_1k`, and `scripts/compare_pandoc.py`'s prose-only view).
"""

from __future__ import annotations

import re

from astrodata.latex.scan import env_end, find_cs, math_end

__all__ = ["prose_only", "residue_per_1k"]

_MATH_ENVS = "equation|align|alignat|gather|multline|eqnarray|flalign|displaymath|math|dmath|dgroup|darray"
_MATH_OPENER = re.compile(
    rf"^```|\$\$|\$|\\\[|\\\(|\\begin\{{({_MATH_ENVS})(\*?)\}}|\\.", re.M | re.S
)
_RESIDUE = re.compile(r"\\[A-Za-z]+|[{}]")


def residue_per_1k(text: str) -> float:
    """LaTeX left in prose per 1,000 words: backslash-commands (`\\[A-Za-z]+`) and stray braces
    outside math (`$...$`, `$$...$$`, `\\[...\\]`, `\\(...\\)`, equation-like environments; braces
    nest, so `$\\mbox{$x$}$` is one span) and outside fenced code blocks, per 1,000 words
    (whitespace-separated tokens of the whole text)."""
    words = len(text.split())
    if not words:
        return 0.0
    return 1000.0 * len(_RESIDUE.findall(prose_only(text))) / words


def prose_only(text: str) -> str:
    """`text` without its math spans and code blocks."""
    out: list[str] = []
    pos = 0
    while (m := _MATH_OPENER.search(text, pos)) is not None:
        opener = m.group()
        if opener.startswith("\\") and m.group(1) is None and opener not in ("\\[", "\\("):
            out.append(text[pos : m.end()])  # an escape such as \\$ or \\{
            pos = m.end()
            continue
        out.append(text[pos : m.start()])
        if opener == "```":
            end = text.find("\n```", m.end())
            stop = -1 if end < 0 else end + 4
        elif opener in ("$$", "$"):
            end = math_end(text, m.end(), opener)
            stop = -1 if end < 0 else end + len(opener)
        elif m.group(1) is not None:
            close = env_end(text, m.group(1) + m.group(2), m.end())
            stop = -1 if close is None else close.end()
        else:
            end = find_cs(text, m.end(), "]" if opener == "\\[" else ")")
            stop = -1 if end < 0 else end + 2
        if stop < 0:  # unclosed: the opener is prose
            out.append(opener)
            pos = m.end()
        else:
            out.append(" ")
            pos = stop
    out.append(text[pos:])
    return "".join(out)

