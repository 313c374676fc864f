//! MCP resources (§10): each notebook is `nbledger:///PATH` with its .ipynb
//! JSON; subscribers hear `notifications/resources/updated` for every event
//! that changes it, whichever process made the change, in both protocol
//! eras (`resources/subscribe`, `subscriptions/listen`).

mod common;

use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use common::{call, connect, create, file_json};
use rmcp::model::{
    ClientCapabilities, ClientConfig, Implementation, ProtocolVersion, ReadResourceRequestParams,
    ResourceContents, ResourceUpdatedNotificationParam, SubscribeRequestParams, SubscriptionFilter,
    UnsubscribeRequestParams,
};
use rmcp::service::{NotificationContext, RunningService};
use rmcp::transport::TokioChildProcess;
use rmcp::{ClientLifecycleMode, ClientServiceExt, RoleClient, ServiceExt};
use serde_json::{Value, json};
use tokio::process::Command;
use tokio::sync::mpsc;

/// A client that keeps the URIs of the updates it is sent.
struct Listener {
    config: ClientConfig,
    updates: mpsc::UnboundedSender<String>,
}

impl rmcp::ClientHandler for Listener {
    fn get_info(&self) -> ClientConfig {
        self.config.clone()
    }

    async fn on_resource_updated(
        &self,
        params: ResourceUpdatedNotificationParam,
        _context: NotificationContext<RoleClient>,
    ) {
        let _ = self.updates.send(params.uri);
    }
}

type ListenerClient = RunningService<RoleClient, Listener>;

fn server(root: &Path) -> TokioChildProcess {
    let mut cmd = Command::new(common::bin());
    cmd.arg("serve").arg("--root").arg(root);
    let (transport, _) = TokioChildProcess::builder(cmd)
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn nbledger");
    transport
}

async fn listener(root: &Path) -> (ListenerClient, mpsc::UnboundedReceiver<String>) {
    listener_on(server(root)).await
}

async fn listener_on<T, E, A>(transport: T) -> (ListenerClient, mpsc::UnboundedReceiver<String>)
where
    T: rmcp::transport::IntoTransport<RoleClient, E, A>,
    E: std::error::Error + Send + Sync + 'static,
{
    let (tx, rx) = mpsc::unbounded_channel();
    let handler = Listener {
        config: ClientConfig::new(
            ClientCapabilities::default(),
            Implementation::new("watcher", "0.1"),
        ),
        updates: tx,
    };
    (handler.serve(transport).await.expect("MCP handshake"), rx)
}

/// The next update within a few seconds.
async fn next(rx: &mut mpsc::UnboundedReceiver<String>) -> Option<String> {
    tokio::time::timeout(Duration::from_secs(10), rx.recv())
        .await
        .ok()
        .flatten()
}

/// Updates that arrive within a short quiet period.
async fn drain(rx: &mut mpsc::UnboundedReceiver<String>) -> Vec<String> {
    let mut out = Vec::new();
    while let Ok(Some(u)) = tokio::time::timeout(Duration::from_millis(700), rx.recv()).await {
        out.push(u);
    }
    out
}

#[allow(deprecated)]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn notebooks_are_listed_read_and_their_subscribers_notified_across_processes() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    // The listener's process owns the store; the writer's is attached.
    let (watcher, mut updates) = listener(root).await;
    let writer = connect(root, "writer").await;
    let ids = create(&writer, "n.ipynb", &["x = 1"]).await;
    create(&writer, "sub/m.ipynb", &["y"]).await;

    let listed = watcher.list_all_resources().await.unwrap();
    let uris: Vec<(&str, Option<&str>)> = listed
        .iter()
        .map(|r| (r.uri.as_str(), r.mime_type.as_deref()))
        .collect();
    assert_eq!(
        uris,
        [
            ("nbledger:///n.ipynb", Some("application/x-ipynb+json")),
            ("nbledger:///sub/m.ipynb", Some("application/x-ipynb+json")),
        ]
    );
    let read = watcher
        .read_resource(ReadResourceRequestParams::new("nbledger:///n.ipynb"))
        .await
        .unwrap();
    let ResourceContents::TextResourceContents {
        uri,
        mime_type,
        text,
        ..
    } = &read.contents[0]
    else {
        panic!("text contents expected: {read:?}");
    };
    assert_eq!(uri, "nbledger:///n.ipynb");
    assert_eq!(mime_type.as_deref(), Some("application/x-ipynb+json"));
    let nb: Value = serde_json::from_str(text).unwrap();
    assert_eq!(nb, file_json(root, "n.ipynb"));

    watcher
        .subscribe(SubscribeRequestParams::new("nbledger:///n.ipynb"))
        .await
        .unwrap();
    // A write from the other process, and one from the listener's own.
    call(
        &writer,
        "update_cell",
        json!({"path": "n.ipynb", "cell_id": ids[0], "source": "x = 2"}),
    )
    .await
    .ok();
    assert_eq!(
        next(&mut updates).await.as_deref(),
        Some("nbledger:///n.ipynb")
    );
    call(
        &writer,
        "update_notebook_metadata",
        json!({"path": "n.ipynb", "metadata": {"k": 1}}),
    )
    .await
    .ok();
    assert_eq!(
        next(&mut updates).await.as_deref(),
        Some("nbledger:///n.ipynb")
    );
    // Another notebook's change is not this subscriber's business.
    call(
        &writer,
        "insert_cell",
        json!({"path": "sub/m.ipynb", "source": "z"}),
    )
    .await
    .ok();
    assert!(drain(&mut updates).await.is_empty());
    // A rename notifies under both names for a subscriber of either.
    watcher
        .subscribe(SubscribeRequestParams::new("nbledger:///sub/m.ipynb"))
        .await
        .unwrap();
    call(
        &writer,
        "rename_notebook",
        json!({"path": "sub/m.ipynb", "new_path": "m2.ipynb"}),
    )
    .await
    .ok();
    assert_eq!(
        next(&mut updates).await.as_deref(),
        Some("nbledger:///sub/m.ipynb")
    );
    // Unsubscribed: silence.
    for uri in ["nbledger:///n.ipynb", "nbledger:///sub/m.ipynb"] {
        watcher
            .unsubscribe(UnsubscribeRequestParams::new(uri))
            .await
            .unwrap();
    }
    drain(&mut updates).await;
    call(
        &writer,
        "update_cell",
        json!({"path": "n.ipynb", "cell_id": ids[0], "source": "x = 3"}),
    )
    .await
    .ok();
    assert!(drain(&mut updates).await.is_empty());
    writer.cancel().await.unwrap();
    watcher.cancel().await.unwrap();
}

#[allow(deprecated)]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_attached_process_notifies_its_own_subscribers() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    // The writer's process owns the store; the listener's is attached.
    let writer = connect(root, "writer").await;
    let ids = create(&writer, "n.ipynb", &["x = 1"]).await;
    let (watcher, mut updates) = listener(root).await;
    watcher
        .subscribe(SubscribeRequestParams::new("nbledger:///n.ipynb"))
        .await
        .unwrap();
    call(
        &writer,
        "update_cell",
        json!({"path": "n.ipynb", "cell_id": ids[0], "source": "x = 2"}),
    )
    .await
    .ok();
    assert_eq!(
        next(&mut updates).await.as_deref(),
        Some("nbledger:///n.ipynb")
    );
    writer.cancel().await.unwrap();
    watcher.cancel().await.unwrap();
}

#[allow(deprecated)]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_http_session_has_its_own_subscriptions() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    let (mut server, url) = common::http_server(root, Some(common::TOKEN));
    let http = || {
        rmcp::transport::StreamableHttpClientTransport::from_config(
            rmcp::transport::streamable_http_client::StreamableHttpClientTransportConfig::with_uri(
                url.clone(),
            )
            .auth_header(common::TOKEN),
        )
    };
    let (a, mut a_updates) = listener_on(http()).await;
    let (b, mut b_updates) = listener_on(http()).await;
    let writer = connect(root, "writer").await;
    let ids = create(&writer, "n.ipynb", &["x = 1"]).await;
    a.subscribe(SubscribeRequestParams::new("nbledger:///n.ipynb"))
        .await
        .unwrap();
    call(
        &writer,
        "update_cell",
        json!({"path": "n.ipynb", "cell_id": ids[0], "source": "x = 2"}),
    )
    .await
    .ok();
    assert_eq!(
        next(&mut a_updates).await.as_deref(),
        Some("nbledger:///n.ipynb")
    );
    assert!(drain(&mut b_updates).await.is_empty());
    writer.cancel().await.unwrap();
    a.cancel().await.unwrap();
    b.cancel().await.unwrap();
    let _ = server.kill();
    let _ = server.wait();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_2026_client_listens_for_updates() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    let writer = connect(root, "writer").await;
    let ids = create(&writer, "n.ipynb", &["x = 1"]).await;
    let config = ClientConfig::new(
        ClientCapabilities::default(),
        Implementation::new("modern", "0.1"),
    );
    let modern = config
        .serve_with_lifecycle(
            server(root),
            ClientLifecycleMode::Discover {
                preferred_versions: vec![ProtocolVersion::V_2026_07_28],
            },
        )
        .await
        .expect("connect");
    let mut filter = SubscriptionFilter::new();
    filter.resource_subscriptions = Some(vec!["nbledger:///n.ipynb".into()]);
    let mut sub = modern.peer().listen(filter).await.unwrap();
    assert_eq!(
        sub.acknowledged().resource_subscriptions,
        Some(vec!["nbledger:///n.ipynb".to_owned()])
    );
    call(
        &writer,
        "update_cell",
        json!({"path": "n.ipynb", "cell_id": ids[0], "source": "x = 2"}),
    )
    .await
    .ok();
    let got = tokio::time::timeout(Duration::from_secs(10), sub.next())
        .await
        .expect("an update in time")
        .unwrap()
        .expect("a notification");
    let got = serde_json::to_value(&got).unwrap();
    assert_eq!(got["params"]["uri"], "nbledger:///n.ipynb", "{got}");
    sub.cancel().await.unwrap();
    writer.cancel().await.unwrap();
    modern.cancel().await.unwrap();
}

#[allow(deprecated)]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_uris_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    let (watcher, _updates) = listener(root).await;
    for uri in [
        "file:///n.ipynb",
        "nbledger:///../x.ipynb",
        "nbledger:///n.txt",
        "nbledger:///missing.ipynb",
    ] {
        let r = watcher
            .read_resource(ReadResourceRequestParams::new(uri))
            .await;
        assert!(r.is_err(), "{uri}: {r:?}");
    }
    let r = watcher
        .subscribe(SubscribeRequestParams::new("nbledger:///../x.ipynb"))
        .await;
    assert!(r.is_err());
    watcher.cancel().await.unwrap();
}
