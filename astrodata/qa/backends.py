"""LLM backends: the embedded SmolLM2 (transformers + outlines) and any OpenAI-compatible endpoint.

Both answer one chat request with a `Reply` (text and token counts) and classify failures so the
engine knows what to do: `Transient` (the statuses `astrodata.core.http.is_retryable` retries:
408, 409, 429, 5xx but 501; timeouts, broken replies: retry with backoff), `Rejected` (this
request can never succeed, e.g. HTTP 400: record it and go on) and `Fatal` (wrong key, unreachable
endpoint, unknown model, HTTP 501 Not Implemented: stop the run with one line).

Structured output differs per server, so an endpoint has a *dialect*:
- `json_schema`: `{"type": "json_schema", "json_schema": {...}}` (OpenAI, vLLM);
- `json_object_schema`: `{"type": "json_object", "schema": {...}}` (llama.cpp's server, which
  answers HTTP 500 to `json_schema`);
- `none`: no `response_format` (e.g. `transformers serve`, which ignores it); the prompt shows the
  format and the engine validates and retries.
`probe_dialect` finds the dialect a server honours by asking for a reply it could only produce
when the schema is enforced. Replies are validated with pydantic whatever the dialect.

The API key is read from `OPENAI_API_KEY` only and lives in the client object; it is never part
of a request record, a log line or an error message.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import cache
from typing import Any

from pydantic import BaseModel

from astrodata.core.http import (
    NOT_IMPLEMENTED,
    is_retryable,
    normalize_endpoint,
    openai_client,
    retry_after,
    status_reason,
)
from astrodata.core.models import EMBEDDED_NAME, embedded_model_path

GENERATION_THREAD = "embedded-generate"  # the thread name of an embedded generation in flight

DIALECTS = ("json_schema", "json_object_schema", "none")
EMBEDDED_GENERATOR = "embedded/SmolLM2-135M-Instruct"


class BackendError(Exception):
    """A request failed; the subclass says whether to retry, skip or stop."""


class Transient(BackendError):
    """Retry later (429, 5xx, timeout, connection reset, a reply body that does not parse)."""

    def __init__(self, reason: str, retry_after: float | None = None):
        super().__init__(reason)
        self.retry_after = retry_after


class Rejected(BackendError):
    """The server refuses this request for good (HTTP 400/413/422): record it, go on."""


class Fatal(BackendError):
    """The run cannot go on (wrong key, unreachable endpoint, unknown model)."""


@dataclass
class Reply:
    text: str
    tokens_in: int
    tokens_out: int
    finish_reason: str | None


@cache
def schema_json(schema: type[BaseModel]) -> dict[str, Any]:
    """The schema's JSON Schema (cached: pydantic builds it anew on every call, ~0.5 ms)."""
    return schema.model_json_schema()


def strict_schema(schema: dict[str, Any]) -> dict[str, Any]:
    """The schema every structured-output server takes: string length bounds removed (the engine
    still validates them), every object closed. OpenAI's strict mode rejects length bounds, and
    llama.cpp's grammar compiler fails on long ones (`max_summary_chars: 1200`), after which
    llama-cpp-python's server 0.3.36 dies; measured with scripts/llamacpp_check.py."""
    if isinstance(schema, dict):
        out = {k: strict_schema(v) for k, v in schema.items() if k not in ("minLength", "maxLength", "title")}
        if out.get("type") == "object":
            out["additionalProperties"] = False
        return out
    if isinstance(schema, list):
        return [strict_schema(v) for v in schema]
    return schema


class Backend:
    """What the engine needs from a backend."""

    name: str  # the generator recorded on items and part of every cache key
    via: str  # embedded | endpoint
    dialect: str
    context_tokens: int | None = None

    def params(self, schema: type[BaseModel], max_tokens: int) -> dict[str, Any]:
        """Everything besides model and messages that shapes the reply (enters the cache key)."""
        raise NotImplementedError

    def body(self, messages: list[dict[str, str]], schema: type[BaseModel], max_tokens: int) -> dict[str, Any]:
        """The request as an OpenAI chat-completions body (recorded, and written by batch mode)."""
        raise NotImplementedError

    async def complete(self, messages: list[dict[str, str]], schema: type[BaseModel], max_tokens: int) -> Reply:
        raise NotImplementedError

    def count_tokens(self, messages: list[dict[str, str]]) -> int | None:
        """Exact prompt tokens when the tokenizer is at hand, else None."""
        return None

    async def check(self) -> None:
        """Fail fast (Fatal) before any work when the backend cannot answer at all."""

    async def aclose(self) -> None:
        """Release connections."""


# -- embedded -------------------------------------------------------------------------------------
@dataclass
class _Request:
    """One embedded generation: the chat-formatted prompt and where its reply goes."""

    prompt: str
    schema: type[BaseModel]
    max_tokens: int
    settle: Callable[[Reply | BaseException], None]


BRACKETS = frozenset("{}[]")
OVERRUN_LOGIT = -1e4  # the length guard's logit: below any real one, finite so the schema mask keeps a choice


@dataclass
class JSONStringState:
    """Where a row's JSON text stands, fed one token's text at a time: inside a string or not, how
    many characters the string holds so far, whether the last token in it was brackets only, and
    which key the string is the value of.

    It drives two guards in the decoding loop.
    - The bracket guard: inside a string, a token made only of `{}[]` (with quotes or commas, as in
      `}]"`) is penalised when it would open the string or follow a token of brackets only.
      SmolLM2-135M, asked for pairs, often "closes" the JSON inside an answer string (`"answer":
      "}]}`) and, the string still open, goes on with `]}{}]]}...` up to its token limit: the reply
      is cut off and every pair in it lost. A single brace after other text stays free, so LaTeX
      (`10^{7}`, `\\frac{1}{2}`) is untouched.
    - The length guard (`room`): a string that is the value of a key with a `maxLength` may take
      only that many characters. An escape sequence counts as one character, except `\\uXXXX`,
      which counts five (never fewer characters than pydantic counts)."""

    in_string: bool = False
    escaped: bool = False
    chars: int = 0  # characters in the current string so far
    last_brackets: bool = False  # the last token inside the string was brackets only
    key: str | None = None  # the key whose value the current string is (None: a key, an array item)
    last_string: str = ""  # the text of the last string closed (a key, when a colon follows)
    after_colon: bool = False  # outside strings, the last character other than white space was `:`
    text: list[str] = field(default_factory=list)  # the current string's first KEY_CHARS characters

    KEY_CHARS = 64  # keys longer than this are not matched against the bounds

    def guard(self) -> bool:
        """True when a brackets-only token should be penalised now."""
        return self.in_string and (self.chars == 0 or self.last_brackets)

    def room(self, bounds: dict[str, int]) -> int | None:
        """The characters the current string may still take: its key's bound in `bounds` (a
        `maxLength` by property name) less those it holds; None outside a bounded value."""
        if not self.in_string or self.key not in bounds:
            return None
        return bounds[self.key] - self.chars

    def feed(self, text: str) -> None:
        was_in = self.in_string
        self.last_brackets = was_in and bool(text.strip()) and set(text.strip()) <= BRACKETS
        for ch in text:
            if not self.in_string:
                if ch == '"':
                    self.in_string, self.chars, self.last_brackets = True, 0, False
                    self.key = self.last_string if self.after_colon else None
                    self.text = []
                elif not ch.isspace():
                    self.after_colon = ch == ":"
                continue
            if self.escaped:
                self.escaped = False
            elif ch == "\\":
                self.escaped = True
                continue
            elif ch == '"':
                self.in_string, self.after_colon, self.last_string = False, False, "".join(self.text)
                continue
            self.chars += 1
            if len(self.text) < self.KEY_CHARS:
                self.text.append(ch)


@dataclass
class _Scoring:
    """Log-likelihood requests: (chat messages, reply) pairs scored by forward passes alone."""

    pairs: list[tuple[list[dict[str, str]], str]]
    settle: Callable[[list[tuple[float, int]] | BaseException], None]


@dataclass
class DecodeStats:
    """Where the decoding loop's time went: prefills (one per request) and decoding steps (one
    forward pass over every active row) by the rows they decoded. Seconds are wall-clock."""

    prefills: int = 0
    prefill_s: float = 0.0
    steps: Counter[int] = field(default_factory=Counter)  # decoding steps by rows
    step_s: Counter[int] = field(default_factory=Counter)  # seconds of those steps by rows


@dataclass
class _Row:
    """A request being decoded: its schema guide and the tokens generated so far."""

    request: _Request
    guide: Any  # outlines_core.Guide: the JSON-schema automaton of this row alone
    prompt_len: int
    generator: Any  # torch.Generator when sampling, else None
    bounds: dict[str, int]  # maxLength by property name, enforced by the decoding loop
    ids: list[int] = field(default_factory=list)
    json: JSONStringState = field(default_factory=JSONStringState)


def decoding_schema(schema: dict[str, Any]) -> tuple[dict[str, Any], dict[str, int]]:
    """(The JSON schema with `maxLength` taken off every string property, those bounds by
    property name), the smallest bound where a name recurs. Other bounds stay in the schema.

    outlines compiles a bounded string into one automaton state per character, and its index
    keeps the allowed tokens of every state: for the QA schema (3 pairs, 300- and 800-character
    strings) the index took 19 s to build and 1.96 GB of memory, against 0.6 s and 16 MB without
    the bounds (measured on this 2-core machine). The decoding loop enforces the bounds instead
    (`JSONStringState.room`), so replies keep within them; validation still checks them."""
    out = json.loads(json.dumps(schema))
    bounds: dict[str, int] = {}

    def walk(node: Any) -> None:
        if isinstance(node, dict):
            for name, prop in (node.get("properties") or {}).items():
                if isinstance(prop, dict) and prop.get("type") == "string" and "maxLength" in prop:
                    bounds[name] = min(bounds.get(name, prop["maxLength"]), prop.pop("maxLength"))
            for value in node.values():
                walk(value)
        elif isinstance(node, list):
            for value in node:
                walk(value)

    walk(out)
    return out, bounds


def repeated_ngram_tokens(ids: list[int], n: int) -> list[int]:
    """The tokens that would complete an n-gram already present in `ids` (a row's generated tokens).

    Hand-written because the library's two tools misfire under a JSON schema: `no_repeat_ngram_size`
    counts the prompt (it would forbid quoting the passage) and bans with -inf (a schema mask
    applied after it can then leave no token at all); `repetition_penalty` penalises every token
    already generated, including the closing quote of a JSON string, so strings run to their
    length bound. The caller subtracts a finite penalty, so a token the schema requires stays
    available."""
    if len(ids) < n:
        return []
    prefix = ids[len(ids) - n + 1:]
    return sorted({ids[i + n - 1] for i in range(len(ids) - n + 1) if ids[i:i + n - 1] == prefix})


def native_dtype() -> str:
    """bfloat16 where the CPU computes in it natively (AVX512-BF16 or AMX), else float32.

    SmolLM2 was trained in bf16. Measured on this 2-core Xeon (AMX), one thread, after the first
    call (oneDNN compiles its bf16 kernels then): a 700-token prefill 0.65 CPU-s in bf16 against
    1.5 in fp32, a decoding step over 8 rows 95 ms against 160. Without those units PyTorch
    emulates bf16 arithmetic, which we have not measured; float32 is the safe choice there."""
    import torch

    native = torch.cpu._is_avx512_bf16_supported() or torch.cpu._is_amx_tile_supported()
    return "bfloat16" if native else "float32"


class EmbeddedBackend(Backend):
    """SmolLM2 through transformers, constrained to the reply's JSON schema, continuously batched.

    Requests are decoded together, up to `max_batch` at a time, by one decoding loop over the
    model's forward pass (`_decode`): each step feeds every active row its last token, and a row
    that finishes leaves the batch at once while a queued request takes its place (its prompt is
    prefilled alone and its key/value cache joins the batch's, left-padded to the same length).
    This is the continuous batching of Orca (Yu et al., OSDI 2022) reduced to a CPU and one model:
    no row waits for the longest reply of its batch. On this 2-core machine a decoding step over 8
    rows costs about 1.7 times a step over one (~75 against ~44 ms in bf16, where a third of the
    single-row step is Python and dispatch overhead). `max_batch` 12 is the measured best: 32 QA
    prompts at 256 new tokens gave 76-77 output tokens/s with 8 slots, 86 with 10, 90-98 with 12,
    88 with 14 and 75 with 16 (one at a time: ~20; tests/perf/bench_embedded_batch.py).

    Written here rather than taken from `model.generate`, which decodes a fixed batch until its
    longest row ends, or from transformers' continuous batching (`generate_batch`), which takes
    no per-request logits processors: each row here keeps its own outlines-core guide (the JSON
    schema's token automaton, built once per schema by outlines), its own repetition guard
    (`repeated_ngram_tokens`, applied before the schema mask) and, when sampling, its own seeded
    generator, so a reply does not depend on which requests shared its batch. The loop runs in a
    daemon thread (GENERATION_THREAD) fed by `complete`; `generate_batch` runs it synchronously.
    """

    via = "embedded"
    dialect = "outlines"

    def __init__(self, temperature: float = 0.0, seed: int | None = 0, max_batch: int = 12,
                 no_repeat_ngram: int = 5, ngram_penalty: float = 100.0, dtype: str | None = None):
        self.dtype = dtype or native_dtype()
        self.path = embedded_model_path(self.dtype)
        self.name = EMBEDDED_GENERATOR
        self.temperature = temperature
        self.seed = seed
        self.max_batch = max_batch
        self.no_repeat_ngram = no_repeat_ngram
        self.ngram_penalty = ngram_penalty
        from transformers import AutoConfig, AutoTokenizer

        self.tokenizer = AutoTokenizer.from_pretrained(self.path)
        self.context_tokens = int(AutoConfig.from_pretrained(self.path).max_position_embeddings)
        self._model: Any = None
        self._outlines: Any = None
        self._indexes: dict[str, tuple[Any, dict[str, int]]] = {}
        self._texts: dict[int, str] = {}  # token id -> its text
        self._bracket_tokens: Any = None  # ids of the tokens made of {}[] (with quotes, commas, spaces)
        self._token_span: Any = None  # characters each token may add to a string (+1 after a backslash)
        self._closes_string: Any = None  # tokens whose text starts with a quote
        self._longest_span = 0  # the largest token span: below it, the length guard masks
        self._lock = threading.Lock()  # one decoding loop at a time (the model is not re-entrant)
        self._queue: list[_Request | _Scoring] = []  # from `complete`/`loglikelihoods`, under _queue_lock
        self._queue_lock = threading.Lock()
        self._looping = False  # a decoding thread is running (guarded by _queue_lock)
        self._thread: threading.Thread | None = None
        self.score_tokens = 200  # log-likelihoods read at most this many reply tokens
        self.join_s = 2.0  # aclose() waits this long for the decoding thread (a prefill in flight)
        self._stop = threading.Event()  # set by aclose(): decoding stops at its next token
        self.stats = DecodeStats()

    def params(self, schema: type[BaseModel], max_tokens: int) -> dict[str, Any]:
        return {"max_tokens": max_tokens, "temperature": self.temperature, "seed": self.seed,
                "no_repeat_ngram": self.no_repeat_ngram, "bracket_guard": True, "length_guard": True,
                "constrained": "outlines-json",
                "dtype": self.dtype}

    def body(self, messages: list[dict[str, str]], schema: type[BaseModel], max_tokens: int) -> dict[str, Any]:
        return {"model": self.name, "messages": messages, **self.params(schema, max_tokens)}

    def _prompt(self, messages: list[dict[str, str]]) -> str:
        return self.tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)

    def count_tokens(self, messages: list[dict[str, str]]) -> int:
        return len(self.tokenizer(self._prompt(messages), add_special_tokens=False).input_ids)

    def _load(self) -> None:
        import outlines
        import torch
        from transformers import AutoModelForCausalLM

        if self._model is None:
            self._model = AutoModelForCausalLM.from_pretrained(self.path, dtype=getattr(torch, self.dtype))
            texts = [self._token_text(i) for i in range(len(self.tokenizer))]
            self._bracket_tokens = torch.tensor([i for i, t in enumerate(texts) if set(t.strip()) & BRACKETS
                                                 and set(t.strip()) <= BRACKETS | {'"', ","}])
            self._token_span = torch.tensor([len(t) + t.endswith("\\") for t in texts])
            self._closes_string = torch.tensor([t.startswith('"') for t in texts])
            self._longest_span = int(self._token_span.max())
            self._model.eval()
            self._outlines = outlines.from_transformers(self._model, self.tokenizer)

    def _token_text(self, token: int) -> str:
        """The text one token adds (byte-level pieces decoded as the tokenizer would)."""
        if token not in self._texts:
            self._texts[token] = self.tokenizer.convert_tokens_to_string([self.tokenizer.convert_ids_to_tokens(token)])
        return self._texts[token]

    def _index(self, schema: type[BaseModel]) -> tuple[Any, dict[str, int]]:
        """(outlines' token automaton for the schema without its string bounds, the bounds by
        property name: `decoding_schema`), built once per schema."""
        import outlines
        from outlines.types import JsonSchema

        key = json.dumps(schema_json(schema), sort_keys=True)
        if key not in self._indexes:
            unbounded, bounds = decoding_schema(schema_json(schema))
            index = outlines.Generator(self._outlines, JsonSchema(unbounded)).logits_processor.index
            self._indexes[key] = index, bounds
        return self._indexes[key]

    # the decoding loop ---------------------------------------------------------------------------
    def _decode(self, take: Callable[[int], list[_Request | _Scoring]]) -> None:
        """Decode until `take(free_slots)` has no more requests and every row has finished.

        Each step: admit new requests into free slots (prefill), choose every row's next token
        (repetition penalty, schema mask, greedy or seeded sampling), settle the rows that ended,
        then one forward pass over the rows left. Holds the model for its whole run."""
        import torch
        from outlines_core import Guide
        from outlines_core.kernels.torch import (
            allocate_token_bitmask,
            apply_token_bitmask_inplace,
            fill_next_token_bitmask,
        )

        with self._lock, torch.inference_mode():
            rows: list[_Row] = []
            cache: Any = None
            mask = logits = positions = None  # (rows, columns) attention mask; (rows, vocab); (rows,)
            try:
                while True:
                    if self._stop.is_set():
                        raise Transient("stopped: the run is ending")
                    for request in take(self.max_batch - len(rows)):
                        try:  # a request that cannot start fails alone
                            self._load()
                            if isinstance(request, _Scoring):  # no slot: scored now, between two steps
                                request.settle(self._score(request.pairs))
                                continue
                            ids = self.tokenizer(request.prompt, return_tensors="pt",
                                                 add_special_tokens=False).input_ids
                            new_cache = _growing_cache(self._model.config)
                            started = time.perf_counter()
                            out = self._model(ids, cache=new_cache, use_cache=True, logits_to_keep=1)
                            self.stats.prefills += 1
                            self.stats.prefill_s += time.perf_counter() - started
                            index, bounds = self._index(request.schema)
                            row = _Row(request, Guide(index), ids.shape[1], self._row_generator(request.prompt),
                                       bounds)
                        except Exception as exc:  # noqa: BLE001 - handed to the request's caller
                            request.settle(exc)
                            continue
                        cache, mask = _join_caches(cache, mask, new_cache, torch.ones_like(ids))
                        logits = _append(logits, out.logits[:, -1].float())
                        positions = _append(positions, torch.tensor([ids.shape[1]]))
                        rows.append(row)
                    if not rows:
                        return
                    bitmask = allocate_token_bitmask(logits.shape[1]).repeat(len(rows), 1)
                    for i, row in enumerate(rows):
                        if self.no_repeat_ngram:
                            banned = repeated_ngram_tokens(row.ids, self.no_repeat_ngram)
                            logits[i, banned] -= self.ngram_penalty
                        if row.json.guard():
                            logits[i, self._bracket_tokens] -= self.ngram_penalty
                        room = row.json.room(row.bounds)
                        if room is not None and room < self._longest_span:  # the length guard
                            over = self._token_span > room
                            if not row.json.escaped:
                                over &= ~self._closes_string  # the closing quote always fits
                            logits[i, : over.shape[0]].masked_fill_(over, OVERRUN_LOGIT)
                        fill_next_token_bitmask(row.guide, bitmask[i:i + 1])
                    apply_token_bitmask_inplace(logits, bitmask)
                    chosen = self._choose(rows, logits)
                    keep = []
                    for i, (row, token) in enumerate(zip(rows, chosen, strict=True)):
                        ended = token == self.tokenizer.eos_token_id
                        if not ended:
                            row.ids.append(token)
                            row.json.feed(self._token_text(token))
                            row.guide.advance(token_id=token, return_tokens=False)
                            ended = row.guide.is_finished()
                        if ended or len(row.ids) >= row.request.max_tokens:
                            self._settle(row, token, ended)
                        else:
                            keep.append(i)
                    if len(keep) < len(rows):
                        index = torch.tensor(keep, dtype=torch.long)
                        rows = [rows[i] for i in keep]
                        cache.batch_select_indices(index)
                        mask, positions, chosen = mask[index], positions[index], [chosen[i] for i in keep]
                        cache, mask = _trim_cache(cache, mask)
                    if not rows:
                        cache = mask = logits = positions = None
                        continue
                    started = time.perf_counter()
                    mask = torch.cat([mask, torch.ones(len(rows), 1, dtype=mask.dtype)], dim=1)
                    out = self._model(torch.tensor(chosen).unsqueeze(1), attention_mask=mask,
                                      position_ids=positions.unsqueeze(1), cache=cache, use_cache=True)
                    logits, positions = out.logits[:, -1].float(), positions + 1
                    self.stats.steps[len(rows)] += 1
                    self.stats.step_s[len(rows)] += time.perf_counter() - started
            except BaseException as exc:  # noqa: BLE001 - every waiting request learns of it
                for row in rows:
                    row.request.settle(exc)
                raise

    def _score(self, pairs: list[tuple[list[dict[str, str]], str]]) -> list[tuple[float, int]]:
        """(sum of log p(reply token | chat prompt, earlier reply tokens) in nats, reply tokens) per
        pair; the reply is cut to `score_tokens` tokens. One forward pass per pair, logits kept only
        at the reply's positions."""
        import torch

        out = []
        for messages, reply in pairs:
            prompt = self.tokenizer(self._prompt(messages), add_special_tokens=False).input_ids
            target = self.tokenizer(reply, add_special_tokens=False).input_ids[: self.score_tokens]
            if not target:
                out.append((0.0, 0))
                continue
            ids = torch.tensor([prompt + target])
            logits = self._model(ids, logits_to_keep=len(target) + 1).logits[0, :-1].float()
            logprobs = torch.log_softmax(logits, dim=-1).gather(1, torch.tensor(target).unsqueeze(1))
            out.append((float(logprobs.sum()), len(target)))
        return out

    def _row_generator(self, prompt: str) -> Any:
        """A sampling generator seeded by the run's seed and the prompt, or None when greedy."""
        import torch

        if self.temperature <= 0:
            return None
        generator = torch.Generator()
        digest = hashlib.sha256(f"{self.seed}\0{prompt}".encode()).digest()
        generator.manual_seed(int.from_bytes(digest[:8], "big") if self.seed is not None else torch.seed())
        return generator

    def _choose(self, rows: list[_Row], logits: Any) -> list[int]:
        """Each row's next token from its masked logits (rows, vocab): greedy, or sampled at the
        backend's temperature with the row's own generator."""
        import torch

        if self.temperature <= 0:
            return logits.argmax(dim=-1).tolist()
        probs = torch.softmax(logits / self.temperature, dim=-1)
        return [int(torch.multinomial(probs[i], 1, generator=row.generator)) for i, row in enumerate(rows)]

    def _settle(self, row: _Row, last: int, ended: bool) -> None:
        text = self.tokenizer.decode(row.ids, skip_special_tokens=True)
        emitted = len(row.ids) + (last == self.tokenizer.eos_token_id)
        row.request.settle(Reply(text, row.prompt_len, emitted, "stop" if ended else "length"))

    # entry points ----------------------------------------------------------------------------------
    def generate_batch(self, prompts: list[str], schema: type[BaseModel], max_tokens: int) -> list[Reply]:
        """Replies to chat-formatted prompts, in prompt order, decoded `max_batch` rows at a time.

        Blocking (seconds to minutes). Raises the first failure (Transient when stopped)."""
        results: list[Reply | BaseException | None] = [None] * len(prompts)

        def request(i: int, prompt: str) -> _Request:
            return _Request(prompt, schema, max_tokens, lambda r: results.__setitem__(i, r))

        queue = [request(i, p) for i, p in enumerate(prompts)]

        def take(n: int) -> list[_Request]:
            batch, queue[:] = queue[:n], queue[n:]
            return batch

        self._decode(take)
        for r in results:
            if isinstance(r, BaseException):
                raise r
        return results  # type: ignore[return-value]

    async def complete(self, messages: list[dict[str, str]], schema: type[BaseModel], max_tokens: int) -> Reply:
        loop = asyncio.get_running_loop()
        future: asyncio.Future[Reply] = loop.create_future()
        self._enqueue(_Request(self._prompt(messages), schema, max_tokens, self._settler(loop, future)))
        return await future

    @staticmethod
    def _settler(loop: asyncio.AbstractEventLoop, future: asyncio.Future[Any]) -> Callable[[Any], None]:
        """A callback the decoding thread calls with a result or an exception for `future`."""
        def settle(result: Any) -> None:
            def put() -> None:
                if not future.done():
                    future.set_exception(result) if isinstance(result, BaseException) else future.set_result(result)
            try:
                loop.call_soon_threadsafe(put)
            except RuntimeError:  # the loop has closed (the run was interrupted)
                pass
        return settle

    def _enqueue(self, request: _Request | _Scoring) -> None:
        """Queue a request for the decoding thread, starting the thread when none runs."""
        with self._queue_lock:
            self._queue.append(request)
            start, self._looping = not self._looping, True
        if start:
            self._thread = threading.Thread(target=self._serve_queue, name=GENERATION_THREAD, daemon=True)
            self._thread.start()

    async def loglikelihoods(self, pairs: list[tuple[list[dict[str, str]], str]]) -> list[tuple[float, int]]:
        """For each (chat messages, reply): the reply's log-likelihood after the chat prompt (nats,
        summed over its first `score_tokens` tokens) and its token count. Scored by the decoding
        thread between two steps, so it never runs beside a decoding step on the same cores."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future[list[tuple[float, int]]] = loop.create_future()
        self._enqueue(_Scoring(pairs, self._settler(loop, future)))
        return await future

    def _take_queued(self, n: int) -> list[_Request | _Scoring]:
        """Every queued scoring request (they take no slot) and up to `n` generation requests."""
        with self._queue_lock:
            scoring = [r for r in self._queue if isinstance(r, _Scoring)]
            generation = [r for r in self._queue if not isinstance(r, _Scoring)]
            self._queue = generation[n:]
            return scoring + generation[:n]

    def _serve_queue(self) -> None:
        """The decoding thread behind `complete`: runs until the queue is empty and every row is done.
        A failure of the loop (the model cannot load, the run is stopping) reaches every request."""
        while True:
            try:
                self._decode(self._take_queued)
            except BaseException as exc:  # noqa: BLE001 - handed to the queued requests too
                for request in self._take_queued(len(self._queue)):
                    request.settle(exc)
            with self._queue_lock:
                if not self._queue:
                    self._looping = False
                    return

    async def aclose(self) -> None:
        """Stop decoding at its next token (Ctrl-C, a fatal error elsewhere: the decoding thread
        cannot be cancelled, and a batch can take minutes), and wait up to `join_s` for the thread
        to leave torch: a daemon thread still inside torch when the interpreter exits aborts it."""
        self._stop.set()
        deadline = time.monotonic() + self.join_s
        while self._thread is not None and self._thread.is_alive() and time.monotonic() < deadline:
            await asyncio.sleep(0.02)


def _growing_cache(config: Any) -> Any:
    """A transformers `DynamicCache` whose layers append into preallocated buffers.

    `DynamicLayer.update` concatenates each new token's keys and values onto the whole cache, a
    copy of every row's cache per layer per step: measured with torch.profiler on this 2-core
    machine, `aten::cat` took 44% of a decoding step over 8 rows with 700-token prompts. Here a
    layer writes into spare columns of a buffer with head room and hands attention a view; the
    buffer is copied only when it is full or when the batch changes shape (a row joins, leaves,
    or leading columns are trimmed: the layer's tensors are then no longer views of its buffer)."""
    from transformers import DynamicCache
    from transformers.cache_utils import DynamicLayer

    class GrowingLayer(DynamicLayer):
        buffers: tuple[Any, Any] | None = None

        def update(self, key_states: Any, value_states: Any, *args: Any, **kwargs: Any) -> tuple[Any, Any]:
            if not self.is_initialized:
                self.lazy_initialization(key_states, value_states)
            used = self.keys.shape[-2] if self.keys.dim() == 4 else 0
            need = used + key_states.shape[-2]
            held = self.buffers
            if (held is None or held[0].shape[0] != key_states.shape[0] or held[0].shape[2] < need
                    or (used and self.keys.data_ptr() != held[0].data_ptr())):
                rows, heads, _, dim = key_states.shape
                shape = (rows, heads, need + max(128, need // 2), dim)
                held = self.buffers = (key_states.new_empty(shape), value_states.new_empty(shape))
                if used:
                    held[0][:, :, :used], held[1][:, :, :used] = self.keys, self.values
            held[0][:, :, used:need], held[1][:, :, used:need] = key_states, value_states
            self.keys, self.values = held[0][:, :, :need], held[1][:, :, :need]
            return self.keys, self.values

    cache = DynamicCache(config=config)
    cache.layers = [GrowingLayer() for _ in cache.layers]
    return cache


def _join_caches(cache: Any, mask: Any, new: Any, new_mask: Any) -> tuple[Any, Any]:
    """The batch's key/value cache and attention mask with `new` rows appended below, the shorter
    side left-padded (zero keys and values, mask 0) to the longer's length. Tensors per layer are
    (rows, kv_heads, columns, head_dim); masks (rows, columns)."""
    import torch
    import torch.nn.functional as F

    if cache is None:
        return new, new_mask
    width, new_width = mask.shape[1], new_mask.shape[1]
    for layer, extra in zip(cache.layers, new.layers, strict=True):
        old_k, old_v = (F.pad(t, (0, 0, new_width - width, 0)) if new_width > width else t
                        for t in (layer.keys, layer.values))
        add_k, add_v = (F.pad(t, (0, 0, width - new_width, 0)) if width > new_width else t
                        for t in (extra.keys, extra.values))
        layer.keys, layer.values = torch.cat([old_k, add_k]), torch.cat([old_v, add_v])
    columns = max(width, new_width)
    return cache, torch.cat([F.pad(mask, (columns - width, 0)), F.pad(new_mask, (columns - new_width, 0))])


def _append(rows: Any, new: Any) -> Any:
    import torch

    return new if rows is None else torch.cat([rows, new])


def _trim_cache(cache: Any, mask: Any) -> tuple[Any, Any]:
    """Drop the leading columns no remaining row attends to (left by rows that left the batch)."""
    first = int(mask.any(dim=0).int().argmax())
    if first:
        for layer in cache.layers:
            layer.keys, layer.values = layer.keys[:, :, first:], layer.values[:, :, first:]
        mask = mask[:, first:]
    return cache, mask


# -- OpenAI-compatible endpoints -----------------------------------------------------------------
class EndpointBackend(Backend):
    """Any OpenAI-compatible chat-completions server through the `openai` async client."""

    via = "endpoint"

    def __init__(self, endpoint: str, model: str, dialect: str = "none", temperature: float = 0.0,
                 seed: int | None = 0, timeout_s: float = 300.0, context_tokens: int | None = None,
                 client: Any = None):
        if dialect not in DIALECTS:
            raise ValueError(f"dialect must be one of {DIALECTS} (or auto), got {dialect!r}")
        self.endpoint = normalize_endpoint(endpoint)
        self.name = model
        self.dialect = dialect
        self.temperature = temperature
        self.seed = seed
        self.context_tokens = context_tokens
        # The openai client's retries are off (core.http.openai_client): the engine retries by the
        # shared policy instead, so it can count, back off with jitter and honour rate limits.
        self.client = client or openai_client(self.endpoint, timeout_s, asynchronous=True)
        self.probes = 0  # one-token probe requests answered by `check` (paid like any request)

    def with_dialect(self, dialect: str) -> EndpointBackend:
        """The same endpoint and client speaking another structured-output dialect."""
        return EndpointBackend(self.endpoint, self.name, dialect, self.temperature, self.seed,
                               context_tokens=self.context_tokens, client=self.client)

    def response_format(self, schema: type[BaseModel]) -> dict[str, Any] | None:
        if self.dialect == "json_schema":
            return {"type": "json_schema", "json_schema": {"name": schema.__name__, "strict": True,
                                                           "schema": strict_schema(schema_json(schema))}}
        if self.dialect == "json_object_schema":
            return {"type": "json_object", "schema": strict_schema(schema_json(schema))}
        return None

    def params(self, schema: type[BaseModel], max_tokens: int) -> dict[str, Any]:
        params: dict[str, Any] = {"max_tokens": max_tokens, "temperature": self.temperature}
        if self.seed is not None:
            params["seed"] = self.seed
        fmt = self.response_format(schema)
        if fmt is not None:
            params["response_format"] = fmt
        return params

    def body(self, messages: list[dict[str, str]], schema: type[BaseModel], max_tokens: int) -> dict[str, Any]:
        return {"model": self.name, "messages": messages, **self.params(schema, max_tokens)}

    async def check(self) -> None:
        """List the models, then send one real one-token chat request: proves the endpoint answers,
        accepts the key and serves chat completions for this model (Fatal otherwise). A transient
        answer (429, 5xx but 501, timeout) or a refusal of the tiny request itself (400, 422) is
        left to the engine's retries and per-request records."""
        import openai

        try:
            try:
                await self.client.models.list(timeout=30)
            except openai.APIStatusError as exc:
                if isinstance(exc, openai.AuthenticationError | openai.PermissionDeniedError):
                    raise
                # some servers have no /models; the chat request below tells
            await self.client.chat.completions.create(
                model=self.name, messages=[{"role": "user", "content": "Say OK."}], max_tokens=1, timeout=60)
            self.probes += 1
        except (openai.AuthenticationError, openai.PermissionDeniedError) as exc:
            raise Fatal(f"endpoint {self.endpoint} rejected the API key from OPENAI_API_KEY "
                        f"({status_reason(exc)})") from None
        except openai.APIConnectionError as exc:
            cause = exc.__cause__ or exc
            raise Fatal(f"cannot reach endpoint {self.endpoint}: {type(cause).__name__}: "
                        f"{' '.join(str(cause).split())[:200]}") from None
        except openai.APIStatusError as exc:
            if exc.status_code in (404, 405, 501):
                raise Fatal(f"endpoint {self.endpoint} does not serve chat completions for model {self.name!r} "
                            f"({status_reason(exc)})") from None

    async def complete(self, messages: list[dict[str, str]], schema: type[BaseModel], max_tokens: int) -> Reply:
        import openai

        try:
            resp = await self.client.chat.completions.create(
                model=self.name, messages=messages, **self.params(schema, max_tokens))
        except (openai.AuthenticationError, openai.PermissionDeniedError) as exc:
            raise Fatal(f"endpoint {self.endpoint} rejected the API key from OPENAI_API_KEY "
                        f"({status_reason(exc)})") from None
        except openai.NotFoundError as exc:
            raise Fatal(f"endpoint {self.endpoint} does not know model {self.name!r} or the chat "
                        f"completions route ({status_reason(exc)})") from None
        except openai.APITimeoutError:
            raise Transient("timeout") from None
        except openai.APIConnectionError as exc:
            raise Transient(f"connection: {type(exc.__cause__ or exc).__name__}") from None
        except openai.APIStatusError as exc:
            if exc.status_code == NOT_IMPLEMENTED:  # the server lacks the route: every request would fail
                raise Fatal(f"endpoint {self.endpoint} does not implement chat completions "
                            f"({status_reason(exc)})") from None
            if is_retryable(exc.status_code):
                raise Transient(status_reason(exc), retry_after(exc.response.headers)) from None
            raise Rejected(status_reason(exc)) from None
        except ValueError as exc:  # a 200 whose body is not JSON (cut off in transit)
            raise Transient(f"malformed reply body: {type(exc).__name__}") from None
        try:
            choice = resp.choices[0]
            text = choice.message.content or ""
            usage = resp.usage
            tokens_in = int(usage.prompt_tokens) if usage else 0
            tokens_out = int(usage.completion_tokens) if usage else 0
        except (AttributeError, IndexError, TypeError, ValueError):
            raise Transient("malformed reply body: no choices/message") from None
        return Reply(text, tokens_in, tokens_out, choice.finish_reason)

    async def aclose(self) -> None:
        await self.client.close()


def make_backend(model: str, endpoint: str | None, dialect: str, temperature: float, seed: int | None,
                 timeout_s: float, context_tokens: int | None) -> Backend:
    """The embedded backend for `model == "embedded"` without an endpoint, else an endpoint."""
    if endpoint is None:
        if model != EMBEDDED_NAME:
            raise ValueError(f"model {model!r} needs --endpoint (only 'embedded' runs without one)")
        return EmbeddedBackend(temperature, seed)
    return EndpointBackend(endpoint, model, "none" if dialect == "auto" else dialect, temperature, seed,
                           timeout_s, context_tokens)
