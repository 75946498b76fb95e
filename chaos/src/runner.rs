//! The nemesis's job (`hodei-chaos runner`): a real process a worker runs, which writes
//! what it does to a shared journal, and starts a child of its own that does the same
//! (a grandchild of the worker agent, which only a kill of the whole process group
//! reaches).
//!
//! Journal lines, one `write` each (appended): `<kind> <job> <attempt> <worker> <run>
//! <role> <wall ns>`, where `kind` is `start`, `tick` (every 100 ms) or `end` (the run
//! finished on its own), `run` is the main process's pid and `role` is `main` or `child`.

use std::io::Write as _;
use std::path::Path;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// How often a run writes that it is alive.
pub const TICK: Duration = Duration::from_millis(100);

fn wall_ns() -> u128 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|since| since.as_nanos())
        .unwrap_or(0)
}

struct Journal {
    file: std::fs::File,
    prefix: String,
}

impl Journal {
    fn open(path: &Path, run: u32, role: &str) -> anyhow::Result<Self> {
        let job = std::env::var("HODEI_JOB_ID").unwrap_or_else(|_| "?".to_string());
        let attempt = std::env::var("HODEI_JOB_ATTEMPT").unwrap_or_else(|_| "0".to_string());
        let worker = std::env::var("HODEI_WORKER_ID").unwrap_or_else(|_| "?".to_string());
        let file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)?;
        Ok(Self {
            file,
            prefix: format!("{job} {attempt} {worker} {run} {role}"),
        })
    }

    fn write(&mut self, kind: &str) -> anyhow::Result<()> {
        let line = format!("{kind} {} {}\n", self.prefix, wall_ns());
        self.file.write_all(line.as_bytes())?;
        Ok(())
    }
}

/// Runs for `millis`, ticking; as `child` (of run `run`), ticks until killed.
pub fn run(journal: &Path, millis: u64, child_of: Option<u32>) -> anyhow::Result<()> {
    match child_of {
        Some(run) => {
            let mut journal = Journal::open(journal, run, "child")?;
            journal.write("start")?;
            loop {
                std::thread::sleep(TICK);
                journal.write("tick")?;
            }
        }
        None => {
            let run = std::process::id();
            let mut journal_file = Journal::open(journal, run, "main")?;
            journal_file.write("start")?;
            let mut child = std::process::Command::new(std::env::current_exe()?)
                .args(["runner", "--journal"])
                .arg(journal)
                .args(["--ms", "0", "--child-of", &run.to_string()])
                .stdin(std::process::Stdio::null())
                .spawn()?;
            let started = Instant::now();
            let length = Duration::from_millis(millis);
            while started.elapsed() < length {
                std::thread::sleep(TICK.min(length.saturating_sub(started.elapsed())));
                journal_file.write("tick")?;
            }
            let _ = child.kill();
            let _ = child.wait();
            journal_file.write("end")?;
            Ok(())
        }
    }
}
