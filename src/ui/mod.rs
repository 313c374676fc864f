//! The forensic view (contract §11): read-only pages over the log, served
//! by `nbledger ui` on loopback and by `serve --http` at `/`.
//!
//! Every page is a pure function of the log as one [`Audit`] reads it,
//! rendered through maud templates (checked at compile time). Pages read
//! the store's indexes and the one replay path ([`crate::replay`] through
//! [`crate::audit::show::notebook_at`]); none replays the whole log, and a
//! filter that has no index (client, operation) walks record envelopes
//! under a fixed budget per page, handing on a cursor where it stopped.
//!
//! Routing is [`respond`]: method + path + query in, a [`Reply`] out, so
//! the handler tests need no socket. [`serve`] (the `ui` command) and
//! [`router`] (mounted by `serve --http`) are thin axum adapters around it.
//! Only `GET` and `HEAD` are answered; anything else is 405.

mod activity;
mod blame;
mod event;
mod layout;
mod notebook;
mod render;
mod timeline;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use parking_lot::RwLock;

use crate::audit::{Audit, AuditError};

pub use timeline::SCAN_BUDGET;

/// The log a page reads.
pub trait LogSource: Send + Sync + 'static {
    /// The log as the next page reads it (one consistent version).
    fn audit(&self) -> Result<Arc<Audit>, AuditError>;
    /// Takes a newer copy of the log, where the source holds a copy
    /// (`GET /reload`); a live source has nothing to do.
    fn reload(&self) -> Result<(), AuditError> {
        Ok(())
    }
}

/// A private copy of the log taken when the view starts (and again on
/// `/reload`), as the audit command line takes one: the view never holds
/// the store, so a server can start, run and stop beside it.
pub struct CopiedLog {
    root: Option<PathBuf>,
    data: Option<PathBuf>,
    current: RwLock<Arc<Audit>>,
}

impl CopiedLog {
    pub fn open(root: Option<PathBuf>, data: Option<PathBuf>) -> Result<CopiedLog, AuditError> {
        let audit = Audit::open(root.as_deref(), data.as_deref())?;
        Ok(CopiedLog {
            root,
            data,
            current: RwLock::new(Arc::new(audit)),
        })
    }
}

impl LogSource for CopiedLog {
    fn audit(&self) -> Result<Arc<Audit>, AuditError> {
        Ok(self.current.read().clone())
    }

    fn reload(&self) -> Result<(), AuditError> {
        let fresh = Audit::open(self.root.as_deref(), self.data.as_deref())?;
        *self.current.write() = Arc::new(fresh);
        Ok(())
    }
}

/// One fixed log (tests, benchmarks).
pub struct FixedLog(pub Arc<Audit>);

impl LogSource for FixedLog {
    fn audit(&self) -> Result<Arc<Audit>, AuditError> {
        Ok(self.0.clone())
    }
}

/// An answer before it becomes HTTP.
#[derive(Debug, Clone)]
pub struct Reply {
    pub status: u16,
    pub content_type: &'static str,
    pub body: String,
    /// For a redirect.
    pub location: Option<String>,
}

impl Reply {
    fn html(body: maud::Markup) -> Reply {
        Reply {
            status: 200,
            content_type: "text/html; charset=utf-8",
            body: body.into_string(),
            location: None,
        }
    }

    fn error(status: u16, title: &str, message: &str) -> Reply {
        Reply {
            status,
            ..Reply::html(layout::error_page(title, message))
        }
    }

    fn from_audit(e: AuditError) -> Reply {
        match e {
            AuditError::Usage(m) => Reply::error(400, "Bad request", &m),
            AuditError::NotFound(m) => Reply::error(404, "Not found", &m),
            AuditError::Unavailable(m) => Reply::error(503, "Log unavailable", &m),
            other => Reply::error(500, "The log cannot be read", &other.to_string()),
        }
    }
}

/// The query string as pairs; later duplicates win.
pub(crate) type Query = HashMap<String, String>;

fn parse_query(q: &str) -> Query {
    serde_urlencoded::from_str::<Vec<(String, String)>>(q)
        .unwrap_or_default()
        .into_iter()
        .collect()
}

/// A URL with a query built from `pairs` (empty values left out).
pub(crate) fn url(path: &str, pairs: &[(&str, String)]) -> String {
    let kept: Vec<(&str, &str)> = pairs
        .iter()
        .filter(|(_, v)| !v.is_empty())
        .map(|(k, v)| (*k, v.as_str()))
        .collect();
    if kept.is_empty() {
        return path.to_owned();
    }
    format!(
        "{path}?{}",
        serde_urlencoded::to_string(&kept).unwrap_or_default()
    )
}

/// Answers one request. `target` is the path with its query.
pub fn respond(log: &dyn LogSource, method: &str, target: &str) -> Reply {
    if method != "GET" && method != "HEAD" {
        return Reply {
            status: 405,
            content_type: "text/plain; charset=utf-8",
            body: "the forensic view is read-only: only GET and HEAD are answered\n".into(),
            location: None,
        };
    }
    let (path, query) = target.split_once('?').unwrap_or((target, ""));
    let q = parse_query(query);
    match path {
        "/ui.css" => {
            return Reply {
                status: 200,
                content_type: "text/css; charset=utf-8",
                body: layout::CSS.to_owned(),
                location: None,
            };
        }
        "/ui.js" => {
            return Reply {
                status: 200,
                content_type: "text/javascript; charset=utf-8",
                body: layout::JS.to_owned(),
                location: None,
            };
        }
        "/reload" => {
            return match log.reload() {
                Ok(()) => Reply {
                    status: 303,
                    content_type: "text/plain; charset=utf-8",
                    body: String::new(),
                    location: Some("/".into()),
                },
                Err(e) => Reply::from_audit(e),
            };
        }
        _ => {}
    }
    let audit = match log.audit() {
        Ok(a) => a,
        Err(e) => return Reply::from_audit(e),
    };
    let page = match path {
        "/" => timeline::page(&audit, &q),
        "/notebook" => notebook::page(&audit, &q),
        "/blame" => blame::page(&audit, &q),
        "/activity" => activity::page(&audit, &q),
        p => match p.strip_prefix("/event/").map(str::parse::<u64>) {
            Some(Ok(v)) => event::page(&audit, v),
            _ => Err(AuditError::NotFound(format!(
                "there is no page {}; the timeline is at /",
                crate::error::quote(p)
            ))),
        },
    };
    match page {
        Ok(markup) => Reply::html(markup),
        Err(e) => Reply::from_audit(e),
    }
}

/// What a request must look like to be answered: its Host one of
/// `hosts` (with or without a port) and its Origin, when present, one of
/// `origins` (§8.11's rules, the same as `/mcp`'s).
#[derive(Debug, Clone)]
pub struct Gate {
    pub hosts: Vec<String>,
    pub origins: Vec<String>,
}

impl Gate {
    /// The loopback view on `port`: the localhost names only.
    pub fn loopback(port: u16) -> Gate {
        let hosts: Vec<String> = vec!["localhost".into(), "127.0.0.1".into(), "::1".into()];
        let origins = vec![
            format!("http://localhost:{port}"),
            format!("http://127.0.0.1:{port}"),
            format!("http://[::1]:{port}"),
        ];
        Gate { hosts, origins }
    }

    /// `None` when the request may go on; else the 403.
    pub fn check(&self, headers: &HeaderMap) -> Option<Reply> {
        let host = headers
            .get(header::HOST)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("");
        let name = host_name(host);
        if !self.hosts.iter().any(|h| host_name(h) == name) {
            return Some(Reply::error(
                403,
                "Forbidden",
                "this Host is not one the server answers (DNS rebinding protection)",
            ));
        }
        if let Some(origin) = headers.get(header::ORIGIN) {
            let ok = origin
                .to_str()
                .is_ok_and(|o| self.origins.iter().any(|a| a == o));
            if !ok {
                return Some(Reply::error(
                    403,
                    "Forbidden",
                    "requests from another site's pages are refused",
                ));
            }
        }
        None
    }
}

/// The name part of a Host value: `[::1]:80` → `::1`, `a.lan:80` → `a.lan`.
fn host_name(host: &str) -> &str {
    if let Some(rest) = host.strip_prefix('[') {
        return rest.split(']').next().unwrap_or(rest);
    }
    match host.split_once(':') {
        Some((name, port)) if !port.contains(':') => name,
        _ => host,
    }
}

fn into_response(reply: Reply, head: bool) -> Response {
    let status = StatusCode::from_u16(reply.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let body = if head { String::new() } else { reply.body };
    let mut r = (status, body).into_response();
    let h = r.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        header::HeaderValue::from_static(reply.content_type),
    );
    // Nothing from the log runs: scripts only from this server, frames
    // (HTML outputs) sandboxed by their own attribute and this policy.
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        header::HeaderValue::from_static(layout::CSP),
    );
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        header::HeaderValue::from_static("nosniff"),
    );
    h.insert(
        header::REFERRER_POLICY,
        header::HeaderValue::from_static("no-referrer"),
    );
    h.insert(
        header::CACHE_CONTROL,
        header::HeaderValue::from_static("no-store"),
    );
    if let Some(loc) = reply.location
        && let Ok(v) = header::HeaderValue::from_str(&loc)
    {
        h.insert(header::LOCATION, v);
    }
    r
}

/// The view as an axum router answering every path (mounted under
/// `serve --http` beside `/mcp`, whose guard adds the token check).
pub fn router(log: Arc<dyn LogSource>, gate: Gate) -> axum::Router {
    let gate = Arc::new(gate);
    axum::Router::new().fallback(move |req: axum::extract::Request| {
        let log = log.clone();
        let gate = gate.clone();
        async move {
            if let Some(refused) = gate.check(req.headers()) {
                return into_response(refused, false);
            }
            let method = req.method().as_str().to_owned();
            let target = req
                .uri()
                .path_and_query()
                .map(|p| p.as_str().to_owned())
                .unwrap_or_else(|| "/".into());
            let head = method == "HEAD";
            let reply =
                tokio::task::spawn_blocking(move || respond(log.as_ref(), &method, &target))
                    .await
                    .unwrap_or_else(|e| {
                        Reply::error(500, "Internal error", &format!("the page failed: {e}"))
                    });
            into_response(reply, head)
        }
    })
}

/// `nbledger ui`: serves the view on `127.0.0.1:port` (0: any free port)
/// until `shutdown`; prints the address on stderr.
pub async fn serve(
    log: Arc<dyn LogSource>,
    port: u16,
    shutdown: tokio_util::sync::CancellationToken,
) -> anyhow::Result<()> {
    let listener = tokio::net::TcpListener::bind(SocketAddr::from(([127, 0, 0, 1], port))).await?;
    let bound = listener.local_addr()?;
    let app = router(log, Gate::loopback(bound.port()));
    use std::io::Write;
    // Not eprintln!: it panics when stderr is a pipe nobody reads.
    let _ = writeln!(
        std::io::stderr(),
        "nbledger: the forensic view is at http://{bound}/"
    );
    axum::serve(listener, app)
        .with_graceful_shutdown(async move { shutdown.cancelled().await })
        .await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_names_drop_their_port() {
        assert_eq!(host_name("localhost:8767"), "localhost");
        assert_eq!(host_name("[::1]:8767"), "::1");
        assert_eq!(host_name("127.0.0.1"), "127.0.0.1");
    }

    #[test]
    fn urls_leave_empty_values_out_and_encode_the_rest() {
        assert_eq!(url("/", &[("nb", String::new())]), "/");
        assert_eq!(
            url("/", &[("nb", "a b&c.ipynb".into()), ("v", "3".into())]),
            "/?nb=a+b%26c.ipynb&v=3"
        );
    }

    #[test]
    fn times_parse_by_the_precision_given() {
        use timeline::parse_time;
        let t = parse_time("2026-11-23T20:17:40.123Z", false).unwrap();
        assert_eq!(crate::time::rfc3339(t), "2026-11-23T20:17:40.123Z");
        let day_end = parse_time("2026-11-23", true).unwrap();
        assert_eq!(crate::time::rfc3339(day_end), "2026-11-23T23:59:59.999Z");
        let minute_end = parse_time("2026-11-23T20:17", true).unwrap();
        assert_eq!(crate::time::rfc3339(minute_end), "2026-11-23T20:17:59.999Z");
        assert!(parse_time("yesterday", false).is_err());
        assert!(parse_time("2026-13-01", false).is_err());
    }
}
