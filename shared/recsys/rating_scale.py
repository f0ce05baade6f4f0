"""The rating scale (lowest and highest stars a data set allows) and the one test of a rating
against it, shared by the data loader, offline recommendations and the services' inputs."""

from __future__ import annotations

import numpy as np

from recsys.errors import InvalidArgument

DEFAULT_RATING_SCALE = (1.0, 5.0)  # ML-1M and ML-100K: whole stars; a version saved without one
HALF_STAR_RATING_SCALE = (0.5, 5.0)  # ml-latest: half stars


def on_scale(ratings, scale: tuple[float, float]) -> np.ndarray:
    """Whether each rating lies in [lowest, highest] of `scale` (NaN does not): bool array."""
    low, high = scale
    ratings = np.asarray(ratings, dtype=np.float64)
    return (ratings >= low) & (ratings <= high)


def check_rating(movie_id: int, rating: float, scale: tuple[float, float], field: str) -> float:
    """`rating` as a float, or InvalidArgument on `field` naming the movie and the scale."""
    if not on_scale(rating, scale):
        low, high = scale
        raise InvalidArgument(
            f"rating {rating:g} for movie {movie_id} is outside [{low:g}, {high:g}]", field=field
        )
    return float(rating)
