import subprocess
import sys
from pathlib import Path

import pytest

from recsys.api.feature.v1 import feature_pb2
from recsys.api.gateway.v1 import gateway_pb2
from recsys.api.model.v1 import model_pb2
from recsys.serving.config import ENV_NAMES, ConfigError, Settings

REPO = Path(__file__).resolve().parents[2]


def test_generated_code_is_in_sync_with_protos():
    result = subprocess.run(
        [sys.executable, str(REPO / "protos" / "run_codegen.py"), "--check"],
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stderr


def test_one_versioned_package_per_service():
    assert feature_pb2.DESCRIPTOR.package == "recsys.feature.v1"
    assert model_pb2.DESCRIPTOR.package == "recsys.model.v1"
    assert gateway_pb2.DESCRIPTOR.package == "recsys.gateway.v1"
    for module in (feature_pb2, model_pb2, gateway_pb2):
        for service in module.DESCRIPTOR.services_by_name.values():
            for method in service.methods:
                assert method.input_type.name == f"{method.name}Request"
                assert method.output_type.name == f"{method.name}Response"


def test_settings_from_environment():
    settings = Settings.from_env(
        {
            "MODEL_PORT": "6000",
            "UPSTREAM_TIMEOUT_S": "0.5",
            "REDIS_URL": "redis://x:1/0",
            "UNRELATED": "1",
        }
    )
    assert (settings.model_port, settings.upstream_timeout_s, settings.redis_url) == (
        6000,
        0.5,
        "redis://x:1/0",
    )
    assert Settings.from_env({}) == Settings()
    with pytest.raises(ConfigError, match="MODEL_PORT='x' is not a valid int"):
        Settings.from_env({"MODEL_PORT": "x"})
    with pytest.raises(ConfigError, match="FEATURE_ADDR, MODEL_ADDR"):
        Settings().require("feature_addr", "model_addr")
    assert "REDIS_URL" in ENV_NAMES and "LOG_LEVEL" in ENV_NAMES


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("GATEWAY_PORT", "-1"),
        ("MODEL_PORT", "70000"),
        ("UPSTREAM_TIMEOUT_S", "nan"),
        ("REDIS_TIMEOUT_S", "0"),
        ("GRACE_S", "-5"),
        ("MAX_MESSAGE_BYTES", "0"),
        ("REDIS_CLUSTER", "maybe"),
        ("LOG_LEVEL", "LOUD"),
        ("MAX_CONCURRENT_RPCS", "-1"),
        ("KEEPALIVE_TIME_S", "0"),
        ("KEEPALIVE_TIMEOUT_S", "inf"),
        ("AUTH_READS", "maybe"),
        ("MODEL_POLL_S", "-1"),
        ("MODEL_BATCH_SIZE", "0"),
        ("MODEL_BATCH_WAIT_US", "2000000"),
        ("MODEL_QUEUE_LIMIT", "0"),
    ],
)
def test_settings_out_of_range_fail_at_start_up(variable, value):
    with pytest.raises(ConfigError, match=variable):
        Settings.from_env({variable: value})


def test_boolean_settings():
    assert Settings.from_env({"REDIS_CLUSTER": "yes"}).redis_cluster is True
    assert Settings.from_env({"REDIS_CLUSTER": "0"}).redis_cluster is False


def test_sentinel_settings():
    """REDIS_SENTINELS turns Sentinel mode on, and with it one replica's WAIT by default."""
    plain = Settings.from_env({})
    assert plain.redis_sentinels == "" and plain.wait_replicas == 0
    sentinel = Settings.from_env(
        {"REDIS_SENTINELS": "s1:26379, s2:26379,s3:26379", "REDIS_SENTINEL_MASTER": "main"}
    )
    assert sentinel.redis_sentinel_master == "main" and sentinel.wait_replicas == 1
    assert (
        Settings.from_env({"REDIS_SENTINELS": "s1:1", "REDIS_WAIT_REPLICAS": "0"}).wait_replicas
        == 0
    )
    assert Settings.from_env({"REDIS_WAIT_REPLICAS": "2"}).wait_replicas == 2


@pytest.mark.parametrize(
    "env, variable",
    [
        ({"REDIS_SENTINELS": "s1"}, "REDIS_SENTINELS"),
        ({"REDIS_SENTINELS": "s1:0"}, "REDIS_SENTINELS"),
        ({"REDIS_SENTINELS": " , "}, "REDIS_SENTINELS"),
        ({"REDIS_SENTINELS": "s1:26379", "REDIS_CLUSTER": "1"}, "REDIS_CLUSTER"),
        ({"REDIS_SENTINELS": "s1:26379", "REDIS_SENTINEL_MASTER": ""}, "REDIS_SENTINEL_MASTER"),
        ({"REDIS_WAIT_REPLICAS": "-2"}, "REDIS_WAIT_REPLICAS"),
        ({"REDIS_WAIT_REPLICAS": "1", "REDIS_CLUSTER": "1"}, "REDIS_WAIT_REPLICAS"),
        ({"REDIS_WAIT_REPLICAS": "1", "REDIS_WAIT_TIMEOUT_S": "0.25"}, "REDIS_WAIT_TIMEOUT_S"),
        ({"REDIS_WAIT_TIMEOUT_S": "0"}, "REDIS_WAIT_TIMEOUT_S"),
    ],
)
def test_bad_sentinel_settings_fail_at_start_up(env, variable):
    with pytest.raises(ConfigError, match=variable):
        Settings.from_env(env)


def test_secret_settings_never_show_in_a_repr():
    settings = Settings(
        redis_url="redis://app:s3cret-pass@host:6379/0",
        redis_sentinels="s1:26379",
        redis_sentinel_password="sentinel-pass",
        auth_tokens="tok-one, tok-two",
        upstream_token="tok-up",
    )
    assert settings.tokens == ("tok-one", "tok-two")
    for secret in ("s3cret-pass", "sentinel-pass", "tok-one", "tok-two", "tok-up"):
        assert secret not in repr(settings)


def test_docs_configuration_lists_every_setting():
    """The settings table of docs/configuration.md has a row per setting, and no row for a
    setting that does not exist."""
    readme = (Path(__file__).resolve().parents[2] / "docs" / "configuration.md").read_text()
    table = readme.split("## Service settings", 1)[1].split("\n## ", 1)[0]
    documented = {line.split("`")[1] for line in table.splitlines() if line.startswith("| `")}
    assert documented == set(ENV_NAMES)
