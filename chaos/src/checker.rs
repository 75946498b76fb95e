//! The nemesis's checker: what the clients were told (the timed history), what the jobs'
//! processes wrote (the journal) and the cluster's final state, held against the rules.
//!
//! 1. Every acknowledged job is in the final state and has reached a final state.
//! 2. No two runs of a job overlap in time (their processes, children too), and a job
//!    runs more than once only as recorded attempts: no attempt runs twice, none beyond
//!    the job's last recorded attempt.
//! 3. A submission refused by a rule never takes effect; one idempotency key never makes
//!    two jobs; a read that began after a submission was acknowledged finds the job.
//! 4. Tenant creations: none acknowledged is lost, none appears that was never asked for.
//! 5. A job whose command never fails does not end `failed` or `timed_out`: a run killed
//!    by a fault is retried, never reported as the job's own end.

use std::collections::{BTreeMap, BTreeSet};

use serde::Serialize;

/// What a client was told.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Told {
    Ok,
    Refused,
    Unknown,
}

/// One operation of the timed history.
#[derive(Debug, Clone, Serialize)]
pub struct Op {
    pub client: u32,
    /// `submit`, `read`, `cancel` or `create_tenant`.
    pub kind: &'static str,
    /// The job (once known) or the tenant.
    pub id: Option<String>,
    /// The submission's idempotency key.
    pub key: Option<String>,
    pub invoked_ms: u64,
    pub completed_ms: u64,
    pub told: Told,
    /// The HTTP status (0: none came back).
    pub status: u16,
}

/// One run as the journal saw it: every line of a (job, attempt, worker, run) key.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Run {
    pub job: String,
    pub attempt: u32,
    pub worker: String,
    pub run: u32,
    pub first_ns: u128,
    pub last_ns: u128,
    /// Ended on its own (not killed).
    pub ended: bool,
}

/// A job in the final state.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct FinalJob {
    pub id: String,
    pub state: String,
    pub attempt: u32,
    pub key: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "rule", rename_all = "snake_case")]
pub enum Violation {
    AcknowledgedJobLost {
        job: String,
    },
    JobNotFinished {
        job: String,
        state: String,
    },
    RunsOverlap {
        job: String,
        first: String,
        second: String,
        overlap_ms: f64,
    },
    /// A job recorded `succeeded` without a run of its last attempt that ended on its
    /// own in the journal.
    SucceededWithoutItsRun {
        job: String,
        attempt: u32,
    },
    AttemptRanTwice {
        job: String,
        attempt: u32,
    },
    UnrecordedRun {
        job: String,
        attempt: u32,
        recorded: u32,
    },
    RefusedSubmissionTookEffect {
        key: String,
        job: String,
    },
    OneKeyTwoJobs {
        key: String,
        jobs: Vec<String>,
    },
    ReadMissedAcknowledgedJob {
        job: String,
        read_invoked_ms: u64,
    },
    /// The nemesis's runner never fails on its own: a failed job means a fault (a
    /// killed run) was taken for the job's own end.
    JobFailedUnderFaults {
        job: String,
        state: String,
        attempt: u32,
    },
    AcknowledgedTenantLost {
        tenant: String,
    },
    PhantomTenant {
        tenant: String,
    },
}

/// Parses journal lines into runs; malformed lines are skipped.
pub fn runs_of(journal: &str) -> Vec<Run> {
    let mut runs: BTreeMap<(String, u32, String, u32), Run> = BTreeMap::new();
    for line in journal.lines() {
        let fields: Vec<&str> = line.split_whitespace().collect();
        let [kind, job, attempt, worker, run, role, at] = fields[..] else {
            continue;
        };
        let (Ok(attempt), Ok(run), Ok(at)) = (
            attempt.parse::<u32>(),
            run.parse::<u32>(),
            at.parse::<u128>(),
        ) else {
            continue;
        };
        let entry = runs
            .entry((job.to_string(), attempt, worker.to_string(), run))
            .or_insert_with(|| Run {
                job: job.to_string(),
                attempt,
                worker: worker.to_string(),
                run,
                first_ns: at,
                last_ns: at,
                ended: false,
            });
        entry.first_ns = entry.first_ns.min(at);
        entry.last_ns = entry.last_ns.max(at);
        if kind == "end" && role == "main" {
            entry.ended = true;
        }
    }
    runs.into_values().collect()
}

fn describe(run: &Run) -> String {
    format!(
        "attempt {} on {} (pid {})",
        run.attempt, run.worker, run.run
    )
}

/// Rules 1-3 over the history, the journal's runs and the final jobs.
pub fn check_jobs(history: &[Op], runs: &[Run], jobs: &[FinalJob]) -> Vec<Violation> {
    let mut violations = Vec::new();
    let by_id: BTreeMap<&str, &FinalJob> = jobs.iter().map(|job| (job.id.as_str(), job)).collect();
    // 1. Acknowledged jobs are there, and final.
    let mut acknowledged: BTreeMap<&str, u64> = BTreeMap::new();
    for op in history {
        if op.kind == "submit"
            && op.told == Told::Ok
            && let Some(id) = &op.id
        {
            let completed = acknowledged.entry(id).or_insert(op.completed_ms);
            *completed = (*completed).min(op.completed_ms);
        }
    }
    for id in acknowledged.keys() {
        match by_id.get(id) {
            None => violations.push(Violation::AcknowledgedJobLost {
                job: id.to_string(),
            }),
            Some(job)
                if !matches!(
                    job.state.as_str(),
                    "succeeded" | "failed" | "timed_out" | "cancelled"
                ) =>
            {
                violations.push(Violation::JobNotFinished {
                    job: id.to_string(),
                    state: job.state.clone(),
                })
            }
            Some(_) => {}
        }
    }
    // 2. Runs of one job never overlap; each attempt runs once, none unrecorded.
    let mut per_job: BTreeMap<&str, Vec<&Run>> = BTreeMap::new();
    for run in runs {
        per_job.entry(run.job.as_str()).or_default().push(run);
    }
    for (job, mut job_runs) in per_job {
        job_runs.sort_by_key(|run| run.first_ns);
        for (index, run) in job_runs.iter().enumerate() {
            for later in &job_runs[index + 1..] {
                if later.first_ns <= run.last_ns {
                    violations.push(Violation::RunsOverlap {
                        job: job.to_string(),
                        first: describe(run),
                        second: describe(later),
                        overlap_ms: (run.last_ns - later.first_ns) as f64 / 1e6,
                    });
                }
            }
        }
        let mut attempts: BTreeMap<u32, usize> = BTreeMap::new();
        for run in &job_runs {
            *attempts.entry(run.attempt).or_default() += 1;
        }
        for (attempt, count) in &attempts {
            if *count > 1 {
                violations.push(Violation::AttemptRanTwice {
                    job: job.to_string(),
                    attempt: *attempt,
                });
            }
        }
        if let Some(recorded) = by_id.get(job).map(|found| found.attempt)
            && let Some(highest) = attempts.keys().next_back()
            && *highest > recorded
        {
            violations.push(Violation::UnrecordedRun {
                job: job.to_string(),
                attempt: *highest,
                recorded,
            });
        }
    }
    for job in jobs.iter().filter(|job| job.state == "succeeded") {
        let ran = runs
            .iter()
            .any(|run| run.job == job.id && run.attempt == job.attempt && run.ended);
        if !ran {
            violations.push(Violation::SucceededWithoutItsRun {
                job: job.id.clone(),
                attempt: job.attempt,
            });
        }
    }
    // 3. Refused submissions took no effect; one key, one job; reads find acked jobs.
    let mut by_key: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
    for job in jobs {
        if let Some(key) = &job.key {
            by_key.entry(key).or_default().push(&job.id);
        }
    }
    let mut key_told: BTreeMap<&str, BTreeSet<&Told>> = BTreeMap::new();
    for op in history.iter().filter(|op| op.kind == "submit") {
        if let Some(key) = &op.key {
            key_told.entry(key).or_default().insert(&op.told);
        }
    }
    for (key, told) in &key_told {
        // Every submission under this key was refused: none of them may exist.
        if told.iter().all(|told| **told == Told::Refused)
            && let Some(made) = by_key.get(key)
        {
            violations.push(Violation::RefusedSubmissionTookEffect {
                key: key.to_string(),
                job: made[0].to_string(),
            });
        }
    }
    for (key, made) in &by_key {
        if made.len() > 1 {
            violations.push(Violation::OneKeyTwoJobs {
                key: key.to_string(),
                jobs: made.iter().map(|id| id.to_string()).collect(),
            });
        }
    }
    for op in history {
        if op.kind == "read"
            && op.status == 404
            && let Some(id) = &op.id
            && acknowledged
                .get(id.as_str())
                .is_some_and(|completed| *completed < op.invoked_ms)
        {
            violations.push(Violation::ReadMissedAcknowledgedJob {
                job: id.clone(),
                read_invoked_ms: op.invoked_ms,
            });
        }
    }
    violations
}

/// Rule 5: the nemesis's jobs end `succeeded` or `cancelled`.
pub fn check_outcomes(jobs: &[FinalJob]) -> Vec<Violation> {
    jobs.iter()
        .filter(|job| matches!(job.state.as_str(), "failed" | "timed_out"))
        .map(|job| Violation::JobFailedUnderFaults {
            job: job.id.clone(),
            state: job.state.clone(),
            attempt: job.attempt,
        })
        .collect()
}

/// Rule 4 over the tenant creations: `final_ids` are the tenants at the end, `system`
/// those the cluster made itself.
pub fn check_tenants(
    history: &[Op],
    final_ids: &BTreeSet<String>,
    system: &BTreeSet<String>,
) -> Vec<Violation> {
    let mut violations = Vec::new();
    let creations: Vec<&Op> = history
        .iter()
        .filter(|op| op.kind == "create_tenant")
        .collect();
    let attempted: BTreeSet<&str> = creations.iter().filter_map(|op| op.id.as_deref()).collect();
    for op in &creations {
        if op.told == Told::Ok
            && let Some(id) = &op.id
            && !final_ids.contains(id)
        {
            violations.push(Violation::AcknowledgedTenantLost { tenant: id.clone() });
        }
    }
    for id in final_ids {
        if !attempted.contains(id.as_str()) && !system.contains(id) {
            violations.push(Violation::PhantomTenant { tenant: id.clone() });
        }
    }
    // A refused creation (by a rule) with no other attempt under its id must not exist.
    for op in &creations {
        if op.told == Told::Refused
            && let Some(id) = &op.id
            && final_ids.contains(id)
            && creations
                .iter()
                .filter(|other| other.id.as_deref() == Some(id.as_str()))
                .all(|other| other.told == Told::Refused)
        {
            violations.push(Violation::PhantomTenant { tenant: id.clone() });
        }
    }
    violations
}

#[cfg(test)]
mod tests {
    use super::*;

    fn submit(id: &str, key: Option<&str>, told: Told, at: u64) -> Op {
        Op {
            client: 0,
            kind: "submit",
            id: Some(id.to_string()),
            key: key.map(str::to_string),
            invoked_ms: at,
            completed_ms: at + 5,
            told,
            status: 202,
        }
    }

    fn job(id: &str, state: &str, attempt: u32, key: Option<&str>) -> FinalJob {
        FinalJob {
            id: id.to_string(),
            state: state.to_string(),
            attempt,
            key: key.map(str::to_string),
        }
    }

    #[test]
    fn journal_lines_become_runs_with_their_span() {
        let journal = "start j1 1 w1 100 main 1000\n\
                       start j1 1 w1 100 child 1100\n\
                       tick j1 1 w1 100 child 5000\n\
                       tick j1 1 w1 100 main 4000\n\
                       end j1 1 w1 100 main 4500\n\
                       start j1 2 w2 200 main 9000\n\
                       garbage\n";
        let runs = runs_of(journal);
        assert_eq!(runs.len(), 2);
        assert_eq!(
            (runs[0].first_ns, runs[0].last_ns, runs[0].ended),
            (1000, 5000, true)
        );
        assert_eq!((runs[1].attempt, runs[1].ended), (2, false));
    }

    #[test]
    fn a_lost_or_unfinished_acknowledged_job_is_reported() {
        let history = vec![
            submit("a", None, Told::Ok, 1),
            submit("b", None, Told::Ok, 2),
            submit("c", None, Told::Unknown, 3),
        ];
        let jobs = vec![job("a", "running", 1, None)];
        let violations = check_jobs(&history, &[], &jobs);
        assert_eq!(
            violations,
            vec![
                Violation::JobNotFinished {
                    job: "a".into(),
                    state: "running".into()
                },
                Violation::AcknowledgedJobLost { job: "b".into() },
            ]
        );
    }

    #[test]
    fn overlapping_runs_a_twice_run_attempt_and_an_unrecorded_one_are_reported() {
        // A child of attempt 1 still ticking when attempt 2 began.
        let journal = "start j 1 w1 10 main 1000000000\n\
                       tick j 1 w1 10 child 3000000000\n\
                       start j 2 w2 20 main 2500000000\n\
                       end j 2 w2 20 main 4000000000\n\
                       start j 2 w3 30 main 5000000000\n\
                       start j 3 w1 40 main 6000000000\n";
        let runs = runs_of(journal);
        let jobs = vec![job("j", "succeeded", 2, None)];
        let violations = check_jobs(&[], &runs, &jobs);
        assert!(
            matches!(&violations[0], Violation::RunsOverlap { overlap_ms, .. } if (*overlap_ms - 500.0).abs() < 1e-6),
            "{violations:?}"
        );
        assert!(violations.contains(&Violation::AttemptRanTwice {
            job: "j".into(),
            attempt: 2
        }));
        assert!(violations.contains(&Violation::UnrecordedRun {
            job: "j".into(),
            attempt: 3,
            recorded: 2
        }));
        // Back to back, each attempt once, the last one ended: nothing.
        let clean = "start j 1 w1 10 main 1000\ntick j 1 w1 10 main 2000\n\
                     start j 2 w2 20 main 2001\nend j 2 w2 20 main 3000\n";
        assert!(check_jobs(&[], &runs_of(clean), &jobs).is_empty());
        // Recorded succeeded, but its last attempt never ended on its own in the journal.
        let unfinished = "start j 1 w1 10 main 1000\nstart j 2 w2 20 main 2001\n";
        assert_eq!(
            check_jobs(&[], &runs_of(unfinished), &jobs),
            vec![Violation::SucceededWithoutItsRun {
                job: "j".into(),
                attempt: 2
            }]
        );
    }

    #[test]
    fn keys_refusals_and_reads_are_held_to_what_clients_were_told() {
        let mut refused = submit("", Some("k-refused"), Told::Refused, 1);
        refused.id = None;
        let mut read = submit("a", None, Told::Ok, 100);
        read.kind = "read";
        read.status = 404;
        let history = vec![
            refused,
            submit("a", Some("k1"), Told::Ok, 10),
            submit("a", Some("k1"), Told::Unknown, 20),
            read,
        ];
        let jobs = vec![
            job("a", "succeeded", 1, Some("k1")),
            job("b", "succeeded", 1, Some("k1")),
            job("c", "succeeded", 1, Some("k-refused")),
        ];
        let violations = check_jobs(&history, &[], &jobs);
        assert!(
            violations.contains(&Violation::RefusedSubmissionTookEffect {
                key: "k-refused".into(),
                job: "c".into()
            })
        );
        assert!(violations.contains(&Violation::OneKeyTwoJobs {
            key: "k1".into(),
            jobs: vec!["a".into(), "b".into()]
        }));
        assert!(violations.contains(&Violation::ReadMissedAcknowledgedJob {
            job: "a".into(),
            read_invoked_ms: 100
        }));
    }

    #[test]
    fn tenants_lost_phantom_and_refused_but_present_are_reported() {
        let create = |id: &str, told: Told| Op {
            client: 0,
            kind: "create_tenant",
            id: Some(id.to_string()),
            key: None,
            invoked_ms: 0,
            completed_ms: 1,
            told,
            status: 0,
        };
        let history = vec![
            create("kept", Told::Ok),
            create("lost", Told::Ok),
            create("maybe", Told::Unknown),
            create("refused", Told::Refused),
        ];
        let final_ids: BTreeSet<String> = ["default", "kept", "ghost", "refused"]
            .iter()
            .map(|id| id.to_string())
            .collect();
        let system: BTreeSet<String> = ["default".to_string()].into();
        let violations = check_tenants(&history, &final_ids, &system);
        assert_eq!(
            violations,
            vec![
                Violation::AcknowledgedTenantLost {
                    tenant: "lost".into()
                },
                Violation::PhantomTenant {
                    tenant: "ghost".into()
                },
                Violation::PhantomTenant {
                    tenant: "refused".into()
                },
            ]
        );
    }
}
