"""The blend kind: weights fitted on validation adding up to 1, predictions and explanations
as weighted sums of the parts', versions that keep their parts, and a blend with an item-kind
part served to stored users from the code the feature store keeps. Real Redis and services
where it is served."""

import grpc
import numpy as np
import pytest
import redis

from recsys.api.model.v1 import model_pb2, model_pb2_grpc
from recsys.artifacts import load_artifact, load_features_spec
from recsys.errors import ArtifactError, FailedPrecondition, InvalidArgument
from recsys.featurestore import layout
from recsys.featurestore.layout import KeyLayout
from recsys.model.blend import BLEND_FILE
from recsys.model.blend.network import BlendNetwork, blend_weights
from recsys.model.config import TrainConfig
from recsys.model.item.network import ItemAutoencoder
from recsys.model.user.network import DeepAutoencoder, DenseLayer, LinearAutoencoder
from tests.support.stack import assert_stored_user_served_as_inline, running_stack

N_ITEMS = 30


def parts(seed: int = 0):
    rng = np.random.default_rng(seed)
    user = LinearAutoencoder(
        rng.normal(size=(N_ITEMS, 4)).astype(np.float32),
        rng.normal(size=(4, N_ITEMS)).astype(np.float32),
    )
    item = ItemAutoencoder(rng.normal(size=(N_ITEMS, 5)).astype(np.float32), 3.0)
    return user, item


def test_the_weights_are_least_squares_adding_up_to_one():
    rng = np.random.default_rng(1)
    predictions = rng.normal(size=(500, 3))
    truth = predictions @ np.array([0.5, 0.2, 0.3])
    np.testing.assert_allclose(blend_weights(predictions, truth), [0.5, 0.2, 0.3], atol=1e-12)
    noisy = truth + rng.normal(scale=0.5, size=500)
    weights = blend_weights(predictions, noisy)
    assert weights.sum() == pytest.approx(1.0)
    # no other weights adding up to 1 fit better
    error = np.sum((predictions @ weights - noisy) ** 2)
    for shift in (np.array([0.01, -0.01, 0]), np.array([0, 0.02, -0.02])):
        assert error < np.sum((predictions @ (weights + shift) - noisy) ** 2)


def test_a_blend_predicts_and_explains_as_the_weighted_sum_of_its_parts():
    user, item = parts()
    blend = BlendNetwork((user, item), (0.3, 0.7))
    rng = np.random.default_rng(2)
    dense = np.zeros((3, N_ITEMS), np.float32)
    for row in dense:
        rated = rng.choice(N_ITEMS, 8, replace=False)
        row[rated] = rng.normal(size=8)
    expected = 0.3 * user.predict(dense) + 0.7 * item.predict(dense)
    np.testing.assert_allclose(blend.predict(dense), expected, rtol=1e-5, atol=1e-6)
    rows, columns = np.array([0, 2, 1]), np.array([4, 9, 17])
    np.testing.assert_allclose(
        blend.predict_pairs(dense, rows, columns), expected[rows, columns], atol=1e-5
    )
    # a stored user: the item part predicts from the code, the user part from the vector
    assert blend.fold_in is item.fold_in
    codes = np.stack([item.fold_in.code(np.flatnonzero(r), r[r != 0]) for r in dense])
    np.testing.assert_allclose(blend.predict_coded(dense, codes), expected, atol=1e-4)
    # explanations: the parts' contributions, weighted, add up to the blend's prediction
    blend.check_explainable()
    columns = np.flatnonzero(dense[0])
    for target in (0, 5, int(columns[0])):
        parts_ = blend.contributions(columns, dense[0, columns], target)
        assert parts_.sum() == pytest.approx(float(expected[0, target]), abs=1e-4)
    assert blend.n_items == N_ITEMS and blend.encoding_size == user.encoding_size
    np.testing.assert_array_equal(blend.item_embeddings, user.item_embeddings)


def test_a_blend_with_a_part_that_is_not_linear_says_why_it_cannot_explain():
    rng = np.random.default_rng(3)
    deep = DeepAutoencoder(
        (DenseLayer(rng.normal(size=(N_ITEMS, 4)).astype(np.float32), None, "selu"),),
        (DenseLayer(rng.normal(size=(4, N_ITEMS)).astype(np.float32), None, "linear"),),
    )
    blend = BlendNetwork((deep, parts()[1]), (0.5, 0.5))
    with pytest.raises(FailedPrecondition, match="a part of this blend is not: .*deep"):
        blend.check_explainable()


def test_bad_blends_are_refused():
    user, item = parts()
    for bad_parts, weights, problem in [
        ((user, item), (0.5, 0.6), "add up to 1"),
        ((user, item), (0.5, np.nan), "finite"),
        ((user,), (1.0,), "two or more"),
        ((item, parts(1)[1]), (0.5, 0.5), "at most one part"),
        ((user, ItemAutoencoder(np.ones((N_ITEMS + 1, 2), np.float32), 1.0)), (0.5, 0.5), "same"),
    ]:
        with pytest.raises(ValueError, match=problem):
            BlendNetwork(bad_parts, weights)
    for change, field in [
        ({"components": ("user",)}, "components"),
        ({"components": ("user", "nonesuch")}, "components"),
        ({"components": ("user", "blend")}, "components"),
        ({"early_stopping": "loss", "refit": False}, "early_stopping"),
    ]:
        settings = {"kind": "blend", "components": ("user", "item")}
        settings.update({"early_stopping": "validation", **change})
        with pytest.raises(InvalidArgument) as caught:
            TrainConfig(**settings)
        assert caught.value.field == field
    named = TrainConfig(kind="blend", components="user,item", early_stopping="validation")
    assert named.components == ("user", "item")  # --set components=user,item
    with pytest.raises(InvalidArgument) as caught:
        TrainConfig(components=("user", "item"))  # the user kind has no parts
    assert caught.value.field == "components"


def test_settings_a_blend_does_not_use_itself_reach_its_parts():
    from recsys.model.config import PRESETS

    blend = PRESETS["blend"].replace(encoding_size=8, max_epochs=2, refit=False)
    assert blend.refit is False and blend.encoding_size == PRESETS["blend"].encoding_size
    assert blend.part_settings == (("encoding_size", 8), ("max_epochs", 2))
    user, item = blend.part_configs()
    assert (user.kind, user.encoding_size, user.max_epochs, user.l2) == ("user", 8, 2, 6e-4)
    assert (item.kind, item.encoding_size, item.max_epochs, item.l2) == ("item", 8, 2, 0.04)
    assert not user.refit and not item.refit  # the blend refits its parts itself
    again = blend.replace(max_epochs=3)
    assert dict(again.part_settings) == {"encoding_size": 8, "max_epochs": 3}
    assert TrainConfig.from_dict(again.to_dict()) == again
    assert again.to_dict()["part_settings"] == {"encoding_size": 8, "max_epochs": 3}
    # refused with the field named: a setting no part has, one a part cannot take, and
    # part settings on another kind
    for change, field in [
        ({"no_such_setting": 1}, "config"),
        ({"hidden_layers": [8]}, "hidden_layers"),  # the item part has no hidden layers
    ]:
        with pytest.raises(InvalidArgument) as caught:
            PRESETS["blend"].replace(**change)
        assert caught.value.field == field
    with pytest.raises(InvalidArgument) as caught:
        TrainConfig(part_settings={"max_epochs": 2})
    assert caught.value.field == "part_settings"


@pytest.mark.slow
def test_a_blend_version_keeps_its_parts_and_the_weights_fitted_on_validation(
    trained_blend_run, tmp_path
):
    _, run = trained_blend_run
    artifact = load_artifact(run.artifact_path)
    network = artifact.recommender.network
    assert artifact.kind == "blend" and isinstance(network, BlendNetwork)
    assert isinstance(network.parts[0], LinearAutoencoder)
    assert isinstance(network.parts[1], ItemAutoencoder)
    blend = artifact.metadata["blend"]
    assert [p["preset"] for p in blend["parts"]] == ["user", "item"]
    assert network.weights == tuple(p["weight"] for p in blend["parts"])
    assert sum(network.weights) == pytest.approx(1.0)
    # weights adding up to 1 include each part alone: the blend does no worse on validation
    # (to the clipping of the RMSE, which the squared error it minimizes does not have)
    assert blend["validation_rmse"] <= min(p["validation_rmse"] for p in blend["parts"]) + 2e-3
    assert artifact.metadata["leaked_pairs"] == 0
    assert artifact.metadata["refit"]["epochs"] is None  # the parts were refit, each its own
    report = run.report_path.read_text()
    assert "## The blend" in report and "Each part was then refit on all of train." in report
    # a damaged blend.json is refused, the file named
    broken = tmp_path / "broken"
    broken.mkdir()
    for file in run.artifact_path.rglob("*"):
        target = broken / file.relative_to(run.artifact_path)
        if file.is_dir():
            target.mkdir(parents=True, exist_ok=True)
        else:
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(file.read_bytes())
    (broken / BLEND_FILE).write_text('{"parts": [{"weight": 1}]}')
    with pytest.raises(ArtifactError, match="blend.json"):
        load_artifact(broken)


@pytest.fixture
def blend_stack(trained_blend_run, redis_url):
    with running_stack(trained_blend_run, redis_url) as running:
        yield running


@pytest.mark.slow
def test_a_blend_is_served_to_stored_users_from_the_item_parts_code(blend_stack):
    artifact, version = blend_stack.artifact, blend_stack.artifact.version
    network = artifact.recommender.network
    spec = load_features_spec(artifact.path)
    np.testing.assert_array_equal(spec.fold_in.item_codes, network.parts[1].item_codes)
    ratings = blend_stack.data.ratings
    user_id = int(ratings["user_id"].iloc[0])
    theirs = ratings[ratings["user_id"] == user_id]
    with redis.Redis.from_url(blend_stack.redis_url) as client:
        raw = client.hget(KeyLayout("recsys").user(version, user_id), layout.USER_CODE)
    assert raw is not None and len(layout.decode_user_code(raw)) == spec.fold_in.code_size
    assert_stored_user_served_as_inline(blend_stack, user_id)
    # through the model service: the blend's prediction, and an explanation adding up to it
    model = artifact.recommender
    user = model.user_vector(
        {int(m): float(r) for m, r in zip(theirs["item_id"], theirs["rating"], strict=True)}
    )
    ids = model.index.item_ids[user.rated_columns].tolist()
    vector = model_pb2.SparseVector(movie_ids=ids, values=user.preferences[user.rated_columns])
    with grpc.insecure_channel(blend_stack.model.address) as channel:
        stub = model_pb2_grpc.ModelServiceStub(channel)
        reply = stub.Predict(
            model_pb2.PredictRequest(preferences=vector, all_items=model_pb2.AllItems()),
            timeout=10,
        )
        expected = network.predict(user.preferences[None, :])[0]
        np.testing.assert_allclose(reply.predictions.values, expected, atol=1e-5)
        movie_id = int(model.index.item_ids[1])
        explained = stub.Explain(
            model_pb2.ExplainRequest(preferences=vector, movie_id=movie_id, max_contributions=500),
            timeout=10,
        )
        total = sum(c.contribution for c in explained.contributions)
        assert total == pytest.approx(expected[1], abs=1e-4)
