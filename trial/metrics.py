"""The metric contract between the trial and Katib: names, line format, Katib's filter.

The trial prints `format_line()`; Katib's StdOut/File collector reads it with
`KATIB_DEFAULT_FILTER` when the experiment sets no `metricsFormat`. The pipeline's
collector, the benchmark and the tests import these instead of keeping copies.
No TensorFlow here: this imports in milliseconds.
"""

from __future__ import annotations

import re

METRIC_NAMES = ("loss", "accuracy", "val_loss", "val_accuracy")
TRAIN_METRIC_NAMES = METRIC_NAMES[:2]  # what a trial with --val-fraction 0 prints

# Katib v1beta1's default TEXT filter for the StdOut and File collectors, verbatim (Go RE2 syntax).
KATIB_DEFAULT_FILTER = r"([\w|-]+)\s*=\s*([+-]?\d*(\.\d+)?([Ee][+-]?\d+)?)"
# What that filter captures as a metric name (its first group); tests check the two agree.
KATIB_METRIC_NAME = re.compile(r"[\w|-]+", re.ASCII)

# RE2's \w, \d and \s are ASCII-only; Python's are Unicode unless told otherwise.
_FILTER = re.compile(KATIB_DEFAULT_FILTER, re.ASCII)


def format_line(epoch: int, logs: dict) -> str:
    """`epoch=3 loss=0.051200 accuracy=0.984100 ...`: names in METRIC_NAMES order, others ignored."""
    pairs = [f"epoch={epoch}"] + [f"{name}={logs[name]:.6f}" for name in METRIC_NAMES if name in logs]
    return " ".join(pairs)


def parse_line(line: str) -> dict[str, float]:
    """What Katib's default filter reads from one line: name -> value (a later repeat wins).

    The filter's value group can match an empty string or a lone sign or dot (`name=abc`);
    those are not numbers, so they are skipped."""
    found = {}
    for m in _FILTER.finditer(line):
        try:
            found[m.group(1)] = float(m.group(2))
        except ValueError:
            continue
    return found
