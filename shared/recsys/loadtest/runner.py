"""Sends a workload's requests for a bounded time and records each one: the closed loop
(C workers, each sending when its previous request answered) or the open loop (Poisson
arrivals at a fixed rate, sent without waiting). One `grpc.aio` channel per server address,
shared by all requests."""

from __future__ import annotations

import asyncio
import contextlib
import random
import time
from dataclasses import dataclass, field

import grpc

from recsys.loadtest.channels import open_channel
from recsys.loadtest.report import LoadReport, Sample, summarize
from recsys.loadtest.settings import LoadSettings, Targets
from recsys.loadtest.workloads import Call, Method, Workload
from recsys.progress import bar

NS_PER_S = 1_000_000_000


@dataclass
class _Run:
    """The state one run shares between its senders: calls bound to channels, the
    recording window (monotonic ns) and what has been recorded."""

    workload: Workload
    timeout_s: float
    record_from_ns: int
    end_ns: int
    callables: dict[str, grpc.aio.UnaryUnaryMultiCallable]
    samples: list[Sample] = field(default_factory=list)
    dropped: int = 0

    async def send(self, call: Call) -> None:
        """Send one request and record it if it started after the warm-up."""
        send = self.callables[call.method.path]
        details = None
        started = time.monotonic_ns()
        try:
            await send(call.request, timeout=self.timeout_s)
            status = "OK"
        except grpc.RpcError as exc:
            status, details = exc.code().name, exc.details()
        finished = time.monotonic_ns()
        if started >= self.record_from_ns:
            self.samples.append(Sample(call.rpc, finished - started, status, details, started))


async def run_load(
    settings: LoadSettings, targets: Targets, workload: Workload, *, progress: bool = False
) -> LoadReport:
    """Run `workload` against `targets` for `settings.warmup_s + settings.duration_s` and
    report what was recorded after the warm-up. RPC errors are recorded, never raised;
    the run ends by itself (every call has the deadline `settings.deadline_ms`).

    Usable from any asyncio program, e.g. `asyncio.run(run_load(settings, targets, w))`.
    Raises InvalidArgument when the workload needs a target that `targets` lacks.
    `progress` shows the seconds run and the requests answered on stderr (recsys.progress)."""
    addresses = {method.role: targets.address(method.role) for method in workload.methods}
    channels = {address: open_channel(address) for address in set(addresses.values())}
    try:
        callables = {
            method.path: _bind(channels[addresses[method.role]], method)
            for method in workload.methods
        }
        start_ns = time.monotonic_ns()
        record_from_ns = start_ns + round(settings.warmup_s * NS_PER_S)
        run = _Run(
            workload=workload,
            timeout_s=settings.deadline_ms / 1000,
            record_from_ns=record_from_ns,
            end_ns=record_from_ns + round(settings.duration_s * NS_PER_S),
            callables=callables,
        )
        shown = asyncio.get_running_loop().create_task(_show_progress(run, start_ns, progress))
        try:
            if settings.open_loop:
                await _open_loop(run, settings.rate, settings.in_flight_limit, settings.seed)
            else:
                await _closed_loop(run, settings.concurrency)
        finally:
            shown.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await shown
        elapsed_s = (time.monotonic_ns() - record_from_ns) / NS_PER_S
    finally:
        await asyncio.gather(*(channel.close() for channel in channels.values()))
    return summarize(
        run.samples,
        elapsed_s=elapsed_s,
        dropped=run.dropped,
        workload=workload.name,
        settings={
            "rpc": workload.name if len(workload.parts) == 1 else None,
            "mix": dict(workload.parts) if len(workload.parts) > 1 else None,
            **settings.to_dict(),
        },
        targets=addresses,
    )


async def _show_progress(run: _Run, start_ns: int, enabled: bool) -> None:
    """Seconds of the run (warm-up included) and requests answered, once a second."""
    total_s = (run.end_ns - start_ns) / NS_PER_S
    with bar(round(total_s, 1), "loadtest", unit="s", enabled=enabled) as shown:
        try:
            while True:
                await asyncio.sleep(1.0)
                elapsed = min((time.monotonic_ns() - start_ns) / NS_PER_S, total_s)
                shown.set_postfix(requests=len(run.samples), refresh=False)
                shown.update(round(elapsed - shown.n, 1))
        finally:  # the run is over (cancelled): show it complete
            shown.set_postfix(requests=len(run.samples), refresh=False)
            shown.update(round(shown.total - shown.n, 1))


def _bind(channel: grpc.aio.Channel, method: Method) -> grpc.aio.UnaryUnaryMultiCallable:
    return channel.unary_unary(
        method.path,
        request_serializer=method.request_serializer,
        response_deserializer=method.response_deserializer,
    )


async def _closed_loop(run: _Run, concurrency: int) -> None:
    """`concurrency` workers, each sending its next request when the previous answered,
    until the end of the run."""

    async def worker() -> None:
        while time.monotonic_ns() < run.end_ns:
            await run.send(run.workload())

    await asyncio.gather(*(worker() for _ in range(concurrency)))


async def _open_loop(run: _Run, rate: float, in_flight_limit: int, seed: int) -> None:
    """Requests arrive at `rate` per second with exponential inter-arrival times and are sent
    without waiting for earlier ones; an arrival finding `in_flight_limit` requests
    outstanding is dropped (counted after the warm-up). Waits for the last answers."""
    arrivals = random.Random(seed + 1)  # apart from the workload's RNG
    in_flight: set[asyncio.Task] = set()
    due_ns = time.monotonic_ns()
    while True:
        due_ns += round(arrivals.expovariate(rate) * NS_PER_S)
        if due_ns >= run.end_ns:
            break
        delay_s = (due_ns - time.monotonic_ns()) / NS_PER_S
        # behind schedule: still yield, so that answers are processed
        await asyncio.sleep(max(delay_s, 0.0))
        if len(in_flight) >= in_flight_limit:
            if due_ns >= run.record_from_ns:
                run.dropped += 1
            continue
        task = asyncio.create_task(run.send(run.workload()))
        in_flight.add(task)
        task.add_done_callback(in_flight.discard)
    if in_flight:
        await asyncio.gather(*in_flight)
