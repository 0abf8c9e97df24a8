"""Faithful LaTeX text (issue 10): conditionals, definitions, verbatim, box-trick math, structures,
and every loss counted. The regression inputs in ../shared/data/regressions/latex come first (each
test skips, saying so, when that folder is absent); then our own cases, several per kind."""

from __future__ import annotations

import gzip
import re
import time

import pytest
from conftest import shared

from astrodata.latex.macros import ExpansionLimits, expand_macros
from astrodata.latex.residue import residue_per_1k
from astrodata.latex.scan import find_cs
from astrodata.latex.to_text import TextOptions, convert_eprint, latex_to_text


def body(tex: str, **opts):
    return latex_to_text("\\begin{document}\n" + tex + "\n\\end{document}", TextOptions(**opts))


def regression(name: str):
    return latex_to_text(shared("regressions", "latex", name).read_text())


def section_text(doc) -> str:
    return doc.text[doc.text.index("## ") :]


def math_spans(text: str) -> list[str]:
    return re.findall(r"\$[^$]*\$", text)


# -- the shared regression cases ---------------------------------------------------------------
def test_regression_conditionals():
    doc = regression("conditionals.tex")
    expected = shared("regressions", "latex", "conditionals.expected.txt").read_text().strip()
    assert section_text(doc) == expected


def test_regression_delimited_def():
    doc = regression("delimited-def.tex")
    expected = shared("regressions", "latex", "delimited-def.expected.txt").read_text().strip()
    assert section_text(doc) == expected and doc.macro_errors == []


def test_regression_math_hack_macros():
    doc = regression("math-hack-macros.tex")
    expected = shared("regressions", "latex", "math-hack-macros.expected.txt").read_text().split("\n(")[0].strip()
    text = section_text(doc)
    assert text == expected
    for span in math_spans(text):
        assert not re.search(r"\\(hbox|rlap|lower|buildrel|over)(?![a-z])", span)


def test_regression_table_without_caption():
    doc = regression("table-without-caption.tex")
    want = [ln for ln in shared("regressions", "latex", "table-without-caption.expected.txt").read_text().split("\n")
            if ln.startswith("| ")]
    lines = doc.text.split("\n")
    assert want and all(w in lines for w in want)
    assert [lines.index(w) for w in want] == sorted(lines.index(w) for w in want)  # rows in order


def test_regression_unclosed_math():
    doc = regression("unclosed-math.tex")
    assert "Resonant chains are common among compact multi-planet systems." in doc.text
    assert doc.losses["math", "unclosed \\("] == 1 and doc.losses["math", "unclosed \\["] == 1
    assert doc.residue_per_1k == 0


def test_regression_verbatim_percent():
    doc = regression("verbatim-percent.tex")
    text = doc.text
    assert "--aperture 85%` on the command line" in text and "done: 100% of frames`, after which" in text
    assert '--clip 99.5%  # keep 99.5% of pixels\ndone' in text


# -- conditionals ---------------------------------------------------------------------------------
@pytest.mark.parametrize("tex, want", [
    (r"\iffalse A \else B \fi C", "B C"),
    (r"\iftrue A \else B \fi C", "A C"),
    (r"\newif\ifdraft \drafttrue \ifdraft D \else F \fi", "D"),
    (r"\newif\ifdraft \ifdraft D \else F \fi", "F"),
    (r"\newif\ifdraft \drafttrue \draftfalse \ifdraft D \fi E", "E"),
    (r"\let\ifnotes\iffalse \ifnotes hidden \fi shown", "shown"),
    (r"\if0 hidden \fi shown \if00 same\fi", "shown same"),
    (r"\ifnum 3>2 big\else small\fi, \ifnum 1=2 eq\else ne\fi", "big, ne"),
    (r"\ifdim 2pt<1cm yes\else no\fi", "yes"),
    (r"\newcommand\a{x}\newcommand\b{x}\ifx\a\b same\else differ\fi", "same"),
    (r"\newcommand\a{x}\ifdefined\a def\else undef\fi, \ifdefined\zz Z\else noZ\fi", "def, noZ"),
    (r"\newcommand\a{x}\ifcsname a\endcsname in\else out\fi", "in"),
    (r"\makeatletter\@ifundefined{foo}{U}{D}\makeatother", "U"),
    (r"\iffalse \iftrue inner \fi outer \else kept \fi", "kept"),
    (r"\ifpdf pdf\else dvi\fi", "pdf"),
    (r"\newcommand\M{\ifmmode M_\odot\else $M_\odot$\fi}a $x=\M$ and \M.", r"a $x=M_\odot$ and $M_\odot$."),
])
def test_conditionals(tex, want):
    assert body(tex).text == want


def test_undecided_conditional_takes_true_branch_and_is_counted():
    doc = body(r"\ifnum\value{page}>1 first\else second\fi, \ifsomethingunknown A\else B\fi")
    assert doc.text == "first, A"
    assert doc.losses["conditional", "\\ifnum"] == 1 and doc.losses["conditional", "\\ifsomethingunknown"] == 1


def test_iff_is_math_not_a_conditional():
    assert body(r"$a \iff b$ and \iffalse x\fi y").text == r"$a \iff b$ and y"


# -- definitions ----------------------------------------------------------------------------------
@pytest.mark.parametrize("tex, want", [
    (r"\def\coord(#1,#2){(x=#1, y=#2)}at \coord(3,4).", "at (x=3, y=4)."),
    (r"\def\span#1to#2;{from #1 to #2}\span {a b}to c;", "from a b to c"),
    (r"\def\x{A}\edef\x{\x B}\x", "AB"),
    (r"\gdef\g#1{<#1>}\g{z}", "<z>"),
    (r"\DeclareRobustCommand{\Msol}{M_\odot}$\Msol$", r"$M_\odot$"),
    (r"\newcommand*{\kms}{km\,s$^{-1}$}3 \kms", r"3 km s$^{-1}$"),
    (r"\NewDocumentCommand{\vect}{m}{\mathbf{#1}}$\vect{v}$", r"$\mathbf{v}$"),
    (r"\NewDocumentCommand{\q}{O{km} m}{#2 #1}\q{3} \q[pc]{4}", "3 km 4 pc"),
    (r"\NewDocumentCommand{\n}{s m}{\IfBooleanTF{#1}{star #2}{plain #2}}\n*{a} \n{b}", "star a plain b"),
    (r"\NewDocumentCommand{\o}{o m}{\IfNoValueTF{#1}{#2}{#2 (#1)}}\o{x} \o[y]{z}", "x z (y)"),
    (r"\DeclareDocumentCommand{\p}{+m}{[#1]}\p{a}", "[a]"),
])
def test_definitions(tex, want):
    assert body(tex).text == want


def test_unreadable_definition_is_counted_and_uses_keep_their_words():
    doc = body(r"\NewDocumentCommand{\weird}{v}{#1}\def\bad#2#1{x}text \weird{kept words}")
    assert "kept words" in doc.text
    assert doc.losses["definition", "\\weird"] == 1 and doc.losses["definition", "\\bad"] == 1


def test_expansion_cap_holds_on_the_plain_text_fast_path():
    """Nested plain-text \\defs (a 'billion laughs'): must stop with a recorded error while growing."""
    tex = r"\def\a{xxxxxxxxxx}" + "".join(
        rf"\def\{n}{{{(chr(92) + p) * 10}}}" for p, n in zip("abcdefgh", "bcdefghi", strict=True)) + r"\i"
    start = time.perf_counter()
    out, stats = expand_macros(tex, ExpansionLimits(max_output_chars=200_000))
    assert len(out) < 400_000 and time.perf_counter() - start < 10
    assert any("expansion limit" in e for e in stats.errors)
    assert stats.losses["expansion-limit", "document"] == 1


# -- verbatim -------------------------------------------------------------------------------------
def test_percent_in_url_href_and_path_is_not_a_comment():
    doc = body("See \\url{https://x.org/a%20b} now,\n\\href{https://y.org/%7Ec}{the page} and \\path|C:%x|.\nNext.")
    assert "https://x.org/a%20b now," in doc.text and "the page and" in doc.text and "C:%x" in doc.text
    assert "Next." in doc.text


def test_macros_not_expanded_in_verbatim_and_lstlisting():
    doc = body(r"\newcommand\foo{BAR}\begin{lstlisting}" "\n" r"\foo % not a comment" "\n"
               r"\end{lstlisting}\verb|\foo| \foo")
    assert "\\foo % not a comment" in doc.text and "`\\foo` BAR" in doc.text


@pytest.mark.parametrize("env", ["verbatim", "lstlisting", "Verbatim"])
def test_end_document_inside_verbatim_does_not_cut_the_paper(env):
    doc = body(f"Before.\n\\begin{{{env}}}\n\\end{{document}}\n\\end{{{env}}}\nAfter the listing.")
    assert "After the listing." in doc.text


# -- math -----------------------------------------------------------------------------------------
@pytest.mark.parametrize("defn, symbol", [
    (r"\def\la{\mathrel{\mathchoice {\vcenter{\offinterlineskip\halign{\hfil$\displaystyle##$\hfil\cr<\cr\sim\cr}}}"
     r"{\vcenter{\offinterlineskip\halign{\hfil$\textstyle##$\hfil\cr<\cr\sim\cr}}}{}{}}}", r"\lesssim"),
    (r"\newcommand{\gsim}{\raise.3ex\hbox{$>$\kern-.75em\lower1ex\hbox{$\sim$}}}", r"\gtrsim"),
    (r"\newcommand{\simgt}{\lower.5ex\hbox{$\; \buildrel > \over \sim \;$}}", r"\gtrsim"),
])
def test_box_trick_symbols_become_standard(defn, symbol):
    name = re.search(r"\\(?:def|newcommand\{)\\([a-z]+)", defn).group(1)
    doc = body(defn + rf" so $x \{name} 1$.")
    assert doc.text == f"so $x {symbol} 1$."


def test_unknown_box_trick_keeps_the_user_name_in_math():
    doc = body(r"\newcommand{\odd}{\hbox{$\star$\kern-1em\lower2pt\hbox{$\circ$}}}$a \odd b$ ok")
    assert doc.text == r"$a \odd b$ ok" and doc.losses["math-symbol", "\\odd"] == 1


@pytest.mark.parametrize("tex, kind", [("A $x < y and more.\n\nNext para.", "unclosed $"),
                                      (r"A \( x and more. Next para.", "unclosed \\("),
                                      (r"A \[ x and more. Next para.", "unclosed \\[")])
def test_unclosed_math_is_counted_and_prose_kept(tex, kind):
    doc = body(tex)
    assert "and more." in doc.text and "Next para." in doc.text and doc.losses["math", kind] == 1


def test_find_cs_returns_minus_one_when_absent():
    assert find_cs(r"a \( b", 0, ")") == -1 and find_cs(r"a \) b", 0, ")") == 2


# -- structures -----------------------------------------------------------------------------------
def test_tables_markdown_with_multicolumn_makecell_and_rules():
    doc = body(r"""\begin{table}\begin{tabular}{lcc}\toprule
\multicolumn{2}{c}{Pair} & \makecell{Mass\\(M$_\odot$)} \\ \midrule
a \& b & c & 1.5 \\ \cmidrule(lr){1-2}
d|e & f & 2 \\ \bottomrule\end{tabular}\end{table}""")
    lines = doc.text.split("\n")
    assert lines[0] == "| Pair | | Mass (M$_\\odot$) |" and lines[1] == "|---|---|---|"
    assert lines[2:] == ["| a & b | c | 1.5 |", "| d\\|e | f | 2 |"]


def test_longtable_outside_a_float_and_deluxetable_rows():
    doc = body(r"""\begin{longtable}{ll} Star & Type \\ \hline Vega & A0V \\ \end{longtable}
\begin{deluxetable}{lc}\tablehead{\colhead{ID} & \colhead{$V$}}\startdata
X1 & 10.1 \\ X2 & 11.2 \enddata\end{deluxetable}""")
    lines = doc.text.split("\n")
    for row in ("| Star | Type |", "| Vega | A0V |", "| ID | $V$ |", "| X1 | 10.1 |", "| X2 | 11.2 |"):
        assert row in lines


def test_algorithm_numbered_lines_and_caption():
    doc = body(r"""\begin{algorithm}\caption{Fit}\begin{algorithmic}[1]
\Require data $d$
\For{$i = 1$ to $n$} \State update $x_i$ \Comment{gradient step}
\EndFor \State \Return $x$
\end{algorithmic}\end{algorithm}""")
    assert "Algorithm: Fit" in doc.text
    assert ("1. Require: data $d$\n2. for $i = 1$ to $n$ do\n3. update $x_i$ ▷ gradient step\n"
            "4. end for\n5.\n6. return $x$") in doc.text or "4. end for\n5. return $x$" in doc.text


def test_enumerate_numbers_nested_lists_and_labels():
    doc = body(r"""\begin{enumerate}\item one \item two
\begin{itemize}\item dot\end{itemize}
\item three \item[(x)] labelled\end{enumerate}""")
    lines = [ln for ln in doc.text.split("\n") if ln]
    assert lines == ["1. one", "2. two", "- dot", "3. three", "(x) labelled"]


def test_keywords_command_and_environments():
    assert "Keywords: galaxies: evolution" in body(r"\keywords{galaxies: evolution}Text.").text
    assert "Keywords: stars; planets" in body(r"\begin{keyword}stars \sep planets\end{keyword}").text
    assert "Keywords: ISM" in body(r"\begin{keywords}ISM\end{keywords}").text


def test_hand_built_title_block_yields_the_title_only():
    doc = latex_to_text(r"""\begin{document}
\begin{center}{\LARGE \bf A Survey of Cold Dust}\\[1em]
Jane Doe$^1$, John Roe$^2$\\ $^1$University of Somewhere\end{center}
\section{Intro} Text.
\end{document}""")
    assert doc.title == "A Survey of Cold Dust"
    assert "Doe" not in doc.text and "Somewhere" not in doc.text and "Text." in doc.text


def test_unknown_commands_and_dropped_environments_are_counted():
    doc = body(r"\mystery{words} stay \begin{tikzpicture}\draw (0,0);\end{tikzpicture}")
    assert doc.text == "words stay"
    assert doc.losses["command", "\\mystery"] == 1 and doc.losses["environment", "tikzpicture"] == 1


def test_residue_stays_zero_on_the_new_structures():
    doc = regression("table-without-caption.tex")
    assert residue_per_1k(doc.text) == 0


def test_small_eprint_of_nested_defs_stops_at_the_document_cap_with_default_limits():
    """Issue 11's case, with the default limits: each use stays under the per-use cap, so only the
    document-wide cap (relative to the input size) can stop it; it must, while growing."""
    levels = "abcde"
    tex = "\\documentclass{article}\n\\def\\a{lol lol lol lol lol lol lol lol lol lol }\n" + "".join(
        rf"\def\{n}{{{(chr(92) + p) * 10}}}" + "\n" for p, n in zip(levels, levels[1:], strict=False)
    ) + "\\begin{document}\n" + "\\e\n" * 200 + "\\end{document}\n"
    assert len(gzip.compress(tex.encode())) < 2000
    start = time.perf_counter()
    doc, _ = convert_eprint(gzip.compress(tex.encode()))
    assert time.perf_counter() - start < 30
    assert len(doc.text) < 2_000_000  # uncapped: 200 uses x 440 KB = 88 MB
    assert any("document expansion limit" in e for e in doc.macro_errors)
    assert doc.losses["expansion-limit", "document"] == 1


def test_a_failed_use_is_left_as_written_with_its_arguments():
    doc = body(r"\def\radec#1:#2;{RA #1h#2m}Seen at \radec 10-20 only, then text.")
    assert "10-20 only, then text." in doc.text and doc.losses["expansion", "\\radec"] == 1


def test_algorithm2e_blocks_keywords_and_comments():
    doc = body(r"""\begin{algorithm}[t]\caption{Descent}\KwIn{data $d$} \Params{rate $\alpha$}
\tcc{main loop}\For{$i<M$}{ update $x$ \; \eIf{done}{stop\;}{go on\;} } \Return{$x$}
\end{algorithm}""")
    assert "Algorithm: Descent" in doc.text and "[t]" not in doc.text
    assert ("1. Input: data $d$\n2. Params: rate $\\alpha$\n3. ▷ main loop\n4. for $i<M$ do\n5. update $x$\n"
            "6. if done then\n7. stop\n8. else\n9. go on\n10. end if\n11. end for\n12. return $x$") in doc.text


def test_icons_are_not_losses_and_table_notes_keep_their_mark():
    doc = body(r"\newcommand{\tablenotemark}[1]{\rlap{$^{\rm #1}$}}Code \faGithub{} here\tablenotemark{a}.")
    assert doc.losses == {} and doc.text == "Code here$^{\\rm a}$."


def test_inline_thebibliography_is_dropped_like_the_bbl_and_not_a_loss():
    doc = body(r"""Text [cite].
\begin{thebibliography}{9}\bibitem{a} A. Author, ApJ 1, 2 (2020).\end{thebibliography}""")
    assert doc.text == "Text [cite]." and doc.losses == {}


def test_deluxetable_rows_written_inside_tablehead():
    doc = body(r"""\begin{deluxetable*}{lr}[hbtp]\tablehead{\colhead{P} & \colhead{Prob.} \\ \hline
44.17 & 0.071 \\ \hline 45.00 & 0.069 \\}\end{deluxetable*}""")
    lines = doc.text.split("\n")
    assert lines == ["| P | Prob. |", "|---|---|", "| 44.17 | 0.071 |", "| 45.00 | 0.069 |"]


def test_many_verbatim_blocks_before_the_end_do_not_recurse():
    doc = body("\\begin{verbatim}\nx\n\\end{verbatim}\n" * 3000 + "Last words.")
    assert doc.text.endswith("Last words.")


def test_backticks_that_are_not_a_fence_do_not_lose_the_paper():
    doc = body(r"A \verb|`| quote ``x'' and \verb|``| more, then text.")
    assert doc.text.endswith("then text.")


def test_xparse_environment_arguments_in_begin_and_end_code():
    doc = body(r"\NewDocumentEnvironment{note}{O{Note} m}{\textbf{#1 (#2):} }{ [end of #2]}"
               r"\begin{note}{A}first\end{note} \begin{note}[Remark]{B}second\end{note}")
    assert doc.text == "Note (A): first [end of A] Remark (B): second [end of B]"


def test_refused_box_trick_counted_per_use_and_package_internals_not_counted():
    unused = body(r"\newcommand{\odd}{\hbox{$\star$\kern-1em\lower2pt\hbox{$\circ$}}}Plain text.")
    assert unused.losses == {}
    doc = latex_to_text(r"\begin{document}Text.\end{document}",
                        preamble=r"\ifdim\wd0>1pt \relax\fi\def\bad#2#1{x}")
    assert doc.losses == {}


# -- found in review (review-1) -------------------------------------------------------------------
@pytest.mark.parametrize("tex, want", [
    (r"Use \lstinline!x%y! then more.", "Use `x%y` then more."),
    (r"Use \lstinline[language=C]|a%b| then more.", "Use `a%b` then more."),
    ("Use \\lstinline{q%r} end.\nNext line.", "Use `q%r` end. Next line."),
    (r"Use \mintinline{python}|c%d| and \mintinline[fontsize=\small]{c}{e%f} end.", "Use `c%d` and `e%f` end."),
    (r"\newcommand\foo{BAR}Use \lstinline|\foo| and \verb+\foo%+ not \foo.", "Use `\\foo` and `\\foo%` not BAR."),
])
def test_inline_verbatim_commands_keep_percent_and_the_rest_of_the_line(tex, want):
    assert body(tex).text == want


def test_unclosed_verb_stops_at_the_line_end():
    assert body("A \\verb|x% y\nnext line.").text == "A `x% y` next line."


@pytest.mark.parametrize("tex, want", [
    (r"\newtoggle{draft}\togglefalse{draft}\iftoggle{draft}{NOTE to Bob}{} Text.", "Text."),
    (r"\newtoggle{draft}\iftoggle{draft}{D}{F} \toggletrue{draft}\iftoggle{draft}{D}{F}", "F D"),
    (r"\newtoggle{x}\settoggle{x}{true}\nottoggle{x}{N}{Y}", "Y"),
    (r"\providetoggle{x}\toggletrue{x}\providetoggle{x}\iftoggle{x}{kept}{lost}", "kept"),
    (r"\newbool{long}\setbool{long}{false}\ifbool{long}{L}{S} \notbool{long}{n}{y}", "S n"),
    (r"\newbool{draft}\booltrue{draft}\ifdraft D\else F\fi", "D"),
    (r"\newboolean{long}\setboolean{long}{false}\ifthenelse{\boolean{long}}{L}{S}", "S"),
    (r"\newboolean{long}\setboolean{long}{TRUE}\ifthenelse{\not\boolean{long}}{L}{S}", "S"),
    (r"\newif\ifnotes\ifthenelse{\boolean{notes}}{hidden}{shown}", "shown"),
])
def test_etoolbox_toggles_and_booleans_decide_their_branch(tex, want):
    doc = body(tex)
    assert doc.text == want and doc.losses == {}


def test_undeclared_toggle_is_undecided_and_counted():
    doc = body(r"\iftoggle{unknown}{A}{B}")
    assert doc.text == "A" and doc.losses["conditional", "\\iftoggle"] == 1


@pytest.mark.parametrize("tex, want", [
    ("\\def\\beginsection#1\\par{\\section{#1}}\\beginsection Introduction\n\nText here.", "## Introduction\n\nText here."),
    ("\\def\\note#1\\par{<#1>}\\note one\ntwo\n\nnext", "<one two>next"),  # TeX eats the \\par token
    ("\\def\\note#1\\par{<#1>}\\note a \\parskip b\\par c", "<a b> c"),  # \\parskip is not \\par
    ("\\def\\x#1\\end{[#1]}\\x a\\endgraf b\\end c", "[a b] c"),
])
def test_delimited_def_ended_by_par_takes_the_blank_line_and_whole_control_words(tex, want):
    doc = body(tex)
    assert doc.text == want and ("expansion", "\\note") not in doc.losses


@pytest.mark.parametrize("tex, want", [
    (r"\begin{tabular}{ll} \begin{tabular}{c}Mass\\(kg)\end{tabular} & z \\ a & b \\\end{tabular}",
     ["| Mass (kg) | z |", "|---|---|", "| a | b |"]),
    (r"\begin{tabular}{ll} eq & $\begin{array}{cc}1&2\\3&4\end{array}$ \\ a & b \\\end{tabular}",
     ["| eq | $\\begin{array}{cc}1&2\\\\3&4\\end{array}$ |", "|---|---|", "| a | b |"]),
])
def test_a_tabular_or_array_inside_a_cell_stays_in_its_cell(tex, want):
    doc = body(tex)
    assert doc.text.split("\n") == want and doc.losses == {}


@pytest.mark.parametrize("tex, want", [
    (r"\ifcase 2 zero\or one\or two\else many\fi.", "two."),
    (r"\ifcase 0 zero\or one\fi.", "zero."),
    (r"\ifcase 5 zero\or one\else many\fi.", "many."),
    (r"\ifcase 3 zero\or one\fi.", "."),
    (r"\ifcase1 a\or \iftrue b\fi\or c\fi.", "b."),
    (r"\newcommand\mon[1]{\ifcase#1\or Jan\or Feb\or Mar\fi}\mon{2} \mon{3}.", "Feb Mar."),
    (r"\ifcase 1 \ifcase 0 x\or y\fi\or z\or w\fi.", "z."),
])
def test_ifcase_takes_the_numbered_case(tex, want):
    doc = body(tex)
    assert doc.text == want and doc.losses == {}


def test_ifcase_on_a_counter_takes_case_zero_and_is_counted():
    doc = body(r"\ifcase\value{x} a\or b\fi.")
    assert doc.text == "a." and doc.losses == {("conditional", "\\ifcase"): 1}


@pytest.mark.parametrize("defn, symbol", [  # the `=` of register settings inside the box is not a glyph
    (r"\def\lsim{\mathrel{\lower2.5pt\vbox{\lineskip=0pt\baselineskip=0pt\hbox{$<$}\hbox{$\sim$}}}}", r"\lesssim"),
    (r"\def\gsim{\mathrel{\lower2.5pt\vbox{\lineskip=0pt\baselineskip=0pt\hbox{$>$}\hbox{$\sim$}}}}", r"\gtrsim"),
])
def test_vbox_stacked_box_trick_symbols_become_standard(defn, symbol):
    name = re.search(r"\\def\\([a-z]+)", defn).group(1)
    doc = body(defn + rf" so $x \{name} 1$.")
    assert doc.text == f"so $x {symbol} 1$." and doc.losses == {}


def test_package_settings_in_the_body_are_not_text():
    doc = body(r"\sisetup{per-mode=symbol}\captionsetup{font=small}\lstset{language=C}\setkeys{Gin}{width=3cm}"
               r"\setminted{fontsize=\small}Speed \SI{3.2}{\kilo\metre}.")
    assert doc.text == "Speed 3.2 km." and doc.losses == {}


def test_algpseudocode_function_and_procedure_are_named_as_printed():
    doc = body(r"\begin{algorithmic}\Function{Fit}{$d$}\State step\EndFunction\Procedure{Run}{$a$}\EndProcedure"
               r"\end{algorithmic}")
    assert doc.text == "1. function Fit($d$)\n2. step\n3. end function\n4. procedure Run($a$)\n5. end procedure"


@pytest.mark.parametrize("tex, want", [
    (r"\newcommand\foo{FOO}a\csname foo\endcsname b", "aFOO b"),
    (r"\expandafter\def\csname bar\endcsname{BAR}\bar{} y", "BAR y"),
    (r"\expandafter\newcommand\csname q\endcsname[1]{<#1>}\q{z}", "<z>"),
    (r"\makeatletter\@namedef{obj}{Vega}\makeatother Star \@nameuse{obj}.", "Star Vega."),
    (r"\newcommand\m[1]{(\csname #1\endcsname)}\newcommand\pc{parsec}\m{pc}", "(parsec)"),
    (r"\newcommand\n[1]{\@nameuse{#1}}\newcommand\longmacroname{ok}\n{longmacroname}", "ok"),
])
def test_csname_and_namedef_build_the_control_sequence(tex, want):
    doc = body(tex)
    assert doc.text == want and doc.losses == {} and doc.macro_errors == []


def test_csname_of_a_name_that_is_not_letters_is_counted():
    doc = body(r"\csname fig1\endcsname x")
    assert doc.text == "x" and doc.losses == {("expansion", "\\csname fig1"): 1}
