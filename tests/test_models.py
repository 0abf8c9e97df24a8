"""The embedded SmolLM2 model: converted once from the GGUF, then loaded like any HF model."""

import torch
from transformers import AutoModelForCausalLM, AutoTokenizer


def test_embedded_model_loads_and_generates(embedded_model):
    assert (embedded_model / "config.json").exists()
    tok = AutoTokenizer.from_pretrained(embedded_model)
    model = AutoModelForCausalLM.from_pretrained(embedded_model, dtype=torch.float32)
    assert model.config.architectures == ["LlamaForCausalLM"]
    assert model.config.vocab_size == 49152
    prompt = tok.apply_chat_template(
        [{"role": "user", "content": "What is the closest star to the Sun?"}],
        tokenize=False, add_generation_prompt=True,
    )
    assert "<|im_start|>assistant" in prompt  # ChatML template survived the conversion
    ids = tok(prompt, return_tensors="pt")
    out = model.generate(**ids, max_new_tokens=12, do_sample=False)
    new = out[0, ids["input_ids"].shape[1]:]
    assert 0 < len(new) <= 12
    text = tok.decode(new, skip_special_tokens=True)
    assert text.strip(), "greedy generation produced no text"
    # Greedy decoding is deterministic: a second run gives the same tokens.
    again = model.generate(**ids, max_new_tokens=12, do_sample=False)
    assert torch.equal(out, again)


def test_second_call_uses_cache(embedded_model):
    from astrodata.core.models import embedded_model_path, resolve_model

    assert embedded_model_path() == embedded_model
    assert resolve_model("embedded") == str(embedded_model)
    assert resolve_model("/some/path") == "/some/path"
