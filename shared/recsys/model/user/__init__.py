"""The user kind, the default: the article's linear autoencoder over a user's preference
vector, and its deeper option (hidden layers, an activation, input dropout). It serves from
the layers of its Keras file read as NumPy (recsys.model.user.network); Keras is imported
only to train and to load that file."""

from __future__ import annotations

from pathlib import Path

from recsys.errors import ArtifactError
from recsys.model.files import MODEL_FILE
from recsys.model.kind import ModelKind
from recsys.network import Network


class UserKind(ModelKind):
    name = "user"
    files = (MODEL_FILE,)

    def train(self, fit, validation, config, *, rating_scale, progress):
        from recsys.model.user.training import train_user_autoencoder

        return train_user_autoencoder(
            fit, validation, config, rating_scale=rating_scale, progress=progress
        )

    def refit(self, train, chosen, *, rating_scale, progress):
        from recsys.model.user.training import train_user_autoencoder

        return train_user_autoencoder(
            train,
            None,
            chosen.config,
            rating_scale=rating_scale,
            progress=progress,
            epochs=chosen.best_epoch,
        )

    def save(self, trained, directory: Path) -> None:
        """model.keras: an uncompiled copy with the trained weights (no loss, no optimizer
        state, so loading needs no custom objects)."""
        from recsys.model.user.keras_model import build_for

        copy = build_for(trained.config, len(trained.index))
        copy.set_weights(trained.model.get_weights())
        copy.save(directory / MODEL_FILE)

    def load(self, directory: Path) -> Network:
        """model.keras loaded with safe_mode=True, its layers as NumPy matrices."""
        import keras  # deferred: reading a version's metadata should not start TensorFlow

        from recsys.model.user.keras_model import network_of

        path = directory / MODEL_FILE
        try:
            return network_of(keras.saving.load_model(path, compile=False, safe_mode=True))
        except Exception as exc:  # a corrupt or foreign file: say which, keep the cause
            raise ArtifactError(f"cannot load {path}: {exc}") from exc
