"""Gateway bootstrap: `create_server(settings, upstreams)` for tests and `main()`.
Health is SERVING while both upstreams answer SERVING."""

from __future__ import annotations

import asyncio
import logging
import sys

from recsys.api.gateway.v1 import gateway_pb2, gateway_pb2_grpc
from recsys.logs import configure_logging
from recsys.serving import metrics
from recsys.serving.config import ConfigError, Settings
from recsys.serving.server import Service
from services.gateway.flow import PredictFlow
from services.gateway.servicer import GatewayServicer
from services.gateway.upstream import Upstreams

log = logging.getLogger(__name__)

SERVICE_NAME = gateway_pb2.DESCRIPTOR.services_by_name["GatewayService"].full_name


async def create_server(settings: Settings, upstreams: Upstreams) -> Service:
    service = Service(settings, [SERVICE_NAME])
    gateway_pb2_grpc.add_GatewayServiceServicer_to_server(
        GatewayServicer(PredictFlow(upstreams)), service.server
    )
    service.bind(settings.gateway_port)
    service.watch_readiness(upstreams.healthy, every_s=1.0)
    service.on_stop(upstreams.close)
    return service


async def serve(settings: Settings) -> None:
    service = await create_server(settings, Upstreams.connect(settings))
    metrics.serve_metrics(settings.metrics_port, settings.bind_host)
    await service.start()
    log.info("gateway listening", extra={"port": service.port})
    await service.serve_until_signal()


def main() -> int:
    configure_logging(json_lines=True)
    try:
        settings = Settings.from_env()
        settings.require("feature_addr", "model_addr")
    except ConfigError as exc:
        log.error("bad configuration: %s", exc)
        return 2
    configure_logging(json_lines=True, level=settings.log_level)
    asyncio.run(serve(settings))
    return 0


if __name__ == "__main__":
    sys.exit(main())
