// Helpers for writing a flinkscale metric interpreter in JavaScript.
//
// An interpreter turns the application's raw metric series into named
// signals (`seconds_behind`, `lag_growth_per_sec`) that alarms watch and
// policies read. jco (`jco componentize --backend qjs`) turns a JavaScript
// module into a WebAssembly component of the `metric-interpreter` world
// (`wit/v0.2.0/plugin.wit`, exporting `interpreter`); this module is the
// layer between that world's calling convention and an interpreter's
// author, the JavaScript counterpart of the Rust SDK's `Interpreter` trait.
// An interpreter describes itself to `defineInterpreter` and exports the
// result as `interpreter`:
//
//     import { defineInterpreter, series, signal } from "./flinkscale-interpreter.js";
//
//     export const interpreter = defineInterpreter({
//       name: "doubled",
//       version: "0.1.0",
//       summary: "Twice the latest value of a metric.",
//       parameters: [
//         { name: "metric", kind: "metric-id", required: true, meaning: "The metric." },
//       ],
//       setup(params) {               // returns the configured state
//         return { metric: params.getStr("metric") };
//       },
//       interpret(state, nowMs, app, metrics) {
//         const found = series(metrics, state.metric);
//         if (found === undefined || found.points.length === 0) return [];
//         return [signal("doubled", 2 * found.points.at(-1).value)];
//       },
//     });
//
// The parameter layer (`Params`, the declarations, their checks and error
// texts) is `flinkscale-policy.js`'s, shared: a parameter reads and is
// refused the same way in a policy and in an interpreter, and as in the Rust
// SDK, word for word. Errors are plain exceptions: throw an
// `InterpreterError` with a sentence for the person who wrote the
// configuration, and the host receives it as the `err` of `configure` or
// `interpret`; any other exception is reported the same way, with its name,
// rather than trapping the instance, and a thrown value that is not an
// `Error` is written out (`threw a non-Error value: {"code":3}`). An
// interpret error makes the evaluation hold without asking the policy, and
// counts toward the interpreter's quarantine; with not enough data yet,
// return an empty array instead (the signals are then absent, and the
// policy is asked).
//
// The values follow the same mapping as a policy's: record fields in
// camelCase (`point.timestampMs`, `series.periodSecs`, `app.minKpu`), `s64`
// and `u64` as numbers, `u32` fields corrected to unsigned by the helper.
// A number is a double: an `s64` arrives exact up to 2^53 (every timestamp
// in milliseconds until the year 287396), rounded beyond. A
// signal's value is any number: the host drops NaN and infinities, so a
// signal with no finite value is absent, not zero.
//
// Build with `plugins/js/build.sh MODULE` (the script picks the world from
// the module: one that imports this helper is an interpreter).

import {
  NOT_CONFIGURED,
  PARAMETER_KINDS,
  Params,
  PolicyError,
  U32_MAX,
  configuredState,
  errorText,
  kindOf,
  loneSurrogate,
  liftApplication,
  liftSeries,
  pluginMetadata,
} from "./flinkscale-policy.js";

export { NOT_CONFIGURED, PARAMETER_KINDS, Params, U32_MAX };

/**
 * A refusal meant for the person who wrote the configuration; its message
 * is what the host logs. The same class as `flinkscale-policy.js`'s
 * `PolicyError`, which the parameter getters throw.
 */
export const InterpreterError = PolicyError;

/** A signal as the contract carries it: a name and a number. */
export function signal(name, value) {
  return { name, value };
}

/**
 * The series of the metric with this id (`[[application.metric]] id`), if
 * the application configures it.
 */
export function series(metrics, id) {
  return metrics.find((candidate) => candidate.id === id);
}

/**
 * The configured metric ids, comma-separated, or `none`: for an error that
 * names a metric the application does not configure.
 */
export function configuredMetrics(metrics) {
  return metrics.length === 0 ? "none" : metrics.map((candidate) => candidate.id).join(", ");
}

// The answer of `interpret` as the contract carries it, or an
// InterpreterError saying what is wrong with it: a wrong type would
// otherwise trap the instance while the engine lowers it. The texts are
// `flinkscale_interpreter.py`'s, word for word, and count signals from 1
// as the host does.
function checkedSignals(answer) {
  if (!Array.isArray(answer)) {
    throw new InterpreterError(
      `the interpreter returned ${kindOf(answer)}, not a list of signals (name, value)`,
    );
  }
  return answer.map((item, index) => {
    const which = `signal ${index + 1} of ${answer.length}`;
    if (item === null || typeof item !== "object" || Array.isArray(item)) {
      throw new InterpreterError(`${which} is ${kindOf(item)}, not a signal (name, value)`);
    }
    if (typeof item.name !== "string") {
      throw new InterpreterError(`${which} has a name that is ${kindOf(item.name)}, not a string`);
    }
    // A name is looked up, not read: one written otherwise than it was
    // given would name another signal.
    const where = loneSurrogate(item.name);
    if (where !== null) {
      throw new InterpreterError(
        `${which} has a name with a lone surrogate (${where}), which a UTF-8 string cannot carry`,
      );
    }
    if (typeof item.value !== "number") {
      throw new InterpreterError(
        `${which} (\`${item.name}\`) has a value that is ${kindOf(item.value)}, not a number`,
      );
    }
    return { name: item.name, value: item.value };
  });
}

/**
 * The `interpreter` export, from a description: `name`, `version` and
 * `summary` (the plugin's metadata), `parameters` (the keys it accepts, as
 * `flinkscale-policy.js`'s `declareParameters` takes them), `setup(params)`
 * (validates a `Params` and returns the configured state; throw to refuse)
 * and `interpret(state, nowMs, app, metrics)`, which returns the signals
 * for now: an array of `signal(name, value)`, empty when there is nothing
 * to say (a signal left out is absent, not zero). `metrics` are the
 * configured series in configuration order, each with its datapoints oldest
 * first.
 *
 * As for a policy: the host documents and checks the parameters from
 * `metadata`; `configure` refuses any key not declared before `setup` runs,
 * reads an absent key as its declared default, and forgets any previous
 * state first (a failed reconfiguration must not leave the old one
 * answering); `interpret` refuses with `not configured` until a `configure`
 * has succeeded.
 */
export function defineInterpreter(description) {
  const metadata = pluginMetadata("defineInterpreter", description);
  const { setup, interpret } = description;
  let state;
  let configured = false;
  return {
    metadata() {
      return metadata;
    },
    configure(paramsJson) {
      configured = false;
      state = undefined;
      state = configuredState(metadata, setup, paramsJson);
      configured = true;
    },
    interpret(nowMs, app, metrics) {
      if (!configured) throw NOT_CONFIGURED;
      try {
        return checkedSignals(interpret(state, nowMs, liftApplication(app), liftSeries(metrics)));
      } catch (error) {
        throw errorText(error);
      }
    },
  };
}
