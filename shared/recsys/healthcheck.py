"""A gRPC health probe for containers without grpc_health_probe: exit 0 when the server at
ADDRESS answers SERVING, 1 otherwise.

    python -m recsys.healthcheck 127.0.0.1:50051 [--service recsys.feature.v1.FeatureService]
"""

from __future__ import annotations

import argparse
import sys

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc


def check(address: str, service: str = "", timeout: float = 2.0) -> bool:
    with grpc.insecure_channel(address) as channel:
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
    args = parser.parse_args(argv)
    return 0 if check(args.address, args.service, args.timeout) else 1


if __name__ == "__main__":
    sys.exit(main())
