"""Server bootstrap shared by the three services: an asyncio gRPC server with the error
interceptor and message-size limits, health checking and reflection, readiness probes that
drive the health status, and graceful shutdown on SIGTERM / SIGINT.

Health has two meanings. The overall status ("") and each service's name are *readiness*:
SERVING while the process can serve now (its probe says so: Redis answers, the upstreams
are SERVING, a model is loaded). The name "liveness" is SERVING from `start()` until the
stop begins, whatever the dependencies do: it is answered by the health servicer on the
process's event loop, so it fails only when that loop no longer answers (or the server is
shutting down). Kubernetes' liveness probes ask "liveness", so a dependency's outage takes
pods out of the load balancer without restarting them."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
from collections.abc import Awaitable, Callable, Iterable

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_health.v1._async import HealthServicer
from grpc_reflection.v1alpha import reflection

from recsys.logs import configure_logging
from recsys.serving import metrics, tls, tracing
from recsys.serving.auth import AuthInterceptor
from recsys.serving.config import ConfigError, Settings
from recsys.serving.errors import ErrorInterceptor
from recsys.serving.keepalive import keepalive_options

log = logging.getLogger(__name__)

SERVING = health_pb2.HealthCheckResponse.SERVING
NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING
LIVENESS = "liveness"  # the health service name liveness probes ask


def message_options(settings: Settings) -> list[tuple[str, int]]:
    return [
        ("grpc.max_send_message_length", settings.max_message_bytes),
        ("grpc.max_receive_message_length", settings.max_message_bytes),
    ]


class Service:
    """A gRPC server with health and reflection. `service_names` are the full names of the
    services it serves (e.g. "recsys.model.v1.ModelService"); their health starts
    NOT_SERVING and follows `readiness` once `start()` has run."""

    def __init__(self, settings: Settings, service_names: Iterable[str]):
        self.settings = settings
        self.service_names = list(service_names)
        interceptors = [*tracing.server_interceptors(settings), ErrorInterceptor()]
        if settings.tokens:  # inside the error interceptor, which answers its refusals
            interceptors.append(AuthInterceptor(settings.tokens, reads=settings.auth_reads))
        elif settings.auth_reads:  # deploy/ sets it; the tokens come from an optional Secret
            log.warning("AUTH_READS is set but AUTH_TOKENS is empty: authentication is off")
        self.server = grpc.aio.server(
            interceptors=interceptors,
            options=[*message_options(settings), *keepalive_options(settings, server=True)],
            maximum_concurrent_rpcs=settings.max_concurrent_rpcs or None,
        )
        self.health = HealthServicer()
        health_pb2_grpc.add_HealthServicer_to_server(self.health, self.server)
        reflection.enable_server_reflection(
            [
                *self.service_names,
                health_pb2.DESCRIPTOR.services_by_name["Health"].full_name,
                reflection.SERVICE_NAME,
            ],
            self.server,
        )
        self.port = 0
        self._tasks: list[asyncio.Task] = []
        self._probes: list[tuple[Callable[[], Awaitable[bool]], float]] = []
        self._cleanups: list[Callable[[], Awaitable[None]]] = []

    def bind(self, port: int) -> int:
        """Listen on bind_host:port (0: any free port), with TLS when configured; returns the
        port."""
        address = f"{self.settings.bind_host}:{port}"
        credentials = tls.server_credentials(self.settings)
        if credentials is None:
            self.port = self.server.add_insecure_port(address)
        else:
            self.port = self.server.add_secure_port(address, credentials)
        if self.port == 0:
            raise OSError(f"cannot listen on {self.settings.bind_host}:{port}")
        return self.port

    async def set_serving(self, serving: bool) -> None:
        """Readiness: the overall status and every service name (not "liveness")."""
        status = SERVING if serving else NOT_SERVING
        for name in ("", *self.service_names):
            await self.health.set(name, status)
        for name in self.service_names or [""]:
            metrics.READY.labels(name).set(1 if serving else 0)

    def watch_readiness(self, probe: Callable[[], Awaitable[bool]], every_s: float = 1.0):
        """From `start()` on, run `probe` every `every_s` seconds; health follows it."""
        self._probes.append((probe, every_s))

    def _watch(self, probe: Callable[[], Awaitable[bool]], every_s: float) -> asyncio.Task:
        async def loop():
            last = None
            while True:
                try:
                    ready = await probe()
                except Exception as exc:  # a probe that fails means "not ready"
                    log.debug("readiness probe failed: %s", exc)
                    ready = False
                if ready != last:
                    log.info("health %s", "SERVING" if ready else "NOT_SERVING")
                    await self.set_serving(ready)
                    last = ready
                await asyncio.sleep(every_s)

        return asyncio.get_running_loop().create_task(loop())

    def run_in_background(self, work: Awaitable[None]) -> None:
        """Run `work` (a coroutine) beside the server until it stops."""
        self._tasks.append(asyncio.get_running_loop().create_task(work))

    def on_stop(self, cleanup: Callable[[], Awaitable[None]]) -> None:
        """Run `cleanup` after the server has stopped (close channels, clients)."""
        self._cleanups.append(cleanup)

    async def start(self) -> None:
        await self.set_serving(False)
        await self.health.set(LIVENESS, SERVING)
        await self.server.start()
        metrics.serve_metrics(self.settings.metrics_port, self.settings.bind_host)
        self._tasks += [self._watch(probe, every_s) for probe, every_s in self._probes]

    async def stop(self, grace: float | None = None) -> None:
        """Health NOT_SERVING first (readiness and liveness), then let in-flight calls
        finish within `grace`."""
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        await self.health.enter_graceful_shutdown()
        await self.server.stop(self.settings.grace_s if grace is None else grace)
        for cleanup in self._cleanups:
            await cleanup()

    async def serve_until_signal(self) -> None:
        """The end of a `main()`: on SIGTERM or SIGINT stop gracefully, then return."""
        loop = asyncio.get_running_loop()
        stopping: list[asyncio.Task] = []

        def on_signal(signum: int) -> None:
            if not stopping:
                log.info("signal %s: shutting down", signal.Signals(signum).name)
                stopping.append(loop.create_task(self.stop()))

        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(signum, on_signal, signum)
        await self.server.wait_for_termination()
        if stopping:
            await stopping[0]
        log.info("stopped")


def limit_blas_threads(threads: int) -> None:
    """At most `threads` BLAS threads in this process from now on (0: leave the default)."""
    if threads:
        from threadpoolctl import threadpool_limits

        threadpool_limits(limits=threads, user_api="blas")


def run_service(
    name: str, serve: Callable[[Settings], Awaitable[None]], required: Iterable[str] = ()
) -> int:
    """A service's `main()`: JSON logs, settings read once (exit 2 naming the variable when
    one is malformed or a `required` one is missing), then `serve(settings)` until it
    returns; a RecsysError that ends it (e.g. no model to load) is exit 1."""
    from recsys.errors import RecsysError

    configure_logging(json_lines=True)
    try:
        settings = Settings.from_env()
        settings.require(*required)
    except ConfigError as exc:
        log.error("bad configuration: %s", exc, extra={"service": name})
        return 2
    configure_logging(json_lines=True, level=settings.log_level)
    tracing.configure(settings, name)
    limit_blas_threads(settings.blas_threads)
    try:
        asyncio.run(serve(settings))
    except RecsysError:
        return 1
    finally:
        tracing.shutdown()
    return 0
