//! The one error type a tool call can end with (contract §2, §8.2).

use serde_json::{Map, Value, json};

/// The stable error codes of the contract (§2, §8.2), as the wire spells
/// them in `error.code`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Code {
    InvalidArgument,
    NotFound,
    AmbiguousCellId,
    OutsideRoot,
    InvalidNotebook,
    Exists,
    Locked,
    VersionConflict,
    NotDeleted,
    TooLarge,
    Unavailable,
    Internal,
}

impl Code {
    pub const ALL: [Code; 12] = [
        Code::InvalidArgument,
        Code::NotFound,
        Code::AmbiguousCellId,
        Code::OutsideRoot,
        Code::InvalidNotebook,
        Code::Exists,
        Code::Locked,
        Code::VersionConflict,
        Code::NotDeleted,
        Code::TooLarge,
        Code::Unavailable,
        Code::Internal,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Code::InvalidArgument => "invalid_argument",
            Code::NotFound => "not_found",
            Code::AmbiguousCellId => "ambiguous_cell_id",
            Code::OutsideRoot => "outside_root",
            Code::InvalidNotebook => "invalid_notebook",
            Code::Exists => "exists",
            Code::Locked => "locked",
            Code::VersionConflict => "version_conflict",
            Code::NotDeleted => "not_deleted",
            Code::TooLarge => "too_large",
            Code::Unavailable => "unavailable",
            Code::Internal => "internal",
        }
    }
}

impl std::fmt::Display for Code {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Tests and callers reading answers compare with the wire spelling.
impl PartialEq<&str> for Code {
    fn eq(&self, other: &&str) -> bool {
        self.as_str() == *other
    }
}

/// A refused call: a stable `code`, a `message` that says what to do next,
/// and code-specific details that sit beside them in `error`.
#[derive(Debug, Clone, PartialEq)]
pub struct ToolError {
    pub code: Code,
    pub message: String,
    pub details: Map<String, Value>,
}

impl ToolError {
    pub fn new(code: Code, message: impl Into<String>) -> ToolError {
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
        ToolError::new(Code::InvalidArgument, message)
            .with("argument", argument)
            .with("expected", expected.into())
    }

    pub fn not_found(what: &str, message: impl Into<String>) -> ToolError {
        ToolError::new(Code::NotFound, message).with("what", what)
    }

    pub fn internal(message: impl Into<String>) -> ToolError {
        ToolError::new(Code::Internal, message)
    }

    pub fn too_large(what: &str, limit: u64, actual: u64) -> ToolError {
        ToolError::new(
            Code::TooLarge,
            format!("{what} is {actual}, over the limit of {limit}; send less at once"),
        )
        .with("limit", limit)
        .with("actual", actual)
    }

    /// The `error` object of `structuredContent`.
    pub fn to_json(&self) -> Value {
        let mut obj = Map::new();
        obj.insert("code".into(), json!(self.code.as_str()));
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
