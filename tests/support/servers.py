"""Running the real asyncio gRPC services inside synchronous tests: each service runs on an
event loop in a background thread, built by its production factory and bound to port 0;
tests call it through a real channel and the generated stubs."""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import Awaitable, Callable

import grpc

from recsys.launcher import wait_channel_serving
from recsys.serving.server import Service


class ServiceThread:
    """`with ServiceThread(factory) as running:` → running.port, running.service.
    `factory` is an async callable returning an unstarted Service."""

    def __init__(self, factory: Callable[[], Awaitable[Service]]):
        self.factory = factory
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.service: Service | None = None

    def run(self, coroutine, timeout: float = 60.0):
        """Run a coroutine on the service's loop and wait for its result."""
        return asyncio.run_coroutine_threadsafe(coroutine, self.loop).result(timeout)

    @property
    def port(self) -> int:
        return self.service.port

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def start(self) -> ServiceThread:
        self.thread.start()

        async def build():
            service = await self.factory()
            await service.start()
            return service

        self.service = self.run(build())
        return self

    def stop(self, grace: float = 0.0) -> None:
        if self.service is not None:
            self.run(self.service.stop(grace))
            self.service = None
        if self.thread.is_alive():
            self.loop.call_soon_threadsafe(self.loop.stop)
            self.thread.join(10)
            self.loop.close()

    def __enter__(self) -> ServiceThread:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()


def wait_serving(channel: grpc.Channel, service: str = "", timeout: float = 30.0) -> None:
    """Block until the server's health says SERVING (readiness probes run asynchronously)."""
    wait_channel_serving(channel, timeout, service=service)


@contextlib.contextmanager
def serving(factory: Callable[[], Awaitable[Service]]):
    """Run a service and open a channel to it: yields (ServiceThread, grpc.Channel); the
    channel is closed first, then the server stopped."""
    with ServiceThread(factory) as running, grpc.insecure_channel(running.address) as channel:
        yield running, channel
