"""TLS and mutual TLS from the settings: server credentials for every server, channel
credentials for the gateway's upstream calls and the command-line clients (health probe,
load generator). Off by default; PEM files named by TLS_CERT_FILE, TLS_KEY_FILE and
TLS_CA_FILE, client certificates required with TLS_CLIENT_AUTH.

A server picks up renewed files without a restart (`CertificateFiles`): before each new
connection's handshake grpc asks for the current certificate configuration, and the files
are read again when they changed. Channels read their files once, when they are made."""

from __future__ import annotations

import logging
import os
import ssl
import threading
from pathlib import Path

import grpc

from recsys.serving.config import ConfigError, Settings

log = logging.getLogger(__name__)


def read_pem(variable: str, path: str) -> bytes:
    """The bytes of a PEM file; a ConfigError naming the variable when it cannot be read."""
    try:
        data = Path(path).read_bytes()
    except OSError as exc:
        raise ConfigError(f"{variable}={path}: {exc.strerror or exc}") from None
    if b"-----BEGIN " not in data:
        raise ConfigError(f"{variable}={path} is not a PEM file")
    return data


Stamp = tuple[tuple[int, int, int], ...]  # (inode, size, mtime ns) of each file


class CertificateFiles:
    """The server's certificate, key and (with client authentication) CA files, read again
    when they change: `fetch` is grpc's certificate configuration fetcher, called before
    every new connection's handshake; it returns a new configuration when a file's inode,
    size or modification time changed since the configuration in use was read, else None
    (keep the current one). Connections already open keep the certificate they were made
    with.

    Renewed files are taken only once they are consistent: the key must match the
    certificate and every file must be PEM (checked with `ssl`), and nothing may change
    while they are read; until then (e.g. the certificate replaced, the key not yet) the
    server keeps serving the previous pair and logs a warning once per such state (grpc
    would refuse such a pair too and keep the current one, logging an error on every
    handshake). Replace
    each file atomically (write a temporary file, then `os.replace`), as Kubernetes does for
    a mounted Secret (a symlink swap)."""

    def __init__(self, cert_file: str, key_file: str, ca_file: str = ""):
        self.cert_file, self.key_file, self.ca_file = cert_file, key_file, ca_file
        self._lock = threading.Lock()
        self._stamp: Stamp | None = None
        self._refused: Stamp | None = None
        self.reloads = 0  # configurations taken after the initial one

    @property
    def paths(self) -> list[str]:
        return [p for p in (self.cert_file, self.key_file, self.ca_file) if p]

    def stamp(self) -> Stamp | None:
        """What identifies the files' current contents; None when one cannot be read."""
        try:
            stats = [os.stat(path) for path in self.paths]
        except OSError:
            return None
        return tuple((s.st_ino, s.st_size, s.st_mtime_ns) for s in stats)

    def initial(self) -> grpc.ServerCertificateConfiguration:
        """The configuration at start-up; a ConfigError naming the variable when a file
        cannot be read or is not PEM."""
        with self._lock:
            stamp = self.stamp()
            configuration = self._configuration(
                read_pem("TLS_KEY_FILE", self.key_file),
                read_pem("TLS_CERT_FILE", self.cert_file),
                read_pem("TLS_CA_FILE", self.ca_file) if self.ca_file else None,
            )
            self._stamp = stamp
            return configuration

    def fetch(self) -> grpc.ServerCertificateConfiguration | None:
        """grpc's fetcher: a new configuration when the files changed and are consistent,
        else None. Never raises (an exception here would fail the handshake)."""
        try:
            with self._lock:
                return self._fetch()
        except Exception:  # a bug: keep serving the current certificate
            log.exception("TLS certificate files: reload failed, keeping the current ones")
            return None

    def _fetch(self) -> grpc.ServerCertificateConfiguration | None:
        stamp = self.stamp()
        if stamp is None or stamp == self._stamp or stamp == self._refused:
            return None
        try:
            check = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            check.load_cert_chain(self.cert_file, self.key_file)  # the key matches
            if self.ca_file:
                check.load_verify_locations(cafile=self.ca_file)
            key, cert = Path(self.key_file).read_bytes(), Path(self.cert_file).read_bytes()
            ca = Path(self.ca_file).read_bytes() if self.ca_file else None
        except (OSError, ssl.SSLError) as exc:
            self._refused = stamp
            log.warning(
                "TLS certificate files changed but cannot be used yet (%s): keeping the "
                "current certificate",
                exc,
            )
            return None
        if self.stamp() != stamp:  # changed while being read: take them next time
            return None
        self._stamp, self._refused = stamp, None
        self.reloads += 1
        log.info("TLS certificate files changed: new connections use them")
        return self._configuration(key, cert, ca)

    @staticmethod
    def _configuration(key: bytes, cert: bytes, ca: bytes | None):
        return grpc.ssl_server_certificate_configuration([(key, cert)], root_certificates=ca)


def certificate_files(settings: Settings) -> CertificateFiles | None:
    """The server's certificate files (None: plaintext); the CA file only with
    TLS_CLIENT_AUTH, which is when a server uses it."""
    if not settings.tls_cert_file:
        return None
    ca = settings.tls_ca_file if settings.tls_client_auth else ""
    return CertificateFiles(settings.tls_cert_file, settings.tls_key_file, ca)


def server_credentials(
    settings: Settings, files: CertificateFiles | None = None
) -> grpc.ServerCredentials | None:
    """TLS credentials of a server (None: plaintext), following `files` (default: those of
    `settings`) as they are renewed. With TLS_CLIENT_AUTH, a client must present a
    certificate signed by TLS_CA_FILE or its handshake fails."""
    files = files or certificate_files(settings)
    if files is None:
        return None
    return grpc.dynamic_ssl_server_credentials(
        files.initial(), files.fetch, require_client_authentication=settings.tls_client_auth
    )


def channel_credentials(settings: Settings) -> grpc.ChannelCredentials | None:
    """Credentials of a client channel (None: plaintext): TLS when TLS_CA_FILE is set,
    verifying the server against it and presenting TLS_CERT_FILE / TLS_KEY_FILE (if set) as
    the client certificate for servers that require one. The files are read here, once: a
    channel keeps these bytes for its whole life, reconnections included, so renewed files
    reach only channels made after they changed."""
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
