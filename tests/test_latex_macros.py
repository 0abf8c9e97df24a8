"""User-macro expansion on small hand-written LaTeX: each definition form, limits, bad input."""

from __future__ import annotations

import time

from astrodata.latex.macros import ExpansionLimits, expand_macros


def expand(tex: str, **kw) -> str:
    return expand_macros(tex, **kw)[0]


def test_newcommand_without_and_with_arguments():
    out, stats = expand_macros(r"\newcommand{\msun}{M_\odot}\newcommand\pair[2]{(#1, #2)}A $\msun$ \pair{x}{y}.")
    assert out == r"A $M_\odot$ (x, y)."
    assert (stats.defined, stats.expanded, stats.errors) == (2, 2, [])


def test_optional_argument_default_and_override():
    tex = r"\newcommand{\unit}[2][km]{#2\,#1}\unit{3} and \unit[pc]{4}"
    assert expand(tex) == r"3\,km and 4\,pc"


def test_starred_renew_and_provide():
    tex = (
        r"\newcommand*{\a}{one}\renewcommand{\a}{two}\providecommand{\a}{three}"
        r"\providecommand{\b}{four}\a \b"
    )
    assert expand(tex) == "two four"


def test_space_after_argumentless_macro_is_kept():
    assert expand(r"\newcommand{\kms}{km/s}a \kms{} b, \kms and") == "a km/s{} b, km/s and"


def test_def_with_parameters_and_nested_definition():
    tex = r"\def\sq#1{#1^2}\def\mk#1{\def\made{#1!}}\mk{hi}$\sq{x}$ \made"
    assert expand(tex) == "$x^2$ hi!"


def test_delimited_def_matches_like_tex():
    out, stats = expand_macros(r"\def\pt#1,#2.{(#1;#2)}before \pt 1,2. after")
    assert out == "before (1;2) after" and stats.errors == []


def test_let_copies_the_current_meaning():
    tex = r"\newcommand{\old}{A}\let\new\old\renewcommand{\old}{B}\new\old \let\eq=\equiv $\eq$"
    assert expand(tex).split() == ["AB", r"$\equiv$"]


def test_declare_math_operator():
    tex = r"\DeclareMathOperator{\Tr}{Tr}\DeclareMathOperator*{\argmax}{arg\,max}$\Tr A = \argmax_x f$"
    assert expand(tex) == r"$\operatorname{Tr} A = \operatorname*{arg\,max}_x f$"


def test_newenvironment_with_arguments_and_default():
    tex = (
        r"\newenvironment{note}[2][Note]{\textbf{#1 #2:} }{ (end)}"
        r"\begin{note}{1}text\end{note} \begin{note}[Remark]{2}more\end{note}"
    )
    assert expand(tex) == r"\textbf{Note 1:} text (end) \textbf{Remark 2:} more (end)"


def test_equation_shorthands_expand_to_environments():
    tex = r"\newcommand{\be}{\begin{equation}}\newcommand{\ee}{\end{equation}}\be x=1 \ee"
    assert expand(tex) == r"\begin{equation} x=1 \end{equation}"


def test_body_takes_arguments_from_the_text_after_it():
    assert expand(r"\newcommand{\bb}{\textbf}\bb{x}") == r"\textbf{x}"
    # \@ifnextchar look-ahead: a unit macro taking any number of groups (as in a real paper)
    tex = (
        r"\newcommand{\unit}[1]{\,\mathrm{#1}\chk}\newcommand{\chk}{\@ifnextchar\bgroup{\more}{}}"
        r"\newcommand{\more}[1]{\,\mathrm{#1}\@ifnextchar\bgroup{\more}{}}$3\unit{m}{s^{-1}}$ ok"
    )
    assert expand(tex) == r"$3\,\mathrm{m}\,\mathrm{s^{-1}}$ ok"


def test_generated_value_tables_with_pdfstrcmp_branches():
    """showyourwork-style generated macros: \\macros[a][b] picks nested values via \\ifnum\\pdfstrcmp."""
    tex = (
        r"\newcommand\vals[1][all]{\ifnum\pdfstrcmp{#1}{all}=0\def\vals@out{ALL}\else"
        r"\ifnum\pdfstrcmp{#1}{Mass}=0\def\vals@out{\vals@M}\else\def\vals@out{??}\fi\fi\vals@out}"
        r"\newcommand\vals@M[1][all]{\ifnum\pdfstrcmp{#1}{median}=0\def\vals@M@out{9.5}\else"
        r"\def\vals@M@out{??}\fi\vals@M@out}"
        r"m = \vals[Mass][median], all = \vals, bad = \vals[Spin]"
    )
    assert expand(tex) == "m = 9.5, all = ALL, bad = ??"


def test_recursive_macros_end_in_recorded_errors_quickly():
    limits = ExpansionLimits(max_per_use=500)
    for tex in (r"\def\a{\a}x\a y", r"\def\a{x\a}\a", r"\newcommand{\b}{\b\b}\b", r"\def\c{\c{}}\c"):
        start = time.perf_counter()
        out, stats = expand_macros(tex, limits)
        assert time.perf_counter() - start < 2
        assert stats.errors, tex
        assert len(out) < 10_000


def test_document_wide_output_limit_stops_expanding():
    tex = r"\newcommand{\big}{" + "x" * 1000 + r"\relax}" + r"\big" * 100
    out, stats = expand_macros(tex, ExpansionLimits(max_output_chars=20_000))
    assert any("document expansion limit" in e for e in stats.errors)
    assert len(out) < 30_000


def test_malformed_definitions_do_not_crash():
    for tex in (
        r"\newcommand{\x}[2]{#1",  # unbalanced body
        r"\newcommand{\y}[z]{a}\y",  # bad argument count
        r"\newcommand",  # at end of input
        r"\newcommand{\p}[1]{<#1>}\p",  # argument missing at end of input
        r"\newenvironment{e}{",
        r"\def",
        "\\let",
        r"\newcommand{\q}[1]{#1}\q}",
    ):
        out, stats = expand_macros(tex)
        assert isinstance(out, str)


def test_package_definitions_read_but_internals_and_structure_protected():
    sty = (
        r"\newcommand{\Msun}{M_\odot}\def\@tmp{x}\renewcommand{\section}{BROKEN}"
        r"\def\icmltitle#1{\gdef\@title{#1}}"
    )
    out, stats = expand_macros(r"\section{A} $\Msun$ \icmltitle{T}", preamble=sty)
    assert out == r"\section{A} $M_\odot$ \icmltitle{T}"
    assert stats.defined == 1


def test_verbatim_and_verb_are_not_expanded():
    tex = r"\newcommand{\x}{X}\x \verb|\x| \begin{verbatim}\x\end{verbatim}"
    assert expand(tex) == r"X \verb|\x| \begin{verbatim}\x\end{verbatim}"
