"""TLS and mutual TLS with throwaway certificates: a TLS-only server answers through a secure
channel and not in plaintext; under mTLS a client without a certificate, or with one from
another CA, is refused; the whole stack (gateway → feature / model) runs over mTLS; the
health probe speaks TLS; a running server takes renewed certificate, key and CA files for
new connections without a restart."""

from __future__ import annotations

import os
import shutil
import socket
import ssl
import time
from pathlib import Path

import grpc
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from grpc_health.v1 import health_pb2, health_pb2_grpc

from recsys.api.gateway.v1 import gateway_pb2 as pb
from recsys.healthcheck import check
from recsys.healthcheck import main as healthcheck_main
from recsys.serving import tls
from recsys.serving.config import ConfigError, Settings
from recsys.serving.server import Service
from tests.support.certs import make_certificates, make_generation
from tests.support.servers import ServiceThread
from tests.support.stack import running_stack


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
    from tests.support.servers import wait_serving

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


def replace(source: str | Path, target: Path) -> None:
    """Put `source`'s bytes at `target` atomically: a temporary file beside it, then
    os.replace, as a certificate renewal should."""
    temporary = target.with_name(target.name + ".tmp")
    shutil.copyfile(source, temporary)
    os.replace(temporary, target)


def served_fingerprint(address: str) -> bytes:
    """SHA-256 fingerprint of the certificate a new TLS connection to `address` gets,
    read with `ssl` (not verified; ALPN h2 as a gRPC client offers)."""
    host, port = address.rsplit(":", 1)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    context.set_alpn_protocols(["h2"])
    with (
        socket.create_connection((host, int(port)), timeout=5) as raw,
        context.wrap_socket(raw, server_hostname="localhost") as connection,
    ):
        der = connection.getpeercert(binary_form=True)
    return x509.load_der_x509_certificate(der).fingerprint(hashes.SHA256())


def eventually(condition, timeout_s: float = 10.0) -> bool:
    """Poll `condition` until it holds or `timeout_s` passed; whether it held."""
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)
    return True


def test_a_server_serves_renewed_certificate_files_without_a_restart(tmp_path):
    """Generation 2 has its own CA: a client trusting only that CA is refused until the
    files are replaced, then a new connection gets generation 2's certificate; half a
    renewal (the certificate without its key) is not taken; a connection opened before the
    swap keeps answering."""
    gen1, gen2 = make_generation(tmp_path, "gen1"), make_generation(tmp_path, "gen2")
    live = tmp_path / "live"
    live.mkdir()
    cert, key = live / "tls.crt", live / "tls.key"
    replace(gen1.cert, cert)
    replace(gen1.key, key)
    trusts_gen1, trusts_gen2 = Settings(tls_ca_file=gen1.ca), Settings(tls_ca_file=gen2.ca)
    server = Settings(tls_cert_file=str(cert), tls_key_file=str(key))
    serving = health_pb2.HealthCheckResponse.SERVING
    with ServiceThread(bare_service(server)) as running:
        address = running.address
        with tls.sync_channel(address, trusts_gen1) as opened_before:
            assert wait_for_health(opened_before) == serving
            assert served_fingerprint(address) == gen1.fingerprint
            assert not check(address, settings=trusts_gen2, timeout=2)

            replace(gen2.cert, cert)  # the key is still generation 1's: not a usable pair
            assert served_fingerprint(address) == gen1.fingerprint
            assert check(address, settings=trusts_gen1, timeout=5)

            replace(gen2.key, key)
            assert eventually(lambda: served_fingerprint(address) == gen2.fingerprint)
            assert check(address, settings=trusts_gen2, timeout=5)
            assert not check(address, settings=trusts_gen1, timeout=2)
            assert health(opened_before) == serving  # its connection was not dropped
    assert gen1.serial != gen2.serial


def test_mutual_tls_takes_a_renewed_ca_file_without_a_restart(tmp_path):
    """Under mTLS the server's TLS_CA_FILE is followed too: a client certificate of a new
    CA is refused until the CA file becomes a bundle of both CAs, then accepted; the old
    CA's clients still are."""
    gen1, gen2 = make_generation(tmp_path, "gen1"), make_generation(tmp_path, "gen2")
    ca = tmp_path / "clients-ca.pem"
    replace(gen1.ca, ca)
    server = Settings(
        tls_cert_file=gen1.cert, tls_key_file=gen1.key, tls_ca_file=str(ca), tls_client_auth=True
    )
    old_client = Settings(tls_ca_file=gen1.ca, tls_cert_file=gen1.cert, tls_key_file=gen1.key)
    new_client = Settings(tls_ca_file=gen1.ca, tls_cert_file=gen2.cert, tls_key_file=gen2.key)
    with ServiceThread(bare_service(server)) as running:
        with tls.sync_channel(running.address, old_client) as channel:
            wait_for_health(channel)
        assert not check(running.address, settings=new_client, timeout=2)
        bundle = tmp_path / "bundle.pem"
        bundle.write_bytes(Path(gen1.ca).read_bytes() + Path(gen2.ca).read_bytes())
        replace(bundle, ca)
        assert eventually(lambda: check(running.address, settings=new_client, timeout=2))
        assert check(running.address, settings=old_client, timeout=5)


def test_certificate_files_are_read_again_only_when_changed_and_usable(tmp_path, caplog):
    gen1, gen2 = make_generation(tmp_path, "gen1"), make_generation(tmp_path, "gen2")
    cert, key = tmp_path / "tls.crt", tmp_path / "tls.key"
    replace(gen1.cert, cert)
    replace(gen1.key, key)
    files = tls.CertificateFiles(str(cert), str(key))
    assert isinstance(files.initial(), grpc.ServerCertificateConfiguration)
    assert files.fetch() is None  # unchanged
    not_pem = tmp_path / "not.pem"
    not_pem.write_text("hello")
    replace(not_pem, cert)
    assert files.fetch() is None  # refused: keeps the current pair
    assert files.fetch() is None
    assert sum("cannot be used yet" in r.getMessage() for r in caplog.records) == 1
    replace(gen2.cert, cert)
    replace(gen2.key, key)
    assert isinstance(files.fetch(), grpc.ServerCertificateConfiguration)
    assert files.fetch() is None
    assert files.reloads == 1
    key.unlink()  # a file that cannot be read: the current pair stays
    assert files.fetch() is None
    with pytest.raises(ConfigError, match="TLS_KEY_FILE"):
        tls.CertificateFiles(str(cert), str(key)).initial()
