"""Katib's pull-based metrics collector (StdOut and File, TEXT and JSON), offline.

Reproduces `file-metricscollector.go` (parse a trial's log into metric logs)
and the trial controller's `getMetrics` (min / max / latest per metric, kept
as strings) plus `getObjectiveMetricValue` (which of them the metricStrategy
picks). Values stay strings end to end, as in Katib: `accuracy=nan` under the
default filter yields the value "" (the regex matches no digits), which Katib
still stores and treats as a reported - but non-numeric - objective.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal

from pipeline.errors import UserError
from pipeline.katib.experiment import Experiment
from pipeline.katib.goregex import Filter, GoRegexError, compile_go, sidecar_filters
from trial.metrics import KATIB_DEFAULT_FILTER

UNAVAILABLE = "unavailable"
ZERO_TIME = "0001-01-01T00:00:00Z"

_RFC3339 = re.compile(r"^(\d{4})-(\d{2})-(\d{2})T(\d{2}):(\d{2}):(\d{2})(?:\.(\d{1,9}))?(Z|[+-]\d{2}:\d{2})$")
_GO_FLOAT = re.compile(r"^[+-]?(?:(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?|inf|infinity|nan)$", re.IGNORECASE)
_GO_HEX_FLOAT = re.compile(r"^[+-]?0[xX](?:[0-9a-fA-F]+\.?[0-9a-fA-F]*|\.[0-9a-fA-F]+)[pP][+-]?\d+$")


@dataclass(frozen=True)
class MetricLog:
    timestamp: str  # RFC3339, ZERO_TIME when the line carried none
    name: str
    value: str


@dataclass
class Observation:
    """Per metric {min, max, latest} as Katib strings, in objective-first order."""

    metrics: dict[str, dict[str, str]] = field(default_factory=dict)

    def to_katib(self) -> list[dict[str, str]]:
        return [{"name": name, **vals} for name, vals in self.metrics.items()]


def go_parse_float(text: str) -> float | None:
    """Go's strconv.ParseFloat(text, 64), None where Go returns an error
    (no surrounding spaces; out-of-range values are errors; '_' only between digits, as in
    Go literals: `1_000` is 1000)."""
    if "_" in text:
        if not _go_underscores_ok(text):
            return None
        text = text.replace("_", "")
    if _GO_HEX_FLOAT.match(text):
        try:
            return float.fromhex(text)
        except (ValueError, OverflowError):
            return None
    if not _GO_FLOAT.match(text):
        return None
    value = float(text)
    if math.isinf(value) and "inf" not in text.lower():
        return None  # ErrRange, e.g. 1e400
    return value


def _go_underscores_ok(text: str) -> bool:
    """Go's strconv underscoreOK: each '_' between two digits (or after a base prefix)."""
    body = text[1:] if text[:1] in "+-" else text
    saw, i, hexa = "^", 0, False
    if len(body) >= 2 and body[0] == "0" and body[1].lower() in "box":
        i, saw, hexa = 2, "0", body[1].lower() == "x"
    for ch in body[i:]:
        if ch.isdigit() and ch.isascii() or hexa and ch.lower() in "abcdef":
            saw = "0"
        elif ch == "_":
            if saw != "0":
                return False
            saw = "_"
        elif saw == "_":
            return False
        else:
            saw = "!"
    return saw != "_"


def timestamp_key(ts: str) -> tuple[int, int]:
    """Sortable (seconds, nanoseconds) since the epoch for an RFC3339(Nano) string, at the
    precision katib-db-manager keeps: its MySQL backend writes microseconds (the rest is cut,
    not rounded), so two reports within one microsecond tie."""
    m = _RFC3339.match(ts)
    if not m:
        return (-62135596800, 0)  # Go's zero time
    y, mo, d, h, mi, s, frac, tz = m.groups()
    dt = datetime(int(y), int(mo), int(d), int(h), int(mi), min(int(s), 59), tzinfo=UTC)
    secs = int((dt - datetime(1970, 1, 1, tzinfo=UTC)).total_seconds())
    if tz != "Z":
        sign = 1 if tz[0] == "+" else -1
        secs -= sign * (int(tz[1:3]) * 3600 + int(tz[4:6]) * 60)
    return (secs, int((frac or "0").ljust(9, "0")[:6]) * 1000)


def go_unix_timestamp(value: float) -> str:
    """A JSON-format line's numeric `timestamp` as Katib's parseTimestamp reads it: Go's
    shortest positional form of the float, split at '.', the digits after the dot taken as
    NANOSECONDS (`1700000000.5` is 5 ns past the second, not half a second); "" where Go
    fails (e.g. an integer part beyond int64)."""
    text = format(Decimal(repr(float(value))), "f")
    if "." in text:
        text = text.rstrip("0").rstrip(".") if "." in text else text
    sec_text, _, frac_text = text.partition(".")
    try:
        sec = int(sec_text)
        nsec = int(frac_text) if frac_text else 0
    except ValueError:
        return ""
    if not -(2**63) <= sec < 2**63 or nsec >= 2**63:
        return ""
    total = sec * 10**9 + nsec  # time.Unix normalises nsec beyond a second
    sec, nsec = divmod(total, 10**9)
    try:
        dt = datetime(1970, 1, 1, tzinfo=UTC) + timedelta(seconds=sec)
    except OverflowError:
        return ""
    frac = f".{nsec:09d}".rstrip("0") if nsec else ""
    return dt.strftime("%Y-%m-%dT%H:%M:%S").rjust(19, "0") + frac + "Z"


def _is_rfc3339(text: str) -> bool:
    m = _RFC3339.match(text)
    if not m:
        return False
    try:
        datetime(int(m.group(1)), int(m.group(2)), int(m.group(3)), int(m.group(4)), int(m.group(5)), int(m.group(6)))
    except ValueError:
        return False
    return True


def compile_filters(filters: Iterable[str] | None) -> list[Filter]:
    """The spec's `metricsFormat` regexes as the sidecar compiles them (Go RE2), or Katib's
    default. The filters reach the sidecar joined by ';' and split again, so a filter with a
    ';' arrives in pieces (`goregex.sidecar_filters`). A piece Go cannot compile makes the
    sidecar crash on its first metric line (Katib's webhook checks File filters only)."""
    filters = sidecar_filters(tuple(filters or ())) or [KATIB_DEFAULT_FILTER]
    compiled = []
    for f in filters:
        try:
            compiled.append(compile_go(f))
        except GoRegexError as exc:
            raise UserError(
                f"spec.metricsCollectorSpec.source.filter.metricsFormat: {f!r} is not a regular "
                f"expression Go can compile ({exc}); Katib's metrics-collector sidecar crashes on "
                "it (nil regexp)"
            ) from None
    return compiled


def parse_text_line(line: str, metrics: list[str], patterns: list[Filter]) -> list[MetricLog]:
    """The metric logs one TEXT line yields (only for names in `metrics`, exact match)."""
    if not any(m in line for m in metrics):
        return []
    timestamp = ZERO_TIME
    head, sep, _ = line.partition(" ")
    if sep and _is_rfc3339(head):
        timestamp = head
    out = []
    for pattern in patterns:
        for match in pattern.finditer(line):
            groups = match.groups()
            if len(groups) < 2 or groups[0] is None:
                continue
            name = groups[0].strip()
            value = (groups[1] or "").strip()
            if name in metrics:
                out.append(MetricLog(timestamp, name, value))
    return out


def parse_json_line(line: str, metrics: list[str]) -> list[MetricLog]:
    """One JSON-format line: only string values count (Katib's `.(string)` assertion)."""
    if not line:
        return []
    try:
        obj = json.loads(line)
    except json.JSONDecodeError as exc:
        raise MetricsFormatError(f"failed to parse the json object: {exc}: {line[:200]!r}") from None
    if not isinstance(obj, dict):
        raise MetricsFormatError(f"failed to parse the json object: not an object: {line[:200]!r}")
    timestamp = ZERO_TIME
    ts = obj.get("timestamp")
    if isinstance(ts, str) and _is_rfc3339(ts):
        timestamp = ts
    elif isinstance(ts, (int, float)) and not isinstance(ts, bool) and math.isfinite(ts):
        timestamp = go_unix_timestamp(ts) or ZERO_TIME
    return [MetricLog(timestamp, m, obj[m]) for m in metrics if isinstance(obj.get(m), str)]


class MetricsFormatError(Exception):
    """The trial's JSON metrics file is malformed: Katib's collector fails too."""


def parse_logs(
    text: str, metrics: list[str], file_format: str = "TEXT", filters: Iterable[str] | None = None
) -> list[MetricLog]:
    """Every metric log in `text`; `metrics[0]` is the objective."""
    logs: list[MetricLog] = []
    if file_format == "JSON":
        for line in text.split("\n"):
            logs.extend(parse_json_line(line, metrics))
    else:
        patterns = compile_filters(filters)
        for line in text.split("\n"):
            logs.extend(parse_text_line(line, metrics, patterns))
    return logs


def objective_reported(logs: list[MetricLog], objective: str) -> bool:
    return any(log.name == objective for log in logs)


def db_order(logs: list[MetricLog]) -> list[MetricLog]:
    """The order katib-db-manager returns the logs in: ORDER BY time (at microseconds), reports
    with equal times in the order they were written."""
    return sorted(logs, key=lambda log: timestamp_key(log.timestamp))


def observe(logs: list[MetricLog], metric_names: list[str]) -> Observation:
    """Katib's getMetrics over the logs as the DB returns them: min and max over the values Go
    can parse (the first of equal values wins), latest by time (the last of equal times)."""
    obs = Observation({n: {"min": UNAVAILABLE, "max": UNAVAILABLE, "latest": UNAVAILABLE} for n in metric_names})
    latest_key: dict[str, tuple[int, int]] = {}
    for log in db_order(logs):
        metric = obs.metrics.get(log.name)
        if metric is None:
            continue
        value = go_parse_float(log.value)
        if value is not None:
            if metric["min"] == UNAVAILABLE:
                metric["min"] = metric["max"] = log.value
            else:
                low, high = go_parse_float(metric["min"]), go_parse_float(metric["max"])
                assert low is not None and high is not None  # only values Go parses are kept
                if value < low:
                    metric["min"] = log.value
                elif value > high:  # Katib's else-if, kept on purpose
                    metric["max"] = log.value
        key = timestamp_key(log.timestamp)
        if log.name not in latest_key or not latest_key[log.name] > key:
            latest_key[log.name] = key
            metric["latest"] = log.value
    return obs


def objective_value(obs: Observation, objective: str, strategy: str) -> str:
    """Katib's getObjectiveMetricValue: the string the metricStrategy picks."""
    metric = obs.metrics.get(objective)
    if metric is None:
        return UNAVAILABLE
    if strategy == "min":
        return metric["latest"] if metric["min"] == UNAVAILABLE else metric["min"]
    if strategy == "max":
        return metric["latest"] if metric["max"] == UNAVAILABLE else metric["max"]
    return metric["latest"]


@dataclass(frozen=True)
class CollectorSpec:
    """What the collector needs from the Experiment (already defaulted)."""

    objective: str
    metric_names: list[str]  # objective first, then additionalMetricNames
    strategies: dict[str, str]  # metric -> min | max | latest
    kind: str = "StdOut"  # StdOut | File
    file_format: str = "TEXT"  # TEXT | JSON
    path: str | None = None  # File collector's absolute path in the container
    filters: tuple[str, ...] = ()

    @classmethod
    def from_experiment(cls, exp: Experiment) -> CollectorSpec:
        objective = exp.objective
        names = objective.metric_names
        kind = exp.collector_kind
        if kind not in ("StdOut", "File"):
            raise UserError(
                f"spec.metricsCollectorSpec.collector.kind: {kind!r} is not supported by the local "
                "dry-run (supported: StdOut, File); the trial's metrics could not be read the way "
                "Katib reads them"
            )
        source = exp.collector_source
        fs = source.get("fileSystemPath") or {}
        filters = tuple((source.get("filter") or {}).get("metricsFormat") or ())
        compile_filters(filters)  # fail early on a bad regex
        return cls(
            objective=objective.metric,
            metric_names=names,
            strategies={n: objective.strategy(n) for n in names},
            kind=kind,
            file_format=fs.get("format", "TEXT") if kind == "File" else "TEXT",
            path=fs.get("path") if kind == "File" else None,
            filters=filters,
        )

    def parse(self, text: str) -> list[MetricLog]:
        return parse_logs(text, self.metric_names, self.file_format, self.filters)

    def parse_line(self, line: str, patterns: list[Filter] | None = None) -> list[MetricLog]:
        if self.file_format == "JSON":
            return parse_json_line(line, self.metric_names)
        return parse_text_line(line, self.metric_names, patterns or compile_filters(self.filters))


@dataclass
class TrialMetrics:
    """The collector's verdict on one finished trial."""

    available: bool
    observation: Observation
    objective: str  # Katib string (may be "" or "unavailable")
    objective_float: float | None
    reports: int  # how many times the objective was reported


def collect(spec: CollectorSpec, text: str) -> TrialMetrics:
    """From a trial's whole output (or metrics file) to Katib's observation."""
    logs = spec.parse(text)
    available = objective_reported(logs, spec.objective)
    obs = (
        observe(logs, spec.metric_names)
        if available
        else Observation(
            {n: {"min": UNAVAILABLE, "max": UNAVAILABLE, "latest": UNAVAILABLE} for n in spec.metric_names}
        )
    )
    value = objective_value(obs, spec.objective, spec.strategies.get(spec.objective, "max"))
    return TrialMetrics(
        available=available and obs.metrics[spec.objective]["latest"] != UNAVAILABLE,
        observation=obs,
        objective=value,
        objective_float=go_parse_float(value) if value != UNAVAILABLE else None,
        reports=sum(1 for log in logs if log.name == spec.objective),
    )
