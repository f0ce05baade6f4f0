"""FeatureService RPCs: validate requests, call the FeatureStore, translate its domain objects
to protobuf. Errors are raised as recsys.errors exceptions; the interceptor maps them."""

from __future__ import annotations

import base64
import binascii
import re
from collections.abc import Sequence

import numpy as np

from recsys.api.feature.v1 import feature_pb2, feature_pb2_grpc
from recsys.errors import InvalidArgument, NotFound
from recsys.featurestore.writes import arrival_stamp
from recsys.limits import MAX_MOVIE_ID, MAX_PAGE_SIZE, MAX_RATINGS_PER_WRITE, MAX_USERS_PER_BATCH
from recsys.packed import FLOAT64, INT64
from recsys.rating_scale import check_rating
from services.feature.store import CatalogItem, FeatureStore, PackedUsers, UserFeatures

DEFAULT_PAGE_SIZE = 100
_TOKEN = re.compile(rb"^after:([1-9][0-9]{0,18})$")


def encode_page_token(last_movie_id: int) -> str:
    """Opaque to clients: urlsafe base64 of "after:<movie id>", unpadded."""
    return base64.urlsafe_b64encode(f"after:{last_movie_id}".encode()).rstrip(b"=").decode()


def decode_page_token(token: str) -> int:
    """The movie id a page token continues after; InvalidArgument for anything else."""
    try:
        raw = base64.b64decode(token + "=" * (-len(token) % 4), altchars=b"-_", validate=True)
    except (binascii.Error, ValueError):
        raw = b""
    match = _TOKEN.match(raw)
    if match is None:
        raise InvalidArgument("page_token is not one this service issued", field="page_token")
    return int(match.group(1))


def _check_ids(ids: Sequence[int], field: str) -> None:
    if not ids:
        raise InvalidArgument(f"{field} is empty", field=field)
    if len(ids) > MAX_USERS_PER_BATCH:
        raise InvalidArgument(
            f"{field} has {len(ids)} ids; at most {MAX_USERS_PER_BATCH}", field=field
        )
    bad = next((i for i in ids if i <= 0), None)
    if bad is not None:
        raise InvalidArgument(f"{field} contains {bad}; ids must be > 0", field=field)


def _accepted_at(accepted_at_us: int) -> int:
    """A write's stamp: when the gateway accepted it, or (0) now, as it arrives here."""
    if accepted_at_us < 0:
        raise InvalidArgument(
            f"accepted_at_us must be ≥ 0, got {accepted_at_us}", field="accepted_at_us"
        )
    return accepted_at_us or arrival_stamp()


def _check_user_id(user_id: int) -> None:
    if user_id <= 0:
        raise InvalidArgument(f"user_id must be > 0, got {user_id}", field="user_id")


def _unused(user: UserFeatures) -> list[int]:
    """Rated movies the version's model does not cover."""
    covered = set(user.preferences[0].tolist())
    return sorted(m for m in user.ratings if m not in covered)


def sparse_vector(movie_ids, values) -> feature_pb2.SparseVector:
    """Packed arrays from lists or NumPy arrays (an array becomes a list in C, not per
    entry)."""
    return feature_pb2.SparseVector(movie_ids=_as_list(movie_ids), values=_as_list(values))


def _as_list(values) -> list:
    return values.tolist() if isinstance(values, np.ndarray) else list(values)


def user_message(user: UserFeatures) -> feature_pb2.UserFeatures:
    movie_ids, values = user.preferences
    rated = sorted(user.ratings)
    return feature_pb2.UserFeatures(
        user_id=user.user_id,
        model_version=user.model_version,
        user_mean=user.user_mean,
        ratings=sparse_vector(rated, [user.ratings[m] for m in rated]),
        preferences=sparse_vector(movie_ids, values),
        user_code=_as_list(user.code) if user.code is not None else [],
    )


def packed_message(users: PackedUsers) -> feature_pb2.PackedUserFeatures:
    preference_offsets, preference_movie_ids, preference_values = users.preferences.to_bytes()
    unused_offsets, unused_movie_ids, _ = users.unused.to_bytes()
    code_offsets, code_values = users.codes.to_bytes()
    return feature_pb2.PackedUserFeatures(
        user_ids=users.user_ids.astype(INT64).tobytes(),
        user_means=users.user_means.astype(FLOAT64).tobytes(),
        preference_offsets=preference_offsets,
        preference_movie_ids=preference_movie_ids,
        preference_values=preference_values,
        unused_offsets=unused_offsets,
        unused_movie_ids=unused_movie_ids,
        code_offsets=code_offsets,
        code_values=code_values,
    )


def item_message(item: CatalogItem) -> feature_pb2.Item:
    return feature_pb2.Item(movie_id=item.movie_id, title=item.title, genres=item.genres)


class FeatureServicer(feature_pb2_grpc.FeatureServiceServicer):
    def __init__(self, store: FeatureStore):
        self.store = store

    async def GetUserFeatures(self, request, context):
        _check_user_id(request.user_id)
        version = await self.store.resolve(request.model_version)
        users = await self.store.get_users(version, [request.user_id])
        if request.user_id not in users:
            raise NotFound(f"user {request.user_id} has no stored ratings")
        return feature_pb2.GetUserFeaturesResponse(features=user_message(users[request.user_id]))

    async def BatchGetUserFeatures(self, request, context):
        _check_ids(request.user_ids, "user_ids")
        version = await self.store.resolve(request.model_version)
        user_ids = list(dict.fromkeys(request.user_ids))
        if request.packed:
            packed = await self.store.get_users_packed(version, user_ids)
            found = set(packed.user_ids.tolist())
            return feature_pb2.BatchGetUserFeaturesResponse(
                missing_user_ids=[u for u in user_ids if u not in found],
                model_version=version,
                packed=packed_message(packed),
            )
        users = await self.store.get_users(version, user_ids)
        return feature_pb2.BatchGetUserFeaturesResponse(
            features=[user_message(users[u]) for u in user_ids if u in users],
            missing_user_ids=[u for u in user_ids if u not in users],
            model_version=version,
        )

    async def GetNormalization(self, request, context):
        version = await self.store.resolve(request.model_version)
        normalization = await self.store.normalization(version)
        return feature_pb2.GetNormalizationResponse(
            model_version=version,
            global_mean=normalization.global_mean,
            item_means=sparse_vector(normalization.item_ids, normalization.item_means),
            rating_min=normalization.rating_min,
            rating_max=normalization.rating_max,
        )

    async def GetItems(self, request, context):
        _check_ids(request.movie_ids, "movie_ids")
        version = await self.store.resolve(request.model_version)
        movie_ids = list(dict.fromkeys(request.movie_ids))
        items = await self.store.get_items(version, movie_ids)
        return feature_pb2.GetItemsResponse(
            items=[item_message(items[m]) for m in movie_ids if m in items],
            missing_movie_ids=[m for m in movie_ids if m not in items],
        )

    async def ListItems(self, request, context):
        if not 0 <= request.page_size <= MAX_PAGE_SIZE:
            raise InvalidArgument(
                f"page_size must be 0 to {MAX_PAGE_SIZE}, got {request.page_size}",
                field="page_size",
            )
        after = decode_page_token(request.page_token) if request.page_token else None
        version = await self.store.resolve(request.model_version)
        page = await self.store.list_items(version, request.page_size or DEFAULT_PAGE_SIZE, after)
        return feature_pb2.ListItemsResponse(
            items=[item_message(item) for item in page.items],
            next_page_token=(
                encode_page_token(page.last_movie_id) if page.last_movie_id is not None else ""
            ),
            total_size=page.total_size,
        )

    async def UpsertRatings(self, request, context):
        stamp = _accepted_at(request.accepted_at_us)
        _check_user_id(request.user_id)
        ratings = list(request.ratings)
        if not 1 <= len(ratings) <= MAX_RATINGS_PER_WRITE:
            raise InvalidArgument(
                f"give 1 to {MAX_RATINGS_PER_WRITE} ratings, got {len(ratings)}", field="ratings"
            )
        version = await self.store.resolve(request.model_version)
        scale = await self.store.normalization(version)
        by_movie: dict[int, float] = {}
        for rating in ratings:
            if not 0 < rating.movie_id <= MAX_MOVIE_ID:
                raise InvalidArgument(
                    f"movie_id must be in 1..{MAX_MOVIE_ID}, got {rating.movie_id}",
                    field="ratings.movie_id",
                )
            by_movie[rating.movie_id] = check_rating(
                rating.movie_id,
                rating.rating,
                (scale.rating_min, scale.rating_max),
                "ratings.rating",
            )
        user, created = await self.store.upsert_ratings(
            request.user_id,
            by_movie,
            version,
            accepted_at_us=stamp,
            timeout_s=context.time_remaining(),
        )
        return feature_pb2.UpsertRatingsResponse(
            features=user_message(user), created=created, unused_movie_ids=_unused(user)
        )

    async def DeleteRatings(self, request, context):
        stamp = _accepted_at(request.accepted_at_us)
        _check_user_id(request.user_id)
        _check_ids(request.movie_ids, "movie_ids")
        version = await self.store.resolve(request.model_version)
        user, missing = await self.store.delete_ratings(
            request.user_id,
            list(request.movie_ids),
            version,
            accepted_at_us=stamp,
            timeout_s=context.time_remaining(),
        )
        return feature_pb2.DeleteRatingsResponse(
            features=user_message(user), missing_movie_ids=missing, unused_movie_ids=_unused(user)
        )

    async def DeleteUser(self, request, context):
        stamp = _accepted_at(request.accepted_at_us)
        _check_user_id(request.user_id)
        count = await self.store.delete_user(
            request.user_id, accepted_at_us=stamp, timeout_s=context.time_remaining()
        )
        return feature_pb2.DeleteUserResponse(ratings_deleted=count)
