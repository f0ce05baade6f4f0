"""Loaders for the MovieLens file formats (ML-1M, ML-100K, ml-latest / ml-latest-small),
detected from a directory's contents and returned as one tidy shape."""

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

    ratings: columns user_id (int64), item_id (int64), rating (float32), timestamp (int64),
        one row per (user, item) pair, in file order.
    items: columns item_id (int64), title (str), genres (str, "|"-separated), one row per
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
    """Parse a ratings file with the C parser; on failure, find and name the bad line."""
    raw = path.read_bytes()
    if sep == "::":
        raw = raw.replace(b"::", b"\t")
        sep = "\t"
    try:
        frame = pd.read_csv(
            io.BytesIO(raw),
            sep=sep,
            header=0 if header else None,
            names=RATING_COLUMNS,
            dtype={"user_id": np.int64, "item_id": np.int64, "rating": np.float64},
            engine="c",
        )
        frame["timestamp"] = frame["timestamp"].astype(np.int64)
    except (ValueError, pd.errors.ParserError) as exc:
        line, problem = _first_bad_line(raw, sep, header=header)
        raise DataFormatError(path, line, problem or str(exc)) from None
    frame["rating"] = frame["rating"].astype(np.float32)
    return frame


_INT = re.compile(r"^-?\d+$")
_FLOAT = re.compile(r"^-?\d+(\.\d+)?$")


def _first_bad_line(raw: bytes, sep: str, *, header: bool) -> tuple[int | None, str | None]:
    """Scan line by line for the first malformed ratings line: (1-based line, problem)."""
    text = raw.decode("latin-1")
    for number, line in enumerate(text.splitlines(), start=1):
        if header and number == 1:
            continue
        fields = line.rstrip("\r").split(sep)
        if len(fields) != 4:
            return number, f"expected 4 fields separated by {sep!r}, found {len(fields)}: {line!r}"
        user, item, rating, timestamp = fields
        for label, value, pattern in (
            ("user id", user, _INT),
            ("item id", item, _INT),
            ("rating", rating, _FLOAT),
            ("timestamp", timestamp, _INT),
        ):
            if not pattern.match(value.strip()):
                return number, f"{label} {value!r} is not a number"
    return None, None


def _check_ratings(path: Path, ratings: pd.DataFrame, scale: tuple[float, float], *, header: bool):
    """Values that parse but make no sense: ids ≤ 0, ratings off the scale, duplicate pairs."""
    offset = 2 if header else 1  # row 0 is file line 1 (or 2 below a header)
    low, high = scale
    checks = [
        (ratings["rating"].isna(), "rating is missing or not a number"),
        (ratings["user_id"] <= 0, "user id must be positive"),
        (ratings["item_id"] <= 0, "item id must be positive"),
        (~on_scale(ratings["rating"], scale), f"rating outside [{low}, {high}]"),
        (ratings.duplicated(["user_id", "item_id"]), "duplicate (user, item) pair"),
    ]
    for bad, problem in checks:
        if bad.any():
            row = int(np.flatnonzero(np.asarray(bad))[0])
            values = ratings.iloc[row]
            detail = (
                f"user {int(values.user_id)}, item {int(values.item_id)}, rating {values.rating}"
            )
            raise DataFormatError(path, row + offset, f"{problem} ({detail})")


def _read_lines(path: Path) -> list[str]:
    return path.read_bytes().decode("latin-1").splitlines()


def _items_frame(rows: list[tuple[int, str, str]]) -> pd.DataFrame:
    frame = pd.DataFrame(rows, columns=ITEM_COLUMNS)
    frame["item_id"] = frame["item_id"].astype(np.int64)
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
    return _items_frame(rows)


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
    return _items_frame(rows)


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
    return _items_frame(rows)


def _untitled_items(ratings: pd.DataFrame) -> pd.DataFrame:
    ids = np.sort(ratings["item_id"].unique())
    return _items_frame([(int(i), f"Item {int(i)}", "") for i in ids])
