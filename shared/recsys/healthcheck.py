"""A gRPC health probe for containers without grpc_health_probe: exit 0 when the server at
ADDRESS answers SERVING, 1 otherwise. With TLS_CA_FILE in the environment (the service's own
settings) it speaks TLS, presenting TLS_CERT_FILE / TLS_KEY_FILE when the server wants a
client certificate; --server-name is the name the server's certificate is for.

    python -m recsys.healthcheck 127.0.0.1:50051 [--service recsys.feature.v1.FeatureService]
"""

from __future__ import annotations

import argparse
import sys

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from recsys.serving import tls
from recsys.serving.config import Settings


def check(
    address: str,
    service: str = "",
    timeout: float = 2.0,
    settings: Settings | None = None,
    server_name: str = "",
) -> bool:
    """`settings` give the TLS files (default: plaintext)."""
    with tls.sync_channel(address, settings or Settings(), server_name=server_name) as channel:
        try:
            reply = health_pb2_grpc.HealthStub(channel).Check(
                health_pb2.HealthCheckRequest(service=service), timeout=timeout
            )
        except grpc.RpcError:
            return False
    return reply.status == health_pb2.HealthCheckResponse.SERVING


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="recsys.healthcheck", description=__doc__.split("\n")[0])
    parser.add_argument("address", help="host:port")
    parser.add_argument("--service", default="", help="a service name (default: the server)")
    parser.add_argument("--timeout", type=float, default=2.0, help="seconds")
    parser.add_argument("--server-name", default="", help="TLS: the certificate's host name")
    args = parser.parse_args(argv)
    settings = Settings.from_env()
    return 0 if check(args.address, args.service, args.timeout, settings, args.server_name) else 1


if __name__ == "__main__":
    sys.exit(main())
