//! CloudFormation templates in YAML, read as the JSON they stand for.
//!
//! The design's CDK app (`generateautoscaler.sh`, which upstream now
//! recommends) deploys a YAML template, and `aws cloudformation
//! get-template --query TemplateBody` gives a YAML stack's template as
//! one JSON string of YAML. The importer works on JSON values
//! ([`super::cfn`]), so a YAML template is turned into the JSON
//! CloudFormation itself reads it as: the short forms of the intrinsic
//! functions (`!Ref X`, `!GetAtt A.B`, `!Sub ...`, `!If [...]`) become
//! their long forms (`{"Ref": "X"}`, `{"Fn::GetAtt": ["A", "B"]}`, ...),
//! and keys that YAML reads as numbers or booleans are their text.

use serde_json::{Map, Number, Value};
use serde_norway::Value as Yaml;

/// Why a YAML text is not a template: the parser's message and where, or
/// a tag CloudFormation does not know.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct YamlError {
    /// 1-based line, when the parser knows it.
    pub line: Option<usize>,
    /// 1-based column, when the parser knows it.
    pub column: Option<usize>,
    /// What is wrong.
    pub message: String,
}

/// The intrinsic functions whose short form is `!Name` for `Fn::Name`.
const FUNCTIONS: [&str; 17] = [
    "Base64",
    "Cidr",
    "FindInMap",
    "GetAZs",
    "ImportValue",
    "Join",
    "Select",
    "Split",
    "Sub",
    "Transform",
    "And",
    "Equals",
    "If",
    "Not",
    "Or",
    "Length",
    "ToJsonString",
];

/// The deepest `[` / `{` nesting a template may have: the design's is
/// under 10. The parser's own limit comes only after a parse whose time
/// grows with the square of the depth (100,000 levels, a 200 KB file,
/// took more than 20 s).
const MAX_FLOW_DEPTH: usize = 128;

/// The most `[` and `{` a YAML template may hold in all, quoted or not:
/// the design's have a few hundred (its state machine's definition). A
/// parse's time grows with the square of its nesting, which a count
/// bounds whatever the quotes hide (20,000 levels took 1.3 s).
const MAX_BRACKETS: usize = 10_000;

/// `text` (one YAML document) as the JSON value CloudFormation reads.
pub fn to_json(text: &str) -> Result<Value, YamlError> {
    let brackets = text.chars().filter(|c| matches!(c, '[' | '{')).count();
    if brackets > MAX_BRACKETS {
        return Err(YamlError {
            line: None,
            column: None,
            message: format!(
                "{brackets} brackets ([ and {{), more than the {MAX_BRACKETS} a template of this \
                 design comes near (valid: the design's template, a few hundred)"
            ),
        });
    }
    if let Some(line) = too_deep(text) {
        return Err(YamlError {
            line: Some(line),
            column: None,
            message: format!(
                "brackets nested deeper than {MAX_FLOW_DEPTH} levels (valid: a template nested \
                 as CloudFormation's are, a few levels)"
            ),
        });
    }
    let yaml: Yaml = serde_norway::from_str(text).map_err(|error| {
        let location = error.location();
        YamlError {
            line: location.as_ref().map(serde_norway::Location::line),
            column: location.as_ref().map(serde_norway::Location::column),
            message: error.to_string(),
        }
    })?;
    convert(yaml, "the template")
}

/// The line where `text`'s `[` / `{` nesting, outside quoted strings,
/// passes [`MAX_FLOW_DEPTH`]; `None` when it never does. A quote opens a
/// string only where a scalar starts (a line's start, or after `:`, `-`,
/// `[`, `{`, `,` and spaces), so an apostrophe in a plain scalar
/// (`Description: it's ...`) opens none, and a string still open at a
/// line's end is closed there (a stray quote hides no later line);
/// escapes in double quotes are skipped (`''` in single ones closes and
/// reopens, which is the same).
fn too_deep(text: &str) -> Option<usize> {
    let (mut depth, mut line) = (0usize, 1usize);
    let mut quote: Option<char> = None;
    // The last character that is not a space, `\n` at a line's start.
    let mut before = '\n';
    let mut chars = text.chars();
    while let Some(c) = chars.next() {
        match (quote, c) {
            (_, '\n') => {
                line += 1;
                before = '\n';
                quote = None;
                continue;
            }
            (Some('"'), '\\') => {
                chars.next();
            }
            (Some(q), c) if c == q => quote = None,
            (Some(_), _) => {}
            (None, '"' | '\'') if matches!(before, '\n' | ':' | '-' | '[' | '{' | ',') => {
                quote = Some(c);
            }
            (None, '[' | '{') => {
                depth += 1;
                if depth > MAX_FLOW_DEPTH {
                    return Some(line);
                }
            }
            (None, ']' | '}') => depth = depth.saturating_sub(1),
            (None, _) => {}
        }
        if c != ' ' && c != '\t' {
            before = c;
        }
    }
    None
}

/// `yaml`, found at `path` (for errors), as JSON.
fn convert(yaml: Yaml, path: &str) -> Result<Value, YamlError> {
    Ok(match yaml {
        Yaml::Null => Value::Null,
        Yaml::Bool(b) => Value::Bool(b),
        Yaml::Number(n) => number(&n, path)?,
        Yaml::String(s) => Value::String(s),
        Yaml::Sequence(items) => Value::Array(
            items
                .into_iter()
                .enumerate()
                .map(|(i, item)| convert(item, &format!("{path}[{i}]")))
                .collect::<Result<_, _>>()?,
        ),
        Yaml::Mapping(entries) => {
            let mut object = Map::new();
            for (key, value) in entries {
                let key = key_text(key, path)?;
                let value = convert(value, &format!("{path}.{key}"))?;
                object.insert(key, value);
            }
            Value::Object(object)
        }
        Yaml::Tagged(tagged) => {
            let tag = tagged.tag.to_string();
            let name = tag.trim_start_matches('!').to_owned();
            let value = convert(tagged.value, path)?;
            intrinsic(&name, value).ok_or_else(|| YamlError {
                line: None,
                column: None,
                message: format!(
                    "{path}: the tag {tag} is not one of CloudFormation's intrinsic functions \
                     (valid: !Ref, !Condition, !GetAtt, {})",
                    FUNCTIONS.map(|f| format!("!{f}")).join(", ")
                ),
            })?
        }
    })
}

/// `!name value` in its long form; `None` for a tag CloudFormation does
/// not know.
fn intrinsic(name: &str, value: Value) -> Option<Value> {
    let (key, value) = match name {
        "Ref" => ("Ref".to_owned(), value),
        "Condition" => ("Condition".to_owned(), value),
        // `!GetAtt Resource.Attribute`: split at the first dot (an
        // attribute may hold more, `Endpoint.Address`).
        "GetAtt" => (
            "Fn::GetAtt".to_owned(),
            match value {
                Value::String(s) => match s.split_once('.') {
                    Some((resource, attribute)) => Value::Array(vec![
                        Value::String(resource.to_owned()),
                        Value::String(attribute.to_owned()),
                    ]),
                    None => Value::String(s),
                },
                other => other,
            },
        ),
        f if FUNCTIONS.contains(&f) => (format!("Fn::{f}"), value),
        _ => return None,
    };
    Some(Value::Object(Map::from_iter([(key, value)])))
}

/// A mapping key as text: YAML reads `10:` or `true:` as a number or a
/// boolean, CloudFormation as the text.
fn key_text(key: Yaml, path: &str) -> Result<String, YamlError> {
    match key {
        Yaml::String(s) => Ok(s),
        Yaml::Number(n) => Ok(n.to_string()),
        Yaml::Bool(b) => Ok(b.to_string()),
        Yaml::Null => Ok("null".to_owned()),
        _ => Err(YamlError {
            line: None,
            column: None,
            message: format!("{path}: a key that is not text, a number or a boolean"),
        }),
    }
}

/// A YAML number as a JSON one (`.inf` and `.nan` have none).
fn number(n: &serde_norway::Number, path: &str) -> Result<Value, YamlError> {
    let json = if let Some(i) = n.as_i64() {
        Some(Number::from(i))
    } else if let Some(u) = n.as_u64() {
        Some(Number::from(u))
    } else {
        n.as_f64().and_then(Number::from_f64)
    };
    json.map(Value::Number).ok_or_else(|| YamlError {
        line: None,
        column: None,
        message: format!("{path}: {n} is not a number JSON can hold (valid: a finite number)"),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn short_forms_become_long_forms() {
        let text = "\
Conditions:
  Big: !Equals [!Ref Size, big]
Resources:
  A:
    Type: AWS::CloudWatch::Alarm
    Condition: Big
    Properties:
      AlarmName: !Sub 'ScaleOutAlarm-${App}'
      Threshold: !If [Big, 80, !Ref Threshold]
      Role: !GetAtt Role.Arn
      Url: !GetAtt [Db, Endpoint.Address]
      Name: !Join
        - ''
        - - a
          - !Ref AWS::Region
      Ok: !Not [!Condition Big]
";
        assert_eq!(
            to_json(text).expect("a template"),
            json!({
                "Conditions": {"Big": {"Fn::Equals": [{"Ref": "Size"}, "big"]}},
                "Resources": {"A": {
                    "Type": "AWS::CloudWatch::Alarm",
                    "Condition": "Big",
                    "Properties": {
                        "AlarmName": {"Fn::Sub": "ScaleOutAlarm-${App}"},
                        "Threshold": {"Fn::If": ["Big", 80, {"Ref": "Threshold"}]},
                        "Role": {"Fn::GetAtt": ["Role", "Arn"]},
                        "Url": {"Fn::GetAtt": ["Db", "Endpoint.Address"]},
                        "Name": {"Fn::Join": ["", ["a", {"Ref": "AWS::Region"}]]},
                        "Ok": {"Fn::Not": [{"Condition": "Big"}]}
                    }
                }}
            })
        );
    }

    #[test]
    fn keys_and_numbers_keep_what_cloudformation_reads() {
        let text = "Mappings:\n  M:\n    10: {true: 1.5, n: -3}\n";
        assert_eq!(
            to_json(text).expect("a template"),
            json!({"Mappings": {"M": {"10": {"true": 1.5, "n": -3}}}})
        );
    }

    #[test]
    fn errors_say_where() {
        let unknown = to_json("A:\n  B: !Reff X\n").expect_err("no such tag");
        assert!(
            unknown
                .message
                .starts_with("the template.A.B: the tag !Reff is not one of CloudFormation's"),
            "{unknown:?}"
        );
        let broken = to_json("A:\n  B: [1, 2\nC: 3\n").expect_err("not YAML");
        assert_eq!(broken.line, Some(3), "{broken:?}");
        let infinite = to_json("A: .inf\n").expect_err("no JSON number");
        assert!(
            infinite.message.contains("the template.A: .inf"),
            "{infinite:?}"
        );
        let duplicate = to_json("A: 1\nA: 2\n").expect_err("a duplicate key");
        assert!(duplicate.message.contains("duplicate"), "{duplicate:?}");
        // Deep nesting is refused before the parser's quadratic time.
        let deep = format!("A: {}{}\n", "[".repeat(200), "]".repeat(200));
        let refused = to_json(&deep).expect_err("too deep");
        assert_eq!(refused.line, Some(1));
        assert!(
            refused.message.contains("nested deeper than 128"),
            "{refused:?}"
        );
        // Brackets in quoted text are no nesting.
        let quoted = format!("A: \"{}\"\nB: '{}'\n", "[".repeat(500), "{".repeat(500));
        assert!(to_json(&quoted).is_ok());
        // An apostrophe in a plain scalar opens no string to hide in.
        let hidden = format!(
            "Description: it's deep\nA: {}{}\n",
            "[".repeat(200),
            "]".repeat(200)
        );
        let refused = to_json(&hidden).expect_err("too deep");
        assert_eq!(refused.line, Some(2));
        // Nor does a stray quote after `-` or at a block scalar's line.
        for before in [
            "Description: well-'known\n",
            "Description: |\n  'tis deep\n",
        ] {
            let hidden = format!("{before}A: {}{}\n", "[".repeat(200), "]".repeat(200));
            assert!(to_json(&hidden).is_err(), "{before:?}");
        }
        // And 100,000 brackets are refused by their count, however quoted.
        let many = format!("A: '{}'\n", "[".repeat(100_000));
        let started = std::time::Instant::now();
        let refused = to_json(&many).expect_err("too many");
        assert!(started.elapsed().as_secs() < 1, "{:?}", started.elapsed());
        assert!(
            refused.message.starts_with("100000 brackets"),
            "{refused:?}"
        );
    }
}
