"""The gateway's request flow, assembled: the coalesced upstream calls and the parts that use
them — model versions (versions.py), the request's user (users.py), predictions
(predictions.py), explanations (explanations.py) and writes (writes.py)."""

from __future__ import annotations

from recsys.serving.coalesce import Coalescer
from services.gateway.batches import Batches
from services.gateway.explanations import Explanations
from services.gateway.predictions import Predictions
from services.gateway.upstream import Upstreams
from services.gateway.users import Users
from services.gateway.versions import ModelVersions
from services.gateway.writes import Writes


class PredictFlow:
    """`max_batch` and `max_in_flight` bound the coalesced calls to each upstream (see
    recsys.serving.coalesce): requests per batch call, batch calls under way at once."""

    def __init__(self, upstreams: Upstreams, *, max_batch: int = 64, max_in_flight: int = 1):
        batches = Batches(upstreams)
        bounds = {"max_batch": max_batch, "max_in_flight": max_in_flight}
        self.versions = ModelVersions(upstreams)
        self.users = Users(upstreams, Coalescer("feature", batches.users, **bounds))
        self.predictions = Predictions(
            upstreams,
            self.versions,
            self.users,
            model_batches=Coalescer("model", batches.predictions, **bounds),
            similar_batches=Coalescer("model-similar", batches.similar, **bounds),
        )
        self.explanations = Explanations(upstreams, self.versions, self.users)
        self.writes = Writes(upstreams, self.versions)
