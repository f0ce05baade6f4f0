"""The loader and the FeatureStore against a real Redis: preferences identical to training's
normalization, ratings kept whole, the version activated last, one round trip per batch
read, and pagination that covers the catalog exactly once."""

import logging
import threading

import numpy as np
import pytest
import redis
import redis.asyncio

from recsys.artifacts import load_artifact, load_features_spec
from recsys.errors import FailedPrecondition, InvalidArgument, NotFound
from recsys.features import preference_matrix
from recsys.featurestore import layout
from recsys.featurestore.layout import KeyLayout
from recsys.featurestore.loader import load_features
from tests.support.feature_data import (
    NEXT_VERSION,
    OUTSIDER,
    VERSION,
    build_feature_data,
    with_store,
    write_artifact,
)

KEYS = KeyLayout("recsys")


@pytest.fixture(scope="module")
def data(synthetic_dir, tmp_path_factory):
    return build_feature_data(synthetic_dir, tmp_path_factory.mktemp("feature-artifacts"))


@pytest.fixture
def single_client(redis_url):
    """For the tests that watch one server's own counters or MONITOR stream."""
    with redis.Redis.from_url(redis_url) as client:
        yield client


@pytest.fixture
def loaded(client, data):
    return load_features(client, data.artifact, data.ratings, data.items, "recsys", batch_users=64)


def test_load_summary_and_meta(client, data, loaded):
    users = data.ratings["user_id"].nunique()
    assert (loaded.version, loaded.users, loaded.ratings) == (VERSION, users, len(data.ratings))
    assert loaded.items == len(data.index) == 80
    assert loaded.catalog_items == len(data.items)
    meta = {k.decode(): v.decode() for k, v in client.hgetall(KEYS.meta(VERSION)).items()}
    assert meta.pop("loaded_at").endswith("Z")
    assert meta == {
        "status": "ready",
        "global_mean": repr(data.normalization.global_mean),
        "rating_min": "1.0",
        "rating_max": "5.0",
        "item_count": "80",
        "user_count": str(users),
    }
    assert client.get(KEYS.active()) == VERSION.encode()
    assert client.get(KEYS.items(VERSION)) == layout.encode_item_ids(data.index.item_ids)
    assert client.get(KEYS.item_means(VERSION)) == data.normalization.item_means.tobytes()
    assert client.hgetall(KEYS.versions()) == {VERSION.encode(): b"ready"}
    assert loaded.memory_per_million_ratings() == (
        loaded.redis_used_memory / len(data.ratings) * 1e6
    )


def test_the_redis_memory_reported_is_every_masters(redis_backend, client, loaded):
    """used_memory of the one server, or the sum over a Cluster's masters (asked one by one
    here); within 10%: client buffers move it between two reads."""
    from recsys.featurestore.loader import redis_used_memory

    if redis_backend.cluster:
        servers = [redis.Redis(host=n.host, port=n.port) for n in client.get_primaries()]
    else:
        servers = [redis.Redis.from_url(redis_backend.url)]
    direct = 0
    for server in servers:
        with server:
            direct += server.info("memory")["used_memory"]
    assert redis_used_memory(client) == pytest.approx(direct, rel=0.1)
    assert loaded.redis_used_memory == pytest.approx(direct, rel=0.1)


def test_preferences_equal_training_normalization(redis_backend, data, loaded):
    expected = preference_matrix(data.ratings, data.index, data.normalization)
    users = with_store(redis_backend, lambda store: store.get_users(VERSION, expected.user_ids))
    assert sorted(users) == expected.user_ids.tolist()
    for row, user_id in enumerate(expected.user_ids.tolist()):
        user = users[user_id]
        low, high = expected.matrix.indptr[row], expected.matrix.indptr[row + 1]
        columns = expected.matrix.indices[low:high]
        order = np.argsort(data.index.item_ids[columns])
        movie_ids, values = user.preferences
        assert movie_ids.tolist() == data.index.item_ids[columns][order].tolist()
        np.testing.assert_allclose(values, expected.matrix.data[low:high][order], rtol=1e-6)
        # the same arithmetic summed in another order: equal to the last few ulps
        assert user.user_mean == pytest.approx(expected.user_means[row], rel=1e-12)
        assert user.model_version == VERSION
        mine = data.ratings[data.ratings["user_id"] == user_id]
        assert user.ratings == dict(
            zip(mine["item_id"].tolist(), mine["rating"].astype(float).tolist(), strict=True)
        )


def test_uncovered_items_are_in_ratings_not_in_preferences(redis_backend, data, loaded):
    users = with_store(redis_backend, lambda store: store.get_users(VERSION, [OUTSIDER, 1]))
    outsider = users[OUTSIDER]
    assert outsider.ratings == dict(zip(data.uncovered_items[:3], [4.5, 2.0, 5.0], strict=True))
    assert outsider.preferences[0].size == 0 and outsider.user_mean == 0.0
    uncovered = set(data.uncovered_items)
    regular = users[1]
    assert set(regular.ratings) & uncovered, "user 1 should have rated an uncovered item"
    assert not set(regular.preferences[0].tolist()) & uncovered
    assert set(regular.preferences[0].tolist()) == set(regular.ratings) - uncovered


def test_unknown_users_are_absent(redis_backend, loaded):
    users = with_store(redis_backend, lambda store: store.get_users(VERSION, [1, 424242, 1]))
    assert list(users) == [1]


def test_a_user_rated_after_the_load_is_derived_with_the_same_math(redis_backend, client, loaded):
    stored = with_store(redis_backend, lambda store: store.get_users(VERSION, [2]))[2]
    client.delete(KEYS.user(VERSION, 2))  # as if user 2 had rated after the load
    derived = with_store(redis_backend, lambda store: store.get_users(VERSION, [2]))[2]
    assert derived.ratings == stored.ratings
    assert derived.user_mean == pytest.approx(stored.user_mean, abs=1e-12)
    np.testing.assert_array_equal(derived.preferences[0], stored.preferences[0])
    np.testing.assert_allclose(derived.preferences[1], stored.preferences[1], rtol=1e-6)


class CountingConnection(redis.asyncio.Connection):
    """A real connection that counts its writes to the socket: one per round trip."""

    writes = 0

    async def send_packed_command(self, command, check_health=True):
        CountingConnection.writes += 1
        return await super().send_packed_command(command, check_health)


def command_calls(client, *commands):
    stats = client.info("commandstats")
    return [stats.get(f"cmdstat_{name}", {}).get("calls", 0) for name in commands]


def test_three_users_are_one_round_trip(redis_url, single_client, data):
    load_features(single_client, data.artifact, data.ratings, data.items, "recsys")

    async def body(store):
        await store.ping()  # connect (HELLO / CLIENT SETINFO) outside the measurement
        before_writes = CountingConnection.writes
        before_calls = command_calls(single_client, "hgetall", "hmget")
        users = await store.get_users(VERSION, [1, 2, 3])
        after_calls = command_calls(single_client, "hgetall", "hmget")
        return users, CountingConnection.writes - before_writes, before_calls, after_calls

    users, writes, before, after = with_store(redis_url, body, CountingConnection)
    assert sorted(users) == [1, 2, 3]
    assert writes == 1
    assert [a - b for a, b in zip(after, before, strict=True)] == [0, 3]  # HMGET only


def test_online_writes_call_the_script_by_its_sha_and_resend_it_only_after_noscript(
    redis_url, single_client, data
):
    load_features(single_client, data.artifact, data.ratings, data.items, "recsys")
    movies = data.index.item_ids[:2].tolist()
    single_client.script_flush()  # as after a restart or a failover: the script is gone
    before = command_calls(single_client, "evalsha", "eval")

    async def body(store):
        first = await store.upsert_ratings(1, {movies[0]: 1.0}, VERSION)
        second = await store.upsert_ratings(1, {movies[1]: 5.0}, VERSION)
        return first, second

    (first, _), (second, _) = with_store(redis_url, body)
    after = command_calls(single_client, "evalsha", "eval")
    # EVALSHA, NOSCRIPT, EVAL (caches it), then EVALSHA alone; commandstats count the failed
    # EVALSHA too
    assert [a - b for a, b in zip(after, before, strict=True)] == [2, 1]
    assert first.ratings[movies[0]] == 1.0
    assert (second.ratings[movies[0]], second.ratings[movies[1]]) == (1.0, 5.0)


def test_active_is_set_last(redis_url, single_client, data):
    """MONITOR sees the loader's writes in order: meta 'loading' first, the version
    registered before any user, users, meta 'ready', registry 'ready', then SET active."""
    commands: list[str] = []
    started = threading.Event()

    def watch():
        with redis.Redis.from_url(redis_url).monitor() as monitor:
            started.set()
            for entry in monitor.listen():
                commands.append(entry["command"])
                if entry["command"].startswith("SET recsys:active"):
                    return

    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    assert started.wait(5)
    load_features(single_client, data.artifact, data.ratings, data.items, "recsys", batch_users=100)
    watcher.join(30)
    assert not watcher.is_alive()
    writes = [c for c in commands if c.split(" ", 1)[0] in ("SET", "HSET", "ZADD", "EVALSHA")]
    meta = f"HSET recsys:ver:{VERSION}:meta"
    assert writes[0].startswith(meta) and "status loading" in writes[0]
    registered = writes.index(f"HSET recsys:versions {VERSION} loading")
    first_user = next(i for i, c in enumerate(writes) if c.startswith("EVALSHA"))
    assert registered < first_user  # online writes maintain the version before users load
    assert writes[-3].startswith(meta) and "status ready" in writes[-3]
    assert writes[-2] == f"HSET recsys:versions {VERSION} ready"
    assert writes[-1] == f"SET recsys:active {VERSION}"
    # one script call per user, by its SHA1: the script's text is sent once (SCRIPT LOAD)
    assert sum(c.startswith("EVALSHA") for c in writes) == data.ratings["user_id"].nunique()
    assert not [c for c in commands if c.startswith("EVAL ")]
    assert sum(c.startswith("SCRIPT LOAD") for c in commands) == 1


def test_a_second_version_switches_active(redis_backend, client, data, loaded, tmp_path):
    assert with_store(redis_backend, lambda store: store.resolve(None)) == VERSION
    shifted = type(data.normalization)(
        data.normalization.global_mean + 0.5, data.normalization.item_means
    )
    artifact = write_artifact(
        tmp_path / NEXT_VERSION, NEXT_VERSION, data.index, shifted, data.items
    )
    load_features(client, artifact, data.ratings, data.items, "recsys")
    assert client.get(KEYS.active()) == NEXT_VERSION.encode()

    async def body(store):
        newest = await store.resolve(None)
        old = await store.get_users(VERSION, [5])
        new = await store.get_users(newest, [5])
        return newest, old[5], new[5]

    newest, old, new = with_store(redis_backend, body)
    assert newest == NEXT_VERSION and new.model_version == NEXT_VERSION
    assert old.ratings == new.ratings
    assert new.user_mean == pytest.approx(old.user_mean - 0.5)


def test_a_ready_version_is_immutable_and_a_dead_load_is_cleared(client, data, loaded):
    with pytest.raises(FailedPrecondition, match="already loaded"):
        load_features(client, data.artifact, data.ratings, data.items, "recsys")
    client.hset(KEYS.meta(VERSION), "status", "loading")  # a load that died half way
    client.set(f"recsys:ver:{VERSION}:user:{{999999}}", "left over")
    load_features(client, data.artifact, data.ratings, data.items, "recsys")
    assert client.exists(f"recsys:ver:{VERSION}:user:{{999999}}") == 0
    assert client.hget(KEYS.meta(VERSION), "status") == b"ready"


def test_resolve_errors(redis_backend, client, data):
    def resolve(version):
        return with_store(redis_backend, lambda store: store.resolve(version))

    with pytest.raises(FailedPrecondition, match="no active model version"):
        resolve(None)
    client.hset(KEYS.meta(VERSION), "status", "loading")
    with pytest.raises(FailedPrecondition, match="still loading"):
        resolve(VERSION)
    with pytest.raises(NotFound, match="not loaded"):
        resolve("20990101T000000000000Z")
    with pytest.raises(InvalidArgument) as bad:
        resolve("v{1}")
    assert bad.value.field == "model_version"


def test_normalization_and_items(redis_backend, data, loaded):
    async def body(store):
        return (
            await store.normalization(VERSION),
            await store.get_items(VERSION, [1, 999999, 2]),
        )

    normalization, items = with_store(redis_backend, body)
    assert normalization.global_mean == data.normalization.global_mean
    assert normalization.item_ids.tolist() == data.index.item_ids.tolist()
    assert normalization.item_means.tolist() == data.normalization.item_means.tolist()
    assert (normalization.rating_min, normalization.rating_max) == (1.0, 5.0)
    assert sorted(items) == [1, 2]
    first = data.items.set_index("item_id").loc[1]
    assert items[1].title == first["title"]
    assert items[1].genres == tuple(first["genres"].split("|"))


def test_list_items_covers_the_catalog_exactly_once(redis_backend, data, loaded):
    async def body(store):
        pages, after = [], None
        while True:
            page = await store.list_items(VERSION, 7, after)
            pages.append(page)
            if page.last_movie_id is None:
                return pages
            after = page.last_movie_id

    pages = with_store(redis_backend, body)
    seen = [item.movie_id for page in pages for item in page.items]
    assert seen == sorted(data.items["item_id"].tolist())
    assert all(page.total_size == len(data.items) for page in pages)
    assert all(len(page.items) == 7 for page in pages[:-1]) and 1 <= len(pages[-1].items) <= 7


@pytest.mark.slow
def test_a_trained_artifact_loads_with_its_own_normalization(trained_run, client, redis_backend):
    source, run = trained_run
    spec = load_features_spec(run.artifact_path)
    artifact = load_artifact(run.artifact_path)
    assert spec.version == artifact.version
    assert spec.index.item_ids.tolist() == artifact.recommender.index.item_ids.tolist()
    assert spec.normalization.global_mean == artifact.recommender.normalization.global_mean
    np.testing.assert_array_equal(
        spec.normalization.item_means, artifact.recommender.normalization.item_means
    )
    summary = load_features(client, run.artifact_path, source.data.ratings, source.data.items)
    assert summary.users == source.data.ratings["user_id"].nunique()
    user = with_store(redis_backend, lambda store: store.get_users(spec.version, [1]))[1]
    ratings = {
        int(m): float(r)
        for m, r in source.data.ratings.query("user_id == 1")[["item_id", "rating"]].itertuples(
            index=False
        )
    }
    vector = artifact.recommender.user_vector(ratings)
    assert user.user_mean == pytest.approx(vector.user_mean)
    columns = artifact.recommender.index.columns(user.preferences[0])
    np.testing.assert_allclose(user.preferences[1], vector.preferences[columns], atol=1e-6)


@pytest.fixture
def root_logging():
    """Put the root logger back after a test that runs the CLI's configure_logging: its
    handler writes to capsys's stream, which is closed once the test ends."""
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    yield
    root.handlers[:] = handlers
    root.setLevel(level)


def test_cli_load_features(synthetic_dir, data, single_client, redis_url, capsys, root_logging):
    from recsys.cli import main

    argv = [
        "load-features",
        "--data",
        str(synthetic_dir),
        "--model-dir",
        str(data.artifact.parent),
        "--redis-url",
        redis_url,
        "--prefix",
        "other",
    ]
    assert main(argv) == 0
    out, err = capsys.readouterr()
    ratings = data.ratings[data.ratings["user_id"] != OUTSIDER]
    users = ratings["user_id"].nunique()
    assert out.startswith(f"model version {VERSION} active: {users} users, {len(ratings)} ratings")
    assert "; Redis used_memory " in out and " MB per million ratings)" in out
    # progress on stderr: not a terminal here, so whole lines, the last one complete
    progress = [line for line in err.splitlines() if line.startswith("load-features:")]
    assert progress and "\r" not in err
    assert f"{users}/{users}" in progress[-1] and "100%" in progress[-1]
    assert single_client.get(b"other:active") == VERSION.encode()
    assert single_client.get(KEYS.active()) is None
    assert main(argv) == 2  # a ready version is never overwritten
    assert "already loaded" in capsys.readouterr().err


def test_a_bad_prefix_is_refused_before_any_write(single_client, data):
    with pytest.raises(InvalidArgument) as bad:
        load_features(single_client, data.artifact, data.ratings, data.items, "a b")
    assert bad.value.field == "prefix" and single_client.dbsize() == 0


def test_sorted_ratings_are_used_in_place_and_any_order_gives_the_same_arrays(data):
    """MovieLens files are sorted by (user, movie): the loader reads the DataFrame's own
    columns, no copy of 25M ratings; shuffled rows with a repeated pair (the last given wins)
    give the same arrays."""
    import pandas as pd

    from recsys.featurestore.loader import DatasetRatings

    ordered = data.ratings.sort_values(["user_id", "item_id"], ignore_index=True)
    ordered["rating"] = ordered["rating"].astype(np.float32)
    in_place = DatasetRatings(ordered)
    assert np.shares_memory(in_place.movies, ordered["item_id"].to_numpy())
    assert np.shares_memory(in_place.stars, ordered["rating"].to_numpy())
    first = ordered.iloc[[0]].assign(rating=np.float32(0.5))  # given first: loses
    shuffled = pd.concat([first, ordered.sample(frac=1.0, random_state=3)], ignore_index=True)
    sorted_here = DatasetRatings(shuffled)
    for name in ("movies", "stars", "user_ids", "starts", "ends"):
        np.testing.assert_array_equal(getattr(sorted_here, name), getattr(in_place, name))
    starts, ends = in_place.spans(np.array([OUTSIDER, 424242, 1]))
    assert (ends - starts).tolist() == [3, 0, int((ordered["user_id"] == 1).sum())]
    starts, ends = DatasetRatings(ordered.iloc[:0]).spans(np.array([1, 2]))
    assert starts.tolist() == ends.tolist() == [0, 0]


def test_features_of_arrays_equal_training_normalization_bit_for_bit(data):
    """The loader's array path and the online path's dict path give the features of
    recsys.features.user_preferences exactly, uncovered movies and no ratings included."""
    from recsys.features import user_preferences
    from recsys.featurestore.writes import compute_features, features_of

    rng = np.random.default_rng(5)
    movies_pool = np.concatenate([data.index.item_ids, data.uncovered_items, [999_999]])
    for size in (0, 1, 3, 40, 90):
        movies = np.sort(rng.choice(movies_pool, size, replace=False))
        stars = rng.choice(np.arange(1, 11) / 2, size).astype(np.float32).astype(np.float64)
        ratings = dict(zip(movies.tolist(), stars.tolist(), strict=True))
        user = user_preferences(ratings, data.index, data.normalization)
        for features in (
            features_of(movies, stars, data.index, data.normalization),
            compute_features(ratings, data.index, data.normalization),
        ):
            assert features.user_mean == user.user_mean
            assert features.movie_ids.tolist() == user.movie_ids.tolist()
            assert features.preferences.tobytes() == user.preferences.astype(np.float32).tobytes()


def test_batches_hold_at_most_their_users_and_ratings():
    from recsys.featurestore.loader import _batches

    users = np.arange(1, 11)
    counts = np.array([5, 5, 5, 50, 1, 1, 1, 1, 1, 1])
    batches = [b.tolist() for b in _batches(users, counts, max_users=4, max_ratings=12)]
    # 5+5 ≤ 12; 5 alone (50 would pass 12); 50 alone (over the cap, but never split); then 4
    assert batches == [[1, 2], [3], [4], [5, 6, 7, 8], [9, 10]]
