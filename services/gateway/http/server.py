"""The HTTP side's server: aiohttp on BIND_HOST:HTTP_PORT (HTTPS with the gRPC side's
certificate when TLS_CERT_FILE is set, client certificates required with TLS_CLIENT_AUTH,
renewed files taken for new connections), forwarding over one channel to the gateway's own
gRPC server on a loopback-only port, so auth, metrics, request ids, deadlines, error details
and coalescing are those of every gRPC client."""

from __future__ import annotations

import logging
import ssl

import grpc
from aiohttp import web

from recsys.serving import tls
from recsys.serving.config import Settings
from recsys.serving.server import message_options
from services.gateway.http.app import create_app

log = logging.getLogger(__name__)


class HttpSide:
    """`start()` listens, `stop()` stops; `port` is the bound port once started."""

    def __init__(self, settings: Settings, service, grpc_target: str):
        self.settings = settings
        self.channel = grpc.aio.insecure_channel(grpc_target, options=message_options(settings))
        app = create_app(service, self.channel, max_body_bytes=settings.max_message_bytes)
        self.runner = web.AppRunner(
            app, access_log=None, handle_signals=False, shutdown_timeout=settings.grace_s
        )
        self.https = ServerContext(settings) if settings.tls_cert_file else None
        self.port = 0

    async def start(self) -> int:
        await self.runner.setup()
        site = web.TCPSite(
            self.runner,
            self.settings.bind_host,
            self.settings.http_port,
            ssl_context=self.https.listening if self.https else None,
        )
        await site.start()
        self.port = self.runner.addresses[0][1]
        log.info("http listening", extra={"port": self.port, "https": self.https is not None})
        return self.port

    async def stop(self) -> None:
        """Stop listening, let requests in flight finish (within GRACE_S), close the channel."""
        await self.runner.cleanup()
        await self.channel.close()


class ServerContext:
    """The TLS context of the HTTP side from the settings' files. At each handshake the
    files' stamp is compared (as the gRPC side does): changed and consistent files give the
    connection a new context; until then, the previous one."""

    def __init__(self, settings: Settings):
        self.settings = settings
        self.files = tls.certificate_files(settings)
        for variable, path in (
            ("TLS_CERT_FILE", settings.tls_cert_file),
            ("TLS_KEY_FILE", settings.tls_key_file),
            ("TLS_CA_FILE", self.files.ca_file),
        ):
            if path:
                tls.read_pem(variable, path)  # a ConfigError naming the variable
        self._stamp = self.files.stamp()
        self.current = self._context()
        self.listening = self._context()
        self.listening.sni_callback = self._handshake
        self.reloads = 0

    def _context(self) -> ssl.SSLContext:
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.load_cert_chain(self.files.cert_file, self.files.key_file)
        if self.settings.tls_client_auth:
            context.verify_mode = ssl.CERT_REQUIRED
            context.load_verify_locations(cafile=self.files.ca_file)
        return context

    def _handshake(self, connection: ssl.SSLObject, server_name, context) -> None:
        stamp = self.files.stamp()
        if stamp is not None and stamp != self._stamp:
            self._stamp = stamp  # tried once per change, not at every handshake
            try:
                self.current = self._context()
                self.reloads += 1
                log.info("TLS certificate files changed: new HTTPS connections use them")
            except (OSError, ssl.SSLError) as exc:
                log.warning("TLS certificate files changed but cannot be used yet (%s)", exc)
        connection.context = self.current
