"""Main-file detection and input flattening, on the 30 real papers and on crafted sources."""

from __future__ import annotations

import json
import random

import pytest
from conftest import shared
from hostile import session_hostile_eprints

from astrodata.latex.flatten import find_main_file, flatten, strip_comments, survey
from astrodata.sources.eprints import Eprint, EprintError, unpack_eprint


def eprint(**files: str) -> Eprint:
    """Keyword names use `__` for `/` and `_` for `.`: `sec__intro_tex` -> `sec/intro.tex`."""
    named = {k.replace("__", "/").replace("_tex", ".tex").replace("_bbl", ".bbl").replace("_sty", ".sty"): v
             for k, v in files.items()}
    return Eprint("test", "tar", named, dict.fromkeys(named, "utf-8"))


def doc(body: str, preamble: str = "") -> str:
    return f"\\documentclass{{article}}\n{preamble}\\begin{{document}}\n{body}\n\\end{{document}}\n"


def manifest() -> list[dict]:
    return json.loads(shared("arxiv-eprints", "MANIFEST.json").read_text())


# --- the 30 real papers -------------------------------------------------------------------------


def test_real_papers_main_file_inputs_and_missing_match_the_manifest():
    folder = shared("arxiv-eprints")
    for paper in manifest():
        ep = unpack_eprint(folder / f"{paper['slug']}.tar.gz")
        flat = flatten(ep)
        slug = paper["slug"]
        assert flat.main_file == paper["main_tex"], slug
        assert sorted(flat.missing_inputs) == sorted(paper["unresolved_refs"]), slug
        # every .tex file of these e-prints is reached from the main file, exactly once
        assert sorted(flat.included) == sorted(n for n in ep.files if n.endswith(".tex")), slug
        for name in flat.included[1:]:
            lines = [ln for ln in ep.files[name].splitlines() if len(ln.strip()) > 20 and "\\input" not in ln]
            if lines:
                assert lines[0] in flat.text, (slug, name)
        assert flat.text.count("\\begin{document}") == 1, slug
        assert "\r" not in flat.text
        assert flat.notes == [], slug


def test_commented_inputs_are_neither_expanded_nor_missing():
    ep = unpack_eprint(shared("arxiv-eprints", "vermin.tar.gz"))
    assert "% \\input{sections/01_observations}" in ep.files["ms.tex"]
    flat = flatten(ep)
    assert flat.missing_inputs == [] and "% \\input{sections/01_observations}" in flat.text


def test_main_file_in_a_subfolder():
    flat = flatten(unpack_eprint(shared("arxiv-eprints", "differentiable-hos.tar.gz")))
    assert flat.main_file == "paper/journal_paper.tex"


def test_lone_gzipped_papers_flatten():
    folder = shared("arxiv-eprints")
    mains = {p["slug"]: p["main_tex"] for p in manifest()}
    for path in sorted(folder.glob("*.gz")):
        if path.name.endswith(".tar.gz"):
            continue
        flat = flatten(unpack_eprint(path))
        slug = path.name[:-3]
        assert flat.main_file == mains[slug].rsplit("/", 1)[-1]
        assert flat.missing_inputs == [] and "\\begin{document}" in flat.text


@pytest.mark.parametrize("slug", ["mab-rings", "symbolic-gw-population"])
def test_bbl_is_inlined_or_dropped(slug):
    ep = unpack_eprint(shared("arxiv-eprints", f"{slug}.tar.gz"))
    inline = flatten(ep, bbl="inline")
    assert inline.bbl == "ms.bbl"
    assert "\\begin{thebibliography}" in inline.text and "\\bibliography{" not in strip_comments(inline.text)
    dropped = flatten(ep, bbl="drop")
    assert dropped.bbl is None
    assert "thebibliography" not in dropped.text and "\\bibliography{" not in strip_comments(dropped.text)


def test_local_packages_are_handed_over_for_macro_harvesting():
    flat = flatten(unpack_eprint(shared("arxiv-eprints", "spectral-sirens-gps.tar.gz")))
    assert set(flat.packages) == {"macros", "showyourwork"}
    assert "\\newcommand{\\Msun}" in flat.packages["macros"]


def test_survey_covers_every_paper():
    rows = survey(shared("arxiv-eprints"))
    assert len(rows) == 30 and not [r for r in rows if "error" in r]
    assert {r["encoding"] for r in rows} == {"utf-8"}


# --- flattening rules ---------------------------------------------------------------------------


def test_input_forms_and_extensions():
    ep = eprint(
        ms_tex=doc("\\input{a}\n\\input b \n\\input{c.tex}\n\\include{d}\n\\input{sec/e}\nEND"),
        a_tex="AAA", b_tex="BBB", c_tex="CCC", d_tex="DDD", sec__e_tex="EEE",
    )
    flat = flatten(ep)
    assert [ln for ln in flat.text.splitlines() if ln in {"AAA", "BBB", "CCC", "DDD", "EEE"}] == [
        "AAA", "BBB", "CCC", "DDD", "EEE"]
    assert flat.included == ["ms.tex", "a.tex", "b.tex", "c.tex", "d.tex", "sec/e.tex"]
    assert flat.missing_inputs == []


def test_extensionless_file_and_tex_preference():
    """TeX tries name.tex before name."""
    ep = eprint(ms_tex=doc("\\input{table}"), table="RAW", table_tex="TEX")
    assert "TEX" in flatten(ep).text and "RAW" not in flatten(ep).text
    ep = eprint(ms_tex=doc("\\input{table}"), table="RAW")
    assert "RAW" in flatten(ep).text


def test_inputs_resolve_from_the_main_files_folder():
    ep = eprint(paper__ms_tex=doc("\\input{sections/intro}"), paper__sections__intro_tex="INTRO\n\\input{sections/more}",
                paper__sections__more_tex="MORE", sections__intro_tex="WRONG ONE")
    flat = flatten(ep)
    assert flat.main_file == "paper/ms.tex"
    assert "INTRO" in flat.text and "MORE" in flat.text and "WRONG" not in flat.text


def test_import_and_subimport_follow_their_folders():
    ep = eprint(
        ms_tex=doc("\\import{chapters/}{one}\n\\subimport*{x/}{y}"),
        chapters__one_tex="ONE\n\\input{fig}\n\\subimport{deep/}{two}",
        chapters__fig_tex="CHAPTER FIG", fig_tex="ROOT FIG",
        chapters__deep__two_tex="TWO",
        x__y_tex="XY",
    )
    flat = flatten(ep)
    assert "ONE" in flat.text and "CHAPTER FIG" in flat.text and "ROOT FIG" not in flat.text
    assert "TWO" in flat.text and "XY" in flat.text and flat.missing_inputs == []


def test_climbing_out_of_a_subfolder_main_stays_inside_the_eprint():
    ep = eprint(paper__ms_tex=doc("\\input{../sections/a}\n\\import{../common/}{defs}\n\\input{../../x}"),
                sections__a_tex="SECTION A", common__defs_tex="DEFS", x_tex="NOT REACHABLE")
    flat = flatten(ep)
    assert "SECTION A" in flat.text and "DEFS" in flat.text and "NOT REACHABLE" not in flat.text
    assert flat.missing_inputs == ["../../x"]


def test_subfile_keeps_only_the_childs_body():
    child = "\\documentclass[../ms.tex]{subfiles}\n\\begin{document}\nCHILD BODY\n\\end{document}\n"
    ep = eprint(ms_tex=doc("\\subfile{parts/child}", "\\usepackage{subfiles}\n"), parts__child_tex=child)
    flat = flatten(ep)
    assert flat.main_file == "ms.tex"
    assert "CHILD BODY" in flat.text and flat.text.count("\\documentclass") == 1


def test_inputs_in_comments_and_verbatim_are_not_expanded():
    body = ("% \\input{a}\n\\% \\input{b}\n\\\\% \\input{c}\n\\verb|\\input{d}|\n"
            "\\begin{verbatim}\n\\input{e}\n\\end{verbatim}\n\\begin{comment}\n\\input{f}\n\\end{comment}\n")
    ep = eprint(ms_tex=doc(body), a_tex="AAA", b_tex="BBB", c_tex="CCC", d_tex="DDD", e_tex="EEE", f_tex="FFF")
    flat = flatten(ep)
    assert "BBB" in flat.text  # after an escaped percent, \input is live
    for hidden in ("AAA", "CCC", "DDD", "EEE", "FFF"):
        assert hidden not in flat.text
    assert flat.missing_inputs == []


def test_missing_inputs_recorded_in_order_as_written():
    ep = eprint(ms_tex=doc("\\input{gone/one}\n\\include{two.tex}\n\\input{gone/one}\n\\import{d/}{three}"))
    flat = flatten(ep)
    assert flat.missing_inputs == ["gone/one", "two.tex", "d/three"]
    assert "\\input{gone/one}" in flat.text  # left in place for the converter to drop


def test_paths_outside_the_eprint_are_never_read():
    ep = eprint(ms_tex=doc("\\input{/etc/passwd}\\input{../../etc/passwd}\\import{/etc/}{hostname}"
                           "\\input{C:/Windows/win}\\input{a/../../ms}"))
    flat = flatten(ep)
    assert flat.missing_inputs == ["/etc/passwd", "../../etc/passwd", "/etc/hostname", "C:/Windows/win", "a/../../ms"]
    assert "root:" not in flat.text and flat.included == ["ms.tex"]
    assert any(n.startswith("outside the e-print") for n in flat.notes)


def test_cycles_and_depth_are_cut_and_noted():
    flat = flatten(eprint(ms_tex=doc("\\input{a}"), a_tex="A\n\\input{b}", b_tex="B\n\\input{a}\n\\input{ms}"))
    assert flat.text.count("A\n") == 1 and flat.text.count("B\n") == 1
    assert any("input cycle: ms.tex -> a.tex -> b.tex -> a.tex" in n for n in flat.notes)
    chain = {f"c{i}_tex": f"L{i}\n\\input{{c{i + 1}}}" for i in range(30)}
    flat = flatten(eprint(ms_tex=doc("\\input{c0}"), **chain), max_depth=5)
    assert "L4" in flat.text and "L6" not in flat.text
    assert any("depth" in n for n in flat.notes)


def test_include_bomb_stops():
    files = {f"l{i}_tex": f"\\input{{l{i + 1}}}\n" * 10 for i in range(6)}
    with pytest.raises(EprintError) as err:
        flatten(eprint(ms_tex=doc("\\input{l0}"), l6_tex="x" * 1000, **files), max_chars=1_000_000)
    assert err.value.reason == "include-bomb"


def test_endinput_stops_the_file():
    flat = flatten(eprint(ms_tex=doc("\\input{a}\nAFTER"), a_tex="KEEP \\endinput REST OF LINE\nDROPPED\n"))
    assert "KEEP" in flat.text and "REST OF LINE" in flat.text and "DROPPED" not in flat.text and "AFTER" in flat.text


def test_bad_bbl_mode_is_refused():
    with pytest.raises(ValueError):
        flatten(eprint(ms_tex=doc("x")), bbl="keep")


# --- main-file detection ------------------------------------------------------------------------


def test_main_file_ranking_is_deterministic():
    files = {
        "ms.tex": doc("\\input{intro}"),
        "intro.tex": "Intro.",
        "reply_to_referee.tex": doc("We thank the referee." * 50),
        "old/ms.tex": doc("old draft"),
        "chapter.tex": "\\documentclass[ms.tex]{subfiles}\n\\begin{document}\nC\n\\end{document}",
        "standalone_fig.tex": doc("fig", "\\usepackage{tikz}\n"),
    }
    names = list(files)
    for seed in range(5):
        random.Random(seed).shuffle(names)
        assert find_main_file({n: files[n] for n in names}) == "ms.tex"


def test_main_file_prefers_the_one_including_others():
    files = {"a_paper.tex": doc("\\input{b_body}"), "b_body.tex": doc("body"), "c.tex": doc("short")}
    assert find_main_file(files) == "a_paper.tex"


def test_main_file_needs_documentclass_and_begin_document_outside_comments():
    with pytest.raises(EprintError) as err:
        find_main_file({"ms.tex": "%\\documentclass{article}\n\\begin{document}x\\end{document}", "a.bib": "@misc{}"})
    assert err.value.reason == "no-main-file"
    assert find_main_file({"old.tex": "\\documentstyle{aa}\n\\begin{document}\nx\n\\end{document}"}) == "old.tex"


# --- comment stripping (shared with the LaTeX stage) -------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("a % note\nb", "a b"),
        ("line%\n   joined", "linejoined"),
        ("para%\n\nnext", "para\n\nnext"),
        ("100\\% sure % not this\n", "100\\% sure "),
        ("break\\\\% gone\nnext", "break\\\\next"),
        ("\\verb|%x| and % drop\n", "\\verb|%x| and "),
        ("\\begin{verbatim}\n% kept\n\\end{verbatim}\n", "\\begin{verbatim}\n% kept\n\\end{verbatim}\n"),
        ("a\\begin{comment}\nhidden\n\\end{comment}b", "ab"),
        ("% only a comment", ""),
    ],
)
def test_strip_comments(text, expected):
    assert strip_comments(text) == expected


# --- hostile e-prints at the flatten stage -------------------------------------------------------


def test_hostile_eprints_flatten_or_fail_with_their_reason(tmp_path_factory):
    folder, expected = session_hostile_eprints(tmp_path_factory)
    wrong = []
    for name, outcome in sorted(expected.items()):
        stage, reason = outcome.split(":")
        if stage == "unpack":
            continue
        ep = unpack_eprint(folder / name)
        try:
            flat = flatten(ep)
        except EprintError as exc:
            if (stage, reason) != ("flatten", exc.reason):
                wrong.append(f"{name}: expected {outcome}, got flatten:{exc.reason}")
            continue
        if stage == "flatten":
            wrong.append(f"{name}: expected {outcome}, flattened")
        elif reason == "missing-input" and not flat.missing_inputs:
            wrong.append(f"{name}: no missing input recorded")
        elif reason == "input-cycle" and not any("cycle" in n for n in flat.notes):
            wrong.append(f"{name}: cycle not noted")
        elif reason == "input-depth" and not any("depth" in n for n in flat.notes):
            wrong.append(f"{name}: depth not noted")
        elif not flat.text.strip():
            wrong.append(f"{name}: empty text")
        if "root:x:0:0" in flat.text:
            wrong.append(f"{name}: read /etc/passwd")
    assert wrong == []
