"""The one HTTP retry policy (astrodata.core.http): statuses, Retry-After, backoff, and the loop
against real servers on 127.0.0.1 (plain httpx, the QA endpoint backend and the evaluator's)."""

from __future__ import annotations

import asyncio
import json
import random
import socket
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from email.utils import format_datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import httpx
import pytest
from pydantic import BaseModel

from astrodata.core.http import (
    RetryPolicy,
    is_retryable,
    normalize_endpoint,
    retry_after,
    retry_after_seconds,
)
from astrodata.qa.backends import EndpointBackend, Fatal, Rejected, Transient
from benchmarks.backends import EndpointBackend as EvalEndpoint

RETRYABLE = {408, 409, 429, 500, 502, 503, 504, 507, 599}
FINAL = {200, 201, 204, 301, 304, 400, 401, 403, 404, 405, 410, 413, 422, 451, 501}


@pytest.mark.parametrize("status", sorted(RETRYABLE | FINAL))
def test_status_classification(status):
    assert is_retryable(status) is (status in RETRYABLE)


def test_retry_after_forms():
    now = datetime(2015, 10, 21, 7, 27, 30, tzinfo=UTC)
    assert retry_after_seconds("10") == 10.0
    assert retry_after_seconds(" 1.5 ") == 1.5  # non-standard but sent by some servers
    assert retry_after_seconds("Wed, 21 Oct 2015 07:28:00 GMT", now=now) == 30.0  # RFC 9110's example date
    assert retry_after_seconds("Wed, 21 Oct 2015 07:20:00 GMT", now=now) == 0.0  # a date in the past
    assert retry_after_seconds("-3") == 0.0
    for bad in (None, "", "  ", "soon", "inf", "nan", "Wed, 99 Oct 2015"):
        assert retry_after_seconds(bad) is None, bad
    assert retry_after(httpx.Headers({"Retry-After": "7", "retry-after-ms": "250"})) == 0.25
    assert retry_after(httpx.Headers({"RETRY-AFTER": "7"})) == 7.0
    assert retry_after(httpx.Headers({"retry-after-ms": "x", "Retry-After": "7"})) == 7.0  # bad ms: seconds
    assert retry_after({"Retry-After": "3"}) == 3.0 and retry_after({}) is None and retry_after(None) is None


def test_backoff_bounds_with_seeded_rng():
    policy = RetryPolicy(max_retries=8, base_s=0.5, cap_s=4.0)
    rng = random.Random(1234)
    for retry in range(1, 9):
        ceiling = min(4.0, 0.5 * 2 ** (retry - 1))
        waits = [policy.delay(retry, rng=rng) for _ in range(2000)]
        assert all(0.0 <= w <= ceiling for w in waits)
        assert abs(sum(waits) / len(waits) - ceiling / 2) < 0.05 * ceiling  # uniform: mean half the ceiling
        assert max(waits) > 0.9 * ceiling and min(waits) < 0.1 * ceiling  # the full range is used
    same = [RetryPolicy().delay(3, rng=random.Random(7)) for _ in range(2)]
    assert same[0] == same[1]  # a seeded run repeats its waits
    assert policy.delay(1, retry_after=3.0, rng=rng) == 3.0  # Retry-After is a floor...
    assert policy.delay(1, retry_after=3600.0, rng=rng) == 4.0  # ...capped
    plain = RetryPolicy(base_s=3.0, cap_s=20.0, jitter=False)
    assert [plain.delay(r) for r in range(1, 6)] == [3.0, 6.0, 12.0, 20.0, 20.0]
    assert plain.delay(10_000) == 20.0  # no overflow for absurd retry numbers
    with pytest.raises(ValueError):
        RetryPolicy(max_retries=-1)


class _Script(BaseHTTPRequestHandler):
    """Answers each request with the next (status, headers) of `server.script`; the last repeats."""

    def _answer(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        self.server.log.append((self.command, self.path, self.rfile.read(length)))
        status, headers = self.server.script[min(len(self.server.log), len(self.server.script)) - 1]
        data = json.dumps({"error": {"message": f"scripted {status}"}} if status >= 400 else
                          {"choices": [{"index": 0, "text": "ok", "finish_reason": "stop",
                                        "message": {"role": "assistant", "content": '{"answer": "ok"}'}}],
                           "usage": {"prompt_tokens": 3, "completion_tokens": 2}}).encode()
        self.send_response(status)
        for name, value in {"Content-Type": "application/json", **headers}.items():
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    do_GET = do_POST = _answer  # noqa: N815 - the http.server API

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def scripted() -> Iterator:
    servers = []

    def start(*script: tuple[int, dict[str, str]]) -> ThreadingHTTPServer:
        server = ThreadingHTTPServer(("127.0.0.1", 0), _Script)
        server.script, server.log = list(script), []
        server.url = f"http://127.0.0.1:{server.server_port}"
        threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
        servers.append(server)
        return server

    yield start
    for server in servers:
        server.shutdown()
        server.server_close()


def test_503_with_retry_after_then_200(scripted):
    when = format_datetime(datetime.now(UTC).replace(microsecond=0), usegmt=True)
    server = scripted((503, {"Retry-After": "1"}), (503, {"Retry-After": when}), (200, {}))
    slept, retries = [], []
    with httpx.Client() as client:
        resp = RetryPolicy(max_retries=3, base_s=0.01, cap_s=5).call(
            lambda: client.get(server.url + "/x"), sleep=slept.append, rng=random.Random(0),
            on_retry=lambda n, why, wait: retries.append((n, why)))
    assert resp.status_code == 200 and len(server.log) == 3
    assert slept[0] == 1.0  # delay-seconds honoured over a jitter of at most 0.01 s
    assert 0.0 <= slept[1] <= 0.02  # an HTTP-date already reached: only the jittered backoff
    assert retries == [(1, "HTTP 503"), (2, "HTTP 503")]


def test_real_wait_honours_retry_after(scripted):
    server = scripted((429, {"Retry-After": "1"}), (200, {}))
    times = []
    with httpx.Client() as client:
        def get() -> httpx.Response:
            times.append(time.monotonic())
            return client.get(server.url)

        assert RetryPolicy(base_s=0.01).call(get).status_code == 200
    assert times[1] - times[0] >= 0.99


@pytest.mark.parametrize("status", [501, 400, 404, 422])
def test_final_statuses_are_not_retried(scripted, status):
    server = scripted((status, {"Retry-After": "0"}), (200, {}))
    slept = []
    with httpx.Client() as client:
        resp = RetryPolicy(max_retries=5).call(lambda: client.get(server.url), sleep=slept.append)
    assert resp.status_code == status and len(server.log) == 1 and slept == []


def test_retries_run_out_and_errors():
    slept = []
    with socket.socket() as s:  # a port nobody listens on: connection refused
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with httpx.Client() as client, pytest.raises(httpx.ConnectError):
        RetryPolicy(max_retries=2, base_s=0.01).call(lambda: client.get(f"http://127.0.0.1:{port}"),
                                                     sleep=slept.append)
    assert len(slept) == 2  # two retries, then the error of the last try

    calls = []

    def broken() -> None:
        calls.append(1)
        raise KeyError("not an HTTP failure")

    with pytest.raises(KeyError):
        RetryPolicy().call(broken, sleep=slept.append)
    assert calls == [1]  # anything but a transport error or a status propagates at once


def test_retryable_status_returned_when_retries_run_out(scripted):
    server = scripted((502, {}),)
    slept = []
    with httpx.Client() as client:
        resp = RetryPolicy(max_retries=2, base_s=0.01).call(lambda: client.get(server.url), sleep=slept.append)
    assert resp.status_code == 502 and len(server.log) == 3 and len(slept) == 2


class _Answer(BaseModel):
    answer: str


@pytest.mark.parametrize(("status", "kind"), [(501, Fatal), (409, Transient), (503, Transient), (429, Transient),
                                              (400, Rejected), (422, Rejected), (404, Fatal)])
def test_qa_endpoint_classifies_by_the_shared_rule(scripted, status, kind):
    server = scripted((status, {"retry-after-ms": "1500"}))
    backend = EndpointBackend(server.url, "m")

    async def one() -> None:
        try:
            await backend.complete([{"role": "user", "content": "hi"}], _Answer, 8)
        finally:
            await backend.aclose()

    with pytest.raises(kind) as err:
        asyncio.run(one())
    assert len(server.log) == 1  # the SDK's own retries are off
    if kind is Transient:
        assert err.value.retry_after == 1.5
    assert f"HTTP {status}" in str(err.value)


def test_evaluator_endpoint_retries_by_the_same_policy(scripted, monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test-not-in-any-message")
    server = scripted((503, {"Retry-After": "0"}), (200, {}))
    backend = EvalEndpoint(server.url, "m", policy=RetryPolicy(base_s=0.01))
    assert backend.base == normalize_endpoint(server.url) == server.url + "/v1"
    assert backend.generate_text(["2+2="], 4) == ["ok"]
    assert [(m, p) for m, p, _ in server.log] == [("POST", "/v1/completions")] * 2
    assert json.loads(server.log[0][2]) == {"model": "m", "prompt": "2+2=", "max_tokens": 4, "temperature": 0}

    final = scripted((501, {}))
    with pytest.raises(RuntimeError, match=r"/v1/completions: HTTP 501: scripted 501") as err:
        EvalEndpoint(final.url, "m").generate_text(["x"], 1)
    assert len(final.log) == 1 and "sk-test" not in str(err.value)
