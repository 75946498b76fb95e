//! The leader's cost watch: it commits this node's `cost_tracking` settings when the
//! cluster's differ (so every replica records the same ledger, whichever node's config
//! it was started with), and each tenant's budget warnings as its spending of the day
//! reaches 80 %, 95 % and 100 % of its daily budget (once per level and day). What a
//! spent budget holds back (`budget_action: queue`) the dispatcher reads from the state.

use std::time::Duration;

use tracing::{debug, warn};

use crate::actors::gateway::propose;
use crate::actors::{NodeContext, now_ms};
use crate::state::command;
use crate::state::{CommandOutcome, CommandV1};

/// How often the leader looks.
pub const WATCH_INTERVAL: Duration = Duration::from_secs(2);

pub async fn run(node: NodeContext) {
    let mut ticker = tokio::time::interval(WATCH_INTERVAL);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticker.tick().await;
        if !node.raft.is_leader() {
            continue;
        }
        watch(&node).await;
    }
}

pub async fn watch(node: &NodeContext) {
    let wanted = node.limits.cost_settings;
    if node.read(|state| state.cost_settings()) != wanted {
        let command = CommandV1::SetCostSettings(command::SetCostSettings {
            settings: wanted,
            at_ms: now_ms(),
        });
        match propose(node, command).await {
            Ok(_) => debug!(?wanted, "cost settings committed from this leader's config"),
            Err(error) => warn!(%error, "cost settings could not be committed; retried"),
        }
    }
    let due = node.read(|state| state.budget_alerts_due(now_ms()));
    for alert in due {
        let command = CommandV1::RecordBudgetAlert(command::RecordBudgetAlert { alert });
        match propose(node, command).await {
            Ok(CommandOutcome::BudgetAlert { .. }) | Ok(_) => {}
            Err(error) => warn!(%error, "a budget warning could not be recorded; retried"),
        }
    }
}
