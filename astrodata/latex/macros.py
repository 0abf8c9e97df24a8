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

Everything is bounded: nesting depth, expansions per use and in all, and text produced, so
`\\def\\a{\\a}` or `\\def\\a{x\\a}` ends as a recorded error in `MacroStats.errors`, never a hang.
Definitions never override the structural commands the text converter relies on
(`PROTECTED_COMMANDS`): journal and conference .sty files redefine `\\section` or `\\maketitle`.
"""

from __future__ import annotations

import re
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
_COND = re.compile(r"\\(if[A-Za-z@]*|else|fi)(?![A-Za-z@])")
_PDFSTRCMP_TAIL = re.compile(r"\s*=\s*0(?![0-9])\s?")
_SIMPLE_PARAMS = re.compile(r"(?:#[1-9])*")
_VERBATIM_ENVS = ("verbatim", "verbatim*", "lstlisting", "minted", "Verbatim", "comment")


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


@dataclass
class MacroStats:
    """What expansion did to one document."""

    defined: int = 0
    expanded: int = 0
    errors: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class Macro:
    """`nargs` arguments; when `default` is not None the first one is optional (`[...]`)."""

    nargs: int
    default: str | None
    body: str


@dataclass(frozen=True)
class Environment:
    nargs: int
    default: str | None
    begin: str
    end: str


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
        }

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
        if kind == "providecommand" and name in self.macros:
            return
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
        params = text[m.end() : brace]
        if not _SIMPLE_PARAMS.fullmatch(params.strip()):
            raise _Stop(f"\\def\\{m.group(1)} has delimited parameters: definition dropped, uses left as they are")
        self._define(m.group(1), Macro(params.count("#"), None, text[brace + 1 : end - 1]), kind)

    def _let(self, kind: str) -> None:
        name = self._read_name()
        if self._peek() == "=":
            self.poss[-1] += 1
        target = self._read_arg()
        m = _CS.fullmatch(target)
        if not m:
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
        lim = self.limits
        self.stats.expanded += 1
        self.use_count += 1
        self.produced += len(text)
        if self.stats.expanded > lim.max_total or self.produced > lim.max_output_chars:
            self.disabled = True
            raise _Stop("document expansion limit reached; rest left unexpanded")
        if self.use_count > lim.max_per_use:
            raise _Stop(f"more than {lim.max_per_use} expansions for one use (recursive macro?)")
        if len(self.texts) > lim.max_depth:
            raise _Stop(f"expansion nested deeper than {lim.max_depth}")
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
        if macro.nargs == 0 and "\\" not in macro.body and "#" not in macro.body:
            self.out.append(macro.body)  # plain-text body: nothing left to expand
            self.stats.expanded += 1
            return
        self._push(_substitute(macro.body, self._args(macro.nargs, macro.default)))

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
        if cs == "end":
            self._push(env.end)
        else:
            self._push(_substitute(env.begin, self._args(env.nargs, env.default)))
        return True

    def _ifnum(self) -> bool:
        """`\\ifnum\\pdfstrcmp{a}{b}=0`: the one conditional generated macro tables use."""
        k = self._top()
        text, pos = self.texts[k], self.poss[k]
        p = _WS.match(text, pos).end()
        if not text.startswith("\\pdfstrcmp", p):
            return False
        self.poss[k] = p + len("\\pdfstrcmp")
        a, b = self._read_arg(), self._read_arg()
        k = len(self.texts) - 1
        m = _PDFSTRCMP_TAIL.match(self.texts[k], self.poss[k])
        if not m:
            raise _Stop("\\ifnum\\pdfstrcmp without '=0'")
        self.poss[k] = m.end()
        if a.strip() == b.strip():
            self.conds.append(True)
        else:
            self._skip_branch(stop_at_else=True)
        return True

    def _ifnextchar(self) -> None:
        """`\\@ifnextchar<c>{yes}{no}`: LaTeX's look-ahead, used by macros taking a variable number of groups."""
        want = self._read_arg()
        want = {"\\bgroup": "{", "\\egroup": "}"}.get(want, want)
        yes, no = self._read_arg(), self._read_arg()
        self._push(yes if self._peek() == want else no)

    def _skip_branch(self, stop_at_else: bool) -> None:
        """Skip to the matching `\\else` (when wanted) or `\\fi` in the current frame."""
        k = len(self.texts) - 1
        depth = 0
        for m in _COND.finditer(self.texts[k], self.poss[k]):
            word = m.group(1)
            if word.startswith("if"):
                depth += 1
            elif depth:
                depth -= word == "fi"
            elif word == "else" and stop_at_else:
                self.poss[k] = m.end()
                self.conds.append(False)
                return
            elif word == "fi":
                self.poss[k] = m.end()
                return
        raise _Stop("\\ifnum without matching \\fi")

    def run(self, text: str, out: list[str]) -> None:
        self.out = out
        self.texts, self.poss = [text], [0]
        base_error = 0
        while True:
            k = self._top()
            if k < 0:
                return
            t, pos = self.texts[k], self.poss[k]
            i = t.find("\\", pos)
            if i < 0 or (self.disabled and k == 0):
                out.append(t[pos:])
                self.poss[k] = len(t)
                continue
            if i > pos:
                out.append(t[pos:i])
            m = _CS.match(t, i)
            if m is None:  # a lone backslash at the very end
                out.append("\\")
                self.poss[k] = i + 1
                continue
            name = m.group(1)
            self.poss[k] = m.end()
            if k == 0:
                self.use_count = 0
                base_error = i
            try:
                if name in self.macros:
                    self._expand(name)
                elif name in self.definers:
                    self.definers[name](name)
                elif name in ("begin", "end") and self.envs or name == "begin" and k == 0:
                    if not self._environment(name):
                        out.append(m.group())
                elif name == "ifnum" and k > 0 and self._ifnum():
                    pass
                elif name == "@ifnextchar" and k > 0:
                    self._ifnextchar()
                elif name == "else" and self.conds and self.conds[-1]:
                    self.conds.pop()
                    self._skip_branch(stop_at_else=False)
                elif name == "fi" and self.conds:
                    self.conds.pop()
                elif name == "verb" and k == 0:
                    self._verb(m.group())
                else:
                    out.append(m.group())
            except (_Stop, ValueError) as exc:
                self.stats.errors.append(f"\\{name} at offset {base_error}: {exc}")
                # abandon the failed expansion; in the document itself, move past the macro name
                del self.texts[1:], self.poss[1:]
                self.conds.clear()
                if k == 0 and self.poss[0] < m.end():
                    self.poss[0] = m.end()

    def _verb(self, cs: str) -> None:
        t, pos = self.texts[0], self.poss[0]
        if pos < len(t) and t[pos] == "*":
            pos += 1
        if pos >= len(t):
            self.out.append(cs)
            return
        end = t.find(t[pos], pos + 1)
        end = len(t) if end < 0 else end + 1
        self.out.append(cs + t[self.poss[0] : end])
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
    if preamble:
        exp.package = True
        exp.run(preamble, [])
        exp.package = exp.disabled = False
        exp.produced = 0
    out: list[str] = []
    exp.run(tex, out)
    return "".join(out), exp.stats
