"""The RPC routes of the HTTP side, one per `google.api.http` binding of GatewayService
(read from the descriptors at start-up): each builds the request message from the HTTP
request, calls the gateway's own gRPC server over a real channel with the caller's token,
request id and deadline, and answers the response as JSON (or the error as a Status)."""

from __future__ import annotations

import grpc
from aiohttp import web
from google.protobuf import message_factory

from recsys.http_rules import Binding, service_bindings
from services.gateway.http import headers, status, transcode
from services.gateway.servicer import STAGES_METADATA_KEY

REQUEST_ID = web.RequestKey("request_id", str)  # set by the app's middleware


def error_response(answer, http: int | None = None) -> web.Response:
    """A google.rpc.Status as the JSON body; HTTP status by its code unless given."""
    response = web.json_response(status.body(answer), status=http or status.http_status(answer))
    if response.status == 401:
        response.headers["WWW-Authenticate"] = "Bearer"
    return response


def rpc_handler(binding: Binding, method, channel: grpc.aio.Channel):
    """The aiohttp handler of one binding of `method` (a MethodDescriptor)."""
    request_class = message_factory.GetMessageClass(method.input_type)
    response_class = message_factory.GetMessageClass(method.output_type)
    call = channel.unary_unary(
        f"/{method.containing_service.full_name}/{method.name}",
        request_serializer=request_class.SerializeToString,
        response_deserializer=response_class.FromString,
    )

    async def handle(request: web.Request) -> web.Response:
        message = transcode.request_message(
            binding, request_class(), request.match_info, request.query, await request.read()
        )
        pending = call(
            message,
            metadata=headers.metadata_of(request.headers, request[REQUEST_ID]),
            timeout=headers.timeout_of(request.headers),
        )
        try:
            reply = await pending
        except grpc.RpcError as error:
            return error_response(status.of_rpc_error(error))
        response = web.json_response(transcode.response_json(reply))
        for key, value in await pending.trailing_metadata() or ():
            if key == STAGES_METADATA_KEY:
                response.headers[headers.STAGE_MS] = value
        return response

    return handle


def add_rpc_routes(router: web.UrlDispatcher, service, channel: grpc.aio.Channel) -> list[Binding]:
    """Add a route per binding of `service` (a ServiceDescriptor); returns the bindings."""
    bindings = service_bindings(service)
    for binding in bindings:
        method = service.methods_by_name[binding.rpc]
        router.add_route(binding.verb, binding.path, rpc_handler(binding, method, channel))
    return bindings
