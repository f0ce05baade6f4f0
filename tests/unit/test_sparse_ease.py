"""Sparse EASE: each item's weights are the ridge regression on its top-m cosine neighbours;
with every other item as a neighbour it is dense EASE exactly."""

import numpy as np
import pytest
import scipy.sparse as sp

from recsys.ease import fit_ease
from recsys.sparse_ease import fit_sparse_ease


@pytest.fixture(scope="module")
def rated():
    matrix = sp.random(400, 80, density=0.15, random_state=3, format="csr", dtype=np.float32)
    matrix.data[:] = 1.0
    return matrix


def test_every_other_item_as_neighbour_is_dense_ease(rated):
    dense = fit_ease(rated, 25.0)
    sparse = fit_sparse_ease(rated, 25.0, neighbors=79)
    np.testing.assert_allclose(sparse.toarray(), dense, rtol=1e-5, atol=1e-7)


def test_each_item_keeps_its_top_neighbours_by_cosine(rated):
    weights = fit_sparse_ease(rated, 25.0, neighbors=10).tocsc()
    gram = (rated.T @ rated).toarray().astype(np.float64)
    counts = np.diag(gram)
    for item in range(rated.shape[1]):
        rows = weights.indices[weights.indptr[item] : weights.indptr[item + 1]]
        assert len(rows) == 10 and item not in rows
        cosine = gram[:, item] / np.sqrt(counts * counts[item])
        cosine[item] = -np.inf
        assert cosine[rows].min() >= np.sort(cosine)[-10] - 1e-12
        # and the weights are the ridge regression of the item on exactly those neighbours
        system = gram[np.ix_(rows, rows)] + 25.0 * np.eye(10)
        expected = np.linalg.solve(system, gram[rows, item])
        got = weights[:, item].toarray().ravel()[rows]
        np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-6)


def test_neighbours_come_from_the_most_rated_pool(rated):
    counts = np.asarray(rated.sum(axis=0)).ravel()
    pool = set(np.argsort(-counts, kind="stable")[:20].tolist())
    weights = fit_sparse_ease(rated, 25.0, neighbors=50, pool=20).tocoo()
    assert set(weights.row.tolist()) <= pool
    assert weights.nnz == 80 * 19  # at most pool − 1 neighbours each, so a pool item has as many
    assert not np.any(weights.row == weights.col)


def test_a_row_limit_keeps_each_rows_largest_weights(rated):
    full = fit_sparse_ease(rated, 25.0, neighbors=30).tocsr()
    limited = fit_sparse_ease(rated, 25.0, neighbors=30, row_limit=12).tocsr()
    assert np.diff(full.indptr).max() > 12  # the limit has rows to cut
    for item in range(rated.shape[1]):
        values = full.data[full.indptr[item] : full.indptr[item + 1]]
        kept = limited.indices[limited.indptr[item] : limited.indptr[item + 1]]
        assert len(kept) == min(12, len(values))
        row = full[item].toarray().ravel()
        # what is kept is unchanged, and nothing dropped is larger than what is kept
        np.testing.assert_array_equal(limited[item].toarray().ravel()[kept], row[kept])
        dropped = np.setdiff1d(full.indices[full.indptr[item] : full.indptr[item + 1]], kept)
        if len(dropped):
            assert np.abs(row[dropped]).max() <= np.abs(row[kept]).min()
    # a limit no row reaches changes nothing
    loose = fit_sparse_ease(rated, 25.0, neighbors=30, row_limit=80)
    np.testing.assert_array_equal(loose.toarray(), full.toarray())


def test_bad_parameters_are_refused(rated):
    with pytest.raises(ValueError, match="λ"):
        fit_sparse_ease(rated, 0.0)
    with pytest.raises(ValueError, match="neighbour"):
        fit_sparse_ease(rated, 1.0, neighbors=0)
    with pytest.raises(ValueError, match="row limit"):
        fit_sparse_ease(rated, 1.0, row_limit=-1)
