"""docker-compose.yml and the Dockerfile agree with the code: every environment variable
is one the settings read, ports and addresses line up, Redis persists, health checks probe
the ports the services listen on."""

import re
import time
from pathlib import Path

import yaml

from recsys.healthcheck import check
from recsys.redis_server import free_port
from recsys.serving.config import ENV_NAMES, Settings
from recsys.serving.server import LIVENESS, Service
from tests.support.servers import ServiceThread

REPO = Path(__file__).resolve().parents[2]
COMPOSE = yaml.safe_load((REPO / "docker-compose.yml").read_text())
SERVICES = COMPOSE["services"]


def interpolated(value, environ: dict[str, str] | None = None) -> str:
    """A compose value as docker-compose sees it: `${VAR:-default}` → VAR from `environ`
    if set and not empty, else the default."""
    environ = environ or {}
    return re.sub(r"\$\{(\w+):-([^}]*)\}", lambda m: environ.get(m[1]) or m[2], str(value))


def service_settings(name: str, environ: dict[str, str] | None = None) -> Settings:
    env = SERVICES[name].get("environment", {})
    return Settings.from_env({k: interpolated(v, environ) for k, v in env.items()})


def test_every_environment_variable_is_a_setting():
    for name, service in SERVICES.items():
        if "monitoring" in service.get("profiles", []):
            continue  # Prometheus and Grafana: their own images (tests/system/test_monitoring.py)
        for variable in service.get("environment", {}):
            assert variable in ENV_NAMES, f"{name}: {variable} is not read by the settings"


def test_ports_addresses_and_health_checks_line_up():
    env = {name: service.get("environment", {}) for name, service in SERVICES.items()}
    ports = {
        "feature": env["feature"]["FEATURE_PORT"],
        "model": env["model"]["MODEL_PORT"],
        "gateway": env["gateway"]["GATEWAY_PORT"],
    }
    assert env["gateway"]["FEATURE_ADDR"] == f"feature:{ports['feature']}"
    assert env["gateway"]["MODEL_ADDR"] == f"model:{ports['model']}"
    for name, port in ports.items():
        # readiness (no --service): depends_on waits on it, so it must follow the upstreams
        assert SERVICES[name]["healthcheck"]["test"][-1] == f"127.0.0.1:{port}"
        assert "--service" not in SERVICES[name]["healthcheck"]["test"]
        assert env[name]["BIND_HOST"] == "0.0.0.0"
        service_settings(name)  # values parse
    http = env["gateway"]["HTTP_PORT"]
    assert Settings.from_env({"HTTP_PORT": http}).http_port > 0
    assert SERVICES["gateway"]["ports"] == [
        f"{ports['gateway']}:{ports['gateway']}",
        f"{http}:{http}",
    ]


def test_every_service_serves_metrics_on_an_exposed_port():
    for name in ("feature", "model", "gateway"):
        port = SERVICES[name]["environment"]["METRICS_PORT"]
        assert Settings.from_env({"METRICS_PORT": port}).metrics_port > 0
        assert SERVICES[name]["expose"] == [port]


def test_redis_persists_and_services_wait_for_health():
    command = SERVICES["redis"]["command"]
    assert command[command.index("--appendonly") + 1] == "yes"
    assert SERVICES["feature"]["depends_on"]["redis"]["condition"] == "service_healthy"
    assert SERVICES["gateway"]["depends_on"] == {
        "feature": {"condition": "service_healthy"},
        "model": {"condition": "service_healthy"},
    }


def test_the_sentinel_profile_replicates_redis_and_points_the_feature_service_at_it():
    """Profile `sentinel`: a replica of `redis`, three sentinels monitoring it with quorum 2
    under the name the settings default to; with RECSYS_REDIS_SENTINELS naming them, the
    feature service and the loader run in Sentinel mode (WAIT for the replica)."""
    in_profile = {n for n, s in SERVICES.items() if "sentinel" in s.get("profiles", [])}
    sentinels = sorted(n for n in in_profile if n.startswith("sentinel-"))
    assert in_profile == {"redis-replica", *sentinels} and len(sentinels) == 3
    replica = SERVICES["redis-replica"]["command"]
    assert replica[replica.index("--replicaof") + 1 :][:2] == ["redis", "6379"]
    master = Settings().redis_sentinel_master
    for name in sentinels:
        script = SERVICES[name]["command"][-1]
        assert f"'sentinel monitor {master} redis 6379 2'" in script
        assert "--sentinel" in script and "'port 26379'" in script
    environ = {"RECSYS_REDIS_SENTINELS": ",".join(f"{n}:26379" for n in sentinels)}
    for name in ("feature", "train-and-load"):
        assert service_settings(name).redis_sentinels == ""  # without the variable: off
        settings = service_settings(name, environ)
        assert settings.redis_sentinels == environ["RECSYS_REDIS_SENTINELS"]
    assert service_settings("feature", environ).wait_replicas == 1


def test_the_image_runs_as_a_non_root_user():
    dockerfile = (REPO / "Dockerfile").read_text()
    assert "USER 10001" in dockerfile and "BIND_HOST=0.0.0.0" in dockerfile


def test_healthcheck_probe():
    async def bare():
        service = Service(Settings(), [])
        service.bind(0)
        service.watch_readiness(lambda: _true())
        return service

    async def _true():
        return True

    assert not check(f"127.0.0.1:{free_port()}", timeout=0.5)
    assert not check(f"127.0.0.1:{free_port()}", LIVENESS, timeout=0.5)
    with ServiceThread(bare) as running:
        deadline = time.monotonic() + 10
        while not check(running.address) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert check(running.address)
        assert check(running.address, LIVENESS)
        assert not check(running.address, "no.such.Service")  # NOT_FOUND is a failure


def test_the_gateway_sends_the_token_the_services_accept():
    env = {name: service.get("environment", {}) for name, service in SERVICES.items()}
    service_token = env["gateway"]["UPSTREAM_TOKEN"]
    assert env["feature"]["AUTH_TOKENS"] == env["model"]["AUTH_TOKENS"] == service_token
    assert env["gateway"]["AUTH_TOKENS"] != service_token  # clients have their own tokens
    for internal in ("feature", "model"):  # only the gateway calls them: reads need it too
        assert Settings.from_env({"AUTH_READS": env[internal]["AUTH_READS"]}).auth_reads
