//! The grammar, every error with its column, and the meaning of each
//! construct, through the interpreter as the agent calls it (parameters as
//! JSON, series in, signals out).

use flinkscale_plugin::testing::{check_declarations, configure};

use super::*;
use crate::parse::{BinaryOp, ParseError, parse};

fn series(id: &str, points: &[(i64, f64)]) -> Series {
    flinkscale_plugin::testing::series("AWS/Kafka", "Maximum", id, points)
}

fn app() -> Application {
    flinkscale_plugin::testing::application(2, 1, 8)
}

fn metrics() -> Vec<Series> {
    vec![
        series("cpu", &[(0, 50.0), (60_000, 90.0), (120_000, 70.0)]),
        series("lag", &[(0, 1000.0), (60_000, 4000.0)]),
        series("empty", &[]),
    ]
}

/// The value of the single signal `x = <text>`, or None when absent.
fn value(text: &str) -> Option<f64> {
    let json = serde_json_object(text);
    let mut interpreter = configure::<ExpressionInterpreter>(&json)
        .unwrap_or_else(|error| panic!("{text:?} refused: {error}"));
    let signals = interpreter
        .interpret(0, &app(), &metrics())
        .unwrap_or_else(|error| panic!("{text:?} failed: {error}"));
    assert!(signals.len() <= 1);
    signals.first().map(|signal| {
        assert_eq!(signal.name, "x");
        signal.value
    })
}

fn serde_json_object(text: &str) -> String {
    format!(
        "{{\"signals\": {{\"x\": {}}}}}",
        Value::String(text.to_owned())
    )
}

fn parse_error(text: &str) -> ParseError {
    match parse(text) {
        Ok(expr) => panic!("{text:?} parsed as {expr:?}"),
        Err(error) => error,
    }
}

#[test]
fn precedence_and_associativity() {
    assert_eq!(value("1 + 2 * 3"), Some(7.0));
    assert_eq!(value("(1 + 2) * 3"), Some(9.0));
    assert_eq!(value("10 - 4 - 3"), Some(3.0));
    assert_eq!(value("24 / 4 / 2"), Some(3.0));
    assert_eq!(value("-2 * -3"), Some(6.0));
    assert_eq!(value("1.5e3 + .5"), Some(1500.5));
    assert_eq!(value("1 + 2 > 2"), Some(1.0));
    assert_eq!(
        parse("a > 1").unwrap(),
        Expr::Binary(
            BinaryOp::Gt,
            Box::new(Expr::Series {
                id: "a".to_owned(),
                column: 1
            }),
            Box::new(Expr::Number(1.0))
        )
    );
}

#[test]
fn series_ids_read_their_latest_value() {
    assert_eq!(value("cpu"), Some(70.0));
    assert_eq!(value("lag / cpu"), Some(4000.0 / 70.0));
}

#[test]
fn comparisons_are_thresholds_giving_one_or_zero() {
    assert_eq!(value("cpu > 80"), Some(0.0));
    assert_eq!(value("cpu >= 70"), Some(1.0));
    assert_eq!(value("cpu < 70"), Some(0.0));
    assert_eq!(value("cpu <= 70"), Some(1.0));
    assert_eq!(value("cpu == 70"), Some(1.0));
    assert_eq!(value("cpu != 70"), Some(0.0));
    assert_eq!(value("(cpu > 60) * (lag > 3000)"), Some(1.0));
}

#[test]
fn aggregates_over_a_window_and_over_arguments() {
    assert_eq!(value("max(cpu)"), Some(90.0));
    assert_eq!(value("min(cpu)"), Some(50.0));
    assert_eq!(value("avg(cpu)"), Some(70.0));
    assert_eq!(value("sum(cpu)"), Some(210.0));
    assert_eq!(value("max(cpu, 80)"), Some(80.0));
    assert_eq!(value("sum(cpu, lag)"), Some(4070.0));
    assert_eq!(value("avg(cpu + 0)"), Some(70.0));
    assert_eq!(value("min(cpu, empty)"), Some(70.0), "absent skipped");
    assert_eq!(value("max(empty)"), None);
}

#[test]
fn rate_is_per_second_over_the_last_two_points() {
    assert_eq!(value("rate(lag)"), Some(3000.0 / 60.0));
    assert_eq!(value("rate(cpu)"), Some(-20.0 / 60.0));
    assert_eq!(value("rate(empty)"), None);
}

#[test]
fn absence_propagates_and_fill_replaces_it() {
    assert_eq!(value("empty"), None);
    assert_eq!(value("empty + 1"), None);
    assert_eq!(value("empty > 1"), None);
    assert_eq!(value("cpu / 0"), None, "division by zero has no value");
    assert_eq!(value("fill(empty, 0)"), Some(0.0));
    assert_eq!(value("fill(empty, cpu)"), Some(70.0));
    assert_eq!(value("fill(cpu, 0)"), Some(70.0));
    assert_eq!(value("fill(cpu / 0, -1)"), Some(-1.0));
}

/// Nesting past 64 levels, or an expression past 2048 characters (a
/// chain of operators is as deep a tree as it is long), is a syntax error
/// with its column, not a trap on an exhausted stack.
#[test]
fn too_deep_or_too_long_is_a_syntax_error() {
    for (open, close) in [("(", ")"), ("-", ""), ("max(", ")")] {
        let text = format!("{}cpu{}", open.repeat(300), close.repeat(300));
        let error = parse_error(&text);
        assert!(error.message.contains("nests more than 64 deep"), "{error}");
        assert_eq!(error.column, 65 * open.len() + 1, "{error}");
        // The limit is the one said: 64 levels pass, 65 do not.
        let nested = |levels: usize| format!("{}cpu{}", open.repeat(levels), close.repeat(levels));
        assert!(parse(&nested(64)).is_ok(), "64 of {open}");
        assert!(
            parse_error(&nested(65))
                .message
                .contains("nests more than 64 deep")
        );
    }
    let fine = format!("{}cpu{}", "(".repeat(60), ")".repeat(60));
    assert!(parse(&fine).is_ok());
    let chain = |terms: usize| vec!["cpu"; terms].join("+");
    let error = parse_error(&chain(100_000));
    assert_eq!(
        (error.column, error.message.as_str()),
        (
            2049,
            "the expression is 399999 characters long; at most 2048 are taken"
        )
    );
    assert!(parse(&chain(512)).is_ok());
}

#[test]
fn every_syntax_error_names_its_column() {
    let cases: &[(&str, usize, &str)] = &[
        ("", 1, "the expression is empty"),
        ("   ", 4, "the expression is empty"),
        ("cpu +", 6, "ends too early"),
        (
            "foo(cpu)",
            1,
            "unknown function `foo`; valid functions: avg, fill, max, min, rate, sum",
        ),
        ("1 + (cpu * 2", 13, "the `(` at column 5 is not closed"),
        ("max(cpu, 2", 11, "the `(` at column 4 is not closed"),
        ("cpu)", 4, "an unbalanced `)`"),
        ("cpu lag", 5, "unexpected `l`; expected an operator"),
        ("cpu > 80 > 1", 10, "a second comparison (`>` then `>`)"),
        (
            "(1 < cpu <= 80)",
            10,
            "write `(a < b) * (b <= c)` for \"both\"",
        ),
        ("cpu = 80", 5, "unexpected `=`"),
        ("cpu * $", 7, "unexpected `$`"),
        ("1.2.3", 1, "`1.2.3` is not a number"),
        ("max()", 1, "`max` needs at least one argument"),
        ("max(cpu;", 8, "expected `,` or `)`"),
        (
            "rate(cpu + 1)",
            1,
            "`rate` takes exactly one argument, a series id",
        ),
        ("rate(cpu, lag)", 1, "`rate` takes exactly one argument"),
        ("fill(cpu)", 1, "`fill` takes exactly two arguments"),
        ("1 + fill(cpu, 1, 2)", 5, "found 3"),
    ];
    for &(text, column, needle) in cases {
        let error = parse_error(text);
        assert_eq!(error.column, column, "{text:?}: {error}");
        assert!(error.message.contains(needle), "{text:?}: {error}");
        assert!(
            error
                .to_string()
                .starts_with(&format!("at column {column}: "))
        );
    }
}

#[test]
fn configure_refuses_a_bad_expression_with_its_signal_and_column() {
    let error =
        configure::<ExpressionInterpreter>(r#"{"signals": {"ok": "cpu", "bad": "max(cpu"}}"#)
            .unwrap_err();
    assert_eq!(
        error,
        "signals.bad = \"max(cpu\": at column 8: unbalanced parenthesis: the `(` at column 4 \
         is not closed (found the end of the expression, expected `)`)"
    );
}

#[test]
fn configure_refuses_bad_parameters() {
    let refuse = |json: &str| configure::<ExpressionInterpreter>(json).unwrap_err();
    assert!(refuse("{}").contains("parameter `signals` is required"));
    assert!(refuse(r#"{"signal": {}}"#).contains("unknown parameter `signal`"));
    assert!(refuse(r#"{"signals": []}"#).contains("must be a table"));
    assert!(refuse(r#"{"signals": {}}"#).contains("at least one signal"));
    assert!(refuse(r#"{"signals": {"x": 1}}"#).contains("must be an expression in a string"));
    assert!(refuse(r#"{"signals": {"9x": "1"}}"#).contains("a signal name is letters"));
}

#[test]
fn an_unknown_series_id_is_an_error_at_interpret_even_without_data() {
    let mut interpreter =
        configure::<ExpressionInterpreter>(r#"{"signals": {"x": "cpu + fill(lgа, 0)"}}"#);
    // A Cyrillic `а` is not an identifier character: it is a syntax error.
    assert!(interpreter.is_err());

    interpreter = configure::<ExpressionInterpreter>(r#"{"signals": {"x": "cpu + fill(lga, 0)"}}"#);
    let error = interpreter
        .unwrap()
        .interpret(0, &app(), &[series("cpu", &[]), series("lag", &[])])
        .unwrap_err();
    assert_eq!(
        error,
        "signals.x = \"cpu + fill(lga, 0)\": at column 12: unknown series id `lga` \
         (configured series: cpu, lag)"
    );
}

#[test]
fn absent_signals_are_not_published_and_others_are() {
    let mut interpreter =
        configure::<ExpressionInterpreter>(r#"{"signals": {"a": "empty", "b": "cpu * 2"}}"#)
            .unwrap();
    let signals = interpreter.interpret(0, &app(), &metrics()).unwrap();
    assert_eq!(signals, vec![Signal::new("b", 140.0)]);
}

#[test]
fn declarations_are_well_formed() {
    assert_eq!(check_declarations::<ExpressionInterpreter>(), Ok(()));
}

#[test]
fn a_long_expression_is_shortened_in_an_error_so_the_reason_survives() {
    // 600 characters ending in a dangling `+`: the host cuts a plugin's
    // error at a few hundred bytes, which kept only the echoed expression.
    let text = "cpu+".repeat(150);
    let params = format!(r#"{{"signals": {{"x": "{text}"}}}}"#);
    let Err(error) = configure::<ExpressionInterpreter>(&params) else {
        panic!("configured a dangling `+`")
    };
    assert!(error.len() < 300, "{} bytes: {error}", error.len());
    assert!(
        error.starts_with("signals.x = \"cpu+cpu+")
            && error.contains("... (600 characters): ")
            && error.contains("column"),
        "{error}"
    );
}
