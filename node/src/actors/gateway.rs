//! The gateway: the one entry point both APIs use. It authorises the principal,
//! validates and canonicalises input, chooses timestamps, and either proposes a command
//! or reads the state. Its mailbox never waits on a round trip: each request is carried
//! out in its own task, which answers the caller's reply port when done.

use std::future::Future;
use std::sync::{Arc, PoisonError, RwLock};
use std::time::Duration;

use hodei_cluster::{ClusterStatus, CoreStop};
use ractor::rpc::CallResult;
use ractor::{Actor, ActorProcessingErr, ActorRef, RpcReplyPort};
use tracing::Instrument;

use crate::actors::NodeContext;
use crate::gateway::model::{
    ClusterDigestsView, ClusterMemberView, ClusterStatusView, DigestView, HealthView,
};
use crate::gateway::{Consistency, ErrorCode, GatewayError, Operation, RequestContext};
use crate::state::{Command, CommandOutcome, CommandV1};
use hodei_cluster::ClusterError;
use hodei_domain::tenant::TenantId;

pub type Reply<T> = RpcReplyPort<Result<T, GatewayError>>;

pub enum GatewayMsg {
    /// One operation of the contract, with where its answer goes.
    Run(Envelope),
    /// This node's view of the cluster, and why its Raft core stopped if it did.
    ClusterStatus {
        reply: RpcReplyPort<(ClusterStatusView, Option<CoreStop>)>,
    },
    /// The state digests at this node's last applied indexes.
    ClusterDigests {
        reply: RpcReplyPort<ClusterDigestsView>,
    },
}

/// An operation on its way to the gateway actor: started with the node's context, it
/// runs in its own task and answers its caller.
pub struct Envelope(Box<dyn FnOnce(NodeContext) + Send>);

/// How the gateway actor runs one operation of the contract.
pub trait Handler: Operation {
    fn handle(
        self,
        node: NodeContext,
        context: RequestContext,
    ) -> impl Future<Output = Result<Self::Reply, GatewayError>> + Send;
}

pub struct GatewayActor;

/// The permits of the operations in flight on this node.
struct InFlight {
    permits: Arc<tokio::sync::Semaphore>,
    limit: usize,
}

impl InFlight {
    fn new(limit: usize) -> Self {
        Self {
            permits: Arc::new(tokio::sync::Semaphore::new(limit)),
            limit,
        }
    }

    /// A permit held while the operation runs, or 503 when all are taken.
    fn admit(&self) -> Result<tokio::sync::OwnedSemaphorePermit, GatewayError> {
        self.permits.clone().try_acquire_owned().map_err(|_| {
            GatewayError::unavailable(
                format!(
                    "this node is answering its limit of {} operations at once (server.limits.max_in_flight)",
                    self.limit
                ),
                1,
            )
        })
    }
}

/// How the API adapters reach the gateway. It follows a restart of the gateway actor, so
/// adapters never hold a dead reference.
#[derive(Clone)]
pub struct GatewayHandle {
    current: Arc<RwLock<ActorRef<GatewayMsg>>>,
    call_timeout: Arc<RwLock<Duration>>,
    /// Operations being answered at once (`server.limits.max_in_flight`): a permit each.
    in_flight: Arc<RwLock<InFlight>>,
    /// Per-principal request rates (`server.rate_limit`), checked before an operation
    /// reaches the actor.
    limiter: Arc<crate::actors::rate_limit::RequestLimiter>,
    /// Where state-changing requests are recorded (once the node opened it).
    audit: Arc<RwLock<Option<Arc<crate::actors::audit::AuditLog>>>>,
}

impl GatewayHandle {
    pub fn new(
        gateway: ActorRef<GatewayMsg>,
        rate_limit: crate::actors::rate_limit::RateLimitSettings,
    ) -> Self {
        Self {
            current: Arc::new(RwLock::new(gateway)),
            call_timeout: Arc::new(RwLock::new(Duration::from_secs(30))),
            in_flight: Arc::new(RwLock::new(InFlight::new(1_024))),
            limiter: Arc::new(crate::actors::rate_limit::RequestLimiter::new(rate_limit)),
            audit: Arc::new(RwLock::new(None)),
        }
    }

    /// Records state-changing requests in `audit` from now on.
    pub fn set_audit(&self, audit: Arc<crate::actors::audit::AuditLog>) {
        *self.audit.write().unwrap_or_else(PoisonError::into_inner) = Some(audit);
    }

    /// Writes one request of operation `O` to the audit log, if `O` changes the state.
    pub fn audit<O: crate::gateway::Operation>(
        &self,
        context: &RequestContext,
        outcome: Result<(), &GatewayError>,
    ) {
        if !O::CHANGES_STATE {
            return;
        }
        let audit = self
            .audit
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone();
        if let Some(audit) = audit {
            audit.record(crate::actors::audit::AuditRecord {
                at_ms: crate::clock::now_ms(),
                node_id: audit.node_id(),
                principal: context.principal.to_string(),
                action: O::NAME.to_string(),
                resource: context.resource.clone(),
                result: match outcome {
                    Ok(()) => "ok".to_string(),
                    Err(error) => error.code.slug().to_string(),
                },
                trace_id: context.trace_id.as_str().to_string(),
                request_id: context.request_id.clone(),
            });
        }
    }

    pub fn current(&self) -> ActorRef<GatewayMsg> {
        self.current
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    pub fn replace(&self, gateway: ActorRef<GatewayMsg>) {
        *self.current.write().unwrap_or_else(PoisonError::into_inner) = gateway;
    }

    /// Upper bound on one request's time inside the node.
    pub fn set_call_timeout(&self, timeout: Duration) {
        *self
            .call_timeout
            .write()
            .unwrap_or_else(PoisonError::into_inner) = timeout;
    }

    /// At most `limit` operations are answered at once; one more is refused (503).
    pub fn set_in_flight_limit(&self, limit: usize) {
        *self
            .in_flight
            .write()
            .unwrap_or_else(PoisonError::into_inner) = InFlight::new(limit);
    }

    /// Sends one request and waits for its answer.
    pub async fn ask<T: Send + 'static>(
        &self,
        build: impl FnOnce(RpcReplyPort<Result<T, GatewayError>>) -> GatewayMsg,
    ) -> Result<T, GatewayError> {
        let timeout = *self
            .call_timeout
            .read()
            .unwrap_or_else(PoisonError::into_inner);
        match self.current().call(build, Some(timeout)).await {
            Ok(CallResult::Success(result)) => result,
            Ok(CallResult::Timeout) => Err(GatewayError::new(
                ErrorCode::Timeout,
                format!("no answer within {} ms", timeout.as_millis()),
            )),
            Ok(CallResult::SenderError) | Err(_) => {
                Err(GatewayError::unavailable("the gateway is restarting", 1))
            }
        }
    }

    /// Runs one operation of the contract and waits for its answer.
    pub async fn call<O: Handler>(
        &self,
        context: RequestContext,
        operation: O,
    ) -> Result<O::Reply, GatewayError> {
        // The node's limits first. Their refusals are counted (the API metrics, by
        // status), not audited one by one: a flood of refused calls would otherwise write
        // a record each and push the audit trail out. The permit goes with the work, which
        // runs to its end even when its caller stops waiting (timed out, or gone): the
        // limit counts work in the node, not callers.
        let permit = self
            .in_flight
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .admit()?;
        self.limiter.admit(&context.principal)?;
        // Reads are not audited: only a state change pays for the copy of its context.
        let audited = O::CHANGES_STATE.then(|| context.clone());
        let result = match self.run(context, operation, permit).await {
            // The operation goes on inside the node: a change may still apply.
            Err(error) if O::CHANGES_STATE && error.code == ErrorCode::Timeout => {
                Err(GatewayError::new(
                    ErrorCode::OutcomeUnknown,
                    format!(
                        "{}; the change may still apply: read it back, or retry with the same request id",
                        error.detail
                    ),
                ))
            }
            result => result,
        };
        if let Some(audited) = &audited {
            self.audit::<O>(audited, result.as_ref().map(|_| ()));
        }
        result
    }

    async fn run<O: Handler>(
        &self,
        context: RequestContext,
        operation: O,
        permit: tokio::sync::OwnedSemaphorePermit,
    ) -> Result<O::Reply, GatewayError> {
        crate::gateway::policy::authorize(
            &context,
            crate::gateway::policy::Request::Operation {
                name: O::NAME,
                access: O::ACCESS,
            },
        )?;
        self.ask(move |reply| {
            GatewayMsg::Run(Envelope(Box::new(move |node: NodeContext| {
                let work = operation.handle(node.clone(), context);
                answer_measured(&node, O::NAME, reply, async move {
                    let _permit = permit;
                    work.await
                });
            })))
        })
        .await
    }

    /// The state digests at this node's last applied indexes (admins only).
    pub async fn cluster_digests(
        &self,
        context: &RequestContext,
    ) -> Result<ClusterDigestsView, GatewayError> {
        require_admin(context, "cluster_digests")?;
        match self
            .current()
            .call(
                |reply| GatewayMsg::ClusterDigests { reply },
                Some(Duration::from_secs(5)),
            )
            .await
        {
            Ok(CallResult::Success(digests)) => Ok(digests),
            _ => Err(GatewayError::unavailable("the gateway is restarting", 1)),
        }
    }

    async fn status_and_stop(&self) -> Result<(ClusterStatusView, Option<CoreStop>), GatewayError> {
        match self
            .current()
            .call(
                |reply| GatewayMsg::ClusterStatus { reply },
                Some(Duration::from_secs(5)),
            )
            .await
        {
            Ok(CallResult::Success(status)) => Ok(status),
            _ => Err(GatewayError::unavailable("the gateway is restarting", 1)),
        }
    }

    /// This node's view of the cluster (admins only).
    pub async fn cluster_status(
        &self,
        context: &RequestContext,
    ) -> Result<ClusterStatusView, GatewayError> {
        require_admin(context, "cluster_status")?;
        Ok(self.status_and_stop().await?.0)
    }

    /// Whether this node serves: an error (503) once its Raft core stopped.
    pub async fn health(&self) -> Result<HealthView, GatewayError> {
        let (status, stop) = self.status_and_stop().await?;
        if let Some(stop) = &stop {
            return Err(core_stopped(stop));
        }
        // Ready: it knows a leader and is itself a member (a node removed from the
        // cluster, or never added, may still know the leader it last saw).
        let member = status
            .members
            .iter()
            .any(|member| member.node_id == status.node_id);
        Ok(HealthView {
            status: "ok".to_string(),
            ready: status.leader_id.is_some() && member,
            node_id: status.node_id,
            role: status.role,
            leader_id: status.leader_id,
            version: env!("CARGO_PKG_VERSION").to_string(),
        })
    }
}

impl Actor for GatewayActor {
    type Msg = GatewayMsg;
    type State = NodeContext;
    type Arguments = NodeContext;

    async fn pre_start(
        &self,
        _myself: ActorRef<Self::Msg>,
        context: NodeContext,
    ) -> Result<NodeContext, ActorProcessingErr> {
        Ok(context)
    }

    async fn handle(
        &self,
        _myself: ActorRef<Self::Msg>,
        message: GatewayMsg,
        node: &mut NodeContext,
    ) -> Result<(), ActorProcessingErr> {
        let node = node.clone();
        match message {
            GatewayMsg::Run(Envelope(start)) => start(node),
            GatewayMsg::ClusterStatus { reply } => {
                let status = node.raft.status();
                let _ = reply.send((status_view(&status), status.core_stop));
            }
            GatewayMsg::ClusterDigests { reply } => {
                let _ = reply.send(ClusterDigestsView {
                    node_id: node.raft.status().node_id,
                    digests: node
                        .raft
                        .recent_digests()
                        .into_iter()
                        .filter_map(|reading| {
                            reading.index.map(|index| DigestView {
                                index,
                                state_digest: reading.digest.to_hex(),
                            })
                        })
                        .collect(),
                });
            }
        }
        Ok(())
    }
}

/// Like [`answer`], and counts the operation and its outcome in the metrics.
fn answer_measured<T, F>(
    node: &NodeContext,
    operation: &'static str,
    reply: RpcReplyPort<Result<T, GatewayError>>,
    work: F,
) where
    T: Send + 'static,
    F: Future<Output = Result<T, GatewayError>> + Send + 'static,
{
    let metrics = node.metrics.clone();
    let started = std::time::Instant::now();
    answer(reply, async move {
        let result = work.await;
        let code = match &result {
            Ok(_) => "ok",
            Err(error) => error.code.slug(),
        };
        metrics.gateway_request(operation, code, started.elapsed().as_secs_f64());
        result
    });
}

/// Runs `work` in its own task and sends its result to `reply`.
fn answer<T, F>(reply: RpcReplyPort<T>, work: F)
where
    T: Send + 'static,
    F: Future<Output = T> + Send + 'static,
{
    // The request's span (ractor carries it into the handler) goes with the work, so
    // what the work logs carries the request's trace id.
    let span = tracing::Span::current();
    tokio::spawn(
        async move {
            let result = work.await;
            // The caller may have timed out and gone; nothing to do then.
            let _ = reply.send(result);
        }
        .instrument(span),
    );
}

fn require_admin(context: &RequestContext, action: &str) -> Result<(), GatewayError> {
    crate::gateway::policy::authorize(
        context,
        crate::gateway::policy::Request::Operation {
            name: action,
            access: crate::gateway::policy::Access::Admin,
        },
    )
}

/// Whether the caller may reach `tenant`'s resources (the policy decides).
pub(crate) fn require_access(
    context: &RequestContext,
    tenant: &TenantId,
) -> Result<(), GatewayError> {
    crate::gateway::policy::authorize(
        context,
        crate::gateway::policy::Request::TenantResource {
            owner: tenant,
            what: "reach the resources",
        },
    )
}

/// Proposes a command of the node's own (a controller's plan, a worker's report) through
/// the leader, waiting for one during an election, and decodes the state machine's
/// result. It carries no request id: its outcome, when unknown, is found by the next
/// reconcile.
pub(crate) async fn propose(
    node: &NodeContext,
    command: CommandV1,
) -> Result<CommandOutcome, GatewayError> {
    propose_with_id(node, command, None).await
}

/// Proposes a caller's write under the caller's request id, so that it applies at most
/// once however often it is retried.
pub(crate) async fn propose_for(
    node: &NodeContext,
    context: &RequestContext,
    command: CommandV1,
) -> Result<CommandOutcome, GatewayError> {
    propose_with_id(node, command, Some(context.dedup_id())).await
}

async fn propose_with_id(
    node: &NodeContext,
    command: CommandV1,
    request_id: Option<String>,
) -> Result<CommandOutcome, GatewayError> {
    let response = node
        .raft
        .propose(Command::V1(command).encode(), request_id)
        .await?;
    let result = crate::state::decode_result(&response).map_err(|error| {
        GatewayError::internal(format!("undecodable state machine response: {error}"))
    })?;
    result.map_err(GatewayError::from)
}

/// What a caller is told by a node whose Raft core stopped (health and reads alike).
pub fn core_stopped(stop: &hodei_cluster::CoreStop) -> GatewayError {
    let detail = match stop {
        hodei_cluster::CoreStop::Removed => {
            "node removed: this node was removed from the cluster and stops; ask another member"
                .to_string()
        }
        hodei_cluster::CoreStop::Failed(reason) => format!(
            "node failed: {reason}; it exits so that its supervisor restarts it from what it stored; ask another member"
        ),
    };
    GatewayError::unavailable(detail, 5)
}

pub(crate) async fn read_barrier(
    node: &NodeContext,
    consistency: Consistency,
) -> Result<(), GatewayError> {
    // A node whose core stopped may hold applied state it could not store: it serves
    // no read of it, stale or not.
    if let Some(stop) = &node.raft.core_stop() {
        return Err(core_stopped(stop));
    }
    match consistency {
        Consistency::Stale => Ok(()),
        Consistency::Linearizable => node
            .raft
            .ensure_linearizable()
            .await
            .map_err(GatewayError::from),
    }
}

pub(crate) fn unexpected(outcome: CommandOutcome) -> GatewayError {
    GatewayError::internal(format!("unexpected state machine outcome: {outcome:?}"))
}

/// Raft's view of the cluster as the gateway shows it.
pub fn status_view(status: &ClusterStatus) -> ClusterStatusView {
    ClusterStatusView {
        cluster_id: status.cluster_id.clone(),
        node_id: status.node_id,
        addr: status.addr.clone(),
        initialized: status.initialized,
        role: status.role.to_string(),
        term: status.term,
        leader_id: status.leader_id,
        last_log_index: status.last_log_index,
        last_applied_index: status.last_applied_index,
        snapshot_index: status.snapshot_index,
        state_digest: status.state_digest.clone(),
        digest_index: status.digest_index,
        quorum_ack_age_ms: status.quorum_ack_age_ms,
        members: status
            .members
            .iter()
            .map(|member| ClusterMemberView {
                node_id: member.node_id,
                addr: member.addr.clone(),
                api_addr: member.api_addr.clone(),
                role: if member.voter { "voter" } else { "learner" }.to_string(),
                matched_index: member.matched_index,
                lag: member.lag,
            })
            .collect(),
    }
}

/// Raft's errors as the gateway reports them.
impl From<ClusterError> for GatewayError {
    fn from(error: ClusterError) -> Self {
        match &error {
            ClusterError::NotLeader { .. } | ClusterError::Unavailable(_) => {
                GatewayError::unavailable(error.to_string(), 1)
            }
            ClusterError::NotInitialized => GatewayError::unavailable(error.to_string(), 5),
            ClusterError::AlreadyMember(_) => {
                GatewayError::new(ErrorCode::AlreadyExists, error.to_string())
            }
            ClusterError::NotMember(_) => GatewayError::new(ErrorCode::NotFound, error.to_string()),
            ClusterError::Refused(_) => GatewayError::new(ErrorCode::Conflict, error.to_string()),
            ClusterError::Invalid(_) => {
                GatewayError::new(ErrorCode::Unprocessable, error.to_string())
            }
            ClusterError::Storage(_) | ClusterError::Fatal(_) => {
                GatewayError::internal(error.to_string())
            }
            ClusterError::OutcomeUnknown { request_id, .. } => GatewayError {
                request_id: request_id
                    .as_deref()
                    .map(|id| id.split_once('/').map_or(id, |(_, own)| own).to_string()),
                ..GatewayError::new(ErrorCode::OutcomeUnknown, error.to_string())
            },
        }
    }
}

#[cfg(test)]
mod cluster_error_tests {
    use super::*;

    #[test]
    fn not_leader_is_retryable_unavailable() {
        let error = GatewayError::from(ClusterError::NotLeader {
            leader_id: None,
            leader_addr: None,
        });
        assert_eq!(error.code, ErrorCode::Unavailable);
        assert_eq!(error.retry_after_s, Some(1));
    }
}

#[cfg(test)]
mod limit_tests {
    use super::*;
    use crate::gateway::operations::{DeleteTenant, GetTenant};
    use crate::gateway::{Principal, TraceId};

    /// A gateway that keeps every message and answers none.
    struct Silent;

    impl Actor for Silent {
        type Msg = GatewayMsg;
        type State = Vec<GatewayMsg>;
        type Arguments = ();

        async fn pre_start(
            &self,
            _: ActorRef<GatewayMsg>,
            _: (),
        ) -> Result<Self::State, ActorProcessingErr> {
            Ok(Vec::new())
        }

        async fn handle(
            &self,
            _: ActorRef<GatewayMsg>,
            message: GatewayMsg,
            kept: &mut Self::State,
        ) -> Result<(), ActorProcessingErr> {
            kept.push(message);
            Ok(())
        }
    }

    fn admin() -> RequestContext {
        RequestContext::new(Principal::Admin, TraceId::generate())
    }

    fn read() -> GetTenant {
        GetTenant {
            id: "acme".into(),
            consistency: Consistency::default(),
        }
    }

    #[tokio::test]
    async fn an_unanswered_write_is_unknown_and_operations_over_the_limit_are_refused() {
        let (silent, _) = Actor::spawn(None, Silent, ()).await.unwrap();
        let gateway = GatewayHandle::new(
            silent,
            crate::actors::rate_limit::RateLimitSettings::default(),
        );
        gateway.set_call_timeout(Duration::from_millis(100));
        let write = DeleteTenant {
            id: "acme".into(),
            cascade: false,
        };
        let error = gateway.call(admin(), write).await.unwrap_err();
        assert_eq!(error.code, ErrorCode::OutcomeUnknown, "{error}");
        assert!(error.detail.contains("may still apply"), "{error}");
        let error = gateway.call(admin(), read()).await.unwrap_err();
        assert_eq!(
            error.code,
            ErrorCode::Timeout,
            "a read is a plain timeout: {error}"
        );

        gateway.set_call_timeout(Duration::from_secs(600));
        gateway.set_in_flight_limit(1);
        let hold = || {
            let gateway = gateway.clone();
            tokio::spawn(async move { gateway.call(admin(), read()).await })
        };
        // Until the held call has its permit, a second one may take it (the held call is
        // then refused and started again; the second is dropped, freeing its permit).
        let mut held = hold();
        let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
        let refused = loop {
            assert!(tokio::time::Instant::now() < deadline, "never refused");
            if held.is_finished() {
                held = hold();
            }
            tokio::task::yield_now().await;
            if let Ok(Err(error)) =
                tokio::time::timeout(Duration::from_millis(50), gateway.call(admin(), read())).await
                && error.code == ErrorCode::Unavailable
            {
                break error;
            }
        };
        assert!(
            refused.detail.contains("server.limits.max_in_flight"),
            "{refused}"
        );
        assert_eq!(refused.retry_after_s, Some(1));
        // The caller going away does not free the permit: the work still holds it.
        held.abort();
        let _ = held.await;
        let still = gateway.call(admin(), read()).await.unwrap_err();
        assert!(still.detail.contains("max_in_flight"), "{still}");
        // The work ending (here: dropped with the stopped actor's messages) frees it.
        let silent = gateway.current();
        silent.stop(None);
        let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
        loop {
            assert!(
                tokio::time::Instant::now() < deadline,
                "the permits never came back"
            );
            let error = gateway.call(admin(), read()).await.unwrap_err();
            if !error.detail.contains("max_in_flight") {
                break;
            }
            tokio::task::yield_now().await;
        }
    }
}
