//! The one error type a tool call can end with (contract §2, §8.2).

use serde_json::{Map, Value, json};

/// A refused call: a stable `code`, a `message` that says what to do next,
/// and code-specific details that sit beside them in `error`.
#[derive(Debug, Clone, PartialEq)]
pub struct ToolError {
    pub code: &'static str,
    pub message: String,
    pub details: Map<String, Value>,
}

impl ToolError {
    pub fn new(code: &'static str, message: impl Into<String>) -> ToolError {
        ToolError {
            code,
            message: message.into(),
            details: Map::new(),
        }
    }

    pub fn with(mut self, key: &str, value: impl Into<Value>) -> ToolError {
        self.details.insert(key.to_owned(), value.into());
        self
    }

    /// `invalid_argument` naming the argument and what was expected.
    pub fn invalid(
        argument: &str,
        expected: impl Into<String>,
        message: impl Into<String>,
    ) -> ToolError {
        ToolError::new("invalid_argument", message)
            .with("argument", argument)
            .with("expected", expected.into())
    }

    pub fn not_found(what: &str, message: impl Into<String>) -> ToolError {
        ToolError::new("not_found", message).with("what", what)
    }

    pub fn internal(message: impl Into<String>) -> ToolError {
        ToolError::new("internal", message)
    }

    pub fn too_large(what: &str, limit: u64, actual: u64) -> ToolError {
        ToolError::new(
            "too_large",
            format!("{what} is {actual}, over the limit of {limit}; send less at once"),
        )
        .with("limit", limit)
        .with("actual", actual)
    }

    /// The `error` object of `structuredContent`.
    pub fn to_json(&self) -> Value {
        let mut obj = Map::new();
        obj.insert("code".into(), json!(self.code));
        obj.insert("message".into(), json!(self.message));
        for (k, v) in &self.details {
            obj.insert(k.clone(), v.clone());
        }
        Value::Object(obj)
    }
}

impl std::fmt::Display for ToolError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.code, self.message)
    }
}

impl std::error::Error for ToolError {}

/// Quotes user text for a message: escaped and cut to 80 characters (§8.2).
pub fn quote(s: &str) -> String {
    let cut: String = s.chars().take(80).collect();
    let mut q = format!("{cut:?}");
    if s.chars().count() > 80 {
        q.push('…');
    }
    q
}
