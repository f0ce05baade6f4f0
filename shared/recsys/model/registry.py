"""The registered model kinds, by name: a new kind is its package under recsys/model/ and
one entry in KINDS."""

from __future__ import annotations

from typing import Any

from recsys.errors import ArtifactError, InvalidArgument
from recsys.model.item import ItemKind
from recsys.model.kind import ModelKind
from recsys.model.user import UserKind

KINDS: dict[str, ModelKind] = {kind.name: kind for kind in (UserKind(), ItemKind())}
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
