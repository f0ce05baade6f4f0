"""Sparse rows as packed arrays: the form in which the gateway, the feature service and the
model service pass many users' vectors in one call. On the wire each list is little-endian
bytes (int32 offsets and movie ids, float32 values), read with `np.frombuffer`, so a batch
costs no Python object per entry. No gRPC in here: the servicers move these bytes in and
out of their messages (`PackedRows` in the model proto, `PackedUserFeatures` in the
feature proto)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from recsys.errors import InvalidArgument

INT32 = np.dtype("<i4")
INT64 = np.dtype("<i8")
FLOAT32 = np.dtype("<f4")
FLOAT64 = np.dtype("<f8")


@dataclass(frozen=True, eq=False)  # holds arrays: compared by identity
class Rows:
    """n sparse rows: row j's entries are [offsets[j], offsets[j + 1]) of `movie_ids` and,
    when there are values, of `values`.

    offsets: (n + 1,) int64, from 0, never decreasing; movie_ids: (entries,) int32;
    values: (entries,) float32, or None for lists of ids only."""

    offsets: np.ndarray
    movie_ids: np.ndarray
    values: np.ndarray | None = None

    def __len__(self) -> int:
        return len(self.offsets) - 1

    @classmethod
    def from_lists(
        cls, movie_ids: Sequence[np.ndarray], values: Sequence[np.ndarray] | None = None
    ) -> Rows:
        """Rows from one array of movie ids (and one of values) per row."""
        lengths = np.fromiter((len(ids) for ids in movie_ids), np.int64, len(movie_ids))
        offsets = np.zeros(len(movie_ids) + 1, np.int64)
        np.cumsum(lengths, out=offsets[1:])
        ids = np.concatenate(movie_ids).astype(INT32) if movie_ids else np.empty(0, INT32)
        if values is None:
            return cls(offsets, ids)
        vals = np.concatenate(values).astype(FLOAT32) if values else np.empty(0, FLOAT32)
        return cls(offsets, ids, vals)

    @classmethod
    def from_entries(cls, entry_rows: np.ndarray, movie_ids: np.ndarray, n: int) -> Rows:
        """Rows of ids only from (row, movie id) pairs, each row's ids ascending."""
        order = np.lexsort((movie_ids, entry_rows))
        offsets = np.zeros(n + 1, np.int64)
        np.cumsum(np.bincount(entry_rows, minlength=n), out=offsets[1:])
        return cls(offsets, np.asarray(movie_ids, INT32)[order])

    @classmethod
    def empty(cls, n: int) -> Rows:
        return cls(np.zeros(n + 1, np.int64), np.empty(0, INT32), np.empty(0, FLOAT32))

    @classmethod
    def from_bytes(cls, offsets: bytes, movie_ids: bytes, values: bytes, field: str) -> Rows:
        """Rows from the wire, checked; InvalidArgument naming `field` (e.g. "packed.
        preferences") for lists of the wrong size, offsets out of order or ids ≤ 0."""
        for name, raw in (("offsets", offsets), ("movie_ids", movie_ids), ("values", values)):
            if len(raw) % 4:
                raise InvalidArgument(
                    f"{len(raw)} bytes is not a whole number of 4-byte entries",
                    field=f"{field}.{name}",
                )
        starts = np.frombuffer(offsets, INT32).astype(np.int64)
        ids = np.frombuffer(movie_ids, INT32)
        if len(starts) == 0 or starts[0] != 0 or starts[-1] != len(ids):
            raise InvalidArgument(
                f"offsets must run from 0 to the number of movie ids ({len(ids)})",
                field=f"{field}.offsets",
            )
        if (np.diff(starts) < 0).any():
            raise InvalidArgument("offsets must never decrease", field=f"{field}.offsets")
        if (ids <= 0).any():
            raise InvalidArgument("movie ids must be positive", field=f"{field}.movie_ids")
        vals = None
        if values:
            vals = np.frombuffer(values, FLOAT32)
            if len(vals) != len(ids):
                raise InvalidArgument(
                    f"{len(vals)} values for {len(ids)} movie ids", field=f"{field}.values"
                )
        return cls(starts, ids, vals)

    def to_bytes(self) -> tuple[bytes, bytes, bytes]:
        """(offsets, movie_ids, values) as the wire's little-endian bytes."""
        values = b"" if self.values is None else self.values.astype(FLOAT32, copy=False).tobytes()
        return (
            self.offsets.astype(INT32).tobytes(),
            self.movie_ids.astype(INT32, copy=False).tobytes(),
            values,
        )

    def lengths(self) -> np.ndarray:
        return np.diff(self.offsets)

    def entry_rows(self) -> np.ndarray:
        """(entries,) int64: the row of each entry."""
        return np.repeat(np.arange(len(self), dtype=np.int64), self.lengths())

    def ids(self, row: int) -> np.ndarray:
        return self.movie_ids[self.offsets[row] : self.offsets[row + 1]]

    def row_values(self, row: int) -> np.ndarray:
        return self.values[self.offsets[row] : self.offsets[row + 1]]

    def duplicate_row(self) -> int | None:
        """The first row that holds a movie id twice, or None."""
        if len(self.movie_ids) < 2:
            return None
        rows = self.entry_rows()
        order = np.lexsort((self.movie_ids, rows))
        same = (np.diff(rows[order]) == 0) & (np.diff(self.movie_ids[order]) == 0)
        return int(rows[order][1:][same].min()) if same.any() else None


def concatenate(parts: Sequence[Rows]) -> Rows:
    """The rows of every part, in order (all with values, or all without)."""
    starts = np.cumsum([0] + [len(p.movie_ids) for p in parts[:-1]])
    offsets = np.concatenate(
        [np.zeros(1, np.int64)] + [p.offsets[1:] + s for p, s in zip(parts, starts, strict=True)]
    )
    ids = np.concatenate([p.movie_ids for p in parts])
    if parts[0].values is None:
        return Rows(offsets, ids)
    return Rows(offsets, ids, np.concatenate([p.values for p in parts]))


@dataclass(frozen=True, eq=False)
class Codes:
    """n users' codes (recsys.fold_in), each of one length or none: row j's code is
    values[offsets[j]:offsets[j + 1]], empty when the row has none (an inline user, a
    version whose kind keeps no codes). offsets: (n + 1,) int64; values: float32."""

    offsets: np.ndarray
    values: np.ndarray

    def __len__(self) -> int:
        return len(self.offsets) - 1

    @classmethod
    def from_lists(cls, codes: Sequence[np.ndarray | None]) -> Codes:
        """Codes from one array (or None: no code) per row."""
        parts = [np.empty(0, FLOAT32) if c is None else np.asarray(c, FLOAT32) for c in codes]
        offsets = np.zeros(len(parts) + 1, np.int64)
        np.cumsum([len(p) for p in parts], out=offsets[1:])
        values = np.concatenate(parts).astype(FLOAT32) if parts else np.empty(0, FLOAT32)
        return cls(offsets, values)

    @classmethod
    def none(cls, n: int) -> Codes:
        return cls(np.zeros(n + 1, np.int64), np.empty(0, FLOAT32))

    @classmethod
    def from_bytes(cls, offsets: bytes, values: bytes, n: int, field: str) -> Codes:
        """Codes from the wire for n rows, checked: empty offsets mean no row has a code;
        InvalidArgument naming `field` for lists of the wrong size or offsets out of order.
        The length of each code is the model's to check."""
        if not offsets and not values:
            return cls.none(n)
        for name, raw in (("offsets", offsets), ("values", values)):
            if len(raw) % 4:
                raise InvalidArgument(
                    f"{len(raw)} bytes is not a whole number of 4-byte entries",
                    field=f"{field}.{name}",
                )
        starts = np.frombuffer(offsets, INT32).astype(np.int64)
        vals = np.frombuffer(values, FLOAT32)
        if len(starts) != n + 1 or starts[0] != 0 or starts[-1] != len(vals):
            raise InvalidArgument(
                f"offsets must be {n + 1} numbers from 0 to the number of values ({len(vals)})",
                field=f"{field}.offsets",
            )
        if (np.diff(starts) < 0).any():
            raise InvalidArgument("offsets must never decrease", field=f"{field}.offsets")
        return cls(starts, vals)

    def to_bytes(self) -> tuple[bytes, bytes]:
        """(offsets, values) as the wire's little-endian bytes; (b"", b"") when no row has a
        code."""
        if not len(self.values):
            return b"", b""
        return self.offsets.astype(INT32).tobytes(), self.values.astype(FLOAT32).tobytes()

    def code(self, row: int) -> np.ndarray | None:
        start, end = self.offsets[row], self.offsets[row + 1]
        return self.values[start:end] if end > start else None
