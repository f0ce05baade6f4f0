"""The item kind (I-AutoRec with users folded in by ridge regression on the item codes): the
fold-in against its closed form and a hand-worked case, its explanations, the Keras pieces
it trains with, the artifact round trip, and the model service answering with it."""

import grpc
import keras
import numpy as np
import pytest
import scipy.sparse as sp
import tensorflow as tf

from recsys.activations import activate
from recsys.api.model.v1 import model_pb2 as pb
from recsys.api.model.v1 import model_pb2_grpc
from recsys.artifacts import load_artifact
from recsys.data.split import split_ratings
from recsys.errors import ArtifactError, InvalidArgument
from recsys.explain import explain_preferences
from recsys.features import ItemIndex, PreferenceMatrix, preference_matrix
from recsys.model.config import PRESETS, TrainConfig
from recsys.model.item import FOLD_IN_FILE, ITEM_CODES_FILE
from recsys.model.item.keras_model import (
    ObservedEntryBatches,
    ObservedEntryTrainer,
    build_item_autoencoder,
    item_codes,
)
from recsys.model.item.network import ItemAutoencoder
from recsys.model.training import ValidationSet
from recsys.pipeline import SPLIT_SEED
from recsys.serving.config import Settings
from services.model.predictor import Predictor, PredictorHolder
from services.model.server import create_server
from tests.support.gradients import assert_same_gradients
from tests.support.servers import serving, wait_serving


def ridge(codes, columns, values, l2):
    """The fold-in by its textbook formula: w = (AᵀA + λI)⁻¹ Aᵀ p, A = [codes | 1] of the
    rated items; predictions [codes | 1] w for every item."""
    features = np.hstack([codes.astype(np.float64), np.ones((len(codes), 1))])
    rated = features[columns]
    weights = np.linalg.solve(
        rated.T @ rated + l2 * np.eye(features.shape[1]), rated.T @ np.asarray(values, float)
    )
    return features @ weights


def test_fold_in_by_hand():
    # two items with 1-number codes 1 and 2 (so h̃ = [1, 1] and [2, 1]), λ = 1, the user
    # rated item 0 with preference 3:
    #   w = (aᵀa + I)⁻¹ aᵀ p with a = [1, 1]: (aᵀa + I) = [[2, 1], [1, 2]], aᵀp = [3, 3]
    #   → w = [1, 1]; predictions h̃ · w = [1 + 1, 2 + 1] = [2, 3]
    network = ItemAutoencoder(np.array([[1.0], [2.0]], np.float32), 1.0)
    np.testing.assert_allclose(network.predict(np.array([[3.0, 0.0]])), [[2.0, 3.0]], rtol=1e-6)
    np.testing.assert_allclose(network.encode(np.array([[3.0, 0.0]])), [[1.0, 1.0]], rtol=1e-6)


@pytest.mark.parametrize("n_rated", [1, 4, 30])  # below and above k + 1 = 6: both solvers
def test_fold_in_equals_ridge_regression(n_rated):
    rng = np.random.default_rng(n_rated)
    codes = rng.random((40, 5)).astype(np.float32)
    network = ItemAutoencoder(codes, 2.5)
    users = np.zeros((3, 40), np.float32)
    expected = []
    for row in users:
        columns = rng.choice(40, n_rated, replace=False)
        row[columns] = rng.normal(0, 1, n_rated)
        expected.append(ridge(codes, columns, row[columns], 2.5))
    np.testing.assert_allclose(network.predict(users), expected, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(network.predict(sp.csr_matrix(users)), expected, atol=1e-5)
    rows, columns = np.array([0, 2, 2]), np.array([39, 0, 7])
    np.testing.assert_allclose(
        network.predict_pairs(sp.csr_matrix(users), rows, columns),
        np.array(expected)[rows, columns],
        atol=1e-5,
    )


def test_contributions_add_up_and_explanations_are_allowed():
    rng = np.random.default_rng(0)
    codes = rng.random((30, 4)).astype(np.float32)
    network = ItemAutoencoder(codes, 0.7)
    for n_rated in (3, 12):  # dual and primal solver
        columns = np.sort(rng.choice(30, n_rated, replace=False))
        values = rng.normal(0, 1, n_rated)
        user = np.zeros((1, 30), np.float32)
        user[0, columns] = values
        predicted = network.predict(user)[0]
        for target in (0, int(columns[0]), 29):
            parts = network.contributions(columns, values, target)
            assert parts.sum() == pytest.approx(predicted[target], abs=1e-5)
    # the item kind explains through the same function as the linear model
    index = ItemIndex(np.arange(1, 31))
    preference, listed, other, count = explain_preferences(
        network, index, columns, values, 5, limit=2
    )
    assert len(listed) == 2 and count == len(columns) - 2
    assert sum(c.contribution for c in listed) + other == pytest.approx(preference, abs=1e-9)


def test_a_zero_preference_is_no_rating_in_every_form():
    codes = np.array([[1.0], [2.0], [0.5]], np.float32)
    network = ItemAutoencoder(codes, 1.0)
    np.testing.assert_array_equal(network.predict(np.zeros((1, 3))), np.zeros((1, 3)))
    # a stored 0 in CSR (offline evaluation) is treated as the dense vector (serving) must
    # treat it, as no rating: the fit is the one on item 0 alone
    stored = sp.csr_matrix((np.array([3.0, 0.0]), np.array([0, 1]), np.array([0, 2])), (1, 3))
    alone = ridge(codes, [0], [3.0], 1.0)
    np.testing.assert_allclose(network.predict(stored)[0], alone, rtol=1e-6)
    np.testing.assert_allclose(network.predict(stored.toarray())[0], alone, rtol=1e-6)
    np.testing.assert_allclose(network.predict(stored.tocsc())[0], alone, rtol=1e-6)
    # and Explain, which is given the rated columns with their values, agrees with Predict
    parts = network.contributions(np.array([0, 1]), np.array([3.0, 0.0]), 2)
    assert parts[1] == 0 and parts.sum() == pytest.approx(alone[2], abs=1e-12)


def test_without_the_gram_matrix_the_same_predictions(monkeypatch):
    import recsys.model.item.network

    rng = np.random.default_rng(3)
    codes = rng.random((50, 6)).astype(np.float32)
    users = np.where(rng.random((4, 50)) < 0.1, rng.normal(0, 1, (4, 50)), 0)
    with_gram = ItemAutoencoder(codes, 0.5).predict(users)
    monkeypatch.setattr(recsys.model.item.network, "GRAM_MAX_ITEMS", 10)
    without = ItemAutoencoder(codes, 0.5)
    assert without._gram is None
    np.testing.assert_allclose(without.predict(users), with_gram, rtol=1e-6, atol=1e-9)


@pytest.mark.parametrize(
    ("codes", "l2"), [(np.full((2, 2), np.nan, np.float32), 1.0), (np.ones((2, 2)), 0.0)]
)
def test_bad_item_models_are_refused(codes, l2):
    with pytest.raises(ValueError):
        ItemAutoencoder(codes, l2)


def test_item_settings():
    config = PRESETS["item"]
    assert config.kind == "item"
    assert TrainConfig.from_dict(config.to_dict()) == config
    assert TrainConfig.from_dict({k: v for k, v in TrainConfig().to_dict().items() if k != "kind"})
    for change, field in (
        ({"kind": "both"}, "kind"),
        ({"kind": "item", "hidden_layers": [8]}, "hidden_layers"),
        ({"kind": "item"}, "early_stopping"),  # the fold-in λ needs validation ratings
    ):
        with pytest.raises(InvalidArgument) as caught:
            TrainConfig(**change)
        assert caught.value.field == field


def dense_observed_sse(model, columns, items):
    """AutoRec's loss as the dense Keras step defined it, in TensorFlow over (batch, n_users):
    per item the sum of squared errors where the column has a stored entry (an explicit 0
    included), averaged over the batch's items, plus the L2 penalties."""
    values = columns[items].toarray()
    observed = _stored(columns[items])
    errors = tf.square(model(values) - values) * observed.astype(np.float32)
    return tf.reduce_mean(tf.reduce_sum(errors, axis=1)) + sum(model.losses)


def _stored(matrix):
    mask = sp.csr_matrix((np.ones(matrix.nnz, bool), matrix.indices, matrix.indptr), matrix.shape)
    return mask.toarray()


def test_observed_entry_step_is_the_dense_step():
    rng = np.random.default_rng(4)
    columns = sp.random(12, 9, density=0.3, random_state=4, format="csr", dtype=np.float32)
    columns.data = rng.normal(0, 1, columns.nnz).astype(np.float32)
    columns.data[0] = 0.0  # a stored 0 is observed: its error counts, its input adds nothing
    model = build_item_autoencoder(9, 4, l2=0.05)
    for weight in model.weights:  # biases too, so every term is exercised
        weight.assign(rng.normal(0, 0.4, weight.shape).astype(np.float32))
    batches = ObservedEntryBatches(columns, batch_size=5, seed=0)
    trainer = ObservedEntryTrainer(model)
    (items, rows, users, values), targets = batches[0]
    np.testing.assert_array_equal(items, batches.order[:5])
    np.testing.assert_array_equal(values, targets)
    assert len(values) == columns[items].nnz
    with tf.GradientTape() as tape:
        expected = dense_observed_sse(model, columns, items)
    dense_gradients = tape.gradient(expected, model.trainable_weights)
    x, y = batches[0]
    with tf.GradientTape() as tape:
        loss = trainer.compute_loss(x, y, trainer(x))
    gradients = tape.gradient(loss, model.trainable_weights)
    np.testing.assert_allclose(float(loss), float(expected), rtol=1e-5)
    assert_same_gradients(model.trainable_weights, dense_gradients, gradients)


def test_keras_pieces():
    # sigmoid in NumPy equals Keras's
    values = np.linspace(-30, 30, 61, dtype=np.float32)
    expected = keras.ops.convert_to_numpy(keras.activations.sigmoid(values))
    np.testing.assert_allclose(activate(values, "sigmoid"), expected, rtol=1e-6, atol=1e-7)
    # batches: one entry per stored preference (an explicit 0 included), items reshuffled
    columns = sp.csr_matrix(
        (np.array([0.5, 0.0, -1.0]), np.array([0, 2, 1]), np.array([0, 2, 3])), (2, 3)
    )
    batches = ObservedEntryBatches(columns, batch_size=2, seed=0)
    (items, rows, users, values), _ = batches[0]
    dense = np.full((2, 3), np.nan)
    dense[rows, users] = values
    expected = np.array([[0.5, np.nan, 0.0], [np.nan, -1.0, np.nan]])[items]
    np.testing.assert_array_equal(dense, expected)
    # item codes from the layer's weights equal the Keras code layer's output
    model = build_item_autoencoder(3, 4, l2=0.1)
    code_model = keras.Model(model.input, model.get_layer("code").output)
    np.testing.assert_allclose(
        item_codes(model, columns),
        keras.ops.convert_to_numpy(code_model(columns.toarray())),
        rtol=1e-5,
        atol=1e-6,
    )


def test_the_fold_in_is_chosen_on_a_sample_of_users_at_most():
    rng = np.random.default_rng(0)
    matrix = sp.random(30, 8, density=0.5, random_state=0, format="csr", dtype=np.float32)
    inputs = PreferenceMatrix(
        user_ids=np.arange(100, 130), matrix=matrix, user_means=rng.normal(0, 1, 30)
    )
    rows = rng.integers(0, 30, 200)
    columns, ratings = rng.integers(0, 8, 200), rng.uniform(1, 5, 200)
    validation = ValidationSet(inputs, rows, columns, ratings)
    assert validation.sample_users(30, seed=1) is validation
    sample = validation.sample_users(10, seed=1)
    assert len(sample.inputs.user_ids) == 10 and sample.sample_users(10, 1) is sample
    # every pair of a chosen user, and only those, with its user's row renumbered
    chosen = set(sample.inputs.user_ids.tolist())
    kept = [j for j in range(200) if 100 + rows[j] in chosen]
    assert len(sample.rows) == len(kept)
    np.testing.assert_array_equal(sample.inputs.user_ids[sample.rows], 100 + rows[kept])
    np.testing.assert_array_equal(sample.columns, columns[kept])
    np.testing.assert_array_equal(sample.ratings, ratings[kept])
    np.testing.assert_array_equal(
        sample.inputs.matrix.toarray(), matrix.toarray()[sample.inputs.user_ids - 100]
    )
    np.testing.assert_array_equal(
        sample.inputs.user_means, inputs.user_means[sample.inputs.user_ids - 100]
    )
    again = validation.sample_users(10, seed=1)
    np.testing.assert_array_equal(again.inputs.user_ids, sample.inputs.user_ids)


@pytest.mark.slow
def test_item_artifact_round_trip(trained_item_run, tmp_path):
    source, run = trained_item_run
    path = run.artifact_path
    assert (path / ITEM_CODES_FILE).is_file() and (path / FOLD_IN_FILE).is_file()
    artifact = load_artifact(path)
    network = artifact.recommender.network
    assert isinstance(network, ItemAutoencoder)
    # the λ served is the one with the lowest validation RMSE, as recorded
    tried = artifact.metadata["fold_in"]["validation"]
    assert network.fold_in_l2 == min(tried, key=lambda t: t["rmse"])["l2"]
    # the codes served are the saved network's code layer applied to the items' columns of
    # the preferences it was trained on: all of train, the preset refitting on it
    assert (
        artifact.metadata["refit"]["training_ratings"]
        == artifact.metadata["dataset"]["training_ratings"]
    )
    model = keras.saving.load_model(path / "model.keras", safe_mode=True)
    split = split_ratings(source.data.ratings, seed=SPLIT_SEED)
    fit = preference_matrix(
        split.train, artifact.recommender.index, artifact.recommender.normalization
    )
    assert model.input_shape[-1] == len(fit.user_ids)
    assert network.item_codes.shape == (len(artifact.recommender.index), 16)
    np.testing.assert_allclose(
        network.item_codes, item_codes(model, fit.matrix.T.tocsr()), rtol=1e-5, atol=1e-6
    )
    # the sweep's validation RMSE of the item kind is the served fold-in's
    assert artifact.metadata["fold_in"]["validation_rmse"] == min(t["rmse"] for t in tried)
    # it learns the planted structure of the synthetic data
    scores = {s.name: s for s in run.scores}
    assert scores["autoencoder"].rmse < scores["bias baseline"].rmse - 0.05
    # a damaged codes file is refused with the file named
    broken = tmp_path / "broken"
    broken.mkdir()
    for file in path.iterdir():
        (broken / file.name).write_bytes(file.read_bytes())
    (broken / ITEM_CODES_FILE).write_bytes(b"not numpy")
    with pytest.raises(ArtifactError, match="item model"):
        load_artifact(broken)


@pytest.mark.slow
def test_model_service_serves_the_item_kind(trained_item_run):
    run = trained_item_run[1]
    predictor = Predictor.load(str(run.artifact_path.parent), run.artifact_path.name)
    model = predictor.artifact.recommender
    ratings = {1: 5.0, 5: 4.0, 2: 1.0, 7: 2.0, 11: 4.5}
    user = model.user_vector(ratings)
    ids = predictor.index.item_ids[user.rated_columns]
    vector = pb.SparseVector(movie_ids=ids.tolist(), values=user.preferences[user.rated_columns])
    with serving(lambda: create_server(Settings(model_port=0), PredictorHolder(predictor))) as (
        _,
        channel,
    ):
        wait_serving(channel)
        stub = model_pb2_grpc.ModelServiceStub(channel)
        reply = stub.Predict(pb.PredictRequest(preferences=vector, all_items=pb.AllItems()))
        expected = ridge(
            model.network.item_codes,
            user.rated_columns,
            user.preferences[user.rated_columns],
            model.network.fold_in_l2,
        )
        np.testing.assert_allclose(list(reply.predictions.values), expected, atol=1e-4)
        for movie_id in (3, 1, 40):  # unrated and rated movies
            explained = stub.Explain(
                pb.ExplainRequest(preferences=vector, movie_id=movie_id, max_contributions=100)
            )
            parts = [c.contribution for c in explained.contributions]
            assert explained.other_count == 0 and len(parts) == len(ids)
            # the contributions, computed apart from Predict, add up to Predict's value
            assert sum(parts) == pytest.approx(
                reply.predictions.values[predictor.index.column(movie_id)], abs=1e-5
            )
        similar = stub.SimilarItems(pb.SimilarItemsRequest(movie_id=1, k=3))
        assert [i.movie_id for i in similar.items] == [s.item_id for s in predictor.similar(1, 3)]
        top = stub.Predict(
            pb.PredictRequest(preferences=vector, top_k=pb.TopK(k=5, exclude_movie_ids=ids))
        )
        assert [int(i) for i in top.predictions.movie_ids] == [
            s.item_id for s in model.recommend(ratings, 5)
        ]
        with pytest.raises(grpc.RpcError) as caught:
            stub.Explain(pb.ExplainRequest(preferences=vector, movie_id=99_999))
        assert caught.value.code() == grpc.StatusCode.NOT_FOUND
