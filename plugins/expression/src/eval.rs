//! Evaluation of a parsed expression over the series of one evaluation.
//!
//! A value can be absent: a series with no datapoint in the window, `rate`
//! of a series with fewer than two points, a division by zero. Absence
//! propagates through arithmetic and comparisons, is skipped by the
//! aggregates, and is replaced by `fill`; an expression whose result is
//! absent produces no signal, which a policy or an alarm sees as missing
//! data rather than as a made-up zero.

use flinkscale_plugin::Series;

use crate::parse::{Aggregate, BinaryOp, Expr};

/// Evaluates `expr` against `metrics`. The only error is a series id that
/// the application does not configure.
pub fn evaluate(expr: &Expr, metrics: &[Series]) -> Result<Option<f64>, String> {
    Ok(match expr {
        Expr::Number(value) => Some(*value),
        Expr::Series { id, column } => find(metrics, id, *column)?
            .points
            .last()
            .map(|point| point.value),
        Expr::Negate(inner) => evaluate(inner, metrics)?.map(|value| -value),
        Expr::Binary(op, left, right) => {
            let left = evaluate(left, metrics)?;
            let right = evaluate(right, metrics)?;
            match (left, right) {
                (Some(left), Some(right)) => binary(*op, left, right),
                _ => None,
            }
        }
        Expr::Aggregate(aggregate, args) => {
            let mut values = Vec::new();
            // One bare series id aggregates over its window; anything else
            // aggregates over the arguments' values.
            if let [Expr::Series { id, column }] = args.as_slice() {
                values.extend(find(metrics, id, *column)?.points.iter().map(|p| p.value));
            } else {
                for arg in args {
                    values.extend(evaluate(arg, metrics)?);
                }
            }
            aggregate_of(*aggregate, &values)
        }
        Expr::Rate { id, column } => {
            let points = &find(metrics, id, *column)?.points;
            match points.as_slice() {
                [.., before, last] if last.timestamp_ms > before.timestamp_ms => {
                    let secs = (last.timestamp_ms - before.timestamp_ms) as f64 / 1000.0;
                    Some((last.value - before.value) / secs)
                }
                _ => None,
            }
        }
        Expr::Fill(value, fallback) => match evaluate(value, metrics)? {
            Some(value) => Some(value),
            None => evaluate(fallback, metrics)?,
        },
    }
    .filter(|value| value.is_finite()))
}

fn find<'a>(metrics: &'a [Series], id: &str, column: usize) -> Result<&'a Series, String> {
    metrics
        .iter()
        .find(|series| series.id == id)
        .ok_or_else(|| unknown_series(id, column, metrics))
}

/// The error for a series id that is not configured, naming the valid ones.
pub fn unknown_series(id: &str, column: usize, metrics: &[Series]) -> String {
    let known: Vec<&str> = metrics.iter().map(|series| series.id.as_str()).collect();
    let known = if known.is_empty() {
        "this application configures no metrics".to_owned()
    } else {
        format!("configured series: {}", known.join(", "))
    };
    format!("at column {column}: unknown series id `{id}` ({known})")
}

fn binary(op: BinaryOp, left: f64, right: f64) -> Option<f64> {
    let truth = |b: bool| Some(if b { 1.0 } else { 0.0 });
    match op {
        BinaryOp::Add => Some(left + right),
        BinaryOp::Sub => Some(left - right),
        BinaryOp::Mul => Some(left * right),
        BinaryOp::Div if right == 0.0 => None,
        BinaryOp::Div => Some(left / right),
        BinaryOp::Gt => truth(left > right),
        BinaryOp::Ge => truth(left >= right),
        BinaryOp::Lt => truth(left < right),
        BinaryOp::Le => truth(left <= right),
        BinaryOp::Eq => truth(left == right),
        BinaryOp::Ne => truth(left != right),
    }
}

fn aggregate_of(aggregate: Aggregate, values: &[f64]) -> Option<f64> {
    if values.is_empty() {
        return None;
    }
    let sum: f64 = values.iter().sum();
    Some(match aggregate {
        Aggregate::Min => values.iter().copied().fold(f64::INFINITY, f64::min),
        Aggregate::Max => values.iter().copied().fold(f64::NEG_INFINITY, f64::max),
        Aggregate::Sum => sum,
        Aggregate::Avg => sum / values.len() as f64,
    })
}
