"""Bulk load of a model version's features into Redis (layout: recsys.featurestore.layout):
normalization, catalog, every user's ratings and preference vector, written with pipelines
in batches; the version becomes active only once all of it is in place. A load that was
interrupted is resumed by the next one: users already written are not written again."""

from __future__ import annotations

import logging
import time
from collections import deque
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pandas as pd
import redis
from redis.exceptions import NoScriptError

from recsys.artifacts import FeatureSpec, load_features_spec
from recsys.errors import ArtifactError, FailedPrecondition, InvalidArgument
from recsys.featurestore import layout
from recsys.featurestore.layout import KeyLayout
from recsys.featurestore.writes import (
    APPLY_SCRIPT,
    APPLY_SCRIPT_SHA,
    REVISION_MOVED,
    decode_revision,
    features_of,
    script_args,
)
from recsys.progress import bar
from recsys.redis_client import SyncClient

log = logging.getLogger(__name__)

CATALOG_BATCH = 5000
BATCH_RATINGS = 100_000  # most ratings in one write pipeline (a user with more: alone)
WRITER_THREADS = 2  # batches in flight: one encoded while Redis applies the other
MAX_ROUNDS = 5


@dataclass(frozen=True)
class LoadSummary:
    """What a load wrote: users (ratings hashes), ratings (hash fields), model items
    (columns), catalog entries, and the wall time in seconds."""

    version: str
    users: int
    ratings: int
    items: int
    catalog_items: int
    seconds: float
    retired_versions: list[str]
    orphan_keys_removed: int = 0  # keys of unregistered namespaces swept after the switch
    resumed_users: int = 0  # of `users`, those an interrupted load of the version had written
    redis_used_memory: int | None = None  # bytes, all of Redis's data, after the load

    def memory_per_million_ratings(self) -> float | None:
        """Redis's used_memory per million ratings loaded, bytes (None: INFO refused)."""
        if self.redis_used_memory is None or not self.ratings:
            return None
        return self.redis_used_memory / self.ratings * 1e6


def load_features(
    client: SyncClient,
    artifact_dir: Path | str,
    ratings: pd.DataFrame,
    items: pd.DataFrame,
    prefix: str = "recsys",
    batch_users: int = 500,
    *,
    replace_ratings: bool = False,
    progress: bool = False,
) -> LoadSummary:
    """Build the namespace of the model version in `artifact_dir` beside the active one,
    then switch to it.

    ratings: user_id, item_id, rating (stars) per row: they seed users Redis does not know.
        The ratings in Redis are the source of truth: a user who already has ratings there
        keeps them (ratings written online since the last load are carried over) and a
        user deleted online is not brought back; `replace_ratings=True` makes the dataset
        win instead.
    items: item_id, title, genres ("|"-joined) — the catalog.

    Order: meta (status loading), items, item means, catalog; then the version is
    registered in P:versions, so online writes from then on maintain its user hashes too;
    then every user's features (compare-and-set on the user's revision, so a concurrent
    online write is never overwritten); then status ready, P:active, and finally the
    namespaces of versions older than the previous active one are removed, and then the
    keys of any namespace no longer registered (`sweep_namespaces`).
    Refuses a version that is already loaded. An interrupted load of it (killed part-way) is
    resumed when its namespace holds this artifact's normalization and the version is still
    registered: users already written are kept, the rest are written, and the result is the
    one an uninterrupted load gives. Any other half-finished load of it is cleared first.
    `progress` shows the users written on stderr (recsys.progress).
    """
    started = time.perf_counter()
    spec = load_features_spec(artifact_dir)
    version = spec.version
    if not layout.is_valid_version(version):
        raise ArtifactError(f"{artifact_dir}: model version {version!r} cannot name Redis keys")
    try:
        keys = KeyLayout(prefix)
    except ValueError as exc:
        raise InvalidArgument(str(exc), field="prefix") from None
    resume = _resume_or_clear(client, keys, spec)
    catalog = _catalog(spec, items)
    previous = client.get(keys.active())
    if client.script_load(APPLY_SCRIPT) != APPLY_SCRIPT_SHA:  # every master of a Cluster
        raise RuntimeError("redis names the write script by another SHA1")

    client.hset(keys.meta(version), mapping=_loading_meta(spec))
    _write_items_and_catalog(client, keys, spec, catalog)
    client.hset(keys.versions(), version, layout.STATUS_LOADING)
    others = [v.decode() for v in client.hkeys(keys.versions()) if v.decode() != version]
    users, rated, resumed = _write_users(
        client, keys, spec, ratings, batch_users, replace_ratings, others, progress, resume
    )

    loaded_at = datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
    client.hset(
        keys.meta(version),
        mapping={"status": layout.STATUS_READY, "loaded_at": loaded_at, "user_count": users},
    )
    client.hset(keys.versions(), version, layout.STATUS_READY)
    client.set(keys.active(), version)
    keep = {version} | ({previous.decode()} if previous else set())
    retired = retire_versions(client, keys, keep)
    swept = sweep_namespaces(client, prefix)

    summary = LoadSummary(
        version=version,
        users=users,
        ratings=rated,
        items=len(spec.index),
        catalog_items=len(catalog),
        seconds=time.perf_counter() - started,
        retired_versions=retired,
        orphan_keys_removed=swept.keys_removed,
        resumed_users=resumed,
        redis_used_memory=redis_used_memory(client),
    )
    log.info("features loaded", extra=vars(summary))
    return summary


def _loading_meta(spec: FeatureSpec) -> dict[str, str]:
    """The meta hash of a version while it loads, as Redis stores it."""
    meta = {
        "status": layout.STATUS_LOADING,
        "global_mean": repr(float(spec.normalization.global_mean)),
        "rating_min": repr(float(spec.rating_scale[0])),
        "rating_max": repr(float(spec.rating_scale[1])),
        "item_count": str(len(spec.index)),
    }
    if spec.fold_in is not None:
        meta["fold_in_l2"] = repr(spec.fold_in.l2)
        meta["code_size"] = str(spec.fold_in.item_codes.shape[1])
    return meta


def redis_used_memory(client: SyncClient) -> int | None:
    """INFO memory's used_memory in bytes, summed over the masters of a Cluster; None where
    the server refuses INFO (an ACL without it)."""
    try:
        if isinstance(client, redis.RedisCluster):
            nodes = client.info("memory", target_nodes=redis.RedisCluster.PRIMARIES)
            if "used_memory" in nodes:  # one master: its own answer, not one per node
                return int(nodes["used_memory"])
            return sum(int(info["used_memory"]) for info in nodes.values())
        return int(client.info("memory")["used_memory"])
    except redis.ResponseError:
        return None


def retire_versions(client: SyncClient, keys: KeyLayout, keep: set[str]) -> list[str]:
    """Remove every registered version not in `keep`: first from P:versions (writes stop
    maintaining it), then its keys. Returns the removed versions."""
    retired = sorted(v.decode() for v in client.hkeys(keys.versions()) if v.decode() not in keep)
    for version in retired:
        client.hdel(keys.versions(), version)
        _unlink_matching(client, keys.version_pattern(version))
        log.info("model version removed from redis", extra={"version": version})
    return retired


@dataclass(frozen=True)
class SweepSummary:
    """What a namespace sweep did: the unregistered versions whose keys it removed, the
    count of keys removed, and the unregistered versions it left because a load of them
    may be under way (their meta says "loading")."""

    versions: list[str]
    keys_removed: int
    left_loading: list[str]


def sweep_namespaces(client: SyncClient, prefix: str = "recsys", batch: int = 1000) -> SweepSummary:
    """Remove the keys of every version namespace that P:versions does not register: what a
    write racing a version's retirement leaves behind (a `ver:<old>:user:{U}` hash written
    after the version was retired). SCAN over P:ver:* (every master of a Cluster),
    UNLINK in pipelines of `batch` keys. A version is spared while it is registered, is
    P:active, or has a meta hash with status "loading" (a load writes its meta before it
    registers the version); the check is repeated before each batch is removed, so a
    version registered meanwhile keeps its keys."""
    keys = KeyLayout(prefix)
    spared: dict[str, bool] = {}  # version → spared, as last checked
    left_loading: set[str] = set()
    pending: dict[str, list[bytes]] = {}
    removed: dict[str, int] = {}

    def spare(version: str) -> bool:
        if client.hexists(keys.versions(), version):
            return True
        active = client.get(keys.active())
        if active is not None and active.decode() == version:
            return True
        if client.hget(keys.meta(version), "status") == layout.STATUS_LOADING.encode():
            left_loading.add(version)
            return True
        return False

    def flush(version: str) -> None:
        found = pending.pop(version, [])
        if found and not spare(version):
            _unlink(client, found)
            removed[version] = removed.get(version, 0) + len(found)

    for key in client.scan_iter(match=keys.namespaces_pattern(), count=batch):
        version = keys.version_of_key(key)
        if version is None:
            continue
        if version not in spared:
            spared[version] = spare(version)
        if spared[version]:
            continue
        pending.setdefault(version, []).append(key)
        if len(pending[version]) >= batch:
            flush(version)
    for version in list(pending):
        flush(version)
    summary = SweepSummary(
        versions=sorted(removed),
        keys_removed=sum(removed.values()),
        left_loading=sorted(left_loading),
    )
    if summary.keys_removed or summary.left_loading:
        log.info("unregistered namespaces swept", extra=vars(summary))
    return summary


def _unlink_matching(client: SyncClient, pattern: bytes) -> None:
    batch = []
    for key in client.scan_iter(match=pattern, count=1000):
        batch.append(key)
        if len(batch) == 1000:
            _unlink(client, batch)
            batch = []
    if batch:
        _unlink(client, batch)


def _unlink(client: SyncClient, keys: list[bytes]) -> None:
    """UNLINK key by key in one pipeline (keys of several slots: fine on a Cluster too)."""
    pipe = client.pipeline(transaction=False)
    for key in keys:
        pipe.unlink(key)
    pipe.execute()


def _resume_or_clear(client: SyncClient, keys: KeyLayout, spec: FeatureSpec) -> bool:
    """What to do with what Redis holds of `spec`'s version: nothing (False); an interrupted
    load of this very artifact, to resume (True): meta and registry still say "loading"
    (or meta "ready" and the registry "loading": killed while finishing), and items, item
    means and meta are this artifact's, so every user hash in the namespace was computed as
    this load would and kept up to date by online writes; else a half-finished load that is
    cleared (False). FailedPrecondition for a version that is loaded."""
    version = spec.version
    pipe = client.pipeline(transaction=False)
    pipe.hgetall(keys.meta(version))
    pipe.hget(keys.versions(), version)
    pipe.get(keys.items(version))
    pipe.get(keys.item_means(version))
    pipe.get(keys.item_codes(version))
    meta, registered, item_ids, item_means, item_codes = pipe.execute()
    status = meta.get(b"status")
    if status is None:
        return False
    registered_loading = registered == layout.STATUS_LOADING.encode()
    if status == layout.STATUS_READY.encode() and not registered_loading:
        raise FailedPrecondition(
            f"model version {version} is already loaded in Redis; versions are immutable"
        )
    expected = _loading_meta(spec)
    same_artifact = (
        item_ids == layout.encode_item_ids(spec.index.item_ids)
        and item_means == layout.encode_item_means(spec.normalization.item_means)
        and item_codes == _encoded_item_codes(spec)
        and all(meta.get(k.encode()) == v.encode() for k, v in expected.items() if k != "status")
    )
    if registered_loading and same_artifact:
        log.warning("resuming an unfinished load", extra={"version": version})
        return True
    log.warning("clearing an unfinished load", extra={"version": version})
    client.hdel(keys.versions(), version)
    _unlink_matching(client, keys.version_pattern(version))
    return False


def _encoded_item_codes(spec: FeatureSpec) -> bytes | None:
    """P:ver:V:item_codes of a version that folds users in; None for one that does not."""
    if spec.fold_in is None:
        return None
    return layout.encode_item_codes(spec.fold_in.item_codes)


def _catalog(spec: FeatureSpec, items: pd.DataFrame) -> dict[int, bytes]:
    """movie id → encoded catalog entry: the dataset's catalog, plus any model item it lacks
    (titled from the artifact's catalog, else "Item <id>")."""
    catalog = {
        int(movie_id): layout.encode_catalog_entry(str(title), layout.split_genres(genres))
        for movie_id, title, genres in zip(
            items["item_id"], items["title"], items["genres"], strict=True
        )
    }
    for movie_id in spec.index.item_ids.tolist():
        if movie_id not in catalog:
            title, genres = spec.catalog.get(movie_id, (f"Item {movie_id}", ""))
            catalog[movie_id] = layout.encode_catalog_entry(title, layout.split_genres(genres))
    return catalog


def _write_items_and_catalog(
    client: SyncClient, keys: KeyLayout, spec: FeatureSpec, catalog: dict[int, bytes]
) -> None:
    version = spec.version
    pipe = client.pipeline(transaction=False)
    pipe.set(keys.items(version), layout.encode_item_ids(spec.index.item_ids))
    pipe.set(keys.item_means(version), layout.encode_item_means(spec.normalization.item_means))
    if spec.fold_in is not None:
        pipe.set(keys.item_codes(version), _encoded_item_codes(spec))
    movie_ids = sorted(catalog)
    for start in range(0, len(movie_ids), CATALOG_BATCH):
        chunk = movie_ids[start : start + CATALOG_BATCH]
        pipe.hset(keys.catalog(version), mapping={m: catalog[m] for m in chunk})
        pipe.zadd(keys.catalog_ids(version), {m: m for m in chunk})
    pipe.execute()


class DatasetRatings:
    """The dataset's ratings as arrays sorted by (user, movie), one rating per pair (the last
    given wins), and where each user's run of them starts and ends. Ratings already in that
    order (MovieLens files are) are used in place, without a copy; otherwise they are sorted
    once. No Python object per rating."""

    def __init__(self, ratings: pd.DataFrame):
        users = ratings["user_id"].to_numpy()
        movies = ratings["item_id"].to_numpy()
        stars = ratings["rating"].to_numpy(np.float32)
        if not _strictly_increasing(users, movies):
            order = _last_of_each_pair(users, movies)
            users, movies, stars = users[order], movies[order], stars[order]
        self.movies = movies  # (n,) int, ascending within each user
        self.stars = stars  # (n,) float32
        ends = np.flatnonzero(users[1:] != users[:-1]) + 1
        self.starts = np.r_[0, ends] if len(users) else np.empty(0, np.int64)
        self.ends = np.r_[ends, len(users)] if len(users) else np.empty(0, np.int64)
        self.user_ids = users[self.starts].astype(np.int64)  # (n_users,) ascending

    def __len__(self) -> int:
        return len(self.movies)

    def spans(self, user_ids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(starts, ends) of each user's ratings in `movies` / `stars`; an empty span (0, 0)
        for a user the dataset does not have."""
        if not len(self.user_ids):
            nothing = np.zeros(len(user_ids), np.int64)
            return nothing, nothing
        at = np.searchsorted(self.user_ids, user_ids)
        inside = at < len(self.user_ids)
        found = inside & (self.user_ids[np.where(inside, at, 0)] == user_ids)
        at = np.where(found, at, 0)
        return np.where(found, self.starts[at], 0), np.where(found, self.ends[at], 0)


def _strictly_increasing(users: np.ndarray, movies: np.ndarray, chunk: int = 1 << 20) -> bool:
    """Whether the (user, movie) pairs are sorted with no pair repeated, a chunk at a time
    (no temporary the size of the data)."""
    for start in range(0, max(len(users) - 1, 0), chunk):
        u, m = users[start : start + chunk + 1], movies[start : start + chunk + 1]
        later = u[1:] > u[:-1]
        same_user = u[1:] == u[:-1]
        if not np.all(later | (same_user & (m[1:] > m[:-1]))):
            return False
    return True


def _last_of_each_pair(users: np.ndarray, movies: np.ndarray) -> np.ndarray:
    """Row order sorting the pairs by (user, movie) that keeps, of equal pairs, the last in
    input order."""
    pair = (users.astype(np.int64) << 32) | movies.astype(np.int64)  # movie ids < 2**31
    order = np.argsort(pair, kind="stable")
    pair = pair[order]
    last = np.ones(len(pair), bool)
    last[:-1] = pair[1:] != pair[:-1]
    return order[last]


def _stored_users(client: SyncClient, pattern: bytes) -> np.ndarray:
    """The users of the keys matching `pattern` (SCAN: every node of a Cluster), sorted."""
    users = [
        KeyLayout.user_of_ratings_key(key) for key in client.scan_iter(match=pattern, count=1000)
    ]
    return np.unique(np.array(users, dtype=np.int64))


def _written_ratings(client: SyncClient, keys: KeyLayout, version: str, users: np.ndarray) -> int:
    """The ratings in the user hashes of `users` under `version` (8 bytes each in the packed
    copy: HSTRLEN, no data read)."""
    total = 0
    for start in range(0, len(users), 1000):
        pipe = client.pipeline(transaction=False)
        for user_id in users[start : start + 1000].tolist():
            pipe.hstrlen(keys.user(version, user_id), layout.USER_RATINGS)
        total += sum(pipe.execute()) // layout.PREFERENCE_DTYPE.itemsize
    return total


def _batches(
    user_ids: np.ndarray, counts: np.ndarray, max_users: int, max_ratings: int
) -> Iterator[np.ndarray]:
    """Consecutive runs of `user_ids` of at most `max_users` users and `max_ratings` ratings
    (`counts` per user; a user with more ratings than that is a batch of its own)."""
    start = 0
    while start < len(user_ids):
        running = np.cumsum(counts[start : start + max_users])
        size = max(1, int(np.searchsorted(running, max_ratings, side="right")))
        yield user_ids[start : start + size]
        start += size


def _write_users(
    client: SyncClient,
    keys: KeyLayout,
    spec: FeatureSpec,
    ratings: pd.DataFrame,
    batch_users: int,
    replace_ratings: bool,
    others: list[str],
    progress: bool = False,
    resume: bool = False,
) -> tuple[int, int, int]:
    """Every user's features under the new version, in batches of `batch_users` users and at
    most BATCH_RATINGS ratings, one read and one write pipeline each, WRITER_THREADS batches
    in flight (the next one is encoded while Redis applies the last). Returns (users of the
    version, their ratings, users found already written). With `resume`, users whose hash
    under the version already exists (written before the load was interrupted, or by an
    online write since, which maintains every registered version) are not written again.
    Users whose revision moved between the read and the write (an online write meanwhile)
    are read again, up to MAX_ROUNDS times; the online writer has already written their
    features for this version, or the feature service derives them on read."""
    dataset = DatasetRatings(ratings)
    pending = np.union1d(dataset.user_ids, _stored_users(client, keys.ratings_pattern()))
    done = np.empty(0, np.int64)
    if resume:
        done = _stored_users(client, keys.version_users_pattern(spec.version))
        pending = np.setdiff1d(pending, done, assume_unique=True)
    users, rated = len(done), _written_ratings(client, keys, spec.version, done)
    total = len(pending) + len(done)
    with (
        bar(total, "load-features", unit="users", initial=len(done), enabled=progress) as shown,
        ThreadPoolExecutor(max_workers=WRITER_THREADS) as writers,
    ):

        def write(batch: np.ndarray) -> tuple[int, int, list[int]]:
            return _write_user_batch(client, keys, spec, batch, dataset, replace_ratings, others)

        for _ in range(MAX_ROUNDS):
            starts, ends = dataset.spans(pending)
            batches = _batches(pending, ends - starts, batch_users, BATCH_RATINGS)
            moved: list[int] = []
            for written, ratings_written, lost in _in_order(
                writers, write, batches, WRITER_THREADS
            ):
                users, rated = users + written, rated + ratings_written
                moved += lost
                shown.update(written)
            if not moved:
                break
            pending = np.array(sorted(moved), dtype=np.int64)
        else:
            log.warning("users left to derive on read", extra={"users": len(pending)})
    return users, rated, len(done)


def _in_order(writers: ThreadPoolExecutor, work, items: Iterator, window: int) -> Iterator:
    """`work(item)` for each item on the pool, answers in order, at most `window` + 1 items
    submitted and not yet answered (memory bounded whatever the number of items)."""
    in_flight: deque[Future] = deque()
    for item in items:
        in_flight.append(writers.submit(work, item))
        if len(in_flight) > window:
            yield in_flight.popleft().result()
    while in_flight:
        yield in_flight.popleft().result()


class _RatingFields:
    """The ratings hash fields and values of a run of the dataset (movie ids in decimal,
    layout.encode_rating of the stars), encoded at once when first asked for."""

    def __init__(self, dataset: DatasetRatings, start: int, end: int):
        self.dataset, self.start, self.end = dataset, start, end
        self._pairs: list[bytes] | None = None

    def pairs(self, a: int, b: int) -> list[bytes]:
        """field, value, field, value… of the dataset's rows a..b (within the run)."""
        if self._pairs is None:
            movies = self.dataset.movies[self.start : self.end]
            stars, which = np.unique(self.dataset.stars[self.start : self.end], return_inverse=True)
            values = np.array([layout.encode_rating(v) for v in stars.tolist()], dtype=object)
            pairs: list[bytes] = [b""] * (2 * len(movies))
            pairs[0::2] = movies.astype("S11").tolist()
            pairs[1::2] = values[which].tolist()
            self._pairs = pairs
        return self._pairs[2 * (a - self.start) : 2 * (b - self.start)]


def _write_user_batch(
    client: SyncClient,
    keys: KeyLayout,
    spec: FeatureSpec,
    user_ids: np.ndarray,
    dataset: DatasetRatings,
    replace_ratings: bool,
    others: list[str],
) -> tuple[int, int, list[int]]:
    """One read pipeline and one write pipeline for `user_ids` (ascending). Returns (users
    written, their ratings, users whose revision moved). When a user's ratings change (seeded
    or replaced), their hashes under the other live versions (`others`) are deleted in the
    same script: the feature service derives those from the new ratings on read. Loaded
    ratings get no acceptance stamp (older than any online write) and the online writes'
    stamps stay, so a write accepted before one of them still loses after the load."""
    ids = user_ids.tolist()
    pipe = client.pipeline(transaction=False)
    for user_id in ids:
        # the revision first: an online write between the two reads moves it, so the
        # compare-and-set fails instead of writing features of ratings it did not see
        pipe.get(keys.revision(user_id))
        pipe.hgetall(keys.ratings(user_id))
    replies = pipe.execute()
    starts, ends = dataset.spans(user_ids)
    seeded = ends > starts
    fields = _RatingFields(
        dataset,
        int(starts[seeded].min()) if seeded.any() else 0,
        int(ends[seeded].max()) if seeded.any() else 0,
    )
    calls, planned = [], []
    for user_id, a, b, raw_revision, raw_ratings in zip(
        ids, starts.tolist(), ends.tolist(), replies[0::2], replies[1::2], strict=True
    ):
        revision = decode_revision(raw_revision)
        to_delete: list[bytes] = []
        if b > a and (replace_ratings or (revision == 0 and not raw_ratings)):
            movies = dataset.movies[a:b]
            stars = dataset.stars[a:b].astype(np.float64)
            to_set = fields.pairs(a, b)
            if raw_ratings:
                stored = np.array(sorted(int(m) for m in raw_ratings), dtype=np.int64)
                to_delete = [str(m).encode() for m in np.setdiff1d(stored, movies).tolist()]
        elif raw_ratings:
            movies, stars = _sorted_ratings(raw_ratings)
            to_set = []
        else:
            continue  # deleted online since (revision > 0, no ratings): not resurrected
        features = features_of(movies, stars, spec.index, spec.normalization, spec.fold_in)
        stale = [keys.user(v, user_id) for v in others] if (to_set or to_delete) else []
        args = script_args(
            revision,
            to_set,
            to_delete,
            layout.encode_preferences(movies, stars),
            [features.encoded()],
            len(stale),
        )
        user_keys = [
            keys.ratings(user_id),
            keys.revision(user_id),
            keys.stamps(user_id),  # untouched: bulk-loaded ratings have no stamp
            keys.user(spec.version, user_id),
            *stale,
        ]
        calls.append((user_keys, args))
        planned.append((user_id, len(movies)))
    results = apply_scripts(client, calls)
    written = users = 0
    lost = []
    for (user_id, count), result in zip(planned, results, strict=True):
        if result == REVISION_MOVED:
            lost.append(user_id)
        else:
            written, users = written + count, users + 1
    return users, written, lost


def _sorted_ratings(raw: dict[bytes, bytes]) -> tuple[np.ndarray, np.ndarray]:
    """A ratings hash as HGETALL returns it → ((n,) int64 movie ids ascending, (n,) float64
    stars), the values compute_features would read from layout.decode_ratings."""
    ratings = layout.decode_ratings(raw)
    movies = np.fromiter(ratings, np.int64, len(ratings))
    stars = np.fromiter(ratings.values(), np.float64, len(ratings))
    order = np.argsort(movies)
    return movies[order], stars[order]


def apply_scripts(client: SyncClient, calls: list[tuple[list[bytes], list]]) -> list[int]:
    """Run APPLY_SCRIPT once per (keys, args) in one pipeline, by its SHA1 (EVALSHA: the
    script's text is not sent each time); calls whose node does not have it cached
    (NOSCRIPT: a restart, SCRIPT FLUSH, a failover, a new Cluster node) are sent again whole
    (EVAL, which caches it there). A script is all or nothing, so the second send is safe.
    Works on a Cluster pipeline: every key of a call has the user's hash tag. Returns the
    scripts' answers in order; the first other error is raised."""
    pipe = client.pipeline(transaction=False)
    for user_keys, args in calls:
        # through execute_command: a cluster pipeline routes EVALSHA by its first key
        pipe.execute_command("EVALSHA", APPLY_SCRIPT_SHA, len(user_keys), *user_keys, *args)
    results = pipe.execute(raise_on_error=False)
    uncached = [i for i, result in enumerate(results) if isinstance(result, NoScriptError)]
    if uncached:
        pipe = client.pipeline(transaction=False)
        for i in uncached:
            user_keys, args = calls[i]
            pipe.execute_command("EVAL", APPLY_SCRIPT, len(user_keys), *user_keys, *args)
        for i, result in zip(uncached, pipe.execute(raise_on_error=False), strict=True):
            results[i] = result
    for result in results:
        if isinstance(result, Exception):
            raise result
    return results
