"""The judge's two methods: junk pairs caught before any judge, the method chosen per judge, and
the grounding grade of the embedded model (the passage's pointwise mutual information with the
pair) ranking a pair drawn from its passage above pairs that are not."""

from __future__ import annotations

import asyncio
from bisect import bisect_right

import pytest

from astrodata.qa.backends import EmbeddedBackend, EndpointBackend
from astrodata.qa.grade import GROUNDING_BOUNDS, grounding_fields, judge_method, pair_defect
from astrodata.qa.recipe import load_qa_recipe


@pytest.mark.parametrize("question, answer, defect", [
    ("What is the period?", "}]}]}]}]}]]]]]}]]]]{}]]]]]{{", "answer is 100% symbols"),
    ("What is the period?", '"},{"": "": ""}]', "answer is 100% symbols"),
    ("}}]{{", "Ten days.", "question is 100% symbols"),
    ("Which [instrument] observed it?", "TESS.", "question holds the placeholder [instrument]"),
    ("What did they find?", "As shown by [cite], a planet.", "answer holds the placeholder [cite]"),
    ("What type of object is it?", "}]}  # 3.1.1.1: 3I/ATLAS is a comet.  # 3I/AATLAS is an asteroid.",
     "answer holds JSON debris '}]'"),
    ("What is the mass?", "About 1.2 solar masses ] } and more.", "answer holds JSON debris '] }'"),
])
def test_junk_pairs_are_named(question, answer, defect):
    assert pair_defect(question, answer) == defect


@pytest.mark.parametrize("answer", ["1.4 x 10^7 K", "It is -0.5 dex in [Fe/H].", r"$M = 1.2\,M_\odot$",
                                    "The [O III] 5007 line.", "30 times per second.", "3I/ATLAS",
                                    r"$\mathrm{e}^{-t/\tau_{\rm d}}$ for $t > t_{\rm peak}$", "[3I, 2I, 1I]"])
def test_numbers_units_and_light_latex_are_not_junk(answer):
    assert pair_defect("What was measured for the star?", answer) is None


def test_the_method_follows_the_judge():
    settings = load_qa_recipe(None).judge
    endpoint = EndpointBackend("http://127.0.0.1:9/v1", "m")
    assert judge_method(settings, endpoint) == "llm"
    assert judge_method(settings.model_copy(update={"method": "llm"}), endpoint) == "llm"
    with pytest.raises(ValueError, match="grounding needs the embedded judge"):
        judge_method(settings.model_copy(update={"method": "grounding"}), endpoint)


PASSAGE = ("Sirius B is a white dwarf of about one solar mass with a radius near that of the Earth. It "
           "orbits Sirius A every 50 years, and its surface temperature is about 25,000 K.")


@pytest.mark.slow
def test_grounding_ranks_a_pair_from_its_passage_first():
    backend = EmbeddedBackend()
    settings = load_qa_recipe(None).judge
    pairs = {"from the passage": ("What is the surface temperature of Sirius B?",
                                  "The surface temperature of Sirius B is about 25,000 K."),
             "another paper": ("How many times per second does the Crab pulsar rotate?",
                               "The Crab pulsar rotates about 30 times per second."),
             "vague": ("What is the object?", "It is an object studied in the text.")}

    async def grade_all():
        return {k: await grounding_fields(backend, q, a, PASSAGE, settings) for k, (q, a) in pairs.items()}

    fields = asyncio.run(grade_all())
    asyncio.run(backend.aclose())
    for f in fields.values():
        s = f["scores"]
        assert f["grade"] == s["overall"] == 1 + bisect_right(GROUNDING_BOUNDS, min(s["answer_pmi"], s["question_pmi"]))
        assert f["judge"] == "embedded/SmolLM2-135M-Instruct (grounding-v1)"
    good = fields["from the passage"]["scores"]
    for other in ("another paper", "vague"):
        bad = fields[other]["scores"]
        assert min(good["answer_pmi"], good["question_pmi"]) > min(bad["answer_pmi"], bad["question_pmi"]), fields
    assert fields["from the passage"]["grade"] >= 4 > fields["another paper"]["grade"], fields


@pytest.mark.parametrize("latex", [r"\beta", r"\frac{1}{2}", r"\rho", r"\times", r"\to", r"\tau", r"\nu",
                                   r"\nabla", r"\neq"])
def test_latex_written_as_a_json_escape_is_kept(latex):
    """`$\\beta$` with one backslash is valid JSON for backspace + "eta"; a reply means the LaTeX."""
    from astrodata.qa.engine import validate_reply
    from astrodata.qa.tasks import summary_schema

    value, error = validate_reply('{"summary": "The decay rate is $' + latex + ' x$ in this model."}',
                                  summary_schema(200))
    assert error is None and value.summary == f"The decay rate is ${latex} x$ in this model."
    line_break, _ = validate_reply('{"summary": "First line of it.\\nSecond line of it."}', summary_schema(200))
    assert line_break.summary == "First line of it.\nSecond line of it."  # a real newline stays one
