"""Redis Sentinel: the feature service on a real master, replica and three sentinels. An
acknowledged write is on the replica (WAIT); a write the replica does not confirm is
answered UNAVAILABLE, applied on the master; while the master is dead and not yet replaced
calls fail UNAVAILABLE (never INTERNAL); after the sentinels promote the replica, writes
succeed again and every acknowledged write is there."""

from __future__ import annotations

import os
import signal
import time

import grpc
import pytest
import redis.exceptions

from recsys.api.feature.v1 import feature_pb2 as pb
from recsys.api.feature.v1 import feature_pb2_grpc
from recsys.featurestore import layout
from recsys.featurestore.layout import KeyLayout
from recsys.featurestore.loader import load_features
from recsys.redis_client import sync_client, unavailable
from recsys.redis_server import LocalSentinel
from recsys.serving.config import Settings
from services.feature.server import connect_redis, create_server
from tests.support.feature_data import VERSION, build_feature_data
from tests.support.servers import serving, wait_serving

KEYS = KeyLayout("recsys")
FIRST_USER = 800000


@pytest.fixture(scope="module")
def data(synthetic_dir, tmp_path_factory):
    return build_feature_data(synthetic_dir, tmp_path_factory.mktemp("sentinel-artifacts"))


@pytest.mark.parametrize(
    "error",
    [
        redis.exceptions.ConnectionError("Connection refused"),
        redis.exceptions.TimeoutError("Timeout reading from socket"),
        redis.exceptions.ReadOnlyError("You can't write against a read only replica."),
        redis.exceptions.ClusterDownError("CLUSTERDOWN The cluster is down"),
        redis.exceptions.MasterDownError("MASTERDOWN Link with MASTER is down"),
        redis.exceptions.TryAgainError("TRYAGAIN Multiple keys request during rehashing"),
        redis.exceptions.MovedError("3999 127.0.0.1:6381"),
        redis.exceptions.ClusterError("TTL exhausted."),
        redis.exceptions.SlotNotCoveredError("slot 3999 not covered"),
        redis.exceptions.ResponseError("NOREPLICAS Not enough good replicas to write."),
        redis.exceptions.BusyLoadingError("Redis is loading the dataset in memory"),
    ],
    ids=type,
)
def test_failover_and_cluster_errors_count_as_unavailable(error):
    assert unavailable(error)


@pytest.mark.parametrize(
    "error",
    [
        redis.exceptions.ResponseError("ERR wrong number of arguments for 'hset' command"),
        redis.exceptions.ResponseError("ERR Error running script: attempt to call nil"),
        redis.exceptions.DataError("Invalid input of type: 'NoneType'"),
        ValueError("not redis"),
    ],
    ids=str,
)
def test_other_errors_are_not_unavailable(error):
    assert not unavailable(error)


def feature_settings(sentinel: LocalSentinel, **overrides) -> Settings:
    return Settings(feature_port=0, redis_url="", redis_sentinels=sentinel.sentinels, **overrides)


def feature_service(settings: Settings):
    async def factory():
        client = connect_redis(settings)
        service = await create_server(settings, client)
        service.on_stop(client.aclose)
        return service

    return serving(factory)


def upsert(stub, user_id: int, movie: int, stars: float, timeout: float = 5.0):
    return stub.UpsertRatings(
        pb.UpsertRatingsRequest(user_id=user_id, ratings=[pb.Rating(movie_id=movie, rating=stars)]),
        timeout=timeout,
    )


def code_of(call) -> grpc.StatusCode:
    try:
        call()
    except grpc.RpcError as error:
        return error.code()
    return grpc.StatusCode.OK


def test_the_feature_service_reads_and_writes_through_the_sentinels(redis_sentinel, data):
    """Production settings (REDIS_SENTINELS, WAIT on by default): a write acknowledged by
    the service is already on the replica."""
    redis_sentinel.flushall()
    with sync_client("", sentinels=redis_sentinel.sentinels) as client:
        load_features(client, data.artifact, data.ratings, data.items)
    settings = feature_settings(redis_sentinel)
    assert settings.wait_replicas == 1
    movie = int(data.index.item_ids[0])
    with feature_service(settings) as (_, channel):
        wait_serving(channel)
        stub = feature_pb2_grpc.FeatureServiceStub(channel)
        assert upsert(stub, FIRST_USER, movie, 4.5).created
        read = stub.GetUserFeatures(pb.GetUserFeaturesRequest(user_id=FIRST_USER), timeout=5)
        assert read.features.model_version == VERSION
        assert list(read.features.ratings.movie_ids) == [movie]
    with redis.Redis(host="127.0.0.1", port=redis_sentinel.replica.port) as replica:
        on_replica = layout.decode_ratings(replica.hgetall(KEYS.ratings(FIRST_USER)))
    assert on_replica == {movie: 4.5}


def test_a_write_the_replica_does_not_confirm_is_unavailable_and_applied(redis_sentinel, data):
    """The replica stopped (SIGSTOP): WAIT times out, the caller gets UNAVAILABLE saying the
    write was applied on the master, and it is; the same write again succeeds once the
    replica is back."""
    redis_sentinel.flushall()
    with sync_client("", sentinels=redis_sentinel.sentinels) as client:
        load_features(client, data.artifact, data.ratings, data.items)
    movie = int(data.index.item_ids[1])
    replica = redis_sentinel.replica.process
    with feature_service(feature_settings(redis_sentinel)) as (_, channel):
        wait_serving(channel)
        stub = feature_pb2_grpc.FeatureServiceStub(channel)
        os.kill(replica.pid, signal.SIGSTOP)
        try:
            with pytest.raises(grpc.RpcError) as failed:
                upsert(stub, FIRST_USER + 1, movie, 2.5)
        finally:
            os.kill(replica.pid, signal.SIGCONT)
        assert failed.value.code() == grpc.StatusCode.UNAVAILABLE
        assert "applied on the master" in failed.value.details()
        with redis.Redis(host="127.0.0.1", port=redis_sentinel.master.port) as master:
            applied = layout.decode_ratings(master.hgetall(KEYS.ratings(FIRST_USER + 1)))
            assert applied == {movie: 2.5}
            assert master.execute_command("WAIT", 1, 10_000) == 1  # the replica caught up
        again = upsert(stub, FIRST_USER + 1, movie, 2.5)
        assert not again.created and list(again.features.ratings.values) == [2.5]


def until_ok(write, codes: dict[str, int]):
    """Retry `write()` until it succeeds; every failure must be UNAVAILABLE (counted by
    message in `codes`)."""
    while True:
        try:
            return write()
        except grpc.RpcError as error:
            assert error.code() == grpc.StatusCode.UNAVAILABLE, error.details()
            codes[error.details()] = codes.get(error.details(), 0) + 1
            assert sum(codes.values()) < 200, codes
            time.sleep(0.05)


@pytest.mark.parametrize("n_replicas", [2, 1])
def test_a_failover_loses_no_acknowledged_write(n_replicas, data, tmp_path):
    """Writes acknowledged (each confirmed by a replica), then the master SIGKILLed: while
    the sentinels still name the dead master, writes and reads fail UNAVAILABLE; the
    sentinels promote a replica. With two replicas writes then succeed again (the other
    replica follows the new master); with one, the new master has no replica, so writes are
    applied but answered UNAVAILABLE until the old master, started again, has become its
    replica. Every write acknowledged before and after is on the new master."""
    # down after 3 s: with 1 s, a second of stall on a loaded machine once made the
    # sentinels fail over again, onto the restarted (empty) old master
    with LocalSentinel(tmp_path / "sentinel", n_replicas=n_replicas, down_after_ms=3000) as (
        sentinel
    ):
        with sync_client("", sentinels=sentinel.sentinels) as client:
            load_features(client, data.artifact, data.ratings, data.items)
        movies = [int(m) for m in data.index.item_ids[:10]]
        acknowledged: dict[int, dict[int, float]] = {}
        codes: dict[str, int] = {}

        def write(stub, n: int, stars: float):
            user, movie = FIRST_USER + n, movies[n % 10]
            upsert(stub, user, movie, stars)
            acknowledged[user] = {movie: stars}

        with feature_service(feature_settings(sentinel)) as (_, channel):
            wait_serving(channel)
            stub = feature_pb2_grpc.FeatureServiceStub(channel)
            for n in range(40):
                write(stub, n, float(n % 5 + 1))  # any error fails the test

            old = sentinel.master_address()
            sentinel.master.stop(kill=True)
            failed_write = code_of(lambda: upsert(stub, FIRST_USER + 100, movies[0], 3.0))
            failed_read = code_of(
                lambda: stub.GetUserFeatures(
                    pb.GetUserFeaturesRequest(user_id=FIRST_USER), timeout=5
                )
            )
            assert sentinel.master_address() == old  # both calls ran while no master served
            assert failed_write == failed_read == grpc.StatusCode.UNAVAILABLE

            new = sentinel.wait_for_failover(old)
            promoted = next(r for r in sentinel.replicas if r.port == int(new[1]))
            applied = {}
            if n_replicas == 1:
                n = 200
                while True:  # the new master takes the write, no replica confirms it
                    try:
                        upsert(stub, FIRST_USER + n, movies[n % 10], 2.0)
                    except grpc.RpcError as error:
                        assert error.code() == grpc.StatusCode.UNAVAILABLE, error.details()
                        if "applied on the master" in error.details():
                            applied[FIRST_USER + n] = {movies[n % 10]: 2.0}
                            break
                        codes[error.details()] = codes.get(error.details(), 0) + 1
                        assert sum(codes.values()) < 200, codes
                        time.sleep(0.05)
                    else:
                        raise AssertionError("a write was confirmed with no replica")
                sentinel.master.start()  # the sentinels make it a replica of the new master
                sentinel.wait_for_replicas(1)
            until_ok(lambda: write(stub, 300, 4.0), codes)
            for n in range(301, 321):
                write(stub, n, 1.0)
            read = stub.GetUserFeatures(pb.GetUserFeaturesRequest(user_id=FIRST_USER), timeout=5)
            ratings = read.features.ratings
            found = dict(zip(ratings.movie_ids, ratings.values, strict=True))
            assert found == acknowledged[FIRST_USER]
        with redis.Redis(host="127.0.0.1", port=promoted.port) as master:
            assert master.execute_command("ROLE")[0] == b"master"
            expected = acknowledged | applied
            stored = {
                user: layout.decode_ratings(master.hgetall(KEYS.ratings(user))) for user in expected
            }
        assert stored == expected
