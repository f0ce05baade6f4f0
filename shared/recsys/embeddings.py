"""Distances between item embeddings (SimilarItems): euclidean as in the article, or cosine;
nearest or farthest first."""

from __future__ import annotations

import numpy as np

from recsys.errors import InvalidArgument

METRICS = ("euclidean", "cosine")
DIRECTIONS = ("nearest", "farthest")


class ItemEmbeddings:
    """(n_items, k) item embeddings prepared for repeated distance queries."""

    def __init__(self, embeddings: np.ndarray):
        self.vectors = np.ascontiguousarray(embeddings, dtype=np.float64)
        self.squared_norms = np.einsum("ij,ij->i", self.vectors, self.vectors)
        self.norms = np.sqrt(self.squared_norms)

    def distances(self, column: int, metric: str = "euclidean") -> np.ndarray:
        """Same values as item_distances (to rounding), in O(n·k) multiply-adds."""
        check_metric(metric)
        dots = self.vectors @ self.vectors[column]
        if metric == "euclidean":
            squared = self.squared_norms + self.squared_norms[column] - 2 * dots
            return np.sqrt(np.maximum(squared, 0.0))
        norms = self.norms * self.norms[column]
        return 1.0 - np.divide(dots, norms, out=np.zeros(len(dots)), where=norms > 0)


def item_distances(embeddings: np.ndarray, column: int, metric: str = "euclidean") -> np.ndarray:
    """Distance from item `column` to every item: (n_items,) float64. Cosine distance is
    1 - cos(angle); an all-zero embedding is at distance 1 from everything."""
    check_metric(metric)
    emb = embeddings.astype(np.float64)
    anchor = emb[column]
    if metric == "euclidean":
        return np.sqrt(((emb - anchor) ** 2).sum(axis=1))
    norms = np.linalg.norm(emb, axis=1) * np.linalg.norm(anchor)
    cos = np.divide(emb @ anchor, norms, out=np.zeros(len(emb)), where=norms > 0)
    return 1.0 - cos


def check_metric(metric: str) -> str:
    if metric not in METRICS:
        raise InvalidArgument(f"metric must be one of {METRICS}", field="metric")
    return metric
