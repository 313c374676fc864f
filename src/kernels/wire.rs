//! The ZeroMQ side of one kernel: shell, iopub, control and heartbeat
//! sockets, with one reader task per socket feeding a single channel.
//!
//! Incoming frames are checked against the HMAC key and kept as raw JSON
//! (`msg_type`, parent `msg_id`, `content`) instead of typed messages, so
//! outputs reach the file exactly as the kernel sent them and a message
//! type the protocol crate cannot parse never stalls a run. Requests are
//! sent as typed messages, each send bounded in time (a DEALER socket
//! whose peer is gone would otherwise wait forever).

use std::time::Duration;

use jupyter_protocol::{ConnectionInfo, JupyterMessage, JupyterMessageContent};
use jupyter_zmq_client::{
    ClientControlConnection, DealerSendConnection, RawMessage, create_client_control_connection,
    create_client_heartbeat_connection, create_client_iopub_connection,
    create_client_shell_connection_with_identity, peer_identity_for_session,
};
use serde_json::Value;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use zeromq::SocketRecv;

/// Which socket a message came in on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Channel {
    Shell,
    IoPub,
}

/// What the reader tasks report.
#[derive(Debug)]
pub(crate) enum Incoming {
    Message {
        channel: Channel,
        msg_type: String,
        /// `msg_id` of the request this answers, if any.
        parent: Option<String>,
        content: Value,
    },
    /// The heartbeat went unanswered this many times in a row.
    HeartbeatLost(u32),
}

/// Heartbeat checking: how often, how long one ping may take, and how many
/// missed pings in a row mean the kernel is gone.
#[derive(Debug, Clone, Copy)]
pub struct Heartbeat {
    pub interval: Duration,
    pub timeout: Duration,
    pub misses: u32,
}

impl Default for Heartbeat {
    fn default() -> Self {
        // Generous: a kernel answers pings from its own thread even while
        // busy, so only a frozen or vanished process misses three in a row,
        // and a loaded machine must not look like a dead kernel.
        Heartbeat {
            interval: Duration::from_secs(5),
            timeout: Duration::from_secs(10),
            misses: 3,
        }
    }
}

const SEND_TIMEOUT: Duration = Duration::from_secs(5);

/// The sockets of one kernel. Dropping it stops the reader tasks.
pub(crate) struct Wire {
    shell: DealerSendConnection,
    control: ClientControlConnection,
    tasks: Vec<JoinHandle<()>>,
}

impl Drop for Wire {
    fn drop(&mut self) {
        for t in &self.tasks {
            t.abort();
        }
    }
}

type Sent = Result<String, String>;

impl Wire {
    /// Connects every socket (each connect waits for the kernel to listen)
    /// and starts the readers. Bounded by the caller: the kernel may never
    /// come up.
    pub async fn connect(
        info: &ConnectionInfo,
        heartbeat: Heartbeat,
    ) -> Result<(Wire, mpsc::UnboundedReceiver<Incoming>), String> {
        let session = uuid::Uuid::new_v4().to_string();
        let identity = peer_identity_for_session(&session).map_err(|e| e.to_string())?;
        let err = |what: &str, e: jupyter_zmq_client::RuntimeError| format!("{what}: {e}");
        let iopub = create_client_iopub_connection(info, "", &session)
            .await
            .map_err(|e| err("iopub", e))?;
        let shell = create_client_shell_connection_with_identity(info, &session, identity)
            .await
            .map_err(|e| err("shell", e))?;
        let control = create_client_control_connection(info, &session)
            .await
            .map_err(|e| err("control", e))?;
        let (shell, shell_rx) = shell.split();
        let (tx, rx) = mpsc::unbounded_channel();
        let mut tasks = Vec::new();

        let (mut socket, mac) = (iopub.socket, iopub.mac);
        let sink = tx.clone();
        tasks.push(tokio::spawn(async move {
            while let Ok(frames) = socket.recv().await {
                if !forward(
                    &sink,
                    Channel::IoPub,
                    RawMessage::from_multipart(frames, &mac),
                ) {
                    break;
                }
            }
        }));
        let (mut socket, mac) = (shell_rx.socket, shell_rx.mac);
        let sink = tx.clone();
        tasks.push(tokio::spawn(async move {
            while let Ok(frames) = socket.recv().await {
                if !forward(
                    &sink,
                    Channel::Shell,
                    RawMessage::from_multipart(frames, &mac),
                ) {
                    break;
                }
            }
        }));
        let info = info.clone();
        tasks.push(tokio::spawn(beat(info, heartbeat, tx)));
        Ok((
            Wire {
                shell,
                control,
                tasks,
            },
            rx,
        ))
    }

    /// Sends a request on the shell channel; returns its `msg_id`.
    pub async fn shell(&mut self, content: impl Into<JupyterMessageContent>) -> Sent {
        let msg = request(content);
        let id = msg.header.msg_id.clone();
        send_bounded(self.shell.send(msg)).await.map(|()| id)
    }

    /// Sends a request on the control channel; returns its `msg_id`.
    /// Replies on control are not read: nothing here waits for them.
    pub async fn control(&mut self, content: impl Into<JupyterMessageContent>) -> Sent {
        let msg = request(content);
        let id = msg.header.msg_id.clone();
        send_bounded(self.control.send(msg)).await.map(|()| id)
    }
}

fn request(content: impl Into<JupyterMessageContent>) -> JupyterMessage {
    let mut msg = JupyterMessage::new(content.into(), None);
    msg.header.username = "nbledger".into();
    msg
}

async fn send_bounded(
    send: impl Future<Output = Result<(), jupyter_zmq_client::RuntimeError>>,
) -> Result<(), String> {
    match tokio::time::timeout(SEND_TIMEOUT, send).await {
        Ok(Ok(())) => Ok(()),
        Ok(Err(e)) => Err(e.to_string()),
        Err(_) => Err("the kernel did not take the message within 5 s".into()),
    }
}

/// Parses one verified message and passes it on; false once nobody listens.
fn forward(
    sink: &mpsc::UnboundedSender<Incoming>,
    channel: Channel,
    raw: Result<RawMessage, jupyter_zmq_client::RuntimeError>,
) -> bool {
    let raw = match raw {
        Ok(raw) => raw,
        Err(e) => {
            // A bad signature or framing: drop the message, keep reading.
            tracing::warn!("kernel message rejected on {channel:?}: {e}");
            return !sink.is_closed();
        }
    };
    let part = |i: usize| -> Value {
        raw.jparts
            .get(i)
            .and_then(|b| serde_json::from_slice(b).ok())
            .unwrap_or(Value::Null)
    };
    let header = part(0);
    let Some(msg_type) = header.get("msg_type").and_then(Value::as_str) else {
        return !sink.is_closed();
    };
    let parent = part(1)
        .get("msg_id")
        .and_then(Value::as_str)
        .map(str::to_owned);
    sink.send(Incoming::Message {
        channel,
        msg_type: msg_type.to_owned(),
        parent,
        content: part(3),
    })
    .is_ok()
}

/// Pings the heartbeat socket; reports each run of misses. A REQ socket
/// that missed a reply cannot send again, so each miss reconnects.
async fn beat(info: ConnectionInfo, hb: Heartbeat, sink: mpsc::UnboundedSender<Incoming>) {
    let mut misses = 0u32;
    let mut socket = None;
    loop {
        tokio::time::sleep(hb.interval).await;
        if sink.is_closed() {
            return;
        }
        if socket.is_none() {
            socket = tokio::time::timeout(hb.timeout, create_client_heartbeat_connection(&info))
                .await
                .ok()
                .and_then(Result::ok);
        }
        let ok = match socket.as_mut() {
            Some(s) => matches!(
                tokio::time::timeout(hb.timeout, s.single_heartbeat()).await,
                Ok(Ok(()))
            ),
            None => false,
        };
        if ok {
            misses = 0;
            continue;
        }
        socket = None;
        misses += 1;
        if misses >= hb.misses {
            let _ = sink.send(Incoming::HeartbeatLost(misses));
            return;
        }
    }
}

/// The `status` of an `execute_reply` and, when it failed, the error name.
pub(crate) fn reply_status(content: &Value) -> (String, Option<String>) {
    let status = content
        .get("status")
        .and_then(Value::as_str)
        .unwrap_or("error")
        .to_owned();
    let ename = content
        .get("ename")
        .and_then(Value::as_str)
        .map(str::to_owned);
    (status, ename)
}
