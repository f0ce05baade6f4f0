"""RateItems, DeleteRatings and DeleteUser through the feature service, each stamped with the
time the gateway accepted it: an attempt that the feature service finishes late never replaces
a rating accepted after it (last writer wins per movie by acceptance time)."""

from __future__ import annotations

import time

from recsys.api.feature.v1 import feature_pb2
from recsys.errors import InvalidArgument
from recsys.limits import MAX_MOVIE_ID, MAX_RATINGS_PER_WRITE
from services.gateway.upstream import Upstreams
from services.gateway.users import check_user_id, checked_ratings
from services.gateway.versions import ModelVersions


class AcceptClock:
    """Acceptance stamps of writes: wall-clock µs since the Unix epoch, strictly increasing
    within this process (two writes accepted in the same µs, or across a clock step back,
    still get distinct stamps in arrival order)."""

    def __init__(self):
        self._last = 0

    def now_us(self) -> int:
        self._last = max(time.time_ns() // 1000, self._last + 1)
        return self._last


class Writes:
    """A write goes under the model's version (the feature service updates every live
    version's features with it); see ModelVersions.following_the_model."""

    def __init__(self, upstreams: Upstreams, versions: ModelVersions):
        self.upstreams = upstreams
        self.versions = versions
        self.clock = AcceptClock()

    async def rate_items(self, user_id: int, ratings, context):
        """Upsert a user's ratings; the feature service's reply."""
        check_user_id(user_id)
        accepted_at_us = self.clock.now_us()

        async def write(version: str):
            data = await self.versions.version_data(version, context)
            by_movie = checked_ratings(ratings, data, "ratings", MAX_RATINGS_PER_WRITE)
            return await self.upstreams.call(
                "feature",
                self.upstreams.feature.UpsertRatings,
                feature_pb2.UpsertRatingsRequest(
                    user_id=user_id,
                    ratings=[feature_pb2.Rating(movie_id=m, rating=r) for m, r in by_movie.items()],
                    model_version=version,
                    accepted_at_us=accepted_at_us,
                ),
                context,
            )

        return await self.versions.following_the_model(write, context)

    async def delete_ratings(self, user_id: int, movie_ids: list[int], context):
        check_user_id(user_id)
        if not 1 <= len(movie_ids) <= MAX_RATINGS_PER_WRITE:
            raise InvalidArgument(f"give 1 to {MAX_RATINGS_PER_WRITE} movie ids", field="movie_ids")
        if any(not 0 < m <= MAX_MOVIE_ID for m in movie_ids):
            raise InvalidArgument(f"movie ids must be in 1..{MAX_MOVIE_ID}", field="movie_ids")
        accepted_at_us = self.clock.now_us()

        async def write(version: str):
            return await self.upstreams.call(
                "feature",
                self.upstreams.feature.DeleteRatings,
                feature_pb2.DeleteRatingsRequest(
                    user_id=user_id,
                    movie_ids=movie_ids,
                    model_version=version,
                    accepted_at_us=accepted_at_us,
                ),
                context,
            )

        return await self.versions.following_the_model(write, context)

    async def delete_user(self, user_id: int, context):
        check_user_id(user_id)
        return await self.upstreams.call(
            "feature",
            self.upstreams.feature.DeleteUser,
            feature_pb2.DeleteUserRequest(user_id=user_id, accepted_at_us=self.clock.now_us()),
            context,
        )
