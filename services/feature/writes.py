"""Atomic per-user writes. A writer reads a user's ratings and revision, computes the new
ratings and every live version's mean and preference vector, then one Lua script applies it
all only if the revision is unchanged (optimistic concurrency). Every key the script touches
carries the user's hash tag, so it runs unchanged on one Redis and on a Redis Cluster.

This module holds the scripts and the pure computation; `store.py` (async service) and
`loader.py` (bulk loads) do the I/O."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from recsys.features import ItemIndex, Normalization
from services.feature import layout

# KEYS: ratings hash, revision, then one user hash per live version.
# ARGV: expected revision ("0": the user was never written), n pairs to set, the pairs,
#       n fields to delete, the fields, the packed copy of all ratings after the change,
#       then (mean, prefs) per user hash.
# Returns the new revision, or -1 when the revision moved (the caller reads again).
APPLY_SCRIPT = """
local revision = redis.call('GET', KEYS[2]) or '0'
if revision ~= ARGV[1] then return -1 end
local i = 2
local n_set = tonumber(ARGV[i]); i = i + 1
if n_set > 0 then
  redis.call('HSET', KEYS[1], unpack(ARGV, i, i + 2 * n_set - 1))
  i = i + 2 * n_set
end
local n_del = tonumber(ARGV[i]); i = i + 1
if n_del > 0 then
  redis.call('HDEL', KEYS[1], unpack(ARGV, i, i + n_del - 1))
  i = i + n_del
end
local left = redis.call('HLEN', KEYS[1])
local packed = ARGV[i]; i = i + 1
for k = 3, #KEYS do
  if left == 0 then
    redis.call('DEL', KEYS[k])
  else
    redis.call('HSET', KEYS[k], 'mean', ARGV[i], 'prefs', ARGV[i + 1], 'ratings', packed)
  end
  i = i + 2
end
return redis.call('INCR', KEYS[2])
"""

# KEYS: ratings hash, revision, then the user's hash under each live version.
# Returns how many ratings the user had.
DELETE_USER_SCRIPT = """
local count = redis.call('HLEN', KEYS[1])
for k = 1, #KEYS do
  if k ~= 2 then redis.call('DEL', KEYS[k]) end
end
redis.call('INCR', KEYS[2])
return count
"""

MAX_ATTEMPTS = 50


@dataclass(frozen=True)
class VersionFeatures:
    """A user's features under one version: b_u and the packed preference vector."""

    user_mean: float
    movie_ids: np.ndarray  # (n,) int64, rated items the version's model covers
    preferences: np.ndarray  # (n,) float32

    def encoded(self) -> tuple[bytes, bytes]:
        return (
            layout.encode_user_mean(self.user_mean),
            layout.encode_preferences(self.movie_ids, self.preferences),
        )


def compute_features(
    ratings: dict[int, float], index: ItemIndex, normalization: Normalization
) -> VersionFeatures:
    """b_u and preferences of `ratings` ({movie id: stars}) under one version: the same
    arithmetic as training (`Normalization.preferences`)."""
    movie_ids = np.array(sorted(ratings), dtype=np.int64)
    columns = index.columns(movie_ids)
    known = columns >= 0
    values = np.array([ratings[m] for m in movie_ids[known]], dtype=np.float64)
    prefs, user_mean = normalization.preferences(columns[known], values)
    return VersionFeatures(user_mean, movie_ids[known], prefs.astype(np.float32))


def apply_args(
    expected_revision: int,
    to_set: dict[int, float],
    to_delete: list[int],
    after: dict[int, float],
    features: list[VersionFeatures],
) -> list[bytes | int]:
    """ARGV of APPLY_SCRIPT; `after` is every rating once the change is applied."""
    args: list[bytes | int] = [str(expected_revision).encode(), len(to_set)]
    for movie_id, rating in sorted(to_set.items()):
        args += [str(movie_id).encode(), layout.encode_rating(rating)]
    args.append(len(to_delete))
    args += [str(m).encode() for m in sorted(to_delete)]
    args.append(layout.encode_packed_ratings(after))
    for version_features in features:
        args += list(version_features.encoded())
    return args


def decode_revision(raw: bytes | None) -> int:
    return int(raw) if raw is not None else 0
