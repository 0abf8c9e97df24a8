"""Generation across many servers: one backend over several OpenAI-compatible endpoints.

A real QA build at AstroSage's scale (8.8M pairs) runs one `vllm serve` per GPU node. `EndpointPool`
spreads the engine's requests over them:

- **per-endpoint concurrency**: each endpoint holds at most `concurrency` requests at once, and a
  request goes to the healthy endpoint with the most free slots (ties: the one that has served
  fewest), so a slow node is given less work instead of a fixed share;
- **health checks**: an endpoint that refuses connections, times out or answers 5xx is taken out
  for `recheck_s` seconds, then probed (`GET /models`) before it gets work again;
- **failover**: the request that hit the failure is sent at once to another healthy endpoint
  (it counts as one engine attempt); when every endpoint is down the pool raises `Transient`, and
  the engine backs off and retries as it does for one server.

Every endpoint must serve the same model under the same name with the same structured-output
dialect, so a request's cache key does not depend on which endpoint answers: the one request
cache (`generation_requests`) stays the single record, and a reply already stored is never asked
for again, whichever server gave it. A request whose server died before replying was never
delivered, so it is sent again elsewhere; a server that was only slow (timeout) may have finished
work nobody receives, which is the price of failover.

Hand-written because the OpenAI client and httpx balance nothing across hosts, and a separate
proxy (LiteLLM's router, nginx) would sit outside the engine's cache and counters.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from typing import Any

from pydantic import BaseModel

from astrodata.qa.backends import Backend, EndpointBackend, Fatal, Reply, Transient

# Transient failures that say "this endpoint is unwell" (take it out), rather than "slow down" (429).
ENDPOINT_DOWN = ("connection", "timeout", "HTTP 5", "malformed reply body")


class EndpointPool(Backend):
    """Several endpoints of one model as one backend (see the module docstring)."""

    via = "endpoint"

    def __init__(self, members: list[EndpointBackend], concurrency: int, recheck_s: float = 15.0,
                 stats: dict[str, Any] | None = None):
        if len(members) < 2:
            raise ValueError("an endpoint pool needs at least two endpoints")
        if len({m.endpoint for m in members}) != len(members):
            raise ValueError("the same endpoint is listed twice")
        if len({(m.name, m.dialect) for m in members}) != 1:
            raise ValueError("every endpoint of a pool must serve the same model with the same dialect")
        self.members = members
        self.name, self.dialect = members[0].name, members[0].dialect
        self.context_tokens = members[0].context_tokens
        self.endpoint = ",".join(m.endpoint for m in members)
        self.concurrency = concurrency
        self.recheck_s = recheck_s
        # Shared with the pools `with_dialect` makes, so the counters describe the whole build.
        self.stats = stats if stats is not None else {"served": Counter(), "failovers": 0, "marked_down": Counter(),
                                                      "probes": Counter()}
        self._busy: Counter[str] = Counter()
        self._down_until: dict[str, float] = {}
        self._changed: asyncio.Condition | None = None

    def with_dialect(self, dialect: str) -> EndpointPool:
        return EndpointPool([m.with_dialect(dialect) for m in self.members], self.concurrency, self.recheck_s,
                            self.stats)

    def params(self, schema: type[BaseModel], max_tokens: int) -> dict[str, Any]:
        return self.members[0].params(schema, max_tokens)

    def body(self, messages: list[dict[str, str]], schema: type[BaseModel], max_tokens: int) -> dict[str, Any]:
        return self.members[0].body(messages, schema, max_tokens)

    def describe(self) -> dict[str, Any]:
        """Per endpoint: replies served and times taken out; failovers in all."""
        return {"endpoints": len(self.members), "served": {m.endpoint: self.stats["served"][m.endpoint]
                                                           for m in self.members},
                "marked_down": dict(self.stats["marked_down"]), "failovers": self.stats["failovers"],
                "probes": dict(self.stats["probes"])}

    @property
    def probes(self) -> int:
        """One-token probe requests the endpoints answered (health checks; paid like any request)."""
        return sum(self.stats["probes"].values())

    async def check(self) -> None:
        """Probe every endpoint; those that fail are taken out. Fatal only when none answers."""
        errors = []
        for m in self.members:
            try:
                await m.check()
                self.stats["probes"][m.endpoint] += 1
            except Fatal as exc:
                errors.append(str(exc))
                self._mark_down(m)
        if len(errors) == len(self.members):
            raise Fatal("no endpoint of the pool answers: " + "; ".join(errors))

    async def complete(self, messages: list[dict[str, str]], schema: type[BaseModel], max_tokens: int) -> Reply:
        tried: set[str] = set()
        while True:
            member = await self._acquire(tried)
            try:
                reply = await member.complete(messages, schema, max_tokens)
            except Transient as exc:
                if not str(exc).startswith(ENDPOINT_DOWN):
                    raise  # 429 and the like: the engine backs off
                self._mark_down(member)
                tried.add(member.endpoint)
                self.stats["failovers"] += 1
                continue
            finally:
                await self._release(member)
            self.stats["served"][member.endpoint] += 1
            return reply

    async def aclose(self) -> None:
        for m in self.members:
            await m.aclose()

    # -- internals -------------------------------------------------------------------------------
    def _mark_down(self, member: EndpointBackend) -> None:
        self._down_until[member.endpoint] = time.monotonic() + self.recheck_s
        self.stats["marked_down"][member.endpoint] += 1

    async def _healthy(self, member: EndpointBackend) -> bool:
        until = self._down_until.get(member.endpoint)
        if until is None:
            return True
        if time.monotonic() < until:
            return False
        try:
            await member.check()
            self.stats["probes"][member.endpoint] += 1
        except Fatal:
            self._mark_down(member)
            return False
        del self._down_until[member.endpoint]
        return True

    async def _acquire(self, tried: set[str]) -> EndpointBackend:
        """The healthy, untried endpoint with the most free slots; waits while all are busy."""
        if self._changed is None:
            self._changed = asyncio.Condition()
        async with self._changed:
            while True:
                candidates = [m for m in self.members if m.endpoint not in tried and await self._healthy(m)]
                if not candidates:
                    raise Transient("connection: every endpoint of the pool is down or failed this request")
                free = [m for m in candidates if self._busy[m.endpoint] < self.concurrency]
                if free:
                    best = min(free, key=lambda m: (self._busy[m.endpoint], self.stats["served"][m.endpoint]))
                    self._busy[best.endpoint] += 1
                    return best
                await self._changed.wait()

    async def _release(self, member: EndpointBackend) -> None:
        async with self._changed:
            self._busy[member.endpoint] -= 1
            self._changed.notify_all()


def make_backend(model: str, endpoint: str | list[str] | None, dialect: str, temperature: float,
                 seed: int | None, timeout_s: float, context_tokens: int | None,
                 concurrency: int = 8) -> Backend:
    """`astrodata.qa.backends.make_backend`, plus a pool when several endpoints are given
    (`concurrency` is then per endpoint)."""
    from astrodata.qa.backends import make_backend as make_one

    endpoints = [endpoint] if isinstance(endpoint, str) else list(endpoint or [])
    if len(endpoints) <= 1:
        return make_one(model, endpoints[0] if endpoints else None, dialect, temperature, seed, timeout_s,
                        context_tokens)
    members = [make_one(model, e, dialect, temperature, seed, timeout_s, context_tokens) for e in endpoints]
    return EndpointPool(members, concurrency)  # type: ignore[arg-type]
