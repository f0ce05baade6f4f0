"""Gateway bootstrap: `create_server(settings, upstreams)` for tests and `main()`.
Health is SERVING while both upstreams answer SERVING."""

from __future__ import annotations

import logging
import sys

from recsys.api.gateway.v1 import gateway_pb2, gateway_pb2_grpc
from recsys.serving.config import Settings
from recsys.serving.server import Service, run_service
from services.gateway.flow import PredictFlow
from services.gateway.servicer import GatewayServicer
from services.gateway.upstream import Upstreams

log = logging.getLogger(__name__)

SERVICE_NAME = gateway_pb2.DESCRIPTOR.services_by_name["GatewayService"].full_name


async def create_server(settings: Settings, upstreams: Upstreams) -> Service:
    service = Service(settings, [SERVICE_NAME])
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
