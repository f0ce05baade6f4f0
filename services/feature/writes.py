"""Atomic per-user writes. A writer reads a user's ratings and revision, computes the new
ratings and every live version's mean and preference vector, then one Lua script applies it
all only if the revision is unchanged (optimistic concurrency). Every key the script touches
carries the user's hash tag, so it runs unchanged on one Redis and on a Redis Cluster.

This module holds the scripts and the pure computation; `store.py` (async service) and
`loader.py` (bulk loads) do the I/O."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from recsys.features import ItemIndex, Normalization, user_preferences
from services.feature import layout

# KEYS: ratings hash, revision, one user hash per version to write, then `n_stale` user
#       hashes to delete (versions whose features the caller does not compute: the feature
#       service derives them from the ratings on read).
# ARGV: expected revision ("0": the user was never written), n pairs to set, the pairs,
#       n fields to delete, the fields, the packed copy of all ratings after the change,
#       n_stale, then (mean, prefs) per user hash to write.
# Returns the new revision, or -1 when the revision moved (the caller reads again).
APPLY_SCRIPT = """
local revision = redis.call('GET', KEYS[2]) or '0'
if revision ~= ARGV[1] then return -1 end
-- unpack() has a stack limit of a few thousand values: send arguments in chunks of 1000
local function chunked(command, first, count)
  local j = first
  while j < first + count do
    local last = math.min(j + 999, first + count - 1)
    redis.call(command, KEYS[1], unpack(ARGV, j, last))
    j = last + 1
  end
end
local i = 2
local n_set = tonumber(ARGV[i]); i = i + 1
chunked('HSET', i, 2 * n_set)
i = i + 2 * n_set
local n_del = tonumber(ARGV[i]); i = i + 1
chunked('HDEL', i, n_del)
i = i + n_del
local left = redis.call('HLEN', KEYS[1])
local packed = ARGV[i]; i = i + 1
local n_stale = tonumber(ARGV[i]); i = i + 1
for k = 3, #KEYS - n_stale do
  if left == 0 then
    redis.call('DEL', KEYS[k])
  else
    redis.call('HSET', KEYS[k], 'mean', ARGV[i], 'prefs', ARGV[i + 1], 'ratings', packed)
  end
  i = i + 2
end
for k = #KEYS - n_stale + 1, #KEYS do
  redis.call('DEL', KEYS[k])
end
return redis.call('INCR', KEYS[2])
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
    arithmetic as training."""
    user = user_preferences(ratings, index, normalization)
    return VersionFeatures(user.user_mean, user.movie_ids, user.preferences.astype(np.float32))


def apply_args(
    expected_revision: int,
    to_set: dict[int, float],
    to_delete: list[int],
    after: dict[int, float],
    features: list[VersionFeatures],
    stale: int = 0,
) -> list[bytes | int]:
    """ARGV of APPLY_SCRIPT; `after` is every rating once the change is applied; the last
    `stale` keys are user hashes to delete."""
    args: list[bytes | int] = [str(expected_revision).encode(), len(to_set)]
    for movie_id, rating in sorted(to_set.items()):
        args += [str(movie_id).encode(), layout.encode_rating(rating)]
    args.append(len(to_delete))
    args += [str(m).encode() for m in sorted(to_delete)]
    args.append(layout.encode_packed_ratings(after))
    args.append(stale)
    for version_features in features:
        args += list(version_features.encoded())
    return args


def decode_revision(raw: bytes | None) -> int:
    return int(raw) if raw is not None else 0
