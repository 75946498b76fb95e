//! Hodei's consensus layer: openraft 0.9 with its log, vote and state machine in a
//! [`Storage`] (sled), a gRPC transport, and group commit. It replicates an opaque state
//! machine that the node supplies through [`StateMachine`] and knows nothing of tenants
//! or jobs.

// openraft's storage traits return its `StorageError` (about 200 bytes) by value; our
// helpers return what those traits need, so boxing it would only add conversions.
#![allow(clippy::result_large_err)]

pub mod codec;
mod error;
mod identity;
mod log_store;
mod network;
mod proposer;
mod raft_node;
mod raft_service;
mod raft_types;
mod recent_requests;
mod sled_storage;
mod snapshot_files;
mod state_digest;
mod state_machine;
pub mod storage;
pub mod storage_conformance;

pub use error::ClusterError;
pub use log_store::LogStore;
pub use network::{
    AdminRequest, GrpcNetworkFactory, NODE_ID_METADATA, NodeInfo, PeerClients, PeerCredentials,
    PeerTls, SECRET_METADATA,
};
pub use raft_node::{
    ClusterMemberStatus, ClusterSettings, ClusterStatus, CoreStop, RaftNode, STATE_KEYSPACE,
};
pub use raft_service::RaftGrpcService;
pub use raft_types::{CommandBatch, CommandResponse, NodeId, ProposedCommand, TypeConfig};
pub use recent_requests::{DedupLimits, RecentRequest, RecentRequests};
pub use sled_storage::SledStorage;
pub use state_digest::StateDigest;
pub use state_machine::{
    ApplyStats, ApplyStatsReading, DigestReading, ExactSnapshotBuilder, RESERVED_PREFIX,
    RaftTimings, StateMachine, StateMachineStore, cold_value, split_cold_value,
};
pub use storage::{KeyValue, Keyspace, Storage, StorageError, WriteBatch};

#[cfg(test)]
mod raft_store_tests;
#[cfg(test)]
mod snapshot_consistency_tests;
