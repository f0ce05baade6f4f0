"""The Redis layout is an API: every key byte for byte, the per-user hash tag, and the binary
encodings with exact bytes."""

import struct

import numpy as np
import pytest

from recsys.featurestore import layout
from recsys.featurestore.layout import KeyLayout

V = "20260101T000000000000Z"


def test_every_key_byte_for_byte():
    keys = KeyLayout()
    assert keys.active() == b"recsys:active"
    assert keys.meta(V) == b"recsys:ver:20260101T000000000000Z:meta"
    assert keys.items(V) == b"recsys:ver:20260101T000000000000Z:items"
    assert keys.item_means(V) == b"recsys:ver:20260101T000000000000Z:item_means"
    assert keys.catalog(V) == b"recsys:ver:20260101T000000000000Z:catalog"
    assert keys.catalog_ids(V) == b"recsys:ver:20260101T000000000000Z:catalog_ids"
    assert keys.user(V, 42) == b"recsys:ver:20260101T000000000000Z:user:{42}"
    assert keys.ratings(42) == b"recsys:ratings:{42}"
    assert keys.revision(42) == b"recsys:rev:{42}"
    assert keys.stamps(42) == b"recsys:stamps:{42}"
    assert keys.versions() == b"recsys:versions"
    assert keys.ratings_pattern() == b"recsys:ratings:{*}"
    assert KeyLayout.user_of_ratings_key(b"recsys:ratings:{42}") == 42
    assert keys.version_pattern(V) == b"recsys:ver:20260101T000000000000Z:*"


def test_prefix_and_numpy_ids():
    keys = KeyLayout("prod:recsys")
    assert keys.active() == b"prod:recsys:active"
    assert keys.user(V, np.int64(7)) == b"prod:recsys:ver:20260101T000000000000Z:user:{7}"
    assert keys.ratings(np.int32(7)) == b"prod:recsys:ratings:{7}"


@pytest.mark.parametrize("user_id", [1, 42, 6040, 2**31 - 1])
def test_a_users_keys_share_the_hash_tag(user_id):
    keys = KeyLayout()

    def tag(key: bytes) -> bytes:
        start = key.index(b"{")
        return key[start + 1 : key.index(b"}", start)]

    for key in (
        keys.user(V, user_id),
        keys.ratings(user_id),
        keys.revision(user_id),
        keys.stamps(user_id),
    ):
        assert tag(key) == str(user_id).encode()


@pytest.mark.parametrize("prefix", ["", "a{b}", "a*", "a b", "x?"])
def test_bad_prefixes(prefix):
    with pytest.raises(ValueError):
        KeyLayout(prefix)


@pytest.mark.parametrize("version", ["", "a:b", "{v}", "v*", "-v", "v/1", "v 1"])
def test_bad_versions(version):
    assert not layout.is_valid_version(version)
    with pytest.raises(ValueError):
        KeyLayout().meta(version)


@pytest.mark.parametrize("user_id", [0, -1])
def test_bad_user_ids(user_id):
    with pytest.raises(ValueError):
        KeyLayout().ratings(user_id)


def test_item_ids_and_means_bytes():
    ids = layout.encode_item_ids([260, 1])
    assert ids == b"\x04\x01\x00\x00\x00\x00\x00\x00" + b"\x01" + b"\x00" * 7
    assert layout.decode_item_ids(ids).tolist() == [260, 1]
    assert layout.decode_item_ids(ids).dtype == np.int64
    means = layout.encode_item_means([0.5, -0.25])
    assert means == struct.pack("<2d", 0.5, -0.25)
    assert means == b"\x00\x00\x00\x00\x00\x00\xe0\x3f" + b"\x00\x00\x00\x00\x00\x00\xd0\xbf"
    assert layout.decode_item_means(means).tolist() == [0.5, -0.25]
    assert layout.decode_item_ids(b"").shape == (0,)


def test_preferences_bytes_are_sorted_pairs():
    raw = layout.encode_preferences(np.array([1196, 260]), np.array([-0.5, 1.25]))
    # 260 first: int32 260 = 04 01 00 00, float32 1.25 = 00 00 a0 3f; then 1196, -0.5.
    assert raw == b"\x04\x01\x00\x00\x00\x00\xa0\x3f" + b"\xac\x04\x00\x00\x00\x00\x00\xbf"
    assert raw == struct.pack("<if", 260, 1.25) + struct.pack("<if", 1196, -0.5)
    movie_ids, values = layout.decode_preferences(raw)
    assert movie_ids.tolist() == [260, 1196] and movie_ids.dtype == np.int64
    assert values.tolist() == [1.25, -0.5] and values.dtype == np.float32
    empty_ids, empty_values = layout.decode_preferences(b"")
    assert empty_ids.shape == empty_values.shape == (0,)


def test_preferences_reject_bad_input():
    with pytest.raises(ValueError):
        layout.encode_preferences(np.array([2**31]), np.array([1.0]))
    with pytest.raises(ValueError):
        layout.encode_preferences(np.array([0]), np.array([1.0]))
    with pytest.raises(ValueError):
        layout.encode_preferences(np.array([1, 2]), np.array([1.0]))
    with pytest.raises(ValueError):
        layout.decode_preferences(b"\x00" * 7)


def test_scalars_and_ratings():
    assert layout.encode_user_mean(-0.3125) == b"-0.3125"
    assert layout.encode_user_mean(np.float64(0.1)) == b"0.1"
    assert layout.decode_user_mean(b"-0.3125") == -0.3125
    value = 0.1 + 0.2  # repr round-trips every float64 exactly
    assert layout.decode_user_mean(layout.encode_user_mean(value)) == value
    assert [layout.encode_rating(r) for r in (5.0, 4.5, np.float32(3.7), 0.5)] == [
        b"5",
        b"4.5",
        b"3.7",
        b"0.5",
    ]
    assert layout.decode_ratings({b"260": b"5", b"1196": b"4.5"}) == {260: 5.0, 1196: 4.5}


def test_catalog_entry_bytes():
    raw = layout.encode_catalog_entry("Amélie (2001)", ["Comedy", "Romance"])
    assert raw == '{"title":"Amélie (2001)","genres":["Comedy","Romance"]}'.encode()
    assert layout.decode_catalog_entry(raw) == ("Amélie (2001)", ("Comedy", "Romance"))
    assert layout.split_genres("Action|Sci-Fi") == ["Action", "Sci-Fi"]
    assert layout.split_genres("") == layout.split_genres(float("nan")) == []
    assert layout.split_genres("(no genres listed)") == []


def test_packed_ratings_round_trip():
    # two pairs of (int32 id, float32 stars), ascending id: 8 bytes each
    packed = layout.encode_packed_ratings({7: 4.5, 2: 1.0})
    assert packed == (
        np.array([2], "<i4").tobytes()
        + np.array([1.0], "<f4").tobytes()
        + np.array([7], "<i4").tobytes()
        + np.array([4.5], "<f4").tobytes()
    )
    assert layout.decode_packed_ratings(packed) == {2: 1.0, 7: 4.5}
    assert layout.decode_packed_ratings(layout.encode_packed_ratings({})) == {}


def test_stamps_bytes():
    assert layout.STAMP_USER_DELETED == b"deleted"
    assert layout.encode_stamp(1764633600000000) == b"1764633600000000"
    assert layout.encode_stamp(np.int64(7)) == b"7"
    raw = {b"260": b"1764633600000001", b"deleted": b"1764633600000000", b"1196": b"5"}
    assert layout.decode_stamps(raw) == ({260: 1764633600000001, 1196: 5}, 1764633600000000)
    assert layout.decode_stamps({}) == ({}, 0)
