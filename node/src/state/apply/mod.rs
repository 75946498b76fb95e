//! Apply, one file per aggregate: each command validates against the state first, then
//! writes. The dispatch from a command to these is `HodeiState::apply_command`.

mod jobs;
pub(super) mod limits;
mod pools;
mod pricing;
mod queues;
mod runs;
mod scaling;
mod tenants;
pub(in crate::state) mod workers;
