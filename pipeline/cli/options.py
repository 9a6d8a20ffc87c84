"""Options more than one command shares, parsed once."""

from __future__ import annotations

from collections.abc import Iterable

import click

from pipeline.errors import UserError

mount_option = click.option(
    "--mount",
    "mounts",
    multiple=True,
    metavar="/PATH=DIR",
    help="The local folder standing in for a volume the trial mounts at /PATH (repeatable), "
    "e.g. --mount /data=data/sample.",
)
trial_arg_option = click.option(
    "--trial-arg",
    "trial_args",
    multiple=True,
    metavar="ARG",
    help="Append ARG to every trial command (repeatable, local only), e.g. --trial-arg=--epochs=1.",
)


def parse_mounts(values: Iterable[str]) -> dict[str, str]:
    """`/PATH=DIR` pairs as {container path: local folder}."""
    out = {}
    for value in values:
        path, sep, local = value.partition("=")
        if not sep or not path.startswith("/") or not local:
            raise UserError(f"--mount {value}: expected /PATH/IN/POD=LOCAL_DIR, e.g. --mount /data=data/sample")
        out[path] = local
    return out
