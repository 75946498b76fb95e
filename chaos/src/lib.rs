//! Fault injection against real `hodei` processes and invariant checking over the
//! client-side history: what the clients were told is the ground truth the cluster
//! must honour after the fault.

use std::collections::BTreeSet;

pub mod bench;
mod bench_flood;
mod bench_history;
pub mod checker;
pub mod firewall;
pub mod latency;
pub mod limits;
pub mod linearizable;
pub mod nemesis;
pub mod runner;
pub mod scaling_reaction;
pub mod stats;

/// What a client saw for one write.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// The node acknowledged it: it must survive any fault.
    Acknowledged,
    /// Refused by a rule (e.g. duplicate): it must not have taken effect twice.
    Refused(u16),
    /// No answer (connection dropped, timeout): it may or may not have taken effect.
    Unknown(String),
}

/// One create operation and its outcome.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Operation {
    pub id: String,
    pub outcome: Outcome,
}

/// The client-side history of a run.
#[derive(Debug, Default, Clone)]
pub struct History {
    pub operations: Vec<Operation>,
}

/// A violated invariant.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Violation {
    /// An acknowledged create is not in the final state.
    AcknowledgedLost(String),
    /// An entity exists that no client ever tried to create.
    Phantom(String),
}

impl History {
    pub fn record(&mut self, id: impl Into<String>, outcome: Outcome) {
        self.operations.push(Operation {
            id: id.into(),
            outcome,
        });
    }

    pub fn acknowledged(&self) -> usize {
        self.operations
            .iter()
            .filter(|operation| operation.outcome == Outcome::Acknowledged)
            .count()
    }

    /// Checks the final set of entity ids against the history: every acknowledged create
    /// is present, and nothing is present that was never attempted. `preexisting` are
    /// entities that existed before the run.
    pub fn check(
        &self,
        final_ids: &BTreeSet<String>,
        preexisting: &BTreeSet<String>,
    ) -> Vec<Violation> {
        let attempted: BTreeSet<&str> = self
            .operations
            .iter()
            .map(|operation| operation.id.as_str())
            .collect();
        let mut violations: Vec<Violation> = self
            .operations
            .iter()
            .filter(|operation| {
                operation.outcome == Outcome::Acknowledged && !final_ids.contains(&operation.id)
            })
            .map(|operation| Violation::AcknowledgedLost(operation.id.clone()))
            .collect();
        violations.extend(
            final_ids
                .iter()
                .filter(|id| !attempted.contains(id.as_str()) && !preexisting.contains(*id))
                .map(|id| Violation::Phantom(id.clone())),
        );
        violations
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ids(items: &[&str]) -> BTreeSet<String> {
        items.iter().map(|item| item.to_string()).collect()
    }

    #[test]
    fn a_lost_acknowledged_write_is_reported() {
        let mut history = History::default();
        history.record("a", Outcome::Acknowledged);
        history.record("b", Outcome::Acknowledged);
        let violations = history.check(&ids(&["a"]), &ids(&[]));
        assert_eq!(
            violations,
            vec![Violation::AcknowledgedLost("b".to_string())]
        );
    }

    #[test]
    fn an_unknown_outcome_may_go_either_way() {
        let mut history = History::default();
        history.record("a", Outcome::Unknown("reset".to_string()));
        history.record("b", Outcome::Unknown("reset".to_string()));
        assert!(history.check(&ids(&["a"]), &ids(&[])).is_empty());
    }

    #[test]
    fn a_phantom_entity_is_reported() {
        let history = History::default();
        let violations = history.check(&ids(&["default", "ghost"]), &ids(&["default"]));
        assert_eq!(violations, vec![Violation::Phantom("ghost".to_string())]);
    }
}
