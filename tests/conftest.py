"""Shared fixtures: small synthetic MovieLens data and a model trained on it once per run."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import pytest

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from recsys.data.synthetic import SyntheticSpec, write_synthetic_movielens  # noqa: E402

TEAM_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
SYNTHETIC = SyntheticSpec(n_users=400, n_items=120, n_groups=4, ratings_per_user=40, seed=7)

# Small and quick, but the same code path as the default preset.
TINY_TRAINING = {
    "encoding_size": 8,
    "l2": 1e-4,
    "batch_size": 32,
    "max_epochs": 40,
    "learning_rate": 3e-3,
    "patience": 5,
}


@pytest.fixture(scope="session")
def redis_server():
    """A real redis-server for the whole run; if it cannot start, every test using it fails."""
    from recsys.redis_server import LocalRedis

    server = LocalRedis().start()
    yield server
    server.cleanup()


@pytest.fixture
def redis_url(redis_server) -> str:
    """The session's Redis, emptied before the test."""
    import redis

    with redis.Redis.from_url(redis_server.url) as client:
        client.flushall()
    return redis_server.url


@pytest.fixture(scope="session")
def redis_cluster():
    """A real three-master Redis Cluster on loopback for the whole run."""
    from recsys.redis_server import LocalCluster

    cluster = LocalCluster(masters=3).start()
    yield cluster
    cluster.cleanup()


@pytest.fixture(scope="session")
def redis_sentinel():
    """A real master, its replica and three sentinels on loopback for the whole run (no
    test fails this one over: the failover tests start their own). Down after 10 s, so a
    stall of a busy machine does not fail it over behind the tests' back."""
    from recsys.redis_server import LocalSentinel

    sentinel = LocalSentinel(down_after_ms=10_000).start()
    yield sentinel
    sentinel.cleanup()


@dataclass(frozen=True)
class RedisBackend:
    """Where a test's Redis data lives: one server, a Cluster (`cluster=True`), or the
    master a set of sentinels names (`sentinels`: host:port,…; `url` is then the master's
    own address, for direct checks)."""

    url: str
    cluster: bool
    sentinels: str = ""

    def sync(self):
        from recsys.redis_client import sync_client

        return sync_client(self.url, cluster=self.cluster, sentinels=self.sentinels)

    def asyncio(self):
        from recsys.redis_client import async_client

        return async_client(self.url, cluster=self.cluster, sentinels=self.sentinels, timeout_s=5.0)

    def settings(self, **overrides):
        """Service settings that reach this backend the way production would."""
        from recsys.serving.config import Settings

        return Settings(
            redis_url=self.url,
            redis_cluster=self.cluster,
            redis_sentinels=self.sentinels,
            **overrides,
        )


@pytest.fixture(params=["single", "cluster", "sentinel"])
def redis_backend(request) -> RedisBackend:
    """The same test against one Redis, a Redis Cluster and Redis Sentinel (a master and a
    replica), each emptied first."""
    if request.param == "single":
        return RedisBackend(request.getfixturevalue("redis_url"), cluster=False)
    if request.param == "sentinel":
        sentinel = request.getfixturevalue("redis_sentinel")
        sentinel.flushall()
        return RedisBackend(
            sentinel.current_master().url, cluster=False, sentinels=sentinel.sentinels
        )
    cluster = request.getfixturevalue("redis_cluster")
    cluster.flushall()
    return RedisBackend(cluster.url, cluster=True)


@pytest.fixture
def client(redis_backend):
    """A synchronous client of the test's backend (one Redis, or the Cluster)."""
    client = redis_backend.sync()
    yield client
    client.close()


@pytest.fixture(scope="session")
def synthetic_dir(tmp_path_factory) -> Path:
    return write_synthetic_movielens(tmp_path_factory.mktemp("synthetic"), SYNTHETIC)


@pytest.fixture(scope="session")
def trained_run(synthetic_dir, tmp_path_factory):
    """(DataSource, TrainingRun) of the default preset, shrunk, on the synthetic data."""
    from recsys.model.config import PRESETS
    from recsys.pipeline import find_data, train_and_evaluate

    source = find_data(synthetic_dir, download=None)
    config = PRESETS["user"].replace(**TINY_TRAINING)
    model_dir = tmp_path_factory.mktemp("models")
    return source, train_and_evaluate(source, config, model_dir)


# The deeper option, shrunk: one hidden layer each side, SELU, dropout on the input.
TINY_DEEP = {**TINY_TRAINING, "hidden_layers": [16], "activation": "selu", "input_dropout": 0.1}


@pytest.fixture(scope="session")
def trained_deep_run(synthetic_dir, tmp_path_factory):
    """(DataSource, TrainingRun) of a small deep autoencoder on the synthetic data."""
    from recsys.model.config import PRESETS
    from recsys.pipeline import find_data, train_and_evaluate

    source = find_data(synthetic_dir, download=None)
    config = PRESETS["user"].replace(**TINY_DEEP)
    return source, train_and_evaluate(source, config, tmp_path_factory.mktemp("deep_models"))


# I-AutoRec, shrunk: 16 sigmoid codes, a few dozen epochs on the synthetic data.
TINY_ITEM = {"encoding_size": 16, "batch_size": 32, "max_epochs": 30, "l2": 1e-3}


@pytest.fixture(scope="session")
def trained_item_run(synthetic_dir, tmp_path_factory):
    """(DataSource, TrainingRun) of a small item autoencoder on the synthetic data."""
    from recsys.model.config import PRESETS
    from recsys.pipeline import find_data, train_and_evaluate

    source = find_data(synthetic_dir, download=None)
    config = PRESETS["item"].replace(**TINY_ITEM)
    return source, train_and_evaluate(source, config, tmp_path_factory.mktemp("item_models"))


@pytest.fixture(scope="session")
def trained_blend_run(synthetic_dir, tmp_path_factory):
    """(DataSource, TrainingRun) of the blend preset, its parts (the default and item presets)
    shrunk as above, on the synthetic data."""
    from recsys.model.config import PRESETS
    from recsys.pipeline import find_data, train_and_evaluate

    source = find_data(synthetic_dir, download=None)
    with pytest.MonkeyPatch.context() as patch:
        patch.setitem(PRESETS, "user", PRESETS["user"].replace(**TINY_TRAINING))
        patch.setitem(PRESETS, "item", PRESETS["item"].replace(**TINY_ITEM))
        models = tmp_path_factory.mktemp("blend_models")
        run = train_and_evaluate(source, PRESETS["blend"], models, report_dir=models / "report")
    return source, run


def team_data(name: str) -> Path:
    """A dataset of ../shared/data; CI always has it, so its absence is a failure."""
    path = TEAM_DATA / name
    assert path.is_dir(), f"team data missing: {path} (the repository expects ../shared beside it)"
    return path
