"""Token counts with the embedded SmolLM2 fast tokenizer: batched, ordered, no special tokens."""

from __future__ import annotations

import pytest

from astrodata.corpus.tokens import add_token_counts, count_tokens, load_tokenizer, tokenizer_file

TEXTS = ["Hello world", "", "The galaxy M31 lies 780 kpc away; its disc is warped.",
         "Σ = 2πr and H₀ ≈ 70 km s⁻¹ Mpc⁻¹", "  spaces\n\nand lines  "]


def test_counts_match_single_encodes_without_special_tokens(embedded_model):
    tok = load_tokenizer("embedded")
    expected = [len(tok.encode(t, add_special_tokens=False).ids) for t in TEXTS]
    assert count_tokens(TEXTS) == expected
    assert count_tokens(TEXTS, batch_size=2) == expected  # batch edges change nothing
    assert count_tokens(["Hello world"]) == [2]  # 'Hello', ' world': no BOS/EOS added
    assert count_tokens(TEXTS, str(embedded_model)) == expected  # a local folder works the same


def test_long_text_is_not_truncated():
    long = "The spectral energy distribution of the quasar peaks in the ultraviolet. " * 3000
    (n,) = count_tokens([long])
    assert n == len(load_tokenizer("embedded").encode(long, add_special_tokens=False).ids)
    assert n == 3000 * 13 + 1  # 13 tokens a sentence, then the final trailing space


def test_add_token_counts_streams_in_order():
    docs = ({"id": str(i), "text": t} for i, t in enumerate(TEXTS * 3))
    out = list(add_token_counts(docs, batch_size=4))
    assert [d["id"] for d in out] == [str(i) for i in range(15)]
    assert [d["n_tokens"] for d in out] == count_tokens(TEXTS * 3)


def test_missing_tokenizer_is_a_clear_error(tmp_path):
    with pytest.raises(FileNotFoundError, match="no tokenizer.json"):
        tokenizer_file(str(tmp_path))
    with pytest.raises(FileNotFoundError, match="not in the Hugging Face cache|neither"):
        tokenizer_file("nobody-here/no-such-model-xyz")
