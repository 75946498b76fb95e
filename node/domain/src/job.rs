//! Jobs: what a tenant submits, its states and the legal moves between them
//! (`../shared/docs/DOMAIN.md`, Jobs). Pure rules; the state machine and the dispatcher
//! build on them.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::DomainError;
use crate::labels::{Labels, validate_labels};
use crate::resources::Resources;
use crate::sla::{SlaClock, SlaSpec, SlaStatus};
use crate::tenant::TenantId;

pub const MAX_ARGV: usize = 1_024;
pub const MAX_ARG_BYTES: usize = 128 * 1024;
pub const MAX_ENV: usize = 256;
pub const MAX_TIMEOUT_S: u64 = 7 * 24 * 3600;
pub const MAX_RETRIES: u32 = 100;
pub const MAX_SIMULATED_MS: u64 = 24 * 3600 * 1000;
pub const MAX_IDEMPOTENCY_KEY: usize = 128;
/// One environment value, and all of a job's names and values together.
pub const MAX_ENV_VALUE_BYTES: usize = 32 * 1024;
pub const MAX_ENV_BYTES: usize = 128 * 1024;
pub const MAX_POOL_SELECTOR: usize = 64;
pub const MAX_WORKING_DIR_BYTES: usize = 4_096;

#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, Default,
)]
#[serde(rename_all = "lowercase")]
pub enum Priority {
    Critical,
    High,
    #[default]
    Normal,
    Low,
    Batch,
}

impl Priority {
    pub const ALL: [Priority; 5] = [
        Priority::Critical,
        Priority::High,
        Priority::Normal,
        Priority::Low,
        Priority::Batch,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Priority::Critical => "critical",
            Priority::High => "high",
            Priority::Normal => "normal",
            Priority::Low => "low",
            Priority::Batch => "batch",
        }
    }

    pub fn parse(raw: &str) -> Result<Self, DomainError> {
        Self::ALL
            .into_iter()
            .find(|priority| priority.as_str() == raw)
            .ok_or_else(|| {
                DomainError::invalid(
                    "priority",
                    format!("must be one of critical, high, normal, low, batch, got `{raw}`"),
                )
            })
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum JobState {
    Pending,
    Assigned,
    Running,
    Succeeded,
    Failed,
    TimedOut,
    Cancelled,
}

impl JobState {
    pub const ALL: [JobState; 7] = [
        JobState::Pending,
        JobState::Assigned,
        JobState::Running,
        JobState::Succeeded,
        JobState::Failed,
        JobState::TimedOut,
        JobState::Cancelled,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            JobState::Pending => "pending",
            JobState::Assigned => "assigned",
            JobState::Running => "running",
            JobState::Succeeded => "succeeded",
            JobState::Failed => "failed",
            JobState::TimedOut => "timed_out",
            JobState::Cancelled => "cancelled",
        }
    }

    pub fn is_final(self) -> bool {
        matches!(
            self,
            JobState::Succeeded | JobState::Failed | JobState::TimedOut | JobState::Cancelled
        )
    }

    /// `pending -> assigned -> running -> succeeded | failed | timed_out`; `cancelled` from
    /// any non-final state; back to `pending` from `assigned` or `running` when the worker
    /// is lost (a retry).
    pub fn can_become(self, next: JobState) -> bool {
        use JobState::*;
        match (self, next) {
            (current, _) if current.is_final() => false,
            (_, Cancelled) => true,
            (Pending, Assigned) => true,
            // A worker lost before the job started: another attempt, or failed for good.
            (Assigned, Running | Pending | Failed) => true,
            (Running, Succeeded | Failed | TimedOut | Pending) => true,
            _ => false,
        }
    }
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct CommandSpec {
    pub argv: Vec<String>,
    #[serde(default)]
    pub env: BTreeMap<String, String>,
    #[serde(default)]
    pub working_dir: Option<String>,
    #[serde(default)]
    pub timeout_s: Option<u64>,
}

/// For simulated pools: how long the job "runs" and how it exits.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Simulation {
    pub duration_ms: u64,
    #[serde(default)]
    pub exit_code: i32,
    /// What the run reports it used, in percent of its request (CPU and memory; default
    /// 100).
    #[serde(default)]
    pub used_percent: Option<u32>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct JobSpec {
    pub tenant: TenantId,
    pub queue: String,
    pub priority: Priority,
    pub resources: Resources,
    pub command: CommandSpec,
    #[serde(default)]
    pub simulate: Option<Simulation>,
    #[serde(default)]
    pub labels: Labels,
    pub max_retries: u32,
    #[serde(default)]
    pub idempotency_key: Option<String>,
    /// Pool ids the job may run in; empty means any pool of its queue.
    #[serde(default)]
    pub pool_selector: Vec<String>,
    /// Its service level, if it has one.
    #[serde(default)]
    pub sla: Option<SlaSpec>,
}

fn invalid(field: &str, rule: impl Into<String>) -> DomainError {
    DomainError::invalid(field, rule)
}

impl JobSpec {
    /// The bounds a new submission is held to beyond [`Self::validate`]: checked by the
    /// gateway only, never by apply, so that entries written before these bounds existed
    /// apply alike on every node, whichever version replays them.
    pub fn validate_submission(&self) -> Result<(), DomainError> {
        for (name, value) in &self.command.env {
            if value.len() > MAX_ENV_VALUE_BYTES {
                return Err(invalid(
                    &format!("command.env.{name}"),
                    format!(
                        "a value is at most {MAX_ENV_VALUE_BYTES} bytes, got {}",
                        value.len()
                    ),
                ));
            }
            if value.contains('\0') {
                return Err(invalid(
                    &format!("command.env.{name}"),
                    "values must not contain NUL bytes",
                ));
            }
        }
        let env_bytes: usize = self
            .command
            .env
            .iter()
            .map(|(name, value)| name.len() + value.len())
            .sum();
        if env_bytes > MAX_ENV_BYTES {
            return Err(invalid(
                "command.env",
                format!(
                    "at most {MAX_ENV_BYTES} bytes of names and values in all, got {env_bytes}"
                ),
            ));
        }
        if let Some(dir) = &self.command.working_dir {
            if dir.is_empty() || dir.len() > MAX_WORKING_DIR_BYTES || dir.contains('\0') {
                return Err(invalid(
                    "command.working_dir",
                    format!("1 to {MAX_WORKING_DIR_BYTES} bytes, without NUL"),
                ));
            }
            if !dir.starts_with('/') && dir.split('/').any(|part| part == "..") {
                return Err(invalid(
                    "command.working_dir",
                    "a relative folder stays inside the worker's work folder: no `..`",
                ));
            }
        }
        if self.pool_selector.len() > MAX_POOL_SELECTOR {
            return Err(invalid(
                "pool_selector",
                format!(
                    "at most {MAX_POOL_SELECTOR} pools, got {}",
                    self.pool_selector.len()
                ),
            ));
        }
        Ok(())
    }

    /// Checks every field; the first problem is returned, naming its field.
    pub fn validate(&self) -> Result<(), DomainError> {
        if self.command.argv.is_empty() && self.simulate.is_none() {
            return Err(invalid(
                "command.argv",
                "must name the program to run (or give `simulate` for a simulated pool)",
            ));
        }
        if self.command.argv.len() > MAX_ARGV {
            return Err(invalid(
                "command.argv",
                format!("at most {MAX_ARGV} arguments"),
            ));
        }
        if self
            .command
            .argv
            .first()
            .is_some_and(|program| program.trim().is_empty())
        {
            return Err(invalid("command.argv[0]", "the program must not be blank"));
        }
        if self.command.argv.iter().map(String::len).sum::<usize>() > MAX_ARG_BYTES {
            return Err(invalid(
                "command.argv",
                format!("at most {MAX_ARG_BYTES} bytes in all"),
            ));
        }
        if self
            .command
            .argv
            .iter()
            .any(|argument| argument.contains('\0'))
        {
            return Err(invalid(
                "command.argv",
                "arguments must not contain NUL bytes",
            ));
        }
        if self.command.env.len() > MAX_ENV {
            return Err(invalid(
                "command.env",
                format!("at most {MAX_ENV} variables"),
            ));
        }
        for name in self.command.env.keys() {
            let valid = name
                .chars()
                .next()
                .is_some_and(|first| first.is_ascii_alphabetic() || first == '_')
                && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
            if !valid {
                return Err(invalid(
                    &format!("command.env.{name}"),
                    "variable names are [A-Za-z_][A-Za-z0-9_]*",
                ));
            }
        }
        if let Some(timeout_s) = self.command.timeout_s
            && !(1..=MAX_TIMEOUT_S).contains(&timeout_s)
        {
            return Err(invalid(
                "command.timeout_s",
                format!("must be between 1 and {MAX_TIMEOUT_S}, got {timeout_s}"),
            ));
        }
        if self.resources.cpu_m == 0 {
            return Err(invalid("resources.cpu_m", "must be at least 1"));
        }
        if self.resources.memory_mb == 0 {
            return Err(invalid("resources.memory_mb", "must be at least 1"));
        }
        if let Some(simulation) = self.simulate
            && simulation.duration_ms > MAX_SIMULATED_MS
        {
            return Err(invalid(
                "simulate.duration_ms",
                format!("must be at most {MAX_SIMULATED_MS}"),
            ));
        }
        if let Some(percent) = self.simulate.and_then(|simulation| simulation.used_percent)
            && percent > crate::usage::MAX_PERCENT
        {
            return Err(invalid(
                "simulate.used_percent",
                format!(
                    "must be at most {}, got {percent}",
                    crate::usage::MAX_PERCENT
                ),
            ));
        }
        if self.max_retries > MAX_RETRIES {
            return Err(invalid(
                "max_retries",
                format!("must be at most {MAX_RETRIES}, got {}", self.max_retries),
            ));
        }
        if let Some(key) = &self.idempotency_key
            && (key.is_empty() || key.len() > MAX_IDEMPOTENCY_KEY)
        {
            return Err(invalid(
                "idempotency_key",
                format!("1 to {MAX_IDEMPOTENCY_KEY} bytes"),
            ));
        }
        validate_labels("labels", &self.labels)
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Transition {
    pub state: JobState,
    pub at_ms: u64,
    #[serde(default)]
    pub reason: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Job {
    /// A uuid v7, chosen by the gateway.
    pub id: String,
    pub spec: JobSpec,
    pub state: JobState,
    /// 1 for the first run; a retry after a lost worker adds one.
    pub attempt: u32,
    #[serde(default)]
    pub worker: Option<String>,
    /// The pool of its worker while it holds one.
    #[serde(default)]
    pub pool: Option<String>,
    /// Admitted above quota under a burst session (billed at the premium).
    pub burst: bool,
    #[serde(default)]
    pub exit_code: Option<i32>,
    pub submitted_at_ms: u64,
    pub transitions: Vec<Transition>,
    /// When it must start (from its SLA), fixed at submission.
    #[serde(default)]
    pub sla_target_start_ms: Option<u64>,
    /// Every change of its SLA status, oldest first.
    #[serde(default)]
    pub sla_history: Vec<SlaChange>,
    /// What its last run cost, in nano-dollars (see `domain::cost`), once it ended.
    #[serde(default)]
    pub cost_nanos: Option<u64>,
    /// What its last run used, as its worker measured it, once it ended.
    #[serde(default)]
    pub usage: Option<crate::usage::RunUsage>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct SlaChange {
    pub status: SlaStatus,
    pub at_ms: u64,
}

impl Job {
    pub fn new(id: String, spec: JobSpec, submitted_at_ms: u64) -> Self {
        Self {
            id,
            spec,
            state: JobState::Pending,
            attempt: 1,
            worker: None,
            pool: None,
            burst: false,
            exit_code: None,
            submitted_at_ms,
            transitions: vec![Transition {
                state: JobState::Pending,
                at_ms: submitted_at_ms,
                reason: None,
            }],
            sla_target_start_ms: None,
            sla_history: Vec::new(),
            cost_nanos: None,
            usage: None,
        }
    }

    /// When its last run started, if it ran.
    pub fn started_at_ms(&self) -> Option<u64> {
        self.transitions
            .iter()
            .rev()
            .find(|step| step.state == JobState::Running)
            .map(|step| step.at_ms)
    }

    /// When its current run started, while it runs (not an earlier attempt's start).
    pub fn running_since_ms(&self) -> Option<u64> {
        (self.state == JobState::Running)
            .then(|| self.transitions.last().map(|step| step.at_ms))
            .flatten()
    }

    /// The run that ended the job, [start, end], if it was running when it ended.
    pub fn final_run_ms(&self) -> Option<(u64, u64)> {
        let [.., before, last] = self.transitions.as_slice() else {
            return None;
        };
        (last.state.is_final() && before.state == JobState::Running)
            .then_some((before.at_ms, last.at_ms))
    }

    /// When it reached its final state, if it did.
    pub fn finished_at_ms(&self) -> Option<u64> {
        self.transitions
            .last()
            .filter(|step| step.state.is_final())
            .map(|step| step.at_ms)
    }

    /// Its SLA clock at `now_ms`, if it has an SLA.
    pub fn sla_clock(&self, now_ms: u64, predicted_start_ms: Option<u64>) -> Option<SlaClock> {
        let start_target_ms = self.sla_target_start_ms?;
        Some(SlaClock {
            submitted_at_ms: self.submitted_at_ms,
            start_target_ms,
            finish_by_ms: self.spec.sla.and_then(|sla| sla.finish_by_ms),
            started_at_ms: self.started_at_ms(),
            finished_at_ms: self.finished_at_ms(),
            now_ms,
            predicted_start_ms,
        })
    }

    /// The last recorded SLA status.
    pub fn sla_status(&self) -> Option<SlaStatus> {
        self.sla_history.last().map(|change| change.status)
    }

    /// Records `status` at `at_ms` if it differs from the last one; a verdict is final.
    pub fn record_sla(&mut self, status: SlaStatus, at_ms: u64) -> bool {
        let last = self.sla_status();
        if last == Some(status)
            || last.is_some_and(SlaStatus::is_verdict) && status != SlaStatus::Violated
        {
            return false;
        }
        if last == Some(SlaStatus::Violated) {
            return false;
        }
        self.sla_history.push(SlaChange { status, at_ms });
        true
    }

    /// Moves the job to `next` at `at_ms`, or refuses an illegal move naming the state.
    pub fn transition(
        &mut self,
        next: JobState,
        at_ms: u64,
        reason: Option<String>,
    ) -> Result<(), DomainError> {
        if !self.state.can_become(next) {
            return Err(DomainError::Conflict(format!(
                "job {} is {}; it cannot become {}",
                self.id,
                self.state.as_str(),
                next.as_str()
            )));
        }
        self.state = next;
        // Back to pending: no worker holds it. A cancelled job keeps the worker and pool
        // it ran on (none if it was pending), as a finished one does.
        if next == JobState::Pending {
            self.worker = None;
            self.pool = None;
        }
        self.transitions.push(Transition {
            state: next,
            at_ms,
            reason,
        });
        Ok(())
    }

    /// Its worker was lost: back to pending for another attempt, or failed once
    /// `max_retries` are spent.
    pub fn worker_lost(&mut self, at_ms: u64) -> Result<(), DomainError> {
        if self.attempt > self.spec.max_retries {
            let reason = format!(
                "worker lost; {} attempt(s), max_retries {}",
                self.attempt, self.spec.max_retries
            );
            return self.transition(JobState::Failed, at_ms, Some(reason));
        }
        self.transition(
            JobState::Pending,
            at_ms,
            Some("worker lost; re-queued".to_string()),
        )?;
        self.attempt = self.attempt.saturating_add(1);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    fn spec() -> JobSpec {
        JobSpec {
            tenant: TenantId::parse("acme").unwrap(),
            queue: "default".to_string(),
            priority: Priority::Normal,
            resources: Resources::new(500, 256, 0),
            command: CommandSpec {
                argv: vec!["echo".to_string(), "hello".to_string()],
                ..CommandSpec::default()
            },
            simulate: None,
            labels: Labels::new(),
            max_retries: 1,
            idempotency_key: None,
            pool_selector: Vec::new(),
            sla: None,
        }
    }

    fn field_of(error: DomainError) -> String {
        match error {
            DomainError::Invalid { field, .. } => field,
            other => panic!("expected an invalid field, got {other:?}"),
        }
    }

    #[test]
    fn env_values_working_dirs_and_selectors_are_bounded() {
        let mut big = spec();
        big.command
            .env
            .insert("BIG".into(), "x".repeat(MAX_ENV_VALUE_BYTES + 1));
        assert_eq!(
            field_of(big.validate_submission().unwrap_err()),
            "command.env.BIG"
        );
        let mut many = spec();
        for index in 0..8 {
            many.command
                .env
                .insert(format!("V{index}"), "x".repeat(MAX_ENV_VALUE_BYTES / 2));
        }
        assert_eq!(
            field_of(many.validate_submission().unwrap_err()),
            "command.env"
        );
        let mut nul = spec();
        nul.command.env.insert("NUL".into(), "a\0b".into());
        assert_eq!(
            field_of(nul.validate_submission().unwrap_err()),
            "command.env.NUL"
        );
        for dir in ["../elsewhere", "a/../../b", ""] {
            let mut escaping = spec();
            escaping.command.working_dir = Some(dir.to_string());
            assert_eq!(
                field_of(escaping.validate_submission().unwrap_err()),
                "command.working_dir",
                "{dir}"
            );
        }
        let mut inside = spec();
        inside.command.working_dir = Some("build/out".to_string());
        inside.validate_submission().unwrap();
        let mut selector = spec();
        selector.pool_selector = (0..=MAX_POOL_SELECTOR)
            .map(|index| format!("p{index}"))
            .collect();
        assert_eq!(
            field_of(selector.validate_submission().unwrap_err()),
            "pool_selector"
        );
    }

    #[test]
    fn a_plain_command_is_valid() {
        assert!(spec().validate().is_ok());
    }

    #[test]
    fn bad_specs_name_their_field() {
        let cases: Vec<(JobSpec, &str)> = vec![
            (
                JobSpec {
                    command: CommandSpec::default(),
                    ..spec()
                },
                "command.argv",
            ),
            (
                JobSpec {
                    command: CommandSpec {
                        argv: vec![" ".into()],
                        ..CommandSpec::default()
                    },
                    ..spec()
                },
                "command.argv[0]",
            ),
            (
                JobSpec {
                    resources: Resources::new(0, 256, 0),
                    ..spec()
                },
                "resources.cpu_m",
            ),
            (
                JobSpec {
                    resources: Resources::new(500, 0, 0),
                    ..spec()
                },
                "resources.memory_mb",
            ),
            (
                JobSpec {
                    command: CommandSpec {
                        timeout_s: Some(0),
                        ..spec().command
                    },
                    ..spec()
                },
                "command.timeout_s",
            ),
            (
                JobSpec {
                    command: CommandSpec {
                        env: BTreeMap::from([("1BAD".to_string(), String::new())]),
                        ..spec().command
                    },
                    ..spec()
                },
                "command.env.1BAD",
            ),
            (
                JobSpec {
                    max_retries: 101,
                    ..spec()
                },
                "max_retries",
            ),
            (
                JobSpec {
                    idempotency_key: Some(String::new()),
                    ..spec()
                },
                "idempotency_key",
            ),
        ];
        for (bad, field) in cases {
            assert_eq!(field_of(bad.validate().unwrap_err()), field);
        }
        let simulated = JobSpec {
            command: CommandSpec::default(),
            simulate: Some(Simulation {
                duration_ms: 10,
                exit_code: 0,
                used_percent: None,
            }),
            ..spec()
        };
        assert!(
            simulated.validate().is_ok(),
            "a simulated job needs no argv"
        );
    }

    #[test]
    fn the_happy_path_and_its_timestamps() {
        let mut job = Job::new("j".to_string(), spec(), 1);
        job.transition(JobState::Assigned, 2, None).unwrap();
        job.transition(JobState::Running, 3, None).unwrap();
        job.transition(JobState::Succeeded, 4, None).unwrap();
        let states: Vec<(JobState, u64)> = job
            .transitions
            .iter()
            .map(|step| (step.state, step.at_ms))
            .collect();
        assert_eq!(
            states,
            [
                (JobState::Pending, 1),
                (JobState::Assigned, 2),
                (JobState::Running, 3),
                (JobState::Succeeded, 4)
            ]
        );
        assert!(matches!(
            job.transition(JobState::Cancelled, 5, None),
            Err(DomainError::Conflict(_))
        ));
    }

    #[test]
    fn a_lost_worker_requeues_until_retries_are_spent() {
        let mut job = Job::new("j".to_string(), spec(), 1);
        job.transition(JobState::Assigned, 2, None).unwrap();
        job.transition(JobState::Running, 3, None).unwrap();
        job.worker_lost(4).unwrap();
        assert_eq!((job.state, job.attempt), (JobState::Pending, 2));
        job.transition(JobState::Assigned, 5, None).unwrap();
        job.worker_lost(6).unwrap();
        assert_eq!(
            job.state,
            JobState::Failed,
            "max_retries 1: the second loss fails it"
        );
    }

    fn state() -> impl Strategy<Value = JobState> {
        prop_oneof![
            Just(JobState::Pending),
            Just(JobState::Assigned),
            Just(JobState::Running),
            Just(JobState::Succeeded),
            Just(JobState::Failed),
            Just(JobState::TimedOut),
            Just(JobState::Cancelled),
        ]
    }

    proptest! {
        /// Whatever is attempted, a final state is never left, and only legal moves land.
        #[test]
        fn final_states_are_final(moves in proptest::collection::vec(state(), 0..40)) {
            let mut job = Job::new("j".to_string(), spec(), 0);
            let mut moves_made = 0;
            for (step, next) in moves.into_iter().enumerate() {
                let before = job.state;
                let moved = job.transition(next, step as u64 + 1, None).is_ok();
                prop_assert_eq!(moved, before.can_become(next));
                if moved {
                    moves_made += 1;
                    prop_assert_eq!(job.state, next);
                } else {
                    prop_assert_eq!(job.state, before);
                }
            }
            prop_assert_eq!(job.transitions.len(), moves_made + 1, "every move is recorded, once");
        }
    }
}
