//! The gateway's queue operations: create, read, change and delete queues, their status
//! and the fair-share report.

use tracing::info;

use crate::actors::gateway::{Handler, propose_for, read_barrier};
use crate::actors::gateway_jobs::unexpected;
use crate::actors::queue_reports;
use crate::actors::{NodeContext, now_ms};
use crate::gateway::job_model::{CreateQueueInput, QueueListView, QueueView};
use crate::gateway::operations::{
    CreateQueue, DeleteQueue, GetFairShare, GetQueue, GetQueueStatus, ListQueueStatus, ListQueues,
    UpdateQueue,
};
use crate::gateway::report_model::{FairShareView, QueueStatusListView, QueueStatusView};
use crate::gateway::{Consistency, ErrorCode, GatewayError, Principal, RequestContext};
use crate::state::command;
use crate::state::{CommandOutcome, CommandV1, HodeiState};
use hodei_domain::DomainError;
use hodei_domain::queue::{Queue, QueuePolicy};

impl Handler for CreateQueue {
    async fn handle(
        self,
        node: NodeContext,
        context: RequestContext,
    ) -> Result<QueueView, GatewayError> {
        let CreateQueue { input } = self;
        create_queue(&node, &context, input).await
    }
}

impl Handler for GetQueue {
    async fn handle(
        self,
        node: NodeContext,
        _context: RequestContext,
    ) -> Result<QueueView, GatewayError> {
        let GetQueue { id, consistency } = self;
        read_barrier(&node, consistency).await?;
        node.read(|state| {
            state
                .queue(&id)
                .map(|queue| queue_view(state, queue))
                .ok_or_else(|| DomainError::not_found("queue", id.clone()).into())
        })
    }
}

impl Handler for ListQueues {
    async fn handle(
        self,
        node: NodeContext,
        _context: RequestContext,
    ) -> Result<QueueListView, GatewayError> {
        let ListQueues { consistency } = self;
        read_barrier(&node, consistency).await?;
        Ok(node.read(|state| QueueListView {
            items: state
                .queues()
                .map(|queue| queue_view(state, queue))
                .collect(),
        }))
    }
}

impl Handler for UpdateQueue {
    async fn handle(
        self,
        node: NodeContext,
        context: RequestContext,
    ) -> Result<QueueView, GatewayError> {
        let UpdateQueue { id, input } = self;
        let policy = input
            .policy
            .as_deref()
            .map(|raw| QueuePolicy::parse("policy", raw))
            .transpose()?;
        if input.pools.is_none() && policy.is_none() {
            return Err(GatewayError::new(
                ErrorCode::Unprocessable,
                "the update sets no field: give pools or policy",
            ));
        }
        let command = CommandV1::UpdateQueue(command::UpdateQueue {
            id,
            pools: input.pools,
            policy,
            at_ms: now_ms(),
        });
        match propose_for(&node, &context, command).await? {
            CommandOutcome::Queue(queue) => Ok(node.read(|state| queue_view(state, &queue))),
            other => Err(unexpected(other)),
        }
    }
}

impl Handler for DeleteQueue {
    async fn handle(
        self,
        node: NodeContext,
        context: RequestContext,
    ) -> Result<String, GatewayError> {
        let DeleteQueue { id } = self;
        match propose_for(
            &node,
            &context,
            CommandV1::DeleteQueue(command::DeleteQueue { id }),
        )
        .await?
        {
            CommandOutcome::QueueDeleted { id } => Ok(id),
            other => Err(unexpected(other)),
        }
    }
}

impl Handler for GetFairShare {
    async fn handle(
        self,
        node: NodeContext,
        context: RequestContext,
    ) -> Result<FairShareView, GatewayError> {
        let GetFairShare {
            queue,
            window_s,
            consistency,
        } = self;
        // The report reads the jobs in memory: a window longer than finished jobs stay
        // there would miss the ones already in the history.
        let longest = node.limits.retention.finished_in_memory.as_secs().max(1);
        let window_ms = match window_s {
            None => node.limits.fair_share_window.as_millis() as u64,
            Some(seconds) if (1..=longest).contains(&seconds) => seconds * 1_000,
            Some(seconds) => {
                return Err(GatewayError::invalid(
                    "window_s",
                    format!(
                        "must be between 1 and {longest} (retention.finished_in_memory_s), got {seconds}"
                    ),
                ));
            }
        };
        read_barrier(&node, consistency).await?;
        node.read(|state| {
            let found = state.queue(&queue).ok_or_else(|| {
                GatewayError::from(DomainError::not_found("queue", queue.clone()))
            })?;
            let mut report = queue_reports::fair_share(state, found, now_ms(), window_ms);
            // A tenant sees its own line; the queue's totals and Jain's index stay.
            if let Principal::Tenant(own) = &context.principal {
                report.tenants.retain(|line| line.tenant == own.as_str());
            }
            Ok(report)
        })
    }
}

/// A tenant sees only its own line of the per-tenant counts.
fn own_lines(context: &RequestContext, mut list: QueueStatusListView) -> QueueStatusListView {
    if let Principal::Tenant(own) = &context.principal {
        for status in &mut list.items {
            status.by_tenant.retain(|count| count.key == own.as_str());
        }
    }
    list
}

impl Handler for GetQueueStatus {
    async fn handle(
        self,
        node: NodeContext,
        context: RequestContext,
    ) -> Result<QueueStatusView, GatewayError> {
        let list = queue_status(&node, Some(self.queue.clone()), self.consistency).await?;
        let mut list = own_lines(&context, list);
        list.items
            .pop()
            .ok_or_else(|| DomainError::not_found("queue", self.queue).into())
    }
}

impl Handler for ListQueueStatus {
    async fn handle(
        self,
        node: NodeContext,
        context: RequestContext,
    ) -> Result<QueueStatusListView, GatewayError> {
        Ok(own_lines(
            &context,
            queue_status(&node, None, self.consistency).await?,
        ))
    }
}

/// The status of one queue (which must exist), or of every queue.
pub(super) async fn queue_status(
    node: &NodeContext,
    queue: Option<String>,
    consistency: Consistency,
) -> Result<QueueStatusListView, GatewayError> {
    read_barrier(node, consistency).await?;
    let window_ms = node.limits.fair_share_window.as_millis() as u64;
    node.read(|state| {
        let queues: Vec<&Queue> =
            match &queue {
                Some(id) => vec![state.queue(id).ok_or_else(|| {
                    GatewayError::from(DomainError::not_found("queue", id.clone()))
                })?],
                None => state.queues().collect(),
            };
        let now = now_ms();
        Ok(QueueStatusListView {
            items: queues
                .into_iter()
                .map(|found| queue_reports::queue_status(state, found, now, window_ms))
                .collect(),
        })
    })
}

pub(super) fn queue_view(state: &HodeiState, queue: &Queue) -> QueueView {
    QueueView::new(queue, state.pending_in(&queue.id).count() as u64)
}

pub(super) async fn create_queue(
    node: &NodeContext,
    context: &RequestContext,
    input: CreateQueueInput,
) -> Result<QueueView, GatewayError> {
    let policy = match input.policy.as_deref() {
        None | Some("") => QueuePolicy::default(),
        Some(raw) => QueuePolicy::parse("policy", raw)?,
    };
    let at_ms = now_ms();
    let queue = Queue {
        id: input.id,
        pools: input
            .pools
            .unwrap_or_else(|| vec!["pool-default".to_string()]),
        policy,
        created_at_ms: at_ms,
        updated_at_ms: at_ms,
    };
    queue.validate()?;
    match propose_for(
        node,
        context,
        CommandV1::CreateQueue(command::CreateQueue { queue }),
    )
    .await?
    {
        CommandOutcome::Queue(queue) => {
            info!(queue = %queue.id, principal = %context.principal, "queue created");
            Ok(node.read(|state| queue_view(state, &queue)))
        }
        other => Err(unexpected(other)),
    }
}
