"""`katib-digits serve`."""

from __future__ import annotations

import os
from pathlib import Path

import click

from pipeline.serving.server import MAX_INSTANCES, Predictor, make_server


@click.command("serve")
@click.option(
    "--model",
    "model",
    type=click.Path(path_type=Path),
    default=Path("runs/train"),
    show_default=True,
    help="model.keras, the folder `katib-digits train --out` wrote (an ensemble is averaged), or a "
    "SavedModel `katib-digits export` wrote (its --out folder: the highest version is served).",
)
@click.option("--name", default="digits", show_default=True, help="The model's name in the routes.")
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on.")
@click.option("--port", type=click.IntRange(0, 65535), default=8080, show_default=True)
@click.option(
    "--max-instances",
    type=click.IntRange(min=1),
    default=MAX_INSTANCES,
    show_default=True,
    help="Most images in one request.",
)
def serve_command(model, name, host, port, max_instances):
    """Serve the trained model with KServe's V1 protocol: GET /v1/models/NAME, and
    POST /v1/models/NAME:predict with {"instances": [image, ...]} (784 pixels or 28x28, 0-255)
    answering {"predictions": [[ten probabilities], ...]}; the V2 / Open Inference Protocol:
    POST /v2/models/NAME/infer with one input tensor of shape [n, 784]; and at / a page where you
    draw a digit and see the prediction. Ctrl-C stops it."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # TensorFlow's start-up chatter
    predictor = Predictor(model, name)
    server = make_server(predictor, host, port, max_instances)
    bound_host, bound_port = server.server_address[:2]
    assert isinstance(bound_host, str)  # an AF_INET(6) server's address is (host, port, ...)
    base = f"http://{bound_host}:{bound_port}"
    click.echo(
        f"serving {predictor.saved_model or model} as {name!r}: POST {base}/v1/models/{name}:predict or "
        f"{base}/v2/models/{name}/infer; draw a digit at {base}/",
        err=True,
    )
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
