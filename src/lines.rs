//! Line-delimited JSON-RPC links: stdio and the owner's socket (contract
//! §8.12).
//!
//! rmcp reads one message per line and drops a line over its limit with
//! nothing but a log line, which leaves the sender waiting for an answer
//! forever. So a [`LineGuard`] sits between the byte stream and rmcp: lines
//! within the limit pass through unchanged; a longer one is read to its end
//! in bounded memory while a [`Scan`] picks out its top-level `id` (and
//! `method`, the tool's name and the protocol version), and the sender is
//! answered for that id. A message whose id cannot be read cannot be
//! answered: the link is closed with a line on stderr, so the peer sees
//! end-of-file instead of silence.
//!
//! Answers go out through the same [`LineWriter`] rmcp writes with. It gives
//! the output to one writer at a time, from a line's first byte to its
//! newline, so an answer never lands inside one of rmcp's messages.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, Waker, ready};

use rmcp::transport::async_rw::AsyncRwTransport;
use rmcp::{RoleClient, RoleServer};
use serde_json::{Value, json};
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt, ReadBuf};

use crate::error::{Code, ToolError};
use crate::tools::common;

/// The largest message a client may send in one line over stdio or in one
/// HTTP body. It holds one cell source at its 1 MiB limit even when JSON
/// escaping makes it six times longer; a batch of many large cells may need
/// several calls.
pub const MESSAGE_LIMIT: usize = 16 << 20;

/// The largest message on the socket between an attached process and the
/// owner, each way. A forwarded call is re-serialised with its caller's
/// name added, so whatever the front door took fits with room to spare;
/// the owner's answers (reads with images) get the same room.
pub const LINK_LIMIT: usize = 4 * MESSAGE_LIMIT;

/// Where a 2026-07-28 request names its protocol version.
const PROTOCOL_VERSION_KEY: &str = "io.modelcontextprotocol/protocolVersion";

/// A rmcp transport serving MCP over `read`/`write` (stdio, or the owner's
/// end of the socket): a request over `limit` is answered for its id with
/// `too_large`; `from` names the peer in the stderr line when the link has
/// to close.
pub fn server<R, W>(
    read: R,
    write: W,
    limit: usize,
    from: &'static str,
) -> AsyncRwTransport<RoleServer, LineGuard<R>, LineWriter<W>>
where
    R: AsyncRead + Send + Unpin + 'static,
    W: AsyncWrite + Send + Unpin + 'static,
{
    let writer = LineWriter::new(write);
    let answers = writer.share();
    let guard = LineGuard::new(
        read,
        limit,
        Box::new(move |o: Oversized| {
            if let Some(line) = o.answer_as_server() {
                tracing::warn!(
                    bytes = o.bytes,
                    limit = o.limit,
                    method = o.method.as_deref().unwrap_or(""),
                    "answered a request over the message limit with too_large"
                );
                let mut out = answers.share();
                return Verdict::Send(Box::pin(async move {
                    // A peer that stopped reading cannot be answered; the
                    // link's own reads and writes end the session then.
                    let _ = out.write_all(&line).await;
                    let _ = out.flush().await;
                }));
            }
            if o.is_notification() {
                tracing::warn!(
                    bytes = o.bytes,
                    limit = o.limit,
                    method = o.method.as_deref().unwrap_or(""),
                    "dropped a notification over the message limit (nobody waits for it)"
                );
                return Verdict::Skip;
            }
            say(&format!(
                "nbledger: closing the session: a message of {} bytes on {from} is over the {}-byte limit of one message and its JSON-RPC id cannot be read, so it cannot be answered; send smaller messages (split large edits over several calls)",
                o.bytes, o.limit
            ));
            Verdict::Close
        }),
    );
    AsyncRwTransport::new_server(guard, writer).with_max_line_length(limit + 1)
}

/// A rmcp transport for an attached process's end of the socket: an answer
/// from the owner over `limit` becomes a JSON-RPC error for its call, so
/// the call returns instead of waiting forever.
pub fn client<R, W>(
    read: R,
    write: W,
    limit: usize,
) -> AsyncRwTransport<RoleClient, LineGuard<R>, W>
where
    R: AsyncRead + Send + Unpin + 'static,
    W: AsyncWrite + Send + Unpin + 'static,
{
    let guard = LineGuard::new(
        read,
        limit,
        Box::new(move |o: Oversized| {
            if let Some(line) = o.answer_as_client() {
                tracing::warn!(
                    bytes = o.bytes,
                    limit = o.limit,
                    "the owner's answer is over the link's message limit; the call gets an error"
                );
                return Verdict::Inject(line);
            }
            tracing::error!(
                bytes = o.bytes,
                limit = o.limit,
                "a message from the owner is over the link's limit and not an answer; closing the link"
            );
            Verdict::Close
        }),
    );
    AsyncRwTransport::new_client(guard, write).with_max_line_length(limit + 1)
}

/// A line on stderr that never panics (stderr may be a pipe nobody reads).
fn say(line: &str) {
    use std::io::Write;
    let _ = writeln!(std::io::stderr(), "{line}");
}

/// What a message too long to pass said about itself.
#[derive(Debug, Clone, PartialEq)]
pub struct Oversized {
    /// Its length without the newline.
    pub bytes: u64,
    pub limit: usize,
    pub id: Id,
    pub method: Option<String>,
    /// `params.name` (the tool of a `tools/call`).
    pub tool: Option<String>,
    /// `params._meta["io.modelcontextprotocol/protocolVersion"]`.
    pub protocol_version: Option<String>,
    /// It was one well-formed JSON value.
    pub complete: bool,
}

/// The top-level `id` of a message.
#[derive(Debug, Clone, PartialEq)]
pub enum Id {
    Absent,
    /// A number or string, as JSON.
    Value(Value),
    /// Present but not a number or string, too long, or after the point
    /// where the message stopped being JSON.
    Unreadable,
}

impl Oversized {
    fn is_notification(&self) -> bool {
        self.complete && self.id == Id::Absent && self.method.is_some()
    }

    /// The answer to a request we cannot read: a `too_large` tool result
    /// for `tools/call` (an agent sees it like any refused call), a
    /// JSON-RPC error otherwise. `None` when there is no id to answer.
    fn answer_as_server(&self) -> Option<Vec<u8>> {
        let Id::Value(id) = &self.id else {
            return None;
        };
        let message = match (&self.method, &self.tool) {
            (Some(m), Some(t)) if m == "tools/call" => format!("this {t} call is"),
            (Some(m), _) => format!("this {m} request is"),
            (None, _) => "this message is".to_owned(),
        };
        let message = format!(
            "{message} {} bytes, over the limit of {} bytes for one message, so nothing was done; send less at once: a cell source is at most 1 MiB, and a large batch can be split over several calls",
            self.bytes, self.limit
        );
        let reply = if self.method.as_deref() == Some("tools/call") {
            let mut result = common::err(
                &ToolError::new(Code::TooLarge, message)
                    .with("limit", self.limit as u64)
                    .with("actual", self.bytes),
            );
            // 2026-07-28 results say they are complete; older ones must not
            // (rmcp strips the field for them, but this answer bypasses it).
            let modern = self
                .protocol_version
                .as_deref()
                .is_some_and(|v| v >= rmcp::model::ProtocolVersion::V_2026_07_28.as_str());
            result.result_type = modern.then_some(rmcp::model::ResultType::COMPLETE);
            json!({"jsonrpc": "2.0", "id": id, "result": result})
        } else {
            json!({
                "jsonrpc": "2.0",
                "id": id,
                "error": {
                    "code": rmcp::model::ErrorCode::INVALID_REQUEST.0,
                    "message": message,
                    "data": {"code": "too_large", "limit": self.limit, "actual": self.bytes},
                },
            })
        };
        Some(line_of(&reply))
    }

    /// For an answer from the owner too long for the link: the error its
    /// call gets instead. Requests and notifications are not answers.
    fn answer_as_client(&self) -> Option<Vec<u8>> {
        let Id::Value(id) = &self.id else {
            return None;
        };
        if self.method.is_some() {
            return None;
        }
        let reply = json!({
            "jsonrpc": "2.0",
            "id": id,
            "error": {
                "code": rmcp::model::ErrorCode::INTERNAL_ERROR.0,
                "message": format!(
                    "the store's owner answered with {} bytes, over the {}-byte limit of the link between nbledger processes; ask for less at once (fewer cells, include_images: false)",
                    self.bytes, self.limit
                ),
                "data": {"code": "too_large", "limit": self.limit, "actual": self.bytes},
            },
        });
        Some(line_of(&reply))
    }
}

fn line_of(v: &Value) -> Vec<u8> {
    let mut line = v.to_string().into_bytes();
    line.push(b'\n');
    line
}

/// What a [`LineGuard`] does once an oversized line has ended.
pub enum Verdict {
    /// Nothing: the line is gone.
    Skip,
    /// Hand these bytes (whole lines) to the reader in the line's place.
    Inject(Vec<u8>),
    /// Run this (writing an answer) before the stream may end.
    Send(Pin<Box<dyn Future<Output = ()> + Send>>),
    /// End the stream after the lines before this one.
    Close,
}

type Judge = Box<dyn FnMut(Oversized) -> Verdict + Send>;

/// A buffer past this size is freed once emptied, so that one long line
/// does not keep its memory for the rest of the session.
const KEEP_CAPACITY: usize = 1 << 20;

/// An `AsyncRead` of whole lines no longer than `limit` bytes (newline not
/// counted): longer ones are read in bounded memory, scanned, and given to
/// the judge.
pub struct LineGuard<R> {
    inner: R,
    limit: usize,
    chunk: Box<[u8]>,
    /// The line being read, while it is within the limit.
    line: Vec<u8>,
    /// The line being skipped, once it is not.
    scan: Option<Scan>,
    /// Whole lines ready for the reader, from `out_at`.
    out: Vec<u8>,
    out_at: usize,
    judge: Judge,
    /// Answers being written; the stream does not end before they are.
    sending: Vec<Pin<Box<dyn Future<Output = ()> + Send>>>,
    ended: bool,
}

impl<R> LineGuard<R> {
    pub fn new(inner: R, limit: usize, judge: Judge) -> LineGuard<R> {
        LineGuard {
            inner,
            limit,
            chunk: vec![0; 64 << 10].into_boxed_slice(),
            line: Vec::new(),
            scan: None,
            out: Vec::new(),
            out_at: 0,
            judge,
            sending: Vec::new(),
            ended: false,
        }
    }

    fn take(&mut self, mut data: &[u8]) {
        while !data.is_empty() && !self.ended {
            let newline = data.iter().position(|b| *b == b'\n');
            let (part, rest) = match newline {
                Some(i) => (&data[..i], &data[i + 1..]),
                None => (data, &[][..]),
            };
            if let Some(scan) = &mut self.scan {
                scan.feed(part);
            } else if self.line.len() + part.len() > self.limit {
                let mut scan = Scan::default();
                scan.feed(&self.line);
                scan.feed(part);
                self.scan = Some(scan);
                self.line = Vec::new();
            } else {
                self.line.extend_from_slice(part);
            }
            if newline.is_some() {
                match self.scan.take() {
                    Some(scan) => {
                        let verdict = (self.judge)(scan.finish(self.limit));
                        self.apply(verdict);
                    }
                    None => {
                        self.line.push(b'\n');
                        self.emit_line();
                    }
                }
            }
            data = rest;
        }
    }

    fn emit_line(&mut self) {
        if self.out_at == self.out.len() {
            self.out.clear();
            self.out_at = 0;
            std::mem::swap(&mut self.line, &mut self.out);
        } else {
            self.out.extend_from_slice(&self.line);
            self.line.clear();
        }
    }

    fn apply(&mut self, verdict: Verdict) {
        match verdict {
            Verdict::Skip => {}
            Verdict::Inject(lines) => {
                self.line = lines;
                self.emit_line();
            }
            Verdict::Send(f) => self.sending.push(f),
            Verdict::Close => {
                self.ended = true;
                self.line = Vec::new();
            }
        }
    }
}

impl<R: AsyncRead + Unpin> AsyncRead for LineGuard<R> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        loop {
            this.sending
                .retain_mut(|f| f.as_mut().poll(cx).is_pending());
            if this.out_at < this.out.len() {
                let n = buf.remaining().min(this.out.len() - this.out_at);
                buf.put_slice(&this.out[this.out_at..this.out_at + n]);
                this.out_at += n;
                if this.out_at == this.out.len() {
                    if this.out.capacity() > KEEP_CAPACITY {
                        this.out = Vec::new();
                    } else {
                        this.out.clear();
                    }
                    this.out_at = 0;
                }
                return Poll::Ready(Ok(()));
            }
            if this.ended {
                // End-of-file only once every answer is out: the process
                // may exit right after.
                return if this.sending.is_empty() {
                    Poll::Ready(Ok(()))
                } else {
                    Poll::Pending
                };
            }
            let mut chunk = std::mem::take(&mut this.chunk);
            let mut read = ReadBuf::new(&mut chunk);
            let polled = Pin::new(&mut this.inner).poll_read(cx, &mut read);
            let n = read.filled().len();
            let result = match polled {
                Poll::Ready(Ok(())) if n == 0 => {
                    // A line cut off by the end of input was never a message.
                    this.ended = true;
                    Ok(())
                }
                Poll::Ready(Ok(())) => {
                    this.take(&chunk[..n]);
                    Ok(())
                }
                Poll::Ready(Err(e)) => Err(e),
                Poll::Pending => {
                    this.chunk = chunk;
                    return Poll::Pending;
                }
            };
            this.chunk = chunk;
            result?;
        }
    }
}

/// A JSON scanner that reads any length in bounded memory and keeps only
/// what answering a message needs: its top-level `id` and `method`,
/// `params.name` and `params._meta`'s protocol version. String contents
/// are skipped, not stored; nesting is capped at serde_json's own depth
/// limit (a deeper message could not be parsed at any size).
#[derive(Debug, Default)]
pub struct Scan {
    /// Open containers: `true` for an object, with the key being read in
    /// it (kept only near the top, where the fields we want live).
    stack: Vec<(bool, Option<String>)>,
    expect: Expect,
    token: Token,
    /// The token being kept, as raw JSON.
    kept: Vec<u8>,
    kept_too_long: bool,
    broken: bool,
    bytes: u64,
    id: Option<Id>,
    method: Option<String>,
    tool: Option<String>,
    version: Option<String>,
}

#[derive(Debug, Default, Clone, Copy, PartialEq)]
enum Expect {
    #[default]
    Value,
    /// Right after `{`: a key or `}`.
    FirstKey,
    Key,
    Colon,
    /// Right after `[`: a value or `]`.
    FirstValue,
    CommaOrEnd,
    /// The top-level value is complete.
    Nothing,
}

#[derive(Debug, Default, Clone, Copy, PartialEq)]
enum Token {
    #[default]
    None,
    String {
        escaped: bool,
        keep: Keep,
    },
    Scalar {
        keep: Keep,
    },
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Keep {
    No,
    Key,
    Field(Field),
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Field {
    Id,
    Method,
    Tool,
    Version,
}

const MAX_DEPTH: usize = 128;
const MAX_KEPT: usize = 1024;

impl Scan {
    pub fn feed(&mut self, data: &[u8]) {
        self.bytes += data.len() as u64;
        let mut i = 0;
        while i < data.len() && !self.broken {
            match self.token {
                Token::String { escaped, keep } => {
                    if escaped {
                        self.keep_bytes(keep, &data[i..i + 1]);
                        self.token = Token::String {
                            escaped: false,
                            keep,
                        };
                        i += 1;
                        continue;
                    }
                    let stop = data[i..]
                        .iter()
                        .position(|b| *b == b'"' || *b == b'\\')
                        .map_or(data.len(), |p| i + p);
                    let end = (stop + 1).min(data.len());
                    self.keep_bytes(keep, &data[i..end]);
                    if stop < data.len() {
                        if data[stop] == b'"' {
                            self.token = Token::None;
                            self.end_token(keep);
                        } else {
                            self.token = Token::String {
                                escaped: true,
                                keep,
                            };
                        }
                    }
                    i = end;
                }
                Token::Scalar { keep } => {
                    let stop = data[i..]
                        .iter()
                        .position(|b| is_delimiter(*b))
                        .map_or(data.len(), |p| i + p);
                    self.keep_bytes(keep, &data[i..stop]);
                    if stop < data.len() {
                        self.token = Token::None;
                        self.end_token(keep);
                    }
                    i = stop;
                }
                Token::None => {
                    self.punctuation(data[i]);
                    i += 1;
                }
            }
        }
    }

    /// What the message said, once its line has ended.
    pub fn finish(mut self, limit: usize) -> Oversized {
        if let Token::Scalar { keep } = self.token {
            // A number ends where the line does.
            self.token = Token::None;
            self.end_token(keep);
        }
        let complete = !self.broken && self.expect == Expect::Nothing;
        Oversized {
            bytes: self.bytes,
            limit,
            id: self.id.unwrap_or(Id::Absent),
            method: self.method,
            tool: self.tool,
            protocol_version: self.version,
            complete,
        }
    }

    fn punctuation(&mut self, b: u8) {
        match b {
            b' ' | b'\t' | b'\r' | b'\n' => {}
            b'"' => match self.expect {
                Expect::FirstKey | Expect::Key => {
                    let near_top = self.stack.len() <= 3;
                    if let Some(top) = self.stack.last_mut() {
                        top.1 = None;
                    }
                    self.start(Token::String {
                        escaped: false,
                        keep: if near_top { Keep::Key } else { Keep::No },
                    });
                }
                Expect::Value | Expect::FirstValue => {
                    let keep = self.field().map_or(Keep::No, Keep::Field);
                    self.start(Token::String {
                        escaped: false,
                        keep,
                    });
                }
                _ => self.broken = true,
            },
            b'{' | b'[' => {
                if !matches!(self.expect, Expect::Value | Expect::FirstValue) {
                    self.broken = true;
                    return;
                }
                if self.field() == Some(Field::Id) {
                    self.id = Some(Id::Unreadable);
                }
                let object = b == b'{';
                self.stack.push((object, None));
                if self.stack.len() > MAX_DEPTH {
                    self.broken = true;
                }
                self.expect = if object {
                    Expect::FirstKey
                } else {
                    Expect::FirstValue
                };
            }
            b'}' | b']' => {
                let object = b == b'}';
                let may_close = match self.expect {
                    Expect::CommaOrEnd => true,
                    Expect::FirstKey => object,
                    Expect::FirstValue => !object,
                    _ => false,
                };
                match self.stack.last() {
                    Some((o, _)) if may_close && *o == object => {
                        self.stack.pop();
                        self.value_done();
                    }
                    _ => self.broken = true,
                }
            }
            b':' if self.expect == Expect::Colon => self.expect = Expect::Value,
            b',' if self.expect == Expect::CommaOrEnd => {
                self.expect = match self.stack.last() {
                    Some((true, _)) => Expect::Key,
                    _ => Expect::Value,
                };
            }
            _ if matches!(self.expect, Expect::Value | Expect::FirstValue) && !is_delimiter(b) => {
                let keep = self.field().map_or(Keep::No, Keep::Field);
                self.start(Token::Scalar { keep });
                self.keep_bytes(keep, &[b]);
            }
            _ => self.broken = true,
        }
    }

    fn start(&mut self, token: Token) {
        self.token = token;
        self.kept.clear();
        self.kept_too_long = false;
        if let Token::String { keep, .. } = token {
            self.keep_bytes(keep, b"\"");
        }
    }

    fn keep_bytes(&mut self, keep: Keep, bytes: &[u8]) {
        if keep == Keep::No || self.kept_too_long {
            return;
        }
        if self.kept.len() + bytes.len() > MAX_KEPT {
            self.kept_too_long = true;
            self.kept = Vec::new();
        } else {
            self.kept.extend_from_slice(bytes);
        }
    }

    /// A string or scalar token just ended.
    fn end_token(&mut self, keep: Keep) {
        let kept = (!self.kept_too_long).then(|| std::mem::take(&mut self.kept));
        match keep {
            Keep::Key => {
                let key = kept.and_then(|k| serde_json::from_slice::<String>(&k).ok());
                if let Some(top) = self.stack.last_mut() {
                    top.1 = key;
                }
                self.expect = Expect::Colon;
                return;
            }
            Keep::Field(field) => {
                let value = kept.and_then(|k| serde_json::from_slice::<Value>(&k).ok());
                match field {
                    Field::Id => {
                        self.id = Some(match value {
                            Some(v @ (Value::Number(_) | Value::String(_))) => Id::Value(v),
                            _ => Id::Unreadable,
                        });
                    }
                    Field::Method => self.method = text(value),
                    Field::Tool => self.tool = text(value),
                    Field::Version => self.version = text(value),
                }
            }
            Keep::No => {}
        }
        if matches!(self.expect, Expect::FirstKey | Expect::Key) {
            // A key nobody keeps (too deep).
            self.expect = Expect::Colon;
        } else {
            self.value_done();
        }
    }

    fn value_done(&mut self) {
        self.expect = if self.stack.is_empty() {
            Expect::Nothing
        } else {
            Expect::CommaOrEnd
        };
    }

    /// The field a value starting now belongs to, if it is one we keep.
    fn field(&self) -> Option<Field> {
        if self.stack.len() > 3 || self.stack.iter().any(|(object, _)| !object) {
            return None;
        }
        let key = |i: usize| self.stack.get(i).and_then(|f| f.1.as_deref());
        match (self.stack.len(), key(0), key(1), key(2)) {
            (1, Some("id"), _, _) => Some(Field::Id),
            (1, Some("method"), _, _) => Some(Field::Method),
            (2, Some("params"), Some("name"), _) => Some(Field::Tool),
            (3, Some("params"), Some("_meta"), Some(PROTOCOL_VERSION_KEY)) => Some(Field::Version),
            _ => None,
        }
    }
}

fn text(v: Option<Value>) -> Option<String> {
    match v {
        Some(Value::String(s)) => Some(s),
        _ => None,
    }
}

fn is_delimiter(b: u8) -> bool {
    matches!(
        b,
        b' ' | b'\t' | b'\r' | b'\n' | b',' | b':' | b'{' | b'}' | b'[' | b']' | b'"'
    )
}

/// One output shared by several writers, handed to one at a time from the
/// first byte of a line to its newline. rmcp writes a message in as many
/// `poll_write`s as the output takes; an answer written meanwhile waits for
/// the newline instead of splitting the message.
pub struct LineWriter<W> {
    shared: Arc<parking_lot::Mutex<Shared<W>>>,
    me: u64,
}

struct Shared<W> {
    out: W,
    /// The writer in the middle of a line.
    holder: Option<u64>,
    /// A writer went away in the middle of a line: end it before the next.
    torn: bool,
    waiting: Vec<Waker>,
    next: u64,
}

impl<W> LineWriter<W> {
    pub fn new(out: W) -> LineWriter<W> {
        LineWriter {
            shared: Arc::new(parking_lot::Mutex::new(Shared {
                out,
                holder: None,
                torn: false,
                waiting: Vec::new(),
                next: 1,
            })),
            me: 0,
        }
    }

    /// Another writer on the same output.
    pub fn share(&self) -> LineWriter<W> {
        let mut s = self.shared.lock();
        let me = s.next;
        s.next += 1;
        LineWriter {
            shared: self.shared.clone(),
            me,
        }
    }
}

impl<W> Shared<W> {
    fn release(&mut self) {
        self.holder = None;
        for w in self.waiting.drain(..) {
            w.wake();
        }
    }
}

impl<W: AsyncWrite + Unpin> AsyncWrite for LineWriter<W> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let me = self.me;
        let mut guard = self.shared.lock();
        let s = &mut *guard;
        if s.holder.is_some_and(|h| h != me) {
            if !s.waiting.iter().any(|w| w.will_wake(cx.waker())) {
                s.waiting.push(cx.waker().clone());
            }
            return Poll::Pending;
        }
        if buf.is_empty() {
            return Poll::Ready(Ok(0));
        }
        if s.torn {
            s.holder = Some(me);
            if ready!(Pin::new(&mut s.out).poll_write(cx, b"\n"))? == 0 {
                return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
            }
            s.torn = false;
        }
        let n = ready!(Pin::new(&mut s.out).poll_write(cx, buf))?;
        if n > 0 {
            if buf.get(n - 1) == Some(&b'\n') {
                s.release();
            } else {
                s.holder = Some(me);
            }
        }
        Poll::Ready(Ok(n))
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.shared.lock().out).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        // Other writers may still answer: shutting down is for the last.
        self.poll_flush(cx)
    }
}

impl<W> Drop for LineWriter<W> {
    fn drop(&mut self) {
        let mut s = self.shared.lock();
        if s.holder == Some(self.me) {
            s.torn = true;
            s.release();
        }
    }
}

#[cfg(test)]
mod tests;
