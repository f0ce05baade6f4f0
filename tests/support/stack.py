"""The whole system in-process for tests: a real Redis loaded with a trained model's
features, and the feature, model and gateway services built by their production factories,
each on its own event loop thread, called through real channels."""

from __future__ import annotations

import contextlib
from dataclasses import dataclass

import grpc
import numpy as np
import redis

from recsys.api.gateway.v1 import gateway_pb2 as gateway_pb
from recsys.api.gateway.v1 import gateway_pb2_grpc
from recsys.artifacts import Artifact, load_artifact
from recsys.data.movielens import RatingData
from recsys.featurestore.loader import load_features
from recsys.serving import tls
from recsys.serving.config import Settings
from services.feature.server import connect_redis
from services.feature.server import create_server as feature_server
from services.gateway.server import create_server as gateway_server
from services.gateway.upstream import Upstreams
from services.model.predictor import Predictor, PredictorHolder
from services.model.server import create_server as model_server
from tests.support.servers import ServiceThread, wait_serving


@dataclass
class Stack:
    channel: grpc.Channel  # to the gateway
    stub: gateway_pb2_grpc.GatewayServiceStub
    artifact: Artifact
    data: RatingData
    redis_url: str
    gateway: ServiceThread
    features: ServiceThread
    model: ServiceThread
    holder: PredictorHolder

    def __getitem__(self, name: str):  # stack["stub"] reads as well as stack.stub
        return getattr(self, name)

    def swap_model(self, predictor: Predictor) -> Predictor | None:
        """Serve `predictor` as a hot reload does: PredictorHolder.swap on the model service's
        event loop (the replaced version stays answerable); returns the replaced one."""
        return swap_on(self.model, self.holder, predictor)


def swap_on(service: ServiceThread, holder: PredictorHolder, predictor: Predictor):
    """`holder.swap(predictor)` on the loop of the service that reads `holder`."""

    async def swap():
        return holder.swap(predictor)

    return service.run(swap())


@contextlib.contextmanager
def running_stack(
    trained_run,
    redis_url: str,
    *,
    flush: bool = True,
    server_settings: dict | None = None,
    gateway_settings: dict | None = None,
    client_settings: Settings | None = None,
):
    """Load the trained run's features into the Redis at `redis_url` and run all services.
    `server_settings` apply to every server (e.g. TLS files), `gateway_settings` to the
    gateway only, `client_settings` (TLS files) to the test's channel to the gateway."""
    servers, gateway_only = server_settings or {}, gateway_settings or {}
    source, run = trained_run
    with redis.Redis.from_url(redis_url) as client:
        if flush:
            client.flushall()
        load_features(client, run.artifact_path, source.data.ratings, source.data.items, "recsys")
    settings = Settings(
        feature_port=0, model_port=0, gateway_port=0, redis_url=redis_url, **servers
    )
    holder = PredictorHolder(Predictor.load(str(run.artifact_path.parent), run.artifact_path.name))

    async def feature():
        return await feature_server(settings, connect_redis(settings))

    with (
        ServiceThread(feature) as features,
        ServiceThread(lambda: model_server(settings, holder)) as model,
    ):
        upstream_settings = Settings(
            gateway_port=0,
            feature_addr=features.address,
            model_addr=model.address,
            **{**servers, **gateway_only},
        )

        async def gateway():
            return await gateway_server(upstream_settings, Upstreams.connect(upstream_settings))

        with (
            ServiceThread(gateway) as running,
            tls.sync_channel(running.address, client_settings or Settings()) as channel,
        ):
            wait_serving(channel, timeout=30)
            yield Stack(
                channel=channel,
                stub=gateway_pb2_grpc.GatewayServiceStub(channel),
                artifact=load_artifact(run.artifact_path),
                data=source.data,
                redis_url=redis_url,
                gateway=running,
                features=features,
                model=model,
                holder=holder,
            )


def assert_stored_user_served_as_inline(stack, user_id: int, k: int = 5):
    """A stored user's Recommend through `stack`'s gateway names the same movies, with the
    same predicted ratings (to 1e-4), as their ratings sent inline; the inline answer."""
    ratings = stack.data.ratings
    theirs = ratings[ratings["user_id"] == user_id]
    inline = gateway_pb.InlineRatings(
        ratings=[
            gateway_pb.Rating(movie_id=int(m), rating=float(r))
            for m, r in zip(theirs["item_id"], theirs["rating"], strict=True)
        ]  # fmt: skip
    )
    stored = stack.stub.Recommend(gateway_pb.RecommendRequest(user_id=user_id, k=k), timeout=10)
    given = stack.stub.Recommend(
        gateway_pb.RecommendRequest(inline_ratings=inline, k=k), timeout=10
    )
    assert [i.movie_id for i in stored.items] == [i.movie_id for i in given.items]
    np.testing.assert_allclose(
        [i.predicted_rating for i in stored.items],
        [i.predicted_rating for i in given.items],
        rtol=1e-4,
    )
    return given
