"""The Kubernetes manifests in deploy/ agree with the code: environment names are settings,
ports, probes and service addresses line up, pods run as non-root on a read-only root
filesystem with requests and limits, and the overlays only say where Redis is."""

from pathlib import Path

import pytest
import yaml

from recsys.serving.config import ENV_NAMES, Settings
from recsys.serving.server import LIVENESS

DEPLOY = Path(__file__).resolve().parents[2] / "deploy"
SERVICE_PORTS = {
    "recsys-feature": ("FEATURE_PORT", 50051),
    "recsys-model": ("MODEL_PORT", 50052),
    "recsys-gateway": ("GATEWAY_PORT", 50050),
}
HTTP = {"recsys-gateway": 8080}  # the gateway's HTTP_PORT: the JSON API and the page


def documents(kustomization_dir: Path) -> list[dict]:
    """Every manifest a kustomization lists (recursively through bases)."""
    kustomization = yaml.safe_load((kustomization_dir / "kustomization.yaml").read_text())
    found = []
    for resource in kustomization.get("resources", []):
        path = (kustomization_dir / resource).resolve()
        assert path.exists(), f"{kustomization_dir}: {resource} does not exist"
        if path.is_dir():
            found += documents(path)
        else:
            found += [d for d in yaml.safe_load_all(path.read_text()) if d]
    return found


BASE = documents(DEPLOY / "base")


def by_kind(kind: str) -> dict[str, dict]:
    return {d["metadata"]["name"]: d for d in BASE if d["kind"] == kind}


CONFIG = by_kind("ConfigMap")["recsys-config"]["data"]


def overlay_secret_keys(overlay: str, secret: str = "recsys-redis") -> set[str]:
    kustomization = yaml.safe_load(
        (DEPLOY / "overlays" / overlay / "kustomization.yaml").read_text()
    )
    keys = set()
    for generator in kustomization.get("secretGenerator", []):
        if generator["name"] == secret:
            keys |= {literal.split("=", 1)[0] for literal in generator.get("literals", [])}
    return keys


def plain_env(container: dict) -> dict[str, str]:
    """The container's env entries with a literal value (not from a Secret)."""
    return {e["name"]: e["value"] for e in container.get("env", []) if "value" in e}


def secret_env(container: dict) -> dict[str, dict]:
    """name → secretKeyRef of the container's env entries taken from a Secret."""
    return {
        e["name"]: e["valueFrom"]["secretKeyRef"]
        for e in container.get("env", [])
        if "valueFrom" in e
    }


def test_config_map_holds_settings_that_parse():
    assert set(CONFIG) <= set(ENV_NAMES)
    Settings.from_env(CONFIG)


@pytest.mark.parametrize("name", sorted(SERVICE_PORTS))
def test_deployments_match_the_code(name):
    deployment = by_kind("Deployment")[name]
    pod = deployment["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    env = plain_env(container)
    assert set(env) | set(secret_env(container)) <= set(ENV_NAMES)
    port_variable, port = SERVICE_PORTS[name]
    assert env[port_variable] == str(port)
    assert env.get("HTTP_PORT") == (str(HTTP[name]) if name in HTTP else None)
    metrics_port = Settings.from_env(CONFIG).metrics_port
    assert metrics_port > 0
    assert container["ports"] == [
        {"name": "grpc", "containerPort": port},
        *([{"name": "http", "containerPort": HTTP[name]}] if name in HTTP else []),
        {"name": "metrics", "containerPort": metrics_port},
    ]
    annotations = deployment["spec"]["template"]["metadata"]["annotations"]
    assert annotations["prometheus.io/scrape"] == "true"
    assert annotations["prometheus.io/port"] == str(metrics_port)
    assert annotations["prometheus.io/path"] == "/metrics"
    for probe in ("readinessProbe", "livenessProbe", "startupProbe"):
        if probe in container:
            assert container[probe]["grpc"]["port"] == port
    # readiness (and start-up) ask the overall status, which follows the dependencies;
    # liveness asks the name that stays SERVING while the process answers
    assert "service" not in container["readinessProbe"]["grpc"]
    assert "service" not in container.get("startupProbe", {"grpc": {}})["grpc"]
    assert container["livenessProbe"]["grpc"]["service"] == LIVENESS
    assert container["image"] == "recsys:latest"
    assert container["command"] == ["python", "-m", f"services.{name.split('-')[1]}.server"]
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert container["securityContext"]["readOnlyRootFilesystem"] is True
    assert {"cpu", "memory"} <= set(container["resources"]["requests"])
    assert {"cpu", "memory"} <= set(container["resources"]["limits"])
    assert pod["terminationGracePeriodSeconds"] > float(CONFIG["GRACE_S"])
    assert pod["serviceAccountName"] in by_kind("ServiceAccount")


@pytest.mark.parametrize("name", sorted(SERVICE_PORTS))
def test_services_name_their_ports_grpc_http_and_metrics(name):
    service = by_kind("Service")[name]
    http = [{"name": "http", "port": HTTP[name], "targetPort": "http"}] if name in HTTP else []
    assert service["spec"]["ports"] == [
        {"name": "grpc", "port": SERVICE_PORTS[name][1], "targetPort": "grpc"},
        *http,
        {"name": "metrics", "port": int(CONFIG["METRICS_PORT"]), "targetPort": "metrics"},
    ]
    assert (
        service["spec"]["selector"]
        == by_kind("Deployment")[name]["spec"]["selector"]["matchLabels"]
    )


def test_the_gateway_finds_its_upstreams():
    container = by_kind("Deployment")["recsys-gateway"]["spec"]["template"]["spec"]["containers"][0]
    env = plain_env(container)
    assert env["FEATURE_ADDR"] == "recsys-feature:50051"
    assert env["MODEL_ADDR"] == "dns:///recsys-model:50052"
    assert by_kind("Service")["recsys-model"]["spec"]["clusterIP"] == "None"  # headless: per-call
    assert set(by_kind("HorizontalPodAutoscaler")) == {"recsys-gateway", "recsys-model"}
    assert set(by_kind("PodDisruptionBudget")) == set(SERVICE_PORTS)


def test_redis_url_comes_from_each_overlays_secret():
    for name in ("recsys-feature",):
        pod = by_kind("Deployment")[name]["spec"]["template"]["spec"]
        assert {"secretRef": {"name": "recsys-redis"}} in pod["containers"][0]["envFrom"]
    for overlay in ("dev", "managed-redis"):
        assert overlay_secret_keys(overlay) == {"REDIS_URL"}


def patched_config(overlay: str) -> dict[str, str]:
    """The ConfigMap after the overlay's JSON patches (add / replace of /data/NAME)."""
    kustomization = yaml.safe_load(
        (DEPLOY / "overlays" / overlay / "kustomization.yaml").read_text()
    )
    config = dict(CONFIG)
    for patch in kustomization.get("patches", []):
        if patch["target"] == {"kind": "ConfigMap", "name": "recsys-config"}:
            for op in yaml.safe_load(patch["patch"]):
                assert op["op"] in ("add", "replace") and op["path"].startswith("/data/")
                config[op["path"].removeprefix("/data/")] = op["value"]
    return config


def test_the_sentinel_overlay_sets_sentinel_mode():
    """The feature service and the loader (both take the ConfigMap and the Secret) find the
    master through the sentinels and wait for a replica on each write."""
    config = patched_config("sentinel")
    assert set(config) <= set(ENV_NAMES)
    settings = Settings.from_env(config)
    assert settings.redis_sentinels and settings.redis_sentinel_master == "mymaster"
    assert settings.wait_replicas == 1 and not settings.redis_cluster
    assert overlay_secret_keys("sentinel") == {"REDIS_URL"}
    job = by_kind("Job")["recsys-train-and-load"]["spec"]["template"]["spec"]["containers"][0]
    assert {"configMapRef": {"name": "recsys-config"}} in job["envFrom"]
    assert Settings.from_env(patched_config("managed-redis")).redis_sentinels == ""


def test_dev_redis_persists_and_the_job_trains_and_loads():
    redis = [d for d in documents(DEPLOY / "overlays" / "dev") if d["kind"] == "StatefulSet"]
    args = redis[0]["spec"]["template"]["spec"]["containers"][0]["args"]
    assert args[args.index("--appendonly") + 1] == "yes"
    job = by_kind("Job")["recsys-train-and-load"]["spec"]["template"]["spec"]["containers"][0]
    assert "recsys train" in job["args"][0] and "recsys load-features" in job["args"][0]


def test_tokens_come_from_the_auth_secret():
    """The gateway accepts the clients' tokens and sends the services' token, which the
    feature and model services accept; all from the Secret recsys-auth (optional: without
    it authentication is off), which the dev overlay generates."""
    expected = {
        "recsys-gateway": {"AUTH_TOKENS": "client-tokens", "UPSTREAM_TOKEN": "service-token"},
        "recsys-feature": {"AUTH_TOKENS": "service-token"},
        "recsys-model": {"AUTH_TOKENS": "service-token"},
    }
    for name, keys in expected.items():
        container = by_kind("Deployment")[name]["spec"]["template"]["spec"]["containers"][0]
        refs = secret_env(container)
        assert {env: ref["key"] for env, ref in refs.items()} == keys
        assert all(ref["name"] == "recsys-auth" and ref["optional"] for ref in refs.values())
    assert overlay_secret_keys("dev", "recsys-auth") == {"client-tokens", "service-token"}
    for name in ("recsys-feature", "recsys-model"):  # internal: reads need the token too
        container = by_kind("Deployment")[name]["spec"]["template"]["spec"]["containers"][0]
        plain = {e["name"]: e.get("value") for e in container["env"] if "value" in e}
        assert Settings.from_env({"AUTH_READS": plain["AUTH_READS"]}).auth_reads is True


def test_the_tls_component_mounts_the_files_the_settings_name():
    component_dir = DEPLOY / "components" / "tls"
    component = yaml.safe_load((component_dir / "kustomization.yaml").read_text())
    assert component["kind"] == "Component"
    config_patch = next(p for p in component["patches"] if "patch" in p)["patch"]
    files = {op["path"].split("/")[-1]: op["value"] for op in yaml.safe_load(config_patch)}
    assert set(files) == {"TLS_CERT_FILE", "TLS_KEY_FILE", "TLS_CA_FILE"}
    Settings.from_env({**CONFIG, **{k: "/x" for k in files}})
    mounts = {str(Path(path).parent) for path in files.values()}
    patched = {p["path"] for p in component["patches"] if "path" in p}
    assert patched == {"feature.yaml", "model.yaml", "gateway.yaml"}
    for file_name in patched:
        patch = yaml.safe_load((component_dir / file_name).read_text())
        name = patch["metadata"]["name"]
        port = SERVICE_PORTS[name][1]
        (container,) = patch["spec"]["template"]["spec"]["containers"]
        assert {m["mountPath"] for m in container["volumeMounts"]} == mounts
        assert patch["spec"]["template"]["spec"]["volumes"] == [
            {"name": "tls", "secret": {"secretName": "recsys-tls"}}
        ]
        # only the gateway takes calls from outside: the others require client certificates
        assert plain_env(container).get("TLS_CLIENT_AUTH") == (
            None if name == "recsys-gateway" else "true"
        )
        base = by_kind("Deployment")[name]["spec"]["template"]["spec"]["containers"][0]
        probes = {p for p in ("readinessProbe", "livenessProbe", "startupProbe") if p in base}
        assert probes <= set(container)  # every gRPC probe of the base is replaced
        for probe in probes:
            assert container[probe]["grpc"] is None  # kubelet's gRPC probe cannot do TLS
            command = container[probe]["exec"]["command"]
            assert command[:4] == ["python", "-m", "recsys.healthcheck", f"127.0.0.1:{port}"]
            liveness = ["--service", LIVENESS] if probe == "livenessProbe" else []
            assert command[4:] == ["--server-name", name, *liveness]
