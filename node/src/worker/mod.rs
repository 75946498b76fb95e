//! The worker agent (`hodei worker`): it holds a stream to the leader, runs each job it is
//! given as a child process and reports how it ended. It knows the wire (proto) and the
//! domain only; the leader's side of the stream lives in `actors::workers`.

pub mod agent;
pub mod fence;
pub mod process;
