"""Bulk load of a model version's features into Redis (layout: recsys.featurestore.layout):
normalization, catalog, every user's ratings and preference vector, written with pipelines
in batches; the version becomes active only once all of it is in place."""

from __future__ import annotations

import logging
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pandas as pd

from recsys.artifacts import FeatureSpec, load_features_spec
from recsys.errors import ArtifactError, FailedPrecondition, InvalidArgument
from recsys.featurestore import layout
from recsys.featurestore.layout import KeyLayout
from recsys.featurestore.writes import APPLY_SCRIPT, apply_args, compute_features, decode_revision
from recsys.progress import bar
from recsys.redis_client import SyncClient

log = logging.getLogger(__name__)

CATALOG_BATCH = 5000
WRITER_THREADS = 2
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
    Refuses a version that is already loaded; a half-finished load of it is cleared first.
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
    _clear_unfinished(client, keys, version)
    catalog = _catalog(spec, items)
    previous = client.get(keys.active())

    client.hset(
        keys.meta(version),
        mapping={
            "status": layout.STATUS_LOADING,
            "global_mean": repr(float(spec.normalization.global_mean)),
            "rating_min": repr(float(spec.rating_scale[0])),
            "rating_max": repr(float(spec.rating_scale[1])),
            "item_count": len(spec.index),
        },
    )
    _write_items_and_catalog(client, keys, spec, catalog)
    client.hset(keys.versions(), version, layout.STATUS_LOADING)
    others = [v.decode() for v in client.hkeys(keys.versions()) if v.decode() != version]
    users, rated = _write_users(
        client, keys, spec, ratings, batch_users, replace_ratings, others, progress
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
    )
    log.info("features loaded", extra=vars(summary))
    return summary


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


def _clear_unfinished(client: SyncClient, keys: KeyLayout, version: str) -> None:
    status = client.hget(keys.meta(version), "status")
    if status is None:
        return
    if status.decode() == layout.STATUS_READY:
        raise FailedPrecondition(
            f"model version {version} is already loaded in Redis; versions are immutable"
        )
    log.warning("clearing an unfinished load", extra={"version": version})
    client.hdel(keys.versions(), version)
    _unlink_matching(client, keys.version_pattern(version))


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
    movie_ids = sorted(catalog)
    for start in range(0, len(movie_ids), CATALOG_BATCH):
        chunk = movie_ids[start : start + CATALOG_BATCH]
        pipe.hset(keys.catalog(version), mapping={m: catalog[m] for m in chunk})
        pipe.zadd(keys.catalog_ids(version), {m: m for m in chunk})
    pipe.execute()


class DatasetRatings:
    """The dataset's ratings as three arrays sorted by (user, movie), one rating per pair (the
    last given wins): memory proportional to the ratings, no Python object per rating. A
    user's ratings become a dict only when that user's batch is written."""

    def __init__(self, ratings: pd.DataFrame):
        users = ratings["user_id"].to_numpy(np.int64)
        movies = ratings["item_id"].to_numpy(np.int64)
        pair = (users << 32) | movies  # movie ids < 2**31 (the layout stores them as int32)
        order = np.argsort(pair, kind="stable")
        pair = pair[order]
        last = np.ones(len(pair), bool)
        last[:-1] = pair[1:] != pair[:-1]  # the last of equal pairs, in input order
        order = order[last]
        self.users = users[order]
        self.movies = movies[order].astype(np.int32)
        self.stars = ratings["rating"].to_numpy(np.float32)[order]
        self.user_ids = np.unique(self.users)
        self._starts = np.searchsorted(self.users, self.user_ids)
        self._ends = np.r_[self._starts[1:], len(self.users)]

    def __len__(self) -> int:
        return len(self.users)

    def of(self, user_id: int) -> dict[int, float]:
        """{movie id: stars} of `user_id` ({} for a user the dataset does not have)."""
        at = int(np.searchsorted(self.user_ids, user_id))
        if at == len(self.user_ids) or self.user_ids[at] != user_id:
            return {}
        a, b = self._starts[at], self._ends[at]
        return dict(
            zip(self.movies[a:b].tolist(), self.stars[a:b].astype(float).tolist(), strict=True)
        )


def _stored_users(client: SyncClient, keys: KeyLayout) -> set[int]:
    """Users with a ratings hash in Redis (SCAN: every node of a Cluster)."""
    return {
        KeyLayout.user_of_ratings_key(key)
        for key in client.scan_iter(match=keys.ratings_pattern(), count=1000)
    }


def _write_users(
    client: SyncClient,
    keys: KeyLayout,
    spec: FeatureSpec,
    ratings: pd.DataFrame,
    batch_users: int,
    replace_ratings: bool,
    others: list[str],
    progress: bool = False,
) -> tuple[int, int]:
    """Every user's features under the new version, `batch_users` per round trip; returns
    (users written, their ratings). Users whose revision moved between the read and the
    write (an online write meanwhile) are read again, up to MAX_ROUNDS times; the online
    writer has already written their features for this version, or the feature service
    derives them on read."""
    dataset = DatasetRatings(ratings)
    stored = _stored_users(client, keys)
    pending = np.union1d(dataset.user_ids, np.fromiter(stored, np.int64, len(stored))).tolist()
    del stored
    done: dict[int, int] = {}
    with bar(len(pending), "load-features", unit="users", enabled=progress) as shown:
        for _ in range(MAX_ROUNDS):
            moved: list[int] = []
            batches = [pending[i : i + batch_users] for i in range(0, len(pending), batch_users)]
            with ThreadPoolExecutor(max_workers=WRITER_THREADS) as writers:
                results = writers.map(
                    lambda batch: _write_user_batch(
                        client, keys, spec, batch, dataset, replace_ratings, others
                    ),
                    batches,
                )
                for written, lost in results:
                    done.update(written)
                    moved += lost
                    shown.update(len(written))
            if not moved:
                break
            pending = moved
        else:
            log.warning("users left to derive on read", extra={"users": len(pending)})
    return len(done), sum(done.values())


def _write_user_batch(
    client: SyncClient,
    keys: KeyLayout,
    spec: FeatureSpec,
    user_ids: list[int],
    dataset: DatasetRatings,
    replace_ratings: bool,
    others: list[str],
) -> tuple[dict[int, int], list[int]]:
    """One read pipeline and one write pipeline for `user_ids`. Returns ({user: ratings
    written}, users whose revision moved). When a user's ratings change (seeded or
    replaced), their hashes under the other live versions (`others`) are deleted in the same
    script: the feature service derives those from the new ratings on read. Loaded ratings
    get no acceptance stamp (older than any online write) and the online writes' stamps
    stay, so a write accepted before one of them still loses after the load."""
    pipe = client.pipeline(transaction=False)
    for user_id in user_ids:
        # the revision first: an online write between the two reads moves it, so the
        # compare-and-set fails instead of writing features of ratings it did not see
        pipe.get(keys.revision(user_id))
        pipe.hgetall(keys.ratings(user_id))
    replies = pipe.execute()
    plans = []
    for user_id, raw_revision, raw_ratings in zip(
        user_ids, replies[0::2], replies[1::2], strict=True
    ):
        stored = layout.decode_ratings(raw_ratings)
        revision = decode_revision(raw_revision)
        seed = dataset.of(user_id)
        if replace_ratings and seed:
            after, to_set = seed, seed
            to_delete = [m for m in stored if m not in seed]
        elif stored:
            after, to_set, to_delete = stored, {}, []
        elif revision == 0 and seed:
            after, to_set, to_delete = seed, seed, []
        else:
            continue  # deleted online since (revision > 0, no ratings): not resurrected
        features = compute_features(after, spec.index, spec.normalization)
        stale = [keys.user(v, user_id) for v in others] if (to_set or to_delete) else []
        args = apply_args(revision, to_set, to_delete, after, [features], stale=len(stale))
        user_keys = [keys.user(spec.version, user_id), *stale]
        plans.append((user_id, len(after), (user_keys, args)))
    pipe = client.pipeline(transaction=False)
    for user_id, _, (user_keys, args) in plans:
        pipe.execute_command(  # EVAL through execute_command: cluster pipelines route it too
            "EVAL",
            APPLY_SCRIPT,
            3 + len(user_keys),
            keys.ratings(user_id),
            keys.revision(user_id),
            keys.stamps(user_id),  # untouched: bulk-loaded ratings have no stamp
            *user_keys,
            *args,
        )
    results = pipe.execute()
    written = {
        user_id: count for (user_id, count, _), r in zip(plans, results, strict=True) if r != -1
    }
    lost = [user_id for (user_id, _, _), r in zip(plans, results, strict=True) if r == -1]
    return written, lost
