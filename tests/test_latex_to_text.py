"""LaTeX -> text on small hand-written snippets (one feature each), then the 30 real e-prints."""

from __future__ import annotations

import re
import time

import pytest
from conftest import shared

from astrodata.latex.flatten import strip_comments
from astrodata.latex.to_text import LatexError, TextOptions, convert_eprint, latex_to_text, residue_per_1k
from astrodata.sources.eprints import iter_local_eprints


def body(tex: str, **opts) -> str:
    return latex_to_text("\\begin{document}\n" + tex + "\n\\end{document}", TextOptions(**opts)).text


# -- structure ------------------------------------------------------------------------------------
def test_title_abstract_and_headings():
    doc = latex_to_text(
        r"""\documentclass{aastex631}
\newcommand{\obj}{V1298~Tau}
\begin{document}
\title{Spots on \obj\thanks{Funded.}}
\author{A. Person}\affiliation{Somewhere U.}\email{a@b.c}
\begin{abstract}We observe \obj{} twice.\end{abstract}
\keywords{stars: spots}
\maketitle
\section{Introduction}\label{sec:intro}
Text one.
\subsection*{Data}
Text two.
\subsubsection{Detail}
Text three.
\end{document}"""
    )
    assert doc.title == "Spots on V1298 Tau"
    assert doc.abstract == "We observe V1298 Tau twice."
    assert doc.text.split("\n\n")[:2] == ["# Spots on V1298 Tau", "We observe V1298 Tau twice."]
    for line in ("## Introduction", "### Data", "#### Detail"):
        assert line in doc.text.split("\n")
    for gone in ("Person", "Somewhere", "a@b.c", "Funded", "sec:intro"):
        assert gone not in doc.text
    assert "Keywords: stars: spots" in doc.text.split("\n")  # keywords are kept (issue 10)
    assert doc.headings == 4 and doc.macros_expanded == 2  # the title line counts as a heading


def test_structured_aa_abstract_and_title_in_preamble():
    doc = latex_to_text(
        r"""\documentclass{aa}\title{Dust}\abstract{Context here.}{Aims here.}{Methods.}
\begin{document}\maketitle\section{Intro} Body.\end{document}"""
    )
    assert doc.title == "Dust"
    assert doc.abstract.split() == ["Context", "here.", "Aims", "here.", "Methods."]
    assert "Body." in doc.text and "Context" not in doc.text.split("## Intro")[1]


def test_appendix_kept_bibliography_dropped():
    text = body(
        r"""Main text.
\bibliographystyle{aasjournal}\bibliography{refs}
\begin{thebibliography}{9}\bibitem{x} A. Author, ApJ 1, 2 (2000).\end{thebibliography}
\appendix
\section{Derivation} Appendix text."""
    )
    assert "## Derivation" in text and "Appendix text." in text
    assert "Author" not in text and "aasjournal" not in text and "refs" not in text


def test_lists_footnotes_and_acknowledgments():
    text = body(
        r"""Intro\footnote{A side remark with $x$.} continues.
\begin{itemize}\item first \item[b)] second\end{itemize}
\begin{acknowledgments}We thank people.\end{acknowledgments}"""
    )
    assert "Intro (A side remark with $x$.) continues." in text
    assert "- first" in text and "- b) second" in text
    assert "## Acknowledgments\n\nWe thank people." in text


def test_layout_options_and_one_or_two_group_collaboration_dropped():
    text = body(
        r"""\collaboration{(The X Team)}
\keywords{secret}
\collaboration{20}{(The Y Team)}
Line one\\[2pt] line two.
\begin{itemize}[leftmargin=*]\item point\end{itemize}"""
    )
    assert text == "Keywords: secret\n\nLine one\nline two.\n\n- point"


# -- math -----------------------------------------------------------------------------------------
def test_inline_and_display_math_normalised_and_macros_expanded_inside():
    text = body(
        r"""\newcommand{\msun}{M_\odot}
Mass \(m = 3\msun\) and $n$.
\[ E = mc^2 \]
$$a=b$$
\begin{equation}\label{eq:1} F = ma \nonumber \end{equation}
\begin{align*} x &= 1 \\ y &= 2 \end{align*}
\begin{eqnarray} p &=& q \end{eqnarray}"""
    )
    assert r"Mass $m = 3M_\odot$ and $n$." in text
    assert "$$E = mc^2$$" in text and "$$a=b$$" in text and "$$F = ma$$" in text
    assert "$$\\begin{aligned}\nx &= 1 \\\\ y &= 2\n\\end{aligned}$$" in text
    assert "\\begin{aligned}\np &=& q\n\\end{aligned}" in text
    assert "msun" not in text and "eq:1" not in text


def test_nested_dollars_inside_text_in_math_stay_one_span():
    text = body(r"We have $\mbox{for $x$ large} y$ here.")
    assert r"$\mbox{for $x$ large} y$" in text
    assert residue_per_1k(text) == 0


def test_ensuremath_in_prose_becomes_inline_math():
    text = body(r"\newcommand{\kms}{\ensuremath{\mathrm{km\,s^{-1}}}}speeds of 30\,\kms{} today")
    assert r"speeds of 30 $\mathrm{km\,s^{-1}}$ today" in text


# -- citations and references -----------------------------------------------------------------------
@pytest.mark.parametrize(
    ("mode", "expected"),
    [
        ("marker", "Shown by [cite], see e.g. [cite] and Fig. [ref]."),
        ("keys", "Shown by [a1], see e.g. [b2, c3] and Fig. [fig:x]."),
        ("drop", "Shown by, see e.g. and Fig.."),
    ],
)
def test_citation_and_reference_modes(mode, expected):
    text = body(r"Shown by \citet{a1}, see \citep[e.g.][]{b2,c3} and Fig.~\ref{fig:x}.",
                citations=mode, references=mode)
    assert text == expected


def test_natbib_post_note():
    assert body(r"As in \citep[][Sect. 2]{k}.") == "As in [cite] Sect. 2."


# -- floats -----------------------------------------------------------------------------------------
@pytest.mark.parametrize("tables", ["markdown", "drop"])
def test_captions_kept_figure_bodies_dropped_tables_as_option(tables):
    text = body(
        r"""Before.
\begin{figure*}\centering\includegraphics[width=0.5\textwidth]{fig1.pdf}
\caption{Light curve of \emph{the star}.}\label{fig:lc}\end{figure*}
\begin{table}\caption[short]{Fit results.}\begin{tabular}{cc} 1.23 & 4.56 \\ \end{tabular}\end{table}
\begin{deluxetable}{cc}\tablecaption{Sample.}\tablehead{\colhead{A}}\startdata 7.89 \enddata\end{deluxetable}
After.""", tables=tables,
    )
    assert "Figure: Light curve of the star." in text
    assert "Table: Fit results." in text and "Table: Sample." in text
    for gone in ("fig1", "textwidth", "short", "fig:lc"):
        assert gone not in text
    if tables == "drop":
        assert "1.23" not in text and "7.89" not in text
    else:
        assert "| 1.23 | 4.56 |" in text.split("\n") and "| A |" in text.split("\n") and "| 7.89 |" in text
    assert text.startswith("Before.") and text.endswith("After.")


def test_captions_can_be_turned_off():
    text = body(r"\begin{figure}\caption{Cap.}\end{figure}Body.", captions=False)
    assert text == "Body."


# -- typography -----------------------------------------------------------------------------------
def test_typographic_commands_become_plain_text():
    text = body(
        r"A 5\,\% rise \& fall~here; \'etoile, G\"odel, fa\c{c}ade, \v{S}koda, Erd\H{o}s, \ss. "
        r"\textit{It} \emph{em} \textbf{bold} \textsc{Caps} \texttt{code}. "
        r"``Quoted'' text --- and 1--2 pages\ldots\ See \url{https://x.org/a_b} or \href{https://y.org}{this link}."
    )
    assert text == (
        "A 5 % rise & fall here; étoile, Gödel, façade, Škoda, Erdős, ß. It em bold Caps code. "
        '"Quoted" text — and 1–2 pages... See https://x.org/a_b or this link.'
    )


def test_journal_and_change_tracking_commands():
    text = body(r"\S 2: \enquote{Great} \ion{Ca}{2} and \ion{Li}{1}; \edit1{kept}\deleted{gone} \replaced{new}{old}\todo[inline]{note}.")
    assert text == '§ 2: "Great" Ca II and Li I; kept new.'


def test_comments_stripped_escaped_percent_kept():
    assert body("Value 50\\% % a comment\nnext") == "Value 50% next"


def test_unknown_macros_keep_their_argument_text():
    doc = latex_to_text(r"The \mysterymacro{important words} and \another[opt]{more} stay; \loner alone.")
    assert doc.text == "The important words and more stay; alone."
    assert doc.unknown_commands == 3


def test_siunitx_quantities_in_prose():
    text = body(r"At \qty{10}{\kilo\parsec}, \SI{3e-5}{\per\second}, \num{1000} and \ang{;;2.5}.")
    assert text == "At 10 kpc, 3×10^-5 s^-1, 1000 and 2.5″."


def test_acronyms_first_use_long_then_short_and_plurals():
    doc = latex_to_text(
        r"""\DeclareAcronym{GW}{short=GW, long=gravitational wave}
\begin{document}\acp{GW} are \ac{GW} signals.
\begin{acronym}\acro{BH}{black hole}\newacronym{ns}{NS}{neutron star}\end{acronym}
A \ac{BH}, a \ac{BH}; \Gls{ns} and \glspl{ns}.\end{document}"""
    )
    assert doc.text == (
        "gravitational waves (GWs) are GW signals. A black hole (BH), a BH; Neutron star (NS) and NSs."
    )


def test_iffalse_blocks_and_spacing_assignments_dropped():
    assert body(r"Kept \iffalse dropped \if x nested \fi still dropped \fi text.\looseness=-1") == "Kept text."


# -- residue --------------------------------------------------------------------------------------------
def test_residue_counts_commands_and_braces_outside_math_only():
    words = " ".join(["word"] * 998)
    assert residue_per_1k(words + r" $\alpha + {b}$ $$\frac{1}{2}$$") == 0
    assert residue_per_1k(words + r" \foo {x}") == pytest.approx(3000 / 1000)  # \foo, {, } over 1000 words
    assert residue_per_1k(r"\begin{equation}\alpha\end{equation} plain") == 0
    assert residue_per_1k("") == 0


# -- bad input --------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "tex",
    [
        r"\begin{document}\section{Open {brace text\end{document}",
        r"\begin{document}} stray } braces {\end{document}",
        r"\begin{document}$ unclosed math and text\end{document}",
        r"\begin{document}\begin{figure}\caption{never closed\end{document}",
        r"\newenvironment{x}[9]{#9}\begin{document}\begin{x}\end{document}",
        r"\begin{document}\footnote{" + "{" * 5000 + r"deep\end{document}",
        r"\begin{document}" + r"\textbf{" * 3000 + "deep" + "}" * 3000 + r"\end{document}",
        r"\def\a{\a}\begin{document}\a text\end{document}",
        "no document environment at all \\section{A} text",
        "",
    ],
)
def test_malformed_input_converts_degraded_without_crashing(tex):
    start = time.perf_counter()
    doc = latex_to_text(tex)
    assert time.perf_counter() - start < 10
    assert isinstance(doc.text, str) and doc.words == len(doc.text.split())


def test_huge_input_refused_with_reason_and_large_single_line_converts():
    with pytest.raises(LatexError) as err:
        latex_to_text("x" * 2001, TextOptions(max_chars=2000))
    assert err.value.reason == "too-large"
    line = ("word {brace} \\cmd{arg} $m$ " * 40_000)[:1_000_000]  # 1 MB, no newline
    start = time.perf_counter()
    doc = latex_to_text(line)
    assert time.perf_counter() - start < 20
    assert doc.words > 100_000 and residue_per_1k(doc.text) == 0


# -- the 30 real e-prints ---------------------------------------------------------------------------------
_DEFINITION = re.compile(
    r"\\(?:newcommand|renewcommand|providecommand|DeclareRobustCommand)\*?\s*\{?\s*\\([A-Za-z]+)\s*\}?"
)
# Unit macros of real papers and a piece of their definition (copied from the source, checked
# against it below) that the converted text must contain where the macro was used.
UNIT_MACROS = [
    ("cosmic-cousins", "msun", r"{\,\rm M}_\odot"),
    ("spectral-sirens-gps", "Msun", r"\text{M}_{\odot}"),
    ("lensing-lfi", "Msun", r"\textrm{M}_\odot"),
    ("v1298tau-tess", "rearth", r"$R_\oplus$"),
    ("fast-rotating-binaries", "kms", r"\mathrm{km\,s^{-1}}"),
    ("snail-time", "kms", r"\mathrm{km}~\mathrm{s}^{-1}"),
    ("bouma-cpv", "kms", "s$^{-1}$"),
    ("bouma-cpv", "msun", r"$M_\odot$"),
]


@pytest.fixture(scope="module")
def papers():
    folder = shared("arxiv-eprints")
    out = {}
    for eprint_id, path in iter_local_eprints(folder):
        doc, flat = convert_eprint(path)
        out[eprint_id] = (doc, strip_comments(flat.text) + "\n".join(flat.packages.values()))
    return out


def test_all_real_papers_convert_with_low_residue_headings_and_math(papers):
    assert len(papers) == 30
    for eprint_id, (doc, _) in papers.items():
        assert doc.words > 500, eprint_id
        assert doc.title, eprint_id
        assert doc.residue_per_1k <= 0.5, (eprint_id, doc.residue_per_1k)
        assert doc.math_spans > 0 and "$" in doc.text, eprint_id
        min_headings = 1 if eprint_id == "gw150914-rd-comment" else 3  # a Comment without \section
        assert doc.headings >= min_headings, eprint_id


def test_defined_macros_of_real_papers_leave_no_trace(papers):
    checked = 0
    for eprint_id, (doc, tex) in papers.items():
        for name in {m.group(1) for m in _DEFINITION.finditer(tex)}:
            if len(re.findall(r"\\" + name + r"(?![A-Za-z@])", tex)) > 1:  # defined and used
                checked += 1
                assert not re.search(r"\\" + name + r"(?![A-Za-z@])", doc.text), (eprint_id, name)
    assert checked > 200


@pytest.mark.parametrize(("eprint_id", "name", "expansion"), UNIT_MACROS)
def test_unit_macros_appear_expanded(papers, eprint_id, name, expansion):
    doc, tex = papers[eprint_id]
    definition = re.search(r"\\newcommand\{\\" + name + r"\}.*", tex)
    assert definition and expansion in definition.group()
    assert expansion.replace("~", " ") in doc.text.replace("~", " ")
    assert not re.search(r"\\" + name + r"(?![A-Za-z])", doc.text)
