"""The interface of a model kind, lenskit-style: built from the typed TrainConfig, trained,
saved into a version directory and loaded back as a Network, the NumPy form that serves.

A kind is one package under recsys/model/ (its Network, its Keras model, its training) and
one line in recsys/model/registry.py; configuration, training, artifacts, the pipeline, the
sweep, the report and the model service ask the registry for it by TrainConfig.kind."""

from __future__ import annotations

from abc import ABC, abstractmethod
from pathlib import Path
from typing import TYPE_CHECKING, Any

from recsys.network import Network

if TYPE_CHECKING:
    import pandas as pd

    from recsys.fold_in import FoldIn
    from recsys.model.config import TrainConfig
    from recsys.model.training import TrainedModel


class ModelKind(ABC):
    """One family of models. `name` is TrainConfig.kind and config.json's "kind"; `files`
    are what `save` writes into a version directory (besides the files every version has,
    recsys.artifacts) and `load` needs."""

    name: str
    files: tuple[str, ...]

    def check_config(self, config: TrainConfig) -> None:  # noqa: B027
        """InvalidArgument naming the field for settings this kind cannot train with; run
        before the checks every configuration passes. Most kinds need none."""

    @abstractmethod
    def train(
        self,
        fit: pd.DataFrame,
        validation: pd.DataFrame | None,
        config: TrainConfig,
        *,
        rating_scale: tuple[float, float],
        progress: bool,
    ) -> TrainedModel:
        """Train on the `fit` ratings (user_id, item_id, rating); `validation` ratings (None
        when `config` stops on the loss) choose the epoch and any setting chosen after
        training. TrainedModel.network is the serving form; its validation_rmse the RMSE of
        that form on `validation`, which the sweep ranks configurations by."""

    @abstractmethod
    def refit(
        self,
        train: pd.DataFrame,
        chosen: TrainedModel,
        *,
        rating_scale: tuple[float, float],
        progress: bool,
    ) -> TrainedModel:
        """Train `chosen.config` again on all of `train` (fit + validation) for
        `chosen.best_epoch` epochs, keeping every setting `chosen` picked on validation, and
        reading no held-out ratings (TrainConfig.refit)."""

    @abstractmethod
    def save(self, trained: TrainedModel, directory: Path) -> None:
        """Write this kind's `files` of `trained` into the (staging) version directory."""

    @abstractmethod
    def load(self, directory: Path) -> Network:
        """The serving form saved in `directory`; ArtifactError naming the file when one is
        damaged. Needs only this kind's `files`."""

    def fold_in(self, directory: Path) -> FoldIn | None:
        """The fold-in of a kind that folds each user in on item codes: the feature store
        keeps every stored user's code with their features (recsys.fold_in), so serving them
        needs no solve. None (the default) for a kind that predicts from the preferences."""
        return None

    def report_lines(self, metadata: dict[str, Any]) -> list[str]:
        """Markdown of this kind's own section of the evaluation report (from the entries its
        training added to metadata.json); none by default."""
        return []
