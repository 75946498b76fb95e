//! Resource pools as dispatch needs them: the id, where workers come from and the shape
//! of one worker (`../shared/docs/DOMAIN.md`, Pools and workers).

use serde::{Deserialize, Serialize};

use crate::domain::DomainError;
use crate::domain::resources::Resources;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum PoolProvider {
    /// An operator starts the `hodei worker` agents.
    #[default]
    Static,
    /// Virtual workers inside the leader that "run" a job for its simulated duration.
    Simulated,
}

impl PoolProvider {
    pub fn as_str(self) -> &'static str {
        match self {
            PoolProvider::Static => "static",
            PoolProvider::Simulated => "simulated",
        }
    }
}

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
        self.history.push(PoolTransition {
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

    /// The id of the `index`-th virtual worker of a simulated pool.
    pub fn simulated_worker_id(&self, index: u32) -> String {
        format!("{}-sim-{index}", self.id)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pool() -> Pool {
        Pool {
            id: "p".into(),
            provider: PoolProvider::Static,
            worker_shape: Resources::new(1_000, 1_000, 0),
            min_size: 0,
            max_size: 1,
            created_at_ms: 0,
            state: PoolState::Active,
            history: Vec::new(),
        }
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
