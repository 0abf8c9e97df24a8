"""The embedded backend decodes concurrent requests as one batch, each row held to the schema, and
its repetition guard penalises n-grams repeated in the generated text only."""

from __future__ import annotations

import asyncio

import pytest
import torch

from astrodata.qa.backends import EmbeddedBackend, GeneratedNGramPenalty, Transient
from astrodata.qa.engine import validate_reply
from astrodata.qa.tasks import load_prompt, qa_schema


def test_ngram_penalty_counts_the_generated_part_only():
    prompt = [5, 6, 7, 8, 5, 6, 7]  # the prompt repeats 5 6 7 -> 8: quoting it is not penalised
    rows = torch.tensor([prompt + [1, 2, 3, 4, 1, 2, 3],  # generated 1 2 3 4 1 2 3: the next 4 repeats a 4-gram
                         prompt + [5, 6, 7, 9, 9, 9, 9]])  # 9 9 9 9: another 9 repeats 9 9 9 9
    scores = torch.zeros(2, 12)
    out = GeneratedNGramPenalty(4, prompt_len=len(prompt), penalty=100.0)(rows, scores.clone())
    assert out[0].tolist() == [0, 0, 0, 0, -100, 0, 0, 0, 0, 0, 0, 0]
    assert out[1].tolist() == [0] * 9 + [-100, 0, 0]  # and 8 (after 5 6 7 in the prompt) stays free
    assert GeneratedNGramPenalty(4, prompt_len=len(prompt))(rows[:, :9], scores.clone()).eq(0).all()


@pytest.mark.slow
def test_concurrent_requests_are_decoded_together_and_each_is_valid():
    backend = EmbeddedBackend(max_batch=8)
    calls = []
    generate_batch = backend.generate_batch

    def counting(prompts, schema, max_tokens):
        calls.append(len(prompts))
        return generate_batch(prompts, schema, max_tokens)

    backend.generate_batch = counting  # the real method, counted
    schema = qa_schema(1, 80, 80)
    passages = ["The Crab pulsar rotates 30 times per second.",
                "Sirius B is a white dwarf of about one solar mass with a radius near that of the Earth, "
                "orbiting Sirius A every 50 years.",
                "TESS observed V1298 Tau, a young star with four transiting planets."]

    async def main():
        return await asyncio.gather(*(backend.complete(
            load_prompt("qa").messages(title="T", abstract="A", passage=p, k=1), schema, 64) for p in passages))

    replies = asyncio.run(main())
    assert calls == [3]  # one forward pass per step for all three, left-padded to the longest prompt
    for reply in replies:
        value, error = validate_reply(reply.text, schema)
        assert value is not None, (error, reply.text)
        assert 0 < reply.tokens_out <= 64 and reply.tokens_in > 50
    assert len({r.tokens_in for r in replies}) == 3  # per-row prompt lengths, not the padded width

    asyncio.run(backend.aclose())  # Ctrl-C or a fatal error: a batch stops at its next token
    calls.clear()
    prompt = backend._prompt(load_prompt("qa").messages(title="T", abstract="A", passage=passages[0], k=1))
    with pytest.raises(Transient, match="stopped"):
        backend.generate_batch([prompt], schema, 400)
