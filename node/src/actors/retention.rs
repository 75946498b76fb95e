//! The leader's retention loop: every `retention.sweep_interval_s` it moves the jobs that
//! ended more than `retention.finished_in_memory_s` ago to the job history
//! (`ArchiveJobs`), and deletes the history older than `retention.job_history_days`
//! (`PurgeHistory`), each in batches of at most [`MAX_SWEEP`] jobs per command so that no
//! single entry is large. Followers do nothing; a new leader takes over where the old
//! one stopped, since both commands are decided by the replicated state.

use tracing::{debug, warn};

use crate::actors::gateway::propose;
use crate::actors::{NodeContext, now_ms};
use crate::state::command;
use crate::state::history::MAX_SWEEP;
use crate::state::{CommandOutcome, CommandV1};

/// The most commands one sweep proposes of each kind (then it waits for the next tick).
const MAX_COMMANDS_PER_SWEEP: usize = 50;

pub async fn run(node: NodeContext) {
    let retention = node.limits.retention;
    let mut ticker = tokio::time::interval(retention.sweep_interval);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticker.tick().await;
        if !node.raft.is_leader() {
            continue;
        }
        sweep(&node).await;
    }
}

/// One pass: archive, then purge, each until nothing is due or the sweep's share is used.
pub async fn sweep(node: &NodeContext) {
    let retention = node.limits.retention;
    let now = now_ms();
    let before = |age: std::time::Duration| now.saturating_sub(age.as_millis() as u64);
    let archive = command::ArchiveJobs {
        ended_before_ms: before(retention.finished_in_memory),
        limit: MAX_SWEEP as u32,
        gone_workers_before_ms: before(retention.gone_workers),
        ended_bursts_before_ms: before(retention.burst_history),
    };
    for _ in 0..MAX_COMMANDS_PER_SWEEP {
        if !node.read(|state| state.sweep_due(&archive)) {
            break;
        }
        match propose(node, CommandV1::ArchiveJobs(archive.clone())).await {
            Ok(CommandOutcome::Archived {
                count,
                workers,
                bursts,
            }) => {
                debug!(
                    count,
                    workers, bursts, "finished jobs moved to the job history"
                );
                if count < MAX_SWEEP {
                    break;
                }
            }
            Ok(_) => break,
            Err(error) => {
                warn!(%error, "finished jobs could not be moved to the history");
                return;
            }
        }
    }
    // The cost ledger's whole hours older than its retention.
    let hour = hodei_domain::cost::HOUR_MS;
    let ledger_before = before(retention.cost_ledger) / hour * hour;
    if node.read(|state| {
        state
            .oldest_cost_hour()
            .is_some_and(|oldest| oldest < ledger_before)
    }) {
        let command = CommandV1::PurgeCostLedger(command::PurgeCostLedger {
            before_ms: ledger_before,
        });
        match propose(node, command).await {
            Ok(CommandOutcome::Purged { count }) => {
                debug!(count, "expired hours deleted from the cost ledger");
            }
            Ok(_) => {}
            Err(error) => warn!(%error, "expired cost ledger hours could not be deleted"),
        }
    }
    let purge_before = before(retention.job_history);
    for _ in 0..MAX_COMMANDS_PER_SWEEP {
        // Read outside the state lock: apply goes on beside the scan.
        let history = node.read(|state| state.history_reader());
        let jobs = history.due(purge_before, MAX_SWEEP);
        if jobs.is_empty() {
            break;
        }
        let full = jobs.len() == MAX_SWEEP;
        let command = CommandV1::PurgeHistory(command::PurgeHistory {
            ended_before_ms: purge_before,
            jobs,
        });
        match propose(node, command).await {
            Ok(CommandOutcome::Purged { count }) => {
                debug!(count, "expired jobs deleted from the job history");
                if !full {
                    break;
                }
            }
            Ok(_) => break,
            Err(error) => {
                warn!(%error, "expired jobs could not be deleted from the history");
                return;
            }
        }
    }
}
