//! A linearizability checker for the nemesis's tenant and quota operations, in the manner
//! of Knossos and Porcupine (Wing & Gong's search with Lowe's memo): for each key, is
//! there one order of its operations, each taking effect at an instant between its
//! invocation and its completion, in which every outcome a client was told is what a
//! single copy of the key would have answered?
//!
//! Each key is a register that may be absent: a tenant (absent, or present with a display
//! name) or a quota (always present, its `max_pending_jobs`). Every written value is
//! unique, so a read names the write it saw. An operation with no known outcome (timeout,
//! 5xx) may have taken effect at any instant after its invocation, or never; one refused
//! for a reason that says nothing of the key (rate limit, validation) never did.

use std::collections::{BTreeMap, HashSet};

use serde::Serialize;

/// What one operation did to a key, and what its client was told.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum Action {
    /// Create with a value: `ok` when absent, `exists` (409) when present.
    Create { value: String },
    /// Replace the value of a present key: `ok`, or `absent` (404).
    Update { value: String },
    /// Remove a present key: `ok`, or `absent` (404).
    Delete,
    /// Read: the value, or `absent` (404).
    Read,
}

/// What the client was told.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    Ok,
    /// A read's answer.
    Saw(String),
    /// 404: the key is absent.
    Absent,
    /// 409: the key is present.
    Exists,
    /// No answer, or one that does not say (5xx, timeout): it may or may not have happened.
    Unknown,
}

/// One operation on one key.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct KeyOp {
    pub key: String,
    pub client: u32,
    pub action: Action,
    pub outcome: Outcome,
    pub invoked_ms: u64,
    pub completed_ms: u64,
}

/// A key whose history has no legal order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct NotLinearizable {
    pub key: String,
    pub operations: usize,
    /// The operations that no order could get past, the deepest the search reached.
    pub stuck_at: Vec<KeyOp>,
}

/// The verdict over every key.
#[derive(Debug, Default, Clone, PartialEq, Eq, Serialize)]
pub struct Verdict {
    pub keys: usize,
    pub operations: usize,
    pub violations: Vec<NotLinearizable>,
    /// Keys whose search gave up (too many concurrent unknown operations): neither proven
    /// nor refuted.
    pub inconclusive: Vec<String>,
}

/// Search states tried per key before giving up.
const BUDGET: usize = 2_000_000;

/// Checks every key's history; `initial` gives a key's value at the start (absent if not
/// named).
pub fn check(ops: &[KeyOp], initial: &BTreeMap<String, String>) -> Verdict {
    let mut by_key: BTreeMap<&str, Vec<&KeyOp>> = BTreeMap::new();
    for op in ops {
        by_key.entry(&op.key).or_default().push(op);
    }
    let mut verdict = Verdict {
        keys: by_key.len(),
        operations: ops.len(),
        ..Verdict::default()
    };
    for (key, history) in by_key {
        match search(&history, initial.get(key).cloned()) {
            Search::Linearizable => {}
            Search::GaveUp => verdict.inconclusive.push(key.to_string()),
            Search::Stuck(deepest) => verdict.violations.push(NotLinearizable {
                key: key.to_string(),
                operations: history.len(),
                stuck_at: deepest
                    .into_iter()
                    .map(|index| history[index].clone())
                    .collect(),
            }),
        }
    }
    verdict
}

enum Search {
    Linearizable,
    GaveUp,
    /// The operations that could not be placed next, where the search got furthest.
    Stuck(Vec<usize>),
}

/// The key's next value if `op` takes effect now on `value` and answers what its client
/// was told; `None` if it could not have.
fn step(value: &Option<String>, op: &KeyOp) -> Option<Option<String>> {
    match (&op.action, &op.outcome, value) {
        (Action::Create { value: new }, Outcome::Ok, None) => Some(Some(new.clone())),
        (Action::Create { value: new }, Outcome::Unknown, None) => Some(Some(new.clone())),
        (Action::Create { .. }, Outcome::Exists, Some(_)) => Some(value.clone()),
        (Action::Update { value: new }, Outcome::Ok, Some(_)) => Some(Some(new.clone())),
        (Action::Update { value: new }, Outcome::Unknown, Some(_)) => Some(Some(new.clone())),
        (Action::Update { .. } | Action::Delete, Outcome::Absent, None) => Some(None),
        (Action::Delete, Outcome::Ok, Some(_)) => Some(None),
        (Action::Delete, Outcome::Unknown, Some(_)) => Some(None),
        (Action::Read, Outcome::Saw(seen), Some(current)) if seen == current => Some(value.clone()),
        (Action::Read, Outcome::Absent, None) => Some(None),
        // An unknown operation that would have been refused here changed nothing: the
        // same as leaving it unplaced, which the search already tries.
        _ => None,
    }
}

/// Wing & Gong's search: place, one at a time, an operation that no unplaced operation
/// completed before; backtrack on a wrong answer; remember (placed set, value) pairs
/// already explored. Unknown operations never complete, so they may stay unplaced.
fn search(history: &[&KeyOp], initial: Option<String>) -> Search {
    let count = history.len();
    let words = count.div_ceil(64);
    let known: Vec<usize> = (0..count)
        .filter(|index| history[*index].outcome != Outcome::Unknown)
        .collect();
    let mut seen: HashSet<(Vec<u64>, Option<String>)> = HashSet::new();
    // (placed, value, next candidate to try)
    let mut stack: Vec<(Vec<u64>, Option<String>, usize)> = vec![(vec![0; words], initial, 0)];
    let mut deepest: (usize, Vec<usize>) = (0, Vec::new());
    let mut tried = 0usize;
    let is_placed = |placed: &[u64], index: usize| placed[index / 64] & (1 << (index % 64)) != 0;
    while let Some((placed, value, from)) = stack.pop() {
        if known.iter().all(|index| is_placed(&placed, *index)) {
            return Search::Linearizable;
        }
        tried += 1;
        if tried > BUDGET {
            return Search::GaveUp;
        }
        // The earliest completion among the unplaced known operations: anything invoked
        // after it cannot go next.
        let horizon = known
            .iter()
            .filter(|index| !is_placed(&placed, **index))
            .map(|index| history[*index].completed_ms)
            .min()
            .unwrap_or(u64::MAX);
        let candidates: Vec<usize> = (0..count)
            .filter(|index| !is_placed(&placed, *index) && history[*index].invoked_ms <= horizon)
            .collect();
        let depth = placed.iter().map(|word| word.count_ones() as usize).sum();
        if depth >= deepest.0 {
            deepest = (depth, candidates.clone());
        }
        for (position, index) in candidates.iter().enumerate().skip(from) {
            let Some(next) = step(&value, history[*index]) else {
                continue;
            };
            let mut then = placed.clone();
            then[index / 64] |= 1 << (index % 64);
            if !seen.insert((then.clone(), next.clone())) {
                continue;
            }
            // Come back to this state for the candidates after this one.
            stack.push((placed, value, position + 1));
            stack.push((then, next, 0));
            break;
        }
    }
    Search::Stuck(deepest.1)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn op(client: u32, action: Action, outcome: Outcome, invoked: u64, completed: u64) -> KeyOp {
        KeyOp {
            key: "t".into(),
            client,
            action,
            outcome,
            invoked_ms: invoked,
            completed_ms: completed,
        }
    }

    fn create(value: &str) -> Action {
        Action::Create {
            value: value.into(),
        }
    }

    fn update(value: &str) -> Action {
        Action::Update {
            value: value.into(),
        }
    }

    fn saw(value: &str) -> Outcome {
        Outcome::Saw(value.into())
    }

    fn verdict(ops: &[KeyOp]) -> Verdict {
        check(ops, &BTreeMap::new())
    }

    #[test]
    fn a_sequential_history_that_reads_its_writes_is_linearizable() {
        let ops = [
            op(0, Action::Read, Outcome::Absent, 0, 1),
            op(0, create("a"), Outcome::Ok, 2, 3),
            op(1, Action::Read, saw("a"), 4, 5),
            op(1, update("b"), Outcome::Ok, 6, 7),
            op(0, create("c"), Outcome::Exists, 8, 9),
            op(0, Action::Read, saw("b"), 10, 11),
            op(1, Action::Delete, Outcome::Ok, 12, 13),
            op(0, update("d"), Outcome::Absent, 14, 15),
            op(0, Action::Read, Outcome::Absent, 16, 17),
        ];
        let found = verdict(&ops);
        assert!(found.violations.is_empty(), "{found:?}");
        assert!(found.inconclusive.is_empty());
    }

    #[test]
    fn a_stale_read_after_a_completed_write_is_caught() {
        let ops = [
            op(0, create("a"), Outcome::Ok, 0, 1),
            op(0, update("b"), Outcome::Ok, 2, 3),
            // Began after b was acknowledged, and still saw a.
            op(1, Action::Read, saw("a"), 4, 5),
        ];
        let found = verdict(&ops);
        assert_eq!(found.violations.len(), 1, "{found:?}");
        assert_eq!(found.violations[0].key, "t");
    }

    #[test]
    fn concurrent_operations_may_take_effect_in_either_order() {
        // The update overlaps both reads: the first may see the old value, the second the
        // new one, but not the other way round.
        let ops = [
            op(0, create("a"), Outcome::Ok, 0, 1),
            op(1, update("b"), Outcome::Ok, 2, 20),
            op(0, Action::Read, saw("a"), 3, 4),
            op(0, Action::Read, saw("b"), 5, 6),
        ];
        assert!(verdict(&ops).violations.is_empty());
        let backwards = [
            op(0, create("a"), Outcome::Ok, 0, 1),
            op(1, update("b"), Outcome::Ok, 2, 20),
            op(0, Action::Read, saw("b"), 3, 4),
            op(0, Action::Read, saw("a"), 5, 6),
        ];
        assert_eq!(verdict(&backwards).violations.len(), 1);
    }

    #[test]
    fn an_unknown_write_may_have_happened_or_not_and_a_refused_one_never_did() {
        let happened = [
            op(0, create("a"), Outcome::Ok, 0, 1),
            op(1, update("b"), Outcome::Unknown, 2, 3),
            op(0, Action::Read, saw("b"), 10, 11),
        ];
        assert!(verdict(&happened).violations.is_empty());
        let did_not = [
            op(0, create("a"), Outcome::Ok, 0, 1),
            op(1, update("b"), Outcome::Unknown, 2, 3),
            op(0, Action::Read, saw("a"), 10, 11),
        ];
        assert!(verdict(&did_not).violations.is_empty());
        // A refused write (here: refused for a reason that says nothing of the key, so it
        // is left out of the history) whose value is read back took effect.
        let refused_took_effect = [
            op(0, create("a"), Outcome::Ok, 0, 1),
            op(0, Action::Read, saw("b"), 10, 11),
        ];
        assert_eq!(verdict(&refused_took_effect).violations.len(), 1);
        // An unknown create that was refused as existing changed nothing.
        let unknown_on_present = [
            op(0, create("a"), Outcome::Ok, 0, 1),
            op(1, create("z"), Outcome::Unknown, 2, 3),
            op(0, Action::Read, saw("a"), 10, 11),
        ];
        assert!(verdict(&unknown_on_present).violations.is_empty());
    }

    #[test]
    fn a_lost_acknowledged_create_and_a_wrong_refusal_are_caught() {
        let lost = [
            op(0, create("a"), Outcome::Ok, 0, 1),
            op(1, Action::Read, Outcome::Absent, 2, 3),
        ];
        assert_eq!(verdict(&lost).violations.len(), 1);
        let wrongly_refused = [
            op(0, Action::Read, Outcome::Absent, 0, 1),
            op(1, create("a"), Outcome::Exists, 2, 3),
        ];
        assert_eq!(verdict(&wrongly_refused).violations.len(), 1);
    }

    #[test]
    fn keys_are_judged_apart_and_start_from_their_initial_value() {
        let mut other = op(0, Action::Read, saw("q1"), 0, 1);
        other.key = "quota".into();
        let ops = [op(0, create("a"), Outcome::Ok, 0, 1), other];
        let initial = BTreeMap::from([("quota".to_string(), "q1".to_string())]);
        let found = check(&ops, &initial);
        assert_eq!((found.keys, found.violations.len()), (2, 0));
        assert_eq!(check(&ops, &BTreeMap::new()).violations.len(), 1);
    }

    #[test]
    fn a_long_history_with_many_clients_is_decided_quickly() {
        // 4 clients, 400 operations, each overlapping its neighbours; every read sees the
        // write before it.
        let mut ops = vec![op(0, create("v0"), Outcome::Ok, 0, 5)];
        for n in 1..400u64 {
            let at = n * 10;
            let client = (n % 4) as u32;
            if n % 2 == 0 {
                ops.push(op(
                    client,
                    update(&format!("v{n}")),
                    Outcome::Ok,
                    at,
                    at + 15,
                ));
            } else {
                ops.push(op(
                    client,
                    Action::Read,
                    saw(&format!("v{}", n - 1)),
                    at,
                    at + 15,
                ));
            }
        }
        let found = verdict(&ops);
        assert!(
            found.violations.is_empty() && found.inconclusive.is_empty(),
            "{found:?}"
        );
    }
}
