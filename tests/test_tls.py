"""TLS and mutual TLS with throwaway certificates: a TLS-only server answers through a secure
channel and not in plaintext; under mTLS a client without a certificate, or with one from
another CA, is refused; the whole stack (gateway → feature / model) runs over mTLS; the
health probe speaks TLS."""

from __future__ import annotations

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from recsys.api.gateway.v1 import gateway_pb2 as pb
from recsys.healthcheck import check
from recsys.healthcheck import main as healthcheck_main
from recsys.serving import tls
from recsys.serving.config import ConfigError, Settings
from recsys.serving.server import Service
from tests.certs import make_certificates
from tests.servers import ServiceThread
from tests.stack import running_stack


@pytest.fixture(scope="module")
def certs(tmp_path_factory):
    return make_certificates(tmp_path_factory.mktemp("certs"))


def bare_service(settings: Settings):
    """A Service with only health (SERVING), built like every server."""

    async def factory():
        service = Service(settings, [])
        service.bind(0)

        async def ready():
            return True

        service.watch_readiness(ready, every_s=0.05)
        return service

    return factory


def health(channel: grpc.Channel) -> int:
    return (
        health_pb2_grpc.HealthStub(channel)
        .Check(health_pb2.HealthCheckRequest(), timeout=5, wait_for_ready=False)
        .status
    )


def wait_for_health(channel: grpc.Channel) -> int:
    from tests.servers import wait_serving

    wait_serving(channel, timeout=10)
    return health(channel)


def test_a_tls_server_answers_a_secure_channel_only(certs):
    server = Settings(tls_cert_file=certs.cert, tls_key_file=certs.key)
    with ServiceThread(bare_service(server)) as running:
        client = Settings(tls_ca_file=certs.ca)
        with tls.sync_channel(running.address, client) as channel:
            assert wait_for_health(channel) == health_pb2.HealthCheckResponse.SERVING
        with grpc.insecure_channel(running.address) as plaintext, pytest.raises(grpc.RpcError):
            health(plaintext)
        # a client that trusts another CA does not accept the server's certificate
        with (
            tls.sync_channel(running.address, Settings(tls_ca_file=certs.rogue_ca)) as channel,
            pytest.raises(grpc.RpcError) as caught,
        ):
            health(channel)
        assert caught.value.code() == grpc.StatusCode.UNAVAILABLE


def test_mutual_tls_refuses_a_client_without_a_valid_certificate(certs):
    server = Settings(
        tls_cert_file=certs.cert,
        tls_key_file=certs.key,
        tls_ca_file=certs.ca,
        tls_client_auth=True,
    )
    with ServiceThread(bare_service(server)) as running:
        good = Settings(tls_ca_file=certs.ca, tls_cert_file=certs.cert, tls_key_file=certs.key)
        with tls.sync_channel(running.address, good) as channel:
            assert wait_for_health(channel) == health_pb2.HealthCheckResponse.SERVING
        refused = {
            "no certificate": Settings(tls_ca_file=certs.ca),
            "another CA's certificate": Settings(
                tls_ca_file=certs.ca, tls_cert_file=certs.rogue_cert, tls_key_file=certs.rogue_key
            ),
        }
        for why, client in refused.items():
            with tls.sync_channel(running.address, client) as channel:
                with pytest.raises(grpc.RpcError) as caught:
                    health(channel)
                assert caught.value.code() == grpc.StatusCode.UNAVAILABLE, why
        with grpc.insecure_channel(running.address) as plaintext, pytest.raises(grpc.RpcError):
            health(plaintext)


def test_the_health_probe_speaks_tls(certs, monkeypatch):
    server = Settings(
        tls_cert_file=certs.cert, tls_key_file=certs.key, tls_ca_file=certs.ca, tls_client_auth=True
    )
    with ServiceThread(bare_service(server)) as running:
        client = Settings(tls_ca_file=certs.ca, tls_cert_file=certs.cert, tls_key_file=certs.key)
        with tls.sync_channel(running.address, client) as channel:
            wait_for_health(channel)
        assert check(running.address, settings=client)
        assert not check(running.address, timeout=1)  # plaintext
        assert not check(running.address, settings=Settings(tls_ca_file=certs.ca), timeout=1)
        # the container probe reads the service's own TLS settings from the environment
        for name, value in (
            ("TLS_CA_FILE", certs.ca),
            ("TLS_CERT_FILE", certs.cert),
            ("TLS_KEY_FILE", certs.key),
        ):
            monkeypatch.setenv(name, value)
        assert healthcheck_main([running.address, "--server-name", "localhost"]) == 0


@pytest.mark.slow
def test_the_whole_stack_over_mutual_tls(trained_run, redis_url, certs):
    """Every server requires client certificates; the gateway presents its own to the
    feature and model services; a client with a certificate gets recommendations."""
    files = {"tls_cert_file": certs.cert, "tls_key_file": certs.key, "tls_ca_file": certs.ca}
    client = Settings(**files)
    with running_stack(
        trained_run,
        redis_url,
        server_settings={**files, "tls_client_auth": True},
        client_settings=client,
    ) as stack:
        reply = stack.stub.Recommend(pb.RecommendRequest(user_id=3, k=5), timeout=10)
        assert len(reply.items) == 5
        written = stack.stub.RateItems(
            pb.RateItemsRequest(user_id=99_001, ratings=[pb.Rating(movie_id=1, rating=4)]),
            timeout=10,
        )
        assert written.created
        for address in (stack.features.address, stack.model.address):
            assert check(address, settings=client)
            assert not check(address, settings=Settings(tls_ca_file=certs.ca), timeout=1)


def test_tls_settings_fail_clearly(certs, tmp_path):
    with pytest.raises(ConfigError, match="TLS_CERT_FILE and TLS_KEY_FILE"):
        Settings(tls_cert_file=certs.cert)
    with pytest.raises(ConfigError, match="TLS_CLIENT_AUTH"):
        Settings(tls_cert_file=certs.cert, tls_key_file=certs.key, tls_client_auth=True)
    with pytest.raises(ConfigError, match="TLS_CERT_FILE=.*missing.pem"):
        tls.server_credentials(
            Settings(tls_cert_file=str(tmp_path / "missing.pem"), tls_key_file=certs.key)
        )
    not_pem = tmp_path / "not.pem"
    not_pem.write_text("hello")
    with pytest.raises(ConfigError, match="TLS_CA_FILE=.*not a PEM file"):
        tls.channel_credentials(Settings(tls_ca_file=str(not_pem)))
    assert tls.server_credentials(Settings()) is None
    assert tls.channel_credentials(Settings()) is None


def test_the_load_generator_reads_tls_and_token_from_the_environment(certs, monkeypatch):
    """open_channel speaks mTLS and sends UPSTREAM_TOKEN to a server that wants a token on
    every read."""
    from recsys.api.model.v1 import model_pb2, model_pb2_grpc
    from recsys.loadtest.channels import open_channel

    class Info(model_pb2_grpc.ModelServiceServicer):
        async def GetModelInfo(self, request, context):
            return model_pb2.GetModelInfoResponse(model_version="v")

    server = Settings(
        tls_cert_file=certs.cert,
        tls_key_file=certs.key,
        tls_ca_file=certs.ca,
        tls_client_auth=True,
        auth_tokens="load-token",
        auth_reads=True,
    )

    async def factory():
        service = Service(server, ["recsys.model.v1.ModelService"])
        model_pb2_grpc.add_ModelServiceServicer_to_server(Info(), service.server)
        service.bind(0)
        return service

    async def model_info(address):
        channel = open_channel(address)  # on the loop that uses it
        try:
            reply = await model_pb2_grpc.ModelServiceStub(channel).GetModelInfo(
                model_pb2.GetModelInfoRequest(), timeout=5
            )
            return reply.model_version
        except grpc.aio.AioRpcError as error:
            return error.code()
        finally:
            await channel.close()

    with ServiceThread(factory) as running:
        files = {"TLS_CA_FILE": certs.ca, "TLS_CERT_FILE": certs.cert, "TLS_KEY_FILE": certs.key}
        for name, value in files.items():
            monkeypatch.setenv(name, value)
        refused = running.run(model_info(running.address))
        monkeypatch.setenv("UPSTREAM_TOKEN", "load-token")
        answered = running.run(model_info(running.address))
    assert refused == grpc.StatusCode.UNAUTHENTICATED  # mTLS worked, the token was missing
    assert answered == "v"
