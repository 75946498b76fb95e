//! The ControlSupervisor: while this node is the Raft leader it runs one controller
//! actor per tenant and per queue, reconciled against the state machine;
//! when leadership is lost it stops them. A controller that fails is restarted after a
//! back-off and reloads from the state machine; too many restarts in a minute and the
//! supervisor fails itself (`restarts.rs`). It also hosts the worker hub and the
//! simulator as actors (`leader_loop.rs`), restarted the same way. On a fresh cluster it also proposes the bootstrap
//! commands that create the default tenant and the configured pools and queues.

use std::collections::BTreeMap;
use std::time::Instant;

use ractor::{Actor, ActorCell, ActorProcessingErr, ActorRef, RpcReplyPort, SupervisionEvent};
use tracing::{info, warn};

use crate::actors::leader_loop::{LeaderLoop, LoopMsg, LoopSpec};
use crate::actors::pool_actor::{PoolActor, PoolMsg};
use crate::actors::queue_actor::{QueueActor, QueueMsg};
use crate::actors::restarts::{Restart, RestartPolicy, Restarts};
use crate::actors::tenant_actor::{TenantActor, TenantMsg};
use crate::actors::{NodeContext, now_ms};
use crate::state::command;
use crate::state::{Command, CommandV1, DomainEvent};
use hodei_domain::tenant::{Tenant, TenantId};

pub enum ControlMsg {
    /// Bring the running controllers in line with leadership and the state.
    Reconcile,
    /// The bootstrap proposal failed: propose it again on the next reconcile.
    BootstrapFailed,
    /// A state change; reconciles, and tells the tenant's actor to reload.
    Event(DomainEvent),
    GetObservableState(RpcReplyPort<ControlObservableState>),
    /// Start the loop `name` again (after its back-off).
    RestartLoop(&'static str),
    /// The actor hosting the loop `name` (`worker_hub`, `simulator`).
    LoopActor(&'static str, RpcReplyPort<Option<ActorRef<LoopMsg>>>),
    /// The tenant actor of `id`, if it runs (for tests and later features).
    TenantActor(TenantId, RpcReplyPort<Option<ActorRef<TenantMsg>>>),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ControlObservableState {
    pub leading: bool,
    pub tenant_actors: Vec<TenantId>,
    pub queue_actors: Vec<String>,
    pub pool_actors: Vec<String>,
    pub restarts: u64,
}

pub struct ControlSupervisor;

/// The loops every node runs under this supervisor: the worker hub (delivery and lost
/// workers) and its leadership check (which workers' leases wait on), the simulator of
/// `simulated` pools, the retention of finished jobs, the autoscaler and the cost watch
/// (settings and budget warnings). They act only while the node leads.
fn leader_loops() -> [LoopSpec; 6] {
    [
        LoopSpec::new("worker_hub", |node: NodeContext| {
            let hub = node.worker_hub.clone();
            hub.run(node)
        }),
        LoopSpec::new("leadership_check", |node: NodeContext| {
            let hub = node.worker_hub.clone();
            hub.confirm_leadership(node)
        }),
        LoopSpec::new("simulator", crate::actors::workers::simulated::run),
        LoopSpec::new("retention", crate::actors::retention::run),
        LoopSpec::new("autoscaler", crate::actors::autoscaler::run),
        LoopSpec::new("cost watch", crate::actors::cost_watch::run),
    ]
}

pub struct ControlState {
    node: NodeContext,
    leading: bool,
    bootstrap_proposed: bool,
    tenants: BTreeMap<TenantId, ActorRef<TenantMsg>>,
    queues: BTreeMap<String, ActorRef<QueueMsg>>,
    pools: BTreeMap<String, ActorRef<PoolMsg>>,
    /// The worker hub and the simulator, on every node (they act while it leads).
    loops: BTreeMap<&'static str, (ActorRef<LoopMsg>, LoopSpec)>,
    restarts: u64,
    /// Back-off and intensity of restarts.
    restart_log: Restarts,
    /// A failed controller (`tenant/ID`, `queue/ID`, `pool/ID`) is not started again
    /// before this.
    not_before: BTreeMap<String, Instant>,
}

impl ControlState {
    fn tenant_of(&self, cell: &ActorCell) -> Option<TenantId> {
        self.tenants
            .iter()
            .find(|(_, actor)| actor.get_id() == cell.get_id())
            .map(|(id, _)| id.clone())
    }

    fn queue_of(&self, cell: &ActorCell) -> Option<String> {
        self.queues
            .iter()
            .find(|(_, actor)| actor.get_id() == cell.get_id())
            .map(|(id, _)| id.clone())
    }

    fn pool_of(&self, cell: &ActorCell) -> Option<String> {
        self.pools
            .iter()
            .find(|(_, actor)| actor.get_id() == cell.get_id())
            .map(|(id, _)| id.clone())
    }

    /// Whether the controller `key` may start (not within its restart back-off; reconcile
    /// forgets back-offs that have passed).
    fn may_start(&self, key: &str) -> bool {
        !self.not_before.contains_key(key)
    }

    fn nudge_queues(&self, only: Option<&str>) {
        for (id, actor) in &self.queues {
            if only.is_none_or(|only| only == id) {
                let _ = actor.cast(QueueMsg::Nudge);
            }
        }
    }
}

async fn start_pool_actor(supervisor: &ActorRef<ControlMsg>, state: &mut ControlState, id: String) {
    match Actor::spawn_linked(
        None,
        PoolActor,
        (id.clone(), state.node.clone()),
        supervisor.get_cell(),
    )
    .await
    {
        Ok((actor, _)) => {
            state.pools.insert(id, actor);
        }
        Err(error) => warn!(pool = %id, %error, "pool actor did not start"),
    }
}

async fn start_queue_actor(
    supervisor: &ActorRef<ControlMsg>,
    state: &mut ControlState,
    id: String,
) {
    match Actor::spawn_linked(
        None,
        QueueActor,
        (id.clone(), state.node.clone()),
        supervisor.get_cell(),
    )
    .await
    {
        Ok((actor, _)) => {
            state.queues.insert(id, actor);
        }
        Err(error) => warn!(queue = %id, %error, "queue actor did not start"),
    }
}

async fn start_tenant_actor(
    supervisor: &ActorRef<ControlMsg>,
    state: &mut ControlState,
    id: TenantId,
) {
    match Actor::spawn_linked(
        None,
        TenantActor,
        (id.clone(), state.node.clone()),
        supervisor.get_cell(),
    )
    .await
    {
        Ok((actor, _)) => {
            state.tenants.insert(id, actor);
        }
        Err(error) => warn!(tenant = %id, %error, "tenant actor did not start"),
    }
}

async fn reconcile(supervisor: &ActorRef<ControlMsg>, state: &mut ControlState) {
    let now = Instant::now();
    state.not_before.retain(|_, at| *at > now);
    let leading = state.node.raft.is_leader();
    if leading != state.leading {
        info!(leading, "leadership changed; reconciling controllers");
        state.leading = leading;
        state.bootstrap_proposed = false;
    }
    let desired: Vec<TenantId> = if leading {
        state.node.read(|hodei| hodei.tenant_ids())
    } else {
        Vec::new()
    };
    let surplus: Vec<TenantId> = state
        .tenants
        .keys()
        .filter(|id| !desired.contains(id))
        .cloned()
        .collect();
    for id in surplus {
        if let Some(actor) = state.tenants.remove(&id) {
            actor.stop(Some("not desired".to_string()));
        }
    }
    for id in desired {
        if !state.tenants.contains_key(&id) && state.may_start(&format!("tenant/{id}")) {
            start_tenant_actor(supervisor, state, id).await;
        }
    }
    let desired_queues: Vec<String> = if leading {
        state
            .node
            .read(|hodei| hodei.queues().map(|queue| queue.id.clone()).collect())
    } else {
        Vec::new()
    };
    let surplus: Vec<String> = state
        .queues
        .keys()
        .filter(|id| !desired_queues.contains(id))
        .cloned()
        .collect();
    for id in surplus {
        if let Some(actor) = state.queues.remove(&id) {
            actor.stop(Some("not desired".to_string()));
        }
    }
    for id in desired_queues {
        if !state.queues.contains_key(&id) && state.may_start(&format!("queue/{id}")) {
            start_queue_actor(supervisor, state, id).await;
        }
    }
    let desired_pools: Vec<String> = if leading {
        state
            .node
            .read(|hodei| hodei.pools().map(|pool| pool.id.clone()).collect())
    } else {
        Vec::new()
    };
    let surplus: Vec<String> = state
        .pools
        .keys()
        .filter(|id| !desired_pools.contains(id))
        .cloned()
        .collect();
    for id in surplus {
        if let Some(actor) = state.pools.remove(&id) {
            actor.stop(Some("not desired".to_string()));
        }
    }
    for id in desired_pools {
        if !state.pools.contains_key(&id) && state.may_start(&format!("pool/{id}")) {
            start_pool_actor(supervisor, state, id).await;
        }
    }
    if leading && !state.bootstrap_proposed {
        let catalog = &state.node.catalog;
        let (has_default, has_catalog) = state.node.read(|hodei| {
            (
                hodei.tenant(&TenantId::default_tenant()).is_some()
                    && (!catalog.admin_token_at_first_start || hodei.admin_token_issued()),
                catalog
                    .pools
                    .iter()
                    .all(|pool| hodei.pool(&pool.id).is_some())
                    && catalog
                        .queues
                        .iter()
                        .all(|queue| hodei.queue(&queue.id).is_some()),
            )
        });
        if !has_default || !has_catalog {
            state.bootstrap_proposed = true;
            let node = state.node.clone();
            let myself = supervisor.clone();
            tokio::spawn(propose_bootstrap(node, myself));
        }
    }
}

/// Proposes what a fresh cluster starts with: the default tenant, then the configured
/// pools and queues (created now: the time travels in the command, so every node records
/// the same one). A failure is told to the supervisor, which proposes again later.
async fn propose_bootstrap(node: NodeContext, supervisor: ActorRef<ControlMsg>) {
    let default_tenant = Command::V1(CommandV1::Bootstrap(command::Bootstrap {
        default_tenant: Tenant::default_tenant(now_ms(), node.limits.default_quota.clone()),
    }));
    let created_at_ms = now_ms();
    let mut pools = node.catalog.pools.clone();
    for pool in &mut pools {
        pool.created_at_ms = created_at_ms;
    }
    let mut queues = node.catalog.queues.clone();
    for queue in &mut queues {
        queue.created_at_ms = created_at_ms;
        queue.updated_at_ms = created_at_ms;
    }
    let catalog = Command::V1(CommandV1::EnsureQueuesAndPools(
        command::EnsureQueuesAndPools { pools, queues },
    ));
    for command in [default_tenant, catalog] {
        if let Err(error) = node.raft.propose(command.encode(), None).await {
            warn!(%error, "bootstrap proposal failed; will retry on the next reconcile");
            tokio::time::sleep(std::time::Duration::from_millis(500)).await;
            let _ = supervisor.cast(ControlMsg::BootstrapFailed);
            return;
        }
    }
    if node.catalog.admin_token_at_first_start
        && !node.read(crate::state::HodeiState::admin_token_issued)
    {
        match crate::actors::gateway_access::issue_bootstrap_token(&node).await {
            // Printed, never logged: the one place the secret appears.
            Ok(Some(token)) => eprintln!(
                "\nThe cluster's admin token (shown once; store it now):\n\n    {token}\n\nSend it as `authorization: Bearer <token>` or set HODEI_TOKEN for the hodei CLI.\n"
            ),
            Ok(None) => {}
            Err(error) => {
                warn!(%error, "issuing the first start's admin token failed; will retry");
                tokio::time::sleep(std::time::Duration::from_millis(500)).await;
                let _ = supervisor.cast(ControlMsg::BootstrapFailed);
            }
        }
    }
}

impl Actor for ControlSupervisor {
    type Msg = ControlMsg;
    type State = ControlState;
    type Arguments = NodeContext;

    async fn pre_start(
        &self,
        myself: ActorRef<Self::Msg>,
        node: NodeContext,
    ) -> Result<ControlState, ActorProcessingErr> {
        // Forward state events and Raft role changes into the mailbox.
        let mut events = node.read(|state| state.subscribe());
        let events_target = myself.clone();
        tokio::spawn(async move {
            loop {
                let message = match events.recv().await {
                    Ok(event) if event.is_job_chatter() => continue,
                    Ok(event) => ControlMsg::Event(event),
                    Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => {
                        ControlMsg::Reconcile
                    }
                    Err(tokio::sync::broadcast::error::RecvError::Closed) => break,
                };
                if events_target.cast(message).is_err() {
                    break;
                }
            }
        });
        // Reconcile whenever this node starts or stops leading, read from the same
        // metrics that `is_leader` reads: the server-state channel can announce a new
        // leader before these show it, and a reconcile run in between would see no
        // leadership and never bootstrap (seen: a fresh cluster that never created its
        // default queue).
        let mut metrics = node.raft.raft().metrics();
        let node_id = node.raft.node_id();
        let role_target = myself.clone();
        tokio::spawn(async move {
            let mut leading: Option<bool> = None;
            while metrics.changed().await.is_ok() {
                let now_leading = {
                    let current = metrics.borrow_and_update();
                    current.state == openraft::ServerState::Leader
                        && current.current_leader == Some(node_id)
                };
                if leading == Some(now_leading) {
                    continue;
                }
                leading = Some(now_leading);
                if role_target.cast(ControlMsg::Reconcile).is_err() {
                    break;
                }
            }
        });
        myself.cast(ControlMsg::Reconcile)?;
        let mut loops = BTreeMap::new();
        for spec in leader_loops() {
            let (actor, _) = Actor::spawn_linked(
                None,
                LeaderLoop,
                (spec.clone(), node.clone()),
                myself.get_cell(),
            )
            .await?;
            loops.insert(spec.name, (actor, spec));
        }
        Ok(ControlState {
            node,
            leading: false,
            bootstrap_proposed: false,
            tenants: BTreeMap::new(),
            queues: BTreeMap::new(),
            pools: BTreeMap::new(),
            loops,
            restarts: 0,
            restart_log: Restarts::new(RestartPolicy::default()),
            not_before: BTreeMap::new(),
        })
    }

    async fn handle(
        &self,
        myself: ActorRef<Self::Msg>,
        message: ControlMsg,
        state: &mut ControlState,
    ) -> Result<(), ActorProcessingErr> {
        match message {
            ControlMsg::RestartLoop(name) => {
                if let Some((_, spec)) = state.loops.get(name) {
                    let spec = spec.clone();
                    let (actor, _) = Actor::spawn_linked(
                        None,
                        LeaderLoop,
                        (spec.clone(), state.node.clone()),
                        myself.get_cell(),
                    )
                    .await?;
                    state.loops.insert(name, (actor, spec));
                }
            }
            ControlMsg::Reconcile => {
                reconcile(&myself, state).await;
                state.nudge_queues(None);
            }
            ControlMsg::BootstrapFailed => {
                state.bootstrap_proposed = false;
                reconcile(&myself, state).await;
            }
            ControlMsg::Event(DomainEvent::JobsQueued(queue)) => {
                state.nudge_queues(Some(&queue));
            }
            ControlMsg::Event(DomainEvent::CapacityFreed {
                ended_in: Some(pool),
            }) => {
                let at = std::time::Instant::now();
                for actor in state.queues.values() {
                    let _ = actor.cast(QueueMsg::RunEnded {
                        pool: pool.clone(),
                        at,
                    });
                }
            }
            ControlMsg::Event(DomainEvent::CapacityFreed { ended_in: None }) => {
                state.nudge_queues(None)
            }
            ControlMsg::Event(event) if event.is_job_chatter() => {}
            ControlMsg::Event(event) => {
                if matches!(
                    event,
                    DomainEvent::TenantUpdated(_)
                        | DomainEvent::BurstChanged(_)
                        | DomainEvent::StateReplaced
                ) {
                    state.nudge_queues(None);
                }
                if let DomainEvent::TenantUpdated(id) | DomainEvent::BurstChanged(id) = &event
                    && let Some(actor) = state.tenants.get(id)
                {
                    let _ = actor.cast(TenantMsg::Refresh);
                }
                if event == DomainEvent::StateReplaced {
                    for actor in state.tenants.values() {
                        let _ = actor.cast(TenantMsg::Refresh);
                    }
                }
                reconcile(&myself, state).await;
            }
            ControlMsg::GetObservableState(reply) => {
                let _ = reply.send(ControlObservableState {
                    leading: state.leading,
                    tenant_actors: state.tenants.keys().cloned().collect(),
                    queue_actors: state.queues.keys().cloned().collect(),
                    pool_actors: state.pools.keys().cloned().collect(),
                    restarts: state.restarts,
                });
            }
            ControlMsg::TenantActor(id, reply) => {
                let _ = reply.send(state.tenants.get(&id).cloned());
            }
            ControlMsg::LoopActor(name, reply) => {
                let _ = reply.send(state.loops.get(name).map(|(actor, _)| actor.clone()));
            }
        }
        Ok(())
    }

    async fn handle_supervisor_evt(
        &self,
        myself: ActorRef<Self::Msg>,
        event: SupervisionEvent,
        state: &mut ControlState,
    ) -> Result<(), ActorProcessingErr> {
        match event {
            SupervisionEvent::ActorFailed(cell, error) => {
                let failed = if let Some(id) = state.tenant_of(&cell) {
                    state.tenants.remove(&id);
                    Some(("tenant", format!("tenant/{id}")))
                } else if let Some(id) = state.pool_of(&cell) {
                    state.pools.remove(&id);
                    Some(("pool", format!("pool/{id}")))
                } else if let Some(id) = state.queue_of(&cell) {
                    state.queues.remove(&id);
                    Some(("queue", format!("queue/{id}")))
                } else {
                    state
                        .loops
                        .iter()
                        .find(|(_, (actor, _))| actor.get_id() == cell.get_id())
                        .map(|(name, _)| ("loop", name.to_string()))
                };
                let Some((kind, key)) = failed else {
                    return Ok(());
                };
                state.restarts += 1;
                state.node.metrics.actor_restarted(kind);
                match state.restart_log.failed(&key, Instant::now()) {
                    Restart::After(backoff) => {
                        warn!(actor = %key, %error, backoff_ms = backoff.as_millis() as u64, "actor failed; restarting it after a back-off");
                        if kind == "loop" {
                            let name = state
                                .loops
                                .get_key_value(key.as_str())
                                .map(|(name, _)| *name);
                            if let Some(name) = name {
                                myself.send_after(backoff, move || ControlMsg::RestartLoop(name));
                            }
                        } else {
                            // Reconcile starts it again once the back-off has passed.
                            state.not_before.insert(key, Instant::now() + backoff);
                            myself.send_after(backoff, || ControlMsg::Reconcile);
                        }
                    }
                    Restart::GiveUp { restarts } => {
                        return Err(format!(
                            "{restarts} restarts within a minute (the last: {key}, {error}): the control supervisor gives up"
                        )
                        .into());
                    }
                }
            }
            SupervisionEvent::ActorTerminated(cell, _, _) => {
                if let Some(id) = state.tenant_of(&cell) {
                    state.tenants.remove(&id);
                }
                if let Some(id) = state.queue_of(&cell) {
                    state.queues.remove(&id);
                }
                if let Some(id) = state.pool_of(&cell) {
                    state.pools.remove(&id);
                }
            }
            _ => {}
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, Instant};

    use hodei_config::ConfigLoader;

    use super::*;
    use crate::actors::tenant_actor::TenantObservableState;
    use crate::gateway::model::CreateTenantInput;
    use crate::gateway::operations::{CreateTenant, DeleteTenant};
    use crate::gateway::{Principal, RequestContext, TraceId};

    async fn start_node(folder: &std::path::Path) -> crate::server::NodeHandle {
        let config = ConfigLoader::new()
            .flag("server.port", "0")
            .flag("server.grpc_port", "0")
            .flag("cluster.peer_port", "0")
            .flag("metrics.prometheus.enabled", "false")
            .flag("cluster.data_dir", folder.display().to_string())
            .load()
            .unwrap();
        crate::server::start(&config).await.unwrap()
    }

    async fn observe(control: &ActorRef<ControlMsg>) -> ControlObservableState {
        control
            .call(ControlMsg::GetObservableState, None)
            .await
            .unwrap()
            .unwrap()
    }

    async fn wait_until(what: &str, mut condition: impl AsyncFnMut() -> bool) {
        let deadline = Instant::now() + Duration::from_secs(10);
        while !condition().await {
            assert!(Instant::now() < deadline, "timed out waiting for {what}");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    async fn tenant_actor(control: &ActorRef<ControlMsg>, id: &str) -> Option<ActorRef<TenantMsg>> {
        let id = TenantId::parse(id).unwrap();
        control
            .call(|reply| ControlMsg::TenantActor(id, reply), None)
            .await
            .unwrap()
            .unwrap()
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn leader_runs_one_actor_per_tenant_and_restarts_a_failed_one() {
        let folder = tempfile::tempdir().unwrap();
        let node = start_node(folder.path()).await;
        let control = node.control.clone();

        // Bootstrap creates the default tenant, and the leader runs its actor.
        wait_until("the default tenant's actor", async || {
            observe(&control).await.tenant_actors.len() == 1
        })
        .await;
        assert!(observe(&control).await.leading);

        let context = RequestContext::new(Principal::Admin, TraceId::generate());
        let input = CreateTenantInput {
            id: "acme".to_string(),
            display_name: None,
            tier: None,
            weight: None,
            labels: Default::default(),
        };
        node.gateway
            .call(context, CreateTenant { input })
            .await
            .unwrap();
        wait_until("acme's actor", async || {
            tenant_actor(&control, "acme").await.is_some()
        })
        .await;

        let first = tenant_actor(&control, "acme").await.unwrap();
        let held: TenantObservableState = first
            .call(TenantMsg::GetObservableState, None)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(held.tenant.id.as_str(), "acme");

        // A failing actor is restarted by its supervisor and reloads from the state.
        first.cast(TenantMsg::Fail).unwrap();
        wait_until("acme's actor to be restarted", async || {
            tenant_actor(&control, "acme")
                .await
                .is_some_and(|actor| actor.get_id() != first.get_id())
        })
        .await;
        assert_eq!(observe(&control).await.restarts, 1);
        let restarted = tenant_actor(&control, "acme").await.unwrap();
        let reloaded: TenantObservableState = restarted
            .call(TenantMsg::GetObservableState, None)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(reloaded.tenant, held.tenant);

        // Deleting the tenant stops its actor.
        let context = RequestContext::new(Principal::Admin, TraceId::generate());
        node.gateway
            .call(
                context,
                DeleteTenant {
                    id: "acme".to_string(),
                    cascade: false,
                },
            )
            .await
            .unwrap();
        wait_until("acme's actor to stop", async || {
            tenant_actor(&control, "acme").await.is_none()
        })
        .await;

        node.shutdown().await;
    }

    async fn loop_actor(
        control: &ActorRef<ControlMsg>,
        name: &'static str,
    ) -> Option<ActorRef<LoopMsg>> {
        control
            .call(|reply| ControlMsg::LoopActor(name, reply), None)
            .await
            .unwrap()
            .unwrap()
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn the_worker_hub_and_the_simulator_are_supervised_and_restarted_when_they_fail() {
        let folder = tempfile::tempdir().unwrap();
        let node = start_node(folder.path()).await;
        let control = node.control.clone();
        for name in ["worker_hub", "simulator"] {
            let first = loop_actor(&control, name).await.expect("the loop runs");
            let before = observe(&control).await.restarts;
            first
                .cast(crate::actors::leader_loop::LoopMsg::Ended(
                    "a test".to_string(),
                ))
                .unwrap();
            wait_until("the loop to be restarted", async || {
                loop_actor(&control, name)
                    .await
                    .is_some_and(|actor| actor.get_id() != first.get_id())
            })
            .await;
            assert_eq!(observe(&control).await.restarts, before + 1, "{name}");
        }
        node.shutdown().await;
    }
}
