"""Flattened arXiv LaTeX -> clean Markdown-ish text: title, abstract, body with `##` headings.

Why not pylatexenc over the whole document: `LatexNodes2Text` runs at ~80 KB/s, mangles math in
text mode and drops unknown macros with their arguments. Papers use a small vocabulary of
structural commands, so one pass of a regex-driven scanner handles them: math spans are copied
verbatim (normalised to `$...$` / `$$...$$`), prose commands are dispatched from tables, braces
are dropped, and an unknown macro loses its name but keeps its argument text. pylatexenc stays
the authority for what it does well and cheaply on small fragments: accents (`\\'e`, `\\"o`,
`\\c{c}`) and its table of text symbols (`\\ss`, `\\textdegree`, `\\dag`, ...).

The pipeline: strip comments -> expand user macros (`macros.py`) -> cut title and abstract ->
convert the body -> tidy whitespace -> count words and LaTeX residue.
`python -m astrodata.latex.to_text DIR` prints the per-e-print table (words, residue, macros, missing inputs).
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass, field
from functools import cache, lru_cache
from pathlib import Path
from typing import Literal

from astrodata.latex.flatten import Flattened, flatten, strip_comments
from astrodata.latex.macros import ExpansionLimits, LatexError, expand_macros, match_brace, match_bracket

__all__ = ["LatexError", "LatexText", "TextOptions", "convert_eprint", "latex_to_text", "residue_per_1k"]

Markers = Literal["marker", "keys", "drop"]


@dataclass(frozen=True)
class TextOptions:
    citations: Markers = "marker"  # \cite family -> "[cite]", "[key1, key2]" or nothing
    references: Markers = "marker"  # \ref family -> "[ref]", "[fig:x]" or nothing
    captions: bool = True  # keep figure/table captions (float bodies are always dropped)
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


# -- residue -------------------------------------------------------------------------------------
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
    return 1000.0 * len(_RESIDUE.findall(_prose_only(text))) / words


def _prose_only(text: str) -> str:
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
            end = _math_end(text, m.end(), opener)
            stop = -1 if end < 0 else end + len(opener)
        elif m.group(1) is not None:
            close = _env_end(text, m.group(1) + m.group(2), m.end())
            stop = -1 if close is None else close.end()
        else:
            end = _find_cs(text, m.end(), "]" if opener == "\\[" else ")")
            stop = -1 if end < 0 else end + 2
        if stop < 0:  # unclosed: the opener is prose
            out.append(opener)
            pos = m.end()
        else:
            out.append(" ")
            pos = stop
    out.append(text[pos:])
    return "".join(out)


# -- command tables ------------------------------------------------------------------------------
# Argument specs: "*" optional star, "[" optional [..], "{" mandatory argument, "g" optional {..}.
_SECTIONS = {"part": 2, "chapter": 2, "section": 2, "subsection": 3, "subsubsection": 4}
_CITES = frozenset(
    """cite citep citet citealt citealp citeauthor citeyear citeyearpar citenum citetext Cite Citep
    Citet Citealt Citealp Citeauthor parencite textcite autocite footcite fullcite citetalias
    citepalias shortcite shortciteN citeN""".split()
)
_REFS = frozenset(
    """ref eqref autoref Autoref cref Cref crefrange Crefrange pageref nameref vref Vref ref*
    subref labelcref""".split()
)
_DROP: dict[str, str] = {
    # front matter (the title and abstract are taken separately; authors come from metadata)
    **dict.fromkeys(
        """author affiliation affil altaffiliation institute email thanks orcid orcidlink
        correspondingauthor date keywords received revised accepted published submitjournal
        journalinfo shorttitle shortauthors titlerunning authorrunning subtitle pacs icmltitle
        icmlauthor icmlaffiliation icmlcorrespondingauthor icmlkeywords icmlsetsymbol
        collaboration nocollaboration AuthorCollaborationLimit title mail offprints
        affiliations address""".split(),
        "*[{",
    ),
    "collaboration": "{g",  # aastex 6.3 takes two groups, 6.2 one
    "icmlauthor": "{{",
    "icmlaffiliation": "{{",
    "icmlcorrespondingauthor": "{{",
    "icmlsetsymbol": "{{",
    # layout, references, files
    **dict.fromkeys(
        """label vspace hspace vskip hskip bibliographystyle bibliography nocite input include
        includeonly graphicspath pagestyle thispagestyle urlstyle hypersetup setcitestyle phantom
        hphantom vphantom tablewidth tabletypesize epsscale figurenum linespread setstretch
        script addbibresource pagenumbering enlargethispage bibpunct suppressAffiliations
        linenumbers modulolinenumbers nolinenumbers tablenum setlist""".split(),
        "*[{",
    ),
    "includegraphics": "*[[{",
    "plotone": "{",
    "plottwo": "{{",
    "color": "[{",
    "definecolor": "{{{",
    "colorlet": "{{",
    "setlength": "{{",
    "addtolength": "{{",
    "setcounter": "{{",
    "addtocounter": "{{",
    "newtheorem": "*{[{[",
    "defcitealias": "{{",
    "deleted": "[{",
    "todo": "[{",
    "correspondingauthors": "{g",
    "printAffiliationsAndNotice": "{",
    "pagerange": "{",
    "bsp": "",
    "listofchanges": "[",
    "restartappendixnumbering": "",
    "raggedbottom": "",
    "sloppypar": "",
    "DeclareAcronym": "{{",
    "acro": "{[{",
    "acrodef": "{[{",
    "newacronym": "[{{{",
    "acsetup": "{",
    "acused": "{",
    "acuse": "{",
    "acresetall": "",
    "usepackage": "[{",
    "RequirePackage": "[{",
    "documentclass": "[{",
    "fontsize": "{{",
    "rule": "[{{",
    "addcontentsline": "{{{",
    "crefname": "{{{",
    "Crefname": "{{{",
    "tablenotetext": "{{",
    "tablecomments": "{",
    "tablehead": "{",
    "colhead": "{",
    "multicolumn": "{{{",
    "multirow": "{[{",
    "footnotemark": "[",
    "twocolumn": "[",
    "onecolumn": "",
    "startlongtable": "",
    "nodata": "",
    "appendix": "",
    "maketitle": "",
    "tableofcontents": "",
    "noindent": "",
    "indent": "",
    "centering": "",
    "raggedright": "",
    "raggedleft": "",
    "clearpage": "",
    "cleardoublepage": "",
    "newpage": "",
    "pagebreak": "[",
    "nopagebreak": "[",
    "linebreak": "[",
    "nolinebreak": "[",
    "hfill": "",
    "vfill": "",
    "hline": "",
    "smallskip": "",
    "medskip": "",
    "bigskip": "",
    "FloatBarrier": "",
    "balance": "",
    "protect": "",
    "relax": "",
    "leavevmode": "",
    "null": "",
    "sloppy": "",
    "fussy": "",
    "makeatletter": "",
    "makeatother": "",
    "normalfont": "",
    "selectfont": "",
    "today": "",
    "xspace": "",
    "nobreak": "",
    "allowbreak": "",
    "frenchspacing": "",
    "unskip": "",
    "ignorespaces": "",
    "par": "",
    "else": "",
    "fi": "",
    "bgroup": "",
    "egroup": "",
    "begingroup": "",
    "endgroup": "",
    "global": "",
    "long": "",
    "expandafter": "",
    "noexpand": "",
    "csname": "",
    "endcsname": "",
    "string": "",
    "ProvidesPackage": "{[",
    "NeedsTeXFormat": "{[",
    "IfFileExists": "{",
    "startdata": "",
    "enddata": "",
    "tablebreak": "",
}
for _n in """tiny scriptsize footnotesize small normalsize large Large LARGE huge Huge bf it rm sc sl sf tt
    em bfseries itshape mdseries upshape scshape slshape ttfamily rmfamily sffamily boldmath
    unboldmath""".split():
    _DROP[_n] = ""
# \looseness=-1 and friends: a TeX parameter assignment, value dropped with it.
_ASSIGN = re.compile(r"\s*=?\s*-?[\d.]*\s*(?:[a-z]{2}\b)?")
_ASSIGNMENTS = frozenset(
    "looseness tolerance emergencystretch hbadness vbadness hfuzz vfuzz parindent parskip "
    "baselineskip tabcolsep arraystretch columnsep textfloatsep floatsep intextsep".split()
)
_KEEP_SECOND = frozenset("textcolor colorbox href hyperlink hypertarget".split())  # drop the 1st argument, keep the 2nd
_KEEP_FIRST = frozenset("texorpdfstring replaced".split())  # keep the first of two (changes: new, old)
# Commands whose argument simply is the text (name dropped, braces vanish): not "unknown".
_TRANSPARENT = frozenset(
    """textit textbf emph texttt textsc textsl textsf textrm textup textmd textnormal text mbox hbox
    underline uline fbox added software facilities facility dataset doi textsuperscript textsubscript
    sloppypar centerline""".split()
)
_BOX_ARGS = {
    "resizebox": "*{{",
    "scalebox": "{[",
    "raisebox": "{[[",
    "makebox": "[[",
    "framebox": "[[",
    "parbox": "[[[{",
    "rotatebox": "[{",
    "adjustbox": "{",
    "captionof": "{",
}
_HEADING_LIKE = {
    "acknowledgments": "Acknowledgments",
    "acknowledgements": "Acknowledgements",
    "acknowledgment": "Acknowledgments",
    "acknowledgement": "Acknowledgements",
}
_SYMBOLS_OVERRIDE = {
    "\\": "\n", "%": "%", "S": "§", "P": "¶", "\n": " ", "\t": " ",
    "newline": "\n",
    "-": "",
    "/": "",
    "@": "",
    "today": "",
    "quad": " ",
    "qquad": " ",
    ",": " ",
    ";": " ",
    ":": " ",
    ">": " ",
    " ": " ",
    "!": "",
    "$": "\\$",
    "ldots": "...",
    "dots": "...",
    "textellipsis": "...",
    "LaTeX": "LaTeX",
    "TeX": "TeX",
    "LaTeXe": "LaTeX2e",
    "AmS": "AMS",
    "degree": "°",
    "textgreater": ">",
    "textless": "<",
    "textbar": "|",
    "textunderscore": "_",
    "textnumero": "No.",
    "arcsec": "″",
    "arcmin": "′",
    "farcs": "″",
    "sun": "☉",
    "odot": "☉",
    "earth": "⊕",
    "oplus": "⊕",
    "micron": "μm",
    "sq": "□",
    "textsuperscript": "^",
    "textsubscript": "_",
    "etal": "et al.",
    "eg": "e.g.",
    "ie": "i.e.",
    "aap": "A&A",
    "apj": "ApJ",
    "apjl": "ApJL",
    "apjs": "ApJS",
    "mnras": "MNRAS",
    "aj": "AJ",
    "nat": "Nature",
    "prd": "Phys. Rev. D",
    "prl": "Phys. Rev. Lett.",
    "pasp": "PASP",
}
_ACCENTS = frozenset("' ` \" ^ ~ = . c H k b d r u v t".split())
_FLOATS = frozenset(
    """figure figure* table table* deluxetable deluxetable* longtable longtable* wrapfigure
    wraptable sidewaysfigure sidewaysfigure* sidewaystable sidewaystable* algorithm algorithm*
    SCfigure plate listing subfigure subtable""".split()
)
_DROP_ENVS = frozenset(
    """thebibliography references tikzpicture tabular tabular* tabularx tabulary array keywords
    icmlauthorlist comment filecontents filecontents* titlepage acronym""".split()
)
_CODE_ENVS = frozenset("verbatim verbatim* Verbatim lstlisting minted alltt".split())
_ENV_ARGS = {
    "minipage": "[[[{",
    "multicols": "{[",
    "multicols*": "{[",
    "CJK": "{{",
    "CJK*": "{{",
    "wrapfigure": "[{[{",
    "adjustbox": "{",
    "alignat": "{",
    "alignat*": "{",
    "subfigure": "[{",
    "subtable": "[{",
    "tabular": "[{",
    "minted": "[{",
    "lstlisting": "[",
    "thebibliography": "{",
    "otherlanguage": "{",
    "sidewaysfigure": "[",
    "deluxetable": "{",
    "deluxetable*": "{",
    "longtable": "[{",
}
_ALIGNED = {
    "align": "aligned",
    "align*": "aligned",
    "eqnarray": "aligned",
    "eqnarray*": "aligned",
    "flalign": "aligned",
    "flalign*": "aligned",
    "alignat": "alignedat",
    "alignat*": "alignedat",
    "gather": "gathered",
    "gather*": "gathered",
    "multline": "gathered",
    "multline*": "gathered",
}
_DISPLAY = frozenset("""equation equation* displaymath dmath dmath* math""".split()) | frozenset(_ALIGNED)
# siunitx units and prefixes, for \qty{3}{\kilo\meter} & co. in prose
_SI = {
    "meter": "m",
    "metre": "m",
    "second": "s",
    "gram": "g",
    "kilogram": "kg",
    "kelvin": "K",
    "ampere": "A",
    "mole": "mol",
    "candela": "cd",
    "hertz": "Hz",
    "newton": "N",
    "pascal": "Pa",
    "joule": "J",
    "watt": "W",
    "volt": "V",
    "tesla": "T",
    "gauss": "G",
    "electronvolt": "eV",
    "eV": "eV",
    "erg": "erg",
    "jansky": "Jy",
    "parsec": "pc",
    "au": "au",
    "astronomicalunit": "au",
    "lightyear": "ly",
    "year": "yr",
    "yr": "yr",
    "day": "d",
    "hour": "h",
    "minute": "min",
    "degree": "°",
    "arcminute": "′",
    "arcsecond": "″",
    "arcsec": "″",
    "radian": "rad",
    "steradian": "sr",
    "angstrom": "Å",
    "percent": "%",
    "solarmass": "M☉",
    "solarradius": "R☉",
    "solarluminosity": "L☉",
    "jupitermass": "M_J",
    "jupiterradius": "R_J",
    "earthmass": "M⊕",
    "earthradius": "R⊕",
    "milliarcsecond": "mas",
    "mas": "mas",
    "barn": "b",
    "liter": "L",
    "litre": "L",
    "km": "km",
    "m": "m",
    "s": "s",
    "kg": "kg",
    "g": "g",
    "K": "K",
    "pc": "pc",
    "kpc": "kpc",
    "Mpc": "Mpc",
    "Gpc": "Gpc",
    "h": "h",
    "Hz": "Hz",
    "keV": "keV",
    "MeV": "MeV",
    "GeV": "GeV",
    "TeV": "TeV",
    "cm": "cm",
    "mm": "mm",
    "nm": "nm",
    "um": "μm",
    "J": "J",
    "W": "W",
    "Jy": "Jy",
    "mJy": "mJy",
    "Gyr": "Gyr",
    "Myr": "Myr",
    "kyr": "kyr",
    "ohm": "Ω",
    "AU": "au",
}
_SI_PREFIX = {
    "yocto": "y",
    "zepto": "z",
    "atto": "a",
    "femto": "f",
    "pico": "p",
    "nano": "n",
    "micro": "μ",
    "milli": "m",
    "centi": "c",
    "deci": "d",
    "deca": "da",
    "hecto": "h",
    "kilo": "k",
    "mega": "M",
    "giga": "G",
    "tera": "T",
    "peta": "P",
    "exa": "E",
}
_SIUNITX = {  # argument spec, then what each mandatory argument is: N(umber) or U(nit)
    "SI": ("[{[{", "NU"), "qty": ("[{{", "NU"), "SIrange": ("[{{{", "NNU"), "qtyrange": ("[{{{", "NNU"),
    "si": ("[{", "U"), "unit": ("[{", "U"), "num": ("[{", "N"), "numrange": ("[{{", "NN"), "ang": ("[{", "A"),
}
_SI_POWER = {"squared": "^2", "cubed": "^3", "square": "^2", "cubic": "^3"}

_PROSE_SPECIAL = re.compile(r"[\\$~]|[{}]+")
_CS = re.compile(r"\\([A-Za-z@]+|.)", re.S)
_WS = re.compile(r"\s*")
_MATH_TOKEN = re.compile(r"\\.|[{}$]|\n[ \t]*\n", re.S)
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
    table.update(_SYMBOLS_OVERRIDE)
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


@cache
def _env_end_re(name: str) -> re.Pattern[str]:
    return re.compile(r"\\(begin|end)\s*\{" + re.escape(name) + r"\}")


def _si_units(units: str) -> str:
    """siunitx unit macros (`\\kilo\\meter\\per\\second`) -> `km s^-1`; literal units pass through."""
    out: list[str] = []
    prefix, per = "", False
    for m in re.finditer(r"\\([A-Za-z]+)|([^\\\s]+)", units.replace("{", "").replace("}", "")):
        word, literal = m.group(1), m.group(2)
        if literal:
            out.append(literal)
        elif word in _SI_PREFIX:
            prefix += _SI_PREFIX[word]
        elif word == "per":
            per = True
        elif word in _SI_POWER and out:
            out[-1] += _SI_POWER[word]
        elif word in ("of", "tothe", "raiseto"):
            continue
        else:
            unit = prefix + _SI.get(word, word)
            prefix = ""
            out.append(unit + "^-1" if per else unit)
            per = False
    return " ".join(out)


def _read_arg(src: str, pos: int) -> tuple[str | None, int]:
    """A mandatory argument (group content or a single token), or None when there is none."""
    pos = _WS.match(src, pos).end()
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
        m = _CS.match(src, pos)
        return m.group(), m.end()
    return c, pos + 1


def _read_opt(src: str, pos: int) -> tuple[str | None, int]:
    p = _WS.match(src, pos).end()
    if p < len(src) and src[p] == "[":
        end = match_bracket(src, p)
        if end > 0:
            return src[p + 1 : end - 1], end
    return None, pos


def _read_args(src: str, pos: int, spec: str) -> tuple[list[str | None], int]:
    args: list[str | None] = []
    for s in spec:
        if s == "*":
            if pos < len(src) and src[pos] == "*":
                pos += 1
        elif s == "[":
            a, pos = _read_opt(src, pos)
            args.append(a)
        elif s == "g":  # a brace group only if one follows
            p = _WS.match(src, pos).end()
            a, pos = _read_arg(src, pos) if src.startswith("{", p) else (None, pos)
            args.append(a)
        else:
            a, pos = _read_arg(src, pos)
            args.append(a)
    return args, pos


_ACRO_DEF = re.compile(r"\\(DeclareAcronym|acro|acrodef|newacronym)(?![A-Za-z@])")
_ACRO_USE = {  # command -> (form, plural, capitalised); form: s(hort), l(ong), f(ull), a(uto: full once)
    "ac": ("a", False, False), "Ac": ("a", False, True), "acp": ("a", True, False), "Acp": ("a", True, True),
    "acs": ("s", False, False), "acsp": ("s", True, False), "acl": ("l", False, False), "Acl": ("l", False, True),
    "aclp": ("l", True, False), "Aclp": ("l", True, True), "acf": ("f", False, False), "Acf": ("f", False, True),
    "acfp": ("f", True, False), "gls": ("a", False, False), "Gls": ("a", False, True),
    "glspl": ("a", True, False), "Glspl": ("a", True, True), "acrshort": ("s", False, False),
    "acrlong": ("l", False, False), "acrfull": ("f", False, False), "glsentryshort": ("s", False, False),
}


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
            (key, vals), _ = _read_args(text, m.end(), "{{")
            kv = _keyvals(vals or "")
            short, long = kv.get("short", key or ""), kv.get("long", "")
            short_pl = kv.get("short-plural-form", short + kv.get("short-plural", "s"))
            long_pl = kv.get("long-plural-form", long + kv.get("long-plural", "s"))
        elif m.group(1) == "newacronym":
            (_, key, short, long), _ = _read_args(text, m.end(), "[{{{")
            short, long = short or "", long or ""
            short_pl, long_pl = short + "s", long + "s"
        else:
            (key, short, long), _ = _read_args(text, m.end(), "{[{")
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
        m = _CS.match(src, i)
        if m is None:
            return i + 1
        name, pos = m.group(1), m.end()
        if name.isalpha() and pos < len(src) and src[pos] == "*":
            pos += 1
        if name == "begin":
            return self.begin(src, pos)
        if name == "end":
            env, p = _read_arg(src, pos)
            if env is not None and env.strip() not in _FLOATS:
                self.out.append("\n\n")
            return p if env is not None else pos
        if name in _SECTIONS or name in ("paragraph", "subparagraph"):
            (short, title), pos = _read_args(src, pos, "[{")
            text = self.inline(title or "")
            if name in _SECTIONS:
                self.headings += 1
                self.out.append(f"\n\n{'#' * _SECTIONS[name]} {text}\n\n")
            elif text:
                self.out.append(f"\n\n**{text}** ")
            return pos
        if name in _CITES:
            return self.citation(src, pos)
        if name in _REFS:
            key, pos = _read_arg(src, pos)
            self.out.append(self.marker("ref", key or "", self.options.references))
            return pos
        if name in _DROP:
            return _read_args(src, pos, _DROP[name])[1]
        if name in ("footnote", "footnotetext"):
            (_, note), pos = _read_args(src, pos, "[{")
            text = self.inline(note or "")
            if text:
                self.out.append(f" ({text})")
            return pos
        if name in ("caption", "tablecaption"):
            (_, cap), pos = _read_args(src, pos, "[{")
            if self.options.captions and cap:
                self.out.append(f"\n\n{self.inline(cap)}\n\n")
            return pos
        if name in ("url", "nolinkurl", "path"):
            url, pos = _read_arg(src, pos)
            self.out.append(url or "")
            return pos
        if name in _KEEP_SECOND:
            (_, _, second), pos = _read_args(src, pos, "[{{")
            self.out.append(self.inline(second or ""))
            return pos
        if name in _KEEP_FIRST:
            (first, _), pos = _read_args(src, pos, "{{")
            self.out.append(self.inline(first or ""))
            return pos
        if name in _BOX_ARGS:
            return _read_args(src, pos, _BOX_ARGS[name])[1]  # the box content follows as text
        if name == "item":
            label, pos = _read_opt(src, pos)
            self.out.append("\n- " + (self.inline(label) + " " if label else ""))
            return pos
        if name == "\\":  # line break, with its optional star and [length]
            self.out.append("\n")
            return _read_args(src, pos, "*[")[1]
        if name in ("enquote", "textquote"):
            arg, pos = _read_arg(src, pos)
            self.out.append(f'"{self.inline(arg or "")}"')
            return pos
        if name == "ion":  # AAS \ion{Ca}{2} -> Ca II
            (element, stage), pos = _read_args(src, pos, "{{")
            self.out.append(f"{self.inline(element or '')} {_roman((stage or '').strip())}")
            return pos
        if name == "edit" and pos < len(src) and src[pos].isdigit():  # AAS \edit1{...}: the text stays
            return pos + 1
        if name in _HEADING_LIKE:
            self.headings += 1
            self.out.append(f"\n\n## {_HEADING_LIKE[name]}\n\n")
            return pos
        if name == "[":
            close = _find_cs(src, pos, "]")
            return self.display(src[pos:close], close + 2 if close >= 0 else len(src))
        if name == "(":
            close = _find_cs(src, pos, ")")
            return self.inline_math(src[pos:close], close + 2 if close >= 0 else len(src))
        if name == "ensuremath":
            arg, pos = _read_arg(src, pos)
            return self.inline_math(arg or "", pos)
        if name in ("verb", "lstinline"):
            return self.verb(src, pos)
        if name == "iffalse":
            return _skip_conditional(src, pos)
        if name in _ASSIGNMENTS:
            return _ASSIGN.match(src, pos).end()
        if name in _ACRO_USE and self.acronyms:
            return self.acronym(name, src, pos)
        if name in _SIUNITX:
            return self.siunitx(name, src, pos)
        if name in _ACCENTS:
            arg, p = _read_arg(src, pos)
            if arg is None:
                return pos
            self.out.append(_accent(src[i:p]))
            return p
        sym = self.symbols.get(name)
        if sym is not None:
            self.out.append(sym)
            return pos
        if name in _TRANSPARENT:
            return pos
        # unknown macro: drop its name (and an optional argument glued to it); its groups follow as text
        self.unknown += 1
        if pos < len(src) and src[pos] == "[":
            opt, p = _read_opt(src, pos)
            if opt is not None and len(opt) < 80:
                return p
        return pos

    def marker(self, kind: str, keys: str, mode: Markers) -> str:
        if mode == "drop":
            return ""
        if mode == "keys":
            return "[" + ", ".join(k.strip() for k in keys.split(",") if k.strip()) + "]"
        return f"[{kind}]"

    def citation(self, src: str, pos: int) -> int:
        (pre, post, keys), pos = _read_args(src, pos, "[[{")
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
        (_, key), pos = _read_args(src, pos, "[{")
        key = (key or "").strip()
        if key not in self.acronyms:
            self.out.append(key)
            return pos
        form, plural, capital = _ACRO_USE[name]
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
        spec, kinds = _SIUNITX[name]
        args, pos = _read_args(src, pos, spec)
        vals = [a or "" for a, s in zip(args, spec.replace("*", ""), strict=True) if s == "{"]
        nums = [_si_number(self.inline(v) if "\\" in v else v) for v, k in zip(vals, kinds, strict=False) if k == "N"]
        units = [_si_units(v) for v, k in zip(vals, kinds, strict=False) if k == "U"]
        if name == "ang":
            parts = (vals[0] if vals else "").split(";")
            self.out.append("".join(f"{v.strip()}{u}" for v, u in zip(parts, "°′″", strict=False) if v.strip()))
        else:
            self.out.append(" ".join(filter(None, ["–".join(nums), *units])))
        return pos

    def verb(self, src: str, pos: int) -> int:
        if pos >= len(src):
            return pos
        delim = "}" if src[pos] == "{" else src[pos]
        end = src.find(delim, pos + 1)
        if end < 0:
            return pos + 1
        self.out.append("`" + src[pos + 1 : end] + "`")
        return end + 1

    # -- math --------------------------------------------------------------------------------
    def dollar_math(self, src: str, i: int) -> int:
        display = src.startswith("$$", i)
        start = i + (2 if display else 1)
        end = _math_end(src, start, "$$" if display else "$")
        if end < 0:  # an unclosed $: drop it, keep going
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
        env, p = _read_arg(src, pos)
        if env is None:
            return pos
        env = env.strip()
        body_start, args = p, []
        if env in _ENV_ARGS:
            args, body_start = _read_args(src, p, _ENV_ARGS[env])
        close = _env_end(src, env, p)
        if env in _DISPLAY:
            if close is None:
                return body_start
            wrap_arg = f"{{{args[0]}}}" if env.startswith("alignat") and args and args[0] else ""
            return self.display(src[body_start : close.start()], close.end(), _ALIGNED.get(env), wrap_arg)
        if env in _FLOATS or env in _DROP_ENVS or env in _CODE_ENVS:
            if close is None:
                return body_start  # unclosed: read on as prose rather than lose the rest
            if env in _FLOATS and self.options.captions:
                self.captions(src, body_start, close.start(), "Table" if "table" in env else "Figure")
            elif env in _CODE_ENVS:
                self.out.append("\n\n```\n" + src[body_start : close.start()].strip("\n") + "\n```\n\n")
            return close.end()
        if body_start < len(src) and src[body_start] == "[" and env not in _ENV_ARGS:
            body_start = _read_opt(src, body_start)[1]  # enumitem-style options: [leftmargin=*]
        if env in _HEADING_LIKE:
            self.headings += 1
            self.out.append(f"\n\n## {_HEADING_LIKE[env]}\n\n")
        else:
            self.out.append("\n\n")
        return body_start  # any other environment is transparent: its content is prose

    def captions(self, src: str, start: int, end: int, kind: str) -> None:
        for m in _CAPTION.finditer(src, start, end):
            spec = "{[{" if m.group(1) == "captionof" else "[{"
            args, _ = _read_args(src[:end], m.end(), spec)
            text = self.inline(args[-1] or "")
            if text:
                self.out.append(f"\n\n{kind}: {text}\n\n")


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


def _find_cs(src: str, pos: int, char: str) -> int:
    """Position of the next `\\<char>` (e.g. `\\]`), skipping other escapes, or -1."""
    for m in _CS.finditer(src, pos):
        if m.group(1) == char:
            return m.start()
    return None


def _math_end(src: str, pos: int, delim: str) -> int:
    """Position of the `$`/`$$` closing math opened before `pos`, or -1; `$` inside braces
    (`\\text{$x$}`) nest, and a blank line ends the search (TeX refuses paragraphs in math)."""
    depth = 0
    for m in _MATH_TOKEN.finditer(src, pos):
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


def _env_end(src: str, env: str, pos: int) -> re.Match[str] | None:
    """The `\\end{env}` matching a `\\begin{env}` just before `pos` (same-name nesting counted), or None."""
    depth = 1
    for m in _env_end_re(env).finditer(src, pos):
        depth += 1 if m.group(1) == "begin" else -1
        if depth == 0:
            return m
    return None


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
    (_, title), end = _read_args(text, m.end(), "[{")
    if title is None:
        return None, text
    return title, text[: m.start()] + text[end:]


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
        arg, p = _read_arg(text, pos)
        if arg is None or not text[_WS.match(text, pos).end()] == "{":
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
        return "\n\n".join(filter(None, (p.strip("\n") if i % 2 else _tidy(p) for i, p in enumerate(parts))))
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
    end = _END_DOC.search(body)
    body = body[: end.start()] if end else body

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
    )


def convert_eprint(source: Path | bytes, options: TextOptions = TextOptions()) -> tuple[LatexText, Flattened]:
    """One e-print file (or its bytes) to text: unpack -> flatten -> convert, with the e-print's
    own .sty files read for their definitions. Raises EprintError / LatexError with a reason."""
    from astrodata.sources.eprints import unpack_eprint

    flat = flatten(unpack_eprint(source))
    return latex_to_text(flat.text, options, preamble="\n".join(flat.packages.values())), flat


def _print_table(folder: Path) -> None:
    """`python -m astrodata.latex.to_text DIR`: per e-print words, residue, macros, missing inputs."""
    from astrodata.sources.eprints import iter_local_eprints

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
    import sys

    _print_table(Path(sys.argv[1]))
