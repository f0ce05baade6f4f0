"""The registered model kinds, by name: a new kind is its package under recsys/model/ and
one entry in KINDS. The top of the model package: it imports the kinds, they never import it."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from recsys.errors import ArtifactError, InvalidArgument
from recsys.model.blend import BlendKind
from recsys.model.item import ItemKind
from recsys.model.kind import ModelKind
from recsys.model.user import UserKind
from recsys.rating_scale import DEFAULT_RATING_SCALE

if TYPE_CHECKING:
    import pandas as pd

    from recsys.model.config import TrainConfig
    from recsys.model.training import TrainedModel

KINDS: dict[str, ModelKind] = {kind.name: kind for kind in (UserKind(), ItemKind())}
KINDS["blend"] = BlendKind(KINDS)  # its parts are of the kinds registered here
KIND_NAMES = tuple(KINDS)
DEFAULT_KIND = "user"  # TrainConfig's default, and the kind of a version saved without one


def get_kind(name: str) -> ModelKind:
    """The kind called `name`; InvalidArgument (field "kind") for an unknown one."""
    if not isinstance(name, str) or name not in KINDS:
        raise InvalidArgument(f"kind must be one of {KIND_NAMES}", field="kind")
    return KINDS[name]


def kind_of_version(config: Any) -> ModelKind:
    """The kind of a saved version from its config.json: its "kind", else the default (a
    version saved before kinds existed); ArtifactError for a kind not registered here."""
    name = config.get("kind", DEFAULT_KIND) if isinstance(config, dict) else DEFAULT_KIND
    if not isinstance(name, str) or name not in KINDS:
        raise ArtifactError(f"model kind {name!r} is not one of {KIND_NAMES}")
    return KINDS[name]


def train_autoencoder(
    fit: pd.DataFrame,
    validation: pd.DataFrame | None,
    config: TrainConfig,
    *,
    rating_scale: tuple[float, float] = DEFAULT_RATING_SCALE,
    progress: bool = False,
) -> TrainedModel:
    """Train the kind `config` names on `fit`; `validation` (may be None with loss-based
    stopping) feeds val_rmse."""
    return get_kind(config.kind).train(
        fit, validation, config, rating_scale=rating_scale, progress=progress
    )
