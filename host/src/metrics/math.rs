//! CloudWatch metric math, the subset flinkscale sends and its emulator
//! and simulator evaluate: one parser and one evaluator, so that the three
//! agree on what an `expression = "..."` metric means.
//!
//! ```text
//! expression := term { ( "+" | "-" ) term }
//! term       := factor { ( "*" | "/" ) factor }
//! factor     := "-" factor | number | id | FUNCTION "(" arguments ")" | "(" expression ")"
//! arguments  := argument { "," argument }
//! argument   := expression | "[" expression { "," expression } "]"
//! FUNCTION   := "SUM" | "AVG" | "MIN" | "MAX" | "FILL"
//! ```
//!
//! An id names a time series (another query of the same request). Between
//! two series, `+ - * /` apply timestamp by timestamp, keeping only the
//! timestamps both have; between a series and a number, to every point. A
//! division by zero gives no point. `SUM`, `AVG`, `MIN`, `MAX` of a list
//! `[a, b, ...]` of series give one series, each timestamp aggregating the
//! series that have it, as CloudWatch's functions over arrays do.
//! `FILL(x, v)` gives x with every period of the requested range where x
//! has no point set to v (a number). Function names are upper case, as in
//! CloudWatch; ids start with a lower-case letter, so the two never clash.

use std::collections::BTreeMap;

use super::Datapoint;

/// The functions this subset knows.
pub const FUNCTIONS: &[&str] = &["AVG", "FILL", "MAX", "MIN", "SUM"];

/// A parsed metric-math expression.
#[derive(Debug, Clone, PartialEq)]
pub enum Expr {
    /// A number.
    Number(f64),
    /// A query id.
    Id(String),
    /// `-x`.
    Negate(Box<Expr>),
    /// `a op b`, op one of `+ - * /`.
    Binary(char, Box<Expr>, Box<Expr>),
    /// `FUNCTION(args)`; a list argument is `Expr::List`.
    Call(String, Vec<Expr>),
    /// `[a, b, ...]`, only as a function's argument.
    List(Vec<Expr>),
}

impl Expr {
    /// Every id the expression reads, in order of appearance.
    pub fn ids(&self) -> Vec<&str> {
        let mut out = Vec::new();
        self.collect(&mut out);
        out
    }

    /// Whether the expression calls a function (`SUM`, `AVG`, `MIN`, `MAX`,
    /// `FILL`). Such a result may change for a period already fetched
    /// without any of its own inputs' datapoints changing: `FILL` stands
    /// in for a datapoint still to come, and a function over a list gives
    /// a value as soon as one series has one. Arithmetic alone gives a
    /// point only where every series it reads has one.
    pub fn calls_a_function(&self) -> bool {
        match self {
            Expr::Number(_) | Expr::Id(_) => false,
            Expr::Negate(x) => x.calls_a_function(),
            Expr::Binary(_, a, b) => a.calls_a_function() || b.calls_a_function(),
            Expr::Call(..) => true,
            Expr::List(items) => items.iter().any(Expr::calls_a_function),
        }
    }

    fn collect<'a>(&'a self, out: &mut Vec<&'a str>) {
        match self {
            Expr::Number(_) => {}
            Expr::Id(id) => out.push(id),
            Expr::Negate(x) => x.collect(out),
            Expr::Binary(_, a, b) => {
                a.collect(out);
                b.collect(out);
            }
            Expr::Call(_, args) | Expr::List(args) => args.iter().for_each(|a| a.collect(out)),
        }
    }
}

/// A syntax error at a 1-based column.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("at column {column}: {message}")]
pub struct MathError {
    /// Where (1-based, in characters); 0 when not about one place.
    pub column: usize,
    /// What is wrong and what would be valid.
    pub message: String,
}

/// Parses `text`, refusing anything left after one expression.
pub fn parse(text: &str) -> Result<Expr, MathError> {
    let length = text.chars().count();
    if length > MAX_CHARS {
        // A chain of operators nests no deeper in the text, but its tree
        // is as deep as it is long: evaluating or dropping one of 100 000
        // terms overflowed the stack.
        return Err(MathError {
            column: MAX_CHARS + 1,
            message: format!(
                "the expression is {length} characters long; CloudWatch takes at most {MAX_CHARS}"
            ),
        });
    }
    let mut p = Parser {
        chars: text.chars().collect(),
        at: 0,
        depth: 0,
    };
    let expr = p.expression()?;
    p.space();
    match p.peek() {
        None => Ok(expr),
        Some(c) => Err(p.error(format!(
            "unexpected `{c}`; expected an operator (+ - * /) or the end of the expression"
        ))),
    }
}

/// Replaces every id of `text` found in `rename` with its new name, leaving
/// everything else (spacing, functions, numbers) as written. Used to send a
/// configured expression with the request's own query ids.
pub fn rename_ids(text: &str, rename: &dyn Fn(&str) -> Option<String>) -> String {
    let mut out = String::with_capacity(text.len());
    let chars: Vec<char> = text.chars().collect();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        if c.is_ascii_alphabetic() || c == '_' {
            let start = i;
            while i < chars.len() && (chars[i].is_ascii_alphanumeric() || chars[i] == '_') {
                i += 1;
            }
            let word: String = chars[start..i].iter().collect();
            out.push_str(&rename(&word).unwrap_or(word));
        } else if c.is_ascii_digit() || c == '.' {
            // A number, exponent included, is never an id.
            while i < chars.len()
                && (chars[i].is_ascii_alphanumeric()
                    || chars[i] == '.'
                    || (matches!(chars[i], '+' | '-') && matches!(chars[i - 1], 'e' | 'E')))
            {
                out.push(chars[i]);
                i += 1;
            }
        } else {
            out.push(c);
            i += 1;
        }
    }
    out
}

struct Parser {
    chars: Vec<char>,
    at: usize,
    /// How many factors are open (parentheses, negations, function
    /// arguments): bounded by [`MAX_DEPTH`].
    depth: usize,
}

/// How deep an expression may nest: far more than any expression needs
/// (CloudWatch takes 2048 characters), few enough that parsing, evaluating
/// and dropping it cannot exhaust the stack.
const MAX_DEPTH: usize = 64;

/// The longest expression, in characters: GetMetricData's limit on a
/// query's `Expression`. It also bounds a chain of operators (`a + a + ...`),
/// whose tree is as deep as the chain is long.
const MAX_CHARS: usize = 2048;

impl Parser {
    fn error(&self, message: impl Into<String>) -> MathError {
        MathError {
            column: self.at + 1,
            message: message.into(),
        }
    }

    fn peek(&self) -> Option<char> {
        self.chars.get(self.at).copied()
    }

    fn space(&mut self) {
        while self.peek().is_some_and(char::is_whitespace) {
            self.at += 1;
        }
    }

    fn eat(&mut self, c: char) -> bool {
        self.space();
        if self.peek() == Some(c) {
            self.at += 1;
            true
        } else {
            false
        }
    }

    fn expression(&mut self) -> Result<Expr, MathError> {
        let mut left = self.term()?;
        loop {
            let op = if self.eat('+') {
                '+'
            } else if self.eat('-') {
                '-'
            } else {
                return Ok(left);
            };
            left = Expr::Binary(op, Box::new(left), Box::new(self.term()?));
        }
    }

    fn term(&mut self) -> Result<Expr, MathError> {
        let mut left = self.factor()?;
        loop {
            let op = if self.eat('*') {
                '*'
            } else if self.eat('/') {
                '/'
            } else {
                return Ok(left);
            };
            left = Expr::Binary(op, Box::new(left), Box::new(self.factor()?));
        }
    }

    fn factor(&mut self) -> Result<Expr, MathError> {
        // The innermost factor (the operand the levels wrap) is one more
        // than the levels: MAX_DEPTH levels pass, one more does not.
        if self.depth > MAX_DEPTH {
            return Err(self.error(format!(
                "the expression nests more than {MAX_DEPTH} deep (parentheses, `-` signs and function arguments)"
            )));
        }
        self.depth += 1;
        let factor = self.factor_at_depth();
        self.depth -= 1;
        factor
    }

    fn factor_at_depth(&mut self) -> Result<Expr, MathError> {
        if self.eat('-') {
            // A negative number is a number (`FILL(m1, -1)` takes one).
            return Ok(match self.factor()? {
                Expr::Number(n) => Expr::Number(-n),
                operand => Expr::Negate(Box::new(operand)),
            });
        }
        self.space();
        let start = self.at;
        match self.peek() {
            None => Err(self.error(
                "the expression ends too early; expected a number, a metric id, a function or `(`",
            )),
            Some('(') => {
                self.at += 1;
                let inner = self.expression()?;
                if !self.eat(')') {
                    return Err(self.error(format!(
                        "unbalanced parenthesis: the `(` at column {} is not closed",
                        start + 1
                    )));
                }
                Ok(inner)
            }
            Some(c) if c.is_ascii_digit() || c == '.' => {
                while self
                    .peek()
                    .is_some_and(|c| c.is_ascii_digit() || c == '.' || c == 'e' || c == 'E')
                {
                    let exponent = matches!(self.peek(), Some('e' | 'E'));
                    self.at += 1;
                    // An exponent's sign belongs to the number (`1e-3`),
                    // not to a subtraction.
                    if exponent && matches!(self.peek(), Some('+' | '-')) {
                        self.at += 1;
                    }
                }
                let text: String = self.chars[start..self.at].iter().collect();
                text.parse::<f64>()
                    .ok()
                    .filter(|v| v.is_finite())
                    .map(Expr::Number)
                    .ok_or_else(|| MathError {
                        column: start + 1,
                        message: format!("`{text}` is not a number"),
                    })
            }
            Some(c) if c.is_ascii_alphabetic() || c == '_' => {
                while self
                    .peek()
                    .is_some_and(|c| c.is_ascii_alphanumeric() || c == '_')
                {
                    self.at += 1;
                }
                let name: String = self.chars[start..self.at].iter().collect();
                if !self.eat('(') {
                    return Ok(Expr::Id(name));
                }
                if !FUNCTIONS.contains(&name.as_str()) {
                    return Err(MathError {
                        column: start + 1,
                        message: format!(
                            "unknown function `{name}`; supported: {}",
                            FUNCTIONS.join(", ")
                        ),
                    });
                }
                let mut args = vec![self.argument()?];
                while self.eat(',') {
                    args.push(self.argument()?);
                }
                if !self.eat(')') {
                    return Err(self.error(format!(
                        "expected `,` or `)` in the arguments of `{name}` (opened at column {})",
                        start + name.chars().count() + 1
                    )));
                }
                let arity_ok = match name.as_str() {
                    "FILL" => args.len() == 2 && matches!(args[1], Expr::Number(_)),
                    _ => args.len() == 1,
                };
                if !arity_ok {
                    return Err(MathError {
                        column: start + 1,
                        message: if name == "FILL" {
                            "`FILL` takes a series and a number, e.g. `FILL(m1, 0)`".to_owned()
                        } else {
                            format!("`{name}` takes one argument, e.g. `{name}([m1, m2])`")
                        },
                    });
                }
                Ok(Expr::Call(name, args))
            }
            Some(c) => Err(self.error(format!(
                "unexpected `{c}`; expected a number, a metric id, a function or `(`"
            ))),
        }
    }

    fn argument(&mut self) -> Result<Expr, MathError> {
        if !self.eat('[') {
            return self.expression();
        }
        let mut items = vec![self.expression()?];
        while self.eat(',') {
            items.push(self.expression()?);
        }
        if !self.eat(']') {
            return Err(self.error("expected `,` or `]` to close the list"));
        }
        Ok(Expr::List(items))
    }
}

/// A value during evaluation.
#[derive(Debug, Clone, PartialEq)]
enum Value {
    Number(f64),
    Series(BTreeMap<i64, f64>),
}

/// The period grid that `FILL` fills: every period start in
/// `[start_ms, end_ms)`, aligned to the epoch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Grid {
    /// Start of the requested range, in ms since the epoch.
    pub start_ms: i64,
    /// End of the requested range (exclusive).
    pub end_ms: i64,
    /// The period, in seconds.
    pub period_secs: u32,
}

/// Evaluates `expr` with `inputs` (each id's datapoints), giving one series
/// oldest first. A number alone gives that number at every period of `grid`.
pub fn evaluate(
    expr: &Expr,
    inputs: &dyn Fn(&str) -> Option<Vec<Datapoint>>,
    grid: Grid,
) -> Result<Vec<Datapoint>, MathError> {
    let value = eval(expr, inputs, grid)?;
    let series = match value {
        Value::Series(points) => points,
        Value::Number(n) => grid_points(grid).map(|t| (t, n)).collect(),
    };
    Ok(series
        .into_iter()
        .filter(|(_, v)| v.is_finite())
        .map(|(timestamp_ms, value)| Datapoint {
            timestamp_ms,
            value,
        })
        .collect())
}

fn grid_points(grid: Grid) -> impl Iterator<Item = i64> {
    let period_ms = i64::from(grid.period_secs.max(1)) * 1000;
    let first = grid.start_ms.div_euclid(period_ms) * period_ms;
    let end = grid.end_ms;
    // Checked: a grid at the end of what i64 milliseconds hold ends there.
    (0_i64..)
        .map_while(move |k| k.checked_mul(period_ms)?.checked_add(first))
        .take_while(move |t| *t < end)
}

fn eval(
    expr: &Expr,
    inputs: &dyn Fn(&str) -> Option<Vec<Datapoint>>,
    grid: Grid,
) -> Result<Value, MathError> {
    let not_here = |message: String| MathError { column: 0, message };
    Ok(match expr {
        Expr::Number(n) => Value::Number(*n),
        Expr::Id(id) => {
            let points = inputs(id)
                .ok_or_else(|| not_here(format!("unknown metric id `{id}` in the expression")))?;
            Value::Series(points.iter().map(|p| (p.timestamp_ms, p.value)).collect())
        }
        Expr::Negate(x) => binary('*', Value::Number(-1.0), eval(x, inputs, grid)?),
        Expr::Binary(op, a, b) => binary(*op, eval(a, inputs, grid)?, eval(b, inputs, grid)?),
        Expr::List(_) => {
            return Err(not_here(
                "a list `[...]` is only valid as the argument of SUM, AVG, MIN or MAX".to_owned(),
            ));
        }
        Expr::Call(name, args) if name == "FILL" => {
            let (Some(x), Some(Expr::Number(fill))) = (args.first(), args.get(1)) else {
                return Err(not_here("`FILL` takes a series and a number".to_owned()));
            };
            let mut points = match eval(x, inputs, grid)? {
                Value::Series(points) => points,
                Value::Number(n) => return Ok(Value::Number(n)),
            };
            for t in grid_points(grid) {
                points.entry(t).or_insert(*fill);
            }
            Value::Series(points)
        }
        Expr::Call(name, args) => {
            let items: Vec<&Expr> = match args.first() {
                Some(Expr::List(items)) => items.iter().collect(),
                Some(other) => vec![other],
                None => Vec::new(),
            };
            let mut by_time: BTreeMap<i64, Vec<f64>> = BTreeMap::new();
            let mut numbers = Vec::new();
            for item in items {
                match eval(item, inputs, grid)? {
                    Value::Series(points) => {
                        for (t, v) in points {
                            by_time.entry(t).or_default().push(v);
                        }
                    }
                    Value::Number(n) => numbers.push(n),
                }
            }
            let aggregate = |values: &[f64]| -> f64 {
                match name.as_str() {
                    "SUM" => values.iter().sum(),
                    "AVG" => values.iter().sum::<f64>() / values.len() as f64,
                    "MIN" => values.iter().copied().fold(f64::INFINITY, f64::min),
                    _ => values.iter().copied().fold(f64::NEG_INFINITY, f64::max),
                }
            };
            if by_time.is_empty() && !numbers.is_empty() {
                return Ok(Value::Number(aggregate(&numbers)));
            }
            Value::Series(
                by_time
                    .into_iter()
                    .map(|(t, mut values)| {
                        values.extend(&numbers);
                        (t, aggregate(&values))
                    })
                    .collect(),
            )
        }
    })
}

fn binary(op: char, a: Value, b: Value) -> Value {
    let apply = |x: f64, y: f64| match op {
        '+' => x + y,
        '-' => x - y,
        '*' => x * y,
        _ if y == 0.0 => f64::NAN,
        _ => x / y,
    };
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => Value::Number(apply(x, y)),
        (Value::Series(s), Value::Number(y)) => {
            Value::Series(s.into_iter().map(|(t, x)| (t, apply(x, y))).collect())
        }
        (Value::Number(x), Value::Series(s)) => {
            Value::Series(s.into_iter().map(|(t, y)| (t, apply(x, y))).collect())
        }
        (Value::Series(a), Value::Series(b)) => Value::Series(
            a.into_iter()
                .filter_map(|(t, x)| b.get(&t).map(|y| (t, apply(x, *y))))
                .collect(),
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn points(values: &[(i64, f64)]) -> Vec<Datapoint> {
        values
            .iter()
            .map(|&(timestamp_ms, value)| Datapoint {
                timestamp_ms,
                value,
            })
            .collect()
    }

    fn run(text: &str) -> Vec<(i64, f64)> {
        let inputs = |id: &str| match id {
            "a" => Some(points(&[(0, 10.0), (60_000, 20.0), (120_000, 30.0)])),
            "b" => Some(points(&[(0, 2.0), (120_000, 0.0)])),
            _ => None,
        };
        let grid = Grid {
            start_ms: 0,
            end_ms: 180_000,
            period_secs: 60,
        };
        evaluate(&parse(text).unwrap(), &inputs, grid)
            .unwrap()
            .into_iter()
            .map(|p| (p.timestamp_ms, p.value))
            .collect()
    }

    #[test]
    fn arithmetic_between_series_keeps_common_timestamps() {
        assert_eq!(run("a + b"), vec![(0, 12.0), (120_000, 30.0)]);
        assert_eq!(run("a / b"), vec![(0, 5.0)], "division by zero: no point");
        assert_eq!(
            run("(a - 4) * 2"),
            vec![(0, 12.0), (60_000, 32.0), (120_000, 52.0)]
        );
        assert_eq!(run("-a + 1")[0], (0, -9.0));
        // An exponent's sign is part of its number, not a subtraction.
        assert_eq!(run("a * 1e-1")[0], (0, 1.0));
        assert_eq!(run("a * 1E+1 - 1e2")[2], (120_000, 200.0));
        assert_eq!(run("a-1e1")[0], (0, 0.0));
    }

    #[test]
    fn functions_over_lists_and_fill() {
        assert_eq!(
            run("SUM([a, b])"),
            vec![(0, 12.0), (60_000, 20.0), (120_000, 30.0)]
        );
        assert_eq!(run("MAX([a, b])")[0], (0, 10.0));
        assert_eq!(run("AVG([a, b])")[0], (0, 6.0));
        assert_eq!(
            run("FILL(b, 7)"),
            vec![(0, 2.0), (60_000, 7.0), (120_000, 0.0)]
        );
        assert_eq!(run("a + FILL(b, 0)")[1], (60_000, 20.0));
        // A negative fill, as CloudWatch takes it (a sentinel for "no
        // datapoint").
        assert_eq!(run("FILL(b, -1)")[1], (60_000, -1.0));
        assert_eq!(run("-a")[0], (0, -10.0));
    }

    #[test]
    fn errors_name_their_column() {
        let error = |text: &str| parse(text).unwrap_err();
        assert_eq!(error("a + ").column, 5);
        assert!(error("RATE(a)").message.contains("unknown function `RATE`"));
        assert_eq!(error("(a + b").column, 7);
        assert_eq!(error("a b").column, 3);
        assert!(error("FILL(a)").message.contains("FILL"));
        assert!(error("SUM([a, b)").message.contains("`]`"));
    }

    /// Expressions come from configuration files and from requests to the
    /// emulator: nesting deeper than any expression needs is refused at
    /// its column instead of recursing until the stack overflows.
    #[test]
    fn nesting_past_the_limit_is_refused_not_overflowed() {
        let deep = |open: &str, close: &str| format!("{}a{}", open.repeat(250), close.repeat(250));
        for text in [
            deep("(", ")"),
            deep("-", ""),
            deep("SUM(", ")"),
            deep("SUM([", "])"),
        ] {
            let error = parse(&text).unwrap_err();
            assert!(
                error.message.contains("nests more than 64 deep"),
                "{}",
                error.message
            );
            // Where the 65th level's operand opens: within five characters
            // a level.
            assert!(error.column <= 66 * 5, "{}", error.column);
        }
        let fine = format!("{}a{}", "(".repeat(60), ")".repeat(60));
        assert_eq!(parse(&fine), Ok(Expr::Id("a".to_owned())));
        // The limit is the one said: 64 levels pass, 65 do not.
        for (open, close) in [("(", ")"), ("-", ""), ("SUM(", ")")] {
            let nested =
                |levels: usize| format!("{}a{}", open.repeat(levels), close.repeat(levels));
            assert!(parse(&nested(64)).is_ok(), "64 of {open}");
            assert!(
                parse(&nested(65))
                    .unwrap_err()
                    .message
                    .contains("nests more than 64 deep"),
                "65 of {open}"
            );
        }
    }

    /// A chain of operators is as deep a tree as it is long: past
    /// CloudWatch's 2048 characters it is refused, not overflowed (a chain
    /// of 200 000 terms aborted `validate`); the longest chain it takes
    /// parses.
    #[test]
    fn an_expression_past_cloudwatchs_length_is_refused_not_overflowed() {
        let chain = |terms: usize| vec!["a"; terms].join("+");
        let error = parse(&chain(200_000)).unwrap_err();
        assert_eq!(error.column, 2049);
        assert_eq!(
            error.message,
            "the expression is 399999 characters long; CloudWatch takes at most 2048"
        );
        assert!(parse(&chain(1024)).is_ok());
        assert!(parse(&chain(1025)).is_err());
    }

    #[test]
    fn ids_are_renamed_and_nothing_else() {
        let rename = |id: &str| (id == "lag").then(|| "q0_0".to_owned());
        assert_eq!(
            rename_ids("FILL(lag, 1e3) / lag2 + lag*2", &rename),
            "FILL(q0_0, 1e3) / lag2 + q0_0*2"
        );
        assert_eq!(parse("a + 1").unwrap().ids(), vec!["a"]);
    }
}
