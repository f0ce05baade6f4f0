"""The offline jobs behind the command line: find data, train and evaluate a configuration
on the DESIGN §6 split, save it as a model version, and score a saved version again."""

from __future__ import annotations

import logging
import os
import platform
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from recsys.artifacts import Artifact, data_fingerprint, save_artifact
from recsys.data.download import download_dataset
from recsys.data.movielens import RatingData, load_movielens
from recsys.data.split import Split, split_ratings
from recsys.data.synthetic import SyntheticSpec, write_synthetic_movielens
from recsys.errors import DownloadError, FailedPrecondition
from recsys.evaluation.report import Scores, evaluate_all
from recsys.model.config import TrainConfig

log = logging.getLogger(__name__)

SPLIT_SEED = 0


@dataclass(frozen=True)
class DataSource:
    data: RatingData
    path: Path
    how: str  # "given", "downloaded" or "synthetic"


def find_data(
    path: Path | str | None, *, download: str | None = "ml-1m", cache_dir: Path | None = None
) -> DataSource:
    """`path` when given; else a GroupLens download when the network allows; else a
    synthetic dataset in the cache directory (logged loudly: its figures mean nothing)."""
    if path is not None:
        return DataSource(load_movielens(path), Path(path), "given")
    if download:
        try:
            folder = download_dataset(download, cache_dir)
            return DataSource(load_movielens(folder), folder, "downloaded")
        except DownloadError as exc:
            log.warning("cannot download %s (%s)", download, exc)
    from recsys.data.download import default_cache_dir

    folder = (cache_dir or default_cache_dir()) / "synthetic"
    log.warning("no MovieLens data: using SYNTHETIC data written to %s", folder)
    write_synthetic_movielens(folder, SyntheticSpec())
    return DataSource(load_movielens(folder), folder, "synthetic")


def split_for(config: TrainConfig, split: Split) -> tuple[pd.DataFrame, pd.DataFrame | None]:
    """(training ratings, validation ratings). Stopping on validation RMSE trains on the fit
    part; stopping on the loss (the article) needs no validation and trains on all of train."""
    if config.early_stopping == "validation":
        return split.fit, split.validation
    return split.train, None


@dataclass
class TrainingRun:
    artifact_path: Path
    scores: list[Scores]
    best_epoch: int
    epochs: int
    final_loss: float
    seconds: float


def train_and_evaluate(
    source: DataSource, config: TrainConfig, model_dir: Path, *, progress: bool = False
) -> TrainingRun:
    from recsys.model.training import train_autoencoder  # deferred: TensorFlow start-up

    split = split_ratings(source.data.ratings, seed=SPLIT_SEED)
    fit, validation = split_for(config, split)
    trained = train_autoencoder(
        fit, validation, config, rating_scale=source.data.rating_scale, progress=progress
    )
    scores = evaluate_all(
        trained.network,
        trained.index,
        trained.normalization,
        split.train,
        split.test,
        rating_scale=source.data.rating_scale,
    )
    metadata = {
        "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "dataset": {
            "name": source.data.name,
            "path": str(source.path),
            "source": source.how,
            "fingerprint": data_fingerprint(fit),
            "all_ratings_fingerprint": data_fingerprint(source.data.ratings),
            "split": {"seed": SPLIT_SEED, "test_fraction": 0.1, "validation_fraction": 0.1},
            "training_ratings": len(fit),
        },
        "training": {
            "best_epoch": trained.best_epoch,
            "epochs": len(trained.history.get("loss", [])),
            "seconds": round(trained.seconds, 2),
            "history": trained.history,
        },
        "metrics": {s.name: s.to_dict() for s in scores},
        "environment": environment(),
    }
    path = save_artifact(
        model_dir,
        trained.serving_model(),
        trained.index,
        trained.normalization,
        config=config.to_dict(),
        metadata=metadata,
        rating_scale=source.data.rating_scale,
        catalog=source.data.items.set_index("item_id"),
    )
    return TrainingRun(
        artifact_path=path,
        scores=scores,
        best_epoch=trained.best_epoch,
        epochs=len(trained.history.get("loss", [])),
        final_loss=trained.history["loss"][trained.best_epoch - 1]
        if config.early_stopping == "loss"
        else trained.history["loss"][-1],
        seconds=trained.seconds,
    )


def evaluate_artifact(artifact: Artifact, source: DataSource) -> list[Scores]:
    """Score a saved version on the split of the data it was trained on; refuses data whose
    fingerprint differs from the one recorded at training time."""
    recorded = artifact.metadata.get("dataset", {}).get("all_ratings_fingerprint")
    if recorded and recorded != data_fingerprint(source.data.ratings):
        raise FailedPrecondition(
            f"model {artifact.version} was trained on other data than {source.path}"
        )
    split = split_ratings(source.data.ratings, seed=SPLIT_SEED)
    model = artifact.recommender
    return evaluate_all(
        model.network,
        model.index,
        model.normalization,
        split.train,
        split.test,
        rating_scale=model.rating_scale,
    )


def environment() -> dict[str, str]:
    """Machine and commit, recorded beside figures so they can be compared."""
    try:
        commit = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"],
            capture_output=True,
            text=True,
            cwd=Path(__file__).resolve().parent,
            timeout=5,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        commit = ""
    return {
        "python": platform.python_version(),
        "machine": platform.machine(),
        "cpus": str(os.cpu_count()),
        "commit": commit or "unknown",
    }
