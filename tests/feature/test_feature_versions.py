"""Online writes and version switches in the feature store, each test on a real Redis and on
a real Redis Cluster: ratings written online survive a new load (raw ratings are the source
of truth), every live version's features follow each write atomically, old namespaces are
removed after a switch."""

import numpy as np
import pytest

from recsys.errors import NotFound
from recsys.features import Normalization
from recsys.featurestore import layout
from recsys.featurestore.layout import KeyLayout
from recsys.featurestore.loader import load_features
from recsys.featurestore.writes import compute_features
from tests.support.feature_data import VERSION, build_feature_data, with_store, write_artifact

KEYS = KeyLayout("recsys")
NEW_USER = 700001


@pytest.fixture(scope="module")
def data(synthetic_dir, tmp_path_factory):
    return build_feature_data(synthetic_dir, tmp_path_factory.mktemp("version-artifacts"))


def next_artifact(data, tmp_path, version: str, shift: float):
    """Another version of the same items with different item means."""
    shifted = Normalization(data.normalization.global_mean + shift, data.normalization.item_means)
    return write_artifact(tmp_path / version, version, data.index, shifted, data.items), shifted


def stored(redis_backend, version, user_id):
    users = with_store(redis_backend, lambda store: store.get_users(version, [user_id]))
    return users.get(user_id)


def test_upsert_creates_a_user_and_recomputes_features(redis_backend, client, data):
    load_features(client, data.artifact, data.ratings, data.items)
    movie = int(data.index.item_ids[0])
    user, created = with_store(
        redis_backend, lambda s: s.upsert_ratings(NEW_USER, {movie: 4.0, 999999: 3.0}, VERSION)
    )
    assert created and user.ratings == {movie: 4.0, 999999: 3.0}
    expected = compute_features(user.ratings, data.index, data.normalization)
    assert user.user_mean == pytest.approx(expected.user_mean)
    assert stored(redis_backend, VERSION, NEW_USER).preferences[0].tolist() == [movie]
    assert client.get(KEYS.revision(NEW_USER)) == b"1"
    again, created = with_store(
        redis_backend, lambda s: s.upsert_ratings(NEW_USER, {movie: 2.0}, VERSION)
    )
    assert (
        not created and again.ratings[movie] == 2.0 and client.get(KEYS.revision(NEW_USER)) == b"2"
    )


def test_delete_ratings_and_user(redis_backend, client, data):
    load_features(client, data.artifact, data.ratings, data.items)
    before = stored(redis_backend, VERSION, 1)
    first, second = sorted(before.ratings)[:2]
    user, missing = with_store(
        redis_backend, lambda s: s.delete_ratings(1, [first, 424242], VERSION)
    )
    assert missing == [424242] and first not in user.ratings and second in user.ratings
    assert stored(redis_backend, VERSION, 1).ratings == user.ratings
    count = with_store(redis_backend, lambda s: s.delete_user(1))
    assert count == len(before.ratings) - 1
    assert stored(redis_backend, VERSION, 1) is None
    assert client.exists(KEYS.user(VERSION, 1)) == 0
    with pytest.raises(NotFound):
        with_store(redis_backend, lambda s: s.delete_user(1))
    with pytest.raises(NotFound):
        with_store(redis_backend, lambda s: s.delete_ratings(1, [first], VERSION))


def test_a_new_load_carries_online_writes_over(redis_backend, client, data, tmp_path):
    load_features(client, data.artifact, data.ratings, data.items)
    movie = int(data.index.item_ids[5])
    with_store(redis_backend, lambda s: s.upsert_ratings(3, {movie: 1.0}, VERSION))
    with_store(redis_backend, lambda s: s.upsert_ratings(NEW_USER, {movie: 5.0}, VERSION))
    with_store(redis_backend, lambda s: s.delete_user(2))
    ratings_of_3 = stored(redis_backend, VERSION, 3).ratings

    second, shifted = next_artifact(data, tmp_path, "20260105T000000000000Z", 0.25)
    summary = load_features(client, second, data.ratings, data.items)
    assert client.get(KEYS.active()) == b"20260105T000000000000Z"
    after = stored(redis_backend, "20260105T000000000000Z", 3)
    assert after.ratings == ratings_of_3 and after.ratings[movie] == 1.0  # the online write won
    expected = compute_features(after.ratings, data.index, shifted)  # under the new means
    assert after.user_mean == pytest.approx(expected.user_mean)
    np.testing.assert_allclose(after.preferences[1], expected.preferences, rtol=1e-6)
    assert stored(redis_backend, "20260105T000000000000Z", NEW_USER).ratings == {movie: 5.0}
    assert stored(redis_backend, "20260105T000000000000Z", 2) is None  # deleted stays deleted
    assert summary.retired_versions == []  # the previous version stays until the next load
    assert set(client.hgetall(KEYS.versions())) == {VERSION.encode(), b"20260105T000000000000Z"}

    third, _ = next_artifact(data, tmp_path, "20260106T000000000000Z", -0.25)
    summary = load_features(client, third, data.ratings, data.items)
    assert summary.retired_versions == [VERSION]
    assert not list(client.scan_iter(match=KEYS.version_pattern(VERSION)))
    assert set(client.hgetall(KEYS.versions())) == {
        b"20260105T000000000000Z",
        b"20260106T000000000000Z",
    }


def test_writes_maintain_every_live_version(redis_backend, client, data, tmp_path):
    load_features(client, data.artifact, data.ratings, data.items)
    second, shifted = next_artifact(data, tmp_path, "20260105T000000000000Z", 0.5)
    load_features(client, second, data.ratings, data.items)
    movie = int(data.index.item_ids[7])
    with_store(redis_backend, lambda s: s.upsert_ratings(4, {movie: 5.0}, VERSION))
    for version, normalization in (
        (VERSION, data.normalization),
        ("20260105T000000000000Z", shifted),
    ):
        raw = client.hmget(KEYS.user(version, 4), layout.USER_MEAN, layout.USER_PREFS)
        ratings = stored(redis_backend, version, 4).ratings
        expected = compute_features(ratings, data.index, normalization)
        assert layout.decode_user_mean(raw[0]) == pytest.approx(expected.user_mean)
        assert layout.decode_preferences(raw[1])[0].tolist() == expected.movie_ids.tolist()


def test_replace_ratings_makes_the_dataset_win(redis_backend, client, data, tmp_path):
    load_features(client, data.artifact, data.ratings, data.items)
    movie = int(data.index.item_ids[5])
    with_store(redis_backend, lambda s: s.upsert_ratings(3, {movie: 1.0}, VERSION))
    second, _ = next_artifact(data, tmp_path, "20260105T000000000000Z", 0.0)
    load_features(client, second, data.ratings, data.items, replace_ratings=True)
    mine = data.ratings[data.ratings["user_id"] == 3]
    dataset = dict(zip(mine["item_id"], mine["rating"].astype(float), strict=True))
    assert stored(redis_backend, "20260105T000000000000Z", 3).ratings == dataset


def test_the_feature_service_writes_and_reads_through_grpc(redis_backend, client, data):
    """The production factory with the backend's client (a Cluster client on a Cluster, a
    Sentinel-managed one on Sentinel)."""
    from recsys.api.feature.v1 import feature_pb2, feature_pb2_grpc
    from services.feature.server import connect_redis, create_server
    from tests.support.servers import serving, wait_serving

    load_features(client, data.artifact, data.ratings, data.items)
    settings = redis_backend.settings(feature_port=0)  # with Sentinel: WAIT for the replica

    async def factory():
        return await create_server(settings, connect_redis(settings))

    movie = int(data.index.item_ids[3])
    with serving(factory) as (_, channel):
        wait_serving(channel)
        stub = feature_pb2_grpc.FeatureServiceStub(channel)
        written = stub.UpsertRatings(
            feature_pb2.UpsertRatingsRequest(
                user_id=NEW_USER, ratings=[feature_pb2.Rating(movie_id=movie, rating=4.5)]
            ),
            timeout=10,
        )
        assert written.created and written.features.model_version == VERSION
        read = stub.BatchGetUserFeatures(
            feature_pb2.BatchGetUserFeaturesRequest(user_ids=[NEW_USER, 1, 2, 3]), timeout=10
        )
        assert [f.user_id for f in read.features] == [NEW_USER, 1, 2, 3]
        assert read.features[0] == written.features
        deleted = stub.DeleteUser(feature_pb2.DeleteUserRequest(user_id=NEW_USER), timeout=10)
        assert deleted.ratings_deleted == 1


def test_a_delete_reaches_a_version_still_loading_and_a_load_never_restores(
    redis_backend, client, data, tmp_path
):
    """A delete removes the user's features under every registered version, including one
    whose load is under way, and the load that follows does not bring the user back. (The
    delete is a compare-and-set on the user's revision like every write, so a version
    registered between its read and its write makes it read again.)"""
    load_features(client, data.artifact, data.ratings, data.items)
    second, shifted = next_artifact(data, tmp_path, "20260105T000000000000Z", 0.1)
    new = "20260105T000000000000Z"  # a load that has registered its version, no users yet
    client.hset(
        KEYS.meta(new),
        mapping={
            "status": "loading",
            "rating_min": "1.0",
            "rating_max": "5.0",
            "global_mean": repr(shifted.global_mean),
        },
    )
    client.set(KEYS.items(new), layout.encode_item_ids(data.index.item_ids))
    client.set(KEYS.item_means(new), layout.encode_item_means(shifted.item_means))
    client.hset(KEYS.versions(), new, "loading")
    with_store(
        redis_backend, lambda s: s.upsert_ratings(9, {int(data.index.item_ids[0]): 3.0}, VERSION)
    )
    count = with_store(redis_backend, lambda s: s.delete_user(9))
    assert count > 0
    assert not client.exists(KEYS.user(new, 9))
    assert not client.exists(KEYS.user(VERSION, 9)) and not client.exists(KEYS.ratings(9))
    load_features(client, second, data.ratings, data.items)  # clears the unfinished load
    assert stored(redis_backend, "20260105T000000000000Z", 9) is None


def test_replacing_ratings_leaves_no_stale_features_under_live_versions(
    redis_backend, client, data, tmp_path
):
    load_features(client, data.artifact, data.ratings, data.items)
    with_store(redis_backend, lambda s: s.upsert_ratings(3, {99999: 4.0}, VERSION))
    second, _ = next_artifact(data, tmp_path, "20260105T000000000000Z", 0.0)
    load_features(client, second, data.ratings, data.items, replace_ratings=True)
    for version in (VERSION, "20260105T000000000000Z"):  # previous and new: same ratings
        assert 99999 not in stored(redis_backend, version, 3).ratings


def test_users_with_thousands_of_ratings_load(redis_backend, client, data):
    """Lua's unpack() cannot take 10,000 values at once: the script sends them in chunks."""
    import pandas as pd

    big = pd.DataFrame(
        {"user_id": 123456, "item_id": range(1, 5001), "rating": 4.0, "timestamp": 0}
    )
    ratings = pd.concat([data.ratings, big], ignore_index=True)
    load_features(client, data.artifact, ratings, data.items)
    assert len(stored(redis_backend, VERSION, 123456).ratings) == 5000


def test_a_load_keeps_the_last_of_repeated_pairs_in_any_row_order(redis_backend, client, data):
    """The loader sorts the dataset itself: users in any order, a (user, movie) pair given
    twice keeps the rating given last."""
    import pandas as pd

    movies = [int(m) for m in data.index.item_ids[:3]]
    extra = pd.DataFrame(
        {
            "user_id": [NEW_USER + 1, NEW_USER, NEW_USER + 1, NEW_USER, NEW_USER],
            "item_id": [movies[0], movies[1], movies[0], movies[2], movies[1]],
            "rating": [1.0, 2.0, 5.0, 3.0, 4.0],
            "timestamp": 0,
        }
    )
    shuffled = data.ratings.sample(frac=1.0, random_state=7)
    load_features(
        client, data.artifact, pd.concat([extra, shuffled], ignore_index=True), data.items
    )
    assert stored(redis_backend, VERSION, NEW_USER).ratings == {movies[1]: 4.0, movies[2]: 3.0}
    assert stored(redis_backend, VERSION, NEW_USER + 1).ratings == {movies[0]: 5.0}
    mine = data.ratings[data.ratings["user_id"] == 3]
    dataset = dict(zip(mine["item_id"], mine["rating"].astype(float), strict=True))
    assert stored(redis_backend, VERSION, 3).ratings == dataset


def test_a_load_without_data_rows_recomputes_the_users_redis_has(
    redis_backend, client, data, tmp_path
):
    """Redis's ratings are the source of truth: a new version loaded with an empty ratings
    table still gets every stored user's features."""
    load_features(client, data.artifact, data.ratings, data.items)
    second, shifted = next_artifact(data, tmp_path, "20260107T000000000000Z", 0.1)
    summary = load_features(client, second, data.ratings.iloc[:0], data.items)
    assert summary.users == data.ratings["user_id"].nunique()
    assert summary.ratings == len(data.ratings)
    after = stored(redis_backend, "20260107T000000000000Z", 3)
    expected = compute_features(after.ratings, data.index, shifted)
    assert after.user_mean == pytest.approx(expected.user_mean)
