use std::process::ExitCode;

use clap::Parser;
use hodei_node::cli::{
    Cli, Commands, cluster_cmd, config_cmd, job_cmd, limits_cmd, node_cmd, pool_cmd, tenant_cmd,
    worker_cmd,
};

/// The node allocates and frees many short-lived buffers of every size (commands, job
/// records, log entries): mimalloc does it with less time and fragmentation than glibc's
/// allocator (BENCHMARKS.md).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    // Transparent huge pages cost more than they give here: the allocator returns and takes
    // back memory all the time, and each fault on a huge page zeroes 2 MiB (a fifth of the
    // CPU under batch submissions, BENCHMARKS.md). Best effort: an old kernel may refuse.
    #[cfg(target_os = "linux")]
    let _ = nix::sys::prctl::set_thp_disable(true);
    // Every TLS connection (REST, gRPC, the CLI's) uses rustls with ring.
    let _ = rustls::crypto::ring::default_provider().install_default();
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("error: cannot start the async runtime: {error}");
            return ExitCode::FAILURE;
        }
    };
    let outcome: anyhow::Result<()> = match cli.command {
        Commands::Config(command) => return ExitCode::from(config_cmd::run(command) as u8),
        Commands::Server(args) => {
            match node_cmd::load_config(args.config.as_ref(), &args.overrides, false) {
                Ok(config) => runtime.block_on(node_cmd::run_node(config, false, 0)),
                Err(error) => Err(anyhow::anyhow!("{error}")),
            }
        }
        Commands::Dev(mut args) => {
            if args.overrides.data_dir.is_none() {
                args.overrides.data_dir = Some("./.hodei/data".into());
            }
            match node_cmd::load_config(args.config.as_ref(), &args.overrides, true) {
                Ok(config) => runtime.block_on(node_cmd::run_node(config, true, args.workers)),
                Err(error) => Err(anyhow::anyhow!("{error}")),
            }
        }
        Commands::Tenant(command) => runtime.block_on(tenant_cmd::run(command)),
        Commands::Tls(command) => hodei_node::cli::tls_cmd::run(command),
        Commands::Health { api } => runtime.block_on(tenant_cmd::health(api)),
        Commands::Audit {
            from,
            to,
            principal_filter,
            limit,
            local,
            api,
        } => runtime.block_on(hodei_node::cli::run_audit(
            from,
            to,
            principal_filter,
            limit,
            local,
            api,
        )),
        Commands::Token(command) => runtime.block_on(hodei_node::cli::token_cmd::run(command)),
        Commands::JoinToken(command) => {
            runtime.block_on(hodei_node::cli::token_cmd::run_join(command))
        }
        Commands::Quota(command) => runtime.block_on(limits_cmd::run_quota(command)),
        Commands::Burst(command) => runtime.block_on(limits_cmd::run_burst(command)),
        Commands::Sla(command) => runtime.block_on(job_cmd::run_sla(command)),
        Commands::Queue(command) => runtime.block_on(pool_cmd::run_queue(command)),
        Commands::Pool(command) => runtime.block_on(pool_cmd::run_pool(command)),
        Commands::Cost(command) => runtime.block_on(hodei_node::cli::cost_cmd::run_cost(command)),
        Commands::Observability(command) => {
            runtime.block_on(hodei_node::cli::run_observability(command))
        }
        Commands::Cluster(command) => runtime.block_on(cluster_cmd::run(command)),
        Commands::Worker(cli) => match cli.command {
            Some(command) => runtime.block_on(pool_cmd::run_worker(command)),
            None => runtime.block_on(worker_cmd::run_worker(cli.agent)),
        },
        Commands::Job(command) => match runtime.block_on(job_cmd::run(command)) {
            Ok(code) => return ExitCode::from(code.clamp(0, 255) as u8),
            Err(error) => Err(error),
        },
    };
    match outcome {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("error: {error:#}");
            ExitCode::FAILURE
        }
    }
}
