"""Training settings as one frozen dataclass, with the article's configuration and the
project's default as named presets."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

from recsys.errors import InvalidArgument
from recsys.features import ItemSelection

OPTIMIZERS = ("adadelta", "adam", "sgd")
STOPPING = ("loss", "validation")


@dataclass(frozen=True)
class TrainConfig:
    top_n: int | None = None  # keep the N most-rated items (article: 500) ...
    min_ratings: int | None = None  # ... or every item with at least M ratings; neither: all
    encoding_size: int = 25  # k, the width of the code layer (article: 25)
    hide_fraction: float = 0.2  # share of a user's known preferences hidden per epoch
    hidden_weight: float = 0.8  # loss weight on hidden entries ("frac"); 1 - it on visible
    l2: float = 0.0  # L2 penalty on both kernels, per weight
    rescale_input: bool = False  # divide training inputs by 1 - hide_fraction (inverted dropout)
    optimizer: str = "adadelta"
    learning_rate: float = 1.0
    batch_size: int = 125  # users per batch
    max_epochs: int = 100
    early_stopping: str = "loss"  # "loss" (article) or "validation" (validation RMSE)
    patience: int = 3
    min_delta: float = 1e-5
    seed: int = 0

    def __post_init__(self):
        checks = [
            (self.encoding_size > 0, "encoding_size", "must be positive"),
            (0 < self.hide_fraction < 1, "hide_fraction", "must be in (0, 1)"),
            (0 <= self.hidden_weight <= 1, "hidden_weight", "must be in [0, 1]"),
            (self.l2 >= 0, "l2", "must be ≥ 0"),
            (self.optimizer in OPTIMIZERS, "optimizer", f"must be one of {OPTIMIZERS}"),
            (self.learning_rate > 0, "learning_rate", "must be positive"),
            (self.batch_size > 0, "batch_size", "must be positive"),
            (self.max_epochs > 0, "max_epochs", "must be positive"),
            (self.early_stopping in STOPPING, "early_stopping", f"must be one of {STOPPING}"),
            (self.patience >= 0, "patience", "must be ≥ 0"),
        ]
        for ok, field, problem in checks:
            if not ok:
                raise InvalidArgument(f"{field} {problem}", field=field)
        ItemSelection(top_n=self.top_n, min_ratings=self.min_ratings)  # validates both

    @property
    def item_selection(self) -> ItemSelection:
        return ItemSelection(top_n=self.top_n, min_ratings=self.min_ratings)

    def replace(self, **changes: Any) -> TrainConfig:
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> TrainConfig:
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = set(values) - known
        if unknown:
            raise InvalidArgument(f"unknown training settings: {sorted(unknown)}", field="config")
        return cls(**values)


PRESETS: dict[str, TrainConfig] = {
    # The post: 500 most-rated movies, k = 25, Adadelta (Keras 2 defaults, lr 1.0), batch 125,
    # hide 20%, 0.8 of the loss on hidden entries, early stopping on the training loss.
    "article": TrainConfig(top_n=500),
    # What measured best on ML-1M (README, "Model quality"): whole catalog, stopping on
    # validation RMSE, Adam, an L2 penalty against the overfitting of the whole catalog.
    "default": TrainConfig(
        encoding_size=64,
        hide_fraction=0.3,
        l2=6e-4,
        rescale_input=True,
        optimizer="adam",
        learning_rate=1e-3,
        batch_size=128,
        max_epochs=60,
        early_stopping="validation",
        patience=3,
        min_delta=0.0,
    ),
}
