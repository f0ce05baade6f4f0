"""The gateway's HTTP/JSON side (docs/http.md): its public RPCs as JSON over HTTP at the
routes of their `google.api.http` options, forwarded to the gateway's own gRPC server, the
OpenAPI document, and the try-it page."""
