//! `hodei job submit|get|list|cancel|logs`, over gRPC to any node.

use std::collections::HashMap;

use clap::Subcommand;
use hodei_proto::v1 as pb;
use hodei_proto::v1::job_service_client::JobServiceClient;
use tonic::transport::Channel;

use crate::cli::tenant_cmd::{Connection, grpc_channel, request, status_error};

#[derive(Debug, Subcommand)]
pub enum JobCommand {
    /// Submit a job: `hodei job submit [flags] -- PROGRAM ARGS...`.
    Submit {
        #[arg(long)]
        tenant: Option<String>,
        #[arg(long)]
        queue: Option<String>,
        /// CPU in millicores (default 1000).
        #[arg(long)]
        cpu_m: Option<u64>,
        /// Memory in MiB (default 512).
        #[arg(long)]
        memory_mb: Option<u64>,
        /// critical | high | normal | low | batch
        #[arg(long)]
        priority: Option<String>,
        /// Kill the job after this many seconds.
        #[arg(long)]
        timeout_s: Option<u64>,
        /// Attempts after a lost worker before the job fails.
        #[arg(long)]
        max_retries: Option<u32>,
        /// A repeat with the same key returns the first job.
        #[arg(long)]
        idempotency_key: Option<String>,
        /// An environment variable, `NAME=value` (repeatable).
        #[arg(long = "env", value_parser = parse_pair)]
        env: Vec<(String, String)>,
        /// Where the job runs (relative paths are taken from the worker's work dir).
        #[arg(long)]
        working_dir: Option<String>,
        /// Service level: critical | high | medium | low | best_effort.
        #[arg(long)]
        sla: Option<String>,
        /// Show each state change and exit with the job's exit code.
        #[arg(long)]
        wait: bool,
        #[command(flatten)]
        connection: Connection,
        /// The program and its arguments.
        #[arg(last = true, required = true)]
        argv: Vec<String>,
    },
    /// Show one job.
    Get {
        id: String,
        #[command(flatten)]
        connection: Connection,
    },
    /// List jobs, newest last (one page; --cursor for the next).
    List {
        #[arg(long)]
        tenant: Option<String>,
        #[arg(long)]
        queue: Option<String>,
        #[arg(long)]
        state: Option<String>,
        #[arg(long)]
        limit: Option<u32>,
        #[arg(long)]
        cursor: Option<String>,
        #[command(flatten)]
        connection: Connection,
    },
    /// Cancel a job (a running process is killed).
    Cancel {
        id: String,
        #[command(flatten)]
        connection: Connection,
    },
    /// Print the tail of a finished job's output.
    Logs {
        id: String,
        #[command(flatten)]
        connection: Connection,
    },
}

fn parse_pair(raw: &str) -> Result<(String, String), String> {
    raw.split_once('=')
        .map(|(key, value)| (key.to_string(), value.to_string()))
        .ok_or_else(|| format!("expected NAME=value, got `{raw}`"))
}

/// Follows a submitted job until it is final: each transition once, then its output tail.
/// The exit code is the job's (0 when it succeeded).
async fn follow(
    jobs: &mut JobServiceClient<Channel>,
    job: pb::Job,
    connection: &Connection,
) -> anyhow::Result<i32> {
    let mut stream = jobs
        .watch_job(job_request(job.id.clone(), connection)?)
        .await
        .map_err(status_error)?
        .into_inner();
    println!("{}", job.id);
    let mut last = job;
    let mut shown = 0;
    while let Some(update) = stream.message().await.map_err(status_error)? {
        // Every transition once, even when several happened between two updates.
        for step in update.transitions.iter().skip(shown) {
            match &step.reason {
                Some(reason) => {
                    println!("  {:<9} at {} ({reason})", step.state, step.at_ms)
                }
                None => println!("  {:<9} at {}", step.state, step.at_ms),
            }
        }
        shown = update.transitions.len();
        last = update;
        if is_final(&last.state) {
            break;
        }
    }
    println!("{}", summary(&last));
    if !is_final(&last.state) {
        anyhow::bail!("the watch ended before job {} finished", last.id);
    }
    let logs = jobs
        .get_job_logs(job_request(last.id.clone(), connection)?)
        .await
        .map_err(status_error)?
        .into_inner();
    print!("{}", logs.output_tail);
    Ok(match last.state.as_str() {
        "succeeded" => 0,
        _ => last.exit_code.filter(|code| *code != 0).unwrap_or(1),
    })
}

/// Prints one job in full.
async fn get(id: String, connection: &Connection) -> anyhow::Result<i32> {
    let job = client(connection)
        .await?
        .get_job(job_request(id, connection)?)
        .await
        .map_err(status_error)?
        .into_inner();
    print_job(&job);
    Ok(0)
}

/// Prints a job's output tail.
async fn logs(id: String, connection: &Connection) -> anyhow::Result<i32> {
    let logs = client(connection)
        .await?
        .get_job_logs(job_request(id, connection)?)
        .await
        .map_err(status_error)?
        .into_inner();
    print!("{}", logs.output_tail);
    Ok(0)
}

/// Prints one page of jobs, and the cursor of the next.
async fn list(filter: pb::ListJobsRequest, connection: &Connection) -> anyhow::Result<i32> {
    let page = client(connection)
        .await?
        .list_jobs(request(filter, connection)?)
        .await
        .map_err(status_error)?
        .into_inner();
    for job in &page.items {
        println!("{}", summary(job));
    }
    if let Some(next) = page.next_cursor {
        println!("(more: --cursor {next})");
    }
    Ok(0)
}

/// The request naming one job (read as the server's default, linearizable).
fn job_request(
    id: String,
    connection: &Connection,
) -> anyhow::Result<tonic::Request<pb::GetJobRequest>> {
    request(
        pb::GetJobRequest {
            id,
            consistency: String::new(),
        },
        connection,
    )
}

async fn client(connection: &Connection) -> anyhow::Result<JobServiceClient<Channel>> {
    Ok(JobServiceClient::new(grpc_channel(&connection.addr).await?))
}

fn summary(job: &pb::Job) -> String {
    let spec = job.spec.clone().unwrap_or_default();
    let mut line = format!(
        "{}  {:<9}  tenant={} queue={} attempt={}",
        job.id, job.state, spec.tenant, spec.queue, job.attempt
    );
    if let Some(worker) = &job.worker {
        line.push_str(&format!(" worker={worker}"));
    }
    if let Some(code) = job.exit_code {
        line.push_str(&format!(" exit_code={code}"));
    }
    if let Some(position) = job.queue_position {
        line.push_str(&format!(" queue_position={position}"));
    }
    line
}

fn print_job(job: &pb::Job) {
    println!("{}", summary(job));
    let spec = job.spec.clone().unwrap_or_default();
    if let Some(command) = spec.command {
        println!("  argv: {:?}", command.argv);
    }
    for step in &job.transitions {
        match &step.reason {
            Some(reason) => println!("  {} {} ({reason})", step.at_ms, step.state),
            None => println!("  {} {}", step.at_ms, step.state),
        }
    }
}

fn is_final(state: &str) -> bool {
    matches!(state, "succeeded" | "failed" | "timed_out" | "cancelled")
}

/// Runs a job command; returns the process exit code (the job's, with `submit --wait`).
pub async fn run(command: JobCommand) -> anyhow::Result<i32> {
    match command {
        JobCommand::Submit {
            tenant,
            queue,
            cpu_m,
            memory_mb,
            priority,
            timeout_s,
            max_retries,
            idempotency_key,
            env,
            working_dir,
            sla,
            wait,
            connection,
            argv,
        } => {
            let resources = (cpu_m.is_some() || memory_mb.is_some()).then(|| pb::JobResources {
                cpu_m: cpu_m.unwrap_or(1_000),
                memory_mb: memory_mb.unwrap_or(512),
                gpu: 0,
            });
            let spec = pb::JobSpec {
                tenant: tenant.unwrap_or_default(),
                queue: queue.unwrap_or_default(),
                priority: priority.unwrap_or_default(),
                resources,
                command: Some(pb::JobCommand {
                    argv,
                    env: env.into_iter().collect::<HashMap<_, _>>(),
                    working_dir,
                    timeout_s,
                }),
                simulate: None,
                labels: HashMap::new(),
                max_retries,
                idempotency_key,
                pool_selector: Vec::new(),
                sla: sla.map(|level| pb::JobSla {
                    level,
                    start_by_ms: None,
                    finish_by_ms: None,
                }),
            };
            let mut jobs = client(&connection).await?;
            let submitted = jobs
                .submit_job(request(
                    pb::SubmitJobRequest { job: Some(spec) },
                    &connection,
                )?)
                .await
                .map_err(status_error)?
                .into_inner();
            let job = submitted.job.unwrap_or_default();
            if !wait {
                println!("{}", summary(&job));
                return Ok(0);
            }
            follow(&mut jobs, job, &connection).await
        }
        JobCommand::Get { id, connection } => get(id, &connection).await,
        JobCommand::List {
            tenant,
            queue,
            state,
            limit,
            cursor,
            connection,
        } => {
            let filter = pb::ListJobsRequest {
                tenant: tenant.unwrap_or_default(),
                queue: queue.unwrap_or_default(),
                state: state.unwrap_or_default(),
                label: String::new(),
                limit,
                cursor: cursor.unwrap_or_default(),
                consistency: String::new(),
            };
            list(filter, &connection).await
        }
        JobCommand::Cancel { id, connection } => {
            let job = client(&connection)
                .await?
                .cancel_job(request(pb::CancelJobRequest { id }, &connection)?)
                .await
                .map_err(status_error)?
                .into_inner();
            println!("{}", summary(&job));
            Ok(0)
        }
        JobCommand::Logs { id, connection } => logs(id, &connection).await,
    }
}
