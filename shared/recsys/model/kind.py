"""The interface of a model kind, lenskit-style: built from the typed TrainConfig, trained,
saved into a version directory and loaded back as a Network, the NumPy form that serves.

A kind is one package under recsys/model/ (its Network, its Keras model, its training) and
one line in recsys/model/registry.py; configuration, training, artifacts, the pipeline, the
sweep, the report and the model service ask the registry for it by TrainConfig.kind."""

from __future__ import annotations

from abc import ABC, abstractmethod
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np

if TYPE_CHECKING:
    import pandas as pd

    from recsys.model.config import TrainConfig
    from recsys.model.training import TrainedModel


class Network(Protocol):
    """A trained model as NumPy matrices: what serving and offline evaluation call (Keras's
    `model.predict` costs milliseconds a call, the same products in NumPy microseconds).

    Preferences are (batch, n_items) dense or CSR rows of normalized ratings, 0 where a user
    rated nothing (a stored 0 in CSR is treated as no rating too)."""

    @property
    def n_items(self) -> int: ...

    @property
    def encoding_size(self) -> int:
        """The width of the code layer, k (GetModelInfo)."""
        ...

    @property
    def item_embeddings(self) -> np.ndarray:
        """(n_items, d): the vectors SimilarItems measures distances between."""
        ...

    def predict(self, preferences) -> np.ndarray:
        """(batch, n_items) preferences → (batch, n_items) float32 predicted preferences; a
        row's answer depends on that row alone, an empty batch gives (0, n_items)."""
        ...

    def predict_pairs(self, preferences, rows: np.ndarray, columns: np.ndarray) -> np.ndarray:
        """Predicted preference of row `rows[j]` at column `columns[j]`: (n_pairs,) float32."""
        ...

    def check_explainable(self) -> None:
        """FailedPrecondition, saying why, when predictions are no sums over rated items."""
        ...

    def contributions(self, columns: np.ndarray, values: np.ndarray, target: int) -> np.ndarray:
        """What each input entry (preference `values[j]` at column `columns[j]`) adds to the
        predicted preference at column `target`: (n,) float64 adding up to predict(x)[target]
        to rounding. Only called once check_explainable has passed."""
        ...


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
    def save(self, trained: TrainedModel, directory: Path) -> None:
        """Write this kind's `files` of `trained` into the (staging) version directory."""

    @abstractmethod
    def load(self, directory: Path) -> Network:
        """The serving form saved in `directory`; ArtifactError naming the file when one is
        damaged. Needs only this kind's `files`."""

    def report_lines(self, metadata: dict[str, Any]) -> list[str]:
        """Markdown of this kind's own section of the evaluation report (from the entries its
        training added to metadata.json); none by default."""
        return []
