"""The user a request is about: a stored user's features, read from the feature service
together with concurrent requests' users, or inline ratings normalized here under the model
version's μ and b_i."""

from __future__ import annotations

import numpy as np

from recsys.errors import InvalidArgument
from recsys.features import user_preferences
from recsys.limits import MAX_INLINE_RATINGS, MAX_MOVIE_ID
from recsys.rating_scale import check_rating
from recsys.serving.coalesce import Coalescer
from services.gateway.batches import UserInput
from services.gateway.upstream import Upstreams
from services.gateway.versions import VersionData


def check_user_id(user_id: int) -> None:
    if user_id <= 0:
        raise InvalidArgument(f"user_id must be positive, got {user_id}", field="user_id")


def checked_ratings(ratings, data: VersionData, field: str, limit: int) -> dict[int, float]:
    """{movie id: stars} of request ratings (last wins), each on the version's scale."""
    if not ratings:
        raise InvalidArgument("give at least one rating", field=field)
    if len(ratings) > limit:
        raise InvalidArgument(f"at most {limit} ratings, got {len(ratings)}", field=field)
    by_movie: dict[int, float] = {}
    for rating in ratings:
        if not 0 < rating.movie_id <= MAX_MOVIE_ID:
            raise InvalidArgument(
                f"movie_id must be in 1..{MAX_MOVIE_ID}, got {rating.movie_id}",
                field=f"{field}.movie_id",
            )
        by_movie[rating.movie_id] = check_rating(
            rating.movie_id, rating.rating, data.rating_scale, f"{field}.rating"
        )
    return by_movie


class Users:
    """`feature_batches` coalesces concurrent stored users' reads into one
    BatchGetUserFeatures."""

    def __init__(self, upstreams: Upstreams, feature_batches: Coalescer):
        self.upstreams = upstreams
        self.feature_batches = feature_batches

    async def stored_user(self, user_id: int, version: str, context) -> UserInput:
        """The user's stored features, read together with concurrent requests' users."""
        check_user_id(user_id)
        return await self.feature_batches.submit(version, user_id, self.upstreams.timeout(context))

    def inline_user(self, ratings, data: VersionData) -> UserInput:
        """Normalize ratings given in the request with the version's μ and b_i."""
        by_movie = checked_ratings(ratings, data, "inline_ratings.ratings", MAX_INLINE_RATINGS)
        user = user_preferences(by_movie, data.index, data.normalization)
        return UserInput(
            movie_ids=user.movie_ids,
            preferences=user.preferences.astype(np.float32),
            user_mean=user.user_mean,
            rated_movie_ids=np.fromiter(by_movie, np.int64, len(by_movie)),
            ignored_movie_ids=user.unknown_movie_ids,
        )

    async def user_input(self, request, data: VersionData, context) -> UserInput:
        """The user of a request with a `user` oneof (user_id | inline_ratings)."""
        which = request.WhichOneof("user")
        if which == "user_id":
            return await self.stored_user(request.user_id, data.version, context)
        if which == "inline_ratings":
            return self.inline_user(request.inline_ratings.ratings, data)
        raise InvalidArgument("give user_id or inline_ratings", field="user")
