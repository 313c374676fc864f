//! The forensic view (contract §11): every page and filter answered by
//! `ui::respond` over a log whose history is known (tests/ui_log), hostile
//! content escaped everywhere, GET only, and the two servers: `nbledger
//! ui` on loopback and `serve --http` at `/` behind its token.

mod common;
mod ui_log;

use std::io::{Read, Write};
use std::sync::Arc;

use nbledger::audit::Audit;
use nbledger::store::Store;
use nbledger::ui::{FixedLog, Reply, respond};
use ui_log::{Built, EVIL_CLIENT};

fn open(b: &Built) -> FixedLog {
    let store = Store::open(&b.data).unwrap();
    FixedLog(Arc::new(Audit::with_store(store, &b.root, &b.data)))
}

fn get(log: &FixedLog, target: &str) -> String {
    let r = respond(log, "GET", target);
    assert_eq!(r.status, 200, "GET {target}: {}", r.body);
    assert_eq!(r.content_type, "text/html; charset=utf-8");
    assert_safe(target, &r.body);
    r.body
}

fn status(log: &FixedLog, target: &str) -> Reply {
    respond(log, "GET", target)
}

/// Nothing hostile from the log reaches the page as markup: no tag but
/// the view's own script tag is a script, no tag carries an event handler
/// or a `javascript:` URL, and no control or bidi character is left raw.
/// (Hostile text shown escaped, `&lt;script&gt;`, is what should happen.)
fn assert_safe(target: &str, body: &str) {
    for bad in ["\u{202e}", "\u{2066}", "\u{2069}", "\u{1b}"] {
        assert!(!body.contains(bad), "GET {target} holds {bad:?} raw");
    }
    let tag = regex::Regex::new(r"<[a-zA-Z][^>]*>").unwrap();
    let srcdoc = regex::Regex::new(r#"srcdoc="[^"]*""#).unwrap();
    let handler = regex::Regex::new(r#"(?i)\son[a-z]+\s*="#).unwrap();
    let mut scripts = 0;
    for m in tag.find_iter(body) {
        let t = srcdoc.replace_all(m.as_str(), "");
        assert!(!handler.is_match(&t), "GET {target}: a handler in {t}");
        assert!(
            !t.to_ascii_lowercase().contains("javascript:"),
            "GET {target}: {t}"
        );
        if t.to_ascii_lowercase().starts_with("<script") {
            scripts += 1;
            assert_eq!(t, r#"<script src="/ui.js" defer>"#, "GET {target}");
        }
        if t.starts_with("<iframe") {
            assert!(t.contains(r#"sandbox="""#), "GET {target}: {t}");
        }
    }
    assert_eq!(scripts, 1, "GET {target}: {body}");
}

/// The versions of the timeline rows, in page order.
fn rows(body: &str) -> Vec<u64> {
    body.match_indices("<tr id=\"v")
        .map(|(i, _)| {
            let rest = &body[i + 9..];
            rest[..rest.find('"').unwrap()].parse().unwrap()
        })
        .collect()
}

#[test]
fn timeline_lists_every_event_newest_first_with_links() {
    let b = ui_log::session(0);
    let log = open(&b);
    let body = get(&log, "/");
    assert_eq!(rows(&body), (1..=12).rev().collect::<Vec<u64>>());
    assert!(body.contains(r#"<a href="/event/6">v6</a>"#));
    assert!(body.contains("forced a lock"));
    assert!(body.contains("rejected"));
    assert!(body.contains("log head: v12"));
}

#[test]
fn timeline_filters_by_notebook_client_operation_cell_and_time() {
    let b = ui_log::session(0);
    let log = open(&b);
    assert_eq!(rows(&get(&log, "/?nb=b.ipynb")), vec![10]);
    assert_eq!(
        rows(&get(&log, "/?nb=./b.ipynb")),
        vec![10],
        "any spelling of the path"
    );
    assert_eq!(rows(&get(&log, "/?client=bob")), vec![12, 4, 2]);
    assert_eq!(rows(&get(&log, "/?op=update_cell")), vec![6, 5, 2]);
    assert_eq!(rows(&get(&log, "/?client=ana&op=update_cell")), vec![6, 5]);
    assert_eq!(
        rows(&get(&log, "/?nb=a.ipynb&cell=c1")),
        vec![9, 8, 7, 6, 5, 4, 2, 1]
    );
    assert_eq!(rows(&get(&log, "/?nb=a.ipynb&cell=e1")), vec![11, 3]);
    // Times: 20:00:02 .. 20:00:05 inclusive; a minute prefix means the whole minute.
    assert_eq!(
        rows(&get(
            &log,
            "/?since=2026-11-23T20:00:02&until=2026-11-23T20:00:05"
        )),
        vec![6, 5, 4, 3]
    );
    assert_eq!(
        rows(&get(&log, "/?until=2026-11-23T20:00:01.000Z")),
        vec![2, 1]
    );
    assert_eq!(
        rows(&get(&log, "/?since=2026-11-23T20:00:09.000")),
        vec![12, 11]
    );
    assert_eq!(
        rows(&get(&log, "/?since=2026-11-23T20:00:09.001")),
        vec![12]
    );
    assert_eq!(rows(&get(&log, "/?since=2026-11-24")), Vec::<u64>::new());
    assert_eq!(rows(&get(&log, "/?client=nobody")), Vec::<u64>::new());
    let evil = format!("/?client={}", urlencode(EVIL_CLIENT));
    assert_eq!(rows(&get(&log, &evil)), vec![3]);
    // Refusals are pages, not panics.
    assert_eq!(status(&log, "/?nb=nope.ipynb").status, 404);
    assert_eq!(
        status(&log, "/?cell=c1").status,
        400,
        "a cell needs its notebook"
    );
    assert_eq!(status(&log, "/?since=yesterday").status, 400);
    assert_eq!(status(&log, "/?before=x").status, 400);
}

fn urlencode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

#[test]
fn timeline_pages_by_version_cursor() {
    let b = ui_log::session(30);
    let log = open(&b);
    let first = get(&log, "/?limit=10");
    assert_eq!(rows(&first), (33..=42).rev().collect::<Vec<u64>>());
    assert!(
        first.contains(r#"href="/?limit=10&amp;before=33""#),
        "{first}"
    );
    let second = get(&log, "/?limit=10&before=33");
    assert_eq!(rows(&second), (23..=32).rev().collect::<Vec<u64>>());
    // Filtered paging goes through the index and keeps the filter.
    let page = get(&log, "/?nb=a.ipynb&cell=c1&limit=5&before=20");
    assert_eq!(rows(&page), vec![19, 18, 17, 16, 15]);
    assert!(page.contains("before=15"), "{page}");
    let bob = get(&log, "/?client=bob&limit=3");
    assert_eq!(rows(&bob), vec![41, 38, 35]);
    assert!(
        bob.contains("client=bob&amp;limit=3&amp;before=35"),
        "{bob}"
    );
    // The last page has no "older" link.
    let last = get(&log, "/?limit=10&before=3");
    assert_eq!(rows(&last), vec![2, 1]);
    assert!(!last.contains(r#"rel="next""#));
}

#[test]
fn event_page_shows_a_side_by_side_diff() {
    let b = ui_log::session(0);
    let log = open(&b);
    let body = get(&log, "/event/2");
    assert!(body.contains("<table class=\"diff\">"), "{body}");
    // `import os` unchanged on both sides, `print(1)` added on the right.
    assert!(body.contains(r#"<td class="r">import os</td>"#), "{body}");
    assert!(body.contains(r#"<td class="add">print(1)</td>"#), "{body}");
    assert!(body.contains(r#"href="/event/1""#) && body.contains(r#"href="/event/3""#));
    assert!(
        body.contains("/notebook?path=a.ipynb&amp;v=1"),
        "the state before"
    );
    // A replaced cell: metadata and outputs diffs, outputs rendered safely.
    let body = get(&log, "/event/11");
    assert!(
        body.contains("changed: metadata, outputs, execution_count"),
        "{body}"
    );
    assert!(
        body.contains("&lt;script&gt;window.pwned=12&lt;/script&gt;"),
        "{body}"
    );
    assert!(
        body.contains(r#"<iframe class="html-output" sandbox="""#),
        "{body}"
    );
}

#[test]
fn event_page_names_the_lock_it_overrode_and_the_refusal() {
    let b = ui_log::session(0);
    let log = open(&b);
    let body = get(&log, "/event/6");
    assert!(body.contains("Locks it overrode"), "{body}");
    assert!(
        body.contains(r#"taken at <a href="/event/4">v4</a>"#),
        "{body}"
    );
    assert!(
        body.contains("2026-11-23T20:10:03.000Z"),
        "the lock's expiry: {body}"
    );
    let body = get(&log, "/event/5");
    assert!(body.contains("the cell was locked by"), "{body}");
    assert!(body.contains("nothing changed"));
}

#[test]
fn event_page_follows_the_run_it_started_or_finished() {
    let b = ui_log::session(0);
    let log = open(&b);
    for v in [7, 8, 9] {
        let body = get(&log, &format!("/event/{v}"));
        assert!(body.contains("run <code>r1</code>"), "{body}");
        for other in [7, 8, 9].iter().filter(|&&o| o != v) {
            assert!(
                body.contains(&format!(r#"<a href="/event/{other}">v{other}</a>"#)),
                "v{v} links v{other}: {body}"
            );
        }
        assert!(body.contains("<strong>ok</strong> in 1200 ms"), "{body}");
    }
    let body = get(&log, "/event/9");
    assert!(body.contains("data:image/png;base64,iVBOR"), "{body}");
    assert!(body.contains("data:image/svg+xml;base64,"), "{body}");
    assert_eq!(status(&log, "/event/13").status, 404);
    assert_eq!(status(&log, "/event/0").status, 404);
    assert_eq!(status(&log, "/event/x").status, 404);
}

#[test]
fn notebook_page_renders_a_version_and_steps_through_versions() {
    let b = ui_log::session(0);
    let log = open(&b);
    let body = get(&log, "/notebook?path=a.ipynb&v=2");
    assert!(
        body.contains("state of <a href=\"/event/2\">v2</a>"),
        "{body}"
    );
    assert!(
        body.contains(r#"rel="prev" href="/notebook?path=a.ipynb&amp;v=1""#),
        "{body}"
    );
    assert!(
        body.contains(r#"rel="next" href="/notebook?path=a.ipynb&amp;v=3""#),
        "{body}"
    );
    assert!(body.contains("hl-"), "code is highlighted: {body}");
    assert!(
        body.contains("<h1>Title</h1>"),
        "markdown is rendered: {body}"
    );
    assert!(body.contains("<em>fine</em>"));
    assert!(!body.contains("id=\"cell-e1\""), "e1 came at v3");
    // v10 touched b.ipynb only: a.ipynb at 10 is a.ipynb at 9.
    let body = get(&log, "/notebook?path=a.ipynb&v=10");
    assert!(
        body.contains("state of <a href=\"/event/9\">v9</a>"),
        "{body}"
    );
    assert!(
        body.contains(r#"rel="next" href="/notebook?path=a.ipynb&amp;v=11""#),
        "{body}"
    );
    assert!(body.contains("id=\"cell-e1\""));
    assert!(body.contains("[1]:"), "c1's execution count");
    assert!(
        body.contains(r#"<pre class="stdout">red &lt;/pre&gt;&lt;script&gt;"#),
        "ANSI stripped, escaped: {body}"
    );
    assert!(body.contains("ValueError: bad &lt;img"), "{body}");
    // The head: m1 deleted, no next.
    let body = get(&log, "/notebook?path=a.ipynb");
    assert!(!body.contains("id=\"cell-m1\""));
    assert!(!body.contains("rel=\"next\""));
    // The lock shows while it holds.
    let body = get(&log, "/notebook?path=a.ipynb&v=4");
    assert!(body.contains("locked by"), "{body}");
    assert_eq!(
        status(&log, "/notebook?path=b.ipynb&v=9").status,
        404,
        "not yet"
    );
    assert_eq!(status(&log, "/notebook?path=nope.ipynb").status, 404);
    assert_eq!(status(&log, "/notebook").status, 400);
    assert_eq!(status(&log, "/notebook?path=a.ipynb&v=99").status, 400);
}

#[test]
fn blame_colours_lines_by_client_and_links_events() {
    let b = ui_log::session(3);
    let log = open(&b);
    let body = get(&log, "/blame?path=a.ipynb");
    // c1 = "import sys\nprint(4)\n# edit 2\n": line 1 by ana (v6), the rest by v15 (carl).
    assert!(body.contains(r#"<a href="/event/6""#), "{body}");
    assert!(body.contains(r#"<a href="/event/15""#), "{body}");
    assert!(body.contains(r#"data-client="ana""#) && body.contains(r#"data-client="carl""#));
    assert!(body.contains(r#"class="legend""#));
    assert!(
        body.contains("&lt;script&gt;window.pwned=1&lt;/script&gt;eve"),
        "the evil client in the legend: {body}"
    );
    assert_eq!(status(&log, "/blame").status, 400);
    assert_eq!(status(&log, "/blame?path=zz.ipynb").status, 404);
}

#[test]
fn activity_draws_a_lane_per_client_with_locks_and_runs() {
    let b = ui_log::session(0);
    let log = open(&b);
    let body = get(&log, "/activity");
    assert!(body.contains("<svg class=\"activity\""), "{body}");
    for who in ["ana", "bob", "carl", "external"] {
        assert!(
            body.contains(&format!(r#"data-client="{who}""#)),
            "{who}: {body}"
        );
    }
    assert_eq!(body.matches("<rect class=\"mark\"").count(), 12);
    assert_eq!(body.matches("<rect class=\"lock\"").count(), 1);
    assert_eq!(body.matches("<rect class=\"run\"").count(), 1);
    assert!(
        body.contains(r#"<a href="/event/7"><rect class="run""#),
        "{body}"
    );
    let one = get(&log, "/activity?nb=b.ipynb");
    assert_eq!(one.matches("<rect class=\"mark\"").count(), 1);
    let window = get(&log, "/activity?n=5&before=6");
    assert_eq!(window.matches("<rect class=\"mark\"").count(), 5);
}

#[test]
fn hostile_content_is_escaped_on_every_page() {
    let b = ui_log::session(2);
    let log = open(&b);
    let mut pages: Vec<String> = vec![
        "/".into(),
        "/activity".into(),
        "/blame?path=a.ipynb".into(),
        format!("/?client={}", urlencode(EVIL_CLIENT)),
    ];
    for v in 1..=b.head {
        pages.push(format!("/event/{v}"));
        pages.push(format!("/notebook?path=a.ipynb&v={v}"));
    }
    for p in &pages {
        let body = get(&log, p); // asserts safety
        if p.starts_with("/notebook") || p.starts_with("/event/3") {
            // Bidi controls are shown, not obeyed.
            if body.contains("ok = ") {
                assert!(body.contains(r"\u{202e}"), "{p}: {body}");
            }
        }
    }
    // HTML outputs only inside a frame with no permissions, the document
    // escaped into its attribute.
    let body = get(&log, "/notebook?path=a.ipynb&v=11");
    assert!(body.contains(r#"sandbox="""#));
    assert!(!body.contains("allow-scripts"));
    assert!(
        body.contains(r#"srcdoc="&lt;b&gt;bold&lt;/b&gt;&lt;script&gt;document.title="#),
        "{body}"
    );
    // SVG only as an image.
    assert!(!body.contains("<svg xmlns='http"));
    // Hostile values typed into a filter come back escaped.
    let body = get(
        &log,
        "/?op=%22%3E%3Cscript%3Ewindow.pwned%3D1%3C%2Fscript%3E",
    );
    assert!(body.contains("value=\"&quot;&gt;&lt;script&gt;"), "{body}");
    // An error page escapes what it quotes.
    let r = status(
        &log,
        "/notebook?path=%3Cscript%3Ewindow.pwned%3D1%3C%2Fscript%3E",
    );
    assert_eq!(r.status, 404);
    assert!(!r.body.contains("<script>window"), "{}", r.body);
}

#[test]
fn only_get_and_head_are_answered() {
    let b = ui_log::session(0);
    let log = open(&b);
    for m in ["POST", "PUT", "DELETE", "PATCH"] {
        let r = respond(&log, m, "/");
        assert_eq!(r.status, 405, "{m}");
    }
    assert_eq!(respond(&log, "HEAD", "/").status, 200);
    assert_eq!(respond(&log, "GET", "/nowhere").status, 404);
    assert_eq!(
        respond(&log, "GET", "/ui.js").content_type,
        "text/javascript; charset=utf-8"
    );
    assert_eq!(respond(&log, "GET", "/ui.css").status, 200);
}

// ------------------------------------------------------------ over HTTP

/// One HTTP/1.1 request; the status and the whole answer.
fn http(addr: &str, method: &str, target: &str, headers: &[(&str, &str)]) -> (u16, String) {
    let mut s = std::net::TcpStream::connect(addr).unwrap();
    let mut req = format!("{method} {target} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n");
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    req.push_str("Content-Length: 0\r\n\r\n");
    s.write_all(req.as_bytes()).unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).unwrap();
    let code = out.split_whitespace().nth(1).unwrap().parse().unwrap();
    (code, out)
}

/// `nbledger ui --port 0` on the log; its address.
fn ui_server(b: &Built) -> (std::process::Child, String) {
    use std::io::BufRead;
    let mut child = std::process::Command::new(common::bin())
        .args(["ui", "--port", "0", "--root"])
        .arg(&b.root)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut err = std::io::BufReader::new(child.stderr.take().unwrap());
    let mut line = String::new();
    while !line.contains("forensic view is at") {
        line.clear();
        assert!(err.read_line(&mut line).unwrap() > 0, "nbledger ui stopped");
    }
    std::thread::spawn(move || std::io::copy(&mut err, &mut std::io::sink()));
    let url = line.trim().rsplit(' ').next().unwrap();
    let addr = url
        .trim_start_matches("http://")
        .trim_end_matches('/')
        .to_owned();
    (child, addr)
}

#[test]
fn nbledger_ui_serves_the_pages_on_loopback_read_only() {
    let b = ui_log::session(0);
    let (mut child, addr) = ui_server(&b);
    assert!(addr.starts_with("127.0.0.1:"), "{addr}");
    let (code, page) = http(&addr, "GET", "/event/6", &[]);
    assert_eq!(code, 200, "{page}");
    assert!(page.contains("Locks it overrode"));
    assert!(
        page.to_ascii_lowercase()
            .contains("content-security-policy: default-src 'none'"),
        "{page}"
    );
    assert_eq!(http(&addr, "POST", "/", &[]).0, 405);
    assert_eq!(http(&addr, "HEAD", "/", &[]).0, 200);
    // DNS rebinding and cross-site requests are refused.
    let port = addr.rsplit(':').next().unwrap();
    let mut s = std::net::TcpStream::connect(&addr).unwrap();
    s.write_all(b"GET / HTTP/1.1\r\nHost: evil.example\r\nConnection: close\r\n\r\n")
        .unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).unwrap();
    assert!(out.starts_with("HTTP/1.1 403"), "{out}");
    assert_eq!(
        http(&addr, "GET", "/", &[("Origin", "http://evil.example")]).0,
        403
    );
    let own = format!("http://localhost:{port}");
    assert_eq!(http(&addr, "GET", "/", &[("Origin", own.as_str())]).0, 200);
    // The log is untouched: the view read a copy, and a server can still open it.
    drop(Store::open(&b.data).unwrap());
    let (code, _) = http(&addr, "GET", "/reload", &[]);
    assert_eq!(code, 303);
    child.kill().unwrap();
    child.wait().unwrap();
}

#[test]
fn serve_http_mounts_the_view_behind_its_token() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().canonicalize().unwrap();
    let (mut child, url) = common::http_server(&root, Some(common::TOKEN));
    let addr = url
        .trim_start_matches("http://")
        .trim_end_matches("/mcp")
        .to_owned();
    let auth = format!("Bearer {}", common::TOKEN);
    let (code, out) = http(&addr, "GET", "/", &[]);
    assert_eq!(code, 401, "{out}");
    assert!(
        out.to_ascii_lowercase()
            .contains("www-authenticate: bearer")
    );
    assert_eq!(
        http(&addr, "GET", "/", &[("Authorization", "Bearer wrong")]).0,
        401
    );
    let (code, page) = http(&addr, "GET", "/", &[("Authorization", auth.as_str())]);
    assert_eq!(code, 200, "{page}");
    assert!(page.contains("log head: v0"), "{page}");
    assert_eq!(
        http(
            &addr,
            "GET",
            "/activity",
            &[("Authorization", auth.as_str())]
        )
        .0,
        200
    );
    assert_eq!(
        http(
            &addr,
            "GET",
            "/event/1",
            &[("Authorization", auth.as_str())]
        )
        .0,
        404
    );
    assert_eq!(
        http(&addr, "POST", "/", &[("Authorization", auth.as_str())]).0,
        405
    );
    assert_eq!(
        http(
            &addr,
            "GET",
            "/",
            &[
                ("Authorization", auth.as_str()),
                ("Origin", "http://evil.example")
            ]
        )
        .0,
        403
    );
    child.kill().unwrap();
    child.wait().unwrap();
}

#[test]
fn a_rare_client_is_found_page_by_page_under_the_scan_budget() {
    let budget = nbledger::ui::SCAN_BUDGET as u64;
    let b = ui_log::session(budget + 5_000);
    let log = open(&b);
    let first = get(&log, "/?client=external");
    assert_eq!(rows(&first), Vec::<u64>::new());
    let stop = b.head + 1 - budget;
    assert!(
        first.contains(&format!("the search stopped below version {stop}")),
        "{first}"
    );
    let next = format!("/?client=external&before={stop}");
    assert!(first.contains(&next.replace('&', "&amp;")), "{first}");
    let second = get(&log, &next);
    assert_eq!(rows(&second), vec![10]);
    assert!(!second.contains(r#"rel="next""#));
}

#[test]
fn both_views_read_a_log_that_a_server_holds() {
    let b = ui_log::session(0);
    // The server owns the store (and may append start-up records).
    let (mut server, url) = common::http_server(&b.root, None);
    let addr = url
        .trim_start_matches("http://")
        .trim_end_matches("/mcp")
        .to_owned();
    let (code, page) = http(&addr, "GET", "/event/6", &[]);
    assert_eq!(code, 200, "the owner's own store: {page}");
    assert!(page.contains("Locks it overrode"));
    let (code, page) = http(&addr, "GET", "/notebook?path=a.ipynb&v=11", &[]);
    assert_eq!(code, 200, "{page}");
    assert!(page.contains(r#"sandbox="""#));
    // `nbledger ui` beside it copies the log through the owner's socket.
    let (mut ui, ui_addr) = ui_server(&b);
    let (code, page) = http(&ui_addr, "GET", "/?client=bob", &[]);
    assert_eq!(code, 200, "{page}");
    assert!(page.contains(r#"<tr id="v4">"#), "{page}");
    ui.kill().unwrap();
    ui.wait().unwrap();
    server.kill().unwrap();
    server.wait().unwrap();
}
