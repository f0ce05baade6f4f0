"""Benchmark (issue 17): the system at MovieLens 25M's shape on this machine: training, the
feature load, the model service's start and stored-user serving, each stage in processes of
its own (wall time and peak RSS are that stage's), against the targets, with an ML-1M model
served in the same run as the serving baseline.

Stages (`--stages`, default all, always in this order):
  data   the ratings: `--data DIR`, or the ML-25M shape synthesized into `--synth-dir`
         (reused when a complete set is there); read once in a child (counts, the user ids
         of the load runs); any later stage runs it
  train  `recsys train` (user preset) in a child: wall time, peak RSS, epochs, seconds
         per epoch, test metrics
  load   `recsys load-features` in a child into a fresh local Redis (no persistence):
         wall time, the loader's peak RSS, Redis INFO used_memory after the load, per
         million ratings and per user
  start  the model service's entry point alone: seconds from start to SERVING, RSS
  serve  the real stack (`LocalStack`: feature, model, gateway processes) on that Redis;
         the stored-user `Recommend` workload of bench/serving.py (random user ids of the
         data, k = 10, seed 1) through the gateway at c = 1 and 32: RPS, p50, p99 and each
         process's CPU time per request (psutil), the same for the ML-1M model on its own
         Redis in the same run, and the ratios against it
  item   the item kind (`--preset item`) on the same set: train, load its features (into
         the same Redis as a second version when `load` ran), serve at c = 1 and 32; a
         failure or a timeout is a row of the table, never the end of the run

    python bench/scale.py --data /work/data-25m [--max-epochs 2] [--stages train load]
    python bench/scale.py --smoke      # a few minutes, a small set of the same shape (CI)

Prints a stage table, a serving table and the targets (met / not met), and writes JSON
(machine, commit, settings, every figure, the load average around each stage).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import resource
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import psutil

REPO = Path(__file__).resolve().parents[1]
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from recsys.launcher import SMOKE_MODEL, LocalStack, wait_serving  # noqa: E402
from recsys.loadtest import LoadSettings, Targets, Workload, run_load  # noqa: E402
from recsys.loadtest.population import Population  # noqa: E402
from recsys.loadtest.process_cpu import cpu_ms_per_request, cpu_seconds  # noqa: E402
from recsys.output import format_table, write_json  # noqa: E402
from recsys.pipeline import environment  # noqa: E402
from recsys.redis_client import sync_client  # noqa: E402
from recsys.redis_server import LocalRedis, free_port  # noqa: E402

STAGES = ("data", "train", "load", "start", "serve", "item")
CONCURRENCY = (1, 32)
GIB, MIB, KIB = 2**30, 2**20, 2**10
# issue 17's targets at the ML-25M shape
TARGETS = {
    "train_wall_s": 30 * 60,
    "train_peak_rss": 8 * GIB,
    "load_wall_s": 5 * 60,
    "loader_peak_rss": 2 * GIB,
    "model_start_s": 60,
    "cpu_ratio": 2.0,  # stored Recommend c = 32, server CPU per request against ML-1M's
    "p99_ratio": 2.0,
}
SMOKE_SHAPE = ["--users", "1000", "--movies", "1500"]  # ~154,000 ratings, ML-25M's per user
TARGET_CONCURRENCY = 32
# what the data stage's child prints: counts and the user ids of the load runs
DESCRIBE = """
import json, sys
import numpy as np
from recsys.data.movielens import load_movielens
data = load_movielens(sys.argv[1])
users = np.unique(data.ratings["user_id"].to_numpy())
np.save(sys.argv[2] + ".users.npy", users)
summary = {
    "name": data.name,
    "ratings": len(data.ratings),
    "users": len(users),
    "rated_items": int(data.ratings["item_id"].nunique()),
    "catalog_items": len(data.items),
}
open(sys.argv[2], "w").write(json.dumps(summary))
"""
EPOCH_LINE = re.compile(r"epoch \d+/\d+ .*\((\d+(?:\.\d+)?)s\)")


# --- children: each stage's own wall time and peak RSS --------------------------------------


@dataclass
class ChildRun:
    """One child process run to its end, or killed at its timeout. `status` is "ok",
    "exit N", "killed by SIGNAL" or "timeout after S s"; `peak_rss` (bytes) is the child's
    own maximum resident set (its rusage from wait4, descendants it waited for included)."""

    command: list[str]
    status: str
    wall_s: float
    peak_rss: int
    log: Path
    load_before: float
    load_after: float
    least_available: int = 0  # bytes of memory the machine had available, at the least

    @property
    def ok(self) -> bool:
        return self.status == "ok"

    def message(self) -> str:
        """The status, with the last line of the child's output when it failed."""
        if self.ok:
            return self.status
        return f"{self.status}: {last_line(self.log)}"

    def to_dict(self) -> dict:
        return {
            "command": " ".join(self.command),
            "status": self.status,
            "message": self.message(),
            "wall_s": self.wall_s,
            "peak_rss_bytes": self.peak_rss,
            "log": str(self.log),
            "load_average_1m": [self.load_before, self.load_after],
            "least_available_memory_bytes": self.least_available,
        }


def last_line(path: Path) -> str:
    """The last non-empty line of a log (progress bars' carriage returns split lines too)."""
    try:
        text = path.read_text(errors="replace")
    except OSError:
        return ""
    lines = [line.strip() for line in re.split(r"[\r\n]+", text) if line.strip()]
    return lines[-1][:300] if lines else ""


def run_child(command: list[str], log: Path, timeout_s: float, env: dict | None = None) -> ChildRun:
    """Run `command` in a session of its own with its output in `log`; kill its process
    group at `timeout_s`. Never raises for the child's failure: the status says it."""
    log.parent.mkdir(parents=True, exist_ok=True)
    load_before = os.getloadavg()[0]
    with log.open("wb") as out:
        started = time.perf_counter()
        # a forked child starts with this process's pages and its peak RSS (hiwater) too
        inherited = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * KIB
        child = subprocess.Popen(
            command, stdout=out, stderr=subprocess.STDOUT, env=env, start_new_session=True
        )
        try:
            code, usage, timed_out, least_available, sampled = wait_child(child.pid, timeout_s)
        except BaseException:  # the bench itself is interrupted: take the child with it
            os.killpg(child.pid, signal.SIGKILL)
            os.waitpid(child.pid, 0)
            raise
        finally:
            child.returncode = -1  # reaped by wait4 above, not by Popen
        wall_s = time.perf_counter() - started
    if timed_out:
        status = f"timeout after {timeout_s:g} s"
    elif code < 0:
        status = f"killed by {signal.Signals(-code).name}"
    else:
        status = "ok" if code == 0 else f"exit {code}"
    return ChildRun(
        command=command,
        status=status,
        wall_s=wall_s,
        peak_rss=child_peak_rss(usage.ru_maxrss * KIB, inherited, sampled),
        log=log,
        load_before=load_before,
        load_after=os.getloadavg()[0],
        least_available=least_available,
    )


def exit_on_sigterm() -> None:
    """SIGTERM ends the bench as Ctrl-C does, through its `finally` blocks: the running
    child's process group is killed and the Redis servers stop, so none outlives it."""
    signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(128 + signum))


def wait_child(pid: int, timeout_s: float, poll_s: float = 0.2):
    """(exit code, rusage, timed out, least memory the machine had available meanwhile) of
    the child `pid`, SIGKILLing its process group (`start_new_session`) once `timeout_s` has
    passed. The available memory tells a child killed under memory pressure from one
    stopped by someone else."""
    started = time.monotonic()
    deadline = started + timeout_s
    least_available = psutil.virtual_memory().available
    peak = 0
    while True:
        peak = max(peak, high_water_rss(pid))
        done, status, usage = os.wait4(pid, os.WNOHANG)
        if done:
            return os.waitstatus_to_exitcode(status), usage, False, least_available, peak
        if time.monotonic() > deadline:
            os.killpg(pid, signal.SIGKILL)
            _, status, usage = os.wait4(pid, 0)
            return os.waitstatus_to_exitcode(status), usage, True, least_available, peak
        # often at first (a short child's peak is its last moments), then every poll_s
        time.sleep(min(poll_s, 0.005 + (time.monotonic() - started) / 20))
        least_available = min(least_available, psutil.virtual_memory().available)


def child_peak_rss(maxrss: int, inherited: int, sampled: int) -> int:
    """A child's own peak RSS, bytes. wait4's ru_maxrss is exact once the child outgrew the
    copy of this process it was forked as (`inherited`); below that it is only that copy, so
    the VmHWM sampled while it ran (every 0.2 s, after its exec) is the figure."""
    return max(maxrss, sampled) if maxrss > inherited else sampled or maxrss


def high_water_rss(pid: int) -> int:
    """The largest VmHWM (peak RSS since exec, bytes) of `pid` and its descendants now; 0 when
    it is gone. Unlike wait4's ru_maxrss it does not count the RSS a forked child inherits
    from this process before its exec."""
    try:
        processes = [psutil.Process(pid), *psutil.Process(pid).children(recursive=True)]
    except psutil.NoSuchProcess:
        return 0
    peak = 0
    for process in processes:
        try:
            status = Path(f"/proc/{process.pid}/status").read_text()
        except OSError:
            continue
        found = re.search(r"^VmHWM:\s+(\d+) kB", status, re.M)
        if found:
            peak = max(peak, int(found.group(1)) * KIB)
    return peak


def recsys_command(*args: str) -> list[str]:
    return [sys.executable, "-m", "recsys.cli", *args]


# --- arithmetic ----------------------------------------------------------------------------


def epoch_seconds(log: Path) -> list[float]:
    """The seconds of each epoch the training logged ("epoch 3/60 loss ... (41.2s)")."""
    try:
        return [float(m) for m in EPOCH_LINE.findall(log.read_text(errors="replace"))]
    except OSError:
        return []


def seconds_per_epoch(logged: list[float], train_seconds: float | None, epochs: int | None):
    """The median logged epoch (the first one traces the graph: the median is the steady
    cost), else the training seconds over the epochs; None without either."""
    if logged:
        return float(np.median(logged))
    if train_seconds is not None and epochs:
        return train_seconds / epochs
    return None


def redis_per_unit(used_before: int, used_after: int, ratings: int, users: int) -> dict:
    """What a load added to Redis (used_memory after minus before, bytes) per million
    ratings and per user: the same memory divided two ways, not two separate costs."""
    added = used_after - used_before
    return {
        "added_bytes": added,
        "bytes_per_million_ratings": added / (ratings / 1e6) if ratings else None,
        "bytes_per_user": added / users if users else None,
        "bytes_per_rating": added / ratings if ratings else None,
    }


def total_cpu_ms(per_process: dict[str, float | None]) -> float | None:
    values = list(per_process.values())
    return None if not values or None in values else sum(values)


def ratio(value: float | None, base: float | None) -> float | None:
    return value / base if value is not None and base else None


def verdict(measured: float | None, limit: float) -> str:
    if measured is None:
        return "not measured"
    return "met" if measured <= limit else "NOT MET"


def find_run(runs: list[dict], concurrency: int) -> dict | None:
    return next((r for r in runs if r["concurrency"] == concurrency), None)


def vm_hwm(pid: int) -> int | None:
    """A live process's peak resident set (VmHWM of /proc/PID/status), bytes."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * KIB
    except OSError:
        return None
    return None


# --- Redis ---------------------------------------------------------------------------------


def redis_memory(url: str) -> dict[str, int]:
    with sync_client(url) as client:
        info = client.info("memory")
        return {
            "used_memory": int(info["used_memory"]),
            "used_memory_dataset": int(info.get("used_memory_dataset", 0)),
            "used_memory_rss": int(info["used_memory_rss"]),
            "used_memory_peak": int(info["used_memory_peak"]),
            "keys": int(client.dbsize()),
        }


def load_into(
    redis: LocalRedis, data: DataSet, model_dir: Path, version: str | None, log: Path, timeout
) -> dict:
    """`recsys load-features` of `version` (default: the newest) in a child into `redis`:
    the child's figures, Redis's memory before and after, what the load added per unit."""
    before = redis_memory(redis.url)
    command = recsys_command(
        "load-features", "--data", str(data.path), "--model-dir", str(model_dir)
    ) + ["--redis-url", redis.url, *(["--version", version] if version else [])]
    run = run_child(command, log, timeout)
    after = redis_memory(redis.url)
    added = redis_per_unit(
        before["used_memory"], after["used_memory"], data.summary["ratings"], data.summary["users"]
    )
    return {**run.to_dict(), "redis_before": before, "redis_after": after, "redis": added}


# --- stages --------------------------------------------------------------------------------


@dataclass
class DataSet:
    path: Path
    summary: dict
    user_ids: list[int]


def describe(data_dir: Path, work: Path, label: str, timeout: float) -> tuple[dict, DataSet | None]:
    """Read a data set once in a child: its counts and user ids, and what reading cost."""
    out = work / f"describe-{label}.json"
    run = run_child([sys.executable, "-c", DESCRIBE, str(data_dir), str(out)], work / "logs" /
                    f"describe-{label}.log", timeout)  # fmt: skip
    if not run.ok:
        return run.to_dict(), None
    summary = json.loads(out.read_text())
    users = np.load(str(out) + ".users.npy").tolist()
    return {**run.to_dict(), **summary}, DataSet(data_dir, summary, users)


def stage_data(args, work: Path) -> tuple[dict, DataSet | None]:
    figures: dict = {}
    if args.data is not None:
        data_dir = args.data
        figures["source"] = "given"
    else:
        data_dir = args.synth_dir or work / "data-25m-shape"
        marker = data_dir / ".scale-bench-complete"
        shape = SMOKE_SHAPE if args.smoke else []
        wanted = " ".join(["ml-25m", *shape, "seed 0"])
        if marker.is_file() and marker.read_text() == wanted:
            figures["source"] = f"reused synthesized set ({wanted})"
        else:
            command = recsys_command(
                "synthesize", "--shape", "ml-25m", "--out", str(data_dir), "--seed", "0", *shape
            )
            run = run_child(command, work / "logs" / "synthesize.log", args.timeout)
            figures["synthesize"] = run.to_dict()
            figures["source"] = f"synthesized ({wanted})"
            if not run.ok:
                return {**figures, "status": run.message()}, None
            marker.write_text(wanted)
    described, data = describe(data_dir, work, "scale", args.timeout)
    status = "ok" if data is not None else described["message"]
    return {**figures, "path": str(data_dir), "read": described, "status": status}, data


def train(
    data_dir: Path, preset: str, settings: list[str], work: Path, label: str, timeout: float
) -> dict:
    """`recsys train --preset PRESET` in a child into a model directory of its own."""
    model_dir = work / "models" / label
    out = work / f"train-{label}.json"
    command = recsys_command(
        "train", "--data", str(data_dir), "--no-download", "--preset", preset,
        "--model-dir", str(model_dir), "--no-report", "--json", str(out),
    )  # fmt: skip
    for setting in settings:
        command += ["--set", setting]
    run = run_child(command, work / "logs" / f"train-{label}.log", timeout)
    result = {**run.to_dict(), "preset": preset, "settings": settings, "status": run.message()}
    if not run.ok:
        return result
    report = json.loads(out.read_text())
    metadata = json.loads((model_dir / report["version"] / "metadata.json").read_text())
    training = metadata["training"]
    logged = epoch_seconds(run.log)
    return {
        **result,
        "model_dir": str(model_dir),
        "version": report["version"],
        "train_seconds": training["seconds"],
        "epochs": training["epochs"],
        "best_epoch": training["best_epoch"],
        "epoch_seconds_logged": logged,
        "seconds_per_epoch": seconds_per_epoch(logged, training["seconds"], training["epochs"]),
        "ranking_neighbors": metadata.get("ranking", {}).get("neighbors"),
        "ranking_row_limit": metadata.get("ranking", {}).get("row_limit"),
        "scores": {s["name"]: s for s in report["scores"]},
    }


def train_settings(args, max_epochs: int | None = None) -> list[str]:
    """--set arguments of a training child: the smoke model, and `max_epochs` (default:
    --max-epochs) when given."""
    settings = [f"{k}={v}" for k, v in SMOKE_MODEL.items()] if args.smoke else []
    max_epochs = args.max_epochs if max_epochs is None else max_epochs
    if max_epochs is not None:
        settings = [s for s in settings if not s.startswith("max_epochs=")]
        settings.append(f"max_epochs={max_epochs}")
    return settings


def start_model_service(model_dir: Path, log: Path, timeout: float) -> dict:
    """The model service's entry point alone: seconds from the process's start to SERVING,
    its RSS and peak RSS then, and the CPU seconds the start took."""
    port = free_port()
    env = {
        **os.environ,
        "MODEL_DIR": str(model_dir),
        "MODEL_PORT": str(port),
        "BIND_HOST": "127.0.0.1",
        "LOG_LEVEL": "WARNING",
    }
    load_before = os.getloadavg()[0]
    with log.open("wb") as out:
        started = time.perf_counter()
        process = subprocess.Popen(
            [sys.executable, "-m", "services.model.server"],
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
        try:
            wait_serving(f"127.0.0.1:{port}", timeout, process)
            seconds = time.perf_counter() - started
            me = psutil.Process(process.pid)
            figures = {
                "status": "ok",
                "seconds_to_serving": seconds,
                "rss_bytes": me.memory_info().rss,
                "peak_rss_bytes": vm_hwm(process.pid),
                "cpu_seconds": sum(me.cpu_times()[:2]),
            }
        except (RuntimeError, TimeoutError) as exc:
            figures = {"status": f"{exc}: {last_line(log)}"}
        finally:
            process.terminate()
            try:
                process.wait(15)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
    return {**figures, "load_average_1m": [load_before, os.getloadavg()[0]], "log": str(log)}


def workload(user_ids: list[int]) -> Workload:
    """bench/serving.py's stored-user `Recommend` row: a random user id of the data set per
    request, k = 10, seed 1 (the same requests build_workload makes from the data, without
    holding the data's ratings in this process)."""
    return Workload([("recommend-stored", 1.0)], Population(user_ids=user_ids), seed=1)


async def load_runs(
    targets: Targets,
    processes: dict[str, psutil.Process],
    user_ids: list[int],
    concurrencies,
    duration: float,
    warmup: float,
) -> list[dict]:
    """One closed-loop run per concurrency after a warm-up run of its own (so that the CPU
    times cover measured calls only), as bench/serving.py measures."""
    results = []
    generator = psutil.Process()
    for concurrency in concurrencies:
        if warmup > 0:
            settings = LoadSettings(concurrency=concurrency, duration_s=warmup, warmup_s=0)
            await run_load(settings, targets, workload(user_ids))
        settings = LoadSettings(concurrency=concurrency, duration_s=duration, warmup_s=0)
        load_before = os.getloadavg()[0]
        before, generator_before = cpu_seconds(processes), sum(generator.cpu_times()[:2])
        report = await run_load(settings, targets, workload(user_ids))
        after, generator_after = cpu_seconds(processes), sum(generator.cpu_times()[:2])
        per_process = cpu_ms_per_request(before, after, report.count)
        results.append(
            {
                "concurrency": concurrency,
                "rps": report.rps,
                "count": report.count,
                "ok": report.ok,
                "status_codes": report.status_codes,
                "p50_ms": report.latency.p50 if report.latency else None,
                "p99_ms": report.latency.p99 if report.latency else None,
                "cpu_ms_per_request": per_process,
                "server_cpu_ms_per_request": total_cpu_ms(per_process),
                "generator_cpu_ms_per_request": 1000
                * (generator_after - generator_before)
                / report.count
                if report.count
                else None,
                "load_average_1m": [load_before, os.getloadavg()[0]],
            }
        )
        print(
            f"    c={concurrency}: {report.rps:.0f} RPS, {report.ok}/{report.count} OK", flush=True
        )
    return results


def serve(model_dir: Path, redis: LocalRedis, data: DataSet, args) -> dict:
    """The stack on `redis` (features loaded) under the load runs: start time, the runs,
    each process's RSS after them."""
    stack = LocalStack(model_dir=model_dir, redis_url=redis.url, log_level="WARNING")
    load_before = os.getloadavg()[0]
    started = time.perf_counter()
    try:
        stack.start_services(timeout=args.timeout)
        start_s = time.perf_counter() - started
        processes = {name: psutil.Process(p.pid) for name, p in stack.processes.items()}
        processes["redis"] = psutil.Process(redis.process.pid)
        targets = Targets(gateway=stack.address("gateway"), feature=stack.address("feature"))
        runs = asyncio.run(
            load_runs(
                targets, processes, data.user_ids, args.concurrency, args.duration, args.warmup
            )
        )
        rss = {name: p.memory_info().rss for name, p in processes.items()}
        return {
            "status": "ok",
            "stack_start_s": start_s,
            "runs": runs,
            "rss_bytes": rss,
            "load_average_1m": [load_before, os.getloadavg()[0]],
        }
    except Exception as exc:  # a failed start or run is a row of the table
        return {"status": f"{type(exc).__name__}: {exc}", "runs": []}
    finally:
        stack.stop()


def ml1m_baseline(args, work: Path) -> tuple[dict, DataSet | None, Path | None]:
    """The ML-1M data set (smoke: the synthetic groups set) and its user-preset model:
    `--ml1m-model-dir`, or trained here."""
    figures: dict = {}
    data_dir = args.ml1m_data
    if args.smoke:
        from recsys.data.synthetic import write_synthetic_movielens

        data_dir = write_synthetic_movielens(work / "ml1m-smoke")
        figures["data"] = "synthetic groups set (smoke)"
    described, data = describe(data_dir, work, "ml1m", args.timeout)
    figures.update(path=str(data_dir), read=described)
    if data is None:
        return {**figures, "status": described["message"]}, None, None
    if args.ml1m_model_dir is not None:
        return (
            {**figures, "status": "ok", "model_dir": str(args.ml1m_model_dir)},
            data,
            (args.ml1m_model_dir),
        )
    settings = [f"{k}={v}" for k, v in SMOKE_MODEL.items()] if args.smoke else []
    trained = train(data_dir, "user", settings, work, "ml1m", args.timeout)
    figures["train"] = trained
    if "version" not in trained:
        return {**figures, "status": f"training failed: {trained['status']}"}, None, None
    return (
        {**figures, "status": "ok", "model_dir": trained["model_dir"]},
        data,
        Path(trained["model_dir"]),
    )


def with_ratios(served: dict, baseline: dict) -> None:
    """Each run's server CPU per request and p99 over the baseline's at its concurrency."""
    for run in served.get("runs", []):
        base = find_run(baseline.get("runs", []), run["concurrency"])
        run["cpu_ratio"] = ratio(
            run["server_cpu_ms_per_request"], base and base["server_cpu_ms_per_request"]
        )
        run["p99_ratio"] = ratio(run["p99_ms"], base and base["p99_ms"])


# --- the run -------------------------------------------------------------------------------


class Bench:
    """The stages' shared state: the data, the scale model, the scale set's Redis."""

    def __init__(self, args, work: Path):
        self.args, self.work = args, work
        self.logs = work / "logs"
        self.data: DataSet | None = None
        self.model_dir: Path | None = args.model_dir
        self.version: str | None = None
        self.redis: LocalRedis | None = None
        self.loaded = False  # the scale model's features are in self.redis
        self.baseline: tuple[dict, dict] | None = None  # serve_baseline's, once made
        self.results: dict[str, dict] = {}

    def scale_redis(self) -> LocalRedis:
        if self.redis is None:
            self.redis = LocalRedis(data_dir=self.work / "redis-scale").start()
        return self.redis

    def stop(self) -> None:
        if self.redis is not None:
            self.redis.stop()

    def run(self, stage: str) -> None:
        print(f"stage {stage} (load average {os.getloadavg()[0]:.1f}) ...", flush=True)
        load_before = os.getloadavg()[0]
        started = time.perf_counter()
        try:
            result = getattr(self, f"stage_{stage}")()
        except Exception as exc:  # whatever happens is a row, never the end of the bench
            result = {"status": f"{type(exc).__name__}: {exc}"}
        result["stage_wall_s"] = time.perf_counter() - started
        result["stage_load_average_1m"] = [load_before, os.getloadavg()[0]]
        self.results[stage] = result
        print(f"  {stage}: {result.get('status')}", flush=True)

    def stage_data(self) -> dict:
        result, self.data = stage_data(self.args, self.work)
        return result

    def needs_model(self) -> str | None:
        if self.data is None:
            return "skipped: no data"
        if self.model_dir is None:
            return "skipped: no model (run the train stage or give --model-dir)"
        return None

    def stage_train(self) -> dict:
        if self.data is None:
            return {"status": "skipped: no data"}
        result = train(
            self.data.path, "user", train_settings(self.args), self.work, "scale",
            self.args.timeout,
        )  # fmt: skip
        if "version" in result:
            self.model_dir, self.version = Path(result["model_dir"]), result["version"]
        return result

    def load_scale(self) -> dict:
        result = load_into(
            self.scale_redis(), self.data, self.model_dir, self.version,
            self.logs / "load-scale.log", self.args.timeout,
        )  # fmt: skip
        self.loaded = result["status"] == "ok"
        return result

    def stage_load(self) -> dict:
        if self.needs_model():
            return {"status": self.needs_model()}
        return self.load_scale()

    def stage_start(self) -> dict:
        if self.needs_model():
            return {"status": self.needs_model()}
        return start_model_service(self.model_dir, self.logs / "model-start.log", self.args.timeout)

    def stage_serve(self) -> dict:
        if self.needs_model():
            return {"status": self.needs_model()}
        result: dict = {}
        if not self.loaded:
            result["load"] = self.load_scale()
            if not self.loaded:
                return {**result, "status": f"load failed: {result['load']['status']}"}
        result["ml1m"], baseline = self.serve_baseline()
        print("  serving the scale model ...", flush=True)
        scale = serve(self.model_dir, self.redis, self.data, self.args)
        with_ratios(scale, baseline)
        status = scale["status"] if baseline["status"] == "ok" else f"baseline {baseline['status']}"
        return {**result, "status": status, "baseline": baseline, "scale": scale}

    def serve_baseline(self) -> tuple[dict, dict]:
        """(how the ML-1M baseline was made, its serving figures): ML-1M's default model
        served on a Redis of its own, once per bench run (the serve and item stages share
        it)."""
        if self.baseline is not None:
            return self.baseline
        baseline_info, ml1m, ml1m_model = ml1m_baseline(self.args, self.work)
        baseline: dict = {"status": baseline_info["status"], "runs": []}
        if ml1m is not None:
            with LocalRedis(data_dir=self.work / "redis-ml1m") as redis:
                loaded = load_into(
                    redis, ml1m, ml1m_model, None, self.logs / "load-ml1m.log", self.args.timeout
                )
                baseline_info["load"] = loaded
                if loaded["status"] == "ok":
                    print("  serving the ML-1M baseline ...", flush=True)
                    baseline = serve(ml1m_model, redis, ml1m, self.args)
                else:
                    baseline = {"status": f"load failed: {loaded['message']}", "runs": []}
        self.baseline = (baseline_info, baseline)
        return self.baseline

    def stage_item(self) -> dict:
        if self.data is None:
            return {"status": "skipped: no data"}
        if self.args.item_model_dir is not None:
            trained: dict = {"status": "given", "model_dir": str(self.args.item_model_dir)}
            model_dir = self.args.item_model_dir
        else:
            trained = train(
                self.data.path, "item", train_settings(self.args, self.args.item_max_epochs),
                self.work, "item", self.args.timeout,
            )  # fmt: skip
            if "version" not in trained:
                return {"status": f"training: {trained['status']}", "train": trained}
            model_dir = Path(trained["model_dir"])
        # a second version beside the default's when the load stage ran: what a version
        # switch adds to Redis (the ratings are shared)
        second = self.loaded
        loaded = load_into(
            self.scale_redis(), self.data, model_dir, None, self.logs / "load-item.log",
            self.args.timeout,
        )  # fmt: skip
        loaded["second_version"] = second
        if loaded["status"] != "ok":
            return {"status": f"load: {loaded['message']}", "train": trained, "load": loaded}
        baseline_info, baseline = self.serve_baseline()  # the serve stage's, or its own
        print("  serving the item kind ...", flush=True)
        served = serve(model_dir, self.redis, self.data, self.args)
        with_ratios(served, baseline)
        return {
            "status": served["status"],
            "train": trained,
            "load": loaded,
            "ml1m": baseline_info,
            "baseline": baseline,
            "serve": served,
        }


# --- output --------------------------------------------------------------------------------


def mib(value: int | None) -> float | None:
    return round(value / MIB) if value is not None else None


def rounded(value: float | None, digits: int = 1) -> float | None:
    return round(value, digits) if value is not None else None


def load_range(values) -> str:
    return f"{values[0]:.1f}–{values[1]:.1f}" if values else "-"


def stage_rows(results: dict[str, dict]) -> list[list]:
    """A row per stage (its status, wall time, load average around it), then one per child
    process or measured step in it: status, wall s, peak RSS MiB, load."""
    steps = {
        "data": lambda r: [("synthesize", r.get("synthesize")), ("read", r.get("read"))],
        "train": lambda r: [("recsys train, default preset", r if "command" in r else None)],
        "load": lambda r: [("recsys load-features", r if "command" in r else None)],
        "start": lambda r: [("to SERVING", r if "seconds_to_serving" in r else None)],
        "serve": lambda r: [
            ("recsys load-features", r.get("load")),
            ("ML-1M read", r.get("ml1m", {}).get("read")),
            ("ML-1M recsys train", r.get("ml1m", {}).get("train")),
            ("ML-1M recsys load-features", r.get("ml1m", {}).get("load")),
            ("ML-1M stack start", r.get("baseline")),
            ("scale stack start", r.get("scale")),
        ],
        "item": lambda r: [
            (
                "recsys train --preset item"
                + "".join(f" --set {x}" for x in r.get("train", {}).get("settings", [])),
                r.get("train"),
            ),
            ("recsys load-features", r.get("load")),
            *(
                []  # the serve stage made the baseline
                if "serve" in results
                else [
                    ("ML-1M read", r.get("ml1m", {}).get("read")),
                    ("ML-1M recsys train", r.get("ml1m", {}).get("train")),
                    ("ML-1M recsys load-features", r.get("ml1m", {}).get("load")),
                    ("ML-1M stack start", r.get("baseline")),
                ]
            ),
            ("stack start", r.get("serve")),
        ],
    }
    rows = []
    for stage, result in results.items():
        rows.append(
            [stage, short(result.get("status")), rounded(result.get("stage_wall_s")), None,
             load_range(result.get("stage_load_average_1m"))]
        )  # fmt: skip
        for name, figures in steps[stage](result):
            if not figures:
                continue
            wall = next(
                (
                    figures[k]
                    for k in ("wall_s", "seconds_to_serving", "stack_start_s")
                    if k in figures
                ),
                None,
            )
            rows.append(
                [f"  {name}", short(figures.get("message", figures.get("status"))), rounded(wall),
                 mib(figures.get("peak_rss_bytes")), load_range(figures.get("load_average_1m"))]
            )  # fmt: skip
    return rows


def short(text: object, width: int = 60) -> str:
    text = "-" if text is None else str(text)
    return text if len(text) <= width else text[: width - 1] + "…"


def serving_rows(results: dict[str, dict]) -> list[list]:
    rows = []
    serve, item = results.get("serve", {}), results.get("item", {})
    for label, served in (
        ("ML-1M default (baseline)", serve.get("baseline") or item.get("baseline")),
        ("scale default", serve.get("scale")),
        ("scale item kind", item.get("serve")),
    ):
        if not served:
            continue
        if not served.get("runs"):
            rows.append(
                [label, None, None, None, None, None, "-", None, None, short(served["status"])]
            )
        for run in served.get("runs", []):
            cpu = run["cpu_ms_per_request"]
            rows.append(
                [
                    label,
                    run["concurrency"],
                    round(run["rps"]),
                    rounded(run["p50_ms"]),
                    rounded(run["p99_ms"]),
                    rounded(run["server_cpu_ms_per_request"], 2),
                    " ".join(
                        "-" if cpu.get(name) is None else f"{cpu[name]:.2f}"
                        for name in ("gateway", "feature", "model", "redis")
                    ),
                    rounded(run.get("cpu_ratio"), 2),
                    rounded(run.get("p99_ratio"), 2),
                    f"{run['ok']}/{run['count']} load {load_range(run['load_average_1m'])}",
                ]
            )
    return rows


def redis_rows(results: dict[str, dict]) -> list[list]:
    """What each load added to Redis: the scale set's first version, ML-1M's, and the item
    kind's version loaded beside the default's (the ratings already there)."""
    serve, item = results.get("serve", {}), results.get("item", {})
    loads = [
        ("scale set, default version", results.get("load") or serve.get("load")),
        ("ML-1M, default version", serve.get("ml1m", {}).get("load")),
        (
            "scale set, item version"
            + (" (second version)" if (item.get("load") or {}).get("second_version") else ""),
            item.get("load"),
        ),
    ]
    rows = []
    for label, loaded in loads:
        if not loaded or loaded.get("status") != "ok":
            continue
        per_unit = loaded["redis"]
        rows.append(
            [
                label,
                mib(per_unit["added_bytes"]),
                rounded(per_unit["bytes_per_million_ratings"] / MIB),
                rounded(per_unit["bytes_per_user"] / KIB, 2),
                mib(loaded["redis_after"]["used_memory"]),
                mib(loaded["redis_after"]["used_memory_rss"]),
                mib(loaded["redis_after"]["used_memory_peak"]),
                loaded["redis_after"]["keys"],
            ]
        )
    return rows


def targets(results: dict[str, dict], args) -> list[dict]:
    """Each target of the issue beside what this run measured."""
    rows = []

    def add(name, measured, shown, limit, check=True, note=""):
        rows.append(
            {
                "target": name,
                "measured": measured,
                "shown": shown,
                "limit": limit,
                "verdict": verdict(measured, limit) if check else note,
            }
        )

    trained = results.get("train", {})
    wall = trained.get("wall_s") if trained.get("status") == "ok" else None
    epochs_note = f"not comparable (max_epochs={args.max_epochs})" if args.max_epochs else ""
    add(
        "train default: wall ≤ 30 min", wall,
        f"{wall / 60:.1f} min, {trained.get('epochs')} epochs" if wall else trained.get("status"),
        TARGETS["train_wall_s"], check=not epochs_note, note=epochs_note,
    )  # fmt: skip
    rss = trained.get("peak_rss_bytes")
    add(
        "train default: peak RSS ≤ 8 GiB", rss if wall else None,
        f"{rss / GIB:.2f} GiB" + ("" if wall else f" until {trained['status']}")
        if rss else trained.get("status"), TARGETS["train_peak_rss"],
    )  # fmt: skip
    load = results.get("load") or results.get("serve", {}).get("load") or {}
    ok = load.get("status") == "ok"
    add(
        "load-features: wall ≤ 5 min", load.get("wall_s") if ok else None,
        f"{load['wall_s']:.0f} s" if ok else load.get("status"), TARGETS["load_wall_s"],
    )  # fmt: skip
    add(
        "load-features: loader peak RSS ≤ 2 GiB", load.get("peak_rss_bytes") if ok else None,
        f"{load['peak_rss_bytes'] / GIB:.2f} GiB" if ok else load.get("status"),
        TARGETS["loader_peak_rss"],
    )  # fmt: skip
    redis = load.get("redis", {})
    add(
        "Redis memory reported", redis.get("added_bytes") if ok else None,
        f"{redis['added_bytes'] / MIB:.0f} MiB: {redis['bytes_per_million_ratings'] / MIB:.1f}"
        f" MiB per million ratings, {redis['bytes_per_user'] / KIB:.2f} KiB per user"
        if ok else load.get("status"),
        None, check=False, note="reported" if ok else "not measured",
    )  # fmt: skip
    start = results.get("start", {})
    seconds = start.get("seconds_to_serving")
    add(
        "model service start → SERVING ≤ 60 s", seconds,
        f"{seconds:.1f} s, RSS {start['rss_bytes'] / MIB:.0f} MiB" if seconds else
        start.get("status"), TARGETS["model_start_s"],
    )  # fmt: skip
    scale_run = find_run(results.get("serve", {}).get("scale", {}).get("runs", []), 32)
    for key, name in (("cpu_ratio", "server CPU per request"), ("p99_ratio", "p99")):
        value = scale_run.get(key) if scale_run else None
        add(
            f"stored Recommend c=32: {name} ≤ 2× ML-1M's", value,
            f"{value:.2f}×" if value is not None else results.get("serve", {}).get("status"),
            TARGETS[key],
        )  # fmt: skip
    item = results.get("item", {})
    item_run = find_run(item.get("serve", {}).get("runs", []), 32)
    add(
        "item kind: trains, serves, figures in the table", None,
        (
            f"trained in {item['train']['wall_s']:.0f} s"
            if "wall_s" in item.get("train", {})
            else "model given"
        )
        + f", c=32 {item_run['rps']:.0f} RPS, p99 {item_run['p99_ms']:.0f} ms"
        + "".join(
            f", {name} {item_run[key]:.2f}× ML-1M's"
            for key, name in (("cpu_ratio", "CPU"), ("p99_ratio", "p99"))
            if item_run.get(key) is not None
        )
        if item_run
        else item.get("status"),
        None, check=False, note="reported" if item_run else (item.get("status") or "not run"),
    )  # fmt: skip
    return rows


def print_report(results: dict[str, dict], args, checked: list[dict]) -> None:
    print(
        format_table(["step", "status", "wall s", "peak RSS MiB", "load 1m"], stage_rows(results))
    )
    serving = serving_rows(results)
    if serving:
        print()
        header = [
            "served model", "c", "RPS", "p50 ms", "p99 ms", "server CPU ms/req",
            "per process (gateway feature model redis)", "CPU × ML-1M", "p99 × ML-1M", "OK",
        ]  # fmt: skip
        print(format_table(header, serving))
    redis = redis_rows(results)
    if redis:
        print()
        header = [
            "Redis after load-features", "added MiB", "MiB / M ratings", "KiB / user",
            "used_memory MiB", "RSS MiB", "peak MiB", "keys",
        ]  # fmt: skip
        print(format_table(header, redis))
    trained = results.get("train", {})
    if trained.get("scores"):
        print()
        print(
            format_table(
                ["train default: test", "RMSE", "MAE", "Recall@10", "NDCG@10"],
                [
                    [name, s["rmse"], s["mae"], s["recall_at_10"], s["ndcg_at_10"]]
                    for name, s in trained["scores"].items()
                ],
            )
        )
        print(
            f"{trained['epochs']} epochs (best {trained['best_epoch']}), "
            f"{trained['seconds_per_epoch']:.1f} s per epoch, {trained['train_seconds']:.0f} s "
            f"training of {trained['wall_s']:.0f} s wall; relevance neighbours "
            f"{trained['ranking_neighbors']}, row limit {trained['ranking_row_limit']}"
            + (f"; --max-epochs {args.max_epochs}" if args.max_epochs else "")
        )
    print()
    print(
        format_table(
            ["target", "measured", "verdict"],
            [[t["target"], t["shown"], t["verdict"]] for t in checked],
        )
    )
    if args.smoke:
        print("smoke: a small set of the shape; its figures say nothing about the targets")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, help="default: synthesize the ML-25M shape")
    parser.add_argument("--synth-dir", type=Path, help="where the synthesized set is kept")
    parser.add_argument("--stages", nargs="+", choices=STAGES, default=list(STAGES))
    parser.add_argument("--model-dir", type=Path, help="a scale model instead of training one")
    parser.add_argument("--item-model-dir", type=Path, help="an item-kind model, ditto")
    parser.add_argument("--ml1m-data", type=Path, default=REPO.parent / "shared" / "data" / "ml-1m")
    parser.add_argument("--ml1m-model-dir", type=Path, help="default: train the default preset")
    parser.add_argument("--max-epochs", type=int, help="cap training (said in the table)")
    parser.add_argument("--item-max-epochs", type=int, help="cap the item kind's training only")
    parser.add_argument("--duration", type=float, default=10.0, help="seconds per load run")
    parser.add_argument("--warmup", type=float, default=2.0)
    parser.add_argument("--concurrency", type=int, nargs="+", default=list(CONCURRENCY))
    parser.add_argument("--timeout", type=float, default=3600.0, help="seconds per child")
    parser.add_argument("--work-dir", type=Path, help="models, Redis, logs (default: temporary)")
    parser.add_argument("--smoke", action="store_true", help="a few minutes, for CI")
    parser.add_argument("--out", type=Path, default=REPO / "bench" / "results" / "scale.json")
    args = parser.parse_args(argv)
    exit_on_sigterm()
    if args.smoke:
        args.duration, args.warmup, args.timeout = 1.0, 0.5, min(args.timeout, 600.0)
    if TARGET_CONCURRENCY not in args.concurrency:
        args.concurrency.append(TARGET_CONCURRENCY)
    stages = [s for s in STAGES if s in args.stages or s == "data"]

    with tempfile.TemporaryDirectory(prefix="recsys-scale-") as tmp:
        work = args.work_dir or Path(tmp)
        work.mkdir(parents=True, exist_ok=True)
        bench = Bench(args, work)
        try:
            for stage in stages:
                bench.run(stage)
        finally:
            bench.stop()
        results = bench.results

    checked = targets(results, args)
    print_report(results, args, checked)
    write_json(
        args.out,
        {
            "benchmark": "scale",
            "smoke": args.smoke,
            "environment": environment(),
            "settings": {
                "stages": stages,
                "data": str(args.data) if args.data else None,
                "max_epochs": args.max_epochs,
                "item_max_epochs": args.item_max_epochs,
                "train_settings": train_settings(args),
                "duration_s": args.duration,
                "warmup_s": args.warmup,
                "concurrency": args.concurrency,
                "timeout_s": args.timeout,
                "targets": TARGETS,
            },
            "stages": results,
            "targets": checked,
        },
    )
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
