"""Wall time of each stage of one gateway request (features, model, rank), so a slow request
can be explained: returned as trailing metadata and, while traced, recorded as spans."""

from __future__ import annotations

import contextlib
import time

from recsys.serving import tracing


class Stages:
    """Milliseconds per stage of one request; while the request is traced, each stage is also
    a span (`gateway.features`, ...)."""

    def __init__(self):
        self.ms: dict[str, float] = {}

    @contextlib.contextmanager
    def timed(self, stage: str):
        started = time.perf_counter()
        try:
            with tracing.stage_span(stage):
                yield
        finally:
            self.ms[stage] = self.ms.get(stage, 0.0) + (time.perf_counter() - started) * 1000

    def header(self) -> str:
        """e.g. "features=1.92,model=1.41,rank=0.05"."""
        return ",".join(f"{stage}={ms:.2f}" for stage, ms in self.ms.items())
