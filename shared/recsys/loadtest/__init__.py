"""The load generator (`recsys loadtest`): named workloads of gateway, model-service and
health requests, a closed- or open-loop asyncio runner, a ghz-style report; `echo` is the
trivial server measured as the ceiling.

    workload = await build_workload("recommend-stored", targets, data=data)
    report = await run_load(LoadSettings(concurrency=16, duration_s=5), targets, workload)
"""

from recsys.loadtest.report import LoadReport, Sample, summarize
from recsys.loadtest.runner import run_load
from recsys.loadtest.settings import LoadSettings, Targets
from recsys.loadtest.workloads import RPC_NAMES, Workload, build_workload, parse_mix

__all__ = [
    "RPC_NAMES",
    "LoadReport",
    "LoadSettings",
    "Sample",
    "Targets",
    "Workload",
    "build_workload",
    "parse_mix",
    "run_load",
    "summarize",
]
