"""`python -m core.healthcheck [host:port]`: exit 0 if core's gRPC health service says SERVING.

For container health checks (compose); Kubernetes uses its native gRPC probe instead.
"""

from __future__ import annotations

import sys

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

TIMEOUT_S = 3.0


def check(target: str) -> bool:
    with grpc.insecure_channel(target) as channel:
        try:
            reply = health_pb2_grpc.HealthStub(channel).Check(
                health_pb2.HealthCheckRequest(service=""), timeout=TIMEOUT_S
            )
        except grpc.RpcError:
            return False
    return bool(reply.status == health_pb2.HealthCheckResponse.SERVING)


def main(argv: list[str]) -> int:
    target = argv[0] if argv else "127.0.0.1:50051"
    serving = check(target)
    print("SERVING" if serving else "NOT_SERVING", flush=True)
    return 0 if serving else 1


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
