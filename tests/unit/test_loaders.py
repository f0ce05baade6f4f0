from pathlib import Path

import numpy as np
import pytest

from recsys.data.movielens import detect_format, load_movielens
from recsys.errors import DataFormatError
from tests.conftest import team_data


def write(directory: Path, name: str, text: str, encoding="latin-1") -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    (directory / name).write_bytes(text.encode(encoding))
    return directory


def test_ml1m_format(tmp_path):
    write(tmp_path, "ratings.dat", "1::10::5::978300760\n2::10::3::978302109\n1::20::4::0\n")
    write(tmp_path, "movies.dat", "10::Amélie (2001)::Comedy|Romance\n20::Heat (1995)::Action\n")
    data = load_movielens(tmp_path)
    assert data.name == "ml-1m"
    assert data.ratings.to_dict("list") == {
        "user_id": [1, 2, 1],
        "item_id": [10, 10, 20],
        "rating": [5.0, 3.0, 4.0],
        "timestamp": [978300760, 978302109, 0],
    }
    assert data.ratings.dtypes.tolist() == [np.int32, np.int32, np.float32, np.int64]
    assert data.items.set_index("item_id").loc[10, "title"] == "Amélie (2001)"  # latin-1
    assert data.rating_scale == (1.0, 5.0)


def test_ml100k_format(tmp_path):
    write(tmp_path, "u.data", "196\t242\t3\t881250949\n186\t302\t3\t891717742\n")
    flags = ["0"] * 19
    flags[1] = flags[15] = "1"  # Action, Sci-Fi
    write(tmp_path, "u.item", "242|Kolya (1996)|24-Jan-1997||http://x|" + "|".join(flags) + "\n")
    data = load_movielens(tmp_path)
    assert data.name == "ml-100k"
    assert list(data.ratings["user_id"]) == [196, 186]
    assert data.items.iloc[0].to_dict() == {
        "item_id": 242,
        "title": "Kolya (1996)",
        "genres": "Action|Sci-Fi",
    }


def test_ml_latest_format_half_stars_and_quoted_titles(tmp_path):
    write(
        tmp_path, "ratings.csv", "userId,movieId,rating,timestamp\r\n1,1,4.5,964982703\r\n", "utf-8"
    )
    write(
        tmp_path,
        "movies.csv",
        'movieId,title,genres\r\n1,"American President, The (1995)",Comedy|Drama|Romance\r\n',
        "utf-8",
    )
    data = load_movielens(tmp_path)
    assert data.name == "ml-latest"
    assert data.ratings["rating"].tolist() == [4.5]
    assert data.items.iloc[0]["title"] == "American President, The (1995)"
    assert data.rating_scale == (0.5, 5.0)


def test_items_file_is_optional(tmp_path):
    write(tmp_path, "ratings.dat", "1::10::5::978300760\n")
    assert load_movielens(tmp_path).items["title"].tolist() == ["Item 10"]


@pytest.mark.parametrize(
    ("content", "line", "problem"),
    [
        ("1::10::5::1\n1::11::5\n", 2, "expected 4 fields"),
        ("1::10::5::1\n2::11::five::1\n", 2, "rating 'five' is not a number"),
        ("1::10::5::1\nx::11::4::1\n", 2, "user id 'x' is not a number"),
        ("1::10::5::1\n1::11::4::1\n1::12::7::1\n", 3, "rating outside [1.0, 5.0]"),
        ("1::10::5::1\n0::11::4::1\n", 2, "user id must be positive"),
        ("1::10::5::1\n1::10::4::1\n", 2, "duplicate (user, item) pair"),
        ("1::10::5::1\n1::11::::1\n", 2, "rating is missing or not a number"),
        ("1::10::5::1\n1::11::nan::1\n", 2, "rating is missing or not a number"),
    ],
)
def test_malformed_ratings_name_file_and_line(tmp_path, content, line, problem):
    write(tmp_path, "ratings.dat", content)
    with pytest.raises(DataFormatError) as caught:
        load_movielens(tmp_path)
    assert caught.value.line == line
    assert problem in str(caught.value)
    assert f"ratings.dat:{line}:" in str(caught.value)


def test_unsorted_ratings_are_checked_for_repeated_pairs(tmp_path):
    lines = ["userId,movieId,rating,timestamp", "2,5,4.0,1", "1,7,3.5,1", "1,5,2.0,1"]
    write(tmp_path, "ratings.csv", "\n".join(lines) + "\n", "utf-8")
    assert load_movielens(tmp_path).ratings["item_id"].tolist() == [5, 7, 5]
    write(tmp_path, "ratings.csv", "\n".join([*lines, "3,1,1.0,1", "1,7,5.0,2"]) + "\n")
    with pytest.raises(DataFormatError, match=r"ratings.csv:6: duplicate \(user, item\) pair"):
        load_movielens(tmp_path)


def test_ids_beyond_int32_are_named(tmp_path):
    write(tmp_path, "ratings.csv", "userId,movieId,rating,timestamp\n1,1,4.5,1\n1,3000000000,4,1\n")
    with pytest.raises(DataFormatError, match=r"ratings.csv:3: item id 3000000000 is out of range"):
        load_movielens(tmp_path)
    write(tmp_path, "ratings.csv", "userId,movieId,rating,timestamp\n1,1,4.5,1\n")
    write(tmp_path, "movies.csv", "movieId,title,genres\n3000000000,Heat (1995),Action\n")
    with pytest.raises(DataFormatError, match=r"movies.csv: movie id 3000000000 is out of range"):
        load_movielens(tmp_path)


def test_ratings_with_carriage_returns_only(tmp_path):
    write(tmp_path, "ratings.csv", "userId,movieId,rating,timestamp\r1,1,4.5,1\r1,2,3.0,1\r")
    assert load_movielens(tmp_path).ratings["item_id"].tolist() == [1, 2]


def test_malformed_csv_line_counts_the_header(tmp_path):
    write(tmp_path, "ratings.csv", "userId,movieId,rating,timestamp\n1,1,4.5,1\n1,2,oops,1\n")
    with pytest.raises(DataFormatError, match=r"ratings.csv:3: rating 'oops'"):
        load_movielens(tmp_path)


def test_malformed_movies_file(tmp_path):
    write(tmp_path, "ratings.dat", "1::10::5::1\n")
    write(tmp_path, "movies.dat", "10::Heat (1995)::Action\nnot a movie line\n")
    with pytest.raises(DataFormatError, match=r"movies.dat:2: expected MovieID::Title::Genres"):
        load_movielens(tmp_path)


def test_directory_without_ratings(tmp_path):
    with pytest.raises(DataFormatError, match="no MovieLens ratings file"):
        detect_format(tmp_path)
    with pytest.raises(DataFormatError, match="not a directory"):
        detect_format(tmp_path / "nope")


@pytest.mark.slow
def test_team_copies_of_the_three_datasets():
    ml1m = load_movielens(team_data("ml-1m"))
    assert len(ml1m.ratings) == 1_000_209
    assert ml1m.ratings["user_id"].nunique() == 6040
    assert ml1m.ratings["item_id"].nunique() == 3706
    assert ml1m.ratings["rating"].astype(float).sum() == 3_582_313
    assert (ml1m.ratings["item_id"] == 2858).sum() == 3428
    assert len(ml1m.items) == 3883
    ml100k = load_movielens(team_data("ml-100k"))
    assert (len(ml100k.ratings), ml100k.ratings["item_id"].nunique()) == (100_000, 1682)
    small = load_movielens(team_data("ml-latest-small"))
    assert (len(small.ratings), len(small.items)) == (100_836, 9742)
    assert set(small.ratings["rating"].unique()) <= {x / 2 for x in range(1, 11)}
