"""bench/soak.py's arithmetic: growth after the warm-up and the errors counted by each
sample's time (the soak itself runs in CI with --smoke)."""

from __future__ import annotations

import importlib.util
from pathlib import Path

from recsys.loadtest import Sample

SOAK = Path(__file__).resolve().parents[2] / "bench" / "soak.py"


def load_soak():
    spec = importlib.util.spec_from_file_location("soak", SOAK)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_growth_compares_the_last_samples_with_those_right_after_the_warm_up():
    soak = load_soak()
    # 0-20 s warm-up climbing from 50; then 100, 100, 100, ..., ending at 103, 104, 105
    values = [50, 80, 100, 100, 100, 101, 102, 103, 104, 105]
    samples = [{"t_s": 10.0 * i, "v": v} for i, v in enumerate(values)]
    result = soak.growth(samples, warmup_s=20.0, value=lambda s: s["v"])
    assert result["baseline"] == 100
    assert result["end"] == 104
    assert abs(result["growth"] - 0.04) < 1e-12
    gone = [*samples[:-1], {"t_s": 90.0, "v": None}]  # a process that died
    assert soak.growth(gone, 20.0, lambda s: s["v"])["growth"] is None
    assert soak.warmup_of(1800) == 120 and soak.warmup_of(60) == 12


def test_errors_so_far_count_requests_answered_by_each_sample():
    soak = load_soak()
    requests = [
        Sample("rate", latency_ns=5, status="OK", details=None, sent_ns=0),
        Sample("rate", latency_ns=5, status="DEADLINE_EXCEEDED", details="", sent_ns=10),
        Sample("rate", latency_ns=50, status="UNAVAILABLE", details="", sent_ns=20),
    ]
    samples = [{"t_s": 0, "t_ns": 14}, {"t_s": 1, "t_ns": 15}, {"t_s": 2, "t_ns": 100}]
    soak.count_errors(samples, requests, started_ns=0)
    assert [(s["requests_so_far"], s["errors_so_far"]) for s in samples] == [
        (1, 0),
        (2, 1),
        (3, 2),
    ]
    assert all("t_ns" not in s for s in samples)


def test_the_trend_tells_a_step_from_a_climb():
    """Both grow 10% from the first samples to the last; only the climb keeps growing."""
    soak = load_soak()
    times = [600.0 * i for i in range(7)]  # an hour, every 10 minutes
    step = [100, 110, 110, 110, 110, 110, 110]
    climb = [100, 101.7, 103.3, 105, 106.7, 108.3, 110]
    stepped = soak.trend(times[1:], step[1:], 110)
    climbing = soak.trend(times, climb, 100)
    assert stepped == 0
    assert abs(climbing - 0.10) < 0.01
    assert soak.trend([5.0, 5.0], [1, 2], 1) is None
