"""Training settings as one frozen dataclass, with the article's configuration and the
project's default as named presets."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

from recsys.activations import ACTIVATIONS
from recsys.ease import AUTO_NEIGHBORS, DEFAULT_ROW_LIMIT
from recsys.errors import InvalidArgument, check_fields
from recsys.features import ItemSelection
from recsys.model.registry import DEFAULT_KIND, get_kind

OPTIMIZERS = ("adadelta", "adam", "sgd")
STOPPING = ("loss", "validation")
# What a blend itself uses of TrainConfig; a change of any other setting to a blend goes to
# every one of its parts (part_settings): `--set max_epochs=2` shortens both parts' training.
BLEND_SETTINGS = (
    "kind",
    "components",
    "part_settings",
    "early_stopping",
    "refit",
    "relevance_neighbors",
    "relevance_row_limit",
)


@dataclass(frozen=True)
class TrainConfig:
    # A kind of recsys.model.registry: "user", the article's autoencoder over a user's
    # preference vector (and its deeper option); "item", I-AutoRec over an item's column of
    # preferences (recsys.model.item says which settings apply to it).
    kind: str = DEFAULT_KIND
    # The presets a "blend" combines (recsys.model.blend), e.g. ("user", "item"); each
    # part trains with its own preset's settings, and of the settings below only
    # early_stopping, refit and relevance_* apply to the blend itself. Empty for other kinds.
    components: tuple[str, ...] = ()
    # Settings every part of a blend trains with on top of its preset's, as sorted (name,
    # value) pairs; `replace` puts there what a blend does not use itself. Blend kind only.
    part_settings: tuple[tuple[str, Any], ...] = ()
    top_n: int | None = None  # keep the N most-rated items (article: 500) ...
    min_ratings: int | None = None  # ... or every item with at least M ratings; neither: all
    encoding_size: int = 25  # k, the width of the code layer (article: 25)
    # The deeper option (Kuchaiev & Ginsburg): widths of the hidden layers between the input
    # and the code, mirrored in the decoder; e.g. (256,) is n → 256 → k → 256 → n. With
    # hidden layers or a non-linear activation every layer has a bias; the output layer is
    # always linear. () and "linear" are the article's network.
    hidden_layers: tuple[int, ...] = ()
    activation: str = "linear"  # of every layer but the output: linear, selu, elu, relu, tanh
    input_dropout: float = 0.0  # Keras Dropout on the input, training only (after the hiding)
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
    # After stopping on validation: train again on all of train (fit + validation) for the
    # chosen number of epochs, every setting chosen on validation kept, and serve that. The
    # validation ratings then inform the served weights too; the test ratings never do.
    refit: bool = False
    seed: int = 0
    # Neighbours per item kept by the "relevance" ranking's item-item weights: -1 (auto)
    # keeps every other item (dense EASE) up to 12,000 items and the top 300 above
    # (recsys.sparse_ease); 0 always dense; m > 0 the top m.
    relevance_neighbors: int = AUTO_NEIGHBORS
    # Entries kept per row of those weights when they are sparse (a rated item's weights onto
    # the items it helps score; the largest |weights|): bounds a user's scores at rated × it.
    # 0: no limit. Dense weights keep every row.
    relevance_row_limit: int = DEFAULT_ROW_LIMIT

    def __post_init__(self):
        if isinstance(self.hidden_layers, int):  # --set hidden_layers=256
            object.__setattr__(self, "hidden_layers", (self.hidden_layers,))
        if self.hidden_layers is None:
            object.__setattr__(self, "hidden_layers", ())
        if not isinstance(self.hidden_layers, list | tuple) or not all(
            isinstance(w, int) and not isinstance(w, bool) for w in self.hidden_layers
        ):
            raise InvalidArgument("hidden_layers must be a list of widths", field="hidden_layers")
        object.__setattr__(self, "hidden_layers", tuple(self.hidden_layers))
        if isinstance(self.components, str):  # --set components=user,item
            object.__setattr__(self, "components", tuple(self.components.split(",")))
        if not isinstance(self.components, list | tuple) or not all(
            isinstance(name, str) for name in self.components
        ):
            raise InvalidArgument("components must be a list of preset names", field="components")
        object.__setattr__(self, "components", tuple(self.components))
        if self.components and self.kind != "blend":
            raise InvalidArgument("components are the parts of a blend only", field="components")
        self._normalize_part_settings()
        get_kind(self.kind).check_config(self)  # an unknown kind, then the kind's own checks
        checks = [
            (self.encoding_size > 0, "encoding_size", "must be positive"),
            (all(w > 0 for w in self.hidden_layers), "hidden_layers", "widths must be positive"),
            (self.activation in ACTIVATIONS, "activation", f"must be one of {ACTIVATIONS}"),
            (0 <= self.input_dropout < 1, "input_dropout", "must be in [0, 1)"),
            (0 < self.hide_fraction < 1, "hide_fraction", "must be in (0, 1)"),
            (0 <= self.hidden_weight <= 1, "hidden_weight", "must be in [0, 1]"),
            (self.l2 >= 0, "l2", "must be ≥ 0"),
            (self.optimizer in OPTIMIZERS, "optimizer", f"must be one of {OPTIMIZERS}"),
            (self.learning_rate > 0, "learning_rate", "must be positive"),
            (self.batch_size > 0, "batch_size", "must be positive"),
            (self.max_epochs > 0, "max_epochs", "must be positive"),
            (self.early_stopping in STOPPING, "early_stopping", f"must be one of {STOPPING}"),
            (self.patience >= 0, "patience", "must be ≥ 0"),
            (isinstance(self.refit, bool), "refit", "must be true or false"),
            (
                not self.refit or self.early_stopping == "validation",
                "refit",
                "needs early_stopping validation (stopping on the loss trains on all of train)",
            ),
            (self.relevance_neighbors >= AUTO_NEIGHBORS, "relevance_neighbors", "must be ≥ -1"),
            (self.relevance_row_limit >= 0, "relevance_row_limit", "must be ≥ 0 (0: no limit)"),
        ]
        check_fields(checks)
        ItemSelection(top_n=self.top_n, min_ratings=self.min_ratings)  # validates both

    def _normalize_part_settings(self) -> None:
        """part_settings as sorted (name, value) pairs (a dict from config.json too), of
        settings a part can take, on a blend only."""
        settings = self.part_settings
        pairs = sorted(settings.items() if isinstance(settings, dict) else settings)
        parts_take = {f.name for f in dataclasses.fields(self)} - set(BLEND_SETTINGS)
        unknown = sorted(name for name, _ in pairs if name not in parts_take)
        if unknown:
            raise InvalidArgument(
                f"part settings {unknown} are not settings of a part", field="part_settings"
            )
        if pairs and self.kind != "blend":
            raise InvalidArgument(
                "part_settings are for a blend's parts only", field="part_settings"
            )
        frozen = tuple((name, tuple(v) if isinstance(v, list) else v) for name, v in pairs)
        object.__setattr__(self, "part_settings", frozen)

    def part_configs(self) -> tuple[TrainConfig, ...]:
        """A blend's parts: the presets `components` names with `part_settings` applied, each
        with refit off (the blend refits its parts itself); InvalidArgument (field
        "components") for an unknown preset, or naming a setting a part cannot take."""
        unknown = [name for name in self.components if name not in PRESETS]
        if unknown:
            raise InvalidArgument(
                f"components {unknown} are not presets: {sorted(PRESETS)}", field="components"
            )
        extra = dict(self.part_settings)
        return tuple(PRESETS[name].replace(**extra, refit=False) for name in self.components)

    @property
    def item_selection(self) -> ItemSelection:
        return ItemSelection(top_n=self.top_n, min_ratings=self.min_ratings)

    def replace(self, **changes: Any) -> TrainConfig:
        """A copy with `changes`; on a blend, those of settings it does not use itself
        (BLEND_SETTINGS) go to its parts (part_settings)."""
        if changes.get("kind", self.kind) != "blend":
            return dataclasses.replace(self, **changes)
        own = {name: v for name, v in changes.items() if name in BLEND_SETTINGS}
        for_parts = {name: v for name, v in changes.items() if name not in BLEND_SETTINGS}
        if for_parts:
            known = {f.name for f in dataclasses.fields(self)}
            unknown = sorted(set(for_parts) - known)
            if unknown:
                raise InvalidArgument(f"unknown training settings: {unknown}", field="config")
            merged = {**dict(own.get("part_settings", self.part_settings)), **for_parts}
            own["part_settings"] = tuple(sorted(merged.items()))
        return dataclasses.replace(self, **own)

    def to_dict(self) -> dict[str, Any]:
        values = dataclasses.asdict(self)
        values["hidden_layers"] = list(self.hidden_layers)  # JSON has lists, not tuples
        values["components"] = list(self.components)
        values["part_settings"] = {
            name: list(v) if isinstance(v, tuple) else v for name, v in self.part_settings
        }
        return values

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
    # The user autoencoder as measured best on ML-1M (docs/model.md, "Model quality"): whole
    # catalog, stopping on validation RMSE, Adam, an L2 penalty against the overfitting of the
    # whole catalog, then refit on all of train.
    "user": TrainConfig(
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
        refit=True,
    ),
}

# The deeper option (Kuchaiev & Ginsburg) as measured best by validation RMSE in the ML-1M
# sweep (docs/model.md, "The sweep"): one SELU hidden layer of 256 each side and 20% input dropout
# on top of the user preset's training: 0.003 lower validation RMSE, several times slower to
# train.
PRESETS["deep"] = PRESETS["user"].replace(
    hidden_layers=(256,), activation="selu", input_dropout=0.2
)

# I-AutoRec (Sedhain et al. 2015) as the ML-1M sweep chose it by validation RMSE (docs/model.md,
# "The item kind"): 250 sigmoid codes, Adam, an L2 penalty of λ/(2·n_items) per weight with
# λ = 300 on the sum of squared errors, stopping on validation RMSE. The most accurate
# configuration measured.
PRESETS["item"] = TrainConfig(
    kind="item",
    encoding_size=250,
    activation="sigmoid",
    l2=0.04,
    optimizer="adam",
    learning_rate=1e-3,
    batch_size=256,
    max_epochs=80,
    early_stopping="validation",
    patience=5,
    min_delta=0.0,
    refit=True,
)

# The user autoencoder and the item kind blended (recsys.model.blend): both trained on the fit
# part as their presets say, weights fitted on validation, each part then refit on all of
# train.
PRESETS["blend"] = TrainConfig(
    kind="blend", components=("user", "item"), early_stopping="validation", refit=True
)

# What `recsys train`, `./run demo` and the benchmarks train unless told otherwise.
PRESETS["default"] = PRESETS["user"]
