"""The Kubernetes manifests in deploy/ agree with the code: environment names are settings,
ports, probes and service addresses line up, pods run as non-root on a read-only root
filesystem with requests and limits, and the overlays only say where Redis is."""

from pathlib import Path

import pytest
import yaml

from recsys.serving.config import ENV_NAMES, Settings

DEPLOY = Path(__file__).resolve().parents[1] / "deploy"
SERVICE_PORTS = {
    "recsys-feature": ("FEATURE_PORT", 50051),
    "recsys-model": ("MODEL_PORT", 50052),
    "recsys-gateway": ("GATEWAY_PORT", 50050),
}


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


def overlay_secret_keys(overlay: str) -> set[str]:
    kustomization = yaml.safe_load(
        (DEPLOY / "overlays" / overlay / "kustomization.yaml").read_text()
    )
    keys = set()
    for generator in kustomization.get("secretGenerator", []):
        keys |= {literal.split("=", 1)[0] for literal in generator.get("literals", [])}
    return keys


def test_config_map_holds_settings_that_parse():
    assert set(CONFIG) <= set(ENV_NAMES)
    Settings.from_env(CONFIG)


@pytest.mark.parametrize("name", sorted(SERVICE_PORTS))
def test_deployments_match_the_code(name):
    deployment = by_kind("Deployment")[name]
    pod = deployment["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    env = {e["name"]: e["value"] for e in container.get("env", [])}
    assert set(env) <= set(ENV_NAMES), set(env) - set(ENV_NAMES)
    port_variable, port = SERVICE_PORTS[name]
    assert env[port_variable] == str(port)
    metrics_port = Settings.from_env(CONFIG).metrics_port
    assert metrics_port > 0
    assert container["ports"] == [
        {"name": "grpc", "containerPort": port},
        {"name": "metrics", "containerPort": metrics_port},
    ]
    annotations = deployment["spec"]["template"]["metadata"]["annotations"]
    assert annotations["prometheus.io/scrape"] == "true"
    assert annotations["prometheus.io/port"] == str(metrics_port)
    assert annotations["prometheus.io/path"] == "/metrics"
    for probe in ("readinessProbe", "livenessProbe"):
        assert container[probe]["grpc"]["port"] == port
    assert container["image"] == "recsys:latest"
    assert container["command"] == ["python", "-m", f"services.{name.split('-')[1]}.server"]
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert container["securityContext"]["readOnlyRootFilesystem"] is True
    assert {"cpu", "memory"} <= set(container["resources"]["requests"])
    assert {"cpu", "memory"} <= set(container["resources"]["limits"])
    assert pod["terminationGracePeriodSeconds"] > float(CONFIG["GRACE_S"])
    assert pod["serviceAccountName"] in by_kind("ServiceAccount")


@pytest.mark.parametrize("name", sorted(SERVICE_PORTS))
def test_services_name_their_ports_grpc_and_metrics(name):
    service = by_kind("Service")[name]
    assert service["spec"]["ports"] == [
        {"name": "grpc", "port": SERVICE_PORTS[name][1], "targetPort": "grpc"},
        {"name": "metrics", "port": int(CONFIG["METRICS_PORT"]), "targetPort": "metrics"},
    ]
    assert (
        service["spec"]["selector"]
        == by_kind("Deployment")[name]["spec"]["selector"]["matchLabels"]
    )


def test_the_gateway_finds_its_upstreams():
    container = by_kind("Deployment")["recsys-gateway"]["spec"]["template"]["spec"]["containers"][0]
    env = {e["name"]: e["value"] for e in container["env"]}
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


def test_dev_redis_persists_and_the_job_trains_and_loads():
    redis = [d for d in documents(DEPLOY / "overlays" / "dev") if d["kind"] == "StatefulSet"]
    args = redis[0]["spec"]["template"]["spec"]["containers"][0]["args"]
    assert args[args.index("--appendonly") + 1] == "yes"
    job = by_kind("Job")["recsys-train-and-load"]["spec"]["template"]["spec"]["containers"][0]
    assert "recsys train" in job["args"][0] and "recsys load-features" in job["args"][0]
