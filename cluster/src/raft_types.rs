//! The openraft type configuration. The cluster replicates opaque commands: each Raft
//! entry carries a batch of encoded commands (group commit, bytes the cluster does not
//! read) and yields one JSON response per command; only the state machine the node
//! supplies understands them.

use std::io::Cursor;

use serde::{Deserialize, Serialize};

/// The commands of one Raft entry, applied in order.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct CommandBatch {
    pub commands: Vec<Vec<u8>>,
}

openraft::declare_raft_types!(
    pub TypeConfig:
        D = CommandBatch,
        R = Vec<String>,
        NodeId = u64,
        Node = openraft::BasicNode,
        Entry = openraft::Entry<TypeConfig>,
        SnapshotData = Cursor<Vec<u8>>,
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
