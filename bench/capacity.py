"""Capacity on paper from measured unit costs: reads the JSON of a `bench/scale.py` run and
works out what a target load and size need — replicas per service, Redis Cluster shards,
and the Kubernetes requests, limits and HPA settings that follow (docs/capacity.md).

Every input is a figure of that run: each process's CPU time per stored `Recommend` at the
highest concurrency measured (the saturated closed loop, where the per-request cost is
lowest and steadiest), the RSS of each process after the runs, and what `load-features`
added to Redis per million ratings and per user. The rest are planning choices, given as
flags and printed beside the answer: the CPU one pod of a service may use (one Python
process: about one core), the utilization the HPA holds, the memory one Redis shard may
hold, and the share of a core a shard's main thread may use.

    python bench/capacity.py --scale bench/results/scale.json [--catalog scale|ml1m]
                             [--rps 10000] [--ratings 100e6] [--versions 1|2]
                             [--out bench/results/capacity.json]
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
MIB = 1024**2
GIB = 1024**3

SERVICES = ("gateway", "feature", "model")


def whole(value: float) -> int:
    """At least 1, rounded up, ignoring float noise (21.000000000000004 is 21)."""
    return max(1, math.ceil(round(value, 9)))


def saturated_run(runs: list[dict]) -> dict | None:
    """The run at the highest concurrency that answered every request."""
    complete = [r for r in runs if r.get("count") and r.get("ok") == r.get("count")]
    return max(complete, key=lambda r: r["concurrency"]) if complete else None


def replicas(rps: float, cpu_ms: float, pod_cpu: float, utilization: float) -> int:
    """Pods of `pod_cpu` cores each that serve `rps` requests of `cpu_ms` CPU ms at the HPA's
    target `utilization`: ceil(rps × cpu_ms / 1000 / (pod_cpu × utilization))."""
    return whole(rps * cpu_ms / 1000 / (pod_cpu * utilization))


def redis_shards(
    rps: float,
    redis_cpu_ms: float,
    ratings: float,
    bytes_per_million: float,
    versions_bytes_per_million: float,
    shard_memory: float,
    shard_cpu: float,
) -> dict:
    """Shards for memory (every live version's features of `ratings` ratings within
    `shard_memory` bytes each) and for CPU (Redis's main thread at `shard_cpu` of a core);
    the plan is the larger. Keys hash evenly: every user's keys share one hash tag."""
    memory = ratings / 1e6 * (bytes_per_million + versions_bytes_per_million)
    cores = rps * redis_cpu_ms / 1000
    by_memory = whole(memory / shard_memory)
    by_cpu = whole(cores / shard_cpu)
    return {
        "memory_bytes": memory,
        "cores": cores,
        "by_memory": by_memory,
        "by_cpu": by_cpu,
        "shards": max(by_memory, by_cpu),
    }


def memory_request(rss_bytes: float, headroom: float) -> int:
    """A memory request in MiB: the measured RSS × (1 + headroom), rounded up to 64 MiB."""
    return 64 * math.ceil(rss_bytes * (1 + headroom) / MIB / 64)


def plan(scale: dict, args) -> dict:
    stages = scale["stages"]
    serve = stages.get("serve", {})
    if args.catalog == "ml1m":  # the ML-1M model served in the same run, and its load
        served, load = serve.get("baseline", {}), serve.get("ml1m", {}).get("load") or {}
    else:
        served = serve.get("scale", {})
        load = stages.get("load") or serve.get("load") or {}
    run = saturated_run(served.get("runs", []))
    if run is None:
        raise SystemExit("capacity: the scale run has no complete serving run (stage serve)")
    if load.get("status") != "ok":
        raise SystemExit("capacity: the scale run has no completed load stage")
    per_million = load["redis"]["bytes_per_million_ratings"]
    second = stages.get("item", {}).get("load", {}) if args.catalog == "scale" else {}
    second_per_million = (
        second["redis"]["bytes_per_million_ratings"]
        if second.get("status") == "ok" and second.get("second_version")
        else None
    )
    extra = second_per_million if args.versions > 1 and second_per_million else 0.0
    if args.versions > 1 and second_per_million is None:
        raise SystemExit("capacity: --versions 2 needs the item stage's second-version load")
    cpu = run["cpu_ms_per_request"]
    services = {}
    for name in SERVICES:
        rss = served["rss_bytes"][name]
        count = replicas(args.rps, cpu[name], args.pod_cpu, args.utilization)
        services[name] = {
            "cpu_ms_per_request": cpu[name],
            "rps_per_pod_at_target": args.pod_cpu * args.utilization * 1000 / cpu[name],
            "replicas": count,
            "rss_mib": rss / MIB,
            "memory_request_mib": memory_request(rss, args.memory_headroom),
            "memory_limit_mib": memory_request(rss, 2 * args.memory_headroom),
        }
    shards = redis_shards(
        args.rps,
        cpu["redis"],
        args.ratings,
        per_million,
        extra,
        args.shard_memory_gib * GIB,
        args.shard_cpu,
    )
    return {
        "measured": {
            "concurrency": run["concurrency"],
            "rps": run["rps"],
            "p99_ms": run["p99_ms"],
            "cpu_ms_per_request": cpu,
            "redis_bytes_per_million_ratings": per_million,
            "redis_bytes_per_user": load["redis"]["bytes_per_user"],
            "second_version_bytes_per_million_ratings": second_per_million,
            "commit": scale.get("environment", {}).get("commit"),
        },
        "choices": {
            "catalog": args.catalog,
            "rps": args.rps,
            "ratings": args.ratings,
            "versions": args.versions,
            "pod_cpu": args.pod_cpu,
            "utilization": args.utilization,
            "memory_headroom": args.memory_headroom,
            "shard_memory_gib": args.shard_memory_gib,
            "shard_cpu": args.shard_cpu,
        },
        "services": services,
        "redis": shards,
    }


def print_plan(result: dict) -> None:
    from recsys.output import format_table

    measured, choices = result["measured"], result["choices"]
    per_million = measured["redis_bytes_per_million_ratings"] / MIB
    print(
        f"measured: stored Recommend at c={measured['concurrency']}, {measured['rps']:.0f} RPS, "
        f"p99 {measured['p99_ms']:.1f} ms; Redis {per_million:.1f} MiB per million ratings"
    )
    print(
        f"for {choices['rps']:.0f} RPS and {choices['ratings'] / 1e6:.0f}M ratings "
        f"({choices['versions']} live version(s)); pods of {choices['pod_cpu']} CPU at "
        f"{choices['utilization']:.0%} utilization"
    )
    rows = [
        [
            name,
            f"{s['cpu_ms_per_request']:.3f}",
            f"{s['rps_per_pod_at_target']:.0f}",
            s["replicas"],
            f"{s['rss_mib']:.0f}",
            s["memory_request_mib"],
            s["memory_limit_mib"],
        ]
        for name, s in result["services"].items()
    ]
    print(
        format_table(
            ["service", "CPU ms/req", "RPS/pod", "replicas", "RSS MiB", "mem req", "mem lim"],
            rows,
        )
    )
    redis = result["redis"]
    print(
        f"Redis: {redis['memory_bytes'] / GIB:.1f} GiB of features, {redis['cores']:.2f} cores "
        f"→ shards {redis['shards']} (memory {redis['by_memory']} at "
        f"{choices['shard_memory_gib']} GiB each, CPU {redis['by_cpu']} at "
        f"{choices['shard_cpu']:.0%} of a core each), each with a replica"
    )


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--scale", type=Path, default=REPO / "bench" / "results" / "scale.json")
    parser.add_argument(
        "--catalog", choices=("scale", "ml1m"), default="scale",
        help="plan on the scale model's figures or on the ML-1M model's of the same run",
    )  # fmt: skip
    parser.add_argument("--rps", type=float, default=10_000.0, help="stored Recommend per s")
    parser.add_argument("--ratings", type=float, default=100e6)
    parser.add_argument("--versions", type=int, default=2, choices=(1, 2), help="live at once")
    parser.add_argument("--pod-cpu", type=float, default=1.0, help="cores one pod may use")
    parser.add_argument("--utilization", type=float, default=0.7, help="the HPA's CPU target")
    parser.add_argument("--memory-headroom", type=float, default=0.25)
    parser.add_argument("--shard-memory-gib", type=float, default=8.0)
    parser.add_argument("--shard-cpu", type=float, default=0.5, help="of a core, per shard")
    parser.add_argument("--out", type=Path, default=REPO / "bench" / "results" / "capacity.json")
    args = parser.parse_args(argv)
    if not args.scale.exists():
        parser.error(f"no scale results at {args.scale}: run bench/scale.py first")
    result = plan(json.loads(args.scale.read_text()), args)
    print_plan(result)
    from recsys.output import write_json

    write_json(args.out, {"benchmark": "capacity", "scale": str(args.scale), **result})
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
