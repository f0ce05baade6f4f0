"""Redis with append-only persistence: a Redis killed (SIGKILL, as a crash) and restarted on
the same directory still holds every write the feature service acknowledged."""

import pytest
import redis
import redis.asyncio

from recsys.api.feature.v1 import feature_pb2, feature_pb2_grpc
from recsys.featurestore.layout import KeyLayout
from recsys.featurestore.loader import load_features
from recsys.redis_server import LocalRedis
from recsys.serving.config import Settings
from services.feature.server import create_server
from tests.support.feature_data import build_feature_data
from tests.support.servers import serving

pytestmark = pytest.mark.slow


def test_acknowledged_writes_survive_a_crash_and_restart(synthetic_dir, tmp_path):
    data = build_feature_data(synthetic_dir, tmp_path / "artifacts")
    server = LocalRedis(data_dir=tmp_path / "redis", appendonly=True, fsync="always").start()
    acknowledged: dict[int, dict[int, float]] = {}
    try:
        with redis.Redis.from_url(server.url) as client:
            # the policy under test: every write is on disk before Redis acknowledges it
            assert client.config_get("appendfsync") == {"appendfsync": "always"}
            load_features(client, data.artifact, data.ratings, data.items)
        settings = Settings(feature_port=0, redis_url=server.url)

        async def feature():
            return await create_server(settings, redis.asyncio.Redis.from_url(server.url))

        with serving(feature) as (_, channel):
            stub = feature_pb2_grpc.FeatureServiceStub(channel)
            for n in range(60):
                user, movie, stars = 900100 + n % 7, int(data.index.item_ids[n % 50]), 1 + n % 5
                stub.UpsertRatings(
                    feature_pb2.UpsertRatingsRequest(
                        user_id=user, ratings=[feature_pb2.Rating(movie_id=movie, rating=stars)]
                    ),
                    timeout=10,
                )
                acknowledged.setdefault(user, {})[movie] = float(stars)
        server.stop(kill=True)
        server.start()
        keys = KeyLayout()
        with redis.Redis.from_url(server.url) as client:
            for user, ratings in acknowledged.items():
                stored = {int(m): float(r) for m, r in client.hgetall(keys.ratings(user)).items()}
                assert stored == ratings, user
            assert client.get(keys.active()) is not None
    finally:
        server.cleanup()
