//! Reading tool arguments tolerantly (contract §2, §8.1).
//!
//! Each tool declares its arguments as a struct; its JSON schema (the one
//! agents see) also drives a normalising pass before serde: `null` means
//! absent, a boolean or number sent as a string is converted, an array sent
//! as a JSON string is parsed (a bare string becomes a one-element list),
//! an object sent as a JSON string is parsed, and unknown names are refused
//! naming the allowed ones. Every fault is an `invalid_argument` result,
//! never a JSON-RPC error.

use rmcp::model::JsonObject;
use schemars::JsonSchema;
use serde::de::DeserializeOwned;
use serde_json::{Map, Value};

use crate::error::{Code, ToolError, quote};

pub fn parse<T: DeserializeOwned + JsonSchema + 'static>(raw: JsonObject) -> Result<T, ToolError> {
    let schema = rmcp::handler::server::common::schema_for_type::<T>();
    let empty = Map::new();
    let props = schema
        .get("properties")
        .and_then(Value::as_object)
        .unwrap_or(&empty);
    let allowed: Vec<&String> = props.keys().collect();
    let mut out = Map::new();
    for (name, value) in raw {
        if value.is_null() {
            continue;
        }
        let Some(prop) = props.get(&name) else {
            return Err(ToolError::new(
                Code::InvalidArgument,
                format!(
                    "unknown argument {}; this tool takes: {}",
                    quote(&name),
                    allowed
                        .iter()
                        .map(|s| s.as_str())
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
            )
            .with("argument", name)
            .with(
                "allowed",
                allowed
                    .iter()
                    .map(|s| Value::from(s.as_str()))
                    .collect::<Vec<_>>(),
            ));
        };
        out.insert(name.clone(), coerce(&name, value, prop, &schema)?);
    }
    serde_json::from_value(Value::Object(out)).map_err(|e| {
        let msg = e.to_string();
        let argument = msg
            .split('`')
            .nth(1)
            .filter(|_| msg.starts_with("missing field"))
            .unwrap_or("arguments")
            .to_owned();
        if msg.starts_with("missing field") {
            ToolError::invalid(
                &argument,
                "a value",
                format!("missing required argument {}", quote(&argument)),
            )
        } else {
            ToolError::invalid(
                &argument,
                "see the tool's input schema",
                format!("invalid arguments: {msg}"),
            )
        }
    })
}

/// The non-null JSON types a schema property accepts.
fn types_of(prop: &Value) -> Vec<&str> {
    match prop.get("type") {
        Some(Value::String(t)) => vec![t.as_str()],
        Some(Value::Array(ts)) => ts
            .iter()
            .filter_map(Value::as_str)
            .filter(|t| *t != "null")
            .collect(),
        _ => prop
            .get("anyOf")
            .and_then(Value::as_array)
            .map(|alts| alts.iter().flat_map(types_of).collect())
            .unwrap_or_default(),
    }
}

fn coerce(name: &str, value: Value, prop: &Value, root: &JsonObject) -> Result<Value, ToolError> {
    let types = types_of(prop);
    if types.is_empty() {
        return Ok(value);
    }
    let wrong = |expected: &str| {
        ToolError::invalid(
            name,
            expected,
            format!("argument {} must be {expected}", quote(name)),
        )
    };
    let accepts = |t: &str| types.contains(&t);
    Ok(match value {
        Value::String(s) if !accepts("string") => {
            if accepts("boolean") {
                match s.trim() {
                    "true" => Value::Bool(true),
                    "false" => Value::Bool(false),
                    _ => return Err(wrong("a boolean")),
                }
            } else if accepts("integer") {
                let n: i64 = s.trim().parse().map_err(|_| wrong("an integer"))?;
                Value::from(n)
            } else if accepts("number") {
                let n: f64 = s.trim().parse().map_err(|_| wrong("a number"))?;
                serde_json::Number::from_f64(n)
                    .map(Value::Number)
                    .ok_or_else(|| wrong("a number"))?
            } else if accepts("array") {
                let arr = match serde_json::from_str::<Value>(&s) {
                    Ok(Value::Array(a)) => a,
                    _ => vec![Value::String(s)],
                };
                coerce_items(name, arr, prop, root)?
            } else if accepts("object") {
                match serde_json::from_str::<Value>(&s) {
                    Ok(v @ Value::Object(_)) => v,
                    _ => return Err(wrong("a JSON object")),
                }
            } else {
                Value::String(s)
            }
        }
        Value::Array(a) if accepts("array") => coerce_items(name, a, prop, root)?,
        Value::Number(n)
            if accepts("integer") && !accepts("number") && !n.is_i64() && !n.is_u64() =>
        {
            match n.as_f64() {
                Some(f) if f.fract() == 0.0 && f.abs() < 9.0e15 => Value::from(f as i64),
                _ => return Err(wrong("an integer")),
            }
        }
        Value::Bool(_) if !accepts("boolean") => return Err(wrong(expected_name(&types))),
        Value::Number(_) if !accepts("integer") && !accepts("number") => {
            return Err(wrong(expected_name(&types)));
        }
        Value::Object(_) if !accepts("object") && prop.get("$ref").is_none() => {
            return Err(wrong(expected_name(&types)));
        }
        Value::Array(_) => return Err(wrong(expected_name(&types))),
        v => v,
    })
}

fn expected_name(types: &[&str]) -> &'static str {
    match types.first().copied() {
        Some("string") => "a string",
        Some("integer") => "an integer",
        Some("number") => "a number",
        Some("boolean") => "a boolean",
        Some("array") => "a list",
        Some("object") => "an object",
        _ => "a valid value",
    }
}

/// Items of a list of objects may arrive as JSON strings, and their fields
/// get the same tolerance as top-level arguments.
fn coerce_items(
    name: &str,
    items: Vec<Value>,
    prop: &Value,
    root: &JsonObject,
) -> Result<Value, ToolError> {
    let item_schema = prop.get("items").map(|i| resolve(i, root));
    let objects = item_schema.is_some_and(|s| types_of(s).contains(&"object"));
    let item_props = item_schema
        .and_then(|s| s.get("properties"))
        .and_then(Value::as_object);
    let mut out = Vec::with_capacity(items.len());
    for item in items {
        let item = match item {
            Value::String(s) if objects => match serde_json::from_str::<Value>(&s) {
                Ok(v @ Value::Object(_)) => v,
                _ => {
                    return Err(ToolError::invalid(
                        name,
                        "a list of objects",
                        format!("every item of {} must be an object", quote(name)),
                    ));
                }
            },
            v => v,
        };
        out.push(match (item, item_props) {
            (Value::Object(fields), Some(props)) => {
                let mut m = Map::new();
                for (k, v) in fields {
                    if v.is_null() {
                        continue;
                    }
                    let v = match props.get(&k) {
                        Some(p) => coerce(&format!("{name}.{k}"), v, p, root)?,
                        None => v,
                    };
                    m.insert(k, v);
                }
                Value::Object(m)
            }
            (v, _) => v,
        });
    }
    Ok(Value::Array(out))
}

fn resolve<'a>(schema: &'a Value, root: &'a JsonObject) -> &'a Value {
    match schema.get("$ref").and_then(Value::as_str) {
        Some(r) => r
            .strip_prefix("#/$defs/")
            .and_then(|name| root.get("$defs")?.get(name))
            .unwrap_or(schema),
        None => schema,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::Deserialize;
    use serde_json::json;

    #[derive(Debug, Deserialize, JsonSchema, PartialEq)]
    struct Item {
        source: String,
    }

    #[derive(Debug, Deserialize, JsonSchema, PartialEq)]
    struct A {
        path: String,
        force: Option<bool>,
        limit: Option<u64>,
        cell_ids: Option<Vec<String>>,
        items: Option<Vec<Item>>,
        metadata: Option<Map<String, Value>>,
    }

    fn obj(v: Value) -> JsonObject {
        v.as_object().unwrap().clone()
    }

    #[test]
    fn tolerates_known_client_quirks() {
        let a: A = parse(obj(json!({
            "path": "n.ipynb",
            "force": "true",
            "limit": "12",
            "cell_ids": "[\"a\",\"b\"]",
            "items": ["{\"source\":\"x\"}"],
            "metadata": "{\"k\":1}",
        })))
        .unwrap();
        assert_eq!(a.force, Some(true));
        assert_eq!(a.limit, Some(12));
        assert_eq!(a.cell_ids, Some(vec!["a".into(), "b".into()]));
        assert_eq!(a.items, Some(vec![Item { source: "x".into() }]));
        assert_eq!(a.metadata.unwrap()["k"], json!(1));
    }

    #[test]
    fn bare_string_is_a_one_element_list_and_null_is_absent() {
        let a: A = parse(obj(
            json!({"path": "n.ipynb", "cell_ids": "abcd", "force": null}),
        ))
        .unwrap();
        assert_eq!(a.cell_ids, Some(vec!["abcd".into()]));
        assert_eq!(a.force, None);
    }

    #[test]
    fn unknown_and_missing_arguments_are_invalid() {
        let e = parse::<A>(obj(json!({"path": "n", "bogus": 1}))).unwrap_err();
        assert_eq!(e.code, "invalid_argument");
        assert_eq!(e.details["argument"], json!("bogus"));
        assert!(
            e.details["allowed"]
                .as_array()
                .unwrap()
                .contains(&json!("force"))
        );
        let e = parse::<A>(obj(json!({}))).unwrap_err();
        assert_eq!(e.details["argument"], json!("path"));
        let e = parse::<A>(obj(json!({"path": "n", "force": "yes"}))).unwrap_err();
        assert_eq!(e.details["argument"], json!("force"));
        let e = parse::<A>(obj(json!({"path": "n", "limit": -1}))).unwrap_err();
        assert_eq!(e.code, "invalid_argument");
    }
}
