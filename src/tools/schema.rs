//! The schemas agents read. Every agent pays for `tools/list` in its
//! context on every turn, so each tool's schemas are derived from its
//! argument and result structs (schemars) and then made lean, without
//! losing anything a client validates or an agent needs:
//!
//! - no `$schema` (MCP's default dialect is the one schemars writes), no
//!   `format` and no bounds the Rust type implies (`uint64` ⇒ ≥ 0);
//! - an optional argument is typed as what to send (`"string"`, not
//!   `["string", "null"]`: `null` counts as absent anyway); an optional
//!   result field that is omitted when absent is typed likewise, while one
//!   written as `null` keeps `"null"`;
//! - a shape used once is written in place; a shape used more than once in
//!   one schema is defined once under `$defs` and referred to;
//! - descriptions come only from doc comments on fields, so a field whose
//!   name and tool description say enough has none; the server's
//!   instructions say once what every tool shares.
//!
//! [`finish`] adds what every result may carry beside its own fields: the
//! `error` of a refusal, and for writes `changed`, `current_version`,
//! `client_name` and, where `force` exists, `overrode_lock(s)`.

use std::collections::HashMap;
use std::sync::Arc;

use rmcp::handler::server::common::{schema_for_output, schema_for_type};
use rmcp::model::{JsonObject, Tool};
use schemars::JsonSchema;
use schemars::generate::SchemaSettings;
use serde_json::{Map, Value, json};

use super::common::Overridden;

/// A tool's input schema.
pub fn input<T: JsonSchema + 'static>() -> Arc<JsonObject> {
    Arc::new(lean(schema_for_type::<T>().as_ref().clone(), false))
}

/// A tool's output schema, before [`finish`]. Nothing is required at the
/// top: a refusal carries only `error`.
pub fn output<T: JsonSchema + 'static>() -> Arc<JsonObject> {
    let mut schema = lean(schema_for_output::<T>().as_ref().clone(), true);
    schema.remove("required");
    Arc::new(schema)
}

/// Adds the fields every result shares to `tool`'s output schema, by what
/// the tool is: any result may be a refusal; a write (not read-only) says
/// whether it changed anything and who it acted as; a write that takes
/// `force` says whose lock it went past.
pub fn finish(tool: &mut Tool) {
    let Some(out) = tool.output_schema.as_mut() else {
        return;
    };
    let out = Arc::make_mut(out);
    // A refusal's `error` names only what every error has: its fields are
    // the same for every tool (docs/tools.md), and spelling them out in
    // each of the tools would cost every agent's context ~2.5 KB.
    let mut extra = vec![(
        "error",
        json!({"type": "object", "required": ["code", "message"]}),
    )];
    let writes = !tool
        .annotations
        .as_ref()
        .and_then(|a| a.read_only_hint)
        .unwrap_or(false);
    if writes {
        extra.push(("changed", json!({"type": "boolean"})));
        extra.push(("current_version", json!({"type": "integer"})));
        extra.push(("client_name", json!({"type": "string"})));
    }
    // Only a destructive write can go past a lock, and only with `force`
    // (copy_cells shares move_cells' arguments but never overrides).
    let destructive = tool
        .annotations
        .as_ref()
        .and_then(|a| a.destructive_hint)
        .unwrap_or(false);
    let forces = tool
        .input_schema
        .get("properties")
        .and_then(|p| p.get("force"))
        .is_some();
    if writes && destructive && forces {
        extra.push(("overrode_lock", json!({"type": "string"})));
        extra.push(("overrode_locks", shape::<Vec<Overridden>>()));
    }
    if let Some(Value::Object(props)) = out.get_mut("properties") {
        for (name, schema) in extra {
            props.entry(name).or_insert(schema);
        }
    }
}

/// The lean schema of a part of a result.
fn shape<T: JsonSchema>() -> Value {
    let root = SchemaSettings::draft2020_12()
        .for_serialize()
        .into_generator()
        .into_root_schema_for::<T>();
    match serde_json::to_value(root) {
        Ok(Value::Object(m)) => Value::Object(lean(m, true)),
        _ => Value::Bool(true),
    }
}

/// The lean form of a schemars root schema (see the module docs).
fn lean(mut root: JsonObject, output: bool) -> JsonObject {
    let defs = match root.remove("$defs") {
        Some(Value::Object(defs)) => defs,
        _ => Map::new(),
    };
    let mut uses = HashMap::new();
    count_refs(&Value::Object(root.clone()), &mut uses);
    for def in defs.values() {
        count_refs(def, &mut uses);
    }
    let shared = |name: &str| uses.get(name).copied().unwrap_or(0) > 1;
    let mut kept = Map::new();
    for (name, def) in &defs {
        if shared(name) {
            let mut def = inline(def.clone(), &defs, &shared);
            if let Value::Object(d) = &mut def {
                d.remove("description");
            }
            strip(&mut def, output, true);
            kept.insert(name.clone(), def);
        }
    }
    // The argument or result type's own doc is for Rust readers: the tool
    // description speaks to the agent.
    root.remove("description");
    let mut value = inline(Value::Object(root), &defs, &shared);
    strip(&mut value, output, true);
    let Value::Object(mut root) = value else {
        return JsonObject::new();
    };
    if !kept.is_empty() {
        root.insert("$defs".into(), Value::Object(kept));
    }
    root
}

fn def_name(r: &str) -> Option<&str> {
    r.strip_prefix("#/$defs/")
}

fn count_refs(v: &Value, uses: &mut HashMap<String, usize>) {
    match v {
        Value::Object(m) => {
            if let Some(name) = m.get("$ref").and_then(Value::as_str).and_then(def_name) {
                *uses.entry(name.to_owned()).or_default() += 1;
            }
            m.values().for_each(|x| count_refs(x, uses));
        }
        Value::Array(a) => a.iter().for_each(|x| count_refs(x, uses)),
        _ => {}
    }
}

/// Writes each reference to a definition used once in its place; the
/// reference's own keywords (a field's description) win over the
/// definition's.
fn inline(v: Value, defs: &Map<String, Value>, shared: &dyn Fn(&str) -> bool) -> Value {
    match v {
        Value::Object(mut m) => {
            let target = m
                .get("$ref")
                .and_then(Value::as_str)
                .and_then(def_name)
                .filter(|name| !shared(name))
                .and_then(|name| defs.get(name))
                .cloned();
            if let Some(def) = target {
                m.remove("$ref");
                let mut merged = match inline(def, defs, shared) {
                    Value::Object(d) => d,
                    other => return other,
                };
                // The type's own doc is for Rust readers; the field's
                // description, if any, is what the agent needs.
                merged.remove("description");
                for (k, x) in m {
                    merged.insert(k, inline(x, defs, shared));
                }
                return Value::Object(merged);
            }
            Value::Object(
                m.into_iter()
                    .map(|(k, x)| (k, inline(x, defs, shared)))
                    .collect(),
            )
        }
        Value::Array(a) => Value::Array(a.into_iter().map(|x| inline(x, defs, shared)).collect()),
        other => other,
    }
}

/// The bounds an integer format implies, which the type says already.
fn implied_bounds(format: &str) -> (Option<i64>, Option<u64>) {
    match format {
        "uint8" => (Some(0), Some(u8::MAX.into())),
        "uint16" => (Some(0), Some(u16::MAX.into())),
        "uint32" => (Some(0), Some(u32::MAX.into())),
        "uint" | "uint64" => (Some(0), None),
        _ => (None, None),
    }
}

/// Strips what an agent does not need from one schema and its children.
/// `may_be_absent`: the schema is of a property its object does not
/// require, so `null` need not be allowed (an argument: `null` means
/// absent; a result field: omitted, never written as `null`).
fn strip(v: &mut Value, output: bool, may_be_absent: bool) {
    let Value::Object(m) = v else {
        return;
    };
    m.remove("$schema");
    m.remove("title");
    if let Some(Value::String(format)) = m.remove("format") {
        let (min, max) = implied_bounds(&format);
        if min.is_some() && m.get("minimum").and_then(Value::as_i64) == min {
            m.remove("minimum");
        }
        if max.is_some() && m.get("maximum").and_then(Value::as_u64) == max {
            m.remove("maximum");
        }
    }
    if m.get("items") == Some(&Value::Bool(true)) {
        m.remove("items");
    }
    if m.get("additionalProperties") == Some(&Value::Bool(true)) {
        m.remove("additionalProperties");
    }
    let drop_null = !output || may_be_absent;
    if drop_null {
        if let Some(Value::Array(types)) = m.get("type") {
            let kept: Vec<Value> = types
                .iter()
                .filter(|t| t.as_str() != Some("null"))
                .cloned()
                .collect();
            let single = (kept.len() == 1).then(|| kept[0].clone());
            m.insert("type".into(), single.unwrap_or(Value::Array(kept)));
        }
        // `Option<Struct>`: `anyOf: [struct, {type: null}]`.
        if let Some(Value::Array(alts)) = m.get("anyOf") {
            let kept: Vec<Value> = alts
                .iter()
                .filter(|a| a.get("type").and_then(Value::as_str) != Some("null"))
                .cloned()
                .collect();
            if let [only] = kept.as_slice() {
                let only = only.clone();
                m.remove("anyOf");
                if let Value::Object(o) = only {
                    for (k, x) in o {
                        m.entry(k).or_insert(x);
                    }
                }
            } else {
                m.insert("anyOf".into(), Value::Array(kept));
            }
        }
    }
    let required: Vec<String> = m
        .get("required")
        .and_then(Value::as_array)
        .map(|r| {
            r.iter()
                .filter_map(Value::as_str)
                .map(str::to_owned)
                .collect()
        })
        .unwrap_or_default();
    if let Some(Value::Object(props)) = m.get_mut("properties") {
        for (name, p) in props.iter_mut() {
            strip(p, output, !required.contains(name));
        }
    }
    for key in ["items", "additionalProperties"] {
        if let Some(x) = m.get_mut(key) {
            strip(x, output, false);
        }
    }
    for key in ["anyOf", "oneOf", "allOf"] {
        if let Some(Value::Array(alts)) = m.get_mut(key) {
            alts.iter_mut().for_each(|a| strip(a, output, false));
        }
    }
    // Read top-down: what it is, then its fields and which are required.
    let mut ordered = Map::new();
    for key in READING_ORDER {
        if let Some(x) = m.remove(*key) {
            ordered.insert((*key).to_owned(), x);
        }
    }
    ordered.append(m);
    *m = ordered;
}

const READING_ORDER: &[&str] = &[
    "description",
    "type",
    "enum",
    "default",
    "minimum",
    "maximum",
    "properties",
    "required",
    "items",
];

#[cfg(test)]
mod tests {
    use super::*;
    use serde::{Deserialize, Serialize};

    #[derive(Deserialize, JsonSchema)]
    #[allow(dead_code)]
    struct Args {
        path: String,
        limit: Option<u64>,
        /// Where to put it.
        at: Option<Place>,
        cells: Option<Vec<Spec>>,
    }

    /// A place (a doc for Rust readers).
    #[derive(Deserialize, JsonSchema)]
    #[allow(dead_code)]
    struct Place {
        index: u32,
    }

    #[derive(Deserialize, JsonSchema)]
    #[allow(dead_code)]
    struct Spec {
        source: String,
    }

    #[derive(Serialize, JsonSchema)]
    struct Out {
        a: Ref,
        b: Option<Ref>,
        #[serde(skip_serializing_if = "Option::is_none")]
        c: Option<Ref>,
        nullable: Option<u64>,
        #[serde(skip_serializing_if = "Option::is_none")]
        omitted: Option<u64>,
        level: u8,
    }

    #[derive(Serialize, JsonSchema)]
    struct Ref {
        path: String,
    }

    #[test]
    fn arguments_are_typed_as_what_to_send_with_single_use_shapes_in_place() {
        let s = Value::Object(input::<Args>().as_ref().clone());
        assert_eq!(
            s,
            json!({
                "type": "object",
                "properties": {
                    "path": {"type": "string"},
                    "limit": {"type": "integer"},
                    "at": {"description": "Where to put it.", "type": "object",
                           "properties": {"index": {"type": "integer"}}, "required": ["index"]},
                    "cells": {"type": "array", "items": {"type": "object",
                              "properties": {"source": {"type": "string"}}, "required": ["source"]}},
                },
                "required": ["path"],
            })
        );
    }

    #[test]
    fn results_keep_null_only_where_it_is_written_and_share_repeated_shapes() {
        let s = Value::Object(output::<Out>().as_ref().clone());
        let props = &s["properties"];
        assert_eq!(props["a"], json!({"$ref": "#/$defs/Ref"}));
        assert_eq!(
            props["b"],
            json!({"anyOf": [{"$ref": "#/$defs/Ref"}, {"type": "null"}]})
        );
        assert_eq!(props["c"], json!({"$ref": "#/$defs/Ref"}));
        assert_eq!(props["nullable"], json!({"type": ["integer", "null"]}));
        assert_eq!(props["omitted"], json!({"type": "integer"}));
        assert_eq!(props["level"], json!({"type": "integer"}));
        assert_eq!(
            s["$defs"]["Ref"],
            json!({"type": "object", "properties": {"path": {"type": "string"}}, "required": ["path"]})
        );
        assert!(s.get("required").is_none(), "a refusal has only error");
        assert!(s.get("$schema").is_none());
    }
}
