"""The offline jobs behind the command line: find data, train and evaluate a configuration
on the evaluation split (docs/model.md), save it as a model version, and score a saved
version again."""

from __future__ import annotations

import dataclasses
import logging
import os
import platform
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from recsys.artifacts import Artifact, data_fingerprint, save_artifact
from recsys.data.download import download_dataset
from recsys.data.movielens import RatingData, load_movielens
from recsys.data.split import Split, split_ratings
from recsys.data.synthetic import SyntheticSpec, write_synthetic_movielens
from recsys.ease import AUTO_NEIGHBORS, DEFAULT_L2, DEFAULT_ROW_LIMIT, Ease
from recsys.errors import DownloadError, FailedPrecondition
from recsys.evaluation.report import Scores, evaluate_all, leaked_pairs
from recsys.evaluation.tuning import RankingFit, fit_relevance_ranking
from recsys.features import preference_matrix
from recsys.model.config import TrainConfig
from recsys.model.registry import kind_of_version

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


def served_ratings(config: TrainConfig, split: Split) -> pd.DataFrame:
    """The ratings the served weights were trained on: all of train after a refit, else
    split_for's training ratings."""
    return split.train if config.refit else split_for(config, split)[0]


@dataclass
class TrainingRun:
    artifact_path: Path
    scores: list[Scores]
    best_epoch: int
    epochs: int
    final_loss: float | None  # None for a blend
    seconds: float
    report_path: Path | None = None
    summary: str = ""  # one line on how it trained (run_summary)


def run_summary(trained, final_loss: float | None) -> str:
    """'19 epochs (best 16), loss 0.7212, refit on train, 96.9s'; a blend names its parts and
    their weights instead of epochs."""
    refit = ", refit on train" if trained.config.refit else ""
    blend = trained.metadata.get("blend")
    if blend:
        parts = " + ".join(f"{p['weight']:.4f} × {p['preset']}" for p in blend["parts"])
        return f"blend {parts}{refit}, {trained.seconds:.1f}s"
    epochs = len(trained.history.get("loss", []))
    return (
        f"{epochs} epochs (best {trained.best_epoch}), loss {final_loss:.4f}{refit}, "
        f"{trained.seconds:.1f}s"
    )


@dataclass
class ScoredModel:
    """A configuration trained on the split and scored on its test part."""

    trained: object  # recsys.model.training.TrainedModel (TensorFlow stays a deferred import)
    ranking: RankingFit
    scores: list[Scores]
    leaked_pairs: int
    split: Split

    @property
    def final_loss(self) -> float | None:
        history, config = self.trained.history, self.trained.config
        if not history.get("loss"):  # a blend: its parts trained, each with its own loss
            return None
        if config.early_stopping == "loss":
            return history["loss"][self.trained.best_epoch - 1]
        return history["loss"][-1]


def train_and_score(
    source: DataSource,
    config: TrainConfig,
    *,
    split: Split | None = None,
    progress: bool = False,
    ease_cache: dict | None = None,
) -> ScoredModel:
    """Train `config` on the evaluation split, fit its relevance ranking (EASE + the rating
    weight chosen on validation) and score it and the baselines on the test ratings. With
    `config.refit`, what is scored (and saved) is the refit on all of train; the epoch count,
    the kind's own choices and the ranking weight stay those the validation part chose."""
    from recsys.model.registry import get_kind, train_autoencoder  # deferred: TensorFlow

    split = split or split_ratings(source.data.ratings, seed=SPLIT_SEED)
    fit, validation = split_for(config, split)
    trained = train_autoencoder(
        fit, validation, config, rating_scale=source.data.rating_scale, progress=progress
    )
    chosen = trained
    if config.refit:
        trained = refitted(
            get_kind(config.kind).refit(
                split.train, chosen, rating_scale=source.data.rating_scale, progress=progress
            ),
            chosen,
            len(split.train),
        )
    network = trained.network
    ranking = fit_relevance_ranking(
        chosen.network,
        chosen.index,
        chosen.normalization,
        split,
        neighbors=config.relevance_neighbors,
        row_limit=config.relevance_row_limit,
        easier=ease_cache,
        serving=(trained.index, trained.normalization),
    )
    scores = evaluate_all(
        network,
        trained.index,
        trained.normalization,
        split.train,
        split.test,
        rating_scale=source.data.rating_scale,
        ranking=ranking.ranking,
        ease=Ease(
            ranking.ranking.weights,
            ranking.ranking.l2,
            ranking.ranking.neighbors,
            ranking.ranking.row_limit,
        ),
    )
    return ScoredModel(trained, ranking, scores, leaked_pairs(split.train, split.test), split)


def refitted(refit, chosen, training_ratings: int):
    """The refit TrainedModel as the run reports it: the chosen run's history, validation
    RMSE and kind metadata (what validation decided), the refit's own length and time under
    "refit"."""
    return dataclasses.replace(
        refit,
        history=chosen.history,
        best_epoch=chosen.best_epoch,
        validation_rmse=chosen.validation_rmse,
        seconds=chosen.seconds + refit.seconds,
        metadata={
            **chosen.metadata,
            "refit": {
                "epochs": refit.best_epoch if refit.history.get("loss") else None,  # blend: parts
                "seconds": round(refit.seconds, 2),
                "training_ratings": training_ratings,
                "loss": refit.history.get("loss", []),
            },
        },
    )


def train_and_evaluate(
    source: DataSource,
    config: TrainConfig,
    model_dir: Path,
    *,
    progress: bool = False,
    report_dir: Path | None = None,
    command: str = "",
) -> TrainingRun:
    """Train, score, save as a new version; with `report_dir` (where "{version}" becomes the
    new version's name), also write the evaluation report and its figures there."""
    scored = train_and_score(source, config, progress=progress)
    trained, scores, split = scored.trained, scored.scores, scored.split
    fit = served_ratings(config, split)
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
        "ranking": scored.ranking.to_dict(),
        **trained.metadata,
        "leaked_pairs": scored.leaked_pairs,
        "metrics": {s.name: s.to_dict() for s in scores},
        "environment": environment(),
    }
    path = save_artifact(
        model_dir,
        trained,
        metadata=metadata,
        catalog=source.data.items.set_index("item_id"),
        ranking=scored.ranking.ranking,
    )
    report_path = None
    if report_dir is not None:
        report_path = write_model_report(
            Path(str(report_dir).replace("{version}", path.name)),
            version=path.name,
            source=source,
            split=split,
            index=trained.index,
            embeddings=trained.network.item_embeddings,
            config=config.to_dict(),
            scores=scores,
            metadata=metadata,
            command=command,
        )
    return TrainingRun(
        artifact_path=path,
        scores=scores,
        best_epoch=trained.best_epoch,
        epochs=len(trained.history.get("loss", [])),
        final_loss=scored.final_loss,
        seconds=trained.seconds,
        report_path=report_path,
        summary=run_summary(trained, scored.final_loss),
    )


def evaluate_artifact(
    artifact: Artifact, source: DataSource, *, report_dir: Path | None = None, command: str = ""
) -> list[Scores]:
    """Score a saved version on the split of the data it was trained on; refuses data whose
    fingerprint differs from the one recorded at training time. EASE is fitted again here on
    the same training ratings; the model ranks with its saved item-item weights. With
    `report_dir`, also writes the report and figures there."""
    recorded = artifact.metadata.get("dataset", {}).get("all_ratings_fingerprint")
    if recorded and recorded != data_fingerprint(source.data.ratings):
        raise FailedPrecondition(
            f"model {artifact.version} was trained on other data than {source.path}"
        )
    split = split_ratings(source.data.ratings, seed=SPLIT_SEED)
    model = artifact.recommender
    ranking = model.ranking
    l2, neighbors, row_limit = (
        (ranking.l2, ranking.neighbors, ranking.row_limit)
        if ranking is not None
        else (DEFAULT_L2, AUTO_NEIGHBORS, DEFAULT_ROW_LIMIT)
    )
    scores = evaluate_all(
        model.network,
        model.index,
        model.normalization,
        split.train,
        split.test,
        rating_scale=model.rating_scale,
        ranking=ranking,
        ease=Ease.fit(
            preference_matrix(split.train, model.index, model.normalization).matrix,
            l2,
            neighbors,
            row_limit,
        ),
    )
    if report_dir is not None:
        write_model_report(
            Path(report_dir),
            version=artifact.version,
            source=source,
            split=split,
            index=model.index,
            embeddings=model.network.item_embeddings,
            config=artifact.config,
            scores=scores,
            metadata=artifact.metadata,
            command=command,
        )
    return scores


def write_model_report(
    out_dir: Path,
    *,
    version: str,
    source: DataSource,
    split: Split,
    index,
    embeddings,
    config: dict,
    scores: list[Scores],
    metadata: dict,
    command: str,
) -> Path:
    """report.md + training_curves.png + item_map.png for a version (the training history
    and ranking fit come from its metadata)."""
    from recsys.evaluation.document import ReportInput, write_report

    columns = index.columns(split.train["item_id"].to_numpy())
    counts = np.bincount(columns[columns >= 0], minlength=len(index))  # training ratings
    titles = source.data.items.set_index("item_id")["title"]
    names = [str(titles.get(int(i), f"Item {i}")) for i in index.item_ids]
    training = metadata.get("training", {})
    path = write_report(
        out_dir,
        ReportInput(
            version=version,
            data=str(source.path),
            config=config,
            scores=scores,
            leaked_pairs=leaked_pairs(split.train, split.test),
            test_ratings=len(split.test),
            history=training.get("history", {}),
            best_epoch=training.get("best_epoch"),
            refit=metadata.get("refit", {}),
            ranking=metadata.get("ranking", {}),
            model_section=kind_of_version(config).report_lines(metadata),
            command=command,
        ),
        embeddings=embeddings,
        titles=names,
        counts=counts,
    )
    log.info("wrote %s", path)
    return path


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
