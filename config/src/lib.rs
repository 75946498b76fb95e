//! Hodei's configuration: the `config.yaml` schema of the specification plus the
//! `cluster` section, loaded with precedence defaults < file < `HODEI_*` variables < flags,
//! then validated so that every bad key is reported with the rule it broke.

mod env;
mod load;
mod schema;
mod validate;

pub use env::{ENV_VARIABLES, EnvVariable};
pub use load::NOT_BUILT;
pub use load::{ConfigError, ConfigLoader, redacted_yaml};
pub use schema::*;
pub use validate::{ValidationError, parse_peer};
