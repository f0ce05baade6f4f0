"""The item kind: I-AutoRec (Sedhain et al. 2015), an autoencoder over an item's column of
preferences, served by folding each user in by ridge regression on the item codes
(recsys.model.item.network). hide_fraction, hidden_weight, input_dropout and rescale_input
do not apply to it, and batch_size counts items. Serving reads item_codes.npy and
fold_in.json; its Keras file (input width: the training users) is provenance."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from recsys.errors import ArtifactError, check_fields
from recsys.fold_in import FoldIn
from recsys.model.files import MODEL_FILE, read_json, write_array, write_json
from recsys.model.item.network import ItemAutoencoder
from recsys.model.kind import ModelKind

ITEM_CODES_FILE = "item_codes.npy"  # (n_items, k) float32, column order
FOLD_IN_FILE = "fold_in.json"  # {"l2": the fold-in λ}


class ItemKind(ModelKind):
    name = "item"
    files = (MODEL_FILE, ITEM_CODES_FILE, FOLD_IN_FILE)

    def check_config(self, config) -> None:
        checks = [
            (
                not config.hidden_layers,
                "hidden_layers",
                "must be empty for the item kind (I-AutoRec has one hidden layer, the code)",
            ),
            (
                config.early_stopping == "validation",
                "early_stopping",
                "must be validation for the item kind (its fold-in λ is chosen on validation)",
            ),
        ]
        check_fields(checks)

    def train(self, fit, validation, config, *, rating_scale, progress):
        from recsys.model.item.training import train_item_autoencoder

        return train_item_autoencoder(
            fit, validation, config, rating_scale=rating_scale, progress=progress
        )

    def refit(self, train, chosen, *, rating_scale, progress):
        """The chosen epoch count and fold-in λ, on all of train."""
        from recsys.model.item.training import train_item_autoencoder

        return train_item_autoencoder(
            train,
            None,
            chosen.config,
            rating_scale=rating_scale,
            progress=progress,
            refit=(chosen.best_epoch, chosen.network.fold_in_l2),
        )

    def save(self, trained, directory: Path) -> None:
        """model.keras (an uncompiled copy with the trained weights), the item codes and the
        fold-in λ."""
        from recsys.model.item.keras_model import build_item_autoencoder

        config = trained.config
        copy = build_item_autoencoder(
            trained.model.input_shape[-1],
            config.encoding_size,
            activation=config.activation,
            l2=config.l2,
        )
        copy.set_weights(trained.model.get_weights())
        copy.save(directory / MODEL_FILE)
        write_array(directory / ITEM_CODES_FILE, trained.network.item_codes)
        write_json(directory / FOLD_IN_FILE, {"l2": trained.network.fold_in_l2})

    def load(self, directory: Path) -> ItemAutoencoder:
        """item_codes.npy and the λ in fold_in.json (no Keras)."""
        codes, l2 = _read_codes(directory)
        try:
            return ItemAutoencoder(codes, l2)
        except ValueError as exc:
            raise ArtifactError(f"cannot read the item model in {directory}: {exc}") from exc

    def fold_in(self, directory: Path) -> FoldIn:
        """The item codes and λ, without the item Gram matrix serving keeps."""
        codes, l2 = _read_codes(directory)
        try:
            return FoldIn(codes, l2)
        except ValueError as exc:
            raise ArtifactError(f"cannot read the item model in {directory}: {exc}") from exc

    def report_lines(self, metadata: dict[str, Any]) -> list[str]:
        """The fold-in λ chosen and the validation RMSE of each λ tried."""
        from recsys.evaluation.document import markdown_table

        fold_in = metadata.get("fold_in")
        if not fold_in:
            return []
        return [
            "## Fold-in (item kind)",
            "",
            "Users are folded in by ridge regression on the item codes; λ chosen by "
            f"validation RMSE (fit ratings as input): **{fold_in['l2']:g}**.",
            "",
            markdown_table(
                ["λ", "validation RMSE"],
                [[f"{r['l2']:g}", r["rmse"]] for r in fold_in.get("validation", [])],
            ),
            "",
        ]


def _read_codes(directory: Path) -> tuple[np.ndarray, float]:
    """(item codes (n_items, k) float32, the fold-in λ) of a version directory."""
    try:
        codes = np.load(directory / ITEM_CODES_FILE, allow_pickle=False)
        return np.asarray(codes, dtype=np.float32), float(read_json(directory / FOLD_IN_FILE)["l2"])
    except (OSError, KeyError, TypeError, ValueError) as exc:
        raise ArtifactError(f"cannot read the item model in {directory}: {exc}") from exc
