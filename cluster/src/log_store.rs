//! openraft's log storage on a [`Keyspace`]: entries keyed by big-endian index (in the
//! binary form of [`crate::codec`]), and the vote, committed id and last purged id (JSON)
//! in a metadata keyspace. An append is one atomic
//! batch and one flush before openraft is told it is durable.
//!
//! The newest entries are also kept in memory ([`TailCache`]): replication to each
//! follower and the state machine read every entry right after it is appended, and sled
//! answers a read by rebuilding the whole leaf that holds the key (up to 16 entries, many
//! megabytes when entries carry batches of jobs), which made those reads the largest cost
//! of a batch submission.

use std::collections::BTreeMap;
use std::fmt::Debug;
use std::ops::{Bound, RangeBounds};
use std::sync::{Arc, Mutex};

use openraft::storage::{LogFlushed, LogState, RaftLogStorage};
use openraft::{ErrorSubject, ErrorVerb, RaftLogReader, StorageIOError};
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::raft_types::{Entry, LogId, NodeId, RaftStorageError, TypeConfig, Vote};
use crate::storage::{Keyspace, StorageError, WriteBatch};

const VOTE_KEY: &[u8] = b"vote";
const COMMITTED_KEY: &[u8] = b"committed";
const LAST_PURGED_KEY: &[u8] = b"last_purged";

#[derive(Debug, Clone)]
pub struct LogStore {
    entries: Arc<dyn Keyspace>,
    meta: Arc<dyn Keyspace>,
    tail: Arc<Mutex<TailCache>>,
}

/// The newest entries, decoded, up to a byte budget (by their encoded size).
#[derive(Debug, Default)]
struct TailCache {
    entries: BTreeMap<u64, (Entry, usize)>,
    bytes: usize,
}

/// What the tail cache may hold: a few seconds of entries at full load.
const TAIL_CACHE_BYTES: usize = 64 << 20;

impl TailCache {
    fn insert(&mut self, entry: Entry, size: usize) {
        let index = entry.log_id.index;
        if let Some((_, replaced)) = self.entries.insert(index, (entry, size)) {
            self.bytes -= replaced;
        }
        self.bytes += size;
        while self.bytes > TAIL_CACHE_BYTES {
            let Some((_, (_, evicted))) = self.entries.pop_first() else {
                break;
            };
            self.bytes -= evicted;
        }
    }

    /// Every entry in `[start, end)`, if the cache holds them all.
    fn get(&self, start: u64, end: u64) -> Option<Vec<Entry>> {
        if start >= end {
            return Some(Vec::new());
        }
        let first = *self.entries.keys().next()?;
        let last = *self.entries.keys().next_back()?;
        if start < first || end - 1 > last {
            return None;
        }
        // Indices are contiguous: appends continue the log and truncation drops a suffix.
        let found: Vec<Entry> = self
            .entries
            .range(start..end)
            .map(|(_, (entry, _))| entry.clone())
            .collect();
        (found.len() as u64 == end - start).then_some(found)
    }

    /// Drops the entries in `range`.
    fn remove(&mut self, range: impl RangeBounds<u64>) {
        let doomed: Vec<u64> = self.entries.range(range).map(|(index, _)| *index).collect();
        for index in doomed {
            if let Some((_, size)) = self.entries.remove(&index) {
                self.bytes -= size;
            }
        }
    }
}

/// `[start, end)` of a range of indices, if both ends are bounded.
fn half_open(range: &impl RangeBounds<u64>) -> Option<(u64, u64)> {
    let start = match range.start_bound() {
        Bound::Included(start) => *start,
        Bound::Excluded(start) => start.checked_add(1)?,
        Bound::Unbounded => return None,
    };
    let end = match range.end_bound() {
        Bound::Included(end) => end.checked_add(1)?,
        Bound::Excluded(end) => *end,
        Bound::Unbounded => return None,
    };
    Some((start, end))
}

fn index_key(index: u64) -> Vec<u8> {
    index.to_be_bytes().to_vec()
}

fn io_error(
    subject: ErrorSubject<NodeId>,
    verb: ErrorVerb,
    error: impl std::fmt::Display,
) -> RaftStorageError {
    let io = std::io::Error::other(error.to_string());
    RaftStorageError::IO {
        source: StorageIOError::new(subject, verb, openraft::AnyError::new(&io)),
    }
}

fn logs_error(verb: ErrorVerb, error: StorageError) -> RaftStorageError {
    io_error(ErrorSubject::Logs, verb, error)
}

fn decode<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, RaftStorageError> {
    serde_json::from_slice(bytes)
        .map_err(|error| io_error(ErrorSubject::Store, ErrorVerb::Read, error))
}

fn decode_entry(bytes: &[u8]) -> Result<Entry, RaftStorageError> {
    crate::codec::decode(bytes)
        .map_err(|error| logs_error(ErrorVerb::Read, StorageError::new("decode", error)))
}

fn encode_entry(entry: &Entry) -> Result<Vec<u8>, RaftStorageError> {
    crate::codec::encode(entry)
        .map_err(|error| logs_error(ErrorVerb::Write, StorageError::new("encode", error)))
}

fn encode<T: Serialize>(value: &T) -> Result<Vec<u8>, RaftStorageError> {
    serde_json::to_vec(value)
        .map_err(|error| io_error(ErrorSubject::Store, ErrorVerb::Write, error))
}

impl LogStore {
    pub fn new(entries: Arc<dyn Keyspace>, meta: Arc<dyn Keyspace>) -> Self {
        Self {
            entries,
            meta,
            tail: Arc::default(),
        }
    }

    fn tail(&self) -> std::sync::MutexGuard<'_, TailCache> {
        // The cache holds no invariant a panic elsewhere could break half-way.
        self.tail
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn read_meta<T: DeserializeOwned>(&self, key: &[u8]) -> Result<Option<T>, RaftStorageError> {
        let bytes = self
            .meta
            .get(key)
            .map_err(|error| io_error(ErrorSubject::Store, ErrorVerb::Read, error))?;
        bytes.as_deref().map(decode).transpose()
    }

    fn write_meta<T: Serialize>(
        &self,
        key: &[u8],
        value: &T,
        durable: bool,
    ) -> Result<(), RaftStorageError> {
        let mut batch = WriteBatch::new();
        batch.put(key.to_vec(), encode(value)?);
        self.meta
            .write(batch)
            .map_err(|error| io_error(ErrorSubject::Store, ErrorVerb::Write, error))?;
        if durable {
            self.meta
                .flush()
                .map_err(|error| io_error(ErrorSubject::Store, ErrorVerb::Write, error))?;
        }
        Ok(())
    }

    /// Deletes every entry whose index lies in `[from, to]`.
    fn delete_entries(&self, from: Bound<u64>, to: Bound<u64>) -> Result<(), RaftStorageError> {
        self.tail().remove((from, to));
        let start = from.map(index_key);
        let end = to.map(index_key);
        let doomed = self
            .entries
            .range(start, end, usize::MAX)
            .map_err(|error| logs_error(ErrorVerb::Read, error))?;
        let mut batch = WriteBatch::new();
        for (key, _) in doomed {
            batch.delete(key);
        }
        self.entries
            .write(batch)
            .map_err(|error| logs_error(ErrorVerb::Delete, error))?;
        self.entries
            .flush()
            .map_err(|error| logs_error(ErrorVerb::Delete, error))
    }
}

impl RaftLogReader<TypeConfig> for LogStore {
    async fn try_get_log_entries<RB: RangeBounds<u64> + Clone + Debug + Send>(
        &mut self,
        range: RB,
    ) -> Result<Vec<Entry>, RaftStorageError> {
        if let Some((start, end)) = half_open(&range)
            && let Some(found) = self.tail().get(start, end)
        {
            return Ok(found);
        }
        let start = range.start_bound().cloned().map(index_key);
        let end = range.end_bound().cloned().map(index_key);
        let found = self
            .entries
            .range(start, end, usize::MAX)
            .map_err(|error| logs_error(ErrorVerb::Read, error))?;
        found.iter().map(|(_, value)| decode_entry(value)).collect()
    }
}

impl RaftLogStorage<TypeConfig> for LogStore {
    type LogReader = Self;

    async fn get_log_state(&mut self) -> Result<LogState<TypeConfig>, RaftStorageError> {
        let last_purged_log_id: Option<LogId> = self.read_meta(LAST_PURGED_KEY)?;
        let last_entry = self
            .entries
            .last()
            .map_err(|error| logs_error(ErrorVerb::Read, error))?;
        let last_log_id = match last_entry {
            Some((_, value)) => Some(decode_entry(&value)?.log_id),
            None => last_purged_log_id,
        };
        Ok(LogState {
            last_purged_log_id,
            last_log_id,
        })
    }

    async fn get_log_reader(&mut self) -> Self::LogReader {
        self.clone()
    }

    async fn save_vote(&mut self, vote: &Vote) -> Result<(), RaftStorageError> {
        self.write_meta(VOTE_KEY, vote, true).map_err(|_| {
            io_error(
                ErrorSubject::Vote,
                ErrorVerb::Write,
                "cannot persist the vote",
            )
        })
    }

    async fn read_vote(&mut self) -> Result<Option<Vote>, RaftStorageError> {
        self.read_meta(VOTE_KEY)
    }

    async fn save_committed(&mut self, committed: Option<LogId>) -> Result<(), RaftStorageError> {
        // Not flushed: a lost committed id is recomputed by the leader, and openraft only
        // uses it to re-apply on restart what is already known committed.
        self.write_meta(COMMITTED_KEY, &committed, false)
    }

    async fn read_committed(&mut self) -> Result<Option<LogId>, RaftStorageError> {
        Ok(self.read_meta::<Option<LogId>>(COMMITTED_KEY)?.flatten())
    }

    async fn append<I>(
        &mut self,
        entries: I,
        callback: LogFlushed<TypeConfig>,
    ) -> Result<(), RaftStorageError>
    where
        I: IntoIterator<Item = Entry> + Send,
        I::IntoIter: Send,
    {
        let mut batch = WriteBatch::new();
        let mut appended = Vec::new();
        for entry in entries {
            let bytes = encode_entry(&entry)?;
            appended.push((entry, bytes.len()));
            batch.put(
                index_key(appended[appended.len() - 1].0.log_id.index),
                bytes,
            );
        }
        self.entries
            .write(batch)
            .map_err(|error| logs_error(ErrorVerb::Write, error))?;
        let flushed = self.entries.flush();
        if flushed.is_ok() {
            let mut tail = self.tail();
            for (entry, size) in appended {
                tail.insert(entry, size);
            }
        }
        let outcome = flushed
            .as_ref()
            .map(|_| ())
            .map_err(|error| std::io::Error::other(error.to_string()));
        callback.log_io_completed(outcome);
        flushed.map_err(|error| logs_error(ErrorVerb::Write, error))
    }

    async fn truncate(&mut self, log_id: LogId) -> Result<(), RaftStorageError> {
        self.delete_entries(Bound::Included(log_id.index), Bound::Unbounded)
    }

    async fn purge(&mut self, log_id: LogId) -> Result<(), RaftStorageError> {
        // The purged id is recorded first so that a crash mid-purge never leaves a hole
        // that get_log_state would not explain.
        self.write_meta(LAST_PURGED_KEY, &Some(log_id), true)?;
        self.delete_entries(Bound::Unbounded, Bound::Included(log_id.index))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::raft_types::CommandBatch;

    fn entry(index: u64) -> Entry {
        Entry {
            log_id: openraft::LogId::new(openraft::CommittedLeaderId::new(1, 1), index),
            payload: openraft::EntryPayload::Normal(CommandBatch {
                commands: vec![format!("command {index}").into_bytes()],
            }),
        }
    }

    fn indices(found: Option<Vec<Entry>>) -> Option<Vec<u64>> {
        found.map(|entries| entries.iter().map(|entry| entry.log_id.index).collect())
    }

    #[test]
    fn the_tail_cache_answers_only_ranges_it_holds_whole() {
        let mut tail = TailCache::default();
        for index in 5..10 {
            tail.insert(entry(index), 10);
        }
        assert_eq!(indices(tail.get(6, 9)), Some(vec![6, 7, 8]));
        assert_eq!(indices(tail.get(9, 9)), Some(vec![]));
        assert_eq!(tail.get(4, 7), None, "starts before the cache");
        assert_eq!(tail.get(8, 11), None, "ends after the cache");
        // A hole (a truncated middle) is never papered over.
        tail.remove(7..8);
        assert_eq!(tail.get(6, 9), None);
        assert_eq!(indices(tail.get(8, 10)), Some(vec![8, 9]));
        assert_eq!(tail.bytes, 40);
    }

    #[test]
    fn the_tail_cache_keeps_the_newest_entries_within_its_budget() {
        let mut tail = TailCache::default();
        let size = TAIL_CACHE_BYTES / 4;
        for index in 1..=6 {
            tail.insert(entry(index), size);
        }
        assert_eq!(
            tail.entries.keys().copied().collect::<Vec<_>>(),
            vec![3, 4, 5, 6]
        );
        assert_eq!(tail.bytes, TAIL_CACHE_BYTES);
        // Re-appending an index replaces it without counting it twice.
        tail.insert(entry(6), size);
        assert_eq!(tail.bytes, TAIL_CACHE_BYTES);
    }

    #[test]
    fn reads_after_truncation_and_purge_come_from_what_remains() {
        let storage = crate::sled_storage::SledStorage::temporary().unwrap();
        use crate::storage::Storage;
        let mut store = LogStore::new(
            storage.keyspace("log").unwrap(),
            storage.keyspace("meta").unwrap(),
        );
        let runtime = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        runtime.block_on(async {
            let mut batch = WriteBatch::new();
            for index in 1..=6 {
                let value = encode_entry(&entry(index)).unwrap();
                batch.put(index_key(index), value.clone());
                store.tail().insert(entry(index), value.len());
            }
            store.entries.write(batch).unwrap();
            store
                .truncate(openraft::LogId::new(
                    openraft::CommittedLeaderId::new(1, 1),
                    5,
                ))
                .await
                .unwrap();
            store
                .purge(openraft::LogId::new(
                    openraft::CommittedLeaderId::new(1, 1),
                    2,
                ))
                .await
                .unwrap();
            let found = store.try_get_log_entries(1..10).await.unwrap();
            assert_eq!(
                found
                    .iter()
                    .map(|entry| entry.log_id.index)
                    .collect::<Vec<_>>(),
                vec![3, 4]
            );
            assert_eq!(indices(store.tail().get(3, 5)), Some(vec![3, 4]));
        });
    }
}
