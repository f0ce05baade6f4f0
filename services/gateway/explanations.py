"""ExplainPrediction: the model's Explain for the request's user and movie, on the usable
version, with μ, b_i, b_u and titles added so the parts sum to the predicted rating."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from recsys.api.model.v1 import model_pb2
from recsys.errors import InvalidArgument
from services.gateway.predictions import Scored
from services.gateway.upstream import Upstreams
from services.gateway.users import Users
from services.gateway.versions import ModelVersions, VersionData


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


class Explanations:
    def __init__(self, upstreams: Upstreams, versions: ModelVersions, users: Users):
        self.upstreams = upstreams
        self.versions = versions
        self.users = users

    async def explain(self, request, limit: int, context) -> Explanation:
        """At most `limit` contributions, the largest first."""
        if request.movie_id <= 0:
            raise InvalidArgument("movie_id must be positive", field="movie_id")

        async def call(data: VersionData):
            user = await self.users.user_input(request, data, context)
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

        data, (user, reply) = await self.versions.on_model(context, call)
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
