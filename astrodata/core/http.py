"""HTTP with retries: the one policy every client follows (harvest, e-prints, QA, the evaluator).

- **Which statuses retry** (`is_retryable`): 408 Request Timeout, 409 Conflict (a lock held
  elsewhere), 429 Too Many Requests and 5xx, the set the openai SDK retries. Every
  other 4xx is final: the same request cannot succeed later. 501 Not Implemented is final too
  (RFC 9110 section 15.6.2: the server does not support the method or route, which no wait
  changes); the OpenAI SDK would retry it, which is one reason its retries are switched off.
- **How long to wait** (`RetryPolicy.delay`): "full jitter" exponential backoff, uniform in
  [0, min(cap, base * 2**(retry - 1))] (AWS Architecture Blog, "Exponential Backoff And Jitter",
  2015: of the schemes compared it finishes a contended workload with the fewest calls), and never
  less than the server's Retry-After (itself capped, so one header cannot stall a run for hours).
  `jitter=False` gives the plain doubling schedule for a single sequential client (the e-print
  downloader), where there is no crowd to spread out and a fixed schedule keeps the politeness floor.
- **Retry-After** (`retry_after`): `retry-after-ms` (milliseconds, sent by OpenAI's API and
  servers copying it), then `Retry-After` as delay-seconds or an HTTP-date (RFC 9110 section 10.2.3).
- **The loop** (`RetryPolicy.call`): a synchronous request retried on retryable statuses and
  transport failures (httpx `TransportError`, openai `APIConnectionError`, which includes timeouts).
  The QA engine runs its own asynchronous loop (it records every attempt in the catalog and shares
  rate limits between requests) but takes its waits from the same `RetryPolicy.delay`; the arXiv
  API harvest pages through the `arxiv` package, whose retry loop a response hook puts behind
  `is_retryable` and `RetryPolicy.delay`.
- **Who is asking** (`user_agent_for`): the User-Agent every harvest and download request sends.
- **OpenAI-compatible clients** (`openai_client`): built once here for the QA generator and the
  evaluator: the `/v1` prefix added to a bare server root, the key from `OPENAI_API_KEY` only, the
  SDK's own retries off (`max_retries=0`) so that this policy is the only one.

Why our own code: httpx retries only failed connections (`HTTPTransport(retries=)`), never
statuses; the openai SDK's policy is private and retries 501; tenacity/stamina would add a
dependency for the ~20 lines of `delay` and `call` while every caller still needs its own hooks
(the engine's per-attempt catalog rows, the downloader's injected clock). The date parsing is the
standard library's (`email.utils`).
"""

from __future__ import annotations

import email.utils
import math
import os
import random
import re
import sys
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from importlib.metadata import PackageNotFoundError, version
from typing import Any, TypeVar
from urllib.parse import urlsplit

import httpx

T = TypeVar("T")

RETRYABLE_4XX = frozenset({408, 409, 429})
NOT_IMPLEMENTED = 501


def user_agent_for(purpose: str) -> str:
    """`astrodata/<version> (<purpose>; +<contact>)`: arXiv asks robots to identify themselves and
    give a contact; `ASTRODATA_CONTACT` (an e-mail or URL) supplies it."""
    try:
        ver = version("astrodata")
    except PackageNotFoundError:
        ver = "0"
    contact = os.environ.get("ASTRODATA_CONTACT", "").strip()
    return f"astrodata/{ver} ({purpose}; {'+' + contact if contact else 'set ASTRODATA_CONTACT'})"


def is_retryable(status: int) -> bool:
    """True for 408, 409, 429 and every 5xx except 501; False for success and every final status."""
    return status in RETRYABLE_4XX or (500 <= status < 600 and status != NOT_IMPLEMENTED)


def retry_after_seconds(value: str | None, now: datetime | None = None) -> float | None:
    """A `Retry-After` value in seconds (>= 0): delay-seconds or an HTTP-date; None when absent or
    unreadable. `now` (aware) is the clock for a date, default the current UTC time."""
    if value is None or not value.strip():
        return None
    text = value.strip()
    try:
        seconds = float(text)
    except ValueError:
        try:
            when = email.utils.parsedate_to_datetime(text)
        except (TypeError, ValueError, IndexError):
            return None
        if when.tzinfo is None:  # RFC 9110 dates are GMT; an unzoned date is read as such
            when = when.replace(tzinfo=UTC)
        return max(0.0, (when - (now or datetime.now(UTC))).total_seconds())
    return max(0.0, seconds) if math.isfinite(seconds) else None


def retry_after(headers: Mapping[str, str] | None) -> float | None:
    """Seconds a response asks us to wait: `retry-after-ms` first, then `Retry-After`; None if neither.

    `headers` is case-insensitive when it is httpx's `Headers` (as every response's is); a plain dict
    is looked up in lower case and as `Retry-After`."""
    if not headers:
        return None
    ms = headers.get("retry-after-ms")
    if ms is not None:
        value = retry_after_seconds(ms)
        if value is not None:
            return value / 1000
    return retry_after_seconds(headers.get("retry-after") or headers.get("Retry-After"))


def _transient(exc: BaseException) -> tuple[bool, float | None]:
    """Whether a raised error is worth another try, and the wait its response asks for.

    An error carrying a status (openai's `APIStatusError`, httpx's `HTTPStatusError`) follows
    `is_retryable`; failures to connect, send or receive (including timeouts) are transient."""
    response = getattr(exc, "response", None)
    status = getattr(exc, "status_code", None) or getattr(response, "status_code", None)
    if isinstance(status, int):
        return is_retryable(status), retry_after(getattr(response, "headers", None))
    if isinstance(exc, httpx.TransportError):
        return True, None
    openai = sys.modules.get("openai")  # only a client built by openai can raise its errors
    return (openai is not None and isinstance(exc, openai.APIConnectionError)), None


@dataclass(frozen=True)
class RetryPolicy:
    """How many retries and how long between them (seconds); see the module docstring."""

    max_retries: int = 5  # retries after the first try
    base_s: float = 1.0  # the first retry's ceiling (jitter) or wait (no jitter)
    cap_s: float = 60.0  # no wait is longer, Retry-After included
    jitter: bool = True

    def __post_init__(self) -> None:
        if self.max_retries < 0 or not (self.base_s >= 0 and self.cap_s >= 0):
            raise ValueError(f"retry policy needs max_retries, base_s and cap_s >= 0, got {self}")

    def delay(self, retry: int, retry_after: float | None = None, rng: random.Random | None = None) -> float:
        """Seconds to wait before retry number `retry` (1 = the first retry)."""
        ceiling = min(self.cap_s, self.base_s * 2.0 ** min(max(retry - 1, 0), 64))
        backoff = (rng or random).uniform(0.0, ceiling) if self.jitter else ceiling
        return max(backoff, min(retry_after or 0.0, self.cap_s))

    def call(self, request: Callable[[], T], *, sleep: Callable[[float], Any] = time.sleep,
             rng: random.Random | None = None,
             on_retry: Callable[[int, str, float], Any] | None = None) -> T:
        """`request()` until it returns a response with a final status or the retries run out.

        `request` returns a response (anything with `status_code` and `headers`), any other value
        (taken as a success, e.g. a parsed body) or raises. A retryable status is retried, and the
        last such response is returned when retries run out;
        a retryable error (see `_transient`) is retried and re-raised when they run out; any other
        error propagates at once. `on_retry(retry, reason, wait_s)` is called before each wait."""
        for retry in range(self.max_retries + 1):
            try:
                response = request()
            except Exception as exc:
                again, hint = _transient(exc)
                if not again or retry == self.max_retries:
                    raise
                reason = f"{type(exc).__name__}: {exc}"
            else:
                status = getattr(response, "status_code", None)
                if status is None or not is_retryable(status) or retry == self.max_retries:
                    return response
                reason, hint = f"HTTP {status}", retry_after(response.headers)
            wait = self.delay(retry + 1, hint, rng)
            if on_retry is not None:
                on_retry(retry + 1, reason, wait)
            sleep(wait)
        raise AssertionError("unreachable: the last try returns or raises")


# -- OpenAI-compatible endpoints -------------------------------------------------------------------
_KEYLIKE = re.compile(r"\b(?:sk|key)-[A-Za-z0-9_*.\-]{4,}")


def status_reason(exc: Exception) -> str:
    """A short reason from an openai API error: `HTTP <status>: <the server's message>`, never
    headers, the key from `OPENAI_API_KEY` or anything shaped like a key masked (servers may echo
    a masked key, "sk-ab***yz"), at most 300 characters of message."""
    status = getattr(exc, "status_code", None)
    body = getattr(exc, "body", None)
    message = body.get("message") if isinstance(body, dict) else None
    if isinstance(body, dict) and isinstance(body.get("error"), dict):
        message = body["error"].get("message") or message
    text = " ".join(str(message or getattr(exc, "message", "") or exc).split())
    key = os.environ.get("OPENAI_API_KEY")
    if key:
        text = text.replace(key, "***")
    text = _KEYLIKE.sub("***", text)[:300]
    return f"HTTP {status}: {text}" if status else text


def normalize_endpoint(url: str) -> str:
    """`http://host:port` -> `http://host:port/v1` (a bare server root gets the OpenAI prefix);
    a URL with a path is kept as given. Raises ValueError for anything but an http(s) URL."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise ValueError(f"endpoint must be an http(s) URL, got {url!r}")
    return url.rstrip("/") + ("/v1" if parts.path in ("", "/") else "")


def openai_client(endpoint: str, timeout_s: float, *, asynchronous: bool = False) -> Any:
    """An `openai.OpenAI` (or `AsyncOpenAI`) client for an OpenAI-compatible server.

    The key comes from `OPENAI_API_KEY` only ("none" when unset: local servers ignore it, the SDK
    requires one) and stays inside the client object. The SDK's retries are off: callers retry by
    `RetryPolicy`, which does not retry 501 and counts what it retries."""
    import openai

    cls = openai.AsyncOpenAI if asynchronous else openai.OpenAI
    return cls(base_url=normalize_endpoint(endpoint), api_key=os.environ.get("OPENAI_API_KEY") or "none",
               max_retries=0, timeout=timeout_s)
