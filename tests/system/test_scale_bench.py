"""bench/scale.py's helpers: each child's own peak RSS and status (real child processes),
the epoch and Redis arithmetic, the ratios against ML-1M and the targets' verdicts (the
bench itself runs in CI with --smoke)."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest

SCALE = Path(__file__).resolve().parents[2] / "bench" / "scale.py"
MIB = 2**20


@pytest.fixture(scope="module")
def scale():
    spec = importlib.util.spec_from_file_location("scale_bench", SCALE)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # its dataclasses look their module up while defined
    try:
        spec.loader.exec_module(module)
        yield module
    finally:
        del sys.modules[spec.name]


def python(code: str) -> list[str]:
    return [sys.executable, "-c", code]


def test_each_child_reports_its_own_peak_rss(scale, tmp_path):
    big = scale.run_child(
        python("b = bytearray(300 * 2**20); b[::4096] = b'x' * len(b[::4096])"),
        tmp_path / "big.log",
        timeout_s=120,
    )
    small = scale.run_child(python("pass"), tmp_path / "small.log", timeout_s=120)
    assert big.ok and small.ok
    assert big.peak_rss >= 300 * MIB
    assert small.peak_rss < 300 * MIB  # the earlier, bigger child is not counted again
    assert big.to_dict()["command"].startswith(sys.executable)


def test_a_failed_child_says_why_and_a_hung_one_is_killed(scale, tmp_path):
    failed = scale.run_child(
        python("import sys\nprint('progress 10%\\rprogress 20%')\nsys.exit('no such data: X')"),
        tmp_path / "failed.log",
        timeout_s=120,
    )
    assert failed.status == "exit 1"
    assert failed.message() == "exit 1: no such data: X"
    terminated = scale.run_child(
        python("import os, signal; os.kill(os.getpid(), signal.SIGTERM)"),
        tmp_path / "terminated.log",
        timeout_s=120,
    )
    assert terminated.status == "killed by SIGTERM"
    hung = scale.run_child(python("import time; time.sleep(600)"), tmp_path / "hung.log", 0.5)
    assert hung.status == "timeout after 0.5 s"
    assert not hung.ok


def test_a_terminated_bench_takes_its_running_child_with_it(tmp_path):
    import subprocess
    import time

    import psutil

    log = tmp_path / "child.log"
    bench = subprocess.Popen(
        python(
            "import importlib.util, sys\n"
            f"spec = importlib.util.spec_from_file_location('scale_bench', {str(SCALE)!r})\n"
            "scale = importlib.util.module_from_spec(spec)\n"
            "sys.modules[spec.name] = scale\n"
            "spec.loader.exec_module(scale)\n"
            "scale.exit_on_sigterm()\n"
            "child = [sys.executable, '-c', "
            "'import time; print(\"up\", flush=True); time.sleep(300)']\n"
            f"scale.run_child(child, scale.Path({str(log)!r}), timeout_s=300)\n"
        )
    )
    try:
        deadline = time.monotonic() + 60
        while not (log.exists() and "up" in log.read_text()):
            assert bench.poll() is None and time.monotonic() < deadline, "the child never started"
            time.sleep(0.05)
        children = psutil.Process(bench.pid).children(recursive=True)
        assert children, "the child should be running"
        bench.terminate()
        assert bench.wait(timeout=30) == 128 + 15  # SIGTERM, through sys.exit
        _, alive = psutil.wait_procs(children, timeout=10)
        assert not alive, f"left running: {[p.pid for p in alive]}"
    finally:
        bench.kill()
        bench.wait()


def test_seconds_per_epoch_is_the_median_logged_epoch(scale, tmp_path):
    log = tmp_path / "train.log"
    log.write_text(
        "training on 10 users x 5 items\n"
        "epoch 1/3 loss 0.9 val_rmse 0.95 (61.0s)\n"
        "epoch 2/3 loss 0.8 val_rmse 0.93 (40.5s)\n"
        "epoch 3/3 loss 0.7 val_rmse 0.92 (42.5s)\n"
    )
    logged = scale.epoch_seconds(log)
    assert logged == [61.0, 40.5, 42.5]
    assert scale.seconds_per_epoch(logged, 144.0, 3) == 42.5
    # nothing logged: the training seconds over the epochs; nothing at all: None
    assert scale.seconds_per_epoch([], 90.0, 3) == 30.0
    assert scale.seconds_per_epoch([], None, None) is None


def test_redis_memory_per_million_ratings_and_per_user(scale):
    # 1 MiB empty, 401 MiB after loading 2,000,000 ratings of 10,000 users
    added = scale.redis_per_unit(MIB, 401 * MIB, ratings=2_000_000, users=10_000)
    assert added["added_bytes"] == 400 * MIB
    assert added["bytes_per_million_ratings"] == 200 * MIB
    assert added["bytes_per_user"] == 400 * MIB / 10_000
    assert added["bytes_per_rating"] == 400 * MIB / 2_000_000
    assert scale.redis_per_unit(0, 10, ratings=0, users=0)["bytes_per_user"] is None


def test_cpu_per_request_and_ratios_against_ml1m(scale):
    before = {"gateway": 1.0, "feature": 2.0, "model": 3.0, "redis": None}
    after = {"gateway": 2.0, "feature": 2.5, "model": 5.0, "redis": 1.0}
    per_request = scale.cpu_ms_per_request(before, after, requests=500)
    assert per_request == {"gateway": 2.0, "feature": 1.0, "model": 4.0, "redis": None}
    assert scale.total_cpu_ms(per_request) is None  # a process gone: no total
    del per_request["redis"]
    assert scale.total_cpu_ms(per_request) == 7.0

    baseline = {"runs": [{"concurrency": 32, "server_cpu_ms_per_request": 2.0, "p99_ms": 80.0}]}
    served = {
        "runs": [
            {"concurrency": 32, "server_cpu_ms_per_request": 3.0, "p99_ms": 200.0},
            {"concurrency": 1, "server_cpu_ms_per_request": 6.0, "p99_ms": 12.0},
        ]
    }
    scale.with_ratios(served, baseline)
    c32, c1 = served["runs"]
    assert (c32["cpu_ratio"], c32["p99_ratio"]) == (1.5, 2.5)
    assert (c1["cpu_ratio"], c1["p99_ratio"]) == (None, None)  # no c = 1 baseline run


def test_targets_say_met_not_met_and_not_comparable(scale):
    results = {
        "train": {"status": "ok", "wall_s": 1500.0, "epochs": 2, "peak_rss_bytes": 9 * 2**30},
        "load": {
            "status": "ok",
            "wall_s": 200.0,
            "peak_rss_bytes": 3 * 2**30,
            "redis": scale.redis_per_unit(0, 2000 * MIB, 25_000_000, 160_000),
        },
        "start": {"status": "ok", "seconds_to_serving": 75.0, "rss_bytes": 900 * MIB},
        "serve": {
            "status": "ok",
            "scale": {"runs": [{"concurrency": 32, "cpu_ratio": 1.9, "p99_ratio": 2.1}]},
        },
        "item": {"status": "timeout after 60 s"},
    }
    verdicts = {
        t["target"]: t["verdict"] for t in scale.targets(results, SimpleNamespace(max_epochs=None))
    }
    assert list(verdicts.values()) == [
        "met",  # 25 min
        "NOT MET",  # 9 GiB
        "met",
        "NOT MET",  # a 3 GiB loader
        "reported",
        "NOT MET",  # 75 s to SERVING
        "met",
        "NOT MET",  # p99 2.1× ML-1M's
        "timeout after 60 s",
    ]
    capped = scale.targets(results, SimpleNamespace(max_epochs=2))
    assert capped[0]["verdict"] == "not comparable (max_epochs=2)"
    assert scale.targets({}, SimpleNamespace(max_epochs=None))[0]["verdict"] == "not measured"
