//! nbledger inside a real JupyterLab collaboration room (§12).
//!
//! `tests/jupyter/setup.sh` installs the pinned JupyterLab and
//! jupyter-collaboration (and pycrdt for the simulated person,
//! `tests/jupyter/person.py`) into `target/jupyterenv` on first use. These
//! tests never skip: without Python 3 and pip, or if JupyterLab does not
//! start, they fail and say why.

mod common;

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use common::{Client, call, cells, connect_with, create};
use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader, Lines};
use tokio::process::{Child, ChildStdin, ChildStdout, Command};

const TOKEN: &str = "room-test-token";

/// The virtualenv with JupyterLab, made by `tests/jupyter/setup.sh`.
fn venv() -> &'static Path {
    static VENV: OnceLock<PathBuf> = OnceLock::new();
    VENV.get_or_init(|| {
        let repo = Path::new(env!("CARGO_MANIFEST_DIR"));
        let status = std::process::Command::new("bash")
            .arg(repo.join("tests/jupyter/setup.sh"))
            .status();
        assert!(
            status.as_ref().is_ok_and(|s| s.success()),
            "tests/jupyter/setup.sh failed ({status:?}): the room tests need Python 3.10+ with \
             venv and pip (python3, or set PYTHON) to install JupyterLab into target/jupyterenv"
        );
        let venv = std::env::var_os("NBLEDGER_JUPYTERENV")
            .map(PathBuf::from)
            .unwrap_or_else(|| repo.join("target/jupyterenv"));
        assert!(
            venv.join("bin/jupyter-lab").is_file(),
            "no jupyter-lab in {}: run tests/jupyter/setup.sh",
            venv.display()
        );
        venv
    })
}

/// A headless JupyterLab on loopback with a token, serving `root`.
struct Lab {
    child: std::process::Child,
    port: u16,
    url: String,
}

impl Lab {
    /// Starts JupyterLab on a free port and waits until it answers.
    fn start(root: &Path) -> Lab {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        Lab::start_on(root, port)
    }

    fn start_on(root: &Path, port: u16) -> Lab {
        let home = root.join(".jupyter-home");
        std::fs::create_dir_all(&home).unwrap();
        let log = std::fs::File::create(root.join(format!(".jupyter-{port}.log"))).unwrap();
        let child = std::process::Command::new(venv().join("bin/jupyter-lab"))
            .args([
                "--no-browser",
                "--allow-root",
                "--ip=127.0.0.1",
                &format!("--port={port}"),
                "--port-retries=0",
                &format!("--IdentityProvider.token={TOKEN}"),
                &format!("--ServerApp.root_dir={}", root.display()),
            ])
            // jupyter-collaboration keeps its store (.jupyter_ystore.db) in
            // the working directory: the test's folder, not the repository.
            .current_dir(root)
            .env("HOME", &home)
            .env("JUPYTER_CONFIG_DIR", home.join("config"))
            .env("JUPYTER_DATA_DIR", home.join("data"))
            .env("JUPYTER_RUNTIME_DIR", home.join("runtime"))
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("start jupyter-lab");
        let url = format!("http://127.0.0.1:{port}");
        let lab = Lab { child, port, url };
        lab.wait_ready(root);
        lab
    }

    fn wait_ready(&self, root: &Path) {
        let deadline = Instant::now() + Duration::from_secs(90);
        loop {
            if status_ok(self.port) {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "JupyterLab did not answer on port {} within 90 s; its log: {}",
                self.port,
                std::fs::read_to_string(root.join(format!(".jupyter-{}.log", self.port)))
                    .unwrap_or_default()
            );
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Whether `GET /api/status` answers 200 with the token.
fn status_ok(port: u16) -> bool {
    use std::io::{Read, Write};
    let Ok(mut s) = std::net::TcpStream::connect(("127.0.0.1", port)) else {
        return false;
    };
    let _ = s.set_read_timeout(Some(Duration::from_secs(2)));
    let req = format!(
        "GET /api/status HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nAuthorization: token {TOKEN}\r\nConnection: close\r\n\r\n"
    );
    if s.write_all(req.as_bytes()).is_err() {
        return false;
    }
    let mut buf = String::new();
    let _ = s.read_to_string(&mut buf);
    buf.starts_with("HTTP/1.1 200")
}

/// The simulated person (tests/jupyter/person.py), driven line by line.
struct Person {
    _child: Child,
    stdin: ChildStdin,
    lines: Lines<BufReader<ChildStdout>>,
}

impl Person {
    async fn join(lab: &Lab, path: &str, name: &str) -> Person {
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/jupyter/person.py");
        let mut child = Command::new(venv().join("bin/python"))
            .arg(script)
            .args([&lab.url, TOKEN, path, name])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .expect("start person.py");
        let stdin = child.stdin.take().unwrap();
        let lines = BufReader::new(child.stdout.take().unwrap()).lines();
        let mut p = Person {
            _child: child,
            stdin,
            lines,
        };
        let ready = p.next().await;
        assert_eq!(ready["ready"], true, "person did not join: {ready}");
        p
    }

    async fn next(&mut self) -> Value {
        let line = tokio::time::timeout(Duration::from_secs(60), self.lines.next_line())
            .await
            .expect("person answers within 60 s")
            .expect("person's stdout")
            .expect("person exited");
        serde_json::from_str(&line).expect("person answers JSON")
    }

    async fn cmd(&mut self, c: Value) -> Value {
        self.stdin
            .write_all(format!("{c}\n").as_bytes())
            .await
            .unwrap();
        self.next().await
    }

    async fn wait(&mut self, cell: &str, contains: &str, timeout_s: f64) -> f64 {
        let r = self
            .cmd(json!({"op": "wait", "cell": cell, "contains": contains, "timeout": timeout_s}))
            .await;
        assert_eq!(
            r["ok"], true,
            "the room never showed {contains:?} in {cell}: {r}"
        );
        r["ms"].as_f64().unwrap()
    }

    async fn source(&mut self, cell: &str) -> String {
        let r = self.cmd(json!({"op": "cells"})).await;
        r["cells"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["id"] == cell)
            .map(|c| c["source"].as_str().unwrap().to_owned())
            .unwrap_or_default()
    }
}

/// An agent on a server that joins `lab`'s rooms.
async fn agent(root: &Path, lab: &Lab, name: &str) -> Client {
    let token_file = root.join(".jupyter-token");
    std::fs::write(&token_file, TOKEN).unwrap();
    let data = root.join(".nbledger");
    connect_with(
        root,
        name,
        &[
            "--data",
            data.to_str().unwrap(),
            "--jupyter",
            &lab.url,
            "--jupyter-token-file",
            token_file.to_str().unwrap(),
        ],
    )
    .await
}

async fn source_in_log(client: &Client, path: &str, cell: &str) -> String {
    cells(client, path)
        .await
        .into_iter()
        .find(|(id, _, _)| id == cell)
        .map(|(_, _, s)| s)
        .unwrap_or_default()
}

/// Waits until the log's source of `cell` satisfies `pred`.
async fn wait_log(client: &Client, path: &str, cell: &str, pred: impl Fn(&str) -> bool) -> String {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let s = source_in_log(client, path, cell).await;
        if pred(&s) || Instant::now() > deadline {
            return s;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn history(client: &Client, path: &str, cell: &str) -> Vec<Value> {
    let r = call(
        client,
        "get_cell_history",
        json!({"path": path, "cell_id": cell, "limit": 1000}),
    )
    .await
    .ok();
    r["entries"].as_array().unwrap().clone()
}

/// Makes a notebook through nbledger and waits until the room holds it
/// (nbledger has joined: its write of a marker shows in the room).
async fn notebook_in_room(
    client: &Client,
    lab: &Lab,
    path: &str,
    sources: &[&str],
    person: &str,
) -> (Vec<String>, Person) {
    let ids = create(client, path, sources).await;
    // The first event makes nbledger join; a write after that goes
    // through the room.
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut p = Person::join(lab, path, person).await;
    let mut n = 0;
    loop {
        n += 1;
        let marker = format!("{}# joined {n}", sources[0]);
        call(
            client,
            "update_cell",
            json!({"path": path, "cell_id": ids[0], "source": marker}),
        )
        .await
        .ok();
        let r = p
            .cmd(json!({"op": "wait", "cell": ids[0], "contains": marker, "timeout": 2}))
            .await;
        if r["ok"] == true {
            break;
        }
        assert!(Instant::now() < deadline, "nbledger never joined the room");
    }
    call(
        client,
        "update_cell",
        json!({"path": path, "cell_id": ids[0], "source": sources[0]}),
    )
    .await
    .ok();
    p.wait(&ids[0], sources[0], 10.0).await;
    (ids, p)
}

#[tokio::test(flavor = "multi_thread")]
async fn agents_and_a_person_typing_lose_nothing_and_the_log_says_who_wrote_what() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    let lab = Lab::start(root);
    let client = agent(root, &lab, "agent-a").await;
    let path = "together.ipynb";
    let (ids, mut alice) =
        notebook_in_room(&client, &lab, path, &["a = 1", "b = 1", "c = 1"], "alice").await;

    // An agent's write shows in the person's room, fast.
    let mut waits = Vec::new();
    for i in 0..50 {
        let src = format!("b = {i} # latency");
        call(
            &client,
            "update_cell",
            json!({"path": path, "cell_id": ids[1], "source": src}),
        )
        .await
        .ok();
        waits.push(alice.wait(&ids[1], &src, 10.0).await);
    }
    waits.sort_by(f64::total_cmp);
    eprintln!(
        "agent write visible in the room: p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms (n={})",
        waits[waits.len() / 2],
        waits[waits.len() * 99 / 100],
        waits[waits.len() - 1],
        waits.len()
    );

    // The person types in cell 0 while the agent writes cells 1 and 2.
    let typed: String = "# typed by alice, every key counts 0123456789".into();
    alice
        .cmd(json!({"op": "type", "cell": ids[0], "text": typed, "min_ms": 50, "max_ms": 100}))
        .await;
    let mut writes = 0;
    let started = Instant::now();
    while started.elapsed() < Duration::from_secs(4) {
        let target = &ids[1 + writes % 2];
        let src = format!("agent write {writes}");
        let r = call(
            &client,
            "update_cell",
            json!({"path": path, "cell_id": target, "source": src}),
        )
        .await
        .ok();
        assert_eq!(r["changed"], true);
        writes += 1;
        tokio::time::sleep(Duration::from_millis(150)).await;
    }
    let done = alice.cmd(json!({"op": "typed"})).await;
    assert_eq!(
        done["count"].as_u64().unwrap() as usize,
        typed.chars().count()
    );

    // Zero lost keystrokes: the room and (after the pause) the log hold
    // every character; zero lost agent writes.
    let want_a = format!("a = 1{typed}");
    assert_eq!(alice.source(&ids[0]).await, want_a);
    let in_log = wait_log(&client, path, &ids[0], |s| s == want_a).await;
    assert_eq!(in_log, want_a, "the person's typing reached the log");
    let last1 = format!(
        "agent write {}",
        if (writes - 1) % 2 == 0 {
            writes - 1
        } else {
            writes - 2
        }
    );
    let last2 = format!(
        "agent write {}",
        if (writes - 1) % 2 == 1 {
            writes - 1
        } else {
            writes - 2
        }
    );
    alice.wait(&ids[1], &last1, 10.0).await;
    alice.wait(&ids[2], &last2, 10.0).await;
    assert_eq!(source_in_log(&client, path, &ids[1]).await, last1);
    assert_eq!(source_in_log(&client, path, &ids[2]).await, last2);

    // The log says who wrote what: every agent write by agent-a, the
    // typing by jupyter:alice, coalesced (far fewer events than keys).
    let h1 = history(&client, path, &ids[1]).await;
    let h2 = history(&client, path, &ids[2]).await;
    let agent_writes = h1
        .iter()
        .chain(&h2)
        .filter(|e| e["client_name"] == "agent-a" && e["operation"] == "update_cell")
        .filter(|e| {
            e["source_after"]
                .as_str()
                .is_some_and(|s| s.starts_with("agent write"))
        })
        .count();
    assert_eq!(agent_writes, writes, "every agent write is in the log");
    let h0 = history(&client, path, &ids[0]).await;
    let by_alice: Vec<&Value> = h0
        .iter()
        .filter(|e| e["client_name"] == "jupyter:alice" && e["operation"] == "jupyter_edit")
        .collect();
    assert!(!by_alice.is_empty(), "alice's typing is in the log: {h0:?}");
    assert!(
        by_alice.len() < typed.len() / 4,
        "coalesced: {} events",
        by_alice.len()
    );
    assert!(
        h0.iter()
            .all(|e| e["client_name"] != "external" && e["operation"] != "keep_write"),
        "no outside change and no conflict while in the room: {h0:?}"
    );

    // A pause in typing reaches the log within about the pause.
    alice
        .cmd(json!({"op": "type", "cell": ids[2], "text": " # end", "min_ms": 50, "max_ms": 60}))
        .await;
    alice.cmd(json!({"op": "typed"})).await;
    let paused = Instant::now();
    let got = wait_log(&client, path, &ids[2], |s| s.ends_with(" # end")).await;
    assert!(got.ends_with(" # end"), "{got}");
    eprintln!(
        "person's last keystroke to its event in the log: {} ms (PAUSE {} ms; the test polls every 100 ms)",
        paused.elapsed().as_millis(),
        nbledger::room::peer::PAUSE.as_millis()
    );

    // The file is Jupyter's save of the room, recognised as ours.
    let save = alice.cmd(json!({"op": "save"})).await;
    assert_eq!(save["ok"], true);
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let file = common::file_sources(root, path);
    assert_eq!(file[0], want_a);
    assert!(file[2].ends_with(" # end"), "{file:?}");
    let changes = call(
        &client,
        "get_notebook_changes",
        json!({"path": path, "limit": 1000}),
    )
    .await
    .ok();
    assert!(
        changes["changes"]
            .as_array()
            .unwrap()
            .iter()
            .all(|c| c["operation"] != "external_change"),
        "Jupyter's saves are not outside changes: {changes}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn the_cell_a_person_types_in_is_locked_for_agents_until_forced() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    let lab = Lab::start(root);
    let client = agent(root, &lab, "agent-b").await;
    let path = "focus.ipynb";
    let (ids, mut bob) = notebook_in_room(&client, &lab, path, &["x = 1", "y = 1"], "bob").await;

    bob.cmd(
        json!({"op": "type", "cell": ids[0], "text": " + 2 + 3 + 4", "min_ms": 60, "max_ms": 90}),
    )
    .await;
    // The focus lock shows up while bob types.
    let deadline = Instant::now() + Duration::from_secs(10);
    let locks = loop {
        let l = call(&client, "list_locks", json!({"path": path}))
            .await
            .ok();
        if l["locks"].as_array().is_some_and(|a| !a.is_empty()) || Instant::now() > deadline {
            break l;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let lock = &locks["locks"][0];
    assert_eq!(lock["cell_id"], ids[0].as_str(), "{locks}");
    assert_eq!(lock["owner"], "jupyter:bob", "{locks}");

    let refused = call(
        &client,
        "update_cell",
        json!({"path": path, "cell_id": ids[0], "source": "x = 99"}),
    )
    .await;
    assert_eq!(refused.code(), "locked", "{:?}", refused.error());
    // Other cells stay free.
    call(
        &client,
        "update_cell",
        json!({"path": path, "cell_id": ids[1], "source": "y = 2"}),
    )
    .await
    .ok();

    let forced = call(
        &client,
        "update_cell",
        json!({"path": path, "cell_id": ids[0], "source": "x = 'forced'", "force": true}),
    )
    .await
    .ok();
    assert_eq!(forced["overrode_lock"], "jupyter:bob");
    bob.cmd(json!({"op": "typed"})).await;
    // The room ends with the agent's forced text plus whatever bob typed
    // after it; the log has bob's text from before the force, and the write.
    bob.wait(&ids[0], "x = 'forced'", 10.0).await;
    let h = history(&client, path, &ids[0]).await;
    assert!(
        h.iter().any(|e| e["client_name"] == "jupyter:bob"
            && e["source_after"]
                .as_str()
                .is_some_and(|s| s.starts_with("x = 1 "))),
        "bob's text before the force is in the log: {h:?}"
    );
    assert!(
        h.iter().any(|e| e["client_name"] == "agent-b"
            && e["operation"] == "update_cell"
            && e["overrode_lock"] == "jupyter:bob"),
        "the forced write is in the log: {h:?}"
    );
    assert!(
        h.iter().any(|e| e["rejected"] == true),
        "the refusal is on record: {h:?}"
    );

    // A cursor in a cell (no typing) locks it too.
    let at = bob.cmd(json!({"op": "cursor", "cell": ids[1]})).await;
    assert_eq!(at["ok"], true);
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let l = call(&client, "list_locks", json!({"path": path}))
            .await
            .ok();
        let held = l["locks"]
            .as_array()
            .unwrap()
            .iter()
            .any(|k| k["cell_id"] == ids[1].as_str() && k["owner"] == "jupyter:bob");
        if held {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the cursor's cell was never locked: {l} (anchor {at})"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let refused = call(
        &client,
        "update_cell",
        json!({"path": path, "cell_id": ids[1], "source": "y = 3"}),
    )
    .await;
    assert_eq!(refused.code(), "locked");

    // Structure both ways: an agent's new cell shows in the room; the
    // person's new cell and deletion reach the log by the person.
    let ins = call(
        &client,
        "insert_cell",
        json!({"path": path, "index": 2, "source": "z = 'agent'"}),
    )
    .await
    .ok();
    let agent_cell = ins["cell_id"].as_str().unwrap().to_owned();
    bob.wait(&agent_cell, "z = 'agent'", 10.0).await;
    bob.cmd(json!({"op": "insert", "index": 0, "id": "bobcell1", "source": "w = 'bob'"}))
        .await;
    bob.cmd(json!({"op": "delete", "cell": agent_cell})).await;
    let deadline = Instant::now() + Duration::from_secs(15);
    let log = loop {
        let log = cells(&client, path).await;
        let ok = log
            .first()
            .is_some_and(|c| c.0 == "bobcell1" && c.2 == "w = 'bob'")
            && !log.iter().any(|c| c.0 == agent_cell);
        if ok || Instant::now() > deadline {
            break log;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(log[0].0, "bobcell1", "{log:?}");
    assert_eq!(log[0].2, "w = 'bob'", "{log:?}");
    assert!(!log.iter().any(|c| c.0 == agent_cell), "{log:?}");
    let h = history(&client, path, "bobcell1").await;
    assert_eq!(h[0]["client_name"], "jupyter:bob", "{h:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn jupyter_killed_mid_session_falls_back_to_the_file_and_rejoins_without_loss() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    let mut lab = Lab::start(root);
    let client = agent(root, &lab, "agent-c").await;
    let path = "fallback.ipynb";
    let (ids, mut carol) =
        notebook_in_room(&client, &lab, path, &["p = 1", "q = 1"], "carol").await;

    // Carol's typing reaches the log; then Jupyter dies.
    carol
        .cmd(json!({"op": "type", "cell": ids[0], "text": "  # carol", "min_ms": 20, "max_ms": 30}))
        .await;
    carol.cmd(json!({"op": "typed"})).await;
    let port = lab.port;
    lab.kill();
    drop(carol);
    let got = wait_log(&client, path, &ids[0], |s| s == "p = 1  # carol").await;
    assert_eq!(
        got, "p = 1  # carol",
        "the room's last edits reached the log"
    );

    // Agents go on through the file.
    call(
        &client,
        "update_cell",
        json!({"path": path, "cell_id": ids[1], "source": "q = 'while down'"}),
    )
    .await
    .ok();
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let file = common::file_sources(root, path);
        if file == ["p = 1  # carol", "q = 'while down'"] {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "fallback: the file holds the log: {file:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    // Jupyter comes back: nbledger rejoins; nothing either side wrote is lost.
    let lab = Lab::start_on(root, port);
    let mut dave = Person::join(&lab, path, "dave").await;
    // nbledger is back in the room when its awareness entry shows.
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let p = dave.cmd(json!({"op": "peers"})).await;
        if p["peers"]
            .as_array()
            .unwrap()
            .iter()
            .any(|n| n == "nbledger")
        {
            break;
        }
        assert!(Instant::now() < deadline, "nbledger never rejoined: {p}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    dave.wait(&ids[1], "q = 'while down'", 15.0).await;
    assert_eq!(dave.source(&ids[0]).await, "p = 1  # carol");
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut n = 0;
    loop {
        n += 1;
        let src = format!("q = 'rejoined {n}'");
        call(
            &client,
            "update_cell",
            json!({"path": path, "cell_id": ids[1], "source": src}),
        )
        .await
        .ok();
        let r = dave
            .cmd(json!({"op": "wait", "cell": ids[1], "contains": src, "timeout": 2}))
            .await;
        if r["ok"] == true {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "nbledger never rejoined the room"
        );
    }
    dave.cmd(json!({"op": "type", "cell": ids[0], "text": " # dave", "min_ms": 20, "max_ms": 30}))
        .await;
    dave.cmd(json!({"op": "typed"})).await;
    let got = wait_log(&client, path, &ids[0], |s| s == "p = 1  # carol # dave").await;
    assert_eq!(got, "p = 1  # carol # dave");
    let h = history(&client, path, &ids[0]).await;
    assert!(
        h.iter().any(|e| e["client_name"] == "jupyter:carol"),
        "{h:?}"
    );
    assert!(
        h.iter().any(|e| e["client_name"] == "jupyter:dave"),
        "{h:?}"
    );
}
