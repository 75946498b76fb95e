//! `hodei worker`: the worker agent.

use std::path::PathBuf;

use clap::Args;

use crate::cli::api::parse_pair;
use crate::cli::pool_cmd::WorkerCommand;

use crate::worker::agent::{AgentSettings, Runner, run};
use hodei_domain::labels::Labels;
use hodei_domain::resources::Resources;

/// `hodei worker [agent flags]` runs an agent; `hodei worker list` lists workers.
#[derive(Debug, Args)]
#[command(args_conflicts_with_subcommands = true, subcommand_negates_reqs = true)]
pub struct WorkerCli {
    #[command(subcommand)]
    pub command: Option<WorkerCommand>,
    #[command(flatten)]
    pub agent: WorkerArgs,
}

#[derive(Debug, Args)]
pub struct WorkerArgs {
    /// The pool to join.
    #[arg(long, default_value = "pool-default")]
    pub pool: String,
    /// gRPC addresses of the nodes, comma-separated (any node; the leader is found).
    #[arg(
        long,
        env = "HODEI_SERVERS",
        value_delimiter = ',',
        default_value = "127.0.0.1:9090"
    )]
    pub servers: Vec<String>,
    /// CPU this worker offers, in millicores.
    #[arg(long, default_value_t = 4_000)]
    pub cpu_m: u64,
    /// Memory this worker offers, in MiB.
    #[arg(long, default_value_t = 8_192)]
    pub memory_mb: u64,
    /// GPUs this worker offers.
    #[arg(long, default_value_t = 0)]
    pub gpu: u64,
    /// A label, `key=value` (repeatable).
    #[arg(long = "labels", value_delimiter = ',', value_parser = parse_pair)]
    pub labels: Vec<(String, String)>,
    /// A stable id: a restarted worker with the same id has its old runs reported lost at
    /// once. Default: host name and process id.
    #[arg(long)]
    pub id: Option<String>,
    /// Where jobs run unless they name a directory (default: the current directory).
    #[arg(long)]
    pub work_dir: Option<PathBuf>,
    /// Asked to stop (SIGTERM, Ctrl-C): how long running jobs may go on before they are
    /// killed (and re-queued, as for a lost worker).
    #[arg(long, default_value_t = 10)]
    pub shutdown_grace_s: u64,
    /// The local address this agent's connections to the nodes leave from, on a host with
    /// several (an IP address of this host); default: the system's choice.
    #[arg(long)]
    pub source_addr: Option<std::net::IpAddr>,
    /// How jobs run: `process` (their command, as a child process), or for benchmarks of
    /// the scheduler alone `instant` (no process: started and succeeded at once) or
    /// `sleep:MS` (no process: succeeded after MS milliseconds).
    #[arg(long, default_value = "process", value_parser = Runner::parse)]
    pub runner: Runner,
    /// Start each job with kernel limits from its request: its memory as address space
    /// (RLIMIT_AS) and, when it has a timeout, CPU time for it at the cores it asked for
    /// (RLIMIT_CPU). Programs that reserve much more address space than they use (the
    /// JVM, Go) need a memory request to match.
    #[arg(long, env = "HODEI_WORKER_ENFORCE_LIMITS")]
    pub enforce_limits: bool,
    /// The pool's join token (`hodei pool join-token create <pool>`): required by nodes
    /// with `server.auth: token`. Prefer the variable: arguments are visible to `ps`.
    #[arg(long, env = "HODEI_JOIN_TOKEN", hide_env_values = true)]
    pub join_token: Option<String>,
    /// The CA certificate (PEM) of nodes that serve TLS (`server.tls`): the agent then
    /// speaks https and checks their certificates against it.
    #[arg(long, env = "HODEI_CA_CERT")]
    pub ca_cert: Option<PathBuf>,
    /// A directory jobs may name as their absolute working directory (repeatable);
    /// without any, jobs run only inside the work directory.
    #[arg(long = "allowed-dir")]
    pub allowed_dirs: Vec<PathBuf>,
    /// Run jobs as this user (and its group) rather than the agent's: the agent must run
    /// as root. The work directory is given to that user.
    #[arg(long)]
    pub run_as: Option<String>,
}

/// The directories jobs may run in (the work directory and `--allowed-dir`, resolved)
/// and the user they run as (`--run-as`, who is given the work directory).
fn confinement(
    work_dir: &std::path::Path,
    allowed: &[PathBuf],
    run_as: Option<&str>,
) -> anyhow::Result<crate::worker::process::Confinement> {
    std::fs::create_dir_all(work_dir)
        .map_err(|error| anyhow::anyhow!("--work-dir {}: {error}", work_dir.display()))?;
    let mut allowed_dirs = vec![std::fs::canonicalize(work_dir)?];
    for dir in allowed {
        if !dir.is_absolute() {
            anyhow::bail!("--allowed-dir {}: must be an absolute path", dir.display());
        }
        allowed_dirs.push(
            std::fs::canonicalize(dir)
                .map_err(|error| anyhow::anyhow!("--allowed-dir {}: {error}", dir.display()))?,
        );
    }
    let run_as = match run_as {
        None => None,
        Some(name) => {
            let user = nix::unistd::User::from_name(name)
                .map_err(|error| anyhow::anyhow!("--run-as {name}: {error}"))?
                .ok_or_else(|| anyhow::anyhow!("--run-as {name}: no such user"))?;
            if !nix::unistd::Uid::effective().is_root() {
                anyhow::bail!(
                    "--run-as {name}: the agent must run as root to start jobs as another user"
                );
            }
            nix::unistd::chown(work_dir, Some(user.uid), Some(user.gid)).map_err(|error| {
                anyhow::anyhow!(
                    "--run-as {name}: cannot give it {}: {error}",
                    work_dir.display()
                )
            })?;
            Some((user.uid.as_raw(), user.gid.as_raw()))
        }
    };
    Ok(crate::worker::process::Confinement {
        allowed_dirs,
        run_as,
    })
}

fn default_id() -> String {
    let host = std::fs::read_to_string("/etc/hostname")
        .map(|name| name.trim().to_string())
        .ok()
        .filter(|name| !name.is_empty())
        .unwrap_or_else(|| "worker".to_string());
    format!("{host}-{}", std::process::id())
}

pub async fn run_worker(args: WorkerArgs) -> anyhow::Result<()> {
    crate::cli::node_cmd::init_logging(hodei_config::LogFormat::Text);
    // Jobs may not read the agent's memory or environment (its join credential).
    let _ = nix::sys::prctl::set_dumpable(false);
    if args.servers.is_empty() {
        anyhow::bail!("--servers: give at least one node address");
    }
    let work_dir = match args.work_dir {
        Some(dir) => dir,
        None => std::env::current_dir()?,
    };
    let confinement = confinement(&work_dir, &args.allowed_dirs, args.run_as.as_deref())?;
    let settings = AgentSettings {
        worker_id: args.id.unwrap_or_else(default_id),
        pool: args.pool,
        servers: args.servers,
        capacity: Resources::new(args.cpu_m, args.memory_mb, args.gpu),
        labels: args.labels.into_iter().collect::<Labels>(),
        work_dir,
        shutdown_grace: std::time::Duration::from_secs(args.shutdown_grace_s),
        runner: args.runner,
        enforce_limits: args.enforce_limits,
        instance: uuid::Uuid::new_v4().simple().to_string(),
        source_addr: args.source_addr,
        join_token: args.join_token,
        confinement,
        ca_pem: match &args.ca_cert {
            Some(path) => Some(
                std::fs::read(path)
                    .map_err(|error| anyhow::anyhow!("--ca-cert {}: {error}", path.display()))?,
            ),
            None => None,
        },
    };
    hodei_domain::worker::validate_worker_id(&settings.worker_id)
        .map_err(|error| anyhow::anyhow!("--id: {error}"))?;
    tracing::info!(worker = %settings.worker_id, pool = %settings.pool, "worker starting");
    // A job's process group is killed by the fence (this binary, `hodei worker fence`)
    // when this agent's lease ends and it cannot stop the job itself, or dies.
    let program = std::env::current_exe().map_err(|error| {
        anyhow::anyhow!("cannot find this program to start the job fence: {error}")
    })?;
    let fence = crate::worker::fence::Fence::start(&program).map_err(|error| {
        anyhow::anyhow!(
            "cannot start the job fence ({}): {error}",
            program.display()
        )
    })?;
    // Debug builds only: the checker's test switches the fence off.
    let fence = (!crate::defects::active(crate::defects::Defect::SkipFencing)).then_some(fence);
    run(settings, fence, crate::cli::node_cmd::wait_for_signal()).await;
    Ok(())
}
