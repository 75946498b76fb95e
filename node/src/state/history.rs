//! The job history: final jobs leave the in-memory state `retention.finished_in_memory_s`
//! after they end and are kept on disk only, in the state keyspace under
//! [`HISTORY_PREFIX`], until `retention.job_history_days` have passed. Both moves are
//! replicated commands proposed by the leader (`ArchiveJobs`, `PurgeHistory`) and
//! deterministic in apply: which jobs move is decided from the in-memory state or named
//! by the command, never by reading the keyspace.
//!
//! History keys are the cluster's cold keys ([`hodei_cluster::cold_value`]): written once
//! (tagged with the log index that wrote them), deleted once, copied into snapshots
//! straight from the keyspace. What stays in memory of an archived job is what the
//! counters and idempotency need: its counts in the tallies (persisted under
//! [`ARCHIVED_TALLY_KEY`]) and its idempotency key (under [`ARCHIVED_IDEMPOTENCY_PREFIX`]),
//! which lives as long as the job's record.

use std::collections::BTreeMap;
use std::ops::Bound;
use std::sync::Arc;

use hodei_cluster::{Keyspace, WriteBatch};
use serde::{Deserialize, Serialize};

use crate::state::command::{self, CommandOutcome, CommandResult, PurgedJob};
use crate::state::hodei_state::{HodeiState, put_encoded};
use crate::state::indexes::IndexedAs;
use crate::state::jobs::count_one;
use crate::state::keys::{JOB_LOG_PREFIX, JOB_PREFIX, WORKER_PREFIX, key, stream_key};
use hodei_domain::DomainError;
use hodei_domain::burst::BurstStatus;
use hodei_domain::job::{Job, JobState, Priority};
use hodei_domain::sla::{SlaLevel, SlaStatus};
use hodei_domain::tenant::TenantId;
use hodei_domain::worker::WorkerState;

/// Every key of the job history starts with this (the state machine's cold prefix).
pub const HISTORY_PREFIX: &str = "h/";
/// `h/job/<id>`: the job's [`HistoryRecord`].
pub const HISTORY_JOB_PREFIX: &str = "h/job/";
/// `h/end/<ended_at_ms, 20 digits>/<id>`: the tenant; retention walks these in end order.
pub const HISTORY_END_PREFIX: &str = "h/end/";
/// `h/tenant/<tenant>/<id>`: nothing; a tenant's history in submit order.
pub const HISTORY_TENANT_PREFIX: &str = "h/tenant/";
/// The tallies' counts of every archived job.
pub const ARCHIVED_TALLY_KEY: &str = "tally/archived";
/// `idem/<tenant>/<idempotency key>`: the id of the archived job that holds the key.
pub const ARCHIVED_IDEMPOTENCY_PREFIX: &str = "idem/";

/// The most jobs one `ArchiveJobs` moves, and one `PurgeHistory` deletes.
pub const MAX_SWEEP: usize = 2_000;
/// The most history entries one list page examines; a page that has found fewer matches
/// by then ends early, with a cursor to go on from.
const SCAN_BUDGET: usize = 20_000;

/// A job as the history keeps it: the job and its output.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HistoryRecord {
    pub job: Job,
    /// The job's entries of the output tails (`<id>`, `<id>#stdout`, ...), by key.
    pub output: BTreeMap<String, String>,
}

/// Where a job was read from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JobSource {
    /// The in-memory state: not final, or final for less than `finished_in_memory_s`.
    Active,
    /// The job history on disk.
    History,
}

impl JobSource {
    pub fn as_str(self) -> &'static str {
        match self {
            JobSource::Active => "active",
            JobSource::History => "history",
        }
    }
}

/// What the tallies count of the archived jobs, kept so that a node rebuilding its
/// tallies from the jobs in memory (on load or restore) adds them back.
#[derive(Debug, Default, Clone, PartialEq, Serialize, Deserialize)]
pub struct ArchivedTally {
    pub by_tenant: BTreeMap<(String, TenantId, JobState), u64>,
    pub by_priority: BTreeMap<(String, Priority, JobState), u64>,
    pub by_sla: BTreeMap<(TenantId, SlaLevel, SlaStatus), u64>,
    pub by_pool: BTreeMap<(String, JobState), u64>,
}

/// When a final job ended: its last transition.
pub fn ended_at(job: &Job) -> u64 {
    job.transitions
        .last()
        .map(|step| step.at_ms)
        .unwrap_or(job.submitted_at_ms)
}

fn end_key(ended_at_ms: u64, id: &str) -> Vec<u8> {
    format!("{HISTORY_END_PREFIX}{ended_at_ms:020}/{id}").into_bytes()
}

fn tenant_key(tenant: &TenantId, id: &str) -> Vec<u8> {
    format!("{HISTORY_TENANT_PREFIX}{tenant}/{id}").into_bytes()
}

fn idempotency_key(tenant: &TenantId, idempotency_key: &str) -> Vec<u8> {
    format!("{ARCHIVED_IDEMPOTENCY_PREFIX}{tenant}/{idempotency_key}").into_bytes()
}

/// Reads `idem/<tenant>/<key>` back into its parts.
pub(super) fn parse_idempotency_key(stored: &[u8]) -> Option<(TenantId, String)> {
    let rest = std::str::from_utf8(stored)
        .ok()?
        .strip_prefix(ARCHIVED_IDEMPOTENCY_PREFIX)?;
    let (tenant, idempotency_key) = rest.split_once('/')?;
    Some((TenantId::parse(tenant).ok()?, idempotency_key.to_string()))
}

fn decode_record(value: &[u8]) -> Option<HistoryRecord> {
    let (_, bytes) = hodei_cluster::split_cold_value(value)?;
    match hodei_cluster::codec::decode(bytes) {
        Ok(record) => Some(record),
        Err(error) => {
            tracing::error!(%error, "a job history record could not be decoded");
            None
        }
    }
}

impl HodeiState {
    /// Moves final jobs that ended before `ended_before_ms` (oldest first, at most
    /// `limit`) to the history. Nothing here refuses: a job is archived whole or not at
    /// all.
    pub(super) fn apply_archive_jobs(
        &mut self,
        command::ArchiveJobs {
            ended_before_ms,
            limit,
            gone_workers_before_ms,
            ended_bursts_before_ms,
        }: command::ArchiveJobs,
        writes: &mut WriteBatch,
    ) -> CommandResult {
        let index = self.applying_index;
        let due: Vec<(u64, String)> = self
            .finished
            .range(..(ended_before_ms, String::new()))
            .take((limit as usize).min(MAX_SWEEP))
            .cloned()
            .collect();
        let mut moved = 0;
        let mut recently_archived = Vec::new();
        for (ended_at_ms, id) in &due {
            let Some(job) = self.jobs.get(id) else {
                continue;
            };
            let log_keys = [
                id.clone(),
                stream_key(id, "stdout"),
                stream_key(id, "stderr"),
                stream_key(id, "seq"),
            ];
            let output: BTreeMap<String, String> = log_keys
                .iter()
                .filter_map(|log_key| {
                    self.job_logs
                        .get(log_key)
                        .map(|kept| (log_key.clone(), kept.clone()))
                })
                .collect();
            let record = HistoryRecord {
                job: job.as_ref().clone(),
                output,
            };
            // Encoded first: a job whose record cannot be written stays in memory whole.
            let bytes = match hodei_cluster::codec::encode(&record) {
                Ok(bytes) => bytes,
                Err(error) => {
                    tracing::error!(job = %id, %error, "a job history record could not be encoded: it stays in memory");
                    continue;
                }
            };
            moved += 1;
            self.finished.remove(&(*ended_at_ms, id.clone()));
            self.jobs.remove(id);
            self.archived_tally.add(&record.job);
            let tenant = &record.job.spec.tenant;
            if let Some(idempotency) = &record.job.spec.idempotency_key {
                let entry = (tenant.clone(), idempotency.clone());
                if self
                    .idempotency
                    .get(&entry)
                    .is_some_and(|holder| holder == id)
                {
                    self.idempotency.remove(&entry);
                    writes.put(
                        idempotency_key(tenant, idempotency),
                        id.clone().into_bytes(),
                    );
                    self.archived_idempotency.insert(entry, id.clone());
                }
            }
            for log_key in log_keys {
                if self.job_logs.remove(&log_key).is_some() {
                    writes.delete(key(JOB_LOG_PREFIX, &log_key));
                }
            }
            writes.delete(key(JOB_PREFIX, id));
            writes.put(
                key(HISTORY_JOB_PREFIX, id),
                hodei_cluster::cold_value(index, &bytes),
            );
            writes.put(
                end_key(*ended_at_ms, id),
                hodei_cluster::cold_value(index, tenant.as_str().as_bytes()),
            );
            writes.put(
                tenant_key(tenant, id),
                hodei_cluster::cold_value(index, b""),
            );
            recently_archived.push((id.clone(), Arc::new(record)));
        }
        if !recently_archived.is_empty() {
            // Kept (beside earlier ones of this batch of entries) until the batch is
            // stored: `begin_batch` clears them.
            Arc::make_mut(&mut self.recently_archived).extend(recently_archived);
        }
        if moved > 0 {
            put_encoded(
                writes,
                ARCHIVED_TALLY_KEY.as_bytes().to_vec(),
                &self.archived_tally,
            );
        }
        let workers = self.drop_gone_workers(gone_workers_before_ms, writes);
        let bursts = self.drop_ended_bursts(ended_bursts_before_ms, writes);
        Ok(CommandOutcome::Archived {
            count: moved,
            workers,
            bursts,
        })
    }

    /// Forgets lost and terminated workers that hold no job and whose state changed
    /// before `before_ms` (an agent that comes back registers anew).
    fn drop_gone_workers(&mut self, before_ms: u64, writes: &mut WriteBatch) -> usize {
        let gone: Vec<String> = self
            .workers
            .values()
            .filter(|worker| {
                matches!(worker.state, WorkerState::Lost | WorkerState::Terminated)
                    && worker.jobs.is_empty()
                    && worker.state_changed_at_ms < before_ms
            })
            .map(|worker| worker.id.clone())
            .collect();
        for id in &gone {
            self.workers.remove(id);
            writes.delete(key(WORKER_PREFIX, id));
            self.drop_worker_agent(id, writes);
        }
        gone.len()
    }

    /// Forgets burst sessions that ended before `before_ms`.
    fn drop_ended_bursts(&mut self, before_ms: u64, writes: &mut WriteBatch) -> usize {
        let mut dropped = 0;
        for sessions in self.bursts.values_mut() {
            sessions.retain(|session| {
                let old = session.status == BurstStatus::Ended
                    && session.ended_at_ms.unwrap_or(session.requested_at_ms) < before_ms;
                if old {
                    writes.delete(crate::state::apply::limits::burst_key(session));
                    dropped += 1;
                }
                !old
            });
        }
        self.bursts.retain(|_, sessions| !sessions.is_empty());
        dropped
    }

    /// Deletes the named jobs from the history. Refused whole when one of them did not
    /// end before `ended_before_ms` or is still in memory.
    pub(super) fn apply_purge_history(
        &mut self,
        command::PurgeHistory {
            ended_before_ms,
            jobs,
        }: command::PurgeHistory,
        writes: &mut WriteBatch,
    ) -> CommandResult {
        if jobs.len() > MAX_SWEEP {
            return Err(DomainError::invalid(
                "jobs",
                format!("at most {MAX_SWEEP} jobs per purge, got {}", jobs.len()),
            ));
        }
        if let Some(late) = jobs.iter().find(|job| job.ended_at_ms >= ended_before_ms) {
            return Err(DomainError::invalid(
                "jobs",
                format!(
                    "job {} ended at {}, not before {ended_before_ms}",
                    late.id, late.ended_at_ms
                ),
            ));
        }
        if let Some(active) = jobs.iter().find(|job| self.jobs.contains_key(&job.id)) {
            return Err(DomainError::Conflict(format!(
                "job {} is in memory, not in the history",
                active.id
            )));
        }
        for PurgedJob {
            id,
            tenant,
            ended_at_ms,
            idempotency_key: idempotency,
        } in &jobs
        {
            writes.delete(key(HISTORY_JOB_PREFIX, id));
            writes.delete(end_key(*ended_at_ms, id));
            writes.delete(tenant_key(tenant, id));
            if self.recently_archived.contains_key(id) {
                Arc::make_mut(&mut self.recently_archived).remove(id);
            }
            if let Some(idempotency) = idempotency {
                let entry = (tenant.clone(), idempotency.clone());
                if self.archived_idempotency.get(&entry) == Some(id) {
                    self.archived_idempotency.remove(&entry);
                    writes.delete(idempotency_key(tenant, idempotency));
                }
            }
        }
        Ok(CommandOutcome::Purged { count: jobs.len() })
    }

    /// The id of the job holding the tenant's idempotency key, and whether it is archived.
    pub(super) fn idempotency_holder(
        &self,
        tenant: &TenantId,
        idempotency_key: &str,
    ) -> Option<(&str, bool)> {
        let entry = (tenant.clone(), idempotency_key.to_string());
        if let Some(id) = self.idempotency.get(&entry) {
            return Some((id.as_str(), false));
        }
        self.archived_idempotency
            .get(&entry)
            .map(|id| (id.as_str(), true))
    }

    /// What reads the history without the state: to be used outside the state lock.
    pub fn history_reader(&self) -> HistoryReader {
        HistoryReader {
            keyspace: self.history.clone(),
            recent: self.recently_archived.clone(),
        }
    }

    /// The job's record in the history, if it is there.
    pub fn history_record(&self, id: &str) -> Option<HistoryRecord> {
        self.history_reader().record(id)
    }

    /// The job, from memory or from the history.
    pub fn find_job(&self, id: &str) -> Option<(std::borrow::Cow<'_, Job>, JobSource)> {
        if let Some(job) = self.job(id) {
            return Some((std::borrow::Cow::Borrowed(job), JobSource::Active));
        }
        self.history_record(id)
            .map(|record| (std::borrow::Cow::Owned(record.job), JobSource::History))
    }

    /// A job's kept output (`log_key` is `<id>` or `<id>#<stream>`), from memory or from
    /// its history record.
    pub fn find_output(&self, id: &str, log_key: &str) -> Option<String> {
        if let Some(kept) = self.job_output(log_key) {
            return Some(kept.to_string());
        }
        if self.jobs.contains_key(id) {
            // In memory with no output kept: nothing to find on disk.
            return None;
        }
        self.history_record(id)
            .and_then(|mut record| record.output.remove(log_key))
    }

    /// Reads the archived tallies and idempotency keys back (at start).
    pub(super) fn load_archived(&mut self, keyspace: &dyn Keyspace) -> Result<(), String> {
        if let Some(bytes) = keyspace
            .get(ARCHIVED_TALLY_KEY.as_bytes())
            .map_err(|error| error.to_string())?
        {
            self.archived_tally = hodei_cluster::codec::decode(&bytes)
                .map_err(|error| format!("corrupt archived tally: {error}"))?;
        }
        let stored = keyspace
            .scan_prefix(ARCHIVED_IDEMPOTENCY_PREFIX.as_bytes())
            .map_err(|error| error.to_string())?;
        for (stored_key, id) in stored {
            let entry = parse_idempotency_key(&stored_key).ok_or_else(|| {
                format!(
                    "corrupt idempotency key {}",
                    String::from_utf8_lossy(&stored_key)
                )
            })?;
            self.archived_idempotency
                .insert(entry, String::from_utf8_lossy(&id).into_owned());
        }
        Ok(())
    }

    /// Replaces the archived tallies and idempotency keys with a snapshot's.
    pub(super) fn put_archived(
        &mut self,
        tally: ArchivedTally,
        idempotency: BTreeMap<(TenantId, String), String>,
        writes: &mut WriteBatch,
    ) {
        // Stored once something was archived (then never empty again), as apply does: the
        // restored keyspace must hold exactly the keys of the one the snapshot came from.
        if tally != ArchivedTally::default() {
            put_encoded(writes, ARCHIVED_TALLY_KEY.as_bytes().to_vec(), &tally);
        }
        for ((tenant, idempotency), id) in &idempotency {
            writes.put(
                idempotency_key(tenant, idempotency),
                id.clone().into_bytes(),
            );
        }
        self.archived_tally = tally;
        self.archived_idempotency = idempotency;
        self.recently_archived = Default::default();
    }

    /// Submits one job as apply does (for tests of what a restored state remembers).
    #[cfg(test)]
    pub(super) fn submit_for_test(&mut self, job: Job) -> crate::state::jobs::SubmittedJob {
        let mut writes = WriteBatch::new();
        self.submit_one(job, None, &mut writes).unwrap()
    }

    /// Whether `ArchiveJobs` would change anything now: a final job, a gone worker or an
    /// ended burst session is due.
    pub fn sweep_due(&self, archive: &command::ArchiveJobs) -> bool {
        self.finished
            .first()
            .is_some_and(|(ended, _)| *ended < archive.ended_before_ms)
            || self.workers.values().any(|worker| {
                matches!(worker.state, WorkerState::Lost | WorkerState::Terminated)
                    && worker.jobs.is_empty()
                    && worker.state_changed_at_ms < archive.gone_workers_before_ms
            })
            || self.bursts.values().flatten().any(|session| {
                session.status == BurstStatus::Ended
                    && session.ended_at_ms.unwrap_or(session.requested_at_ms)
                        < archive.ended_bursts_before_ms
            })
    }

    /// How many final jobs are in memory, and the end time of the oldest.
    pub fn finished_in_memory(&self) -> (usize, Option<u64>) {
        (
            self.finished.len(),
            self.finished.first().map(|(ended, _)| *ended),
        )
    }
}

/// The jobs the last `ArchiveJobs` moved, by id, until the next one.
pub type RecentlyArchived = BTreeMap<String, Arc<HistoryRecord>>;

/// Reads the job history from the keyspace (and the jobs archived a moment ago), holding
/// no lock of the state: list pages and retention scans run beside apply.
#[derive(Clone)]
pub struct HistoryReader {
    keyspace: Option<Arc<dyn Keyspace>>,
    recent: Arc<RecentlyArchived>,
}

impl HistoryReader {
    /// The job's record in the history, if it is there.
    pub fn record(&self, id: &str) -> Option<HistoryRecord> {
        if let Some(record) = self.recent.get(id) {
            return Some(record.as_ref().clone());
        }
        let keyspace = self.keyspace.as_ref()?;
        match keyspace.get(&key(HISTORY_JOB_PREFIX, id)) {
            Ok(found) => found.as_deref().and_then(decode_record),
            Err(error) => {
                tracing::error!(job = %id, %error, "the job history could not be read");
                None
            }
        }
    }

    /// Up to `limit` history jobs after the cursor (in id order, or newest first) that
    /// `keep` accepts, of one tenant or of all. The second value is the last id examined
    /// when the scan budget ran out first (the page goes on from there).
    pub fn page(
        &self,
        after: Option<&str>,
        limit: usize,
        newest_first: bool,
        tenant: Option<&TenantId>,
        keep: impl Fn(&Job) -> bool,
    ) -> (Vec<Job>, Option<String>) {
        let (mut found, stopped_at) = self.scan_page(after, limit, newest_first, tenant, &keep);
        // Jobs archived a moment ago may not be stored yet: they count too, where they
        // fall in the order (up to where the scan stopped, if it stopped short).
        let beyond = |id: &str, bound: &str| {
            if newest_first { id < bound } else { id > bound }
        };
        let recent = self.recent.values().filter(|record| {
            let id = record.job.id.as_str();
            tenant.is_none_or(|tenant| &record.job.spec.tenant == tenant)
                && after.is_none_or(|after| beyond(id, after))
                && stopped_at.as_deref().is_none_or(|stop| !beyond(id, stop))
                && keep(&record.job)
        });
        found.extend(recent.map(|record| record.job.clone()));
        found.sort_by(|left, right| {
            let order = left.id.cmp(&right.id);
            if newest_first { order.reverse() } else { order }
        });
        found.dedup_by(|later, earlier| later.id == earlier.id);
        found.truncate(limit);
        (found, stopped_at)
    }

    fn scan_page(
        &self,
        after: Option<&str>,
        limit: usize,
        newest_first: bool,
        tenant: Option<&TenantId>,
        keep: &impl Fn(&Job) -> bool,
    ) -> (Vec<Job>, Option<String>) {
        let Some(keyspace) = self.keyspace.as_ref() else {
            return (Vec::new(), None);
        };
        let prefix = match tenant {
            Some(tenant) => format!("{HISTORY_TENANT_PREFIX}{tenant}/"),
            None => HISTORY_JOB_PREFIX.to_string(),
        };
        let mut found = Vec::new();
        let mut examined = 0usize;
        let mut cursor = after.map(str::to_string);
        loop {
            let chunk = match scan_ids(keyspace.as_ref(), &prefix, cursor.as_deref(), newest_first)
            {
                Ok(chunk) => chunk,
                Err(error) => {
                    tracing::error!(%error, "the job history could not be listed");
                    return (found, None);
                }
            };
            if chunk.is_empty() {
                return (found, None);
            }
            for (id, value) in chunk {
                examined += 1;
                // Scanning `h/job/` gives the records themselves; a tenant's index only
                // the ids, read one by one.
                let record = match tenant {
                    None => decode_record(&value),
                    Some(_) => self.record(&id),
                };
                cursor = Some(id);
                if let Some(record) = record
                    && keep(&record.job)
                {
                    found.push(record.job);
                    if found.len() >= limit {
                        return (found, None);
                    }
                }
                if examined >= SCAN_BUDGET {
                    return (found, cursor);
                }
            }
        }
    }

    /// The history jobs (of `tenant`, or of all) that ended in [from_ms, to_ms), at most
    /// `limit` (`Err` with the limit when there are more: the caller narrows the window).
    pub fn ended_between(
        &self,
        from_ms: u64,
        to_ms: u64,
        limit: usize,
        tenant: Option<&TenantId>,
    ) -> Result<Vec<Job>, usize> {
        let own = |job: &Job| tenant.is_none_or(|tenant| job.spec.tenant == *tenant);
        let mut found: Vec<Job> = self
            .recent
            .values()
            .filter(|record| own(&record.job))
            .filter(|record| (from_ms..to_ms).contains(&ended_at(&record.job)))
            .map(|record| record.job.clone())
            .collect();
        let recent: std::collections::HashSet<String> =
            found.iter().map(|job| job.id.clone()).collect();
        let Some(keyspace) = self.keyspace.as_ref() else {
            return Ok(found);
        };
        let mut cursor = Bound::Included(end_key(from_ms, ""));
        let mut counted = 0usize;
        loop {
            let stored =
                match keyspace.range(cursor.clone(), Bound::Excluded(end_key(to_ms, "")), 4_096) {
                    Ok(stored) => stored,
                    Err(error) => {
                        tracing::error!(%error, "the job history could not be read");
                        return Ok(found);
                    }
                };
            let Some((last, _)) = stored.last() else {
                return Ok(found);
            };
            cursor = Bound::Excluded(last.clone());
            for (stored_key, value) in &stored {
                let Some(id) = std::str::from_utf8(stored_key)
                    .ok()
                    .and_then(|rest| rest.strip_prefix(HISTORY_END_PREFIX))
                    .and_then(|rest| rest.split_once('/'))
                    .map(|(_, id)| id)
                else {
                    continue;
                };
                // The end index holds the tenant: other tenants' jobs are not read.
                let of_tenant = hodei_cluster::split_cold_value(value)
                    .and_then(|(_, stored)| std::str::from_utf8(stored).ok())
                    .is_some_and(|stored| tenant.is_none_or(|tenant| tenant.as_str() == stored));
                if !of_tenant || recent.contains(id) {
                    continue;
                }
                counted += 1;
                if counted > limit {
                    return Err(limit);
                }
                if let Some(record) = self.record(id) {
                    found.push(record.job);
                }
            }
        }
    }

    /// Up to `limit` history jobs that ended before `ended_before_ms`, oldest end first:
    /// what the leader's retention purges next.
    pub fn due(&self, ended_before_ms: u64, limit: usize) -> Vec<PurgedJob> {
        let Some(keyspace) = self.keyspace.as_ref() else {
            return Vec::new();
        };
        let end = end_key(ended_before_ms, "");
        let stored = match keyspace.range(
            Bound::Included(HISTORY_END_PREFIX.as_bytes().to_vec()),
            Bound::Excluded(end),
            limit,
        ) {
            Ok(stored) => stored,
            Err(error) => {
                tracing::error!(%error, "the job history could not be read");
                return Vec::new();
            }
        };
        stored
            .into_iter()
            .filter_map(|(stored_key, value)| {
                let rest = std::str::from_utf8(&stored_key)
                    .ok()?
                    .strip_prefix(HISTORY_END_PREFIX)?;
                let (ended, id) = rest.split_once('/')?;
                let (_, tenant) = hodei_cluster::split_cold_value(&value)?;
                let tenant = TenantId::parse(std::str::from_utf8(tenant).ok()?).ok()?;
                let idempotency_key = self
                    .record(id)
                    .and_then(|record| record.job.spec.idempotency_key);
                Some(PurgedJob {
                    id: id.to_string(),
                    tenant,
                    ended_at_ms: ended.parse().ok()?,
                    idempotency_key,
                })
            })
            .collect()
    }
}

/// The next ids (at most 256) of a history index under `prefix` after `cursor`, with their
/// stored values.
fn scan_ids(
    keyspace: &dyn Keyspace,
    prefix: &str,
    cursor: Option<&str>,
    newest_first: bool,
) -> Result<Vec<(String, Vec<u8>)>, hodei_cluster::StorageError> {
    const CHUNK: usize = 256;
    let low = Bound::Included(prefix.as_bytes().to_vec());
    let high = match hodei_cluster::storage::prefix_successor(prefix.as_bytes()) {
        Some(successor) => Bound::Excluded(successor),
        None => Bound::Unbounded,
    };
    let at = |id: &str| format!("{prefix}{id}").into_bytes();
    let stored = match (cursor, newest_first) {
        (None, false) => keyspace.range(low, high, CHUNK)?,
        (Some(cursor), false) => keyspace.range(Bound::Excluded(at(cursor)), high, CHUNK)?,
        (None, true) => keyspace.range_rev(low, high, CHUNK)?,
        (Some(cursor), true) => keyspace.range_rev(low, Bound::Excluded(at(cursor)), CHUNK)?,
    };
    Ok(stored
        .into_iter()
        .filter_map(|(stored_key, value)| {
            std::str::from_utf8(&stored_key[prefix.len()..])
                .ok()
                .map(|id| (id.to_string(), value))
        })
        .collect())
}

impl ArchivedTally {
    /// Counts the job where the tallies count it (the same [`IndexedAs`] they use).
    fn add(&mut self, job: &Job) {
        let indexed = IndexedAs::of(job);
        count_one(self.by_tenant.entry(indexed.by_tenant).or_default());
        count_one(self.by_priority.entry(indexed.by_priority).or_default());
        if let Some(sla) = indexed.by_sla {
            count_one(self.by_sla.entry(sla).or_default());
        }
        if let Some(pool) = indexed.by_pool {
            count_one(self.by_pool.entry(pool).or_default());
        }
    }
}
