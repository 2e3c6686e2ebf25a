//! Host-side handling of strategy options: `--set key=value` flags into a JSON object, and a
//! small validator for the JSON Schema subset schemars emits for flat option structs.
//!
//! The validator runs before anything else, so a typo or a wrong type is a one-line error
//! naming the key (and, for an unknown key, listing the valid ones). The plugin's own serde
//! parsing stays the final authority (see [`LoadedPlugin::resolve_options`](crate::LoadedPlugin::resolve_options)).

use serde_json::{Map, Value};

/// A `--set` flag or an option value that the schema rejects.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum OptionsError {
    /// A flag without `=`.
    #[error("--set `{0}`: expected key=value")]
    BadFlag(String),
    /// The same key set twice.
    #[error("--set {0}: given twice")]
    Duplicate(String),
    /// A key the plugin does not have.
    #[error(
        "unknown option `{key}`; valid options: {} (run settings such as `dpo.beta` are set \
         with -c KEY=VALUE)",
        if valid.is_empty() { "none (the strategy takes no options)".to_string() } else { valid.join(", ") }
    )]
    UnknownKey {
        /// The key given.
        key: String,
        /// The plugin's option names, sorted.
        valid: Vec<String>,
    },
    /// A value of the wrong JSON type.
    #[error("option `{key}` expects {expected}, got {got}")]
    WrongType {
        /// The key.
        key: String,
        /// The schema's type(s), e.g. `integer`.
        expected: String,
        /// What was given, e.g. `string "abc"`.
        got: String,
    },
    /// A value outside the schema's bounds or enumeration.
    #[error("option `{key}`: {message}")]
    OutOfRange {
        /// The key.
        key: String,
        /// What is allowed.
        message: String,
    },
    /// The plugin's schema is not an object schema with `properties`.
    #[error("the plugin's options schema is not usable: {0}")]
    BadSchema(String),
}

/// Parses `--set key=value` flags into a JSON object.
///
/// A value that parses as JSON is taken as JSON (`true`, `4`, `0.5`, `null`, `[1,2]`,
/// `"quoted"`), anything else as a string (`mode=fast` → `"fast"`).
///
/// # Errors
/// [`OptionsError::BadFlag`] for a flag without `=` or with an empty key,
/// [`OptionsError::Duplicate`] for a key given twice.
pub fn parse_set_flags<S: AsRef<str>>(flags: &[S]) -> Result<Map<String, Value>, OptionsError> {
    let mut out = Map::new();
    for flag in flags {
        let flag = flag.as_ref();
        let (key, value) = flag
            .split_once('=')
            .ok_or_else(|| OptionsError::BadFlag(flag.to_string()))?;
        let key = key.trim();
        if key.is_empty() {
            return Err(OptionsError::BadFlag(flag.to_string()));
        }
        let value =
            serde_json::from_str(value).unwrap_or_else(|_| Value::String(value.to_string()));
        if out.insert(key.to_string(), value).is_some() {
            return Err(OptionsError::Duplicate(key.to_string()));
        }
    }
    Ok(out)
}

/// The option names a schema declares, sorted.
pub fn option_names(schema: &Value) -> Vec<String> {
    let mut names: Vec<String> = schema
        .get("properties")
        .and_then(Value::as_object)
        .map(|p| p.keys().cloned().collect())
        .unwrap_or_default();
    names.sort();
    names
}

/// The defaults a schema declares (`default` of each property).
pub fn schema_defaults(schema: &Value) -> Map<String, Value> {
    schema
        .get("properties")
        .and_then(Value::as_object)
        .map(|props| {
            props
                .iter()
                .filter_map(|(k, p)| p.get("default").map(|d| (k.clone(), d.clone())))
                .collect()
        })
        .unwrap_or_default()
}

/// Checks an options object against a plugin's schema: every key must be a declared property,
/// and each value must match the property's `type` (`boolean`, `integer`, `number`, `string`,
/// `null`, `array`, `object`, or a list of them), `enum`, `minimum` and `maximum`. `$ref`s into
/// `$defs` are followed; a property without any of these keywords accepts any value.
///
/// # Errors
/// [`OptionsError::UnknownKey`], [`OptionsError::WrongType`], [`OptionsError::OutOfRange`]
/// or [`OptionsError::BadSchema`].
pub fn validate_options(schema: &Value, options: &Map<String, Value>) -> Result<(), OptionsError> {
    let props = schema
        .get("properties")
        .and_then(Value::as_object)
        .ok_or_else(|| OptionsError::BadSchema("no `properties`".into()))?;
    for (key, value) in options {
        let Some(prop) = props.get(key) else {
            return Err(OptionsError::UnknownKey {
                key: key.clone(),
                valid: option_names(schema),
            });
        };
        check_value(schema, key, resolve_ref(schema, prop), value)?;
    }
    Ok(())
}

fn resolve_ref<'a>(root: &'a Value, prop: &'a Value) -> &'a Value {
    let Some(r) = prop.get("$ref").and_then(Value::as_str) else {
        return prop;
    };
    let Some(name) = r
        .strip_prefix("#/$defs/")
        .or_else(|| r.strip_prefix("#/definitions/"))
    else {
        return prop;
    };
    root.get("$defs")
        .or_else(|| root.get("definitions"))
        .and_then(|d| d.get(name))
        .unwrap_or(prop)
}

fn type_matches(ty: &str, v: &Value) -> bool {
    match ty {
        "boolean" => v.is_boolean(),
        "integer" => v.is_i64() || v.is_u64(),
        "number" => v.is_number(),
        "string" => v.is_string(),
        "null" => v.is_null(),
        "array" => v.is_array(),
        "object" => v.is_object(),
        _ => true,
    }
}

fn describe(v: &Value) -> String {
    let kind = match v {
        Value::Null => return "null".into(),
        Value::Bool(_) => "boolean",
        Value::Number(n) if n.is_f64() => "number",
        Value::Number(_) => "integer",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    };
    format!("{kind} {v}")
}

fn check_value(root: &Value, key: &str, prop: &Value, v: &Value) -> Result<(), OptionsError> {
    let types: Vec<&str> = match prop.get("type") {
        Some(Value::String(t)) => vec![t.as_str()],
        Some(Value::Array(ts)) => ts.iter().filter_map(Value::as_str).collect(),
        _ => vec![],
    };
    if !types.is_empty() && !types.iter().any(|t| type_matches(t, v)) {
        return Err(OptionsError::WrongType {
            key: key.into(),
            expected: types.join(" or "),
            got: describe(v),
        });
    }
    if let Some(allowed) = prop.get("enum").and_then(Value::as_array) {
        if !allowed.contains(v) {
            let list: Vec<String> = allowed.iter().map(Value::to_string).collect();
            return Err(OptionsError::OutOfRange {
                key: key.into(),
                message: format!("expected one of {}, got {v}", list.join(", ")),
            });
        }
    }
    if let (Some(x), Some(min)) = (v.as_f64(), prop.get("minimum").and_then(Value::as_f64)) {
        if x < min {
            return Err(OptionsError::OutOfRange {
                key: key.into(),
                message: format!("must be >= {min}, got {v}"),
            });
        }
    }
    if let (Some(x), Some(max)) = (v.as_f64(), prop.get("maximum").and_then(Value::as_f64)) {
        if x > max {
            return Err(OptionsError::OutOfRange {
                key: key.into(),
                message: format!("must be <= {max}, got {v}"),
            });
        }
    }
    // Variants of a schemars enum with doc comments come as `oneOf` of `const`s.
    if let Some(variants) = prop.get("oneOf").and_then(Value::as_array) {
        let consts: Vec<&Value> = variants
            .iter()
            .filter_map(|s| resolve_ref(root, s).get("const"))
            .collect();
        if consts.len() == variants.len() && !consts.contains(&v) {
            let list: Vec<String> = consts.iter().map(|c| c.to_string()).collect();
            return Err(OptionsError::OutOfRange {
                key: key.into(),
                message: format!("expected one of {}, got {v}", list.join(", ")),
            });
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    /// What schemars emits for a flat `#[serde(default, deny_unknown_fields)]` struct.
    fn schema() -> Value {
        #[derive(serde::Deserialize, serde::Serialize, schemars::JsonSchema)]
        #[serde(default, deny_unknown_fields)]
        #[allow(dead_code)]
        struct Opts {
            /// Samples per prompt.
            k: u32,
            /// A switch.
            anchored_rejection: bool,
            /// A ratio.
            beta: f64,
            /// A name.
            mode: String,
            /// An optional value.
            limit: Option<u32>,
            /// An enum.
            kind: Kind,
        }
        #[derive(serde::Deserialize, serde::Serialize, schemars::JsonSchema, Default)]
        #[serde(rename_all = "snake_case")]
        enum Kind {
            #[default]
            Fast,
            Slow,
        }
        impl Default for Opts {
            fn default() -> Self {
                Opts {
                    k: 4,
                    anchored_rejection: true,
                    beta: 0.1,
                    mode: "x".into(),
                    limit: None,
                    kind: Kind::Fast,
                }
            }
        }
        serde_json::to_value(schemars::schema_for!(Opts)).unwrap()
    }

    #[test]
    fn set_flags_parse_json_or_string() {
        let m =
            parse_set_flags(&["k=4", "a=false", "b=0.5", "mode=fast", "q=\"7\"", "e="]).unwrap();
        assert_eq!(
            Value::Object(m),
            json!({"k": 4, "a": false, "b": 0.5, "mode": "fast", "q": "7", "e": ""})
        );
        assert_eq!(
            parse_set_flags(&["k"]),
            Err(OptionsError::BadFlag("k".into()))
        );
        assert_eq!(
            parse_set_flags(&["=1"]),
            Err(OptionsError::BadFlag("=1".into()))
        );
        assert_eq!(
            parse_set_flags(&["k=1", "k=2"]),
            Err(OptionsError::Duplicate("k".into()))
        );
    }

    #[test]
    fn defaults_and_names_come_from_the_schema() {
        let s = schema();
        assert_eq!(
            option_names(&s),
            ["anchored_rejection", "beta", "k", "kind", "limit", "mode"]
        );
        let d = schema_defaults(&s);
        assert_eq!(d["k"], json!(4));
        assert_eq!(d["anchored_rejection"], json!(true));
    }

    fn check(flags: &[&str]) -> Result<(), String> {
        let m = parse_set_flags(flags).unwrap();
        validate_options(&schema(), &m).map_err(|e| e.to_string())
    }

    #[test]
    fn validation_table() {
        let table: &[(&[&str], Result<(), &str>)] = &[
            (&["k=7", "anchored_rejection=false", "beta=1", "mode=slow"], Ok(())),
            (&["limit=null"], Ok(())),
            (&["limit=3"], Ok(())),
            (&["kind=slow"], Ok(())),
            (&["bogus=1"], Err("unknown option `bogus`; valid options: anchored_rejection, beta, k, kind, limit, mode (run settings such as `dpo.beta` are set with -c KEY=VALUE)")),
            (&["k=abc"], Err("option `k` expects integer, got string \"abc\"")),
            (&["k=1.5"], Err("option `k` expects integer, got number 1.5")),
            (&["k=-1"], Err("option `k`: must be >= 0, got -1")),
            (&["anchored_rejection=yes"], Err("option `anchored_rejection` expects boolean, got string \"yes\"")),
            (&["beta=true"], Err("option `beta` expects number, got boolean true")),
            (&["mode=3"], Err("option `mode` expects string, got integer 3")),
            (&["limit=x"], Err("option `limit` expects integer or null, got string \"x\"")),
            (&["kind=medium"], Err("option `kind`: expected one of \"fast\", \"slow\", got \"medium\"")),
        ];
        for (flags, want) in table {
            assert_eq!(
                check(flags),
                want.map_err(str::to_string),
                "flags {flags:?}"
            );
        }
    }
}
