"""One write round at a time per user within the process. Writes to a user wait in that
user's queue; every write waiting when a round starts goes into it (one read, one
computation, one compare-and-set for all of them), and each keeps its own stamp, result
and error. Writers of one user therefore never race each other inside a process; the
compare-and-set on the user's revision stays the guard against other replicas and bulk
loads. A queue exists only while its user has writes waiting or in flight."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from recsys.errors import DeadlineExceeded, Unavailable
from recsys.featurestore.writes import Change, Outcome

log = logging.getLogger(__name__)


@dataclass(eq=False)
class PendingWrite:
    """A change waiting for (or in) a round. `deadline`: time.monotonic() by which the
    caller needs the answer (None: no deadline); `deadline_us`: the same instant on the wall
    clock, µs since the Unix epoch (0: none), which Redis compares with its TIME. `lost`:
    rounds of it that lost the compare-and-set."""

    change: Change
    deadline: float | None
    deadline_us: int
    future: asyncio.Future = field(repr=False)
    lost: int = 0

    def expired(self, now: float) -> bool:
        return self.deadline is not None and now >= self.deadline

    def finish(self, outcome: Outcome) -> None:
        if not self.future.done():  # the caller may have given up (deadline, cancellation)
            self.future.set_result(outcome)

    def fail(self, error: BaseException) -> None:
        if not self.future.done():
            self.future.set_exception(error)


Round = Callable[[int, list[PendingWrite]], Awaitable[None]]


class SerialWrites:
    """`await submit(user_id, change, timeout_s)` → the change's Outcome. `run_round(user_id,
    writes)` runs one round for the writes (arrival order): it finishes or fails those it
    completes and leaves the others unfinished for the next round."""

    def __init__(self, run_round: Round):
        self._run_round = run_round
        self._queues: dict[int, list[PendingWrite]] = {}
        self._workers: dict[int, asyncio.Task] = {}

    def __len__(self) -> int:
        """Users with writes waiting or in flight."""
        return len(self._workers)

    async def submit(self, user_id: int, change: Change, timeout_s: float | None) -> Outcome:
        """Queue `change` and wait for its round. DeadlineExceeded once `timeout_s` (the
        caller's remaining time; None: no deadline) has passed: a write still waiting is
        dropped; one whose round is under way cannot be applied after its deadline, since
        the round's script carries it."""
        if timeout_s is not None and timeout_s <= 0:
            raise DeadlineExceeded(f"user {user_id}: the deadline passed before the write began")
        loop = asyncio.get_running_loop()
        deadline, deadline_us = None, 0
        if timeout_s is not None:
            deadline = time.monotonic() + timeout_s
            deadline_us = time.time_ns() // 1000 + int(timeout_s * 1e6)
        pending = PendingWrite(change, deadline, deadline_us, loop.create_future())
        self._queues.setdefault(user_id, []).append(pending)
        if user_id not in self._workers:
            self._workers[user_id] = loop.create_task(self._drain(user_id))
        try:
            async with asyncio.timeout(timeout_s) as waiting:
                return await asyncio.shield(pending.future)
        except TimeoutError:
            if not waiting.expired():
                raise
            pending.future.cancel()
            raise DeadlineExceeded(
                f"user {user_id}: the deadline passed before the write completed"
            ) from None
        except asyncio.CancelledError:
            pending.future.cancel()  # the caller went away: not started, it never will be
            raise

    async def _drain(self, user_id: int) -> None:
        queue = self._queues[user_id]
        batch: list[PendingWrite] = []
        try:
            while True:
                batch = [p for p in queue if not p.future.done()]
                queue.clear()
                if not batch:
                    return  # no await since the check: nothing can have been queued meanwhile
                try:
                    await self._run_round(user_id, batch)
                except Exception as error:
                    log.exception("write round failed", extra={"user_id": user_id})
                    for pending in batch:
                        pending.fail(error)
                queue[:0] = [p for p in batch if not p.future.done()]  # first in the next round
        finally:
            for pending in [*batch, *queue]:  # unfinished only if the drain was cancelled
                pending.fail(Unavailable("the write was abandoned: the service is stopping"))
            del self._queues[user_id]
            del self._workers[user_id]
