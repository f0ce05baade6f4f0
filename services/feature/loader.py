"""Bulk load of a model version's features into Redis (layout: services.feature.layout):
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
import redis

from recsys.artifacts import FeatureSpec, load_features_spec
from recsys.errors import ArtifactError, FailedPrecondition, InvalidArgument
from recsys.features import PreferenceMatrix, preference_matrix
from services.feature import layout
from services.feature.layout import KeyLayout

log = logging.getLogger(__name__)

CATALOG_BATCH = 5000
WRITER_THREADS = 2


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


def load_features(
    client: redis.Redis,
    artifact_dir: Path | str,
    ratings: pd.DataFrame,
    items: pd.DataFrame,
    prefix: str = "recsys",
    batch_users: int = 500,
) -> LoadSummary:
    """Write the features of the model version in `artifact_dir` and make it active.

    ratings: user_id, item_id, rating (stars) per row; every user's ratings hash is replaced
        by exactly these ratings (ratings of items the model lacks included).
    items: item_id, title, genres ("|"-joined) — the catalog.
    Refuses a version that is already loaded (versions are immutable); the leftovers of a
    load that died half way are cleared first.
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
    ratings = ratings.drop_duplicates(["user_id", "item_id"], keep="last")
    user_ids = np.unique(ratings["user_id"].to_numpy(np.int64))
    catalog = _catalog(spec, items)

    client.hset(
        keys.meta(version),
        mapping={
            "status": layout.STATUS_LOADING,
            "global_mean": repr(float(spec.normalization.global_mean)),
            "rating_min": repr(float(spec.rating_scale[0])),
            "rating_max": repr(float(spec.rating_scale[1])),
            "item_count": len(spec.index),
            "user_count": len(user_ids),
        },
    )
    _write_items_and_catalog(client, keys, spec, catalog)
    _write_users(client, keys, spec, ratings, user_ids, batch_users)
    loaded_at = datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
    client.hset(keys.meta(version), mapping={"status": layout.STATUS_READY, "loaded_at": loaded_at})
    client.set(keys.active(), version)

    summary = LoadSummary(
        version=version,
        users=len(user_ids),
        ratings=len(ratings),
        items=len(spec.index),
        catalog_items=len(catalog),
        seconds=time.perf_counter() - started,
    )
    log.info("features loaded", extra=vars(summary))
    return summary


def _clear_unfinished(client: redis.Redis, keys: KeyLayout, version: str) -> None:
    status = client.hget(keys.meta(version), "status")
    if status is None:
        return
    if status.decode() == layout.STATUS_READY:
        raise FailedPrecondition(
            f"model version {version} is already loaded in Redis; versions are immutable"
        )
    log.warning("clearing an unfinished load", extra={"version": version})
    batch = []
    for key in client.scan_iter(match=keys.version_pattern(version), count=1000):
        batch.append(key)
        if len(batch) == 1000:
            client.unlink(*batch)
            batch = []
    if batch:
        client.unlink(*batch)


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
    client: redis.Redis, keys: KeyLayout, spec: FeatureSpec, catalog: dict[int, bytes]
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


@dataclass(frozen=True)
class _UserRows:
    """Every user's data, ready to write. Row r is user_ids[r]: its ratings hash arguments are
    hset_args[2·bounds[r] : 2·bounds[r+1]] (movie id, rating, movie id, rating, ...) and its
    preferences are row r of `preferences.matrix` (columns → movie ids via column_ids)."""

    user_ids: np.ndarray
    bounds: list[int]
    hset_args: list[bytes]
    preferences: PreferenceMatrix
    column_ids: np.ndarray


def _write_users(
    client: redis.Redis,
    keys: KeyLayout,
    spec: FeatureSpec,
    ratings: pd.DataFrame,
    user_ids: np.ndarray,
    batch_users: int,
) -> None:
    """Every user's ratings hash and versioned hash, `batch_users` per pipeline. Two writer
    threads: one builds a batch's commands while Redis applies the other's."""
    users = ratings["user_id"].to_numpy(np.int64)
    movies = ratings["item_id"].to_numpy(np.int64)
    order = np.lexsort((movies, users))
    users, movies = users[order], movies[order]
    stars = ratings["rating"].to_numpy(np.float32)[order]
    distinct, which = np.unique(stars, return_inverse=True)
    encoded = np.array([layout.encode_rating(r) for r in distinct], dtype=object)
    hset_args = np.empty(2 * len(stars), dtype=object)
    hset_args[0::2] = movies.astype("S20").tolist()
    hset_args[1::2] = encoded[which]
    rows = _UserRows(
        user_ids=user_ids,
        bounds=np.searchsorted(users, user_ids, side="left").tolist() + [len(users)],
        hset_args=hset_args.tolist(),
        preferences=preference_matrix(ratings, spec.index, spec.normalization, user_ids),
        column_ids=spec.index.item_ids,
    )
    with ThreadPoolExecutor(max_workers=WRITER_THREADS) as writers:
        batches = [
            writers.submit(
                _write_user_batch, client, keys, spec.version, rows, start, start + batch_users
            )
            for start in range(0, len(user_ids), batch_users)
        ]
        for batch in batches:
            batch.result()


def _write_user_batch(
    client: redis.Redis, keys: KeyLayout, version: str, rows: _UserRows, first: int, stop: int
) -> None:
    """Users rows[first:stop] in one pipeline. The ratings hash is built under a staging key
    and RENAMEd over the old one, so a reader never sees it half written."""
    matrix = rows.preferences.matrix
    pipe = client.pipeline(transaction=False)
    for row in range(first, min(stop, len(rows.user_ids))):
        user_id = int(rows.user_ids[row])
        staging = keys.ratings_loading(user_id)
        pipe.delete(staging)
        pipe.execute_command(
            "HSET", staging, *rows.hset_args[2 * rows.bounds[row] : 2 * rows.bounds[row + 1]]
        )
        pipe.rename(staging, keys.ratings(user_id))
        low, high = matrix.indptr[row], matrix.indptr[row + 1]
        packed = layout.encode_preferences(
            rows.column_ids[matrix.indices[low:high]], matrix.data[low:high]
        )
        pipe.hset(
            keys.user(version, user_id),
            mapping={
                layout.USER_MEAN: layout.encode_user_mean(rows.preferences.user_means[row]),
                layout.USER_PREFS: packed,
            },
        )
    pipe.execute()
