//! The transport to a Jupyter server's collaboration rooms: the session
//! request (`PUT /api/collaboration/session/{path}`), the room websocket,
//! and y-websocket framing (message type 0 = sync, 1 = awareness).

use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use serde_json::Value;
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message as WsMessage;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};
use yrs::encoding::read::Cursor;
use yrs::sync::{Message, MessageReader, SyncMessage};
use yrs::updates::decoder::DecoderV1;
use yrs::updates::encoder::Encode;

/// Where the Jupyter server is and how to prove who we are.
#[derive(Debug, Clone)]
pub struct Jupyter {
    /// The server's base URL, e.g. `http://127.0.0.1:8888/` (no query).
    pub url: String,
    pub token: Option<String>,
}

/// A collaboration session: what the room websocket is named by.
#[derive(Debug, Clone)]
pub struct Session {
    pub file_id: String,
    pub session_id: String,
}

pub type Socket = WebSocketStream<MaybeTlsStream<TcpStream>>;

const HTTP_TIMEOUT: Duration = Duration::from_secs(10);

impl Jupyter {
    fn base(&self) -> String {
        let mut b = self.url.trim_end_matches('/').to_owned();
        b.push('/');
        b
    }

    /// Opens (or finds) the collaboration session of notebook `path`
    /// (relative to the server's root).
    pub async fn session(&self, path: &str) -> anyhow::Result<Session> {
        let url = format!(
            "{}api/collaboration/session/{}",
            self.base(),
            encode_path(path)
        );
        let client = reqwest::Client::builder().timeout(HTTP_TIMEOUT).build()?;
        let mut req = client
            .put(&url)
            .header("content-type", "application/json")
            .body(r#"{"format":"json","type":"notebook"}"#);
        if let Some(t) = &self.token {
            req = req.header("authorization", format!("token {t}"));
        }
        let resp = req.send().await?;
        let status = resp.status();
        let body = resp.text().await?;
        if !status.is_success() {
            anyhow::bail!("session request for {path} answered {status}: {body}");
        }
        let v: Value = serde_json::from_str(&body)?;
        let field = |k: &str| {
            v[k].as_str()
                .map(str::to_owned)
                .ok_or_else(|| anyhow::anyhow!("session answer lacks {k}: {body}"))
        };
        Ok(Session {
            file_id: field("fileId")?,
            session_id: field("sessionId")?,
        })
    }

    /// Connects to the notebook room of `session`.
    pub async fn connect(&self, session: &Session) -> anyhow::Result<Socket> {
        let base = self.base();
        let ws_base = if let Some(rest) = base.strip_prefix("https://") {
            format!("wss://{rest}")
        } else if let Some(rest) = base.strip_prefix("http://") {
            format!("ws://{rest}")
        } else {
            anyhow::bail!("the Jupyter URL must start with http:// or https://: {base}");
        };
        let url = format!(
            "{ws_base}api/collaboration/room/json:notebook:{}?sessionId={}",
            session.file_id, session.session_id
        );
        let mut req = url.into_client_request()?;
        if let Some(t) = &self.token {
            req.headers_mut()
                .insert("authorization", format!("token {t}").parse()?);
        }
        let (ws, _) = tokio::time::timeout(HTTP_TIMEOUT, tokio_tungstenite::connect_async(req))
            .await
            .map_err(|_| anyhow::anyhow!("the room websocket did not open in time"))??;
        Ok(ws)
    }
}

/// Percent-encodes each segment of a relative path.
fn encode_path(path: &str) -> String {
    let mut out = String::with_capacity(path.len());
    for b in path.bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' | b'/' => {
                out.push(b as char)
            }
            _ => out.push_str(&format!("%{b:02X}")),
        }
    }
    out
}

/// Sends one y-websocket message.
pub async fn send(ws: &mut Socket, msg: Message) -> anyhow::Result<()> {
    ws.send(WsMessage::binary(msg.encode_v1())).await?;
    Ok(())
}

/// Sends a sync update (an encoded Yjs update).
pub async fn send_update(ws: &mut Socket, update: Vec<u8>) -> anyhow::Result<()> {
    send(ws, Message::Sync(SyncMessage::Update(update))).await
}

/// The next y-websocket messages from the room; `None` once it closed.
/// Messages of other kinds (Jupyter's own RAW replies) are dropped.
pub async fn recv(ws: &mut Socket) -> Option<anyhow::Result<Vec<Message>>> {
    loop {
        let frame = match ws.next().await? {
            Ok(f) => f,
            Err(e) => return Some(Err(e.into())),
        };
        match frame {
            WsMessage::Binary(bytes) => {
                let mut decoder = DecoderV1::new(Cursor::new(&bytes));
                let msgs: Vec<Message> = MessageReader::new(&mut decoder)
                    .filter_map(Result::ok)
                    .collect();
                return Some(Ok(msgs));
            }
            WsMessage::Close(_) => return None,
            _ => continue,
        }
    }
}
