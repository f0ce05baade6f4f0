"""CPU time of server processes per request, as the benchmarks count it: user + system seconds
read with psutil before and after a load run (psutil is a development dependency, imported
only by the benchmarks)."""

from __future__ import annotations

import psutil


def cpu_seconds(processes: dict[str, psutil.Process]) -> dict[str, float | None]:
    """User + system CPU seconds each process has used so far; None for one that is gone
    (its run's errors say why)."""
    seconds: dict[str, float | None] = {}
    for name, process in processes.items():
        try:
            seconds[name] = sum(process.cpu_times()[:2])
        except psutil.NoSuchProcess:
            seconds[name] = None
    return seconds


def cpu_ms_per_request(before: dict, after: dict, requests: int) -> dict[str, float | None]:
    """Milliseconds of CPU per request of each process between two `cpu_seconds` readings."""
    return {
        name: 1000 * (after[name] - before[name]) / requests
        if requests and before[name] is not None and after[name] is not None
        else None
        for name in before
    }
