"""The trivial echo server that load-test figures are measured against (DESIGN §7): a
`grpc.aio` server with nothing but `grpc.health.v1.Health`, always SERVING.

With upstreams it is the *topology floor* instead: each `Check` first calls `Check` on every
upstream in turn through a `grpc.aio` channel, as the gateway calls the feature service and
then the model service for a stored user's `Recommend`, and does nothing else. What the
real stack reaches can then be read against what three chained Python gRPC processes reach
with no work at all.

    python -m recsys.loadtest.echo [--port 50060]                      # until SIGTERM
    python -m recsys.loadtest.echo --upstream HOST:PORT --upstream HOST:PORT
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

from recsys.logs import configure_logging

log = logging.getLogger(__name__)

UPSTREAM_TIMEOUT_S = 1.0


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


class EchoServer:
    """A started echo server: its `port`, and `stop(grace)`, which also closes the channels
    to its upstreams."""

    def __init__(self, server: grpc.aio.Server, port: int, servicer):
        self.server, self.port, self._servicer = server, port, servicer

    async def stop(self, grace: float | None) -> None:
        await self.server.stop(grace)
        if isinstance(self._servicer, ChainedHealth):
            await self._servicer.close()


async def start_echo_server(
    port: int = 0, host: str = "127.0.0.1", upstreams: Sequence[str] = ()
) -> EchoServer:
    """Start the echo server on host:port (0: any free port), chained to `upstreams` when
    given."""
    server = grpc.aio.server()
    servicer = ChainedHealth(upstreams) if upstreams else HealthServicer()  # "" is SERVING
    health_pb2_grpc.add_HealthServicer_to_server(servicer, server)
    bound = server.add_insecure_port(f"{host}:{port}")
    await server.start()
    return EchoServer(server, bound, servicer)


async def _serve(port: int, host: str, upstreams: Sequence[str]) -> None:
    echo = await start_echo_server(port, host, upstreams)
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
    args = parser.parse_args(argv)
    configure_logging(json_lines=True)
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(_serve(args.port, args.host, args.upstream))


if __name__ == "__main__":
    main()
