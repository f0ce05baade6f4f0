"""Coalescing of concurrent requests' upstream calls: what many requests need from one
upstream at the same time goes out as one batch call, so the per-call cost of Python gRPC
is paid once per batch instead of once per request (docs/architecture.md, "Coalescing").
The gateway coalesces its feature reads and predictions; the load test's echo chain uses it
for the coalesced no-work floor.

There is no timer. A batch leaves at once while fewer than `max_in_flight` batch calls to
the upstream are under way; otherwise the requests wait, and the next batch (up to
`max_batch` of them, oldest first) leaves as soon as a call returns. At concurrency 1 a
request therefore waits for nothing. Requests with different keys (model versions) never
share a batch.

Each request keeps its own outcome: its own result or error (a batch call that fails fails
its members with that error; a member's own failure is that member's), and its own
deadline: a member whose time runs out gets DEADLINE_EXCEEDED at once, whatever its batch
is doing, and a cancelled member is simply dropped."""

from __future__ import annotations

import asyncio
import contextvars
import copy
import logging
from collections.abc import Awaitable, Callable, Hashable, Sequence
from dataclasses import dataclass

from recsys import request_id
from recsys.errors import DeadlineExceeded, RecsysError
from recsys.serving import metrics

log = logging.getLogger(__name__)

# send(key, items, timeout_s, request_ids) → one result (or RecsysError) per item, in order
Send = Callable[[Hashable, list, float, list[str | None]], Awaitable[Sequence[object]]]


@dataclass
class _Member:
    item: object
    future: asyncio.Future
    deadline: float  # loop.time()
    request_id: str | None  # the member request's, for the batch call's metadata
    context: contextvars.Context  # the member request's (its trace)
    expiry: asyncio.TimerHandle | None = None


class Coalescer:
    """Batches of one upstream's calls; `name` labels the batch-size histogram
    (recsys_gateway_batch_size) and errors."""

    def __init__(self, name: str, send: Send, *, max_batch: int, max_in_flight: int):
        if max_batch < 1 or max_in_flight < 1:
            raise ValueError("max_batch and max_in_flight must be at least 1")
        self.name = name
        self._send = send
        self.max_batch = max_batch
        self.max_in_flight = max_in_flight
        self._pending: dict[Hashable, list[_Member]] = {}
        self._in_flight = 0
        self._batch_size = metrics.GATEWAY_BATCH_SIZE.labels(name)

    async def submit(self, key: Hashable, item, timeout_s: float):
        """`item`'s result, from a batch of items of the same `key`, within `timeout_s`."""
        loop = asyncio.get_running_loop()
        member = _Member(
            item,
            loop.create_future(),
            loop.time() + timeout_s,
            request_id.current.get(),
            contextvars.copy_context(),
        )
        member.expiry = loop.call_at(member.deadline, self._expire, member)
        self._pending.setdefault(key, []).append(member)
        self._start_batches()
        try:
            return await member.future
        finally:
            member.expiry.cancel()

    def _expire(self, member: _Member) -> None:
        if not member.future.done():
            member.future.set_exception(
                DeadlineExceeded(f"{self.name} service: deadline passed before the answer")
            )

    def _start_batches(self) -> None:
        while self._in_flight < self.max_in_flight and self._pending:
            key = next(iter(self._pending))
            waiting = self._pending.pop(key)
            batch, rest = waiting[: self.max_batch], waiting[self.max_batch :]
            if rest:
                self._pending[key] = rest  # now behind the other keys: they go first
            batch = [m for m in batch if not m.future.done()]  # timed out or cancelled
            if not batch:
                continue
            self._in_flight += 1
            self._batch_size.observe(len(batch))
            # in the oldest member's context: the batch call's span joins that request's
            # trace (a lone request's trace is as without coalescing)
            asyncio.get_running_loop().create_task(self._run(key, batch), context=batch[0].context)

    async def _run(self, key: Hashable, batch: list[_Member]) -> None:
        loop = asyncio.get_running_loop()
        try:
            timeout_s = max(m.deadline for m in batch) - loop.time()
            try:
                results = await self._send(
                    key,
                    [m.item for m in batch],
                    max(timeout_s, 0.001),
                    [m.request_id for m in batch],
                )
            except RecsysError as error:
                results = [error] * len(batch)
            except Exception:  # a bug: fail the members, keep the gateway up
                log.exception("batch call failed", extra={"upstream": self.name})
                results = [RecsysError(f"{self.name} batch failed")] * len(batch)
            for member, result in zip(batch, results, strict=True):
                if member.future.done():
                    continue
                if isinstance(result, BaseException):  # each member raises its own copy
                    member.future.set_exception(copy.copy(result))
                else:
                    member.future.set_result(result)
        finally:
            self._in_flight -= 1
            self._start_batches()
