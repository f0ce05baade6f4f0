"""Reads a model version's features from Redis (layout: recsys.featurestore.layout) into domain
objects: one pipeline per call, decoded by pure functions. No gRPC in here."""

from __future__ import annotations

import asyncio
import functools
import logging
import random
import time
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, replace
from typing import NamedTuple

import numpy as np
import redis.asyncio
from redis.exceptions import NoScriptError

from recsys.errors import (
    Aborted,
    DeadlineExceeded,
    FailedPrecondition,
    InvalidArgument,
    NotFound,
    Unavailable,
)
from recsys.features import ItemIndex, Normalization
from recsys.featurestore import layout
from recsys.featurestore.layout import KeyLayout
from recsys.featurestore.writes import (
    APPLY_SCRIPT,
    APPLY_SCRIPT_SHA,
    MAX_ATTEMPTS,
    PAST_DEADLINE,
    REVISION_MOVED,
    Change,
    DeleteRatings,
    DeleteUser,
    Outcome,
    Upsert,
    UserState,
    VersionFeatures,
    apply_args,
    apply_change,
    arrival_stamp,
    compute_features,
    decode_revision,
    state_diff,
)
from recsys.fold_in import FoldIn
from recsys.packed import Codes, Rows
from recsys.redis_client import unavailable
from recsys.serving import metrics
from services.feature.serial import PendingWrite, SerialWrites

log = logging.getLogger(__name__)

_NO_IDS = np.empty(0, np.int64)
# a version's item codes (tens of MB at large catalogs) are read in GETRANGE pieces of this
# many bytes, one round trip each: read whole, they would not arrive within REDIS_TIMEOUT_S
ITEM_CODES_CHUNK = 1 << 20
READY_TTL_S = 2.0  # how long a version seen "ready" is trusted before it is checked again


@dataclass(frozen=True)
class UserFeatures:
    """One user under one model version.

    ratings: every stored rating, {movie id: stars}, including items the model lacks.
    preferences: ((n,) int64 movie ids ascending, (n,) float32 r − μ − b_i − b_u) over the
        rated items the model covers.
    """

    user_id: int
    model_version: str
    user_mean: float
    ratings: dict[int, float]
    preferences: tuple[np.ndarray, np.ndarray]
    code: np.ndarray | None = None  # (k + 1,) float32 for a version whose users have codes


class VersionNormalization(NamedTuple):
    """μ and b_i of a model version: item_ids (n_items,) int64 in column order, item_means
    (n_items,) float64 stars in the same order; the rating scale in stars."""

    global_mean: float
    item_ids: np.ndarray
    item_means: np.ndarray
    rating_min: float
    rating_max: float


class VersionModel(NamedTuple):
    """What the feature service computes a version's features with: its μ and b_i as read
    (values) and as arithmetic (normalization), its columns, and the fold-in of a version
    whose users have codes (None for one whose users have none)."""

    values: VersionNormalization
    normalization: Normalization
    index: ItemIndex
    fold_in: FoldIn | None


@dataclass(frozen=True, eq=False)  # holds arrays: compared by identity
class PackedUsers:
    """Several users under one model version, found ones only, in request order:
    user_ids (n,) int64; user_means (n,) float64 b_u in stars; preferences: each user's
    preference vector (movie ids ascending, r − μ − b_i − b_u); unused: each user's rated
    movies the version's model does not cover, ascending; codes: each user's code under a
    version whose users have codes (recsys.fold_in), else none."""

    user_ids: np.ndarray
    user_means: np.ndarray
    preferences: Rows
    unused: Rows
    codes: Codes


def _user_features(
    user_id: int, version: str, ratings: dict[int, float], features: VersionFeatures
) -> UserFeatures:
    """UserFeatures of features computed from `ratings` (recsys.featurestore.writes)."""
    return UserFeatures(
        user_id=user_id,
        model_version=version,
        user_mean=features.user_mean,
        ratings=ratings,
        preferences=(features.movie_ids, features.preferences),
        code=None if features.code is None else features.code.astype(np.float32),
    )


def _unused_ids(packed_ratings: bytes, prefs: bytes) -> np.ndarray:
    """Movie ids rated (packed ratings) but not in the preference vector (packed prefs): the
    vector holds the rated movies the model covers, so equal lengths mean none."""
    if len(packed_ratings) == len(prefs):
        return _NO_IDS
    rated = np.frombuffer(packed_ratings, layout.PREFERENCE_DTYPE)["movie_id"]
    covered = np.frombuffer(prefs, layout.PREFERENCE_DTYPE)["movie_id"]
    return np.setdiff1d(rated, covered)


@dataclass(frozen=True)
class CatalogItem:
    movie_id: int
    title: str
    genres: tuple[str, ...]


@dataclass(frozen=True)
class ItemPage:
    """One page of the catalog by ascending movie id; `last_movie_id` is set when more
    items follow (the next page starts after it)."""

    items: list[CatalogItem]
    total_size: int
    last_movie_id: int | None


def _redis_errors(method):
    """Redis down, too slow, failing over (no master yet, a demoted master) or a Cluster
    moving slots → Unavailable (retryable by the caller, but not retried at once by gRPC
    retry policies); the raw error only goes to the log. Other Redis errors are bugs and
    stay INTERNAL."""

    seconds = metrics.REDIS_SECONDS.labels(method.__name__)

    @functools.wraps(method)
    async def guarded(*args, **kwargs):
        try:
            with seconds.time():
                return await method(*args, **kwargs)
        except Exception as exc:
            if not unavailable(exc):
                raise
            log.warning(
                "redis unavailable", extra={"operation": method.__name__, "error": str(exc)}
            )
            # not retried at once by the gateway: another attempt reaches the same Redis, and
            # against a hung Redis each attempt costs a whole REDIS_TIMEOUT_S
            raise Unavailable(f"redis unavailable: {type(exc).__name__}", retry=False) from None

    return guarded


class FeatureStore:
    """The feature service's view of Redis. Versions are immutable once ready, so their
    readiness and normalization are cached in memory; users and the catalog are not."""

    def __init__(
        self,
        client: redis.asyncio.Redis,
        prefix: str = "recsys",
        *,
        wait_replicas: int = 0,
        wait_timeout_s: float = 0.1,
    ):
        """`wait_replicas` > 0: each write round that changed something is followed, on the
        same connection, by `WAIT wait_replicas` (at most `wait_timeout_s`, and never past
        the round's deadline); a write the replicas did not confirm is answered Unavailable
        (it is applied on the master, and lost if the master fails before a replica has
        it; the same write again is safe)."""
        self._redis = client
        self._wait_replicas = wait_replicas
        self._wait_timeout_s = wait_timeout_s
        self.keys = KeyLayout(prefix)
        self._ready_versions: dict[str, float] = {}  # version → when it was last seen ready
        self._normalizations: dict[str, VersionModel] = {}
        self._version_reads: dict[tuple[str, bool], asyncio.Future] = {}

    @_redis_errors
    async def ping(self) -> bool:
        return bool(await self._redis.ping())

    @_redis_errors
    async def active_version(self) -> str | None:
        active = await self._redis.get(self.keys.active())
        return active.decode() if active is not None else None

    @_redis_errors
    async def ready(self) -> bool:
        """Redis answers and an active version exists (one GET: an answer proves the first)."""
        return await self._redis.get(self.keys.active()) is not None

    @_redis_errors
    async def resolve(self, version: str | None) -> str:
        """The version to answer for: `version`, or the active one when empty. NotFound when
        it was never loaded; FailedPrecondition while none is active or it is still loading."""
        if not version:
            version = await self.active_version()
            if version is None:
                raise FailedPrecondition(
                    "no active model version: load one with `recsys load-features`"
                )
        elif not layout.is_valid_version(version):
            raise InvalidArgument(f"bad model version {version!r}", field="model_version")
        if time.monotonic() - self._ready_versions.get(version, -READY_TTL_S) < READY_TTL_S:
            return version
        status = await self._redis.hget(self.keys.meta(version), "status")
        if status is None:
            self._ready_versions.pop(version, None)
            raise NotFound(f"model version {version} is not loaded")
        if status.decode() != layout.STATUS_READY:
            raise FailedPrecondition(f"model version {version} is still loading")
        self._ready_versions[version] = time.monotonic()
        return version

    @_redis_errors
    async def get_users(self, version: str, user_ids: Iterable[int]) -> dict[int, UserFeatures]:
        """Features of each user with stored ratings (others are absent): one round trip
        (HMGET of each user's hash under `version`). A user whose ratings exist but who has
        no hash under `version` gets preferences computed here from their ratings hash, with
        the version's μ and b_i (a second round trip, for those users only)."""
        user_ids = list(dict.fromkeys(int(u) for u in user_ids))
        users, derive = {}, []
        for user_id, (mean, prefs, packed, code) in zip(
            user_ids, await self._user_hashes(version, user_ids), strict=True
        ):
            if mean is None or prefs is None or packed is None:
                derive.append(user_id)  # no features under this version (yet): see below
                continue
            users[user_id] = UserFeatures(
                user_id=user_id,
                model_version=version,
                user_mean=layout.decode_user_mean(mean),
                ratings=layout.decode_packed_ratings(packed),
                preferences=layout.decode_preferences(prefs),
                code=layout.decode_user_code(code) if code else None,
            )
        users |= await self._derive_users(version, derive)
        return {u: users[u] for u in user_ids if u in users}  # request order

    @_redis_errors
    async def get_users_packed(self, version: str, user_ids: Iterable[int]) -> PackedUsers:
        """The same reads as get_users, answered as packed arrays: the stored preference
        vectors are concatenated as Redis holds them, with no Python object per entry."""
        user_ids = list(dict.fromkeys(int(u) for u in user_ids))
        found: dict[int, tuple[float, bytes, np.ndarray, np.ndarray | None]] = {}
        derive = []
        for user_id, (mean, prefs, packed, code) in zip(
            user_ids, await self._user_hashes(version, user_ids), strict=True
        ):
            if mean is None or prefs is None or packed is None:
                derive.append(user_id)
                continue
            found[user_id] = (
                layout.decode_user_mean(mean),
                prefs,
                _unused_ids(packed, prefs),
                layout.decode_user_code(code) if code else None,
            )
        for user_id, user in (await self._derive_users(version, derive)).items():
            prefs = layout.encode_preferences(*user.preferences)
            ratings = layout.encode_packed_ratings(user.ratings)
            found[user_id] = (user.user_mean, prefs, _unused_ids(ratings, prefs), user.code)
        order = [u for u in user_ids if u in found]
        entries = np.frombuffer(b"".join(found[u][1] for u in order), layout.PREFERENCE_DTYPE)
        preference_offsets = np.zeros(len(order) + 1, np.int64)
        np.cumsum(
            [len(found[u][1]) // layout.PREFERENCE_DTYPE.itemsize for u in order],
            out=preference_offsets[1:],
        )
        return PackedUsers(
            user_ids=np.array(order, np.int64),
            user_means=np.array([found[u][0] for u in order], np.float64),
            preferences=Rows(
                preference_offsets, entries["movie_id"].copy(), entries["value"].copy()
            ),
            unused=Rows.from_lists([found[u][2] for u in order]),
            codes=Codes.from_lists([found[u][3] for u in order]),
        )

    async def _user_hashes(self, version: str, user_ids: list[int]) -> list[list[bytes | None]]:
        """(mean, prefs, packed ratings, code) of each user's hash under `version`, one round
        trip."""
        fields = (layout.USER_MEAN, layout.USER_PREFS, layout.USER_RATINGS, layout.USER_CODE)
        if len(user_ids) == 1:  # one command needs no pipeline's bookkeeping
            return [await self._redis.hmget(self.keys.user(version, user_ids[0]), fields)]
        pipe = self._redis.pipeline(transaction=False)
        for user_id in user_ids:
            pipe.hmget(self.keys.user(version, user_id), fields)
        return await pipe.execute()

    async def _derive_users(self, version: str, user_ids: list[int]) -> dict[int, UserFeatures]:
        """Features of users who have ratings but no hash under `version`, computed from their
        ratings hashes (absent: users with no ratings)."""
        if not user_ids:
            return {}
        pipe = self._redis.pipeline(transaction=False)
        for user_id in user_ids:
            pipe.hgetall(self.keys.ratings(user_id))
        users = {}
        for user_id, raw in zip(user_ids, await pipe.execute(), strict=True):
            if raw:
                ratings = layout.decode_ratings(raw)
                users[user_id] = await self._derive_user(version, user_id, ratings)
        return users

    async def _derive_user(
        self, version: str, user_id: int, ratings: dict[int, float]
    ) -> UserFeatures:
        model = await self._version_normalization(version)
        features = compute_features(ratings, model.index, model.normalization, model.fold_in)
        return _user_features(user_id, version, ratings, features)

    @_redis_errors
    async def normalization(self, version: str) -> VersionNormalization:
        """μ, the item ids and b_i in column order, and the rating scale of `version`."""
        return (await self._version_normalization(version)).values

    async def _version_normalization(
        self, version: str, *, require_ready: bool = True
    ) -> VersionModel:
        """Cached per version: μ, b_i, the item order and the item codes never change once a
        version is registered (its meta, items, item means and codes are written before
        anything else)."""
        cached = self._normalizations.get(version)
        if cached is not None and (not require_ready or version in self._ready_versions):
            return cached  # callers resolve() first, which re-checks a version every few s
        # one read per version for all callers (its item codes can be tens of MB), each
        # caller getting its result or its error; a caller that gives up does not cancel it
        key = (version, require_ready)
        reading = self._version_reads.get(key)
        if reading is None:
            reading = asyncio.ensure_future(self._read_version_model(version, require_ready))
            self._version_reads[key] = reading
            reading.add_done_callback(lambda done: self._read_done(key, done))
        return await asyncio.shield(reading)

    def _read_done(self, key: tuple[str, bool], done: asyncio.Future) -> None:
        self._version_reads.pop(key, None)
        if not done.cancelled():
            done.exception()  # retrieved here too: every caller may have given up

    async def _read_version_model(self, version: str, require_ready: bool) -> VersionModel:
        pipe = self._redis.pipeline(transaction=False)
        pipe.hmget(
            self.keys.meta(version),
            "global_mean", "rating_min", "rating_max", "status", "fold_in_l2", "code_size",
        )  # fmt: skip
        pipe.get(self.keys.items(version))
        pipe.get(self.keys.item_means(version))
        pipe.strlen(self.keys.item_codes(version))
        meta, items, item_means, codes_length = await pipe.execute()
        global_mean, low, high, status, fold_in_l2, code_size = meta
        if status is None or items is None or item_means is None:
            raise NotFound(f"model version {version} is not loaded")
        if require_ready and status.decode() != layout.STATUS_READY:
            raise FailedPrecondition(f"model version {version} is still loading")
        if status.decode() == layout.STATUS_READY:
            self._ready_versions[version] = time.monotonic()
        values = VersionNormalization(
            global_mean=float(global_mean),
            item_ids=layout.decode_item_ids(items),
            item_means=layout.decode_item_means(item_means),
            rating_min=float(low),
            rating_max=float(high),
        )
        fold_in = None
        if fold_in_l2 is not None:
            if code_size is None or not codes_length:  # its codes are not written yet
                raise NotFound(f"model version {version} is not loaded")
            raw = await self._read_item_codes(version, codes_length)
            codes = layout.decode_item_codes(raw, int(code_size))
            fold_in = FoldIn(codes, float(fold_in_l2))
        cached = VersionModel(
            values,
            Normalization(values.global_mean, values.item_means),
            ItemIndex(values.item_ids),
            fold_in,
        )
        self._normalizations[version] = cached
        return cached

    async def _read_item_codes(self, version: str, length: int) -> bytes:
        """P:ver:V:item_codes (`length` bytes) in ITEM_CODES_CHUNK pieces, one GETRANGE each;
        the value never changes once its version is registered, so the pieces agree."""
        key = self.keys.item_codes(version)
        pieces = []
        for start in range(0, length, ITEM_CODES_CHUNK):
            end = min(start + ITEM_CODES_CHUNK, length) - 1
            pieces.append(await self._redis.getrange(key, start, end))
        raw = b"".join(pieces)
        if len(raw) != length:
            raise NotFound(f"model version {version} is not loaded: its item codes changed")
        return raw

    # --- writes --------------------------------------------------------------------------------
    # Last writer wins per movie by acceptance stamp (recsys.featurestore.writes); one user's
    # writes are serialized in the process and merged into rounds (services.feature.serial).

    # Awaited with (user id, the round's changes) after a round's read, before its script:
    # tests hold a write there. None in production.
    before_apply: Callable[[int, list[Change]], Awaitable[None]] | None = None

    @functools.cached_property
    def _serial(self) -> SerialWrites:
        return SerialWrites(self._write)

    @_redis_errors
    async def upsert_ratings(
        self,
        user_id: int,
        ratings: dict[int, float],
        version: str,
        *,
        accepted_at_us: int = 0,
        timeout_s: float | None = None,
    ) -> tuple[UserFeatures, bool]:
        """Set `ratings` ({movie id: stars}) for the user, creating them if new; a movie
        whose stored stamp (write or deletion) is newer than `accepted_at_us` (µs since the
        Unix epoch; 0: now) keeps what it has. Returns (features under `version` after the
        write, created). A write all of whose movies lost to newer stamps was superseded:
        it returns the current features, created False. DeadlineExceeded once `timeout_s`
        (None: no limit) has passed."""
        change = Upsert(dict(ratings), accepted_at_us or arrival_stamp())
        outcome = await self._serial.submit(user_id, change, timeout_s)
        return await self._features_after(user_id, outcome, version), outcome.created

    @_redis_errors
    async def delete_ratings(
        self,
        user_id: int,
        movie_ids: list[int],
        version: str,
        *,
        accepted_at_us: int = 0,
        timeout_s: float | None = None,
    ) -> tuple[UserFeatures, list[int]]:
        """Remove some ratings, leaving tombstones (a write accepted before this one cannot
        bring them back); a rating accepted after `accepted_at_us` stays. Returns (features
        under `version`, ids the user had not rated). NotFound when the user has no
        ratings."""
        change = DeleteRatings(tuple(movie_ids), accepted_at_us or arrival_stamp())
        outcome = await self._serial.submit(user_id, change, timeout_s)
        features = await self._features_after(user_id, outcome, version)
        return features, list(outcome.missing)

    @_redis_errors
    async def delete_user(
        self, user_id: int, *, accepted_at_us: int = 0, timeout_s: float | None = None
    ) -> int:
        """Remove the user's ratings accepted before `accepted_at_us` and their features
        under every live version (the same compare-and-set as any write, so a concurrent
        load cannot bring them back); later writes accepted before it are refused, later
        ones accepted after it create the user anew. Returns how many ratings it removed
        (ratings accepted after it stay). NotFound when the user has none."""
        change = DeleteUser(accepted_at_us or arrival_stamp())
        return (await self._serial.submit(user_id, change, timeout_s)).removed

    @_redis_errors
    async def live_versions(self) -> dict[str, str]:
        """Versions whose user hashes writes maintain → status ("loading" | "ready")."""
        return {k.decode(): v.decode() for k, v in (await self._redis.hgetall(
            self.keys.versions())).items()}  # fmt: skip

    async def _write(self, user_id: int, batch: list[PendingWrite]) -> None:
        """One round for the waiting writes of one user (`batch`, arrival order): read the
        revision, ratings, stamps and live versions; apply each change in turn (last writer
        wins per movie); compute every live version's features of the result; one script
        applies it all iff the revision is unchanged and the batch's earliest deadline has
        not passed (by Redis's clock). Each write gets the outcome of its own change. Writes
        left unfinished go into the next round: after a lost race (ABORTED after
        MAX_ATTEMPTS of them), or when another write's deadline cut the round short. Every
        wait on Redis ends by the earliest deadline; a write past its deadline never starts
        another attempt."""
        now = time.monotonic()
        writes = []
        for pending in batch:
            if pending.expired(now):
                pending.fail(DeadlineExceeded(f"user {user_id}: the deadline passed"))
            else:
                writes.append(pending)
        if not writes:
            return
        first = min(
            (p for p in writes if p.deadline is not None), key=lambda p: p.deadline, default=None
        )
        try:
            async with asyncio.timeout(first.deadline - now if first else None) as waiting:
                await self._write_round(user_id, writes, first.deadline_us if first else 0)
        except TimeoutError:
            if not waiting.expired():
                raise
            # the earliest deadline passed: that write fails when the next round starts
        except Exception as exc:
            if not unavailable(exc):
                raise
            log.warning("redis unavailable", extra={"operation": "write", "error": str(exc)})
            for pending in writes:
                pending.fail(Unavailable(f"redis unavailable: {type(exc).__name__}", retry=False))

    async def _write_round(
        self, user_id: int, writes: list[PendingWrite], deadline_us: int
    ) -> None:
        ratings_key, revision_key = self.keys.ratings(user_id), self.keys.revision(user_id)
        stamps_key = self.keys.stamps(user_id)
        pipe = self._redis.pipeline(transaction=False)
        # the revision first: a write landing between these reads moves it, so the
        # compare-and-set below fails instead of applying over ratings it did not see
        pipe.get(revision_key)
        pipe.hgetall(ratings_key)
        pipe.hgetall(stamps_key)
        pipe.hgetall(self.keys.versions())
        raw_revision, raw_ratings, raw_stamps, raw_versions = await pipe.execute()
        before = UserState.decode(raw_ratings, raw_stamps)
        after = before.copy()
        outcomes: list[Outcome | NotFound] = []
        for pending in writes:
            try:
                outcomes.append(apply_change(after, user_id, pending.change))
            except NotFound as missing:
                outcomes.append(missing)
        diff = state_diff(before, after)
        if diff:  # else every change was superseded or found nothing: answer from the read
            live = sorted(v.decode() for v in raw_versions)
            features = []
            for live_version in live:
                model = await self._version_normalization(live_version, require_ready=False)
                features.append(
                    compute_features(after.ratings, model.index, model.normalization, model.fold_in)
                )
            user_keys = [self.keys.user(v, user_id) for v in live]
            args = apply_args(
                decode_revision(raw_revision),
                diff.to_set,
                diff.to_delete,
                after.ratings,
                features,
                stamps_set=diff.stamps_set,
                stamps_delete=diff.stamps_delete,
                deadline_us=deadline_us,
            )
            if self.before_apply is not None:
                await self.before_apply(user_id, [p.change for p in writes])
            keys = (ratings_key, revision_key, stamps_key, *user_keys)
            revision, confirmed = await self._apply(keys, args, deadline_us)
            if revision == PAST_DEADLINE:
                for pending in writes:
                    if 0 < pending.deadline_us <= deadline_us:
                        pending.fail(DeadlineExceeded(f"user {user_id}: the deadline passed"))
                return
            if revision == REVISION_MOVED:
                for pending in writes:
                    pending.lost += 1
                    if pending.lost >= MAX_ATTEMPTS:
                        pending.fail(
                            Aborted(
                                f"user {user_id} is being written by too many callers at "
                                "once; retry"
                            )
                        )
                lost = max(p.lost for p in writes)
                await asyncio.sleep(random.uniform(0, 0.002 * lost))
                return
            if confirmed < self._wait_replicas:
                log.warning(
                    "write not confirmed by replicas",
                    extra={"user_id": user_id, "replicas": confirmed},
                )
                unconfirmed = Unavailable(
                    f"redis: the write to user {user_id} was applied on the master but "
                    f"{confirmed} of {self._wait_replicas} replica(s) confirmed it within "
                    f"{self._wait_timeout_s} s; it is lost if the master fails before a "
                    "replica has it; the same write again is safe",
                    retry=False,
                )
                for pending, outcome in zip(writes, outcomes, strict=True):
                    pending.fail(outcome if isinstance(outcome, NotFound) else unconfirmed)
                return
            computed = dict(zip(live, features, strict=True))
            outcomes = [
                replace(o, features=computed)
                if not isinstance(o, NotFound) and o.ratings == after.ratings
                else o
                for o in outcomes
            ]
        for pending, outcome in zip(writes, outcomes, strict=True):
            if isinstance(outcome, NotFound):
                pending.fail(outcome)
            else:
                pending.finish(outcome)

    async def _apply(self, keys: tuple, args: list, deadline_us: int) -> tuple[int, int]:
        """Run the write script: (its answer, replicas that confirmed it). By its SHA1
        (EVALSHA); sent whole (EVAL, which caches it) only when the node does not hold it
        (NOSCRIPT: a restart, SCRIPT FLUSH, a failover), which is safe as a script is all or
        nothing. With wait_replicas, WAIT follows in the same pipeline, hence on the same
        connection (WAIT counts the replicas that have this connection's writes); its timeout
        is at least 1 ms (0 would block forever) and never past `deadline_us` (0: none)."""
        answers = await self._run_script(("EVALSHA", APPLY_SCRIPT_SHA), keys, args, deadline_us)
        if isinstance(answers[0], NoScriptError):
            answers = await self._run_script(("EVAL", APPLY_SCRIPT), keys, args, deadline_us)
        for answer in answers:
            if isinstance(answer, Exception):
                raise answer
        revision, confirmed = answers if self._wait_replicas else (answers[0], 0)
        return revision, int(confirmed)

    async def _run_script(self, command: tuple, keys: tuple, args: list, deadline_us: int):
        pipe = self._redis.pipeline(transaction=False)
        # through execute_command: a cluster pipeline routes the script by its first key
        pipe.execute_command(*command, len(keys), *keys, *args)
        if self._wait_replicas:
            timeout_s = self._wait_timeout_s
            if deadline_us:
                timeout_s = min(timeout_s, (deadline_us - time.time_ns() // 1000) / 1e6)
            pipe.execute_command("WAIT", self._wait_replicas, max(1, int(timeout_s * 1000)))
        return await pipe.execute(raise_on_error=False)

    async def _features_after(self, user_id: int, outcome: Outcome, version: str) -> UserFeatures:
        """The user's features under `version` after a write: those its round computed and
        wrote, else (a superseded write, a version the round did not maintain, an earlier
        change of the round) computed from the ratings right after it."""
        ratings = outcome.ratings
        if not ratings:
            empty = (np.empty(0, np.int64), np.empty(0, np.float32))
            return UserFeatures(user_id, version, 0.0, {}, empty)
        features = (outcome.features or {}).get(version)
        if features is None:
            return await self._derive_user(version, user_id, ratings)
        return _user_features(user_id, version, ratings, features)

    @_redis_errors
    async def get_items(self, version: str, movie_ids: Iterable[int]) -> dict[int, CatalogItem]:
        """Catalog entries by id (one HMGET); ids not in the catalog are absent."""
        movie_ids = list(dict.fromkeys(int(m) for m in movie_ids))
        if not movie_ids:
            return {}
        entries = await self._redis.hmget(self.keys.catalog(version), movie_ids)
        return _catalog_items(movie_ids, entries)

    @_redis_errors
    async def list_items(
        self, version: str, page_size: int, after_movie_id: int | None = None
    ) -> ItemPage:
        """Up to `page_size` (≥ 1) items with ids above `after_movie_id`, ascending."""
        low = f"({int(after_movie_id)}" if after_movie_id is not None else "-inf"
        pipe = self._redis.pipeline(transaction=False)
        pipe.zrangebyscore(self.keys.catalog_ids(version), low, "+inf", start=0, num=page_size + 1)
        pipe.zcard(self.keys.catalog_ids(version))
        members, total = await pipe.execute()
        movie_ids = [int(m) for m in members[:page_size]]
        entries = (
            await self._redis.hmget(self.keys.catalog(version), movie_ids) if movie_ids else []
        )
        found = _catalog_items(movie_ids, entries)
        items = [found.get(m, CatalogItem(m, f"Item {m}", ())) for m in movie_ids]
        more = len(members) > page_size
        return ItemPage(
            items=items, total_size=int(total), last_movie_id=movie_ids[-1] if more else None
        )


def _catalog_items(movie_ids: list[int], entries: list[bytes | None]) -> dict[int, CatalogItem]:
    items = {}
    for movie_id, entry in zip(movie_ids, entries, strict=True):
        if entry is not None:
            title, genres = layout.decode_catalog_entry(entry)
            items[movie_id] = CatalogItem(movie_id, title, genres)
    return items
