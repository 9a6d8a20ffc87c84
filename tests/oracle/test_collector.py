"""Metric logs -> observation: our pipeline.katib.collector against Katib's own chain
(pod webhook's -f flag and the sidecar's split, file-metricscollector's parser,
katib-db-manager's MySQL round trip, the trial controller's getMetrics)."""

from __future__ import annotations

import json

import pytest
from hypothesis import given, strategies as st

from pipeline.errors import UserError
from pipeline.katib.collector import CollectorSpec, MetricsFormatError, collect, parse_logs
from tests.oracle.conftest import hypothesis_settings

pytestmark = pytest.mark.process

METRICS = ["accuracy", "loss", "val_accuracy"]
NAMES = METRICS + ["val_loss", "acc", "accuracy|x", "Accuracy", "epoch"]
VALUES = [
    "0.5",
    "0.50",
    "0.25",
    "1e-3",
    "1E+2",
    "-2",
    ".5",
    "5.",
    "nan",
    "NaN",
    "inf",
    "-Inf",
    "1.0",
    "1",
    "abc",
    "",
    "+",
    "1e400",
    "0x1p-2",
    "1_000",
    "3",
    "0.5e",
    "7e-1",
]
TIMESTAMPS = [
    "",
    "2024-01-01T00:00:00Z",
    "2024-01-01T00:00:00.5Z",
    "2024-01-01T00:00:00.000001Z",
    "2024-01-01T00:00:00.0000015Z",
    "2024-01-01T00:00:00.0000012Z",
    "2024-01-01T01:00:00+01:00",
    "2024-01-01T00:00:00.123456789Z",
    "2023-12-31T23:59:59Z",
    "2024-01-01 00:00:00",
    "2024-13-01T00:00:00Z",
    "2024-01-01T00:00:60Z",
    "2024-01-01T00:00:00z",
    "0001-01-01T00:00:00Z",
]
SEPARATORS = [" ", ", ", "\t", " - ", ";", " |"]
FILTERS = [
    None,
    None,
    None,
    [r"(\w+)\s*:\s*([+-]?\d*\.?\d+)"],
    [r"([\w|-]+)=([^ ,]+)"],
    [r"(\w+)=(\S+)", r"(\w+): ([\d.]+)"],
    [r"(\w+)\s*=\s*(\d+(?:\.\d+)?)\z"],
    [r"(\pL+)=([\d.]+)"],
]


@st.composite
def text_logs(draw):
    lines = []
    for _ in range(draw(st.integers(0, 6))):
        ts = draw(st.sampled_from(TIMESTAMPS))
        pairs = []
        for _ in range(draw(st.integers(0, 4))):
            name, value = draw(st.sampled_from(NAMES)), draw(st.sampled_from(VALUES))
            eq = draw(st.sampled_from(["=", " = ", ": ", "="]))
            pairs.append(f"{name}{eq}{value}")
        sep = draw(st.sampled_from(SEPARATORS))
        body = sep.join(pairs)
        lines.append(f"{ts} {body}" if ts else body)
    return "\n".join(lines) + draw(st.sampled_from(["", "\n"]))


@st.composite
def json_logs(draw):
    lines = []
    for _ in range(draw(st.integers(0, 5))):
        obj = {}
        ts = draw(
            st.sampled_from(
                [
                    None,
                    "2024-01-01T00:00:00Z",
                    "2024-01-01T00:00:00.5Z",
                    "bad",
                    1700000000,
                    1700000000.5,
                    1700000000.25,
                    1700000000.000001,
                    1700000000.0000005,
                    -1.5,
                    1e21,
                    True,
                    "",
                ]
            )
        )
        if ts is not None:
            obj["timestamp"] = ts
        for _ in range(draw(st.integers(0, 3))):
            name = draw(st.sampled_from(NAMES))
            obj[name] = draw(st.one_of(st.sampled_from(VALUES), st.sampled_from([0.5, 1, None, True])))
        lines.append(json.dumps(obj))
    if draw(st.booleans()) and lines:
        lines.insert(draw(st.integers(0, len(lines))), draw(st.sampled_from(["", "not json", "[1, 2]"])))
    return "\n".join(lines)


def _ours(text: str, fmt: str, filters: list[str] | None):
    spec = CollectorSpec(
        objective=METRICS[0],
        metric_names=METRICS,
        strategies=dict.fromkeys(METRICS, "max"),
        kind="File",
        file_format=fmt,
        path="/var/log/katib/metrics.log",
        filters=tuple(filters or ()),
    )
    try:
        result = collect(spec, text)
    except MetricsFormatError:
        return "collect_error"
    except UserError:
        return "sidecar_crash"
    return sorted((m["name"], m["min"], m["max"], m["latest"]) for m in result.observation.to_katib())


def _theirs(answer: dict):
    if "panic" in answer:
        return "sidecar_crash"
    if "collect_error" in answer:
        return "collect_error"
    assert "observation" in answer, answer
    return sorted((m["name"], m.get("min", ""), m.get("max", ""), m.get("latest", "")) for m in answer["observation"])


def _check(oracle, text, fmt, filters):
    answer = oracle.ask("collect", text=text, metrics=METRICS, filters=filters or [], format=fmt)
    assert _ours(text, fmt, filters) == _theirs(answer), (text, filters, answer)
    if "logs" in answer and "panic" not in answer:
        # the parsed metric logs too (before the DB), in order
        ours = [(m.timestamp, m.name, m.value) for m in parse_logs(text, METRICS, fmt, filters)]
        theirs = [(m["timestamp"], m["name"], m["value"]) for m in answer["logs"]]
        if not any(m.name == METRICS[0] for m in parse_logs(text, METRICS, fmt, filters)):
            ours = [("0001-01-01T00:00:00Z", METRICS[0], "unavailable")]
        assert ours == theirs, (text, filters)


@hypothesis_settings(800)
@given(text_logs(), st.sampled_from(FILTERS))
def test_text_logs_observed_as_katib_does(oracle, text, filters):
    _check(oracle, text, "TEXT", filters)


@hypothesis_settings(500)
@given(json_logs())
def test_json_logs_observed_as_katib_does(oracle, text):
    _check(oracle, text, "JSON", None)


@pytest.mark.parametrize(
    "text, filters",
    [
        ("accuracy=0.5\naccuracy=0.7\nloss=0.1", None),
        ("2024-01-01T00:00:00.0000012Z accuracy=0.5\n2024-01-01T00:00:00.0000015Z accuracy=0.7", None),  # same µs
        ("2024-01-02T00:00:00Z accuracy=1.0\n2024-01-01T00:00:00Z accuracy=1", None),  # DB orders by time
        ("accuracy: 0.5; loss: 0.2", [r"(\w+): ([\d.]+);?"]),  # ';' inside a filter: split by the sidecar
        ("accuracy=0.5", [r"(?=a)(\w+)=([\d.]+)"]),  # no lookahead in Go: the sidecar crashes
        ("accuracy=0.5", [r"(\w+)=([\d.]+)\z"]),  # RE2's \z
        ("accuracy=0.5 loss=0.25", [r"(\w+)=(\d+(?:\.\d+)?);(\w+)"]),
    ],
)
def test_hand_picked_logs(oracle, text, filters):
    _check(oracle, text, "TEXT", filters)
