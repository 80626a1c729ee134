// `step` in JavaScript: the reference design's step-scaling policy.
//
// A line-for-line port of the Rust `step` plugin (`plugins/step`), written
// to make the same decision, with the same reason, on every evaluation; the
// test `host/tests/polyglot.rs` checks that on the shipped scenarios.
//
// While the scale-out alarm is in ALARM the application grows by a factor;
// else while the scale-in alarm is in ALARM it shrinks by one; always within
// [max(minKpu, 1), maxKpu]. Scale-out wins when both alarms fire.
//
// Its parameters are declared once, in `PARAMETERS` below, with the same
// names, kinds, required flags and defaults as the Rust `step`'s (the test
// compares them); `flinkscale plugin describe` shows them.
//
// Build: `plugins/js/build.sh` (gives `target/polyglot/step-js.wasm`).

import {
  U32_MAX,
  PolicyError,
  alarmStateName,
  definePolicy,
  hold,
  requireAlarm,
  scaleTo,
} from "./flinkscale-policy.js";

/** The parameters, as the Rust `step` declares them. */
const PARAMETERS = [
  {
    name: "scale_out_alarm",
    kind: "alarm-id",
    required: true,
    meaning:
      "The alarm that asks for more capacity.",
  },
  {
    name: "scale_in_alarm",
    kind: "alarm-id",
    required: true,
    meaning:
      "The alarm that asks for less capacity; not the scale-out alarm.",
  },
  {
    name: "operation",
    kind: "text",
    default: "multiply",
    meaning:
      "\"multiply\": out to kpu x factor, in to floor(kpu / factor) (the reference's Multiply/Divide); \"add\": out to kpu + factor, in to kpu - factor (Add/Subtract).",
  },
  {
    name: "scale_out_factor",
    kind: "integer",
    default: 2,
    meaning:
      "The scale-out factor: a whole number, at least 2 with \"multiply\" and at least 1 with \"add\".",
  },
  {
    name: "scale_in_factor",
    kind: "integer",
    default: 2,
    meaning:
      "The scale-in factor, as `scale_out_factor`.",
  },
];

// The smallest factor that changes anything under each operation.
const MIN_FACTOR = { multiply: 2, add: 1 };

function checkFactor(operation, name, factor) {
  const minimum = MIN_FACTOR[operation];
  if (factor < minimum) {
    throw new PolicyError(
      `parameter \`${name}\` must be at least ${minimum} with operation "${operation}" ` +
        `(a factor of ${factor} would never change the capacity), found ${factor}`,
    );
  }
}

/**
 * One step from `kpu`: `{ target, arithmetic }`, or `{ limit }` when already
 * at the limit in this direction. The arithmetic is the Rust plugin's u32
 * arithmetic: saturating, and floor division for multiply-in. Products of
 * two u32 can exceed 2^53 and lose precision, but then they exceed U32_MAX
 * too and saturate to it, as in Rust.
 */
function step(operation, out, factor, kpu, minKpu, maxKpu) {
  const floor = Math.max(minKpu, 1);
  const ceiling = Math.max(maxKpu, floor);
  let raw;
  let symbol;
  if (operation === "multiply" && out) {
    [raw, symbol] = [Math.min(kpu * factor, U32_MAX), "x"];
  } else if (operation === "add" && out) {
    [raw, symbol] = [Math.min(kpu + factor, U32_MAX), "+"];
  } else if (operation === "multiply") {
    [raw, symbol] = [Math.floor(kpu / Math.max(factor, 1)), "/"];
  } else {
    [raw, symbol] = [Math.max(kpu - factor, 0), "-"];
  }
  if (out && kpu >= ceiling) return { limit: ceiling };
  if (!out && kpu <= floor) return { limit: floor };
  const target = Math.min(Math.max(raw, floor), ceiling);
  let arithmetic = `${kpu} KPU ${symbol} ${factor} = ${raw} KPU`;
  if (target !== raw) {
    const bound = raw > ceiling ? "max" : "min";
    arithmetic += `, clamped to ${bound} KPU ${target}`;
  }
  return { target, arithmetic };
}

// Every value's type first, in declared order, then how the values go
// together: the order in which the Rust `step` (reading its parameters
// into a typed struct) finds the first mistake.
function setup(params) {
  const scaleOutAlarm = params.getStr("scale_out_alarm");
  const scaleInAlarm = params.getStr("scale_in_alarm");
  const operation = params.getStr("operation");
  if (!Object.hasOwn(MIN_FACTOR, operation)) {
    throw new PolicyError(
      `parameter \`operation\` must be "multiply" or "add", found ${JSON.stringify(operation)}`,
    );
  }
  const scaleOutFactor = params.getU32("scale_out_factor");
  const scaleInFactor = params.getU32("scale_in_factor");
  for (const [name, id] of [
    ["scale_out_alarm", scaleOutAlarm],
    ["scale_in_alarm", scaleInAlarm],
  ]) {
    if (id === "") {
      throw new PolicyError(`parameter \`${name}\` must name an alarm, found the empty string`);
    }
  }
  if (scaleOutAlarm === scaleInAlarm) {
    throw new PolicyError(
      "`scale_out_alarm` and `scale_in_alarm` must name different alarms, " +
        `both are \`${scaleOutAlarm}\``,
    );
  }
  checkFactor(operation, "scale_out_factor", scaleOutFactor);
  checkFactor(operation, "scale_in_factor", scaleInFactor);
  return { scaleOutAlarm, scaleInAlarm, operation, scaleOutFactor, scaleInFactor };
}

function decide(config, evaluation) {
  const outState = requireAlarm(evaluation, config.scaleOutAlarm).state;
  const inState = requireAlarm(evaluation, config.scaleInAlarm).state;
  const app = evaluation.app;
  let alarm;
  let out;
  let factor;
  if (outState === "alarm") {
    [alarm, out, factor] = [config.scaleOutAlarm, true, config.scaleOutFactor];
  } else if (inState === "alarm") {
    [alarm, out, factor] = [config.scaleInAlarm, false, config.scaleInFactor];
  } else {
    return hold(
      `no alarm in ALARM (scale-out \`${config.scaleOutAlarm}\`: ${alarmStateName(outState)}, ` +
        `scale-in \`${config.scaleInAlarm}\`: ${alarmStateName(inState)})`,
    );
  }
  const result = step(config.operation, out, factor, app.kpu, app.minKpu, app.maxKpu);
  let reason =
    result.target === undefined
      ? `already at ${out ? "max" : "min"} KPU (${result.limit})`
      : `\`${alarm}\` is in ALARM: ${result.arithmetic}`;
  if (out && inState === "alarm") {
    reason += ` (scale-in \`${config.scaleInAlarm}\` is also in ALARM; scale-out wins)`;
  }
  return result.target === undefined ? hold(reason) : scaleTo(result.target, reason);
}

/** The `policy` export of the `scaling-policy` world. */
export const policy = definePolicy({
  name: "step-js",
  version: "0.2.0",
  summary:
    "The reference design's step scaling: multiply (or add to) the KPU while the scale-out alarm fires, divide (or subtract) while the scale-in alarm fires.",
  parameters: PARAMETERS,
  setup,
  decide,
});
