"""bench/capacity.py's arithmetic on a hand-made scale result (CI also runs it on the scale
smoke's JSON)."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest

CAPACITY = Path(__file__).resolve().parents[2] / "bench" / "capacity.py"
MIB = 1024**2


def load_capacity():
    spec = importlib.util.spec_from_file_location("capacity", CAPACITY)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def scale_result(second_version=True):
    cpu = {"gateway": 1.4, "feature": 0.7, "model": 2.1, "redis": 0.05}
    runs = [
        {"concurrency": 1, "count": 100, "ok": 100, "rps": 50.0, "p99_ms": 9.0,
         "cpu_ms_per_request": {k: 2 * v for k, v in cpu.items()}},
        {"concurrency": 32, "count": 300, "ok": 300, "rps": 300.0, "p99_ms": 150.0,
         "cpu_ms_per_request": cpu},
        {"concurrency": 64, "count": 300, "ok": 299, "rps": 290.0, "p99_ms": 400.0,
         "cpu_ms_per_request": cpu},  # one failed request: not the run to plan on
    ]  # fmt: skip
    rss = {"gateway": 200 * MIB, "feature": 100 * MIB, "model": 1000 * MIB, "redis": 0}
    return {
        "environment": {"commit": "abc1234"},
        "stages": {
            "load": {
                "status": "ok",
                "redis": {"bytes_per_million_ratings": 64 * MIB, "bytes_per_user": 10_000.0},
            },
            "serve": {"scale": {"runs": runs, "rss_bytes": rss}},
            "item": {
                "load": {
                    "status": "ok",
                    "second_version": second_version,
                    "redis": {"bytes_per_million_ratings": 16 * MIB},
                }
            },
        },
    }


def test_a_plan_from_the_saturated_complete_run():
    capacity = load_capacity()
    args = capacity.main.__globals__["argparse"].Namespace(
        catalog="scale", rps=10_000.0, ratings=100e6, versions=2, pod_cpu=1.0, utilization=0.7,
        memory_headroom=0.25, shard_memory_gib=8.0, shard_cpu=0.5,
    )  # fmt: skip
    result = capacity.plan(scale_result(), args)
    assert result["measured"]["concurrency"] == 32  # c=64 lost a request
    # gateway: 10,000 × 1.4 ms = 14 cores; at 0.7 of 1 core a pod: 14 / 0.7 = 20 pods
    # feature: 7 / 0.7 = 10; model: 21 / 0.7 = 30
    assert [result["services"][s]["replicas"] for s in ("gateway", "feature", "model")] == [
        20,
        10,
        30,
    ]
    assert result["services"]["model"]["rps_per_pod_at_target"] == pytest.approx(700 / 2.1)
    # 1000 MiB × 1.25 = 1250 → 1280 (64 MiB steps); × 1.5 = 1500 → 1536
    assert result["services"]["model"]["memory_request_mib"] == 1280
    assert result["services"]["model"]["memory_limit_mib"] == 1536
    # Redis: 100 × (64 + 16) MiB = 7.8 GiB → 1 shard of 8 GiB; CPU 10,000 × 0.05 ms = 0.5
    # cores → 1 shard at half a core
    redis = result["redis"]
    assert redis["memory_bytes"] == 100 * 80 * MIB
    assert (redis["by_memory"], redis["by_cpu"], redis["shards"]) == (1, 1, 1)
    args.ratings, args.rps = 1e9, 40_000.0  # 78 GiB → 10 shards; 2 cores → 4
    redis = capacity.plan(scale_result(), args)["redis"]
    assert (redis["by_memory"], redis["by_cpu"], redis["shards"]) == (10, 4, 10)


def test_the_ml1m_plan_uses_the_baseline_served_in_the_same_run():
    capacity = load_capacity()
    result = scale_result()
    serve = result["stages"]["serve"]
    half = [{**r, "cpu_ms_per_request": {k: v / 2 for k, v in r["cpu_ms_per_request"].items()}}
            for r in serve["scale"]["runs"]]  # fmt: skip
    serve["baseline"] = {"runs": half, "rss_bytes": serve["scale"]["rss_bytes"]}
    serve["ml1m"] = {"load": {"status": "ok", "redis": {"bytes_per_million_ratings": 32 * MIB,
                                                         "bytes_per_user": 5000.0}}}  # fmt: skip
    args = capacity.main.__globals__["argparse"].Namespace(
        catalog="ml1m", rps=10_000.0, ratings=100e6, versions=1, pod_cpu=1.0,
        utilization=0.7, memory_headroom=0.25, shard_memory_gib=8.0, shard_cpu=0.5,
    )  # fmt: skip
    planned = capacity.plan(result, args)
    assert planned["services"]["gateway"]["replicas"] == 10  # 0.7 ms: 7 cores / 0.7
    assert planned["redis"]["memory_bytes"] == 100 * 32 * MIB


def test_refusals_name_what_is_missing(tmp_path):
    capacity = load_capacity()
    missing = tmp_path / "scale.json"
    missing.write_text(json.dumps(scale_result(second_version=False)))
    with pytest.raises(SystemExit, match="second-version"):
        capacity.main(["--scale", str(missing), "--out", str(tmp_path / "c.json")])
    result = tmp_path / "one.json"
    assert capacity.main(["--scale", str(missing), "--versions", "1", "--out", str(result)]) == 0
    assert json.loads(result.read_text())["redis"]["memory_bytes"] == 100 * 64 * MIB
