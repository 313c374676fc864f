//! [`Front`]'s MCP resources (§10), beside the tool calls in `hub.rs`:
//! the list, reads, `resources/subscribe` (2025-11-25) and
//! `subscriptions/listen` (2026-07-28). Each subscription's follower
//! long-polls the feed of every notebook through [`Front::dispatch`], so
//! it learns of every change whether this process owns the store or is
//! attached to its owner.

use std::time::Duration;

use rmcp::model::{CallToolRequestParams, CallToolResponse, PaginatedRequestParams};
use rmcp::service::RequestContext;
use rmcp::{ErrorData, RoleServer};
use serde_json::Value;
use tokio_util::sync::CancellationToken;

use super::Front;
use crate::resources;

impl Front {
    /// A tool's `structuredContent` when it succeeds, run as [`Front::dispatch`].
    async fn answer(
        &self,
        tool: &str,
        args: serde_json::Map<String, Value>,
        context: RequestContext<RoleServer>,
    ) -> Option<Value> {
        let request = CallToolRequestParams::new(tool.to_owned()).with_arguments(args);
        match self.dispatch(request, context).await {
            Ok(CallToolResponse::Complete(r)) if r.is_error != Some(true) => r.structured_content,
            _ => None,
        }
    }

    /// One long-poll of the feed of every notebook (see [`resources::follow`]).
    async fn feed(
        &self,
        context: &RequestContext<RoleServer>,
        since: u64,
        wait_ms: u64,
    ) -> Option<Value> {
        if context.peer.is_transport_closed() {
            return None;
        }
        let mut ctx = context.clone();
        ctx.ct = CancellationToken::new();
        self.answer(
            "get_notebook_changes",
            resources::feed_args(since, wait_ms),
            ctx,
        )
        .await
    }

    /// Follows every change after `since`, notifying each changed notebook
    /// `wanted` holds, until `stop` or the subscriber is gone (§10).
    async fn follow(
        &self,
        context: RequestContext<RoleServer>,
        mut since: u64,
        wanted: resources::Wanted,
        notify: resources::Notifier,
        stop: &CancellationToken,
    ) {
        while !stop.is_cancelled() && !context.peer.is_transport_closed() {
            let out = tokio::select! {
                out = self.feed(&context, since, resources::POLL_WAIT_MS) => out,
                _ = stop.cancelled() => return,
            };
            let Some(out) = out else {
                // No owner for now (one is taking over): try again shortly.
                tokio::select! {
                    _ = tokio::time::sleep(Duration::from_millis(500)) => continue,
                    _ = stop.cancelled() => return,
                }
            };
            for path in resources::changed_paths(&out) {
                if wanted.contains(&path) && !notify.updated(resources::uri(&path)).await {
                    return;
                }
            }
            since = out["next_since_version"]
                .as_u64()
                .unwrap_or(since)
                .max(since);
        }
    }

    /// The log's head, as the feed of every notebook says it.
    async fn head(&self, context: &RequestContext<RoleServer>) -> Option<u64> {
        let mut args = resources::feed_args(0, 0);
        args.insert("limit".into(), Value::from(1));
        let mut ctx = context.clone();
        ctx.ct = CancellationToken::new();
        self.answer("get_notebook_changes", args, ctx).await?["current_version"].as_u64()
    }

    fn root(&self) -> Result<crate::paths::Root, ErrorData> {
        crate::paths::Root::new(&self.hub.root, &self.hub.data)
            .map_err(|e| ErrorData::internal_error(format!("the workspace root: {e}"), None))
    }

    /// The canonical path of a notebook URI.
    fn resource_path(&self, uri: &str) -> Result<String, ErrorData> {
        let path = resources::path_of(uri)?;
        self.root()?
            .resolve(path)
            .map(|np| np.rel)
            .map_err(|e| ErrorData::invalid_params(e.message.clone(), Some(e.to_json())))
    }

    pub(super) async fn resources_list(
        &self,
        _request: Option<PaginatedRequestParams>,
        context: RequestContext<RoleServer>,
    ) -> Result<rmcp::model::ListResourcesResult, ErrorData> {
        let listed = self
            .answer("list_notebooks", serde_json::Map::new(), context)
            .await
            .ok_or_else(|| {
                ErrorData::internal_error("the notebooks could not be listed now; retry", None)
            })?;
        Ok(resources::list(&listed))
    }

    pub(super) async fn resource_read(
        &self,
        request: rmcp::model::ReadResourceRequestParams,
        _context: RequestContext<RoleServer>,
    ) -> Result<rmcp::model::ReadResourceResponse, ErrorData> {
        resources::read(&self.root()?, &request.uri).map(Into::into)
    }

    pub(super) async fn resource_subscribe(
        &self,
        request: rmcp::model::SubscribeRequestParams,
        context: RequestContext<RoleServer>,
    ) -> Result<(), ErrorData> {
        let path = self.resource_path(&request.uri)?;
        let Some(stop) = self.subs.add(path.clone()) else {
            return Ok(());
        };
        // Every change after this answer is notified: follow from the
        // head as of now.
        let Some(since) = self.head(&context).await else {
            self.subs.remove(&path);
            return Err(ErrorData::internal_error(
                "no store owner answered; retry the subscription",
                None,
            ));
        };
        let front = self.clone();
        tokio::spawn(async move {
            let subs = front.subs.clone();
            let wanted = resources::Wanted::Session(subs.clone());
            let notify = resources::Notifier::Peer(context.peer.clone());
            front.follow(context, since, wanted, notify, &stop).await;
            subs.ended(&stop);
        });
        Ok(())
    }

    pub(super) async fn resource_unsubscribe(
        &self,
        request: rmcp::model::UnsubscribeRequestParams,
        _context: RequestContext<RoleServer>,
    ) -> Result<(), ErrorData> {
        let path = self.resource_path(&request.uri)?;
        self.subs.remove(&path);
        Ok(())
    }

    pub(super) fn subscription_filter(
        &self,
        requested: &rmcp::model::SubscriptionFilter,
    ) -> Option<rmcp::model::SubscriptionFilter> {
        self.listen_marks.lock().push(crate::time::now_ms());
        let mut accepted = rmcp::model::SubscriptionFilter::new();
        accepted.resource_subscriptions = requested.resource_subscriptions.as_ref().map(|uris| {
            uris.iter()
                .filter(|u| resources::path_of(u).is_ok())
                .cloned()
                .collect()
        });
        Some(accepted)
    }

    pub(super) async fn resource_listen(
        &self,
        subscription: rmcp::service::SubscriptionContext,
    ) -> Result<(), ErrorData> {
        let mark = {
            let mut marks = self.listen_marks.lock();
            (!marks.is_empty()).then(|| marks.remove(0))
        };
        let wanted: std::collections::HashSet<String> = subscription
            .accepted()
            .resource_subscriptions
            .iter()
            .flatten()
            .filter_map(|u| self.resource_path(u).ok())
            .collect();
        if wanted.is_empty() {
            subscription.cancelled().await;
            return Ok(());
        }
        let context = subscription.request_context().clone();
        let Some(since) = self.head(&context).await else {
            return Err(ErrorData::internal_error(
                "no store owner answered; retry the subscription",
                None,
            ));
        };
        let stop = context.ct.clone();
        let notify = resources::Notifier::Sink(subscription.sink().clone());
        // Changes committed since the acknowledgment, found by their time
        // among the newest ones.
        if let Some(mark) = mark {
            let from = since.saturating_sub(resources::CATCH_UP);
            if let Some(out) = self.feed(&context, from, 0).await {
                for path in resources::changed_since(&out, mark) {
                    if wanted.contains(&path) && !notify.updated(resources::uri(&path)).await {
                        return Ok(());
                    }
                }
            }
        }
        self.follow(
            context,
            since,
            resources::Wanted::Fixed(wanted),
            notify,
            &stop,
        )
        .await;
        Ok(())
    }
}
