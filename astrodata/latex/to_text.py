"""Flattened arXiv LaTeX -> clean Markdown-ish text: title, abstract, body with `##` headings.

Why not pylatexenc over the whole document: `LatexNodes2Text` runs at ~80 KB/s, mangles math in
text mode and drops unknown macros with their arguments. Papers use a small vocabulary of
structural commands, so one pass of a regex-driven scanner handles them: math spans are copied
verbatim (normalised to `$...$` / `$$...$$`), prose commands are dispatched from tables, braces
are dropped, and an unknown macro loses its name but keeps its argument text. pylatexenc stays
the authority for what it does well and cheaply on small fragments: accents (`\\'e`, `\\"o`,
`\\c{c}`) and its table of text symbols (`\\ss`, `\\textdegree`, `\\dag`, ...).

The pipeline: strip comments -> expand user macros and decide conditionals (`macros.py`) -> cut
title and abstract (or a hand-built title block) -> convert the body -> tidy whitespace -> count
words and LaTeX residue. Figures are dropped (captions kept); tables become Markdown tables (one
row a line; `TextOptions.tables="drop"` drops them), algorithms numbered lines, lists keep their
numbers. What cannot be rendered faithfully is counted in `LatexText.losses` by (kind, name) and
ends in the catalog's `losses` table: unknown commands (name dropped, arguments kept), dropped
environment bodies, unclosed math (the prose after it kept), and the expander's losses.
The command and environment tables are data in `tables.py`, the reading primitives in
`scan.py`, the residue metric in `residue.py`; `scripts/latex_table.py DIR` prints the
per-e-print table (words, residue, macros, missing inputs).
"""

from __future__ import annotations

import re
import unicodedata
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from functools import cache, lru_cache
from pathlib import Path
from typing import Literal

from astrodata.latex import tables as T
from astrodata.latex.flatten import Flattened, flatten, strip_comments
from astrodata.latex.macros import (
    INLINE_VERB,
    ExpansionLimits,
    LatexError,
    expand_macros,
    inline_verb,
    match_brace,
)
from astrodata.latex.residue import residue_per_1k
from astrodata.latex.scan import CS, WS, env_end, find_cs, math_end, read_arg, read_args, read_opt

__all__ = ["LatexError", "LatexText", "TextOptions", "convert_eprint", "latex_to_text", "residue_per_1k"]

Markers = Literal["marker", "keys", "drop"]


@dataclass(frozen=True)
class TextOptions:
    citations: Markers = "marker"  # \cite family -> "[cite]", "[key1, key2]" or nothing
    references: Markers = "marker"  # \ref family -> "[ref]", "[fig:x]" or nothing
    captions: bool = True  # keep figure/table captions
    tables: Literal["markdown", "drop"] = "markdown"  # table bodies as Markdown tables, or dropped
    max_chars: int = 8_000_000  # larger inputs are refused with LatexError("too-large")
    limits: ExpansionLimits = field(default_factory=ExpansionLimits)


@dataclass
class LatexText:
    title: str
    abstract: str
    text: str  # "# Title", abstract, then the body; math kept as LaTeX in $...$ / $$...$$
    words: int
    residue_per_1k: float
    macros_expanded: int
    macros_defined: int = 0
    macro_errors: list[str] = field(default_factory=list)
    headings: int = 0
    math_spans: int = 0
    unknown_commands: int = 0  # prose commands converted by dropping their name (arguments kept as text)
    #: what could not be rendered faithfully, (kind, name) -> count. Kinds: command (unknown, name
    #: dropped, arguments kept), environment (body dropped), math (unclosed), and from expansion
    #: definition, conditional, math-symbol, expansion-limit (see `macros.py`)
    losses: Counter[tuple[str, str]] = field(default_factory=Counter)


_PROSE_SPECIAL = re.compile(r"[\\$~]|[{}]+")
_TYPO = re.compile(r"---|--|``|''|`|\n[ \t]*\n\s*|\n")
_TYPO_MAP = {"---": "—", "--": "–", "``": '"', "''": '"', "`": "'"}
_MATH_LABEL = re.compile(r"\\label\s*\{[^{}]*\}|\\(?:nonumber|notag)(?![A-Za-z])")
_TITLE = re.compile(r"\\(?:title|icmltitle)\*?(?![A-Za-z@])")
_ABSTRACT_ENV = re.compile(r"\\begin\s*\{abstract\}(.*?)\\end\s*\{abstract\}", re.S)
_ABSTRACT_CMD = re.compile(r"\\abstract(?![A-Za-z@])")
_BEGIN_DOC = re.compile(r"\\begin\s*\{document\}")
_END_DOC = re.compile(r"\\end\s*\{document\}")
_CAPTION = re.compile(r"\\(caption|tablecaption|captionof)(?![A-Za-z@])\*?")
_HEADING_LINE = re.compile(r"^#{1,6} ", re.M)
_MAX_NESTING = 40
_SPACES = re.compile(r"[ \t\u00a0]+")
_FENCED = re.compile(r"(\n```\n.*?\n```\n)", re.S)
_BLANKS = re.compile(r"\n{3,}")
_GAP = re.compile(r" +([,.;:])(?=\s|$)")
_IF_FI = re.compile(r"\\(if[A-Za-z@]*|fi)(?![A-Za-z@])")
_TABULAR_BEGIN = re.compile(r"\\begin\s*\{(" + "|".join(re.escape(e) for e in T.TABULAR_ENVS) + r")\}")
_MULTICOLUMN = re.compile(r"\s*\\multicolumn\s*\{\s*(\d+)\s*\}")
_ALG2E_TOKEN = re.compile(r"\\;|\\\\(?![A-Za-z@])|\\([A-Za-z]+)")
_ANY_BEGIN = re.compile(r"\\begin\s*\{([^{}]*)\}")
_COLHEAD = re.compile(r"\\colhead(?![A-Za-z@])")
_TABLEHEAD = re.compile(r"\\tablehead(?![A-Za-z@])")
# what nests inside a table: groups and environments (a tabular in a cell, an array in `$...$`); as in TeX,
# a `$` does not (an `&` inside `$...$` ends the cell there too)
_NESTING = r"|(?P<open>\\begin\s*\{[^{}]*\})|(?P<close>\\end\s*\{[^{}]*\})"
_ROW_SEP = re.compile(r"(?P<sep>\\\\\*?(?:\s*\[[^\]]*\])?|\\tabularnewline(?![A-Za-z@])|\\cr(?![A-Za-z@]))"
                      + _NESTING + r"|\\[A-Za-z@]+|\\.|[{}]", re.S)
_CELL_SEP = re.compile(r"(?P<sep>&)" + _NESTING + r"|\\[A-Za-z@]+|\\.|[{}]", re.S)
_ALG_LINE = re.compile(r"\\(" + "|".join(sorted(T.ALGORITHM_LINES, key=len, reverse=True)) + r"|Comment|COMMENT)(?![A-Za-z@])")
_CAPTION_OR_LABEL = re.compile(r"\\(?:caption|label)\s*(?:\[[^\]]*\])?\s*\{[^{}]*(?:\{[^{}]*\}[^{}]*)*\}")
_END_OR_VERBATIM = re.compile(
    r"\\end\s*\{document\}|\\begin\s*\{(verbatim\*?|Verbatim\*?|lstlisting|minted|comment|alltt)\}")
_FIRST_SECTION = re.compile(r"\\(?:section|chapter)\*?\s*[{\[]|\\begin\s*\{abstract\}")
_TITLE_BLOCK = re.compile(r"\\begin\s*\{(center|titlepage|flushleft|flushright)\}")
_BIG_FONT = re.compile(r"\\(?:LARGE|Large|huge|Huge)(?![A-Za-z@])")
_LINE_BREAK = re.compile(r"\\\\|\\par(?![A-Za-z@])|\n\s*\n|\\end\s*\{")
_ACRO_DEF = re.compile(r"\\(DeclareAcronym|acro|acrodef|newacronym)(?![A-Za-z@])")


@cache
def _symbols() -> dict[str, str]:
    """Argument-less text macros pylatexenc knows (`\\ss`, `\\textdegree`, ...), plus our overrides."""
    from pylatexenc import latex2text, latexwalker

    db, walker_db = latex2text.get_default_latex_context_db(), latexwalker.get_default_latex_context_db()
    table: dict[str, str] = {}
    for cat in db.category_list:
        for name, spec in db.d[cat]["macros"].items():
            repl = getattr(spec, "simplify_repl", None)
            wspec = walker_db.get_macro_spec(name)
            argspec = getattr(getattr(wspec, "args_parser", None), "argspec", "")
            if isinstance(repl, str) and "%" not in repl and not argspec:
                table[name] = repl
    table.update(T.SYMBOLS_OVERRIDE)
    return table


@cache
def _pylatexenc() -> object:
    from pylatexenc.latex2text import LatexNodes2Text

    return LatexNodes2Text()


@lru_cache(maxsize=4096)
def _accent(fragment: str) -> str:
    """`\\'{e}` -> é through pylatexenc, composed to one code point where Unicode has one."""
    try:
        return unicodedata.normalize("NFC", _pylatexenc().latex_to_text(fragment))
    except Exception:  # noqa: BLE001 - pylatexenc raises assorted errors on odd input; keep the letter
        return re.sub(r"\\.|[{}]", "", fragment)


def _si_units(units: str) -> str:
    """siunitx unit macros (`\\kilo\\meter\\per\\second`) -> `km s^-1`; literal units pass through."""
    out: list[str] = []
    prefix, per = "", False
    for m in re.finditer(r"\\([A-Za-z]+)|([^\\\s]+)", units.replace("{", "").replace("}", "")):
        word, literal = m.group(1), m.group(2)
        if literal:
            out.append(literal)
        elif word in T.SI_PREFIX:
            prefix += T.SI_PREFIX[word]
        elif word == "per":
            per = True
        elif word in T.SI_POWER and out:
            out[-1] += T.SI_POWER[word]
        elif word in ("of", "tothe", "raiseto"):
            continue
        else:
            unit = prefix + T.SI.get(word, word)
            prefix = ""
            out.append(unit + "^-1" if per else unit)
            per = False
    return " ".join(out)


def _keyvals(text: str) -> dict[str, str]:
    """`short=GW, long={gravitational wave}` -> dict (commas inside braces do not split)."""
    out, depth, start = {}, 0, 0
    for i, c in enumerate(text + ","):
        depth += (c == "{") - (c == "}")
        if c == "," and depth == 0:
            key, _, value = text[start:i].partition("=")
            value = value.strip()
            out[key.strip()] = value[1:-1] if value.startswith("{") and value.endswith("}") else value
            start = i + 1
    return out


def _acronyms(text: str) -> dict[str, tuple[str, str, str, str]]:
    """Acronyms declared with acro's \\DeclareAcronym, acronym's \\acro/\\acrodef or glossaries'
    \\newacronym: key -> (short, long, short plural, long plural)."""
    table = {}
    for m in _ACRO_DEF.finditer(text):
        if m.group(1) == "DeclareAcronym":
            (key, vals), _ = read_args(text, m.end(), "{{")
            kv = _keyvals(vals or "")
            short, long = kv.get("short", key or ""), kv.get("long", "")
            short_pl = kv.get("short-plural-form", short + kv.get("short-plural", "s"))
            long_pl = kv.get("long-plural-form", long + kv.get("long-plural", "s"))
        elif m.group(1) == "newacronym":
            (_, key, short, long), _ = read_args(text, m.end(), "[{{{")
            short, long = short or "", long or ""
            short_pl, long_pl = short + "s", long + "s"
        else:
            (key, short, long), _ = read_args(text, m.end(), "{[{")
            short, long = short or key or "", long or ""
            short_pl, long_pl = short + "s", long + "s"
        if key:
            table[key.strip()] = (short, long, short_pl, long_pl)
    return table


class _Converter:
    """One document's body conversion; handlers take (src, pos) after the command name and
    return the position after what they consumed, appending text to `self.out`."""

    def __init__(self, options: TextOptions) -> None:
        self.options = options
        self.symbols = _symbols()
        self.out: list[str] = []
        self.depth = 0
        self.headings = 0
        self.math = 0
        self.acronyms: dict[str, tuple[str, str, str, str]] = {}
        self.acronyms_used: set[str] = set()
        self.unknown = 0  # prose commands we knew nothing about (name dropped, argument text kept)
        self.losses: Counter[tuple[str, str]] = Counter()
        self.lists: list[int] = []  # open lists: items numbered so far, -1 for unnumbered
        self.cells = 0  # table cells being converted: a tabular inside one is flattened to its words

    def inline(self, src: str) -> str:
        """Convert a fragment (an argument) to one line of text."""
        if self.depth > _MAX_NESTING:
            return re.sub(r"\\[A-Za-z@]+|[{}]", "", src)
        saved, self.out = self.out, []
        self.depth += 1
        try:
            self.prose(src)
            return " ".join("".join(self.out).split())
        finally:
            self.depth -= 1
            self.out = saved

    # -- the scanner ---------------------------------------------------------------------------
    def emit_text(self, s: str) -> None:
        if s:
            self.out.append(_TYPO.sub(_typo, s))

    def prose(self, src: str, pos: int = 0, end: int | None = None) -> None:
        end = len(src) if end is None else end
        find = _PROSE_SPECIAL.search
        while pos < end:
            m = find(src, pos, end)
            if m is None:
                self.emit_text(src[pos:end])
                return
            i = m.start()
            if i > pos:
                self.emit_text(src[pos:i])
            c = src[i]
            if c == "\\":
                pos = self.command(src, i)
            elif c == "$":
                pos = self.dollar_math(src, i)
            elif c == "~":
                self.out.append(" ")
                pos = i + 1
            else:  # braces only group in prose
                pos = i + 1

    def command(self, src: str, i: int) -> int:
        """One control sequence at `i`: its handler from `_HANDLERS`, else a text symbol, else
        transparent (name dropped), else unknown (name dropped and counted)."""
        m = CS.match(src, i)
        if m is None:
            return i + 1
        name, pos = m.group(1), m.end()
        if name.isalpha() and pos < len(src) and src[pos] == "*":
            pos += 1
        handler = _HANDLERS.get(name)
        if handler is not None:
            end = handler(self, name, src, i, pos)
            if end is not None:
                return end
        sym = self.symbols.get(name)
        if sym is not None:
            self.out.append(sym)
            return pos
        if name in T.TRANSPARENT:
            return pos
        if name[:2] == "fa" and name[2:3].isupper():  # a fontawesome icon: no text to lose
            return pos
        # unknown macro: drop its name (and an optional argument glued to it); its groups follow as text
        self.unknown += 1
        self.losses["command", "\\" + name] += 1
        if pos < len(src) and src[pos] == "[":
            opt, p = read_opt(src, pos)
            if opt is not None and len(opt) < 80:
                return p
        return pos

    # -- command handlers: (name, src, i = the backslash, pos = after the name) -> end, or None
    # to fall through to the symbol / transparent / unknown default -----------------------------
    def h_begin(self, name: str, src: str, i: int, pos: int) -> int:
        return self.begin(src, pos)

    def h_end(self, name: str, src: str, i: int, pos: int) -> int:
        env, p = read_arg(src, pos)
        if env is not None and env.strip() in T.LIST_ENVS and self.lists:
            self.lists.pop()
        if env is not None and env.strip() not in T.FLOATS:
            self.out.append("\n\n")
        return p if env is not None else pos

    def h_keywords(self, name: str, src: str, i: int, pos: int) -> int:
        words, pos = read_arg(src, pos)
        text = self.inline(words or "")
        if text:
            self.out.append(f"\n\nKeywords: {text}\n\n")
        return pos

    def h_multicolumn(self, name: str, src: str, i: int, pos: int) -> int:
        """`\\multicolumn{n}{spec}{text}`, `\\multirow{n}{width}{text}`, `\\makecell[..]{a\\\\b}`: the text."""
        spec = {"multicolumn": "{{{", "multirow": "[{[{[{", "makecell": "[{", "thead": "[{"}[name]
        args, pos = read_args(src, pos, spec)
        self.out.append(self.inline(args[-1] or ""))
        return pos

    def h_section(self, name: str, src: str, i: int, pos: int) -> int:
        (short, title), pos = read_args(src, pos, "[{")
        text = self.inline(title or "")
        if name in T.SECTIONS:
            self.headings += 1
            self.out.append(f"\n\n{'#' * T.SECTIONS[name]} {text}\n\n")
        elif text:
            self.out.append(f"\n\n**{text}** ")
        return pos

    def h_cite(self, name: str, src: str, i: int, pos: int) -> int:
        return self.citation(src, pos)

    def h_ref(self, name: str, src: str, i: int, pos: int) -> int:
        key, pos = read_arg(src, pos)
        self.out.append(self.marker("ref", key or "", self.options.references))
        return pos

    def h_drop(self, name: str, src: str, i: int, pos: int) -> int:
        return read_args(src, pos, T.DROP[name])[1]

    def h_footnote(self, name: str, src: str, i: int, pos: int) -> int:
        (_, note), pos = read_args(src, pos, "[{")
        text = self.inline(note or "")
        if text:
            self.out.append(f" ({text})")
        return pos

    def h_caption(self, name: str, src: str, i: int, pos: int) -> int:
        (_, cap), pos = read_args(src, pos, "[{")
        if self.options.captions and cap:
            self.out.append(f"\n\n{self.inline(cap)}\n\n")
        return pos

    def h_url(self, name: str, src: str, i: int, pos: int) -> int:
        url, pos = read_arg(src, pos)
        self.out.append(url or "")
        return pos

    def h_keep_second(self, name: str, src: str, i: int, pos: int) -> int:
        (_, _, second), pos = read_args(src, pos, "[{{")
        self.out.append(self.inline(second or ""))
        return pos

    def h_keep_first(self, name: str, src: str, i: int, pos: int) -> int:
        (first, _), pos = read_args(src, pos, "{{")
        self.out.append(self.inline(first or ""))
        return pos

    def h_box(self, name: str, src: str, i: int, pos: int) -> int:
        return read_args(src, pos, T.BOX_ARGS[name])[1]  # the box content follows as text

    def h_item(self, name: str, src: str, i: int, pos: int) -> int:
        label, pos = read_opt(src, pos)
        if self.lists and self.lists[-1] >= 0:  # enumerate: its number, or the label it was given
            self.lists[-1] += 1
            self.out.append(f"\n{self.inline(label) if label else f'{self.lists[-1]}.'} ")
        else:
            self.out.append("\n- " + (self.inline(label) + " " if label else ""))
        return pos

    def h_newline(self, name: str, src: str, i: int, pos: int) -> int:  # with its optional star and [length]
        self.out.append("\n")
        return read_args(src, pos, "*[")[1]

    def h_quote(self, name: str, src: str, i: int, pos: int) -> int:
        arg, pos = read_arg(src, pos)
        self.out.append(f'"{self.inline(arg or "")}"')
        return pos

    def h_ion(self, name: str, src: str, i: int, pos: int) -> int:  # AAS \ion{Ca}{2} -> Ca II
        (element, stage), pos = read_args(src, pos, "{{")
        self.out.append(f"{self.inline(element or '')} {_roman((stage or '').strip())}")
        return pos

    def h_edit(self, name: str, src: str, i: int, pos: int) -> int | None:  # AAS \edit1{...}: the text stays
        return pos + 1 if pos < len(src) and src[pos].isdigit() else None

    def h_heading_like(self, name: str, src: str, i: int, pos: int) -> int:
        self.headings += 1
        self.out.append(f"\n\n## {T.HEADING_LIKE[name]}\n\n")
        return pos

    def h_display_open(self, name: str, src: str, i: int, pos: int) -> int:
        close = find_cs(src, pos, "]")
        if close < 0:  # unclosed: counted; what follows is read as prose
            self.losses["math", "unclosed \\["] += 1
            return pos
        return self.display(src[pos:close], close + 2)

    def h_inline_open(self, name: str, src: str, i: int, pos: int) -> int:
        close = find_cs(src, pos, ")")
        if close < 0:
            self.losses["math", "unclosed \\("] += 1
            return pos
        return self.inline_math(src[pos:close], close + 2)

    def h_ensuremath(self, name: str, src: str, i: int, pos: int) -> int:
        arg, pos = read_arg(src, pos)
        return self.inline_math(arg or "", pos)

    def h_verb(self, name: str, src: str, i: int, pos: int) -> int:
        return self.verb(name, src, pos)

    def h_iffalse(self, name: str, src: str, i: int, pos: int) -> int:
        return _skip_conditional(src, pos)

    def h_assignment(self, name: str, src: str, i: int, pos: int) -> int:
        return T.ASSIGN.match(src, pos).end()

    def h_acronym(self, name: str, src: str, i: int, pos: int) -> int | None:
        return self.acronym(name, src, pos) if self.acronyms else None

    def h_siunitx(self, name: str, src: str, i: int, pos: int) -> int:
        return self.siunitx(name, src, pos)

    def h_accent(self, name: str, src: str, i: int, pos: int) -> int:
        arg, p = read_arg(src, pos)
        if arg is None:
            return pos
        self.out.append(_accent(src[i:p]))
        return p

    def marker(self, kind: str, keys: str, mode: Markers) -> str:
        if mode == "drop":
            return ""
        if mode == "keys":
            return "[" + ", ".join(k.strip() for k in keys.split(",") if k.strip()) + "]"
        return f"[{kind}]"

    def citation(self, src: str, pos: int) -> int:
        (pre, post, keys), pos = read_args(src, pos, "[[{")
        if post is None and pre is not None:  # one optional argument is the post-note
            pre, post = None, pre
        parts = [
            self.inline(pre) if pre else "",
            self.marker("cite", keys or "", self.options.citations),
            self.inline(post) if post else "",
        ]
        self.out.append(" ".join(p for p in parts if p))
        return pos

    def acronym(self, name: str, src: str, pos: int) -> int:
        """`\\ac{GW}` -> "gravitational wave (GW)" the first time, "GW" after; plural and long forms too."""
        (_, key), pos = read_args(src, pos, "[{")
        key = (key or "").strip()
        if key not in self.acronyms:
            self.out.append(key)
            return pos
        form, plural, capital = T.ACRO_USE[name]
        short, long, short_pl, long_pl = self.acronyms[key]
        s, lo = (short_pl, long_pl) if plural else (short, long)
        if form == "a":
            form = "s" if key in self.acronyms_used or not lo else "f"
        self.acronyms_used.add(key)
        text = {"s": s, "l": lo or s, "f": f"{lo} ({s})" if lo else s}[form]
        self.out.append(text[:1].upper() + text[1:] if capital else text)
        return pos

    def siunitx(self, name: str, src: str, pos: int) -> int:
        """siunitx in prose: numbers (`N`) and units (`U`) per command, e.g. `\\qty{3}{\\km}` -> `3 km`."""
        spec, kinds = T.SIUNITX[name]
        args, pos = read_args(src, pos, spec)
        vals = [a or "" for a, s in zip(args, spec.replace("*", ""), strict=True) if s == "{"]
        nums = [_si_number(self.inline(v) if "\\" in v else v) for v, k in zip(vals, kinds, strict=False) if k == "N"]
        units = [_si_units(v) for v, k in zip(vals, kinds, strict=False) if k == "U"]
        if name == "ang":
            parts = (vals[0] if vals else "").split(";")
            self.out.append("".join(f"{v.strip()}{u}" for v, u in zip(parts, "°′″", strict=False) if v.strip()))
        else:
            self.out.append(" ".join(filter(None, ["–".join(nums), *units])))
        return pos

    def verb(self, name: str, src: str, pos: int) -> int:
        span = inline_verb(src, pos, name)
        if span is None:
            return pos
        self.out.append("`" + src[span[0] : span[1]] + "`")
        return span[2]

    # -- math --------------------------------------------------------------------------------
    def dollar_math(self, src: str, i: int) -> int:
        display = src.startswith("$$", i)
        start = i + (2 if display else 1)
        end = math_end(src, start, "$$" if display else "$")
        if end < 0:  # an unclosed $: drop it, count it, keep going
            self.losses["math", "unclosed $$" if display else "unclosed $"] += 1
            return start
        inner = src[start:end]
        return self.display(inner, end + 2) if display else self.inline_math(inner, end + 1)

    def inline_math(self, inner: str, pos: int) -> int:
        inner = _MATH_LABEL.sub("", inner).strip()
        if inner:
            self.math += 1
            if self.out and self.out[-1].endswith("$"):
                self.out.append(" ")  # `$a$$b$` would read as display math
            self.out.append("$" + (" ".join(inner.split()) if "\n" in inner else inner) + "$")
        return pos

    def display(self, inner: str, pos: int, wrap: str | None = None, wrap_arg: str = "") -> int:
        inner = _MATH_LABEL.sub("", inner).strip()
        inner = "\n".join(ln for ln in inner.split("\n") if ln.strip())  # a blank line would end $$ in Markdown
        if inner:
            if wrap:
                inner = f"\\begin{{{wrap}}}{wrap_arg}\n{inner}\n\\end{{{wrap}}}"
            self.math += 1
            self.out.append(f"\n\n$${inner}$$\n\n")
        return pos

    # -- environments ------------------------------------------------------------------------
    def begin(self, src: str, pos: int) -> int:
        env, p = read_arg(src, pos)
        if env is None:
            return pos
        env = env.strip()
        body_start, args = p, []
        if env in T.ENV_ARGS:
            args, body_start = read_args(src, p, T.ENV_ARGS[env])
        close = env_end(src, env, p)
        if env in T.DISPLAY:
            if close is None:
                return body_start
            wrap_arg = f"{{{args[0]}}}" if env.startswith("alignat") and args and args[0] else ""
            return self.display(src[body_start : close.start()], close.end(), T.ALIGNED.get(env), wrap_arg)
        if env in T.TABULAR_ENVS and close is not None:
            rows_start = read_args(src, p, T.TABULAR_ENVS[env])[1]
            self.table(src[rows_start : close.start()])
            return close.end()
        if env in T.ALGORITHMIC_ENVS and close is not None:
            self.algorithm(src[body_start : close.start()])
            return close.end()
        if env in T.FLOATS or env in T.DROP_ENVS or env in T.CODE_ENVS:
            if close is None:
                return body_start  # unclosed: read on as prose rather than lose the rest
            if env in T.FLOATS and env not in T.ENV_ARGS:
                body_start = read_opt(src, body_start)[1]  # placement: [t], [htbp]
            body = src[body_start : close.start()]
            kind = "Table" if "table" in env else "Algorithm" if env.startswith("algorithm") else "Figure"
            if env in T.FLOATS and self.options.captions:
                self.captions(src, body_start, close.start(), kind)
            if env in T.DELUXE:
                self.deluxetable(body)
            elif env in T.TABLE_FLOATS:
                for m in _TABULAR_BEGIN.finditer(body):
                    self.begin(body, m.end() - 1 - len(m.group(1)) - 1)
            elif kind == "Algorithm":
                self.algorithm_float(body)
            elif env in T.CODE_ENVS:
                self.out.append("\n\n```\n" + body.strip("\n") + "\n```\n\n")
            elif env in T.DROP_ENVS and env not in T.NOT_TEXT_ENVS:
                self.losses["environment", env] += 1
            return close.end()
        if body_start < len(src) and src[body_start] == "[" and env not in T.ENV_ARGS:
            body_start = read_opt(src, body_start)[1]  # enumitem-style options: [leftmargin=*]
        if env in T.LIST_ENVS:
            self.lists.append(0 if env in T.NUMBERED_LISTS else -1)
        if env in T.KEYWORD_ENVS:
            self.out.append("\n\nKeywords: ")
        elif env in T.HEADING_LIKE:
            self.headings += 1
            self.out.append(f"\n\n## {T.HEADING_LIKE[env]}\n\n")
        else:
            self.out.append("\n\n")
        return body_start  # any other environment is transparent: its content is prose

    def captions(self, src: str, start: int, end: int, kind: str) -> None:
        for m in _CAPTION.finditer(src, start, end):
            spec = "{[{" if m.group(1) == "captionof" else "[{"
            args, _ = read_args(src[:end], m.end(), spec)
            text = self.inline(args[-1] or "")
            if text:
                self.out.append(f"\n\n{kind}: {text}\n\n")

    # -- tables and algorithms ---------------------------------------------------------------
    def table(self, rows_tex: str) -> None:
        """Rows (`\\\\`-separated, cells `&`-separated) -> a Markdown table: the first row is its
        header, one row per line, cells in order; rules dropped, multi-column cells flattened."""
        if self.options.tables == "drop":
            return
        rows_tex = T.TABLE_RULES.sub(" ", rows_tex)
        if self.cells:  # a tabular inside a cell (a hand-made line break): its cells' words, in order
            words = (self.inline(c) for r in _split_top(rows_tex, _ROW_SEP) for c in _split_top(r, _CELL_SEP))
            self.out.append(" ".join(w for w in words if w))
            return
        rows: list[list[str]] = []
        for row in _split_top(rows_tex, _ROW_SEP):
            cells: list[str] = []
            for cell in _split_top(row, _CELL_SEP):
                self.cells += 1
                try:
                    cells.append(self.inline(cell).replace("|", "\\|"))
                finally:
                    self.cells -= 1
                span = _MULTICOLUMN.match(cell)
                cells += [""] * (int(span.group(1)) - 1 if span else 0)
            if any(cells):
                rows.append(cells)
        if not rows:
            return
        width = max(len(r) for r in rows)
        lines = ["| " + " | ".join(r + [""] * (width - len(r))) + " |" for r in rows]
        lines.insert(1, "|" + "---|" * width)
        self.out.append("\n\n" + "\n".join(lines) + "\n\n")

    def deluxetable(self, body: str) -> None:
        """AASTeX: column heads in `\\tablehead` (some papers put rows there too), rows between
        `\\startdata` and `\\enddata`; the first head row is the Markdown header."""
        head, _ = read_arg(body, m.end()) if (m := _TABLEHEAD.search(body)) else (None, 0)
        start, end = body.find("\\startdata"), body.find("\\enddata")
        rows = body[start + len("\\startdata") : end if end > start else len(body)] if start >= 0 else ""
        self.table(_COLHEAD.sub("", head or "") + "\\\\" + rows)

    def algorithm_float(self, body: str) -> None:
        """An `algorithm` float: its algorithmic environments, or algorithm2e lines ending in `\\;`."""
        if any(m.group(1) in T.ALGORITHMIC_ENVS for m in _ANY_BEGIN.finditer(body)):
            for m in _ANY_BEGIN.finditer(body):
                if m.group(1) in T.ALGORITHMIC_ENVS:
                    self.begin(body, m.end() - len(m.group(1)) - 2)
            return
        self.numbered(self.algorithm2e(_CAPTION_OR_LABEL.sub("", body)))

    def algorithm2e(self, src: str) -> list[str]:
        """algorithm2e's body -> lines: statements end at `\\;` or `\\\\`; `\\For{c}{body}` and the
        other blocks open "for c do" ... "end"; `\\KwIn{x}` and any `\\Keyword{x}` opening a line
        (`\\SetKwInput` ones) become "Keyword: x"; `\\tcc{x}` a "▷ x" line."""
        lines: list[str] = []
        start = pos = 0

        def flush(end: int) -> None:
            text = self.inline(src[start:end])
            if text:
                lines.append(text)

        while (m := _ALG2E_TOKEN.search(src, pos)) is not None:
            name = m.group(1)
            if name is None:  # \; or \\: end of a statement
                flush(m.start())
                start = pos = m.end()
                continue
            at_line_start = not src[start : m.start()].strip()
            if name in T.ALG2E_BLOCKS:
                flush(m.start())
                opener, closer = T.ALG2E_BLOCKS[name]
                (cond, block), end = read_args(src, m.end(), "{{" if "{c}" in opener else "{")
                lines.append(opener.replace("{c}", self.inline(cond or "")) if "{c}" in opener else opener)
                lines += self.algorithm2e(block or "")
                if name == "eIf":
                    other, end = read_arg(src, end)
                    lines += ["else", *self.algorithm2e(other or "")]
                if closer:
                    lines.append(closer)
                start = pos = end
            elif at_line_start and src.startswith("{", m.end()) and name not in T.TRANSPARENT:
                flush(m.start())
                arg, end = read_arg(src, m.end())
                label = T.ALG2E_LABELS.get(name, name)
                text = self.inline(arg or "")
                lines.append(label.replace("{x}", text) if "{x}" in label else f"{label}: {text}")
                start = pos = end
            else:
                pos = m.end()
        flush(len(src))
        return lines

    def algorithm(self, body: str) -> None:
        """algorithmic/algpseudocode -> numbered lines ("if c then", "end for", ...)."""
        lines: list[str] = []
        pieces = _ALG_LINE.split(body)  # [before, cmd, rest, cmd, rest, ...]
        for cmd, rest in zip(pieces[1::2], pieces[2::2], strict=True):
            if cmd in ("Comment", "COMMENT"):
                arg, p = read_arg(rest, 0)
                note = f"▷ {self.inline(arg or '')}"
                if lines:
                    lines[-1] += " " + note
                else:
                    lines.append(note)
                rest = rest[p:]
                if self.inline(rest):
                    lines.append(self.inline(rest))
                continue
            before, nargs, after = T.ALGORITHM_LINES[cmd]
            args, p = read_args(rest, 0, "{" * nargs)
            words = [before]
            if cmd in ("Procedure", "Function"):
                words.append(f"{self.inline(args[0] or '')}({self.inline(args[1] or '')})")
            else:
                words += [self.inline(a or "") for a in args]
            words += [after, self.inline(rest[p:])]
            lines.append(" ".join(w for w in words if w))
        self.numbered([x for x in lines if x])

    def numbered(self, lines: list[str]) -> None:
        if lines:
            self.out.append("\n\n" + "\n".join(f"{n}. {x}" for n, x in enumerate(lines, 1)) + "\n\n")



def _handlers() -> dict[str, Callable[..., int | None]]:
    """Command name -> `_Converter` handler. Built in priority order: a name listed in two tables
    (e.g. `\\today` in DROP and in the symbols) goes to the first."""
    C = _Converter
    groups: list[tuple[Iterable[str], Callable[..., int | None]]] = [
        (["begin"], C.h_begin),
        (["end"], C.h_end),
        ([*T.SECTIONS, "paragraph", "subparagraph"], C.h_section),
        (T.CITES, C.h_cite),
        (T.REFS, C.h_ref),
        (T.DROP, C.h_drop),
        (["footnote", "footnotetext"], C.h_footnote),
        (["caption", "tablecaption"], C.h_caption),
        (["url", "nolinkurl", "path"], C.h_url),
        (T.KEEP_SECOND, C.h_keep_second),
        (T.KEEP_FIRST, C.h_keep_first),
        (T.BOX_ARGS, C.h_box),
        (["item"], C.h_item),
        (["\\"], C.h_newline),
        (["enquote", "textquote"], C.h_quote),
        (["ion"], C.h_ion),
        (["edit"], C.h_edit),
        (T.HEADING_LIKE, C.h_heading_like),
        (["["], C.h_display_open),
        (["("], C.h_inline_open),
        (["ensuremath"], C.h_ensuremath),
        (["keywords"], C.h_keywords),
        (["multicolumn", "multirow", "makecell", "thead"], C.h_multicolumn),
        (sorted(INLINE_VERB), C.h_verb),
        (["iffalse"], C.h_iffalse),
        (T.ASSIGNMENTS, C.h_assignment),
        (T.ACRO_USE, C.h_acronym),
        (T.SIUNITX, C.h_siunitx),
        (T.ACCENTS, C.h_accent),
    ]
    table: dict[str, Callable[..., int | None]] = {}
    for names, handler in groups:
        for n in names:
            table.setdefault(n, handler)
    return table


_HANDLERS = _handlers()

def _split_top(text: str, sep: re.Pattern[str]) -> list[str]:
    """`text` split where `sep` matches outside braces and environments (`\\&`, and separators inside
    a group or a nested tabular/array, stay)."""
    parts, depth, start = [], 0, 0
    for m in sep.finditer(text):
        if m.group("sep") is not None:
            if depth == 0:
                parts.append(text[start : m.start()])
                start = m.end()
        elif m.group() == "{" or m.group("open") is not None:
            depth += 1
        elif m.group() == "}" or m.group("close") is not None:
            depth = max(depth - 1, 0)
    parts.append(text[start:])
    return parts


def _typo(m: re.Match[str]) -> str:
    s = m.group()
    if s[0] == "\n":
        return "\n\n" if s.count("\n") > 1 else " "
    return _TYPO_MAP[s]


def _roman(stage: str) -> str:
    """Ionisation stage `2` -> `II` (other input is returned as written)."""
    if not stage.isdigit() or not 0 < int(stage) < 40:
        return stage
    n, out = int(stage), ""
    for value, letters in ((10, "X"), (9, "IX"), (5, "V"), (4, "IV"), (1, "I")):
        count, n = divmod(n, value)
        out += letters * count
    return out


def _si_number(value: str) -> str:
    """`1.5e-3` -> `1.5×10^-3` (siunitx's output, in plain text)."""
    value = value.strip().replace("\\pm", "±").replace("+-", "±")
    m = re.fullmatch(r"([-+]?[\d.,]*)\s*[eE]\s*([-+]?\d+)", value)
    if m:
        mant, exp = m.groups()
        return f"{mant}×10^{exp}" if mant else f"10^{exp}"
    return value


def _skip_conditional(src: str, pos: int) -> int:
    """Past the `\\fi` closing an `\\iffalse` (nested conditionals counted); the end when unclosed."""
    depth = 1
    for m in _IF_FI.finditer(src, pos):
        depth += 1 if m.group(1) != "fi" else -1
        if depth == 0:
            return m.end()
    return len(src)


def _take_title(text: str) -> tuple[str | None, str]:
    """The first `\\title[short]{...}` argument and the text without it."""
    m = _TITLE.search(text)
    if not m:
        return None, text
    (_, title), end = read_args(text, m.end(), "[{")
    if title is None:
        return None, text
    return title, text[: m.start()] + text[end:]


def _document_end(body: str) -> int:
    """Where `\\end{document}` is, skipping verbatim-like blocks that merely show one; the end of
    `body` when there is none."""
    pos = 0
    while (m := _END_OR_VERBATIM.search(body, pos)) is not None:
        if m.group(1) is None:
            return m.start()
        close = env_end(body, m.group(1), m.end())
        if close is None:
            break
        pos = close.end()
    return len(body)


def _title_block(body: str) -> tuple[str | None, str]:
    """A title hand-built from layout commands when there is no `\\title`: the first group set in
    `\\LARGE`/`\\Large`/`\\huge`/`\\Huge` inside a `center`/`titlepage`/`flushleft` block before the
    first section. Returns the title and the body without that block (its author and school
    lines are front matter, as `\\author` is)."""
    section = _FIRST_SECTION.search(body)
    head = body[: section.start()] if section else body
    for m in _TITLE_BLOCK.finditer(head):
        close = env_end(body, m.group(1), m.end())
        if close is None:
            continue
        block = body[m.end() : close.start()]
        size = _BIG_FONT.search(block)
        if size is None:
            continue
        group_start = block.rfind("{", 0, size.start())
        if group_start >= 0 and match_brace(block, group_start) > size.end():
            title = block[size.end() : match_brace(block, group_start) - 1]
        else:  # `\\LARGE Title \\\\`: to the line break
            stop = _LINE_BREAK.search(block, size.end())
            title = block[size.end() : stop.start() if stop else len(block)]
        return title, body[: m.start()] + body[close.end() :]
    return None, body


def _take_abstract(text: str) -> tuple[str | None, str]:
    """The abstract environment, or A&A's structured `\\abstract{context}{aims}...{conclusions}`."""
    m = _ABSTRACT_ENV.search(text)
    if m:
        return m.group(1), text[: m.start()] + text[m.end() :]
    m = _ABSTRACT_CMD.search(text)
    if not m:
        return None, text
    parts, pos = [], m.end()
    while True:
        arg, p = read_arg(text, pos)
        if arg is None or not text[WS.match(text, pos).end()] == "{":
            break
        parts.append(arg)
        pos = p
    if not parts:
        return None, text
    return "\n\n".join(parts), text[: m.start()] + text[pos:]


def _tidy(text: str) -> str:
    """Collapse spaces, trim lines, at most one blank line; fenced code blocks keep their layout."""
    if "```" in text:
        parts = _FENCED.split(text)
        return "\n\n".join(filter(None, (p.strip("\n") if i % 2 else _tidy_prose(p) for i, p in enumerate(parts))))
    return _tidy_prose(text)


def _tidy_prose(text: str) -> str:
    text = _SPACES.sub(" ", text)
    text = "\n".join(line.strip() for line in text.split("\n"))
    text = _BLANKS.sub("\n\n", text)
    return _GAP.sub(r"\1", text).strip()  # a dropped marker or label left a gap before punctuation


def latex_to_text(tex: str, options: TextOptions = TextOptions(), preamble: str = "") -> LatexText:
    """Convert one flattened LaTeX document; `preamble` adds definitions (the paper's own .sty files).

    Raises LatexError for inputs it refuses (over `options.max_chars`); anything else that goes
    wrong inside (a pathological nesting) also comes out as LatexError with a reason.
    """
    if len(tex) > options.max_chars:
        raise LatexError("too-large", f"{len(tex)} characters (limit {options.max_chars})")
    try:
        return _convert(tex, options, preamble)
    except RecursionError as exc:
        raise LatexError("nesting-too-deep", str(exc)) from exc


def _convert(tex: str, options: TextOptions, preamble: str) -> LatexText:
    expanded, stats = expand_macros(
        strip_comments(tex), options.limits, strip_comments(preamble) if preamble else ""
    )
    title_tex, expanded = _take_title(expanded)
    abstract_tex, expanded = _take_abstract(expanded)
    begin = _BEGIN_DOC.search(expanded)
    body = expanded[begin.end() :] if begin else expanded
    body = body[: _document_end(body)]
    if title_tex is None:
        title_tex, body = _title_block(body)

    conv = _Converter(options)
    conv.acronyms = _acronyms(expanded) if "\\ac" in expanded or "\\gls" in expanded else {}
    title = conv.inline(title_tex).replace("\n", " ") if title_tex else ""
    abstract = ""
    if abstract_tex:
        conv.prose(abstract_tex)
        abstract, conv.out = _tidy("".join(conv.out)), []
    conv.prose(body)
    body_text = _tidy("".join(conv.out))
    parts = [f"# {title}" if title else "", abstract, body_text]
    text = "\n\n".join(p for p in parts if p)
    return LatexText(
        title=title,
        abstract=abstract,
        text=text,
        words=len(text.split()),
        residue_per_1k=residue_per_1k(text),
        macros_expanded=stats.expanded,
        macros_defined=stats.defined,
        macro_errors=stats.errors,
        headings=len(_HEADING_LINE.findall(text)),
        math_spans=conv.math,
        unknown_commands=conv.unknown,
        losses=stats.losses + conv.losses,
    )


def convert_eprint(source: Path | bytes, options: TextOptions = TextOptions()) -> tuple[LatexText, Flattened]:
    """One e-print file (or its bytes) to text: unpack -> flatten -> convert, with the e-print's
    own .sty files read for their definitions. Raises EprintError / LatexError with a reason."""
    from astrodata.sources.eprints import unpack_eprint

    flat = flatten(unpack_eprint(source))
    return latex_to_text(flat.text, options, preamble="\n".join(flat.packages.values())), flat


