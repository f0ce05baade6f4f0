"""The feature service's Redis layout — an API shared by the loader, the feature service and
anything else that reads or writes these keys. Key builders and codecs are pure (no I/O).

Keys (P = prefix, default "recsys"; V = model version, e.g. 20261127T183501123456Z;
U = MovieLens user id in decimal):

    P:active                 string      the active model version, e.g. "20261127T183501123456Z";
                                         set last, only once the version is fully written
    P:versions               hash        live versions → status ("loading" | "ready"): the
                                         versions whose user hashes every write maintains
                                         (the one being loaded, the active one, the previous)
    P:ver:V:meta             hash        global_mean (μ, stars), rating_min, rating_max,
                                         item_count (model columns), user_count (users loaded),
                                         loaded_at (RFC 3339 UTC), status ("loading" | "ready");
                                         fold_in_l2 (λ, Python repr of a float) and code_size
                                         (k) only for a version whose users have codes
    P:ver:V:items            string      movie ids in model column order: little-endian int64,
                                         8 bytes per column
    P:ver:V:item_means       string      b_i per column (stars): little-endian float64, 8 bytes
                                         per column, same order as items
    P:ver:V:item_codes       string      only for a version whose users have codes (the item
                                         kind): each column's item code h, little-endian
                                         float32, code_size per column, column order
    P:ver:V:catalog          hash        movie id (decimal) → UTF-8 JSON
                                         {"title": "Star Wars (1977)", "genres": ["Action"]}
    P:ver:V:catalog_ids      sorted set  movie ids, score = movie id (pagination by id)
    P:ver:V:user:{U}         hash        mean: b_u in stars (Python repr of a float, "0.125");
                                         prefs: the preference vector, pairs of little-endian
                                         int32 movie id + float32 preference, 8 bytes per rated
                                         model item, ascending movie id; ratings: every rating
                                         of the user packed the same way (int32 movie id +
                                         float32 stars), a copy of P:ratings:{U} written in the
                                         same atomic step, so a read needs no HGETALL;
                                         code (versions with item codes only): the user's code w
                                         folded in from prefs, code_size + 1 little-endian
                                         float32, written in the same step as prefs
    P:ratings:{U}            hash        movie id (decimal) → rating (shortest decimal, "4.5");
                                         every rating of the user, version-independent: the
                                         source of truth the versioned user hashes derive from
    P:rev:{U}                string      the user's revision: an integer incremented by every
                                         write to the user's ratings (kept after the user is
                                         deleted, so a bulk load never resurrects them)
    P:stamps:{U}             hash        movie id (decimal) → acceptance stamp (µs since the
                                         Unix epoch, decimal) of the latest online write of
                                         that movie, a deletion included (a tombstone);
                                         "deleted" → the stamp of the latest DeleteUser (movie
                                         stamps not newer than it are dropped). Bulk-loaded
                                         ratings have no stamp (0: older than any online
                                         write). Kept after the user is deleted

The braces in `user:{U}`, `ratings:{U}`, `rev:{U}` and `stamps:{U}` are the Redis Cluster hash
tag: every key of one user hashes to the same slot, so one Lua script can update a user's
ratings, stamps, revision and every live version's features atomically, on one Redis or a
Cluster. Writers read revision, ratings and stamps, decide per movie (last writer wins by
acceptance stamp), compute, and the script applies the change only if the revision is
still the one they read. Versions are immutable once their status is "ready". A missing
hash field means "absent".
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Sequence

import numpy as np

STATUS_LOADING = "loading"
STATUS_READY = "ready"

META_FIELDS = (
    "global_mean",
    "rating_min",
    "rating_max",
    "item_count",
    "user_count",
    "loaded_at",
    "status",
    "fold_in_l2",
    "code_size",
)
USER_MEAN = b"mean"
USER_PREFS = b"prefs"
USER_RATINGS = b"ratings"
USER_CODE = b"code"
STAMP_USER_DELETED = b"deleted"  # P:stamps:{U} field: the stamp of the last DeleteUser

ITEM_ID_DTYPE = np.dtype("<i8")
ITEM_MEAN_DTYPE = np.dtype("<f8")
PREFERENCE_DTYPE = np.dtype([("movie_id", "<i4"), ("value", "<f4")])
"""One entry of a packed preference vector: 8 bytes, no padding."""

_PREFIX = re.compile(r"^[A-Za-z0-9_.:-]+$")
_VERSION = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
_INT32_MAX = np.iinfo(np.int32).max


def is_valid_version(version: str) -> bool:
    """Letters, digits, '_', '.', '-' (no ':', braces or glob characters), not empty."""
    return bool(_VERSION.match(version))


class KeyLayout:
    """Builds every key of one deployment's prefix, as bytes.

    >>> KeyLayout("recsys").user("20260101T000000000000Z", 42)
    b'recsys:ver:20260101T000000000000Z:user:{42}'
    """

    def __init__(self, prefix: str = "recsys"):
        if not _PREFIX.match(prefix):
            raise ValueError(f"bad Redis key prefix {prefix!r}: use letters, digits, _ . : -")
        self.prefix = prefix

    def active(self) -> bytes:
        return f"{self.prefix}:active".encode()

    def versions(self) -> bytes:
        return f"{self.prefix}:versions".encode()

    def meta(self, version: str) -> bytes:
        return self._versioned(version, "meta")

    def items(self, version: str) -> bytes:
        return self._versioned(version, "items")

    def item_means(self, version: str) -> bytes:
        return self._versioned(version, "item_means")

    def item_codes(self, version: str) -> bytes:
        return self._versioned(version, "item_codes")

    def catalog(self, version: str) -> bytes:
        return self._versioned(version, "catalog")

    def catalog_ids(self, version: str) -> bytes:
        return self._versioned(version, "catalog_ids")

    def user(self, version: str, user_id: int) -> bytes:
        return self._versioned(version, f"user:{{{_user(user_id)}}}")

    def ratings(self, user_id: int) -> bytes:
        return f"{self.prefix}:ratings:{{{_user(user_id)}}}".encode()

    def revision(self, user_id: int) -> bytes:
        return f"{self.prefix}:rev:{{{_user(user_id)}}}".encode()

    def stamps(self, user_id: int) -> bytes:
        return f"{self.prefix}:stamps:{{{_user(user_id)}}}".encode()

    def ratings_pattern(self) -> bytes:
        """SCAN MATCH pattern for every user's ratings hash."""
        return f"{self.prefix}:ratings:{{*}}".encode()

    def version_users_pattern(self, version: str) -> bytes:
        """SCAN MATCH pattern for every user hash of one version."""
        return self._versioned(version, "user:{*}")

    @staticmethod
    def user_of_ratings_key(key: bytes) -> int:
        """The user id inside a ratings key, or any per-user key (the part between the
        braces)."""
        return int(key[key.index(b"{") + 1 : key.index(b"}")])

    def version_pattern(self, version: str) -> bytes:
        """SCAN MATCH pattern for every key of one version's namespace."""
        return self._versioned(version, "*")

    def namespaces_pattern(self) -> bytes:
        """SCAN MATCH pattern for every key of every version's namespace."""
        return f"{self.prefix}:ver:*".encode()

    def version_of_key(self, key: bytes) -> str | None:
        """The version whose namespace holds `key` (b"P:ver:V:..." → "V"), else None."""
        head = f"{self.prefix}:ver:".encode()
        if not key.startswith(head):
            return None
        version, sep, _ = key[len(head) :].partition(b":")
        name = version.decode(errors="replace")
        return name if sep and is_valid_version(name) else None

    def _versioned(self, version: str, suffix: str) -> bytes:
        if not is_valid_version(version):
            raise ValueError(f"bad model version {version!r}")
        return f"{self.prefix}:ver:{version}:{suffix}".encode()


def _user(user_id: int) -> int:
    user_id = int(user_id)
    if user_id <= 0:
        raise ValueError(f"user id must be positive, got {user_id}")
    return user_id


# --- item ids and item means: the model's columns -------------------------------------------


def encode_item_ids(item_ids: Sequence[int] | np.ndarray) -> bytes:
    """(n_items,) movie ids in column order → 8·n bytes, little-endian int64."""
    return np.asarray(item_ids, dtype=np.int64).astype(ITEM_ID_DTYPE).tobytes()


def decode_item_ids(raw: bytes) -> np.ndarray:
    """The inverse of encode_item_ids: (n_items,) int64."""
    return np.frombuffer(raw, dtype=ITEM_ID_DTYPE).astype(np.int64)


def encode_item_means(item_means: Sequence[float] | np.ndarray) -> bytes:
    """(n_items,) b_i in stars → 8·n bytes, little-endian float64."""
    return np.asarray(item_means, dtype=np.float64).astype(ITEM_MEAN_DTYPE).tobytes()


def decode_item_means(raw: bytes) -> np.ndarray:
    """The inverse of encode_item_means: (n_items,) float64."""
    return np.frombuffer(raw, dtype=ITEM_MEAN_DTYPE).astype(np.float64)


CODE_DTYPE = np.dtype("<f4")  # item codes and user codes


def encode_item_codes(item_codes: np.ndarray) -> bytes:
    """(n_items, k) item codes in column order → 4·n·k bytes, little-endian float32."""
    return np.asarray(item_codes, dtype=np.float32).astype(CODE_DTYPE).tobytes()


def decode_item_codes(raw: bytes, code_size: int) -> np.ndarray:
    """The inverse of encode_item_codes: (n_items, code_size) float32."""
    if code_size <= 0 or len(raw) % (CODE_DTYPE.itemsize * code_size):
        raise ValueError(f"item codes of {len(raw)} bytes do not hold codes of {code_size}")
    return np.frombuffer(raw, dtype=CODE_DTYPE).astype(np.float32).reshape(-1, code_size)


def encode_user_code(code: np.ndarray) -> bytes:
    """A user's code w, (k + 1,) → 4·(k + 1) bytes, little-endian float32."""
    return np.asarray(code, dtype=np.float64).astype(CODE_DTYPE).tobytes()


def decode_user_code(raw: bytes) -> np.ndarray:
    """The inverse of encode_user_code: (k + 1,) float32."""
    if len(raw) % CODE_DTYPE.itemsize:
        raise ValueError(f"a user code of {len(raw)} bytes: not a multiple of 4")
    return np.frombuffer(raw, dtype=CODE_DTYPE).astype(np.float32)


# --- a user's preference vector, mean and ratings -------------------------------------------


def encode_preferences(movie_ids: np.ndarray, values: np.ndarray) -> bytes:
    """Sparse preferences → 8·n bytes of (int32 movie id, float32 value), ascending id.
    movie_ids: (n,) ints in 1..2^31-1, unique; values: (n,) preferences in stars."""
    movie_ids = np.asarray(movie_ids, dtype=np.int64)
    values = np.asarray(values, dtype=np.float32)
    if movie_ids.shape != values.shape or movie_ids.ndim != 1:
        raise ValueError("movie_ids and values must be 1-D and of the same length")
    if len(movie_ids) and (movie_ids.min() <= 0 or movie_ids.max() > _INT32_MAX):
        raise ValueError("movie ids must be in 1..2^31-1")
    order = np.argsort(movie_ids, kind="stable")
    packed = np.empty(len(movie_ids), dtype=PREFERENCE_DTYPE)
    packed["movie_id"] = movie_ids[order]
    packed["value"] = values[order]
    return packed.tobytes()


def decode_preferences(raw: bytes) -> tuple[np.ndarray, np.ndarray]:
    """The inverse of encode_preferences: ((n,) int64 movie ids, (n,) float32 values)."""
    if len(raw) % PREFERENCE_DTYPE.itemsize:
        raise ValueError(f"packed preferences of {len(raw)} bytes: not a multiple of 8")
    packed = np.frombuffer(raw, dtype=PREFERENCE_DTYPE)
    return packed["movie_id"].astype(np.int64), packed["value"].astype(np.float32)


def encode_packed_ratings(ratings: dict[int, float]) -> bytes:
    """{movie id: stars} → the packed form of a user hash's `ratings` field."""
    movie_ids = np.fromiter(ratings.keys(), np.int64, len(ratings))
    return encode_preferences(movie_ids, np.fromiter(ratings.values(), np.float32, len(ratings)))


def decode_packed_ratings(raw: bytes) -> dict[int, float]:
    """The inverse of encode_packed_ratings (float32 stars are exact for x.0 and x.5)."""
    movie_ids, values = decode_preferences(raw)
    return dict(zip(movie_ids.tolist(), values.astype(float).tolist(), strict=True))


def encode_user_mean(user_mean: float) -> bytes:
    """b_u as the repr of a Python float: exact, e.g. b'-0.3125'."""
    return repr(float(user_mean)).encode()


def decode_user_mean(raw: bytes) -> float:
    return float(raw)


def encode_rating(rating: float) -> bytes:
    """A rating as the shortest decimal that reads back as the same float32: b'4.5', b'5'."""
    return np.format_float_positional(np.float32(rating), trim="-").encode()


def decode_ratings(fields: dict[bytes, bytes]) -> dict[int, float]:
    """A ratings hash as returned by HGETALL → {movie id: rating in stars}."""
    return {int(movie_id): float(rating) for movie_id, rating in fields.items()}


def encode_stamp(stamp_us: int) -> bytes:
    """An acceptance stamp, µs since the Unix epoch, in decimal: b'1764633600000000'."""
    return str(int(stamp_us)).encode()


def decode_stamps(fields: dict[bytes, bytes]) -> tuple[dict[int, int], int]:
    """A stamps hash as returned by HGETALL → ({movie id: stamp µs}, the user-deletion
    stamp µs, 0 when none)."""
    deleted = int(fields.get(STAMP_USER_DELETED, 0))
    movies = {int(k): int(v) for k, v in fields.items() if k != STAMP_USER_DELETED}
    return movies, deleted


# --- the catalog ----------------------------------------------------------------------------


def split_genres(genres: str | float | None) -> list[str]:
    """MovieLens's "Action|Sci-Fi" → ["Action", "Sci-Fi"]; empty, None or NaN → []."""
    if not isinstance(genres, str):
        return []
    return [genre for genre in genres.split("|") if genre and genre != "(no genres listed)"]


def encode_catalog_entry(title: str, genres: Iterable[str]) -> bytes:
    """UTF-8 JSON {"title": ..., "genres": [...]}, compact, non-ASCII kept as is."""
    entry = {"title": title, "genres": list(genres)}
    return json.dumps(entry, ensure_ascii=False, separators=(",", ":")).encode()


def decode_catalog_entry(raw: bytes) -> tuple[str, tuple[str, ...]]:
    """The inverse of encode_catalog_entry: (title, genres)."""
    entry = json.loads(raw)
    return entry["title"], tuple(entry.get("genres", ()))
