"""The ``backlog-seconds`` interpreter in Python: an example of
``flinkscale_interpreter`` that reimplements the built-in Rust interpreter
(``plugins/backlog-seconds/src/lib.rs``) exactly, signal for signal and
error for error (host/tests/polyglot_interpreters.rs checks it).

A backlog in records turned into time, so that a policy or an alarm can be
written against a time SLO ("never more than five minutes behind") whatever
the source counts in. From three series it derives two signals:

- ``seconds_behind`` = backlog / processing rate: how long the records
  waiting now would take to process at today's rate. 0 when there is no
  backlog; absent when there is a backlog and nothing is processed.
- ``seconds_to_drain`` = backlog / (processing rate - input rate): how long
  until the backlog is gone at the current capacity. 0 when there is no
  backlog; absent when the backlog is not shrinking.

With ``backlog_unit = "milliseconds"`` the backlog metric is already an age:
``seconds_behind`` is that age in seconds, and ``seconds_to_drain`` counts
the backlog as the age times the input rate, so it needs
``input_rate_metric``. Each signal uses the latest datapoint of each series;
a series with no datapoint leaves the signals that need it absent.

Build: ``plugins/python/build.sh backlog_seconds`` gives
``target/polyglot/backlog_seconds-py.wasm``.
"""

import json
import math
from decimal import Decimal
from typing import List, Optional, Tuple

from flinkscale_interpreter import (
    InterpreterBase,
    InterpreterError,
    Param,
    Params,
    Series,
    Signal,
    configured_metrics,
    series,
)

#: The values of ``backlog_unit``.
UNITS = ("records", "milliseconds")


def rust_float(value: float) -> str:
    """A float as Rust's ``Display`` writes it (``1``, ``-0.5``, ``1e-7`` as
    ``0.0000001``, ``inf``), so that an error quoting a number reads as the
    Rust interpreter's."""
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "inf" if value > 0 else "-inf"
    # repr is the shortest text that reads back as the same double, as
    # Rust's; Decimal writes it out without an exponent.
    text = format(Decimal(repr(value)), "f")
    if "." in text:
        text = text.rstrip("0").rstrip(".")
    return text


def drain(
    backlog: float, processing: Optional[float], input_rate: Optional[float]
) -> Tuple[Optional[float], Optional[float]]:
    """``(seconds_behind, seconds_to_drain)`` on plain numbers: ``backlog``
    in records, rates in records per second; ``None`` for an absent signal."""
    if backlog <= 0.0:
        return 0.0, 0.0
    seconds_behind = backlog / processing if processing is not None and processing > 0.0 else None
    seconds_to_drain = None
    if processing is not None and input_rate is not None and processing > input_rate:
        seconds_to_drain = backlog / (processing - input_rate)
    return seconds_behind, seconds_to_drain


def find(metrics: List[Series], param: str, metric_id: str) -> Series:
    """The series ``param`` names, or an error naming the configured ones."""
    found = series(metrics, metric_id)
    if found is None:
        raise InterpreterError(
            f"parameter `{param}` names the metric `{metric_id}`, which the application does "
            f"not configure (configured metrics: {configured_metrics(metrics)})"
        )
    return found


def _wrapping_i64(value: int) -> int:
    """``value`` as Rust's release-build `i64` arithmetic leaves it (wrapped)."""
    return (value + 2**63) % 2**64 - 2**63


class Interpreter(InterpreterBase):
    """backlog-seconds; componentize-py exports the class named ``Interpreter``."""

    NAME = "backlog-seconds-py"
    VERSION = "0.1.0"
    SUMMARY = (
        "Turns a backlog in records (or an age) and the processing and input rates into "
        "`seconds_behind` and `seconds_to_drain`, so that an SLO can be written in seconds."
    )
    #: The parameters, as the Rust `backlog-seconds` declares them.
    PARAMETERS = [
        Param(
            "backlog_metric",
            "metric-id",
            required=True,
            meaning="Metric id of the backlog: `AWS/Kafka` `SumOffsetLag` (records), "
            "`MaxOffsetLag` (one partition's lag: use `backlog_multiplier`), "
            "`AWS/KinesisAnalytics` `records_lag_max`, or an age "
            "(`GetRecords.IteratorAgeMilliseconds`, `millisBehindLatest`) with "
            '`backlog_unit = "milliseconds"`.',
        ),
        Param(
            "backlog_unit",
            "text",
            default="records",
            meaning='"records", or "milliseconds" when the backlog metric is already an age: '
            "`seconds_behind` is then that age, and `seconds_to_drain` needs "
            "`input_rate_metric` (none while the input rate is 0: an age says nothing "
            "of a backlog's size then).",
        ),
        Param(
            "backlog_multiplier",
            "number",
            default=1,
            meaning="Multiplies the backlog metric, e.g. by the partition count with "
            "`MaxOffsetLag`; positive.",
        ),
        Param(
            "processing_rate_metric",
            "metric-id",
            required=True,
            meaning="Metric id of the records the application processes per second, e.g. "
            "`AWS/KinesisAnalytics` `numRecordsInPerSecond`.",
        ),
        Param(
            "input_rate_metric",
            "metric-id",
            meaning="Metric id of the records arriving per second. When absent, the "
            "processing rate plus the backlog's growth per second between its last two "
            "datapoints.",
        ),
        Param(
            "signal_prefix",
            "text",
            default="",
            meaning="Prepended to both signal names, to run two instances on two sources.",
        ),
    ]

    def setup(self, params: Params) -> None:
        # The Rust interpreter reads its parameters into a typed struct:
        # every present value's type first, in declared order, then the
        # missing required keys, then how the values go together. The same
        # order finds the same first mistake.
        backlog_metric = params.get_opt_str("backlog_metric")
        self.backlog_unit = params.get_str("backlog_unit")
        if self.backlog_unit not in UNITS:
            raise InterpreterError(
                'parameter `backlog_unit` must be "records" or "milliseconds", '
                f"found {json.dumps(self.backlog_unit, ensure_ascii=False)}"
            )
        self.backlog_multiplier = params.get_f64("backlog_multiplier")
        processing_rate_metric = params.get_opt_str("processing_rate_metric")
        self.input_rate_metric = params.get_opt_str("input_rate_metric")
        self.signal_prefix = params.get_str("signal_prefix")
        for key, metric_id in (
            ("backlog_metric", backlog_metric),
            ("processing_rate_metric", processing_rate_metric),
        ):
            if metric_id is None:
                raise InterpreterError(f"missing required parameter `{key}` (a string)")
        self.backlog_metric = backlog_metric
        self.processing_rate_metric = processing_rate_metric

        multiplier = self.backlog_multiplier
        if not (math.isfinite(multiplier) and multiplier > 0.0):
            raise InterpreterError(
                "parameter `backlog_multiplier` must be a positive number, "
                f"found {rust_float(multiplier)}"
            )
        for key, metric_id in (
            ("backlog_metric", self.backlog_metric),
            ("processing_rate_metric", self.processing_rate_metric),
        ):
            if metric_id == "":
                raise InterpreterError(
                    f"parameter `{key}` must name a metric, found the empty string"
                )

    def on_interpret(self, now_ms, app, metrics):
        backlog = find(metrics, "backlog_metric", self.backlog_metric)
        processing = find(metrics, "processing_rate_metric", self.processing_rate_metric)
        input_series = None
        if self.input_rate_metric is not None:
            input_series = find(metrics, "input_rate_metric", self.input_rate_metric)
        if not backlog.points:
            return []
        backlog_value = backlog.points[-1].value * self.backlog_multiplier
        processing_rate = processing.points[-1].value if processing.points else None
        if input_series is not None:
            input_rate = input_series.points[-1].value if input_series.points else None
        elif (
            processing_rate is not None
            and self.backlog_unit == "records"
            and len(backlog.points) >= 2
            and backlog.points[-1].timestamp_ms > backlog.points[-2].timestamp_ms
        ):
            # Records in = records out + backlog growth; an age's growth is
            # not a count of records, so it cannot stand in.
            before, last = backlog.points[-2], backlog.points[-1]
            secs = float(_wrapping_i64(last.timestamp_ms - before.timestamp_ms)) / 1000.0
            growth = (last.value - before.value) * self.backlog_multiplier / secs
            input_rate = processing_rate + growth
        else:
            input_rate = None

        if self.backlog_unit == "records":
            seconds_behind, seconds_to_drain = drain(backlog_value, processing_rate, input_rate)
        else:
            seconds = backlog_value / 1000.0
            # Rust's f64::max: the larger, +0 over -0 (what wasm's f64.max does).
            seconds_behind = seconds if seconds > 0.0 else 0.0
            seconds_to_drain = None
            # The records behind, estimated as the age times the input rate:
            # with nothing arriving, an age says nothing of how many there are.
            if input_rate is not None and (input_rate > 0.0 or seconds <= 0.0):
                _, seconds_to_drain = drain(seconds * input_rate, processing_rate, input_rate)

        signals = []
        for name, value in (
            ("seconds_behind", seconds_behind),
            ("seconds_to_drain", seconds_to_drain),
        ):
            if value is not None and math.isfinite(value):
                signals.append(Signal(f"{self.signal_prefix}{name}", value))
        return signals
