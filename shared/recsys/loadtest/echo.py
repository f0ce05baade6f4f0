"""The trivial echo server that load-test figures are measured against: a
`grpc.aio` server with nothing but `grpc.health.v1.Health`, always SERVING.

With upstreams it is the *topology floor* instead: each `Check` first calls `Check` on every
upstream in turn through a `grpc.aio` channel, as the gateway calls the feature service and
then the model service for a stored user's `Recommend`, and does nothing else. What the
real stack reaches can then be read against what three chained Python gRPC processes reach
with no work at all.

With `--coalesce` the chain coalesces as the gateway does (recsys.serving.coalesce):
concurrent `Check`s' calls to an upstream go out as one call of a raw bytes method
(`/recsys.loadtest.v1.Echo/Batch`, which every echo server answers with the bytes it got),
carrying PAYLOAD_BYTES per request each way: the *coalesced floor*, what coalescing alone
is worth on this machine.

    python -m recsys.loadtest.echo [--port 50060]                      # until SIGTERM
    python -m recsys.loadtest.echo --upstream HOST:PORT --upstream HOST:PORT [--coalesce]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import signal
from collections.abc import Sequence

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_health.v1._async import HealthServicer

from recsys.errors import RecsysError, Unavailable
from recsys.logs import configure_logging
from recsys.serving.coalesce import Coalescer

log = logging.getLogger(__name__)

UPSTREAM_TIMEOUT_S = 1.0
BATCH_SERVICE = "recsys.loadtest.v1.Echo"
BATCH_METHOD = f"/{BATCH_SERVICE}/Batch"
PAYLOAD_BYTES = 640  # about what a stored user's packed features or top 10 weigh
MAX_BATCH = 64


async def _echo_bytes(request: bytes, context) -> bytes:
    return request


ECHO_BATCH = grpc.method_handlers_generic_handler(
    BATCH_SERVICE, {"Batch": grpc.unary_unary_rpc_method_handler(_echo_bytes)}
)


class ChainedHealth(health_pb2_grpc.HealthServicer):
    """Health whose `Check` answers SERVING after one `Check` on each upstream, in order;
    an upstream's failure is answered with its status code."""

    def __init__(self, upstreams: Sequence[str]):
        self.channels = [grpc.aio.insecure_channel(address) for address in upstreams]
        self.stubs = [health_pb2_grpc.HealthStub(channel) for channel in self.channels]

    async def Check(self, request, context):
        for stub in self.stubs:
            try:
                await stub.Check(health_pb2.HealthCheckRequest(), timeout=UPSTREAM_TIMEOUT_S)
            except grpc.aio.AioRpcError as error:
                await context.abort(error.code(), f"upstream: {error.details()}")
        return health_pb2.HealthCheckResponse(status=health_pb2.HealthCheckResponse.SERVING)

    async def close(self) -> None:
        for channel in self.channels:
            await channel.close()


class CoalescedHealth(health_pb2_grpc.HealthServicer):
    """Health whose `Check` sends PAYLOAD_BYTES to each upstream in turn, coalesced with
    concurrent `Check`s' into one raw `Batch` call per upstream, and answers SERVING."""

    def __init__(self, upstreams: Sequence[str]):
        self.channels = [grpc.aio.insecure_channel(address) for address in upstreams]
        self.coalescers = [
            Coalescer(f"echo-{n}", self._sender(channel), max_batch=MAX_BATCH, max_in_flight=1)
            for n, channel in enumerate(self.channels)
        ]
        self.payload = bytes(PAYLOAD_BYTES)

    @staticmethod
    def _sender(channel: grpc.aio.Channel):
        batch = channel.unary_unary(BATCH_METHOD)

        async def send(key, payloads, timeout_s, request_ids):
            try:
                reply = await batch(b"".join(payloads), timeout=timeout_s)
            except grpc.aio.AioRpcError as error:
                raise Unavailable(f"upstream: {error.details()}") from None
            size = PAYLOAD_BYTES
            return [reply[j * size : (j + 1) * size] for j in range(len(payloads))]

        return send

    async def Check(self, request, context):
        for coalescer in self.coalescers:
            try:
                await coalescer.submit("", self.payload, UPSTREAM_TIMEOUT_S)
            except RecsysError as error:
                await context.abort(grpc.StatusCode[error.status], str(error))
        return health_pb2.HealthCheckResponse(status=health_pb2.HealthCheckResponse.SERVING)

    async def close(self) -> None:
        for channel in self.channels:
            await channel.close()


class EchoServer:
    """A started echo server: its `port`, and `stop(grace)`, which also closes the channels
    to its upstreams."""

    def __init__(self, server: grpc.aio.Server, port: int, servicer):
        self.server, self.port, self._servicer = server, port, servicer

    async def stop(self, grace: float | None) -> None:
        await self.server.stop(grace)
        if isinstance(self._servicer, ChainedHealth | CoalescedHealth):
            await self._servicer.close()


async def start_echo_server(
    port: int = 0, host: str = "127.0.0.1", upstreams: Sequence[str] = (), coalesce=False
) -> EchoServer:
    """Start the echo server on host:port (0: any free port), chained to `upstreams` when
    given (coalescing its calls to them with `coalesce`)."""
    server = grpc.aio.server()
    if not upstreams:
        servicer = HealthServicer()  # "" is SERVING
    else:
        servicer = CoalescedHealth(upstreams) if coalesce else ChainedHealth(upstreams)
    health_pb2_grpc.add_HealthServicer_to_server(servicer, server)
    server.add_generic_rpc_handlers((ECHO_BATCH,))
    bound = server.add_insecure_port(f"{host}:{port}")
    await server.start()
    return EchoServer(server, bound, servicer)


async def _serve(port: int, host: str, upstreams: Sequence[str], coalesce: bool) -> None:
    echo = await start_echo_server(port, host, upstreams, coalesce)
    log.info(
        "echo server listening",
        extra={"address": f"{host}:{echo.port}", "upstreams": list(upstreams)},
    )
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    await stop.wait()
    await echo.stop(1.0)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="the load test's echo server (health only)")
    parser.add_argument("--port", type=int, default=0, help="0: any free port (logged)")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument(
        "--upstream",
        action="append",
        default=[],
        metavar="HOST:PORT",
        help="call this server's Health.Check before answering (repeatable, in order)",
    )
    parser.add_argument(
        "--coalesce",
        action="store_true",
        help="coalesce concurrent Checks' calls to each upstream into one batch call",
    )
    args = parser.parse_args(argv)
    configure_logging(json_lines=True)
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(_serve(args.port, args.host, args.upstream, args.coalesce))


if __name__ == "__main__":
    main()
