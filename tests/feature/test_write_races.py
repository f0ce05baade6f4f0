"""Writes racing each other and their deadlines: last writer wins per movie by acceptance
stamp (deletions and DeleteUser included), a write past its deadline is never applied, one
user's writes are serialized and merged in the process (hundreds of concurrent writers on
one user: none fails, none is lost), and the compare-and-set across replicas gives up
with ABORTED only after its retries, with nothing half-applied. Real Redis and a real Redis
Cluster, real feature services over gRPC."""

from __future__ import annotations

import asyncio
import threading
import time

import grpc
import numpy as np
import pytest
import redis

from recsys.api.feature.v1 import feature_pb2 as pb
from recsys.api.feature.v1 import feature_pb2_grpc
from recsys.errors import Aborted, DeadlineExceeded, NotFound
from recsys.featurestore import layout
from recsys.featurestore.layout import KeyLayout
from recsys.featurestore.loader import load_features
from recsys.featurestore.writes import (
    APPLY_SCRIPT,
    MAX_ATTEMPTS,
    PAST_DEADLINE,
    DeleteRatings,
    DeleteUser,
    Upsert,
    UserState,
    apply_args,
    apply_change,
    compute_features,
    state_diff,
)
from recsys.serving.errors import field_violations
from services.feature.server import connect_redis, create_server
from services.feature.store import FeatureStore
from tests.support.feature_data import VERSION, build_feature_data, with_store
from tests.support.servers import ServiceThread, wait_serving

KEYS = KeyLayout("recsys")
T = 1_764_633_600_000_000  # µs since the Unix epoch: 2025-12-02
NEW_USER = 600001


@pytest.fixture(scope="module")
def data(synthetic_dir, tmp_path_factory):
    return build_feature_data(synthetic_dir, tmp_path_factory.mktemp("race-artifacts"))


@pytest.fixture
def loaded(client, data):
    load_features(client, data.artifact, data.ratings, data.items)
    return data


@pytest.fixture
def loaded_single(redis_url, data):
    """The data loaded into the session's single Redis (for tests of one backend)."""
    with redis.Redis.from_url(redis_url) as client:
        load_features(client, data.artifact, data.ratings, data.items)
    return data


def movies(data, n: int) -> list[int]:
    return [int(m) for m in data.index.item_ids[:n]]


# --- the rule, on its own -------------------------------------------------------------------


def test_an_older_write_never_replaces_a_newer_one_movie_by_movie():
    state = UserState({1: 4.0})  # bulk loaded: no stamp
    assert apply_change(state, 7, Upsert({1: 2.0, 2: 5.0}, T + 10)).applied == 2
    late = apply_change(state, 7, Upsert({1: 3.0, 2: 1.0, 3: 1.0}, T + 5))
    assert late.applied == 1 and state.ratings == {1: 2.0, 2: 5.0, 3: 1.0}
    assert state.stamps == {1: T + 10, 2: T + 10, 3: T + 5}
    assert apply_change(state, 7, Upsert({1: 3.0}, T + 10)).applied == 0  # equal: not newer
    superseded = apply_change(state, 7, Upsert({1: 1.0, 2: 1.0}, T + 1))
    assert superseded.applied == 0 and not superseded.created
    assert superseded.ratings == {1: 2.0, 2: 5.0, 3: 1.0}  # what the caller is answered


def test_a_deletion_leaves_a_tombstone_that_an_older_write_cannot_pass():
    state = UserState({1: 4.0, 2: 3.0})
    deleted = apply_change(state, 7, DeleteRatings((1, 9), T + 10))
    assert deleted.missing == (9,) and state.ratings == {2: 3.0}
    assert state.stamps == {1: T + 10, 9: T + 10}  # 9 was not rated: a tombstone all the same
    assert apply_change(state, 7, Upsert({1: 5.0, 9: 5.0}, T + 9)).applied == 0
    assert apply_change(state, 7, Upsert({1: 5.0}, T + 11)).applied == 1
    assert state.ratings == {1: 5.0, 2: 3.0}
    # a deletion accepted before a rating does not remove it
    assert apply_change(state, 7, DeleteRatings((1,), T + 10)).applied == 0
    assert state.ratings[1] == 5.0


def test_delete_user_removes_what_came_before_it_and_refuses_what_was_accepted_before_it():
    state = UserState({1: 4.0, 2: 3.0}, {2: T + 30})
    gone = apply_change(state, 7, DeleteUser(T + 20))
    assert gone.removed == 1 and state.ratings == {2: 3.0}  # rating 2 was accepted after it
    assert state.deleted_us == T + 20 and state.stamps == {2: T + 30}
    assert apply_change(state, 7, DeleteUser(T + 40)).removed == 1 and state.ratings == {}
    assert state.stamps == {}  # every movie stamp is older than the deletion: dropped
    late = apply_change(state, 7, Upsert({1: 5.0, 3: 5.0}, T + 39))
    assert late.applied == 0 and not late.created and state.ratings == {}
    anew = apply_change(state, 7, Upsert({3: 2.0}, T + 41))
    assert anew.created and state.ratings == {3: 2.0}
    with pytest.raises(NotFound):
        apply_change(UserState({}), 7, DeleteUser(T))
    with pytest.raises(NotFound):
        apply_change(UserState({}), 7, DeleteRatings((1,), T))


def test_the_diff_names_every_field_that_changes():
    before = UserState({1: 4.0, 2: 3.0}, {2: T + 1})
    after = before.copy()
    apply_change(after, 7, Upsert({1: 4.0, 5: 1.0}, T + 2))  # 1: same stars, a new stamp
    apply_change(after, 7, DeleteUser(T + 3))
    apply_change(after, 7, Upsert({6: 2.0}, T + 4))
    diff = state_diff(before, after)
    assert diff.to_set == {6: 2.0} and sorted(diff.to_delete) == [1, 2]
    assert diff.stamps_set == {b"6": T + 4, layout.STAMP_USER_DELETED: T + 3}
    assert diff.stamps_delete == [b"2"]
    assert not state_diff(before, before.copy())


# --- the script -----------------------------------------------------------------------------


def test_the_script_refuses_to_apply_after_the_deadline(redis_backend, client):
    """Redis compares the deadline with its own clock (TIME) before anything else."""
    keys = [KEYS.ratings(NEW_USER), KEYS.revision(NEW_USER), KEYS.stamps(NEW_USER)]

    def apply(deadline_us: int):
        args = apply_args(
            0, {1: 4.0}, [], {1: 4.0}, [], stamps_set={b"1": T}, deadline_us=deadline_us
        )
        return client.eval(APPLY_SCRIPT, len(keys), *keys, *args)

    redis_now_us = int(client.time()[0]) * 1_000_000
    assert apply(redis_now_us - 1_000_000) == PAST_DEADLINE
    assert client.exists(*keys) == 0  # nothing at all
    assert apply(redis_now_us + 60_000_000) == 1
    assert client.hgetall(keys[0]) == {b"1": b"4"} and client.hgetall(keys[2]) == {b"1": b"%d" % T}


# --- the store ------------------------------------------------------------------------------


def test_the_store_keeps_the_newest_write_and_answers_a_superseded_one(redis_backend, loaded):
    first, second = movies(loaded, 2)

    async def body(store: FeatureStore):
        newer = await store.upsert_ratings(NEW_USER, {first: 5.0}, VERSION, accepted_at_us=T + 2)
        older = await store.upsert_ratings(
            NEW_USER, {first: 1.0, second: 2.0}, VERSION, accepted_at_us=T + 1
        )
        stale = await store.upsert_ratings(NEW_USER, {first: 3.0}, VERSION, accepted_at_us=T)
        return newer, older, stale, (await store.get_users(VERSION, [NEW_USER]))[NEW_USER]

    (newer, created), (older, again), (stale, never), stored = with_store(redis_backend, body)
    assert created and not again and not never
    assert older.ratings == {first: 5.0, second: 2.0}  # second was new, first had a newer one
    assert stale.ratings == stored.ratings == older.ratings  # superseded: the current features
    assert stale.user_mean == pytest.approx(stored.user_mean)


def test_a_late_write_accepted_before_delete_user_does_not_bring_the_user_back(
    redis_backend, client, loaded
):
    movie = movies(loaded, 1)[0]

    async def body(store: FeatureStore):
        await store.upsert_ratings(NEW_USER, {movie: 4.0}, VERSION, accepted_at_us=T + 1)
        removed = await store.delete_user(NEW_USER, accepted_at_us=T + 10)
        late, created_late = await store.upsert_ratings(
            NEW_USER, {movie: 2.0}, VERSION, accepted_at_us=T + 5
        )
        gone = await store.get_users(VERSION, [NEW_USER])
        anew, created_anew = await store.upsert_ratings(
            NEW_USER, {movie: 3.0}, VERSION, accepted_at_us=T + 11
        )
        return removed, late, created_late, gone, anew, created_anew

    removed, late, created_late, gone, anew, created_anew = with_store(redis_backend, body)
    assert removed == 1 and gone == {}
    assert late.ratings == {} and not created_late  # superseded: no user to show
    assert anew.ratings == {movie: 3.0} and created_anew
    assert client.hgetall(KEYS.stamps(NEW_USER)) == {
        b"deleted": b"%d" % (T + 10),
        str(movie).encode(): b"%d" % (T + 11),
    }


def test_a_bulk_load_keeps_online_writes_and_their_stamps(redis_backend, client, loaded, tmp_path):
    """Bulk-loaded ratings have no stamp, so any online write replaces them; a load of a new
    version keeps the online ratings and their stamps, so a late write accepted before one
    of them still loses afterwards."""
    from tests.feature.test_feature_versions import next_artifact

    movie = movies(loaded, 1)[0]
    with_store(
        redis_backend, lambda s: s.upsert_ratings(1, {movie: 1.0}, VERSION, accepted_at_us=T)
    )
    second, _ = next_artifact(loaded, tmp_path, "20260105T000000000000Z", 0.25)
    load_features(client, second, loaded.ratings, loaded.items)
    assert client.hget(KEYS.stamps(1), str(movie)) == b"%d" % T
    new = "20260105T000000000000Z"
    late, _ = with_store(
        redis_backend, lambda s: s.upsert_ratings(1, {movie: 5.0}, new, accepted_at_us=T - 1)
    )
    assert late.ratings[movie] == 1.0
    users = with_store(redis_backend, lambda s: s.get_users(new, [1]))
    assert users[1].ratings[movie] == 1.0


def stall(until, interrupted: threading.Event | None = None):
    """A before_apply hook that holds a round until `until()` returns, and that the round's
    own deadline cannot interrupt (as a stalled process): the script is sent late. The
    deadline's attempt to end the wait sets `interrupted`."""

    async def hold(user_id, changes):
        while True:
            try:
                return await until(changes)
            except asyncio.CancelledError:
                if interrupted is not None:
                    interrupted.set()

    return hold


def test_a_script_reaching_redis_after_the_deadline_is_refused(redis_backend, client, loaded):
    """A write held between its read and its script until its deadline has passed (its
    caller got DEADLINE_EXCEEDED), then released: Redis compares the deadline with its own
    clock and applies nothing, though the revision has not moved."""
    movie = movies(loaded, 1)[0]
    before = client.hgetall(KEYS.ratings(3))

    async def body():
        async_client = redis_backend.asyncio()
        store = FeatureStore(async_client, "recsys")
        held, release = asyncio.Event(), asyncio.Event()

        async def until_released(changes):
            held.set()
            await release.wait()

        store.before_apply = stall(until_released)
        try:
            write = asyncio.ensure_future(
                store.upsert_ratings(3, {movie: 1.5}, VERSION, accepted_at_us=T, timeout_s=2.0)
            )
            # 2 s: time for the round to start even on a loaded machine (a write whose
            # deadline passes before its round starts is refused before it is ever held)
            await asyncio.wait_for(held.wait(), 30)
            with pytest.raises(DeadlineExceeded):
                await write  # the caller's time ran out while the write was held
            release.set()
            while len(store._serial):  # the held round finishes
                await asyncio.sleep(0.01)
        finally:
            await async_client.aclose()

    revision = client.get(KEYS.revision(3))
    asyncio.run(body())
    assert client.get(KEYS.revision(3)) == revision
    assert client.hgetall(KEYS.ratings(3)) == before and not client.exists(KEYS.stamps(3))


def test_compare_and_set_exhaustion_is_aborted_with_nothing_half_applied(
    redis_backend, client, loaded
):
    """Replica A loses every race: between its read and its script, replica B writes the
    user. A answers ABORTED after MAX_ATTEMPTS rounds; none of A's change is in Redis, and
    the user's hash agrees with their ratings (B's writes, all of them)."""
    mine, rivals = movies(loaded, 2)

    async def body():
        clients = [redis_backend.asyncio(), redis_backend.asyncio()]
        a, b = (FeatureStore(c, "recsys") for c in clients)
        rounds = []

        async def rival(user_id, changes):
            rounds.append(changes)
            stars = float(len(rounds) % 5 + 1)
            await b.upsert_ratings(2, {rivals: stars}, VERSION, accepted_at_us=T + len(rounds))

        a.before_apply = rival
        try:
            with pytest.raises(Aborted):
                await a.upsert_ratings(2, {mine: 4.5}, VERSION, accepted_at_us=T + 10**9)
            return rounds
        finally:
            for c in clients:
                await c.aclose()

    before, revision = client.hgetall(KEYS.ratings(2)), int(client.get(KEYS.revision(2)))
    rounds = asyncio.run(body())
    assert len(rounds) == MAX_ATTEMPTS
    ratings = layout.decode_ratings(client.hgetall(KEYS.ratings(2)))
    assert ratings.get(mine) == layout.decode_ratings(before).get(mine)  # untouched
    assert ratings[rivals] == float(MAX_ATTEMPTS % 5 + 1)
    assert client.hgetall(KEYS.stamps(2)) == {str(rivals).encode(): b"%d" % (T + MAX_ATTEMPTS)}
    assert int(client.get(KEYS.revision(2))) == revision + MAX_ATTEMPTS  # B's writes only
    mean, packed = client.hmget(KEYS.user(VERSION, 2), "mean", "ratings")
    assert layout.decode_packed_ratings(packed) == ratings
    expected = compute_features(ratings, loaded.index, loaded.normalization)
    assert layout.decode_user_mean(mean) == pytest.approx(expected.user_mean)


# --- through the feature service ------------------------------------------------------------


def feature_service(backend) -> ServiceThread:
    settings = backend.settings(feature_port=0)

    async def factory():
        client = connect_redis(settings)
        service = await create_server(settings, client)
        service.on_stop(client.aclose)
        return service

    return ServiceThread(factory).start()


def upsert_request(user_id: int, ratings: dict[int, float], stamp: int) -> pb.UpsertRatingsRequest:
    return pb.UpsertRatingsRequest(
        user_id=user_id,
        ratings=[pb.Rating(movie_id=m, rating=r) for m, r in ratings.items()],
        accepted_at_us=stamp,
    )


def stored_ratings(address: str, user_id: int) -> dict[int, float]:
    with grpc.insecure_channel(address) as channel:
        reply = feature_pb2_grpc.FeatureServiceStub(channel).GetUserFeatures(
            pb.GetUserFeaturesRequest(user_id=user_id), timeout=10
        )
    ratings = reply.features.ratings
    return dict(zip(ratings.movie_ids, ratings.values, strict=True))


@pytest.mark.parametrize("writers", [64, 256])
def test_hundreds_of_concurrent_writers_on_one_user_none_fails_none_is_lost(
    redis_backend, client, loaded, writers
):
    """`writers` UpsertRatings at once on one stored user, each of 10 distinct movies out of
    30, 2 s deadline, stamps in an order unrelated to arrival: every call OK, and every
    movie holds the value of the write with the newest stamp among those that wrote it."""
    pool = movies(loaded, 30)
    rng = np.random.default_rng(writers)
    stamps = T + rng.permutation(writers) * 10
    writes = [
        (
            {int(m): float(rng.integers(1, 6)) for m in rng.choice(pool, 10, replace=False)},
            int(stamps[w]),
        )
        for w in range(writers)
    ]
    user = 5
    running = feature_service(redis_backend)
    try:
        with grpc.insecure_channel(running.address) as channel:
            wait_serving(channel, timeout=10)
        revision_before = int(client.get(KEYS.revision(user)) or 0)

        async def write_all():
            async with grpc.aio.insecure_channel(running.address) as channel:
                stub = feature_pb2_grpc.FeatureServiceStub(channel)

                async def one(ratings, stamp):
                    started = time.perf_counter()
                    try:
                        await stub.UpsertRatings(upsert_request(user, ratings, stamp), timeout=2)
                        code = grpc.StatusCode.OK
                    except grpc.aio.AioRpcError as error:
                        code = error.code()
                    return code, time.perf_counter() - started

                return await asyncio.gather(*(one(r, s) for r, s in writes))

        results = asyncio.run(write_all())
        stored = stored_ratings(running.address, user)
        rounds = int(client.get(KEYS.revision(user))) - revision_before
    finally:
        running.stop()
    failed = [code for code, _ in results if code != grpc.StatusCode.OK]
    newest: dict[int, tuple[int, float]] = {}
    for ratings, stamp in writes:
        for movie, stars in ratings.items():
            if stamp > newest.get(movie, (0, 0.0))[0]:
                newest[movie] = (stamp, stars)
    lost = [m for m, (_, stars) in newest.items() if stored.get(m) != stars]
    p99 = float(np.percentile([seconds for _, seconds in results], 99))
    backend = (
        "cluster" if redis_backend.cluster else "sentinel" if redis_backend.sentinels else "single"
    )
    print(f"\n{writers} writers ({backend}): failed {len(failed)}, lost {len(lost)}, "
          f"p99 {p99 * 1000:.0f} ms, {rounds} rounds")  # fmt: skip
    assert failed == [] and lost == []
    assert client.hgetall(KEYS.stamps(user)) == {
        str(m).encode(): b"%d" % stamp for m, (stamp, _) in newest.items()
    }
    packed = client.hget(KEYS.user(VERSION, user), "ratings")
    assert layout.decode_packed_ratings(packed) == stored  # the features followed the ratings


def test_a_held_write_past_its_deadline_loses_to_a_newer_one(redis_url, loaded_single, monkeypatch):
    """Two feature service replicas. Replica A holds a write (rating 1) between its read and
    its script until the caller's deadline has passed: the caller gets DEADLINE_EXCEEDED.
    A newer write (rating 5) through replica B is acknowledged. Then A's write is released:
    the rating stays 5, and A applied nothing (the revision moved only for B's write and
    the one after it)."""
    from tests.conftest import RedisBackend

    backend = RedisBackend(redis_url, cluster=False)
    movie, other = movies(loaded_single, 2)
    old_stamp, new_stamp = T + 1, T + 2
    held, release = threading.Event(), threading.Event()

    async def until_released(changes):
        if any(change.stamp_us == old_stamp for change in changes):
            held.set()
            await asyncio.to_thread(release.wait, 30)

    monkeypatch.setattr(FeatureStore, "before_apply", staticmethod(stall(until_released)))
    replica_a, replica_b = feature_service(backend), feature_service(backend)
    codes = []
    try:
        with (
            grpc.insecure_channel(replica_a.address) as channel_a,
            grpc.insecure_channel(replica_b.address) as channel_b,
            redis.Redis.from_url(redis_url) as client,
        ):
            stub_a = feature_pb2_grpc.FeatureServiceStub(channel_a)
            stub_b = feature_pb2_grpc.FeatureServiceStub(channel_b)
            revision = int(client.get(KEYS.revision(4)) or 0)

            def old_write():
                try:
                    stub_a.UpsertRatings(upsert_request(4, {movie: 1.0}, old_stamp), timeout=1)
                    codes.append(grpc.StatusCode.OK)
                except grpc.RpcError as error:
                    codes.append(error.code())

            caller = threading.Thread(target=old_write)
            caller.start()
            assert held.wait(10)
            caller.join(10)
            assert codes == [grpc.StatusCode.DEADLINE_EXCEEDED]
            newer = stub_b.UpsertRatings(upsert_request(4, {movie: 5.0}, new_stamp), timeout=5)
            written = newer.features.ratings
            assert dict(zip(written.movie_ids, written.values, strict=True))[movie] == 5.0
            release.set()
            # queued behind the held round on replica A: answered once that round is over
            stub_a.UpsertRatings(upsert_request(4, {other: 2.0}, T + 3), timeout=10)
            stored = stored_ratings(replica_b.address, 4)
            assert stored[movie] == 5.0 and stored[other] == 2.0
            assert int(client.get(KEYS.revision(4))) == revision + 2
    finally:
        release.set()
        replica_a.stop()
        replica_b.stop()


def test_a_negative_stamp_is_invalid(redis_url, loaded_single):
    from tests.conftest import RedisBackend

    running = feature_service(RedisBackend(redis_url, cluster=False))
    try:
        with grpc.insecure_channel(running.address) as channel:
            stub = feature_pb2_grpc.FeatureServiceStub(channel)
            for call, request in (
                (stub.UpsertRatings, upsert_request(1, {movies(loaded_single, 1)[0]: 3.0}, -1)),
                (stub.DeleteRatings, pb.DeleteRatingsRequest(user_id=1, movie_ids=[1],
                                                             accepted_at_us=-1)),
                (stub.DeleteUser, pb.DeleteUserRequest(user_id=1, accepted_at_us=-5)),
            ):  # fmt: skip
                with pytest.raises(grpc.RpcError) as caught:
                    call(request, timeout=5)
                assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
                assert field_violations(caught.value)[0][0] == "accepted_at_us"
    finally:
        running.stop()


def test_the_feature_service_passes_the_callers_deadline_to_the_write(
    redis_url, loaded_single, monkeypatch
):
    """Through gRPC, a write stamped newest is held past the caller's deadline (1 s) and
    then released, with nothing written in between: only the deadline the servicer took
    from the call keeps it out. A later write queued behind it on the same replica lands."""
    from tests.conftest import RedisBackend

    movie, other = movies(loaded_single, 2)
    held, release, interrupted = threading.Event(), threading.Event(), threading.Event()

    async def until_released(changes):
        if any(change.stamp_us == T + 100 for change in changes):
            held.set()
            await asyncio.to_thread(release.wait, 30)

    hook = stall(until_released, interrupted)
    monkeypatch.setattr(FeatureStore, "before_apply", staticmethod(hook))
    running = feature_service(RedisBackend(redis_url, cluster=False))
    codes = []
    try:
        with (
            grpc.insecure_channel(running.address) as channel,
            redis.Redis.from_url(redis_url) as client,
        ):
            stub = feature_pb2_grpc.FeatureServiceStub(channel)
            before = stored_ratings(running.address, 6)
            revision = int(client.get(KEYS.revision(6)) or 0)

            def held_write():
                try:
                    stub.UpsertRatings(upsert_request(6, {movie: 1.0}, T + 100), timeout=1)
                    codes.append(grpc.StatusCode.OK)
                except grpc.RpcError as error:
                    codes.append(error.code())

            caller = threading.Thread(target=held_write)
            caller.start()
            assert held.wait(10)
            caller.join(10)
            # the service's own deadline (the call's, as it arrived: a little after the
            # client's) has passed once it tried to end the held round
            assert interrupted.wait(10)
            release.set()
            stub.UpsertRatings(upsert_request(6, {other: 2.0}, T + 1), timeout=10)
            after = stored_ratings(running.address, 6)
            assert int(client.get(KEYS.revision(6))) == revision + 1
    finally:
        release.set()
        running.stop()
    assert codes == [grpc.StatusCode.DEADLINE_EXCEEDED]
    assert after == {**before, other: 2.0}  # movie as loaded, never 1.0
