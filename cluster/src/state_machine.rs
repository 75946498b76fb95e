//! What the cluster needs from the application's state machine, and the openraft
//! state-machine storage that drives it.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError, RwLock};
use std::time::Instant;

use openraft::storage::RaftStateMachine;
use openraft::{EntryPayload, ErrorSubject, ErrorVerb, RaftSnapshotBuilder, StorageIOError};
use serde::{Deserialize, Serialize};

use crate::raft_types::{
    CommandBatch, CommandResponse, LogId, RaftStorageError, Snapshot, SnapshotMeta,
    StoredMembership, TypeConfig,
};
use crate::recent_requests::{DedupLimits, RecentRequest, RecentRequests};
use crate::snapshot_files::{SnapshotFiles, StreamedReader, write_streamed};
use crate::state_digest::StateDigest;
use crate::storage::{Keyspace, WriteBatch};

/// Keys under this prefix of the state keyspace belong to the cluster (applied log id,
/// membership, digest, recent request ids); the application's keys must not start with it.
pub const RESERVED_PREFIX: &[u8] = b"\x00raft/";
pub(crate) const LAST_APPLIED_KEY: &[u8] = b"\x00raft/last_applied";
pub(crate) const MEMBERSHIP_KEY: &[u8] = b"\x00raft/membership";
pub(crate) const DIGEST_KEY: &[u8] = b"\x00raft/digest";
const SNAPSHOT_KEY: &[u8] = b"snapshot";
/// The first byte of a snapshot's data that holds the recent request ids and the digest
/// beside the application's state; older snapshots are the application's state alone.
const SNAPSHOT_V2: u8 = 2;

/// Cold keys are the part of the application's state that lives only in the keyspace
/// (not in memory): they are copied into a snapshot from the keyspace itself, while
/// applies go on. The application promises three things of every key under its
/// [`StateMachine::COLD_PREFIX`]: its value starts with the big-endian `u64` log index of
/// the entry that wrote it ([`cold_value`]); it is written once; and it is deleted at
/// most once. A snapshot at index `I` then holds exactly the cold keys present at `I`:
/// those written later carry a larger index and are left out, and a batch that deletes
/// cold keys waits until no snapshot is reading them.
pub fn cold_value(index: u64, value: &[u8]) -> Vec<u8> {
    let mut bytes = Vec::with_capacity(8 + value.len());
    bytes.extend_from_slice(&index.to_be_bytes());
    bytes.extend_from_slice(value);
    bytes
}

/// The log index and the application's bytes of a cold value ([`cold_value`]).
pub fn split_cold_value(bytes: &[u8]) -> Option<(u64, &[u8])> {
    let (index, value) = bytes.split_at_checked(8)?;
    Some((u64::from_be_bytes(index.try_into().ok()?), value))
}

/// The application's replicated state. `apply` must be deterministic: it reads no clock,
/// draws no random number and does no I/O except the writes it puts in `writes`, which
/// the cluster commits atomically with the applied log id. It must not panic: a command
/// it cannot carry out is answered with a refusal that changes nothing.
pub trait StateMachine: Send + Sync + 'static {
    /// Where the application's cold keys live (see [`cold_value`]); empty for none.
    const COLD_PREFIX: &'static [u8] = b"";

    /// Called before each batch of entries is applied: the writes of the batch before are
    /// stored by then (in the keyspace, readable).
    fn begin_batch(&mut self) {}

    /// Applies one encoded command at log `index` and returns its encoded response.
    fn apply(&mut self, index: u64, command: &[u8], writes: &mut WriteBatch) -> Vec<u8>;

    /// The whole state, encoded.
    fn snapshot(&self) -> Result<Vec<u8>, String>;

    /// Replaces the whole state with a snapshot's. `writes` already deletes every key the
    /// application had; it must put the keys of the new state.
    fn restore(&mut self, snapshot: &[u8], writes: &mut WriteBatch) -> Result<(), String>;
}

/// A snapshot as it was kept in the snapshot keyspace before snapshot files.
#[derive(Debug, Serialize, Deserialize)]
struct StoredSnapshot {
    meta: SnapshotMeta,
    data: Vec<u8>,
}

/// What a snapshot holds beside the cold keys: everything a replica keeps in memory and
/// in its state keyspace at the snapshot's last log id. The shape of version 2, which
/// was the whole snapshot.
#[derive(Debug, Serialize, Deserialize)]
struct SnapshotHead {
    application: Vec<u8>,
    requests: Vec<RecentRequest>,
    request_clock_ms: u64,
    /// The digest of the state it holds, which the installer checks.
    digest: u128,
}

impl SnapshotHead {
    /// Reads a snapshot of an earlier version (one value, no cold keys).
    fn decode_whole(data: &[u8]) -> Result<Self, String> {
        match crate::codec::decode_tagged::<Self>(SNAPSHOT_V2, data) {
            Some(head) => head,
            // Older still: the application's state alone.
            None => Ok(Self {
                application: data.to_vec(),
                requests: Vec::new(),
                request_clock_ms: 0,
                digest: 0,
            }),
        }
    }
}

/// The cold pairs of a snapshot being installed.
enum ColdPairs {
    Streamed(StreamedReader),
    None,
}

impl ColdPairs {
    fn next(&mut self) -> Result<Option<crate::storage::KeyValue>, String> {
        match self {
            ColdPairs::Streamed(reader) => reader.next_pair(),
            ColdPairs::None => Ok(None),
        }
    }
}

/// Opens a snapshot file of any version: its head, and its cold pairs to read one by one.
fn read_snapshot(file: std::fs::File) -> Result<(SnapshotHead, ColdPairs), String> {
    match StreamedReader::open::<SnapshotHead>(file)? {
        Ok((head, reader)) => Ok((head, ColdPairs::Streamed(reader))),
        Err(mut file) => {
            let mut data = Vec::new();
            std::io::Read::read_to_end(&mut file, &mut data)
                .map_err(|error| format!("snapshot file: read: {error}"))?;
            Ok((SnapshotHead::decode_whole(&data)?, ColdPairs::None))
        }
    }
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
    files: Arc<SnapshotFiles>,
    /// Files being received (`begin_receiving_snapshot`), the latest last.
    receiving: Vec<std::path::PathBuf>,
    last_applied: Option<LogId>,
    membership: StoredMembership,
    recent: RecentRequests,
    digest: StateDigest,
    stats: Arc<ApplyStats>,
    /// Held for reading by a snapshot copying the cold keys, from the moment it is taken
    /// until the copy is done; a batch that deletes cold keys takes it for writing.
    cold_guard: Arc<tokio::sync::RwLock<()>>,
}

/// What the node's metrics are told of Raft's timings as they happen (the consensus
/// layer does not know the metrics library): each feeds a histogram.
pub trait RaftTimings: Send + Sync {
    /// One apply call: the entries it applied and how long it took.
    fn applied(&self, entries: u64, took: std::time::Duration);
    /// One entry written by this node's proposer: from its proposal until it was
    /// committed by a majority and applied here.
    fn committed(&self, commands: u64, took: std::time::Duration);
    /// A snapshot built here (`installed` false) or installed from the leader: its size
    /// and the time it took.
    fn snapshot(&self, installed: bool, bytes: u64, took: std::time::Duration);
}

/// The timings' receiver, set once the node's metrics exist.
#[derive(Default)]
struct TimingsSlot(std::sync::OnceLock<Arc<dyn RaftTimings>>);

impl std::fmt::Debug for TimingsSlot {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter.write_str(if self.0.get().is_some() {
            "TimingsSlot(set)"
        } else {
            "TimingsSlot(unset)"
        })
    }
}

/// Counters of the state machine's work, for metrics: cheap atomics, read at scrape time;
/// and the digest of the state at the last applied index.
#[derive(Debug, Default)]
pub struct ApplyStats {
    entries: AtomicU64,
    commands: AtomicU64,
    /// Size and build (or install) time of the latest snapshot, 0 before the first.
    last_snapshot_bytes: AtomicU64,
    last_snapshot_micros: AtomicU64,
    timings: TimingsSlot,
    repeated_requests: AtomicU64,
    apply_micros: AtomicU64,
    snapshots_built: AtomicU64,
    snapshots_installed: AtomicU64,
    digest: Mutex<DigestHistory>,
    /// Set when a write of applied state failed: the in-memory state is then ahead of
    /// what is stored, and must not be served.
    failed: std::sync::atomic::AtomicBool,
}

/// How many recent digests a node keeps, for tests and tools that compare replicas at
/// the same index (nodes apply in batches of their own, so their latest readings are
/// seldom at the same index while writes go on).
const DIGEST_HISTORY: usize = 4096;

#[derive(Debug, Default)]
struct DigestHistory {
    latest: DigestReading,
    recent: std::collections::VecDeque<DigestReading>,
}

/// The state's digest at an applied index, read together.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct DigestReading {
    pub index: Option<u64>,
    pub digest: StateDigest,
}

/// A reading of [`ApplyStats`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ApplyStatsReading {
    pub entries: u64,
    pub commands: u64,
    /// Commands answered from the recent request ids instead of applied again.
    pub repeated_requests: u64,
    /// Time spent applying, summed over every apply call.
    pub apply_micros: u64,
    pub snapshots_built: u64,
    pub snapshots_installed: u64,
    /// The latest snapshot's size in bytes and build or install time (0 before the first).
    pub last_snapshot_bytes: u64,
    pub last_snapshot_micros: u64,
    pub digest: DigestReading,
}

impl ApplyStats {
    pub fn read(&self) -> ApplyStatsReading {
        ApplyStatsReading {
            entries: self.entries.load(Ordering::Relaxed),
            commands: self.commands.load(Ordering::Relaxed),
            repeated_requests: self.repeated_requests.load(Ordering::Relaxed),
            apply_micros: self.apply_micros.load(Ordering::Relaxed),
            snapshots_built: self.snapshots_built.load(Ordering::Relaxed),
            snapshots_installed: self.snapshots_installed.load(Ordering::Relaxed),
            last_snapshot_bytes: self.last_snapshot_bytes.load(Ordering::Relaxed),
            last_snapshot_micros: self.last_snapshot_micros.load(Ordering::Relaxed),
            digest: self.digest(),
        }
    }

    /// Sends Raft's timings to `timings` from now on (a second call changes nothing).
    pub fn report_timings_to(&self, timings: Arc<dyn RaftTimings>) {
        let _ = self.timings.0.set(timings);
    }

    pub(crate) fn timings(&self) -> Option<&dyn RaftTimings> {
        self.timings.0.get().map(|timings| timings.as_ref())
    }

    fn snapshot_done(&self, installed: bool, bytes: u64, took: std::time::Duration) {
        let counter = if installed {
            &self.snapshots_installed
        } else {
            &self.snapshots_built
        };
        counter.fetch_add(1, Ordering::Relaxed);
        self.last_snapshot_bytes.store(bytes, Ordering::Relaxed);
        self.last_snapshot_micros
            .store(took.as_micros() as u64, Ordering::Relaxed);
        if let Some(timings) = self.timings() {
            timings.snapshot(installed, bytes, took);
        }
    }

    /// Whether a write of applied state failed (the node must stop serving).
    pub fn write_failed(&self) -> bool {
        self.failed.load(Ordering::SeqCst)
    }

    pub fn digest(&self) -> DigestReading {
        self.digest
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .latest
    }

    /// The digests at the last applied indexes, oldest first.
    pub fn recent_digests(&self) -> Vec<DigestReading> {
        let history = self.digest.lock().unwrap_or_else(PoisonError::into_inner);
        history.recent.iter().copied().collect()
    }

    fn publish_digest(&self, index: Option<u64>, digest: StateDigest) {
        let reading = DigestReading { index, digest };
        let mut history = self.digest.lock().unwrap_or_else(PoisonError::into_inner);
        history.latest = reading;
        if history.recent.len() == DIGEST_HISTORY {
            history.recent.pop_front();
        }
        history.recent.push_back(reading);
    }
}

impl<S: StateMachine> StateMachineStore<S> {
    /// Opens the store over a state that the application has already loaded from
    /// `keyspace`; the applied log id, membership, recent request ids and digest are read
    /// back from it.
    pub fn open(
        state: Arc<RwLock<S>>,
        keyspace: Arc<dyn Keyspace>,
        snapshots: Arc<dyn Keyspace>,
        snapshot_dir: std::path::PathBuf,
        dedup_limits: DedupLimits,
    ) -> Result<Self, RaftStorageError> {
        let read = |key: &[u8]| {
            keyspace
                .get(key)
                .map_err(|error| sm_error(ErrorVerb::Read, error))
        };
        let last_applied: Option<LogId> = match read(LAST_APPLIED_KEY)? {
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
        let digest = match read(DIGEST_KEY)?
            .as_deref()
            .and_then(StateDigest::from_bytes)
        {
            Some(digest) => digest,
            // A store written before digests existed: count it once.
            None => StateDigest::of_keyspace(keyspace.as_ref())
                .map_err(|error| sm_error(ErrorVerb::Read, error))?,
        };
        let recent = RecentRequests::load(keyspace.as_ref(), dedup_limits)
            .map_err(|error| sm_error(ErrorVerb::Read, error))?;
        let stats = Arc::new(ApplyStats::default());
        stats.publish_digest(last_applied.map(|log_id| log_id.index), digest);
        let files = Arc::new(
            SnapshotFiles::open(snapshot_dir).map_err(|error| sm_error(ErrorVerb::Read, error))?,
        );
        migrate_stored_snapshot(snapshots.as_ref(), &files)
            .map_err(|error| snapshot_error(ErrorVerb::Write, error))?;
        Ok(Self {
            state,
            keyspace,
            files,
            receiving: Vec::new(),
            last_applied,
            membership,
            recent,
            digest,
            stats,
            cold_guard: Arc::new(tokio::sync::RwLock::new(())),
        })
    }

    /// Whether the batch deletes a cold key (it must wait for snapshots copying them).
    fn deletes_cold(writes: &WriteBatch) -> bool {
        !S::COLD_PREFIX.is_empty()
            && writes.operations().iter().any(|operation| {
                matches!(operation, crate::storage::WriteOperation::Delete { key }
                    if key.starts_with(S::COLD_PREFIX))
            })
    }

    /// The counters this store updates.
    pub fn stats(&self) -> Arc<ApplyStats> {
        self.stats.clone()
    }

    /// Writes `writes` with the applied log id, membership and the digest moved over
    /// them, atomically, and publishes the digest.
    fn commit(&mut self, writes: WriteBatch) -> Result<(), RaftStorageError> {
        let mut writes = writes.last_per_key();
        debug_assert!(
            writes.operations().iter().all(|operation| match operation {
                crate::storage::WriteOperation::Put { key, .. }
                | crate::storage::WriteOperation::Delete { key } =>
                    !key.starts_with(RESERVED_PREFIX)
                        || key.starts_with(crate::recent_requests::REQUEST_PREFIX)
                        || key == crate::recent_requests::REQUEST_CLOCK_KEY
                        || key == LAST_APPLIED_KEY
                        || key == MEMBERSHIP_KEY
                        || key == DIGEST_KEY,
            }),
            "the state machine wrote a key under the cluster's reserved prefix"
        );
        let mut digest = self.digest;
        digest
            .apply_writes(&writes, self.keyspace.as_ref())
            .map_err(|error| sm_error(ErrorVerb::Write, error))?;
        let last_applied = serde_json::to_vec(&self.last_applied)
            .map_err(|error| sm_error(ErrorVerb::Write, error))?;
        let membership = serde_json::to_vec(&self.membership)
            .map_err(|error| sm_error(ErrorVerb::Write, error))?;
        writes.put(LAST_APPLIED_KEY.to_vec(), last_applied);
        writes.put(MEMBERSHIP_KEY.to_vec(), membership);
        writes.put(DIGEST_KEY.to_vec(), digest.to_bytes().to_vec());
        if let Err(error) = self.keyspace.write(writes) {
            self.stats.failed.store(true, Ordering::SeqCst);
            tracing::error!(%error, "applied state could not be stored: this node stops");
            return Err(sm_error(ErrorVerb::Write, error));
        }
        self.digest = digest;
        self.stats
            .publish_digest(self.last_applied.map(|log_id| log_id.index), digest);
        Ok(())
    }

    /// Applies one batch of commands at log `index`: a command whose request id is
    /// remembered gets its first response and is not applied again.
    fn apply_batch(
        &mut self,
        state: &mut S,
        index: u64,
        batch: &CommandBatch,
        writes: &mut WriteBatch,
    ) -> Result<Vec<CommandResponse>, RaftStorageError> {
        self.recent.advance(batch.proposed_at_ms, writes);
        let mut responses = Vec::with_capacity(batch.commands.len());
        for proposed in &batch.commands {
            if let Some(request_id) = &proposed.request_id
                && let Some(first) = self.recent.response(request_id)
            {
                self.stats.repeated_requests.fetch_add(1, Ordering::Relaxed);
                responses.push(first.to_vec());
                continue;
            }
            let response = state.apply(index, &proposed.command, writes);
            if let Some(request_id) = &proposed.request_id {
                self.recent
                    .record(request_id, index, &response, writes)
                    .map_err(|error| sm_error(ErrorVerb::Write, error))?;
            }
            responses.push(response);
        }
        Ok(responses)
    }

    /// The snapshot of the state as it is now, at `last_applied`: taken in one go, so
    /// no apply can slip in between the state, its log id and its membership.
    fn prepare_snapshot(&self) -> Result<PreparedSnapshot, String> {
        let application = {
            let state = self
                .state
                .read()
                .map_err(|_| "state lock poisoned".to_string())?;
            state.snapshot()?
        };
        Ok(PreparedSnapshot {
            head: SnapshotHead {
                application,
                requests: self.recent.entries(),
                request_clock_ms: self.recent.clock_ms(),
                digest: self.digest.0,
            },
            last_applied: self.last_applied,
            membership: self.membership.clone(),
        })
    }
}

/// Moves a snapshot kept in the snapshot keyspace (before snapshot files) to a file.
fn migrate_stored_snapshot(snapshots: &dyn Keyspace, files: &SnapshotFiles) -> Result<(), String> {
    let Some(bytes) = snapshots
        .get(SNAPSHOT_KEY)
        .map_err(|error| error.to_string())?
    else {
        return Ok(());
    };
    let stored: StoredSnapshot = crate::codec::decode(&bytes)?;
    if files.current()?.is_none() {
        let (path, mut file) = files.partial()?;
        std::io::Write::write_all(&mut file, &stored.data)
            .map_err(|error| format!("snapshot file: write: {error}"))?;
        files.make_current(&path, &stored.meta)?;
    }
    let mut batch = WriteBatch::new();
    batch.delete(SNAPSHOT_KEY.to_vec());
    snapshots.write(batch).map_err(|error| error.to_string())?;
    snapshots.flush().map_err(|error| error.to_string())
}

/// The in-memory part of a snapshot, copied between applies.
struct PreparedSnapshot {
    head: SnapshotHead,
    last_applied: Option<LogId>,
    membership: StoredMembership,
}

/// How many cold pairs are read from the keyspace at a time while a snapshot is written.
const COLD_CHUNK: usize = 4_096;

impl PreparedSnapshot {
    /// Writes the snapshot file: the head, then the cold keys present at the snapshot's
    /// index, read from `keyspace` in chunks while applies go on (see [`cold_value`]).
    /// Returns the file's path and meta.
    fn write(
        self,
        files: &SnapshotFiles,
        keyspace: &dyn Keyspace,
        cold_prefix: &[u8],
    ) -> Result<(std::path::PathBuf, SnapshotMeta, u64), String> {
        let index = self.last_applied.map_or(0, |log_id| log_id.index);
        let (path, file) = files.partial()?;
        let end = match crate::storage::prefix_successor(cold_prefix) {
            Some(successor) => std::ops::Bound::Excluded(successor),
            None => std::ops::Bound::Unbounded,
        };
        let mut from = std::ops::Bound::Included(cold_prefix.to_vec());
        let mut done = cold_prefix.is_empty();
        let bytes = write_streamed(file, &self.head, || {
            while !done {
                let chunk = keyspace
                    .range(from.clone(), end.clone(), COLD_CHUNK)
                    .map_err(|error| error.to_string())?;
                done = chunk.len() < COLD_CHUNK;
                let Some((last, _)) = chunk.last() else {
                    break;
                };
                from = std::ops::Bound::Excluded(last.clone());
                let kept: Vec<_> = chunk
                    .into_iter()
                    .filter(|(_, value)| {
                        split_cold_value(value).is_some_and(|(written_at, _)| written_at <= index)
                    })
                    .collect();
                if !kept.is_empty() {
                    return Ok(kept);
                }
            }
            Ok(Vec::new())
        });
        let bytes = match bytes {
            Ok(bytes) => bytes,
            Err(error) => {
                let _ = std::fs::remove_file(&path);
                return Err(error);
            }
        };
        let snapshot_id = match &self.last_applied {
            Some(log_id) => format!("{}-{}-{bytes}", log_id.leader_id, log_id.index),
            None => format!("empty-{bytes}"),
        };
        let meta = SnapshotMeta {
            last_log_id: self.last_applied,
            last_membership: self.membership,
            snapshot_id,
        };
        Ok((path, meta, bytes))
    }
}

/// Builds a snapshot from the copy taken when it was asked for: applies that go on
/// meanwhile do not reach it. The cold keys are copied by the builder, holding the cold
/// guard taken with the copy, so no delete reaches them either.
pub struct ExactSnapshotBuilder {
    prepared: Option<(
        Result<PreparedSnapshot, String>,
        tokio::sync::OwnedRwLockReadGuard<()>,
    )>,
    keyspace: Arc<dyn Keyspace>,
    cold_prefix: &'static [u8],
    files: Arc<SnapshotFiles>,
    stats: Arc<ApplyStats>,
    started: Instant,
}

impl RaftSnapshotBuilder<TypeConfig> for ExactSnapshotBuilder {
    async fn build_snapshot(&mut self) -> Result<Snapshot, RaftStorageError> {
        let (prepared, guard) = self
            .prepared
            .take()
            .ok_or_else(|| snapshot_error(ErrorVerb::Read, "snapshot already built"))?;
        let prepared = prepared.map_err(|error| snapshot_error(ErrorVerb::Read, error))?;
        let keyspace = self.keyspace.clone();
        let cold_prefix = self.cold_prefix;
        let files = self.files.clone();
        let (meta, bytes, file) = tokio::task::spawn_blocking(move || {
            let written = prepared.write(&files, keyspace.as_ref(), cold_prefix);
            drop(guard);
            let (path, meta, bytes) = written?;
            // Opened under the files' lock: an install beside this build cannot delete
            // it first; and if a later snapshot is current already, that one is sent.
            let (meta, file) = files.make_current_and_open(&path, &meta)?;
            Ok::<_, String>((meta, bytes, file))
        })
        .await
        .map_err(|error| snapshot_error(ErrorVerb::Write, error))?
        .map_err(|error| snapshot_error(ErrorVerb::Write, error))?;
        self.stats
            .snapshot_done(false, bytes, self.started.elapsed());
        tracing::info!(
            bytes,
            index = meta.last_log_id.map(|log_id| log_id.index),
            millis = self.started.elapsed().as_millis() as u64,
            "snapshot built and stored"
        );
        Ok(Snapshot {
            meta,
            snapshot: Box::new(tokio::fs::File::from_std(file)),
        })
    }
}

impl<S: StateMachine> RaftStateMachine<TypeConfig> for StateMachineStore<S> {
    type SnapshotBuilder = ExactSnapshotBuilder;

    async fn applied_state(
        &mut self,
    ) -> Result<(Option<LogId>, StoredMembership), RaftStorageError> {
        Ok((self.last_applied, self.membership.clone()))
    }

    async fn apply<I>(&mut self, entries: I) -> Result<Vec<Vec<CommandResponse>>, RaftStorageError>
    where
        I: IntoIterator<Item = crate::raft_types::Entry> + Send,
        I::IntoIter: Send,
    {
        let started = Instant::now();
        let mut writes = WriteBatch::new();
        let mut responses = Vec::new();
        let mut commands = 0u64;
        {
            let state_lock = self.state.clone();
            let mut state = state_lock
                .write()
                .map_err(|_| sm_error(ErrorVerb::Write, "state lock poisoned"))?;
            state.begin_batch();
            for entry in entries {
                self.last_applied = Some(entry.log_id);
                match entry.payload {
                    EntryPayload::Blank => responses.push(Vec::new()),
                    EntryPayload::Normal(batch) => {
                        commands += batch.commands.len() as u64;
                        let replies =
                            self.apply_batch(&mut state, entry.log_id.index, &batch, &mut writes)?;
                        responses.push(replies);
                    }
                    EntryPayload::Membership(membership) => {
                        self.membership = StoredMembership::new(Some(entry.log_id), membership);
                        responses.push(Vec::new());
                    }
                }
            }
        }
        if Self::deletes_cold(&writes) {
            // Wait for any snapshot still copying the cold keys this batch deletes.
            let cold_guard = self.cold_guard.clone();
            let _no_snapshot_reading = cold_guard.write().await;
            self.commit(writes)?;
        } else {
            self.commit(writes)?;
        }
        self.stats
            .entries
            .fetch_add(responses.len() as u64, Ordering::Relaxed);
        self.stats.commands.fetch_add(commands, Ordering::Relaxed);
        let took = started.elapsed();
        self.stats
            .apply_micros
            .fetch_add(took.as_micros() as u64, Ordering::Relaxed);
        if let Some(timings) = self.stats.timings() {
            timings.applied(responses.len() as u64, took);
        }
        Ok(responses)
    }

    async fn get_snapshot_builder(&mut self) -> Self::SnapshotBuilder {
        // Called between applies: the copy is the state at exactly `last_applied`.
        let started = Instant::now();
        let guard = self.cold_guard.clone().read_owned().await;
        ExactSnapshotBuilder {
            prepared: Some((self.prepare_snapshot(), guard)),
            keyspace: self.keyspace.clone(),
            cold_prefix: S::COLD_PREFIX,
            files: self.files.clone(),
            stats: self.stats.clone(),
            started,
        }
    }

    async fn begin_receiving_snapshot(&mut self) -> Result<Box<tokio::fs::File>, RaftStorageError> {
        let (path, file) = self
            .files
            .receiving()
            .map_err(|error| snapshot_error(ErrorVerb::Write, error))?;
        self.receiving.push(path);
        Ok(Box::new(tokio::fs::File::from_std(file)))
    }

    async fn install_snapshot(
        &mut self,
        meta: &SnapshotMeta,
        snapshot: Box<tokio::fs::File>,
    ) -> Result<(), RaftStorageError> {
        let started = Instant::now();
        let file = snapshot.into_std().await;
        let bytes = file.metadata().map(|metadata| metadata.len()).unwrap_or(0);
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
        let (head, mut cold) =
            read_snapshot(file).map_err(|error| snapshot_error(ErrorVerb::Read, error))?;
        // The whole file is read before the state in memory changes: a truncated or
        // corrupt one leaves it as it was.
        while let Some((key, value)) = cold
            .next()
            .map_err(|error| snapshot_error(ErrorVerb::Read, error))?
        {
            if !S::COLD_PREFIX.is_empty() && key.starts_with(S::COLD_PREFIX) {
                writes.put(key, value);
            }
        }
        {
            let mut state = self
                .state
                .write()
                .map_err(|_| sm_error(ErrorVerb::Write, "state lock poisoned"))?;
            state
                .restore(&head.application, &mut writes)
                .map_err(|error| snapshot_error(ErrorVerb::Write, error))?;
        }
        self.recent
            .restore(head.requests, head.request_clock_ms, &mut writes)
            .map_err(|error| snapshot_error(ErrorVerb::Write, error))?;
        self.last_applied = meta.last_log_id;
        self.membership = meta.last_membership.clone();
        {
            // Every key goes, cold ones included: no snapshot may be copying them.
            let cold_guard = self.cold_guard.clone();
            let _no_snapshot_reading = cold_guard.write().await;
            self.commit(writes)?;
        }
        if head.digest != 0 && head.digest != self.digest.0 {
            tracing::error!(
                snapshot = %meta.snapshot_id,
                expected = %StateDigest(head.digest).to_hex(),
                installed = %self.digest.to_hex(),
                "the installed snapshot's state differs from the state it was taken from"
            );
        }
        self.keyspace
            .flush()
            .map_err(|error| snapshot_error(ErrorVerb::Write, error))?;
        self.stats.snapshot_done(true, bytes, started.elapsed());
        // The file received is the snapshot, byte for byte: it becomes the current one.
        match self.receiving.pop() {
            Some(path) => {
                for abandoned in self.receiving.drain(..) {
                    let _ = std::fs::remove_file(abandoned);
                }
                self.files
                    .make_current(&path, meta)
                    .map_err(|error| snapshot_error(ErrorVerb::Write, error))?;
            }
            None => tracing::warn!(
                snapshot = %meta.snapshot_id,
                "an installed snapshot was not received into a file: it is not kept"
            ),
        }
        Ok(())
    }

    async fn get_current_snapshot(&mut self) -> Result<Option<Snapshot>, RaftStorageError> {
        // Read and opened together under the files' lock: a snapshot being built at the
        // same time must not delete the file between the two (the core stopped on that).
        let files = self.files.clone();
        let Some((meta, file)) = tokio::task::spawn_blocking(move || files.open_current())
            .await
            .map_err(|error| snapshot_error(ErrorVerb::Read, error))?
            .map_err(|error| snapshot_error(ErrorVerb::Read, error))?
        else {
            return Ok(None);
        };
        Ok(Some(Snapshot {
            meta,
            snapshot: Box::new(tokio::fs::File::from_std(file)),
        }))
    }
}

/// Helpers for the tests of snapshots written by earlier versions.
#[cfg(test)]
pub(crate) mod tests_support {
    use super::*;

    /// The version-2 snapshot data of the store's state now.
    pub(crate) fn head_v2<S: StateMachine>(store: &StateMachineStore<S>) -> Vec<u8> {
        let prepared = store.prepare_snapshot().unwrap();
        crate::codec::encode_tagged(SNAPSHOT_V2, &prepared.head).unwrap()
    }

    /// Keeps `data` in the snapshot keyspace as versions before snapshot files did.
    pub(crate) fn store_legacy(snapshots: &dyn Keyspace, index: u64, data: Vec<u8>) {
        let stored = StoredSnapshot {
            meta: SnapshotMeta {
                last_log_id: Some(openraft::LogId::new(
                    openraft::CommittedLeaderId::new(1, 1),
                    index,
                )),
                last_membership: Default::default(),
                snapshot_id: "legacy".to_string(),
            },
            data,
        };
        let mut batch = WriteBatch::new();
        batch.put(
            SNAPSHOT_KEY.to_vec(),
            crate::codec::encode(&stored).unwrap(),
        );
        snapshots.write(batch).unwrap();
    }
}
