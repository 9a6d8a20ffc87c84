"""Katib's collector rules: default filter, custom filters, File TEXT/JSON, strategies, unavailable."""

from __future__ import annotations

import math

import pytest
from hypothesis import given, settings, strategies as st

from pipeline.errors import UserError
from pipeline.katib import collector as mc
from pipeline.katib.experiment import Experiment

NAMES = ["accuracy", "loss"]


def logs(text, names=NAMES, fmt="TEXT", filters=None):
    return [(m.name, m.value) for m in mc.parse_logs(text, names, fmt, filters)]


def test_real_trial_line():
    line = "epoch=3 loss=0.0512 accuracy=0.9841 val_loss=0.0433 val_accuracy=0.9872"
    assert logs(line) == [("loss", "0.0512"), ("accuracy", "0.9841")]
    assert logs(line, ["val_accuracy"]) == [("val_accuracy", "0.9872")]


def test_val_accuracy_is_not_accuracy():
    assert logs("val_accuracy=0.9", ["accuracy"]) == []


def test_keras_progress_bar_does_not_match():
    assert logs("100/100 - 1s - loss: 0.2 - accuracy: 0.98") == []


@pytest.mark.parametrize(
    "line,expected",
    [
        ("2024-01-02T03:04:05Z accuracy=0.5", "2024-01-02T03:04:05Z"),
        ("2024-01-02T03:04:05.123456789+02:00 accuracy=0.5", "2024-01-02T03:04:05.123456789+02:00"),
        ("2024-13-02T03:04:05Z accuracy=0.5", mc.ZERO_TIME),
        ("accuracy=0.5", mc.ZERO_TIME),
    ],
)
def test_timestamps(line, expected):
    assert mc.parse_logs(line, NAMES)[0].timestamp == expected


def test_latest_follows_timestamps_not_order():
    text = "2024-01-02T00:00:02Z accuracy=0.9\n2024-01-02T00:00:01Z accuracy=0.1\n"
    obs = mc.observe(mc.parse_logs(text, NAMES), NAMES)
    assert obs.metrics["accuracy"] == {"min": "0.1", "max": "0.9", "latest": "0.9"}


def test_several_pairs_and_spaces_around_equals():
    assert logs("accuracy = 0.5, loss=1e-3 accuracy=+.7") == [
        ("accuracy", "0.5"),
        ("loss", "1e-3"),
        ("accuracy", "+.7"),
    ]


def test_nan_under_default_filter_is_an_empty_value():
    # Katib's regex matches no digits in `nan`: the value is "" and still counts as reported.
    got = mc.collect(spec(), "epoch=1 accuracy=nan loss=nan")
    assert got.available and got.objective == "" and got.objective_float is None


def test_custom_filter():
    f = [r"([\w|-]+)\s*:\s*((-?\d+)(\.\d+)?)"]
    assert logs("accuracy: 0.8 loss=0.1", filters=f) == [("accuracy", "0.8")]


def test_custom_filter_can_read_nan():
    got = mc.collect(spec(filters=(r"(\w+)=(\S+)",)), "accuracy=nan")
    assert got.objective == "nan" and got.objective_float is not None and math.isnan(got.objective_float)


def test_bad_custom_filter_is_a_user_error():
    with pytest.raises(UserError, match="metricsFormat"):
        mc.compile_filters(["(unclosed"])


def test_json_format_only_string_values():
    text = '{"accuracy": "0.5", "loss": 0.3, "timestamp": "2024-01-02T00:00:01Z"}\n\n{"accuracy": "0.7"}\n'
    assert logs(text, fmt="JSON") == [("accuracy", "0.5"), ("accuracy", "0.7")]


def test_json_format_bad_line_fails_like_katib():
    with pytest.raises(mc.MetricsFormatError):
        mc.parse_logs("not json", NAMES, "JSON")


def spec(strategy="max", filters=()):
    return mc.CollectorSpec(
        objective="accuracy", metric_names=NAMES, strategies={"accuracy": strategy, "loss": "min"}, filters=filters
    )


@pytest.mark.parametrize("strategy,expected", [("max", "0.9"), ("min", "0.2"), ("latest", "0.5")])
def test_metric_strategies(strategy, expected):
    got = mc.collect(spec(strategy), "accuracy=0.2\naccuracy=0.9\naccuracy=0.5\n")
    assert got.objective == expected and got.reports == 3


def test_objective_missing_is_unavailable():
    got = mc.collect(spec(), "loss=0.3\n")
    assert not got.available and got.objective == mc.UNAVAILABLE
    assert got.observation.metrics["loss"]["latest"] == mc.UNAVAILABLE


@pytest.mark.parametrize(
    "text,value",
    [
        ("1.5", 1.5),
        ("-2e3", -2000.0),
        ("NaN", "nan"),
        ("+Inf", math.inf),
        ("1e400", None),
        ("1_0", 10.0),
        ("_1", None),
        ("1__0", None),
        ("1_e5", None),
        (" 1", None),
        ("", None),
        ("0x1p-2", 0.25),
        ("e5", None),
        ("+", None),
    ],
)
def test_go_parse_float(text, value):
    got = mc.go_parse_float(text)
    if value == "nan":
        assert got is not None and math.isnan(got)
    else:
        assert got == value


def test_experiment_spec_defaults():
    exp = {
        "spec": {
            "objective": {
                "type": "minimize",
                "objectiveMetricName": "loss",
                "additionalMetricNames": ["accuracy"],
                "metricStrategies": [{"name": "accuracy", "value": "latest"}],
            },
            "metricsCollectorSpec": {
                "collector": {"kind": "File"},
                "source": {"fileSystemPath": {"path": "/m/x.json", "format": "JSON"}},
            },
        }
    }
    c = mc.CollectorSpec.from_experiment(Experiment(exp))
    assert c.metric_names == ["loss", "accuracy"]
    assert c.strategies == {"loss": "min", "accuracy": "latest"}
    assert (c.kind, c.file_format, c.path) == ("File", "JSON", "/m/x.json")


def test_unsupported_collector_kind():
    exp = {
        "spec": {
            "objective": {"type": "minimize", "objectiveMetricName": "loss"},
            "metricsCollectorSpec": {"collector": {"kind": "TensorFlowEvent"}},
        }
    }
    with pytest.raises(UserError, match="TensorFlowEvent"):
        mc.CollectorSpec.from_experiment(Experiment(exp))


@settings(max_examples=200, deadline=None)
@given(st.text())
def test_arbitrary_text_never_crashes(text):
    got = mc.collect(spec(), text)
    assert got.available == any(m.name == "accuracy" for m in mc.parse_logs(text, NAMES))


@settings(max_examples=100, deadline=None)
@given(st.lists(st.floats(allow_nan=False, width=64), min_size=1, max_size=8))
def test_min_max_latest_of_printed_values(values):
    text = "\n".join(f"accuracy={v!r}" for v in values if math.isfinite(v))
    finite = [v for v in values if math.isfinite(v)]
    got = mc.collect(spec(), text)
    if not finite:
        assert not got.available
        return
    m = got.observation.metrics["accuracy"]
    assert float(m["latest"]) == finite[-1]
    assert (float(m["min"]), float(m["max"])) == (min(finite), max(finite))


def test_json_float_timestamps_read_as_katib_does():
    """Katib's parseTimestamp reads the digits after the dot as nanoseconds; the DB keeps microseconds."""
    assert mc.go_unix_timestamp(1700000000.5) == "2023-11-14T22:13:20.000000005Z"
    assert mc.go_unix_timestamp(1e21) == ""  # beyond int64: no timestamp
    logs = [
        mc.MetricLog("2024-01-01T00:00:00.0000012Z", "accuracy", "0.9"),
        mc.MetricLog("2024-01-01T00:00:00.0000015Z", "accuracy", "0.7"),
        mc.MetricLog("2024-01-01T00:00:00.0000011Z", "accuracy", "0.8"),
    ]
    # all three within one microsecond: a tie, so the last one written is `latest`
    assert mc.observe(logs, ["accuracy"]).metrics["accuracy"]["latest"] == "0.8"
