"""The embedded backend decodes concurrent requests together (continuous batching: a finished row's
slot goes to a queued request at once), each row held to its schema and giving the reply it gives
alone, and its repetition guard counts the generated text only."""

from __future__ import annotations

import asyncio
import json

import pytest

from astrodata.qa.backends import (
    DecodeStats,
    EmbeddedBackend,
    JSONStringState,
    Transient,
    decoding_schema,
    repeated_ngram_tokens,
    schema_json,
)
from astrodata.qa.engine import validate_reply
from astrodata.qa.tasks import Grade, load_prompt, qa_schema


def test_repeated_ngram_tokens_complete_a_generated_ngram_only():
    assert repeated_ngram_tokens([1, 2, 3, 4, 1, 2, 3], 4) == [4]  # 1 2 3 -> 4 again
    assert repeated_ngram_tokens([9, 9, 9, 9], 4) == [9]
    assert repeated_ngram_tokens([1, 2, 3, 4, 1, 2, 5], 4) == []  # the prefix 1 2 5 never occurred
    assert repeated_ngram_tokens([1, 2, 3], 4) == []  # shorter than n
    assert repeated_ngram_tokens([7, 1, 2, 7, 1, 3, 7, 1], 3) == [2, 3]  # every continuation seen


def test_bracket_guard_follows_json_strings():
    """Inside a JSON string a brackets-only token may not open it or follow another; structure and
    LaTeX braces after text stay free."""
    state = JSONStringState()
    assert not state.guard()
    state.feed("{")
    assert not state.guard()  # structure: outside any string
    for token in ['"', 'pairs', '":', ' [{"', 'question', '":', ' "']:
        state.feed(token)
    assert state.in_string and state.guard()  # a string may not open with `}]`
    state.feed("What")
    for token in [" is", " 10", "^{", "7", "}"]:  # `}` after text (LaTeX) is free
        assert not state.guard()
        state.feed(token)
    assert state.guard()  # after a brackets-only token, another one would start the soup
    state.feed("}]")
    assert state.guard()
    state.feed(" and")
    assert not state.guard()
    state.feed('\\"')  # an escaped quote stays inside the string
    assert state.in_string
    state.feed('"},')
    assert not state.in_string and not state.guard()


def test_decoding_schema_moves_string_bounds_to_the_decoder():
    """String properties lose `maxLength` (outlines would build one automaton state per character)
    and their bounds come back by name; bounds it cannot name stay in the schema."""
    unbounded, bounds = decoding_schema(schema_json(qa_schema(3, 300, 800)))
    assert bounds == {"question": 300, "answer": 800}
    text = json.dumps(unbounded)
    assert "maxLength" not in text and '"minLength": 10' in text and '"maxItems": 3' in text
    schema = {"type": "object", "properties": {
        "title": {"type": "string", "maxLength": 50},
        "parts": {"type": "array", "items": {"type": "string", "maxLength": 9}},  # no name: stays
        "inner": {"type": "object", "properties": {"title": {"type": "string", "maxLength": 20}}}}}
    unbounded, bounds = decoding_schema(schema)
    assert bounds == {"title": 20}  # the smallest where a name recurs
    assert unbounded["properties"]["parts"]["items"]["maxLength"] == 9
    assert schema["properties"]["title"]["maxLength"] == 50  # the caller's schema is not changed


def test_length_guard_counts_the_value_of_each_key():
    state = JSONStringState()
    bounds = {"question": 12, "answer": 30}
    for token in ['{"', 'pairs', '":', ' [{"', 'question', '":', ' "']:
        assert state.room(bounds) is None  # keys and structure are not bounded
        state.feed(token)
    assert state.key == "question" and state.room(bounds) == 12
    state.feed('Why \\"A')  # an escape counts one character
    assert state.room(bounds) == 12 - len('Why "A')
    state.feed('\\u00e9')  # a unicode escape counts five: never fewer than pydantic counts
    assert state.room(bounds) == 12 - 6 - 5
    state.feed('?", "answer" : "')
    assert state.key == "answer" and state.room(bounds) == 30
    state.feed('It is "')
    assert state.room(bounds) is None and not state.in_string


PASSAGES = ["The Crab pulsar rotates 30 times per second.",
            "Sirius B is a white dwarf of about one solar mass with a radius near that of the Earth, "
            "orbiting Sirius A every 50 years.",
            "TESS observed V1298 Tau, a young star with four transiting planets."]


def _messages(passage: str) -> list[dict[str, str]]:
    return load_prompt("qa").messages(title="T", abstract="A", passage=passage, k=1)


@pytest.mark.slow
def test_batched_replies_equal_replies_decoded_alone():
    """Three requests through two slots: the third joins the batch when a row finishes (its cache
    left-padded to the batch's width or the batch's to its own); greedy replies equal those decoded
    one at a time, so padding, positions and per-row schema guides are right."""
    backend = EmbeddedBackend(max_batch=2, dtype="float32")  # bf16 sums depend on the batch's shape
    schema = qa_schema(1, 80, 80)
    prompts = [backend._prompt(_messages(p)) for p in PASSAGES]
    alone = [backend.generate_batch([p], schema, 64)[0] for p in prompts]
    assert set(backend.stats.steps) == {1}
    backend.stats = DecodeStats()

    together = backend.generate_batch(prompts, schema, 64)
    assert backend.stats.steps[2] > 0 and set(backend.stats.steps) <= {1, 2}
    assert sum(backend.stats.steps.values()) < sum(r.tokens_out for r in alone)  # fewer forward passes
    for one, batched in zip(alone, together, strict=True):
        assert batched.text == one.text and batched.tokens_out == one.tokens_out
        value, error = validate_reply(batched.text, schema)
        assert value is not None, (error, batched.text)
        assert 0 < batched.tokens_out <= 64 and batched.finish_reason == "stop"
    assert len({r.tokens_in for r in together}) == 3  # per-row prompt lengths, not a padded width


@pytest.mark.slow
def test_concurrent_requests_of_two_schemas_share_steps_and_stop_on_close():
    backend = EmbeddedBackend(max_batch=8)
    grade_messages = load_prompt("judge").messages(passage=PASSAGES[0], question="How fast does the Crab pulsar "
                                                   "rotate?", answer="30 times per second.")

    async def main():
        return await asyncio.gather(backend.complete(_messages(PASSAGES[1]), qa_schema(1, 80, 80), 64),
                                    backend.complete(_messages(PASSAGES[2]), qa_schema(1, 80, 80), 64),
                                    backend.complete(grade_messages, Grade, 40))

    *pairs, grade = asyncio.run(main())
    assert max(backend.stats.steps) == 3  # two schemas, one batch
    assert all(validate_reply(r.text, qa_schema(1, 80, 80))[0] is not None for r in pairs)
    value, error = validate_reply(grade.text, Grade)
    assert value is not None, (error, grade.text)

    asyncio.run(backend.aclose())  # Ctrl-C or a fatal error: decoding stops at its next token
    with pytest.raises(Transient, match="stopped"):
        backend.generate_batch([backend._prompt(_messages(PASSAGES[0]))], qa_schema(1, 80, 80), 400)


@pytest.mark.slow
def test_replies_keep_within_string_bounds_the_schema_automaton_no_longer_holds():
    """The bounds left the outlines automaton (`decoding_schema`); the decoding loop holds each
    string to its own: answers cut at 15 characters and questions at 40 close there and validate."""
    backend = EmbeddedBackend(max_batch=3, dtype="float32")
    schema = qa_schema(2, 40, 15)
    replies = backend.generate_batch([backend._prompt(_messages(p)) for p in PASSAGES], schema, 120)
    for reply in replies:
        value, error = validate_reply(reply.text, schema)
        assert value is not None, (error, reply.text)
        assert all(len(p.question) <= 40 and len(p.answer) <= 15 for p in value.pairs)
    longest = max(len(p.answer) for r in replies for p in validate_reply(r.text, schema)[0].pairs)
    assert longest >= 10, replies  # the guard let answers run up to their bound, not stop them early
