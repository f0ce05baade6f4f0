"""Loaders for the MovieLens file formats (ML-1M, ML-100K, ml-latest / ml-latest-small and the
ml-25m / ml-32m downloads), detected from a directory's contents and returned as one tidy
shape. Ratings go straight into compact NumPy columns (20 bytes a rating: 500 MB for ML-25M),
and every check on them is vectorized."""

from __future__ import annotations

import csv
import io
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from recsys.errors import DataFormatError
from recsys.rating_scale import DEFAULT_RATING_SCALE, HALF_STAR_RATING_SCALE, on_scale

RATING_COLUMNS = ["user_id", "item_id", "rating", "timestamp"]
RATING_DTYPES = {
    "user_id": np.int32,
    "item_id": np.int32,
    "rating": np.float32,
    "timestamp": np.int64,
}
MAX_ID = np.iinfo(np.int32).max
READ_CHUNK_ROWS = 1_000_000  # ratings parsed at a time
ITEM_COLUMNS = ["item_id", "title", "genres"]

# ML-100K keeps genres as 19 flag columns; their names, in order (also in its u.genre).
ML100K_GENRES = [
    "unknown",
    "Action",
    "Adventure",
    "Animation",
    "Children's",
    "Comedy",
    "Crime",
    "Documentary",
    "Drama",
    "Fantasy",
    "Film-Noir",
    "Horror",
    "Musical",
    "Mystery",
    "Romance",
    "Sci-Fi",
    "Thriller",
    "War",
    "Western",
]


@dataclass(frozen=True)
class RatingData:
    """One MovieLens dataset.

    ratings: columns user_id (int32), item_id (int32), rating (float32), timestamp (int64,
        seconds), one row per (user, item) pair, in file order.
    items: columns item_id (int32), title (str), genres (str, "|"-separated), one row per
        item in the catalog (it may list items nobody rated).
    """

    name: str
    ratings: pd.DataFrame
    items: pd.DataFrame
    rating_scale: tuple[float, float]


@dataclass(frozen=True)
class _Format:
    name: str
    ratings_file: str
    items_file: str


_FORMATS = [
    _Format("ml-1m", "ratings.dat", "movies.dat"),
    _Format("ml-100k", "u.data", "u.item"),
    _Format("ml-latest", "ratings.csv", "movies.csv"),
]


def detect_format(directory: Path) -> str:
    """The format name of a MovieLens directory, from the files it holds."""
    directory = Path(directory)
    if not directory.is_dir():
        raise DataFormatError(directory, None, "not a directory")
    for fmt in _FORMATS:
        if (directory / fmt.ratings_file).is_file():
            return fmt.name
    expected = ", ".join(f.ratings_file for f in _FORMATS)
    raise DataFormatError(
        directory, None, f"no MovieLens ratings file found (looked for {expected})"
    )


def load_movielens(directory: Path | str) -> RatingData:
    """Read a MovieLens directory in any of the three supported formats."""
    directory = Path(directory)
    name = detect_format(directory)
    fmt = next(f for f in _FORMATS if f.name == name)
    ratings_path = directory / fmt.ratings_file
    items_path = directory / fmt.items_file
    if name == "ml-1m":
        ratings = _read_ratings(ratings_path, "::", header=False)
        items = _read_ml1m_items(items_path) if items_path.is_file() else None
    elif name == "ml-100k":
        ratings = _read_ratings(ratings_path, "\t", header=False)
        items = _read_ml100k_items(items_path) if items_path.is_file() else None
    else:
        ratings = _read_ratings(ratings_path, ",", header=True)
        items = _read_latest_items(items_path) if items_path.is_file() else None
    if items is None:
        items = _untitled_items(ratings)
    scale = HALF_STAR_RATING_SCALE if name == "ml-latest" else DEFAULT_RATING_SCALE
    _check_ratings(ratings_path, ratings, scale, header=(name == "ml-latest"))
    return RatingData(name=name, ratings=ratings, items=items, rating_scale=scale)


def _read_ratings(path: Path, sep: str, *, header: bool) -> pd.DataFrame:
    """Parse a ratings file with pandas' C parser, READ_CHUNK_ROWS lines at a time, into
    RATING_DTYPES columns allocated once (a line count bounds the rows), so that the peak is
    the columns plus one chunk; on failure, find and name the bad line."""
    source: Path | io.BytesIO = path
    if sep == "::":  # the C parser splits on one character; ML-1M is small enough to copy
        source = io.BytesIO(path.read_bytes().replace(b"::", b"\t"))
    capacity = _count_lines(path) + 1
    columns = {name: np.empty(capacity, dtype) for name, dtype in RATING_DTYPES.items()}
    rows = 0
    try:
        chunks = pd.read_csv(
            source,
            sep="\t" if sep == "::" else sep,
            header=0 if header else None,
            names=RATING_COLUMNS,
            dtype=RATING_DTYPES,
            engine="c",
            chunksize=READ_CHUNK_ROWS,
        )
        with chunks:
            for chunk in chunks:
                for name, column in columns.items():
                    column[rows : rows + len(chunk)] = chunk[name].to_numpy()
                rows += len(chunk)
    except (ValueError, OverflowError, pd.errors.ParserError) as exc:
        line, problem = _first_bad_line(path, sep, header=header)
        raise DataFormatError(path, line, problem or str(exc)) from None
    return pd.DataFrame({name: column[:rows] for name, column in columns.items()}, copy=False)


def _count_lines(path: Path) -> int:
    """Line ends in the file ("\n", "\r\n" or a lone "\r", as the C parser splits), read
    16 MiB at a time."""
    newlines = returns = 0
    with open(path, "rb") as data:
        for block in iter(lambda: data.read(1 << 24), b""):
            newlines += block.count(b"\n")
            returns += block.count(b"\r")
    return max(newlines, returns)


_INT = re.compile(r"^-?\d+$")
_FLOAT = re.compile(r"^-?\d+(\.\d+)?$")


def _first_bad_line(path: Path, sep: str, *, header: bool) -> tuple[int | None, str | None]:
    """Scan line by line for the first malformed ratings line: (1-based line, problem)."""
    with open(path, encoding="latin-1") as lines:
        for number, line in enumerate(lines, start=1):
            line = line.rstrip("\r\n")
            if (header and number == 1) or not line.strip():
                continue
            fields = line.split(sep)
            if len(fields) != 4:
                found = len(fields)
                return number, f"expected 4 fields separated by {sep!r}, found {found}: {line!r}"
            user, item, rating, timestamp = fields
            for label, value, pattern in (
                ("user id", user, _INT),
                ("item id", item, _INT),
                ("rating", rating, _FLOAT),
                ("timestamp", timestamp, _INT),
            ):
                if not pattern.match(value.strip()):
                    return number, f"{label} {value!r} is not a number"
            for label, value in (("user id", user), ("item id", item)):
                if abs(int(value)) > MAX_ID:
                    return number, f"{label} {value.strip()} is out of range (at most {MAX_ID})"
    return None, None


def _check_ratings(path: Path, ratings: pd.DataFrame, scale: tuple[float, float], *, header: bool):
    """Values that parse but make no sense: ids ≤ 0, ratings off the scale, duplicate pairs.
    Each check is one vectorized pass, in this order (the duplicate check needs positive ids)."""
    offset = 2 if header else 1  # row 0 is file line 1 (or 2 below a header)
    low, high = scale
    stars = ratings["rating"]
    checks = [
        (lambda: stars.isna().to_numpy(), "rating is missing or not a number"),
        (lambda: (ratings["user_id"] <= 0).to_numpy(), "user id must be positive"),
        (lambda: (ratings["item_id"] <= 0).to_numpy(), "item id must be positive"),
        (lambda: ~on_scale(stars, scale), f"rating outside [{low}, {high}]"),
        (lambda: _repeated_pairs(ratings), "duplicate (user, item) pair"),
    ]
    for find_bad, problem in checks:
        bad = find_bad()
        if bad is not None and bad.any():
            row = int(np.flatnonzero(bad)[0])
            values = ratings.iloc[row]
            detail = (
                f"user {int(values.user_id)}, item {int(values.item_id)}, rating {values.rating}"
            )
            raise DataFormatError(path, row + offset, f"{problem} ({detail})")


def _pair_keys(ratings: pd.DataFrame, start: int = 0, end: int | None = None) -> np.ndarray:
    """(n,) int64 user_id << 32 | item_id of rows start..end: one number per (user, item)
    pair (ids > 0)."""
    keys = ratings["user_id"].to_numpy()[start:end].astype(np.int64)
    keys <<= 32
    keys |= ratings["item_id"].to_numpy()[start:end]
    return keys


def _repeated_pairs(ratings: pd.DataFrame) -> np.ndarray | None:
    """None when every (user, item) pair is unique, else (n,) bool marking the rows whose
    pair came earlier in the file. A file sorted by user, then item (as ml-latest files
    come) is seen to be so a chunk at a time; any other is sorted by one int64 key a rating."""
    rows = len(ratings)
    for start in range(0, rows, READ_CHUNK_ROWS):
        keys = _pair_keys(ratings, start, min(rows, start + READ_CHUNK_ROWS + 1))
        if not (keys[1:] > keys[:-1]).all():
            break
    else:
        return None
    keys = _pair_keys(ratings)
    keys.sort()
    if not (keys[1:] == keys[:-1]).any():
        return None
    return pd.Series(_pair_keys(ratings)).duplicated().to_numpy()


def _read_lines(path: Path) -> list[str]:
    return path.read_bytes().decode("latin-1").splitlines()


def _items_frame(path: Path, rows: list[tuple[int, str, str]]) -> pd.DataFrame:
    frame = pd.DataFrame(rows, columns=ITEM_COLUMNS)
    outside = frame["item_id"].abs() > MAX_ID
    if outside.any():
        item = frame["item_id"][outside].iloc[0]
        raise DataFormatError(path, None, f"movie id {item} is out of range (at most {MAX_ID})")
    frame["item_id"] = frame["item_id"].astype(np.int32)
    return frame


def _read_ml1m_items(path: Path) -> pd.DataFrame:
    rows = []
    for number, line in enumerate(_read_lines(path), start=1):
        if not line.strip():
            continue
        fields = line.split("::")
        if len(fields) != 3 or not _INT.match(fields[0]):
            raise DataFormatError(path, number, f"expected MovieID::Title::Genres, got {line!r}")
        rows.append((int(fields[0]), fields[1], fields[2]))
    return _items_frame(path, rows)


def _read_ml100k_items(path: Path) -> pd.DataFrame:
    rows = []
    for number, line in enumerate(_read_lines(path), start=1):
        if not line.strip():
            continue
        fields = line.split("|")
        if len(fields) != 5 + len(ML100K_GENRES) or not _INT.match(fields[0]):
            raise DataFormatError(
                path, number, f"expected {5 + len(ML100K_GENRES)} '|'-separated fields"
            )
        flags = fields[5:]
        genres = "|".join(g for g, flag in zip(ML100K_GENRES, flags, strict=True) if flag == "1")
        rows.append((int(fields[0]), fields[1], genres))
    return _items_frame(path, rows)


def _read_latest_items(path: Path) -> pd.DataFrame:
    rows = []
    text = path.read_bytes().decode("utf-8")
    reader = csv.reader(io.StringIO(text))
    for number, fields in enumerate(reader, start=1):
        if number == 1 or not fields:
            continue
        if len(fields) != 3 or not _INT.match(fields[0]):
            raise DataFormatError(path, number, "expected movieId,title,genres")
        rows.append((int(fields[0]), fields[1], fields[2]))
    return _items_frame(path, rows)


def _untitled_items(ratings: pd.DataFrame) -> pd.DataFrame:
    ids = np.sort(ratings["item_id"].unique())
    return pd.DataFrame({"item_id": ids, "title": [f"Item {i}" for i in ids], "genres": ""})
