//! `hodei config check FILE` and `hodei config print`.

use std::path::PathBuf;

use clap::Subcommand;
use hodei_config::{ConfigLoader, redacted_yaml};

#[derive(Debug, Subcommand)]
pub enum ConfigCommand {
    /// Validate a config file (with the HODEI_* variables set now); lists every problem.
    Check {
        /// The config file to check.
        file: PathBuf,
    },
    /// Print the effective configuration (defaults, file, HODEI_* variables), secrets redacted.
    Print {
        /// A config file to read (without one: the defaults and the HODEI_* variables).
        #[arg(long, short)]
        config: Option<PathBuf>,
    },
}

/// Returns the process exit code.
pub fn run(command: ConfigCommand) -> i32 {
    let (file, print) = match command {
        ConfigCommand::Check { file } => (Some(file), false),
        ConfigCommand::Print { config } => (config, true),
    };
    let mut loader = ConfigLoader::new().env_vars(std::env::vars());
    if let Some(file) = &file {
        loader = loader.file(file);
    }
    match loader.load() {
        Ok(config) => {
            // The pools' scaling policies are checked against the domain's rules too.
            if let Err(problems) = crate::server::catalog_problems(&config) {
                eprintln!("invalid configuration:");
                for problem in problems {
                    eprintln!("  {problem}");
                }
                return 2;
            }
            if print {
                print!("{}", redacted_yaml(&config));
                return 0;
            }
            if let Some(file) = file {
                println!("{}: ok", file.display());
            }
            0
        }
        Err(error) => {
            eprintln!("invalid configuration:");
            for problem in error.problems() {
                eprintln!("  {problem}");
            }
            2
        }
    }
}
