//! What the cluster needs from the application's state machine, and the openraft
//! state-machine storage that drives it.

use std::io::Cursor;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Instant;

use openraft::storage::RaftStateMachine;
use openraft::{EntryPayload, ErrorSubject, ErrorVerb, RaftSnapshotBuilder, StorageIOError};
use serde::{Deserialize, Serialize};

use crate::raft_types::{
    LogId, RaftStorageError, Snapshot, SnapshotMeta, StoredMembership, TypeConfig,
};
use crate::storage::{Keyspace, WriteBatch};

/// Keys under this prefix of the state keyspace belong to the cluster (applied log id,
/// membership); the application's keys must not start with it.
pub const RESERVED_PREFIX: &[u8] = b"\x00raft/";
const LAST_APPLIED_KEY: &[u8] = b"\x00raft/last_applied";
const MEMBERSHIP_KEY: &[u8] = b"\x00raft/membership";
const SNAPSHOT_KEY: &[u8] = b"snapshot";

/// The application's replicated state. `apply` must be deterministic: it reads no clock,
/// draws no random number and does no I/O except the writes it puts in `writes`, which
/// the cluster commits atomically with the applied log id.
pub trait StateMachine: Send + Sync + 'static {
    /// Applies one encoded command at log `index` and returns the JSON response.
    fn apply(&mut self, index: u64, command: &[u8], writes: &mut WriteBatch) -> String;

    /// The whole state, encoded.
    fn snapshot(&self) -> Result<Vec<u8>, String>;

    /// Replaces the whole state with a snapshot's. `writes` already deletes every key the
    /// application had; it must put the keys of the new state.
    fn restore(&mut self, snapshot: &[u8], writes: &mut WriteBatch) -> Result<(), String>;
}

/// A snapshot as it is kept in storage and sent to followers.
#[derive(Debug, Serialize, Deserialize)]
struct StoredSnapshot {
    meta: SnapshotMeta,
    data: Vec<u8>,
}

fn sm_error(verb: ErrorVerb, error: impl std::fmt::Display) -> RaftStorageError {
    let io = std::io::Error::other(error.to_string());
    RaftStorageError::IO {
        source: StorageIOError::new(
            ErrorSubject::StateMachine,
            verb,
            openraft::AnyError::new(&io),
        ),
    }
}

fn snapshot_error(verb: ErrorVerb, error: impl std::fmt::Display) -> RaftStorageError {
    let io = std::io::Error::other(error.to_string());
    RaftStorageError::IO {
        source: StorageIOError::new(
            ErrorSubject::Snapshot(None),
            verb,
            openraft::AnyError::new(&io),
        ),
    }
}

pub struct StateMachineStore<S: StateMachine> {
    state: Arc<RwLock<S>>,
    keyspace: Arc<dyn Keyspace>,
    snapshots: Arc<dyn Keyspace>,
    last_applied: Option<LogId>,
    membership: StoredMembership,
    stats: Arc<ApplyStats>,
}

/// Counters of the state machine's work, for metrics: cheap atomics, read at scrape time.
#[derive(Debug, Default)]
pub struct ApplyStats {
    entries: AtomicU64,
    commands: AtomicU64,
    apply_micros: AtomicU64,
    snapshots_built: AtomicU64,
    snapshots_installed: AtomicU64,
}

/// A reading of [`ApplyStats`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ApplyStatsReading {
    pub entries: u64,
    pub commands: u64,
    /// Time spent applying, summed over every apply call.
    pub apply_micros: u64,
    pub snapshots_built: u64,
    pub snapshots_installed: u64,
}

impl ApplyStats {
    pub fn read(&self) -> ApplyStatsReading {
        ApplyStatsReading {
            entries: self.entries.load(Ordering::Relaxed),
            commands: self.commands.load(Ordering::Relaxed),
            apply_micros: self.apply_micros.load(Ordering::Relaxed),
            snapshots_built: self.snapshots_built.load(Ordering::Relaxed),
            snapshots_installed: self.snapshots_installed.load(Ordering::Relaxed),
        }
    }
}

impl<S: StateMachine> StateMachineStore<S> {
    /// Opens the store over a state that the application has already loaded from
    /// `keyspace`; the applied log id and membership are read back from it.
    pub fn open(
        state: Arc<RwLock<S>>,
        keyspace: Arc<dyn Keyspace>,
        snapshots: Arc<dyn Keyspace>,
    ) -> Result<Self, RaftStorageError> {
        let read = |key: &[u8]| {
            keyspace
                .get(key)
                .map_err(|error| sm_error(ErrorVerb::Read, error))
        };
        let last_applied = match read(LAST_APPLIED_KEY)? {
            Some(bytes) => {
                serde_json::from_slice(&bytes).map_err(|error| sm_error(ErrorVerb::Read, error))?
            }
            None => None,
        };
        let membership = match read(MEMBERSHIP_KEY)? {
            Some(bytes) => {
                serde_json::from_slice(&bytes).map_err(|error| sm_error(ErrorVerb::Read, error))?
            }
            None => StoredMembership::default(),
        };
        Ok(Self {
            state,
            keyspace,
            snapshots,
            last_applied,
            membership,
            stats: Arc::new(ApplyStats::default()),
        })
    }

    /// The counters this store updates.
    pub fn stats(&self) -> Arc<ApplyStats> {
        self.stats.clone()
    }

    fn put_progress(&self, writes: &mut WriteBatch) -> Result<(), RaftStorageError> {
        let last_applied = serde_json::to_vec(&self.last_applied)
            .map_err(|error| sm_error(ErrorVerb::Write, error))?;
        let membership = serde_json::to_vec(&self.membership)
            .map_err(|error| sm_error(ErrorVerb::Write, error))?;
        writes.put(LAST_APPLIED_KEY.to_vec(), last_applied);
        writes.put(MEMBERSHIP_KEY.to_vec(), membership);
        Ok(())
    }

    fn save_snapshot(&self, stored: &StoredSnapshot) -> Result<(), RaftStorageError> {
        // Binary: in JSON the data's bytes would be an array of numbers, several times
        // larger and slower to write than the state itself.
        let bytes = crate::codec::encode(stored)
            .map_err(|error| snapshot_error(ErrorVerb::Write, error))?;
        let mut batch = WriteBatch::new();
        batch.put(SNAPSHOT_KEY.to_vec(), bytes);
        self.snapshots
            .write(batch)
            .map_err(|error| snapshot_error(ErrorVerb::Write, error))?;
        self.snapshots
            .flush()
            .map_err(|error| snapshot_error(ErrorVerb::Write, error))
    }
}

impl<S: StateMachine> RaftSnapshotBuilder<TypeConfig> for StateMachineStore<S> {
    async fn build_snapshot(&mut self) -> Result<Snapshot, RaftStorageError> {
        let started = Instant::now();
        let data = {
            let state = self
                .state
                .read()
                .map_err(|_| snapshot_error(ErrorVerb::Read, "state lock poisoned"))?;
            state
                .snapshot()
                .map_err(|error| snapshot_error(ErrorVerb::Read, error))?
        };
        let snapshot_id = match &self.last_applied {
            Some(log_id) => format!("{}-{}-{}", log_id.leader_id, log_id.index, data.len()),
            None => format!("empty-{}", data.len()),
        };
        let meta = SnapshotMeta {
            last_log_id: self.last_applied,
            last_membership: self.membership.clone(),
            snapshot_id,
        };
        let stored = StoredSnapshot {
            meta: meta.clone(),
            data,
        };
        self.save_snapshot(&stored)?;
        self.stats.snapshots_built.fetch_add(1, Ordering::Relaxed);
        tracing::info!(
            bytes = stored.data.len(),
            millis = started.elapsed().as_millis() as u64,
            "snapshot built and stored"
        );
        Ok(Snapshot {
            meta,
            snapshot: Box::new(Cursor::new(stored.data)),
        })
    }
}

impl<S: StateMachine> RaftStateMachine<TypeConfig> for StateMachineStore<S> {
    type SnapshotBuilder = Self;

    async fn applied_state(
        &mut self,
    ) -> Result<(Option<LogId>, StoredMembership), RaftStorageError> {
        Ok((self.last_applied, self.membership.clone()))
    }

    async fn apply<I>(&mut self, entries: I) -> Result<Vec<Vec<String>>, RaftStorageError>
    where
        I: IntoIterator<Item = crate::raft_types::Entry> + Send,
        I::IntoIter: Send,
    {
        let started = Instant::now();
        let mut writes = WriteBatch::new();
        let mut responses = Vec::new();
        let mut commands = 0u64;
        {
            let mut state = self
                .state
                .write()
                .map_err(|_| sm_error(ErrorVerb::Write, "state lock poisoned"))?;
            for entry in entries {
                self.last_applied = Some(entry.log_id);
                match entry.payload {
                    EntryPayload::Blank => responses.push(Vec::new()),
                    EntryPayload::Normal(batch) => {
                        commands += batch.commands.len() as u64;
                        let replies = batch
                            .commands
                            .iter()
                            .map(|command| state.apply(entry.log_id.index, command, &mut writes))
                            .collect();
                        responses.push(replies);
                    }
                    EntryPayload::Membership(membership) => {
                        self.membership = StoredMembership::new(Some(entry.log_id), membership);
                        responses.push(Vec::new());
                    }
                }
            }
        }
        debug_assert!(
            writes.operations().iter().all(|operation| match operation {
                crate::storage::WriteOperation::Put { key, .. }
                | crate::storage::WriteOperation::Delete { key } =>
                    !key.starts_with(RESERVED_PREFIX),
            }),
            "the state machine wrote a key under the cluster's reserved prefix"
        );
        self.put_progress(&mut writes)?;
        self.keyspace
            .write(writes)
            .map_err(|error| sm_error(ErrorVerb::Write, error))?;
        self.stats
            .entries
            .fetch_add(responses.len() as u64, Ordering::Relaxed);
        self.stats.commands.fetch_add(commands, Ordering::Relaxed);
        self.stats
            .apply_micros
            .fetch_add(started.elapsed().as_micros() as u64, Ordering::Relaxed);
        Ok(responses)
    }

    async fn get_snapshot_builder(&mut self) -> Self::SnapshotBuilder {
        Self {
            state: self.state.clone(),
            keyspace: self.keyspace.clone(),
            snapshots: self.snapshots.clone(),
            last_applied: self.last_applied,
            membership: self.membership.clone(),
            stats: self.stats.clone(),
        }
    }

    async fn begin_receiving_snapshot(&mut self) -> Result<Box<Cursor<Vec<u8>>>, RaftStorageError> {
        Ok(Box::new(Cursor::new(Vec::new())))
    }

    async fn install_snapshot(
        &mut self,
        meta: &SnapshotMeta,
        snapshot: Box<Cursor<Vec<u8>>>,
    ) -> Result<(), RaftStorageError> {
        let data = snapshot.into_inner();
        let mut writes = WriteBatch::new();
        let existing = self
            .keyspace
            .range(
                std::ops::Bound::Unbounded,
                std::ops::Bound::Unbounded,
                usize::MAX,
            )
            .map_err(|error| snapshot_error(ErrorVerb::Read, error))?;
        for (key, _) in existing {
            writes.delete(key);
        }
        {
            let mut state = self
                .state
                .write()
                .map_err(|_| sm_error(ErrorVerb::Write, "state lock poisoned"))?;
            state
                .restore(&data, &mut writes)
                .map_err(|error| snapshot_error(ErrorVerb::Write, error))?;
        }
        self.last_applied = meta.last_log_id;
        self.membership = meta.last_membership.clone();
        self.put_progress(&mut writes)?;
        self.keyspace
            .write(writes)
            .map_err(|error| snapshot_error(ErrorVerb::Write, error))?;
        self.keyspace
            .flush()
            .map_err(|error| snapshot_error(ErrorVerb::Write, error))?;
        self.stats
            .snapshots_installed
            .fetch_add(1, Ordering::Relaxed);
        self.save_snapshot(&StoredSnapshot {
            meta: meta.clone(),
            data,
        })
    }

    async fn get_current_snapshot(&mut self) -> Result<Option<Snapshot>, RaftStorageError> {
        let bytes = self
            .snapshots
            .get(SNAPSHOT_KEY)
            .map_err(|error| snapshot_error(ErrorVerb::Read, error))?;
        let Some(bytes) = bytes else {
            return Ok(None);
        };
        let stored: StoredSnapshot =
            crate::codec::decode(&bytes).map_err(|error| snapshot_error(ErrorVerb::Read, error))?;
        Ok(Some(Snapshot {
            meta: stored.meta,
            snapshot: Box::new(Cursor::new(stored.data)),
        }))
    }
}
