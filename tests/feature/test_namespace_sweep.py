"""The namespace sweep removes the keys of versions P:versions no longer registers (what a
write racing a retirement leaves: `ver:<old>:user:{U}`), on one Redis, a Redis Cluster
(every master scanned) and Sentinel; live versions, a load under way and other prefixes
keep every key. `load-features` runs it after the switch; `recsys sweep-namespaces` too."""

from __future__ import annotations

import pytest

from recsys.cli import main
from recsys.featurestore import layout
from recsys.featurestore.layout import KeyLayout
from recsys.featurestore.loader import load_features, sweep_namespaces
from tests.support.feature_data import VERSION, build_feature_data, write_artifact

KEYS = KeyLayout("recsys")
RETIRED = "20250101T000000000000Z"  # never registered here: its keys are orphans
LOADING = "20270101T000000000000Z"  # a load under way: meta written, not yet registered
ORPHANS = 25  # users with an orphan hash, across many Cluster slots


@pytest.fixture(scope="module")
def data(synthetic_dir, tmp_path_factory):
    return build_feature_data(synthetic_dir, tmp_path_factory.mktemp("sweep-artifacts"))


def plant_orphans(client, version: str = RETIRED, users: int = ORPHANS) -> None:
    """User hashes of an unregistered version, as a write racing its retirement leaves."""
    for user_id in range(1, users + 1):
        client.hset(KEYS.user(version, user_id), mapping={layout.USER_MEAN: b"0.5"})


def namespace(client, version: str, prefix: KeyLayout = KEYS) -> set[bytes]:
    return set(client.scan_iter(match=prefix.version_pattern(version), count=1000))


def test_the_sweep_removes_unregistered_namespaces_only(client, data):
    load_features(client, data.artifact, data.ratings, data.items)
    live = namespace(client, VERSION)
    assert len(live) > ORPHANS  # meta, items, catalog and every user's hash
    plant_orphans(client)
    client.hset(KEYS.meta(LOADING), mapping={"status": layout.STATUS_LOADING})
    client.hset(KEYS.user(LOADING, 1), mapping={layout.USER_MEAN: b"0.5"})
    other = KeyLayout("other")  # another deployment's prefix on the same Redis
    client.hset(other.user(RETIRED, 1), mapping={layout.USER_MEAN: b"0.5"})

    summary = sweep_namespaces(client, "recsys", batch=7)  # several batches per version

    assert summary.versions == [RETIRED]
    assert summary.keys_removed == ORPHANS
    assert summary.left_loading == [LOADING]
    assert namespace(client, RETIRED) == set()
    assert namespace(client, VERSION) == live
    assert len(namespace(client, LOADING)) == 2
    assert client.exists(other.user(RETIRED, 1)) == 1
    assert sweep_namespaces(client, "recsys").keys_removed == 0  # nothing left to do


def test_load_features_sweeps_after_the_switch(client, data, tmp_path):
    load_features(client, data.artifact, data.ratings, data.items)
    plant_orphans(client)
    second = write_artifact(
        tmp_path / "next", "20260105T000000000000Z", data.index, data.normalization, data.items
    )
    summary = load_features(client, second, data.ratings, data.items)
    assert summary.orphan_keys_removed == ORPHANS
    assert namespace(client, RETIRED) == set()
    assert namespace(client, VERSION)  # the previous version stays registered and whole
    assert client.get(KEYS.active()) == b"20260105T000000000000Z"


def test_the_command_reports_what_it_removed(redis_url, data, capsys):
    import redis

    with redis.Redis.from_url(redis_url) as client:
        load_features(client, data.artifact, data.ratings, data.items)
        plant_orphans(client, users=3)
        assert main(["sweep-namespaces", "--redis-url", redis_url]) == 0
        assert f"removed 3 keys of unregistered versions {RETIRED}" in capsys.readouterr().out
        assert namespace(client, RETIRED) == set()
        assert main(["sweep-namespaces", "--redis-url", redis_url]) == 0
        assert "removed 0 keys" in capsys.readouterr().out


def test_the_version_of_a_key():
    assert KEYS.version_of_key(KEYS.user(RETIRED, 42)) == RETIRED
    assert KEYS.version_of_key(KEYS.meta(VERSION)) == VERSION
    assert KEYS.version_of_key(KEYS.ratings(42)) is None  # not versioned
    assert KEYS.version_of_key(KeyLayout("other").meta(VERSION)) is None  # another prefix
    assert KEYS.version_of_key(b"recsys:ver:") is None
