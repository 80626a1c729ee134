// `backlog-seconds` in JavaScript: an example of `flinkscale-interpreter.js`
// that reimplements the built-in Rust interpreter
// (`plugins/backlog-seconds/src/lib.rs`) exactly, signal for signal and
// error for error (host/tests/polyglot_interpreters.rs checks it).
//
// A backlog in records turned into time, so that a policy or an alarm can
// be written against a time SLO ("never more than five minutes behind")
// whatever the source counts in. From three series it derives two signals:
//
// - `seconds_behind` = backlog / processing rate: how long the records
//   waiting now would take to process at today's rate. 0 when there is no
//   backlog; absent when there is a backlog and nothing is processed.
// - `seconds_to_drain` = backlog / (processing rate - input rate): how long
//   until the backlog is gone at the current capacity. 0 when there is no
//   backlog; absent when the backlog is not shrinking.
//
// With `backlog_unit = "milliseconds"` the backlog metric is already an age:
// `seconds_behind` is that age in seconds, and `seconds_to_drain` counts the
// backlog as the age times the input rate, so it needs `input_rate_metric`.
// Each signal uses the latest datapoint of each series; a series with no
// datapoint leaves the signals that need it absent.
//
// The arithmetic is the Rust code's, operation for operation, in the same
// IEEE doubles; where JavaScript's builtins differ from Rust's (`Math.max`
// propagates NaN where `f64::max` ignores it; `String(-1e-7)` is not how
// Rust prints it) the code says so.
//
// Build: `plugins/js/build.sh backlog-seconds` gives
// `target/polyglot/backlog-seconds-js.wasm`.

import {
  InterpreterError,
  configuredMetrics,
  defineInterpreter,
  series,
  signal,
} from "./flinkscale-interpreter.js";

/** The values of `backlog_unit`. */
const UNITS = ["records", "milliseconds"];

/** The parameters, as the Rust `backlog-seconds` declares them. */
const PARAMETERS = [
  {
    name: "backlog_metric",
    kind: "metric-id",
    required: true,
    meaning:
      "Metric id of the backlog: `AWS/Kafka` `SumOffsetLag` (records), `MaxOffsetLag` (one partition's lag: use `backlog_multiplier`), `AWS/KinesisAnalytics` `records_lag_max`, or an age (`GetRecords.IteratorAgeMilliseconds`, `millisBehindLatest`) with `backlog_unit = \"milliseconds\"`.",
  },
  {
    name: "backlog_unit",
    kind: "text",
    default: "records",
    meaning:
      "\"records\", or \"milliseconds\" when the backlog metric is already an age: `seconds_behind` is then that age, and `seconds_to_drain` needs `input_rate_metric` (none while the input rate is 0: an age says nothing of a backlog's size then).",
  },
  {
    name: "backlog_multiplier",
    kind: "number",
    default: 1,
    meaning:
      "Multiplies the backlog metric, e.g. by the partition count with `MaxOffsetLag`; positive.",
  },
  {
    name: "processing_rate_metric",
    kind: "metric-id",
    required: true,
    meaning:
      "Metric id of the records the application processes per second, e.g. `AWS/KinesisAnalytics` `numRecordsInPerSecond`.",
  },
  {
    name: "input_rate_metric",
    kind: "metric-id",
    meaning:
      "Metric id of the records arriving per second. When absent, the processing rate plus the backlog's growth per second between its last two datapoints.",
  },
  {
    name: "signal_prefix",
    kind: "text",
    default: "",
    meaning: "Prepended to both signal names, to run two instances on two sources.",
  },
];

/**
 * A number as Rust's `Display` writes an `f64` (`1`, `-0`, `1e-7` as
 * `0.0000001`, `1e21` in full, `inf`), so that an error quoting a number
 * reads as the Rust interpreter's. `toExponential()` gives the shortest
 * digits that read back as the same double, as Rust's; they are written out
 * here without an exponent.
 */
function rustFloat(value) {
  if (Number.isNaN(value)) return "NaN";
  if (value === Infinity) return "inf";
  if (value === -Infinity) return "-inf";
  const sign = value < 0 || Object.is(value, -0) ? "-" : "";
  const [mantissa, exponent] = Math.abs(value).toExponential().split("e");
  const digits = mantissa.replace(".", "");
  const point = Number(exponent) + 1;
  let text;
  if (point <= 0) text = `0.${"0".repeat(-point)}${digits}`;
  else if (point >= digits.length) text = digits + "0".repeat(point - digits.length);
  else text = `${digits.slice(0, point)}.${digits.slice(point)}`;
  return sign + text;
}

/**
 * `[secondsBehind, secondsToDrain]` on plain numbers: `backlog` in records,
 * rates in records per second; `undefined` for an absent signal or rate.
 * NaN compares false everywhere, as in Rust.
 */
function drain(backlog, processing, input) {
  if (backlog <= 0) return [0, 0];
  const secondsBehind = processing !== undefined && processing > 0 ? backlog / processing : undefined;
  let secondsToDrain;
  if (processing !== undefined && input !== undefined && processing > input) {
    secondsToDrain = backlog / (processing - input);
  }
  return [secondsBehind, secondsToDrain];
}

/** The series `param` names, or an error naming the configured ones. */
function find(metrics, param, id) {
  const found = series(metrics, id);
  if (found === undefined) {
    throw new InterpreterError(
      `parameter \`${param}\` names the metric \`${id}\`, which the application does not ` +
        `configure (configured metrics: ${configuredMetrics(metrics)})`,
    );
  }
  return found;
}

/** The value of the latest point of `found`, or `undefined` when it has none. */
function latest(found) {
  return found.points.length === 0 ? undefined : found.points[found.points.length - 1].value;
}

// The Rust interpreter reads its parameters into a typed struct: every
// present value's type first, in declared order, then the missing required
// keys, then how the values go together. The same order finds the same
// first mistake.
function setup(params) {
  const backlogMetric = params.getOptStr("backlog_metric");
  const backlogUnit = params.getStr("backlog_unit");
  if (!UNITS.includes(backlogUnit)) {
    throw new InterpreterError(
      `parameter \`backlog_unit\` must be "records" or "milliseconds", found ${JSON.stringify(backlogUnit)}`,
    );
  }
  const backlogMultiplier = params.getF64("backlog_multiplier");
  const processingRateMetric = params.getOptStr("processing_rate_metric");
  const inputRateMetric = params.getOptStr("input_rate_metric");
  const signalPrefix = params.getStr("signal_prefix");
  for (const [key, id] of [
    ["backlog_metric", backlogMetric],
    ["processing_rate_metric", processingRateMetric],
  ]) {
    if (id === undefined) throw new InterpreterError(`missing required parameter \`${key}\` (a string)`);
  }
  if (!(Number.isFinite(backlogMultiplier) && backlogMultiplier > 0)) {
    throw new InterpreterError(
      `parameter \`backlog_multiplier\` must be a positive number, found ${rustFloat(backlogMultiplier)}`,
    );
  }
  for (const [key, id] of [
    ["backlog_metric", backlogMetric],
    ["processing_rate_metric", processingRateMetric],
  ]) {
    if (id === "") {
      throw new InterpreterError(`parameter \`${key}\` must name a metric, found the empty string`);
    }
  }
  return {
    backlogMetric,
    backlogUnit,
    backlogMultiplier,
    processingRateMetric,
    inputRateMetric,
    signalPrefix,
  };
}

function interpret(config, nowMs, app, metrics) {
  const backlog = find(metrics, "backlog_metric", config.backlogMetric);
  const processing = find(metrics, "processing_rate_metric", config.processingRateMetric);
  const input =
    config.inputRateMetric === undefined
      ? undefined
      : find(metrics, "input_rate_metric", config.inputRateMetric);
  const points = backlog.points;
  if (points.length === 0) return [];
  const backlogValue = points[points.length - 1].value * config.backlogMultiplier;
  const processingRate = latest(processing);
  let inputRate;
  if (input !== undefined) {
    inputRate = latest(input);
  } else if (
    processingRate !== undefined &&
    config.backlogUnit === "records" &&
    points.length >= 2 &&
    points[points.length - 1].timestampMs > points[points.length - 2].timestampMs
  ) {
    // Records in = records out + backlog growth; an age's growth is not a
    // count of records, so it cannot stand in.
    const [before, last] = [points[points.length - 2], points[points.length - 1]];
    // Rust's `(last - before) as f64` on `i64`: the exact difference,
    // rounded once, which is what subtracting two timestamps (whole numbers
    // below 2^53) as doubles gives too.
    const secs = (last.timestampMs - before.timestampMs) / 1000;
    const growth = ((last.value - before.value) * config.backlogMultiplier) / secs;
    inputRate = processingRate + growth;
  }

  let secondsBehind;
  let secondsToDrain;
  if (config.backlogUnit === "records") {
    [secondsBehind, secondsToDrain] = drain(backlogValue, processingRate, inputRate);
  } else {
    const seconds = backlogValue / 1000;
    // Rust's `f64::max`: the larger, +0 over -0, and 0 for NaN, where
    // `Math.max` would answer NaN.
    secondsBehind = seconds > 0 ? seconds : 0;
    // The records behind, estimated as the age times the input rate:
    // with nothing arriving, an age says nothing of how many there are.
    if (inputRate !== undefined && (inputRate > 0 || seconds <= 0)) {
      [, secondsToDrain] = drain(seconds * inputRate, processingRate, inputRate);
    }
  }

  const signals = [];
  for (const [name, value] of [
    ["seconds_behind", secondsBehind],
    ["seconds_to_drain", secondsToDrain],
  ]) {
    if (value !== undefined && Number.isFinite(value)) {
      signals.push(signal(`${config.signalPrefix}${name}`, value));
    }
  }
  return signals;
}

/** The `interpreter` export of the `metric-interpreter` world. */
export const interpreter = defineInterpreter({
  name: "backlog-seconds-js",
  version: "0.1.0",
  summary:
    "Turns a backlog in records (or an age) and the processing and input rates into `seconds_behind` and `seconds_to_drain`, so that an SLO can be written in seconds.",
  parameters: PARAMETERS,
  setup,
  interpret,
});
