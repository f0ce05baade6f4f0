"""Soak run (issue 15): the real stack (Redis and the three services as processes, features
loaded) under a steady mix of reads and writes for a long time, watching for leaks.

First a short closed-loop run measures the capacity of this machine for the mix; then an
open loop sends `--load` (0.7) × that rate for `--duration` seconds, one continuous run of
the project's load generator (one channel per server, every call with its deadline, the
number in flight bounded). Every `--sample-every` seconds it records each service
process's RSS and open file descriptors (psutil), Redis's `used_memory` (INFO memory) and
key count. At the end it reports, per resource, the growth after the warm-up: the mean of
the last 3 samples against the mean of the first 3 samples after the warm-up (2 minutes,
or the first 20% of a shorter run); flat means at most 5% growth. Failed requests are
counted from every recorded request (errors so far at each sample: those answered by
then). Redis holds the users' ratings, and the mix writes new ones, so its memory is also
compared with what the accepted writes add at the bytes per rating of the loaded data.
Prints a table, writes JSON (machine, commit, settings, figures) and a PNG of the curves.

    python bench/soak.py --model-dir /work/models/ml1m [--data ../shared/data/ml-1m]
    python bench/soak.py --smoke      # about a minute, synthetic data (what CI runs)
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import tempfile
import time
from pathlib import Path

import psutil

REPO = Path(__file__).resolve().parents[1]
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from recsys.launcher import LocalStack, bench_inputs  # noqa: E402
from recsys.loadtest import LoadSettings, Sample, Targets, build_workload, run_load  # noqa: E402
from recsys.loadtest.workloads import MAX_RATED_PER_CALL  # noqa: E402
from recsys.output import format_table, write_json  # noqa: E402
from recsys.pipeline import environment  # noqa: E402
from recsys.redis_client import sync_client  # noqa: E402

MIX = "recommend-stored=0.6,rate=0.2,similar=0.2"
FLAT = 0.05  # at most 5% growth after the warm-up
TAIL = 3  # samples averaged at each end
NS = 1_000_000_000
MB = 1024 * 1024


def warmup_of(duration_s: float) -> float:
    """Seconds before the baseline: 2 minutes, or the first 20% of a run under 10 minutes."""
    return 120.0 if duration_s >= 600 else 0.2 * duration_s


def redis_memory(url: str) -> dict[str, int]:
    with sync_client(url) as client:
        info = client.info("memory")
        return {
            "used_memory": int(info["used_memory"]),
            "used_memory_dataset": int(info.get("used_memory_dataset", 0)),
            "keys": int(client.dbsize()),
        }


def sample(processes: dict[str, psutil.Process], redis_url: str, t_s: float) -> dict:
    """One sample: seconds since the soak started, RSS (bytes) and open descriptors of each
    service process (and Redis's RSS), Redis's memory figures, the machine's load average
    (to tell errors of a busy machine from the system's own)."""
    rss, fds = {}, {}
    for name, process in processes.items():
        try:
            rss[name] = process.memory_info().rss
            fds[name] = process.num_fds()
        except psutil.NoSuchProcess:  # a crashed process: the report says so
            rss[name] = fds[name] = None
    return {
        "t_s": t_s,
        "rss": rss,
        "fds": fds,
        "redis": redis_memory(redis_url),
        "load_average_1m": os.getloadavg()[0],  # the machine's, other jobs included
    }


async def soak(
    rate: float,
    duration_s: float,
    every_s: float,
    targets: Targets,
    workload,
    processes: dict[str, psutil.Process],
    redis_url: str,
    deadline_ms: float,
):
    """The open loop for `duration_s` and, beside it, a sample every `every_s` seconds from
    its start (one at 0 s, one after the load ended)."""
    settings = LoadSettings(rate=rate, duration_s=duration_s, warmup_s=0, deadline_ms=deadline_ms)
    started = time.monotonic_ns()
    load = asyncio.create_task(run_load(settings, targets, workload))
    samples = []
    n = 0
    while not load.done():
        t_s = (time.monotonic_ns() - started) / NS
        taken = await asyncio.to_thread(sample, processes, redis_url, t_s)
        taken["t_ns"] = time.monotonic_ns()
        samples.append(taken)
        print(progress(taken), flush=True)
        n += 1
        due = started + round(n * every_s * NS)
        while not load.done() and time.monotonic_ns() < due:
            await asyncio.wait({load}, timeout=(due - time.monotonic_ns()) / NS)
    report = await load
    t_s = (time.monotonic_ns() - started) / NS
    final = await asyncio.to_thread(sample, processes, redis_url, t_s)
    final["t_ns"] = time.monotonic_ns()
    samples.append(final)
    print(progress(final), flush=True)
    count_errors(samples, report.samples, started)
    return report, samples


def progress(taken: dict) -> str:
    rss = " ".join(
        f"{name} {value / MB:.0f}MB" if value is not None else f"{name} gone"
        for name, value in taken["rss"].items()
    )
    fds = " ".join(f"{name} {value}" for name, value in taken["fds"].items())
    return (
        f"  {taken['t_s']:7.1f}s  rss: {rss}  fds: {fds}  "
        f"redis used_memory {taken['redis']['used_memory'] / MB:.1f}MB  "
        f"load {taken['load_average_1m']:.1f}"
    )


def count_errors(samples: list[dict], requests: list[Sample], started_ns: int) -> None:
    """Requests answered and failed by each sample's time, from every recorded request."""
    answered = sorted((s.sent_ns + s.latency_ns, s.status != "OK") for s in requests)
    i = failed = 0
    for taken in samples:
        while i < len(answered) and answered[i][0] <= taken["t_ns"]:
            failed += answered[i][1]
            i += 1
        taken["requests_so_far"] = i
        taken["errors_so_far"] = failed
    for taken in samples:
        del taken["t_ns"]


def growth(samples: list[dict], warmup_s: float, value) -> dict[str, float | None]:
    """Mean of the first TAIL samples from `warmup_s` on against the mean of the last TAIL;
    `value(sample)` is the figure (None: missing, e.g. the process is gone)."""
    after = [s for s in samples if s["t_s"] >= warmup_s]
    values = [value(s) for s in after]
    if len(values) < 2 or any(v is None for v in values):
        return {"baseline": None, "end": None, "growth": None, "trend_per_hour": None}
    tail = min(TAIL, len(values) // 2)
    baseline = sum(values[:tail]) / tail
    end = sum(values[-tail:]) / tail
    return {
        "baseline": baseline,
        "end": end,
        "growth": (end - baseline) / baseline if baseline else None,
        "trend_per_hour": trend([s["t_s"] for s in after], values, baseline),
    }


def trend(times_s: list[float], values: list[float], baseline: float) -> float | None:
    """Least-squares slope of `values` over time after the warm-up, as a share of
    `baseline` per hour: a step (a pool that grew once, then stayed) and a steady climb (a
    leak) can have the same end-to-end growth, not the same slope over the second half."""
    n = len(times_s)
    mean_t, mean_v = sum(times_s) / n, sum(values) / n
    spread = sum((t - mean_t) ** 2 for t in times_s)
    if not spread or not baseline:
        return None
    slope = sum((t - mean_t) * (v - mean_v) for t, v in zip(times_s, values, strict=True)) / spread
    return slope * 3600 / baseline


def write_png(samples: list[dict], warmup_s: float, title: str, path: Path) -> Path:
    """RSS and descriptors per service, Redis memory, errors so far, against time."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    figure = Figure(figsize=(11, 8), dpi=100)
    FigureCanvasAgg(figure)
    (rss_axes, fd_axes), (redis_axes, error_axes) = figure.subplots(2, 2, sharex=True)
    minutes = [s["t_s"] / 60 for s in samples]
    for name in samples[0]["rss"]:
        rss_axes.plot(minutes, [(s["rss"][name] or 0) / MB for s in samples], label=name)
        if name != "redis":
            fd_axes.plot(minutes, [s["fds"][name] or 0 for s in samples], label=name)
    redis_axes.plot(minutes, [s["redis"]["used_memory"] / MB for s in samples], label="used_memory")
    redis_axes.plot(
        minutes, [s["redis"]["used_memory_dataset"] / MB for s in samples], label="dataset"
    )
    error_axes.plot(minutes, [s["errors_so_far"] for s in samples], color="#c44e52")
    load_axes = error_axes.twinx()
    load_axes.plot(minutes, [s["load_average_1m"] for s in samples], color="grey", linewidth=0.8)
    load_axes.set_ylabel("load average, 1 min (grey)")
    load_axes.set_ylim(bottom=0)
    for axes, ylabel in (
        (rss_axes, "RSS (MB)"),
        (fd_axes, "open file descriptors"),
        (redis_axes, "Redis memory (MB)"),
        (error_axes, "failed requests so far"),
    ):
        axes.axvline(warmup_s / 60, color="grey", linestyle=":", linewidth=1)
        axes.set_ylabel(ylabel)
        axes.set_ylim(bottom=0)
        if axes is not error_axes:
            axes.legend(fontsize=8)
    for axes in (redis_axes, error_axes):
        axes.set_xlabel("minutes (dotted: end of warm-up)")
    figure.suptitle(title, fontsize=10)
    figure.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, format="png")
    return path


async def measure_capacity(targets: Targets, workload, seconds: float, concurrency: int):
    settings = LoadSettings(concurrency=concurrency, duration_s=seconds, warmup_s=min(2, seconds))
    return await run_load(settings, targets, workload)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, default=REPO.parent / "shared" / "data" / "ml-1m")
    parser.add_argument("--model-dir", type=Path, help="default: train the default preset")
    parser.add_argument("--mix", default=MIX)
    parser.add_argument("--duration", type=float, default=1800.0, help="seconds of soak")
    parser.add_argument("--sample-every", type=float, default=10.0, help="seconds")
    parser.add_argument("--load", type=float, default=0.7, help="share of measured capacity")
    parser.add_argument("--capacity-seconds", type=float, default=10.0)
    parser.add_argument("--capacity-concurrency", type=int, default=32)
    parser.add_argument("--deadline-ms", type=float, default=1000.0)
    parser.add_argument("--smoke", action="store_true", help="about a minute, for CI")
    parser.add_argument("--out", type=Path, default=REPO / "bench" / "results" / "soak.json")
    parser.add_argument("--png", type=Path, help="default: --out with .png")
    args = parser.parse_args(argv)
    if args.smoke:
        args.duration, args.sample_every, args.capacity_seconds = 30.0, 3.0, 3.0
    png = args.png or args.out.with_suffix(".png")
    warmup_s = warmup_of(args.duration)

    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        data_dir, data, model_dir = bench_inputs(work, args.data, args.model_dir, smoke=args.smoke)
        from recsys.artifacts import resolve_version
        from recsys.featurestore.loader import load_features

        version = resolve_version(model_dir)
        stack = LocalStack(model_dir=model_dir, redis_dir=work / "redis", log_level="WARNING")
        try:
            with sync_client(stack.start_redis()) as client:
                load_features(client, version, data.ratings, data.items)
            loaded = redis_memory(stack.redis_url)
            stack.start_services()
            processes = {
                name: psutil.Process(process.pid)
                for name, process in [*stack.processes.items(), ("redis", stack.redis.process)]
            }
            pids = {name: p.pid for name, p in processes.items()}
            targets = Targets(gateway=stack.address("gateway"), feature=stack.address("feature"))

            async def run():
                workload = await build_workload(args.mix, targets, data=data, seed=1)
                print(
                    f"capacity: closed loop c={args.capacity_concurrency}, "
                    f"{args.capacity_seconds:g} s ...",
                    flush=True,
                )
                capacity = await measure_capacity(
                    targets, workload, args.capacity_seconds, args.capacity_concurrency
                )
                rate = args.load * capacity.rps
                print(
                    f"  {capacity.rps:.0f} RPS ({capacity.ok}/{capacity.count} OK); soak at "
                    f"{rate:.0f} RPS for {args.duration:g} s ...",
                    flush=True,
                )
                report, samples = await soak(
                    rate,
                    args.duration,
                    args.sample_every,
                    targets,
                    workload,
                    processes,
                    stack.redis_url,
                    args.deadline_ms,
                )
                return capacity, rate, report, samples

            capacity, rate, report, samples = asyncio.run(run())
            alive = {
                name: stack.processes[name].poll() is None and processes[name].pid == pids[name]
                for name in stack.processes
            }
        finally:
            stack.stop()

    services = [name for name in processes if name != "redis"]
    resources = {
        **{
            f"{name} RSS": growth(samples, warmup_s, lambda s, n=name: s["rss"][n])
            for name in processes
        },
        **{
            f"{name} fds": growth(samples, warmup_s, lambda s, n=name: s["fds"][n])
            for name in services
        },
        "redis used_memory": growth(samples, warmup_s, lambda s: s["redis"]["used_memory"]),
        "redis keys": growth(samples, warmup_s, lambda s: s["redis"]["keys"]),
    }
    rate_rpc = report.by_rpc.get("rate")
    writes_ok = rate_rpc.ok if rate_rpc else 0
    ratings_loaded = len(data.ratings)
    bytes_per_rating = loaded["used_memory"] / ratings_loaded
    # each write sends 1..MAX_RATED_PER_CALL ratings, mean (1 + MAX) / 2; most are new
    # (user, movie) pairs: roughly what the writes add, at the loaded data's bytes per rating
    ratings_written = writes_ok * (1 + MAX_RATED_PER_CALL) / 2
    redis_growth_bytes = samples[-1]["redis"]["used_memory"] - samples[0]["redis"]["used_memory"]
    redis_explained = {
        "loaded_ratings": ratings_loaded,
        "used_memory_after_load": loaded["used_memory"],
        "bytes_per_loaded_rating": bytes_per_rating,
        "writes_ok": writes_ok,
        "ratings_written_estimate": ratings_written,
        "bytes_if_all_new": ratings_written * bytes_per_rating,
        "used_memory_growth_whole_soak": redis_growth_bytes,
    }
    failed = report.count - report.ok
    flat = {
        name: g["growth"] is not None and g["growth"] <= FLAT
        for name, g in resources.items()
        if not name.startswith("redis ")
    }

    def shown(name: str, value: float | None) -> float | None:
        in_bytes = "RSS" in name or "used_memory" in name
        return value / MB if value is not None and in_bytes else value

    rows = [
        [
            name,
            shown(name, g["baseline"]),
            shown(name, g["end"]),
            100 * g["growth"] if g["growth"] is not None else None,
            100 * g["trend_per_hour"] if g["trend_per_hour"] is not None else None,
            ("flat" if flat[name] else "GROWS") if name in flat else "data",
        ]
        for name, g in resources.items()
    ]
    print(
        format_table(
            ["resource (memory in MB)", "after warm-up", "end", "growth %", "trend %/h", "verdict"],
            rows,
        )
    )
    print(
        f"{report.count} requests in {report.elapsed_s:.0f} s ({report.rps:.0f} RPS, open loop at "
        f"{rate:.0f} = {args.load:g} × capacity {capacity.rps:.0f}), {failed} failed "
        f"{dict((k, v) for k, v in report.status_codes.items() if k != 'OK') or ''}, "
        f"{report.dropped} dropped, p99 {report.latency.p99 if report.latency else 0:.1f} ms; "
        f"processes alive: {all(alive.values())}"
    )
    print(
        f"redis: {writes_ok} writes OK (~{ratings_written:.0f} ratings) × "
        f"{bytes_per_rating:.0f} B per loaded rating = "
        f"{ratings_written * bytes_per_rating / MB:.1f} MB expected; "
        f"used_memory grew {redis_growth_bytes / MB:.1f} MB over the soak"
    )
    title = (
        f"soak: {report.workload} at {rate:.0f} RPS for {args.duration:g} s, "
        f"{failed} failed of {report.count}"
    )
    write_png(samples, warmup_s, title, png)
    print(f"wrote {png}")
    write_json(
        args.out,
        {
            "benchmark": "soak",
            "smoke": args.smoke,
            "data": str(data_dir),
            "model_version": version.name,
            "mix": report.workload,
            "settings": {
                "duration_s": args.duration,
                "sample_every_s": args.sample_every,
                "warmup_s": warmup_s,
                "load": args.load,
                "capacity_seconds": args.capacity_seconds,
                "capacity_concurrency": args.capacity_concurrency,
                "deadline_ms": args.deadline_ms,
                "flat_at_most": FLAT,
                "tail_samples": TAIL,
            },
            "environment": environment(),
            "capacity_rps": capacity.rps,
            "capacity_status_codes": capacity.status_codes,
            "rate_rps": rate,
            "requests": report.count,
            "ok": report.ok,
            "failed": failed,
            "dropped": report.dropped,
            "status_codes": report.status_codes,
            "errors": [vars(e) for e in report.errors],
            "achieved_rps": report.rps,
            "latency_ms": vars(report.latency) if report.latency else None,
            "by_rpc": {name: vars(r) for name, r in report.by_rpc.items()},
            "processes_alive": alive,
            "growth": resources,
            "flat": flat,
            "all_flat": all(flat.values()),
            "redis_writes": redis_explained,
            "png": str(png),
            "samples": samples,
        },
    )
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
