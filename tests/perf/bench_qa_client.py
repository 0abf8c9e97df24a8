"""Throughput of the build-qa engine against a plain asyncio `openai` loop on the same server.

Both send the same chat requests with the same concurrency to a real OpenAI-compatible server;
the plain loop is a semaphore around `client.chat.completions.create`, the engine adds the cache
lookups and writes, validation, rate limiting and retries. Runs alternate (plain, engine, plain,
...) so a change in machine load hits both; the target is an engine/plain throughput ratio of at
least 0.95. `--canned` adds a second comparison against a proxy that answers every request at once
with one real reply recorded from the server: no model time, so it shows the client overhead alone.

    .venv/bin/python tests/perf/bench_qa_client.py                  # starts transformers serve itself
    .venv/bin/python tests/perf/bench_qa_client.py --endpoint http://127.0.0.1:8000 --model NAME
    .venv/bin/python tests/perf/bench_qa_client.py --canned-requests 2000     # + client overhead alone
"""

from __future__ import annotations

import argparse
import asyncio
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
from openai import AsyncOpenAI
from pydantic import BaseModel

ROOT = Path(__file__).resolve().parents[2]
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]

from qa_support import FaultProxy  # noqa: E402

from astrodata.core.models import embedded_model_path  # noqa: E402
from astrodata.core.workspace import Workspace  # noqa: E402
from astrodata.qa.backends import EndpointBackend  # noqa: E402
from astrodata.qa.engine import Engine, Job  # noqa: E402
from astrodata.qa.recipe import load_qa_recipe  # noqa: E402


class Anything(BaseModel):
    """The benchmark measures the client, not the model: any JSON object validates (most replies
    of a small model are not JSON and count as invalid, which costs the engine the same work)."""


def prompts(n: int, tag: str) -> list[list[dict[str, str]]]:
    return [[{"role": "user", "content": f"[{tag}] Name one fact about planet number {i}."}] for i in range(n)]


async def plain(url: str, model: str, batch: list[list[dict[str, str]]], concurrency: int, max_tokens: int) -> float:
    client = AsyncOpenAI(base_url=url, api_key=os.environ.get("OPENAI_API_KEY") or "none", max_retries=0, timeout=600)
    sem = asyncio.Semaphore(concurrency)

    async def one(messages: list[dict[str, str]]) -> None:
        async with sem:
            await client.chat.completions.create(model=model, messages=messages, max_tokens=max_tokens,
                                                 temperature=0.0, seed=0)

    t0 = time.perf_counter()
    await asyncio.gather(*(one(m) for m in batch))
    elapsed = time.perf_counter() - t0
    await client.close()
    return elapsed


async def engine_run(url: str, model: str, batch: list[list[dict[str, str]]], concurrency: int,
                     max_tokens: int, work: Path) -> float:
    recipe = load_qa_recipe(overrides={"engine": {"concurrency": concurrency, "invalid_retries": 0}})
    with Workspace(work) as ws:
        engine = Engine(ws.con, recipe.engine, recipe.prices)
        backend = EndpointBackend(url, model, "none", timeout_s=600)
        t0 = time.perf_counter()
        outcomes = await asyncio.gather(*(engine.run(Job(backend, "bench", str(i), m, Anything, max_tokens))
                                          for i, m in enumerate(batch)))
        elapsed = time.perf_counter() - t0
        await backend.aclose()
        engine.close()
        assert engine.stats.requests_sent == len(batch) and all(o.status in ("ok", "invalid") for o in outcomes)
    return elapsed


def start_server(model: str) -> tuple[subprocess.Popen, str]:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    exe = Path(sys.executable).parent / "transformers"
    proc = subprocess.Popen([str(exe), "serve", model, "--host", "127.0.0.1", "--port", str(port), "--device", "cpu",
                             "--dtype", "float32", "--continuous-batching"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    for _ in range(300):
        try:
            if httpx.get(url + "/health", timeout=5).status_code == 200:
                return proc, url
        except httpx.HTTPError:
            time.sleep(1)
    proc.kill()
    raise SystemExit("transformers serve did not start")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--endpoint")
    ap.add_argument("--model")
    ap.add_argument("--requests", type=int, default=16)
    ap.add_argument("--concurrency", type=int, default=8)
    ap.add_argument("--max-tokens", type=int, default=8)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--canned-requests", type=int, default=0,
                    help="also compare against an instant canned-reply proxy with this many requests")
    args = ap.parse_args()
    proc = None
    model = args.model or str(embedded_model_path())
    url = args.endpoint
    if url is None:
        proc, url = start_server(model)
    url = url.rstrip("/") + ("" if url.rstrip("/").endswith("/v1") else "/v1")
    try:
        asyncio.run(plain(url, model, prompts(2, "warm-up"), 2, args.max_tokens))
        report(url, model, args, args.requests, "the server")
        if args.canned_requests:
            canned = httpx.post(url + "/chat/completions", timeout=600, json={
                "model": model, "messages": prompts(1, "canned")[0], "max_tokens": args.max_tokens}).content
            proxy = FaultProxy(url, canned=canned)
            try:
                report(proxy.url + "/v1", model, args, args.canned_requests, "a canned-reply proxy (no model time)")
            finally:
                proxy.close()
    finally:
        if proc is not None:
            proc.terminate()
            proc.wait(30)


def report(url: str, model: str, args: argparse.Namespace, n: int, what: str) -> None:
    """Alternate plain and engine rounds on fresh prompts; print medians and the ratio."""
    times: dict[str, list[float]] = {"plain": [], "engine": []}
    with tempfile.TemporaryDirectory() as tmp:
        for r in range(args.rounds):
            batch = prompts(n, f"{what} round {r}")  # fresh prompts: no cache hit for either side
            times["plain"].append(asyncio.run(plain(url, model, batch, args.concurrency, args.max_tokens)))
            times["engine"].append(asyncio.run(engine_run(url, model, batch, args.concurrency, args.max_tokens,
                                                          Path(tmp) / f"w{r}")))
            print(f"round {r}: plain {times['plain'][-1]:.2f} s, engine {times['engine'][-1]:.2f} s", flush=True)
    p, e = statistics.median(times["plain"]), statistics.median(times["engine"])
    print(f"against {what}: {n} requests x {args.rounds} rounds, concurrency {args.concurrency}, "
          f"max_tokens {args.max_tokens}, {url}")
    print(f"{'client':<8} {'median s':>9} {'req/s':>8}")
    print(f"{'plain':<8} {p:>9.2f} {n / p:>8.2f}")
    print(f"{'engine':<8} {e:>9.2f} {n / e:>8.2f}")
    print(f"throughput ratio engine/plain: {p / e:.3f} (target >= 0.95)", flush=True)


if __name__ == "__main__":
    main()
