//! The expression language's parser: a hand-written recursive descent over
//! the characters of one expression, one function per grammar rule (see the
//! crate documentation for the grammar). Every node and every error carries
//! the 1-based column where it starts, so that a configuration error points
//! at the character that is wrong.

use std::fmt;

/// The functions the language knows, with how many arguments each takes.
pub const FUNCTIONS: &[&str] = &["avg", "fill", "max", "min", "rate", "sum"];

/// An aggregate over a series' window or over arguments.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Aggregate {
    /// The smallest value.
    Min,
    /// The largest value.
    Max,
    /// The mean.
    Avg,
    /// The total.
    Sum,
}

/// A binary operator.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BinaryOp {
    /// `+`
    Add,
    /// `-`
    Sub,
    /// `*`
    Mul,
    /// `/`
    Div,
    /// `>`
    Gt,
    /// `>=`
    Ge,
    /// `<`
    Lt,
    /// `<=`
    Le,
    /// `==`
    Eq,
    /// `!=`
    Ne,
}

/// A parsed expression.
#[derive(Debug, Clone, PartialEq)]
pub enum Expr {
    /// A number literal.
    Number(f64),
    /// A series id: its latest value (or, as the only argument of an
    /// aggregate, its whole window).
    Series {
        /// The id.
        id: String,
        /// Column where the id starts.
        column: usize,
    },
    /// `-x`
    Negate(Box<Expr>),
    /// `a op b`
    Binary(BinaryOp, Box<Expr>, Box<Expr>),
    /// `min(...)`, `max(...)`, `avg(...)`, `sum(...)`.
    Aggregate(Aggregate, Vec<Expr>),
    /// `rate(id)`: per-second change over the series' last two points.
    Rate {
        /// The series id.
        id: String,
        /// Column where the id starts.
        column: usize,
    },
    /// `fill(x, value)`: `value` when `x` has no value.
    Fill(Box<Expr>, Box<Expr>),
}

impl Expr {
    /// Every series id the expression reads, with its column, in order.
    pub fn series_ids(&self) -> Vec<(&str, usize)> {
        let mut out = Vec::new();
        self.collect_ids(&mut out);
        out
    }

    fn collect_ids<'a>(&'a self, out: &mut Vec<(&'a str, usize)>) {
        match self {
            Expr::Number(_) => {}
            Expr::Series { id, column } | Expr::Rate { id, column } => out.push((id, *column)),
            Expr::Negate(inner) => inner.collect_ids(out),
            Expr::Binary(_, left, right) | Expr::Fill(left, right) => {
                left.collect_ids(out);
                right.collect_ids(out);
            }
            Expr::Aggregate(_, args) => args.iter().for_each(|arg| arg.collect_ids(out)),
        }
    }
}

/// A syntax error, at a 1-based column of the expression.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParseError {
    /// Where the problem is (1-based, in characters).
    pub column: usize,
    /// What is wrong and what would be valid.
    pub message: String,
}

impl fmt::Display for ParseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "at column {}: {}", self.column, self.message)
    }
}

/// How deep an expression may nest (parentheses, `-` signs, function
/// arguments): far more than any signal needs, few enough that parsing,
/// evaluating and dropping it stay well inside the sandbox's stack.
const MAX_DEPTH: usize = 64;

/// The longest expression, in characters. It also bounds a chain of
/// operators (`a + a + ...`), whose tree is as deep as the chain is long.
const MAX_CHARS: usize = 2048;

/// Parses one expression, refusing anything left after it.
pub fn parse(text: &str) -> Result<Expr, ParseError> {
    let length = text.chars().count();
    if length > MAX_CHARS {
        return Err(ParseError {
            column: MAX_CHARS + 1,
            message: format!(
                "the expression is {length} characters long; at most {MAX_CHARS} are taken"
            ),
        });
    }
    let mut parser = Parser {
        chars: text.chars().collect(),
        at: 0,
        depth: 0,
    };
    parser.skip_space();
    if parser.peek().is_none() {
        return Err(parser.error("the expression is empty; write e.g. `lag / rate_in`"));
    }
    let expr = parser.comparison()?;
    parser.skip_space();
    if let Some(c) = parser.peek() {
        let hint = if c == ')' {
            "an unbalanced `)`: no `(` is open here"
        } else {
            "an operator (+ - * / > >= < <= == !=) or the end of the expression"
        };
        return Err(parser.error(format!("unexpected `{c}`; expected {hint}")));
    }
    Ok(expr)
}

struct Parser {
    chars: Vec<char>,
    at: usize,
    /// How many unary expressions are open: bounded by [`MAX_DEPTH`].
    depth: usize,
}

impl Parser {
    fn column(&self) -> usize {
        self.at + 1
    }

    fn error(&self, message: impl Into<String>) -> ParseError {
        ParseError {
            column: self.column(),
            message: message.into(),
        }
    }

    fn peek(&self) -> Option<char> {
        self.chars.get(self.at).copied()
    }

    fn skip_space(&mut self) {
        while self.peek().is_some_and(char::is_whitespace) {
            self.at += 1;
        }
    }

    /// Whether `token` comes next (spaces already skipped), consuming nothing.
    fn is_next(&self, token: &str) -> bool {
        let len = token.chars().count();
        self.chars.len() >= self.at + len
            && self.chars[self.at..self.at + len]
                .iter()
                .copied()
                .eq(token.chars())
    }

    /// Consumes `token` (after spaces) if it is next.
    fn eat(&mut self, token: &str) -> bool {
        self.skip_space();
        let matches = self.is_next(token);
        if matches {
            self.at += token.chars().count();
        }
        matches
    }

    /// comparison := sum [ ( ">=" | "<=" | "==" | "!=" | ">" | "<" ) sum ]
    fn comparison(&mut self) -> Result<Expr, ParseError> {
        let left = self.sum()?;
        let op = [
            (">=", BinaryOp::Ge),
            ("<=", BinaryOp::Le),
            ("==", BinaryOp::Eq),
            ("!=", BinaryOp::Ne),
            (">", BinaryOp::Gt),
            ("<", BinaryOp::Lt),
        ]
        .into_iter()
        .find(|(token, _)| self.eat(token));
        match op {
            Some((token, op)) => {
                let right = self.sum()?;
                self.skip_space();
                if let Some(second) = [">=", "<=", "==", "!=", ">", "<"]
                    .into_iter()
                    .find(|t| self.is_next(t))
                {
                    return Err(self.error(format!(
                        "a second comparison (`{token}` then `{second}`): one comparison \
                         compares two values; write `(a {token} b) * (b {second} c)` \
                         for \"both\""
                    )));
                }
                Ok(Expr::Binary(op, Box::new(left), Box::new(right)))
            }
            None => Ok(left),
        }
    }

    /// sum := product { ( "+" | "-" ) product }
    fn sum(&mut self) -> Result<Expr, ParseError> {
        let mut left = self.product()?;
        loop {
            let op = if self.eat("+") {
                BinaryOp::Add
            } else if self.eat("-") {
                BinaryOp::Sub
            } else {
                return Ok(left);
            };
            let right = self.product()?;
            left = Expr::Binary(op, Box::new(left), Box::new(right));
        }
    }

    /// product := unary { ( "*" | "/" ) unary }
    fn product(&mut self) -> Result<Expr, ParseError> {
        let mut left = self.unary()?;
        loop {
            let op = if self.eat("*") {
                BinaryOp::Mul
            } else if self.eat("/") {
                BinaryOp::Div
            } else {
                return Ok(left);
            };
            let right = self.unary()?;
            left = Expr::Binary(op, Box::new(left), Box::new(right));
        }
    }

    /// unary := "-" unary | primary; every nesting (a `-`, a `(`, a
    /// function's argument) passes here, so the depth is counted here.
    fn unary(&mut self) -> Result<Expr, ParseError> {
        // The innermost unary (the operand the levels wrap) is one more
        // than the levels: MAX_DEPTH levels pass, one more does not.
        if self.depth > MAX_DEPTH {
            self.skip_space();
            return Err(self.error(format!(
                "the expression nests more than {MAX_DEPTH} deep (parentheses, `-` signs and function arguments)"
            )));
        }
        self.depth += 1;
        let unary = if self.eat("-") {
            self.unary().map(|inner| Expr::Negate(Box::new(inner)))
        } else {
            self.primary()
        };
        self.depth -= 1;
        unary
    }

    /// primary := number | id | function "(" args ")" | "(" comparison ")"
    fn primary(&mut self) -> Result<Expr, ParseError> {
        self.skip_space();
        let start = self.column();
        match self.peek() {
            None => Err(self.error(
                "the expression ends too early; expected a number, a series id, a function or `(`",
            )),
            Some('(') => {
                self.at += 1;
                let inner = self.comparison()?;
                if !self.eat(")") {
                    return Err(self.unclosed(start));
                }
                Ok(inner)
            }
            Some(c) if c.is_ascii_digit() || c == '.' => self.number(),
            Some(c) if c.is_ascii_alphabetic() || c == '_' => {
                let name = self.identifier();
                self.skip_space();
                if self.peek() == Some('(') {
                    self.at += 1;
                    self.call(&name, start)
                } else {
                    Ok(Expr::Series {
                        id: name,
                        column: start,
                    })
                }
            }
            Some(c) => Err(self.error(format!(
                "unexpected `{c}`; expected a number, a series id, a function or `(`"
            ))),
        }
    }

    fn unclosed(&self, open_column: usize) -> ParseError {
        let found = match self.peek() {
            None => "the end of the expression".to_owned(),
            Some(c) => format!("`{c}`"),
        };
        self.error(format!(
            "unbalanced parenthesis: the `(` at column {open_column} is not closed (found {found}, expected `)`)"
        ))
    }

    fn identifier(&mut self) -> String {
        let start = self.at;
        while self
            .peek()
            .is_some_and(|c| c.is_ascii_alphanumeric() || c == '_')
        {
            self.at += 1;
        }
        self.chars[start..self.at].iter().collect()
    }

    fn number(&mut self) -> Result<Expr, ParseError> {
        let start = self.at;
        while self.peek().is_some_and(|c| c.is_ascii_digit() || c == '.') {
            self.at += 1;
        }
        // An exponent: `1e6`, `2.5E-3`.
        if matches!(self.peek(), Some('e' | 'E')) {
            let mark = self.at;
            self.at += 1;
            if matches!(self.peek(), Some('+' | '-')) {
                self.at += 1;
            }
            if self.peek().is_some_and(|c| c.is_ascii_digit()) {
                while self.peek().is_some_and(|c| c.is_ascii_digit()) {
                    self.at += 1;
                }
            } else {
                self.at = mark;
            }
        }
        let text: String = self.chars[start..self.at].iter().collect();
        match text.parse::<f64>() {
            Ok(value) if value.is_finite() => Ok(Expr::Number(value)),
            _ => Err(ParseError {
                column: start + 1,
                message: format!("`{text}` is not a number; write e.g. `80`, `0.5` or `1e6`"),
            }),
        }
    }

    /// args := comparison { "," comparison }, after `name(`.
    fn call(&mut self, name: &str, start: usize) -> Result<Expr, ParseError> {
        let open = start + name.chars().count();
        let aggregate = match name {
            "min" => Some(Aggregate::Min),
            "max" => Some(Aggregate::Max),
            "avg" => Some(Aggregate::Avg),
            "sum" => Some(Aggregate::Sum),
            "rate" | "fill" => None,
            other => {
                return Err(ParseError {
                    column: start,
                    message: format!(
                        "unknown function `{other}`; valid functions: {}",
                        FUNCTIONS.join(", ")
                    ),
                });
            }
        };
        let mut args = Vec::new();
        if self.eat(")") {
            return Err(ParseError {
                column: start,
                message: format!("`{name}` needs at least one argument"),
            });
        }
        loop {
            args.push(self.comparison()?);
            if self.eat(",") {
                continue;
            }
            if self.eat(")") {
                break;
            }
            self.skip_space();
            if self.peek().is_none() {
                return Err(self.unclosed(open));
            }
            return Err(self.error(format!(
                "unexpected `{}` in the arguments of `{name}`; expected `,` or `)`",
                self.peek().unwrap_or(' ')
            )));
        }
        if let Some(aggregate) = aggregate {
            return Ok(Expr::Aggregate(aggregate, args));
        }
        let count = args.len();
        let mut args = args.into_iter();
        match (name, args.next(), args.next(), count) {
            ("rate", Some(Expr::Series { id, column }), None, 1) => Ok(Expr::Rate { id, column }),
            ("rate", _, _, _) => Err(ParseError {
                column: start,
                message: "`rate` takes exactly one argument, a series id, e.g. `rate(lag)`"
                    .to_owned(),
            }),
            ("fill", Some(value), Some(fallback), 2) => {
                Ok(Expr::Fill(Box::new(value), Box::new(fallback)))
            }
            _ => Err(ParseError {
                column: start,
                message: format!(
                    "`fill` takes exactly two arguments, e.g. `fill(lag, 0)`, found {count}"
                ),
            }),
        }
    }
}
