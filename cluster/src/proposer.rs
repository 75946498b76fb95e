//! Group commit in front of Raft. openraft 0.9 flushes one log entry per `client_write`
//! on the leader, so throughput would equal the disk's serial fsync rate. The proposer
//! keeps one proposal in flight and drains every command queued meanwhile into the next
//! entry, then answers each caller from that entry's results.

use std::sync::Arc;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use openraft::error::{ClientWriteError, RaftError};
use tokio::sync::{mpsc, oneshot};

use crate::error::ClusterError;
use crate::raft_types::{CommandBatch, CommandResponse, NodeId, ProposedCommand, Raft};
use crate::state_machine::ApplyStats;

/// The bytes of commands one entry gathers before it is closed (one command larger than
/// this still travels alone): an entry fits one `AppendEntries` slice.
const MAX_ENTRY_BYTES: usize = crate::network::MAX_APPEND_BYTES;

/// The largest command accepted: an entry must fit in one message to a follower.
pub const MAX_COMMAND_BYTES: usize = 32 * 1024 * 1024;

struct Proposal {
    command: ProposedCommand,
    reply: oneshot::Sender<Result<CommandResponse, ClusterError>>,
}

#[derive(Debug, Clone)]
pub struct Proposer {
    sender: mpsc::Sender<Proposal>,
}

impl Proposer {
    pub fn start(raft: Raft, max_commands_per_entry: usize, stats: Arc<ApplyStats>) -> Self {
        let (sender, receiver) = mpsc::channel(max_commands_per_entry.max(1) * 4);
        tokio::spawn(run(raft, receiver, max_commands_per_entry.max(1), stats));
        Self { sender }
    }

    /// Replicates one command and returns the state machine's response once it is
    /// committed and applied on this node.
    pub async fn propose(&self, command: ProposedCommand) -> Result<CommandResponse, ClusterError> {
        if command.command.len() > MAX_COMMAND_BYTES {
            return Err(ClusterError::Invalid(format!(
                "a command of {} bytes is larger than the {MAX_COMMAND_BYTES} bytes one entry may carry",
                command.command.len()
            )));
        }
        let (reply, answer) = oneshot::channel();
        self.sender
            .send(Proposal { command, reply })
            .await
            .map_err(|_| ClusterError::Fatal("the proposer has stopped".to_string()))?;
        answer.await.map_err(|_| ClusterError::OutcomeUnknown {
            request_id: None,
            detail: "the proposer stopped with the command in flight".to_string(),
        })?
    }
}

async fn run(
    raft: Raft,
    mut receiver: mpsc::Receiver<Proposal>,
    max_commands_per_entry: usize,
    stats: Arc<ApplyStats>,
) {
    // A proposal that would have made the last entry too large opens the next one.
    let mut carried: Option<Proposal> = None;
    loop {
        let first = match carried.take() {
            Some(proposal) => proposal,
            None => match receiver.recv().await {
                Some(proposal) => proposal,
                None => break,
            },
        };
        let mut entry_bytes = first.command.command.len();
        let mut proposals = vec![first];
        while proposals.len() < max_commands_per_entry && entry_bytes < MAX_ENTRY_BYTES {
            match receiver.try_recv() {
                Ok(next) if entry_bytes + next.command.command.len() > MAX_ENTRY_BYTES => {
                    carried = Some(next);
                    break;
                }
                Ok(next) => {
                    entry_bytes += next.command.command.len();
                    proposals.push(next);
                }
                Err(_) => break,
            }
        }
        let (commands, replies): (Vec<ProposedCommand>, Vec<_>) = proposals
            .into_iter()
            .map(|proposal| (proposal.command, proposal.reply))
            .unzip();
        let request_ids: Vec<Option<String>> = commands
            .iter()
            .map(|command| command.request_id.clone())
            .collect();
        let batch = CommandBatch {
            proposed_at_ms: wall_clock_ms(),
            commands,
        };
        let proposed = Instant::now();
        let outcome = raft.client_write(batch).await;
        match outcome {
            Ok(written) => {
                if let Some(timings) = stats.timings() {
                    timings.committed(written.data.len() as u64, proposed.elapsed());
                }
                debug_assert_eq!(
                    written.data.len(),
                    replies.len(),
                    "one response per command"
                );
                for (reply, response) in replies.into_iter().zip(written.data) {
                    let _ = reply.send(Ok(response));
                }
            }
            Err(error) => {
                let error = client_write_error(error);
                for (reply, request_id) in replies.into_iter().zip(request_ids) {
                    let error = match &error {
                        ClusterError::OutcomeUnknown { detail, .. } => {
                            ClusterError::OutcomeUnknown {
                                request_id,
                                detail: detail.clone(),
                            }
                        }
                        certain => certain.clone(),
                    };
                    let _ = reply.send(Err(error));
                }
            }
        }
    }
}

fn wall_clock_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|elapsed| elapsed.as_millis() as u64)
        .unwrap_or(0)
}

fn client_write_error(
    error: RaftError<NodeId, ClientWriteError<NodeId, openraft::BasicNode>>,
) -> ClusterError {
    match error {
        RaftError::APIError(ClientWriteError::ForwardToLeader(forward)) => {
            ClusterError::NotLeader {
                leader_id: forward.leader_id,
                leader_addr: forward.leader_node.map(|node| node.addr),
            }
        }
        RaftError::APIError(ClientWriteError::ChangeMembershipError(error)) => {
            ClusterError::Refused(error.to_string())
        }
        // openraft answers ForwardToLeader only for an entry it did not append or has
        // truncated; a Raft that stopped may have replicated the entry before it did.
        RaftError::Fatal(fatal) => ClusterError::OutcomeUnknown {
            request_id: None,
            detail: format!("raft stopped: {fatal}"),
        },
    }
}
