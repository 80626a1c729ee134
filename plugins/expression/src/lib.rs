//! `expression`: derived signals from a small expression language over the
//! application's configured series.
//!
//! Each signal is one expression, written in the interpreter's params:
//!
//! ```toml
//! [[application.interpreter]]
//! plugin = "expression"
//! params.signals = { busy = "cpu > 80", lag_growth = "rate(lag)", lag_per_kpu = "fill(lag, 0) / kpus" }
//! ```
//!
//! At every evaluation the
//! interpreter computes each expression and publishes its value as a signal
//! named after its key; the policy reads it, and an alarm can watch it
//! (`metric = "lag_growth"`).
//!
//! # Parameters
//!
//! One, declared in [`ExpressionInterpreter`]'s `PARAMETERS`: `signals`
//! (required), a table `{ signal_name = "expression", ... }` with at least
//! one entry; a name is letters, digits and `_`, starting with a letter.
//!
//! # Grammar
//!
//! ```text
//! expression := comparison
//! comparison := sum [ ( ">" | ">=" | "<" | "<=" | "==" | "!=" ) sum ]
//! sum        := product { ( "+" | "-" ) product }
//! product    := unary { ( "*" | "/" ) unary }
//! unary      := "-" unary | primary
//! primary    := number | series_id | function "(" arguments ")" | "(" expression ")"
//! arguments  := expression { "," expression }
//! function   := "min" | "max" | "avg" | "sum" | "rate" | "fill"
//! number     := digits [ "." digits ] [ ( "e" | "E" ) [ "+" | "-" ] digits ]
//! series_id  := a configured metric's `id` (letters, digits, `_`)
//! ```
//!
//! Spaces are allowed between any two tokens. `*` and `/` bind tighter
//! than `+` and `-`, which bind tighter than a comparison; at most one
//! comparison per level (write `(a > 1) * (b > 2)` for "both").
//!
//! # Meaning
//!
//! - A number is itself; a series id is its latest datapoint in the window.
//! - `+ - * /` are arithmetic; a division by zero has no value.
//! - A comparison is `1` when true and `0` when false: `cpu > 80` is a
//!   threshold, and `(cpu > 80) * (lag > 1000)` is "both".
//! - `min`, `max`, `avg`, `sum` with exactly one argument that is a series
//!   id aggregate over that series' window (every datapoint fetched); with
//!   any other arguments they aggregate over the arguments' values:
//!   `max(cpu)` is the window's peak, `max(cpu, 50)` is the latest value or
//!   50, whichever is larger, `sum(a, b)` is the latest of `a` plus the
//!   latest of `b`.
//! - `rate(x)` (x a series id) is the per-second change of x between its last
//!   two datapoints.
//! - `fill(x, v)` is x, or v when x has no value.
//!
//! A value can be absent: a series with no datapoint, `rate` of fewer than
//! two datapoints, a division by zero. Absence propagates through
//! arithmetic and comparisons, aggregates skip it (all absent: absent), and
//! `fill` replaces it. A signal whose value is absent is not published, so
//! its consumers see missing data, never a made-up zero.
//!
//! # Errors
//!
//! `configure` refuses an expression that does not parse, naming the signal,
//! the column (1-based) and what was expected: an unknown function, an
//! unbalanced parenthesis, input left after a complete expression, a
//! missing operand, a malformed number, a wrong number of arguments. A
//! series id the application does not configure is reported, with its
//! column, by the first `interpret` (the interpreter learns the series only
//! then; `flinkscale validate` makes that call with the configured series,
//! so it reports the mistake before the agent runs).

#![warn(missing_docs)]

use flinkscale_plugin::{
    Application, Interpreter, Parameter, Params, Series, Signal, Value, export_interpreter,
};

pub mod eval;
pub mod parse;
#[cfg(test)]
mod tests;

use parse::Expr;

/// One configured signal.
#[derive(Debug, Clone, PartialEq)]
pub struct Definition {
    /// The signal's name.
    pub name: String,
    /// The expression as written, for error messages.
    pub text: String,
    /// The parsed expression.
    pub expr: Expr,
}

/// The configured interpreter.
#[derive(Debug, Clone, PartialEq)]
pub struct ExpressionInterpreter {
    /// The signals, in name order.
    pub definitions: Vec<Definition>,
}

impl Interpreter for ExpressionInterpreter {
    const SUMMARY: &'static str = "Derived signals written in a small expression language over \
         the application's series: arithmetic, comparisons, min/max/avg/sum, rate and fill.";

    const PARAMETERS: &'static [Parameter] = &[Parameter::table("signals").required().meaning(
        "The signals to publish: a table `{ signal_name = \"expression\", ... }` with at least \
         one entry, e.g. `{ lag_growth = \"rate(lag)\", hot = \"(cpu > 80) * (lag > 1e5)\" }`; \
         a name is letters, digits and `_`, starting with a letter.",
    )];

    // The table is read by hand rather than with `Params::parse`: its
    // errors say what a signal must be (`signals.x must be an expression in
    // a string, e.g. "rate(lag)"`), which serde's shapes cannot.
    fn configure(params: Params) -> Result<Self, String> {
        let Some(signals) = params.get_value("signals") else {
            return Err(
                "parameter `signals` is required: a table of signal names to expressions, \
                 e.g. { lag_growth = \"rate(lag)\" }"
                    .to_owned(),
            );
        };
        let Value::Object(signals) = signals else {
            return Err(format!(
                "parameter `signals` must be a table of signal names to expressions, found {signals}"
            ));
        };
        if signals.is_empty() {
            return Err("parameter `signals` must define at least one signal".to_owned());
        }
        let mut definitions = Vec::new();
        for (name, text) in signals {
            if !valid_name(name) {
                return Err(format!(
                    "signals.{name}: a signal name is letters, digits and `_`, starting with a letter"
                ));
            }
            let Value::String(text) = text else {
                return Err(format!(
                    "signals.{name} must be an expression in a string, e.g. \"rate(lag)\", found {text}"
                ));
            };
            let expr = parse::parse(text)
                .map_err(|error| format!("signals.{name} = {}: {error}", shown(text)))?;
            definitions.push(Definition {
                name: name.clone(),
                text: text.clone(),
                expr,
            });
        }
        Ok(ExpressionInterpreter { definitions })
    }

    fn interpret(
        &mut self,
        _now_ms: i64,
        _app: &Application,
        metrics: &[Series],
    ) -> Result<Vec<Signal>, String> {
        // Every id is checked before any value is computed, so that a typo
        // is an error whether or not the series has data yet.
        for definition in &self.definitions {
            for (id, column) in definition.expr.series_ids() {
                if !metrics.iter().any(|series| series.id == id) {
                    return Err(format!(
                        "signals.{} = {}: {}",
                        definition.name,
                        shown(&definition.text),
                        eval::unknown_series(id, column, metrics)
                    ));
                }
            }
        }
        let mut signals = Vec::new();
        for definition in &self.definitions {
            let value = eval::evaluate(&definition.expr, metrics)
                .map_err(|error| format!("signals.{}: {error}", definition.name))?;
            if let Some(value) = value {
                signals.push(Signal::new(definition.name.clone(), value));
            }
        }
        Ok(signals)
    }
}

fn valid_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars.next().is_some_and(|c| c.is_ascii_alphabetic())
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

export_interpreter!(ExpressionInterpreter);

/// An expression echoed in an error: whole when short, else its first
/// [`SHOWN_CHARS`] characters, so that the reason after it survives the
/// host's cut of a long error.
fn shown(text: &str) -> String {
    if text.chars().count() <= SHOWN_CHARS {
        return format!("{text:?}");
    }
    let head: String = text.chars().take(SHOWN_CHARS).collect();
    format!("{head:?}... ({} characters)", text.chars().count())
}

/// How much of an expression an error echoes.
const SHOWN_CHARS: usize = 80;
