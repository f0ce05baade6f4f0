"""GatewayService RPCs: validation and protobuf ↔ the predict flow."""

from __future__ import annotations

import contextlib
import logging

from recsys.api.gateway.v1 import gateway_pb2, gateway_pb2_grpc
from recsys.errors import InvalidArgument
from recsys.limits import DEFAULT_CONTRIBUTIONS, MAX_GIVEN_MOVIES, MAX_K, MAX_MOVIE_ID
from recsys.serving import metrics
from recsys.serving.enums import GATEWAY_METRIC
from services.gateway import search
from services.gateway.flow import PredictFlow
from services.gateway.stages import Stages

log = logging.getLogger(__name__)

DEFAULT_K = 10


STAGES_METADATA_KEY = "recsys-stage-ms"


@contextlib.contextmanager
def observed_stages(method: str):
    """A Stages for one request; whatever stages ran, failed calls included (a deadline that
    ran out in the model call is a slow stage too), go into `recsys_gateway_stage_seconds`."""
    stages = Stages()
    try:
        yield stages
    finally:
        for stage, ms in stages.ms.items():
            metrics.STAGE_SECONDS.labels(method, stage).observe(ms / 1000)


def report_stages(context, method: str, stages: Stages) -> None:
    """Stage timings of an answered request as trailing metadata
    (`recsys-stage-ms: features=..,model=..,rank=..`) and in the debug log."""
    header = stages.header()
    context.set_trailing_metadata(((STAGES_METADATA_KEY, header),))
    log.debug("stages", extra={"method": method, "stage_ms": header})


def k_of(request) -> int:
    k = request.k or DEFAULT_K
    if not 1 <= k <= MAX_K:
        raise InvalidArgument(f"k must be between 1 and {MAX_K}, got {request.k}", field="k")
    return k


class GatewayServicer(gateway_pb2_grpc.GatewayServiceServicer):
    def __init__(self, flow: PredictFlow):
        self.flow = flow
        self.titles = search.TitleSearch()

    async def Recommend(self, request, context):
        k = k_of(request)
        with observed_stages("Recommend") as stages:
            version, items, ignored = await self.flow.predictions.recommend(
                request, k, context, stages
            )
        report_stages(context, "Recommend", stages)
        return gateway_pb2.RecommendResponse(
            items=[
                gateway_pb2.Recommendation(
                    movie_id=s.movie_id, title=s.title, genres=s.genres, predicted_rating=s.value
                )
                for s in items
            ],
            model_version=version,
            ignored_movie_ids=ignored,
        )

    async def PredictRatings(self, request, context):
        movie_ids = list(request.movie_ids)
        if not 1 <= len(movie_ids) <= MAX_GIVEN_MOVIES:
            raise InvalidArgument(f"give 1 to {MAX_GIVEN_MOVIES} movie ids", field="movie_ids")
        if any(not 0 < m <= MAX_MOVIE_ID for m in movie_ids):
            raise InvalidArgument(f"movie ids must be in 1..{MAX_MOVIE_ID}", field="movie_ids")
        with observed_stages("PredictRatings") as stages:
            version, items, ignored = await self.flow.predictions.predict_ratings(
                request, movie_ids, context, stages
            )
        report_stages(context, "PredictRatings", stages)
        return gateway_pb2.PredictRatingsResponse(
            predictions=[
                gateway_pb2.PredictedRating(
                    movie_id=s.movie_id, title=s.title, predicted_rating=s.value
                )
                for s in items
            ],
            model_version=version,
            ignored_movie_ids=ignored,
        )

    async def SimilarItems(self, request, context):
        if request.movie_id <= 0:
            raise InvalidArgument("movie_id must be positive", field="movie_id")
        metric = GATEWAY_METRIC.name(request.metric, "metric")
        version, items = await self.flow.predictions.similar(
            request.movie_id, k_of(request), metric, request.farthest, context
        )
        return gateway_pb2.SimilarItemsResponse(
            items=[
                gateway_pb2.SimilarItem(
                    movie_id=s.movie_id, title=s.title, genres=s.genres, distance=s.value
                )
                for s in items
            ],
            model_version=version,
        )

    async def SearchMovies(self, request, context):
        query = search.checked_query(request.query)
        size = search.checked_page_size(request.page_size)
        offset = search.offset_of(request.page_token, query)
        data = await self.flow.versions.usable_version(context)
        page = self.titles.index(data.version, data.catalog).search(query, offset, size)
        return gateway_pb2.SearchMoviesResponse(
            movies=[
                gateway_pb2.Movie(movie_id=m.movie_id, title=m.title, genres=m.genres)
                for m in page.movies
            ],
            next_page_token=(
                "" if page.next_offset is None else search.page_token(query, page.next_offset)
            ),
            total_size=page.total,
            model_version=data.version,
        )

    async def RateItems(self, request, context):
        reply = await self.flow.writes.rate_items(request.user_id, list(request.ratings), context)
        return gateway_pb2.RateItemsResponse(
            user=user_state(reply.features, reply.unused_movie_ids), created=reply.created
        )

    async def DeleteRatings(self, request, context):
        reply = await self.flow.writes.delete_ratings(
            request.user_id, list(request.movie_ids), context
        )
        return gateway_pb2.DeleteRatingsResponse(
            user=user_state(reply.features, reply.unused_movie_ids),
            missing_movie_ids=reply.missing_movie_ids,
        )

    async def ExplainPrediction(self, request, context):
        limit = request.max_contributions or DEFAULT_CONTRIBUTIONS
        if not 1 <= limit <= MAX_K:
            raise InvalidArgument(
                f"max_contributions must be between 1 and {MAX_K}, got {request.max_contributions}",
                field="max_contributions",
            )
        explanation = await self.flow.explanations.explain(request, limit, context)
        return gateway_pb2.ExplainPredictionResponse(
            movie_id=explanation.movie_id,
            title=explanation.title,
            predicted_rating=explanation.predicted_rating,
            global_mean=explanation.global_mean,
            item_mean=explanation.item_mean,
            user_mean=explanation.user_mean,
            predicted_preference=explanation.predicted_preference,
            contributions=[
                gateway_pb2.RatedContribution(
                    movie_id=s.movie_id, title=s.title, preference=pref, contribution=s.value
                )
                for s, pref in zip(explanation.contributions, explanation.preferences, strict=True)
            ],
            other_contributions=explanation.other_contribution,
            other_count=explanation.other_count,
            model_version=explanation.model_version,
            ignored_movie_ids=explanation.ignored_movie_ids,
        )

    async def DeleteUser(self, request, context):
        reply = await self.flow.writes.delete_user(request.user_id, context)
        return gateway_pb2.DeleteUserResponse(ratings_deleted=reply.ratings_deleted)


def user_state(features, unused_movie_ids) -> gateway_pb2.UserState:
    """A feature service's UserFeatures as the gateway's UserState."""
    return gateway_pb2.UserState(
        user_id=features.user_id,
        model_version=features.model_version,
        user_mean=features.user_mean,
        ratings=[
            gateway_pb2.Rating(movie_id=m, rating=r)
            for m, r in zip(features.ratings.movie_ids, features.ratings.values, strict=True)
        ],
        unused_movie_ids=unused_movie_ids,
    )
