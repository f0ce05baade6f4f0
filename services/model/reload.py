"""Hot reload: the model service watches MODEL_DIR and moves to a newer version by itself.

A newer version is loaded and warmed in a worker thread beside the one serving, then swapped
in with one assignment on the event loop, so no request sees a half-loaded model and none
fails. A version that cannot be loaded (corrupt file, foreign layers refused by safe_mode,
items and weights that disagree) is refused with a log line naming it and the reason, and
tried again only after REFUSED_RETRY_S; the old version keeps serving.

Loads run in daemon threads of their own (`in_daemon_thread`), not in an executor: a stop
that comes while one is loading cancels the wait and leaves the thread behind, so the
process ends within GRACE_S (asyncio.run's default executor and concurrent.futures would
both join a loading thread at exit, however long the load takes)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
import time
from collections.abc import Callable
from typing import TypeVar

from recsys.artifacts import list_versions
from services.model.predictor import Predictor, PredictorHolder

log = logging.getLogger(__name__)


T = TypeVar("T")


async def in_daemon_thread(work: Callable[..., T], *args) -> T:
    """`work(*args)` in a new daemon thread, awaited on the running loop. Cancelling the
    await returns at once and abandons the thread (it cannot be interrupted); being a
    daemon, it never delays the process's exit."""
    loop = asyncio.get_running_loop()
    future: asyncio.Future[T] = loop.create_future()

    def settle(result, error) -> None:
        if future.done():  # cancelled: nobody waits for it any more
            return
        if error is not None:
            future.set_exception(error)
        else:
            future.set_result(result)

    def run() -> None:
        try:
            outcome = (work(*args), None)
        except BaseException as exc:  # handed to the awaiting coroutine
            outcome = (None, exc)
        with contextlib.suppress(RuntimeError):  # the loop has closed: nobody to tell
            loop.call_soon_threadsafe(settle, *outcome)

    threading.Thread(
        target=run, name=f"load-{getattr(work, '__name__', 'work')}", daemon=True
    ).start()
    return await future


REFUSED_RETRY_S = 300.0  # a refused version is tried again after this long (a transient
# failure, e.g. memory, should not refuse a good version until the next restart)


class ModelWatcher:
    """Looks for a version newer than the one served every `poll_s` seconds."""

    def __init__(
        self,
        holder: PredictorHolder,
        model_dir: str,
        poll_s: float,
        on_swap: Callable[[Predictor, Predictor | None], None] = lambda new, old: None,
    ):
        self.holder = holder
        self.model_dir = model_dir
        self.poll_s = poll_s
        self.on_swap = on_swap
        self.refused: dict[str, tuple[str, float]] = {}  # version → (why, when refused)

    async def run(self) -> None:
        while True:
            await asyncio.sleep(self.poll_s)
            try:
                await self.check()
            except Exception:  # never let one bad scan end the watching
                log.exception("model directory scan failed", extra={"model_dir": self.model_dir})

    def newest_candidate(self) -> str | None:
        """The newest version in the directory that is newer than the one served and has
        not been refused; None when there is none."""
        current = self.holder.predictor
        now = time.monotonic()
        versions = [
            v
            for v in list_versions(self.model_dir)
            if v not in self.refused or now - self.refused[v][1] > REFUSED_RETRY_S
        ]
        if not versions or current is None or versions[-1] <= current.version:
            return None
        return versions[-1]

    async def check(self) -> bool:
        """Load and swap in the newest version if there is a newer one; True if swapped."""
        version = await asyncio.to_thread(self.newest_candidate)
        if version is None:
            return False
        log.info("new model version found", extra={"model_version": version})
        try:
            predictor = await in_daemon_thread(Predictor.load, self.model_dir, version)
        except Exception as exc:  # whatever makes a version unloadable refuses it
            self.refused[version] = (str(exc), time.monotonic())
            log.error(
                "model version refused, the old one keeps serving: %s",
                exc,
                extra={"model_version": version},
            )
            return False
        replaced = self.holder.swap(predictor)
        self.on_swap(predictor, replaced)
        log.info(
            "model version swapped in",
            extra={
                "model_version": predictor.version,
                "previous_version": replaced.version if replaced else None,
            },
        )
        return True
