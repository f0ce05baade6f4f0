"""The feature service over real channels: built by its production factory on port 0, a real
Redis behind it, called through the generated stub; status codes and field violations as a
client sees them, health that follows Redis and the active version, and the real entry point."""

import contextlib
import os
import signal
import subprocess
import sys
import time

import grpc
import numpy as np
import pytest
import redis
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

from recsys.api.feature.v1 import feature_pb2 as pb
from recsys.api.feature.v1 import feature_pb2_grpc
from recsys.features import preference_matrix
from recsys.featurestore.loader import load_features
from recsys.redis_server import LocalRedis, free_port
from recsys.serving.config import Settings
from recsys.serving.errors import field_violations
from services.feature.server import SERVICE_NAME, connect_redis, create_server
from services.feature.servicer import encode_page_token
from tests.support.feature_data import OUTSIDER, VERSION, build_feature_data
from tests.support.servers import ServiceThread, wait_serving

NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING


@pytest.fixture(scope="module")
def data(synthetic_dir, tmp_path_factory):
    return build_feature_data(synthetic_dir, tmp_path_factory.mktemp("feature-artifacts"))


def load(url: str, data) -> None:
    with redis.Redis.from_url(url) as client:
        load_features(client, data.artifact, data.ratings, data.items, "recsys")


def start_service(url: str) -> ServiceThread:
    settings = Settings(feature_port=0, redis_url=url, redis_timeout_s=0.5)

    async def factory():
        client = connect_redis(settings)
        service = await create_server(settings, client)
        service.on_stop(client.aclose)
        return service

    return ServiceThread(factory).start()


@contextlib.contextmanager
def serving(url: str):
    """(channel, stub) of a running feature service; the channel closes before the server."""
    running = start_service(url)
    try:
        with grpc.insecure_channel(running.address) as channel:
            yield channel, feature_pb2_grpc.FeatureServiceStub(channel)
    finally:
        running.stop()


@pytest.fixture
def empty_service(redis_url):
    """(channel, stub) of a feature service over an empty Redis."""
    with serving(redis_url) as service:
        yield service


@pytest.fixture
def stub(redis_url, data):
    """A stub of a SERVING feature service with the test data loaded."""
    load(redis_url, data)
    with serving(redis_url) as (channel, stub):
        wait_serving(channel, SERVICE_NAME, timeout=10)
        yield stub


def rpc_error(call, request) -> grpc.RpcError:
    with pytest.raises(grpc.RpcError) as caught:
        call(request, timeout=5)
    return caught.value


def invalid_field(call, request) -> str:
    error = rpc_error(call, request)
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT, error.details()
    [(field, _)] = field_violations(error)
    return field


def test_get_user_features(stub, data):
    reply = stub.GetUserFeatures(pb.GetUserFeaturesRequest(user_id=1), timeout=5).features
    expected = preference_matrix(data.ratings, data.index, data.normalization, np.array([1]))
    row = expected.matrix.getrow(0)
    by_id = dict(zip(data.index.item_ids[row.indices].tolist(), row.data.tolist(), strict=True))
    assert reply.user_id == 1 and reply.model_version == VERSION
    assert reply.user_mean == expected.user_means[0]
    assert list(reply.preferences.movie_ids) == sorted(by_id)
    np.testing.assert_allclose(
        reply.preferences.values, [by_id[m] for m in sorted(by_id)], rtol=1e-6
    )
    mine = data.ratings[data.ratings["user_id"] == 1].sort_values("item_id")
    assert list(zip(reply.ratings.movie_ids, reply.ratings.values, strict=True)) == list(
        zip(mine["item_id"].tolist(), mine["rating"].tolist(), strict=True)
    )
    pinned = stub.GetUserFeatures(pb.GetUserFeaturesRequest(user_id=1, model_version=VERSION))
    assert pinned.features == reply


def test_get_user_features_errors(stub):
    error = rpc_error(stub.GetUserFeatures, pb.GetUserFeaturesRequest(user_id=424242))
    assert error.code() == grpc.StatusCode.NOT_FOUND
    assert error.details() == "user 424242 has no stored ratings"
    assert invalid_field(stub.GetUserFeatures, pb.GetUserFeaturesRequest(user_id=0)) == "user_id"
    assert invalid_field(stub.GetUserFeatures, pb.GetUserFeaturesRequest(user_id=-3)) == "user_id"
    request = pb.GetUserFeaturesRequest(user_id=1, model_version="20990101T000000000000Z")
    assert rpc_error(stub.GetUserFeatures, request).code() == grpc.StatusCode.NOT_FOUND
    request = pb.GetUserFeaturesRequest(user_id=1, model_version="v{1}")
    assert invalid_field(stub.GetUserFeatures, request) == "model_version"


def test_batch_get_user_features(stub):
    request = pb.BatchGetUserFeaturesRequest(user_ids=[3, 424242, OUTSIDER, 3, 1])
    reply = stub.BatchGetUserFeatures(request, timeout=5)
    assert [f.user_id for f in reply.features] == [3, OUTSIDER, 1]
    assert list(reply.missing_user_ids) == [424242]
    assert reply.model_version == VERSION
    outsider = reply.features[1]
    assert len(outsider.ratings.movie_ids) == 3 and not outsider.preferences.movie_ids
    assert outsider.user_mean == 0
    single = stub.GetUserFeatures(pb.GetUserFeaturesRequest(user_id=3)).features
    assert reply.features[0] == single


def test_batch_get_user_features_packed_equals_the_messages(stub):
    user_ids = [3, 424242, OUTSIDER, 3, 1, 2]
    plain = stub.BatchGetUserFeatures(pb.BatchGetUserFeaturesRequest(user_ids=user_ids))
    reply = stub.BatchGetUserFeatures(
        pb.BatchGetUserFeaturesRequest(user_ids=user_ids, packed=True), timeout=5
    )
    assert not reply.features and list(reply.missing_user_ids) == [424242]
    packed = reply.packed
    assert np.frombuffer(packed.user_ids, "<i8").tolist() == [3, OUTSIDER, 1, 2]
    means = np.frombuffer(packed.user_means, "<f8")
    offsets = np.frombuffer(packed.preference_offsets, "<i4")
    ids = np.frombuffer(packed.preference_movie_ids, "<i4")
    values = np.frombuffer(packed.preference_values, "<f4")
    unused_offsets = np.frombuffer(packed.unused_offsets, "<i4")
    unused = np.frombuffer(packed.unused_movie_ids, "<i4")
    for j, user in enumerate(plain.features):
        assert means[j] == user.user_mean
        span = slice(offsets[j], offsets[j + 1])
        assert ids[span].tolist() == list(user.preferences.movie_ids)
        assert values[span].tobytes() == np.array(user.preferences.values, "<f4").tobytes()
        covered = set(user.preferences.movie_ids)
        rated_only = sorted(m for m in user.ratings.movie_ids if m not in covered)
        assert unused[unused_offsets[j] : unused_offsets[j + 1]].tolist() == rated_only
    assert unused_offsets[2] - unused_offsets[1] == 3  # the outsider rated no model movie


@pytest.mark.parametrize("user_ids", [[], list(range(1, 1002)), [1, 0], [2, -5]])
def test_batch_get_user_features_invalid(stub, user_ids):
    request = pb.BatchGetUserFeaturesRequest(user_ids=user_ids)
    assert invalid_field(stub.BatchGetUserFeatures, request) == "user_ids"


def test_get_normalization(stub, data):
    reply = stub.GetNormalization(pb.GetNormalizationRequest(), timeout=5)
    assert reply.model_version == VERSION
    assert reply.global_mean == data.normalization.global_mean
    assert list(reply.item_means.movie_ids) == data.index.item_ids.tolist()
    np.testing.assert_allclose(reply.item_means.values, data.normalization.item_means, rtol=1e-6)
    assert (reply.rating_min, reply.rating_max) == (1.0, 5.0)


def test_get_items(stub, data):
    reply = stub.GetItems(pb.GetItemsRequest(movie_ids=[2, 999999, 1, 2]), timeout=5)
    assert [i.movie_id for i in reply.items] == [2, 1]
    assert list(reply.missing_movie_ids) == [999999]
    first = data.items.set_index("item_id").loc[1]
    assert reply.items[1].title == first["title"]
    assert list(reply.items[1].genres) == first["genres"].split("|")
    for movie_ids in ([], [1, 0], list(range(1, 1002))):
        assert invalid_field(stub.GetItems, pb.GetItemsRequest(movie_ids=movie_ids)) == "movie_ids"


def test_list_items_pages_to_the_end(stub, data):
    seen, token, pages = [], "", 0
    while True:
        reply = stub.ListItems(pb.ListItemsRequest(page_size=25, page_token=token), timeout=5)
        assert reply.total_size == len(data.items)
        seen += [item.movie_id for item in reply.items]
        pages += 1
        token = reply.next_page_token
        if not token:
            break
    assert seen == sorted(data.items["item_id"].tolist())
    assert pages == -(-len(data.items) // 25)
    default = stub.ListItems(pb.ListItemsRequest(), timeout=5)
    assert len(default.items) == min(100, len(data.items))


def test_list_items_invalid(stub):
    valid = encode_page_token(5)
    for token in ("garbage!!", "bm9wZQ", valid + "x", valid + "!!", valid[:-1], "YWZ0ZXI6MDA"):
        request = pb.ListItemsRequest(page_token=token)
        assert invalid_field(stub.ListItems, request) == "page_token", token
    for size in (-1, 1001):
        assert invalid_field(stub.ListItems, pb.ListItemsRequest(page_size=size)) == "page_size"


def test_health_follows_the_active_version(redis_url, data, empty_service):
    channel, stub = empty_service
    health = health_pb2_grpc.HealthStub(channel)
    time.sleep(0.3)  # the first probe has run
    for name in ("", SERVICE_NAME):
        assert health.Check(health_pb2.HealthCheckRequest(service=name)).status == NOT_SERVING
    error = rpc_error(stub.GetUserFeatures, pb.GetUserFeaturesRequest(user_id=1))
    assert error.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert "no active model version" in error.details()
    load(redis_url, data)
    wait_serving(channel, SERVICE_NAME, timeout=5)  # by itself: the probes run every second
    assert stub.GetUserFeatures(pb.GetUserFeaturesRequest(user_id=1)).features.user_id == 1


def test_reflection_lists_the_service(empty_service):
    channel, _ = empty_service
    reflection = reflection_pb2_grpc.ServerReflectionStub(channel)
    replies = reflection.ServerReflectionInfo(
        iter([reflection_pb2.ServerReflectionRequest(list_services="")]), timeout=5
    )
    names = {s.name for reply in replies for s in reply.list_services_response.service}
    assert {SERVICE_NAME, "grpc.health.v1.Health"} <= names


def test_redis_hung_or_down_is_unavailable_fast_then_recovers(data, tmp_path):
    server = LocalRedis(data_dir=tmp_path / "redis", appendonly=True).start()
    running = None
    try:
        load(server.url, data)
        running = start_service(server.url)
        with grpc.insecure_channel(running.address) as channel:
            stub = feature_pb2_grpc.FeatureServiceStub(channel)
            wait_serving(channel, SERVICE_NAME, timeout=10)
            request = pb.GetUserFeaturesRequest(user_id=1)
            assert stub.GetUserFeatures(request, timeout=5).features.user_id == 1
            os.kill(server.process.pid, signal.SIGSTOP)  # hung: accepts, never answers
            try:
                error = rpc_error(stub.GetUserFeatures, request)  # a 5 s deadline
                assert error.code() == grpc.StatusCode.UNAVAILABLE, error.details()
                assert error.details() == "redis unavailable: TimeoutError"
            finally:
                os.kill(server.process.pid, signal.SIGCONT)
            assert stub.GetUserFeatures(request, timeout=5).features.user_id == 1
            server.stop()  # down: connections refused
            error = rpc_error(stub.GetUserFeatures, request)
            assert error.code() == grpc.StatusCode.UNAVAILABLE
            assert error.details() == "redis unavailable: ConnectionError"
            health = health_pb2_grpc.HealthStub(channel)
            deadline = time.monotonic() + 5
            while health.Check(health_pb2.HealthCheckRequest()).status != NOT_SERVING:
                assert time.monotonic() < deadline, "health never left SERVING"
                time.sleep(0.1)
            server.start()  # same port, same append-only file: the data is back
            assert stub.GetUserFeatures(request, timeout=5).features.user_id == 1
            wait_serving(channel, SERVICE_NAME, timeout=5)
    finally:
        if running is not None:
            running.stop()
        server.cleanup()


def test_a_hung_redis_is_unavailable_within_a_1s_deadline_with_default_settings(data, tmp_path):
    """Default settings (REDIS_TIMEOUT_S), Redis SIGSTOPped: readers and a writer giving
    1 s each are answered UNAVAILABLE "redis unavailable", not DEADLINE_EXCEEDED; once
    Redis continues, the same calls succeed without a restart."""
    from concurrent.futures import ThreadPoolExecutor

    server = LocalRedis(data_dir=tmp_path / "redis").start()
    settings = Settings(feature_port=0, redis_url=server.url)  # nothing but the address

    async def factory():
        client = connect_redis(settings)
        service = await create_server(settings, client)
        service.on_stop(client.aclose)
        return service

    running = None
    try:
        load(server.url, data)
        running = ServiceThread(factory).start()
        with grpc.insecure_channel(running.address) as channel:
            stub = feature_pb2_grpc.FeatureServiceStub(channel)
            wait_serving(channel, SERVICE_NAME, timeout=10)
            movie = int(data.index.item_ids[0])
            calls = [
                (stub.GetUserFeatures, pb.GetUserFeaturesRequest(user_id=1)),
                (stub.GetUserFeatures, pb.GetUserFeaturesRequest(user_id=2)),
                (stub.BatchGetUserFeatures, pb.BatchGetUserFeaturesRequest(user_ids=[1, 2, 3])),
                (
                    stub.UpsertRatings,
                    pb.UpsertRatingsRequest(
                        user_id=4, ratings=[pb.Rating(movie_id=movie, rating=4.0)]
                    ),
                ),
            ]
            for call, request in calls:
                call(request, timeout=5)  # warm: connections made, the version known

            def outcome(call_and_request):
                call, request = call_and_request
                started = time.monotonic()
                try:
                    call(request, timeout=1)
                    return "OK", "", time.monotonic() - started
                except grpc.RpcError as error:
                    return error.code().name, error.details(), time.monotonic() - started

            os.kill(server.process.pid, signal.SIGSTOP)  # hung: accepts, never answers
            try:
                with ThreadPoolExecutor(len(calls)) as pool:
                    hung = list(pool.map(outcome, calls))
            finally:
                os.kill(server.process.pid, signal.SIGCONT)
            after = [outcome(c) for c in calls]
    finally:
        if running is not None:
            running.stop()
        server.cleanup()
    print(f"\nhung redis, default settings: {[(c, round(s, 3)) for c, _, s in hung]}")
    assert [(code, details.split(":")[0]) for code, details, _ in hung] == [
        ("UNAVAILABLE", "redis unavailable")
    ] * len(calls)
    assert [code for code, _, _ in after] == ["OK"] * len(calls)


def test_entry_point_serves_then_stops_on_sigterm(redis_url, data):
    load(redis_url, data)
    port = free_port()
    env = {**os.environ, "REDIS_URL": redis_url, "FEATURE_PORT": str(port), "GRACE_S": "1"}
    process = subprocess.Popen(
        [sys.executable, "-m", "services.feature.server"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
            wait_serving(channel, SERVICE_NAME, timeout=30)
            stub = feature_pb2_grpc.FeatureServiceStub(channel)
            assert stub.GetUserFeatures(pb.GetUserFeaturesRequest(user_id=1), timeout=5)
        process.send_signal(signal.SIGTERM)
        assert process.wait(10) == 0
    finally:
        if process.poll() is None:
            process.kill()
    output = process.stdout.read()
    assert '"message": "feature service listening"' in output, output
    assert '"message": "stopped"' in output, output


def test_entry_point_without_redis_url_fails_clearly():
    env = {k: v for k, v in os.environ.items() if k != "REDIS_URL"}
    result = subprocess.run(
        [sys.executable, "-m", "services.feature.server"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2
    assert "REDIS_URL" in result.stdout + result.stderr
