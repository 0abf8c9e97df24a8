"""User-macro expansion for arXiv LaTeX, before conversion to text.

Why by hand: pylatexenc (2.x) knows no user macros (it drops their uses, prints `\\def` bodies
and returns "" for `\\newcommand{\\be}{\\begin{equation}}`), and no library on PyPI expands
LaTeX macros outside a TeX engine. This module is a small TeX-like reader: it scans the text,
records definitions (`\\newcommand` family, `\\def`, `\\let`, `\\DeclareMathOperator`,
`\\newenvironment`) and removes them, and replaces each use of a defined macro by its body with
the arguments substituted. As in TeX, an expansion is pushed back in front of the remaining
input, so a body may pick its arguments up from the text after it (`\\newcommand\\bb{\\textbf}`)
and macros chained through optional arguments (showyourwork's generated `\\macros[a][b][c]`
tables, with their `\\ifnum\\pdfstrcmp{..}{..}=0 .. \\else .. \\fi` branches) resolve.

Also read here, because only the expander knows what the document defined:
- TeX conditionals (`\\iftrue`/`\\iffalse`, `\\newif` switches and their `\\footrue`/`\\foofalse`,
  `\\let\\iffoo\\iftrue`, `\\if`, `\\ifx`, `\\ifdefined`, `\\ifcsname`, `\\@ifundefined`, `\\ifnum`/`\\ifdim`/
  `\\ifodd` on literals, `\\ifmmode`, etoolbox's `\\ifdef`-style, etoolbox toggles/booleans and
  ifthen booleans (`\\iftoggle`, `\\ifbool`, `\\ifthenelse{\\boolean{..}}`), nested). "Defined" means defined by the
  document or its own .sty files; TeX-engine switches take pdfLaTeX's values (`\\ifpdf` true,
  `\\ifxetex`/`\\ifluatex` false). A condition that cannot be decided (`\\ifx` of a macro we do not
  know, `\\ifnum\\value{page}>1`, a switch never declared) keeps its first ("true") branch, as a
  draft's visible text usually is, and is counted in `MacroStats.losses` as ("conditional", name).
- Definitions: `\\def` with delimited parameters (TeX's matching: a delimited argument runs to its
  delimiter at brace depth 0, one enclosing group is stripped, a blank line ends the search),
  `\\edef`/`\\xdef` (a self-reference takes the previous meaning), the xparse family with `m o O{} s g
  G{} d D r R t +` specs (`\\IfNoValueTF`, `\\IfBooleanTF` resolved). A definition that cannot be read
  is counted as ("definition", name) and its uses keep their argument text.
- "Box trick" symbols: a definition that draws a relation with `\\hbox`/`\\rlap`/`\\lower`/`\\buildrel`
  (`\\simlt`, A&A's `\\la`) becomes the standard symbol when it is a known idiom (`<` over `\\sim` ->
  `\\lesssim`), else is left undefined so math keeps the user's name; never `$` or box code in math.
- Verbatim (`\\verb`, `\\url`, `\\path`, `\\href`'s URL, verbatim-like environments) is copied unexpanded.

Everything is bounded: nesting depth, expansions per use and in all, and text produced (checked
on every expansion, the plain-text fast path included), so `\\def\\a{\\a}` or `\\def\\a{x\\a}` ends as
a recorded error in `MacroStats.errors`, never a hang.
Definitions never override the structural commands the text converter relies on
(`PROTECTED_COMMANDS`): journal and conference .sty files redefine `\\section` or `\\maketitle`.
"""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass, field

#: commands and environments that user definitions may not replace (the converter needs them).
PROTECTED_COMMANDS = frozenset(
    """begin end section subsection subsubsection paragraph subparagraph chapter part caption
    footnote footnotetext label ref eqref autoref cref Cref pageref cite citep citet citealt
    citealp citeauthor citeyear nocite item title author affiliation affil maketitle abstract
    appendix input include bibliography bibliographystyle emph textbf textit texttt url href
    par newcommand renewcommand providecommand def let verb keywords acknowledgments
    acknowledgements""".split()
)
PROTECTED_ENVIRONMENTS = frozenset(
    """document abstract figure figure* table table* equation equation* align align* gather
    gather* multline multline* eqnarray eqnarray* itemize enumerate description thebibliography
    verbatim keywords acknowledgments acknowledgements appendix""".split()
)

_CS = re.compile(r"\\([A-Za-z@]+|.)", re.S)
_PARAM = re.compile(r"#(#|[1-9])")
_WS = re.compile(r"\s*")
_BRACE = re.compile(r"\\.|[{}]", re.S)
_BRACKET = re.compile(r"\\.|[{}\]]", re.S)
_COND = re.compile(r"\\(if[A-Za-z@]*|else|fi|or)(?![A-Za-z@])")
_PDFSTRCMP_TAIL = re.compile(r"\s*=\s*0(?![0-9])\s?")
_SIMPLE_PARAMS = re.compile(r"(?:#[1-9])*")
_VERBATIM_ENVS = ("verbatim", "verbatim*", "lstlisting", "lstlisting*", "minted", "Verbatim", "Verbatim*",
                   "BVerbatim", "LVerbatim", "comment", "alltt")
_VERBATIM_ARGS = frozenset("url path nolinkurl href".split())  # read verbatim (href: its first argument)
#: TeX primitives and e-TeX conditionals, all closed by \fi.
_PRIMITIVE_IFS = frozenset(
    "if ifx ifnum ifdim ifodd ifcat iftrue iffalse ifdefined ifcsname ifmmode ifvmode ifhmode ifinner "
    "ifvoid ifhbox ifvbox ifeof ifincsname ifcase".split()
)
#: engine switches set by the ifpdf/ifxetex/ifluatex/iftex packages: the values under pdfLaTeX.
_ENGINE_SWITCHES = {"pdf": True, "PDFTeX": True, "pdftex": True, "xetex": False, "XeTeX": False,
                    "luatex": False, "LuaTeX": False, "vtex": False, "tutex": False, "TUTeX": False}
#: conditionals taking arguments (etoolbox, ifthen): number of condition arguments before {true}{false}.
_ARG_IFS = {"ifdef": 1, "ifundef": 1, "ifcsdef": 1, "ifcsundef": 1, "ifdefmacro": 1, "ifstrequal": 2,
            "ifstrempty": 1, "ifblank": 1, "ifdefempty": 1, "ifdefstring": 2, "ifbool": 1, "iftoggle": 1,
            "ifboolexpr": 1, "ifnumcomp": 3, "ifdimcomp": 3, "ifnumequal": 2, "ifnumless": 2,
            "ifnumgreater": 2, "ifthenelse": 1, "nottoggle": 1, "notbool": 1}
#: etoolbox toggles and booleans, ifthen booleans: declaring, setting (value "true"/"false"), clearing.
#: A boolean is a `\newif` switch (`\newbool{draft}` makes `\ifdraft`); a toggle has its own namespace.
_FLAGS = {"newtoggle": ("toggle", False), "providetoggle": ("toggle", False), "toggletrue": ("toggle", True),
          "togglefalse": ("toggle", False), "settoggle": ("toggle", None),
          "newbool": ("bool", False), "providebool": ("bool", False), "newboolean": ("bool", False),
          "provideboolean": ("bool", False), "booltrue": ("bool", True), "boolfalse": ("bool", False),
          "setbool": ("bool", None), "setboolean": ("bool", None)}
_BOOLEAN_TEST = re.compile(r"\s*(\\not\s*)?\\boolean\s*\{([^{}]*)\}\s*\Z")
_NOT_IFS = frozenset("iff".split())  # \iff is a math symbol
_NUM = re.compile(r"\s*(-?\d+)\s*([<=>])\s*(-?\d+)(?!\d)\s?")
_DIM_UNITS = {"pt": 1.0, "bp": 72.27 / 72, "in": 72.27, "cm": 72.27 / 2.54, "mm": 72.27 / 25.4,
              "pc": 12.0, "dd": 1238 / 1157, "cc": 12 * 1238 / 1157, "sp": 1 / 65536}
_DIM = r"(-?[\d.]+)\s*(pt|bp|in|cm|mm|pc|dd|cc|sp)"
_DIMCMP = re.compile(r"\s*" + _DIM + r"\s*([<=>])\s*" + _DIM + r"(?![A-Za-z])\s?")
_ODD = re.compile(r"\s*(-?\d+)(?!\d)\s?")
# an \ifnum/\ifdim condition we cannot evaluate: consumed so it does not leak into the text
_ANY_CMP = re.compile(r"\s*(?:\\[A-Za-z@]+(?:\s*\{[^{}]*\})?|[-\d.]+\s*[a-z]{0,2})\s*[<=>]\s*"
                      r"(?:\\[A-Za-z@]+(?:\s*\{[^{}]*\})?|[-\d.]+(?:\s*(?:pt|bp|in|cm|mm|pc|dd|cc|sp|em|ex))?)\s?")
_EXPANDAFTER_CSNAME = re.compile(r"\s*\\([A-Za-z@]+)\s*\\csname(?![A-Za-z@])")
_ANY_NUMBER = re.compile(r"\s*\\[A-Za-z@]+(?:\s*\{[^{}]*\})?\s?")
_TRAILING_CS = re.compile(r"\\[A-Za-z@]+\Z")
_LINE_END = re.compile(r"[ \t]*(?:\n[ \t]*(?!\n))?")
_PARAM_SPLIT = re.compile(r"#([1-9])")
# box tricks that draw a symbol by hand; _RELATIONS are the glyphs they stack
_BOX_TRICK = re.compile(r"\\(?:hbox|rlap|llap|lower|raise|buildrel|vcenter|halign|mathchoice|"
                        r"offinterlineskip|vbox|kern|smash|mathrlap|mathllap)(?![A-Za-z@])")
_RELATIONS = re.compile(r"\\(?:sim|approx|simeq|propto)(?![A-Za-z@])|<|>|=")
# register assignments inside a box trick (`\\lineskip=0pt`): their `=` is not a glyph
_REGISTER_SET = re.compile(r"\\[A-Za-z@]+\s*=\s*-?[\d.]+\s*(?:pt|bp|in|cm|mm|pc|dd|cc|sp|em|ex)?")
_IFVALUE = {  # name -> (test, branches): test "novalue" | "value" | "boolean"; branches "TF" | "T" | "F"
    **{f"IfNoValue{b}": ("novalue", b) for b in ("TF", "T", "F")},
    **{f"IfValue{b}": ("value", b) for b in ("TF", "T", "F")},
    **{f"IfBoolean{b}": ("boolean", b) for b in ("TF", "T", "F")},
}
_MATH_OPEN = re.compile(r"(?<!\\)\$|\\[()\[\]]|\\(?:begin|end)\s*\{(?:equation|align|gather|multline|eqnarray|math|"
                        r"displaymath)\*?\}")
_IDIOMS = {
    frozenset({"<", "\\sim"}): "\\lesssim", frozenset({">", "\\sim"}): "\\gtrsim",
    frozenset({"<", "\\approx"}): "\\lessapprox", frozenset({">", "\\approx"}): "\\gtrapprox",
    frozenset({"<", "\\simeq"}): "\\lesssim", frozenset({">", "\\simeq"}): "\\gtrsim",
    frozenset({"\\propto", "\\sim"}): "\\propto", frozenset({"<", "="}): "\\leqq", frozenset({">", "="}): "\\geqq",
}
_XPARSE = frozenset("""NewDocumentCommand RenewDocumentCommand ProvideDocumentCommand DeclareDocumentCommand
    NewExpandableDocumentCommand RenewExpandableDocumentCommand ProvideExpandableDocumentCommand
    DeclareExpandableDocumentCommand""".split())
_XPARSE_ENVS = frozenset("NewDocumentEnvironment RenewDocumentEnvironment ProvideDocumentEnvironment "
                         "DeclareDocumentEnvironment".split())
NO_VALUE = "-NoValue-"


class LatexError(Exception):
    """A document that cannot be converted; `reason` is a short, stable, recordable label."""

    def __init__(self, reason: str, detail: str = "") -> None:
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason = reason


@dataclass(frozen=True)
class ExpansionLimits:
    """Bounds that keep hostile or looping definitions finite."""

    max_depth: int = 64  # expansions pending inside one another
    max_per_use: int = 20_000  # expansions triggered by one macro use in the document
    max_total: int = 1_000_000  # expansions in the whole document
    max_output_chars: int = 50_000_000  # characters produced by expansions, in all
    # ... and at most this many times the input plus 1 MB: the most a real paper of the 30 shared
    # ones produces is 13.8x its input (cosmic-cousins' generated macro tables), a "billion laughs"
    # of nested \defs in a 1.7 KB e-print would otherwise reach the absolute cap
    max_output_ratio: float = 64.0


@dataclass
class MacroStats:
    """What expansion did to one document."""

    defined: int = 0
    expanded: int = 0
    errors: list[str] = field(default_factory=list)
    #: what could not be rendered faithfully: (kind, name) -> count; kinds: definition,
    #: conditional, math-symbol, expansion (a use that failed and was left as written),
    #: expansion-limit
    losses: Counter[tuple[str, str]] = field(default_factory=Counter)


@dataclass(frozen=True)
class Macro:
    """`nargs` arguments; when `default` is not None the first one is optional (`[...]`).

    `delimited` (a `\\def` with delimited parameters): the text before `#1`, then the delimiter
    after each parameter ("" = undelimited). `xspec` (xparse): one (kind, default or delimiters)
    per argument, kinds m o O s g G d D r R t."""

    nargs: int
    default: str | None
    body: str
    delimited: tuple[str, ...] | None = None
    xspec: tuple[tuple[str, str | None], ...] | None = None


@dataclass(frozen=True)
class Environment:
    nargs: int
    default: str | None
    begin: str
    end: str
    xspec: tuple[tuple[str, str | None], ...] | None = None


class _Stop(Exception):
    """Internal: the current expansion must be abandoned (limit or malformed use)."""


def match_brace(text: str, start: int) -> int:
    """Index just past the `}` closing the `{` at `start`, or -1 when unbalanced."""
    depth = 0
    for m in _BRACE.finditer(text, start):
        c = m.group()
        if c == "{":
            depth += 1
        elif c == "}":
            depth -= 1
            if depth == 0:
                return m.end()
    return -1


#: commands whose argument TeX reads verbatim with a delimiter of the writer's choice:
#: `\verb|x|`, `\verb*|x|`, `\lstinline[opts]|x|` or `{x}`, `\mintinline[opts]{lang}|x|` or `{x}`
INLINE_VERB = frozenset("verb lstinline mintinline".split())
_VERB_OPTS = re.compile(r"\*|\[[^\]\n]*\]")
_VERB_LANG = re.compile(r"(?:\[[^\]\n]*\])?\s*\{[^{}\n]*\}")


def inline_verb(text: str, pos: int, name: str) -> tuple[int, int, int] | None:
    """The verbatim argument of `\\name` (one of INLINE_VERB) whose name ends at `pos`:
    (content start, content end, end past the closing delimiter), or None when none follows.

    Done by hand because no library reads TeX verbatim arguments. As in TeX the content cannot
    span lines: a delimiter not closed on its line ends the content at the line end.
    """
    if name == "mintinline":
        m = _VERB_LANG.match(text, pos)
        if m is None:
            return None
        pos = m.end()
    elif (m := _VERB_OPTS.match(text, pos)) is not None and (name == "lstinline" or m.group() == "*"):
        pos = m.end()
    if pos >= len(text) or text[pos].isalpha() or text[pos].isspace():
        return None
    close = "}" if text[pos] == "{" and name != "verb" else text[pos]
    line_end = text.find("\n", pos)
    line_end = len(text) if line_end < 0 else line_end
    end = text.find(close, pos + 1, line_end)
    if end < 0:
        return pos + 1, line_end, line_end
    return pos + 1, end, end + 1


def match_bracket(text: str, start: int) -> int:
    """Index just past the `]` closing the `[` at `start` (braces nest inside), or -1."""
    depth = 0
    for m in _BRACKET.finditer(text, start + 1):
        c = m.group()
        if c == "{":
            depth += 1
        elif c == "}":
            depth -= 1
            if depth < 0:
                return -1
        elif c == "]" and depth == 0:
            return m.end()
    return -1


def _substitute(body: str, args: list[str]) -> str:
    if "#" not in body:
        return body

    def rep(m: re.Match) -> str:
        g = m.group(1)
        if g == "#":
            return "#"
        k = int(g) - 1
        return args[k] if k < len(args) else ""

    return _PARAM.sub(rep, body)


class _Expander:
    """The reader: a stack of frames (text, position); frame 0 is the document."""

    def __init__(self, limits: ExpansionLimits) -> None:
        self.limits = limits
        self.macros: dict[str, Macro] = {}
        self.envs: dict[str, Environment] = {}
        self.stats = MacroStats()
        self.texts: list[str] = []
        self.poss: list[int] = []
        self.conds: list[bool] = []  # open \ifnum\pdfstrcmp branches: True while in the taken "then" part
        self.use_count = 0
        self.produced = 0
        self.disabled = False  # set when a document-wide limit is hit: copy the rest verbatim
        self.package = False  # reading package (.sty) text: definitions only, no internals
        self.max_output = limits.max_output_chars  # set per input by expand_macros
        self.definers = {
            "newcommand": self._newcommand,
            "renewcommand": self._newcommand,
            "providecommand": self._newcommand,
            "DeclareRobustCommand": self._newcommand,
            "def": self._def,
            "gdef": self._def,
            "edef": self._def,
            "xdef": self._def,
            "let": self._let,
            "DeclareMathOperator": self._mathop,
            "newenvironment": self._newenv,
            "renewenvironment": self._newenv,
            "newif": self._newif,
            **dict.fromkeys(_FLAGS, self._flag),
            **dict.fromkeys(_XPARSE, self._xparse),
            **dict.fromkeys(_XPARSE_ENVS, self._xparse_env),
        }
        self.refused: set[str] = set()  # box-trick symbols left undefined
        self.env_args: dict[str, list[list[str]]] = {}  # open xparse environments' arguments
        self.switches: dict[str, bool] = dict(_ENGINE_SWITCHES)  # \newif switches: name without "if"
        self.toggles: dict[str, bool] = {}  # etoolbox toggles
        self.before_csname = ""  # `\\expandafter\\def\\csname`: the control word waiting for the name

    # -- reading across frames ------------------------------------------------------------
    def _top(self) -> int:
        """Drop exhausted expansion frames; index of the frame to read from, or -1 at the end."""
        while len(self.texts) > 1 and self.poss[-1] >= len(self.texts[-1]):
            self.texts.pop()
            self.poss.pop()
        k = len(self.texts) - 1
        return k if self.poss[k] < len(self.texts[k]) else -1

    def _peek(self, skip_ws: bool = True) -> str:
        while True:
            k = self._top()
            if k < 0:
                return ""
            text = self.texts[k]
            if skip_ws:
                self.poss[k] = _WS.match(text, self.poss[k]).end()
                if self.poss[k] >= len(text):
                    continue
            return text[self.poss[k]]

    def _read_arg(self) -> str:
        """One undelimited argument: a braced group's content, a control sequence, or a character."""
        c = self._peek()
        if not c:
            raise _Stop("missing argument at end of input")
        k = len(self.texts) - 1
        text, pos = self.texts[k], self.poss[k]
        if c == "{":
            end = match_brace(text, pos)
            if end < 0:
                raise _Stop("unbalanced braces in argument")
            self.poss[k] = end
            return text[pos + 1 : end - 1]
        if c == "}":
            raise _Stop("argument expected, found '}'")
        if c == "\\":
            m = _CS.match(text, pos)
            self.poss[k] = m.end()
            return m.group()
        self.poss[k] = pos + 1
        return c

    def _read_optional(self) -> str | None:
        depth, before = len(self.texts), self.poss[-1]
        if self._peek() != "[":
            if len(self.texts) == depth:
                self.poss[-1] = before  # keep the space after `\x` when no option follows
            return None
        k = len(self.texts) - 1
        text, pos = self.texts[k], self.poss[k]
        end = match_bracket(text, pos)
        if end < 0:
            return None
        self.poss[k] = end
        return text[pos + 1 : end - 1]

    def _read_name(self) -> str:
        """The control sequence being defined, written `\\x` or `{\\x}`."""
        arg = self._read_arg().strip()
        m = _CS.fullmatch(arg)
        if not m:
            raise _Stop(f"not a control sequence: {arg[:40]!r}")
        return m.group(1)

    def _star(self) -> None:
        if self._peek(skip_ws=False) == "*":
            self.poss[-1] += 1

    # -- definitions ------------------------------------------------------------------------
    def _internal(self, name: str, *bodies: str) -> bool:
        """A package's internal programming (`@` names), skipped when reading .sty files: it
        implements the class's own layout (\\icmltitle, \\@maketitle), not the paper's notation."""
        return self.package and ("@" in name or any("@" in b for b in bodies))

    def _define(self, name: str, macro: Macro, kind: str) -> None:
        if name in PROTECTED_COMMANDS or self._internal(name, macro.body):
            return
        if kind.startswith(("provide", "Provide")) and name in self.macros:
            return
        if macro.nargs == 0 and macro.delimited is None and _BOX_TRICK.search(macro.body) and ("$" in macro.body or "\\over" in macro.body
                                               or "\\halign" in macro.body or "\\mathrel" in macro.body):
            symbol = _IDIOMS.get(frozenset(_RELATIONS.findall(_REGISTER_SET.sub("", macro.body))))
            if symbol is None:  # keep the user's name: math shows `\\simfoo`, never box code
                self.macros.pop(name, None)
                self.refused.add(name)  # each use is counted as ("math-symbol", name)
                return
            macro = Macro(0, None, symbol)
        self.macros[name] = macro
        self.stats.defined += 1

    def _nargs(self) -> tuple[int, str | None]:
        n = self._read_optional()
        nargs = int(n.strip()) if n is not None and n.strip().isdigit() else 0
        if n is not None and not n.strip().isdigit():
            raise _Stop(f"bad argument count [{n[:20]}]")
        default = self._read_optional() if nargs else None
        return min(nargs, 9), default

    def _newcommand(self, kind: str) -> None:
        self._star()
        name = self._read_name()
        nargs, default = self._nargs()
        body = self._read_arg()
        self._define(name, Macro(nargs, default, body), kind)

    def _newif(self, kind: str) -> None:
        """`\\newif\\iffoo`: a switch, false until `\\footrue`."""
        name = self._read_name()
        if name.startswith("if") and len(name) > 2:
            self.switches[name[2:]] = False

    def _flag(self, kind: str) -> None:
        """etoolbox `\\newtoggle{x}`/`\\togglefalse{x}`/`\\settoggle{x}{true}`, `\\newbool`/`\\setbool`, ifthen's
        `\\newboolean`/`\\setboolean`: recorded so `\\iftoggle`/`\\ifbool`/`\\ifthenelse{\\boolean{x}}` decide."""
        space, value = _FLAGS[kind]
        name = self._read_arg().strip()
        if value is None:
            value = {"true": True, "false": False}.get(self._read_arg().strip().lower())
        flags = self.toggles if space == "toggle" else self.switches
        if value is not None and (not kind.startswith("provide") or name not in flags):
            flags[name] = value

    def _xparse(self, kind: str) -> None:
        """`\\NewDocumentCommand{\\name}{spec}{body}` and its siblings."""
        name = self._read_name()
        spec, body = self._read_arg(), self._read_arg()
        try:
            xspec = _parse_xspec(spec)
        except ValueError as exc:
            self.stats.losses["definition", "\\" + name] += 1
            raise _Stop(f"\\{name}: {exc}; uses keep their argument text") from None
        self._define(name, Macro(len(xspec), None, body, xspec=xspec), kind)

    def _xparse_env(self, kind: str) -> None:
        name = self._read_arg().strip()
        spec, begin, end = self._read_arg(), self._read_arg(), self._read_arg()
        try:
            xspec = _parse_xspec(spec)
        except ValueError as exc:
            self.stats.losses["definition", name] += 1
            raise _Stop(f"environment {name}: {exc}") from None
        if name in PROTECTED_ENVIRONMENTS or self._internal(name, begin, end):
            return
        self.envs[name] = Environment(len(xspec), None, begin, end, xspec)
        self.stats.defined += 1

    def _def(self, kind: str) -> None:
        k = self._top()
        if k < 0:
            raise _Stop("\\def at end of input")
        text, pos = self.texts[k], self.poss[k]
        m = _CS.match(text, _WS.match(text, pos).end())
        if not m:
            raise _Stop("\\def without a control sequence")
        brace = text.find("{", m.end(), m.end() + 200)
        end = match_brace(text, brace) if brace >= 0 else -1
        if end < 0:
            self.poss[k] = m.end()
            raise _Stop(f"\\def\\{m.group(1)} without a body")
        self.poss[k] = end
        name, params, body = m.group(1), text[m.end() : brace], text[brace + 1 : end - 1]
        if kind in ("edef", "xdef") and name in self.macros and self.macros[name].nargs == 0:
            body = re.sub(re.escape("\\" + name) + r"(?![A-Za-z@])\s*", lambda _: self.macros[name].body, body)
        simple = _SIMPLE_PARAMS.fullmatch(params.strip())
        if simple and params.strip() == "".join(f"#{i}" for i in range(1, params.count("#") + 1)):
            self._define(name, Macro(params.count("#"), None, body), kind)
            return
        parts = _PARAM_SPLIT.split(params)  # [prefix, "1", delim1, "2", delim2, ...]
        numbers = parts[1::2]
        if numbers != [str(i) for i in range(1, len(numbers) + 1)] or "#" in "".join(parts[::2]):
            self.stats.losses["definition", "\\" + name] += 1
            raise _Stop(f"\\def\\{name}: unreadable parameter text {params[:40]!r}; uses left as they are")
        delims = tuple(s.strip() if i == 0 else s for i, s in enumerate(parts[::2]))
        self._define(name, Macro(len(numbers), None, body, delimited=delims), kind)

    def _let(self, kind: str) -> None:
        name = self._read_name()
        if self._peek() == "=":
            self.poss[-1] += 1
        target = self._read_arg()
        m = _CS.fullmatch(target)
        if m and m.group(1) in ("iftrue", "iffalse") and name.startswith("if"):
            self.switches[name[2:]] = m.group(1) == "iftrue"
        elif not m:
            self._define(name, Macro(0, None, target), kind)
        elif m.group(1) in self.macros:
            self._define(name, self.macros[m.group(1)], kind)
        elif m.group(1) != name:
            self._define(name, Macro(0, None, target), kind)

    def _mathop(self, kind: str) -> None:
        star = "*" if self._peek(skip_ws=False) == "*" else ""
        self._star()
        name = self._read_name()
        body = self._read_arg()
        self._define(name, Macro(0, None, f"\\operatorname{star}{{{body}}}"), kind)

    def _newenv(self, kind: str) -> None:
        self._star()
        name = self._read_arg().strip()
        nargs, default = self._nargs()
        begin = self._read_arg()
        end = self._read_arg()
        if name in PROTECTED_ENVIRONMENTS or self._internal(name, begin, end):
            return
        self.envs[name] = Environment(nargs, default, begin, end)
        self.stats.defined += 1

    # -- expansion --------------------------------------------------------------------------
    def _push(self, text: str) -> None:
        if not text:
            return
        self._count(text)
        if len(self.texts) > self.limits.max_depth:
            raise _Stop(f"expansion nested deeper than {self.limits.max_depth}")
        self.texts.append(text)
        self.poss.append(0)

    def _args(self, nargs: int, default: str | None) -> list[str]:
        args: list[str] = []
        if default is not None:
            opt = self._read_optional()
            args.append(default if opt is None else opt)
        while len(args) < nargs:
            args.append(self._read_arg())
        return args

    def _expand(self, name: str) -> None:
        macro = self.macros[name]
        if macro.nargs == 0 and macro.delimited is None and "\\" not in macro.body and "#" not in macro.body:
            self._count(macro.body)  # plain-text body: nothing left to expand, but it counts
            self._emit(macro.body)
            return
        if macro.xspec is not None:
            args = self._xargs(macro.xspec)
        elif macro.delimited is not None:
            args = self._delimited_args(macro.delimited)
        else:
            args = self._args(macro.nargs, macro.default)
        self._push(_substitute(macro.body, args))

    def _delimited_args(self, delims: tuple[str, ...]) -> list[str]:
        """TeX's matching of a `\\def` parameter text, in the current frame."""
        k = self._top()
        if k < 0:
            raise _Stop("use at end of input")
        text = self.texts[k]
        pos = _WS.match(text, self.poss[k]).end()
        if not text.startswith(delims[0], pos):
            raise _Stop(f"use does not match its definition (expected {delims[0]!r})")
        self.poss[k] = pos + len(delims[0])
        args: list[str] = []
        for delim in delims[1:]:
            if not delim:
                args.append(self._read_arg())
                continue
            start = self.poss[k]
            end = _find_delimiter(text, start, delim)
            if end < 0:
                raise _Stop(f"delimiter {delim!r} not found (runaway argument)")
            arg = text[start:end]
            if arg.startswith("{") and match_brace(arg, 0) == len(arg):
                arg = arg[1:-1]
            args.append(arg.rstrip() if delim == "\\par" else arg)
            # a blank line is the \par token: it ends `\def\x#1\par{..}`'s argument
            self.poss[k] = end + (len(delim) if text.startswith(delim, end) else len(_BLANK_LINE.match(text, end)[0]))
        return args

    def _xargs(self, xspec: tuple[tuple[str, str | None], ...]) -> list[str]:
        """Arguments of an xparse command: absent optional ones are `-NoValue-` (or their default)."""
        args: list[str] = []
        for kind, extra in xspec:
            if kind == "m":
                args.append(self._read_arg())
            elif kind in "oO":
                opt = self._read_optional()
                args.append(opt if opt is not None else extra if kind == "O" else NO_VALUE)
            elif kind in "st":
                token = "*" if kind == "s" else extra
                hit = self._peek(skip_ws=False) == token
                if hit:
                    self.poss[-1] += 1
                args.append("\\BooleanTrue" if hit else "\\BooleanFalse")
            elif kind in "gG":
                args.append(self._read_arg() if self._peek() == "{" else extra if kind == "G" else NO_VALUE)
            else:  # d D r R: delimiters are extra[0], extra[1]; a default follows for D and R
                open_, close, default = extra[0], extra[1], extra[2:] if kind in "DR" else NO_VALUE
                if self._peek() != open_:
                    if kind in "rR":
                        raise _Stop(f"required argument {open_}...{close} missing")
                    args.append(default)
                    continue
                k = len(self.texts) - 1
                end = _find_delimiter(self.texts[k], self.poss[k] + 1, close)
                if end < 0:
                    raise _Stop(f"argument {open_}... not closed by {close}")
                args.append(self.texts[k][self.poss[k] + 1 : end])
                self.poss[k] = end + 1
        return args

    def _count(self, text: str) -> None:
        """Account for text produced by one expansion against the document's limits."""
        lim = self.limits
        self.stats.expanded += 1
        self.use_count += 1
        self.produced += len(text)
        if self.stats.expanded > lim.max_total or self.produced > self.max_output:
            self.disabled = True
            self.stats.losses["expansion-limit", "document"] += 1
            raise _Stop("document expansion limit reached; rest left unexpanded")
        if self.use_count > lim.max_per_use:
            raise _Stop(f"more than {lim.max_per_use} expansions for one use (recursive macro?)")

    def _environment(self, cs: str) -> bool:
        """`\\begin{env}` / `\\end{env}` of a user environment: expand it; False otherwise."""
        k = self._top()
        text, pos = self.texts[k], self.poss[k]
        p = _WS.match(text, pos).end()
        if p >= len(text) or text[p] != "{":
            return False
        close = text.find("}", p)
        name = text[p + 1 : close].strip() if close > 0 else ""
        if name in _VERBATIM_ENVS and cs == "begin" and k == 0:
            end = text.find(f"\\end{{{name}}}", close)
            end = len(text) if end < 0 else end + len(name) + 6
            self.out.append("\\begin" + text[pos:end])
            self.poss[k] = end
            return True
        env = self.envs.get(name)
        if env is None:
            return False
        self.poss[k] = close + 1
        if cs == "end":  # xparse end code may use the arguments too
            opened = self.env_args.get(name)
            self._push(_substitute(env.end, opened.pop() if opened else []) if env.xspec else env.end)
        else:
            args = self._xargs(env.xspec) if env.xspec is not None else self._args(env.nargs, env.default)
            if env.xspec is not None:
                self.env_args.setdefault(name, []).append(args)
            self._push(_substitute(env.begin, args))
        return True

    # -- conditionals -------------------------------------------------------------------------
    def _is_if(self, name: str) -> bool:
        """Whether `\\name` is a TeX conditional closed by `\\fi` (unknown `\\ifxxx` names count:
        packages define them with `\\newif`)."""
        return (name.startswith("if") and name not in _NOT_IFS and name not in _ARG_IFS
                and name not in self.macros)

    def _conditional(self, name: str) -> None:
        """Take the branch the condition selects; an undecidable one keeps its "true" branch."""
        if name == "ifcase":
            self._ifcase()
            return
        value = self._decide(name)
        if value is None:
            self.stats.losses["conditional", "\\" + name] += 1
            value = True
        if value:
            self.conds.append(True)
            self._eat_line_end()
        else:
            self._skip_branch(stop_at_else=True)

    def _expandafter(self) -> bool:
        """`\\expandafter\\def\\csname x\\endcsname`: whether a control word then a `\\csname` follow (the
        one use of `\\expandafter` that decides what the document defines); consumes the control word."""
        k = self._top()
        m = _EXPANDAFTER_CSNAME.match(self.texts[k], self.poss[k]) if k >= 0 else None
        if m is None:
            return False
        self.before_csname = "\\" + m[1]
        self.poss[k] = m.end()
        return True

    def _csname(self, name: str, start: int) -> None:
        """`\\csname x\\endcsname`, `\\@nameuse{x}`: the control sequence `\\x`; `\\@namedef{x}`: `\\def\\x`.
        A name that is not letters (`\\csname fig1\\endcsname`) stays undefined: nothing, counted.

        The tokens are written back over the consumed span `start..` of the same frame (a definition reads
        its name, parameters and body from one text), padded in front with empty groups, so every later
        offset stays valid."""
        k = self._top()
        t = self.texts[k]
        if name in ("@nameuse", "@namedef"):
            cs = self._read_arg().strip()
        else:
            end = t.find("\\endcsname", self.poss[k])
            if end < 0:
                raise _Stop("\\csname without \\endcsname")
            cs = t[self.poss[k] : end].strip()
            self.poss[k] = end + len("\\endcsname")
        before, self.before_csname = "\\def" if name == "@namedef" else self.before_csname, ""
        if not re.fullmatch(r"[A-Za-z@]+", cs):
            self.stats.losses["definition" if before else "expansion", "\\csname " + cs[:40]] += 1
            return
        new, end = before + "\\" + cs, self.poss[k]
        pad = end - start - len(new)
        if k != self._top() or pad < 0:  # the name came from an enclosing frame: a new frame holds the tokens
            self._push(new)
            return
        self.texts[k] = t[:start] + "{}" * (pad // 2) + " " * (pad % 2) + new + t[end:]
        self.poss[k] = end - len(new)

    def _ifcase(self) -> None:
        """`\\ifcase N case0 \\or case1 ... \\else other \\fi`: case N (N a literal; otherwise case 0, counted)."""
        m = self._match(_ODD)
        if m is None:  # a register or counter (`\\value{x}`, `\\count@`): consumed, case 0 taken, counted
            self.stats.losses["conditional", "\\ifcase"] += 1
            if (number := self._match(_ANY_NUMBER)) is not None:
                self.poss[self._top()] = number.end()
        else:
            self.poss[self._top()] = m.end()
        for _ in range(int(m[1]) if m else 0):
            if not self._skip_branch(stop_at_else=True, stop_at_or=True):
                return  # \else taken, or \fi reached: no case N
        self.conds.append(True)
        self._eat_line_end()

    def _eat_line_end(self) -> None:
        """After a conditional's control word TeX ignores the line end (and the next line's
        indentation), so a switched-off block leaves no paragraph break; a blank line still counts."""
        k = len(self.texts) - 1
        self.poss[k] = _LINE_END.match(self.texts[k], self.poss[k]).end()

    def _decide(self, name: str) -> bool | None:
        if name in ("iftrue", "iffalse"):
            return name == "iftrue"
        if name[2:] in self.switches:
            return self.switches[name[2:]]
        if name == "ifnum":
            return self._compare(_NUM, lambda m: (int(m[1]), m[2], int(m[3])), pdfstrcmp=True)
        if name == "ifdim":
            return self._compare(_DIMCMP, lambda m: (float(m[1]) * _DIM_UNITS[m[2]], m[3],
                                                     float(m[4]) * _DIM_UNITS[m[5]]))
        if name == "ifodd":
            m = self._match(_ODD)
            return None if m is None else int(m[1]) % 2 == 1
        if name in ("ifx", "if"):
            a, b = self._read_arg(), self._read_arg()
            return self._same(a, b) if name == "ifx" else (a == b if "\\" not in a + b else None)
        if name == "ifdefined":
            return self._defined(self._read_arg())
        if name == "ifcsname":
            k = len(self.texts) - 1
            end = self.texts[k].find("\\endcsname", self.poss[k])
            if end < 0:
                raise _Stop("\\ifcsname without \\endcsname")
            cs = self.texts[k][self.poss[k] : end].strip()
            self.poss[k] = end + len("\\endcsname")
            return cs in self.macros
        if name == "ifmmode":
            return self._in_math()
        return None  # \ifvmode, a switch never declared, ...

    def _match(self, pattern: re.Pattern[str]) -> re.Match[str] | None:
        k = self._top()
        m = pattern.match(self.texts[k], self.poss[k]) if k >= 0 else None
        if m:
            self.poss[k] = m.end()
        return m

    def _compare(self, pattern: re.Pattern[str], values: object, pdfstrcmp: bool = False) -> bool | None:
        """`\\ifnum`/`\\ifdim` on literals (and showyourwork's `\\ifnum\\pdfstrcmp{a}{b}=0`); any other
        condition is consumed (so it does not reach the text) and left undecided."""
        k = self._top()
        if k < 0:
            return None
        text, pos = self.texts[k], self.poss[k]
        p = _WS.match(text, pos).end()
        if pdfstrcmp and text.startswith("\\pdfstrcmp", p):
            self.poss[k] = p + len("\\pdfstrcmp")
            a, b = self._read_arg(), self._read_arg()
            if self._match(_PDFSTRCMP_TAIL) is None:
                raise _Stop("\\ifnum\\pdfstrcmp without '=0'")
            return a.strip() == b.strip()
        m = self._match(pattern)
        if m is None:
            self._match(_ANY_CMP)
            return None
        a, op, b = values(m)  # type: ignore[operator]
        return a < b if op == "<" else a > b if op == ">" else a == b

    def _defined(self, token: str) -> bool:
        """Defined by the document (or its .sty files); anything else counts as undefined."""
        m = _CS.fullmatch(token.strip())
        if not m:
            return False
        name = m.group(1)
        return name in self.macros or (name.startswith("if") and name[2:] in self.switches)

    def _same(self, a: str, b: str) -> bool | None:
        """`\\ifx`: same character, same macro meaning; `\\undefined`/`\\relax` test definedness."""
        ma, mb = _CS.fullmatch(a.strip()), _CS.fullmatch(b.strip())
        if not ma and not mb:
            return a == b
        if not ma or not mb:
            return None
        x, y = ma.group(1), mb.group(1)
        if x == y:
            return True
        for u, v in ((x, y), (y, x)):
            if v in ("undefined", "@undefined", "relax", "@empty") and v not in self.macros:
                return None if v == "@empty" and u in self.macros else not self._defined("\\" + u)
        if x in self.macros and y in self.macros:
            return self.macros[x] == self.macros[y]
        return None

    def _in_math(self) -> bool:
        """Whether the output so far (back to the paragraph start) leaves math open: `\\ifmmode`."""
        chunks, n = [], 0
        for chunk in reversed(self.out):
            chunks.append(chunk)
            n += len(chunk)
            if "\n\n" in chunk or n > 4000:
                break
        tail = "".join(reversed(chunks))
        tail = tail[tail.rfind("\n\n") + 1 :]
        depth = 0
        for m in _MATH_OPEN.finditer(tail):
            s = m.group()
            if s == "$":
                depth = 0 if depth else 1
            else:
                depth = 1 if s in ("\\(", "\\[") or s.startswith("\\begin") else 0
        return depth > 0

    def _arg_conditional(self, name: str) -> None:
        """etoolbox/ifthen tests with arguments: `\\ifdef{\\x}{yes}{no}`, `\\ifstrequal{a}{b}{yes}{no}`..."""
        args = [self._read_arg() for _ in range(_ARG_IFS[name])]
        yes, no = self._read_arg(), self._read_arg()
        value: bool | None = None
        if name in ("ifdef", "ifdefmacro", "ifundef"):
            value = self._defined(args[0]) != (name == "ifundef")
        elif name in ("ifcsdef", "ifcsundef"):
            value = (args[0].strip() in self.macros) != (name == "ifcsundef")
        elif name == "ifstrequal":
            value = args[0].strip() == args[1].strip()
        elif name in ("ifstrempty", "ifblank"):
            value = not args[0].strip()
        elif name in ("iftoggle", "nottoggle"):
            value = self.toggles.get(args[0].strip())
        elif name in ("ifbool", "notbool"):
            value = self.switches.get(args[0].strip())
        elif name == "ifthenelse" and (m := _BOOLEAN_TEST.match(args[0])):
            value = self.switches.get(m[2].strip())
            value = None if value is None else value != bool(m[1])
        if value is not None and name.startswith("not"):
            value = not value
        if value is None:
            self.stats.losses["conditional", "\\" + name] += 1
            value = True
        self._push(yes if value else no)

    def _ifundefined(self) -> None:
        """`\\@ifundefined{name}{yes}{no}`."""
        name, yes, no = self._read_arg().strip(), self._read_arg(), self._read_arg()
        self._push(no if name in self.macros else yes)

    def _ifvalue(self, name: str) -> None:
        """xparse's `\\IfNoValueTF{#1}{..}{..}`, `\\IfBooleanT{#1}{..}` and the rest of the family."""
        test, branches = _IFVALUE[name]
        v = self._read_arg().strip()
        cond = v == "\\BooleanTrue" if test == "boolean" else (v == NO_VALUE) == (test == "novalue")
        yes = self._read_arg() if "T" in branches else ""
        no = self._read_arg() if "F" in branches else ""
        self._push(yes if cond else no)

    def _switch(self, name: str) -> bool:
        """`\\footrue` / `\\foofalse` for a `\\newif\\iffoo` switch."""
        for suffix, value in (("true", True), ("false", False)):
            if name.endswith(suffix) and name[: -len(suffix)] in self.switches:
                self.switches[name[: -len(suffix)]] = value
                return True
        return False

    def _ifnextchar(self) -> None:
        """`\\@ifnextchar<c>{yes}{no}`: LaTeX's look-ahead, used by macros taking a variable number of groups."""
        want = self._read_arg()
        want = {"\\bgroup": "{", "\\egroup": "}"}.get(want, want)
        yes, no = self._read_arg(), self._read_arg()
        self._push(yes if self._peek() == want else no)

    def _skip_branch(self, stop_at_else: bool, stop_at_or: bool = False) -> bool:
        """Skip to the matching `\\else` (when wanted), `\\or` (when wanted: True is returned, the next
        `\\ifcase` case starts there) or `\\fi` in the current frame; `\\or`s of this level are skipped."""
        k = len(self.texts) - 1
        depth = 0
        for m in _COND.finditer(self.texts[k], self.poss[k]):
            word = m.group(1)
            if word.startswith("if"):
                depth += self._is_if(word)
            elif depth:
                depth -= word == "fi"
            elif word == "or":
                if stop_at_or:
                    self.poss[k] = m.end()
                    return True
            elif word == "else" and stop_at_else:
                self.poss[k] = m.end()
                self.conds.append(False)
                self._eat_line_end()
                return False
            elif word == "fi":
                self.poss[k] = m.end()
                self._eat_line_end()
                return False
        raise _Stop("conditional without matching \\fi: text kept")

    def run(self, text: str, out: list[str]) -> None:
        self.out = out
        self.texts, self.poss = [text], [0]
        base_error = base_conds = base_out = base_end = 0
        base_use = ""  # the document-level macro use being expanded, if any
        while True:
            k = self._top()
            if k < 0:
                return
            t, pos = self.texts[k], self.poss[k]
            i = t.find("\\", pos)
            if i < 0 or (self.disabled and k == 0):
                self._emit(t[pos:])
                self.poss[k] = len(t)
                continue
            if i > pos:
                self._emit(t[pos:i])
            m = _CS.match(t, i)
            if m is None:  # a lone backslash at the very end
                out.append("\\")
                self.poss[k] = i + 1
                continue
            name = m.group(1)
            self.poss[k] = m.end()
            if k == 0:
                self.use_count = 0
                base_error, base_conds, base_out, base_end = i, len(self.conds), len(out), m.end()
                base_use = m.group() if name in self.macros else ""
            try:
                if name in self.macros:
                    self._expand(name)
                elif name in self.definers:
                    self.definers[name](name)
                elif name in ("begin", "end") and self.envs or name == "begin" and k == 0:
                    if not self._environment(name):
                        out.append(m.group())
                elif name[:2] == "if" and self._is_if(name):
                    self._conditional(name)
                elif name in _ARG_IFS:
                    self._arg_conditional(name)
                elif name == "@ifundefined":
                    self._ifundefined()
                elif name in _IFVALUE:
                    self._ifvalue(name)
                elif name.endswith(("true", "false")) and self._switch(name):
                    pass
                elif name == "@ifnextchar" and k > 0:
                    self._ifnextchar()
                elif name in ("else", "or") and self.conds and self.conds[-1]:
                    self.conds.pop()
                    self._skip_branch(stop_at_else=False)
                elif name == "fi" and self.conds:
                    self.conds.pop()
                    self._eat_line_end()
                elif name in ("csname", "@nameuse", "@namedef") or name == "expandafter" and self._expandafter():
                    self._csname(name, i)
                elif name in INLINE_VERB and k == 0:
                    self._verb(m.group())
                elif name in _VERBATIM_ARGS and k == 0:
                    self._verbatim_arg(m.group())
                else:
                    if name in self.refused:
                        self.stats.losses["math-symbol", m.group()] += 1
                    out.append(m.group())
            except (_Stop, ValueError) as exc:
                self.stats.errors.append(f"\\{name} at offset {base_error}: {exc}")
                # abandon the failed expansion; in the document itself, move past the macro name
                del self.texts[1:], self.poss[1:]
                del self.conds[base_conds:]
                if base_use:  # the use stays as written: nothing it produced, its arguments as text
                    del out[base_out:]
                    out.append(base_use)
                    self.poss[0] = base_end
                    self.stats.losses["expansion", base_use] += 1
                elif k == 0 and self.poss[0] < m.end():
                    self.poss[0] = m.end()

    def _emit(self, text: str) -> None:
        """Append text; a letter right after a control word from another frame (`\\relax` then an
        expansion starting "km") is set off by a space, as TeX's tokens are."""
        out = self.out
        if out and text[:1].isalpha() and out[-1][-1:].isalpha() and _TRAILING_CS.search(out[-1]):
            out.append(" ")
        out.append(text)

    def _verb(self, cs: str) -> None:
        t, pos = self.texts[0], self.poss[0]
        span = inline_verb(t, pos, cs[1:])
        if span is None:
            self.out.append(cs)
            return
        self.out.append(cs + t[pos : span[2]])
        self.poss[0] = span[2]

    def _verbatim_arg(self, cs: str) -> None:
        """`\\url{..}`, `\\path|..|`, `\\href{url}`: the argument TeX reads verbatim, copied as is."""
        t, pos = self.texts[0], self.poss[0]
        p = _WS.match(t, pos).end()
        end = -1
        if p < len(t) and t[p] == "{":
            end = match_brace(t, p)
        elif p < len(t) and cs != "\\href" and not (t[p].isalnum() or t[p].isspace()):
            close = t.find(t[p], p + 1)
            end = close + 1 if close > 0 else -1
        if end < 0:
            self.out.append(cs)
            return
        self.out.append(cs + t[pos:end])
        self.poss[0] = end


def expand_macros(
    tex: str, limits: ExpansionLimits = ExpansionLimits(), preamble: str = ""
) -> tuple[str, MacroStats]:
    """Expand the user macros of `tex`; definitions are removed from the text.

    `preamble` is read first for its definitions only (e.g. a paper's own .sty files) and
    contributes nothing to the output. Problems (a loop, a malformed definition) are listed in
    the returned stats' `errors`; the text then keeps the unexpanded use.
    """
    exp = _Expander(limits)
    exp.max_output = min(limits.max_output_chars, int(limits.max_output_ratio * (len(tex) + len(preamble))) + 1_000_000)
    if preamble:
        exp.package = True
        exp.run(preamble, [])
        exp.package = exp.disabled = False
        exp.produced = 0
        exp.stats.losses.clear()  # a package's own internals are not the paper's text; its macros'
        # uses in the paper are counted when they fail
    out: list[str] = []
    exp.run(tex, out)
    return "".join(out), exp.stats


_DELIM_RES: dict[str, re.Pattern[str]] = {}


_BLANK_LINE = re.compile(r"\n[ \t]*\n")


def _find_delimiter(text: str, start: int, delim: str) -> int:
    """Start of `delim` at brace depth 0 from `start`, or -1 (also at a blank line: a runaway
    argument, as TeX reports for a non-`\\long` macro; unless `delim` is `\\par`, which the
    blank line is, as in plain TeX's `\\def\\beginsection#1\\par{..}`)."""
    pattern = _DELIM_RES.get(delim)
    if pattern is None:
        word_end = r"(?![A-Za-z@])" if re.search(r"\\[A-Za-z@]+\Z", delim) else ""  # `\par` is not `\parskip`
        pattern = _DELIM_RES[delim] = re.compile(re.escape(delim) + word_end + r"|\\[A-Za-z@]+|\\.|[{}]|\n[ \t]*\n",
                                                 re.S)
    depth = 0
    for m in pattern.finditer(text, start):
        s = m.group()
        if s == delim and depth == 0:
            return m.start()
        if s == "{":
            depth += 1
        elif s == "}":
            depth -= 1
            if depth < 0:
                return -1
        elif s[0] == "\n":
            return m.start() if delim == "\\par" and depth == 0 else -1
    return -1


def _parse_xspec(spec: str) -> tuple[tuple[str, str | None], ...]:
    """An xparse argument specification -> ((kind, extra), ...); raises ValueError on a kind we do
    not read (`v`, `e`, `b`, ...). `+`, `!` and `>{processor}` prefixes are accepted and ignored."""
    out: list[tuple[str, str | None]] = []
    i = 0
    while i < len(spec):
        c = spec[i]
        if c.isspace() or c in "+!":
            i += 1
        elif c in ">=":  # an argument processor or key=value: its group does not change the reading
            j = _WS.match(spec, i + 1).end()
            end = match_brace(spec, j) if spec.startswith("{", j) else -1
            if end < 0:
                raise ValueError(f"malformed {c}{{...}} in argument spec {spec!r}")
            i = end
        elif c in "mosg":
            out.append((c, None))
            i += 1
        elif c in "OG" or c in "DR":
            j = i + 1
            delims = ""
            if c in "DR":
                delims, j = spec[j : j + 2], j + 2
            j = _WS.match(spec, j).end()
            end = match_brace(spec, j) if spec.startswith("{", j) else -1
            if end < 0:
                raise ValueError(f"argument type {c} without a {{default}} in {spec!r}")
            out.append((c, delims + spec[j + 1 : end - 1]))
            i = end
        elif c == "t" and i + 1 < len(spec):
            out.append(("t", spec[i + 1]))
            i += 2
        elif c in "dr" and i + 2 < len(spec):
            out.append((c, spec[i + 1 : i + 3]))
            i += 3
        else:
            raise ValueError(f"argument type {c!r} not supported")
    if len(out) > 9:
        raise ValueError("more than 9 arguments")
    return tuple(out)

