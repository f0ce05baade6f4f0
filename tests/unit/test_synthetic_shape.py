"""Synthetic data of a release's shape (`recsys synthesize --shape ml-25m`): a small set of
ML-25M's shape written as ml-latest CSV and read back through the real loader."""

from __future__ import annotations

import re

import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp
import scipy.sparse.linalg as sla

from recsys.cli import main
from recsys.data.movielens import load_movielens
from recsys.data.synthetic import (
    GENRES,
    ML25M_STAR_COUNTS,
    NO_GENRES,
    SHAPES,
    SyntheticSpec,
    write_shaped_movielens,
    write_synthetic_movielens,
)
from recsys.errors import InvalidArgument

SMALL = SHAPES["ml-25m"].resized(n_users=2000)
TITLE = re.compile(r'^Synthetic Movie (\d+)(, The)?( "Redux")? \((\d{4})\)$')


@pytest.fixture(scope="module")
def written(tmp_path_factory):
    return write_shaped_movielens(tmp_path_factory.mktemp("ml-25m-small"), SMALL, seed=3)


@pytest.fixture(scope="module")
def data(written):
    return load_movielens(written)


def test_the_small_shape_keeps_ml25m_proportions():
    full = SHAPES["ml-25m"]
    assert SMALL.n_users == 2000
    assert SMALL.n_ratings / SMALL.n_users == pytest.approx(full.n_ratings / full.n_users, 1e-3)
    # a sample of users rates more than its share of the movies: they scale with the root
    assert SMALL.n_movies == round(full.n_movies * (2000 / full.n_users) ** 0.5)
    assert SMALL.max_movie_id / SMALL.n_movies == pytest.approx(
        full.max_movie_id / full.n_movies, 1e-3
    )


def test_counts_are_exact(data):
    ratings = data.ratings
    assert data.name == "ml-latest" and data.rating_scale == (0.5, 5.0)
    assert len(ratings) == SMALL.n_ratings
    assert sorted(ratings["user_id"].unique()) == list(range(1, SMALL.n_users + 1))
    assert ratings["item_id"].nunique() == SMALL.n_movies
    # the catalog lists exactly the rated movies, once each
    assert len(data.items) == SMALL.n_movies
    assert set(data.items["item_id"]) == set(ratings["item_id"])


def test_every_user_has_twenty_ratings_and_no_pair_repeats(data):
    per_user = data.ratings.groupby("user_id").size()
    assert per_user.min() >= 20
    assert not data.ratings.duplicated(["user_id", "item_id"]).any()


def test_ratings_are_half_stars_shared_out_like_ml25m(data):
    shares = data.ratings["rating"].value_counts(normalize=True).sort_index()
    assert shares.index.tolist() == [x / 2 for x in range(1, 11)]
    expected = ML25M_STAR_COUNTS / ML25M_STAR_COUNTS.sum()
    assert np.abs(shares.to_numpy() - expected).max() < 0.02
    assert shares[4.0] == shares.max()  # four stars is the most common, as in MovieLens


def test_movie_ids_are_sparse_like_ml25m(data):
    ids = np.sort(data.items["item_id"].to_numpy())
    assert ids[0] >= 1 and ids[-1] <= SMALL.max_movie_id
    assert ids[-1] > 3 * SMALL.n_movies  # ML-25M: ids up to 209,171 for 59,047 movies
    assert len(np.unique(ids)) == len(ids)


def test_popularity_and_activity_are_long_tailed(data):
    per_movie = np.sort(data.ratings.groupby("item_id").size().to_numpy())[::-1]
    top_tenth = per_movie[: len(per_movie) // 10].sum() / per_movie.sum()
    assert top_tenth > 0.5
    assert (per_movie < 10).mean() > 0.3  # a long tail of rarely rated movies
    assert per_movie.min() >= 1 and (per_movie == 1).any()
    assert per_movie[0] > 0.25 * SMALL.n_users  # a hit that a quarter of the users rated
    per_user = data.ratings.groupby("user_id").size()
    assert per_user.max() > 10 * per_user.median()


def test_timestamps_fall_in_the_release_years_and_cluster_per_user(data):
    stamps = data.ratings["timestamp"]
    assert stamps.min() >= SMALL.first_timestamp and stamps.max() <= SMALL.last_timestamp
    years = pd.to_datetime(stamps, unit="s").dt.year
    assert years.min() == 1995 and years.max() == 2019
    spans = data.ratings.groupby("user_id")["timestamp"].agg(lambda t: t.max() - t.min())
    day, year = 86_400, 365 * 86_400
    assert spans.median() < 7 * day  # most users rate in one sitting or a few
    assert (spans > year).any()  # some come back for years


def test_titles_with_commas_and_quotes_round_trip(written, data):
    titles = data.items.set_index("item_id")["title"]
    matches = {item: TITLE.match(title) for item, title in titles.items()}
    assert all(matches.values()), [t for t in titles if not TITLE.match(t)][:3]
    assert all(int(m.group(1)) == item for item, m in matches.items())
    with_comma = [item for item, m in matches.items() if m.group(2)]
    with_quotes = [item for item, m in matches.items() if m.group(3)]
    assert with_comma and with_quotes
    raw = (written / "movies.csv").read_text(encoding="utf-8")
    assert raw.startswith("movieId,title,genres\n")
    assert f'\n{with_comma[0]},"Synthetic Movie {with_comma[0]}, The (' in raw
    assert f'\n{with_quotes[0]},"Synthetic Movie {with_quotes[0]}' in raw
    assert '""Redux""' in raw  # quotes inside a quoted field are doubled


def test_genres_are_movielens_genres(data):
    for genres in data.items["genres"]:
        assert genres == NO_GENRES or set(genres.split("|")) <= set(GENRES), genres


def test_the_ratings_have_structure_a_model_can_learn(data):
    """A rank-8 SVD of the residuals after user and movie biases predicts held-out ratings
    better than the biases alone, and the biases better than the global mean."""
    ratings = data.ratings
    users = pd.factorize(ratings["user_id"])[0]
    movies = pd.factorize(ratings["item_id"])[0]
    stars = ratings["rating"].to_numpy(np.float64)
    test = np.random.default_rng(0).random(len(ratings)) < 0.1
    train = ~test
    mean = stars[train].mean()

    def shrunk_means(index, values, n):
        return np.bincount(index, values, n) / (np.bincount(index, None, n) + 5.0)

    movie_bias = shrunk_means(movies[train], stars[train] - mean, movies.max() + 1)
    left = stars[train] - mean - movie_bias[movies[train]]
    user_bias = shrunk_means(users[train], left, users.max() + 1)
    residual = left - user_bias[users[train]]
    shape = (users.max() + 1, movies.max() + 1)
    u, s, vt = sla.svds(sp.csr_matrix((residual, (users[train], movies[train])), shape), k=8)
    baseline = mean + user_bias[users[test]] + movie_bias[movies[test]]
    low_rank = baseline + np.einsum("ij,ij->i", u[users[test]] * s, vt.T[movies[test]])

    def rmse(predicted):
        return float(np.sqrt(np.mean((stars[test] - predicted) ** 2)))

    assert rmse(baseline) < 0.9 * rmse(np.full(test.sum(), mean))
    assert rmse(low_rank) < 0.95 * rmse(baseline)


def test_the_loader_keeps_ratings_compact(data):
    ratings = data.ratings
    assert ratings.dtypes.to_dict() == {
        "user_id": np.int32,
        "item_id": np.int32,
        "rating": np.float32,
        "timestamp": np.int64,
    }
    # 20 bytes a rating and no Python object per row
    assert ratings.memory_usage(index=False, deep=True).sum() == 20 * len(ratings)


def test_the_same_seed_writes_the_same_bytes(tmp_path):
    tiny = SHAPES["ml-25m"].resized(n_users=300)
    first = write_shaped_movielens(tmp_path / "a", tiny, seed=11)
    again = write_shaped_movielens(tmp_path / "b", tiny, seed=11)
    other = write_shaped_movielens(tmp_path / "c", tiny, seed=12)
    for name in ("ratings.csv", "movies.csv"):
        assert (first / name).read_bytes() == (again / name).read_bytes()
        assert (first / name).read_bytes() != (other / name).read_bytes()


def test_chunks_do_not_change_the_totals(tmp_path, monkeypatch):
    """Users are written a chunk at a time; many small chunks still give exact counts."""
    import recsys.data.synthetic as synthetic

    monkeypatch.setattr(synthetic, "CHUNK_RATINGS", 5_000)
    tiny = SHAPES["ml-25m"].resized(n_users=400)
    data = load_movielens(write_shaped_movielens(tmp_path, tiny, seed=2))
    assert len(data.ratings) == tiny.n_ratings
    assert data.ratings["user_id"].nunique() == tiny.n_users
    assert data.ratings["item_id"].nunique() == tiny.n_movies
    assert data.ratings.groupby("user_id").size().min() >= 20


def test_explicit_counts_override_the_shape(tmp_path):
    shape = SHAPES["ml-25m"].resized(n_users=150, n_movies=400, n_ratings=9_000)
    data = load_movielens(write_shaped_movielens(tmp_path, shape, seed=0))
    assert len(data.ratings) == 9_000
    assert data.ratings["user_id"].nunique() == 150
    assert data.ratings["item_id"].nunique() == 400


@pytest.mark.parametrize(
    ("sizes", "problem"),
    [
        ({"n_users": 100, "n_ratings": 1_000}, "need 2000 to"),
        ({"n_users": 100, "n_movies": 50, "n_ratings": 3_000}, "need 2000 to 2700"),
        ({"n_users": 100, "n_movies": 10}, "need at least 1 user and 20 movies"),
        ({"n_users": 20, "n_movies": 900, "n_ratings": 800}, "cannot cover 900 movies"),
    ],
)
def test_impossible_shapes_are_refused(sizes, problem):
    with pytest.raises(InvalidArgument, match=problem):
        SHAPES["ml-25m"].resized(**sizes)


def test_cli_writes_the_shape(tmp_path, capsys):
    out = tmp_path / "cli"
    args = ["synthesize", "--shape", "ml-25m", "--users", "300", "--out", str(out)]
    assert main([*args, "--seed", "4"]) == 0
    assert capsys.readouterr().out.strip() == str(out)
    library = write_shaped_movielens(
        tmp_path / "lib", SHAPES["ml-25m"].resized(n_users=300), seed=4
    )
    for name in ("ratings.csv", "movies.csv"):
        assert (out / name).read_bytes() == (library / name).read_bytes()


def test_cli_default_is_still_the_planted_groups(tmp_path, capsys):
    assert main(["synthesize", str(tmp_path / "cli"), "--users", "30", "--items", "25"]) == 0
    library = write_synthetic_movielens(tmp_path / "lib", SyntheticSpec(n_users=30, n_items=25))
    for name in ("ratings.dat", "movies.dat"):
        assert (tmp_path / "cli" / name).read_bytes() == (library / name).read_bytes()


@pytest.mark.parametrize(
    ("args", "problem"),
    [
        (["--shape", "ml-25m", "--users", "100", "--ratings", "50"], "bad catalog shape"),
        (["--ratings", "5000"], "--ratings needs a release's shape"),
        (["--shape", "ml-25m", "--groups", "3"], "--groups applies to --shape groups only"),
        (["--shape", "ml-25m", "--users", "100", "--seed", "-1"], "seed must be ≥ 0"),
    ],
)
def test_cli_names_bad_options(tmp_path, capsys, args, problem):
    assert main(["synthesize", "--out", str(tmp_path / "x"), *args]) == 2
    assert problem in capsys.readouterr().err


def test_cli_wants_one_directory(tmp_path, capsys):
    assert main(["synthesize"]) == 2
    assert main(["synthesize", str(tmp_path / "a"), "--out", str(tmp_path / "b")]) == 2
    assert "give the output directory once" in capsys.readouterr().err
