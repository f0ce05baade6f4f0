"""Which model version the gateway answers with, and what it caches of each.

Per model version the gateway caches what never changes within it: μ and b_i, the item index,
the rating scale and the catalog. Every response names the version; features and model never
mix versions. While the features of a version the model service just moved to are still being
loaded, requests fall back to the last version that answered (see docs/architecture.md)."""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass

import numpy as np

from recsys.api.feature.v1 import feature_pb2
from recsys.api.model.v1 import model_pb2
from recsys.errors import (
    DeadlineExceeded,
    FailedPrecondition,
    NotFound,
    Unavailable,
    VersionMismatch,
)
from recsys.features import ItemIndex, Normalization
from recsys.limits import MAX_PAGE_SIZE
from services.gateway.upstream import Upstreams

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


class FeaturesNotLoaded(Unavailable):
    """The feature service has no (complete) features of a model version: a rollout in
    progress. Unlike Redis being down, answering with another version can help."""


class ModelVersions:
    """The model service's current version (cached for MODEL_VERSION_TTL_S), the data of the
    last CACHED_VERSIONS versions, and the rollout fallback."""

    def __init__(self, upstreams: Upstreams):
        self.upstreams = upstreams
        self._versions: dict[str, VersionData] = {}
        self._model_version: str | None = None
        self._model_version_at = 0.0  # time.monotonic() of the last answer
        self._asking: asyncio.Task | None = None  # a GetModelInfo call in flight
        self._last_served: str | None = None  # the last version a prediction came from
        self._missing: dict[str, float] = {}  # version → when its features were not loaded
        self._fetching: dict[str, asyncio.Future] = {}  # version → its data's fetch

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
        versions served side by side during a rollout do not evict each other. A version
        not cached yet is fetched once for every caller, under the upstream timeout per call
        and not under any caller's deadline: a catalog that takes longer to fetch than one
        request may wait (59k movies are 60 pages) is still cached for the next requests,
        instead of being fetched anew, and abandoned, by each of them."""
        data = self._versions.get(version)
        if data is not None:
            return data
        fetching = self._fetching.get(version)
        if fetching is None:
            fetching = self._fetching[version] = asyncio.ensure_future(self._keep(version))
            # its failure is each waiting caller's; retrieved here too, for when none waits
            fetching.add_done_callback(lambda task: task.cancelled() or task.exception())
        remaining = context.time_remaining() if context is not None else None
        try:
            return await asyncio.wait_for(asyncio.shield(fetching), remaining)
        except TimeoutError:
            raise DeadlineExceeded(
                f"deadline passed while the data of model version {version} was fetched"
            ) from None

    async def _keep(self, version: str) -> VersionData:
        try:
            data = await self._fetch_version(version, None)
            self._versions[version] = data
            while len(self._versions) > CACHED_VERSIONS:
                self._versions.pop(next(iter(self._versions)))
            return data
        finally:
            self._fetching.pop(version, None)

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

    async def following_the_model(self, write, context):
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
