//! Queues: where jobs wait, the pools they dispatch to, and the ordering policy
//! (`../shared/docs/DOMAIN.md`, Queues and fair scheduling).

use serde::{Deserialize, Serialize};

use crate::DomainError;
use crate::tenant::is_slug;

pub const DEFAULT_QUEUE_ID: &str = "default";
pub const MAX_QUEUE_POOLS: usize = 64;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum QueuePolicy {
    #[default]
    WeightedFair,
    StrictPriority,
    Fifo,
    Edf,
}

impl QueuePolicy {
    pub const ALL: [QueuePolicy; 4] = [
        QueuePolicy::WeightedFair,
        QueuePolicy::StrictPriority,
        QueuePolicy::Fifo,
        QueuePolicy::Edf,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            QueuePolicy::WeightedFair => "weighted_fair",
            QueuePolicy::StrictPriority => "strict_priority",
            QueuePolicy::Fifo => "fifo",
            QueuePolicy::Edf => "edf",
        }
    }

    pub fn parse(field: &str, raw: &str) -> Result<Self, DomainError> {
        Self::ALL
            .into_iter()
            .find(|policy| policy.as_str() == raw)
            .ok_or_else(|| {
                DomainError::invalid(
                    field,
                    format!(
                        "must be one of weighted_fair, strict_priority, fifo, edf, got `{raw}`"
                    ),
                )
            })
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Queue {
    pub id: String,
    /// The pools its jobs may run in, in preference order.
    pub pools: Vec<String>,
    pub policy: QueuePolicy,
    pub created_at_ms: u64,
    pub updated_at_ms: u64,
}

impl Queue {
    /// Checks the id and the pool list (existence of the pools is checked by the state).
    pub fn validate(&self) -> Result<(), DomainError> {
        if !is_slug(&self.id) {
            return Err(DomainError::invalid(
                "id",
                "queue ids match [a-z0-9][a-z0-9-]{0,62}",
            ));
        }
        if self.id == "status" {
            return Err(DomainError::invalid(
                "id",
                "`status` is reserved (GET /api/v1/queues/status reports every queue)",
            ));
        }
        validate_pool_list(&self.pools)
    }
}

pub fn validate_pool_list(pools: &[String]) -> Result<(), DomainError> {
    if pools.is_empty() {
        return Err(DomainError::invalid("pools", "must name at least one pool"));
    }
    if pools.len() > MAX_QUEUE_POOLS {
        return Err(DomainError::invalid(
            "pools",
            format!("at most {MAX_QUEUE_POOLS} pools"),
        ));
    }
    for (index, pool) in pools.iter().enumerate() {
        if !is_slug(pool) {
            return Err(DomainError::invalid(
                format!("pools[{index}]"),
                "pool ids match [a-z0-9][a-z0-9-]{0,62}",
            ));
        }
        if pools[..index].contains(pool) {
            return Err(DomainError::invalid(
                format!("pools[{index}]"),
                format!("`{pool}` is listed twice"),
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn queue(id: &str, pools: &[&str]) -> Queue {
        Queue {
            id: id.to_string(),
            pools: pools.iter().map(|pool| pool.to_string()).collect(),
            policy: QueuePolicy::default(),
            created_at_ms: 0,
            updated_at_ms: 0,
        }
    }

    #[test]
    fn queue_rules_name_their_field() {
        assert!(queue("default", &["pool-default"]).validate().is_ok());
        let field = |queue: Queue| match queue.validate() {
            Err(DomainError::Invalid { field, .. }) => field,
            other => panic!("expected invalid, got {other:?}"),
        };
        assert_eq!(field(queue("Bad Id", &["p"])), "id");
        assert_eq!(field(queue("q", &[])), "pools");
        assert_eq!(field(queue("q", &["p", "p"])), "pools[1]");
        assert_eq!(field(queue("q", &["P!"])), "pools[0]");
        assert_eq!(QueuePolicy::parse("policy", "fifo"), Ok(QueuePolicy::Fifo));
        assert!(QueuePolicy::parse("policy", "random").is_err());
    }
}
