"""The request engine: bounded concurrency, rate limits, retries, validation and a durable cache.

Every request is keyed by a hash of (model, messages, parameters, reply schema). Before sending,
the engine looks the key up in the catalog's `generation_requests` table; a reply is handed at once
to a writer thread that commits it (`CacheWriter`), so a re-run, or a resume after kill -9, never
pays twice for a reply it already stored. Identical requests in flight at the same time share one
call.

Failures are classified by the backend: transient ones (the statuses `astrodata.core.http` retries:
408, 409, 429, 5xx but 501; timeouts, replies cut off in transit) are retried with full-jitter
exponential backoff (the shared `RetryPolicy`, honouring Retry-After) up to
`max_attempts`; a reply that does not validate against the schema gets `invalid_retries` repair
turns (the bad reply and the validation error are shown to the model); rejected requests are
recorded and the run goes on; fatal errors stop the run.

The rate limiter is written here because it must hold two budgets at once (requests and tokens
per minute) and refund the difference between the token estimate and the reply's usage; the
usual one-budget limiters cannot.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import random
import re
import threading
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import duckdb
import pyarrow as pa
from pydantic import BaseModel, ValidationError
from rich.progress import BarColumn, MofNCompleteColumn, TaskID, TextColumn, TimeRemainingColumn

from astrodata.core.control import fault_point
from astrodata.core.http import RetryPolicy
from astrodata.core.progress import RunProgress
from astrodata.core.workspace import Run, utc_now
from astrodata.qa.backends import Backend, Fatal, Rejected, Transient, schema_json
from astrodata.qa.recipe import EngineSettings, Price

SCHEMA = """
CREATE TABLE IF NOT EXISTS generation_requests (
    key         VARCHAR PRIMARY KEY,  -- sha256 of (model, messages, params, reply schema)
    task        VARCHAR,              -- qa | summary | grade | probe
    label       VARCHAR,              -- what the request is for (passage id, item id)
    model       VARCHAR,
    via         VARCHAR,              -- embedded | endpoint | batch
    request     JSON,                 -- the chat-completions body (never the API key)
    response    VARCHAR,              -- the reply text
    status      VARCHAR NOT NULL,     -- ok | invalid | replied | pending | failed | rejected
    error       VARCHAR,
    attempts    INTEGER,
    tokens_in   BIGINT,
    tokens_out  BIGINT,
    cost_usd    DOUBLE,
    latency_s   DOUBLE,
    run_id      VARCHAR,
    updated_at  TIMESTAMP
);
"""

# Statuses whose reply is kept: such a request is never sent again.
REPLIED = ("ok", "invalid", "replied")

CACHE_ROW = pa.schema([
    ("key", pa.string()), ("task", pa.string()), ("label", pa.string()), ("model", pa.string()),
    ("via", pa.string()), ("request", pa.string()), ("response", pa.string()), ("status", pa.string()),
    ("error", pa.string()), ("attempts", pa.int32()), ("tokens_in", pa.int64()), ("tokens_out", pa.int64()),
    ("cost_usd", pa.float64()), ("latency_s", pa.float64()), ("run_id", pa.string()), ("updated_at", pa.timestamp("us")),
])

REPAIR = ("Your reply was not valid: {error}. Reply again with only the JSON object, "
          "following the requested format exactly.")


def request_key(model: str, messages: list[dict[str, str]], params: dict[str, Any],
                schema: type[BaseModel]) -> str:
    """sha256 over the canonical JSON of everything that determines a reply and its validity."""
    blob = json.dumps({"model": model, "messages": messages, "params": params, "schema": schema_json(schema)},
                      sort_keys=True, ensure_ascii=False, separators=(",", ":"))
    return hashlib.sha256(blob.encode("utf-8")).hexdigest()


_FENCE = re.compile(r"^\s*```(?:json)?\s*(.*?)\s*```\s*$", re.S)
_BAD_ESCAPE = re.compile(r'(?<!\\)((?:\\\\)*)\\(?=[^"\\/bfnrtu])')
# A LaTeX command whose name starts like a JSON escape: `\beta`, `\frac`, `\rho`, `\times`, `\to`,
# `\nu`... written with one backslash is valid JSON that decodes to a control character (`\b`
# backspace + "eta"). A backspace, form feed, carriage return or tab right before a letter, or a
# newline right before one of the commands below, is never what a reply means, so these are read as
# literal backslashes too.
_LATEX_AS_ESCAPE = re.compile(r'(?<!\\)((?:\\\\)*)\\(?=[bfrt][A-Za-z]|n(?:u|abla|eq|ot|ewline)(?![A-Za-z]))')


def validate_reply(text: str, schema: type[BaseModel]) -> tuple[BaseModel | None, str | None]:
    r"""(value, None) when the reply is the schema's JSON, else (None, a short reason).

    Two slips are forgiven because they do not change the content: a Markdown code fence around
    the JSON, and LaTeX backslashes left unescaped inside strings (`$\\mu$` written as `$\mu$`,
    common in astronomy text), which are read as literal backslashes - also where the command
    would otherwise decode as a JSON escape (`$\beta$`, `$\times$`, `$\nu$`: `_LATEX_AS_ESCAPE`).
    """
    m = _FENCE.match(text)
    body = _LATEX_AS_ESCAPE.sub(r"\1\\\\", m.group(1) if m else text.strip())
    try:
        return schema.model_validate_json(body), None
    except ValidationError as exc:
        fixed = _BAD_ESCAPE.sub(r"\1\\\\", body)
        if fixed != body:
            try:
                return schema.model_validate_json(fixed), None
            except ValidationError:
                pass
        err = exc.errors()[0]
        where = ".".join(str(p) for p in err["loc"])
        return None, f"{where + ': ' if where else ''}{err['msg']}"[:300]


class RateLimiter:
    """Token buckets for requests and tokens per minute, each holding up to one minute's budget.

    `acquire(n)` waits until one request and `n` tokens are available; `settle(estimate, actual)`
    returns or charges the difference once the reply's usage is known.
    """

    def __init__(self, requests_per_minute: float | None, tokens_per_minute: float | None,
                 clock: Callable[[], float] = time.monotonic,
                 sleep: Callable[[float], Awaitable[Any]] = asyncio.sleep):
        self.rpm, self.tpm = requests_per_minute, tokens_per_minute
        self.clock, self.sleep = clock, sleep
        self.requests = float(requests_per_minute or 0)
        self.tokens = float(tokens_per_minute or 0)
        self.last = clock()
        self.waited_s = 0.0

    def _refill(self) -> None:
        now = self.clock()
        elapsed, self.last = now - self.last, now
        if self.rpm:
            self.requests = min(self.rpm, self.requests + elapsed * self.rpm / 60)
        if self.tpm:
            self.tokens = min(self.tpm, self.tokens + elapsed * self.tpm / 60)

    async def acquire(self, tokens: int) -> None:
        if not self.rpm and not self.tpm:
            return
        need = min(float(tokens), float(self.tpm or 0))  # a request above the whole budget waits for a full bucket
        while True:
            self._refill()
            short_r = 1 - self.requests if self.rpm else 0.0
            short_t = need - self.tokens if self.tpm else 0.0
            if short_r <= 0 and short_t <= 0:
                if self.rpm:
                    self.requests -= 1
                if self.tpm:
                    self.tokens -= tokens
                return
            wait = max(short_r * 60 / self.rpm if self.rpm else 0.0, short_t * 60 / self.tpm if self.tpm else 0.0)
            self.waited_s += wait
            await self.sleep(wait)

    def settle(self, estimate: int, actual: int) -> None:
        if self.tpm:
            self.tokens = min(self.tpm, self.tokens + estimate - actual)


class CacheWriter:
    """Commits cache rows from its own thread and DuckDB cursor.

    A DuckDB commit costs ~6-10 ms whatever its size, while an Arrow-backed insert of 100 rows
    costs ~0.2 ms a row. The writer commits whatever has queued as soon as the previous commit
    ends: a reply waits for at most one commit before it is durable (no timer), and the event loop
    never blocks on DuckDB. Rows queued or being written stay visible to `get`.
    """

    def __init__(self, con: duckdb.DuckDBPyConnection):
        self.cursor = con.cursor()
        self._write([], [])  # the first Arrow-backed insert sets up ~0.4 s of machinery: not on a reply's clock
        self.lock = threading.Condition()
        self.queued: dict[str, dict[str, Any]] = {}
        self.writing: dict[str, dict[str, Any]] = {}
        self.updates: list[tuple[str, str | None, str]] = []  # (status, error, key) of stored rows
        self.error: BaseException | None = None
        self.closing = False
        self.thread = threading.Thread(target=self._loop, name="qa-cache-writer", daemon=True)
        self.thread.start()

    def put(self, row: dict[str, Any]) -> None:
        with self.lock:
            self._raise()
            self.queued[row["key"]] = row
            self.lock.notify_all()

    def set_status(self, key: str, status: str, error: str | None) -> None:
        with self.lock:
            self._raise()
            if key in self.queued:
                self.queued[key].update(status=status, error=error)
            else:
                self.updates.append((status, error, key))
            self.lock.notify_all()

    def get(self, key: str) -> dict[str, Any] | None:
        with self.lock:
            return self.queued.get(key) or self.writing.get(key)

    def drain(self) -> None:
        """Wait until everything queued is committed."""
        with self.lock:
            self.lock.wait_for(lambda: self.error is not None or not (self.queued or self.writing or self.updates))
            self._raise()

    def close(self) -> None:
        with self.lock:
            self.closing = True
            self.lock.notify_all()
        self.thread.join()
        self._raise()

    def _raise(self) -> None:
        if self.error is not None:
            raise RuntimeError(f"writing the request cache failed: {self.error}") from self.error

    def _loop(self) -> None:
        while True:
            with self.lock:
                self.lock.wait_for(lambda: self.queued or self.updates or self.closing)
                if not (self.queued or self.updates):
                    return
                self.writing, self.queued = self.queued, {}
                updates, self.updates = self.updates, []
            try:
                self._write(list(self.writing.values()), updates)
                fault_point("qa-cache")
            except BaseException as exc:  # noqa: BLE001 - handed to the event loop by _raise
                with self.lock:
                    self.error = exc
                    self.lock.notify_all()
                return
            with self.lock:
                self.writing = {}
                self.lock.notify_all()

    def _write(self, rows: list[dict[str, Any]], updates: list[tuple[str, str | None, str]]) -> None:
        if rows or not updates:
            self.cursor.register("generation_requests_new", pa.Table.from_pylist(rows, schema=CACHE_ROW))
            self.cursor.execute(
                f"""INSERT INTO generation_requests SELECT {', '.join(CACHE_ROW.names)} FROM generation_requests_new
                   ON CONFLICT (key) DO UPDATE SET via = excluded.via, response = excluded.response,
                     status = excluded.status, error = excluded.error,
                     attempts = generation_requests.attempts + excluded.attempts,
                     tokens_in = excluded.tokens_in, tokens_out = excluded.tokens_out,
                     cost_usd = excluded.cost_usd, latency_s = excluded.latency_s, run_id = excluded.run_id,
                     updated_at = excluded.updated_at""")
            self.cursor.unregister("generation_requests_new")
        if updates:
            self.cursor.executemany("UPDATE generation_requests SET status = ?, error = ? WHERE key = ?", updates)


@dataclass
class Job:
    """One logical request; `repairs` repair turns may follow an invalid reply."""

    backend: Backend
    task: str
    label: str
    messages: list[dict[str, str]]
    schema: type[BaseModel]
    max_tokens: int
    repairs: int | None = None  # None: the engine's invalid_retries
    attempts: int | None = None  # None: the engine's max_attempts


@dataclass
class Outcome:
    status: str  # ok | invalid | failed | rejected | deferred
    value: BaseModel | None = None
    error: str | None = None
    key: str = ""  # the cache key of the last request of the job (after repair turns)


@dataclass
class EngineStats:
    requests_sent: int = 0
    cache_hits: int = 0
    retries: int = 0
    transient_errors: dict[str, int] = field(default_factory=dict)
    replies_ok: int = 0
    replies_invalid: int = 0
    repairs: int = 0
    failed: int = 0
    rejected: int = 0
    deferred: int = 0
    tokens_in: int = 0
    tokens_out: int = 0
    cost_usd: float = 0.0
    rate_limit_wait_s: float = 0.0


@dataclass
class _Result:
    status: str  # replied | failed | rejected | deferred
    text: str | None = None
    error: str | None = None
    cached_status: str | None = None


class Engine:
    """Runs jobs against their backends with the cache, retries and limits described above."""

    def __init__(self, con: duckdb.DuckDBPyConnection, settings: EngineSettings, prices: dict[str, Price],
                 run_id: str | None = None, progress: bool = False, collect: bool = False,
                 rng: random.Random | None = None, run: Run | None = None):
        con.execute(SCHEMA)
        self.con = con
        self.settings = settings
        self.prices = prices
        self.run_id = run_id
        self.collect = collect  # batch-write mode: uncached requests are gathered, not sent
        self.pending: dict[str, dict[str, Any]] = {}
        self.stats = EngineStats()
        self.limiter = RateLimiter(settings.requests_per_minute, settings.tokens_per_minute)
        self.rng = rng or random.Random()
        self._sem: asyncio.Semaphore | None = None
        self._inflight: dict[str, asyncio.Future[_Result]] = {}
        self.writer = CacheWriter(con)
        self._active = 0
        self._t0 = time.monotonic()
        self.progress = RunProgress(
            TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
            TextColumn("{task.fields[rate]}"), TimeRemainingColumn(), TextColumn("{task.fields[tokens]}"),
            TextColumn("{task.fields[cost]}"), enabled=progress, run=run, transient=False,
        )
        self.task_id: TaskID = self.progress.add_task("requests", total=0, rate="", tokens="", cost="", failures=0)

    # -- public ------------------------------------------------------------------------------
    def __enter__(self) -> Engine:
        self.progress.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.progress.stop()

    def close(self) -> None:
        """Commit what is queued and stop the writer thread."""
        self.writer.close()

    async def run(self, job: Job) -> Outcome:
        """Run one job to a final outcome (a Fatal error propagates and ends the run)."""
        self.progress.update(self.task_id, total=(self.progress.tasks[0].total or 0) + 1)
        self._active += 1
        try:
            return await self._run(job)
        finally:
            self._active -= 1
            if not self._active:  # nothing left running: make the cache complete for readers
                self.writer.drain()
            self.progress.advance(self.task_id)
            self._refresh()

    # -- internals -------------------------------------------------------------------------------
    async def _run(self, job: Job) -> Outcome:
        repairs = self.settings.invalid_retries if job.repairs is None else job.repairs
        messages = job.messages
        outcome = Outcome("invalid")
        for turn in range(repairs + 1):
            params = job.backend.params(job.schema, job.max_tokens)
            key = request_key(job.backend.name, messages, params, job.schema)
            result = await self._request(job, messages, key)
            outcome.key = key
            if result.status != "replied":
                outcome.status, outcome.error = result.status, result.error
                return outcome
            value, error = validate_reply(result.text or "", job.schema)
            if result.cached_status != ("ok" if value is not None else "invalid"):
                self.writer.set_status(key, "ok" if value is not None else "invalid", error)
            if value is not None:
                return Outcome("ok", value, None, key)
            outcome.error = error
            if turn < repairs:
                self.stats.repairs += 1
                messages = [*messages, {"role": "assistant", "content": result.text or ""},
                            {"role": "user", "content": REPAIR.format(error=error)}]
        return outcome

    async def _request(self, job: Job, messages: list[dict[str, str]], key: str) -> _Result:
        queued = self.writer.get(key)
        row = [(queued["status"], queued["response"])] if queued else \
            self.con.execute("SELECT status, response FROM generation_requests WHERE key = ?", [key]).fetchall()
        if row and row[0][0] in REPLIED:
            self.stats.cache_hits += 1
            return _Result("replied", row[0][1], cached_status=row[0][0])
        if key in self._inflight:
            return await asyncio.shield(self._inflight[key])
        if self.collect:
            body = job.backend.body(messages, job.schema, job.max_tokens)
            self.pending[key] = body
            self._record(key, job, body, status="pending")
            self.stats.deferred += 1
            return _Result("deferred", error="waiting for a batch result")
        future: asyncio.Future[_Result] = asyncio.get_running_loop().create_future()
        self._inflight[key] = future
        try:
            result = await self._send(job, messages, key)
            future.set_result(result)
            return result
        except BaseException as exc:
            future.set_exception(exc)
            future.exception()  # mark retrieved: waiters re-raise it themselves
            raise
        finally:
            del self._inflight[key]

    async def _send(self, job: Job, messages: list[dict[str, str]], key: str) -> _Result:
        if self._sem is None:
            self._sem = asyncio.Semaphore(self.settings.concurrency)
        backend = job.backend
        body = backend.body(messages, job.schema, job.max_tokens)
        estimate = (backend.count_tokens(messages) or sum(len(m["content"]) for m in messages) // 3) + job.max_tokens
        max_attempts = job.attempts or self.settings.max_attempts
        attempt = 0
        while True:
            attempt += 1
            async with self._sem:
                await self.limiter.acquire(estimate)
                t0 = time.monotonic()
                self.stats.requests_sent += 1
                try:
                    reply = await backend.complete(messages, job.schema, job.max_tokens)
                except Transient as exc:
                    error: Transient | None = exc
                except Rejected as exc:
                    self.stats.rejected += 1
                    self._record(key, job, body, status="rejected", error=str(exc), attempts=attempt)
                    return _Result("rejected", error=str(exc))
                except Fatal:
                    raise
                else:
                    error = None
                latency = time.monotonic() - t0
            if error is None:
                self.limiter.settle(estimate, reply.tokens_in + reply.tokens_out)
                cost = self._cost(backend.name, reply.tokens_in, reply.tokens_out)
                self.stats.tokens_in += reply.tokens_in
                self.stats.tokens_out += reply.tokens_out
                self.stats.cost_usd += cost
                value, verr = validate_reply(reply.text, job.schema)
                status = "ok" if value is not None else "invalid"
                if value is None:
                    self.stats.replies_invalid += 1
                else:
                    self.stats.replies_ok += 1
                self._record(key, job, body, status=status, response=reply.text, error=verr, attempts=attempt,
                             tokens_in=reply.tokens_in, tokens_out=reply.tokens_out, cost=cost, latency=latency)
                return _Result("replied", reply.text, cached_status=status)
            kind = str(error).split(":")[0][:40]
            self.stats.transient_errors[kind] = self.stats.transient_errors.get(kind, 0) + 1
            if attempt >= max_attempts:
                self.stats.failed += 1
                reason = f"gave up after {attempt} attempts: {error}"
                self._record(key, job, body, status="failed", error=reason, attempts=attempt)
                return _Result("failed", error=reason)
            self.stats.retries += 1
            await asyncio.sleep(self._backoff(attempt, error.retry_after))

    def _backoff(self, attempt: int, retry_after: float | None) -> float:
        """The shared policy's wait (`astrodata.core.http.RetryPolicy`: full jitter, at least Retry-After)."""
        s = self.settings
        return RetryPolicy(s.max_attempts, s.backoff_base_s, s.backoff_max_s).delay(attempt, retry_after, self.rng)

    def _cost(self, model: str, tokens_in: int, tokens_out: int, discount: float = 1.0) -> float:
        price = self.prices.get(model)
        return 0.0 if price is None else discount * (tokens_in * price.input + tokens_out * price.output) / 1e6

    def _record(self, key: str, job: Job, body: dict[str, Any], *, status: str, response: str | None = None,
                error: str | None = None, attempts: int = 0, tokens_in: int = 0, tokens_out: int = 0,
                cost: float = 0.0, latency: float | None = None) -> None:
        self.writer.put({
            "key": key, "task": job.task, "label": job.label, "model": job.backend.name, "via": job.backend.via,
            "request": json.dumps(body, ensure_ascii=False), "response": response, "status": status, "error": error,
            "attempts": attempts, "tokens_in": tokens_in, "tokens_out": tokens_out, "cost_usd": cost,
            "latency_s": latency, "run_id": self.run_id, "updated_at": utc_now()})

    def _refresh(self) -> None:
        s = self.stats
        elapsed = max(time.monotonic() - self._t0, 1e-9)
        self.progress.update(self.task_id, rate=f"{s.requests_sent / elapsed:.2f} req/s",
                             tokens=f"{s.tokens_in + s.tokens_out:,} tok", cost=f"${s.cost_usd:.4f}",
                             failures=s.failed + s.rejected)

    def summary(self) -> dict[str, Any]:
        out = dict(vars(self.stats))
        out["cost_usd"] = round(self.stats.cost_usd, 6)
        out["rate_limit_wait_s"] = round(self.limiter.waited_s, 3)
        return out
