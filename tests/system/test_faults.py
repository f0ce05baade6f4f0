"""Faults the served system survives (issue 6), with real Redis and real gRPC: Redis going
away makes requests fail with UNAVAILABLE, not hang, and the services recover by themselves
when it returns; with two model replicas behind the gateway, one of them going away costs
no request. `bench/faults.py` measures the same under load."""

import os
import signal
import threading
import time
from pathlib import Path

import grpc
import pytest
import redis
from prometheus_client import REGISTRY

from recsys.api.gateway.v1 import gateway_pb2, gateway_pb2_grpc
from recsys.featurestore.loader import load_features
from recsys.redis_server import LocalRedis
from recsys.serving.config import Settings
from services.feature.server import connect_redis
from services.feature.server import create_server as feature_server
from services.gateway.server import create_server as gateway_server
from services.gateway.upstream import Upstreams
from services.model.predictor import Predictor, PredictorHolder
from services.model.server import create_server as model_server
from tests.support.servers import ServiceThread, wait_serving
from tests.support.stack import running_stack, swap_on

pytestmark = pytest.mark.slow


def recommend(stub, user_id: int = 1, timeout: float = 10.0):
    return stub.Recommend(gateway_pb2.RecommendRequest(user_id=user_id, k=3), timeout=timeout)


def eventually_ok(stub, timeout: float = 60.0):
    """The first successful Recommend within `timeout` seconds of retrying (a bound against
    a hang, not a measured time); returns it and the errors seen before it."""
    deadline = time.monotonic() + timeout
    errors = []
    while True:
        try:
            return recommend(stub), errors
        except grpc.RpcError as error:
            errors.append(error.code())
            assert time.monotonic() < deadline, f"no recovery; errors: {errors[-5:]}"
            time.sleep(0.1)


def test_redis_down_is_unavailable_and_the_stack_recovers_by_itself(trained_run, tmp_path):
    with (
        LocalRedis(data_dir=tmp_path / "redis", appendonly=True) as server,
        running_stack(trained_run, server.url) as stack,
    ):
        assert len(recommend(stack.stub).items) == 3
        server.stop()  # SIGTERM: the append-only file is complete
        codes = []
        for user_id in (1, 2, 3):
            with pytest.raises(grpc.RpcError) as raised:
                recommend(stack.stub, user_id, timeout=30)
            codes.append(raised.value.code())
            assert "redis unavailable" in raised.value.details()
        assert codes == [grpc.StatusCode.UNAVAILABLE] * 3  # failed fast, not a deadline
        server.start()  # same port, same data
        reply, _ = eventually_ok(stack.stub)
        assert len(reply.items) == 3
        # the same service objects answer: nothing was restarted
        assert all(s.service is not None for s in (stack.gateway, stack.features, stack.model))


def test_a_hung_redis_fails_fast_with_one_attempt(trained_run, tmp_path):
    """Redis SIGSTOPped: a Recommend with a 10 s deadline answers UNAVAILABLE after one
    Redis timeout; the feature service is asked once (its answer tells the gateway's retry
    policy not to retry: another attempt would wait on the same Redis)."""
    get_features = {
        "method": "/recsys.feature.v1.FeatureService/BatchGetUserFeatures",
        "code": "UNAVAILABLE",
    }

    def unavailable_answers() -> float:
        return REGISTRY.get_sample_value("recsys_rpcs_total", get_features) or 0.0

    with (
        LocalRedis(data_dir=tmp_path / "redis") as server,
        running_stack(trained_run, server.url, server_settings={"redis_timeout_s": 0.3}) as stack,
    ):
        assert len(recommend(stack.stub).items) == 3
        before = unavailable_answers()
        os.kill(server.process.pid, signal.SIGSTOP)
        try:
            with pytest.raises(grpc.RpcError) as raised:
                recommend(stack.stub, 2, timeout=10)
        finally:
            os.kill(server.process.pid, signal.SIGCONT)
        assert raised.value.code() == grpc.StatusCode.UNAVAILABLE
        assert raised.value.details() == "feature service: redis unavailable: TimeoutError"
        # the server counts a call after its answer is sent: let the count catch up
        wait_until(lambda: unavailable_answers() > before, "the feature service's answer")
        time.sleep(0.5)  # room for the count of any further attempt (there must be none)
        assert unavailable_answers() - before == 1
        reply, _ = eventually_ok(stack.stub)
        assert len(reply.items) == 3


def test_one_of_two_model_replicas_going_away_costs_no_request(trained_run, redis_url):
    """Calls flow from four client threads while one of two model replicas stops (grace 0:
    its in-flight calls are cancelled, as in a crash), then comes back on its port still
    loading (NOT_SERVING, answering "model not loaded yet"), then finishes loading. The
    gateway's retries and its health-checked balancing keep every call OK."""
    source, run = trained_run
    with redis.Redis.from_url(redis_url) as client:
        load_features(client, run.artifact_path, source.data.ratings, source.data.items, "recsys")
    # this test is about the model replicas: a Redis slowed by a loaded machine must not
    # answer UNAVAILABLE within the default 0.25 s (a Redis fault is another test's subject)
    settings = Settings(
        feature_port=0, model_port=0, gateway_port=0, redis_url=redis_url, redis_timeout_s=2.0
    )
    predictor = Predictor.load(str(run.artifact_path.parent), run.artifact_path.name)

    async def feature():
        return await feature_server(settings, connect_redis(settings))

    with (
        ServiceThread(feature) as features,
        ServiceThread(lambda: model_server(settings, PredictorHolder(predictor))) as first,
    ):
        second = ServiceThread(lambda: model_server(settings, PredictorHolder(predictor))).start()
        second_port = second.port
        gateway_settings = Settings(
            gateway_port=0,
            feature_addr=features.address,
            model_addr=f"ipv4:{first.address},{second.address}",
        )

        async def gateway():
            return await gateway_server(gateway_settings, Upstreams.connect(gateway_settings))

        with ServiceThread(gateway) as running, grpc.insecure_channel(running.address) as channel:
            wait_serving(channel)
            stub = gateway_pb2_grpc.GatewayServiceStub(channel)
            stop = threading.Event()
            outcomes: list[list[str]] = [[] for _ in range(4)]

            def send(outcome: list[str]) -> None:
                user_id = 1
                while not stop.is_set():
                    try:
                        recommend(stub, user_id)
                        outcome.append("OK")
                    except grpc.RpcError as error:
                        outcome.append(f"{error.code().name}: {error.details()}")
                    user_id = user_id % 50 + 1

            def then_answered(more: int) -> None:
                wait_until_answered(outcomes, sum(map(len, outcomes)) + more)

            threads = [threading.Thread(target=send, args=(o,)) for o in outcomes]
            for thread in threads:
                thread.start()
            restarted_holder = PredictorHolder()  # loading: no model yet
            restarted = ServiceThread(
                lambda: model_server(Settings(model_port=second_port), restarted_holder)
            )
            try:
                then_answered(40)
                second.stop(grace=0.0)
                then_answered(150)
                restarted.start()  # listening, NOT_SERVING, "model not loaded yet"
                wait_for_connection(second_port)  # the gateway reconnected to it
                then_answered(150)
                swap_on(restarted, restarted_holder, predictor)  # loaded: SERVING again
                then_answered(150)
            finally:
                stop.set()
                for thread in threads:
                    thread.join(30)
                restarted.stop()
    sent = [status for outcome in outcomes for status in outcome]
    assert len(sent) >= 490 and set(sent) == {"OK"}, {s: sent.count(s) for s in set(sent)}


def wait_until(condition, what: str, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.02)


def wait_until_answered(outcomes: list[list[str]], count: int, timeout: float = 120.0) -> None:
    deadline = time.monotonic() + timeout
    while sum(map(len, outcomes)) < count:
        assert time.monotonic() < deadline, f"only {sum(map(len, outcomes))} calls answered"
        time.sleep(0.02)


def wait_for_connection(port: int, timeout: float = 60.0) -> None:
    """Until some client holds an established TCP connection to 127.0.0.1:`port` (Linux
    /proc/net/tcp and tcp6, where gRPC's sockets show 127.0.0.1 v4-mapped; state 01)."""
    local = {f"0100007F:{port:04X}", f"0000000000000000FFFF00000100007F:{port:04X}"}
    deadline = time.monotonic() + timeout
    while True:
        lines = [
            line.split()
            for table in ("tcp", "tcp6")
            for line in Path(f"/proc/net/{table}").read_text().splitlines()[1:]
        ]
        if any(f[1] in local and f[3] == "01" for f in lines):
            return
        assert time.monotonic() < deadline, f"nobody connected to port {port}"
        time.sleep(0.05)
