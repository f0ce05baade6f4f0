"""The contract every registered model kind keeps (and the user kind's deeper option), on a
small synthetic data set: trained, saved and loaded back with identical predictions; a new
user and an inline user folded in; unknown items ignored and reported; empty input answered
as documented; explanations adding up to the predicted preference, or refused by a network
whose predictions are no sums over rated items."""

from __future__ import annotations

import shutil

import numpy as np
import pytest
import scipy.sparse as sp

from recsys.artifacts import list_versions, load_artifact, save_artifact
from recsys.data.movielens import load_movielens
from recsys.data.split import split_ratings
from recsys.data.synthetic import SyntheticSpec, write_synthetic_movielens
from recsys.ease import Ease
from recsys.errors import ArtifactError, FailedPrecondition, InvalidArgument, NotFound
from recsys.features import preference_matrix
from recsys.model.config import TrainConfig
from recsys.model.registry import KINDS, get_kind
from recsys.packed import Rows
from recsys.ranking import RANK_MODES, ItemItemRanking
from services.model.predictor import ALL_ITEMS, Outputs, Predictor

SPEC = SyntheticSpec(n_users=150, n_items=40, n_groups=4, ratings_per_user=20, seed=11)
# Settings every kind trains with, in seconds: validation stopping (the item kind needs it).
SETTINGS = {
    "encoding_size": 4,
    "max_epochs": 3,
    "batch_size": 32,
    "optimizer": "adam",
    "learning_rate": 1e-2,
    "early_stopping": "validation",
    "patience": 1,
    "min_delta": 0.0,
}
CASES = {name: (name, {}) for name in KINDS}
# a blend's parts train as their presets say (the settings above do not reach them)
CASES["blend"] = ("blend", {"components": ["user", "item"]})
CASES["user-deep"] = ("user", {"hidden_layers": [6], "activation": "selu", "input_dropout": 0.1})
UNKNOWN_MOVIE = 99_999  # not in the synthetic catalog

pytestmark = pytest.mark.slow  # every case trains its model (seconds each)


@pytest.fixture(scope="module")
def split_data(tmp_path_factory):
    data = load_movielens(write_synthetic_movielens(tmp_path_factory.mktemp("kinds"), SPEC))
    return data, split_ratings(data.ratings, seed=0)


@pytest.fixture(scope="module", params=list(CASES), ids=list(CASES))
def saved(request, split_data, tmp_path_factory):
    """(kind, TrainedModel, Artifact loaded from the version directory it was saved to)."""
    data, split = split_data
    name, settings = CASES[request.param]
    kind = get_kind(name)
    config = TrainConfig(kind=name, **SETTINGS, **settings)
    trained = kind.train(
        split.fit, split.validation, config, rating_scale=data.rating_scale, progress=False
    )
    rated = preference_matrix(split.train, trained.index, trained.normalization).matrix
    ease = Ease.fit(rated, l2=10.0)
    path = save_artifact(
        tmp_path_factory.mktemp(request.param),
        trained,
        metadata={"note": "contract test"},
        ranking=ItemItemRanking(ease.weights, ease.l2, 0.3),
    )
    return kind, trained, load_artifact(path)


def users(n_items: int, n: int = 6, seed: int = 0) -> np.ndarray:
    """(n, n_items) float32 preference rows, about a quarter of the entries rated."""
    rng = np.random.default_rng(seed)
    rows = rng.normal(0, 1, (n, n_items)).astype(np.float32)
    rows[rng.random(rows.shape) < 0.75] = 0
    return rows


def ratings_of(artifact, count: int, seed: int = 1) -> dict[int, float]:
    """{movie id: stars} of an inline user: `count` of the model's movies."""
    rng = np.random.default_rng(seed)
    movies = rng.choice(artifact.recommender.index.item_ids, count, replace=False)
    return {int(m): float(rng.integers(1, 6)) for m in movies}


def explainable(network) -> bool:
    try:
        network.check_explainable()
    except FailedPrecondition:
        return False
    return True


def test_every_kind_is_registered_under_its_name():
    assert KINDS and all(kind.name == name for name, kind in KINDS.items())
    assert all(kind.files for kind in KINDS.values())  # what load needs, besides the common


def test_round_trip_gives_identical_predictions(saved):
    kind, trained, artifact = saved
    model = artifact.recommender
    assert artifact.kind == kind.name and artifact.metadata["note"] == "contract test"
    before, after = trained.network, model.network
    assert after.n_items == before.n_items == len(model.index)
    assert after.encoding_size == before.encoding_size
    if kind.name != "blend":  # a blend's is its first part's, of that part's preset
        assert after.encoding_size == SETTINGS["encoding_size"]
    rows = users(len(model.index))
    np.testing.assert_array_equal(after.predict(rows), before.predict(rows))
    np.testing.assert_array_equal(
        after.predict(sp.csr_matrix(rows)), before.predict(sp.csr_matrix(rows))
    )
    pair_rows, pair_columns = np.array([0, 3, 5, 5]), np.array([0, 7, 39, 2])
    np.testing.assert_array_equal(
        after.predict_pairs(rows, pair_rows, pair_columns),
        before.predict_pairs(rows, pair_rows, pair_columns),
    )
    np.testing.assert_array_equal(after.item_embeddings, before.item_embeddings)
    np.testing.assert_array_equal(model.index.item_ids, trained.index.item_ids)
    np.testing.assert_array_equal(model.normalization.item_means, trained.normalization.item_means)
    assert model.rating_scale == trained.rating_scale
    # dense and sparse rows, and pairs, are three readings of the same predictions
    np.testing.assert_allclose(
        after.predict(sp.csr_matrix(rows)), after.predict(rows), rtol=1e-5, atol=1e-6
    )
    np.testing.assert_allclose(
        after.predict_pairs(rows, pair_rows, pair_columns),
        after.predict(rows)[pair_rows, pair_columns],
        rtol=1e-5,
        atol=1e-6,
    )


def test_a_version_lacking_a_file_of_its_kind_is_refused(saved, tmp_path):
    kind, _, artifact = saved
    for name in kind.files:
        copy = tmp_path / name / artifact.version
        shutil.copytree(artifact.path, copy)
        (copy / name).unlink()
        assert list_versions(copy.parent) == [artifact.version]  # still listed as a version
        with pytest.raises(ArtifactError, match=f"missing.*{name}"):
            load_artifact(copy)


def test_validation_rmse_is_that_of_the_served_network(saved, split_data):
    from recsys.model.training import ValidationSet

    kind, trained, artifact = saved
    data, split = split_data
    model = artifact.recommender
    held_out = ValidationSet.build(
        split.fit, split.validation, model.index, model.normalization, data.rating_scale
    )
    served = held_out.rmse(model.network, model.normalization, data.rating_scale)
    assert trained.validation_rmse == pytest.approx(served, rel=1e-6)
    if kind.name == "blend":  # its parts kept their epochs, each as its preset stops
        assert [p["best_epoch"] >= 1 for p in trained.metadata["blend"]["parts"]] == [True] * 2
        return
    assert 1 <= trained.best_epoch <= len(trained.history["loss"]) <= SETTINGS["max_epochs"]


def test_a_new_user_gets_recommendations(saved):
    _, _, artifact = saved
    model = artifact.recommender
    nobody = model.user_vector({})
    assert nobody.rated_columns.size == 0 and nobody.user_mean == 0.0
    predicted = model.predict_ratings(nobody)
    assert predicted.shape == (len(model.index),) and np.isfinite(predicted).all()
    picks = model.recommend({}, k=5)
    assert len({p.item_id for p in picks}) == 5
    for mode in RANK_MODES:
        assert len(model.recommend({}, k=5, rank_by=mode)) == 5


def test_an_inline_user_is_folded_in(saved):
    _, _, artifact = saved
    model = artifact.recommender
    ratings = ratings_of(artifact, 8)
    user = model.user_vector(ratings)
    assert sorted(model.index.item_ids[user.rated_columns].tolist()) == sorted(ratings)
    predicted = model.predict_ratings(user)
    expected = model.normalization.denormalize(
        model.network.predict(user.preferences[None, :])[0].astype(np.float64), user.user_mean
    )
    np.testing.assert_array_equal(predicted, expected)
    assert not np.allclose(predicted, model.predict_ratings(model.user_vector({})))  # it counts
    picks = model.recommend(ratings, k=10)
    assert len(picks) == 10 and not {p.item_id for p in picks} & set(ratings)
    # the model service's predictor answers the same user with the same predictions
    predictor = Predictor(artifact)
    row = Rows.from_lists(
        [model.index.item_ids[user.rated_columns]], [user.preferences[user.rated_columns]]
    )
    served = predictor.predict_rows(row, Outputs.single(ALL_ITEMS))
    np.testing.assert_allclose(
        served.predictions.row_values(0),
        model.network.predict(user.preferences[None, :])[0],
        rtol=1e-5,
        atol=1e-6,
    )


def test_unknown_items_are_ignored_and_reported(saved):
    _, _, artifact = saved
    model = artifact.recommender
    ratings = ratings_of(artifact, 6)
    with_unknown = {**ratings, UNKNOWN_MOVIE: 4.0}
    user = model.user_vector(with_unknown)
    assert user.unknown_item_ids == [UNKNOWN_MOVIE]
    np.testing.assert_array_equal(user.preferences, model.user_vector(ratings).preferences)
    assert model.recommend(with_unknown, k=5) == model.recommend(ratings, k=5)
    with pytest.raises(NotFound):
        model.similar(UNKNOWN_MOVIE)
    predictor = Predictor(artifact)
    ids = np.array(sorted(with_unknown), np.int64)
    row = Rows.from_lists([ids], [np.ones(len(ids), np.float32)])
    answer = predictor.predict_rows(row, Outputs.single(3))
    assert answer.ignored.ids(0).tolist() == [UNKNOWN_MOVIE] and not answer.errors
    asked = predictor.predict_rows(row, Outputs.single(0, given=[UNKNOWN_MOVIE]))
    assert isinstance(asked.errors[0], NotFound)


def test_empty_input_gives_the_documented_answer(saved):
    _, _, artifact = saved
    model = artifact.recommender
    network, n_items = model.network, len(model.index)
    assert network.predict(np.zeros((0, n_items), np.float32)).shape == (0, n_items)
    assert network.predict(sp.csr_matrix((0, n_items), dtype=np.float32)).shape == (0, n_items)
    none = np.empty(0, np.int64)
    assert network.predict_pairs(np.zeros((1, n_items), np.float32), none, none).shape == (0,)
    with pytest.raises(InvalidArgument, match="k must be positive"):
        model.recommend({}, k=0)
    with pytest.raises(InvalidArgument, match="outside"):
        model.user_vector({int(model.index.item_ids[0]): 9.0})
    movie = int(model.index.item_ids[3])
    if not explainable(network):
        with pytest.raises(FailedPrecondition):
            model.explain({}, movie)
        return
    # no ratings: nothing contributes, and the prediction is the empty user's
    explained = model.explain({}, movie)
    assert explained.contributions == [] and explained.other_count == 0
    empty = network.predict(np.zeros((1, n_items), np.float32))[0, 3]
    assert explained.predicted_preference == pytest.approx(float(empty), abs=1e-6)
    with pytest.raises(InvalidArgument):
        model.explain(ratings_of(artifact, 3), movie, limit=0)


def test_explanations_add_up_to_the_prediction(saved):
    _, _, artifact = saved
    model = artifact.recommender
    ratings = ratings_of(artifact, 12, seed=5)
    if not explainable(model.network):
        with pytest.raises(FailedPrecondition):
            model.explain(ratings, int(model.index.item_ids[0]))
        return
    user = model.user_vector(ratings)
    predicted = model.network.predict(user.preferences[None, :])[0]
    ratings_predicted = model.predict_ratings(user)
    for column in (0, int(user.rated_columns[0]), len(model.index) - 1):
        movie = int(model.index.item_ids[column])
        everything = model.explain(ratings, movie, limit=100)
        parts = [c.contribution for c in everything.contributions]
        assert len(parts) == len(ratings) and everything.other_count == 0
        assert sum(parts) == pytest.approx(everything.predicted_preference, abs=1e-9)
        assert everything.predicted_preference == pytest.approx(float(predicted[column]), abs=1e-5)
        assert everything.predicted_rating == pytest.approx(ratings_predicted[column], abs=1e-5)
        shown = model.explain(ratings, movie, limit=3)
        assert len(shown.contributions) == 3 and shown.other_count == len(ratings) - 3
        total = sum(c.contribution for c in shown.contributions) + shown.other_contribution
        assert total == pytest.approx(everything.predicted_preference, abs=1e-9)
    with pytest.raises(NotFound):
        model.explain(ratings, UNKNOWN_MOVIE)
