"""The relevance ranking with sparse item-item weights (TrainConfig.relevance_neighbors): the
same scores as its weights made dense, saved and loaded as CSR, served by the model service
through a real channel."""

import dataclasses

import numpy as np
import pytest
import scipy.sparse as sp

from recsys.api.model.v1 import model_pb2 as pb
from recsys.api.model.v1 import model_pb2_grpc
from recsys.artifacts import SPARSE_ITEM_ITEM_FILE, load_artifact
from recsys.ease import DENSE_MAX_ITEMS, neighbors_for
from recsys.model.config import TrainConfig
from recsys.ranking import ItemItemRanking
from recsys.serving.config import Settings
from services.model.predictor import Predictor, PredictorHolder
from services.model.server import create_server
from tests.conftest import TINY_TRAINING
from tests.support.servers import serving, wait_serving

NEIGHBORS = 5
ROW_LIMIT = 7


def test_sparse_weights_score_as_their_dense_form():
    rng = np.random.default_rng(0)
    dense = rng.normal(size=(30, 30)).astype(np.float32)
    dense[rng.random((30, 30)) < 0.7] = 0.0
    np.fill_diagonal(dense, 0.0)
    sparse = ItemItemRanking(sp.csr_matrix(dense), 10.0, 0.2, neighbors=9)
    as_dense = ItemItemRanking(dense, 10.0, 0.2)
    columns = [np.array([0, 3, 7]), np.array([], np.int64), np.array([29])]
    np.testing.assert_allclose(sparse.item_scores(columns), as_dense.item_scores(columns))
    rated = sp.random(4, 30, density=0.3, random_state=1, format="csr", dtype=np.float32)
    np.testing.assert_allclose(sparse.item_scores(rated), as_dense.item_scores(rated), atol=1e-6)


def test_auto_keeps_dense_weights_up_to_the_limit():
    assert neighbors_for(3706) == 0
    assert neighbors_for(DENSE_MAX_ITEMS + 1) > 0
    assert neighbors_for(100, 99) == 0  # every other item: dense EASE
    assert neighbors_for(100, 5) == 5
    with pytest.raises(ValueError):
        neighbors_for(100, -2)


def test_bad_neighbours_setting_is_refused():
    with pytest.raises(Exception, match="relevance_neighbors"):
        TrainConfig(relevance_neighbors=-2)
    with pytest.raises(Exception, match="relevance_row_limit"):
        TrainConfig(relevance_row_limit=-1)


@pytest.fixture(scope="module")
def sparse_run(synthetic_dir, tmp_path_factory):
    from recsys.model.config import PRESETS
    from recsys.pipeline import find_data, train_and_evaluate

    source = find_data(synthetic_dir, download=None)
    config = PRESETS["user"].replace(
        **TINY_TRAINING, relevance_neighbors=NEIGHBORS, relevance_row_limit=ROW_LIMIT
    )
    return train_and_evaluate(source, config, tmp_path_factory.mktemp("sparse_models"))


@pytest.mark.slow
def test_a_version_keeps_its_sparse_weights(sparse_run):
    path = sparse_run.artifact_path
    assert (path / SPARSE_ITEM_ITEM_FILE).is_file()
    ranking = load_artifact(path).recommender.ranking
    assert sp.issparse(ranking.weights) and ranking.neighbors == NEIGHBORS
    assert ranking.row_limit == ROW_LIMIT
    per_column = np.diff(ranking.weights.tocsc().indptr)
    assert per_column.max() <= NEIGHBORS
    assert np.diff(ranking.weights.indptr).max() == ROW_LIMIT
    assert not ranking.weights.diagonal().any()


@pytest.mark.slow
def test_the_model_service_ranks_by_the_sparse_weights(sparse_run):
    path = sparse_run.artifact_path
    predictor = Predictor.load(str(path.parent), path.name)
    recommender = predictor.artifact.recommender
    ratings = {int(m): 5.0 for m in predictor.index.item_ids[[0, 3, 8]]}
    expected = recommender.recommend(ratings, k=5, rank_by="relevance")
    dense = dataclasses.replace(recommender.ranking, weights=recommender.ranking.weights.toarray())
    recommender_dense = type(recommender)(
        recommender.network,
        recommender.index,
        recommender.normalization,
        recommender.rating_scale,
        dense,
    )
    assert [s.item_id for s in recommender_dense.recommend(ratings, k=5, rank_by="relevance")] == [
        s.item_id for s in expected
    ]
    user = recommender.user_vector(ratings)
    request = pb.PredictRequest(
        preferences=pb.SparseVector(
            movie_ids=predictor.index.item_ids[user.rated_columns].tolist(),
            values=user.preferences[user.rated_columns].tolist(),
        ),
        top_k=pb.TopK(k=5, exclude_movie_ids=list(ratings), rank_by=pb.RANK_BY_RELEVANCE),
    )
    with serving(lambda: create_server(Settings(model_port=0), PredictorHolder(predictor))) as (
        _,
        channel,
    ):
        wait_serving(channel)
        reply = model_pb2_grpc.ModelServiceStub(channel).Predict(request, timeout=10)
    assert list(reply.predictions.movie_ids) == [s.item_id for s in expected]
