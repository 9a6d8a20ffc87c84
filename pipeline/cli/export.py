"""`katib-digits export`."""

from __future__ import annotations

import os
from pathlib import Path

import click

from pipeline.serving.export import SIGNATURE, export_saved_model


@click.command("export")
@click.option(
    "--model",
    "model",
    type=click.Path(path_type=Path),
    default=Path("runs/train"),
    show_default=True,
    help="model.keras, or the folder `katib-digits train --out` wrote (an ensemble is averaged).",
)
@click.option(
    "--out",
    type=click.Path(file_okay=False, path_type=Path),
    required=True,
    help="The model folder a server watches; the SavedModel goes to OUT/VERSION/.",
)
@click.option("--version", type=int, default=1, show_default=True, help="The model version (a positive integer).")
def export_command(model, out, version):
    """Export the trained model as a TensorFlow SavedModel (OUT/VERSION/), the layout TF Serving and
    KServe's TensorFlow runtime load: raw pixels 0-255 of shape [28, 28, 1] in, ten digit
    probabilities out; an ensemble becomes one graph averaging its members, as `predict` does."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # TensorFlow's start-up chatter
    target = export_saved_model(model, out, version)
    click.echo(f"{target}: SavedModel, signature {SIGNATURE!r} (pixels [N, 28, 28, 1] 0-255 -> digit [N, 10])")
