"""Feature service bootstrap: `create_server(settings, redis_client)` builds the gRPC server
(tests bind port 0 through it); `main()` reads the environment and serves until SIGTERM.

    REDIS_URL=redis://127.0.0.1:6379/0 python -m services.feature.server
"""

from __future__ import annotations

import logging
import sys

from recsys.api.feature.v1 import feature_pb2, feature_pb2_grpc
from recsys.redis_client import AsyncClient, async_client
from recsys.serving.config import Settings
from recsys.serving.server import Service, run_service
from services.feature.servicer import FeatureServicer
from services.feature.store import FeatureStore

log = logging.getLogger(__name__)

SERVICE_NAME = feature_pb2.DESCRIPTOR.services_by_name["FeatureService"].full_name
READINESS_EVERY_S = 1.0


def connect_redis(settings: Settings) -> AsyncClient:
    """The process's one Redis client (a Cluster client with REDIS_CLUSTER=1, the master
    the sentinels name with REDIS_SENTINELS)."""
    return async_client(
        settings.redis_url,
        cluster=settings.redis_cluster,
        sentinels=settings.redis_sentinels,
        sentinel_master=settings.redis_sentinel_master,
        sentinel_password=settings.redis_sentinel_password,
        timeout_s=settings.redis_timeout_s,
    )


async def create_server(settings: Settings, redis_client: AsyncClient) -> Service:
    """An unstarted Service bound to settings.feature_port (0: any free port, see `.port`).
    Health is SERVING while Redis answers and a model version is active."""
    store = FeatureStore(
        redis_client,
        settings.redis_key_prefix,
        wait_replicas=settings.wait_replicas,
        wait_timeout_s=settings.redis_wait_timeout_s,
    )
    service = Service(settings, [SERVICE_NAME])
    feature_pb2_grpc.add_FeatureServiceServicer_to_server(FeatureServicer(store), service.server)
    service.bind(settings.feature_port)
    service.watch_readiness(store.ready, every_s=READINESS_EVERY_S)
    return service


async def serve(settings: Settings) -> None:
    client = connect_redis(settings)
    service = await create_server(settings, client)
    service.on_stop(client.aclose)
    await service.start()
    log.info("feature service listening", extra={"port": service.port})
    await service.serve_until_signal()


def main() -> int:
    return run_service("feature", serve, required=("redis_url",))


if __name__ == "__main__":
    sys.exit(main())
