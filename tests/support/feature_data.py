"""A small feature-service data set for tests: the synthetic ratings, one extra user who rated
only items the model lacks, and a model version directory holding just what the feature
store reads (items.json, normalization.json, catalog.json, metadata.json) — no Keras."""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import redis.asyncio

from recsys.artifacts import (
    CATALOG_FILE,
    ITEMS_FILE,
    METADATA_FILE,
    NORMALIZATION_FILE,
    load_features_spec,
)
from recsys.data.movielens import load_movielens
from recsys.features import ItemIndex, ItemSelection, Normalization
from services.feature.store import FeatureStore

VERSION = "20260101T000000000000Z"
NEXT_VERSION = "20260102T000000000000Z"
MODEL_ITEMS = 80  # of the synthetic data's 120: the rest are rated but not in the model
OUTSIDER = 900001  # rated only items outside the model


@dataclass(frozen=True)
class FeatureData:
    ratings: pd.DataFrame  # user_id, item_id, rating, timestamp
    items: pd.DataFrame  # item_id, title, genres
    artifact: Path
    index: ItemIndex
    normalization: Normalization
    uncovered_items: list[int]


def build_feature_data(synthetic_dir: Path, directory: Path) -> FeatureData:
    data = load_movielens(synthetic_dir)
    index = ItemIndex(ItemSelection(top_n=MODEL_ITEMS).select(data.ratings))
    uncovered = sorted(set(data.ratings["item_id"].tolist()) - set(index.item_ids.tolist()))
    outsider = pd.DataFrame(
        {
            "user_id": np.int64(OUTSIDER),
            "item_id": np.array(uncovered[:3], dtype=np.int64),
            "rating": np.array([4.5, 2.0, 5.0], dtype=np.float32),
            "timestamp": np.int64(0),
        }
    )
    ratings = pd.concat([data.ratings, outsider], ignore_index=True)
    columns = index.columns(data.ratings["item_id"].to_numpy())
    known = columns >= 0
    normalization = Normalization.fit(
        columns[known], data.ratings["rating"].to_numpy()[known], len(index)
    )
    artifact = write_artifact(directory / VERSION, VERSION, index, normalization, data.items)
    return FeatureData(ratings, data.items, artifact, index, normalization, uncovered)


def write_artifact(
    path: Path,
    version: str,
    index: ItemIndex,
    normalization: Normalization,
    items: pd.DataFrame,
    rating_scale: tuple[float, float] = (1.0, 5.0),
) -> Path:
    """A version directory in the format save_artifact writes, minus the Keras file."""
    path.mkdir(parents=True)
    titles = items.set_index("item_id")
    files = {
        ITEMS_FILE: index.item_ids.tolist(),
        NORMALIZATION_FILE: {
            "global_mean": normalization.global_mean,
            "item_means": normalization.item_means.tolist(),
            "rating_scale": list(rating_scale),
        },
        METADATA_FILE: {"version": version},
        CATALOG_FILE: [
            {"item_id": m, "title": titles.at[m, "title"], "genres": titles.at[m, "genres"]}
            for m in index.item_ids.tolist()
        ],
    }
    for name, value in files.items():
        (path / name).write_text(json.dumps(value))
    assert load_features_spec(path).version == version
    return path


def with_store(backend, body, connection_class=redis.asyncio.Connection):
    """Run `await body(store)` with a FeatureStore on a fresh asyncio client of `backend`
    (a RedisBackend, or the URL of one Redis)."""

    async def main():
        if isinstance(backend, str):
            client = redis.asyncio.Redis.from_url(backend, connection_class=connection_class)
        else:
            client = backend.asyncio()
        try:
            return await body(FeatureStore(client, "recsys"))
        finally:
            await client.aclose()

    return asyncio.run(main())
