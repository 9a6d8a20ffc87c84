"""Run the pipeline on a KFP server (tuning with Katib): compile it, create a run with kfp.Client, and
give back the run's page in the KFP UI.
"""

import tempfile
import time
from pathlib import Path
from typing import Any

from pipeline.workflow.definition import PIPELINE_NAME, compile_pipeline


def run_url(host: str, run_id: str, ui_host: str | None = None) -> str:
    """The run's page in the KFP UI. A full Kubeflow serves the API under /pipeline and the UI under
    /_/pipeline; standalone KFP (or a port-forward to ml-pipeline-ui) serves both at its root."""
    if ui_host:
        base = ui_host.rstrip("/")
    else:
        base = host.rstrip("/")
        if base.endswith("/pipeline") and not base.endswith("/_/pipeline"):
            base = base[: -len("/pipeline")] + "/_/pipeline"
    return f"{base}/#/runs/details/{run_id}"


def submit(
    host: str,
    arguments: dict[str, Any],
    image: str,
    namespace: str | None = None,
    service_account: str | None = None,
    experiment_name: str = PIPELINE_NAME,
    *,
    image_pull_secrets: tuple[str, ...] = (),
    token: str | None = None,
    cookies: str | None = None,
    ui_host: str | None = None,
) -> str:
    """Compile and create a run on a KFP server; returns the run's URL."""
    import kfp

    with tempfile.TemporaryDirectory() as tmp:
        package = compile_pipeline(Path(tmp) / "pipeline.yaml", image, image_pull_secrets)
        # contacts the server right here
        client = kfp.Client(host=host, namespace=namespace, existing_token=token, cookies=cookies)
        run = client.create_run_from_pipeline_package(
            str(package),
            arguments=arguments,
            experiment_name=experiment_name,
            namespace=namespace,
            service_account=service_account,
            run_name=f"{PIPELINE_NAME}-{time.strftime('%Y%m%d-%H%M%S')}",
        )
    return run_url(host, run.run_id, ui_host)
