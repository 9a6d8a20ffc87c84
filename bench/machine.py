"""What the report says of the machine it ran on."""

from __future__ import annotations

import os
import platform
import time


def accelerators() -> list[str]:
    """GPUs TensorFlow can use here; none with the tensorflow-cpu this project pins (the Dockerfile's GPU
    build installs tensorflow[and-cuda], and the bench then times the GPU the same way)."""
    import tensorflow as tf

    return [d.name for d in tf.config.list_physical_devices("GPU")]


def describe() -> dict:
    """The report's first fields: when, on what processor and how many cores, which Python, which GPUs."""
    return {
        "date": time.strftime("%Y-%m-%d %H:%M"),
        "machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores",
        "python": platform.python_version(),
        "accelerators": accelerators(),
    }
