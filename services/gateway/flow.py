"""The full predict flow: a user's features (stored, or computed here from inline ratings
under the model version's normalization), the model call, de-normalization
(pref + b_u + b_i + μ), exclusion of rated items, ranking, titles.

Per model version the gateway caches what never changes within it: μ and b_i, the item index
and the catalog. Every response names the version; features and model never mix versions."""

from __future__ import annotations

import asyncio
import contextlib
import time
from dataclasses import dataclass

import numpy as np

from recsys.api.feature.v1 import feature_pb2
from recsys.api.gateway.v1 import gateway_pb2
from recsys.api.model.v1 import model_pb2
from recsys.errors import (
    DeadlineExceeded,
    FailedPrecondition,
    InvalidArgument,
    NotFound,
    Unavailable,
    VersionMismatch,
)
from recsys.features import ItemIndex, Normalization, user_preferences
from recsys.limits import MAX_INLINE_RATINGS, MAX_MOVIE_ID, MAX_PAGE_SIZE, MAX_RATINGS_PER_WRITE
from recsys.serving import tracing
from recsys.serving.coalesce import Coalescer
from services.gateway.batches import Batches, PredictRow, UserInput
from services.gateway.upstream import Upstreams

# the gateway's ranking modes → the model service's (same names, separate packages)
RANK_BY = {
    gateway_pb2.RANK_BY_UNSPECIFIED: model_pb2.RANK_BY_UNSPECIFIED,
    gateway_pb2.RANK_BY_RATING: model_pb2.RANK_BY_RATING,
    gateway_pb2.RANK_BY_PREFERENCE: model_pb2.RANK_BY_PREFERENCE,
    gateway_pb2.RANK_BY_RELEVANCE: model_pb2.RANK_BY_RELEVANCE,
}
CACHED_VERSIONS = 3
MODEL_VERSION_TTL_S = 1.0  # how long the gateway trusts its idea of the model's version
MISSING_RETRY_S = 0.5  # how soon to look again for features found not loaded


@dataclass(frozen=True)
class VersionData:
    """What the gateway caches of one model version."""

    version: str
    index: ItemIndex
    normalization: Normalization
    rating_scale: tuple[float, float]
    catalog: dict[int, tuple[str, list[str]]]  # movie id → (title, genres)

    def title(self, movie_id: int) -> tuple[str, list[str]]:
        return self.catalog.get(movie_id, ("", []))


@dataclass(frozen=True)
class Scored:
    movie_id: int
    title: str
    genres: list[str]
    value: float  # a predicted rating, or a distance


@dataclass(frozen=True)
class Explanation:
    """predicted_rating = global_mean + item_mean + user_mean + predicted_preference, and
    predicted_preference = Σ contributions (listed, `value` of each) + other_contribution."""

    movie_id: int
    title: str
    predicted_rating: float
    global_mean: float
    item_mean: float
    user_mean: float
    predicted_preference: float
    contributions: list[Scored]  # the rated movies; value = contribution in stars
    preferences: list[float]  # the user's preference for each of them, same order
    other_contribution: float
    other_count: int
    model_version: str
    ignored_movie_ids: list[int]


class FeaturesNotLoaded(Unavailable):
    """The feature service has no (complete) features of a model version: a rollout in
    progress. Unlike Redis being down, answering with another version can help."""


class Stages:
    """Wall time of each stage of one request (features, model, rank), in milliseconds,
    so a slow request can be explained; the servicer returns them as trailing metadata.
    While the request is traced, each stage is also a span (`gateway.features`, ...)."""

    def __init__(self):
        self.ms: dict[str, float] = {}

    @contextlib.contextmanager
    def timed(self, stage: str):
        started = time.perf_counter()
        try:
            with tracing.stage_span(stage):
                yield
        finally:
            self.ms[stage] = self.ms.get(stage, 0.0) + (time.perf_counter() - started) * 1000

    def header(self) -> str:
        """e.g. "features=1.92,model=1.41,rank=0.05"."""
        return ",".join(f"{stage}={ms:.2f}" for stage, ms in self.ms.items())


def check_user_id(user_id: int) -> None:
    if user_id <= 0:
        raise InvalidArgument(f"user_id must be positive, got {user_id}", field="user_id")


def checked_ratings(ratings, data: VersionData, field: str, limit: int) -> dict[int, float]:
    """{movie id: stars} of request ratings (last wins), each on the version's scale."""
    if not ratings:
        raise InvalidArgument("give at least one rating", field=field)
    if len(ratings) > limit:
        raise InvalidArgument(f"at most {limit} ratings, got {len(ratings)}", field=field)
    low, high = data.rating_scale
    by_movie: dict[int, float] = {}
    for rating in ratings:
        if not 0 < rating.movie_id <= MAX_MOVIE_ID:
            raise InvalidArgument(
                f"movie_id must be in 1..{MAX_MOVIE_ID}, got {rating.movie_id}",
                field=f"{field}.movie_id",
            )
        if not low <= rating.rating <= high:
            raise InvalidArgument(
                f"rating {rating.rating:g} for movie {rating.movie_id} is outside "
                f"[{low:g}, {high:g}]",
                field=f"{field}.rating",
            )
        by_movie[rating.movie_id] = float(rating.rating)
    return by_movie


class AcceptClock:
    """Acceptance stamps of writes: wall-clock µs since the Unix epoch, strictly increasing
    within this process (two writes accepted in the same µs, or across a clock step back,
    still get distinct stamps in arrival order)."""

    def __init__(self):
        self._last = 0

    def now_us(self) -> int:
        self._last = max(time.time_ns() // 1000, self._last + 1)
        return self._last


class PredictFlow:
    """`max_batch` and `max_in_flight` bound the coalesced calls to each upstream (see
    recsys.serving.coalesce): requests per batch call, batch calls under way at once."""

    def __init__(self, upstreams: Upstreams, *, max_batch: int = 64, max_in_flight: int = 1):
        self.upstreams = upstreams
        self.clock = AcceptClock()
        batches = Batches(upstreams)
        bounds = {"max_batch": max_batch, "max_in_flight": max_in_flight}
        self.feature_batches = Coalescer("feature", batches.users, **bounds)
        self.model_batches = Coalescer("model", batches.predictions, **bounds)
        self.similar_batches = Coalescer("model-similar", batches.similar, **bounds)
        self._versions: dict[str, VersionData] = {}
        self._model_version: str | None = None
        self._model_version_at = 0.0  # time.monotonic() of the last answer
        self._asking: asyncio.Task | None = None  # a GetModelInfo call in flight
        self._last_served: str | None = None  # the last version a prediction came from
        self._missing: dict[str, float] = {}  # version → when its features were not loaded
        self._lock = asyncio.Lock()

    async def model_version(self, context, *, refresh: bool = False) -> str:
        """The version the model service serves: cached for MODEL_VERSION_TTL_S (so a hot
        swap is noticed within it); `refresh` (after a mismatch) asks at once. Concurrent
        callers share one GetModelInfo call, made with the deadline of the caller that
        started it; a caller whose shared call ran out of that caller's time asks again with
        its own."""
        fresh = time.monotonic() - self._model_version_at < MODEL_VERSION_TTL_S
        if self._model_version is not None and fresh and not refresh:
            return self._model_version
        for _ in range(2):
            mine = refresh or self._asking is None or self._asking.done()
            if mine:  # a call already in flight may have been answered before a swap
                self._asking = asyncio.ensure_future(self._ask_model_version(context))
                # its failure is each waiting caller's; retrieved here too, so that a call
                # whose callers all gave up does not log "exception was never retrieved"
                self._asking.add_done_callback(lambda task: task.cancelled() or task.exception())
            try:
                return await asyncio.shield(self._asking)
            except DeadlineExceeded:
                if mine:
                    raise
                refresh = True  # another caller's deadline, not ours: ask with ours
        raise AssertionError("unreachable")

    async def _ask_model_version(self, context) -> str:
        info = await self.upstreams.call(
            "model", self.upstreams.model.GetModelInfo, model_pb2.GetModelInfoRequest(), context
        )
        self._model_version, self._model_version_at = info.model_version, time.monotonic()
        return info.model_version

    async def version_data(self, version: str, context) -> VersionData:
        """The cached data of `version`; the last CACHED_VERSIONS versions are kept, so two
        versions served side by side during a rollout do not evict each other."""
        data = self._versions.get(version)
        if data is None:
            async with self._lock:
                data = self._versions.get(version)
                if data is None:
                    data = await self._fetch_version(version, context)
                    self._versions[version] = data
                    while len(self._versions) > CACHED_VERSIONS:
                        self._versions.pop(next(iter(self._versions)))
        return data

    async def usable_version(self, context, *, refresh: bool = False) -> VersionData:
        """The data of the version to answer with: the model's, or, while the features of a
        version the model service just moved to are still being loaded, the last version
        that answered (the model service keeps it beside the new one until the next swap)."""
        version = await self.model_version(context, refresh=refresh)
        fallback = self._last_served
        can_fall_back = fallback is not None and fallback != version
        missing_since = self._missing.get(version)
        if can_fall_back and missing_since and time.monotonic() - missing_since < MISSING_RETRY_S:
            return await self.version_data(fallback, context)
        try:
            data = await self.version_data(version, context)
        except FeaturesNotLoaded:
            self._missing[version] = time.monotonic()
            if not can_fall_back:
                self._model_version_at = 0.0  # ask the model service again next time
                raise
            return await self.version_data(fallback, context)
        self._missing.pop(version, None)
        return data

    async def _fetch_version(self, version: str, context) -> VersionData:
        """μ, b_i and the catalog of `version` from the feature service. Features not (yet)
        loaded for the version the model serves are UNAVAILABLE: a rollout in progress."""
        try:
            return await self._fetch_version_data(version, context)
        except (NotFound, FailedPrecondition) as missing:
            raise FeaturesNotLoaded(
                f"features of model version {version} are not loaded: {missing}"
            ) from None

    async def _fetch_version_data(self, version: str, context) -> VersionData:
        feature = self.upstreams.feature
        norm = await self.upstreams.call(
            "feature",
            feature.GetNormalization,
            feature_pb2.GetNormalizationRequest(model_version=version),
            context,
        )
        catalog: dict[int, tuple[str, list[str]]] = {}
        token = ""
        while True:
            page = await self.upstreams.call(
                "feature",
                feature.ListItems,
                feature_pb2.ListItemsRequest(
                    page_size=MAX_PAGE_SIZE, page_token=token, model_version=version
                ),
                context,
            )
            catalog.update({i.movie_id: (i.title, list(i.genres)) for i in page.items})
            token = page.next_page_token
            if not token:
                break
        ids = np.array(norm.item_means.movie_ids, dtype=np.int64)
        means = np.array(norm.item_means.values, dtype=np.float64)
        return VersionData(
            version=version,
            index=ItemIndex(ids),
            normalization=Normalization(norm.global_mean, means),
            rating_scale=(norm.rating_min, norm.rating_max),
            catalog=catalog,
        )

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

    async def user_input(self, request, version: str, data: VersionData, context) -> UserInput:
        which = request.WhichOneof("user")
        if which == "user_id":
            return await self.stored_user(request.user_id, version, context)
        if which == "inline_ratings":
            return self.inline_user(request.inline_ratings.ratings, data)
        raise InvalidArgument("give user_id or inline_ratings", field="user")

    async def on_model(self, context, call):
        """`await call(data)` with the data of the usable version; if the model service has
        moved to another version meanwhile (VersionMismatch: FAILED_PRECONDITION with the
        reason MODEL_VERSION_MISMATCH), once more with the version it serves now. Returns
        (data, what `call` returned)."""
        for attempt in range(2):
            data = await self.usable_version(context, refresh=attempt > 0)
            try:
                result = await call(data)
            except VersionMismatch:
                if data.version == self._last_served:  # the model service no longer holds it
                    self._last_served = None
                if attempt == 0:
                    continue
                raise
            self._last_served = data.version
            return data, result
        raise AssertionError("unreachable")

    async def predict(self, request, row, context, stages: Stages):
        """Run the flow for one request. `row(user)` gives that user's PredictRow; the
        prediction goes out together with concurrent requests'. Returns (version data, user
        input, (movie ids, predicted preferences))."""

        async def call(data: VersionData):
            tracing.annotate(model_version=data.version, user=request.WhichOneof("user") or "")
            with stages.timed("features"):
                user = await self.user_input(request, data.version, data, context)
            with stages.timed("model"):
                predicted = await self.model_batches.submit(
                    data.version, row(user), self.upstreams.timeout(context)
                )
            return user, predicted

        data, (user, predictions) = await self.on_model(context, call)
        return data, user, predictions

    def scored(self, data: VersionData, user: UserInput, predictions) -> list[Scored]:
        """Predicted preferences → de-normalized ratings with titles."""
        movie_ids, preferences = predictions
        if not len(movie_ids):
            return []
        ids = movie_ids.astype(np.int64)
        prefs = preferences.astype(np.float64)
        ratings = data.normalization.denormalize(prefs, user.user_mean, data.index.columns(ids))
        return [
            Scored(m, *data.title(m), r)
            for m, r in zip(ids.tolist(), ratings.tolist(), strict=True)
        ]

    async def recommend(
        self, request, k: int, context, stages: Stages
    ) -> tuple[str, list[Scored], list[int]]:
        """The top k unrated items in the request's ranking mode (default: the model
        version's, relevance), each with its predicted rating."""
        if request.rank_by not in RANK_BY:
            raise InvalidArgument(f"unknown rank_by {request.rank_by}", field="rank_by")
        data, user, predictions = await self.predict(
            request,
            lambda user: PredictRow(
                user.movie_ids,
                user.preferences,
                k=k,
                rank_by=RANK_BY[request.rank_by],
                exclude=user.rated_movie_ids,
            ),
            context,
            stages,
        )
        with stages.timed("rank"):
            scored = self.scored(data, user, predictions)
        return data.version, scored, user.ignored_movie_ids

    async def predict_ratings(self, request, movie_ids: list[int], context, stages: Stages):
        given = np.array(movie_ids, np.int64)
        data, user, predictions = await self.predict(
            request,
            lambda user: PredictRow(user.movie_ids, user.preferences, k=0, given=given),
            context,
            stages,
        )
        with stages.timed("rank"):
            scored = self.scored(data, user, predictions)
        return data.version, scored, user.ignored_movie_ids

    async def rate_items(self, user_id: int, ratings, context):
        """Upsert a user's ratings under the model's version; the feature service's reply.
        The write is stamped with the time the gateway accepted it: an attempt that the
        feature service finishes late never replaces a rating accepted after it."""
        check_user_id(user_id)
        accepted_at_us = self.clock.now_us()

        async def write(version: str):
            data = await self.version_data(version, context)
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

        return await self._following_the_model(write, context)

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

        return await self._following_the_model(write, context)

    async def _following_the_model(self, write, context):
        """Run `write(version)` for the model's version; when the feature service no longer
        knows that version (the model moved on and the old namespace was retired), ask the
        model service again and retry once."""
        version = await self.model_version(context)
        try:
            return await write(version)
        except (NotFound, FailedPrecondition, FeaturesNotLoaded):
            newer = await self.model_version(context, refresh=True)
            if newer != version:
                return await write(newer)
            # The features of the model's version are still being loaded: write under the
            # version that served last (a write updates every live version's features).
            if self._last_served is None or self._last_served == version:
                raise
            return await write(self._last_served)

    async def delete_user(self, user_id: int, context):
        check_user_id(user_id)
        return await self.upstreams.call(
            "feature",
            self.upstreams.feature.DeleteUser,
            feature_pb2.DeleteUserRequest(user_id=user_id, accepted_at_us=self.clock.now_us()),
            context,
        )

    async def explain(self, request, limit: int, context) -> Explanation:
        """The model's Explain for the request's user and movie, with μ, b_i, b_u and titles;
        on the usable model version, as `predict`."""
        if request.movie_id <= 0:
            raise InvalidArgument("movie_id must be positive", field="movie_id")

        async def call(data: VersionData):
            user = await self.user_input(request, data.version, data, context)
            explain = model_pb2.ExplainRequest(
                preferences=model_pb2.SparseVector(
                    movie_ids=user.movie_ids.tolist(), values=user.preferences.tolist()
                ),
                movie_id=request.movie_id,
                max_contributions=limit,
                model_version=data.version,
            )
            reply = await self.upstreams.call(
                "model", self.upstreams.model.Explain, explain, context
            )
            return user, reply

        data, (user, reply) = await self.on_model(context, call)
        column = int(data.index.columns(np.array([request.movie_id]))[0])
        item_mean = float(data.normalization.item_means[column])
        global_mean = data.normalization.global_mean
        return Explanation(
            movie_id=request.movie_id,
            title=data.title(request.movie_id)[0],
            predicted_rating=global_mean + item_mean + user.user_mean + reply.predicted_preference,
            global_mean=global_mean,
            item_mean=item_mean,
            user_mean=user.user_mean,
            predicted_preference=reply.predicted_preference,
            contributions=[
                Scored(c.movie_id, *data.title(c.movie_id), c.contribution)
                for c in reply.contributions
            ],
            preferences=[c.preference for c in reply.contributions],
            other_contribution=reply.other_contributions,
            other_count=reply.other_count,
            model_version=data.version,
            ignored_movie_ids=user.ignored_movie_ids,
        )

    async def similar(self, movie_id: int, k: int, metric, farthest: bool, context):
        """Nearest (or farthest) items in the embeddings of the version whose catalog names
        them."""
        direction = model_pb2.DIRECTION_FARTHEST if farthest else model_pb2.DIRECTION_NEAREST

        async def call(data: VersionData):
            request = model_pb2.SimilarItemsRequest(
                movie_id=movie_id,
                k=k,
                metric=metric,
                direction=direction,
                model_version=data.version,
            )
            return await self.similar_batches.submit(
                data.version, request, self.upstreams.timeout(context)
            )

        data, reply = await self.on_model(context, call)
        tracing.annotate(model_version=data.version)
        items = [Scored(i.movie_id, *data.title(i.movie_id), i.distance) for i in reply.items]
        return data.version, items
