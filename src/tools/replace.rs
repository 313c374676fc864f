//! `replace_in_notebook` (§10): a regex search and replace over cell
//! sources, as one event over exactly the cells it changes, all or
//! nothing. Only those cells are checked for locks and `expected_version`;
//! `dry_run` answers the same diffs and appends nothing.

use regex::Regex;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use similar::TextDiff;

use super::common::{
    check_count, check_locks, check_source, find_cell, pattern, to_map, type_filter,
};
use super::edit::{check_expected, editable, existing};
use crate::engine::{Actor, Engine, Plan, Presence};
use crate::error::ToolError;
use crate::events::{CellType, Change};
use crate::projections::NotebookState;

#[derive(Debug, Deserialize, JsonSchema)]
pub struct ReplaceArgs {
    pub path: String,
    /// Over each whole source; ^ $ match at line ends.
    pub pattern: String,
    /// $1, ${name}: groups; $$: a $.
    pub replacement: String,
    #[schemars(extend("default" = true))]
    pub case_sensitive: Option<bool>,
    pub cell_ids: Option<Vec<String>>,
    pub cell_id: Option<String>,
    #[schemars(extend("enum" = ["all", "code", "markdown", "raw"], "default" = "all"))]
    pub cell_type: Option<String>,
    pub max_replacements: Option<u64>,
    #[schemars(extend("default" = false))]
    pub dry_run: Option<bool>,
    pub expected_version: Option<u64>,
    #[schemars(extend("default" = false))]
    pub force: Option<bool>,
    pub client_name: Option<String>,
    pub request_id: Option<String>,
}

#[derive(Debug, Clone, Serialize, JsonSchema)]
pub struct Replaced {
    pub cell_id: String,
    pub count: usize,
    pub diff: String,
}

#[derive(Debug, Serialize, JsonSchema)]
pub struct ReplaceOut {
    pub cells: Vec<Replaced>,
    pub replaced: usize,
    pub version: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub dry_run: Option<bool>,
}

/// One cell's new source and how many matches it replaced.
struct Edit {
    index: usize,
    after: String,
    count: usize,
}

/// Replaces up to `budget` matches in `source`: the new text and the count.
fn replace_some(re: &Regex, source: &str, replacement: &str, budget: usize) -> (String, usize) {
    let count = re.find_iter(source).take(budget).count();
    if count == 0 {
        return (source.to_owned(), 0);
    }
    (re.replacen(source, count, replacement).into_owned(), count)
}

/// The edits over `targets` (positions, in notebook order), within the
/// total `budget`. A match whose replacement gives the same text counts
/// toward nothing: a cell whose source stays equal is not changed.
fn plan_edits(
    nb: &NotebookState,
    targets: &[usize],
    re: &Regex,
    replacement: &str,
    mut budget: usize,
) -> Vec<Edit> {
    let mut edits = Vec::new();
    for &i in targets {
        if budget == 0 {
            break;
        }
        let source = &nb.cells[i].cell.source;
        let (after, count) = replace_some(re, source, replacement, budget);
        if count == 0 || after == *source {
            continue;
        }
        budget -= count;
        edits.push(Edit {
            index: i,
            after,
            count,
        });
    }
    edits
}

fn unified(id: &str, before: &str, after: &str) -> String {
    TextDiff::from_lines(before, after)
        .unified_diff()
        .context_radius(3)
        .header(&format!("{id} (before)"), &format!("{id} (after)"))
        .to_string()
}

/// The cells to search, in notebook order: the named ones (each must be
/// editable), or every code, markdown and raw cell, narrowed by type.
fn targets(
    nb: &NotebookState,
    named: Option<&[String]>,
    filter: Option<&CellType>,
) -> Result<Vec<usize>, ToolError> {
    let mut out: Vec<usize> = match named {
        Some(ids) => {
            let mut v = Vec::with_capacity(ids.len());
            for id in ids {
                let i = find_cell(nb, "cell_ids", Some(id), None)?;
                editable(nb, i)?;
                v.push(i);
            }
            v
        }
        None => (0..nb.cells.len())
            .filter(|&i| !matches!(nb.cells[i].cell.cell_type, CellType::Other(_)))
            .collect(),
    };
    out.retain(|&i| filter.is_none_or(|t| *t == nb.cells[i].cell.cell_type));
    out.sort_unstable();
    out.dedup();
    Ok(out)
}

pub fn replace_in_notebook(
    engine: &Engine,
    a: ReplaceArgs,
    actor: &Actor,
) -> Result<(String, Map<String, Value>), ToolError> {
    let re = pattern(&a.pattern, a.case_sensitive.unwrap_or(true), true)?;
    let filter = type_filter(a.cell_type.as_deref())?;
    let budget = match a.max_replacements {
        Some(0) => {
            return Err(ToolError::invalid(
                "max_replacements",
                "at least 1",
                "max_replacements is 0; leave it out to replace every match",
            ));
        }
        Some(n) => usize::try_from(n).unwrap_or(usize::MAX),
        None => usize::MAX,
    };
    let named: Option<Vec<String>> = match (a.cell_ids.clone(), a.cell_id.clone()) {
        (Some(_), Some(_)) => {
            return Err(ToolError::invalid(
                "cell_id",
                "cell_id or cell_ids, not both",
                "give either cell_id or cell_ids, not both",
            ));
        }
        (Some(ids), None) if ids.is_empty() => {
            return Err(ToolError::invalid(
                "cell_ids",
                "a non-empty list",
                "cell_ids is empty; leave it out to search every cell",
            ));
        }
        (ids, one) => ids.or(one.map(|id| vec![id])),
    };
    let dry_run = a.dry_run.unwrap_or(false);
    let who = actor.clone();
    let res = engine.write(
        &a.path,
        actor,
        Presence::Existing,
        "replace_in_notebook",
        move |nb, np, now| {
            let nb = existing(nb)?;
            let targets = targets(nb, named.as_deref(), filter.as_ref())?;
            let edits = plan_edits(nb, &targets, &re, &a.replacement, budget);
            let cells: Vec<Replaced> = edits
                .iter()
                .map(|e| {
                    let c = &nb.cells[e.index].cell;
                    Replaced {
                        cell_id: c.id.clone(),
                        count: e.count,
                        diff: unified(&c.id, &c.source, &e.after),
                    }
                })
                .collect();
            let replaced: usize = edits.iter().map(|e| e.count).sum();
            let ids: Vec<String> = cells.iter().map(|c| c.cell_id.clone()).collect();
            let result = Box::new(move |version, _: &NotebookState| {
                to_map(&ReplaceOut {
                    cells,
                    replaced,
                    version,
                    dry_run: dry_run.then_some(true),
                })
            });
            if dry_run || edits.is_empty() {
                return Ok(Plan {
                    operation: "replace_in_notebook",
                    overrode_locks: Vec::new(),
                    summary: String::new(),
                    changes: Vec::new(),
                    cell_ids: ids,
                    result,
                });
            }
            // Only the cells it changes are checked (§10).
            check_count(edits.len())?;
            let overrode = check_locks(nb, &ids, &who, a.force.unwrap_or(false), now)?;
            for e in &edits {
                check_expected(nb, e.index, a.expected_version)?;
            }
            for e in &edits {
                check_source(&e.after)?;
            }
            let changes = edits
                .into_iter()
                .map(|e| {
                    let c = &nb.cells[e.index].cell;
                    Change::SourceSet {
                        path: np.rel.clone(),
                        cell_id: c.id.clone(),
                        before: c.source.clone(),
                        after: e.after,
                    }
                })
                .collect();
            Ok(Plan {
                operation: "replace_in_notebook",
                overrode_locks: overrode,
                summary: format!(
                    "replaced {replaced} match(es) of {} in {} cell(s)",
                    crate::error::quote(&a.pattern),
                    ids.len()
                ),
                changes,
                cell_ids: ids,
                result,
            })
        },
    )?;
    let n = res["replaced"].as_u64().unwrap_or(0);
    let cells = res["cells"].as_array().map_or(0, Vec::len);
    let summary = if dry_run {
        format!("dry run: would replace {n} match(es) in {cells} cell(s); nothing changed")
    } else if n == 0 {
        "no match; nothing changed".to_owned()
    } else {
        format!("replaced {n} match(es) in {cells} cell(s)")
    };
    Ok((summary, res))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn capture_groups_and_the_budget_apply() {
        let re = Regex::new(r"(?m)(?P<n>\w+)_old").unwrap();
        let (s, n) = replace_some(&re, "a_old b_old c_old", "${n}_new", 2);
        assert_eq!((s.as_str(), n), ("a_new b_new c_old", 2));
        let re = Regex::new(r"x(\d)").unwrap();
        let (s, n) = replace_some(&re, "x1 x2", "y$1$$", usize::MAX);
        assert_eq!((s.as_str(), n), ("y1$ y2$", 2));
        let (s, n) = replace_some(&re, "none", "y", usize::MAX);
        assert_eq!((s.as_str(), n), ("none", 0));
    }

    #[test]
    fn a_diff_is_unified_over_lines() {
        let d = unified("abcd1234", "a\nb\n", "a\nc\n");
        assert!(d.contains("--- abcd1234 (before)"), "{d}");
        assert!(d.contains("-b\n+c\n"), "{d}");
    }
}
