"""Dynamic batching of Predict calls: calls that are waiting together are answered by one
matrix product per model version.

A call joins a bounded queue. One worker task takes up to `max_size` waiting calls at a
time; with `max_wait_us` > 0 it first waits up to that long for company while fewer are
waiting (a full batch goes at once).
A full queue refuses the call with RESOURCE_EXHAUSTED at once, so an overloaded service
sheds load instead of letting latency grow without bound. An error of one call (an unknown
movie id among its given items) fails only that call: it is its row's error."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from dataclasses import dataclass, field

import numpy as np

from recsys.errors import ResourceExhausted
from recsys.packed import Codes, Rows, concatenate
from recsys.serving import metrics
from services.model.predictor import Outputs, Predictor, RowPredictions

log = logging.getLogger(__name__)


@dataclass
class _Call:
    predictor: Predictor
    preferences: Rows  # one row
    outputs: Outputs  # one row
    codes: Codes  # one row
    future: asyncio.Future
    enqueued: float = field(default_factory=time.perf_counter)


class Batcher:
    def __init__(self, max_size: int, max_wait_us: int, queue_limit: int):
        self.max_size = max_size
        self.max_wait_s = max_wait_us / 1e6
        self.queue_limit = queue_limit
        self._waiting: list[_Call] = []
        self._arrived = asyncio.Event()
        self._full = asyncio.Event()  # max_size calls are waiting
        self._worker: asyncio.Task | None = None

    async def predict(
        self, predictor: Predictor, preferences: Rows, outputs: Outputs, codes: Codes | None = None
    ) -> tuple[RowPredictions, int]:
        """The predictions of a one-row call (`codes`: its user code, if any): (the batch's
        predictions, the call's row)."""
        codes = codes if codes is not None else Codes.none(1)
        if self.max_size <= 1:  # batching off: answer inline
            return predictor.predict_rows(preferences, outputs, codes), 0
        if len(self._waiting) >= self.queue_limit:
            metrics.QUEUE_REFUSED.inc()
            raise ResourceExhausted(
                f"model service overloaded: {len(self._waiting)} predictions queued "
                f"(MODEL_QUEUE_LIMIT={self.queue_limit}); retry later"
            )
        if self._worker is None or self._worker.done():
            self._worker = asyncio.get_running_loop().create_task(self._run())
        call = _Call(
            predictor, preferences, outputs, codes, asyncio.get_running_loop().create_future()
        )
        self._waiting.append(call)
        self._arrived.set()
        if len(self._waiting) >= self.max_size:
            self._full.set()
        return await call.future

    async def _run(self) -> None:
        while True:
            await self._arrived.wait()
            if self.max_wait_s and len(self._waiting) < self.max_size:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._full.wait(), self.max_wait_s)
            batch, self._waiting = (
                self._waiting[: self.max_size],
                self._waiting[self.max_size :],
            )
            if not self._waiting:
                self._arrived.clear()
            if len(self._waiting) < self.max_size:
                self._full.clear()
            self._answer(batch)
            await asyncio.sleep(0)  # let the answered calls and new arrivals run

    def _answer(self, batch: list[_Call]) -> None:
        started = time.perf_counter()
        live = [c for c in batch if not c.future.done()]  # a cancelled call needs no answer
        if live:
            metrics.BATCH_SIZE.labels("Predict").observe(len(live))
        for call in live:
            metrics.QUEUE_SECONDS.observe(started - call.enqueued)
        by_version: dict[str, list[_Call]] = {}
        for call in live:
            by_version.setdefault(call.predictor.version, []).append(call)
        for calls in by_version.values():
            try:
                predictions = calls[0].predictor.predict_rows(
                    concatenate([c.preferences for c in calls]),
                    Outputs(
                        np.concatenate([c.outputs.k for c in calls]),
                        sum((c.outputs.rank_by for c in calls), ()),
                        concatenate([c.outputs.exclude for c in calls]),
                        concatenate([c.outputs.given for c in calls]),
                    ),
                    Codes.from_lists([c.codes.code(0) for c in calls]),
                )
            except Exception as exc:  # a bug: fail these calls, keep the worker alive
                log.exception("batched prediction failed")
                for call in calls:
                    call.future.set_exception(exc)
                continue
            for row, call in enumerate(calls):
                call.future.set_result((predictions, row))

    async def close(self) -> None:
        if self._worker is not None:
            self._worker.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._worker
