"""The real entry points as processes: start, answer, and exit cleanly on SIGTERM."""

import os
import signal
import subprocess
import sys
import time

import grpc
import pytest
import redis
from grpc_health.v1 import health_pb2, health_pb2_grpc

from recsys.api.feature.v1 import feature_pb2, feature_pb2_grpc
from recsys.api.gateway.v1 import gateway_pb2, gateway_pb2_grpc
from recsys.api.model.v1 import model_pb2, model_pb2_grpc
from recsys.featurestore.loader import load_features
from recsys.launcher import LocalStack, wait_serving
from recsys.redis_server import LocalRedis, free_port
from tests.serving.test_prometheus_metrics import scrape

pytestmark = pytest.mark.slow


def test_model_service_process_serves_then_stops_on_sigterm(trained_run):
    _, run = trained_run
    port, metrics_port = free_port(), free_port()
    env = {
        **os.environ,
        "MODEL_DIR": str(run.artifact_path.parent),
        "MODEL_PORT": str(port),
        "METRICS_PORT": str(metrics_port),
        "GRACE_S": "2",
    }
    process = subprocess.Popen(
        [sys.executable, "-m", "services.model.server"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        wait_serving(f"127.0.0.1:{port}", 90, process)
        with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
            info = model_pb2_grpc.ModelServiceStub(channel).GetModelInfo(
                model_pb2.GetModelInfoRequest(), timeout=5
            )
            assert info.model_version == run.artifact_path.name
            metrics = scrape(metrics_port)
            assert metrics[f'recsys_model_version_info{{version="{info.model_version}"}}'] == 1
            process.send_signal(signal.SIGTERM)
            assert process.wait(15) == 0  # GRACE_S=2; the bound is generous, not a timing
    finally:
        if process.poll() is None:
            process.kill()
    output = process.stdout.read()
    assert '"message": "stopped"' in output, output


def test_missing_required_setting_fails_at_start_up():
    env = {k: v for k, v in os.environ.items() if k not in ("FEATURE_ADDR", "MODEL_ADDR")}
    result = subprocess.run(
        [sys.executable, "-m", "services.gateway.server"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2
    assert "FEATURE_ADDR" in result.stdout + result.stderr


def test_whole_stack_as_processes(trained_run, tmp_path):
    source, run = trained_run
    stack = LocalStack(model_dir=run.artifact_path.parent, redis_dir=tmp_path / "redis")
    try:
        with redis.Redis.from_url(stack.start_redis()) as client:
            load_features(
                client, run.artifact_path, source.data.ratings, source.data.items, "recsys"
            )
        stack.start_services(timeout=120)
        with grpc.insecure_channel(stack.address("gateway")) as channel:
            reply = gateway_pb2_grpc.GatewayServiceStub(channel).Recommend(
                gateway_pb2.RecommendRequest(user_id=1, k=3), timeout=10
            )
            assert len(reply.items) == 3 and reply.model_version == run.artifact_path.name
            health = health_pb2_grpc.HealthStub(channel)
            assert health.Check(health_pb2.HealthCheckRequest(), timeout=5).status == (
                health_pb2.HealthCheckResponse.SERVING
            )
        processes = dict(stack.processes)
    finally:
        stack.stop()
    assert {name: p.returncode for name, p in processes.items()} == {
        "feature": 0,
        "model": 0,
        "gateway": 0,
    }


def test_recsys_serve_runs_everything_and_stops_on_sigterm(trained_run, tmp_path):
    source, run = trained_run
    ports = {name: free_port() for name in ("gateway", "feature", "model")}
    command = [
        sys.executable,
        "-m",
        "recsys.cli",
        "serve",
        "--model-dir",
        str(run.artifact_path.parent),
        "--data",
        str(source.path),
        "--redis-dir",
        str(tmp_path / "redis"),
        "--service-log-level",
        "WARNING",
    ]
    for name, port in ports.items():
        command += [f"--{name}-port", str(port)]
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        wait_serving(f"127.0.0.1:{ports['gateway']}", 120, process)
        with grpc.insecure_channel(f"127.0.0.1:{ports['gateway']}") as channel:
            reply = gateway_pb2_grpc.GatewayServiceStub(channel).SimilarItems(
                gateway_pb2.SimilarItemsRequest(movie_id=1, k=2), timeout=10
            )
            assert len(reply.items) == 2
        process.send_signal(signal.SIGTERM)
        assert process.wait(30) == 0
    finally:
        if process.poll() is None:
            process.kill()
    output = process.stdout.read()
    assert "serving model version" in output and output.rstrip().endswith("stopped"), output


def wait_for(condition, what: str, timeout: float = 60.0) -> None:
    """Poll `condition()` until it holds; fail naming `what` after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


def test_sigterm_turns_health_not_serving_and_lets_in_flight_calls_finish(trained_run):
    """Three GetUserFeatures calls are held inside the feature service (its Redis is
    SIGSTOPped) when the process gets SIGTERM: a health Watch sees NOT_SERVING, the calls
    still answer with the users' features once Redis resumes, and the process exits 0."""
    source, run = trained_run
    users = [int(u) for u in source.data.ratings["user_id"].unique()[:3]]
    method = "/recsys.feature.v1.FeatureService/GetUserFeatures"
    in_flight = f'recsys_rpcs_in_flight{{method="{method}"}}'
    with LocalRedis() as redis_server:
        with redis.Redis.from_url(redis_server.url) as client:
            load_features(
                client, run.artifact_path, source.data.ratings, source.data.items, "recsys"
            )
        port, metrics_port = free_port(), free_port()
        env = {
            **os.environ,
            "REDIS_URL": redis_server.url,
            "FEATURE_PORT": str(port),
            "METRICS_PORT": str(metrics_port),
            "GRACE_S": "60",  # longer than the test holds the calls
            "REDIS_TIMEOUT_S": "60",
        }
        process = subprocess.Popen(
            [sys.executable, "-m", "services.feature.server"],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        redis_pid = redis_server.process.pid
        try:
            wait_serving(f"127.0.0.1:{port}", 60, process)
            with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
                watch = health_pb2_grpc.HealthStub(channel).Watch(
                    health_pb2.HealthCheckRequest(), timeout=120
                )
                assert next(watch).status == health_pb2.HealthCheckResponse.SERVING
                stub = feature_pb2_grpc.FeatureServiceStub(channel)
                os.kill(redis_pid, signal.SIGSTOP)
                try:
                    calls = [
                        stub.GetUserFeatures.future(
                            feature_pb2.GetUserFeaturesRequest(user_id=user), timeout=120
                        )
                        for user in users
                    ]
                    wait_for(lambda: scrape(metrics_port).get(in_flight) == 3, "3 calls in flight")
                    process.send_signal(signal.SIGTERM)
                    assert next(watch).status == health_pb2.HealthCheckResponse.NOT_SERVING
                    watch.cancel()
                    assert process.poll() is None and not any(c.done() for c in calls)
                finally:
                    os.kill(redis_pid, signal.SIGCONT)
                assert [c.result().features.user_id for c in calls] == users
            assert process.wait(60) == 0
        finally:
            if process.poll() is None:
                process.kill()
    output = process.stdout.read()
    assert '"message": "signal SIGTERM: shutting down"' in output, output
    assert '"message": "stopped"' in output, output
