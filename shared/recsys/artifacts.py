"""Versioned model artifacts: one directory per trained model.

    <model_dir>/<version>/
        items.json           item ids in column order
        normalization.json   μ and b_i (one per item, column order), the rating scale
        config.json          the TrainConfig it was trained with; its "kind" (default
                             "user") says which model kind wrote and reads the kind's files
        metadata.json        version, creation time, dataset, data fingerprint, training
                             history, evaluation metrics, the kind's own entries
        catalog.json         title and genres of each item (column order), for display
        item_item.npy        optional: EASE item-item weights (n_items, n_items) float32 for
                             the "relevance" ranking, and ranking.json: its λ, blend weight
                             and neighbours per item (0: dense)
        item_item.npz        or those weights sparse (scipy.sparse CSR float32, top-m
                             neighbours per item; recsys.sparse_ease)
        the kind's files     ModelKind.files (recsys/model/<kind>/): both kinds so far keep
                             model.keras, the Keras network (loaded with safe_mode=True); the
                             item kind adds item_codes.npy and fold_in.json, what it serves

A version directory is written under a temporary name and renamed into place, so a reader
never sees half of one. Version names sort by creation time; the newest is the largest.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
import scipy.sparse as sp

from recsys.errors import ArtifactError
from recsys.features import ItemIndex, Normalization
from recsys.fold_in import FoldIn
from recsys.model.files import read_array, read_json, write_array, write_json
from recsys.model.registry import kind_of_version
from recsys.ranking import ItemItemRanking
from recsys.rating_scale import DEFAULT_RATING_SCALE
from recsys.recommender import Recommender

if TYPE_CHECKING:
    from recsys.model.training import TrainedModel

ITEMS_FILE = "items.json"
NORMALIZATION_FILE = "normalization.json"
CONFIG_FILE = "config.json"
METADATA_FILE = "metadata.json"
CATALOG_FILE = "catalog.json"
ITEM_ITEM_FILE = "item_item.npy"  # dense item-item weights
SPARSE_ITEM_ITEM_FILE = "item_item.npz"  # or their sparse form (scipy.sparse CSR)
RANKING_FILE = "ranking.json"
REQUIRED_FILES = (ITEMS_FILE, NORMALIZATION_FILE, CONFIG_FILE, METADATA_FILE)  # + the kind's


@dataclass
class Artifact:
    """A loaded model version: what serving needs, plus its provenance."""

    version: str
    path: Path
    recommender: Recommender
    config: dict[str, Any]
    metadata: dict[str, Any] = field(default_factory=dict)
    catalog: dict[int, tuple[str, str]] = field(default_factory=dict)  # id → (title, genres)

    def title(self, item_id: int) -> str:
        return self.catalog.get(int(item_id), (f"Item {item_id}", ""))[0]

    @property
    def metrics(self) -> dict[str, Any]:
        return self.metadata.get("metrics", {})

    @property
    def kind(self) -> str:
        """The model kind that saved it (recsys.model.registry)."""
        return kind_of_version(self.config).name


def data_fingerprint(ratings: pd.DataFrame) -> str:
    """sha256 of the (user, item, rating) triples in order: which data a model saw."""
    digest = hashlib.sha256()
    for column, dtype in (("user_id", np.int64), ("item_id", np.int64), ("rating", np.float32)):
        digest.update(np.ascontiguousarray(ratings[column].to_numpy(dtype)).tobytes())
    return digest.hexdigest()


def new_version_name(now: float | None = None) -> str:
    """UTC time to the microsecond, e.g. 20261127T183501123456Z: unique and sortable."""
    now = time.time() if now is None else now
    stamp = time.strftime("%Y%m%dT%H%M%S", time.gmtime(now))
    return f"{stamp}{int((now % 1) * 1e6):06d}Z"


def save_artifact(
    model_dir: Path | str,
    trained: TrainedModel,
    *,
    metadata: dict[str, Any],
    catalog: pd.DataFrame | None = None,
    version: str | None = None,
    ranking: ItemItemRanking | None = None,
) -> Path:
    """Write a version directory of `trained` (what its kind's train returned: the kind
    writes its own files) atomically and return its path. `catalog`: title and genres
    columns indexed by item id (missing items get an empty title)."""
    model_dir = Path(model_dir)
    model_dir.mkdir(parents=True, exist_ok=True)
    version = version or new_version_name()
    final = model_dir / version
    if final.exists():
        raise ArtifactError(f"model version {version} already exists in {model_dir}")
    config = trained.config.to_dict()
    staging = Path(tempfile.mkdtemp(prefix=f".{version}-", dir=model_dir))
    os.chmod(staging, 0o755)  # readable by a serving process running as another user
    try:
        kind_of_version(config).save(trained, staging)
        write_json(staging / ITEMS_FILE, [int(i) for i in trained.index.item_ids])
        write_json(
            staging / NORMALIZATION_FILE,
            {
                "global_mean": trained.normalization.global_mean,
                "item_means": [float(b) for b in trained.normalization.item_means],
                "rating_scale": list(trained.rating_scale),
            },
        )
        write_json(staging / CONFIG_FILE, config)
        write_json(staging / METADATA_FILE, {"version": version, **metadata})
        write_json(staging / CATALOG_FILE, _catalog_rows(trained.index, catalog))
        if ranking is not None:
            if sp.issparse(ranking.weights):
                weights = sp.csr_matrix(ranking.weights, dtype=np.float32)
                sp.save_npz(staging / SPARSE_ITEM_ITEM_FILE, weights, compressed=False)
            else:
                write_array(staging / ITEM_ITEM_FILE, ranking.weights)
            write_json(
                staging / RANKING_FILE,
                {
                    "l2": ranking.l2,
                    "preference_weight": ranking.preference_weight,
                    "neighbors": ranking.neighbors,
                    "row_limit": ranking.row_limit,
                },
            )
        os.rename(staging, final)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return final


def copy_version(source: Path | str, model_dir: Path | str, version: str) -> Path:
    """Publish the files of version directory `source` as `version` in `model_dir`: copied
    under a staging name, then renamed into place in one step (as `save_artifact` does), so a
    watcher never sees half of it. Returns the new directory."""
    staging = Path(model_dir) / f".{version}"
    shutil.copytree(source, staging)
    metadata = read_json(staging / METADATA_FILE)
    write_json(staging / METADATA_FILE, {**metadata, "version": version})
    return staging.rename(Path(model_dir) / version)


def list_versions(model_dir: Path | str) -> list[str]:
    """Complete version directories, oldest first (staging directories start with '.')."""
    model_dir = Path(model_dir)
    if not model_dir.is_dir():
        return []
    return sorted(
        p.name
        for p in model_dir.iterdir()
        if p.is_dir() and not p.name.startswith(".") and (p / METADATA_FILE).is_file()
    )


def resolve_version(model_dir: Path | str, version: str | None = None) -> Path:
    """The directory of `version`, or of the newest version when None."""
    model_dir = Path(model_dir)
    versions = list_versions(model_dir)
    if not versions:
        raise ArtifactError(f"no model versions in {model_dir}")
    if version is None:
        return model_dir / versions[-1]
    if version not in versions:
        raise ArtifactError(f"model version {version} not found in {model_dir}")
    return model_dir / version


def load_artifact(path: Path | str) -> Artifact:
    """Load a version directory: its kind (config.json) reads the network it serves from its
    own files (the user kind: the Keras file with safe_mode=True, its layers as NumPy)."""
    path = Path(path)
    missing = [name for name in REQUIRED_FILES if not (path / name).is_file()]
    if missing:
        raise ArtifactError(f"{path} is not a complete model version (missing {missing})")
    config = read_json(path / CONFIG_FILE)
    kind = kind_of_version(config)
    missing = [name for name in kind.files if not (path / name).is_file()]
    if missing:
        raise ArtifactError(f"{path} is not a complete model version (missing {missing})")
    network = kind.load(path)
    try:
        item_ids = read_json(path / ITEMS_FILE)
        normalization_values = read_json(path / NORMALIZATION_FILE)
        index = ItemIndex(np.array(item_ids, dtype=np.int64))
        normalization = Normalization(
            float(normalization_values["global_mean"]),
            np.array(normalization_values["item_means"], dtype=np.float64),
        )
        scale = tuple(normalization_values.get("rating_scale", DEFAULT_RATING_SCALE))
        recommender = Recommender(network, index, normalization, scale, _read_ranking(path))
    except (KeyError, TypeError, ValueError) as exc:
        raise ArtifactError(f"{path}: malformed model version ({exc!r})") from exc
    metadata = read_json(path / METADATA_FILE)
    catalog_path = path / CATALOG_FILE
    catalog = {}
    if catalog_path.is_file():
        catalog = {int(r["item_id"]): (r["title"], r["genres"]) for r in read_json(catalog_path)}
    return Artifact(
        version=metadata.get("version", path.name),
        path=path,
        recommender=recommender,
        config=config,
        metadata=metadata,
        catalog=catalog,
    )


@dataclass(frozen=True)
class FeatureSpec:
    """What the feature store needs from a model version, read without Keras: the column
    order, μ and b_i, the rating scale and the catalog of the model's items."""

    version: str
    path: Path
    index: ItemIndex
    normalization: Normalization
    rating_scale: tuple[float, float]
    catalog: dict[int, tuple[str, str]]  # id → (title, "|"-joined genres); may be empty
    fold_in: FoldIn | None = None  # the item codes and λ of a kind that folds users in


FEATURE_FILES = (ITEMS_FILE, NORMALIZATION_FILE)


def load_features_spec(path: Path | str) -> FeatureSpec:
    """Read items.json, normalization.json and (when present) catalog.json and metadata.json
    of a version directory. Pure JSON: no TensorFlow start-up. The version is the one in
    metadata.json, else the directory name."""
    path = Path(path)
    missing = [name for name in FEATURE_FILES if not (path / name).is_file()]
    if missing:
        raise ArtifactError(f"{path} is not a model version (missing {missing})")
    index = ItemIndex(np.array(read_json(path / ITEMS_FILE), dtype=np.int64))
    values = read_json(path / NORMALIZATION_FILE)
    try:
        normalization = Normalization(
            float(values["global_mean"]), np.array(values["item_means"], dtype=np.float64)
        )
        low, high = values.get("rating_scale", DEFAULT_RATING_SCALE)
    except (KeyError, TypeError, ValueError) as exc:
        raise ArtifactError(f"{path / NORMALIZATION_FILE}: malformed ({exc!r})") from exc
    if normalization.item_means.shape != (len(index),):
        raise ArtifactError(
            f"{path}: {len(normalization.item_means)} item means for {len(index)} items"
        )
    metadata = read_json(path / METADATA_FILE) if (path / METADATA_FILE).is_file() else {}
    catalog = {}
    if (path / CATALOG_FILE).is_file():
        catalog = {
            int(r["item_id"]): (r["title"], r["genres"]) for r in read_json(path / CATALOG_FILE)
        }
    return FeatureSpec(
        version=metadata.get("version", path.name),
        path=path,
        index=index,
        normalization=normalization,
        rating_scale=(float(low), float(high)),
        catalog=catalog,
        fold_in=_read_fold_in(path),
    )


def _read_fold_in(path: Path) -> FoldIn | None:
    """The fold-in of a version whose kind folds users in (config.json's kind), else None;
    ArtifactError when that kind's files are damaged."""
    if not (path / CONFIG_FILE).is_file():
        return None
    return kind_of_version(read_json(path / CONFIG_FILE)).fold_in(path)


def _read_ranking(path: Path) -> ItemItemRanking | None:
    """The version's item-item ranking (dense or sparse weights), or None for a version saved
    without one."""
    sparse_file = path / SPARSE_ITEM_ITEM_FILE
    if sparse_file.is_file():
        try:
            weights = sp.load_npz(sparse_file).tocsr().astype(np.float32)
        except (OSError, ValueError) as exc:
            raise ArtifactError(f"cannot read {sparse_file}: {exc}") from exc
    elif (path / ITEM_ITEM_FILE).is_file():
        weights = read_array(path / ITEM_ITEM_FILE)
    else:
        return None
    values = read_json(path / RANKING_FILE)
    return ItemItemRanking(
        weights,
        float(values["l2"]),
        float(values["preference_weight"]),
        int(values.get("neighbors", 0)),
        int(values.get("row_limit", 0)),
    )


def _catalog_rows(index: ItemIndex, catalog: pd.DataFrame | None) -> list[dict[str, Any]]:
    rows = []
    for item_id in index.item_ids:
        title, genres = f"Item {item_id}", ""
        if catalog is not None and item_id in catalog.index:
            entry = catalog.loc[item_id]
            title = entry["title"] if isinstance(entry["title"], str) else title
            genres = entry["genres"] if isinstance(entry["genres"], str) else ""
        rows.append({"item_id": int(item_id), "title": title, "genres": genres})
    return rows
