"""The trivial echo server that load-test figures are measured against (DESIGN §7): a
`grpc.aio` server with nothing but `grpc.health.v1.Health`, always SERVING.

    python -m recsys.loadtest.echo [--port 50060]    # until Ctrl-C or SIGTERM
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import signal

import grpc
from grpc_health.v1 import health_pb2_grpc
from grpc_health.v1._async import HealthServicer

from recsys.logs import configure_logging

log = logging.getLogger(__name__)


async def start_echo_server(port: int = 0, host: str = "127.0.0.1") -> tuple[grpc.aio.Server, int]:
    """Start the echo server on host:port (0: any free port); returns it and its port.
    Stop it with `await server.stop(grace)`."""
    server = grpc.aio.server()
    health_pb2_grpc.add_HealthServicer_to_server(HealthServicer(), server)  # "" is SERVING
    bound = server.add_insecure_port(f"{host}:{port}")
    await server.start()
    return server, bound


async def _serve(port: int, host: str) -> None:
    server, bound = await start_echo_server(port, host)
    log.info("echo server listening", extra={"address": f"{host}:{bound}"})
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    await stop.wait()
    await server.stop(1.0)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="the load test's echo server (health only)")
    parser.add_argument("--port", type=int, default=0, help="0: any free port (logged)")
    parser.add_argument("--host", default="127.0.0.1")
    args = parser.parse_args(argv)
    configure_logging(json_lines=True)
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(_serve(args.port, args.host))


if __name__ == "__main__":
    main()
