"""Model files are loaded with Keras safe_mode: a model.keras carrying a Lambda layer (Python
bytecode that runs when the model is rebuilt) is refused by load_artifact, and its code does
not run; the same file loaded unsafely does run it, so the refusal is what stops it."""

from __future__ import annotations

import shutil

import keras
import pytest

from recsys.artifacts import load_artifact
from recsys.errors import ArtifactError
from recsys.model.files import MODEL_FILE


@pytest.mark.slow
def test_a_model_file_with_a_lambda_layer_is_refused(trained_run, tmp_path):
    _, run = trained_run
    version = tmp_path / run.artifact_path.name
    shutil.copytree(run.artifact_path, version)
    marker = tmp_path / "payload-ran"

    # a Python lambda is saved as its bytecode (the marker's path a constant in it): it stands
    # for arbitrary code in a model file
    payload = eval(f"lambda x: (open({str(marker)!r}, 'w').close(), x)[1]")

    original = keras.saving.load_model(run.artifact_path / MODEL_FILE, safe_mode=True)
    inputs = keras.Input(shape=original.input_shape[1:])
    outputs = keras.layers.Lambda(payload)(original(inputs))
    keras.Model(inputs, outputs).save(version / MODEL_FILE)
    marker.unlink()  # building the model above ran it once

    with pytest.raises(ArtifactError, match=r"(?i)lambda|safe_mode") as caught:
        load_artifact(version)
    assert str(version / MODEL_FILE) in str(caught.value)
    assert not marker.exists()

    keras.saving.load_model(version / MODEL_FILE, safe_mode=False)  # a valid file otherwise
    assert marker.exists()  # ...whose code runs when safe mode is off
