//! The `simulated` provider: virtual workers inside the leader. A simulated pool's actor
//! starts its workers through [`SimulatedProvider`], which registers them through the same
//! command as real agents; a job assigned
//! to one "runs" for its `simulate.duration_ms` and ends with its `simulate.exit_code`,
//! reported through the same apply paths a real worker's reports take. Used for load
//! tests and demos with thousands of concurrent jobs.
//!
//! One loop runs every virtual run: a timer heap of the runs' ends, and the starts and
//! ends due at each moment proposed together as one `RunReports` command (so ten
//! thousand runs cost a few commands a second, not two each).

use std::cmp::Reverse;
use std::collections::{BTreeMap, BTreeSet, BinaryHeap, HashMap};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use tokio::sync::broadcast::error::RecvError;
use tokio::time::Instant;
use tracing::{info, warn};

use crate::actors::gateway::propose;
use crate::actors::workers::provider::WorkerProvider;
use crate::actors::{NodeContext, now_ms};
use crate::state::command;
use crate::state::command::StartReport;
use crate::state::{CommandV1, DomainEvent};
use hodei_domain::job::JobState;
use hodei_domain::pool::Pool;
use hodei_domain::run::{RunOutcome, RunReport, WorkerRegistration};

/// The most reports in one command.
const MAX_REPORTS: usize = 5_000;

/// A run's end, ordered by when it is due. Kept small (tens of thousands are held at
/// once): the worker, exit code and duration are read from the job when it ends.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
struct DueEnd {
    at: Instant,
    job: Arc<str>,
    attempt: u32,
}

#[derive(Default)]
struct Simulator {
    /// Every run this leader simulates (job and attempt), from its assignment to its
    /// reported end.
    runs: HashMap<Arc<str>, u32>,
    ends: BinaryHeap<Reverse<DueEnd>>,
    /// Starts not yet committed.
    starts: Vec<StartReport>,
    /// Ends due and not yet committed.
    finished: Vec<RunReport>,
}

impl Simulator {
    fn stop_all(&mut self) {
        *self = Self::default();
    }

    /// Starts a run for every job held by a virtual worker (of `only`, or of all) that has
    /// none yet: its start is reported at once and its end scheduled.
    fn start_runs(&mut self, node: &NodeContext, only: Option<&BTreeSet<String>>) {
        let now = Instant::now();
        let at_ms = now_ms();
        let runs = &mut self.runs;
        let starts = &mut self.starts;
        let ends = &mut self.ends;
        node.read(|state| {
            let workers: Box<dyn Iterator<Item = _>> = match only {
                Some(ids) => Box::new(ids.iter().filter_map(|id| state.worker(id))),
                None => Box::new(state.workers()),
            };
            for worker in workers.filter(|worker| worker.simulated && worker.is_live()) {
                for job in worker.jobs.iter().filter_map(|id| state.job(id)) {
                    if runs.get(job.id.as_str()) == Some(&job.attempt) {
                        continue;
                    }
                    let id: Arc<str> = Arc::from(job.id.as_str());
                    runs.insert(id.clone(), job.attempt);
                    if job.state == JobState::Assigned {
                        starts.push(StartReport {
                            job: job.id.clone(),
                            attempt: job.attempt,
                            worker: worker.id.clone(),
                            at_ms,
                        });
                    }
                    let simulation = job.spec.simulate.unwrap_or_default();
                    ends.push(Reverse(DueEnd {
                        at: now + Duration::from_millis(simulation.duration_ms),
                        job: id,
                        attempt: job.attempt,
                    }));
                }
            }
        });
    }

    /// Moves the ends due by now into the reports to send. A run whose job has moved on
    /// (cancelled, or its worker lost) ends without a report.
    fn collect_due(&mut self, node: &NodeContext) {
        let now = Instant::now();
        let at_ms = now_ms();
        let mut due = Vec::new();
        while let Some(Reverse(next)) = self.ends.peek()
            && next.at <= now
        {
            let Some(Reverse(end)) = self.ends.pop() else {
                break;
            };
            due.push(end);
        }
        if due.is_empty() {
            return;
        }
        let runs = &mut self.runs;
        let finished = &mut self.finished;
        node.read(|state| {
            for end in due {
                // The run is over for the simulator whether or not its report commits: if
                // it does not, the job is still held by its worker and the next tick
                // simulates it again.
                if runs.get(&end.job) == Some(&end.attempt) {
                    runs.remove(&end.job);
                }
                let current = state.job(&end.job).filter(|job| {
                    job.attempt == end.attempt
                        && matches!(job.state, JobState::Assigned | JobState::Running)
                });
                let Some(job) = current else {
                    continue;
                };
                let Some(worker) = job.worker.clone() else {
                    continue;
                };
                let simulation = job.spec.simulate.unwrap_or_default();
                finished.push(RunReport {
                    job: job.id.clone(),
                    attempt: end.attempt,
                    worker,
                    outcome: if simulation.exit_code == 0 {
                        RunOutcome::Succeeded
                    } else {
                        RunOutcome::Failed
                    },
                    exit_code: Some(simulation.exit_code),
                    output_tail: format!(
                        "simulated run of {} ms, exit code {}\n",
                        simulation.duration_ms, simulation.exit_code
                    ),
                    at_ms,
                    usage: Some(hodei_domain::usage::RunUsage::simulated(
                        job.spec.resources,
                        at_ms.saturating_sub(job.running_since_ms().unwrap_or(at_ms)),
                        simulation.used_percent.unwrap_or(100),
                    )),
                });
            }
        });
    }

    fn next_end(&self) -> Option<Instant> {
        self.ends.peek().map(|Reverse(next)| next.at)
    }

    /// Commits the pending reports, a batch at a time. Reports that fail are dropped: an
    /// uncommitted start is implied by the end (apply accepts an end of an assigned job),
    /// and a run whose end did not commit is simulated again from the next tick.
    async fn report(&mut self, node: &NodeContext) {
        while !self.starts.is_empty() || !self.finished.is_empty() {
            let starts_taken = self.starts.len().min(MAX_REPORTS);
            let finished_taken = self
                .finished
                .len()
                .min(MAX_REPORTS.saturating_sub(starts_taken));
            let command = CommandV1::RunReports(command::RunReports {
                started: self.starts.drain(..starts_taken).collect(),
                finished: self.finished.drain(..finished_taken).collect(),
            });
            if let Err(error) = propose(node, command).await {
                warn!(%error, "simulated run reports not committed; their runs are simulated again");
                self.starts.clear();
                self.finished.clear();
                return;
            }
        }
    }
}

/// The leader's simulator loop; on other nodes it idles.
pub async fn run(node: NodeContext) {
    let mut simulator = Simulator::default();
    let mut events = node.read(|state| state.subscribe());
    let mut ticker = tokio::time::interval(Duration::from_millis(500));
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        let next_end = simulator.next_end();
        let wake = async {
            match next_end {
                Some(at) => tokio::time::sleep_until(at).await,
                None => std::future::pending().await,
            }
        };
        enum Woken {
            Assigned(Option<BTreeSet<String>>),
            Tick,
            Due,
        }
        let woken = tokio::select! {
            event = events.recv() => match event {
                Ok(DomainEvent::JobsAssigned(workers)) => Woken::Assigned(Some(workers)),
                Err(RecvError::Lagged(_)) => Woken::Assigned(None),
                Ok(_) => continue,
                Err(RecvError::Closed) => return,
            },
            _ = ticker.tick() => Woken::Tick,
            _ = wake => Woken::Due,
        };
        if !node.raft.is_leader() {
            simulator.stop_all();
            continue;
        }
        match woken {
            Woken::Tick => simulator.start_runs(&node, None),
            Woken::Assigned(workers) => simulator.start_runs(&node, workers.as_ref()),
            Woken::Due => {}
        }
        simulator.collect_due(&node);
        simulator.report(&node).await;
    }
}

/// Starts a simulated pool's virtual workers: a start is one `RegisterWorker` command,
/// proposed in a task. One per pool actor.
pub struct SimulatedProvider {
    node: NodeContext,
    /// Workers registered (or being registered) and not stopped: id -> (pool, when).
    started: Mutex<BTreeMap<String, (String, std::time::Instant)>>,
}

impl SimulatedProvider {
    pub fn new(node: NodeContext) -> Self {
        Self {
            node,
            started: Mutex::new(BTreeMap::new()),
        }
    }

    fn started(&self) -> MutexGuard<'_, BTreeMap<String, (String, std::time::Instant)>> {
        self.started.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl WorkerProvider for SimulatedProvider {
    fn start(&self, pool: &Pool, live: &[String], _servers: &[String]) -> Result<String, String> {
        let mut started = self.started();
        let id = (0..u32::MAX)
            .map(|index| pool.simulated_worker_id(index))
            .find(|id| !live.contains(id) && !started.contains_key(id))
            .ok_or_else(|| format!("pool {} has no free virtual worker id", pool.id))?;
        started.insert(id.clone(), (pool.id.clone(), std::time::Instant::now()));
        drop(started);
        let registration = WorkerRegistration {
            id: id.clone(),
            pool: pool.id.clone(),
            capacity: pool.worker_shape,
            labels: Default::default(),
            simulated: true,
            running: Vec::new(),
        };
        let node = self.node.clone();
        let registered = id.clone();
        tokio::spawn(async move {
            let command = CommandV1::RegisterWorker(command::RegisterWorker {
                registration,
                at_ms: now_ms(),
                provisioned_at_ms: None,
            });
            match propose(&node, command).await {
                Ok(_) => info!(worker = %registered, "simulated worker registered"),
                // The pool actor sees it never registered, and starts another.
                Err(error) => {
                    warn!(worker = %registered, %error, "simulated worker not registered")
                }
            }
        });
        Ok(id)
    }

    fn stop(&self, worker: &str) {
        self.started().remove(worker);
    }

    fn running(&self, pool: &str) -> Vec<(String, std::time::Instant)> {
        self.started()
            .iter()
            .filter(|(_, (of, _))| of == pool)
            .map(|(worker, (_, at))| (worker.clone(), *at))
            .collect()
    }
}
