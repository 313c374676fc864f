//! Toolsets: named groups of tools a process lists and serves
//! (`serve --toolsets`, `NBLEDGER_TOOLSETS`). An agent that needs only to
//! read and edit pays only for those tools in its context. The store and
//! its rules are the same whatever a process lists; only what its own
//! clients see and may call changes.
//!
//! Which set a tool is in is decided by the `#[tool_router]` block it is
//! written in (`tools/mod.rs`, one block per set).

use std::fmt;
use std::str::FromStr;

use serde_json::json;

use crate::error::{Code, ToolError};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Toolset {
    Read,
    Edit,
    Collab,
    Snapshots,
    Transfer,
    Runs,
    Notebooks,
}

impl Toolset {
    /// Every set, in the order lists and docs show them.
    pub const ALL: [Toolset; 7] = [
        Toolset::Read,
        Toolset::Edit,
        Toolset::Collab,
        Toolset::Snapshots,
        Toolset::Transfer,
        Toolset::Runs,
        Toolset::Notebooks,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Toolset::Read => "read",
            Toolset::Edit => "edit",
            Toolset::Collab => "collab",
            Toolset::Snapshots => "snapshots",
            Toolset::Transfer => "transfer",
            Toolset::Runs => "runs",
            Toolset::Notebooks => "notebooks",
        }
    }

    /// What the set is for, in a few words (usage messages, docs).
    pub fn about(self) -> &'static str {
        match self {
            Toolset::Read => "list, read, outline and search notebooks",
            Toolset::Edit => "create notebooks; insert, update, delete and retype cells",
            Toolset::Collab => "locks, the change feed, cell history, recovering deleted cells",
            Toolset::Snapshots => "named snapshots: take, list, diff, restore",
            Toolset::Transfer => "copy and move cells within or between notebooks",
            Toolset::Runs => "running cells on kernels",
            Toolset::Notebooks => "metadata, rename, replace, diff between notebooks",
        }
    }

    fn bit(self) -> u8 {
        1 << self as u8
    }
}

impl fmt::Display for Toolset {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// The toolsets a process enables.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Toolsets(u8);

impl Toolsets {
    pub fn all() -> Toolsets {
        Toolsets(Toolset::ALL.iter().fold(0, |b, s| b | s.bit()))
    }

    pub fn contains(self, set: Toolset) -> bool {
        self.0 & set.bit() != 0
    }

    pub fn iter(self) -> impl Iterator<Item = Toolset> {
        Toolset::ALL.into_iter().filter(move |s| self.contains(*s))
    }

    /// The refusal of a call to `tool`, which is in `set`, when this
    /// process does not enable that set: the agent learns where the tool
    /// is rather than that it does not exist.
    pub fn refusal(self, tool: &str, set: Toolset) -> ToolError {
        let enabled: Vec<&str> = self.iter().map(Toolset::name).collect();
        ToolError::new(
            Code::InvalidArgument,
            format!(
                "tool {tool} is in toolset {set}, which this server does not enable (it enables: {}); use the tools it lists, or start it with --toolsets (or NBLEDGER_TOOLSETS) including {set}",
                enabled.join(", ")
            ),
        )
        .with("argument", "name")
        .with("toolset", set.name())
        .with("enabled", json!(enabled))
    }
}

impl fmt::Display for Toolsets {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let names: Vec<&str> = self.iter().map(Toolset::name).collect();
        f.write_str(&names.join(","))
    }
}

/// What `--toolsets` accepts, for usage errors.
pub fn usage() -> String {
    let mut s = String::from("the toolsets are (comma-separated; default: all of them):");
    for set in Toolset::ALL {
        s.push_str(&format!("\n  {:<10} {}", set.name(), set.about()));
    }
    s
}

impl FromStr for Toolsets {
    type Err = String;

    /// A comma-separated list of set names, or `all`.
    fn from_str(list: &str) -> Result<Toolsets, String> {
        if list.trim().is_empty() {
            return Err(format!("no toolset named; {}", usage()));
        }
        let mut bits = 0;
        for word in list.split(',').map(str::trim) {
            if word.eq_ignore_ascii_case("all") {
                bits |= Toolsets::all().0;
                continue;
            }
            let set = Toolset::ALL
                .into_iter()
                .find(|s| s.name().eq_ignore_ascii_case(word))
                .ok_or_else(|| format!("unknown toolset {word:?}; {}", usage()))?;
            bits |= set.bit();
        }
        Ok(Toolsets(bits))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lists_parse_with_spaces_case_and_all() {
        let s: Toolsets = " read, Edit ,collab".parse().unwrap();
        assert_eq!(
            s.iter().collect::<Vec<_>>(),
            [Toolset::Read, Toolset::Edit, Toolset::Collab]
        );
        assert_eq!(s.to_string(), "read,edit,collab");
        assert_eq!("all".parse::<Toolsets>().unwrap(), Toolsets::all());
        assert_eq!(
            "transfer,read".parse::<Toolsets>().unwrap().to_string(),
            "read,transfer"
        );
    }

    #[test]
    fn unknown_or_empty_names_are_refused_listing_every_set() {
        let e = "read,locks".parse::<Toolsets>().unwrap_err();
        assert!(e.contains("unknown toolset \"locks\""), "{e}");
        for set in Toolset::ALL {
            assert!(e.contains(set.name()), "{e}");
        }
        assert!("".parse::<Toolsets>().is_err());
        assert!("read,,edit".parse::<Toolsets>().is_err());
    }

    #[test]
    fn a_refusal_names_the_set_that_has_the_tool() {
        let lean: Toolsets = "read,edit".parse().unwrap();
        let e = lean.refusal("lock_cells", Toolset::Collab);
        assert_eq!(e.code, "invalid_argument");
        assert_eq!(e.details["toolset"], json!("collab"));
        assert_eq!(e.details["enabled"], json!(["read", "edit"]));
        assert!(e.message.contains("collab"), "{}", e.message);
    }
}
