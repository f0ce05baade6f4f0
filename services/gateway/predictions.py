"""Recommend, PredictRatings and SimilarItems: the user's input and the model call on the
usable version, then de-normalization (pref + b_u + b_i + μ) and titles. Model calls go out
together with concurrent requests' (coalesced)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from recsys.api.model.v1 import model_pb2
from recsys.serving import tracing
from recsys.serving.coalesce import Coalescer
from recsys.serving.enums import DIRECTION, GATEWAY_RANK_BY, METRIC, RANK_BY
from services.gateway.batches import PredictRow, UserInput
from services.gateway.stages import Stages
from services.gateway.upstream import Upstreams
from services.gateway.users import Users
from services.gateway.versions import ModelVersions, VersionData


@dataclass(frozen=True)
class Scored:
    movie_id: int
    title: str
    genres: list[str]
    value: float  # a predicted rating, or a distance


def scored(data: VersionData, user: UserInput, predictions) -> list[Scored]:
    """Predicted preferences → de-normalized ratings with titles."""
    movie_ids, preferences = predictions
    if not len(movie_ids):
        return []
    ids = movie_ids.astype(np.int64)
    prefs = preferences.astype(np.float64)
    ratings = data.normalization.denormalize(prefs, user.user_mean, data.index.columns(ids))
    return [
        Scored(m, *data.title(m), r) for m, r in zip(ids.tolist(), ratings.tolist(), strict=True)
    ]


class Predictions:
    """`model_batches` coalesces concurrent Predict rows into one BatchPredict,
    `similar_batches` concurrent SimilarItems into one BatchSimilarItems."""

    def __init__(
        self,
        upstreams: Upstreams,
        versions: ModelVersions,
        users: Users,
        model_batches: Coalescer,
        similar_batches: Coalescer,
    ):
        self.upstreams = upstreams
        self.versions = versions
        self.users = users
        self.model_batches = model_batches
        self.similar_batches = similar_batches

    async def predict(self, request, row, context, stages: Stages):
        """Run the flow for one request. `row(user)` gives that user's PredictRow; the
        prediction goes out together with concurrent requests'. Returns (version data, user
        input, (movie ids, predicted preferences))."""

        async def call(data: VersionData):
            tracing.annotate(model_version=data.version, user=request.WhichOneof("user") or "")
            with stages.timed("features"):
                user = await self.users.user_input(request, data, context)
            with stages.timed("model"):
                predicted = await self.model_batches.submit(
                    data.version, row(user), self.upstreams.timeout(context)
                )
            return user, predicted

        data, (user, predictions) = await self.versions.on_model(context, call)
        return data, user, predictions

    async def recommend(
        self, request, k: int, context, stages: Stages
    ) -> tuple[str, list[Scored], list[int]]:
        """The top k unrated items in the request's ranking mode (default: the model
        version's, relevance), each with its predicted rating."""
        rank_by = RANK_BY.value(GATEWAY_RANK_BY.name(request.rank_by, "rank_by"))
        data, user, predictions = await self.predict(
            request,
            lambda user: PredictRow(
                user.movie_ids,
                user.preferences,
                k=k,
                rank_by=rank_by,
                exclude=user.rated_movie_ids,
                code=user.code,
            ),
            context,
            stages,
        )
        with stages.timed("rank"):
            items = scored(data, user, predictions)
        return data.version, items, user.ignored_movie_ids

    async def predict_ratings(self, request, movie_ids: list[int], context, stages: Stages):
        """The predicted rating of each of `movie_ids` the version knows."""
        given = np.array(movie_ids, np.int64)
        data, user, predictions = await self.predict(
            request,
            lambda user: PredictRow(
                user.movie_ids, user.preferences, k=0, given=given, code=user.code
            ),
            context,
            stages,
        )
        with stages.timed("rank"):
            items = scored(data, user, predictions)
        return data.version, items, user.ignored_movie_ids

    async def similar(self, movie_id: int, k: int, metric: str, farthest: bool, context):
        """Nearest (or farthest) items by `metric` (a recsys.embeddings metric) in the
        embeddings of the version whose catalog names them."""
        direction = DIRECTION.value("farthest" if farthest else "nearest")

        async def call(data: VersionData):
            request = model_pb2.SimilarItemsRequest(
                movie_id=movie_id,
                k=k,
                metric=METRIC.value(metric),
                direction=direction,
                model_version=data.version,
            )
            return await self.similar_batches.submit(
                data.version, request, self.upstreams.timeout(context)
            )

        data, reply = await self.versions.on_model(context, call)
        tracing.annotate(model_version=data.version)
        items = [Scored(i.movie_id, *data.title(i.movie_id), i.distance) for i in reply.items]
        return data.version, items
