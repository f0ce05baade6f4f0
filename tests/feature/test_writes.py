"""Online writes through the gateway: new users, upserts, deletions, read-your-writes,
validation, many concurrent writers on one user, and model versions switched while requests
flow. Real Redis, real services, real channels."""

import threading
import time
from concurrent.futures import ThreadPoolExecutor

import grpc
import numpy as np
import pytest
import redis

from recsys.api.feature.v1 import feature_pb2, feature_pb2_grpc
from recsys.api.gateway.v1 import gateway_pb2 as pb
from recsys.artifacts import load_artifact
from recsys.featurestore.loader import load_features
from recsys.model.config import PRESETS
from recsys.serving.errors import field_violations
from services.model.predictor import Predictor
from tests.conftest import TINY_TRAINING
from tests.support.stack import running_stack

pytestmark = pytest.mark.slow

NEW_USER = 800001


@pytest.fixture
def stack(trained_run, redis_url):
    with running_stack(trained_run, redis_url) as running:
        yield running


def rate(stack, user_id, ratings: dict[int, float]):
    return stack.stub.RateItems(
        pb.RateItemsRequest(
            user_id=user_id, ratings=[pb.Rating(movie_id=m, rating=r) for m, r in ratings.items()]
        ),
        timeout=10,
    )


def stored_ratings(stack, user_id) -> dict[int, float]:
    with grpc.insecure_channel(stack.features.address) as channel:
        reply = feature_pb2_grpc.FeatureServiceStub(channel).GetUserFeatures(
            feature_pb2.GetUserFeaturesRequest(user_id=user_id), timeout=10
        )
    ratings = reply.features.ratings
    return dict(zip(ratings.movie_ids, ratings.values, strict=True))


def test_a_new_user_is_created_and_recommended_at_once(stack):
    reply = rate(stack, NEW_USER, {1: 5.0, 5: 5.0, 2: 1.0, 99999: 4.0})
    assert reply.created and reply.user.user_id == NEW_USER
    assert reply.user.model_version == stack.artifact.version
    assert list(reply.user.unused_movie_ids) == [99999]  # stored, but not used by the model
    assert {r.movie_id for r in reply.user.ratings} == {1, 5, 2, 99999}
    recommended = stack.stub.Recommend(pb.RecommendRequest(user_id=NEW_USER, k=5), timeout=10)
    offline = stack.artifact.recommender.recommend({1: 5.0, 5: 5.0, 2: 1.0, 99999: 4.0}, 5)
    assert [i.movie_id for i in recommended.items] == [s.item_id for s in offline]
    np.testing.assert_allclose(
        [i.predicted_rating for i in recommended.items], [s.value for s in offline], rtol=1e-4
    )


def test_upserts_change_a_stored_users_recommendations(stack):
    before = stored_ratings(stack, 3)
    top = stack.stub.Recommend(pb.RecommendRequest(user_id=3, k=3), timeout=10).items[0].movie_id
    changed = next(iter(before))
    reply = rate(stack, 3, {changed: 1.0 if before[changed] > 3 else 5.0, top: 5.0})
    assert not reply.created
    after = {**before, changed: 1.0 if before[changed] > 3 else 5.0, top: 5.0}
    assert stored_ratings(stack, 3) == after
    recommended = stack.stub.Recommend(pb.RecommendRequest(user_id=3, k=5), timeout=10)
    assert top not in {i.movie_id for i in recommended.items}  # now rated: excluded
    offline = stack.artifact.recommender.recommend(after, 5)
    assert [i.movie_id for i in recommended.items] == [s.item_id for s in offline]


def test_deletions(stack):
    before = stored_ratings(stack, 4)
    first = sorted(before)[0]
    reply = stack.stub.DeleteRatings(
        pb.DeleteRatingsRequest(user_id=4, movie_ids=[first, 424242]), timeout=10
    )
    assert list(reply.missing_movie_ids) == [424242]
    assert stored_ratings(stack, 4) == {m: r for m, r in before.items() if m != first}
    deleted = stack.stub.DeleteUser(pb.DeleteUserRequest(user_id=4), timeout=10)
    assert deleted.ratings_deleted == len(before) - 1
    for call in (
        lambda: stack.stub.Recommend(pb.RecommendRequest(user_id=4), timeout=10),
        lambda: stack.stub.DeleteUser(pb.DeleteUserRequest(user_id=4), timeout=10),
    ):
        with pytest.raises(grpc.RpcError) as caught:
            call()
        assert caught.value.code() == grpc.StatusCode.NOT_FOUND


@pytest.mark.parametrize(
    ("ratings", "user_id", "field"),
    [
        ({1: 6.0}, 5, "ratings.rating"),
        ({1: 0.5}, 5, "ratings.rating"),
        ({0: 3.0}, 5, "ratings.movie_id"),
        ({}, 5, "ratings"),
        ({m: 3.0 for m in range(1, 1002)}, 5, "ratings"),
        ({1: 3.0}, 0, "user_id"),
        ({1: 3.0}, -7, "user_id"),
    ],
)
def test_invalid_writes_are_refused_and_change_nothing(stack, ratings, user_id, field):
    before = stored_ratings(stack, 5)
    with pytest.raises(grpc.RpcError) as caught:
        rate(stack, user_id, ratings)
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert field_violations(caught.value)[0][0] == field
    assert stored_ratings(stack, 5) == before


def test_concurrent_writers_on_one_user_lose_nothing(stack):
    """8 writers × 15 calls on one user: each writer owns 10 items and also writes a shared
    one. Afterwards every owned item holds its writer's last acknowledged rating, the shared
    item one of the acknowledged values, and the stored mean and preference vector equal a
    recomputation from the stored ratings."""
    writers, calls, user = 8, 15, 6
    acknowledged: dict[int, list[float]] = {}
    lock = threading.Lock()

    def writer(w: int):
        rng = np.random.default_rng(w)
        owned = list(range(10 * w + 1, 10 * w + 11))
        for _ in range(calls):
            chosen = {int(m): float(rng.integers(1, 6)) for m in rng.choice(owned, 3)}
            chosen[120] = float(rng.integers(1, 6))  # the item everyone writes
            rate(stack, user, chosen)
            with lock:
                for movie, value in chosen.items():
                    acknowledged.setdefault(movie, []).append(value)
                    if movie != 120:
                        last_owned[movie] = value

    last_owned: dict[int, float] = {}
    with ThreadPoolExecutor(writers) as pool:
        list(pool.map(writer, range(writers)))

    ratings = stored_ratings(stack, user)
    for movie, value in last_owned.items():
        assert ratings[movie] == value, movie
    assert ratings[120] in acknowledged[120]
    with grpc.insecure_channel(stack.features.address) as channel:
        features = (
            feature_pb2_grpc.FeatureServiceStub(channel)
            .GetUserFeatures(feature_pb2.GetUserFeaturesRequest(user_id=user), timeout=10)
            .features
        )
    model = stack.artifact.recommender
    expected = model.user_vector(ratings)
    assert features.user_mean == pytest.approx(expected.user_mean)
    got = dict(zip(features.preferences.movie_ids, features.preferences.values, strict=True))
    want = {int(model.index.item_ids[c]): expected.preferences[c] for c in expected.rated_columns}
    assert got.keys() == want.keys()
    np.testing.assert_allclose(
        [got[m] for m in sorted(got)], [want[m] for m in sorted(want)], rtol=1e-5, atol=1e-6
    )


def test_switching_versions_while_requests_flow_never_mixes(stack, trained_run, tmp_path):
    """A second model version is trained, its features loaded and the model service switched
    while two threads keep asking for recommendations. Every answer must equal what the
    offline model of the version it names computes: never one version's features with
    another's model."""
    from recsys.pipeline import train_and_evaluate

    source, _ = trained_run
    config = PRESETS["user"].replace(**TINY_TRAINING).replace(seed=11, max_epochs=6)
    second = train_and_evaluate(source, config, tmp_path / "models")
    artifacts = {
        stack.artifact.version: stack.artifact,
        second.artifact_path.name: load_artifact(second.artifact_path),
    }
    ratings = stored_ratings(stack, 7)
    answers, errors = [], []
    stop = threading.Event()

    def ask():
        while not stop.is_set():
            try:
                reply = stack.stub.Recommend(pb.RecommendRequest(user_id=7, k=5), timeout=10)
                answers.append(reply)
            except grpc.RpcError as error:
                errors.append(error.code())

    threads = [threading.Thread(target=ask) for _ in range(2)]
    for thread in threads:
        thread.start()
    with redis.Redis.from_url(stack.redis_url) as client:
        load_features(client, second.artifact_path, source.data.ratings, source.data.items)
    stack.swap_model(Predictor.load(str(second.artifact_path.parent), second.artifact_path.name))
    # the gateway notices the swap within MODEL_VERSION_TTL_S; on a loaded machine an answer
    # can take longer, so wait for the first one of the new version (or give up after 30 s)
    waited_until = time.monotonic() + 30
    while time.monotonic() < waited_until and not any(
        a.model_version == second.artifact_path.name for a in list(answers)
    ):
        time.sleep(0.1)
    time.sleep(0.5)
    stop.set()
    for thread in threads:
        thread.join(30)

    versions = {a.model_version for a in answers}
    assert versions == set(artifacts), versions  # both versions answered
    for reply in answers:
        offline = artifacts[reply.model_version].recommender.recommend(ratings, 5)
        assert [i.movie_id for i in reply.items] == [s.item_id for s in offline]
        np.testing.assert_allclose(
            [i.predicted_rating for i in reply.items], [s.value for s in offline], rtol=1e-4
        )
    assert errors == [], errors


def test_movie_ids_beyond_int32_are_invalid_not_internal(stack):
    with pytest.raises(grpc.RpcError) as caught:
        rate(stack, 5, {2**31: 3.0})
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert field_violations(caught.value)[0][0] == "ratings.movie_id"
