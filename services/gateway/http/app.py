"""The aiohttp application of the HTTP side: the RPC routes, the OpenAPI document at
/openapi.json, the try-it page at / (static files, no build step), and one middleware that
gives every answer its request id, security headers and metrics, and turns every error into
a JSON google.rpc.Status with the matching HTTP status."""

from __future__ import annotations

import logging
import time
from pathlib import Path

import grpc
from aiohttp import web

from recsys import openapi
from recsys.errors import RecsysError
from services.gateway.http import headers, metrics, status
from services.gateway.http.routes import REQUEST_ID, add_rpc_routes, error_response

log = logging.getLogger(__name__)

STATIC = Path(__file__).resolve().parent / "static"
SECURITY_HEADERS = {
    # the page loads only its own script and style, and is never framed
    "Content-Security-Policy": "default-src 'self'; frame-ancestors 'none'",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Server": "recsys-gateway",  # not aiohttp's, which names its and Python's versions
}


def route_label(request: web.Request) -> str:
    """ "POST /v1/users/{user_id}/ratings" (the template, so the label set stays small);
    UNMATCHED for a request no route took."""
    resource = request.match_info.route.resource
    if resource is None:
        return metrics.UNMATCHED
    return f"{request.method} {resource.canonical}"


@web.middleware
async def answered(request: web.Request, handler) -> web.StreamResponse:
    started = time.perf_counter()
    rid = headers.request_id_of(request.headers)
    request[REQUEST_ID] = rid
    try:
        response = await handler(request)
    except RecsysError as error:  # the HTTP side's own checks: a body that is not JSON, ...
        response = error_response(status.of_error(error))
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        answer = status.of_http(exc.status, f"{request.method} {request.path}: {exc.reason}")
        response = error_response(answer, exc.status)
        if "Allow" in exc.headers:
            response.headers["Allow"] = exc.headers["Allow"]
    except Exception:
        log.exception("unhandled error", extra={"path": request.path})
        response = error_response(status.of_http(500, "internal error"))
    response.headers[headers.REQUEST_ID] = rid
    response.headers.update(SECURITY_HEADERS)
    route = route_label(request)
    metrics.REQUESTS.labels(route, str(response.status)).inc()
    metrics.SECONDS.labels(route).observe(time.perf_counter() - started)
    return response


def create_app(service, channel: grpc.aio.Channel, *, max_body_bytes: int) -> web.Application:
    """The application for `service` (a ServiceDescriptor) forwarding over `channel`;
    request bodies larger than `max_body_bytes` are refused (413)."""
    app = web.Application(middlewares=[answered], client_max_size=max_body_bytes)
    add_rpc_routes(app.router, service, channel)
    document = openapi.served_document()

    async def openapi_json(request: web.Request) -> web.Response:
        return web.Response(body=document, content_type="application/json")

    async def page(request: web.Request) -> web.FileResponse:
        return web.FileResponse(STATIC / "index.html")

    app.router.add_get("/openapi.json", openapi_json)
    app.router.add_get("/", page)
    app.router.add_static("/static", STATIC)
    return app
