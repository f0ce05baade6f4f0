"""Benchmark: the served system against the ceiling of this machine, in one run.

Starts a trivial echo gRPC server (health only, in its own process: the ceiling),
the topology floors (echo servers chained as the gateway chains its upstreams, with no work:
two processes as for `SimilarItems`, inline `Recommend` and `RateItems`, three as for a
stored user's `Recommend`) and the real stack (Redis, feature, model, gateway services as
processes, features loaded), drives all of them with the project's load generator
(`recsys.loadtest`; the gateway's HTTP/JSON side with an aiohttp client, same requests),
and times the article's own `predict()` (a pandas pivot of the user's
ratings, then `model.predict`) for the same users. Every run also records the CPU time each
server process spent, per request. Prints a table and writes JSON (machine, commit,
settings, figures).

    python bench/serving.py [--data ../shared/data/ml-1m] [--model-dir DIR] [--duration 10]
                            [--compare-model-dir DIR ...] [--compare-preset NAME ...]
    python bench/serving.py --smoke      # seconds, synthetic data (what CI runs)

--compare-model-dir / --compare-preset serve further model versions (trained beforehand, or
trained in the run from a preset) and measure stored-user Recommend at c = 1 and 32 on them
and on the main version, every version on a stack and a Redis of its own, all up at once
after the main runs: `--rounds N` rounds, each measuring every version in turn, the order
rotated from round to round, so that a slow spell of the machine falls on all of them.
Reported: server CPU per request and RPS per version and round, each over the main
version's in the same round, and per version the median of those ratios with their range:
the side-by-side cost of a model.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import aiohttp
import numpy as np
import psutil
from google.protobuf import json_format

REPO = Path(__file__).resolve().parents[1]
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from recsys.data.movielens import RatingData  # noqa: E402
from recsys.launcher import (  # noqa: E402
    SMOKE_MODEL,
    LocalStack,
    bench_inputs,
    train_version,
    wait_serving,
)
from recsys.loadtest import (  # noqa: E402
    LoadReport,
    LoadSettings,
    Sample,
    Targets,
    Workload,
    build_workload,
    run_load,
    summarize,
)
from recsys.loadtest.process_cpu import cpu_ms_per_request, cpu_seconds  # noqa: E402
from recsys.output import format_table, write_json  # noqa: E402
from recsys.pipeline import environment  # noqa: E402
from recsys.redis_client import sync_client  # noqa: E402
from recsys.redis_server import free_port  # noqa: E402

# (label, workload, target, concurrency); the echo rows are the ceiling of the same run, the
# chain rows the floor of each topology (FLOOR)
RUNS = [
    ("echo", "health", "echo", 1),
    ("echo", "health", "echo", 32),
    ("floor: 2 chained echo processes", "health", "chain-2", 1),
    ("floor: 2 chained echo processes", "health", "chain-2", 32),
    ("floor: 3 chained echo processes", "health", "chain-3", 1),
    ("floor: 3 chained echo processes", "health", "chain-3", 32),
    ("floor: 3 chained echo processes, coalesced", "health", "chain-3-coalesced", 1),
    ("floor: 3 chained echo processes, coalesced", "health", "chain-3-coalesced", 32),
    ("gateway Recommend, stored users", "recommend-stored", "gateway", 1),
    ("gateway Recommend, stored users", "recommend-stored", "gateway", 32),
    # the same requests as JSON over HTTP (POST /v1/recommend), at the gRPC row's concurrency
    ("gateway Recommend, stored users, HTTP/JSON", "recommend-stored", "gateway-http", 32),
    ("gateway Recommend, inline ratings", "recommend-inline", "gateway", 32),
    ("gateway SimilarItems", "similar", "gateway", 32),
    ("model Predict (direct)", "predict", "model", 1),
    ("model Predict (direct)", "predict", "model", 32),
    ("model Predict (direct), batching on (64)", "predict", "model-batched", 32),
    ("gateway RateItems (1-5 ratings)", "rate", "gateway", 32),
]
# The no-work chain each workload's path matches: client → gateway → feature, then model for
# a stored user; gateway → one upstream for the others; the model service called directly is
# one process, like the echo server.
FLOOR = {
    "recommend-stored": "chain-3",
    "recommend-inline": "chain-2",
    "similar": "chain-2",
    "rate": "chain-2",
    "predict": "echo",
}
# ... and the coalesced floor of the stored-user path, what coalescing alone is worth
COALESCED_FLOOR = {"recommend-stored": "chain-3-coalesced"}
# The echo processes and the upstreams each calls first: echo and echo-2 answer at once,
# chain-2 calls echo (2 processes), chain-3 calls echo, then echo-2 (3 processes);
# chain-3-coalesced does the same with its calls coalesced (recsys.loadtest.echo --coalesce).
ECHO_UPSTREAMS = {
    "echo": [],
    "echo-2": [],
    "chain-2": ["echo"],
    "chain-3": ["echo", "echo-2"],
    "chain-3-coalesced": ["echo", "echo-2"],
}
COALESCED = {"chain-3-coalesced"}
# concurrency sweep of stored-user Recommend: where coalescing starts to pay
SWEEP = (1, 4, 16, 64, 256)
# the server processes whose CPU each target's runs use
TARGET_PROCESSES = {
    **{name: [name, *upstreams] for name, upstreams in ECHO_UPSTREAMS.items()},
    "gateway": ["gateway", "feature", "model", "redis"],
    "gateway-http": ["gateway", "feature", "model", "redis"],
    "model": ["model"],
    "model-batched": ["model-batched"],
}
ARTICLE_USERS = 20
# the concurrencies at which a compared version's stored-user Recommend is measured
COMPARE_CONCURRENCY = (1, 32)


def article_predict_ms(model_dir: Path, data: RatingData, user_ids: list[int]) -> float | None:
    """Median latency per user of the article's predict(): normalize the user's ratings,
    pivot them into a (1, n_items) frame with pandas, `model.predict`, de-normalize, rank.
    None unless the version is of the user kind: the item kind's Keras network takes an
    item's column over the training users and a blend has no one Keras network, so the
    article's function has nothing to call."""
    import keras
    import pandas as pd

    from recsys.artifacts import load_artifact, resolve_version

    artifact = load_artifact(resolve_version(model_dir))
    if artifact.kind != "user":
        return None
    model = keras.saving.load_model(artifact.path / "model.keras", safe_mode=True)
    item_ids = artifact.recommender.index.item_ids
    norm = artifact.recommender.normalization
    item_mean = pd.Series(norm.item_means, index=item_ids)
    times = []
    for user_id in user_ids:
        started = time.perf_counter()
        mine = data.ratings[data.ratings["user_id"] == user_id]
        mine = mine[mine["item_id"].isin(item_ids)]
        residual = mine["rating"].to_numpy() - norm.global_mean - item_mean[mine["item_id"]].values
        user_mean = residual.mean() if len(residual) else 0.0
        frame = mine.assign(pref=residual - user_mean)
        pivot = frame.pivot_table(index="user_id", columns="item_id", values="pref")
        row = pivot.reindex(columns=item_ids).fillna(0.0).to_numpy(np.float32)
        predicted = model.predict(row, verbose=0)[0] + user_mean + norm.item_means
        predicted = predicted + norm.global_mean
        predicted[np.isin(item_ids, mine["item_id"])] = -np.inf
        np.argsort(-predicted)[:10]
        times.append((time.perf_counter() - started) * 1000)
    return float(np.median(times))


async def run_http_load(
    base_url: str, workload: Workload, concurrency: int, duration_s: float, deadline_ms: float
) -> LoadReport:
    """A closed loop of `concurrency` clients sending the workload's requests as JSON to
    the gateway's HTTP side (POST /v1/recommend, kept-alive connections, X-Timeout-Ms the
    gRPC runs' deadline); non-200 answers are recorded as "HTTP <status>"."""
    samples: list[Sample] = []
    end_ns = time.monotonic_ns() + round(duration_s * 1e9)
    headers = {"X-Timeout-Ms": str(round(deadline_ms))}
    connector = aiohttp.TCPConnector(limit=concurrency)
    timeout = aiohttp.ClientTimeout(total=deadline_ms / 1000 + 5)
    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:

        async def client() -> None:
            while time.monotonic_ns() < end_ns:
                call = workload()
                body = json_format.MessageToDict(call.request)
                started = time.monotonic_ns()
                details = None
                try:
                    async with session.post(
                        f"{base_url}/v1/recommend", json=body, headers=headers
                    ) as response:
                        answer = await response.read()
                        status = "OK" if response.status == 200 else f"HTTP {response.status}"
                        if response.status != 200:
                            details = answer[:200].decode(errors="replace")
                except (TimeoutError, aiohttp.ClientError) as exc:
                    status, details = "CLIENT_ERROR", repr(exc)
                samples.append(Sample(call.rpc, time.monotonic_ns() - started, status, details))

        started_ns = time.monotonic_ns()
        await asyncio.gather(*(client() for _ in range(concurrency)))
        elapsed_s = (time.monotonic_ns() - started_ns) / 1e9
    return summarize(samples, elapsed_s=elapsed_s, workload=workload.name)


async def load(
    kind: Targets, workload: Workload, concurrency: int, seconds: float, http_url: str | None
) -> LoadReport:
    """One closed-loop run: over gRPC, or to the HTTP side at `http_url` when given."""
    settings = LoadSettings(concurrency=concurrency, duration_s=seconds, warmup_s=0)
    if http_url is not None:
        return await run_http_load(http_url, workload, concurrency, seconds, settings.deadline_ms)
    return await run_load(settings, kind, workload)


async def measure(
    targets: dict[str, str],
    processes: dict[str, psutil.Process],
    data: RatingData,
    duration: float,
    warmup: float,
    runs=RUNS,
):
    results = []
    generator = psutil.Process()  # this process: the load generator
    for label, workload_name, target, concurrency in runs:
        direct_to_model = target.startswith("model")
        over_http = target == "gateway-http"
        kind = Targets(  # the echo and chain servers answer the health workload as a gateway
            gateway=None if direct_to_model else targets["gateway" if over_http else target],
            model=targets[target] if direct_to_model else None,
            feature=targets["feature"],
        )
        workload = await build_workload(workload_name, kind, data=data, seed=1)
        http_url = targets[target] if over_http else None
        if warmup > 0:  # a run of its own, so that the CPU times cover measured calls only
            await load(kind, workload, concurrency, warmup, http_url)
        busy = {name: processes[name] for name in TARGET_PROCESSES[target]}
        before = cpu_seconds(busy)
        generator_before = sum(generator.cpu_times()[:2])
        report = await load(kind, workload, concurrency, duration, http_url)
        after = cpu_seconds(busy)
        generator_ms = 1000 * (sum(generator.cpu_times()[:2]) - generator_before)
        results.append(
            {
                "label": label,
                "workload": workload_name,
                "target": target,
                "concurrency": concurrency,
                "rps": report.count / report.elapsed_s if report.elapsed_s else 0.0,
                "ok": report.ok,
                "count": report.count,
                "status_codes": report.status_codes,
                "p50_ms": report.latency.p50 if report.latency else None,
                "p99_ms": report.latency.p99 if report.latency else None,
                "cpu_ms_per_request": cpu_ms_per_request(before, after, report.count),
                "generator_cpu_ms_per_request": generator_ms / report.count
                if report.count
                else None,
            }
        )
        print(f"  {label} c={concurrency}: {results[-1]['rps']:.0f} RPS", flush=True)
    return results


def ratio(results: list[dict], run: dict, target: str) -> float | None:
    """`run`'s RPS over that of `target`'s run at the same concurrency (None without one)."""
    base = next(
        (
            r["rps"]
            for r in results
            if r["target"] == target and r["concurrency"] == run["concurrency"]
        ),
        None,
    )
    return run["rps"] / base if base else None


def total_cpu_ms(run: dict) -> float | None:
    values = list(run["cpu_ms_per_request"].values())
    return None if None in values else sum(values)


def http_vs_grpc(grpc_run: dict, http_run: dict) -> dict[str, float | None]:
    """What the HTTP/JSON side costs against gRPC for the same requests at the same
    concurrency: the RPS ratio and the extra server CPU per request (all processes)."""
    grpc_cpu, http_cpu = total_cpu_ms(grpc_run), total_cpu_ms(http_run)
    return {
        "rps_ratio": http_run["rps"] / grpc_run["rps"] if grpc_run["rps"] else None,
        "extra_cpu_ms_per_request": http_cpu - grpc_cpu
        if http_cpu is not None and grpc_cpu is not None
        else None,
        "p50_ms": {"grpc": grpc_run["p50_ms"], "http": http_run["p50_ms"]},
    }


def start_loaded_stack(
    model_dir: Path, data: RatingData, redis_dir: Path, **settings
) -> tuple[LocalStack, dict[str, psutil.Process]]:
    """A LocalStack serving `model_dir` on a Redis of its own, the version's features loaded,
    and its server processes by name (as TARGET_PROCESSES names them)."""
    from recsys.artifacts import resolve_version
    from recsys.featurestore.loader import load_features

    stack = LocalStack(model_dir=model_dir, redis_dir=redis_dir, log_level="WARNING", **settings)
    try:
        with sync_client(stack.start_redis()) as client:
            load_features(client, resolve_version(model_dir), data.ratings, data.items)
        stack.start_services()
    except BaseException:
        stack.stop()
        raise
    processes = {
        name: psutil.Process(process.pid)
        for name, process in [*stack.processes.items(), ("redis", stack.redis.process)]
    }
    return stack, processes


def version_label(model_dir: Path) -> str:
    """ "<kind> <version>" of the newest version in `model_dir`."""
    from recsys.artifacts import load_artifact, resolve_version

    path = resolve_version(model_dir)
    return f"{load_artifact(path).kind} {path.name}"


def compare_versions(
    work: Path,
    data: RatingData,
    model_dirs: list[Path],
    duration: float,
    warmup: float,
    rounds: int = 1,
) -> list[dict]:
    """Stored-user Recommend at COMPARE_CONCURRENCY on each of `model_dirs` (the main
    version's first), all served at once, each on its own stack: `rounds` rounds, each
    measuring every version, the order rotated by one each round. The runs of `measure`,
    each with its version's label and round."""
    stacks = []
    compared = []
    try:
        for n, model_dir in enumerate(model_dirs):
            label = version_label(model_dir)
            print(f"starting the stack of {label} ...", flush=True)
            stack, processes = start_loaded_stack(model_dir, data, work / f"redis-compare-{n}")
            stacks.append((label, model_dir, stack, processes))
        for round_ in range(rounds):
            shift = round_ % len(stacks)
            for label, model_dir, stack, processes in stacks[shift:] + stacks[:shift]:
                targets = {"gateway": stack.address("gateway"), "feature": stack.address("feature")}
                runs = [
                    (f"compare {round_ + 1}/{rounds}: {label}", "recommend-stored", "gateway", c)
                    for c in COMPARE_CONCURRENCY
                ]
                for run in asyncio.run(measure(targets, processes, data, duration, warmup, runs)):
                    compared.append(
                        {**run, "model_dir": str(model_dir), "version": label, "round": round_}
                    )
    finally:
        for *_, stack, _ in stacks:
            stack.stop()
    return compared


def comparison_summary(compared: list[dict]) -> list[dict]:
    """Per version and concurrency: the server CPU per request over the main version's (the
    first label) in the same round, median and range over the rounds, and the median RPS
    ratio."""
    main = compared[0]["version"]
    base = {(r["round"], r["concurrency"]): r for r in compared if r["version"] == main}
    summary = []
    for label in dict.fromkeys(r["version"] for r in compared):
        for c in COMPARE_CONCURRENCY:
            runs = [r for r in compared if r["version"] == label and r["concurrency"] == c]
            cpu = [total_cpu_ms(r) / total_cpu_ms(base[r["round"], c]) for r in runs]
            rps = [r["rps"] / base[r["round"], c]["rps"] for r in runs]
            summary.append(
                {
                    "version": label,
                    "concurrency": c,
                    "rounds": len(runs),
                    "cpu_ms_per_request_median": float(np.median([total_cpu_ms(r) for r in runs])),
                    "cpu_of_main_median": float(np.median(cpu)),
                    "cpu_of_main_min": min(cpu),
                    "cpu_of_main_max": max(cpu),
                    "rps_of_main_median": float(np.median(rps)),
                }
            )
    return summary


def comparison_rows(compared: list[dict]) -> list[list]:
    """One row per version, round and concurrency: RPS, latency, server CPU per request by
    process and in all, and the CPU and RPS over the main version's (the first label) run of
    the same round and concurrency."""
    main = compared[0]["version"]
    base = {(r["round"], r["concurrency"]): r for r in compared if r["version"] == main}
    rows = []
    for run in sorted(compared, key=lambda r: (r["round"], r["concurrency"])):
        cpu, first = run["cpu_ms_per_request"], base[run["round"], run["concurrency"]]
        total = total_cpu_ms(run)
        rows.append(
            [
                run["version"],
                run["round"] + 1,
                run["concurrency"],
                round(run["rps"]),
                run["p50_ms"],
                run["p99_ms"],
                *(cpu.get(name) for name in ("gateway", "feature", "model", "redis")),
                total,
                total / total_cpu_ms(first),
                run["rps"] / first["rps"] if first["rps"] else None,
                f"{run['ok']}/{run['count']}",
            ]
        )
    return rows


def plot_sweep(sweep: list[dict], path: Path) -> None:
    """RPS and p99 of stored-user Recommend against concurrency, as a PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    concurrency = [r["concurrency"] for r in sweep]
    figure, rps_axis = plt.subplots(figsize=(7, 4))
    rps_axis.plot(concurrency, [r["rps"] for r in sweep], "o-", color="tab:blue")
    rps_axis.set(xscale="log", xlabel="concurrent clients", ylabel="requests per second")
    rps_axis.set_xticks(concurrency, [str(c) for c in concurrency])
    p99_axis = rps_axis.twinx()
    p99_axis.plot(concurrency, [r["p99_ms"] or 0 for r in sweep], "s--", color="tab:red")
    p99_axis.set_ylabel("p99 latency, ms", color="tab:red")
    rps_axis.set_title("gateway Recommend, stored users (coalesced)")
    figure.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=100)
    plt.close(figure)
    print(f"wrote {path}")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, default=REPO.parent / "shared" / "data" / "ml-1m")
    parser.add_argument("--model-dir", type=Path, help="default: train the default preset")
    parser.add_argument("--duration", type=float, default=10.0, help="seconds per run")
    parser.add_argument("--warmup", type=float, default=2.0)
    parser.add_argument("--smoke", action="store_true", help="seconds-long run for CI")
    parser.add_argument(
        "--compare-model-dir",
        type=Path,
        action="append",
        default=[],
        help="a further model directory whose stored-user Recommend is measured beside the main",
    )
    parser.add_argument(
        "--compare-preset",
        action="append",
        default=[],
        help="a preset trained in the run (smoke settings with --smoke) and compared likewise",
    )
    parser.add_argument(
        "--rounds",
        type=int,
        default=1,
        help="rounds of the comparison, each measuring every version, the order rotated",
    )
    parser.add_argument("--out", type=Path, default=REPO / "bench" / "results" / "serving.json")
    args = parser.parse_args(argv)
    if args.rounds < 1:
        parser.error("--rounds must be at least 1")

    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        if args.smoke:
            args.duration, args.warmup = 1.0, 0.5
        data_dir, data, model_dir = bench_inputs(work, args.data, args.model_dir, smoke=args.smoke)
        compare_dirs = list(args.compare_model_dir)
        for preset in args.compare_preset:
            print(f"training the {preset} preset ...", flush=True)
            compare_dirs.append(work / f"models-{preset}")
            train_version(data_dir, compare_dirs[-1], SMOKE_MODEL if args.smoke else {}, preset)
        echo_ports = {name: free_port() for name in ECHO_UPSTREAMS}
        echoes = {
            name: subprocess.Popen(
                [sys.executable, "-m", "recsys.loadtest.echo", "--port", str(port)]
                + [f"--upstream=127.0.0.1:{echo_ports[u]}" for u in ECHO_UPSTREAMS[name]]
                + (["--coalesce"] if name in COALESCED else []),
                stdout=subprocess.DEVNULL,
            )
            for name, port in echo_ports.items()
        }
        batched_port = free_port()
        batched = subprocess.Popen(  # dynamic batching against the default (off), same run
            [sys.executable, "-m", "services.model.server"],
            env={
                **os.environ,
                "MODEL_DIR": str(model_dir),
                "MODEL_PORT": str(batched_port),
                "MODEL_BATCH_SIZE": "64",
                "LOG_LEVEL": "WARNING",
            },
        )
        http_port = free_port()  # the gateway's HTTP/JSON side
        stack = None
        try:
            for name, process in echoes.items():
                wait_serving(f"127.0.0.1:{echo_ports[name]}", 30, process)
            wait_serving(f"127.0.0.1:{batched_port}", 120, batched)
            stack, stack_processes = start_loaded_stack(
                model_dir, data, work / "redis", environment={"HTTP_PORT": str(http_port)}
            )
            targets = {
                **{name: f"127.0.0.1:{port}" for name, port in echo_ports.items()},
                "gateway": stack.address("gateway"),
                "gateway-http": f"http://127.0.0.1:{http_port}",
                "model": stack.address("model"),
                "model-batched": f"127.0.0.1:{batched_port}",
                "feature": stack.address("feature"),
            }
            processes = {
                **{
                    name: psutil.Process(process.pid)
                    for name, process in [*echoes.items(), ("model-batched", batched)]
                },
                **stack_processes,
            }
            print("load runs ...", flush=True)
            results = asyncio.run(measure(targets, processes, data, args.duration, args.warmup))
            print("concurrency sweep of stored-user Recommend ...", flush=True)
            sweep_runs = [
                ("sweep: gateway Recommend, stored users", "recommend-stored", "gateway", c)
                for c in (SWEEP[:3] if args.smoke else SWEEP)
            ]
            sweep = asyncio.run(
                measure(targets, processes, data, args.duration, args.warmup, sweep_runs)
            )
        finally:
            if stack is not None:
                stack.stop()
            for process in (*echoes.values(), batched):
                process.terminate()
                process.wait(10)
        compared = (
            compare_versions(
                work, data, [model_dir, *compare_dirs], args.duration, args.warmup, args.rounds
            )
            if compare_dirs
            else []
        )
        main_label = version_label(model_dir)
        users = sorted(data.ratings["user_id"].unique())[: 2 if args.smoke else ARTICLE_USERS]
        article_ms = article_predict_ms(model_dir, data, [int(u) for u in users])

    rows = [
        [
            r["label"],
            r["concurrency"],
            round(r["rps"]),
            r["p50_ms"],
            r["p99_ms"],
            ratio(results, r, "echo"),
            ratio(results, r, FLOOR[r["workload"]]) if r["workload"] in FLOOR else None,
            ratio(results, r, COALESCED_FLOOR[r["workload"]])
            if r["workload"] in COALESCED_FLOOR
            else None,
            total_cpu_ms(r),
            r["generator_cpu_ms_per_request"],
            f"{r['ok']}/{r['count']}",
        ]
        for r in results
    ]
    stored_c1 = next(r for r in results if r["workload"] == "recommend-stored")
    grpc_c32, http_c32 = (
        next(r for r in results if r["target"] == target and r["concurrency"] == 32)
        for target in ("gateway", "gateway-http")
    )
    predict_c1 = next(r for r in results if r["workload"] == "predict")
    rows.append(
        [
            "article predict() (pandas pivot + model.predict)",
            1,
            None,
            article_ms,
            None,
            None,
            None,
            None,
            None,
            None,
            f"{len(users)} users",
        ]
    )
    header = [
        "run", "c", "RPS", "p50 ms", "p99 ms", "of echo", "of floor", "of coalesced floor",
        "CPU ms/req", "generator CPU ms/req", "OK",
    ]  # fmt: skip
    print(format_table(header, rows))
    print(
        "of echo / of floor: RPS against the echo server / the no-work chain of the same shape,"
        " at the same concurrency (of coalesced floor: the same chain coalescing its calls);"
        " CPU ms/req: the server processes' CPU time per request (a gateway run counts all"
        " three services and Redis); generator CPU ms/req: the load generator's own"
    )
    sweep_rows = [
        [r["concurrency"], round(r["rps"]), r["p50_ms"], r["p99_ms"], total_cpu_ms(r)]
        for r in sweep
    ]
    print(format_table(["c", "RPS", "p50 ms", "p99 ms", "CPU ms/req"], sweep_rows))
    plot_sweep(sweep, args.out.with_suffix(".sweep.png"))
    summary = comparison_summary(compared) if compared else []
    if compared:
        header = [
            "version", "round", "c", "RPS", "p50 ms", "p99 ms", "gateway", "feature", "model",
            "Redis", "CPU ms/req", "CPU of main", "RPS of main", "OK",
        ]  # fmt: skip
        print(format_table(header, comparison_rows(compared)))
        print(
            "stored-user Recommend per served version and round (gateway ... Redis: server CPU"
            f" ms per request; of main: over {main_label}'s run of the same round and"
            " concurrency)"
        )
        header = ["version", "c", "rounds", "CPU ms/req", "CPU of main", "range", "RPS of main"]
        print(
            format_table(
                header,
                [
                    [
                        r["version"],
                        r["concurrency"],
                        r["rounds"],
                        r["cpu_ms_per_request_median"],
                        r["cpu_of_main_median"],
                        f"{r['cpu_of_main_min']:.2f}-{r['cpu_of_main_max']:.2f}",
                        r["rps_of_main_median"],
                    ]
                    for r in summary
                ],
            )
        )
        print("medians over the rounds; range: of the per-round CPU ratio")
    http_cost = http_vs_grpc(grpc_c32, http_c32)
    if http_cost["rps_ratio"] is not None:
        print(
            f"stored Recommend c=32 over HTTP/JSON vs gRPC: {http_cost['rps_ratio']:.2f}x the RPS,"
            f" {http_cost['extra_cpu_ms_per_request']:+.3f} server CPU ms per request"
        )
    speedup = article_ms / stored_c1["p50_ms"] if article_ms and stored_c1["p50_ms"] else None
    model_speedup = (
        article_ms / predict_c1["p50_ms"] if article_ms and predict_c1["p50_ms"] else None
    )
    if article_ms is None:
        print("article predict(): not applicable to this model version (not the user kind)")
    elif speedup is not None and model_speedup is not None:
        print(
            f"gateway Recommend (stored user, c=1) vs article predict(): {speedup:.1f}x lower p50;"
            f" model Predict (c=1): {model_speedup:.1f}x"
        )
    report = {
        "benchmark": "serving",
        "smoke": args.smoke,
        "data": str(data_dir),
        "duration_s": args.duration,
        "warmup_s": args.warmup,
        "environment": environment(),
        "runs": results,
        "http_vs_grpc": http_cost,
        "sweep": sweep,
        "main_version": main_label,
        "compared": compared,
        "comparison": summary,
        "article_predict_ms": article_ms,
        "speedup_vs_article": speedup,
        "model_predict_speedup_vs_article": model_speedup,
    }
    write_json(args.out, report)
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
