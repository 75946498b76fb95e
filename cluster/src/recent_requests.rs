//! The replicated table of recent request ids and their first responses, which makes a
//! command with a request id apply at most once: a retry after a lost reply (by the
//! node, or by a client that was told `outcome_unknown`) is answered with what the first
//! attempt got. The table is bounded in age, entries and bytes; its clock is the
//! proposing leader's, carried in each entry, so every replica prunes the same ids at the
//! same index.

use std::collections::{BTreeSet, HashMap};

use serde::{Deserialize, Serialize};

use crate::storage::{Keyspace, StorageError, WriteBatch};

/// Stored under this prefix of the state keyspace (the cluster's reserved prefix).
pub(crate) const REQUEST_PREFIX: &[u8] = b"\x00raft/request/";
pub(crate) const REQUEST_CLOCK_KEY: &[u8] = b"\x00raft/request_clock";

/// How long and how many request ids are remembered. A retry later than this is applied
/// again, so clients retry within the window (minutes; they retry within seconds).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DedupLimits {
    pub window_ms: u64,
    pub max_entries: usize,
    pub max_bytes: usize,
}

impl Default for DedupLimits {
    fn default() -> Self {
        Self {
            window_ms: 10 * 60 * 1000,
            max_entries: 100_000,
            max_bytes: 64 * 1024 * 1024,
        }
    }
}

/// One remembered request.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RecentRequest {
    pub request_id: String,
    /// The table's clock when it was first applied.
    pub at_ms: u64,
    /// The log index of the entry that applied it.
    pub index: u64,
    pub response: Vec<u8>,
}

impl RecentRequest {
    fn bytes(&self) -> usize {
        self.request_id.len() + self.response.len() + 32
    }
}

#[derive(Debug, Default)]
pub struct RecentRequests {
    by_id: HashMap<String, RecentRequest>,
    /// Oldest first: (at_ms, index, id), the same order on every replica.
    by_age: BTreeSet<(u64, u64, String)>,
    clock_ms: u64,
    bytes: usize,
    limits: DedupLimits,
}

fn request_key(request_id: &str) -> Vec<u8> {
    let mut key = REQUEST_PREFIX.to_vec();
    key.extend_from_slice(request_id.as_bytes());
    key
}

impl RecentRequests {
    pub fn new(limits: DedupLimits) -> Self {
        Self {
            limits,
            ..Self::default()
        }
    }

    /// Reads the table back from the state keyspace.
    pub fn load(keyspace: &dyn Keyspace, limits: DedupLimits) -> Result<Self, StorageError> {
        let mut table = Self::new(limits);
        for (_, value) in keyspace.scan_prefix(REQUEST_PREFIX)? {
            let request: RecentRequest = crate::codec::decode(&value)
                .map_err(|error| StorageError::new("decode recent request", error))?;
            table.insert(request);
        }
        if let Some(bytes) = keyspace.get(REQUEST_CLOCK_KEY)? {
            let clock: [u8; 8] = bytes
                .as_slice()
                .try_into()
                .map_err(|_| StorageError::new("decode request clock", "not 8 bytes"))?;
            table.clock_ms = u64::from_le_bytes(clock);
        }
        Ok(table)
    }

    fn insert(&mut self, request: RecentRequest) {
        self.bytes += request.bytes();
        self.by_age
            .insert((request.at_ms, request.index, request.request_id.clone()));
        if let Some(replaced) = self.by_id.insert(request.request_id.clone(), request) {
            self.bytes -= replaced.bytes();
            self.by_age
                .remove(&(replaced.at_ms, replaced.index, replaced.request_id));
        }
    }

    /// The first response to `request_id`, if it is remembered.
    pub fn response(&self, request_id: &str) -> Option<&[u8]> {
        self.by_id
            .get(request_id)
            .map(|request| request.response.as_slice())
    }

    pub fn len(&self) -> usize {
        self.by_id.len()
    }

    pub fn is_empty(&self) -> bool {
        self.by_id.is_empty()
    }

    pub fn clock_ms(&self) -> u64 {
        self.clock_ms
    }

    /// Moves the clock to a new entry's proposal time (never backwards: leaders' clocks
    /// differ) and forgets what fell out of the window.
    pub fn advance(&mut self, proposed_at_ms: u64, writes: &mut WriteBatch) {
        if proposed_at_ms > self.clock_ms {
            self.clock_ms = proposed_at_ms;
            writes.put(
                REQUEST_CLOCK_KEY.to_vec(),
                self.clock_ms.to_le_bytes().to_vec(),
            );
        }
        self.prune(writes);
    }

    /// Remembers the first response to `request_id`, applied at log `index`.
    pub fn record(
        &mut self,
        request_id: &str,
        index: u64,
        response: &[u8],
        writes: &mut WriteBatch,
    ) -> Result<(), String> {
        let request = RecentRequest {
            request_id: request_id.to_string(),
            at_ms: self.clock_ms,
            index,
            response: response.to_vec(),
        };
        writes.put(request_key(request_id), crate::codec::encode(&request)?);
        self.insert(request);
        self.prune(writes);
        Ok(())
    }

    fn prune(&mut self, writes: &mut WriteBatch) {
        while let Some((at_ms, _, _)) = self.by_age.first() {
            let expired = at_ms.saturating_add(self.limits.window_ms) < self.clock_ms;
            let over =
                self.by_id.len() > self.limits.max_entries || self.bytes > self.limits.max_bytes;
            if !expired && !over {
                break;
            }
            let Some((_, _, request_id)) = self.by_age.pop_first() else {
                break;
            };
            if let Some(request) = self.by_id.remove(&request_id) {
                self.bytes -= request.bytes();
            }
            writes.delete(request_key(&request_id));
        }
    }

    /// Every remembered request, oldest first (for a snapshot).
    pub fn entries(&self) -> Vec<RecentRequest> {
        self.by_age
            .iter()
            .filter_map(|(_, _, request_id)| self.by_id.get(request_id).cloned())
            .collect()
    }

    /// Replaces the table with a snapshot's; `writes` already deletes the old keys.
    pub fn restore(
        &mut self,
        requests: Vec<RecentRequest>,
        clock_ms: u64,
        writes: &mut WriteBatch,
    ) -> Result<(), String> {
        let limits = self.limits;
        *self = Self::new(limits);
        self.clock_ms = clock_ms;
        if clock_ms > 0 {
            writes.put(REQUEST_CLOCK_KEY.to_vec(), clock_ms.to_le_bytes().to_vec());
        }
        for request in requests {
            writes.put(
                request_key(&request.request_id),
                crate::codec::encode(&request)?,
            );
            self.insert(request);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sled_storage::SledStorage;
    use crate::storage::Storage;

    fn limits() -> DedupLimits {
        DedupLimits {
            window_ms: 1_000,
            max_entries: 3,
            max_bytes: 1024 * 1024,
        }
    }

    #[test]
    fn a_repeat_is_answered_until_it_ages_out_and_a_reload_agrees() {
        let storage = SledStorage::temporary().unwrap();
        let keyspace = storage.keyspace("state").unwrap();
        let mut table = RecentRequests::new(limits());
        let mut writes = WriteBatch::new();
        table.advance(10_000, &mut writes);
        table.record("a", 1, b"first", &mut writes).unwrap();
        assert_eq!(table.response("a"), Some(&b"first"[..]));
        table.advance(10_500, &mut writes);
        table.record("b", 2, b"second", &mut writes).unwrap();
        keyspace.write(writes).unwrap();
        let reloaded = RecentRequests::load(keyspace.as_ref(), limits()).unwrap();
        assert_eq!(reloaded.entries(), table.entries());
        assert_eq!(reloaded.clock_ms(), 10_500);

        let mut writes = WriteBatch::new();
        // A clock that goes backwards (another leader's) does not move the table's.
        table.advance(9_000, &mut writes);
        assert_eq!(table.clock_ms(), 10_500);
        table.advance(11_200, &mut writes);
        assert_eq!(table.response("a"), None, "a is older than the window");
        assert_eq!(table.response("b"), Some(&b"second"[..]));
        keyspace.write(writes).unwrap();
        let reloaded = RecentRequests::load(keyspace.as_ref(), limits()).unwrap();
        assert_eq!(reloaded.entries(), table.entries());
    }

    #[test]
    fn the_oldest_go_first_when_the_table_is_full() {
        let mut table = RecentRequests::new(limits());
        let mut writes = WriteBatch::new();
        table.advance(1, &mut writes);
        for (index, id) in ["a", "b", "c", "d"].iter().enumerate() {
            table.record(id, index as u64, b"x", &mut writes).unwrap();
        }
        assert_eq!(table.len(), 3);
        assert_eq!(table.response("a"), None);
        assert!(table.response("d").is_some());
    }
}
