"""Reading and writing the files of a model version directory: JSON and NumPy files whose
failures name the file (ArtifactError), and the Keras file every kind so far keeps."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from recsys.errors import ArtifactError

MODEL_FILE = "model.keras"  # the trained Keras network (native format, loaded with safe_mode)


def write_json(path: Path, value: Any) -> None:
    path.write_text(json.dumps(value, indent=1, sort_keys=True) + "\n", encoding="utf-8")


def read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise ArtifactError(f"cannot read {path}: {exc}") from exc


def write_array(path: Path, values: np.ndarray) -> None:
    """A float32 .npy file."""
    np.save(path, np.asarray(values, dtype=np.float32))


def read_array(path: Path) -> np.ndarray:
    """A .npy file without pickles; ArtifactError naming it when it is missing or damaged."""
    try:
        return np.load(path, allow_pickle=False)
    except (OSError, ValueError) as exc:
        raise ArtifactError(f"cannot read {path}: {exc}") from exc
