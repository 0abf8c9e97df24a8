"""Local documents: .txt/.md/.tex/.pdf to rows, chapter splits, licence, per-file errors."""

from __future__ import annotations

import shutil

import pytest
from conftest import FIXTURES

from astrodata.corpus.recipe import load_recipe
from astrodata.textbooks.local_docs import DocumentError, iter_local_documents, read_pdf

DOCS = FIXTURES / "local_docs"
LICENSE = "CC-BY-4.0"


def settings(min_chapter_words: int = 40):
    return load_recipe(overrides={"local_docs": {"min_chapter_words": min_chapter_words}}).local_docs


def docs_in(folder, **kwargs):
    errors: list[tuple[str, str]] = []
    rows = list(iter_local_documents(folder, LICENSE, settings(**kwargs),
                                     on_error=lambda path, reason: errors.append((path, reason))))
    return rows, errors


def copy(tmp_path, *names):
    for name in names:
        shutil.copy(DOCS / name, tmp_path / name)
    return tmp_path


def write_pdf(path, pages, title=None):
    """A real PDF with a text layer, written by matplotlib (TrueType fonts, so text is extractable)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.backends.backend_pdf import PdfPages

    with plt.rc_context({"pdf.fonttype": 42}), PdfPages(path, metadata={"Title": title} if title else None) as pdf:
        for lines in pages:
            fig = plt.figure(figsize=(8.5, 11))
            for i, line in enumerate(lines):
                fig.text(0.08, 0.95 - 0.025 * i, line, fontsize=9)
            pdf.savefig(fig)
            plt.close(fig)


def test_text_file_chapters_skip_contents_and_running_headers(tmp_path):
    rows, errors = docs_in(copy(tmp_path, "stellar_notes.txt"))
    assert errors == []
    assert [r["title"] for r in rows] == ["stellar notes: Chapter 1 The Sun as a Star",
                                          "stellar notes: Chapter 2 Stellar Evolution"]
    assert [r["id"] for r in rows] == ["textbook:stellar_notes.txt#1", "textbook:stellar_notes.txt#2"]
    first, second = rows
    assert "Helioseismology" in first["text"] and "Contents" in first["text"]  # short front matter joins
    assert first["text"].rstrip().endswith("proton-proton chain.") and "white dwarfs" in second["text"]
    assert all(r["license"] == LICENSE and r["source"] == "textbook" for r in rows)
    # with a higher bar every candidate is too short: one document for the file
    rows, _ = docs_in(copy(tmp_path, "stellar_notes.txt"), min_chapter_words=500)
    assert len(rows) == 1 and rows[0]["id"] == "textbook:stellar_notes.txt"


def test_markdown_splits_at_level_one_headings_only(tmp_path):
    rows, _ = docs_in(copy(tmp_path, "galaxies.md"))
    assert [r["title"] for r in rows] == ["galaxies: Galaxies", "galaxies: Active Galactic Nuclei"]
    assert "## Classification" in rows[0]["text"] and "## Unification" in rows[1]["text"]


def test_pdf_text_layer_chapters_and_metadata_title(tmp_path):
    body = ["The interstellar medium fills the space between the stars with gas and dust, and its",
            "cold molecular phase is where new stars form. Observations in the radio and infra-",
            "red reveal clouds of carbon monoxide, dust grains and complex organic molecules."]
    pages = [["Chapter 1 The Interstellar Medium", *body], ["Chapter 1 The Interstellar Medium", *body],
             ["Chapter 2 Star Formation", *body]]
    write_pdf(tmp_path / "ism.pdf", pages, title="Lectures on the ISM")
    text, title = read_pdf(tmp_path / "ism.pdf")
    assert title == "Lectures on the ISM" and "infrared reveal clouds" in text  # hyphenated break joined
    rows, errors = docs_in(tmp_path)
    assert errors == []
    assert [r["title"] for r in rows] == ["Lectures on the ISM: Chapter 1 The Interstellar Medium",
                                          "Lectures on the ISM: Chapter 2 Star Formation"]
    assert rows[0]["text"].count("interstellar medium fills") == 2  # its running header did not split it


def test_unreadable_file_is_reported_and_the_rest_goes_on(tmp_path):
    copy(tmp_path, "galaxies.md")
    (tmp_path / "broken.pdf").write_bytes(b"%PDF-1.4 this is not really a pdf")
    write_pdf(tmp_path / "scan.pdf", [[]])  # a page with no text layer
    rows, errors = docs_in(tmp_path)
    assert len(rows) == 2
    assert [path for path, _ in errors] == ["broken.pdf", "scan.pdf"]
    assert "no text layer" in errors[1][1]
    with pytest.raises(DocumentError):
        list(iter_local_documents(tmp_path, LICENSE, settings()))


def test_licence_is_required(tmp_path):
    for missing in (None, "", "  "):
        with pytest.raises(ValueError, match="--license"):
            list(iter_local_documents(copy(tmp_path, "galaxies.md"), missing, settings()))
    with pytest.raises(FileNotFoundError, match="--docs folder"):
        list(iter_local_documents(tmp_path / "nope", LICENSE, settings()))


def test_latex_book_chapters_through_the_latex_stage(tmp_path):
    pytest.importorskip("astrodata.latex.to_text", reason="needs the LaTeX stage (astrodata.latex.to_text)")
    rows, errors = docs_in(copy(tmp_path, "cosmology_book.tex"))
    assert errors == []
    assert [r["title"] for r in rows] == ["A Short Course in Cosmology: Expansion of the Universe",
                                          "A Short Course in Cosmology: The Standard Model"]
    expansion, standard = (r["text"] for r in rows)
    assert "$H_0$" in expansion and "Redshift" in expansion and "1 + z" in expansion
    assert "CDM model describes a flat universe" in standard and "$H_0$" in standard  # preamble macros
    for text in (expansion, standard):
        assert "\\chapter" not in text and "\\hubble" not in text and "\\label" not in text


def test_tex_chapters_carry_their_losses(tmp_path):
    (tmp_path / "notes.tex").write_text(
        "\\documentclass{book}\\begin{document}\n\\chapter{Stars}\n" + "Stars shine by fusion. " * 30
        + "\\mystery{kept words}\n\\chapter{Planets}\n" + "Planets orbit stars. " * 30 + "\\end{document}\n")
    rows, errors = docs_in(tmp_path)
    assert not errors and len(rows) == 2
    assert rows[0]["losses"] == [["command", "\\mystery", 1]] and "kept words" in rows[0]["text"]
    assert rows[1]["losses"] == []
