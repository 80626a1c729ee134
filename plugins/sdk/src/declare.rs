//! What a plugin declares about itself: a one-line summary and every
//! parameter it accepts, written once as constants of the plugin's type and
//! sent to the agent through the contract's `plugin-metadata`.
//!
//! The agent checks a configuration's `params` against these declarations
//! before `configure`, and `flinkscale plugin describe` and the README's
//! parameter tables print them, so the declaration is the one place a
//! parameter's kind, default and meaning are written. The SDK holds the
//! plugin to it: `configure` refuses a key that is not declared and fills in
//! the declared default of a key that is absent, so the code cannot drift
//! from what the documentation says.

pub use crate::__bindings::policy::flinkscale::plugin::types::ParameterKind;

/// One key a plugin accepts in its `params` table.
///
/// Built in a `const` with a constructor named after its kind and the
/// modifiers [`required`](Parameter::required),
/// [`default`](Parameter::default) and [`meaning`](Parameter::meaning):
///
/// ```
/// use flinkscale_plugin::Parameter;
///
/// const FACTOR: Parameter = Parameter::integer("scale_out_factor")
///     .default("2")
///     .meaning("KPU are multiplied by this on scale-out; at least 2.");
/// ```
///
/// A parameter that is neither required nor has a default is optional with
/// no value when absent (an `Option` field in the plugin's parameter
/// struct); its meaning then says what absence means.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Parameter {
    /// The key, `snake_case` with the unit spelled out
    /// (`scale_in_delay_secs`).
    pub name: &'static str,
    /// The kind of value the key takes.
    pub kind: ParameterKind,
    /// Whether the key must be present.
    pub required: bool,
    /// The value used when the key is absent, as JSON text.
    pub default_json: Option<&'static str>,
    /// What the key means and which values are valid, for people.
    pub meaning: &'static str,
}

impl Parameter {
    /// An optional parameter of this kind, with no default and no meaning
    /// yet; the kind-named constructors below read better.
    pub const fn new(name: &'static str, kind: ParameterKind) -> Self {
        Parameter {
            name,
            kind,
            required: false,
            default_json: None,
            meaning: "",
        }
    }

    /// `true` or `false`.
    pub const fn boolean(name: &'static str) -> Self {
        Self::new(name, ParameterKind::Boolean)
    }

    /// A whole number.
    pub const fn integer(name: &'static str) -> Self {
        Self::new(name, ParameterKind::Integer)
    }

    /// A number, whole or not.
    pub const fn number(name: &'static str) -> Self {
        Self::new(name, ParameterKind::Number)
    }

    /// A string.
    pub const fn text(name: &'static str) -> Self {
        Self::new(name, ParameterKind::Text)
    }

    /// An array of strings.
    pub const fn text_list(name: &'static str) -> Self {
        Self::new(name, ParameterKind::TextList)
    }

    /// The id of one of the application's alarms; the agent checks that it
    /// names one.
    pub const fn alarm_id(name: &'static str) -> Self {
        Self::new(name, ParameterKind::AlarmId)
    }

    /// An array of alarm ids.
    pub const fn alarm_ids(name: &'static str) -> Self {
        Self::new(name, ParameterKind::AlarmIds)
    }

    /// The id of one of the application's metrics; the agent checks that it
    /// names one.
    pub const fn metric_id(name: &'static str) -> Self {
        Self::new(name, ParameterKind::MetricId)
    }

    /// An array of metric ids.
    pub const fn metric_ids(name: &'static str) -> Self {
        Self::new(name, ParameterKind::MetricIds)
    }

    /// A table whose keys the plugin defines (named expressions, say).
    pub const fn table(name: &'static str) -> Self {
        Self::new(name, ParameterKind::Table)
    }

    /// Makes the key required.
    pub const fn required(mut self) -> Self {
        self.required = true;
        self
    }

    /// The value used when the key is absent, as JSON text: `"2"`,
    /// `"\"multiply\""`, `"true"`, `"[]"`.
    pub const fn default(mut self, json: &'static str) -> Self {
        self.default_json = Some(json);
        self
    }

    /// What the key means and which values are valid, in a sentence or two.
    pub const fn meaning(mut self, text: &'static str) -> Self {
        self.meaning = text;
        self
    }

    /// The shape of JSON value the kind takes, as error messages name it.
    pub fn expected(&self) -> &'static str {
        expected(self.kind)
    }
}

/// The shape of JSON value a kind takes, in the words the [`Params`]
/// getters use, so that an error reads the same whichever path found it.
///
/// [`Params`]: crate::Params
pub(crate) fn expected(kind: ParameterKind) -> &'static str {
    match kind {
        ParameterKind::Boolean => "true or false",
        ParameterKind::Integer => "a whole number",
        ParameterKind::Number => "a number",
        ParameterKind::Text | ParameterKind::AlarmId | ParameterKind::MetricId => "a string",
        ParameterKind::TextList | ParameterKind::AlarmIds | ParameterKind::MetricIds => {
            "an array of strings"
        }
        ParameterKind::Table => "a table",
    }
}

/// Whether `value` has the JSON shape `kind` takes.
pub(crate) fn fits(kind: ParameterKind, value: &serde_json::Value) -> bool {
    use serde_json::Value;
    let strings = |value: &Value| {
        value
            .as_array()
            .is_some_and(|items| items.iter().all(Value::is_string))
    };
    match kind {
        ParameterKind::Boolean => value.is_boolean(),
        ParameterKind::Integer => value.as_f64().is_some_and(|number| number.fract() == 0.0),
        ParameterKind::Number => value.is_number(),
        ParameterKind::Text | ParameterKind::AlarmId | ParameterKind::MetricId => value.is_string(),
        ParameterKind::TextList | ParameterKind::AlarmIds | ParameterKind::MetricIds => {
            strings(value)
        }
        ParameterKind::Table => value.is_object(),
    }
}
