"""The summary of a load test, ghz-style: count, time, requests per second, latency
percentiles and histogram, status-code and error distributions; as JSON for machines and as
tables for people."""

from __future__ import annotations

import os
import platform
from collections import Counter
from dataclasses import dataclass, field
from typing import NamedTuple

import grpc
import numpy as np

from recsys.output import format_table

PERCENTILES = (50.0, 90.0, 95.0, 99.0, 99.9)
HISTOGRAM_BUCKETS = 10
TOP_ERRORS = 10
BAR_WIDTH = 40  # characters of the longest histogram bar
NS_PER_MS = 1e6


class Sample(NamedTuple):
    """One recorded request: which workload part sent it, how long it took (monotonic
    nanoseconds, send to answer), its status code name, for an error its details, and when
    it was sent (`time.monotonic_ns()`, so a fault test can place it on a timeline)."""

    rpc: str
    latency_ns: int
    status: str
    details: str | None = None
    sent_ns: int = 0


@dataclass(frozen=True)
class LatencyStats:
    """Latency over every recorded request (errors included, as ghz), milliseconds.
    Percentiles are nearest-rank: the smallest latency ≥ that share of the requests."""

    min: float
    mean: float
    p50: float
    p90: float
    p95: float
    p99: float
    p999: float
    max: float

    @classmethod
    def of(cls, latencies_ms: np.ndarray) -> LatencyStats | None:
        if len(latencies_ms) == 0:
            return None
        p50, p90, p95, p99, p999 = np.percentile(
            latencies_ms, PERCENTILES, method="inverted_cdf"
        ).tolist()
        return cls(
            min=float(latencies_ms.min()),
            mean=float(latencies_ms.mean()),
            p50=p50,
            p90=p90,
            p95=p95,
            p99=p99,
            p999=p999,
            max=float(latencies_ms.max()),
        )

    def to_dict(self) -> dict[str, float]:
        return {
            "min": self.min,
            "mean": self.mean,
            "p50": self.p50,
            "p90": self.p90,
            "p95": self.p95,
            "p99": self.p99,
            "p99.9": self.p999,
            "max": self.max,
        }


@dataclass(frozen=True)
class Bucket:
    """Requests with latency in [from_ms, to_ms) (the last bucket includes to_ms)."""

    from_ms: float
    to_ms: float
    count: int


def latency_histogram(latencies_ms: np.ndarray, buckets: int = HISTOGRAM_BUCKETS) -> list[Bucket]:
    """`buckets` equal-width buckets from the fastest to the slowest request (one bucket when
    they are all equal, none without requests); the counts sum to the number of requests."""
    if len(latencies_ms) == 0:
        return []
    low, high = float(latencies_ms.min()), float(latencies_ms.max())
    if low == high:
        return [Bucket(low, high, len(latencies_ms))]
    counts, edges = np.histogram(latencies_ms, bins=buckets, range=(low, high))
    return [
        Bucket(float(edges[i]), float(edges[i + 1]), int(counts[i])) for i in range(len(counts))
    ]


@dataclass(frozen=True)
class ErrorCount:
    status: str
    details: str
    count: int


@dataclass(frozen=True)
class RpcSummary:
    """One workload part's share of a mix: requests, OK answers, latency (ms)."""

    count: int
    ok: int
    p50_ms: float
    p99_ms: float


def machine_info() -> dict[str, object]:
    """What the figures were measured on."""
    return {
        "python": platform.python_version(),
        "cpu_count": os.cpu_count(),
        "platform": platform.platform(),
        "grpcio": grpc.__version__,
    }


@dataclass(frozen=True)
class LoadReport:
    """The result of one run.

    count: recorded requests (sent after the warm-up); ok: those answered OK.
    dropped: open loop only, arrivals not sent because too many requests were in flight.
    elapsed_s: from the end of the warm-up until the last recorded request answered.
    latencies_ms: (count,) float64, every recorded request's latency, in the order they answered.
    samples: every recorded request, in the order they answered.
    """

    workload: str
    count: int
    ok: int
    dropped: int
    elapsed_s: float
    latency: LatencyStats | None
    histogram: list[Bucket]
    status_codes: dict[str, int]
    errors: list[ErrorCount]
    error_kinds: int
    by_rpc: dict[str, RpcSummary]
    latencies_ms: np.ndarray = field(repr=False)
    samples: list[Sample] = field(default_factory=list, repr=False)
    settings: dict[str, object] = field(default_factory=dict)
    targets: dict[str, str] = field(default_factory=dict)
    machine: dict[str, object] = field(default_factory=machine_info)

    @property
    def rps(self) -> float:
        """Recorded requests per second, whatever their status."""
        return self.count / self.elapsed_s if self.elapsed_s > 0 else 0.0

    @property
    def rps_ok(self) -> float:
        """Requests answered OK per second."""
        return self.ok / self.elapsed_s if self.elapsed_s > 0 else 0.0

    def to_json(self) -> dict[str, object]:
        """Everything but the raw latencies, JSON-ready."""
        return {
            "workload": self.workload,
            "settings": {"targets": self.targets, "workload": self.workload, **self.settings},
            "machine": self.machine,
            "count": self.count,
            "ok": self.ok,
            "dropped": self.dropped,
            "elapsed_s": self.elapsed_s,
            "rps": self.rps,
            "rps_ok": self.rps_ok,
            "latency_ms": self.latency.to_dict() if self.latency else None,
            "histogram_ms": [
                {"from": b.from_ms, "to": b.to_ms, "count": b.count} for b in self.histogram
            ],
            "status_codes": self.status_codes,
            "errors": [
                {"status": e.status, "details": e.details, "count": e.count} for e in self.errors
            ],
            "error_kinds": self.error_kinds,
            "by_rpc": {
                name: {"count": s.count, "ok": s.ok, "p50_ms": s.p50_ms, "p99_ms": s.p99_ms}
                for name, s in self.by_rpc.items()
            },
        }

    def to_text(self) -> str:
        """The report for people: a summary, then tables."""
        return "\n".join(_text_sections(self)) + "\n"


def summarize(
    samples: list[Sample],
    *,
    elapsed_s: float,
    dropped: int = 0,
    workload: str = "",
    settings: dict[str, object] | None = None,
    targets: dict[str, str] | None = None,
) -> LoadReport:
    """The report of a run's recorded samples."""
    latencies_ms = np.fromiter((s.latency_ns for s in samples), np.float64, len(samples))
    latencies_ms /= NS_PER_MS
    statuses = Counter(s.status for s in samples)
    errors = Counter((s.status, s.details or "") for s in samples if s.status != "OK")
    by_rpc: dict[str, RpcSummary] = {}
    for name in dict.fromkeys(s.rpc for s in samples):
        mine = [i for i, s in enumerate(samples) if s.rpc == name]
        stats = LatencyStats.of(latencies_ms[mine])
        by_rpc[name] = RpcSummary(
            count=len(mine),
            ok=sum(samples[i].status == "OK" for i in mine),
            p50_ms=stats.p50,
            p99_ms=stats.p99,
        )
    return LoadReport(
        workload=workload,
        count=len(samples),
        ok=statuses.get("OK", 0),
        dropped=dropped,
        elapsed_s=elapsed_s,
        latency=LatencyStats.of(latencies_ms),
        histogram=latency_histogram(latencies_ms),
        status_codes=dict(statuses.most_common()),
        errors=[ErrorCount(s, d, n) for (s, d), n in errors.most_common(TOP_ERRORS)],
        error_kinds=len(errors),
        by_rpc=by_rpc,
        latencies_ms=latencies_ms,
        samples=list(samples),
        settings=dict(settings or {}),
        targets=dict(targets or {}),
    )


def _text_sections(report: LoadReport) -> list[str]:
    settings = report.settings
    if settings.get("mode") == "open":
        load = f"open loop at {settings.get('rate'):g} requests/s"
    else:
        load = f"closed loop, concurrency {settings.get('concurrency')}"
    where = ", ".join(
        f"{'server' if role == 'health' else role} at {address}"
        for role, address in report.targets.items()
    )
    lines = [
        f"{report.workload} → {where}",
        f"{load}; {settings.get('duration_s', 0):g} s after {settings.get('warmup_s', 0):g} s "
        f"warm-up; deadline {settings.get('deadline_ms', 0):g} ms",
        "",
        "Summary:",
        f"  Count:         {report.count} requests, {report.ok} OK"
        + (f", {report.dropped} dropped (too many in flight)" if report.dropped else ""),
        f"  Total:         {report.elapsed_s:.3f} s",
        f"  Requests/sec:  {report.rps:.1f} ({report.rps_ok:.1f} OK)",
    ]
    if report.latency is not None:
        stats = report.latency.to_dict()
        lines += ["", "Latency (ms):", format_table(list(stats), [list(stats.values())])]
        longest = max(b.count for b in report.histogram)
        lines += [
            "",
            "Latency histogram (ms):",
            format_table(
                ["from", "to", "count", ""],
                [
                    [b.from_ms, b.to_ms, b.count, "∎" * round(BAR_WIDTH * b.count / longest)]
                    for b in report.histogram
                ],
            ),
        ]
    if len(report.by_rpc) > 1:
        lines += [
            "",
            "By rpc:",
            format_table(
                ["rpc", "count", "OK", "p50 ms", "p99 ms"],
                [[n, s.count, s.ok, s.p50_ms, s.p99_ms] for n, s in report.by_rpc.items()],
            ),
        ]
    lines += [
        "",
        "Status codes:",
        format_table(
            ["status", "count", "share"],
            [[s, n, n / report.count] for s, n in report.status_codes.items()],
        ),
    ]
    if report.errors:
        shown = (
            f"top {TOP_ERRORS} of {report.error_kinds}" if report.error_kinds > TOP_ERRORS else ""
        )
        lines += [
            "",
            f"Errors{f' ({shown})' if shown else ''}:",
            format_table(
                ["count", "status", "details"],
                [[e.count, e.status, e.details] for e in report.errors],
            ),
        ]
    return lines
