//! The `simulated` provider: virtual workers inside the leader. Each simulated pool gets
//! `min_size` workers, registered through the same command as real agents; a job assigned
//! to one "runs" for its `simulate.duration_ms` and ends with its `simulate.exit_code`,
//! through the same start and finish commands a real worker's reports become. Used for
//! load tests and demos with thousands of concurrent jobs.

use std::collections::{BTreeSet, HashMap};
use std::time::Duration;

use tokio::sync::broadcast::error::RecvError;
use tokio::task::JoinHandle;
use tracing::{info, warn};

use crate::actors::gateway::propose;
use crate::actors::{NodeContext, now_ms};
use crate::domain::job::{Job, JobState};
use crate::domain::pool::PoolProvider;
use crate::state::jobs::{RunOutcome, RunReport, WorkerRegistration};
use crate::state::{CommandV1, DomainEvent};

type RunKey = (String, u32);

#[derive(Default)]
struct Simulator {
    runs: HashMap<RunKey, JoinHandle<()>>,
    registering: BTreeSet<String>,
}

impl Simulator {
    fn stop_all(&mut self) {
        for (_, run) in self.runs.drain() {
            run.abort();
        }
        self.registering.clear();
    }

    /// Registers the missing (or lost) virtual workers of every simulated pool.
    fn ensure_workers(&mut self, node: &NodeContext) {
        let missing: Vec<WorkerRegistration> = node.read(|state| {
            state
                .pools()
                .filter(|pool| pool.provider == PoolProvider::Simulated)
                .flat_map(|pool| {
                    (0..pool.desired_size).filter_map(move |index| {
                        let id = pool.simulated_worker_id(index);
                        let present = state.worker(&id).is_some_and(|worker| worker.is_live());
                        (!present).then(|| WorkerRegistration {
                            id,
                            pool: pool.id.clone(),
                            capacity: pool.worker_shape,
                            labels: Default::default(),
                            simulated: true,
                            running: Vec::new(),
                        })
                    })
                })
                .collect()
        });
        for registration in missing {
            if !self.registering.insert(registration.id.clone()) {
                continue;
            }
            let node = node.clone();
            tokio::spawn(async move {
                let id = registration.id.clone();
                let command = CommandV1::RegisterWorker {
                    registration,
                    at_ms: now_ms(),
                };
                match propose(&node, command).await {
                    Ok(_) => info!(worker = %id, "simulated worker registered"),
                    Err(error) => warn!(worker = %id, %error, "simulated worker not registered"),
                }
            });
        }
    }

    /// Starts a run for every job held by a virtual worker that has none yet. Only the
    /// new ones are copied out of the state (this runs on every assignment).
    fn start_runs(&mut self, node: &NodeContext) {
        self.runs.retain(|_, run| !run.is_finished());
        let runs = &self.runs;
        let new: Vec<(String, Job)> = node.read(|state| {
            state
                .workers()
                .filter(|worker| worker.simulated && worker.is_live())
                .flat_map(|worker| {
                    worker.jobs.iter().filter_map(move |id| {
                        let job = state.job(id)?;
                        (!runs.contains_key(&(job.id.clone(), job.attempt)))
                            .then(|| (worker.id.clone(), job.clone()))
                    })
                })
                .collect()
        });
        for (worker, job) in new {
            let run_key = (job.id.clone(), job.attempt);
            let run = tokio::spawn(simulate(node.clone(), worker, job));
            self.runs.insert(run_key, run);
        }
    }
}

async fn simulate(node: NodeContext, worker: String, job: Job) {
    let simulation = job.spec.simulate.unwrap_or_default();
    if job.state == JobState::Assigned {
        let started = CommandV1::JobStarted {
            job: job.id.clone(),
            attempt: job.attempt,
            worker: worker.clone(),
            at_ms: now_ms(),
        };
        if let Err(error) = propose(&node, started).await {
            warn!(job = %job.id, %error, "simulated start not committed");
            return;
        }
    }
    tokio::time::sleep(Duration::from_millis(simulation.duration_ms)).await;
    let outcome = if simulation.exit_code == 0 {
        RunOutcome::Succeeded
    } else {
        RunOutcome::Failed
    };
    let finished = CommandV1::JobFinished {
        report: RunReport {
            job: job.id.clone(),
            attempt: job.attempt,
            worker,
            outcome,
            exit_code: Some(simulation.exit_code),
            output_tail: format!(
                "simulated run of {} ms, exit code {}\n",
                simulation.duration_ms, simulation.exit_code
            ),
            at_ms: now_ms(),
        },
    };
    if let Err(error) = propose(&node, finished).await {
        warn!(job = %job.id, %error, "simulated finish not committed");
    }
}

/// The leader's simulator loop; on other nodes it idles.
pub async fn run(node: NodeContext) {
    let mut simulator = Simulator::default();
    let mut events = node.read(|state| state.subscribe());
    let mut ticker = tokio::time::interval(Duration::from_millis(500));
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        let tick = tokio::select! {
            event = events.recv() => match event {
                Ok(DomainEvent::JobsAssigned(_)) | Err(RecvError::Lagged(_)) => false,
                Ok(_) => continue,
                Err(RecvError::Closed) => return,
            },
            _ = ticker.tick() => true,
        };
        if !node.raft.is_leader() {
            simulator.stop_all();
            continue;
        }
        if tick {
            simulator.registering.clear();
            simulator.ensure_workers(&node);
        }
        simulator.start_runs(&node);
    }
}
