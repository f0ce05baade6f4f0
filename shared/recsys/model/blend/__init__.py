"""The blend kind: a weighted sum of other kinds' networks (presets named by
TrainConfig.components, for example the user autoencoder and the item kind), weights adding
up to 1 fitted on the validation ratings (recsys.model.blend.training). A version keeps each
part as a version directory of its own kind under parts/<n>/ (its files and config.json)
and the weights in blend.json; the items, normalization and ranking files are the blend's.

Serving sums the parts' predictions; a stored user's code is the code of the part that folds
users in (at most one part may). Explanations are exact when every part is linear in the
ratings (the user autoencoder, the item kind), and refused, saying which part, when not."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from recsys.errors import ArtifactError, InvalidArgument, check_fields
from recsys.fold_in import FoldIn
from recsys.model.files import read_json, write_json
from recsys.model.kind import ModelKind
from recsys.network import Network

BLEND_FILE = "blend.json"  # {"parts": [{"directory": "parts/0", "preset": ..., "weight": w}]}
PART_CONFIG = "config.json"  # each part's TrainConfig, as a version's config.json


class BlendKind(ModelKind):
    """`kinds`: the registry's kinds by name, which the parts are of (the registry hands
    them over: a kind never imports the registry)."""

    name = "blend"
    files = (BLEND_FILE,)

    def __init__(self, kinds: Mapping[str, ModelKind]):
        self.kinds = kinds

    def check_config(self, config) -> None:
        checks = [
            (len(config.components) >= 2, "components", "a blend needs two or more presets"),
            (
                config.early_stopping == "validation",
                "early_stopping",
                "must be validation for a blend (its weights are fitted on validation)",
            ),
        ]
        check_fields(checks)
        if any(part.kind == self.name for part in config.part_configs()):
            raise InvalidArgument("components cannot name a blend", field="components")

    def _kind(self, name: str) -> ModelKind:
        if name not in self.kinds or name == self.name:
            others = sorted(k for k in self.kinds if k != self.name)
            raise ArtifactError(f"a blend's part of kind {name!r}: not one of {others}")
        return self.kinds[name]

    def train(self, fit, validation, config, *, rating_scale, progress):
        from recsys.model.blend.training import train_blend

        parts = [
            (name, self._kind(part.kind), part)
            for name, part in zip(config.components, config.part_configs(), strict=True)
        ]
        return train_blend(
            fit, validation, config, parts, rating_scale=rating_scale, progress=progress
        )

    def refit(self, train, chosen, *, rating_scale, progress):
        from recsys.model.blend.training import refit_blend

        kinds = [self._kind(part.config.kind) for part in chosen.model]
        return refit_blend(train, chosen, kinds, rating_scale=rating_scale, progress=progress)

    def save(self, trained, directory: Path) -> None:
        """Each part's own files and config.json under parts/<n>/, then blend.json."""
        entries = []
        for n, (name, part, weight) in enumerate(
            zip(trained.config.components, trained.model, trained.network.weights, strict=True)
        ):
            where = directory / "parts" / str(n)
            where.mkdir(parents=True)
            self._kind(part.config.kind).save(part, where)
            write_json(where / PART_CONFIG, part.config.to_dict())
            entries.append({"directory": f"parts/{n}", "preset": name, "weight": weight})
        write_json(directory / BLEND_FILE, {"parts": entries})

    def _parts(self, directory: Path) -> list[tuple[ModelKind, Path, float]]:
        """(kind, directory, weight) of each part; ArtifactError for a damaged blend.json."""
        try:
            entries = read_json(directory / BLEND_FILE)["parts"]
            parts = []
            for entry in entries:
                where = directory / entry["directory"]
                kind = self._kind(read_json(where / PART_CONFIG)["kind"])
                parts.append((kind, where, float(entry["weight"])))
        except (KeyError, TypeError, ValueError, OSError) as exc:
            raise ArtifactError(f"{directory / BLEND_FILE}: malformed blend ({exc!r})") from exc
        return parts

    def load(self, directory: Path) -> Network:
        from recsys.model.blend.network import BlendNetwork

        parts = self._parts(directory)
        try:
            return BlendNetwork(
                tuple(kind.load(where) for kind, where, _ in parts),
                tuple(weight for _, _, weight in parts),
            )
        except ValueError as exc:
            raise ArtifactError(f"cannot read the blend in {directory}: {exc}") from exc

    def fold_in(self, directory: Path) -> FoldIn | None:
        """The fold-in of the part that folds users in, if one does."""
        for kind, where, _ in self._parts(directory):
            fold_in = kind.fold_in(where)
            if fold_in is not None:
                return fold_in
        return None

    def report_lines(self, metadata: dict[str, Any]) -> list[str]:
        """The parts, their weights and validation RMSEs, and the blend's."""
        from recsys.evaluation.document import markdown_table

        blend = metadata.get("blend")
        if not blend:
            return []
        rows = [
            [p["preset"], p["kind"], f"{p['weight']:.4f}", p.get("validation_rmse")]
            for p in blend["parts"]
        ]
        rows.append(["**blend**", "", "1", blend["validation_rmse"]])
        return [
            "## The blend",
            "",
            "Weights (adding up to 1) fitted by least squares on the "
            f"{blend['validation_pairs']:,} validation ratings; each part trained on the fit part.",
            "",
            markdown_table(["part", "kind", "weight", "validation RMSE"], rows),
            "",
        ]
