use std::process::ExitCode;

use clap::Parser;
use hodei_node::cli::{Cli, Commands, cluster_cmd, config_cmd, node_cmd, tenant_cmd};

fn main() -> ExitCode {
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
                Ok(config) => runtime.block_on(node_cmd::run_node(config, false)),
                Err(error) => Err(anyhow::anyhow!("{error}")),
            }
        }
        Commands::Dev(mut args) => {
            if args.overrides.data_dir.is_none() {
                args.overrides.data_dir = Some("./.hodei/data".into());
            }
            match node_cmd::load_config(args.config.as_ref(), &args.overrides, true) {
                Ok(config) => runtime.block_on(node_cmd::run_node(config, true)),
                Err(error) => Err(anyhow::anyhow!("{error}")),
            }
        }
        Commands::Tenant(command) => runtime.block_on(tenant_cmd::run(command)),
        Commands::Cluster(command) => runtime.block_on(cluster_cmd::run(command)),
    };
    match outcome {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("error: {error:#}");
            ExitCode::FAILURE
        }
    }
}
