// Helpers for writing a flinkscale scaling policy in JavaScript.
//
// jco (`jco componentize --backend qjs`, the QuickJS engine) turns a
// JavaScript module into a WebAssembly component of the `scaling-policy`
// world (`wit/v0.2.0/plugin.wit`); this module is the
// small layer between that world's calling convention and a policy author,
// the JavaScript counterpart of the Rust SDK (`plugins/sdk`). A policy
// describes itself to `definePolicy` and exports the result as `policy`:
//
//     import { definePolicy, hold, scaleTo } from "./flinkscale-policy.js";
//
//     export const policy = definePolicy({
//       name: "my-policy",
//       version: "0.1.0",
//       summary: "Holds; a start for a policy of your own.",
//       parameters: [               // a key not declared here is refused
//         { name: "threshold", kind: "number", default: 80,
//           meaning: "The CPU percentage above which to scale out." },
//       ],
//       setup(params) {               // returns the configured state
//         return { threshold: params.getF64("threshold") };  // 80 when absent
//       },
//       decide(state, evaluation) {
//         return hold("nothing to do");
//       },
//     });
//
// Errors are plain exceptions: throw a `PolicyError` (or let a helper throw
// one) with a sentence for the person who wrote the configuration, and the
// host receives it as the `err` of `configure` or `decide`. Any other
// exception escaping a policy is reported the same way, with its name,
// rather than trapping the instance: the host then holds, exactly as for a
// returned error.
//
// The values the host passes follow componentize-qjs's JavaScript mapping:
// record fields in camelCase (`evaluation.app.minKpu`), enums as their WIT
// names (`"alarm"`, `"insufficient-data"`, `"running"`), `s64` and `u64` as
// numbers (`evaluation.nowMs`, exact up to 2^53), and an absent option as
// `null`. The helper corrects the engine's `u32` handling both ways (see
// `fixU32Fields` and `lowerU32`), so a policy sees and returns plain
// numbers.
//
// Error texts are those of the Rust SDK, word for word, so that a policy
// ported from Rust reports the same configuration errors.
//
// A string crosses to the host as UTF-8, which cannot carry a lone
// surrogate (`"\uD800"`, half of a UTF-16 pair without its other half). So
// a reason or an error text is handed over with each lone surrogate
// written as its escape, the six characters `\ud800`, and the decision
// goes through, as the Python helper does. In the metadata (the name,
// version and summary, a parameter's name, meaning and default), the
// author's own constants, a lone surrogate is refused at build time, in
// the Python helper's words.
//
// The parameter layer (`Params`, `declareParameters`, their checks and
// texts) and the metadata, configure and error steps also serve metric
// interpreters: `flinkscale-interpreter.js` imports them from here, so that
// a parameter reads and is refused the same way in both kinds of plugin.

/** The largest KPU (and any other `u32`) the contract can carry. */
export const U32_MAX = 4294967295;

/** What `decide` answers before a successful `configure`. */
export const NOT_CONFIGURED = "not configured";

/**
 * A refusal meant for the person who wrote the configuration; its message
 * is what the host logs, and should name the parameter or alarm at fault
 * and what would be valid.
 */
export class PolicyError extends Error {
  constructor(message) {
    super(message);
    this.name = "PolicyError";
  }
}

// --- decisions -------------------------------------------------------------

// The texts of a KPU and a next evaluation the contract cannot carry;
// `flinkscale_policy.py`'s, word for word, naming them as the contract does.
const KPU = "scale-to needs a whole number of KPU";
const NEXT_EVALUATION = "next-evaluation-secs needs a whole number of seconds";

// `value` if it is a whole number in 0..=U32_MAX (a `u32` of the contract),
// else a PolicyError saying `what` and what was found.
function checkedU32(what, value) {
  if (!Number.isInteger(value) || value < 0 || value > U32_MAX) {
    throw new PolicyError(`${what} from 0 to ${U32_MAX}, found ${describe(value)}`);
  }
  return value;
}

function checkedNext(nextEvaluationSecs) {
  return nextEvaluationSecs === undefined || nextEvaluationSecs === null
    ? null
    : checkedU32(NEXT_EVALUATION, nextEvaluationSecs);
}

// componentize-qjs 0.4.5 (the QuickJS engine jco builds with) lowers a
// number into a `u32` as if it were an `s32`: anything above 2^31 - 1
// saturates to 2147483647. `| 0` is the `s32` with the same bits, which it
// carries exactly, so the host reads the intended `u32`. Applied once, to
// the checked answer `decide` returns (see `loweredDecision`), so that a
// decision keeps its plain numbers until then.
function lowerU32(value) {
  return value | 0;
}

function decision(action, reason, nextEvaluationSecs) {
  return { action, reason, nextEvaluationSecs: checkedNext(nextEvaluationSecs) };
}

/**
 * Keep the current capacity, for this reason. `nextEvaluationSecs` asks to
 * be evaluated again that many seconds from now instead of at the
 * application's regular interval: a way to skip polls, never to be asked
 * sooner. The host honours it only after a hold, with lazy polling on (the
 * default), rounded down to whole evaluation intervals and kept within 1
 * to 15 of them; a scale decision's is ignored.
 */
export function hold(reason, nextEvaluationSecs) {
  return decision({ tag: "hold" }, reason, nextEvaluationSecs);
}

/**
 * Set the capacity to `kpu` KPU, for this reason. The host clamps the
 * target to [minKpu, maxKpu]; 0 (like an empty reason) it refuses as a
 * failed call, which counts toward quarantine as an error does, so ask for
 * at least 1.
 */
export function scaleTo(kpu, reason, nextEvaluationSecs) {
  return decision({ tag: "scale-to", val: checkedU32(KPU, kpu) }, reason, nextEvaluationSecs);
}

// What `value` is, in the words `flinkscale_policy.py` uses for the same
// mistake (`nothing`, `a string`, `a list`), so that an author reads the
// same error in either language; also `flinkscale-interpreter.js`'s, for
// the answers of an interpreter.
export function kindOf(value) {
  if (value === null || value === undefined) return "nothing";
  if (Array.isArray(value)) return "a list";
  switch (typeof value) {
    case "boolean":
      return "a boolean";
    case "number":
      return "a number";
    case "string":
      return "a string";
    case "object":
      return "an object";
    default:
      return `a ${typeof value}`;
  }
}

// The answer of a policy's `decide` as the contract carries it (its `u32`s
// lowered, see `lowerU32`), or a PolicyError saying what is wrong with it: a
// decision is a plain object, and one built by hand, or anything else,
// would otherwise trap the instance or reach the host altered while the
// engine lowers it. The texts are `flinkscale_policy.py`'s, word for word.
function loweredDecision(answer) {
  if (answer === null || typeof answer !== "object" || Array.isArray(answer)) {
    throw new PolicyError(
      `the policy returned ${kindOf(answer)}, not a decision (hold or scale-to)`,
    );
  }
  const { action, reason } = answer;
  let lowered;
  if (action !== null && typeof action === "object" && action.tag === "hold") {
    lowered = { tag: "hold" };
  } else if (action !== null && typeof action === "object" && action.tag === "scale-to") {
    lowered = { tag: "scale-to", val: lowerU32(checkedU32(KPU, action.val)) };
  } else {
    throw new PolicyError(`the decision's action is ${kindOf(action)}, not hold or scale-to`);
  }
  if (typeof reason !== "string") {
    throw new PolicyError(`the decision's reason is ${kindOf(reason)}, not a string`);
  }
  const next = checkedNext(answer.nextEvaluationSecs);
  return {
    action: lowered,
    reason: carried(reason),
    nextEvaluationSecs: next === null ? null : lowerU32(next),
  };
}

// Whether the UTF-16 unit `unit` is a high (first) or a low (second) half of
// a surrogate pair.
const isHigh = (unit) => unit >= 0xd800 && unit <= 0xdbff;
const isLow = (unit) => unit >= 0xdc00 && unit <= 0xdfff;

// Any half of a surrogate pair.
const SURROGATE = /[\uD800-\uDFFF]/;

// Each lone surrogate of `text`: its index (in UTF-16 units) and its
// character's number counting code points from 1 (a pair is one).
function* loneSurrogates(text) {
  // Most text has no surrogate at all: the engine's search says so faster
  // than a walk in JavaScript.
  if (!SURROGATE.test(text)) return;
  let character = 0;
  for (let i = 0; i < text.length; i += 1) {
    character += 1;
    const unit = text.charCodeAt(i);
    if (isHigh(unit) && isLow(text.charCodeAt(i + 1))) {
      i += 1;
    } else if (isHigh(unit) || isLow(unit)) {
      yield { index: i, character };
    }
  }
}

/**
 * The first lone surrogate of `text` and where it is, `\ud800 at character
 * 12` (counting code points from 1), or `null` when UTF-8 carries it all.
 * The words are `flinkscale_policy.py`'s.
 */
export function loneSurrogate(text) {
  for (const { index, character } of loneSurrogates(text)) {
    return `${escaped(text.charCodeAt(index))} at character ${character}`;
  }
  return null;
}

const escaped = (unit) => `\\u${unit.toString(16).padStart(4, "0")}`;

// `text` itself when UTF-8 carries it, else `text` with each lone
// surrogate written as its escape (`\ud800`), which it carries.
function carried(text) {
  let out = "";
  let from = 0;
  for (const { index } of loneSurrogates(text)) {
    out += text.slice(from, index) + escaped(text.charCodeAt(index));
    from = index + 1;
  }
  return from === 0 ? text : out + text.slice(from);
}

// --- the evaluation --------------------------------------------------------

const ALARM_STATE_NAMES = {
  ok: "OK",
  alarm: "ALARM",
  "insufficient-data": "INSUFFICIENT_DATA",
};

/** The state as CloudWatch spells it: `OK`, `ALARM` or `INSUFFICIENT_DATA`. */
export function alarmStateName(state) {
  return ALARM_STATE_NAMES[state] ?? String(state).toUpperCase();
}

/** The status as the service spells it, e.g. `RUNNING`. */
export function appStatusName(status) {
  return String(status).toUpperCase().replaceAll("-", "_");
}

function listOrNone(items) {
  return items.length === 0 ? "none" : items.join(", ");
}

/** The alarm with this id (`[[application.alarm]] id`), if configured. */
export function alarm(evaluation, id) {
  return evaluation.alarms.find((candidate) => candidate.name === id);
}

/** The alarm with this id, or a `PolicyError` naming it and the alarms that do exist. */
export function requireAlarm(evaluation, id) {
  const found = alarm(evaluation, id);
  if (found === undefined) {
    const configured = listOrNone(evaluation.alarms.map((a) => a.name));
    throw new PolicyError(
      `no alarm \`${id}\` is configured for application \`${evaluation.app.name}\` ` +
        `(configured: ${configured})`,
    );
  }
  return found;
}

/** The series of the metric with this id (`[[application.metric]] id`), if configured. */
export function metric(evaluation, id) {
  return evaluation.metrics.find((series) => series.id === id);
}

/** The value of the interpreter signal with this name, if any interpreter produced it. */
export function signal(evaluation, name) {
  return evaluation.signals.find((candidate) => candidate.name === name)?.value;
}

// --- parameters ------------------------------------------------------------

const WHOLE_NUMBER = `a whole number from 0 to ${U32_MAX}`;

function describe(value) {
  // `undefined` only from a policy's own values (a KPU left out), never
  // from parameters, which are JSON: said as Python says `None`.
  if (value === null || value === undefined) return "null";
  if (typeof value === "boolean") return `the boolean ${value}`;
  if (typeof value === "number") return `the number ${value}`;
  if (typeof value === "string") return `the string ${JSON.stringify(value)}`;
  if (Array.isArray(value)) return "an array";
  return "a table";
}

function missing(key, expected) {
  return new PolicyError(`missing required parameter \`${key}\` (${expected})`);
}

function wrongType(key, expected, found) {
  return new PolicyError(`parameter \`${key}\` must be ${expected}, found ${describe(found)}`);
}

function editDistance(a, b) {
  const as = [...a];
  const bs = [...b];
  let previous = Array.from({ length: bs.length + 1 }, (_, j) => j);
  as.forEach((ca, i) => {
    const current = new Array(bs.length + 1).fill(i + 1);
    bs.forEach((cb, j) => {
      current[j + 1] = Math.min(
        previous[j] + (ca === cb ? 0 : 1),
        previous[j + 1] + 1,
        current[j] + 1,
      );
    });
    previous = current;
  });
  return previous[bs.length];
}

function closest(key, known) {
  let best;
  for (const candidate of known) {
    const distance = editDistance(key, candidate);
    const length = [...candidate].length;
    // A third of the name, but at least 2 so that a swapped pair of letters
    // in a short name still counts as a typo.
    if (distance <= Math.max(Math.floor(length / 3), 2) && distance < length) {
      if (best === undefined || distance < best[0]) best = [distance, candidate];
    }
  }
  return best?.[1];
}

// --- declared parameters -----------------------------------------------------

/** The contract's `parameter-kind`s, as a declaration names them. */
export const PARAMETER_KINDS = [
  "boolean",
  "integer",
  "number",
  "text",
  "text-list",
  "alarm-id",
  "alarm-ids",
  "metric-id",
  "metric-ids",
  "table",
];

// Whether a default fits a kind; a default of the wrong type would be a
// documented value the policy itself refuses.
const FITS_KIND = {
  boolean: (v) => typeof v === "boolean",
  integer: (v) => Number.isInteger(v) && v >= 0 && v <= U32_MAX,
  number: (v) => typeof v === "number" && Number.isFinite(v),
  text: (v) => typeof v === "string",
  "text-list": (v) => Array.isArray(v) && v.every((item) => typeof item === "string"),
  "alarm-id": (v) => typeof v === "string",
  "alarm-ids": (v) => Array.isArray(v) && v.every((item) => typeof item === "string"),
  "metric-id": (v) => typeof v === "string",
  "metric-ids": (v) => Array.isArray(v) && v.every((item) => typeof item === "string"),
  table: (v) => v !== null && typeof v === "object" && !Array.isArray(v),
};

/**
 * Checks a policy's parameter declarations and turns them into the
 * contract's `parameter` records. A declaration is
 * `{ name, kind, required, default, meaning }`: `kind` one of
 * `PARAMETER_KINDS`, `required` false when left out, `default` the value
 * (not its JSON text) used when the key is absent, left out when the key
 * is required or its default depends on other parameters.
 *
 * A mistake here is the policy author's, found when the module is first
 * evaluated, which is at build time: the build fails with this message.
 */
export function declareParameters(declarations) {
  if (!Array.isArray(declarations)) {
    throw new Error(`parameters must be an array of declarations, found ${describe(declarations)}`);
  }
  const seen = new Set();
  return declarations.map((declaration, index) => {
    const where = `parameter declaration ${index + 1}`;
    if (declaration === null || typeof declaration !== "object") {
      throw new Error(`${where} must be an object, found ${describe(declaration)}`);
    }
    const { name, kind, required = false, meaning } = declaration;
    if (typeof name !== "string" || name === "") {
      throw new Error(`${where} needs a \`name\`, a non-empty string`);
    }
    if (seen.has(name)) throw new Error(`parameter \`${name}\` is declared twice`);
    seen.add(name);
    if (!PARAMETER_KINDS.includes(kind)) {
      throw new Error(
        `parameter \`${name}\` has kind ${JSON.stringify(kind)}; valid kinds: ${PARAMETER_KINDS.join(", ")}`,
      );
    }
    if (typeof required !== "boolean") {
      throw new Error(`parameter \`${name}\`: \`required\` must be true or false`);
    }
    carriedWhole("a parameter's name", name);
    if (typeof meaning !== "string" || meaning.trim() === "") {
      throw new Error(`parameter \`${name}\` needs a \`meaning\`, a sentence for people`);
    }
    carriedWhole(`parameter \`${name}\`'s meaning`, meaning);
    const hasDefault = Object.hasOwn(declaration, "default") && declaration.default !== undefined;
    if (hasDefault && required) {
      throw new Error(`parameter \`${name}\` is required, so it cannot have a default`);
    }
    if (hasDefault && !FITS_KIND[kind](declaration.default)) {
      throw new Error(
        `parameter \`${name}\` of kind ${kind} has a default that is ${describe(declaration.default)}`,
      );
    }
    const defaultJson = hasDefault ? JSON.stringify(declaration.default) : null;
    if (hasDefault) carriedWhole(`parameter \`${name}\`'s default`, withLoneSurrogates(defaultJson));
    return { name, kind, required, defaultJson, meaning };
  });
}

// Refuses `text`, a part of a plugin's metadata, when UTF-8 cannot carry
// it, in `flinkscale_policy.py`'s words: metadata is the author's own
// constant, which the build evaluates, so the build fails with this message.
function carriedWhole(what, text) {
  const where = loneSurrogate(text);
  if (where !== null) {
    throw new Error(`${what} has a lone surrogate (${where}), which a UTF-8 string cannot carry`);
  }
}

// `json` (from `JSON.stringify`, which writes each lone surrogate as its
// escape) with those escapes turned back into the surrogates they stand
// for, so that `carriedWhole` finds them where Python's `json.dumps` keeps
// them. An escaped backslash (`\\`) before `u` is text, not an escape.
function withLoneSurrogates(json) {
  return json.replace(/(?<!\\)((?:\\\\)*)\\u(d[89a-f][0-9a-f]{2})/g, (_, backslashes, hex) =>
    backslashes + String.fromCharCode(parseInt(hex, 16)),
  );
}

/**
 * A policy's parameters: the `[application.policy] params` table, which
 * reaches the plugin as a JSON object. A key that is absent reads as its
 * declared default, if it has one. Every getter throws a `PolicyError`
 * naming the parameter, what was expected and what was found.
 */
export class Params {
  /**
   * `values` is the parsed table; `parameters` the declared parameters (as
   * `declareParameters` returns them), whose defaults fill absent keys.
   */
  constructor(values, parameters = []) {
    this.values = values;
    // The declared names, when there are declarations: a getter for
    // another name is the plugin's own bug (a typo in its code), not a
    // parameter the configuration left out.
    this.declared = parameters.map((parameter) => parameter.name);
    this.defaults = new Map();
    for (const parameter of parameters) {
      if (parameter.defaultJson !== null && parameter.defaultJson !== undefined) {
        this.defaults.set(parameter.name, JSON.parse(parameter.defaultJson));
      }
    }
  }

  /**
   * Parses the JSON text the host passes to `configure`; it must be an
   * object.
   */
  static fromJson(text, parameters = []) {
    let value;
    try {
      value = JSON.parse(text);
    } catch (error) {
      throw new PolicyError(`parameters are not valid JSON: ${error.message}`);
    }
    if (value === null || typeof value !== "object" || Array.isArray(value)) {
      throw new PolicyError(
        `parameters must be a table (a JSON object), found ${describe(value)}`,
      );
    }
    return new Params(value, parameters);
  }

  /** The names of the parameters present, sorted as the Rust SDK sorts them. */
  keys() {
    return Object.keys(this.values).sort();
  }

  /** Whether the parameter is present (a declared default does not count). */
  has(key) {
    return Object.hasOwn(this.values, key);
  }

  /** The raw JSON value of a parameter, or its declared default (`undefined` when neither). */
  getValue(key) {
    return this.has(key) ? this.values[key] : this.defaults.get(key);
  }

  /** Whether the parameter is present or has a declared default. */
  #given(key) {
    if (this.declared.length > 0 && !this.declared.includes(key)) {
      // Not a PolicyError: a bug of the plugin's code, said with where it
      // is (see `errorText`).
      throw new ReferenceError(
        `the code reads parameter \`${key}\`, which its parameters do not declare ` +
          `(declared: ${listOrNone(this.declared)})`,
      );
    }
    return this.has(key) || this.defaults.has(key);
  }

  /**
   * Refuses any parameter not in `known`, listing the valid names and
   * suggesting the closest, so that a misspelt parameter is an error rather
   * than a setting silently left at its default.
   */
  denyUnknown(known) {
    const unknown = this.keys().filter((key) => !known.includes(key));
    if (unknown.length === 0) return;
    let message =
      unknown.length === 1
        ? `unknown parameter \`${unknown[0]}\``
        : `unknown parameters ${unknown.map((key) => `\`${key}\``).join(", ")}`;
    message += `; valid parameters: ${listOrNone(known)}`;
    const suggestion = closest(unknown[0], known);
    if (suggestion !== undefined) message += ` (did you mean \`${suggestion}\`?)`;
    throw new PolicyError(message);
  }

  /** An optional string parameter. */
  getOptStr(key) {
    if (!this.#given(key)) return undefined;
    const value = this.getValue(key);
    if (typeof value !== "string") throw wrongType(key, "a string", value);
    return value;
  }

  /** A required string parameter. */
  getStr(key) {
    const value = this.getOptStr(key);
    if (value === undefined) throw missing(key, "a string");
    return value;
  }

  /** A string parameter, or `fallback` when absent. */
  getStrOr(key, fallback) {
    return this.getOptStr(key) ?? fallback;
  }

  /** An optional number parameter (integer or not). */
  getOptF64(key) {
    if (!this.#given(key)) return undefined;
    const value = this.getValue(key);
    if (typeof value !== "number") throw wrongType(key, "a number", value);
    return value;
  }

  /** A required number parameter. */
  getF64(key) {
    const value = this.getOptF64(key);
    if (value === undefined) throw missing(key, "a number");
    return value;
  }

  /** A number parameter, or `fallback` when absent. */
  getF64Or(key, fallback) {
    return this.getOptF64(key) ?? fallback;
  }

  /**
   * An optional whole number in 0..=U32_MAX; `2.0` is accepted as 2, `2.5`
   * and `-1` are errors.
   */
  getOptU32(key) {
    if (!this.#given(key)) return undefined;
    const value = this.getValue(key);
    if (!Number.isInteger(value) || value < 0 || value > U32_MAX) {
      throw wrongType(key, WHOLE_NUMBER, value);
    }
    return value;
  }

  /** A required whole-number parameter; see `getOptU32`. */
  getU32(key) {
    const value = this.getOptU32(key);
    if (value === undefined) throw missing(key, "a whole number");
    return value;
  }

  /** A whole-number parameter, or `fallback` when absent. */
  getU32Or(key, fallback) {
    return this.getOptU32(key) ?? fallback;
  }

  /** An optional boolean parameter. */
  getOptBool(key) {
    if (!this.#given(key)) return undefined;
    const value = this.getValue(key);
    if (typeof value !== "boolean") throw wrongType(key, "true or false", value);
    return value;
  }

  /** A required boolean parameter. */
  getBool(key) {
    const value = this.getOptBool(key);
    if (value === undefined) throw missing(key, "true or false");
    return value;
  }

  /** A boolean parameter, or `fallback` when absent. */
  getBoolOr(key, fallback) {
    return this.getOptBool(key) ?? fallback;
  }
}

// --- the values as they arrive ------------------------------------------------

// componentize-qjs 0.4.5 (the QuickJS engine jco builds with) hands a `u32`
// above 2^31 - 1 to JavaScript as a negative number, its bits read as an
// `s32`: a KPU of 4294967294 arrives as -2. `>>> 0` reads the same bits as
// unsigned again, and is the identity on every correct `u32`.

/**
 * The contract's `application` with its `u32` fields read as unsigned (see
 * above); changed in place and returned. Shared with
 * `flinkscale-interpreter.js`, whose `interpret` receives one too.
 */
export function liftApplication(app) {
  app.kpu >>>= 0;
  app.parallelism >>>= 0;
  app.parallelismPerKpu >>>= 0;
  app.minKpu >>>= 0;
  app.maxKpu >>>= 0;
  if (app.lastUpdateDurationSecs !== null && app.lastUpdateDurationSecs !== undefined) {
    app.lastUpdateDurationSecs >>>= 0;
  }
  return app;
}

/** The contract's series with their `u32` `periodSecs` read as unsigned; changed in place. */
export function liftSeries(metrics) {
  for (const series of metrics) series.periodSecs >>>= 0;
  return metrics;
}

function fixU32Fields(evaluation) {
  liftApplication(evaluation.app);
  liftSeries(evaluation.metrics);
  return evaluation;
}

// --- the export ------------------------------------------------------------

// The component's calling convention turns a thrown non-Error value into the
// `err` of a `result`, and traps on a thrown `Error`; a plugin's errors are
// therefore rethrown as their message text.

/**
 * The text of the contract's `err` for an exception out of a policy or an
 * interpreter: a `PolicyError`'s message, any other error's name and
 * message, a thrown string as it is, and any other thrown value as
 * `threw a non-Error value: ` and the value (`{"code":3}`, `42`, `null`).
 * Never throws itself: what a plugin throws may be a revoked proxy, or have
 * a `toJSON` or `toString` that throws.
 */
export function errorText(error) {
  let text;
  try {
    if (error instanceof PolicyError) text = error.message;
    // A bug in the plugin, not a configuration mistake: say what broke so
    // that the host's log leads the author to it.
    else if (error instanceof Error) text = `${error.name}: ${error.message}${where(error)}`;
    else if (typeof error === "string") text = error;
    // `String({})` is `[object Object]`, which tells the author nothing.
    else text = `threw a non-Error value: ${thrownValue(error)}`;
  } catch {
    text = `threw a non-Error value: ${unwritable(error)}`;
  }
  return carried(String(text));
}

// This kit's own modules: a bug's place is the innermost frame outside
// them.
const KIT_FILES = ["flinkscale-policy.js", "flinkscale-interpreter.js"];

/**
 * ` (at step.js:20, in onDecide)`: the innermost frame of the plugin's own
 * code in `error`'s stack, or `""`. Reads both stack formats a plugin meets:
 * V8's (Node.js: `    at onDecide (file:///x/step.js:20:5)`) and
 * SpiderMonkey's (the built component: `onDecide@/step.js:20:5`).
 */
function where(error) {
  try {
    const stack = typeof error.stack === "string" ? error.stack : "";
    // The constructors of the error's own classes (`class FixtureBug
    // extends Error`): their frames are where it was made, not thrown.
    const classes = [];
    for (let proto = Object.getPrototypeOf(error); proto; proto = Object.getPrototypeOf(proto)) {
      if (typeof proto.constructor?.name === "string") classes.push(proto.constructor.name);
    }
    for (const line of stack.split("\n")) {
      const frame =
        /^\s*at (?:(.*?) \()?(.+?):(\d+):\d+\)?\s*$/.exec(line) ??
        /^(.*?)@(.+?):(\d+):\d+\s*$/.exec(line);
      if (frame === null) continue;
      const file = frame[2].split("/").pop();
      const fn = (frame[1] ?? "").replace(/^new /, "");
      if (KIT_FILES.includes(file) || classes.includes(fn)) continue;
      const name = fn ? `, in ${fn}` : "";
      return ` (at ${file}:${frame[3]}${name})`;
    }
  } catch {
    // A stack that cannot be read says nothing.
  }
  return "";
}

// The longest text of a thrown value kept in an error, in characters; the
// host cuts an error at 512 bytes, and the start of a large value says
// enough.
const MAX_THROWN_CHARS = 200;

// A thrown value as text: an object as JSON (a cycle written `[Circular]`,
// a BigInt inside as `"3n"`), anything else (a number, `null`,
// `undefined`, a symbol) and an object JSON does not write (a function) as
// `String` writes it, a BigInt as its digits and `n`.
function thrownValue(value) {
  if (typeof value === "bigint") return `${value}n`;
  let text;
  if (value !== null && typeof value === "object") {
    try {
      text = JSON.stringify(value, withoutCycles());
    } catch {
      text = undefined;
    }
  }
  if (typeof text !== "string") {
    try {
      text = String(value);
    } catch {
      text = unwritable(value);
    }
  }
  // Cut between code points, never inside a surrogate pair.
  const characters = Array.from(text);
  return characters.length > MAX_THROWN_CHARS
    ? `${characters.slice(0, MAX_THROWN_CHARS).join("")}...`
    : text;
}

// A `JSON.stringify` replacer that writes an object already open on the
// way down (a cycle) as `[Circular]` and a BigInt as its digits and `n`,
// where JSON.stringify alone would throw.
function withoutCycles() {
  const open = [];
  return function replacer(_key, value) {
    if (typeof value === "bigint") return `${value}n`;
    if (value === null || typeof value !== "object") return value;
    // `this` is the object holding `value`: everything opened after it is
    // closed by now.
    while (open.length > 0 && open.at(-1) !== this) open.pop();
    if (open.includes(value)) return "[Circular]";
    open.push(value);
    return value;
  };
}

// What is said of a thrown value that cannot be written out at all.
function unwritable(value) {
  const type = typeof value;
  return `${type === "object" ? "an object" : `a ${type}`} that cannot be written out`;
}

/**
 * The contract's `plugin-metadata` of a policy or interpreter description
 * (`name`, `version`, `summary`, `parameters`), checked; `definer` names the
 * function that was given it (`definePolicy`) in the author's error.
 * Shared by `definePolicy` and `flinkscale-interpreter.js`'s
 * `defineInterpreter`.
 */
export function pluginMetadata(definer, { name, version, summary, parameters = [] }) {
  for (const [field, value] of [
    ["name", name],
    ["version", version],
    ["summary", summary],
  ]) {
    if (typeof value !== "string" || value.trim() === "") {
      throw new Error(`${definer} needs a \`${field}\`, a non-empty string`);
    }
    carriedWhole(`${definer}'s \`${field}\``, value);
  }
  return { name, version, summary, parameters: declareParameters(parameters) };
}

/**
 * `configure` for a plugin with this metadata: parses `paramsJson`, refuses
 * any key not declared (suggesting the closest declared one) and returns
 * what `setup(params)` returns; any exception is rethrown as the contract's
 * `err` text. Shared by `definePolicy` and `defineInterpreter`.
 */
export function configuredState(metadata, setup, paramsJson) {
  try {
    const params = Params.fromJson(paramsJson, metadata.parameters);
    params.denyUnknown(metadata.parameters.map((parameter) => parameter.name));
    return setup(params);
  } catch (error) {
    throw errorText(error);
  }
}

/**
 * The `policy` export, from a description: `name`, `version` and `summary`
 * (the plugin's metadata), `parameters` (the keys it accepts, see
 * `declareParameters`), `setup(params)` (validates a `Params` and returns
 * the configured state; throw to refuse) and `decide(state, evaluation)`
 * (returns `hold(...)` or `scaleTo(...)`).
 *
 * The declarations are the one place the parameters are described: the
 * host documents and checks them from `metadata`, `configure` refuses any
 * key not declared (suggesting the closest declared one) before `setup`
 * runs, and `Params` reads an absent key as its declared default.
 * `configure` forgets any previous state first, so that a failed
 * reconfiguration does not leave the old one answering; `decide` refuses
 * with `not configured` until a `configure` has succeeded.
 */
export function definePolicy(description) {
  const metadata = pluginMetadata("definePolicy", description);
  const { setup, decide } = description;
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
    decide(evaluation) {
      if (!configured) throw NOT_CONFIGURED;
      try {
        return loweredDecision(decide(state, fixU32Fields(evaluation)));
      } catch (error) {
        throw errorText(error);
      }
    },
  };
}
