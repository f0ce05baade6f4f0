"""Bearer tokens: write RPCs need `authorization: Bearer <token>` (missing or malformed →
UNAUTHENTICATED, wrong → PERMISSION_DENIED, nothing written), reads only with AUTH_READS,
health and reflection always open; the gateway authenticates itself to the feature service
with its own token."""

from __future__ import annotations

import grpc
import pytest
import redis
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

from recsys.api.feature.v1 import feature_pb2, feature_pb2_grpc
from recsys.api.gateway.v1 import gateway_pb2 as pb
from recsys.api.model.v1 import model_pb2, model_pb2_grpc
from recsys.errors import PermissionDenied, Unauthenticated
from recsys.serving.auth import WRITE_METHODS, TokenCheck
from tests.support.redis_snapshot import snapshot
from tests.support.stack import running_stack

SERVICE_TOKEN = "feature-and-model-token-1"  # what the gateway sends upstream
CLIENT_TOKEN = "client-token-2"
ROTATED_TOKEN = "client-token-1"  # the previous one, still accepted during a rotation

READS = {
    "/recsys.gateway.v1.GatewayService/Recommend",
    "/recsys.gateway.v1.GatewayService/PredictRatings",
    "/recsys.gateway.v1.GatewayService/SimilarItems",
    "/recsys.gateway.v1.GatewayService/SearchMovies",
    "/recsys.gateway.v1.GatewayService/ExplainPrediction",
    "/recsys.feature.v1.FeatureService/GetUserFeatures",
    "/recsys.feature.v1.FeatureService/BatchGetUserFeatures",
    "/recsys.feature.v1.FeatureService/GetNormalization",
    "/recsys.feature.v1.FeatureService/GetItems",
    "/recsys.feature.v1.FeatureService/ListItems",
    "/recsys.model.v1.ModelService/Predict",
    "/recsys.model.v1.ModelService/BatchPredict",
    "/recsys.model.v1.ModelService/SimilarItems",
    "/recsys.model.v1.ModelService/BatchSimilarItems",
    "/recsys.model.v1.ModelService/GetModelInfo",
    "/recsys.model.v1.ModelService/Explain",
}


def bearer(token: str) -> tuple[tuple[str, str], ...]:
    return (("authorization", f"Bearer {token}"),)


def test_every_rpc_is_classified_as_read_or_write():
    methods = {
        f"/{service.full_name}/{method.name}"
        for module in (pb, feature_pb2, model_pb2)
        for service in module.DESCRIPTOR.services_by_name.values()
        for method in service.methods
    }
    assert methods == WRITE_METHODS | READS
    assert not WRITE_METHODS & READS


def test_token_check():
    check = TokenCheck([CLIENT_TOKEN, ROTATED_TOKEN])
    check.check(bearer(CLIENT_TOKEN))
    check.check(bearer(ROTATED_TOKEN))
    check.check((("authorization", f"bearer  {CLIENT_TOKEN} "),))  # the scheme is caseless
    for metadata in (
        (),
        (("authorization", "Basic dXNlcjpwYXNz"),),
        (("authorization", "Bearer"),),
    ):
        with pytest.raises(Unauthenticated):
            check.check(metadata)
    for token in ("wrong", CLIENT_TOKEN + "x", CLIENT_TOKEN[:-1], SERVICE_TOKEN):
        with pytest.raises(PermissionDenied):
            check.check(bearer(token))


@pytest.fixture(scope="module")
def stack(trained_run, redis_server):
    with running_stack(
        trained_run,
        redis_server.url,
        server_settings={"auth_tokens": SERVICE_TOKEN},
        gateway_settings={
            "auth_tokens": f"{CLIENT_TOKEN},{ROTATED_TOKEN}",
            "upstream_token": SERVICE_TOKEN,
        },
    ) as running:
        yield running


WRITES = {
    "RateItems": pb.RateItemsRequest(user_id=3, ratings=[pb.Rating(movie_id=1, rating=1)]),
    "DeleteRatings": pb.DeleteRatingsRequest(user_id=3, movie_ids=[1]),
    "DeleteUser": pb.DeleteUserRequest(user_id=3),
}
REFUSALS = [
    ((), "UNAUTHENTICATED"),
    ((("authorization", "Basic dXNlcjpwYXNz"),), "UNAUTHENTICATED"),
    ((("authorization", "Bearer "),), "UNAUTHENTICATED"),
    (bearer("not-a-token"), "PERMISSION_DENIED"),
    (bearer(SERVICE_TOKEN), "PERMISSION_DENIED"),  # the services' token is not a client's
]


@pytest.mark.slow
@pytest.mark.parametrize("method", sorted(WRITES))
@pytest.mark.parametrize(("metadata", "code"), REFUSALS)
def test_gateway_writes_without_a_valid_token_are_refused(stack, method, metadata, code):
    with redis.Redis.from_url(stack.redis_url) as client:
        before = snapshot(client)
        with pytest.raises(grpc.RpcError) as caught:
            getattr(stack.stub, method)(WRITES[method], metadata=metadata, timeout=10)
        assert caught.value.code() == grpc.StatusCode[code], caught.value.details()
        assert snapshot(client) == before


@pytest.mark.slow
def test_gateway_writes_with_a_token_go_through_to_the_feature_service(stack):
    for token in (CLIENT_TOKEN, ROTATED_TOKEN):
        user = 90_000 + len(token)
        reply = stack.stub.RateItems(
            pb.RateItemsRequest(user_id=user, ratings=[pb.Rating(movie_id=1, rating=4)]),
            metadata=bearer(token),
            timeout=10,
        )
        assert reply.user.user_id == user
        deleted = stack.stub.DeleteUser(
            pb.DeleteUserRequest(user_id=user), metadata=bearer(token), timeout=10
        )
        assert deleted.ratings_deleted == 1
    # reads need no token (AUTH_READS off)
    assert stack.stub.Recommend(pb.RecommendRequest(user_id=3, k=3), timeout=10).items


@pytest.mark.slow
def test_the_feature_service_wants_the_services_token(stack):
    with grpc.insecure_channel(stack.features.address) as channel:
        features = feature_pb2_grpc.FeatureServiceStub(channel)
        upsert = feature_pb2.UpsertRatingsRequest(
            user_id=3, ratings=[feature_pb2.Rating(movie_id=1, rating=1)]
        )
        with redis.Redis.from_url(stack.redis_url) as client:
            before = snapshot(client)
            for request, method in (
                (upsert, features.UpsertRatings),
                (
                    feature_pb2.DeleteRatingsRequest(user_id=3, movie_ids=[1]),
                    features.DeleteRatings,
                ),
                (feature_pb2.DeleteUserRequest(user_id=3), features.DeleteUser),
            ):
                for metadata, code in (
                    ((), "UNAUTHENTICATED"),
                    (bearer(CLIENT_TOKEN), "PERMISSION_DENIED"),
                ):
                    with pytest.raises(grpc.RpcError) as caught:
                        method(request, metadata=metadata, timeout=10)
                    assert caught.value.code() == grpc.StatusCode[code]
            assert snapshot(client) == before
        assert (
            features.GetUserFeatures(
                feature_pb2.GetUserFeaturesRequest(user_id=3), timeout=10
            ).features.user_id
            == 3
        )
    with grpc.insecure_channel(stack.model.address) as channel:
        info = model_pb2_grpc.ModelServiceStub(channel).GetModelInfo(
            model_pb2.GetModelInfoRequest(), timeout=10
        )
        assert info.model_version


def open_endpoints(channel: grpc.Channel) -> None:
    """Health and reflection answer without any token."""
    health = health_pb2_grpc.HealthStub(channel)
    reply = health.Check(health_pb2.HealthCheckRequest(), timeout=5)
    assert reply.status == health_pb2.HealthCheckResponse.SERVING
    reflection = reflection_pb2_grpc.ServerReflectionStub(channel)
    request = reflection_pb2.ServerReflectionRequest(list_services="")
    reply = next(reflection.ServerReflectionInfo(iter([request]), timeout=5))
    assert reply.list_services_response.service


@pytest.mark.slow
def test_auth_reads_protects_reads_but_not_health_or_reflection(trained_run, redis_url):
    with running_stack(
        trained_run,
        redis_url,
        server_settings={"auth_tokens": SERVICE_TOKEN, "auth_reads": True},
        gateway_settings={
            "auth_tokens": CLIENT_TOKEN,
            "auth_reads": True,
            "upstream_token": SERVICE_TOKEN,
        },
    ) as stack:
        request = pb.RecommendRequest(user_id=3, k=3)
        for metadata, code in (((), "UNAUTHENTICATED"), (bearer("nope"), "PERMISSION_DENIED")):
            with pytest.raises(grpc.RpcError) as caught:
                stack.stub.Recommend(request, metadata=metadata, timeout=10)
            assert caught.value.code() == grpc.StatusCode[code]
        # the gateway's own reads of the feature and model services carry its token
        assert stack.stub.Recommend(request, metadata=bearer(CLIENT_TOKEN), timeout=10).items
        open_endpoints(stack.channel)
        reads = {
            stack.features.address: lambda channel: feature_pb2_grpc.FeatureServiceStub(
                channel
            ).GetItems(feature_pb2.GetItemsRequest(movie_ids=[1]), timeout=5),
            stack.model.address: lambda channel: model_pb2_grpc.ModelServiceStub(
                channel
            ).GetModelInfo(model_pb2.GetModelInfoRequest(), timeout=5),
        }
        for address, read in reads.items():
            with grpc.insecure_channel(address) as channel:
                open_endpoints(channel)
                with pytest.raises(grpc.RpcError) as caught:
                    read(channel)
                assert caught.value.code() == grpc.StatusCode.UNAUTHENTICATED


@pytest.mark.slow
def test_a_gateway_without_the_services_token_cannot_write(trained_run, redis_url):
    with (
        running_stack(
            trained_run,
            redis_url,
            server_settings={"auth_tokens": SERVICE_TOKEN},
            gateway_settings={"auth_tokens": CLIENT_TOKEN},
        ) as stack,
        redis.Redis.from_url(stack.redis_url) as client,
    ):
        before = snapshot(client)
        with pytest.raises(grpc.RpcError) as caught:
            stack.stub.RateItems(WRITES["RateItems"], metadata=bearer(CLIENT_TOKEN), timeout=10)
        assert "UNAUTHENTICATED" in caught.value.details()
        assert snapshot(client) == before


@pytest.mark.slow
def test_undecodable_writes_without_a_token_are_unauthenticated(stack):
    """The token is checked before the request is even decoded."""
    call = stack.channel.unary_unary("/recsys.gateway.v1.GatewayService/RateItems")
    for metadata, code in (((), "UNAUTHENTICATED"), (bearer(CLIENT_TOKEN), "INVALID_ARGUMENT")):
        with pytest.raises(grpc.RpcError) as caught:
            call(b"\xff\xff\xff\x0f", metadata=metadata, timeout=10)
        assert caught.value.code() == grpc.StatusCode[code]
