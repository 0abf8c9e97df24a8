"""The reading primitives of the LaTeX-to-text converter, shared with the residue metric:
arguments (`{...}`, `[...]`, a single token), the end of a math span or an environment.

Positions are string indices; "not found" is -1 (or None for `env_end`, which returns a match).
"""

from __future__ import annotations

import re
from functools import cache

from astrodata.latex.macros import match_brace, match_bracket

CS = re.compile(r"\\([A-Za-z@]+|.)", re.S)
WS = re.compile(r"\s*")
MATH_TOKEN = re.compile(r"\\.|[{}$]|\n[ \t]*\n", re.S)


@cache
def env_end_re(name: str) -> re.Pattern[str]:
    """`\\begin{name}` or `\\end{name}` (group 1 says which), compiled once per name."""
    return re.compile(r"\\(begin|end)\s*\{" + re.escape(name) + r"\}")


def read_arg(src: str, pos: int) -> tuple[str | None, int]:
    """A mandatory argument (group content or a single token), or None when there is none."""
    pos = WS.match(src, pos).end()
    if pos >= len(src):
        return None, pos
    c = src[pos]
    if c == "{":
        end = match_brace(src, pos)
        if end < 0:
            return None, pos
        return src[pos + 1 : end - 1], end
    if c in "}[]":
        return None, pos
    if c == "\\":
        m = CS.match(src, pos)
        return m.group(), m.end()
    return c, pos + 1


def read_opt(src: str, pos: int) -> tuple[str | None, int]:
    p = WS.match(src, pos).end()
    if p < len(src) and src[p] == "[":
        end = match_bracket(src, p)
        if end > 0:
            return src[p + 1 : end - 1], end
    return None, pos


def read_args(src: str, pos: int, spec: str) -> tuple[list[str | None], int]:
    args: list[str | None] = []
    for s in spec:
        if s == "*":
            if pos < len(src) and src[pos] == "*":
                pos += 1
        elif s == "[":
            a, pos = read_opt(src, pos)
            args.append(a)
        elif s == "g":  # a brace group only if one follows
            p = WS.match(src, pos).end()
            a, pos = read_arg(src, pos) if src.startswith("{", p) else (None, pos)
            args.append(a)
        else:
            a, pos = read_arg(src, pos)
            args.append(a)
    return args, pos


def find_cs(src: str, pos: int, char: str) -> int:
    """Position of the next `\\<char>` (e.g. `\\]`), skipping other escapes, or -1."""
    for m in CS.finditer(src, pos):
        if m.group(1) == char:
            return m.start()
    return -1


def math_end(src: str, pos: int, delim: str) -> int:
    """Position of the `$`/`$$` closing math opened before `pos`, or -1; `$` inside braces
    (`\\text{$x$}`) nest, and a blank line ends the search (TeX refuses paragraphs in math)."""
    depth = 0
    for m in MATH_TOKEN.finditer(src, pos):
        c = m.group()
        if c == "{":
            depth += 1
        elif c == "}":
            depth = max(depth - 1, 0)
        elif c == "$":
            if depth == 0 and (delim == "$" or src.startswith("$$", m.start())):
                return m.start()
        elif c[0] == "\n":
            return -1
    return -1


def env_end(src: str, env: str, pos: int) -> re.Match[str] | None:
    """The `\\end{env}` matching a `\\begin{env}` just before `pos` (same-name nesting counted), or None."""
    depth = 1
    for m in env_end_re(env).finditer(src, pos):
        depth += 1 if m.group(1) == "begin" else -1
        if depth == 0:
            return m
    return None

