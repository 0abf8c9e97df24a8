"""Answer extraction for `eval --method generate` (issue 10): letters in any case, in brackets,
after "option"/"answer", in JSON; an English article is never a letter; no option -> None."""

from __future__ import annotations

import json

import pytest
from conftest import shared

from benchmarks.methods import extract_letter


def test_regression_answer_replies():
    cases = [json.loads(line) for line in shared("regressions", "eval", "answer-replies.jsonl").read_text().splitlines()
             if line.strip()]
    assert len(cases) >= 11
    for case in cases:
        assert extract_letter(case["reply"]) == case["letter"], case


@pytest.mark.parametrize("reply, letter", [
    ("b", "B"), ("(d)", "D"), ("[A]", "A"), ("**C**", "C"), ("d) a red giant", "D"),
    ("The answer is b.", "B"), ("answer: a", "A"), ("The correct option is (a).", "A"),
    ("I would go with C because of the mass limit.", "C"),
    ('{"answer": "(B)", "explanation": "a white dwarf"}', "B"),
    ("The answer is a white dwarf.", None),  # an article, not option A
    ("A white dwarf.", None),
    ("A star like the Sun ends as a white dwarf.", None),
    ("None of the options fits.", None),
    ("", None),
])
def test_own_cases(reply, letter):
    assert extract_letter(reply) == letter
