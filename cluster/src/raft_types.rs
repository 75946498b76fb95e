//! The openraft type configuration. The cluster replicates opaque commands: each Raft
//! entry carries a batch of encoded commands (group commit, bytes the cluster does not
//! read), each with the request id that makes a repeat of it harmless, and yields one
//! encoded response per command; only the state machine the node supplies understands
//! them.

use std::io::Cursor;

use serde::{Deserialize, Serialize};

/// One proposed command. A command with a request id is applied at most once: a repeat
/// of the id within the dedup window is answered with the first response (see
/// [`crate::RecentRequests`]).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProposedCommand {
    pub request_id: Option<String>,
    pub command: Vec<u8>,
}

/// The commands of one Raft entry, applied in order.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct CommandBatch {
    /// The proposing leader's wall clock (ms since the epoch): the only clock apply
    /// sees, used to age out the recent request ids deterministically.
    pub proposed_at_ms: u64,
    pub commands: Vec<ProposedCommand>,
}

/// The state machine's response to one command, in the application's own encoding.
pub type CommandResponse = Vec<u8>;

/// The entry format before request ids (version 1 of the log): still decoded, so a
/// node keeps the log it wrote before the upgrade.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct LegacyCommandBatch {
    pub commands: Vec<Vec<u8>>,
}

openraft::declare_raft_types!(
    pub LegacyTypeConfig:
        D = LegacyCommandBatch,
        R = Vec<String>,
        NodeId = u64,
        Node = openraft::BasicNode,
        Entry = openraft::Entry<LegacyTypeConfig>,
        SnapshotData = Cursor<Vec<u8>>,
);

/// Reads an entry of the version-1 log as today's: its commands carry no request id.
pub fn upgrade_legacy_entry(legacy: openraft::Entry<LegacyTypeConfig>) -> Entry {
    let payload = match legacy.payload {
        openraft::EntryPayload::Blank => openraft::EntryPayload::Blank,
        openraft::EntryPayload::Membership(membership) => {
            openraft::EntryPayload::Membership(membership)
        }
        openraft::EntryPayload::Normal(batch) => openraft::EntryPayload::Normal(CommandBatch {
            proposed_at_ms: 0,
            commands: batch
                .commands
                .into_iter()
                .map(|command| ProposedCommand {
                    request_id: None,
                    command,
                })
                .collect(),
        }),
    };
    Entry {
        log_id: legacy.log_id,
        payload,
    }
}

openraft::declare_raft_types!(
    pub TypeConfig:
        D = CommandBatch,
        R = Vec<CommandResponse>,
        NodeId = u64,
        Node = openraft::BasicNode,
        Entry = openraft::Entry<TypeConfig>,
        // A file in the storage's snapshot folder (`snapshot_files.rs`).
        SnapshotData = tokio::fs::File,
);

pub type NodeId = u64;
pub type Raft = openraft::Raft<TypeConfig>;
pub type RaftStorageError = openraft::StorageError<NodeId>;
pub type LogId = openraft::LogId<NodeId>;
pub type Entry = openraft::Entry<TypeConfig>;
pub type Vote = openraft::Vote<NodeId>;
pub type StoredMembership = openraft::StoredMembership<NodeId, openraft::BasicNode>;
pub type SnapshotMeta = openraft::SnapshotMeta<NodeId, openraft::BasicNode>;
pub type Snapshot = openraft::Snapshot<TypeConfig>;
