//! MCP over streamable HTTP at `/mcp` (contract §1, §6, §8.11).
//!
//! The same `NotebookServer` as on stdio, mounted with rmcp's streamable
//! HTTP service. Around it: a bearer token (required off loopback; when set,
//! on every request, compared in constant time, never logged), rmcp's Host
//! and Origin checks kept on (the server's own origins and `--allowed-origin`
//! pass, any other Origin is 403), a body limit of one MCP message (16 MiB,
//! as on stdio; a larger body gets 413 with the reason), and a cap on
//! concurrent requests.
//! Identity and locks never depend on the connection: both protocol eras
//! (2026-07-28 stateless and 2025-11-25 sessions) reach the same engine.
//!
//! Every other path is the forensic view (§11, [`crate::ui`]), behind the
//! same token and the same Host/Origin rules, GET and HEAD only. The owner
//! reads its own store pinned at the durable head ([`Store::reader`]); an
//! attached process reads a private copy from the owner, taken again when
//! older than [`COPY_MAX_AGE`].

use std::io::Write;
use std::net::SocketAddr;
use std::sync::Arc;

use axum::extract::Request;
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use rmcp::transport::streamable_http_server::session::local::LocalSessionManager;
use rmcp::transport::streamable_http_server::{StreamableHttpServerConfig, StreamableHttpService};
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;

use crate::audit::{Audit, AuditError};
use crate::hub::{Front, Hub};
use crate::lines::MESSAGE_LIMIT;
use crate::ui::{Gate, LogSource};

/// How stale the forensic view's copy of the log may get in a process
/// that does not own the store.
const COPY_MAX_AGE: std::time::Duration = std::time::Duration::from_secs(5);

/// The log the forensic view reads under `serve --http`.
struct HubLog {
    hub: Arc<Hub>,
    copy: parking_lot::Mutex<Option<(std::time::Instant, Arc<Audit>)>>,
}

impl LogSource for HubLog {
    fn audit(&self) -> Result<Arc<Audit>, AuditError> {
        if let Some(engine) = self.hub.engine() {
            let store = engine.store().reader();
            return Ok(Arc::new(Audit::with_store(
                store,
                self.hub.root(),
                self.hub.data(),
            )));
        }
        let mut copy = self.copy.lock();
        if let Some((at, audit)) = copy.as_ref()
            && at.elapsed() < COPY_MAX_AGE
        {
            return Ok(audit.clone());
        }
        let fresh = Arc::new(Audit::open(Some(self.hub.root()), Some(self.hub.data()))?);
        *copy = Some((std::time::Instant::now(), fresh.clone()));
        Ok(fresh)
    }
}

/// Requests served at once; past it, callers get 503 and retry.
const MAX_CONCURRENT: usize = 256;

/// A body over the message limit is still read to its end, up to this
/// much, before the 413: a server that answers and closes while the client
/// is still sending resets the connection, and the reset can swallow the
/// answer.
const DRAIN_LIMIT: u64 = 256 << 20;

pub struct HttpOptions {
    /// `HOST:PORT`, or `PORT` meaning 127.0.0.1.
    pub addr: String,
    pub token: Option<String>,
    pub allowed_hosts: Vec<String>,
    pub allowed_origins: Vec<String>,
}

/// Parses `HOST:PORT` or `PORT` (§8.11).
pub fn parse_addr(addr: &str) -> anyhow::Result<SocketAddr> {
    if let Ok(port) = addr.parse::<u16>() {
        return Ok(SocketAddr::from(([127, 0, 0, 1], port)));
    }
    if let Ok(sa) = addr.parse::<SocketAddr>() {
        return Ok(sa);
    }
    match addr.rsplit_once(':') {
        Some(("localhost", port)) => Ok(SocketAddr::from(([127, 0, 0, 1], port.parse()?))),
        _ => {
            anyhow::bail!("--http {addr:?} is not HOST:PORT or PORT (e.g. 8765 or 127.0.0.1:8765)")
        }
    }
}

/// The server's own origins: `http://` + each allowed Host's name with the
/// port the server listens on (§8.11), never another port.
fn own_origins(hosts: &[String], port: u16) -> Vec<String> {
    hosts
        .iter()
        .map(|h| {
            let name = host_name(h);
            if name.contains(':') {
                format!("http://[{name}]:{port}")
            } else {
                format!("http://{name}:{port}")
            }
        })
        .collect()
}

/// The name part of a Host value: `[::1]:80` → `::1`, `a.lan:80` → `a.lan`,
/// a bare IPv6 address as it is.
fn host_name(host: &str) -> &str {
    if let Some(rest) = host.strip_prefix('[') {
        return rest.split(']').next().unwrap_or(rest);
    }
    match host.split_once(':') {
        Some((name, port)) if !port.contains(':') => name,
        _ => host,
    }
}

/// Equal without leaking where they differ: compare digests byte by byte.
fn same_secret(a: &str, b: &str) -> bool {
    let (x, y) = (blake3::hash(a.as_bytes()), blake3::hash(b.as_bytes()));
    x.as_bytes()
        .iter()
        .zip(y.as_bytes())
        .fold(0u8, |acc, (p, q)| acc | (p ^ q))
        == 0
}

/// The 413 for a body over [`MESSAGE_LIMIT`] (§8.12).
fn too_large() -> Response {
    (
        StatusCode::PAYLOAD_TOO_LARGE,
        format!(
            "request body over {MESSAGE_LIMIT} bytes (16 MiB), the limit of one MCP message; nothing was done: send less at once (a cell source is at most 1 MiB; split a large batch over several calls)\n"
        ),
    )
        .into_response()
}

/// Reads and drops the body, up to [`DRAIN_LIMIT`] bytes.
async fn drain(mut body: axum::body::Body) {
    use axum::body::HttpBody;
    let mut read = 0u64;
    while read <= DRAIN_LIMIT {
        match std::future::poll_fn(|cx| std::pin::Pin::new(&mut body).poll_frame(cx)).await {
            Some(Ok(frame)) => {
                read += frame.data_ref().map_or(0, |d| d.len() as u64);
            }
            _ => return,
        }
    }
}

/// The cookie that carries the token for the forensic view's pages.
const TOKEN_COOKIE: &str = "nbledger_token";

/// The token in the request's `nbledger_token` cookie.
fn cookie_token(headers: &axum::http::HeaderMap) -> Option<&str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|kv| kv.trim().split_once('='))
        .find(|(k, _)| *k == TOKEN_COOKIE)
        .map(|(_, v)| v)
}

/// A GET of a view page with the right `?token=`: a redirect to the same
/// page without it (so it leaves the address bar and history), setting the
/// token as an HttpOnly, SameSite=Strict cookie. `None` otherwise.
fn token_login(req: &Request, expected: &str) -> Option<Response> {
    if req.method() != axum::http::Method::GET {
        return None;
    }
    let query = req.uri().query()?;
    let pairs: Vec<(String, String)> = serde_urlencoded::from_str(query).ok()?;
    let given = pairs.iter().find(|(k, _)| k == "token").map(|(_, v)| v)?;
    if !same_secret(given, expected) {
        return None;
    }
    let rest: Vec<&(String, String)> = pairs.iter().filter(|(k, _)| k != "token").collect();
    let mut location = req.uri().path().to_owned();
    if !rest.is_empty() {
        location.push('?');
        location.push_str(&serde_urlencoded::to_string(&rest).ok()?);
    }
    let cookie = format!("{TOKEN_COOKIE}={given}; HttpOnly; SameSite=Strict; Path=/");
    let mut r = StatusCode::SEE_OTHER.into_response();
    r.headers_mut()
        .insert(header::LOCATION, HeaderValue::from_str(&location).ok()?);
    r.headers_mut()
        .insert(header::SET_COOKIE, HeaderValue::from_str(&cookie).ok()?);
    r.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    Some(r)
}

fn unauthorized() -> Response {
    let mut r = (StatusCode::UNAUTHORIZED, "missing or wrong bearer token\n").into_response();
    r.headers_mut()
        .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
    r
}

/// Serves until `shutdown` is cancelled. Prints the bound URL on stderr.
pub async fn serve(
    front: Front,
    opts: HttpOptions,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    let addr = parse_addr(&opts.addr)?;
    let loopback = addr.ip().is_loopback();
    let token = opts.token.filter(|t| !t.is_empty());
    if !loopback && token.is_none() {
        anyhow::bail!(
            "refusing to serve on non-loopback address {addr} without a bearer token: pass --token, --token-file or NBLEDGER_TOKEN"
        );
    }
    let listener = tokio::net::TcpListener::bind(addr).await?;
    let bound = listener.local_addr()?;

    let mut hosts: Vec<String> = vec!["localhost".into(), "127.0.0.1".into(), "::1".into()];
    if !loopback && !bound.ip().is_unspecified() {
        hosts.push(bound.ip().to_string());
    }
    hosts.extend(opts.allowed_hosts);
    // A browser may call in from a page of this server itself, or from an
    // origin named explicitly; any other is a cross-site request (a DNS
    // rebinding page keeps its own origin even when its Host is ours).
    let mut origins = own_origins(&hosts, bound.port());
    origins.extend(opts.allowed_origins);
    let view = crate::ui::router(
        Arc::new(HubLog {
            hub: front.hub(),
            copy: parking_lot::Mutex::new(None),
        }),
        Gate {
            hosts: hosts.clone(),
            origins: origins.clone(),
        },
    );
    let config = StreamableHttpServerConfig::default()
        .with_allowed_hosts(hosts)
        .with_allowed_origins(origins)
        .enforce_origin_validation()
        .with_max_request_body_bytes(MESSAGE_LIMIT)
        .with_cancellation_token(shutdown.child_token());
    let service = StreamableHttpService::new(
        move || Ok(front.for_session()),
        LocalSessionManager::default().into(),
        config,
    );

    let token = Arc::new(token);
    let slots = Arc::new(Semaphore::new(MAX_CONCURRENT));
    let guard = axum::middleware::from_fn(move |req: Request, next: Next| {
        let token = token.clone();
        let slots = slots.clone();
        async move {
            if let Some(expected) = token.as_ref() {
                let given = req
                    .headers()
                    .get(header::AUTHORIZATION)
                    .and_then(|v| v.to_str().ok())
                    .and_then(|v| v.strip_prefix("Bearer "));
                let view = !req.uri().path().starts_with("/mcp");
                if !given.is_some_and(|g| same_secret(g, expected)) {
                    // A browser cannot send a bearer header: the view's
                    // pages also take the token from their cookie, set
                    // by one visit with `?token=` (§11).
                    let by_cookie = view
                        && cookie_token(req.headers()).is_some_and(|g| same_secret(g, expected));
                    if !by_cookie {
                        return match view.then(|| token_login(&req, expected)).flatten() {
                            Some(login) => login,
                            None => unauthorized(),
                        };
                    }
                }
            }
            let declared = req
                .headers()
                .get(header::CONTENT_LENGTH)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.parse::<u64>().ok());
            if declared.is_some_and(|n| n > MESSAGE_LIMIT as u64) {
                drain(req.into_body()).await;
                return too_large();
            }
            let Ok(_slot) = slots.try_acquire_owned() else {
                return (
                    StatusCode::SERVICE_UNAVAILABLE,
                    "too many concurrent requests; retry\n",
                )
                    .into_response();
            };
            let response = next.run(req).await;
            // A body without a length is measured by rmcp as it streams in;
            // its 413 gets the same reason and advice.
            if response.status() == StatusCode::PAYLOAD_TOO_LARGE {
                return too_large();
            }
            response
        }
    });
    let app = axum::Router::new()
        .nest_service("/mcp", service)
        .merge(view)
        .layer(guard);
    // Not eprintln!: it panics when stderr is a pipe nobody reads.
    let _ = writeln!(
        std::io::stderr(),
        "nbledger: serving MCP at http://{bound}/mcp"
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
    fn addresses_parse_as_the_contract_says() {
        assert_eq!(
            parse_addr("8765").unwrap(),
            "127.0.0.1:8765".parse().unwrap()
        );
        assert_eq!(
            parse_addr("0.0.0.0:80").unwrap(),
            "0.0.0.0:80".parse().unwrap()
        );
        assert_eq!(
            parse_addr("localhost:9").unwrap(),
            "127.0.0.1:9".parse().unwrap()
        );
        assert!(parse_addr("nope").is_err());
    }

    #[test]
    fn own_origins_are_each_allowed_host_on_the_servers_port() {
        let hosts: Vec<String> = ["localhost", "127.0.0.1", "::1", "a.lan:8080", "[fe80::1]:9"]
            .map(String::from)
            .into();
        assert_eq!(
            own_origins(&hosts, 8765),
            [
                "http://localhost:8765",
                "http://127.0.0.1:8765",
                "http://[::1]:8765",
                "http://a.lan:8765",
                "http://[fe80::1]:8765",
            ]
        );
    }

    #[test]
    fn secrets_compare_exactly() {
        assert!(same_secret("abc", "abc"));
        assert!(!same_secret("abc", "abd"));
        assert!(!same_secret("abc", ""));
    }
}
