"""A load-features killed part-way (SIGKILL) and started again ends with the Redis contents of
an uninterrupted load, key by key, on one Redis and on a Redis Cluster: users already written
are resumed, not written twice. Also the other ways a load can be found unfinished, and the
write script run by its SHA1 when a node's script cache was emptied."""

from __future__ import annotations

import hashlib
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

from recsys.data.movielens import RatingData, load_movielens
from recsys.data.synthetic import CatalogShape, write_shaped_movielens
from recsys.features import ItemIndex, ItemSelection, Normalization
from recsys.featurestore import layout
from recsys.featurestore.layout import KeyLayout
from recsys.featurestore.loader import apply_scripts, load_features
from recsys.featurestore.writes import (
    APPLY_SCRIPT,
    APPLY_SCRIPT_SHA,
    apply_args,
    compute_features,
)
from tests.support.feature_data import VERSION as SMALL_VERSION
from tests.support.feature_data import build_feature_data, write_artifact

KEYS = KeyLayout("recsys")
VERSION = "20260201T000000000000Z"
# enough users that a load takes seconds, so the kill lands in the middle of it
SHAPE = CatalogShape(
    n_users=8000,
    n_movies=600,
    n_ratings=200_000,
    max_movie_id=1500,
    first_timestamp=789_652_009,
    last_timestamp=1_574_327_703,
)


@dataclass(frozen=True)
class ShapedData:
    directory: Path  # ratings.csv and movies.csv
    artifact: Path  # the version directory
    data: RatingData


@pytest.fixture(scope="module")
def loaded(tmp_path_factory):
    """An ml-latest data set of SHAPE and a version directory of its 400 most rated movies."""
    directory = write_shaped_movielens(tmp_path_factory.mktemp("resume-data"), SHAPE, seed=3)
    data = load_movielens(directory)
    index = ItemIndex(ItemSelection(top_n=400).select(data.ratings))
    columns = index.columns(data.ratings["item_id"].to_numpy())
    known = columns >= 0
    normalization = Normalization.fit(
        columns[known], data.ratings["rating"].to_numpy()[known], len(index)
    )
    models = tmp_path_factory.mktemp("resume-models")
    artifact = write_artifact(models / VERSION, VERSION, index, normalization, data.items)
    return ShapedData(directory, artifact, data)


@pytest.fixture(scope="module")
def small(synthetic_dir, tmp_path_factory):
    return build_feature_data(synthetic_dir, tmp_path_factory.mktemp("resume-small"))


@pytest.fixture(params=["single", "cluster"])
def backend(request):
    """One Redis and a Redis Cluster, emptied first."""
    from tests.conftest import RedisBackend

    if request.param == "single":
        return RedisBackend(request.getfixturevalue("redis_url"), cluster=False)
    cluster = request.getfixturevalue("redis_cluster")
    cluster.flushall()
    return RedisBackend(cluster.url, cluster=True)


def contents(client) -> dict[bytes, object]:
    """Every key → its value by type (a hash as a dict, a sorted set as (member, score)
    pairs), but the meta hashes' loaded_at (the time of the load). Pipelines of 1000 keys."""
    keys = sorted(client.scan_iter(count=1000))
    found = {}
    for start in range(0, len(keys), 1000):
        chunk = keys[start : start + 1000]
        pipe = client.pipeline(transaction=False)
        for key in chunk:
            pipe.type(key)
        kinds = pipe.execute()
        for key, kind in zip(chunk, kinds, strict=True):
            if kind == b"hash":
                pipe.hgetall(key)
            elif kind == b"zset":
                pipe.zrange(key, 0, -1, withscores=True)
            else:
                assert kind == b"string", (key, kind)
                pipe.get(key)
        for key, value in zip(chunk, pipe.execute(), strict=True):
            if key.endswith(b":meta"):
                assert value.pop(b"loaded_at", b"").endswith(b"Z")
            found[key] = value
    return found


def version_users(client) -> int:
    return sum(1 for _ in client.scan_iter(match=KEYS.version_users_pattern(VERSION), count=1000))


def load_command(loaded, backend) -> list[str]:
    command = [
        sys.executable,
        "-m",
        "recsys.cli",
        "load-features",
        "--data",
        str(loaded.directory),
        "--model-dir",
        str(loaded.artifact.parent),
        "--redis-url",
        backend.url,
    ]
    return command + (["--cluster"] if backend.cluster else [])


def kill_part_way(command: list[str], client, users: int) -> int:
    """Start `command`, SIGKILL it once `users` // 10 user hashes of VERSION exist; returns
    how many exist once it is dead."""
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        deadline = time.monotonic() + 120
        while version_users(client) < users // 10:
            assert process.poll() is None, process.stdout.read()
            assert time.monotonic() < deadline, "the load wrote no users"
            time.sleep(0.01)
        process.send_signal(signal.SIGKILL)
        assert process.wait(30) == -signal.SIGKILL
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    return version_users(client)


@pytest.mark.slow
def test_a_killed_load_started_again_equals_an_uninterrupted_one(loaded, backend):
    users = loaded.data.ratings["user_id"].nunique()
    client = backend.sync()
    try:
        clean = load_features(client, loaded.artifact, loaded.data.ratings, loaded.data.items)
        assert (clean.users, clean.resumed_users) == (users, 0)
        expected = contents(client)
        client.flushall()

        written = kill_part_way(load_command(loaded, backend), client, users)
        assert 0 < written < users, "the kill should land while users are being written"
        assert client.get(KEYS.active()) is None
        assert client.hget(KEYS.versions(), VERSION) == b"loading"

        again = subprocess.run(
            load_command(loaded, backend), capture_output=True, text=True, timeout=300
        )
        assert again.returncode == 0, again.stderr
        assert f"{users} users, {len(loaded.data.ratings)} ratings" in again.stdout
        assert f"{written} users were already written" in again.stdout
        progress = [line for line in again.stderr.splitlines() if "load-features:" in line]
        assert f"{users}/{users}" in progress[-1]
        # the same keys with the same values: every revision 1 (no user written twice),
        # the same meta (user_count included), catalog, items, registry and active version
        assert contents(client) == expected
    finally:
        client.close()


def test_a_load_killed_while_finishing_is_finished(small, client):
    """Killed between meta "ready" and the registry's "ready": the next run writes no user
    again and makes the version active."""
    load_features(client, small.artifact, small.ratings, small.items)
    expected = contents(client)
    client.hset(KEYS.versions(), SMALL_VERSION, layout.STATUS_LOADING)
    client.delete(KEYS.active())
    summary = load_features(client, small.artifact, small.ratings, small.items)
    users = small.ratings["user_id"].nunique()
    assert (summary.users, summary.resumed_users) == (users, users)
    assert summary.ratings == len(small.ratings)
    assert contents(client) == expected


def test_an_unfinished_load_of_another_artifact_is_cleared_not_resumed(small, client, tmp_path):
    """The same version name with other item means (the namespace does not hold this
    artifact's features): everything is written again under the new normalization."""
    first = load_features(client, small.artifact, small.ratings, small.items)
    client.hset(KEYS.meta(SMALL_VERSION), "status", layout.STATUS_LOADING)
    client.hset(KEYS.versions(), SMALL_VERSION, layout.STATUS_LOADING)
    client.delete(KEYS.active())
    shifted = Normalization(small.normalization.global_mean, small.normalization.item_means + 0.25)
    other = write_artifact(
        tmp_path / SMALL_VERSION, SMALL_VERSION, small.index, shifted, small.items
    )
    summary = load_features(client, other, small.ratings, small.items)
    assert (summary.users, summary.resumed_users) == (first.users, 0)
    raw = client.hget(KEYS.user(SMALL_VERSION, 1), layout.USER_MEAN)
    mine = small.ratings[small.ratings["user_id"] == 1]
    ratings = dict(zip(mine["item_id"].tolist(), mine["rating"].astype(float), strict=True))
    expected = compute_features(ratings, small.index, shifted)
    assert layout.decode_user_mean(raw) == expected.user_mean
    assert client.get(KEYS.revision(1)) == b"2"  # the kept ratings, features written again


def test_the_script_runs_by_its_sha1_and_is_sent_again_where_it_is_not_cached(small, client):
    """After SCRIPT FLUSH (every master of a Cluster) the EVALSHA calls answer NOSCRIPT and
    are sent again whole; the users land once each, and the cache holds the script again."""
    movie = int(small.index.item_ids[0])
    calls = []
    for user_id in (11, 12, 13):
        ratings = {movie: 4.0, 999_999: 2.5}
        features = compute_features(ratings, small.index, small.normalization)
        user_keys = [
            KEYS.ratings(user_id),
            KEYS.revision(user_id),
            KEYS.stamps(user_id),
            KEYS.user(VERSION, user_id),
        ]
        calls.append((user_keys, apply_args(0, ratings, [], ratings, [features])))
    assert hashlib.sha1(APPLY_SCRIPT.encode()).hexdigest() == APPLY_SCRIPT_SHA
    client.script_flush()
    assert client.script_exists(APPLY_SCRIPT_SHA) == [False]
    assert apply_scripts(client, calls) == [1, 1, 1]
    assert client.script_exists(APPLY_SCRIPT_SHA) == [True]
    for user_id in (11, 12, 13):
        stored = client.hgetall(KEYS.ratings(user_id))
        assert stored == {str(movie).encode(): b"4", b"999999": b"2.5"}
    assert apply_scripts(client, calls) == [-1, -1, -1]  # revision 1 now: compare-and-set fails


def test_version_users_pattern_is_byte_exact():
    assert KeyLayout("recsys").version_users_pattern(VERSION) == (
        b"recsys:ver:20260201T000000000000Z:user:{*}"
    )
    with pytest.raises(ValueError):
        KeyLayout("recsys").version_users_pattern("v*")
