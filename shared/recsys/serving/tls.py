"""TLS and mutual TLS from the settings: server credentials for every server, channel
credentials for the gateway's upstream calls and the command-line clients (health probe,
load generator). Off by default; PEM files named by TLS_CERT_FILE, TLS_KEY_FILE and
TLS_CA_FILE, client certificates required with TLS_CLIENT_AUTH."""

from __future__ import annotations

from pathlib import Path

import grpc

from recsys.serving.config import ConfigError, Settings


def read_pem(variable: str, path: str) -> bytes:
    """The bytes of a PEM file; a ConfigError naming the variable when it cannot be read."""
    try:
        data = Path(path).read_bytes()
    except OSError as exc:
        raise ConfigError(f"{variable}={path}: {exc.strerror or exc}") from None
    if b"-----BEGIN " not in data:
        raise ConfigError(f"{variable}={path} is not a PEM file")
    return data


def server_credentials(settings: Settings) -> grpc.ServerCredentials | None:
    """TLS credentials of a server (None: plaintext). With TLS_CLIENT_AUTH, a client must
    present a certificate signed by TLS_CA_FILE or its handshake fails."""
    if not settings.tls_cert_file:
        return None
    key_pair = (
        read_pem("TLS_KEY_FILE", settings.tls_key_file),
        read_pem("TLS_CERT_FILE", settings.tls_cert_file),
    )
    ca = read_pem("TLS_CA_FILE", settings.tls_ca_file) if settings.tls_client_auth else None
    return grpc.ssl_server_credentials(
        [key_pair], root_certificates=ca, require_client_auth=settings.tls_client_auth
    )


def channel_credentials(settings: Settings) -> grpc.ChannelCredentials | None:
    """Credentials of a client channel (None: plaintext): TLS when TLS_CA_FILE is set,
    verifying the server against it and presenting TLS_CERT_FILE / TLS_KEY_FILE (if set) as
    the client certificate for servers that require one."""
    if not settings.tls_ca_file:
        return None
    key = cert = None
    if settings.tls_cert_file:
        key = read_pem("TLS_KEY_FILE", settings.tls_key_file)
        cert = read_pem("TLS_CERT_FILE", settings.tls_cert_file)
    return grpc.ssl_channel_credentials(
        root_certificates=read_pem("TLS_CA_FILE", settings.tls_ca_file),
        private_key=key,
        certificate_chain=cert,
    )


def server_name_option(server_name: str) -> list[tuple[str, str]]:
    """Channel option to verify the server's certificate for `server_name` instead of the
    address's host (e.g. a probe dialing 127.0.0.1 of a certificate for recsys-feature)."""
    return [("grpc.ssl_target_name_override", server_name)] if server_name else []


def sync_channel(
    address: str, settings: Settings, options=(), server_name: str = ""
) -> grpc.Channel:
    """A blocking channel for command-line clients, TLS per `channel_credentials`."""
    credentials = channel_credentials(settings)
    options = [*options, *server_name_option(server_name)]
    if credentials is None:
        return grpc.insecure_channel(address, options=options)
    return grpc.secure_channel(address, credentials, options=options)


def aio_channel(
    address: str, settings: Settings, options=(), server_name: str = "", interceptors=None
) -> grpc.aio.Channel:
    """An asyncio channel, TLS per `channel_credentials`."""
    credentials = channel_credentials(settings)
    options = [*options, *server_name_option(server_name)]
    if credentials is None:
        return grpc.aio.insecure_channel(address, options=options, interceptors=interceptors)
    return grpc.aio.secure_channel(address, credentials, options=options, interceptors=interceptors)
