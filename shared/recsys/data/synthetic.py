"""Deterministic synthetic MovieLens data, in two shapes.

Planted groups (`SyntheticSpec`, ML-1M format): small, for tests and for the main job when no
real data can be had. Users and items each belong to one of `n_groups` taste groups: user u to
group (u - 1) % g, item i to group (i - 1) % g (also written as the item's genre, "Group<g>").
A user rates items of their own group about `affinity` stars above the item's quality and other
groups' items a little below it; ratings are rounded to whole stars in [1, 5].

A release's shape (`CatalogShape`, e.g. `SHAPES["ml-25m"]`, ml-latest CSV format): the counts,
sparse movie ids, long tails and half stars of a real MovieLens release, written in chunks.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from recsys.errors import InvalidArgument
from recsys.progress import bar


@dataclass(frozen=True)
class SyntheticSpec:
    n_users: int = 600
    n_items: int = 200
    n_groups: int = 4
    ratings_per_user: int = 40  # mean; each user rates at least 20 items, as in MovieLens
    affinity: float = 1.2  # stars added for an item of the user's own group
    noise: float = 0.5  # standard deviation of the per-rating noise, in stars
    seed: int = 0


def user_group(user_id: int, n_groups: int) -> int:
    return (user_id - 1) % n_groups


def item_group(item_id: int, n_groups: int) -> int:
    return (item_id - 1) % n_groups


def generate_ratings(spec: SyntheticSpec) -> np.ndarray:
    """(n, 4) int64 rows of user, item, rating, timestamp, grouped by user."""
    rng = np.random.default_rng(spec.seed)
    item_ids = np.arange(1, spec.n_items + 1)
    quality = rng.normal(0.0, 0.4, spec.n_items)
    popularity = rng.zipf(1.6, spec.n_items).astype(np.float64)
    popularity /= popularity.sum()
    popularity = 0.5 * popularity + 0.5 / spec.n_items  # every item gets some ratings
    rows = []
    timestamp = 978_300_000
    for user_id in range(1, spec.n_users + 1):
        count = int(np.clip(rng.poisson(spec.ratings_per_user), 20, spec.n_items))
        items = rng.choice(item_ids, size=count, replace=False, p=popularity)
        own = (items - 1) % spec.n_groups == user_group(user_id, spec.n_groups)
        bias = rng.normal(0.0, 0.3)
        stars = 3.4 + bias + quality[items - 1] + np.where(own, spec.affinity, -0.4)
        stars = np.clip(np.rint(stars + rng.normal(0.0, spec.noise, count)), 1, 5)
        for item, rating in zip(items, stars, strict=True):
            timestamp += int(rng.integers(1, 300))
            rows.append((user_id, int(item), int(rating), timestamp))
    return np.array(rows, dtype=np.int64)


def write_synthetic_movielens(directory: Path | str, spec: SyntheticSpec | None = None) -> Path:
    """Write ratings.dat and movies.dat (ML-1M format, latin-1) into `directory`."""
    spec = spec or SyntheticSpec()
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    ratings = generate_ratings(spec)
    lines = "".join(f"{u}::{i}::{r}::{t}\n" for u, i, r, t in ratings)
    (directory / "ratings.dat").write_bytes(lines.encode("latin-1"))
    movies = "".join(
        f"{i}::Synthetic Movie {i} (2000)::Group{item_group(i, spec.n_groups)}\n"
        for i in range(1, spec.n_items + 1)
    )
    (directory / "movies.dat").write_bytes(movies.encode("latin-1"))
    return directory


# --- A release's shape, in the ml-latest CSV format ---------------------------------------
#
# Every user gets a number of ratings (lognormal above `min_user_ratings`, summing to the exact
# total) and each movie a popularity weight (a Zipf head and a fast-falling tail, loosely
# falling with the movie id). Each movie is first handed to one user, so none goes unrated;
# the rest of a user's movies are drawn by weight without repeats. Stars come
# from a low-rank taste model (user bias + movie bias + user·movie factors + noise) cut at
# ML-25M's half-star shares. Users are made and written a chunk at a time: memory follows the
# catalog and the chunk, not the number of ratings.

GENRES = [
    "Action",
    "Adventure",
    "Animation",
    "Children",
    "Comedy",
    "Crime",
    "Documentary",
    "Drama",
    "Fantasy",
    "Film-Noir",
    "Horror",
    "IMAX",
    "Musical",
    "Mystery",
    "Romance",
    "Sci-Fi",
    "Thriller",
    "War",
    "Western",
]
NO_GENRES = "(no genres listed)"
# One taste dimension per genre here: a movie's strongest dimension is one of its genres.
TASTE_GENRES = ["Drama", "Comedy", "Action", "Thriller", "Romance", "Horror", "Sci-Fi", "Western"]

HALF_STARS = np.arange(1, 11, dtype=np.float32) / 2  # 0.5, 1.0, ..., 5.0
# How many of ML-25M's ratings have 0.5, 1.0, ..., 5.0 stars.
ML25M_STAR_COUNTS = np.array(
    [393_068, 776_815, 399_490, 1_640_868, 1_262_797, 4_896_928, 3_177_318, 6_639_798,
     2_200_539, 3_612_474],
    dtype=np.float64,
)  # fmt: skip

CHUNK_RATINGS = 1_000_000  # users are made and written about this many ratings at a time
EXACT_BATCH_KEYS = 2_000_000  # users × movies random keys per batch of the exact draw
LIGHT_ROUNDS = 8  # draw-and-deduplicate rounds before a user is left to the exact draw


@dataclass(frozen=True)
class CatalogShape:
    """Counts and ranges of a MovieLens release. Movie ids are spread over 1..max_movie_id;
    timestamps are seconds since the epoch (UTC); every user has ≥ min_user_ratings ratings."""

    n_users: int
    n_movies: int
    n_ratings: int
    max_movie_id: int
    first_timestamp: int
    last_timestamp: int
    min_user_ratings: int = 20

    def __post_init__(self):
        problems = []
        if self.n_users < 1 or self.n_movies < self.min_user_ratings:
            problems.append(
                f"need at least 1 user and {self.min_user_ratings} movies,"
                f" got {self.n_users} and {self.n_movies}"
            )
        else:
            low = self.n_users * self.min_user_ratings
            high = self.n_users * self.max_user_ratings
            if not low <= self.n_ratings <= high:
                problems.append(
                    f"{self.n_ratings} ratings for {self.n_users} users: need {low} to {high}"
                    f" ({self.min_user_ratings} to {self.max_user_ratings} each)"
                )
            if self.n_ratings < self.n_movies:
                problems.append(f"{self.n_ratings} ratings cannot cover {self.n_movies} movies")
        if self.max_movie_id < self.n_movies:
            problems.append(f"max movie id {self.max_movie_id} < {self.n_movies} movies")
        if self.last_timestamp <= self.first_timestamp:
            problems.append("the last timestamp must come after the first")
        if problems:
            raise InvalidArgument("bad catalog shape: " + "; ".join(problems))

    @property
    def max_user_ratings(self) -> int:
        """The most one user rates: 55% of the catalog (ML-25M's busiest user rated 32,202
        of its 59,047 movies)."""
        return max(self.min_user_ratings, int(0.55 * self.n_movies))

    def resized(
        self, n_users: int | None = None, n_movies: int | None = None, n_ratings: int | None = None
    ) -> CatalogShape:
        """The same shape at another size. What is not given follows the users: ratings in
        proportion (the same ratings per user), movies with the square root (a sample of a
        release's users rates far more than that share of its movies); the id range follows
        the movies (the same id sparsity)."""
        users = self.n_users if n_users is None else n_users
        factor = users / self.n_users
        movies = round(self.n_movies * factor**0.5) if n_movies is None else n_movies
        ratings = round(self.n_ratings * factor) if n_ratings is None else n_ratings
        return dataclasses.replace(
            self,
            n_users=users,
            n_movies=movies,
            n_ratings=ratings,
            max_movie_id=max(movies, round(self.max_movie_id * movies / self.n_movies)),
        )


SHAPES = {
    # MovieLens 25M (2019): ratings from 1995-01-09 11:46:49 to 2019-11-21 09:15:03 UTC
    "ml-25m": CatalogShape(
        n_users=162_541,
        n_movies=59_047,
        n_ratings=25_000_095,
        max_movie_id=209_171,
        first_timestamp=789_652_009,
        last_timestamp=1_574_327_703,
    ),
}


@dataclass(frozen=True)
class _Taste:
    """The low-rank model behind the stars: score = user bias + movie bias + user·movie
    factors + noise; higher scores get more stars."""

    user_bias: np.ndarray  # (n_users,) float32
    user_factors: np.ndarray  # (n_users, TASTE_DIMS) float32
    movie_bias: np.ndarray  # (n_movies,) float32
    movie_factors: np.ndarray  # (n_movies, TASTE_DIMS) float32
    noise: float = 0.5  # standard deviation of the per-rating noise

    def scores(self, rng: np.random.Generator, users: np.ndarray, movies: np.ndarray):
        """(n,) float32 scores of the (user index, movie index) pairs."""
        affinity = np.einsum("ij,ij->i", self.user_factors[users], self.movie_factors[movies])
        noise = rng.standard_normal(len(users), dtype=np.float32) * np.float32(self.noise)
        return self.user_bias[users] + self.movie_bias[movies] + affinity + noise


TASTE_DIMS = len(TASTE_GENRES)


@dataclass(frozen=True)
class _Population:
    """Who rates how much, what and when. User index i is user id i + 1; movie index j is
    movie id movie_ids[j]."""

    counts: np.ndarray  # (n_users,) int64 ratings per user, summing to n_ratings
    owned_movies: np.ndarray  # (n_movies,) int64 movie indices, by the user first handed them
    owned_starts: np.ndarray  # (n_users + 1,) int64 user i was handed owned_movies[s[i]:s[i+1]]
    movie_ids: np.ndarray  # (n_movies,) int32 ascending
    log_weights: np.ndarray  # (n_movies,) float64 log popularity
    cdf: np.ndarray  # (n_movies,) float64 cumulative share of the popularity, ending at 1
    first_seen: np.ndarray  # (n_users,) int64 when each user's ratings start, at the earliest
    active_span: np.ndarray  # (n_users,) int64 seconds after first_seen they spread over


def _user_counts(rng: np.random.Generator, shape: CatalogShape) -> np.ndarray:
    """(n_users,) int64: min_user_ratings plus a lognormal excess (ML-25M's fit: scale 39.9,
    s 1.59), scaled so that the counts sum to n_ratings exactly, none above max_user_ratings."""
    raw = 39.9 * np.exp(1.59 * rng.standard_normal(shape.n_users))
    total = shape.n_ratings - shape.min_user_ratings * shape.n_users
    cap = shape.max_user_ratings - shape.min_user_ratings
    capped = np.zeros(shape.n_users, dtype=bool)
    while True:  # each pass caps more users, or ends
        left = total - cap * int(capped.sum())
        free = raw[~capped].sum()
        excess = np.where(capped, cap, raw * (left / free if free else 0.0))
        over = ~capped & (excess > cap)
        if not over.any():
            break
        capped |= over
    whole = np.floor(excess).astype(np.int64)
    short = total - int(whole.sum())  # fewer than n_users: one each, largest remainders first
    remainder = np.where(capped, -1.0, excess - whole)
    whole[np.argsort(-remainder, kind="stable")[:short]] += 1
    return whole + shape.min_user_ratings


def _hand_out_movies(rng: np.random.Generator, counts: np.ndarray, n_movies: int) -> np.ndarray:
    """(n_movies,) int64: the user each movie is first handed to, drawn in proportion to the
    users' counts; no user is handed more movies than their count."""
    cumulative = np.cumsum(counts) / counts.sum()
    owners = np.searchsorted(cumulative, rng.random(n_movies), side="right")
    while True:
        order = np.argsort(owners, kind="stable")
        by_owner = owners[order]
        rank = np.arange(n_movies) - np.searchsorted(by_owner, by_owner, side="left")
        excess = order[rank >= counts[by_owner]]
        if not len(excess):
            return owners
        owners[excess] = np.searchsorted(cumulative, rng.random(len(excess)), side="right")


def _log_popularity(rng: np.random.Generator, n_movies: int) -> np.ndarray:
    """(n_movies,) float64 log weights, movies in id order: by popularity rank r (from 0),
    (r + 10)^-0.7 · exp(-(r / 3% of the movies)^0.7), a Zipf head and a stretched-exponential
    tail. At ML-25M's size the ratings drawn by them have an item Gini of 0.94 and 82,000
    ratings for the most rated movie (ML-25M: 0.942 and 81,491). Ranks follow the ids loosely:
    MovieLens numbers movies as it adds them, and older ones have had longer to be rated."""
    order = np.arange(n_movies) / n_movies + 0.35 * rng.standard_normal(n_movies)
    rank = np.empty(n_movies)
    rank[np.argsort(order, kind="stable")] = np.arange(n_movies)
    return -0.7 * np.log(rank + 10.0) - (rank / (0.03 * n_movies)) ** 0.7


def _population(shape: CatalogShape, seed: int) -> tuple[_Population, _Taste]:
    rng = np.random.default_rng([seed, 0])
    n_users, n_movies = shape.n_users, shape.n_movies
    movie_ids = np.sort(rng.choice(shape.max_movie_id, n_movies, replace=False) + 1)
    log_weights = _log_popularity(rng, n_movies)
    cdf = np.cumsum(np.exp(log_weights - log_weights.max()))
    cdf /= cdf[-1]
    counts = _user_counts(rng, shape)
    owners = _hand_out_movies(rng, counts, n_movies)
    first_seen = rng.integers(shape.first_timestamp, shape.last_timestamp, n_users)
    # about two minutes a rating, spread lognormally: one sitting for most, years for some
    wanted_span = 120.0 * counts * np.exp(2.5 * rng.standard_normal(n_users))
    active_span = np.minimum(wanted_span, shape.last_timestamp - first_seen).astype(np.int64)

    factor_scale = (0.35 / TASTE_DIMS) ** 0.25  # user·movie factors: variance 0.35
    popular = (log_weights - log_weights.mean()) / log_weights.std()

    def normal(scale, size):
        return (scale * rng.standard_normal(size)).astype(np.float32)

    taste = _Taste(
        user_bias=normal(0.45, n_users),
        user_factors=normal(factor_scale, (n_users, TASTE_DIMS)),
        movie_bias=(0.25 * popular).astype(np.float32) + normal(0.45, n_movies),
        movie_factors=normal(factor_scale, (n_movies, TASTE_DIMS)),
    )
    population = _Population(
        counts=counts,
        owned_movies=np.argsort(owners, kind="stable"),
        owned_starts=np.searchsorted(np.sort(owners), np.arange(n_users + 1), side="left"),
        movie_ids=movie_ids.astype(np.int32),
        log_weights=log_weights,
        cdf=cdf,
        first_seen=first_seen,
        active_span=active_span,
    )
    return population, taste


def _draw_exact(rng, log_weights, users, counts, forced_users, forced_movies):
    """(user, movie) index pairs: counts[users[i]] distinct movies for each of `users`, drawn
    by weight without repeats (Gumbel top-k over the whole catalog), the forced pairs among
    them. Costs n_movies random keys a user: for the busy few."""
    n_movies = len(log_weights)
    if not len(users):
        return np.empty(0, dtype=np.int64), np.empty(0, dtype=np.int64)
    users = users[np.argsort(counts[users], kind="stable")]  # batches of similar counts
    batch = max(1, EXACT_BATCH_KEYS // n_movies)
    row_of = np.full(len(counts), -1, dtype=np.int64)
    out_users, out_movies = [], []
    for start in range(0, len(users), batch):
        rows = users[start : start + batch]
        wanted = counts[rows]
        row_of[rows] = np.arange(len(rows))
        keys = log_weights + rng.gumbel(size=(len(rows), n_movies))
        mine = row_of[forced_users] >= 0
        keys[row_of[forced_users[mine]], forced_movies[mine]] = np.inf
        row_of[rows] = -1
        top = int(wanted.max())
        best = np.argpartition(keys, n_movies - top, axis=1)[:, n_movies - top :]
        best_keys = np.take_along_axis(keys, best, axis=1)
        ranked = np.take_along_axis(best, np.argsort(-best_keys, axis=1), axis=1)
        out_users.append(np.repeat(rows, wanted))
        out_movies.append(ranked[np.arange(top) < wanted[:, None]])
    return np.concatenate(out_users), np.concatenate(out_movies)


def _draw_light(rng, cdf, users, counts, forced_users, forced_movies):
    """Like _draw_exact for users who rate a small part of the catalog, at a cost per rating:
    draw by weight with repeats, drop the repeats, keep a random `count` (forced pairs
    first), again for those still short. Returns (users, movies) of the users served and,
    for those still short after LIGHT_ROUNDS, (users, their pairs so far)."""
    n_movies = len(cdf)
    light = np.zeros(len(counts), dtype=bool)
    light[users] = True
    mine = light[forced_users]
    cand_users, cand_movies = forced_users[mine], forced_movies[mine]
    cand_order = np.full(len(cand_users), -1.0)  # forced pairs come first
    done_users, done_movies = [], []
    pending = users
    for round_ in range(LIGHT_ROUNDS + 1):
        have = np.bincount(cand_users, minlength=len(counts))
        served = have == counts
        finished = served[cand_users]
        done_users.append(cand_users[finished])
        done_movies.append(cand_movies[finished])
        cand_users, cand_movies = cand_users[~finished], cand_movies[~finished]
        cand_order = cand_order[~finished]
        pending = pending[~served[pending]]
        if not len(pending) or round_ == LIGHT_ROUNDS:
            break
        need = counts[pending] - have[pending]
        draws = need + need // 8 + 2
        n_draws = int(draws.sum())
        cand_users = np.concatenate([cand_users, np.repeat(pending, draws)])
        cand_movies = np.concatenate(
            [cand_movies, np.searchsorted(cdf, rng.random(n_draws), side="right")]
        )
        cand_order = np.concatenate([cand_order, round_ + rng.random(n_draws)])
        # one of each (user, movie): the earliest in order
        keys = cand_users * n_movies + cand_movies
        order = np.lexsort((cand_order, keys))
        first = np.ones(len(order), dtype=bool)
        first[1:] = keys[order][1:] != keys[order][:-1]
        order = order[first]
        # at most `count` a user, earliest in order first
        order = order[np.lexsort((cand_order[order], cand_users[order]))]
        cand_users, cand_movies, cand_order = (
            cand_users[order], cand_movies[order], cand_order[order],
        )  # fmt: skip
        rank = np.arange(len(order)) - np.searchsorted(cand_users, cand_users, side="left")
        keep = rank < counts[cand_users]
        cand_users, cand_movies, cand_order = (
            cand_users[keep], cand_movies[keep], cand_order[keep],
        )  # fmt: skip
    served = (np.concatenate(done_users), np.concatenate(done_movies))
    return served, (pending, cand_users, cand_movies)


def _chunk_pairs(rng, population: _Population, first: int, last: int):
    """(users, movies) int64 index arrays of the ratings of users first..last - 1, by user
    then movie."""
    counts = population.counts[first:last]
    n_movies = len(population.movie_ids)
    starts = population.owned_starts
    handed = population.owned_movies[starts[first] : starts[last]]
    handed_to = np.repeat(np.arange(last - first), np.diff(starts[first : last + 1]))
    light = np.flatnonzero(counts <= n_movies // 50)
    (light_users, light_movies), (short, short_users, short_movies) = _draw_light(
        rng, population.cdf, light, counts, handed_to, handed
    )
    busy = np.setdiff1d(np.arange(last - first), light, assume_unique=True)
    busy_handed = np.isin(handed_to, busy)
    exact_users, exact_movies = _draw_exact(
        rng,
        population.log_weights,
        np.concatenate([busy, short]),
        counts,
        np.concatenate([handed_to[busy_handed], short_users]),
        np.concatenate([handed[busy_handed], short_movies]),
    )
    users = np.concatenate([light_users, exact_users])
    pairs = np.sort(users * n_movies + np.concatenate([light_movies, exact_movies]))
    return pairs // n_movies + first, pairs % n_movies


def _star_cuts(rng, taste: _Taste, users: np.ndarray, movies: np.ndarray) -> np.ndarray:
    """(9,) float32: the scores where one half star turns into the next, so that the scores
    of these (user, movie) pairs get ML-25M's shares of stars."""
    shares = np.cumsum(ML25M_STAR_COUNTS)[:-1] / ML25M_STAR_COUNTS.sum()
    return np.quantile(taste.scores(rng, users, movies), shares).astype(np.float32)


def _ratings_frame(rng, population, taste, cuts, users, movies) -> pd.DataFrame:
    """ratings.csv rows of the (user, movie) index pairs: stars and timestamps drawn."""
    stars = HALF_STARS[np.searchsorted(cuts, taste.scores(rng, users, movies))]
    spans = population.active_span[users] + 1
    timestamps = population.first_seen[users] + (rng.random(len(users)) * spans).astype(np.int64)
    return pd.DataFrame(
        {
            "userId": (users + 1).astype(np.int32),
            "movieId": population.movie_ids[movies],
            "rating": stars,
            "timestamp": timestamps,
        }
    )


def _movies_frame(rng, population: _Population, taste: _Taste) -> pd.DataFrame:
    """movies.csv: "Synthetic Movie <id> (<year>)", some as "..., The (<year>)" (quoted in
    the CSV, as MovieLens does) or with a quoted "Redux"; genres '|'-separated."""
    ids = population.movie_ids
    n = len(ids)
    added = 1995 + 24.9 * np.arange(n) / n  # the year the catalog took the movie in
    years = np.maximum(1902, np.floor(added - rng.exponential(10.0, n))).astype(np.int64)
    article = rng.random(n) < 0.08
    redux = rng.random(n) < 0.01
    flags = rng.random((n, len(GENRES))) < 0.06
    strongest = np.argmax(taste.movie_factors, axis=1)
    flags[np.arange(n), np.array([GENRES.index(g) for g in TASTE_GENRES])[strongest]] = True
    untagged = rng.random(n) < 0.02
    names = np.array(GENRES)
    titles, genres = [], []
    for j in range(n):  # one per movie, not per rating
        name = f"Synthetic Movie {ids[j]}" + (", The" if article[j] else "")
        titles.append(name + (' "Redux"' if redux[j] else "") + f" ({years[j]})")
        genres.append(NO_GENRES if untagged[j] else "|".join(names[flags[j]]))
    return pd.DataFrame({"movieId": ids, "title": titles, "genres": genres})


def write_shaped_movielens(
    directory: Path | str, shape: CatalogShape, *, seed: int = 0, progress: bool = False
) -> Path:
    """Write ratings.csv and movies.csv (ml-latest format, UTF-8, with headers) of `shape`
    into `directory`: exactly shape.n_users users (ids 1..n), shape.n_movies movies (sparse
    ids), every movie rated, shape.n_ratings ratings in half stars, by user then movie.
    The same seed writes the same bytes. `progress` shows a bar on stderr."""
    if seed < 0:
        raise InvalidArgument(f"seed must be ≥ 0, got {seed}", field="seed")
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    population, taste = _population(shape, seed)
    movies = _movies_frame(np.random.default_rng([seed, 1]), population, taste)
    movies.to_csv(directory / "movies.csv", index=False, lineterminator="\n")
    ends = np.cumsum(population.counts)
    cuts_at = np.searchsorted(ends, np.arange(CHUNK_RATINGS, ends[-1], CHUNK_RATINGS)) + 1
    bounds = np.unique(np.concatenate([[0], cuts_at, [shape.n_users]]))
    chunks = list(zip(bounds[:-1].tolist(), bounds[1:].tolist(), strict=True))
    rngs = [np.random.default_rng([seed, 2, index]) for index in range(len(chunks))]
    pairs = _chunk_pairs(rngs[0], population, *chunks[0])
    # the first chunk's users are a random sample of all: their pairs set the star cuts
    cuts = _star_cuts(np.random.default_rng([seed, 3]), taste, *pairs)
    with (
        open(directory / "ratings.csv", "w", encoding="utf-8", newline="") as out,
        bar(shape.n_ratings, "synthesize", "ratings", enabled=progress) as shown,
    ):
        for index, (rng, (first, last)) in enumerate(zip(rngs, chunks, strict=True)):
            if index:
                pairs = _chunk_pairs(rng, population, first, last)
            chunk = _ratings_frame(rng, population, taste, cuts, *pairs)
            chunk.to_csv(out, header=index == 0, index=False, lineterminator="\n")
            shown.update(len(chunk))
    return directory
