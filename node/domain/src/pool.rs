//! Resource pools as dispatch needs them: the id, where workers come from and the shape
//! of one worker (`../shared/docs/DOMAIN.md`, Pools and workers).

use serde::{Deserialize, Serialize};

use crate::DomainError;
use crate::resources::Resources;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum PoolProvider {
    /// An operator starts the `hodei worker` agents.
    #[default]
    Static,
    /// Virtual workers inside the leader that "run" a job for its simulated duration.
    Simulated,
    /// `hodei worker` child processes the leader starts and stops.
    Process,
}

impl PoolProvider {
    pub const ALL: [PoolProvider; 3] = [
        PoolProvider::Static,
        PoolProvider::Simulated,
        PoolProvider::Process,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            PoolProvider::Static => "static",
            PoolProvider::Simulated => "simulated",
            PoolProvider::Process => "process",
        }
    }

    pub fn parse(field: &str, raw: &str) -> Result<Self, DomainError> {
        Self::ALL
            .into_iter()
            .find(|provider| provider.as_str() == raw)
            .ok_or_else(|| {
                DomainError::invalid(
                    field,
                    format!("must be one of static, simulated, process, got `{raw}`"),
                )
            })
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum PoolType {
    /// A fixed set of workers an operator runs.
    #[default]
    Static,
    /// Sized between min and max by the control plane through its provider.
    Dynamic,
}

impl PoolType {
    pub fn as_str(self) -> &'static str {
        match self {
            PoolType::Static => "static",
            PoolType::Dynamic => "dynamic",
        }
    }

    pub fn parse(field: &str, raw: &str) -> Result<Self, DomainError> {
        match raw {
            "static" => Ok(PoolType::Static),
            "dynamic" => Ok(PoolType::Dynamic),
            other => Err(DomainError::invalid(
                field,
                format!("must be static or dynamic, got `{other}`"),
            )),
        }
    }
}

/// US-09.3.2: a static pool's expected size and workers.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct StaticSettings {
    /// Fewer healthy workers than this and the pool is `degraded`.
    pub size: u32,
    /// The worker ids the operator runs (informational; any worker of the pool counts).
    pub expected_workers: Vec<String>,
    pub health_check_interval_s: u64,
}

impl Default for StaticSettings {
    fn default() -> Self {
        Self {
            size: 0,
            expected_workers: Vec::new(),
            health_check_interval_s: 5,
        }
    }
}

/// US-09.3.3: how a dynamic pool grows and shrinks (defaults from DOMAIN.md).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct DynamicSettings {
    /// Idle workers beyond `min_size` are stopped after this long.
    pub idle_timeout_s: u64,
    /// A worker that has not registered this long after it was started is replaced.
    pub provision_timeout_s: u64,
    /// At most this many workers starting at once.
    pub max_provisioning: u32,
    /// A drain re-queues the jobs still running after this long.
    pub drain_timeout_s: u64,
    /// Start `min_size` workers as soon as the pool exists.
    pub prewarm: bool,
}

impl Default for DynamicSettings {
    fn default() -> Self {
        Self {
            idle_timeout_s: 300,
            provision_timeout_s: 120,
            max_provisioning: 5,
            drain_timeout_s: 60,
            prewarm: false,
        }
    }
}

pub const MAX_POOL_SIZE: u32 = 10_000;

/// The lifecycle of a pool (`../shared/docs/DOMAIN.md`, Pools and workers).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum PoolState {
    Creating,
    #[default]
    Active,
    /// No new dispatch; running jobs go on.
    Suspended,
    /// No new dispatch; running jobs finish (or are re-queued at the drain timeout).
    Draining,
    Decommissioned,
    /// Fewer healthy workers than its minimum.
    Degraded,
}

impl PoolState {
    pub fn as_str(self) -> &'static str {
        match self {
            PoolState::Creating => "creating",
            PoolState::Active => "active",
            PoolState::Suspended => "suspended",
            PoolState::Draining => "draining",
            PoolState::Decommissioned => "decommissioned",
            PoolState::Degraded => "degraded",
        }
    }
}

/// How many transitions a pool's history keeps (the oldest go first).
pub const POOL_HISTORY_KEPT: usize = 200;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Pool {
    pub id: String,
    pub provider: PoolProvider,
    /// The capacity of one worker of this pool (the largest a job in it may ask for).
    pub worker_shape: Resources,
    pub min_size: u32,
    pub max_size: u32,
    pub created_at_ms: u64,
    #[serde(default)]
    pub state: PoolState,
    /// Every lifecycle transition, oldest first.
    #[serde(default)]
    pub history: Vec<PoolTransition>,
    #[serde(default)]
    pub pool_type: PoolType,
    #[serde(default)]
    pub labels: crate::labels::Labels,
    /// How many workers a dynamic pool should have now (within [min, max]).
    #[serde(default)]
    pub desired_size: u32,
    #[serde(default)]
    pub static_settings: StaticSettings,
    #[serde(default)]
    pub dynamic_settings: DynamicSettings,
    /// Worker starts by the provider, by outcome (recorded by the leader's pool actor).
    #[serde(default)]
    pub provisioning: ProvisioningCounts,
    /// The prices its jobs are billed at.
    #[serde(default)]
    pub pricing: crate::cost::Pricing,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProvisioningCounts {
    /// Started and registered.
    pub succeeded: u64,
    /// Could not start, or did not register within the provision timeout.
    pub failed: u64,
}

impl ProvisioningCounts {
    /// succeeded / (succeeded + failed), when anything was provisioned.
    pub fn success_rate(&self) -> Option<f64> {
        // In floating point: the counts saturate at u64::MAX, and their sum must not overflow.
        let (succeeded, failed) = (self.succeeded as f64, self.failed as f64);
        (self.succeeded > 0 || self.failed > 0).then(|| succeeded / (succeeded + failed))
    }
}

/// What an operator asks of a pool's lifecycle.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PoolAction {
    Activate,
    Suspend,
    Resume,
    Drain,
    Decommission,
}

impl PoolAction {
    pub const ALL: [PoolAction; 5] = [
        PoolAction::Activate,
        PoolAction::Suspend,
        PoolAction::Resume,
        PoolAction::Drain,
        PoolAction::Decommission,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            PoolAction::Activate => "activate",
            PoolAction::Suspend => "suspend",
            PoolAction::Resume => "resume",
            PoolAction::Drain => "drain",
            PoolAction::Decommission => "decommission",
        }
    }

    pub fn parse(field: &str, raw: &str) -> Result<Self, DomainError> {
        Self::ALL
            .into_iter()
            .find(|action| action.as_str() == raw)
            .ok_or_else(|| {
                DomainError::invalid(
                    field,
                    format!(
                        "must be one of activate, suspend, resume, drain, decommission, got `{raw}`"
                    ),
                )
            })
    }
}

/// One recorded lifecycle transition: who and why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PoolTransition {
    pub from: PoolState,
    pub to: PoolState,
    pub action: Option<PoolAction>,
    pub by: String,
    pub reason: String,
    pub at_ms: u64,
}

impl PoolState {
    /// Where `action` leads from this state, if it is allowed.
    pub fn after(self, action: PoolAction) -> Option<PoolState> {
        use PoolAction::*;
        use PoolState::*;
        match (self, action) {
            (Creating, Activate) => Some(Active),
            (Active | Degraded, Suspend) => Some(Suspended),
            (Suspended, Resume) => Some(Active),
            (Active | Degraded | Suspended, Drain) => Some(Draining),
            (Draining, Decommission) => Some(Decommissioned),
            _ => None,
        }
    }

    /// The actions allowed from this state.
    pub fn allowed_actions(self) -> Vec<PoolAction> {
        PoolAction::ALL
            .into_iter()
            .filter(|action| self.after(*action).is_some())
            .collect()
    }
}

impl Pool {
    /// Adds a transition to the history, which keeps the last [`POOL_HISTORY_KEPT`].
    pub fn record(&mut self, transition: PoolTransition) {
        self.history.push(transition);
        let excess = self.history.len().saturating_sub(POOL_HISTORY_KEPT);
        self.history.drain(..excess);
    }

    /// A new active pool with default settings.
    pub fn new(
        id: &str,
        pool_type: PoolType,
        provider: PoolProvider,
        worker_shape: Resources,
        min_size: u32,
        max_size: u32,
        created_at_ms: u64,
    ) -> Self {
        Self {
            id: id.to_string(),
            provider,
            worker_shape,
            min_size,
            max_size,
            created_at_ms,
            state: PoolState::Active,
            history: Vec::new(),
            pool_type,
            labels: Default::default(),
            desired_size: min_size,
            static_settings: StaticSettings {
                size: min_size,
                ..StaticSettings::default()
            },
            dynamic_settings: DynamicSettings::default(),
            provisioning: ProvisioningCounts::default(),
            pricing: crate::cost::Pricing::default(),
        }
    }

    /// Checks the values a caller set; names the field.
    /// The same pool with these prices.
    pub fn with_pricing(mut self, pricing: crate::cost::Pricing) -> Self {
        self.pricing = pricing;
        self
    }

    pub fn validate(&self) -> Result<(), DomainError> {
        crate::worker::validate_pool_id("id", &self.id)?;
        if self.max_size == 0 || self.max_size > MAX_POOL_SIZE {
            return Err(DomainError::invalid(
                "max_size",
                format!(
                    "must be between 1 and {MAX_POOL_SIZE}, got {}",
                    self.max_size
                ),
            ));
        }
        if self.min_size > self.max_size {
            return Err(DomainError::invalid(
                "min_size",
                format!(
                    "must be <= max_size ({}), got {}",
                    self.max_size, self.min_size
                ),
            ));
        }
        if !(self.min_size..=self.max_size).contains(&self.desired_size) {
            return Err(DomainError::invalid(
                "desired",
                format!(
                    "must be between min_size ({}) and max_size ({}), got {}",
                    self.min_size, self.max_size, self.desired_size
                ),
            ));
        }
        if self.worker_shape.cpu_m == 0 || self.worker_shape.memory_mb == 0 {
            return Err(DomainError::invalid(
                "worker_shape",
                "a worker needs at least 1 cpu_m and 1 memory_mb",
            ));
        }
        if self.pool_type == PoolType::Static && self.provider != PoolProvider::Static {
            return Err(DomainError::invalid(
                "provider",
                format!(
                    "a static pool's workers are run by an operator: its provider is static, got {}",
                    self.provider.as_str()
                ),
            ));
        }
        if self.pool_type == PoolType::Dynamic && self.provider == PoolProvider::Static {
            return Err(DomainError::invalid(
                "provider",
                "a dynamic pool needs a provider that starts workers: process or simulated",
            ));
        }
        let dynamic = &self.dynamic_settings;
        for (field, value) in [
            ("dynamic.idle_timeout_s", dynamic.idle_timeout_s),
            ("dynamic.provision_timeout_s", dynamic.provision_timeout_s),
            ("dynamic.drain_timeout_s", dynamic.drain_timeout_s),
            (
                "static.health_check_interval_s",
                self.static_settings.health_check_interval_s,
            ),
        ] {
            if value == 0 || value > 86_400 {
                return Err(DomainError::invalid(
                    field,
                    format!("must be between 1 and 86400 seconds, got {value}"),
                ));
            }
        }
        if dynamic.max_provisioning == 0 || dynamic.max_provisioning > 1_000 {
            return Err(DomainError::invalid(
                "dynamic.max_provisioning",
                format!(
                    "must be between 1 and 1000, got {}",
                    dynamic.max_provisioning
                ),
            ));
        }
        if self.static_settings.size > MAX_POOL_SIZE {
            return Err(DomainError::invalid(
                "static.size",
                format!("must be at most {MAX_POOL_SIZE}"),
            ));
        }
        crate::labels::validate_labels("labels", &self.labels)
    }

    /// Applies a lifecycle action, recording it; an illegal one is a conflict naming the
    /// current state and the actions it allows.
    pub fn apply_action(
        &mut self,
        action: PoolAction,
        by: &str,
        reason: &str,
        at_ms: u64,
    ) -> Result<(), DomainError> {
        let Some(next) = self.state.after(action) else {
            let allowed: Vec<&str> = self
                .state
                .allowed_actions()
                .into_iter()
                .map(PoolAction::as_str)
                .collect();
            return Err(DomainError::Conflict(format!(
                "pool `{}` is {}: `{}` is not allowed (allowed: {})",
                self.id,
                self.state.as_str(),
                action.as_str(),
                if allowed.is_empty() {
                    "none".to_string()
                } else {
                    allowed.join(", ")
                }
            )));
        };
        self.record(PoolTransition {
            from: self.state,
            to: next,
            action: Some(action),
            by: by.to_string(),
            reason: reason.to_string(),
            at_ms,
        });
        self.state = next;
        Ok(())
    }

    /// Whether new jobs may be dispatched to its workers.
    pub fn accepts_work(&self) -> bool {
        matches!(self.state, PoolState::Active | PoolState::Degraded)
    }

    /// The (min, max, desired) sizes a reader is shown: a static pool's size is its
    /// configured size, so its min, max and desired say that one number (the dynamic
    /// bounds it also stores do not apply to it); a decommissioned pool wants no worker.
    pub fn shown_sizes(&self) -> (u32, u32, u32) {
        let (min, max, desired) = match self.pool_type {
            PoolType::Static => {
                let size = self.static_settings.size;
                (size, size, size)
            }
            PoolType::Dynamic => (self.min_size, self.max_size, self.desired_size),
        };
        match self.state {
            PoolState::Decommissioned => (min, max, 0),
            _ => (min, max, desired),
        }
    }

    /// The id of the `index`-th virtual worker of a simulated pool.
    pub fn simulated_worker_id(&self, index: u32) -> String {
        format!("{}-sim-{index}", self.id)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pool() -> Pool {
        Pool::new(
            "p",
            PoolType::Static,
            PoolProvider::Static,
            Resources::new(1_000, 1_000, 0),
            0,
            1,
            0,
        )
    }

    #[test]
    fn pool_rules_name_their_field() {
        let field = |pool: Pool| match pool.validate() {
            Err(DomainError::Invalid { field, .. }) => field,
            other => panic!("expected invalid, got {other:?}"),
        };
        assert!(pool().validate().is_ok());
        assert_eq!(
            field(Pool {
                max_size: 0,
                ..pool()
            }),
            "max_size"
        );
        assert_eq!(
            field(Pool {
                min_size: 2,
                ..pool()
            }),
            "min_size"
        );
        assert_eq!(
            field(Pool {
                desired_size: 5,
                ..pool()
            }),
            "desired"
        );
        assert_eq!(
            field(Pool {
                provider: PoolProvider::Process,
                ..pool()
            }),
            "provider"
        );
        assert_eq!(
            field(Pool {
                pool_type: PoolType::Dynamic,
                ..pool()
            }),
            "provider"
        );
    }

    #[test]
    fn lifecycle_moves_are_recorded_and_illegal_ones_name_the_state() {
        let mut pool = pool();
        pool.apply_action(PoolAction::Suspend, "admin", "maintenance", 1)
            .unwrap();
        assert!(!pool.accepts_work());
        pool.apply_action(PoolAction::Resume, "admin", "done", 2)
            .unwrap();
        pool.apply_action(PoolAction::Drain, "admin", "retire", 3)
            .unwrap();
        let refused = pool
            .apply_action(PoolAction::Resume, "admin", "oops", 4)
            .unwrap_err();
        assert_eq!(
            refused,
            DomainError::Conflict(
                "pool `p` is draining: `resume` is not allowed (allowed: decommission)".to_string()
            )
        );
        pool.apply_action(PoolAction::Decommission, "admin", "drained", 5)
            .unwrap();
        let states: Vec<PoolState> = pool.history.iter().map(|step| step.to).collect();
        assert_eq!(
            states,
            [
                PoolState::Suspended,
                PoolState::Active,
                PoolState::Draining,
                PoolState::Decommissioned
            ]
        );
        assert!(PoolState::Decommissioned.allowed_actions().is_empty());
    }
}

#[cfg(test)]
mod history_bound_tests {
    use super::*;

    #[test]
    fn a_pools_history_keeps_its_last_transitions() {
        let mut pool = Pool::new(
            "p",
            PoolType::Static,
            PoolProvider::Static,
            crate::resources::Resources::new(1, 1, 0),
            0,
            1,
            0,
        );
        for at_ms in 0..(POOL_HISTORY_KEPT as u64 + 50) {
            pool.record(PoolTransition {
                from: pool.state,
                to: pool.state,
                action: None,
                by: "hodei".into(),
                reason: "test".into(),
                at_ms,
            });
        }
        assert_eq!(pool.history.len(), POOL_HISTORY_KEPT);
        assert_eq!(pool.history[0].at_ms, 50, "the oldest went first");
    }
}
