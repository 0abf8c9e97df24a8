"""Where the model runs: a local Hugging Face model or an OpenAI-compatible endpoint.

Both backends offer the same four operations, so the scoring methods never know which one runs:

- `score_letters(contexts, continuations)`: log-likelihood of each continuation after each raw
  text context (base-token);
- `chat_letter_scores(chats, answer_prefix, letters)`: log-probability of each letter as the first
  token after `answer_prefix` at the start of the assistant's reply (instruct-token; None for a
  question whose endpoint reply did not open with the prefix);
- `generate_chat(chats, max_new_tokens)` and `generate_text(contexts, max_new_tokens)`: greedy text.

An endpoint that returns no log-probabilities (`transformers serve` ignores `logprobs` and `echo`)
raises `NoLogprobs`; the methods then fall back to generated text and count the fallbacks.
"""

from __future__ import annotations

import inspect
import json
import math
import re
from collections.abc import Callable, Hashable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from astrodata.core.http import RetryPolicy, openai_client, status_reason

Chat = list[dict[str, str]]
# (token ids, [(letter index, [(position, token id), ...]), ...], question index)
Row = tuple[list[int], list[tuple[int, list[tuple[int, int]]]], int]
DTYPES = ("float32", "bfloat16")
MIN_SHARED_PREFIX = 8


class NoLogprobs(RuntimeError):
    """The endpoint answered without the log-probabilities a token method needs."""


def _by_length(items: Sequence[Any], key: Callable[[Any], int], batch_size: int, desc: str) -> Iterator[list[int]]:
    """Batches of indices, longest first (fewer pad tokens; the largest batch fails first if memory is
    short), with astrodata's progress display (a bar on a terminal, plain lines in a log)."""
    from rich.progress import BarColumn, MofNCompleteColumn, TextColumn, TimeRemainingColumn

    from astrodata.core.progress import RunProgress

    order = sorted(range(len(items)), key=lambda i: -key(items[i]))
    batches = [order[i:i + batch_size] for i in range(0, len(order), batch_size)]
    with RunProgress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn(),
                     transient=True) as progress:
        task = progress.add_task(desc, total=len(batches), failures=0)
        for batch in batches:
            yield batch
            progress.advance(task)


class HFBackend:
    """A local causal LM via transformers: batched, one forward pass per question for token methods.

    Scoring pads on the right, so every real token keeps its natural position and never attends to a
    pad (causal mask); the log-probabilities are read at each row's own last context position.
    `logits_to_keep` restricts the vocabulary projection to the positions read, which is most of
    the speed-up over scoring every position. Tokenisation follows lm-evaluation-harness: encode
    context and context+continuation, the continuation's tokens are the difference; the tokenizer
    adds its special tokens unless the text already starts with BOS (chat templates).
    """

    kind = "hf"

    def __init__(self, model: str, dtype: str = "float32", device: str | None = None) -> None:
        import torch
        from transformers import AutoModelForCausalLM, AutoTokenizer

        from astrodata.core.models import resolve_model

        if dtype not in DTYPES:
            raise ValueError(f"dtype {dtype!r} is not one of {', '.join(DTYPES)}")
        path = resolve_model(model, dtype)
        if not Path(path).exists() and not _looks_like_hub_id(path):
            raise FileNotFoundError(f"{path}: model path does not exist")
        self.name = model
        self.path = path
        self.dtype = dtype
        self.device = device or ("cuda" if torch.cuda.is_available() else "cpu")
        try:
            self.tokenizer = AutoTokenizer.from_pretrained(path)
            self.model = AutoModelForCausalLM.from_pretrained(path, dtype=getattr(torch, dtype))
        except OSError as exc:
            raise FileNotFoundError(f"{path}: cannot load model ({str(exc).splitlines()[0]})") from exc
        self.model.to(self.device).eval()
        self.pad_id = self.tokenizer.pad_token_id
        if self.pad_id is None:
            self.pad_id = self.tokenizer.eos_token_id
        self.max_length = int(getattr(self.model.config, "max_position_embeddings", 0) or 4096)
        params = inspect.signature(self.model.forward).parameters
        self._keep_arg = "logits_to_keep" in params
        # transformers 5.x renamed `past_key_values` to `cache` (the old name warns until 5.40)
        self._cache_arg = "cache" if "cache" in params else "past_key_values"

    # -- tokenisation --------------------------------------------------------------------------
    def encode(self, text: str) -> list[int]:
        bos = self.tokenizer.bos_token
        special = not (bos and text.startswith(bos))
        return self.tokenizer.encode(text, add_special_tokens=special)

    def encode_pair(self, context: str, continuation: str) -> tuple[list[int], list[int]]:
        """lm-evaluation-harness's split: trailing context whitespace moves into the continuation."""
        if not context:
            raise ValueError("empty context")
        n_spaces = len(context) - len(context.rstrip())
        if n_spaces:
            context, continuation = context[:-n_spaces], context[-n_spaces:] + continuation
        whole = self.encode(context + continuation)
        ctx = self.encode(context)
        return ctx, whole[len(ctx):]

    def chat_prompt(self, chat: Chat) -> str:
        if not self.tokenizer.chat_template:
            raise ValueError(f"{self.name}: the tokenizer has no chat template; use --method base-token")
        return self.tokenizer.apply_chat_template(chat, tokenize=False, add_generation_prompt=True)

    # -- scoring -------------------------------------------------------------------------------
    def score_letters(self, contexts: Sequence[str], continuations: Sequence[str], batch_size: int = 8,
                      groups: Sequence[Hashable] | None = None) -> list[list[float]]:
        """Log-likelihood of every continuation after every context (summed over its tokens).

        Contexts in the same `groups` entry (default: all) share their common token prefix (the
        task description, the few-shot examples): its keys/values are computed once and reused
        by every batch of the group, so each question pays only for its own tokens.
        """
        # A row is (token ids, [(letter, [(position, token), ...]), ...], question index). When every
        # continuation is one token (answer letters usually are), one row per question scores all.
        rows: list[Row] = []
        row_group: list[Hashable] = []
        for qi, context in enumerate(contexts):
            pairs = [self.encode_pair(context, c) for c in continuations]
            ctx = pairs[0][0]
            conts = [cont for _, cont in pairs]
            if all(len(c) == 1 for c in conts) and all(p[0] == ctx for p in pairs):
                rows.append((ctx, [(li, [(len(ctx) - 1, c[0])]) for li, c in enumerate(conts)], qi))
                row_group.append(groups[qi] if groups is not None else None)
                continue
            for li, (c_ctx, cont) in enumerate(pairs):
                if not cont:
                    raise ValueError(f"continuation {continuations[li]!r} encodes to no tokens")
                ids = (c_ctx + cont)[:-1]
                rows.append((ids, [(li, [(len(c_ctx) - 1 + j, t) for j, t in enumerate(cont)])], qi))
                row_group.append(groups[qi] if groups is not None else None)
        members: dict[Hashable, list[int]] = {}
        for i, g in enumerate(row_group):
            members.setdefault(g, []).append(i)
        scores = [[0.0] * len(continuations) for _ in contexts]
        for indices in members.values():
            group = [rows[i] for i in indices]
            prefix_len = self._shared_prefix(group)
            cache = self._prefix_cache(group[0][0][:prefix_len]) if prefix_len else None
            for batch in _by_length(group, lambda r: len(r[0]), batch_size, "scoring"):
                for qi, li, value in self._score_batch([group[i] for i in batch], prefix_len, cache):
                    scores[qi][li] += value
        return scores

    def _shared_prefix(self, group: Sequence[Row]) -> int:
        """Tokens every row starts with, short of each row's first scored position; 0 when not worth it."""
        if len(group) < 2 or any(len(ids) > self.max_length for ids, _, _ in group):
            return 0
        first = group[0][0]
        n = min(p for _, picks, _ in group for _, targets in picks for p, _ in targets)
        for ids, _, _ in group[1:]:
            n = next((i for i in range(n) if ids[i] != first[i]), n)
        return n if n >= MIN_SHARED_PREFIX else 0

    def _prefix_cache(self, prefix: list[int]) -> Any:
        """Keys/values of the shared prefix, or None for cache types this reuse does not handle."""
        import torch
        from transformers import DynamicCache
        from transformers.cache_utils import DynamicLayer

        with torch.inference_mode():
            out = self.model(input_ids=torch.tensor([prefix], device=self.device), use_cache=True)
        cache = getattr(out, self._cache_arg, None)
        if type(cache) is not DynamicCache or any(type(layer) is not DynamicLayer for layer in cache.layers):
            return None
        return [(layer.keys, layer.values) for layer in cache.layers]

    def _score_batch(self, rows: Sequence[Row], prefix_len: int = 0, cache: Any = None) -> list[tuple[int, int, float]]:
        import torch
        from transformers import DynamicCache

        if cache is None:
            prefix_len = 0
        # lm-evaluation-harness truncates over-long inputs from the left; so do we.
        trimmed = []
        for ids, picks, qi in rows:
            cut = prefix_len or max(0, len(ids) - self.max_length)
            trimmed.append((ids[cut:], [(li, [(p - cut, t) for p, t in targets]) for li, targets in picks], qi))
        width = max(len(ids) for ids, _, _ in trimmed)
        input_ids = torch.full((len(trimmed), width), self.pad_id, dtype=torch.long)
        mask = torch.zeros((len(trimmed), prefix_len + width), dtype=torch.long)
        mask[:, :prefix_len] = 1
        for r, (ids, _, _) in enumerate(trimmed):
            input_ids[r, :len(ids)] = torch.tensor(ids)
            mask[r, prefix_len:prefix_len + len(ids)] = 1
        positions = sorted({p for _, picks, _ in trimmed for _, targets in picks for p, _ in targets})
        column = {p: i for i, p in enumerate(positions)}
        kwargs: dict[str, Any] = {}
        if self._keep_arg:
            kwargs["logits_to_keep"] = torch.tensor(positions, device=self.device)
        if prefix_len:
            # expand() shares the prefix tensors across rows; the cache appends with torch.cat, never in place
            kwargs[self._cache_arg] = DynamicCache(
                ddp_cache_data=[(k.expand(len(trimmed), -1, -1, -1), v.expand(len(trimmed), -1, -1, -1))
                                for k, v in cache], config=self.model.config)
        with torch.inference_mode():
            logits = self.model(input_ids=input_ids.to(self.device), attention_mask=mask.to(self.device),
                                **kwargs).logits
            if not self._keep_arg:
                logits = logits[:, positions, :]
            logprobs = torch.log_softmax(logits.float(), dim=-1).cpu()
        out = []
        for r, (_, picks, qi) in enumerate(trimmed):
            for li, targets in picks:
                out.append((qi, li, float(sum(logprobs[r, column[p], t] for p, t in targets))))
        return out

    def chat_letter_scores(self, chats: Sequence[Chat], answer_prefix: str, letters: Sequence[str],
                           batch_size: int = 8, groups: Sequence[Hashable] | None = None) -> list[list[float]]:
        contexts = [self.chat_prompt(chat) + answer_prefix for chat in chats]
        return self.score_letters(contexts, letters, batch_size, groups)

    # -- generation ----------------------------------------------------------------------------
    def generate_text(self, contexts: Sequence[str], max_new_tokens: int, batch_size: int = 8) -> list[str]:
        """Greedy continuations; generation pads on the left so every row ends at the same position."""
        import torch

        encoded = [self.encode(c)[-self.max_length:] for c in contexts]
        outputs = [""] * len(contexts)
        for batch in _by_length(encoded, len, batch_size, "generating"):
            width = max(len(encoded[i]) for i in batch)
            input_ids = torch.full((len(batch), width), self.pad_id, dtype=torch.long)
            mask = torch.zeros((len(batch), width), dtype=torch.long)
            for r, i in enumerate(batch):
                input_ids[r, width - len(encoded[i]):] = torch.tensor(encoded[i])
                mask[r, width - len(encoded[i]):] = 1
            with torch.inference_mode():
                generated = self.model.generate(
                    input_ids=input_ids.to(self.device), attention_mask=mask.to(self.device),
                    max_new_tokens=max_new_tokens, do_sample=False, pad_token_id=self.pad_id,
                )
            for r, i in enumerate(batch):
                outputs[i] = self.tokenizer.decode(generated[r, width:], skip_special_tokens=True)
        return outputs

    def generate_chat(self, chats: Sequence[Chat], max_new_tokens: int, batch_size: int = 8) -> list[str]:
        return self.generate_text([self.chat_prompt(chat) for chat in chats], max_new_tokens, batch_size)

    def describe(self) -> dict[str, Any]:
        return {"backend": self.kind, "model": self.name, "model_path": self.path, "dtype": self.dtype,
                "device": self.device}


class EndpointBackend:
    """An OpenAI-compatible server (vLLM, llama.cpp, transformers serve, hosted APIs) over HTTP.

    base-token uses `/v1/completions` with `echo` and `logprobs` (the prompt's own token
    log-probabilities, as lm-evaluation-harness's local-completions model does): one request per
    continuation. Servers with no usable echo (none, or llama-cpp-python's misaligned one) are
    scored from the top log-probabilities of the first generated token instead: one request per
    question, exact for single-token continuations such as " A" (-inf outside the top k).
    instruct-token asks `/v1/chat/completions` for `top_logprobs` and reads them at the token that
    follows the answer prefix in the reply; a reply that does not open with the prefix leaves that
    question to generated text (a counted fallback).
    The client is the QA generator's (`astrodata.core.http.openai_client`: a bare server root gets
    `/v1`, the API key comes from `OPENAI_API_KEY` only and is never written anywhere) and requests
    are retried by the same policy (`RetryPolicy`: 408/409/429/5xx but 501 and network errors, full
    jitter, Retry-After honoured); replies are read as raw JSON, so scores do not depend on the SDK's
    response models.
    """

    kind = "endpoint"

    def __init__(self, url: str, model: str, concurrency: int = 8, timeout: float = 600.0,
                 top_logprobs: int = 20, policy: RetryPolicy | None = None) -> None:
        self.client = openai_client(url, timeout)  # the QA generator's client: same URL rule, key, no SDK retries
        self.base = str(self.client.base_url).rstrip("/")
        self.name = model
        self.concurrency = max(1, concurrency)
        self.top_logprobs = top_logprobs
        self.policy = policy or RetryPolicy()

    def _post(self, route: str, body: dict[str, Any]) -> dict[str, Any]:
        """One request and its JSON reply, retried by the shared policy (408/409/429/5xx but 501,
        network errors); a final failure raises RuntimeError naming the route and the reason."""
        import openai

        def send() -> Any:
            return self.client.post(f"/{route}", body={"model": self.name, **body}, cast_to=object)

        try:
            data = self.policy.call(send)
        except openai.APIStatusError as exc:
            raise RuntimeError(f"{self.public_url}/{route}: {status_reason(exc)}") from None
        except openai.APIConnectionError as exc:
            raise RuntimeError(f"{self.public_url}/{route}: {type(exc.__cause__ or exc).__name__}: "
                               f"{' '.join(str(exc.__cause__ or exc).split())[:200]}") from None
        return json.loads(data) if isinstance(data, str) else data  # a reply not labelled JSON comes as text

    def _map(self, fn: Callable[[Any], Any], items: Sequence[Any]) -> list[Any]:
        """The first request alone (it tells whether the server gives logprobs at all), then the rest in parallel."""
        if not items:
            return []
        first = fn(items[0])
        with ThreadPoolExecutor(self.concurrency) as pool:
            return [first, *pool.map(fn, items[1:])]

    @property
    def public_url(self) -> str:
        """The URL without any user:password part."""
        return re.sub(r"//[^/@]*@", "//", self.base)

    def score_letters(self, contexts: Sequence[str], continuations: Sequence[str], batch_size: int = 8,
                      groups: Sequence[Hashable] | None = None) -> list[list[float]]:
        n = len(continuations)
        try:
            flat = self._map(self._echo_logprob, [(c, k) for c in contexts for k in continuations])
            return [flat[i * n:(i + 1) * n] for i in range(len(contexts))]
        except NoLogprobs:  # no usable echo: next-token scores; a server with neither raises again
            return self._map(lambda context: self._next_token_logprobs(context, continuations), contexts)

    def _echo_logprob(self, pair: tuple[str, str]) -> float:
        """Sum of the continuation's echoed prompt log-probabilities.

        A conforming server lists the prompt's tokens, then the generated one. llama-cpp-python
        0.3.36 lists only the prompt's, each carrying the distribution of the *next* token (and
        only its top k): that layout is refused rather than read (scripts/llamacpp_check.py)."""
        context, continuation = pair
        prompt = context + continuation
        body = {"prompt": prompt, "max_tokens": 1, "echo": True, "logprobs": 1, "temperature": 0}
        choice = self._post("completions", body)["choices"][0]
        lp = choice.get("logprobs") or {}
        tokens, values, offsets = lp.get("tokens"), lp.get("token_logprobs"), lp.get("text_offset")
        if not tokens or values is None or not offsets or not choice.get("text", "").startswith(context):
            raise NoLogprobs(f"{self.public_url}/completions gave no prompt log-probabilities (echo)")
        if offsets[-1] < len(prompt):
            raise NoLogprobs(f"{self.public_url}/completions: echoed log-probabilities lack the generated "
                             "token (misaligned)")
        picked = [v for v, off in zip(values, offsets, strict=True) if len(context) <= off < len(prompt) and v is not None]
        if not picked:
            raise NoLogprobs(f"{self.public_url}/completions gave no log-probability for {continuation!r}")
        return float(sum(picked))

    def _next_token_logprobs(self, context: str, continuations: Sequence[str]) -> list[float]:
        """Each continuation's log-probability as the first generated token (-inf outside the top k)."""
        body = {"prompt": context, "max_tokens": 1, "logprobs": self.top_logprobs, "temperature": 0}
        choice = self._post("completions", body)["choices"][0]
        tops = (choice.get("logprobs") or {}).get("top_logprobs") or [None]
        if not tops[0]:
            raise NoLogprobs(f"{self.public_url}/completions gave no top log-probabilities")
        return [float(tops[0].get(c, -math.inf)) for c in continuations]

    def chat_letter_scores(self, chats: Sequence[Chat], answer_prefix: str, letters: Sequence[str],
                           batch_size: int = 8, groups: Sequence[Hashable] | None = None,
                           max_new_tokens: int = 16) -> list[list[float] | None]:
        def one(chat: Chat) -> list[float] | None:
            body = {"messages": chat, "max_tokens": max_new_tokens, "temperature": 0, "logprobs": True,
                    "top_logprobs": self.top_logprobs}
            choice = self._post("chat/completions", body)["choices"][0]
            content = (choice.get("logprobs") or {}).get("content")
            if not content:
                raise NoLogprobs(f"{self.public_url}/chat/completions gave no top_logprobs")
            text = ""
            for entry in content:
                if _squash(text).endswith(_squash(answer_prefix)):
                    top = {t["token"]: t["logprob"] for t in entry.get("top_logprobs") or []}
                    return [max((v for k, v in top.items() if k.strip() == letter), default=-math.inf)
                            for letter in letters]
                text += entry["token"]
            return None  # the reply never opened with the answer prefix: generated text decides

        return self._map(one, chats)

    def generate_chat(self, chats: Sequence[Chat], max_new_tokens: int, batch_size: int = 8) -> list[str]:
        def one(chat: Chat) -> str:
            body = {"messages": chat, "max_tokens": max_new_tokens, "temperature": 0}
            return self._post("chat/completions", body)["choices"][0]["message"].get("content") or ""

        return self._map(one, chats)

    def generate_text(self, contexts: Sequence[str], max_new_tokens: int, batch_size: int = 8) -> list[str]:
        def one(context: str) -> str:
            body = {"prompt": context, "max_tokens": max_new_tokens, "temperature": 0}
            return self._post("completions", body)["choices"][0].get("text") or ""

        return self._map(one, contexts)

    def describe(self) -> dict[str, Any]:
        return {"backend": self.kind, "model": self.name, "endpoint": self.public_url}


def _squash(text: str) -> str:
    return re.sub(r"\s+", "", text)


def _looks_like_hub_id(name: str) -> bool:
    return bool(re.fullmatch(r"[A-Za-z0-9][\w.-]*/[\w.-]+", name))


def load_backend(model: str, *, endpoint: str | None = None, dtype: str = "float32",
                 concurrency: int = 8) -> HFBackend | EndpointBackend:
    """A local model unless an endpoint URL is given (then `model` is the server's model name)."""
    if endpoint:
        return EndpointBackend(endpoint, model, concurrency=concurrency)
    return HFBackend(model, dtype=dtype)
