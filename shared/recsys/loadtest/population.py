"""The users, movies, ratings and preference vectors that workloads draw requests from: read
from a MovieLens directory, or fetched from the feature service once at start-up."""

from __future__ import annotations

import logging
import random
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

import grpc
import numpy as np

from recsys.api.feature.v1 import feature_pb2, feature_pb2_grpc
from recsys.data.movielens import RatingData
from recsys.errors import InvalidArgument, Unavailable
from recsys.limits import MAX_PAGE_SIZE, MAX_USERS_PER_BATCH
from recsys.loadtest.channels import open_channel
from recsys.loadtest.settings import Targets
from recsys.rating_scale import DEFAULT_RATING_SCALE

log = logging.getLogger(__name__)

DEFAULT_USERS = 6040  # ML-1M's users, ids 1..6040
DEFAULT_SAMPLE_USERS = 200  # users whose features `predict` fetches at start-up
STARTUP_DEADLINE_S = 30.0  # deadline of each start-up call to the feature service

# What each kind of request needs from the population.
USERS, MOVIES, USER_RATINGS, PREFERENCES = "users", "movies", "user_ratings", "preferences"


@dataclass(frozen=True)
class UserRatings:
    """Ratings grouped by user.

    user_ids: (n_users,) int64, ascending.
    offsets: (n_users + 1,) int64; user i's ratings are rows offsets[i]:offsets[i + 1].
    movie_ids: (n_ratings,) int64 MovieLens movie ids.
    ratings: (n_ratings,) float32 stars.
    """

    user_ids: np.ndarray
    offsets: np.ndarray
    movie_ids: np.ndarray
    ratings: np.ndarray

    @classmethod
    def from_columns(cls, user_ids, movie_ids, ratings) -> UserRatings:
        """Three equal-length columns, one row per rating, in any order."""
        users = np.asarray(user_ids, dtype=np.int64)
        order = np.argsort(users, kind="stable")
        users = users[order]
        distinct, starts = np.unique(users, return_index=True)
        return cls(
            user_ids=distinct,
            offsets=np.append(starts, len(users)).astype(np.int64),
            movie_ids=np.asarray(movie_ids, dtype=np.int64)[order],
            ratings=np.asarray(ratings, dtype=np.float32)[order],
        )

    def __len__(self) -> int:
        return len(self.user_ids)

    def sample(self, rng: random.Random, cap: int) -> list[tuple[int, float]]:
        """(movie id, stars) pairs of a uniformly drawn user: all of them, or `cap` drawn
        without replacement when the user has more."""
        user = rng.randrange(len(self.user_ids))
        start, end = int(self.offsets[user]), int(self.offsets[user + 1])
        rows = range(start, end) if end - start <= cap else rng.sample(range(start, end), cap)
        rows = np.fromiter(rows, dtype=np.int64)
        return list(zip(self.movie_ids[rows].tolist(), self.ratings[rows].tolist(), strict=True))


@dataclass(frozen=True)
class StoredUser:
    """One stored user's features as the feature service returns them.

    ratings: (movie id, stars) for every movie the user rated.
    preferences: (movie id, r − μ − b_i − b_u in stars) per rated movie the model covers.
    """

    user_id: int
    model_version: str
    ratings: tuple[tuple[int, float], ...]
    preferences: tuple[tuple[int, float], ...]


@dataclass(frozen=True)
class Population:
    """What requests are drawn from.

    user_ids: user ids drawn uniformly.
    movie_ids: movie ids drawn uniformly (the data's rated items, or the catalog); may be
        empty when neither was available and no workload needs them.
    rating_scale: (lowest, highest) stars; half stars when lowest is 0.5 (ml-latest).
    user_ratings: whole users' ratings (recommend-inline), or None.
    stored_users: sampled users' features from the feature service (predict).
    """

    user_ids: Sequence[int]
    movie_ids: Sequence[int] = ()
    rating_scale: tuple[float, float] = DEFAULT_RATING_SCALE
    user_ratings: UserRatings | None = None
    stored_users: Sequence[StoredUser] = field(default_factory=tuple)

    @property
    def half_stars(self) -> bool:
        return self.rating_scale[0] == 0.5

    def rating_values(self) -> list[float]:
        """Every rating on the scale: 1..5 whole stars, or 0.5..5 in halves."""
        low, high = self.rating_scale
        step = 0.5 if self.half_stars else 1.0
        return [float(v) for v in np.arange(low, high + step / 2, step)]


def population_from_data(data: RatingData) -> Population:
    """Users, rated movies, scale and whole ratings of a MovieLens dataset."""
    ratings = data.ratings
    return Population(
        user_ids=np.unique(ratings["user_id"].to_numpy()).tolist(),
        movie_ids=np.unique(ratings["item_id"].to_numpy()).tolist(),
        rating_scale=tuple(float(v) for v in data.rating_scale),
        user_ratings=UserRatings.from_columns(
            ratings["user_id"].to_numpy(), ratings["item_id"].to_numpy(), ratings["rating"]
        ),
    )


async def build_population(
    needs: Iterable[str],
    targets: Targets,
    *,
    data: RatingData | None = None,
    users: int = DEFAULT_USERS,
    sample_users: int = DEFAULT_SAMPLE_USERS,
    seed: int = 0,
) -> Population:
    """The population for workloads that need `needs` (USERS, MOVIES, USER_RATINGS,
    PREFERENCES). From `data` when given, else users 1..`users` and, from the feature
    service, the catalog's movies and sampled users' ratings. Preference vectors always
    come from the feature service: `sample_users` users drawn with `seed`."""
    needs = set(needs)
    if users < 1:
        raise InvalidArgument(f"--users must be at least 1, got {users}", field="users")
    base = population_from_data(data) if data is not None else Population(range(1, users + 1))
    fetch_movies = MOVIES in needs and data is None
    fetch_users = PREFERENCES in needs or (USER_RATINGS in needs and data is None)
    if not (fetch_movies or fetch_users):
        return base
    address = _feature_address(targets, needs)
    movie_ids, user_ratings, stored_users = base.movie_ids, base.user_ratings, ()
    channel = open_channel(address)
    try:
        stub = feature_pb2_grpc.FeatureServiceStub(channel)
        if fetch_movies:
            movie_ids = await _catalog_movie_ids(stub, address)
        if fetch_users:
            sample = random.Random(seed).sample(
                list(base.user_ids), min(sample_users, len(base.user_ids))
            )
            stored_users = await _stored_users(stub, address, sample)
    finally:
        await channel.close()
    if user_ratings is None and stored_users:
        user_ratings = UserRatings.from_columns(
            [u.user_id for u in stored_users for _ in u.ratings],
            [movie for u in stored_users for movie, _ in u.ratings],
            [stars for u in stored_users for _, stars in u.ratings],
        )
    return Population(
        user_ids=base.user_ids,
        movie_ids=movie_ids,
        rating_scale=base.rating_scale,
        user_ratings=user_ratings,
        stored_users=stored_users,
    )


def _feature_address(targets: Targets, needs: set[str]) -> str:
    if targets.feature is None:
        why = "predict" if PREFERENCES in needs else "without --data, this workload"
        raise InvalidArgument(
            f"{why} needs --feature-target HOST:PORT (the feature service)",
            field="--feature-target",
        )
    return targets.feature


async def _catalog_movie_ids(stub, address: str) -> list[int]:
    """Every movie id of the active version's catalog, page by page."""
    movie_ids: list[int] = []
    token = ""
    while True:
        reply = await _call(
            stub.ListItems(
                feature_pb2.ListItemsRequest(page_size=MAX_PAGE_SIZE, page_token=token),
                timeout=STARTUP_DEADLINE_S,
            ),
            address,
        )
        movie_ids.extend(item.movie_id for item in reply.items)
        token = reply.next_page_token
        if not token:
            break
    if not movie_ids:
        raise Unavailable(f"feature service at {address}: the catalog is empty")
    log.info("catalog: %d movies from %s", len(movie_ids), address)
    return movie_ids


async def _stored_users(stub, address: str, user_ids: list[int]) -> list[StoredUser]:
    """Features of the given users that the feature service holds (missing ones skipped)."""
    stored: list[StoredUser] = []
    for start in range(0, len(user_ids), MAX_USERS_PER_BATCH):
        reply = await _call(
            stub.BatchGetUserFeatures(
                feature_pb2.BatchGetUserFeaturesRequest(
                    user_ids=user_ids[start : start + MAX_USERS_PER_BATCH]
                ),
                timeout=STARTUP_DEADLINE_S,
            ),
            address,
        )
        stored.extend(
            StoredUser(
                user_id=f.user_id,
                model_version=f.model_version,
                ratings=tuple(zip(f.ratings.movie_ids, f.ratings.values, strict=True)),
                preferences=tuple(zip(f.preferences.movie_ids, f.preferences.values, strict=True)),
            )
            for f in reply.features
        )
    if not stored:
        raise Unavailable(
            f"feature service at {address} holds none of the {len(user_ids)} sampled users "
            "(pass --data DIR or --users N to draw from existing users)"
        )
    log.info("features of %d users from %s", len(stored), address)
    return stored


async def _call(call, address: str):
    try:
        return await call
    except grpc.RpcError as exc:
        raise Unavailable(
            f"feature service at {address}: {exc.code().name}: {exc.details()}"
        ) from None
