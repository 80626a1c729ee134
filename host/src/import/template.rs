//! Just enough of CloudFormation to read a template as the stack that was
//! deployed from it: the declared parameters, and the value of any property
//! once `Ref`, `Fn::Join`, `Fn::Sub`, `Fn::If` and conditions are resolved
//! with the stack's parameter values.
//!
//! Only parameters are real inputs. Pseudo parameters (`AWS::Region`, ...),
//! references to other resources and `Fn::GetAtt` resolve to placeholders
//! such as `${AWS::Region}`: the importer never needs their values, only the
//! text around them (a state machine definition). A parameter without a
//! value is an error only when a resolved property uses it, because
//! CloudFormation itself only needs the parameters the stack's live
//! resources read.

use std::collections::BTreeMap;

use serde_json::Value;

/// A parameter as the template declares it.
#[derive(Debug, Clone, PartialEq)]
pub struct Declared {
    /// `Type`: `String`, `Number`, ...
    pub kind: String,
    /// `Default`, as the text CloudFormation would pass.
    pub default: Option<String>,
    /// `AllowedValues`; empty when any value is allowed.
    pub allowed: Vec<String>,
}

/// What `{"Ref": "AWS::NoValue"}` resolves to: CloudFormation removes the
/// property (or list item) that has it, and so does [`Stack::resolve`].
pub const NO_VALUE: &str = "${AWS::NoValue}";

/// Whether `v` is [`NO_VALUE`].
pub fn is_no_value(v: &Value) -> bool {
    v.as_str() == Some(NO_VALUE)
}

/// Why a value could not be resolved.
#[derive(Debug, Clone, PartialEq)]
pub enum ResolveError {
    /// A parameter the property uses has no value and no default.
    Missing(String),
    /// Something this reader does not evaluate, or a malformed function.
    Unsupported(String),
}

/// How deep conditions may refer to conditions: far more than any template
/// needs, few enough that the recursion cannot exhaust the stack.
const MAX_CONDITION_DEPTH: usize = 64;

/// How deep expressions may nest in all, conditions included: far more
/// than any template needs (the reference design's nest a few levels),
/// few enough for the 2 MiB stack of the thread that imports, in a debug
/// build too.
const MAX_RESOLVE_DEPTH: usize = 256;

/// A parsed template with the stack's parameter values.
#[derive(Debug)]
pub struct Stack<'a> {
    /// The whole template.
    pub root: &'a Value,
    /// Parameter name -> value (given, else the default).
    pub values: BTreeMap<String, String>,
    /// Parameters whose `Ref` resolves to a stand-in instead of the value:
    /// used to learn which parameter ended up where in a resolved text.
    pub stand_ins: BTreeMap<String, String>,
    /// The conditions being evaluated, outermost first: a condition met
    /// again is a cycle, and the chain is bounded (empty between calls).
    pub evaluating: std::cell::RefCell<Vec<String>>,
    /// How deep [`Stack::resolve`] is (0 between calls).
    pub depth: std::cell::Cell<usize>,
    /// Each condition's value once evaluated: a condition named twice at
    /// each of n levels is evaluated once, not 2^n times (a crafted
    /// template of 2 KB took for ever).
    pub known: std::cell::RefCell<BTreeMap<String, bool>>,
    /// How many placeholders of what only a deployed stack knows (a pseudo
    /// parameter, another resource, `Fn::GetAtt`) resolutions have put in
    /// values so far, conditions not counted: a property whose resolution
    /// moved it has one ([`Stack::placeholders`]).
    pub placeholders: std::cell::Cell<usize>,
}

/// The text CloudFormation passes for a scalar written in a template
/// (`Default: 5` and `Default: "5"` are the same parameter value).
pub fn scalar_text(v: &Value) -> Option<String> {
    match v {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

/// The template's `Parameters`, by name; `None` when it has none.
pub fn declared(root: &Value) -> Option<BTreeMap<String, Declared>> {
    let params = root.get("Parameters")?.as_object()?;
    Some(
        params
            .iter()
            .map(|(name, decl)| {
                let kind = decl
                    .get("Type")
                    .and_then(Value::as_str)
                    .unwrap_or("String")
                    .to_owned();
                let default = decl.get("Default").and_then(scalar_text);
                let allowed = decl
                    .get("AllowedValues")
                    .and_then(Value::as_array)
                    .map(|a| a.iter().filter_map(scalar_text).collect())
                    .unwrap_or_default();
                (
                    name.clone(),
                    Declared {
                        kind,
                        default,
                        allowed,
                    },
                )
            })
            .collect(),
    )
}

impl Stack<'_> {
    /// Whether the resource's `Condition` holds (true without one).
    pub fn resource_exists(&self, resource: &Value) -> Result<bool, ResolveError> {
        match resource.get("Condition").and_then(Value::as_str) {
            None => Ok(true),
            Some(name) => self.condition(name),
        }
    }

    /// How many placeholders resolutions have put in values so far: a
    /// property whose resolution moves it names what only a deployed stack
    /// knows.
    pub fn placeholders(&self) -> usize {
        self.placeholders.get()
    }

    /// Whether the condition `name` holds with the stack's values.
    pub fn condition(&self, name: &str) -> Result<bool, ResolveError> {
        // A placeholder compared in a condition is in no value.
        let placeholders = self.placeholders.get();
        let holds = self.condition_counted(name);
        self.placeholders.set(placeholders);
        holds
    }

    fn condition_counted(&self, name: &str) -> Result<bool, ResolveError> {
        if let Some(known) = self.known.borrow().get(name) {
            return Ok(*known);
        }
        let expr = self
            .root
            .get("Conditions")
            .and_then(|c| c.get(name))
            .ok_or_else(|| ResolveError::Unsupported(format!("no condition named {name:?}")))?;
        {
            let mut chain = self.evaluating.borrow_mut();
            if chain.iter().any(|c| c == name) {
                let mut names = chain.clone();
                names.push(name.to_owned());
                let start = names.iter().position(|c| c == name).unwrap_or(0);
                return Err(ResolveError::Unsupported(format!(
                    "condition {name:?} refers to itself: {}",
                    names[start..].join(" -> ")
                )));
            }
            if chain.len() >= MAX_CONDITION_DEPTH {
                return Err(ResolveError::Unsupported(format!(
                    "conditions nest more than {MAX_CONDITION_DEPTH} deep (from {:?})",
                    chain.first().map(String::as_str).unwrap_or(name)
                )));
            }
            chain.push(name.to_owned());
        }
        let value = self.boolean(expr);
        self.evaluating.borrow_mut().pop();
        if let Ok(known) = value {
            self.known.borrow_mut().insert(name.to_owned(), known);
        }
        value
    }

    fn boolean(&self, expr: &Value) -> Result<bool, ResolveError> {
        match self.resolve(expr)? {
            Value::Bool(b) => Ok(b),
            Value::String(s) if s == "true" || s == "false" => Ok(s == "true"),
            other => Err(ResolveError::Unsupported(format!(
                "a condition evaluates to {other}, not a boolean"
            ))),
        }
    }

    /// `v` with every intrinsic function evaluated.
    pub fn resolve(&self, v: &Value) -> Result<Value, ResolveError> {
        // Every recursion (into a list, a map, a function's arguments, a
        // condition) comes through here: one count bounds the stack, where
        // the condition chain's bound and the JSON parser's nesting limit
        // each allow depths that multiply into an overflow.
        let depth = self.depth.get();
        if depth >= MAX_RESOLVE_DEPTH {
            return Err(ResolveError::Unsupported(format!(
                "expressions nest more than {MAX_RESOLVE_DEPTH} deep, conditions included"
            )));
        }
        self.depth.set(depth + 1);
        let resolved = self.resolve_here(v);
        self.depth.set(depth);
        resolved
    }

    /// [`Stack::resolve`] of `v` itself, its parts through `resolve`.
    fn resolve_here(&self, v: &Value) -> Result<Value, ResolveError> {
        match v {
            Value::Array(items) => items
                .iter()
                .map(|i| self.resolve(i))
                .filter(|i| !i.as_ref().is_ok_and(is_no_value))
                .collect::<Result<Vec<_>, _>>()
                .map(Value::Array),
            Value::Object(map) => match map.iter().next() {
                Some((key, arg)) if map.len() == 1 => match key.as_str() {
                    "Ref" => self.reference(arg),
                    "Condition" => {
                        let name = arg.as_str().ok_or_else(|| {
                            ResolveError::Unsupported("Condition takes a name".into())
                        })?;
                        self.condition(name).map(Value::Bool)
                    }
                    "Fn::GetAtt" => {
                        self.placeholders.set(self.placeholders.get() + 1);
                        Ok(Value::String(format!(
                            "${{{}}}",
                            scalar_list(arg).join(".")
                        )))
                    }
                    "Fn::Join" => self.join(arg),
                    "Fn::Sub" => self.sub(arg),
                    "Fn::Equals" => {
                        let [a, b] = two(arg, "Fn::Equals")?;
                        let (a, b) = (self.resolve(a)?, self.resolve(b)?);
                        Ok(Value::Bool(scalar_text(&a) == scalar_text(&b)))
                    }
                    "Fn::Or" | "Fn::And" => {
                        let items = arg.as_array().ok_or_else(|| {
                            ResolveError::Unsupported(format!("{key} takes a list"))
                        })?;
                        let mut values = Vec::with_capacity(items.len());
                        for item in items {
                            values.push(self.boolean(item)?);
                        }
                        Ok(Value::Bool(if key == "Fn::Or" {
                            values.iter().any(|b| *b)
                        } else {
                            values.iter().all(|b| *b)
                        }))
                    }
                    "Fn::Not" => {
                        let inner = arg.as_array().and_then(|a| a.first()).ok_or_else(|| {
                            ResolveError::Unsupported("Fn::Not takes a list of one".into())
                        })?;
                        Ok(Value::Bool(!self.boolean(inner)?))
                    }
                    "Fn::If" => {
                        let items = arg.as_array().filter(|a| a.len() == 3).ok_or_else(|| {
                            ResolveError::Unsupported("Fn::If takes [condition, then, else]".into())
                        })?;
                        let name = items[0].as_str().ok_or_else(|| {
                            ResolveError::Unsupported("Fn::If names a condition".into())
                        })?;
                        if self.condition(name)? {
                            self.resolve(&items[1])
                        } else {
                            self.resolve(&items[2])
                        }
                    }
                    other if other.starts_with("Fn::") => Err(ResolveError::Unsupported(format!(
                        "the intrinsic function {other}"
                    ))),
                    _ => self.object(map),
                },
                _ => self.object(map),
            },
            scalar => Ok(scalar.clone()),
        }
    }

    fn object(&self, map: &serde_json::Map<String, Value>) -> Result<Value, ResolveError> {
        let mut out = serde_json::Map::new();
        for (k, v) in map {
            let resolved = self.resolve(v)?;
            if !is_no_value(&resolved) {
                out.insert(k.clone(), resolved);
            }
        }
        Ok(Value::Object(out))
    }

    fn reference(&self, arg: &Value) -> Result<Value, ResolveError> {
        let name = arg
            .as_str()
            .ok_or_else(|| ResolveError::Unsupported("Ref takes a name".into()))?;
        Ok(Value::String(self.named(name)?))
    }

    /// A parameter's value, or the placeholder of anything else by that name.
    fn named(&self, name: &str) -> Result<String, ResolveError> {
        if let Some(stand_in) = self.stand_ins.get(name) {
            return Ok(stand_in.clone());
        }
        let is_parameter = self
            .root
            .get("Parameters")
            .and_then(|p| p.get(name))
            .is_some();
        if is_parameter {
            return self
                .values
                .get(name)
                .cloned()
                .ok_or_else(|| ResolveError::Missing(name.to_owned()));
        }
        if name != "AWS::NoValue" {
            self.placeholders.set(self.placeholders.get() + 1);
        }
        Ok(format!("${{{name}}}"))
    }

    fn join(&self, arg: &Value) -> Result<Value, ResolveError> {
        let [sep, parts] = two(arg, "Fn::Join")?;
        let sep = sep
            .as_str()
            .ok_or_else(|| ResolveError::Unsupported("Fn::Join's separator is not text".into()))?;
        let parts = match self.resolve(parts)? {
            Value::Array(items) => items,
            _ => {
                return Err(ResolveError::Unsupported(
                    "Fn::Join's second argument is not a list".into(),
                ));
            }
        };
        let texts = parts
            .iter()
            .map(|p| {
                scalar_text(p).ok_or_else(|| {
                    ResolveError::Unsupported(format!("Fn::Join of a non-scalar {p}"))
                })
            })
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Value::String(texts.join(sep)))
    }

    fn sub(&self, arg: &Value) -> Result<Value, ResolveError> {
        let (text, vars) = match arg {
            Value::String(s) => (s.as_str(), None),
            Value::Array(a) if a.len() == 2 => (
                a[0].as_str().ok_or_else(|| {
                    ResolveError::Unsupported("Fn::Sub's template is not text".into())
                })?,
                a[1].as_object(),
            ),
            _ => return Err(ResolveError::Unsupported("a malformed Fn::Sub".into())),
        };
        let mut out = String::new();
        let mut rest = text;
        while let Some(start) = rest.find("${") {
            out.push_str(&rest[..start]);
            let after = &rest[start + 2..];
            let Some(end) = after.find('}') else {
                return Err(ResolveError::Unsupported(
                    "Fn::Sub with an unclosed ${".into(),
                ));
            };
            let name = &after[..end];
            if let Some(literal) = name.strip_prefix('!') {
                // `${!Literal}` is the text `${Literal}`, nothing resolved.
                out.push_str(&format!("${{{literal}}}"));
                rest = &after[end + 1..];
                continue;
            }
            match vars.and_then(|v| v.get(name)) {
                Some(v) => out.push_str(&scalar_text(&self.resolve(v)?).unwrap_or_default()),
                None => out.push_str(&self.named(name)?),
            }
            rest = &after[end + 1..];
        }
        out.push_str(rest);
        Ok(Value::String(out))
    }
}

fn two<'v>(arg: &'v Value, function: &str) -> Result<[&'v Value; 2], ResolveError> {
    match arg.as_array().map(Vec::as_slice) {
        Some([a, b]) => Ok([a, b]),
        _ => Err(ResolveError::Unsupported(format!(
            "{function} takes a list of two"
        ))),
    }
}

fn scalar_list(v: &Value) -> Vec<String> {
    match v {
        Value::Array(a) => a.iter().filter_map(scalar_text).collect(),
        other => scalar_text(other).into_iter().collect(),
    }
}
