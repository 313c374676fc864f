use std::sync::Mutex;

use tokio::io::{AsyncBufReadExt, AsyncReadExt, BufReader};

use super::*;

fn scan(text: &str) -> Oversized {
    let mut s = Scan::default();
    s.feed(text.as_bytes());
    s.finish(10)
}

/// The same text fed one byte at a time: chunk boundaries change nothing.
fn scan_bytewise(text: &str) -> Oversized {
    let mut s = Scan::default();
    for b in text.as_bytes() {
        s.feed(std::slice::from_ref(b));
    }
    s.finish(10)
}

#[test]
fn the_id_is_found_first_or_last_and_strings_are_skipped() {
    let big = "x\\\"id\\\":9 {[".repeat(1000);
    for text in [
        format!(
            r#"{{"jsonrpc":"2.0","id":7,"method":"tools/call","params":{{"name":"update_cell","arguments":{{"source":"{big}"}}}}}}"#
        ),
        format!(
            r#"{{"method":"tools/call","params":{{"arguments":{{"id":1,"source":"{big}"}},"name":"update_cell"}},"jsonrpc":"2.0","id":7}}"#
        ),
    ] {
        for o in [scan(&text), scan_bytewise(&text)] {
            assert_eq!(o.id, Id::Value(json!(7)));
            assert_eq!(o.method.as_deref(), Some("tools/call"));
            assert_eq!(o.tool.as_deref(), Some("update_cell"));
            assert!(o.complete);
            assert_eq!(o.bytes, text.len() as u64);
        }
    }
}

#[test]
fn string_ids_escaped_keys_and_the_protocol_version_are_read() {
    let o = scan(
        r#"{"\u0069d":"req-1","method":"tools/call","params":{"_meta":{"io.modelcontextprotocol/protocolVersion":"2026-07-28"},"name":"insert_cell"}}"#,
    );
    assert_eq!(o.id, Id::Value(json!("req-1")));
    assert_eq!(o.protocol_version.as_deref(), Some("2026-07-28"));
    assert_eq!(o.tool.as_deref(), Some("insert_cell"));
}

#[test]
fn ids_that_cannot_answer_are_unreadable_or_absent() {
    assert_eq!(scan(r#"{"id":{"a":1},"method":"x"}"#).id, Id::Unreadable);
    assert_eq!(scan(r#"{"id":null,"method":"x"}"#).id, Id::Unreadable);
    assert_eq!(scan(r#"{"id":true,"method":"x"}"#).id, Id::Unreadable);
    let long = format!(r#"{{"id":"{}","method":"x"}}"#, "a".repeat(5000));
    assert_eq!(scan(&long).id, Id::Unreadable);
    // Not an object, or no id before the text stops being JSON.
    assert_eq!(scan(r#"[{"id":1}]"#).id, Id::Absent);
    assert_eq!(scan(&"x".repeat(100)).id, Id::Absent);
    let broken = scan(r#"{"method":"x" "id":3}"#);
    assert_eq!(broken.id, Id::Absent);
    assert!(!broken.complete);
    // An id read before the break still names the request.
    let o = scan(r#"{"id":3,"method":"x","params":{"a":]]]"#);
    assert_eq!(o.id, Id::Value(json!(3)));
    assert!(!o.complete);
}

#[test]
fn nested_ids_and_names_are_not_the_messages() {
    let o =
        scan(r#"{"params":{"id":5,"arguments":{"name":"n","method":"m"}},"method":"tools/list"}"#);
    assert_eq!(o.id, Id::Absent);
    assert_eq!(o.tool, None);
    assert_eq!(o.method.as_deref(), Some("tools/list"));
    assert!(o.is_notification());
}

#[test]
fn nesting_past_serde_jsons_limit_is_not_json() {
    let deep = format!(r#"{{"id":1,"a":{}{}}}"#, "[".repeat(200), "]".repeat(200));
    let o = scan(&deep);
    assert!(!o.complete);
    assert_eq!(
        o.id,
        Id::Value(json!(1)),
        "read before the nesting got too deep"
    );
}

#[test]
fn answers_match_the_request() {
    let mut o =
        scan(r#"{"jsonrpc":"2.0","id":4,"method":"tools/call","params":{"name":"update_cell"}}"#);
    o.bytes = 20_000_000;
    o.limit = MESSAGE_LIMIT;
    let answer: Value = serde_json::from_slice(&o.answer_as_server().unwrap()).unwrap();
    assert_eq!(answer["id"], 4);
    let result = &answer["result"];
    assert_eq!(result["isError"], true);
    assert_eq!(result["structuredContent"]["error"]["code"], "too_large");
    assert_eq!(result["structuredContent"]["error"]["actual"], 20_000_000);
    assert!(result.get("resultType").is_none(), "{result}");
    o.protocol_version = Some("2026-07-28".into());
    let answer: Value = serde_json::from_slice(&o.answer_as_server().unwrap()).unwrap();
    assert_eq!(answer["result"]["resultType"], "complete");
    // Another method: a JSON-RPC error for the id.
    let o = scan(r#"{"jsonrpc":"2.0","id":"k","method":"tools/list"}"#);
    let answer: Value = serde_json::from_slice(&o.answer_as_server().unwrap()).unwrap();
    assert_eq!(answer["id"], "k");
    assert_eq!(answer["error"]["code"], -32600);
    assert_eq!(answer["error"]["data"]["code"], "too_large");
    // The owner's side: only answers become errors for their call.
    assert!(o.answer_as_client().is_none());
    let reply = scan(r#"{"jsonrpc":"2.0","id":12,"result":{"content":[]}}"#);
    let err: Value = serde_json::from_slice(&reply.answer_as_client().unwrap()).unwrap();
    assert_eq!(err["id"], 12);
    assert!(err["error"]["message"].as_str().unwrap().contains("owner"));
}

/// A judge that records what it was given and answers `verdict`.
fn recording(
    seen: Arc<Mutex<Vec<Oversized>>>,
    verdict: impl Fn(&Oversized) -> Verdict + Send + 'static,
) -> Judge {
    Box::new(move |o| {
        let v = verdict(&o);
        seen.lock().unwrap().push(o);
        v
    })
}

async fn read_all<R: AsyncRead + Unpin>(r: R) -> String {
    let mut s = String::new();
    BufReader::new(r).read_to_string(&mut s).await.unwrap();
    s
}

#[tokio::test]
async fn lines_within_the_limit_pass_and_a_longer_one_is_judged() {
    let seen = Arc::new(Mutex::new(Vec::new()));
    let long = format!(
        r#"{{"id":2,"method":"m","params":"{}"}}"#,
        "y".repeat(200_000)
    );
    let input = format!("{{\"id\":1}}\n{long}\r\n\n{{\"id\":3}}\n0123456789\n");
    let guard = LineGuard::new(
        input.as_bytes(),
        10,
        recording(seen.clone(), |_| Verdict::Skip),
    );
    assert_eq!(
        read_all(guard).await,
        "{\"id\":1}\n\n{\"id\":3}\n0123456789\n"
    );
    let seen = seen.lock().unwrap();
    assert_eq!(seen.len(), 1);
    assert_eq!(seen[0].id, Id::Value(json!(2)));
    assert_eq!(seen[0].bytes, long.len() as u64 + 1, "the \\r counts");
    assert!(seen[0].complete);
}

#[tokio::test]
async fn an_injected_answer_takes_the_lines_place_and_close_ends_the_stream() {
    let seen = Arc::new(Mutex::new(Vec::new()));
    let input = "a\nBBBBBBBBBBBBBBBB\nc\nDDDDDDDDDDDDDDDDD\ne\n";
    let guard = LineGuard::new(
        input.as_bytes(),
        4,
        recording(seen.clone(), |o| {
            if o.bytes == 16 {
                Verdict::Inject(b"answer\n".to_vec())
            } else {
                Verdict::Close
            }
        }),
    );
    assert_eq!(read_all(guard).await, "a\nanswer\nc\n");
    assert_eq!(seen.lock().unwrap().len(), 2);
}

#[tokio::test]
async fn the_stream_ends_only_after_every_answer_is_written() {
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    let written = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let flag = written.clone();
    let mut rx = Some(rx);
    let guard = LineGuard::new(
        &b"0123456789abcdef\n"[..],
        4,
        Box::new(move |_| {
            let rx = rx.take().unwrap();
            let flag = flag.clone();
            Verdict::Send(Box::pin(async move {
                let _ = rx.await;
                flag.store(true, std::sync::atomic::Ordering::SeqCst);
            }))
        }),
    );
    let reader = tokio::spawn(read_all(guard));
    tokio::task::yield_now().await;
    assert!(!reader.is_finished());
    tx.send(()).unwrap();
    assert_eq!(reader.await.unwrap(), "");
    assert!(written.load(std::sync::atomic::Ordering::SeqCst));
}

/// An output that takes at most 3 bytes per write and yields between.
struct Trickle(Arc<Mutex<Vec<u8>>>, bool);

impl AsyncWrite for Trickle {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        self.1 = !self.1;
        if self.1 {
            cx.waker().wake_by_ref();
            return Poll::Pending;
        }
        let n = buf.len().min(3);
        self.0.lock().unwrap().extend_from_slice(&buf[..n]);
        Poll::Ready(Ok(n))
    }

    fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn writers_sharing_an_output_never_split_each_others_lines() {
    let sink = Arc::new(Mutex::new(Vec::new()));
    let first = LineWriter::new(Trickle(sink.clone(), false));
    let mut tasks = Vec::new();
    for w in 0..4 {
        let mut out = first.share();
        tasks.push(tokio::spawn(async move {
            for i in 0..50 {
                let line = format!("writer {w} line {i} {}\n", "z".repeat(i));
                out.write_all(line.as_bytes()).await.unwrap();
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    let text = String::from_utf8(sink.lock().unwrap().clone()).unwrap();
    let mut lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 200);
    lines.sort();
    let mut expected: Vec<String> = (0..4)
        .flat_map(|w| (0..50).map(move |i| format!("writer {w} line {i} {}", "z".repeat(i))))
        .collect();
    expected.sort();
    assert_eq!(lines, expected);
}

#[tokio::test]
async fn a_writer_gone_mid_line_leaves_the_next_line_whole() {
    let sink = Arc::new(Mutex::new(Vec::new()));
    let first = LineWriter::new(Trickle(sink.clone(), true));
    let mut gone = first.share();
    // Three bytes of a line, then the writer is dropped.
    let _ = futures_poll_write(&mut gone, b"half a line\n").await;
    drop(gone);
    let mut next = first.share();
    next.write_all(b"whole\n").await.unwrap();
    let text = String::from_utf8(sink.lock().unwrap().clone()).unwrap();
    assert_eq!(text, "hal\nwhole\n");
}

/// One `poll_write` that completes.
async fn futures_poll_write<W: AsyncWrite + Unpin>(w: &mut W, buf: &[u8]) -> io::Result<usize> {
    std::future::poll_fn(|cx| Pin::new(&mut *w).poll_write(cx, buf)).await
}

#[tokio::test]
async fn a_server_link_answers_an_oversized_request_between_rmcps_lines() {
    let (client, server_end) = tokio::io::duplex(1 << 16);
    let (read, write) = tokio::io::split(server_end);
    let writer = LineWriter::new(write);
    let answers = writer.share();
    let mut guard = LineGuard::new(
        read,
        64,
        Box::new(move |o: Oversized| {
            let line = o.answer_as_server().unwrap();
            let mut out = answers.share();
            Verdict::Send(Box::pin(async move {
                out.write_all(&line).await.unwrap();
            }))
        }),
    );
    let (client_read, mut client_write) = tokio::io::split(client);
    let big = format!(
        r#"{{"jsonrpc":"2.0","id":9,"method":"tools/call","params":{{"name":"t","arguments":{{"s":"{}"}}}}}}"#,
        "q".repeat(1000)
    );
    client_write
        .write_all(format!("{big}\n{{\"ok\":1}}\n").as_bytes())
        .await
        .unwrap();
    client_write.shutdown().await.unwrap();
    let mut passed = String::new();
    guard.read_to_string(&mut passed).await.unwrap();
    assert_eq!(passed, "{\"ok\":1}\n");
    drop(guard);
    drop(writer);
    let mut lines = BufReader::new(client_read).lines();
    let answer: Value = serde_json::from_str(&lines.next_line().await.unwrap().unwrap()).unwrap();
    assert_eq!(answer["id"], 9);
    assert_eq!(
        answer["result"]["structuredContent"]["error"]["code"],
        "too_large"
    );
}

/// The attached side of the link, with rmcp's client on it: an answer over
/// the limit from the owner ends the call with an error, never silence.
#[tokio::test]
async fn an_answer_too_large_for_the_link_ends_its_call_with_an_error() {
    use rmcp::ServiceExt;
    use rmcp::model::{CallToolRequestParams, ClientCapabilities, ClientConfig, Implementation};
    let (ours, theirs) = tokio::io::duplex(1 << 16);
    let owner = tokio::spawn(async move {
        let (r, mut w) = tokio::io::split(theirs);
        let mut lines = BufReader::new(r).lines();
        let mut next = async || -> Value {
            serde_json::from_str(&lines.next_line().await.unwrap().unwrap()).unwrap()
        };
        let init = next().await;
        let hello = json!({"jsonrpc": "2.0", "id": init["id"], "result": {
            "protocolVersion": init["params"]["protocolVersion"],
            "capabilities": {"tools": {}},
            "serverInfo": {"name": "owner", "version": "1"}}});
        w.write_all(&line_of(&hello)).await.unwrap();
        let _initialized = next().await;
        let call = next().await;
        assert_eq!(call["method"], "tools/call");
        let huge = json!({"jsonrpc": "2.0", "id": call["id"], "result": {
            "content": [{"type": "text", "text": "r".repeat(5000)}]}});
        w.write_all(&line_of(&huge)).await.unwrap();
        // Still there: the call must end without the link closing.
        let _ = lines.next_line().await;
    });
    let (r, w) = tokio::io::split(ours);
    let client = ClientConfig::new(
        ClientCapabilities::default(),
        Implementation::new("attached", "1"),
    )
    .serve(client(r, w, 1024))
    .await
    .unwrap();
    let err = client
        .call_tool(CallToolRequestParams::new("get_notebook_content"))
        .await
        .unwrap_err();
    let rmcp::ServiceError::McpError(e) = err else {
        panic!("a JSON-RPC error for the call: {err:?}");
    };
    assert!(
        e.message.contains("the store's owner answered with"),
        "{}",
        e.message
    );
    client.cancel().await.unwrap();
    owner.await.unwrap();
}
