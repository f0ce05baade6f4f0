"""A deterministic synthetic MovieLens: ML-1M-format files with planted latent structure, for
tests and for the main job when no real data can be had.

Users and items each belong to one of `n_groups` taste groups: user u to group (u - 1) % g,
item i to group (i - 1) % g (also written as the item's genre, "Group<g>"). A user rates
items of their own group about `affinity` stars above the item's quality and other groups'
items a little below it; ratings are rounded to whole stars in [1, 5].
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np


@dataclass(frozen=True)
class SyntheticSpec:
    n_users: int = 600
    n_items: int = 200
    n_groups: int = 4
    ratings_per_user: int = 40  # mean; each user rates at least 20 items, as in MovieLens
    affinity: float = 1.2  # stars added for an item of the user's own group
    noise: float = 0.5  # standard deviation of the per-rating noise, in stars
    seed: int = 0


def user_group(user_id: int, n_groups: int) -> int:
    return (user_id - 1) % n_groups


def item_group(item_id: int, n_groups: int) -> int:
    return (item_id - 1) % n_groups


def generate_ratings(spec: SyntheticSpec) -> np.ndarray:
    """(n, 4) int64 rows of user, item, rating, timestamp, grouped by user."""
    rng = np.random.default_rng(spec.seed)
    item_ids = np.arange(1, spec.n_items + 1)
    quality = rng.normal(0.0, 0.4, spec.n_items)
    popularity = rng.zipf(1.6, spec.n_items).astype(np.float64)
    popularity /= popularity.sum()
    popularity = 0.5 * popularity + 0.5 / spec.n_items  # every item gets some ratings
    rows = []
    timestamp = 978_300_000
    for user_id in range(1, spec.n_users + 1):
        count = int(np.clip(rng.poisson(spec.ratings_per_user), 20, spec.n_items))
        items = rng.choice(item_ids, size=count, replace=False, p=popularity)
        own = (items - 1) % spec.n_groups == user_group(user_id, spec.n_groups)
        bias = rng.normal(0.0, 0.3)
        stars = 3.4 + bias + quality[items - 1] + np.where(own, spec.affinity, -0.4)
        stars = np.clip(np.rint(stars + rng.normal(0.0, spec.noise, count)), 1, 5)
        for item, rating in zip(items, stars, strict=True):
            timestamp += int(rng.integers(1, 300))
            rows.append((user_id, int(item), int(rating), timestamp))
    return np.array(rows, dtype=np.int64)


def write_synthetic_movielens(directory: Path | str, spec: SyntheticSpec | None = None) -> Path:
    """Write ratings.dat and movies.dat (ML-1M format, latin-1) into `directory`."""
    spec = spec or SyntheticSpec()
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    ratings = generate_ratings(spec)
    lines = "".join(f"{u}::{i}::{r}::{t}\n" for u, i, r, t in ratings)
    (directory / "ratings.dat").write_bytes(lines.encode("latin-1"))
    movies = "".join(
        f"{i}::Synthetic Movie {i} (2000)::Group{item_group(i, spec.n_groups)}\n"
        for i in range(1, spec.n_items + 1)
    )
    (directory / "movies.dat").write_bytes(movies.encode("latin-1"))
    return directory
