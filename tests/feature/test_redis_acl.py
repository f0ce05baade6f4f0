"""Redis with an ACL user and password taken from REDIS_URL (`redis://user:pass@host/0`),
against a real redis-server whose default user is disabled; the password never appears in
a log line or an error, in-process or from the real entry point."""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import time

import grpc
import pytest
import redis

from recsys.api.feature.v1 import feature_pb2, feature_pb2_grpc
from recsys.api.gateway.v1 import gateway_pb2 as pb
from recsys.launcher import wait_channel_serving
from recsys.logs import JsonFormatter
from recsys.redis_client import redact_url, sync_client
from recsys.redis_server import LocalRedis, free_port
from recsys.serving.config import Settings
from services.feature.server import connect_redis
from services.feature.server import create_server as feature_server
from tests.support.servers import ServiceThread
from tests.support.stack import running_stack

PASSWORD = "s3cret-Pa55-word"
USER = "recsys-app"


@pytest.fixture(scope="module")
def acl_redis():
    """A redis-server where only USER (with PASSWORD) may connect."""
    server = LocalRedis().start()
    with redis.Redis(host="127.0.0.1", port=server.port) as admin:
        admin.execute_command("ACL", "SETUSER", USER, "on", f">{PASSWORD}", "~*", "&*", "+@all")
        admin.execute_command("ACL", "SETUSER", "default", "off")
    yield server
    server.cleanup()


def url_of(server: LocalRedis, password: str = PASSWORD) -> str:
    return f"redis://{USER}:{password}@127.0.0.1:{server.port}/0"


def test_redact_url():
    assert redact_url("redis://app:pw@host:6379/0") == "redis://***@host:6379/0"
    assert redact_url("rediss://:pw@host/1") == "rediss://***@host/1"
    assert redact_url("redis://host:6379/0?password=pw&db=2") == (
        "redis://host:6379/0?password=***&db=2"
    )
    assert redact_url("redis://127.0.0.1:6379/0") == "redis://127.0.0.1:6379/0"


def test_the_acl_user_is_required(acl_redis):
    with (
        redis.Redis(host="127.0.0.1", port=acl_redis.port) as anonymous,
        pytest.raises(redis.exceptions.AuthenticationError),
    ):
        anonymous.ping()
    with sync_client(url_of(acl_redis)) as client:
        assert client.ping()
        assert client.acl_whoami() == USER


def all_logged(records) -> str:
    formatter = JsonFormatter()
    return "\n".join(formatter.format(record) for record in records)


@pytest.mark.slow
def test_the_stack_runs_on_an_acl_user_and_never_logs_the_password(trained_run, acl_redis, caplog):
    with caplog.at_level(logging.DEBUG), running_stack(trained_run, url_of(acl_redis)) as stack:
        assert stack.stub.Recommend(pb.RecommendRequest(user_id=3, k=3), timeout=10).items
        reply = stack.stub.RateItems(
            pb.RateItemsRequest(user_id=55_001, ratings=[pb.Rating(movie_id=1, rating=4)]),
            timeout=10,
        )
        assert reply.created
    logged = all_logged(caplog.records)
    assert "rpc" in logged and PASSWORD not in logged


def test_a_wrong_password_is_unavailable_and_not_logged(acl_redis, caplog):
    wrong = "not-the-Pa55word"
    settings = Settings(feature_port=0, redis_url=url_of(acl_redis, wrong), redis_timeout_s=2)
    assert wrong not in repr(settings)

    async def factory():
        return await feature_server(settings, connect_redis(settings))

    with (
        caplog.at_level(logging.DEBUG),
        ServiceThread(factory) as running,
        grpc.insecure_channel(running.address) as channel,
    ):
        stub = feature_pb2_grpc.FeatureServiceStub(channel)
        with pytest.raises(grpc.RpcError) as caught:
            stub.GetUserFeatures(feature_pb2.GetUserFeaturesRequest(user_id=1), timeout=10)
        assert caught.value.code() == grpc.StatusCode.UNAVAILABLE
        assert wrong not in caught.value.details()
        with pytest.raises(TimeoutError):  # never SERVING without Redis
            wait_channel_serving(channel, 1.5)
    logged = all_logged(caplog.records)
    assert "redis unavailable" in logged and wrong not in logged


@pytest.mark.slow
def test_the_feature_process_never_prints_the_password(acl_redis):
    """The real entry point at DEBUG with a wrong password: it keeps reporting Redis as
    unreachable, and no line of its output holds the password."""
    wrong = "wrong-Pa55word-xyz"
    port = free_port()
    env = {
        **os.environ,
        "REDIS_URL": url_of(acl_redis, wrong),
        "FEATURE_PORT": str(port),
        "LOG_LEVEL": "DEBUG",
        "GRACE_S": "1",
    }
    process = subprocess.Popen(
        [sys.executable, "-m", "services.feature.server"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
            stub = feature_pb2_grpc.FeatureServiceStub(channel)
            deadline = time.monotonic() + 60
            while True:  # until the server is up and answers (UNAVAILABLE: Redis refused)
                try:
                    stub.GetUserFeatures(feature_pb2.GetUserFeaturesRequest(user_id=1), timeout=5)
                except grpc.RpcError as error:
                    if "redis unavailable" in (error.details() or ""):
                        break
                assert time.monotonic() < deadline, "the feature service never answered"
                time.sleep(0.1)
        process.send_signal(signal.SIGTERM)
        assert process.wait(15) == 0
    finally:
        if process.poll() is None:
            process.kill()
    output = process.stdout.read()
    assert "redis unavailable" in output and "readiness probe failed" in output, output
    assert wrong not in output
