//! MCP resources (§10): each notebook is a resource `nbledger:///PATH`
//! whose content is its `.ipynb` JSON (`application/x-ipynb+json`).
//! Clients subscribe to notebooks (`resources/subscribe` in the
//! 2025-11-25 era, `subscriptions/listen` in the 2026-07-28 era) and get
//! `notifications/resources/updated` for every event that changes one.
//!
//! Every process learns of new events the same way, whether it owns the
//! store or is attached to its owner: by long-polling the feed of every
//! notebook (`get_notebook_changes` without `path`), which the owner
//! answers as soon as a change is durable (§8.9). So a subscriber of any
//! process hears of writes made through any other.

use std::collections::{BTreeSet, HashSet};
use std::sync::Arc;

use rmcp::ErrorData;
use rmcp::model::{ListResourcesResult, ReadResourceResult, Resource, ResourceContents};
use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;

use crate::paths::Root;

/// What every notebook's URI starts with; the rest is its path.
pub const SCHEME: &str = "nbledger:///";
/// The MIME type of a notebook's content.
pub const MIME: &str = "application/x-ipynb+json";
/// How long one long-poll of the feed waits (the feed's own maximum).
const POLL_MS: u64 = 60_000;

/// The URI of the notebook at `path` (relative to the root).
pub fn uri(path: &str) -> String {
    format!("{SCHEME}{path}")
}

/// The notebook path a URI names, or an invalid-params error saying the
/// form it must have.
pub fn path_of(uri: &str) -> Result<&str, ErrorData> {
    uri.strip_prefix(SCHEME)
        .filter(|p| !p.is_empty())
        .ok_or_else(|| {
            ErrorData::invalid_params(
                format!("resource URI {uri:?} is not a notebook: use {SCHEME}PATH.ipynb"),
                None,
            )
        })
}

/// The resource list from `list_notebooks`' answer.
pub fn list(notebooks: &Value) -> ListResourcesResult {
    let resources: Vec<Resource> = notebooks["notebooks"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|n| n["path"].as_str())
        .map(|path| Resource::new(uri(path), path.to_owned()).with_mime_type(MIME))
        .collect();
    ListResourcesResult::with_all_items(resources)
}

/// A notebook's content: the file as it is on disk, which reflects every
/// call that has returned (§6). Paths are confined to the root as for
/// every tool.
pub fn read(root: &Root, uri_text: &str) -> Result<ReadResourceResult, ErrorData> {
    let path = path_of(uri_text)?;
    let np = root
        .resolve(path)
        .map_err(|e| ErrorData::invalid_params(e.message.clone(), Some(e.to_json())))?;
    let text = std::fs::read_to_string(&np.abs).map_err(|e| {
        ErrorData::resource_not_found(
            format!("notebook {} cannot be read: {e}", np.rel),
            Some(json!({"uri": uri_text})),
        )
    })?;
    Ok(ReadResourceResult::new(vec![
        ResourceContents::TextResourceContents {
            uri: uri(&np.rel),
            mime_type: Some(MIME.to_owned()),
            text,
            meta: None,
        },
    ]))
}

/// One session's `resources/subscribe` set, and the follower that serves it.
#[derive(Default, Clone)]
pub struct Subscriptions {
    inner: Arc<parking_lot::Mutex<Subscribed>>,
}

#[derive(Default)]
struct Subscribed {
    paths: HashSet<String>,
    /// The running follower, cancelled when the last path goes.
    follower: Option<CancellationToken>,
}

impl Subscriptions {
    /// Adds `path`; a token to start a follower with if none runs.
    pub fn add(&self, path: String) -> Option<CancellationToken> {
        let mut s = self.inner.lock();
        s.paths.insert(path);
        if s.follower.is_some() {
            return None;
        }
        let token = CancellationToken::new();
        s.follower = Some(token.clone());
        Some(token)
    }

    /// Removes `path`; the follower stops with the last one.
    pub fn remove(&self, path: &str) {
        let mut s = self.inner.lock();
        s.paths.remove(path);
        if s.paths.is_empty()
            && let Some(t) = s.follower.take()
        {
            t.cancel();
        }
    }

    pub fn contains(&self, path: &str) -> bool {
        self.inner.lock().paths.contains(path)
    }

    /// Forgets a follower that ended on its own (the session closed).
    pub fn ended(&self, token: &CancellationToken) {
        let mut s = self.inner.lock();
        if s.follower
            .as_ref()
            .is_some_and(|t| t.is_cancelled() || t == token)
        {
            s.follower = None;
        }
    }
}

/// The notebooks the changes of one answer of the feed touched, each
/// once (a rename names both its paths).
pub fn changed_paths(feed: &Value) -> BTreeSet<String> {
    feed["changes"]
        .as_array()
        .into_iter()
        .flatten()
        .flat_map(|c| c["paths"].as_array().into_iter().flatten())
        .filter_map(Value::as_str)
        .map(str::to_owned)
        .collect()
}

/// How many of the newest changes a `subscriptions/listen` looks back
/// through for ones committed after its acknowledgment.
pub const CATCH_UP: u64 = 1000;

/// The notebooks changed at or after `since_ms` in one answer of the feed.
pub fn changed_since(feed: &Value, since_ms: i64) -> BTreeSet<String> {
    // Feed times are RFC 3339 with milliseconds, so they sort as text.
    let mark = crate::time::rfc3339(since_ms);
    feed["changes"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|c| c["timestamp"].as_str().is_some_and(|t| t >= mark.as_str()))
        .flat_map(|c| c["paths"].as_array().into_iter().flatten())
        .filter_map(Value::as_str)
        .map(str::to_owned)
        .collect()
}

/// Where a follower's notifications go.
pub enum Notifier {
    /// A `resources/subscribe` session (2025-11-25).
    Peer(rmcp::service::Peer<rmcp::RoleServer>),
    /// A `subscriptions/listen` request (2026-07-28).
    Sink(rmcp::service::SubscriptionSink),
}

impl Notifier {
    /// Sends `notifications/resources/updated`; false once the subscriber
    /// is gone.
    pub async fn updated(&self, uri: String) -> bool {
        match self {
            Notifier::Peer(peer) => peer
                .notify_resource_updated(rmcp::model::ResourceUpdatedNotificationParam::new(uri))
                .await
                .is_ok(),
            Notifier::Sink(sink) => sink.notify_resource_updated(uri).await.is_ok(),
        }
    }
}

/// Which notebooks a follower notifies.
pub enum Wanted {
    /// A session's subscriptions, as they change.
    Session(Subscriptions),
    /// A listen request's fixed set.
    Fixed(HashSet<String>),
}

impl Wanted {
    pub fn contains(&self, path: &str) -> bool {
        match self {
            Wanted::Session(s) => s.contains(path),
            Wanted::Fixed(set) => set.contains(path),
        }
    }
}

/// How long one long-poll of the feed waits.
pub const POLL_WAIT_MS: u64 = POLL_MS;

/// The arguments of one long-poll of the feed of every notebook.
pub fn feed_args(since: u64, wait_ms: u64) -> serde_json::Map<String, Value> {
    let mut m = serde_json::Map::new();
    m.insert("since_version".into(), json!(since));
    m.insert("wait_ms".into(), json!(wait_ms));
    m.insert("limit".into(), json!(1000));
    m
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uris_name_notebook_paths() {
        assert_eq!(uri("a/b.ipynb"), "nbledger:///a/b.ipynb");
        assert_eq!(path_of("nbledger:///a/b.ipynb").unwrap(), "a/b.ipynb");
        assert!(path_of("file:///a.ipynb").is_err());
        assert!(path_of("nbledger:///").is_err());
    }

    #[test]
    fn the_follower_stops_with_the_last_subscription() {
        let s = Subscriptions::default();
        let t = s.add("a.ipynb".into()).expect("a first follower");
        assert!(s.add("b.ipynb".into()).is_none());
        s.remove("a.ipynb");
        assert!(!t.is_cancelled());
        s.remove("b.ipynb");
        assert!(t.is_cancelled());
    }
}
