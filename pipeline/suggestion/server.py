"""The gRPC server Katib's suggestion Deployment runs: AshaService plus the standard
health service answering SERVING for `manager.v1beta1.Suggestion`, the name Katib's
readiness and liveness probes ask for (consts.DefaultGRPCService), on port 6789."""

from __future__ import annotations

from concurrent import futures
from dataclasses import dataclass

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from kubeflow.katib import katib_api_pb2_grpc as api_grpc

from pipeline.errors import UserError
from pipeline.suggestion.service import HEALTH_SERVICE, AshaService

DEFAULT_PORT = 6789  # Katib's DefaultSuggestionPort: the Service it creates points here


@dataclass
class Running:
    server: grpc.Server
    health: health.HealthServicer
    port: int

    def stop(self, grace: float = 5.0) -> None:
        """Probes see NOT_SERVING first, then calls in flight get `grace` seconds to finish."""
        self.health.enter_graceful_shutdown()
        self.server.stop(grace).wait()


def start(port: int = DEFAULT_PORT, host: str = "0.0.0.0", workers: int = 4) -> Running:
    """Serve on host:port (port 0: any free port, see Running.port)."""
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=workers))
    api_grpc.add_SuggestionServicer_to_server(AshaService(), server)
    checker = health.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(checker, server)
    bound = server.add_insecure_port(f"{host}:{port}")
    if bound == 0:
        raise UserError(f"--port {port}: cannot listen on {host}:{port} (in use?)")
    for name in (HEALTH_SERVICE, ""):
        checker.set(name, health_pb2.HealthCheckResponse.SERVING)
    server.start()
    return Running(server, checker, bound)
