"""Bearer-token authentication: a server interceptor that checks the `authorization: Bearer
<token>` metadata of write RPCs (and of reads too with AUTH_READS) against AUTH_TOKENS.

Missing or malformed credentials are UNAUTHENTICATED, a token the server does not accept
PERMISSION_DENIED (raised as recsys.errors exceptions, so the error interceptor answers and
counts them like any other). Health checks and reflection are always open. Tokens are
compared in constant time (on their SHA-256 digests, so not even the length leaks)."""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Iterable

import grpc

from recsys.errors import PermissionDenied, Unauthenticated

METADATA_KEY = "authorization"
SCHEME = "bearer"

# Every RPC that changes stored state (or is otherwise an admin action), by full method name.
# tests/serving/test_auth.py checks this against the services' descriptors, so a new RPC is
# classified.
WRITE_METHODS = frozenset(
    {
        "/recsys.gateway.v1.GatewayService/RateItems",
        "/recsys.gateway.v1.GatewayService/DeleteRatings",
        "/recsys.gateway.v1.GatewayService/DeleteUser",
        "/recsys.feature.v1.FeatureService/UpsertRatings",
        "/recsys.feature.v1.FeatureService/DeleteRatings",
        "/recsys.feature.v1.FeatureService/DeleteUser",
    }
)
OPEN_PREFIXES = (
    "/grpc.health.v1.Health/",
    "/grpc.reflection.v1alpha.ServerReflection/",
    "/grpc.reflection.v1.ServerReflection/",
)


def _digest(token: str) -> bytes:
    return hashlib.sha256(token.encode()).digest()


def bearer_metadata(token: str) -> tuple[tuple[str, str], ...]:
    """Outgoing metadata carrying `token` (empty when there is none)."""
    return ((METADATA_KEY, f"Bearer {token}"),) if token else ()


class TokenCheck:
    """The accepted tokens, and the check of one call's metadata."""

    def __init__(self, tokens: Iterable[str]):
        self._digests = [_digest(t) for t in tokens]
        if not self._digests:
            raise ValueError("no tokens")

    def check(self, metadata) -> None:
        """Raise Unauthenticated / PermissionDenied unless the metadata holds an accepted
        bearer token."""
        values = [value for key, value in metadata or () if key == METADATA_KEY]
        if not values:
            raise Unauthenticated("authorization metadata missing: send 'Bearer <token>'")
        scheme, _, token = str(values[0]).partition(" ")
        token = token.strip()
        if scheme.lower() != SCHEME or not token:
            raise Unauthenticated("authorization metadata is not 'Bearer <token>'")
        given = _digest(token)
        accepted = False
        for digest in self._digests:  # no early exit: the time does not depend on which
            accepted |= hmac.compare_digest(given, digest)
        if not accepted:
            raise PermissionDenied("the bearer token is not accepted")


def needs_token(method: str, reads: bool) -> bool:
    if method.startswith(OPEN_PREFIXES):
        return False
    return reads or method in WRITE_METHODS


class AuthInterceptor(grpc.aio.ServerInterceptor):
    """Refuses calls to protected methods without an accepted token. Put it after the
    ErrorInterceptor, which turns the refusal into the status code."""

    def __init__(self, tokens: Iterable[str], *, reads: bool = False):
        self.tokens = TokenCheck(tokens)
        self.reads = reads

    async def intercept_service(self, continuation, handler_call_details):
        handler = await continuation(handler_call_details)
        if handler is None or not needs_token(handler_call_details.method, self.reads):
            return handler
        try:
            self.tokens.check(handler_call_details.invocation_metadata)
        except (Unauthenticated, PermissionDenied) as refusal:
            if handler.unary_unary is None:
                return None  # only unary RPCs are protected; refuse anything else outright
            return refusing_handler(handler, refusal)
        return handler


def refusing_handler(handler, refusal: Exception):
    async def refuse(request, context):
        raise refusal

    # the request is not read: no deserializer, so even undecodable bytes get the refusal
    return grpc.unary_unary_rpc_method_handler(
        refuse, request_deserializer=None, response_serializer=handler.response_serializer
    )


class BearerTokenInterceptor(grpc.aio.UnaryUnaryClientInterceptor):
    """Client side, for command-line clients: adds `authorization: Bearer <token>` to every
    unary call of a channel (the gateway adds it per call instead, see its Upstreams)."""

    def __init__(self, token: str):
        self.metadata = bearer_metadata(token)

    async def intercept_unary_unary(self, continuation, client_call_details, request):
        metadata = tuple(client_call_details.metadata or ()) + self.metadata
        details = client_call_details._replace(metadata=metadata)
        return await continuation(details, request)
