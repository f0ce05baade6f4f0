"""Atomic per-user writes, last writer wins per movie by acceptance time.

Every online write carries a stamp: when the system accepted it (the gateway's clock, µs
since the Unix epoch). A writer reads a user's revision, ratings and stamps, applies its
changes movie by movie — a movie is set or deleted only when the write's stamp is newer
than the movie's stored stamp and than the user's deletion stamp — computes every live
version's mean and preference vector, then one Lua script applies it all only if the
revision is unchanged (compare-and-set) and the caller's deadline has not passed. Every key
the script touches carries the user's hash tag, so it runs unchanged on one Redis and on a
Redis Cluster.

This module holds the script and the pure computation; `store.py` (async service) and
`loader.py` (bulk loads) do the I/O."""

from __future__ import annotations

import hashlib
import time
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from recsys.errors import NotFound
from recsys.features import ItemIndex, Normalization
from recsys.featurestore import layout
from recsys.fold_in import FoldIn

# KEYS: ratings hash, revision, stamps hash, one user hash per version to write, then
#       `n_stale` user hashes to delete (versions whose features the caller does not
#       compute: the feature service derives them from the ratings on read).
# ARGV: expected revision ("0": the user was never written), deadline (µs since the Unix
#       epoch by Redis's clock, "0": none), n pairs to set, the pairs, n fields to delete,
#       the fields, n stamp pairs to set, the pairs, n stamp fields to delete, the fields,
#       the packed copy of all ratings after the change, n_stale, then (mean, prefs, code)
#       per user hash to write (code empty: the version keeps no user codes, and the hash
#       then has no code field).
# Returns the new revision; -1 when the revision moved (the caller reads again); -2 when
# the deadline has passed (nothing applied: the caller has given up). TIME before writes
# is fine: scripts are replicated by their effects (the default since Redis 5).
APPLY_SCRIPT = """
local deadline = tonumber(ARGV[2])
if deadline > 0 then
  local now = redis.call('TIME')
  if tonumber(now[1]) * 1000000 + tonumber(now[2]) > deadline then return -2 end
end
local revision = redis.call('GET', KEYS[2]) or '0'
if revision ~= ARGV[1] then return -1 end
-- unpack() has a stack limit of a few thousand values: send arguments in chunks of 1000
local function chunked(command, key, first, count)
  local j = first
  while j < first + count do
    local last = math.min(j + 999, first + count - 1)
    redis.call(command, key, unpack(ARGV, j, last))
    j = last + 1
  end
end
local i = 3
local n_set = tonumber(ARGV[i]); i = i + 1
chunked('HSET', KEYS[1], i, 2 * n_set)
i = i + 2 * n_set
local n_del = tonumber(ARGV[i]); i = i + 1
chunked('HDEL', KEYS[1], i, n_del)
i = i + n_del
local n_stamp = tonumber(ARGV[i]); i = i + 1
chunked('HSET', KEYS[3], i, 2 * n_stamp)
i = i + 2 * n_stamp
local n_unstamp = tonumber(ARGV[i]); i = i + 1
chunked('HDEL', KEYS[3], i, n_unstamp)
i = i + n_unstamp
local left = redis.call('HLEN', KEYS[1])
local packed = ARGV[i]; i = i + 1
local n_stale = tonumber(ARGV[i]); i = i + 1
for k = 4, #KEYS - n_stale do
  if left == 0 then
    redis.call('DEL', KEYS[k])
  else
    redis.call('HSET', KEYS[k], 'mean', ARGV[i], 'prefs', ARGV[i + 1], 'ratings', packed)
    if ARGV[i + 2] == '' then
      redis.call('HDEL', KEYS[k], 'code')
    else
      redis.call('HSET', KEYS[k], 'code', ARGV[i + 2])
    end
  end
  i = i + 3
end
for k = #KEYS - n_stale + 1, #KEYS do
  redis.call('DEL', KEYS[k])
end
return redis.call('INCR', KEYS[2])
"""
APPLY_SCRIPT_SHA = hashlib.sha1(APPLY_SCRIPT.encode()).hexdigest()  # its EVALSHA name
REVISION_MOVED = -1
PAST_DEADLINE = -2

MAX_ATTEMPTS = 50  # lost compare-and-sets (to other replicas, bulk loads) before ABORTED


@dataclass(frozen=True)
class VersionFeatures:
    """A user's features under one version: b_u, the packed preference vector and, for a
    version whose kind folds users in, their code (recsys.fold_in)."""

    user_mean: float
    movie_ids: np.ndarray  # (n,) int64, rated items the version's model covers
    preferences: np.ndarray  # (n,) float32
    code: np.ndarray | None = None  # (k + 1,) float64, or None

    def encoded(self) -> tuple[bytes, bytes, bytes]:
        """(mean, prefs, code) as the user hash stores them; code b"" when there is none."""
        return (
            layout.encode_user_mean(self.user_mean),
            layout.encode_preferences(self.movie_ids, self.preferences),
            layout.encode_user_code(self.code) if self.code is not None else b"",
        )


def compute_features(
    ratings: dict[int, float],
    index: ItemIndex,
    normalization: Normalization,
    fold_in: FoldIn | None = None,
) -> VersionFeatures:
    """b_u and preferences of `ratings` ({movie id: stars}) under one version: the same
    arithmetic as training; with `fold_in`, the user's code too."""
    movie_ids = np.array(sorted(ratings), dtype=np.int64)
    stars = np.array([ratings[m] for m in movie_ids.tolist()], dtype=np.float64)
    return features_of(movie_ids, stars, index, normalization, fold_in)


def features_of(
    movie_ids: np.ndarray,
    stars: np.ndarray,
    index: ItemIndex,
    normalization: Normalization,
    fold_in: FoldIn | None = None,
) -> VersionFeatures:
    """compute_features of ratings given as arrays: movie_ids (n,) ints, ascending and unique;
    stars (n,) float64. The arithmetic of recsys.features.user_preferences on the same
    values, bit for bit (what the bulk loader uses: no dict per user). The code, with
    `fold_in`, is folded in from the float32 preferences the hash stores, as the model
    service would fold in that vector."""
    columns = index.columns(movie_ids)
    known = columns >= 0
    preferences, user_mean = normalization.preferences(columns[known], stars[known])
    preferences = preferences.astype(np.float32)
    code = fold_in.code(columns[known], preferences) if fold_in is not None else None
    return VersionFeatures(user_mean, np.asarray(movie_ids, np.int64)[known], preferences, code)


def apply_args(
    expected_revision: int,
    to_set: dict[int, float],
    to_delete: list[int],
    after: dict[int, float],
    features: list[VersionFeatures],
    stale: int = 0,
    *,
    stamps_set: dict[bytes, int] | None = None,
    stamps_delete: list[bytes] | None = None,
    deadline_us: int = 0,
) -> list[bytes | int]:
    """ARGV of APPLY_SCRIPT; `after` is every rating once the change is applied; the last
    `stale` keys are user hashes to delete; `stamps_set` / `stamps_delete` are fields of the
    stamps hash (a movie id in decimal, or layout.STAMP_USER_DELETED); `deadline_us` (0:
    none) is when Redis must stop applying it."""
    pairs: list[bytes] = []
    for movie_id, rating in sorted(to_set.items()):
        pairs += [str(movie_id).encode(), layout.encode_rating(rating)]
    stamp_pairs: list[bytes] = []
    for name, stamp_us in sorted((stamps_set or {}).items()):
        stamp_pairs += [name, layout.encode_stamp(stamp_us)]
    return script_args(
        expected_revision,
        pairs,
        [str(m).encode() for m in sorted(to_delete)],
        layout.encode_packed_ratings(after),
        [version_features.encoded() for version_features in features],
        stale,
        stamp_pairs=stamp_pairs,
        stamp_deletes=sorted(stamps_delete or []),
        deadline_us=deadline_us,
    )


def script_args(
    expected_revision: int,
    set_pairs: list[bytes],
    delete_fields: list[bytes],
    packed_ratings: bytes,
    encoded_features: list[tuple[bytes, bytes, bytes]],
    stale: int = 0,
    *,
    stamp_pairs: Sequence[bytes] = (),
    stamp_deletes: Sequence[bytes] = (),
    deadline_us: int = 0,
) -> list[bytes | int]:
    """ARGV of APPLY_SCRIPT from parts already encoded: set_pairs is field, value, field,
    value… of the ratings hash (movie id in decimal, layout.encode_rating), delete_fields its
    fields to delete, packed_ratings every rating after the change
    (layout.encode_packed_ratings), encoded_features (mean, prefs, code) per user hash to write
    (VersionFeatures.encoded), stamp_pairs / stamp_deletes the same for the stamps hash."""
    return [
        str(expected_revision).encode(),
        int(deadline_us),
        len(set_pairs) // 2,
        *set_pairs,
        len(delete_fields),
        *delete_fields,
        len(stamp_pairs) // 2,
        *stamp_pairs,
        len(stamp_deletes),
        *stamp_deletes,
        packed_ratings,
        stale,
        *(value for pair in encoded_features for value in pair),
    ]


def decode_revision(raw: bytes | None) -> int:
    return int(raw) if raw is not None else 0


# --- last writer wins: the pure part of a write -------------------------------------------


@dataclass
class UserState:
    """A user as a writer reads them: ratings {movie id: stars}, the stamp of the latest
    online write of each movie {movie id: µs} (deletions included), and the stamp of the
    latest DeleteUser (0: none). A movie without a stamp was bulk loaded: stamp 0."""

    ratings: dict[int, float]
    stamps: dict[int, int] = field(default_factory=dict)
    deleted_us: int = 0

    @classmethod
    def decode(cls, raw_ratings: dict[bytes, bytes], raw_stamps: dict[bytes, bytes]):
        return cls(layout.decode_ratings(raw_ratings), *layout.decode_stamps(raw_stamps))

    def copy(self) -> UserState:
        return UserState(dict(self.ratings), dict(self.stamps), self.deleted_us)

    def stamp_of(self, movie_id: int) -> int:
        """What a write of `movie_id` must be newer than."""
        return max(self.stamps.get(movie_id, 0), self.deleted_us)


@dataclass(frozen=True)
class Upsert:
    ratings: dict[int, float]
    stamp_us: int


@dataclass(frozen=True)
class DeleteRatings:
    movie_ids: tuple[int, ...]
    stamp_us: int


@dataclass(frozen=True)
class DeleteUser:
    stamp_us: int


Change = Upsert | DeleteRatings | DeleteUser


@dataclass(frozen=True)
class Outcome:
    """What one change did. ratings: the user's ratings right after it; created: the user
    had no ratings before it and has some after; missing: requested ids the user had not
    rated (DeleteRatings); removed: ratings it removed (DeleteUser); applied: movies whose
    stored state it changed (0: every movie lost to a newer stamp, the change was
    superseded — not an error); features: each live version's features of `ratings` when
    the round that wrote it computed them (it was the round's last change), so its answer
    needs no second computation."""

    ratings: dict[int, float]
    created: bool = False
    missing: tuple[int, ...] = ()
    removed: int = 0
    applied: int = 0
    features: dict[str, VersionFeatures] | None = None


def apply_change(state: UserState, user_id: int, change: Change) -> Outcome:
    """Apply `change` to `state` in place, movie by movie: a movie is set or deleted only
    when the change's stamp is newer than state.stamp_of(movie). A deletion leaves its stamp
    as a tombstone, so a write accepted before it but arriving after it cannot bring the
    rating back; DeleteUser raises the user's deletion stamp and drops the movie stamps it
    makes redundant. NotFound (nothing changed) when a deletion finds no ratings."""
    stamp = change.stamp_us
    if isinstance(change, Upsert):
        had_ratings, applied = bool(state.ratings), 0
        for movie_id, rating in change.ratings.items():
            if stamp > state.stamp_of(movie_id):
                state.ratings[movie_id] = rating
                state.stamps[movie_id] = stamp
                applied += 1
        created = not had_ratings and bool(state.ratings)
        return Outcome(dict(state.ratings), created=created, applied=applied)
    if not state.ratings:
        raise NotFound(f"user {user_id} has no stored ratings")
    if isinstance(change, DeleteRatings):
        movie_ids = sorted(set(change.movie_ids))
        missing = tuple(m for m in movie_ids if m not in state.ratings)
        applied = 0
        for movie_id in movie_ids:
            if stamp > state.stamp_of(movie_id):
                state.ratings.pop(movie_id, None)
                state.stamps[movie_id] = stamp  # a tombstone
                applied += 1
        return Outcome(dict(state.ratings), missing=missing, applied=applied)
    removed = [m for m in state.ratings if stamp > state.stamp_of(m)]
    for movie_id in removed:
        del state.ratings[movie_id]
    if stamp > state.deleted_us:
        state.deleted_us = stamp
        state.stamps = {m: s for m, s in state.stamps.items() if s > stamp}
    return Outcome(dict(state.ratings), removed=len(removed), applied=len(removed))


@dataclass(frozen=True)
class StateDiff:
    """What the script must change to turn one UserState into another."""

    to_set: dict[int, float]
    to_delete: list[int]
    stamps_set: dict[bytes, int]
    stamps_delete: list[bytes]

    def __bool__(self) -> bool:
        return bool(self.to_set or self.to_delete or self.stamps_set or self.stamps_delete)


def state_diff(before: UserState, after: UserState) -> StateDiff:
    def fields(state: UserState) -> dict[bytes, int]:
        named = {str(m).encode(): s for m, s in state.stamps.items()}
        if state.deleted_us:
            named[layout.STAMP_USER_DELETED] = state.deleted_us
        return named

    old_stamps, new_stamps = fields(before), fields(after)
    return StateDiff(
        to_set={m: r for m, r in after.ratings.items() if before.ratings.get(m) != r},
        to_delete=[m for m in before.ratings if m not in after.ratings],
        stamps_set={f: s for f, s in new_stamps.items() if old_stamps.get(f) != s},
        stamps_delete=[f for f in old_stamps if f not in new_stamps],
    )


class StampClock:
    """Arrival stamps for writes that come without one: wall-clock µs since the Unix epoch,
    strictly increasing within the process (as the gateway's own clock)."""

    def __init__(self):
        self._last = 0

    def now_us(self) -> int:
        self._last = max(time.time_ns() // 1000, self._last + 1)
        return self._last


_ARRIVALS = StampClock()


def arrival_stamp() -> int:
    """The stamp of a write that arrived without one: now, on this process's clock."""
    return _ARRIVALS.now_us()
