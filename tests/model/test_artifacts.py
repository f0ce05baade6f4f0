import json
import shutil

import keras
import numpy as np
import pytest

from recsys.artifacts import (
    REQUIRED_FILES,
    list_versions,
    load_artifact,
    new_version_name,
    resolve_version,
)
from recsys.errors import ArtifactError


@pytest.mark.slow
def test_round_trip_gives_identical_predictions(trained_run):
    source, run = trained_run
    artifact = load_artifact(run.artifact_path)
    model = artifact.recommender
    rng = np.random.default_rng(0)
    users = rng.normal(0, 1, (5, len(model.index))).astype(np.float32)
    users[rng.random(users.shape) < 0.8] = 0
    # the Keras file, loaded again with safe_mode, and the NumPy kernels agree exactly
    reloaded = keras.saving.load_model(run.artifact_path / "model.keras", safe_mode=True)
    keras_out = keras.ops.convert_to_numpy(reloaded(users))
    np.testing.assert_allclose(model.network.predict(users), keras_out, rtol=1e-5, atol=1e-6)
    again = load_artifact(run.artifact_path).recommender
    np.testing.assert_array_equal(again.network.decoder_kernel, model.network.decoder_kernel)
    assert again.normalization.global_mean == model.normalization.global_mean
    np.testing.assert_array_equal(again.normalization.item_means, model.normalization.item_means)
    np.testing.assert_array_equal(again.index.item_ids, model.index.item_ids)


@pytest.mark.slow
def test_metadata_records_provenance(trained_run):
    _, run = trained_run
    meta = json.loads((run.artifact_path / "metadata.json").read_text())
    assert meta["version"] == run.artifact_path.name
    assert len(meta["dataset"]["fingerprint"]) == 64
    assert set(meta["metrics"]) == {
        "global mean",
        "bias baseline",
        "EASE",
        "autoencoder",
        "autoencoder by rating",
        "autoencoder by preference",
    }
    assert meta["leaked_pairs"] == 0
    assert meta["ranking"]["preference_weight"] in [
        r["preference_weight"] for r in meta["ranking"]["validation"]
    ]
    ranking = load_artifact(run.artifact_path).recommender.ranking
    n_items = len(json.loads((run.artifact_path / "items.json").read_text()))
    assert ranking.weights.shape == (n_items, n_items)
    assert not ranking.weights.diagonal().any()  # EASE's constraint: no item explains itself
    assert meta["training"]["best_epoch"] >= 1
    config = json.loads((run.artifact_path / "config.json").read_text())
    assert config["early_stopping"] == "validation"
    artifact = load_artifact(run.artifact_path)
    assert artifact.title(1) == "Synthetic Movie 1 (2000)"


@pytest.mark.slow
def test_versions_newest_and_incomplete(trained_run, tmp_path):
    _, run = trained_run
    older, newer = tmp_path / "20260101T000000000000Z", tmp_path / "20260102T000000000000Z"
    shutil.copytree(run.artifact_path, older)
    shutil.copytree(run.artifact_path, newer)
    (tmp_path / ".20260103T000000000000Z-staging").mkdir()  # a save in progress
    assert list_versions(tmp_path) == [older.name, newer.name]
    assert resolve_version(tmp_path) == newer
    assert resolve_version(tmp_path, older.name) == older
    with pytest.raises(ArtifactError, match="not found"):
        resolve_version(tmp_path, "nope")
    (newer / "items.json").unlink()
    with pytest.raises(ArtifactError, match="missing"):
        load_artifact(newer)
    (older / "model.keras").write_bytes(b"not a keras file")
    with pytest.raises(ArtifactError, match="cannot load"):
        load_artifact(older)


def test_no_versions(tmp_path):
    with pytest.raises(ArtifactError, match="no model versions"):
        resolve_version(tmp_path)


def test_version_names_sort_by_time():
    assert new_version_name(1_800_000_000.5) == "20270115T080000500000Z"
    assert new_version_name(1_800_000_000.5) < new_version_name(1_800_000_001.0)
    assert set(REQUIRED_FILES) >= {"items.json", "normalization.json", "config.json"}
