"""Stored user codes (the item kind): the fold-in itself, the Redis fields, the loader and
every online write keeping a user's code in step with their preference vector, the model
service predicting from a code, and the gateway serving stored users from theirs. Real
Redis, real services, real channels."""

import grpc
import numpy as np
import pytest
import redis

from recsys.api.feature.v1 import feature_pb2, feature_pb2_grpc
from recsys.api.gateway.v1 import gateway_pb2 as pb
from recsys.api.model.v1 import model_pb2, model_pb2_grpc
from recsys.artifacts import load_features_spec
from recsys.featurestore import layout
from recsys.featurestore.layout import KeyLayout
from recsys.fold_in import FoldIn, fold_in_of
from recsys.model.item.network import ItemAutoencoder
from tests.support.stack import assert_stored_user_served_as_inline, running_stack

pytestmark = pytest.mark.slow

NEW_USER = 900001
KEYS = KeyLayout("recsys")


# --- the fold-in and its codecs (no servers) --------------------------------------------------


def test_a_code_predicts_what_the_fold_in_predicts():
    rng = np.random.default_rng(0)
    network = ItemAutoencoder(rng.normal(size=(40, 5)).astype(np.float32), 3.0)
    fold_in = network.fold_in
    for rated in (3, 6, 25):  # fewer, as many and more ratings than k + 1 = 6
        columns = np.sort(rng.choice(40, rated, replace=False))
        values = rng.normal(size=rated).astype(np.float32)
        dense = np.zeros((1, 40), np.float32)
        dense[0, columns] = values
        code = fold_in.code(columns, values)
        np.testing.assert_allclose(code, network.encode(dense)[0], rtol=1e-10)
        np.testing.assert_allclose(fold_in.predict_codes(code), network.predict(dense), atol=1e-5)
    assert not fold_in.code(np.array([1]), np.array([0.0])).any()  # a 0 is no rating


def test_a_codes_problems_are_named():
    fold_in = FoldIn(np.ones((4, 2), np.float32), 1.0)
    assert fold_in.code_size == 3
    assert fold_in.check_code(np.zeros(3, np.float32)) is None
    assert "has 2 numbers" in fold_in.check_code(np.zeros(2, np.float32))
    assert "finite" in fold_in.check_code(np.array([0, np.nan, 0], np.float32))


def test_code_codecs_are_byte_exact():
    # 1.0 = 0x3f800000, -0.5 = 0xbf000000, little-endian float32
    assert layout.encode_user_code(np.array([1.0, -0.5])) == bytes.fromhex("0000803f000000bf")
    np.testing.assert_array_equal(
        layout.decode_user_code(bytes.fromhex("0000803f000000bf")), [1.0, -0.5]
    )
    codes = np.array([[1.0, 2.0], [3.0, 4.0]], np.float32)
    raw = layout.encode_item_codes(codes)
    assert raw == codes.astype("<f4").tobytes() and len(raw) == 16
    np.testing.assert_array_equal(layout.decode_item_codes(raw, 2), codes)
    with pytest.raises(ValueError):
        layout.decode_item_codes(raw[:12], 8)
    assert KEYS.item_codes("v1") == b"recsys:ver:v1:item_codes"


# --- the whole system with the item kind ----------------------------------------------------


@pytest.fixture
def item_stack(trained_item_run, redis_url):
    with running_stack(trained_item_run, redis_url) as running:
        yield running


def stored_code(client: redis.Redis, version: str, user_id: int) -> np.ndarray | None:
    raw = client.hget(KEYS.user(version, user_id), layout.USER_CODE)
    return None if raw is None else layout.decode_user_code(raw)


def expected_code(fold_in: FoldIn, spec, client, version: str, user_id: int) -> np.ndarray:
    """The code folded in from the preference vector the user hash holds."""
    movie_ids, values = layout.decode_preferences(
        client.hget(KEYS.user(version, user_id), layout.USER_PREFS)
    )
    return fold_in.code(spec.index.columns(movie_ids), values).astype(np.float32)


def test_the_loader_stores_the_item_codes_and_every_users_code(item_stack):
    spec = load_features_spec(item_stack.artifact.path)
    fold_in, version = spec.fold_in, item_stack.artifact.version
    assert fold_in is not None
    with redis.Redis.from_url(item_stack.redis_url) as client:
        meta = client.hgetall(KEYS.meta(version))
        assert float(meta[b"fold_in_l2"]) == fold_in.l2
        assert int(meta[b"code_size"]) == fold_in.item_codes.shape[1]
        raw = client.get(KEYS.item_codes(version))
        assert raw == layout.encode_item_codes(fold_in.item_codes)
        users = sorted(set(item_stack.data.ratings["user_id"].tolist()))
        for user_id in users[:50]:
            code = stored_code(client, version, user_id)
            assert code is not None and len(code) == fold_in.code_size
            np.testing.assert_allclose(
                code, expected_code(fold_in, spec, client, version, user_id), rtol=1e-6, atol=1e-6
            )


def test_a_version_of_the_user_kind_stores_no_codes(trained_run, redis_url):
    with running_stack(trained_run, redis_url) as stack:
        version = stack.artifact.version
        with redis.Redis.from_url(stack.redis_url) as client:
            assert client.get(KEYS.item_codes(version)) is None
            assert b"fold_in_l2" not in client.hgetall(KEYS.meta(version))
            user_id = int(stack.data.ratings["user_id"].iloc[0])
            assert stored_code(client, version, user_id) is None
        with grpc.insecure_channel(stack.features.address) as channel:
            reply = feature_pb2_grpc.FeatureServiceStub(channel).GetUserFeatures(
                feature_pb2.GetUserFeaturesRequest(user_id=user_id), timeout=10
            )
        assert len(reply.features.user_code) == 0


def test_the_store_reads_large_item_codes_in_pieces_once_for_all_callers(item_stack, monkeypatch):
    """Item codes of a large catalog are tens of MB: read whole they would not arrive
    within the feature service's read timeout, so they come in GETRANGE pieces (here of 1 kB,
    so the small model's codes take several), once for callers who ask together."""
    import asyncio

    import redis.asyncio

    from services.feature import store as store_module
    from tests.support.feature_data import with_store

    monkeypatch.setattr(store_module, "ITEM_CODES_CHUNK", 1000)
    spec = load_features_spec(item_stack.artifact.path)
    version = item_stack.artifact.version
    assert spec.fold_in.item_codes.nbytes > 3 * 1000
    calls = []

    async def body(store):
        getrange = store._redis.getrange

        async def counted(*args):
            calls.append(args)
            return await getrange(*args)

        store._redis.getrange = counted
        await asyncio.gather(*(store.normalization(version) for _ in range(8)))
        return await store._version_normalization(version)

    model = with_store(item_stack.redis_url, body, redis.asyncio.Connection)
    assert len(calls) == -(-spec.fold_in.item_codes.nbytes // 1000)  # one read, in pieces
    np.testing.assert_array_equal(model.fold_in.item_codes, spec.fold_in.item_codes)
    assert model.fold_in.l2 == spec.fold_in.l2


def test_every_write_recomputes_the_code_with_the_preferences(item_stack):
    spec = load_features_spec(item_stack.artifact.path)
    version = item_stack.artifact.version
    movies = spec.index.item_ids[:6].tolist()

    def check(user_id):
        with redis.Redis.from_url(item_stack.redis_url) as client:
            code = stored_code(client, version, user_id)
            expected = expected_code(spec.fold_in, spec, client, version, user_id)
        np.testing.assert_allclose(code, expected, rtol=1e-6, atol=1e-6)
        return code

    def rate(ratings):
        item_stack.stub.RateItems(
            pb.RateItemsRequest(
                user_id=NEW_USER,
                ratings=[pb.Rating(movie_id=m, rating=r) for m, r in ratings.items()],
            ),
            timeout=10,
        )

    rate({movies[0]: 5.0, movies[1]: 1.0, movies[2]: 4.0})
    first = check(NEW_USER)
    rate({movies[3]: 2.0, movies[0]: 3.0})
    second = check(NEW_USER)
    assert not np.allclose(first, second)
    item_stack.stub.DeleteRatings(
        pb.DeleteRatingsRequest(user_id=NEW_USER, movie_ids=[movies[1]]), timeout=10
    )
    assert not np.allclose(check(NEW_USER), second)
    # the feature service answers the code it stored, on both read paths
    with redis.Redis.from_url(item_stack.redis_url) as client:
        code = stored_code(client, version, NEW_USER)
    with grpc.insecure_channel(item_stack.features.address) as channel:
        stub = feature_pb2_grpc.FeatureServiceStub(channel)
        one = stub.GetUserFeatures(feature_pb2.GetUserFeaturesRequest(user_id=NEW_USER), timeout=10)
        packed = stub.BatchGetUserFeatures(
            feature_pb2.BatchGetUserFeaturesRequest(user_ids=[1, NEW_USER], packed=True),
            timeout=10,
        ).packed
    np.testing.assert_array_equal(np.array(one.features.user_code, np.float32), code)
    offsets = np.frombuffer(packed.code_offsets, "<i4")
    values = np.frombuffer(packed.code_values, "<f4")
    assert len(offsets) == 3
    np.testing.assert_array_equal(values[offsets[1] : offsets[2]], code)


def _predict(stub, version, movie_ids, values, code=()):
    return stub.Predict(
        model_pb2.PredictRequest(
            model_version=version,
            preferences=model_pb2.SparseVector(movie_ids=movie_ids, values=values),
            top_k=model_pb2.TopK(k=5),
            user_code=code,
        ),
        timeout=10,
    )


def test_the_model_service_predicts_from_a_code(item_stack):
    version = item_stack.artifact.version
    fold_in = fold_in_of(item_stack.artifact.recommender.network)
    index = item_stack.artifact.recommender.index
    movie_ids = index.item_ids[[0, 3, 7, 9]].tolist()
    values = [0.8, -0.4, 0.3, -1.1]
    code = fold_in.code(index.columns(np.array(movie_ids)), np.array(values, np.float32))
    with grpc.insecure_channel(item_stack.model.address) as channel:
        stub = model_pb2_grpc.ModelServiceStub(channel)
        folded = _predict(stub, version, movie_ids, values)
        coded = _predict(stub, version, movie_ids, values, code.astype(np.float32).tolist())
        assert list(coded.predictions.movie_ids) == list(folded.predictions.movie_ids)
        np.testing.assert_allclose(
            coded.predictions.values, folded.predictions.values, rtol=1e-4, atol=1e-5
        )
        # the code decides: another user's code gives another user's predictions
        other = fold_in.code(index.columns(np.array(movie_ids)), -np.array(values, np.float32))
        flipped = _predict(stub, version, movie_ids, values, other.astype(np.float32).tolist())
        assert not np.allclose(flipped.predictions.values, folded.predictions.values)
        for bad, problem in (([1.0, 2.0], "has 2 numbers"), ([np.nan] * len(code), "finite")):
            with pytest.raises(grpc.RpcError) as error:
                _predict(stub, version, movie_ids, values, bad)
            assert error.value.code() == grpc.StatusCode.INVALID_ARGUMENT
            assert problem in error.value.details()


def test_a_code_for_a_model_without_codes_is_refused(trained_run, redis_url):
    with (
        running_stack(trained_run, redis_url) as stack,
        grpc.insecure_channel(stack.model.address) as channel,
    ):
        stub = model_pb2_grpc.ModelServiceStub(channel)
        movie_ids = stack.artifact.recommender.index.item_ids[:2].tolist()
        with pytest.raises(grpc.RpcError) as error:
            _predict(stub, stack.artifact.version, movie_ids, [0.5, -0.5], [1.0, 2.0])
    assert error.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "keeps no user codes" in error.value.details()


def test_the_gateway_serves_a_stored_user_from_their_code(item_stack):
    ratings = item_stack.data.ratings
    user_id = int(ratings["user_id"].iloc[0])
    given = assert_stored_user_served_as_inline(item_stack, user_id)
    # the stored code is what the gateway served with: another user's code in this user's
    # hash (a test's doing; writes never do it) changes the predictions, the ratings unchanged
    version = item_stack.artifact.version
    other = int(ratings["user_id"].iloc[-1])
    asked = pb.PredictRatingsRequest(user_id=user_id, movie_ids=[i.movie_id for i in given.items])
    before = item_stack.stub.PredictRatings(asked, timeout=10).predictions
    np.testing.assert_allclose(
        [p.predicted_rating for p in before], [i.predicted_rating for i in given.items], rtol=1e-4
    )
    with redis.Redis.from_url(item_stack.redis_url) as client:
        foreign = client.hget(KEYS.user(version, other), layout.USER_CODE)
        client.hset(KEYS.user(version, user_id), layout.USER_CODE, foreign)
    after = item_stack.stub.PredictRatings(asked, timeout=10).predictions
    assert not np.allclose(
        [p.predicted_rating for p in after], [p.predicted_rating for p in before]
    )


def test_a_write_during_a_rollout_keeps_each_live_versions_own_features(
    trained_run, trained_item_run, redis_url
):
    """A default version active and an item version loaded beside it (then the other way
    round): one online write maintains both, the item version's hash with a code folded in
    from its own preferences, the default's with none."""
    import redis.asyncio

    from recsys.featurestore.loader import load_features
    from tests.support.feature_data import with_store

    (source, user_run), (_, item_run) = trained_run, trained_item_run
    data = source.data
    user_version, item_version = user_run.artifact_path.name, item_run.artifact_path.name
    item_spec = load_features_spec(item_run.artifact_path)
    movies = item_spec.index.item_ids[:4].tolist()
    for order in ((user_run, item_run), (item_run, user_run)):
        with redis.Redis.from_url(redis_url) as client:
            client.flushall()
            for run in order:
                load_features(client, run.artifact_path, data.ratings, data.items, "recsys")
            assert set(client.hkeys(KEYS.versions())) == {
                user_version.encode(),
                item_version.encode(),
            }

        async def write(store, active=order[-1].artifact_path.name):
            ratings = dict(zip(movies, (5.0, 2.0, 4.0, 1.0), strict=True))
            await store.upsert_ratings(NEW_USER, ratings, active)

        with_store(redis_url, write, redis.asyncio.Connection)
        with redis.Redis.from_url(redis_url) as client:
            assert stored_code(client, user_version, NEW_USER) is None
            assert client.hget(KEYS.user(user_version, NEW_USER), layout.USER_PREFS)
            np.testing.assert_allclose(
                stored_code(client, item_version, NEW_USER),
                expected_code(item_spec.fold_in, item_spec, client, item_version, NEW_USER),
                rtol=1e-6,
                atol=1e-6,
            )


def test_a_write_folds_the_user_in_once_and_answers_what_it_stored(item_stack, monkeypatch):
    """The round that writes a user's code also answers with it: one solve per write and
    live version, not one more for the answer."""
    import redis.asyncio

    from tests.support.feature_data import with_store

    spec = load_features_spec(item_stack.artifact.path)
    version = item_stack.artifact.version
    movies = spec.index.item_ids[:3].tolist()
    solves = []
    code = FoldIn.code

    def counted(self, columns, values):
        solves.append(len(columns))
        return code(self, columns, values)

    async def write(store):
        await store.normalization(version)  # the version's model read before counting
        monkeypatch.setattr(FoldIn, "code", counted)
        ratings = dict(zip(movies, (4.0, 2.0, 5.0), strict=True))
        return await store.upsert_ratings(NEW_USER + 1, ratings, version)

    features, created = with_store(item_stack.redis_url, write, redis.asyncio.Connection)
    assert created and solves == [3]
    with redis.Redis.from_url(item_stack.redis_url) as client:
        np.testing.assert_array_equal(features.code, stored_code(client, version, NEW_USER + 1))
        movie_ids, values = layout.decode_preferences(
            client.hget(KEYS.user(version, NEW_USER + 1), layout.USER_PREFS)
        )
    np.testing.assert_array_equal(features.preferences[0], movie_ids)
    np.testing.assert_array_equal(features.preferences[1], values)
