//! The job history end to end on a real store: archive, read back, idempotency, the
//! tallies across a reload, purge, and snapshots.

use std::sync::Arc;

use hodei_cluster::{Keyspace, SledStorage, StateMachine, Storage, WriteBatch};
use hodei_domain::DomainError;
use hodei_domain::job::{CommandSpec, Job, JobSpec, JobState, Priority};
use hodei_domain::labels::Labels;
use hodei_domain::quota::Quota;
use hodei_domain::resources::Resources;
use hodei_domain::run::{RunOutcome, RunReport};
use hodei_domain::tenant::TenantId;
use tokio::sync::broadcast;

use crate::state::command::{self, CommandOutcome, CommandResult};
use crate::state::history::JobSource;
use crate::state::{Command, CommandV1, HodeiState};

/// A state stored in a real keyspace, each command applied at the next log index and
/// its writes stored, as the cluster does.
struct Stored {
    state: HodeiState,
    keyspace: Arc<dyn Keyspace>,
    index: u64,
    _storage: SledStorage,
}

impl Stored {
    /// The apply tests' fixture (tenant `acme`, pool `p`, queue `q`, worker `w0`),
    /// restored into a state stored in a real keyspace.
    fn new() -> Self {
        let storage = SledStorage::temporary().unwrap();
        let keyspace = storage.keyspace("state").unwrap();
        let fixture = crate::state::jobs_tests::setup(Quota::default(), 1);
        let mut state = HodeiState::new(broadcast::channel(4096).0).with_history(keyspace.clone());
        let mut writes = WriteBatch::new();
        state
            .restore(&fixture.snapshot().unwrap(), &mut writes)
            .unwrap();
        keyspace.write(writes).unwrap();
        Self {
            state,
            keyspace,
            index: 1,
            _storage: storage,
        }
    }

    fn apply(&mut self, command: CommandV1) -> CommandResult {
        self.index += 1;
        let mut writes = WriteBatch::new();
        let response = StateMachine::apply(
            &mut self.state,
            self.index,
            &Command::V1(command).encode(),
            &mut writes,
        );
        self.keyspace.write(writes).unwrap();
        crate::state::decode_result(&response).unwrap()
    }

    fn submit(&mut self, job: Job) -> crate::state::jobs::SubmittedJob {
        match self.apply(CommandV1::SubmitJobs(command::SubmitJobs {
            jobs: vec![job],
            max_burst_percent: None,
        })) {
            Ok(CommandOutcome::JobsSubmitted(mut results)) => results.remove(0).unwrap(),
            other => panic!("unexpected {other:?}"),
        }
    }

    /// Submits, runs and finishes the job at `ended_at_ms`.
    fn run_to_end(&mut self, job: Job, ended_at_ms: u64) {
        let id = job.id.clone();
        self.submit(job);
        let assigned = self.apply(CommandV1::AssignJobs(command::AssignJobs {
            assignments: vec![hodei_domain::dispatch::Assignment {
                job: id.clone(),
                worker: "w0".into(),
                burst: false,
            }],
            at_ms: ended_at_ms - 2,
            sla_changes: Vec::new(),
        }));
        assert!(
            matches!(
                assigned,
                Ok(CommandOutcome::JobsAssigned { assigned: 1, .. })
            ),
            "{assigned:?}"
        );
        let finished = self.apply(CommandV1::JobFinished(command::JobFinished {
            report: RunReport {
                job: id,
                attempt: 1,
                worker: "w0".into(),
                outcome: RunOutcome::Succeeded,
                exit_code: Some(0),
                output_tail: "ok\n".into(),
                at_ms: ended_at_ms,
                usage: None,
            },
        }));
        assert_eq!(finished, Ok(CommandOutcome::RunReported { applied: true }));
    }

    fn archive(&mut self, ended_before_ms: u64) -> usize {
        match self.apply(CommandV1::ArchiveJobs(command::ArchiveJobs {
            ended_before_ms,
            limit: 100,
            gone_workers_before_ms: 0,
            ended_bursts_before_ms: 0,
        })) {
            Ok(CommandOutcome::Archived { count, .. }) => count,
            other => panic!("unexpected {other:?}"),
        }
    }

    fn reload(&self) -> HodeiState {
        HodeiState::load(self.keyspace.as_ref(), broadcast::channel(16).0)
            .unwrap()
            .with_history(self.keyspace.clone())
    }
}

/// The job and pool tallies without their zero entries (apply keeps those, a rebuild
/// makes none).
type Counted = (
    Vec<((String, TenantId, JobState), u64)>,
    Vec<((String, JobState), u64)>,
);

fn counted(state: &HodeiState) -> Counted {
    (
        state
            .job_tally()
            .iter()
            .filter(|(_, count)| **count > 0)
            .map(|(key, count)| (key.clone(), *count))
            .collect(),
        state
            .pool_tally()
            .iter()
            .filter(|(_, count)| **count > 0)
            .map(|(key, count)| (key.clone(), *count))
            .collect(),
    )
}

fn acme() -> TenantId {
    TenantId::parse("acme").unwrap()
}

fn job(id: &str, idempotency_key: Option<&str>) -> Job {
    Job::new(
        id.to_string(),
        JobSpec {
            tenant: acme(),
            queue: "q".into(),
            priority: Priority::Normal,
            resources: Resources::new(100, 10, 0),
            command: CommandSpec {
                argv: vec!["true".into()],
                ..CommandSpec::default()
            },
            simulate: None,
            labels: Labels::new(),
            max_retries: 0,
            idempotency_key: idempotency_key.map(str::to_string),
            pool_selector: Vec::new(),
            sla: None,
        },
        2,
    )
}

#[test]
fn finished_jobs_leave_memory_for_the_history_and_are_still_found() {
    let mut stored = Stored::new();
    stored.run_to_end(job("a", Some("nightly")), 100);
    stored.run_to_end(job("b", None), 200);
    stored.submit(job("c", None));
    let tallies = counted(&stored.state);

    assert_eq!(stored.archive(150), 1, "only a ended before 150");
    assert_eq!(stored.archive(150), 0, "nothing more is due");
    assert_eq!(stored.archive(1_000), 1, "then b; c is pending");
    assert!(stored.state.job("a").is_none() && stored.state.job("b").is_none());
    let (found, source) = stored.state.find_job("a").unwrap();
    assert_eq!(
        (found.state, source),
        (JobState::Succeeded, JobSource::History)
    );
    assert_eq!(stored.state.find_output("a", "a").as_deref(), Some("ok\n"));
    assert_eq!(
        stored
            .state
            .find_job("c")
            .map(|(job, source)| (job.state, source)),
        Some((JobState::Pending, JobSource::Active))
    );
    assert_eq!(counted(&stored.state), tallies, "archived jobs still count");

    // A restarted node counts them too, and reads them from disk.
    let reloaded = stored.reload();
    assert_eq!(counted(&reloaded), tallies);
    assert_eq!(reloaded.job_count(), 1);
    assert_eq!(
        reloaded
            .find_job("b")
            .map(|(job, source)| (job.id.clone(), source)),
        Some(("b".to_string(), JobSource::History))
    );
    let (page, stopped) = reloaded
        .history_reader()
        .page(None, 10, true, Some(&acme()), |_| true);
    assert_eq!(
        page.iter().map(|job| job.id.as_str()).collect::<Vec<_>>(),
        ["b", "a"]
    );
    assert!(stopped.is_none());
    let (page, _) = reloaded
        .history_reader()
        .page(Some("a"), 10, false, None, |_| true);
    assert_eq!(page.len(), 1, "after the cursor: b");
}

#[test]
fn an_archived_jobs_idempotency_key_holds_until_its_record_is_purged() {
    let mut stored = Stored::new();
    stored.run_to_end(job("a", Some("nightly")), 100);
    stored.archive(1_000);
    let again = stored.submit(job("a2", Some("nightly")));
    assert!(again.is_duplicate() && again.in_history && again.id == "a");
    assert!(stored.state.job("a2").is_none(), "nothing was created");
    let reloaded = stored.reload();
    assert!(
        reloaded.history_reader().due(1_000, 10)[0]
            .idempotency_key
            .as_deref()
            == Some("nightly")
    );

    // A purge naming a job that ended too late is refused whole.
    let mut due = stored.state.history_reader().due(1_000, 10);
    assert_eq!(due.len(), 1);
    let refused = stored.apply(CommandV1::PurgeHistory(command::PurgeHistory {
        ended_before_ms: 50,
        jobs: due.clone(),
    }));
    assert!(
        matches!(refused, Err(DomainError::Invalid { .. })),
        "{refused:?}"
    );
    assert!(stored.state.find_job("a").is_some());
    let purged = stored.apply(CommandV1::PurgeHistory(command::PurgeHistory {
        ended_before_ms: 1_000,
        jobs: std::mem::take(&mut due),
    }));
    assert_eq!(purged, Ok(CommandOutcome::Purged { count: 1 }));
    assert!(stored.state.find_job("a").is_none());
    assert!(stored.state.history_reader().due(u64::MAX, 10).is_empty());
    let history_keys = stored.keyspace.scan_prefix(b"h/").unwrap();
    assert!(history_keys.is_empty(), "{history_keys:?}");
    let fresh = stored.submit(job("a3", Some("nightly")));
    assert!(
        !fresh.is_duplicate(),
        "the key is free once its job is gone"
    );
    assert!(stored.reload().find_job("a3").is_some());
}

#[test]
fn a_snapshot_carries_what_the_archived_jobs_leave_in_memory() {
    let mut stored = Stored::new();
    stored.run_to_end(job("a", Some("nightly")), 100);
    stored.archive(1_000);
    let snapshot = stored.state.snapshot().unwrap();
    let mut restored = HodeiState::new(broadcast::channel(16).0);
    let mut writes = WriteBatch::new();
    restored.restore(&snapshot, &mut writes).unwrap();
    assert_eq!(counted(&restored), counted(&stored.state));
    let again = restored.submit_for_test(job("a2", Some("nightly")));
    assert!(
        again.in_history,
        "the archived key is honoured after a restore"
    );
}

#[test]
fn history_records_are_cold_values_tagged_with_their_index() {
    let mut stored = Stored::new();
    stored.run_to_end(job("a", None), 100);
    stored.archive(1_000);
    let archived_at = stored.index;
    for (key, value) in stored.keyspace.scan_prefix(b"h/").unwrap() {
        let (index, _) = hodei_cluster::split_cold_value(&value)
            .unwrap_or_else(|| panic!("{} is not a cold value", String::from_utf8_lossy(&key)));
        assert_eq!(index, archived_at);
    }
    assert_eq!(stored.keyspace.scan_prefix(b"h/").unwrap().len(), 3);
    assert!(stored.keyspace.get(b"job/a").unwrap().is_none());
    assert!(stored.keyspace.get(b"joblog/a").unwrap().is_none());
}

#[test]
fn gone_workers_and_ended_burst_sessions_are_forgotten_after_their_age() {
    let mut stored = Stored::new();
    let lost = stored.apply(CommandV1::WorkerLost(command::WorkerLost {
        worker: "w0".into(),
        reason: "missed heartbeats".into(),
        at_ms: 50,
    }));
    assert!(lost.is_ok(), "{lost:?}");
    let session = hodei_domain::burst::BurstSession {
        id: "b1".into(),
        tenant: acme(),
        ceiling_percentage: 120,
        duration_ms: 10,
        reason: "spike".into(),
        requested_by: "admin".into(),
        requested_at_ms: 10,
        status: hodei_domain::burst::BurstStatus::Ended,
        approved_by: None,
        starts_at_ms: Some(10),
        ends_at_ms: Some(20),
        ended_at_ms: Some(20),
        end_reason: None,
        ended_by: None,
    };
    let mut writes = WriteBatch::new();
    stored.state.put_session(session, &mut writes);
    stored.keyspace.write(writes).unwrap();
    let sweep = |gone: u64, bursts: u64| {
        CommandV1::ArchiveJobs(command::ArchiveJobs {
            ended_before_ms: 0,
            limit: 10,
            gone_workers_before_ms: gone,
            ended_bursts_before_ms: bursts,
        })
    };
    let early = command::ArchiveJobs {
        ended_before_ms: 0,
        limit: 10,
        gone_workers_before_ms: 40,
        ended_bursts_before_ms: 15,
    };
    assert!(!stored.state.sweep_due(&early), "nothing is old enough yet");
    assert_eq!(
        stored.apply(sweep(40, 15)),
        Ok(CommandOutcome::Archived {
            count: 0,
            workers: 0,
            bursts: 0
        })
    );
    assert_eq!(
        stored.apply(sweep(60, 25)),
        Ok(CommandOutcome::Archived {
            count: 0,
            workers: 1,
            bursts: 1
        })
    );
    assert!(stored.state.worker("w0").is_none());
    assert!(stored.state.burst_sessions(&acme()).is_empty());
    let reloaded = stored.reload();
    assert!(reloaded.worker("w0").is_none() && reloaded.burst_sessions(&acme()).is_empty());
}
