"""Support for the build-qa tests: corpora from real e-prints, and a fault-injecting HTTP proxy.

`FaultProxy` is a real HTTP proxy on 127.0.0.1 that counts, records, replays and injects faults.

It sits between the client and a real OpenAI-compatible server (`transformers serve`). Every
chat request is keyed by its canonical JSON body. The proxy
- forwards a body it has not seen to the upstream server and records the reply (the recordings
  dict can be shared between proxies, so a second run is answered with the real replies the
  first run got, without paying the CPU again);
- injects faults into a share of the replies, decided by a seeded hash of (body, how many times
  this body arrived): HTTP 429 (with Retry-After), HTTP 500, a timeout (the connection hangs,
  then closes) and truncated JSON (a 200 whose body is cut in half). The same seed gives the
  same faults whatever the arrival order. `force` lists faults given to the first chat requests
  in order, so a short run still meets every kind;
- counts deliveries: `repeats` lists bodies that arrived again after a successful reply to
  them was delivered (a request sent twice after it succeeded);
- optionally demands a bearer key (answers 401 like OpenAI otherwise), delays replies, or answers
  every chat request with one canned real reply (`canned`: the client-overhead benchmark).
The backend's one-token check request (`max_tokens: 1`, sent before any work) is passed through
like the model list: it is neither counted, recorded nor faulted.
It is written on raw asyncio streams because the faults (hang, cut body) must be byte-exact.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import random
import threading
from collections import Counter
from pathlib import Path
from typing import Any

import httpx
from conftest import shared

from astrodata.core.shards import CORPUS_SCHEMA, ShardWriter
from astrodata.corpus.build import CorpusOptions, build_corpus

FAULTS = ("429", "500", "timeout", "truncated")


def real_corpus(tmp: Path, slugs: list[str]) -> Path:
    """A corpus built by `build_corpus` from real e-prints in ../shared/data/arxiv-eprints."""
    src = tmp / "eprints"
    src.mkdir(parents=True)
    for slug in slugs:
        (src / slug).symlink_to(shared("arxiv-eprints", slug))
    out = tmp / "corpus"
    build_corpus(tmp / "corpus-work", CorpusOptions(out=out, eprints=[src], workers=1, progress=False))
    return out


def write_corpus(out: Path, rows: list[dict[str, Any]]) -> Path:
    """A corpus folder with the given rows (missing columns filled), written like build-corpus does."""
    defaults = {"source": "arxiv", "n_tokens": None, "license": "CC-BY-4.0", "url": "", "date": ""}
    with ShardWriter(out, CORPUS_SCHEMA) as writer:
        for row in rows:
            writer.add({**defaults, **row})
    if not rows:  # an empty shard, as a build that kept nothing would leave
        import pyarrow as pa
        import pyarrow.parquet as pq

        pq.write_table(pa.Table.from_pylist([], schema=CORPUS_SCHEMA), out / "data" / "part-empty.parquet")
    return out


def body_key(body: dict[str, Any]) -> str:
    return hashlib.sha256(json.dumps(body, sort_keys=True).encode()).hexdigest()


class FaultProxy:
    def __init__(self, upstream: str, *, fault_rate: float = 0.0, seed: int = 0, hang_s: float = 5.0,
                 recordings: dict[str, tuple[int, bytes]] | None = None, delay_s: float = 0.0,
                 require_key: str | None = None, force: tuple[str, ...] = (), canned: bytes | None = None):
        self.upstream = upstream.rstrip("/")
        self.fault_rate, self.seed, self.hang_s, self.delay_s = fault_rate, seed, hang_s, delay_s
        self.recordings = recordings if recordings is not None else {}
        self.require_key = require_key
        self.force = list(force)
        self.canned = canned
        self.arrivals: Counter[str] = Counter()
        self.delivered: Counter[str] = Counter()
        self.bodies: dict[str, dict[str, Any]] = {}
        self.faults: Counter[str] = Counter()
        self.forwarded = 0
        self.repeats: list[str] = []
        self.auth_seen: list[str] = []
        self._loop = asyncio.new_event_loop()
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()
        self._ready.wait(10)
        self.url = f"http://127.0.0.1:{self.port}"

    # -- lifecycle ------------------------------------------------------------------------------
    def _serve(self) -> None:
        asyncio.set_event_loop(self._loop)
        self._client = httpx.AsyncClient(timeout=900)
        self._server = self._loop.run_until_complete(asyncio.start_server(self._handle, "127.0.0.1", 0))
        self.port = self._server.sockets[0].getsockname()[1]
        self._ready.set()
        self._loop.run_forever()

    def close(self) -> None:
        async def stop() -> None:
            self._server.close()
            others = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
            for t in others:
                t.cancel()
            await asyncio.gather(*others, return_exceptions=True)
            await self._client.aclose()

        asyncio.run_coroutine_threadsafe(stop(), self._loop).result(10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)

    # -- HTTP -----------------------------------------------------------------------------------
    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                line = await reader.readline()
                if not line.strip():
                    return
                method, path, _ = line.decode("latin-1").split(" ", 2)
                headers: dict[str, str] = {}
                while (h := await reader.readline()) not in (b"\r\n", b"\n", b""):
                    k, v = h.decode("latin-1").split(":", 1)
                    headers[k.strip().lower()] = v.strip()
                body = await reader.readexactly(int(headers.get("content-length", "0")))
                if not await self._respond(method, path, headers, body, writer):
                    return
        except (ConnectionError, asyncio.IncompleteReadError, asyncio.CancelledError):
            return  # a client gone, or the proxy shutting down (a hanging reply is cancelled)
        finally:
            writer.close()

    async def _write(self, writer: asyncio.StreamWriter, status: int, payload: bytes,
                     extra: dict[str, str] | None = None) -> None:
        reason = {200: "OK", 401: "Unauthorized", 429: "Too Many Requests", 500: "Internal Server Error"}.get(status, "X")
        head = [f"HTTP/1.1 {status} {reason}", "content-type: application/json",
                f"content-length: {len(payload)}", *(f"{k}: {v}" for k, v in (extra or {}).items())]
        writer.write(("\r\n".join(head) + "\r\n\r\n").encode() + payload)
        await writer.drain()

    async def _respond(self, method: str, path: str, headers: dict[str, str], raw: bytes,
                       writer: asyncio.StreamWriter) -> bool:
        """Answer one request; False closes the connection."""
        self.auth_seen.append(headers.get("authorization", ""))
        if self.require_key is not None and headers.get("authorization") != f"Bearer {self.require_key}":
            err = {"error": {"message": "Incorrect API key provided.", "type": "invalid_request_error",
                             "code": "invalid_api_key"}}
            await self._write(writer, 401, json.dumps(err).encode())
            return True
        probe = method == "POST" and json.loads(raw or b"{}").get("max_tokens") == 1  # the pre-run check
        if not (method == "POST" and path.endswith("/chat/completions")) or probe:
            if self.canned is not None and probe:
                await self._write(writer, 200, self.canned)
                return True
            if self.canned is not None:  # no upstream needed: an empty model list
                await self._write(writer, 200, b'{"object": "list", "data": []}')
                return True
            r = await self._client.request(method, self.upstream + path, content=raw or None)
            await self._write(writer, r.status_code, r.content)
            return True
        if self.canned is not None:
            await asyncio.sleep(self.delay_s)
            await self._write(writer, 200, self.canned)
            self.delivered["canned"] += 1
            return True
        body = json.loads(raw)
        key = body_key(body)
        self.bodies[key] = body
        n = self.arrivals[key]
        self.arrivals[key] += 1
        if self.delivered[key]:
            self.repeats.append(key)
        rng = random.Random(f"{self.seed}|{key}|{n}")
        fault = rng.choice(FAULTS) if rng.random() < self.fault_rate else None
        if self.force:
            fault = self.force.pop(0)
        if fault == "429":
            self.faults[fault] += 1
            await self._write(writer, 429, b'{"error": {"message": "Rate limit reached", "type": "requests"}}',
                              {"retry-after": "0.05"})
            return True
        if fault == "500":
            self.faults[fault] += 1
            await self._write(writer, 500, b'{"error": {"message": "injected server error"}}')
            return True
        if fault == "timeout":
            self.faults[fault] += 1
            await asyncio.sleep(self.hang_s)
            return False
        if key not in self.recordings:
            self.forwarded += 1
            r = await self._client.post(self.upstream + path, content=raw,
                                        headers={"content-type": "application/json"})
            if r.status_code != 200:
                await self._write(writer, r.status_code, r.content)
                return True
            self.recordings[key] = (r.status_code, r.content)
        status, payload = self.recordings[key]
        if self.delay_s:
            await asyncio.sleep(self.delay_s)
        if fault == "truncated":
            self.faults[fault] += 1
            await self._write(writer, status, payload[: len(payload) // 2])
            return True
        await self._write(writer, status, payload)
        self.delivered[key] += 1
        return True
