"""Gateway bootstrap: `create_server(settings, upstreams)` for tests and `main()`.
Health is SERVING while both upstreams answer SERVING. With HTTP_PORT, the gateway also
serves its RPCs as JSON over HTTP (services.gateway.http)."""

from __future__ import annotations

import asyncio
import logging
import sys

from recsys.api.gateway.v1 import gateway_pb2, gateway_pb2_grpc
from recsys.serving.config import Settings
from recsys.serving.server import Service, run_service
from services.gateway.flow import PredictFlow
from services.gateway.http.server import HttpSide
from services.gateway.servicer import GatewayServicer
from services.gateway.upstream import Upstreams

log = logging.getLogger(__name__)

SERVICE_NAME = gateway_pb2.DESCRIPTOR.services_by_name["GatewayService"].full_name


class GatewayService(Service):
    """The gateway's gRPC server and, with HTTP_PORT, its HTTP side (`http`), started after
    the gRPC server and stopped beside it."""

    http: HttpSide | None = None

    async def start(self) -> None:
        await super().start()
        if self.http is not None:
            await self.http.start()

    async def stop(self, grace: float | None = None) -> None:
        if self.http is None:
            await super().stop(grace)
            return
        # the HTTP side drains while the gRPC server still answers its calls in flight
        await asyncio.gather(super().stop(grace), self.http.stop())


async def create_server(settings: Settings, upstreams: Upstreams) -> GatewayService:
    service = GatewayService(settings, [SERVICE_NAME])
    gateway_pb2_grpc.add_GatewayServiceServicer_to_server(
        GatewayServicer(
            PredictFlow(
                upstreams,
                max_batch=settings.coalesce_max_batch,
                max_in_flight=settings.coalesce_max_in_flight,
            )
        ),
        service.server,
    )
    service.bind(settings.gateway_port)
    if settings.http_port:
        # the HTTP side's calls come in plaintext on loopback: TLS ends at the HTTP side
        loopback = service.server.add_insecure_port("127.0.0.1:0")
        descriptor = gateway_pb2.DESCRIPTOR.services_by_name["GatewayService"]
        service.http = HttpSide(settings, descriptor, f"127.0.0.1:{loopback}")
    service.watch_readiness(upstreams.healthy, every_s=1.0)
    service.on_stop(upstreams.close)
    return service


async def serve(settings: Settings) -> None:
    service = await create_server(settings, Upstreams.connect(settings))
    await service.start()
    log.info("gateway listening", extra={"port": service.port})
    await service.serve_until_signal()


def main() -> int:
    return run_service("gateway", serve, required=("feature_addr", "model_addr"))


if __name__ == "__main__":
    sys.exit(main())
