"""Training data on real inputs: CPT blocks and cache, SFT assistant-only masks (ChatML and Llama-3.1
templates), packing equivalence, the chat tokens of a base model, and bad input."""

from __future__ import annotations

from itertools import chain
from pathlib import Path

import pytest
import torch
from conftest import shared
from training_data import build_eprint_corpus, sharegpt_messages, write_qa

from training.config import SFTConfig, load_config
from training.data import (
    IGNORE,
    SFTCollator,
    build_cpt_dataset,
    build_sft_dataset,
    build_stats,
    chat_template_tokens,
    check_dataset,
    first_fit_decreasing,
    prepare_chat_tokens,
    tokenize_conversation,
)

LLAMA_TEMPLATE = Path(__file__).resolve().parents[1] / "training" / "templates" / "llama-3.1.jinja"
SHAREGPT = ("sharegpt", "llamafactory__glaive_toolcall_en_demo.json")


@pytest.fixture(scope="module")
def tokenizer(embedded_model):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(embedded_model)


@pytest.fixture(scope="module")
def llama_tokenizer(embedded_model):
    """SmolLM2's BPE with Llama-3.1's chat template and its header/turn tokens added."""
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(embedded_model)
    tok.chat_template = LLAMA_TEMPLATE.read_text()
    tok.add_special_tokens({"additional_special_tokens": chat_template_tokens(tok.chat_template)})
    return tok


@pytest.fixture(scope="module")
def conversations():
    return sharegpt_messages(shared(*SHAREGPT))


def _segment_lengths(position_ids: list[int]) -> list[int]:
    starts = [i for i, p in enumerate(position_ids) if p == 0] + [len(position_ids)]
    return [b - a for a, b in zip(starts, starts[1:], strict=False)]


def _runs(ids: list[int], labels: list[int]) -> list[tuple[bool, list[int]]]:
    """Maximal runs of tokens that do / do not carry loss."""
    runs: list[tuple[bool, list[int]]] = []
    for tok, lab in zip(ids, labels, strict=True):
        on = lab != IGNORE
        if runs and runs[-1][0] == on:
            runs[-1][1].append(tok)
        else:
            runs.append((on, [tok]))
    return runs


@pytest.mark.parametrize("template", ["chatml", "llama-3.1"])
def test_only_assistant_text_carries_loss(template, tokenizer, llama_tokenizer, conversations):
    tok, eot, strip = (tokenizer, "<|im_end|>", False) if template == "chatml" else (llama_tokenizer, "<|eot_id|>", True)
    checked_tool_turns = 0
    for row in conversations[:60]:
        messages = row["messages"]
        ex = tokenize_conversation(tok, messages)
        assert all(lab in (IGNORE, t) for t, lab in zip(ex["input_ids"], ex["labels"], strict=True))
        runs = _runs(ex["input_ids"], ex["labels"])
        trained = [tok.decode(ids) for on, ids in runs if on]
        expected = [(m["content"].strip() if strip else m["content"]) + eot
                    for m in messages if m["role"] == "assistant"]
        # Every assistant turn, and nothing else, is trained on: exactly its text plus the end-of-turn token.
        assert trained == expected
        masked = "".join(tok.decode(ids) for on, ids in runs if not on)
        for m in messages:
            if m["role"] in ("user", "tool"):
                assert m["content"].strip() in masked
                checked_tool_turns += m["role"] == "tool"
        full = tok.decode(ex["input_ids"])
        assert full == tok.apply_chat_template(messages, tokenize=False)
    assert checked_tool_turns > 10  # tool observations (function results) are among the masked text


def test_sft_dataset_drops_bad_rows_and_packs(tmp_path, tokenizer, conversations, embedded_model):
    rows = conversations[:24] + [
        {"id": "no-assistant", "kind": "qa", "messages": [{"role": "user", "content": "hello?"}], "source_id": "x"},
        {"id": "bad-role", "kind": "qa", "messages": [{"role": "narrator", "content": "once"},
                                                      {"role": "assistant", "content": "upon"}], "source_id": "x"},
    ]
    qa = write_qa(tmp_path / "qa", rows, rows_per_shard=10)
    plain = build_sft_dataset(qa, tokenizer, 1024, tmp_path / "cache")
    stats = build_stats(Path(plain.cache_files[0]["filename"]).parent)
    assert stats["rejected"]["no assistant turn with content"] == 1
    assert stats["rejected"]["unknown role 'narrator'"] == 1
    assert stats["examples"] + sum(stats["rejected"].values()) == len(rows)

    packed = build_sft_dataset(qa, tokenizer, 1024, tmp_path / "cache", packing=True)
    assert len(packed) < len(plain)
    assert all(len(r) <= 1024 for r in packed["input_ids"])
    # position ids restart at 0 for each example: the segments are exactly the examples' lengths
    segments = [n for pos in packed["position_ids"] for n in _segment_lengths(pos)]
    assert sorted(segments) == sorted(len(x) for x in plain["input_ids"])
    # Packing keeps every token and label, only regrouped.
    assert sorted(chain.from_iterable(plain["labels"])) == sorted(chain.from_iterable(packed["labels"]))
    assert sum(len(r) for r in packed["input_ids"]) == stats["tokens"]

    # A packed row gives each example the same hidden states as the example alone (attention stays inside
    # it). Three short conversations and the model's first 4 layers keep the forward passes cheap (the
    # mask is the same in every layer). use_cache=False as under the Trainer: with a cache, transformers
    # does not look for packed sequences.
    from transformers import AutoModelForCausalLM

    short = sorted(conversations, key=lambda r: sum(len(m["content"]) for m in r["messages"]))[:3]
    row = build_sft_dataset(write_qa(tmp_path / "short", short), tokenizer, 512, tmp_path / "cache",
                            packing=True)[0]
    assert len(_segment_lengths(row["position_ids"])) == 3
    model = AutoModelForCausalLM.from_pretrained(embedded_model, dtype=torch.float32, num_hidden_layers=4).eval()
    batch = SFTCollator(tokenizer.pad_token_id)([row, {"input_ids": [5] * 3, "labels": [IGNORE] * 3,
                                                       "position_ids": [0, 1, 2]}])
    assert "attention_mask" not in batch
    assert batch["position_ids"][1].tolist()[:3] == [0, 1, 2]
    with torch.no_grad():
        hidden = model.model(input_ids=batch["input_ids"][:1], position_ids=batch["position_ids"][:1],
                             use_cache=False).last_hidden_state[0]
        starts = [i for i, p in enumerate(row["position_ids"]) if p == 0] + [len(row["input_ids"])]
        for a, b in zip(starts, starts[1:], strict=False):
            alone = model.model(input_ids=torch.tensor([row["input_ids"][a:b]]),
                                use_cache=False).last_hidden_state[0]
            torch.testing.assert_close(hidden[a:b], alone, atol=2e-4, rtol=1e-4)


def test_first_fit_decreasing_respects_capacity():
    lengths = [7, 3, 5, 5, 2, 9, 1, 4, 6, 8]
    bins = first_fit_decreasing(lengths, 10)
    assert sorted(chain.from_iterable(bins)) == list(range(len(lengths)))
    assert all(sum(lengths[i] for i in b) <= 10 for b in bins)
    assert len(bins) == 5  # total 50 tokens: a perfect fit


def test_cpt_blocks_and_cache(tmp_path, tokenizer):
    corpus = tmp_path / "corpus"
    build_eprint_corpus(shared("arxiv-eprints"), corpus, limit=4, real=False)
    blocks = build_cpt_dataset(corpus, tokenizer, 128, tmp_path / "cache")
    cache = Path(blocks.cache_files[0]["filename"]).parent
    stats = build_stats(cache)
    assert all(len(b) == 128 for b in blocks["input_ids"])
    assert stats["tokens"] - stats["dropped_tokens"] == 128 * len(blocks)
    assert stats["dropped_tokens"] < 128  # one group of 4 documents: less than one block is lost
    from astrodata.core.shards import read_rows

    texts = [r["text"] for r in read_rows(corpus, ["text"])]
    stream = list(chain.from_iterable(tokenizer(t, add_special_tokens=False)["input_ids"] + [tokenizer.eos_token_id]
                                      for t in texts))
    assert list(chain.from_iterable(blocks["input_ids"])) == stream[: 128 * len(blocks)]

    again = build_cpt_dataset(corpus, tokenizer, 128, tmp_path / "cache")
    assert Path(again.cache_files[0]["filename"]).parent == cache  # reused, not rebuilt
    other = build_cpt_dataset(corpus, tokenizer, 64, tmp_path / "cache")
    assert Path(other.cache_files[0]["filename"]).parent != cache  # settings are part of the key


def test_chat_tokens_of_a_base_model(embedded_model):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(embedded_model)
    model = AutoModelForCausalLM.from_pretrained(embedded_model, dtype=torch.float32)
    emb = model.get_input_embeddings().weight
    with torch.no_grad():
        emb[tok.convert_tokens_to_ids("<|im_end|>")] = 0.0  # an untrained row, as in Llama-3.1 base
    tokens = chat_template_tokens(LLAMA_TEMPLATE.read_text()) + ["<|im_end|>"]
    assert tokens[:4] == ["<|begin_of_text|>", "<|start_header_id|>", "<|end_header_id|>", "<|eot_id|>"]
    fixed = prepare_chat_tokens(model, tok, tokens)
    assert sorted(fixed) == sorted(tokens)
    emb = model.get_input_embeddings().weight
    assert emb.shape[0] == len(tok) == 49152 + 4
    ids = tok.convert_tokens_to_ids(tokens)
    others = torch.ones(emb.shape[0], dtype=torch.bool)
    others[ids] = False
    for i in ids:
        torch.testing.assert_close(emb[i], emb[others].mean(dim=0))
    assert model.get_output_embeddings().weight.data_ptr() == emb.data_ptr()  # still tied


def test_bad_inputs_are_named(tmp_path, tokenizer):
    corpus = tmp_path / "corpus"
    build_eprint_corpus(shared("arxiv-eprints"), corpus, limit=2, real=False)
    with pytest.raises(ValueError, match=r"no 'messages' column \(columns: id, source"):
        build_sft_dataset(corpus, tokenizer, 256, tmp_path / "cache")
    with pytest.raises(FileNotFoundError, match="no data/\\*.parquet shards"):
        build_cpt_dataset(tmp_path / "empty", tokenizer, 256, tmp_path / "cache")
    with pytest.raises(ValueError, match="EOS token '<\\|nope\\|>' is not in the tokenizer"):
        build_cpt_dataset(corpus, tokenizer, 256, tmp_path / "cache", eos_token="<|nope|>")
    cfg = tmp_path / "c.yaml"
    cfg.write_text("dataset: x\noutput_dir: y\nlearning_rat: 1e-5\n")
    with pytest.raises(ValueError, match="learning_rat: Extra inputs are not permitted"):
        load_config(SFTConfig, cfg)
    with pytest.raises(ValueError, match="override 'max_steps' is not of the form key=value"):
        load_config(SFTConfig, None, ["dataset=x", "output_dir=y", "max_steps"])


def test_a_dataset_without_rows_is_refused_before_any_model(tmp_path):
    """A QA build whose pairs were all dropped writes a shard of 0 rows; datasets then failed with
    'BatchSize must be greater than 0' deep inside the SFT stage."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    for shards in (1, 2):
        folder = tmp_path / f"qa{shards}" / "data"
        folder.mkdir(parents=True)
        for i in range(shards):
            pq.write_table(pa.table({"messages": pa.array([], pa.list_(pa.string()))}), folder / f"part-{i}.parquet")
        with pytest.raises(ValueError, match="dataset has no rows .*qa_items"):
            check_dataset(folder.parent, "messages")
    pq.write_table(pa.table({"messages": [["x"]]}), tmp_path / "qa2" / "data" / "part-9.parquet")
    check_dataset(tmp_path / "qa2", "messages")  # one row in three shards is a dataset


@pytest.mark.parametrize("name", ["astrosage-8b-cpt", "astrosage-8b-sft", "astrosage-8b-merge",
                                  "smollm2-cpu-cpt", "smollm2-cpu-sft"])
def test_shipped_configs_validate(name):
    from training.config import CPTConfig, MergeConfig

    cls = MergeConfig if name.endswith("merge") else CPTConfig if name.endswith("cpt") else SFTConfig
    cfg = load_config(cls, Path(__file__).resolve().parents[1] / "training" / "configs" / f"{name}.yaml")
    if isinstance(cfg, SFTConfig) and cfg.chat_template:
        assert Path(cfg.chat_template).is_file()
