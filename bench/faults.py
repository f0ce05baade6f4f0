"""Fault measurements (issue 6): the real stack (Redis and the three services as processes)
under the project's load generator while something breaks, and what the callers saw.

Each scenario lets the load run for a while, breaks something, repairs it (or lets the
system repair itself), and keeps the load running afterwards. From every recorded request
(send time, latency, status) it reports the failed requests and their status codes, the
error window (first failed request sent → last failed request answered), when the errors
ended relative to the moment the broken part was back, the slowest failed request against
the deadline, and whether every service process is still the one that was started (no
crash, no restart).

    python bench/faults.py [--data ../shared/data/ml-1m] [--model-dir DIR] [--scenarios ...]
    python bench/faults.py --smoke      # seconds per scenario, synthetic data (what CI runs)

Scenarios (`SCENARIOS`; a new one is a function that breaks and repairs, added there):
redis-stop, redis-freeze, model-restart, model-replica-crash, model-replica-restart,
model-swap (hot reload: a new version appears in MODEL_DIR; the services run with
MODEL_POLL_S=0.5), sentinel-failover (Redis Sentinel: a master, two replicas, three
sentinels; the master SIGKILLed under a read/write mix, a replica promoted; reports when
writes succeed again and how many acknowledged writes are missing afterwards).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from recsys.data.movielens import RatingData, load_movielens  # noqa: E402
from recsys.launcher import LocalStack, train_version, wait_serving  # noqa: E402
from recsys.loadtest import LoadSettings, Sample, Targets, build_workload, run_load  # noqa: E402
from recsys.output import format_table, write_json  # noqa: E402
from recsys.pipeline import environment  # noqa: E402
from recsys.redis_client import sync_client  # noqa: E402
from recsys.serving.config import Settings  # noqa: E402

QUICK_MODEL = {"max_epochs": 2}  # fault figures depend on the services, not the model

NS = 1_000_000_000
BIN_S = 0.5  # width of the timeline's bins


@dataclass(frozen=True)
class Phases:
    """Seconds of load before the fault, of the fault itself (for faults that last a set
    time), and after the broken part is back."""

    before_s: float
    fault_s: float
    after_s: float


Events = dict[str, int]  # event name → time.monotonic_ns(); "fault" and "back" at least


@dataclass(frozen=True)
class Scenario:
    """`inject(stack, phases, data)` breaks something and repairs it, blocking (it runs in
    a thread beside the load), and returns when what happened; `budget_s(phases, start_s)`
    is how long the fault may take, given the seconds a model service took to start."""

    name: str
    what: str
    inject: Callable[[LocalStack, Phases, RatingData], Events]
    budget_s: Callable[[Phases, float], float]
    model_replicas: int = 1
    restarts: tuple[str, ...] = ()  # processes the scenario itself stops and starts
    sentinel: bool = False  # the stack on Redis Sentinel instead of one Redis
    workload: str = "recommend-stored"  # the load (a loadtest rpc name or mix)


def now() -> int:
    return time.monotonic_ns()


def redis_stop(stack: LocalStack, phases: Phases, data: RatingData) -> Events:
    """Redis stops (SIGTERM) for `fault_s` seconds, then starts again on its data."""
    events = {"fault": now()}
    stack.redis.stop()
    time.sleep(phases.fault_s)
    events["restarting"] = now()
    stack.redis.start(timeout=120)  # it loads its append-only file first
    events["back"] = now()  # answers PING
    return events


def redis_freeze(stack: LocalStack, phases: Phases, data: RatingData) -> Events:
    """Redis hangs (SIGSTOP: connections stay open, nothing answers) for `fault_s` seconds,
    then continues (SIGCONT): calls must end by their deadline, not hang."""
    events = {"fault": now()}
    os.kill(stack.redis.process.pid, signal.SIGSTOP)
    try:
        time.sleep(phases.fault_s)
    finally:
        os.kill(stack.redis.process.pid, signal.SIGCONT)
    events["back"] = now()
    return events


def model_restart(stack: LocalStack, phases: Phases, data: RatingData) -> Events:
    """The only model service process restarts: SIGTERM (graceful), then a new process on
    the same port, which loads and warms the model before it says SERVING."""
    events = {"fault": now()}
    stack.stop_process("model")
    events["stopped"] = now()
    stack.start_process("model", wait_s=120)
    events["back"] = now()  # SERVING
    return events


def replica_fault(kill: bool) -> Callable[[LocalStack, Phases, RatingData], Events]:
    """One of two model replicas dies (SIGKILL, a crash) or is restarted (SIGTERM); it
    stays down for `fault_s` seconds, then starts again."""

    def inject(stack: LocalStack, phases: Phases, data: RatingData) -> Events:
        events = {"fault": now()}
        stack.stop_process("model-2", kill=kill)
        events["stopped"] = now()
        time.sleep(phases.fault_s)
        stack.start_process("model-2", wait_s=120)
        events["back"] = now()
        return events

    return inject


def model_swap(stack: LocalStack, phases: Phases, data: RatingData) -> Events:
    """Hot reload: a new version (the serving one's files under a newer version name) is
    published in MODEL_DIR before its features are loaded, as a careless rollout would; the
    model service loads it beside the old one and swaps; `fault_s` seconds later its
    features are loaded, and the gateway moves to it. Back: the gateway answers with it."""
    from recsys.api.gateway.v1 import gateway_pb2, gateway_pb2_grpc
    from recsys.artifacts import copy_version, new_version_name, resolve_version
    from recsys.featurestore.loader import load_features
    from recsys.serving import tls

    version = new_version_name()
    events = {"fault": now()}
    copy_version(resolve_version(stack.model_dir), stack.model_dir, version)
    with tls.sync_channel(stack.address("gateway"), stack.client_settings) as channel:
        stub = gateway_pb2_grpc.GatewayServiceStub(channel)
        request = gateway_pb2.SimilarItemsRequest(
            movie_id=int(data.ratings["item_id"].iloc[0]), k=1
        )

        def gateway_version() -> str:
            return stub.SimilarItems(request, timeout=5).model_version

        time.sleep(phases.fault_s)
        events["loading_features"] = now()
        with sync_client(stack.redis_url) as client:
            load_features(client, stack.model_dir / version, data.ratings, data.items)
        events["features_loaded"] = now()
        deadline = time.monotonic() + 60
        while gateway_version() != version and time.monotonic() < deadline:
            time.sleep(0.05)
    events["back"] = now()  # the gateway answers with the new version
    return events


class SentinelFailover:
    """The Redis master is SIGKILLed; the sentinels (down-after 1 s) promote a replica.
    Beside the load, a checker writes one new user at a time through the gateway (each a
    fresh user id, one movie), from before the kill until the end, and afterwards reads
    every acknowledged one back from the new master: `findings` holds what it saw. Back:
    the sentinels name the new master. Then the old master starts again (empty: the
    sentinels make it a replica of the new one)."""

    CHECKER_USERS = 50_000_000  # far above MovieLens ids

    def __init__(self):
        self.sentinel = None  # a recsys.redis_server.LocalSentinel, set by start_stack
        self.findings: dict[str, object] = {}

    def __call__(self, stack: LocalStack, phases: Phases, data: RatingData) -> Events:
        import threading

        import grpc

        from recsys.api.gateway.v1 import gateway_pb2, gateway_pb2_grpc
        from recsys.serving import tls

        movie = int(data.ratings["item_id"].iloc[0])
        acknowledged: dict[int, float] = {}
        outcomes: list[tuple[int, int, str, str]] = []  # (sent ns, answered ns, code, details)
        stop = threading.Event()

        def checker() -> None:
            with tls.sync_channel(stack.address("gateway"), stack.client_settings) as channel:
                stub = gateway_pb2_grpc.GatewayServiceStub(channel)
                n = 0
                while not stop.is_set():
                    n += 1
                    user, stars = self.CHECKER_USERS + n, float(n % 5 + 1)
                    request = gateway_pb2.RateItemsRequest(
                        user_id=user, ratings=[gateway_pb2.Rating(movie_id=movie, rating=stars)]
                    )
                    sent = now()
                    try:
                        stub.RateItems(request, timeout=1.0)
                    except grpc.RpcError as error:
                        outcomes.append((sent, now(), error.code().name, error.details() or ""))
                        time.sleep(0.01)
                        continue
                    acknowledged[user] = stars
                    outcomes.append((sent, now(), "OK", ""))

        thread = threading.Thread(target=checker, daemon=True)
        thread.start()
        time.sleep(min(1.0, phases.before_s))
        old = self.sentinel.master_address()
        old_master = self.sentinel.current_master()
        events = {"fault": now()}
        old_master.stop(kill=True)
        new = self.sentinel.wait_for_failover(old)
        events["back"] = now()  # the sentinels name the new master and it answers as one
        time.sleep(phases.fault_s)
        old_master.start()
        self.sentinel.wait_for_replicas(len(self.sentinel.replicas))
        events["old_master_rejoined"] = now()
        stop.set()
        thread.join(10)

        with sync_client("", sentinels=self.sentinel.sentinels) as client:
            from recsys.featurestore.layout import KeyLayout, decode_ratings

            keys = KeyLayout(stack.redis_key_prefix)
            pipe = client.pipeline(transaction=False)
            for user in acknowledged:
                pipe.hgetall(keys.ratings(user))
            stored = [decode_ratings(raw) for raw in pipe.execute()]
        lost = [
            user
            for (user, stars), found in zip(acknowledged.items(), stored, strict=True)
            if found.get(movie) != stars
        ]
        fault = events["fault"]
        # the first write sent after the kill that succeeded, when it was answered
        first_ok = next(
            (t for sent, t, code, _ in outcomes if sent >= fault and code == "OK"), None
        )
        self.findings = {
            "checker_writes": len(outcomes),
            "checker_acknowledged": len(acknowledged),
            "checker_failed_by_code": dict(Counter(c for *_, c, _ in outcomes if c != "OK")),
            "checker_unconfirmed": sum(1 for *_, d in outcomes if "applied on the master" in d),
            "acknowledged_writes_lost": len(lost),
            "writes_back_after_fault_s": (first_ok - fault) / NS if first_ok else None,
            "new_master_port": int(new[1]),
        }
        return events


SCENARIOS = {
    s.name: s
    for s in (
        Scenario(
            "redis-stop",
            "Redis stops, comes back on its data",
            redis_stop,
            lambda phases, start_s: phases.fault_s + 2,
        ),
        Scenario(
            "redis-freeze",
            "Redis hangs (SIGSTOP), then continues",
            redis_freeze,
            lambda phases, start_s: phases.fault_s + 2,
        ),
        Scenario(
            "model-restart",
            "the model service restarts (SIGTERM, new process)",
            model_restart,
            lambda phases, start_s: 2 * start_s + 2,
            restarts=("model",),
        ),
        Scenario(
            "model-replica-crash",
            "one of two model replicas is SIGKILLed, restarted later",
            replica_fault(kill=True),
            lambda phases, start_s: phases.fault_s + 2 * start_s + 2,
            model_replicas=2,
            restarts=("model-2",),
        ),
        Scenario(
            "model-replica-restart",
            "one of two model replicas gets SIGTERM, restarted later",
            replica_fault(kill=False),
            lambda phases, start_s: phases.fault_s + 2 * start_s + 2,
            model_replicas=2,
            restarts=("model-2",),
        ),
        Scenario(
            "model-swap",
            "a new model version appears in MODEL_DIR (hot reload), features loaded later",
            model_swap,
            lambda phases, start_s: phases.fault_s + 2 * start_s + 15,
        ),
        Scenario(
            "sentinel-failover",
            "Redis Sentinel: the master is SIGKILLed under reads and writes, a replica promoted",
            SentinelFailover(),
            lambda phases, start_s: phases.fault_s + 8,
            sentinel=True,
            workload="recommend-stored=0.8,rate=0.2",
        ),
    )
}


def analyze(samples: list[Sample], events: Events, deadline_ms: float) -> dict[str, object]:
    """What the callers saw, from every recorded request and the fault's events.

    error_window_s: first failed request sent → last failed request answered.
    median_failed_ms / max_failed_ms: how long a failed request took to fail (its time to
        the error, e.g. UNAVAILABLE within REDIS_TIMEOUT_S while Redis hangs).
    errors_end_after_back_s: last failed request answered, relative to "back" (negative:
        the errors had ended before the broken part was back, e.g. the gateway's retries
        went to another replica).
    first_error_after_fault_s: how soon after the fault the first failed request was sent.
    """
    fault, back = events["fault"], events.get("back")
    failed = [s for s in samples if s.status != "OK"]
    failed_ms = sorted(s.latency_ns / 1e6 for s in failed)
    codes = Counter(s.status for s in samples)
    during = [s for s in samples if back is not None and fault <= s.sent_ns <= back]
    during_ms = sorted(s.latency_ns / 1e6 for s in during)
    result: dict[str, object] = {
        "requests": len(samples),
        "ok": codes.get("OK", 0),
        "failed": len(failed),
        "status_codes": dict(codes.most_common()),
        "deadline_exceeded": codes.get("DEADLINE_EXCEEDED", 0),
        "deadline_ms": deadline_ms,
        "median_failed_ms": failed_ms[len(failed_ms) // 2] if failed_ms else None,
        "max_failed_ms": failed_ms[-1] if failed_ms else None,
        "max_ms_during_fault": during_ms[-1] if during_ms else None,
        "p99_ms_during_fault": during_ms[int(0.99 * (len(during_ms) - 1))] if during_ms else None,
        "fault_to_back_s": (back - fault) / NS if back is not None else None,
        "error_window_s": None,
        "first_error_after_fault_s": None,
        "errors_end_after_back_s": None,
        "error_details": dict(
            Counter(f"{s.status}: {(s.details or '')[:90]}" for s in failed).most_common(5)
        ),
    }
    if failed:
        first_sent = min(s.sent_ns for s in failed)
        last_answered = max(s.sent_ns + s.latency_ns for s in failed)
        result["error_window_s"] = (last_answered - first_sent) / NS
        result["first_error_after_fault_s"] = (first_sent - fault) / NS
        if back is not None:
            result["errors_end_after_back_s"] = (last_answered - back) / NS
    result["timeline"] = timeline(samples, fault)
    return result


def timeline(samples: list[Sample], origin_ns: int) -> list[dict[str, object]]:
    """Requests per BIN_S-second bin of send time, relative to the fault: OK and failed."""
    bins: dict[int, Counter] = {}
    for s in samples:
        index = int((s.sent_ns - origin_ns) // (BIN_S * NS))
        bins.setdefault(index, Counter())["ok" if s.status == "OK" else "failed"] += 1
    return [
        {"from_s": i * BIN_S, "ok": c.get("ok", 0), "failed": c.get("failed", 0)}
        for i, c in sorted(bins.items())
    ]


async def run_scenario(
    scenario: Scenario,
    stack: LocalStack,
    data: RatingData,
    phases: Phases,
    start_s: float,
    concurrency: int,
    deadline_ms: float,
    warmup_s: float,
) -> dict[str, object]:
    """The load (stored-user Recommend through the gateway, closed loop) with the fault
    injected `before_s` seconds into the measured window."""
    targets = Targets(gateway=stack.address("gateway"), feature=stack.address("feature"))
    workload = await build_workload(scenario.workload, targets, data=data, seed=1)
    duration_s = phases.before_s + scenario.budget_s(phases, start_s) + phases.after_s
    settings = LoadSettings(
        concurrency=concurrency,
        duration_s=duration_s,
        warmup_s=warmup_s,
        deadline_ms=deadline_ms,
    )
    pids = {name: p.pid for name, p in stack.processes.items()}
    load = asyncio.create_task(run_load(settings, targets, workload))
    await asyncio.sleep(warmup_s + phases.before_s)
    events = await asyncio.to_thread(scenario.inject, stack, phases, data)
    report = await load
    result = analyze(report.samples, events, deadline_ms)
    result["by_rpc"] = by_rpc(report.samples, events["fault"])
    result.update(getattr(scenario.inject, "findings", {}))
    result["processes"] = {
        name: process_state(p, pids.get(name), name in scenario.restarts)
        for name, p in stack.processes.items()
    }
    result["all_up_at_end"] = all(p.poll() is None for p in stack.processes.values())
    result["events_s"] = {name: (t - events["fault"]) / NS for name, t in events.items()}
    result.update(
        scenario=scenario.name,
        what=scenario.what,
        workload=workload.name,
        concurrency=concurrency,
        duration_s=duration_s,
        phases=vars(phases),
        rps=report.rps,
        p99_ms=report.latency.p99 if report.latency else None,
    )
    return result


def by_rpc(samples: list[Sample], fault_ns: int) -> dict[str, dict[str, object]]:
    """Per request kind: requests, status codes, and the first success answered after the
    first failure (seconds after the fault; None: no failure, or no success after it)."""
    kinds: dict[str, dict[str, object]] = {}
    for rpc in sorted({s.rpc for s in samples}):
        mine = sorted((s for s in samples if s.rpc == rpc), key=lambda s: s.sent_ns)
        first_failed = next((s.sent_ns for s in mine if s.status != "OK"), None)
        back = None
        if first_failed is not None:
            back = next(
                (
                    (s.sent_ns + s.latency_ns - fault_ns) / NS
                    for s in mine
                    if s.status == "OK" and s.sent_ns > first_failed
                ),
                None,
            )
        kinds[rpc] = {
            "requests": len(mine),
            "status_codes": dict(Counter(s.status for s in mine).most_common()),
            "ok_again_after_fault_s": back,
        }
    return kinds


def process_state(process: subprocess.Popen, pid: int | None, restarted: bool) -> str:
    """How a service process came through: alive (still the one started before the load),
    restarted by the scenario, or how it ended."""
    if process.poll() is not None:
        return f"exited {process.returncode}"
    if restarted:
        return "restarted by the scenario"
    return "alive" if process.pid == pid else "replaced"


def start_stack(model_dir: Path, data: RatingData, redis_dir: Path, replicas: int, sentinel=None):
    """Redis (append-only, in `redis_dir`) with the features loaded and the services;
    returns (stack, seconds from starting the services to all of them SERVING, which the
    model service's loading dominates). With `sentinel` (a started LocalSentinel) the
    feature service finds the master through its sentinels (REDIS_SENTINELS, default WAIT
    for one replica) instead."""
    from recsys.artifacts import resolve_version
    from recsys.featurestore.loader import load_features

    environment = {"MODEL_POLL_S": "0.5"}  # for model-swap
    if sentinel is not None:
        environment["REDIS_SENTINELS"] = sentinel.sentinels
    stack = LocalStack(
        model_dir=model_dir,
        redis_dir=redis_dir,
        redis_url=sentinel.master.url if sentinel is not None else None,
        log_level="ERROR",
        model_replicas=replicas,
        environment=environment,
    )
    try:
        if sentinel is not None:
            client = sync_client("", sentinels=sentinel.sentinels)
        else:
            client = sync_client(stack.start_redis())
        with client:
            load_features(client, resolve_version(model_dir), data.ratings, data.items)
        started = time.monotonic()
        stack.start_services()
    except BaseException:
        stack.stop()
        raise
    return stack, time.monotonic() - started


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, default=REPO.parent / "shared" / "data" / "ml-1m")
    parser.add_argument("--model-dir", type=Path, help="default: train a quick model")
    parser.add_argument("--scenarios", default=",".join(SCENARIOS), help="comma-separated")
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--deadline-ms", type=float, default=1000.0)
    parser.add_argument("--before", type=float, default=3.0, help="seconds of load before")
    parser.add_argument("--fault", type=float, default=5.0, help="seconds a fault lasts")
    parser.add_argument("--after", type=float, default=8.0, help="seconds of load after")
    parser.add_argument("--smoke", action="store_true", help="seconds-long run for CI")
    parser.add_argument("--out", type=Path, default=REPO / "bench" / "results" / "faults.json")
    args = parser.parse_args(argv)
    names = [n.strip() for n in args.scenarios.split(",") if n.strip()]
    unknown = set(names) - set(SCENARIOS)
    if unknown:
        parser.error(f"unknown scenario(s) {sorted(unknown)}; known: {sorted(SCENARIOS)}")
    phases = Phases(args.before, args.fault, args.after)
    warmup_s = 1.0
    if args.smoke:
        phases, warmup_s = Phases(1.0, 1.5, 2.0), 0.5

    results = []
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        data_dir = args.data
        if args.smoke:
            from recsys.data.synthetic import write_synthetic_movielens

            data_dir = write_synthetic_movielens(work / "data")
        data = load_movielens(data_dir)
        model_dir = work / "models"  # model-swap publishes versions here, never in --model-dir
        if args.model_dir is None:
            print("training a quick model ...", flush=True)
            train_version(data_dir, model_dir, QUICK_MODEL)
        else:
            from recsys.artifacts import resolve_version

            newest = resolve_version(args.model_dir)
            shutil.copytree(newest, model_dir / newest.name)
        # one stack per number of model replicas and kind of Redis; each scenario leaves it
        # whole again
        for replicas, on_sentinel in sorted(
            {(SCENARIOS[name].model_replicas, SCENARIOS[name].sentinel) for name in names}
        ):
            sentinel = None
            if on_sentinel:
                from recsys.redis_server import LocalSentinel

                sentinel = LocalSentinel(work / f"sentinel-{replicas}", n_replicas=2).start()
            try:
                stack, start_s = start_stack(
                    model_dir, data, work / f"redis-{replicas}", replicas, sentinel
                )
            except BaseException:
                if sentinel is not None:
                    sentinel.cleanup()
                raise
            group = [
                n
                for n in names
                if (SCENARIOS[n].model_replicas, SCENARIOS[n].sentinel) == (replicas, on_sentinel)
            ]
            try:
                for name in group:
                    scenario = SCENARIOS[name]
                    if isinstance(scenario.inject, SentinelFailover):
                        scenario.inject.sentinel = sentinel
                    wait_serving(stack.address("gateway"), 60)
                    print(f"{name}: {scenario.what} ...", flush=True)
                    result = asyncio.run(
                        run_scenario(
                            scenario,
                            stack,
                            data,
                            phases,
                            start_s,
                            args.concurrency,
                            args.deadline_ms,
                            warmup_s,
                        )
                    )
                    result["services_start_s"] = start_s
                    results.append(result)
            finally:
                stack.stop()
                if sentinel is not None:
                    sentinel.cleanup()
        results.sort(key=lambda r: names.index(r["scenario"]))

    rows = [
        [
            r["scenario"],
            r["requests"],
            r["failed"],
            ", ".join(f"{k} {v}" for k, v in r["status_codes"].items() if k != "OK") or "-",
            r["fault_to_back_s"],
            r["error_window_s"],
            r["errors_end_after_back_s"],
            r["median_failed_ms"],
            r["max_failed_ms"],
            r["p99_ms"],
            r["p99_ms_during_fault"],
            r["max_ms_during_fault"],
            "yes" if r["all_up_at_end"] else "NO",
        ]
        for r in results
    ]
    headers = [
        "scenario",
        "requests",
        "failed",
        "failed by code",
        "fault→back s",
        "error window s",
        "errors end after back s",
        "median failed ms",
        "max failed ms",
        "p99 ms",
        "p99 ms in fault",
        "max ms in fault",
        "all up",
    ]
    print(format_table(headers, rows))
    for r in results:
        if "acknowledged_writes_lost" in r:
            print(
                f"{r['scenario']}: checker writes {r['checker_writes']}, acknowledged "
                f"{r['checker_acknowledged']}, lost {r['acknowledged_writes_lost']}, failed "
                f"{r['checker_failed_by_code']} (unconfirmed by a replica "
                f"{r['checker_unconfirmed']}); writes OK again "
                f"{r['writes_back_after_fault_s']} s after the kill; per rpc "
                + "; ".join(
                    f"{rpc} {v['status_codes']} OK again {v['ok_again_after_fault_s']} s"
                    for rpc, v in r["by_rpc"].items()
                )
            )
    redis_timeout_s = Settings.from_env().redis_timeout_s  # what the services run with
    print(
        f"deadline {args.deadline_ms:g} ms, closed loop c={args.concurrency}, stored-user Recommend"
        " (sentinel-failover: 0.8 of it, 0.2 RateItems)"
        f", REDIS_TIMEOUT_S {redis_timeout_s:g}"
    )
    write_json(
        args.out,
        {
            "benchmark": "faults",
            "smoke": args.smoke,
            "data": str(data_dir),
            "deadline_ms": args.deadline_ms,
            "concurrency": args.concurrency,
            "redis_timeout_s": redis_timeout_s,
            "phases": vars(phases),
            "environment": environment(),
            "scenarios": results,
        },
    )
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
