"""Katib v0.19's own hyperband service (`pkg/suggestion/v1beta1/hyperband/service.py`) in a process of
its own, for tests/oracle/test_hyperband.py: one base64 GetSuggestionsRequest per stdin line, one line
back, `ok <base64 reply>` or `raised <message>`.

Its own process because Katib's generated protos (api.v1.beta1 and grpc.health.v1) register the same
proto symbols as the kubeflow-katib stubs and grpcio-health-checking that pipeline.suggestion imports:
protobuf refuses a second registration in one process.

    python tests/oracle/katib_hyperband_worker.py KATIB_SOURCE_DIR
"""

import base64
import logging
import sys

root = sys.argv[1]
sys.path[:0] = [root, f"{root}/pkg/apis/manager/v1beta1/python", f"{root}/pkg/apis/manager/health/python"]
sys.dont_write_bytecode = True  # the Go module cache is read-only
from pkg.apis.manager.v1beta1.python import api_pb2  # noqa: E402  (Katib's generated protos)
from pkg.suggestion.v1beta1.hyperband.service import HyperbandService  # noqa: E402

logging.getLogger("pkg.suggestion.v1beta1.hyperband.service").setLevel(logging.ERROR)
print("ready", flush=True)
for line in sys.stdin:
    request = api_pb2.GetSuggestionsRequest.FromString(base64.b64decode(line))
    try:
        reply = HyperbandService().GetSuggestions(request, None)  # a new service per call, as Katib runs it
    except Exception as exc:  # noqa: BLE001 - Katib's service raises a bare Exception
        print("raised", str(exc).replace("\n", " "), flush=True)
        continue
    print("ok", base64.b64encode(reply.SerializeToString()).decode(), flush=True)
