"""PDF line-end hyphens decided from evidence (issue 10): the document's own usage, capitals, a
word list; never one rule for every line end."""

from __future__ import annotations

import pytest
from conftest import shared

from astrodata.textbooks.local_docs import join_line_end_hyphens, read_pdf


def test_regression_hyphenation_pdf():
    text, _ = read_pdf(shared("regressions", "pdf", "hyphenation.pdf"))
    flat = " ".join(text.split())
    assert "The near-infrared spectrographs" in flat and "A well-known example" in flat
    assert "Careful modelling of the activity" in flat
    assert "so starspots can" in flat or "so star-spots can" in flat
    assert "-\n" not in text


@pytest.mark.parametrize("text, want", [
    ("the photo-\nmetry of the field", "the photometry of the field"),  # word list: a known word
    ("a spectro-\nscopic survey", "a spectroscopic survey"),
    ("an X-\nray source", "an X-ray source"),  # one-letter first part
    ("non-\nGaussian noise", "non-Gaussian noise"),  # capital after the hyphen
    ("a self-\nconsistent model", "a self-consistent model"),  # two words, no compound in the list
    ("magne-\ntohydrodynamic waves", "magnetohydrodynamic waves"),  # neither part a word: a typesetter break
])
def test_word_list_and_shape_evidence(text, want):
    assert join_line_end_hyphens(text) == want


def test_the_documents_own_usage_wins_over_the_word_list():
    # "co-operation" is hyphenated elsewhere in this document, "cooperation" is the word list's form
    assert join_line_end_hyphens("co-operation matters. Their co-\noperation grew.") == (
        "co-operation matters. Their co-operation grew.")
    assert join_line_end_hyphens("starspots are dark. Many star-\nspots.") == "starspots are dark. Many starspots."
