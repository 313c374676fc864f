//! The forensic view in a real browser: Debian's `chromium`, headless,
//! driven over the DevTools protocol (a WebSocket and a few CDP calls).
//! It opens the timeline of a log with several agents, clicks into an
//! event, steps a notebook through its versions (links and the keyboard
//! script), opens blame and activity, asserts on the rendered DOM, and
//! saves screenshots under `target/ui-screenshots/`. A hostile output
//! must not run: nothing sets `window.pwned` or the title.
//!
//! Without chromium this test fails (`.ci/run` installs it): set
//! `NBLEDGER_CHROMIUM` to use another binary.

mod common;
mod ui_log;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use tungstenite::{Message, WebSocket};

const WAIT: Duration = Duration::from_secs(15);

fn chromium() -> PathBuf {
    if let Some(p) = std::env::var_os("NBLEDGER_CHROMIUM") {
        return PathBuf::from(p);
    }
    for name in ["chromium", "chromium-browser", "google-chrome"] {
        for dir in std::env::var("PATH").unwrap_or_default().split(':') {
            let p = PathBuf::from(dir).join(name);
            if p.is_file() {
                return p;
            }
        }
    }
    panic!(
        "no chromium on PATH: install Debian's `chromium` (apt-get install -y chromium; .ci/run does) \
         or set NBLEDGER_CHROMIUM to a Chromium binary"
    );
}

/// A child killed when the test ends, however it ends.
struct Kill(Child);

impl Drop for Kill {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Reads `child`'s stderr until a line containing `marker`; returns it and
/// keeps draining the rest.
fn wait_line(child: &mut Child, marker: &str) -> String {
    let mut err = BufReader::new(child.stderr.take().unwrap());
    let mut line = String::new();
    while !line.contains(marker) {
        line.clear();
        assert!(
            err.read_line(&mut line).unwrap() > 0,
            "the process stopped before {marker:?}"
        );
    }
    std::thread::spawn(move || std::io::copy(&mut err, &mut std::io::sink()));
    line
}

/// A GET to chromium's DevTools HTTP endpoint, which keeps the connection
/// open: the body is read by its Content-Length.
fn http_get(addr: &str, target: &str) -> String {
    let s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(WAIT)).unwrap();
    write!(
        &s,
        "GET {target} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut r = BufReader::new(s);
    let mut len = 0usize;
    loop {
        let mut line = String::new();
        if r.read_line(&mut line).unwrap() == 0 || line == "\r\n" {
            break;
        }
        if let Some((k, v)) = line.split_once(':')
            && k.eq_ignore_ascii_case("content-length")
        {
            len = v.trim().parse().unwrap();
        }
    }
    let mut body = vec![0; len];
    r.read_exact(&mut body).unwrap();
    String::from_utf8(body).unwrap()
}

struct Browser {
    ws: WebSocket<TcpStream>,
    next: u64,
    base: String,
    shots: PathBuf,
    _chrome: Kill,
    _profile: tempfile::TempDir,
}

impl Browser {
    fn start(base: &str) -> Browser {
        let profile = tempfile::tempdir().unwrap();
        let mut child = Command::new(chromium())
            .args([
                "--headless=new",
                "--no-sandbox",
                "--disable-gpu",
                "--disable-dev-shm-usage",
                "--no-first-run",
                "--no-default-browser-check",
                "--remote-debugging-port=0",
                "--window-size=1280,900",
            ])
            .arg(format!("--user-data-dir={}", profile.path().display()))
            .arg("about:blank")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start chromium");
        let line = wait_line(&mut child, "DevTools listening on");
        let chrome = Kill(child);
        let browser_ws = line.trim().rsplit(' ').next().unwrap().to_owned();
        let addr = browser_ws
            .trim_start_matches("ws://")
            .split('/')
            .next()
            .unwrap()
            .to_owned();
        // The page target chromium opened with about:blank.
        let deadline = Instant::now() + WAIT;
        let page_ws = loop {
            let list: Value =
                serde_json::from_str(&http_get(&addr, "/json/list")).unwrap_or(json!([]));
            if let Some(t) = list
                .as_array()
                .into_iter()
                .flatten()
                .find(|t| t["type"] == "page")
            {
                break t["webSocketDebuggerUrl"].as_str().unwrap().to_owned();
            }
            assert!(Instant::now() < deadline, "chromium opened no page");
            std::thread::sleep(Duration::from_millis(100));
        };
        let stream = TcpStream::connect(&addr).unwrap();
        stream.set_read_timeout(Some(WAIT)).unwrap();
        let (ws, _) = tungstenite::client(page_ws.as_str(), stream).expect("CDP WebSocket");
        let shots = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target/ui-screenshots");
        std::fs::create_dir_all(&shots).unwrap();
        let mut b = Browser {
            ws,
            next: 1,
            base: base.to_owned(),
            shots,
            _chrome: chrome,
            _profile: profile,
        };
        b.call("Page.enable", json!({}));
        b.call("Runtime.enable", json!({}));
        b
    }

    /// One CDP command and its result (events in between are skipped).
    fn call(&mut self, method: &str, params: Value) -> Value {
        let id = self.next;
        self.next += 1;
        let msg = json!({"id": id, "method": method, "params": params}).to_string();
        self.ws.send(Message::text(msg)).unwrap();
        loop {
            let m = self.ws.read().expect("CDP answer");
            let Message::Text(t) = m else { continue };
            let v: Value = serde_json::from_str(t.as_str()).unwrap();
            if v["id"] == id {
                assert!(v.get("error").is_none(), "{method}: {v}");
                return v["result"].clone();
            }
        }
    }

    fn eval(&mut self, expr: &str) -> Value {
        let r = self.call(
            "Runtime.evaluate",
            json!({"expression": expr, "returnByValue": true, "awaitPromise": true}),
        );
        assert!(r.get("exceptionDetails").is_none(), "{expr}: {r}");
        r["result"]["value"].clone()
    }

    /// Waits until the page at a URL ending in `suffix` has loaded.
    fn wait_for(&mut self, suffix: &str) {
        let deadline = Instant::now() + WAIT;
        loop {
            let state = self.eval("[location.href, document.readyState]");
            if state[0].as_str().unwrap_or("").ends_with(suffix) && state[1] == "complete" {
                return;
            }
            assert!(Instant::now() < deadline, "never reached {suffix}: {state}");
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn open(&mut self, target: &str) {
        let url = format!("{}{target}", self.base);
        self.call("Page.navigate", json!({"url": url}));
        self.wait_for(target);
    }

    /// A real mouse click in the middle of the first element matching `css`.
    fn click(&mut self, css: &str) {
        let expr = format!(
            "(() => {{ const e = document.querySelector({}); if (!e) return null; e.scrollIntoView({{block: 'center'}}); \
             const r = e.getBoundingClientRect(); return [r.x + r.width / 2, r.y + r.height / 2]; }})()",
            json!(css)
        );
        let at = self.eval(&expr);
        assert!(at.is_array(), "nothing matches {css}");
        let (x, y) = (at[0].as_f64().unwrap(), at[1].as_f64().unwrap());
        for kind in ["mousePressed", "mouseReleased"] {
            self.call(
                "Input.dispatchMouseEvent",
                json!({"type": kind, "x": x, "y": y, "button": "left", "clickCount": 1}),
            );
        }
    }

    fn key(&mut self, key: &str) {
        for kind in ["keyDown", "keyUp"] {
            self.call(
                "Input.dispatchKeyEvent",
                json!({"type": kind, "key": key, "code": key, "windowsVirtualKeyCode": if key == "ArrowRight" { 39 } else { 37 }}),
            );
        }
    }

    fn screenshot(&mut self, name: &str) {
        let r = self.call("Page.captureScreenshot", json!({"format": "png"}));
        let png = decode_base64(r["data"].as_str().unwrap());
        assert!(png.starts_with(b"\x89PNG"), "{name} is not a PNG");
        std::fs::write(self.shots.join(format!("{name}.png")), png).unwrap();
    }

    /// Nothing from the log ran.
    fn assert_untouched(&mut self) {
        let r = self.eval("[typeof window.pwned, document.title]");
        assert_eq!(r[0], "undefined", "a hostile script ran: {r}");
        let title = r[1].as_str().unwrap();
        assert!(
            title.ends_with("nbledger") && !title.contains("pwned"),
            "{title}"
        );
    }
}

fn decode_base64(s: &str) -> Vec<u8> {
    let val = |c: u8| -> u32 {
        match c {
            b'A'..=b'Z' => (c - b'A') as u32,
            b'a'..=b'z' => (c - b'a' + 26) as u32,
            b'0'..=b'9' => (c - b'0' + 52) as u32,
            b'+' => 62,
            _ => 63,
        }
    };
    let bytes: Vec<u8> = s
        .bytes()
        .filter(|&b| b != b'=' && !b.is_ascii_whitespace())
        .collect();
    let mut out = Vec::with_capacity(bytes.len() * 3 / 4);
    for chunk in bytes.chunks(4) {
        let mut n = 0u32;
        for (i, &c) in chunk.iter().enumerate() {
            n |= val(c) << (18 - 6 * i);
        }
        for i in 0..chunk.len().saturating_sub(1) {
            out.push((n >> (16 - 8 * i)) as u8);
        }
    }
    out
}

#[test]
fn a_person_reads_the_log_in_chromium() {
    let b = ui_log::session(5);
    let mut ui = Command::new(common::bin())
        .args(["ui", "--port", "0", "--root"])
        .arg(&b.root)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let line = wait_line(&mut ui, "forensic view is at");
    let _ui = Kill(ui);
    let base = line
        .trim()
        .rsplit(' ')
        .next()
        .unwrap()
        .trim_end_matches('/')
        .to_owned();
    let mut br = Browser::start(&base);

    // The timeline: every event, newest first, several agents.
    br.open("/");
    let rows = br.eval("[...document.querySelectorAll('table.events tbody tr')].map(r => r.id)");
    let want: Vec<String> = (1..=b.head).rev().map(|v| format!("v{v}")).collect();
    assert_eq!(rows, json!(want));
    let clients = br.eval("[...new Set([...document.querySelectorAll('table.events .client')].map(c => c.textContent))].sort()");
    assert_eq!(
        clients,
        json!([
            "<script>window.pwned=1</script>eve",
            "ana",
            "bob",
            "carl",
            "external"
        ])
    );
    br.assert_untouched();
    br.screenshot("timeline");

    // Filter by client through the form.
    br.open("/?client=bob");
    assert_eq!(
        br.eval("document.querySelectorAll('table.events tbody tr').length"),
        json!(5)
    );

    // Into an event: the forced write.
    br.open("/");
    br.click("a[href='/event/6']");
    br.wait_for("/event/6");
    let forced = br.eval("document.querySelector('ul.forced').textContent");
    assert!(forced.as_str().unwrap().contains("bob"), "{forced}");
    assert_eq!(
        br.eval("document.querySelectorAll('table.diff td.r').length > 0"),
        json!(true)
    );
    br.screenshot("event");

    // Step a notebook through its versions: links, then the keyboard.
    br.open("/notebook?path=a.ipynb&v=1");
    let state = |br: &mut Browser| br.eval("document.querySelector('.stepper span a').textContent");
    assert_eq!(state(&mut br), json!("v1"));
    br.click("a[rel=next]");
    br.wait_for("v=2");
    assert_eq!(state(&mut br), json!("v2"));
    assert_eq!(
        br.eval("document.querySelector('.md h1').textContent"),
        json!("Title")
    );
    br.click("a[rel=next]");
    br.wait_for("v=3");
    br.assert_untouched();
    br.key("ArrowRight");
    br.wait_for("v=4");
    assert_eq!(state(&mut br), json!("v4"));
    br.key("ArrowLeft");
    br.wait_for("v=3");
    // The version with hostile outputs: rendered, and inert.
    br.open("/notebook?path=a.ipynb&v=11");
    assert_eq!(
        br.eval("document.querySelectorAll('iframe.html-output').length"),
        json!(2)
    );
    assert_eq!(
        br.eval("[...document.querySelectorAll('iframe.html-output')].every(f => f.getAttribute('sandbox') === '' && f.contentDocument === null)"),
        json!(true)
    );
    assert_eq!(
        br.eval("document.querySelectorAll('.output img').length >= 3"),
        json!(true)
    );
    assert_eq!(
        br.eval("document.querySelector('#cell-e1 pre.code').textContent.includes('\\\\u{202e}')"),
        json!(true),
        "the bidi override is shown, not obeyed"
    );
    std::thread::sleep(Duration::from_millis(300));
    br.assert_untouched();
    br.screenshot("notebook");

    // Blame: lines coloured by client, linking to events.
    br.open("/blame?path=a.ipynb");
    let who = br.eval("[...new Set([...document.querySelectorAll('table.blame tr.line')].map(r => r.dataset.client))].sort()");
    assert_eq!(
        who,
        json!(["<script>window.pwned=1</script>eve", "ana", "bob"])
    );
    assert_eq!(
        br.eval("document.querySelectorAll('.legend .entry').length"),
        json!(3)
    );
    br.assert_untouched();
    br.screenshot("blame");
    br.click("table.blame td.who a");
    br.wait_for("/event/6");

    // Activity: lanes, and a mark is a link.
    br.open("/activity");
    assert_eq!(
        br.eval("document.querySelectorAll('svg.activity g.lane').length"),
        json!(5)
    );
    assert_eq!(
        br.eval("document.querySelectorAll('svg.activity rect.run').length"),
        json!(1)
    );
    br.screenshot("activity");
    br.click("svg.activity a[href='/event/9'] rect");
    br.wait_for("/event/9");
    br.assert_untouched();
}
