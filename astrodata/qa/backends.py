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
import json
import threading
from dataclasses import dataclass
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
class _Pending:
    prompt: str
    schema: type[BaseModel]
    max_tokens: int
    future: asyncio.Future[Reply]

    @property
    def group(self) -> tuple[str, int]:
        """Requests batch together when their schemas and reply lengths are the same."""
        return json.dumps(schema_json(self.schema), sort_keys=True), self.max_tokens


class GeneratedNGramPenalty:
    """A transformers logits processor: a token that would repeat an n-gram already in the
    *generated* part of its row (tokens after `prompt_len`) gets `penalty` subtracted from its logit.

    Hand-written because the library's two tools misfire under a JSON schema: `no_repeat_ngram_size`
    counts the prompt (it would forbid quoting the passage) and bans with -inf (a schema mask
    applied after it can then leave no token at all); `repetition_penalty` penalises every token
    already generated, including the closing quote of a JSON string, so strings run to their
    length bound. A finite penalty keeps a token the schema requires available.
    """

    def __init__(self, n: int, prompt_len: int, penalty: float = 100.0):
        self.n, self.prompt_len, self.penalty = n, prompt_len, penalty

    def __call__(self, input_ids: Any, scores: Any) -> Any:
        n = self.n
        for row, ids in enumerate(input_ids[:, self.prompt_len:].tolist()):
            if len(ids) < n:
                continue
            prefix = ids[len(ids) - n + 1:]
            banned = {ids[i + n - 1] for i in range(len(ids) - n + 1) if ids[i:i + n - 1] == prefix}
            if banned:
                scores[row, list(banned)] -= self.penalty
        return scores


class EmbeddedBackend(Backend):
    """SmolLM2 through transformers, constrained by outlines to the reply's JSON schema, batched.

    Requests that arrive together are decoded together: `complete` queues the request, and one
    drain task takes up to `max_batch` queued requests with the same schema and `max_tokens`,
    left-pads them and runs one `model.generate` over the batch in a worker thread (the model is
    not re-entrant and already uses every core; the event loop keeps writing the cache meanwhile).
    SmolLM2-135M decoding on a CPU is bound by memory bandwidth, so a forward pass over 8 sequences
    costs little more than over one (tests/perf/bench_embedded_batch.py measures the gain).

    The JSON schema is enforced per sequence: outlines' logits processor keeps one guide per row
    of the batch. Repetition is stopped by `GeneratedNGramPenalty` (a fragment repeated over and
    over, e.g. `\\times10^{7}` forty times, was the small model's usual failure), applied before the
    schema mask. With sampling (temperature > 0), the seed is set per batch, so replies depend on
    which requests were batched together.
    """

    via = "embedded"
    dialect = "outlines"

    def __init__(self, temperature: float = 0.0, seed: int | None = 0, max_batch: int = 8,
                 no_repeat_ngram: int = 5, gather_s: float = 0.05):
        self.path = embedded_model_path("float32")
        self.name = EMBEDDED_GENERATOR
        self.temperature = temperature
        self.seed = seed
        self.max_batch = max_batch
        self.no_repeat_ngram = no_repeat_ngram
        self.gather_s = gather_s  # wait this long after the first request for others to join it
        from transformers import AutoConfig, AutoTokenizer

        self.tokenizer = AutoTokenizer.from_pretrained(self.path)
        self.tokenizer.padding_side = "left"
        self.context_tokens = int(AutoConfig.from_pretrained(self.path).max_position_embeddings)
        self._model: Any = None
        self._outlines: Any = None
        self._processors: dict[str, Any] = {}
        self._lock = threading.Lock()
        self._queue: list[_Pending] = []
        self._drain: asyncio.Task[None] | None = None
        self._stop = threading.Event()  # set by aclose(): a batch in progress stops at its next token

    def params(self, schema: type[BaseModel], max_tokens: int) -> dict[str, Any]:
        return {"max_tokens": max_tokens, "temperature": self.temperature, "seed": self.seed,
                "no_repeat_ngram": self.no_repeat_ngram, "constrained": "outlines-json"}

    def body(self, messages: list[dict[str, str]], schema: type[BaseModel], max_tokens: int) -> dict[str, Any]:
        return {"model": self.name, "messages": messages, **self.params(schema, max_tokens)}

    def _prompt(self, messages: list[dict[str, str]]) -> str:
        return self.tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)

    def count_tokens(self, messages: list[dict[str, str]]) -> int:
        return len(self.tokenizer(self._prompt(messages), add_special_tokens=False).input_ids)

    def _schema_processor(self, schema: type[BaseModel]) -> Any:
        """outlines' JSON-schema logits processor (compiled once per schema: it costs seconds)."""
        import outlines
        import torch
        from transformers import AutoModelForCausalLM

        if self._model is None:
            # float32, not bf16: prompts here are long (passage + instructions, ~500-900 tokens)
            # and CPUs without bf16 units prefill them ~3x slower in bf16 (measured: 759 prompt +
            # 60 new tokens, 14.4 s bf16 vs 8.6 s fp32 on this machine's 2 cores).
            self._model = AutoModelForCausalLM.from_pretrained(self.path, dtype=torch.float32)
            self._outlines = outlines.from_transformers(self._model, self.tokenizer)
            self.tokenizer.padding_side = "left"  # outlines sets it too; batches are left-padded
        key = json.dumps(schema_json(schema), sort_keys=True)
        if key not in self._processors:
            self._processors[key] = outlines.Generator(self._outlines, schema).logits_processor
        return self._processors[key]

    def generate_batch(self, prompts: list[str], schema: type[BaseModel], max_tokens: int) -> list[Reply]:
        """Decode several chat-formatted prompts in one batch; replies in prompt order.

        Blocking (seconds to minutes); `complete` calls it from a worker thread."""
        import torch
        from transformers import LogitsProcessorList, StoppingCriteria, StoppingCriteriaList

        with self._lock:
            processor = self._schema_processor(schema)
            processor.reset()  # fresh per-sequence guides for this batch
            inputs = self.tokenizer(prompts, return_tensors="pt", padding=True, add_special_tokens=False)
            width = inputs.input_ids.shape[1]
            processors = LogitsProcessorList([processor])
            if self.no_repeat_ngram:
                processors.insert(0, GeneratedNGramPenalty(self.no_repeat_ngram, width))
            stop = self._stop

            class Stopped(StoppingCriteria):
                def __call__(self, input_ids: Any, scores: Any, **kwargs: Any) -> Any:
                    return torch.full((input_ids.shape[0],), stop.is_set(), dtype=torch.bool)

            kwargs: dict[str, Any] = {"max_new_tokens": max_tokens, "do_sample": self.temperature > 0,
                                      "logits_processor": processors, "pad_token_id": self.tokenizer.pad_token_id,
                                      "stopping_criteria": StoppingCriteriaList([Stopped()])}
            if self.temperature > 0:
                kwargs["temperature"] = self.temperature
                if self.seed is not None:
                    torch.manual_seed(self.seed)
            with torch.inference_mode():
                output = self._model.generate(**inputs, **kwargs)
        if stop.is_set():
            raise Transient("stopped: the run is ending")
        replies = []
        for row, mask in zip(output[:, width:], inputs.attention_mask, strict=True):
            ids = row.tolist()
            stop = ids.index(self.tokenizer.eos_token_id) if self.tokenizer.eos_token_id in ids else len(ids)
            text = self.tokenizer.decode(ids[:stop], skip_special_tokens=True)
            replies.append(Reply(text, int(mask.sum()), min(stop + 1, len(ids)),
                                 "stop" if stop < len(ids) else "length"))
        return replies

    async def complete(self, messages: list[dict[str, str]], schema: type[BaseModel], max_tokens: int) -> Reply:
        future: asyncio.Future[Reply] = asyncio.get_running_loop().create_future()
        self._queue.append(_Pending(self._prompt(messages), schema, max_tokens, future))
        if self._drain is None or self._drain.done():
            self._drain = asyncio.create_task(self._run_queue())
        return await future

    async def aclose(self) -> None:
        """Stop a batch in progress at its next token (Ctrl-C, a fatal error elsewhere): the worker
        thread cannot be cancelled, and a batch can take minutes."""
        self._stop.set()

    async def _run_queue(self) -> None:
        """Generate the queued requests, batch after batch, until the queue is empty."""
        await asyncio.sleep(self.gather_s)
        while self._queue:
            self._queue = [p for p in self._queue if not p.future.done()]  # drop cancelled requests
            if not self._queue:
                return
            head = self._queue[0]
            batch = [p for p in self._queue if p.group == head.group][: self.max_batch]
            self._queue = [p for p in self._queue if p not in batch]
            try:
                replies = await in_generation_thread(self.generate_batch, [p.prompt for p in batch],
                                                     head.schema, head.max_tokens)
            except Exception as exc:  # noqa: BLE001 - handed to every waiting request
                for p in batch:
                    if not p.future.done():
                        p.future.set_exception(exc)
                continue
            for p, reply in zip(batch, replies, strict=True):
                if not p.future.done():
                    p.future.set_result(reply)
            await asyncio.sleep(self.gather_s)  # let requests that the replies trigger join the next batch


async def in_generation_thread(fn: Any, *args: Any) -> Any:
    """`fn(*args)` in a daemon thread named GENERATION_THREAD; its result awaited.

    Not asyncio's default executor: `asyncio.run` waits for that executor's threads when it ends, so
    Ctrl-C would wait for a model load or a prefill in flight (tens of seconds on a CPU; the stop
    event is only seen between tokens). The CLI exits without waiting for a thread still in torch."""
    loop = asyncio.get_running_loop()
    done: asyncio.Future[Any] = loop.create_future()

    def settle(value: Any, error: BaseException | None) -> None:
        if not done.done():
            done.set_exception(error) if error is not None else done.set_result(value)

    def work() -> None:
        try:
            result: tuple[Any, BaseException | None] = (fn(*args), None)
        except BaseException as exc:  # noqa: BLE001 - handed to the awaiting task
            result = (None, exc)
        try:
            loop.call_soon_threadsafe(settle, *result)
        except RuntimeError:  # the loop has closed (the run was interrupted)
            pass

    threading.Thread(target=work, name=GENERATION_THREAD, daemon=True).start()
    return await done


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
