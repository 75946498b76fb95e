//! The job fence: a small process of its own (`hodei worker fence`, started by the agent)
//! that kills the process group of every job the agent runs once the agent's lease has
//! run out, or at once when the agent is gone.
//!
//! The agent holds a lease on its jobs: it runs for `Registered.lease_ms` from when the
//! agent sent a heartbeat that the leader echoed (the leader echoes only while a quorum
//! confirms it leads), one beat shorter than the leader waits before it declares the
//! worker lost and re-queues its jobs. The agent stops its jobs itself when the lease
//! ends; the fence is for when it cannot: stopped (SIGSTOP, a debugger, a machine
//! swapping) or killed -9, when its job processes and their children would otherwise run
//! on beside the re-run elsewhere. The deadline travels as an instant of the machine's
//! monotonic clock (the same in every process), so a late read of the message never
//! lengthens the lease.
//!
//! The agent writes one line per message to the fence's standard input: `lease <ns>`
//! (the deadline, in nanoseconds of `CLOCK_MONOTONIC`), `guard <pgid>` (a job's process
//! group started), `release <pgid>` (it ended and was killed whole by the agent). When the
//! deadline passes, every guarded group is killed with SIGKILL; a group guarded after the
//! deadline is killed as it arrives. When its input closes (the agent exited, however),
//! the fence kills every group it still guards and exits.
//!
//! A job that leaves its process group (`setsid`) escapes the fence, as it escapes the
//! agent's own kill on timeout or cancel; a cgroup per job would hold it (not available
//! on this project's test machines, which mount cgroup v1 only).

use std::collections::BTreeSet;
use std::io::{BufRead as _, Write as _};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::mpsc::{Receiver, RecvTimeoutError};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use tracing::warn;

/// Now, in nanoseconds of `CLOCK_MONOTONIC`: one clock for every process of the machine
/// (unlike `Instant`, which cannot leave its process).
pub fn monotonic_ns() -> u64 {
    match nix::time::clock_gettime(nix::time::ClockId::CLOCK_MONOTONIC) {
        Ok(now) => u64::try_from(now.tv_sec())
            .unwrap_or(0)
            .saturating_mul(1_000_000_000)
            .saturating_add(u64::try_from(now.tv_nsec()).unwrap_or(0)),
        // The monotonic clock cannot fail on Linux; were it to, every lease reads as
        // ended (the safe side).
        Err(_) => u64::MAX,
    }
}

/// `instant` on the monotonic clock shared by processes.
fn instant_ns(instant: Instant) -> u64 {
    let now = Instant::now();
    let base = monotonic_ns();
    if instant >= now {
        let ahead = u64::try_from((instant - now).as_nanos()).unwrap_or(u64::MAX);
        base.saturating_add(ahead)
    } else {
        let behind = u64::try_from((now - instant).as_nanos()).unwrap_or(u64::MAX);
        base.saturating_sub(behind)
    }
}

/// One line from the agent to its fence.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FenceMessage {
    /// The jobs may run until this instant (nanoseconds of `CLOCK_MONOTONIC`).
    Lease(u64),
    /// A job's process group started.
    Guard(i32),
    /// A job's process group ended.
    Release(i32),
}

impl FenceMessage {
    fn line(&self) -> String {
        match self {
            FenceMessage::Lease(until) => format!("lease {until}\n"),
            FenceMessage::Guard(group) => format!("guard {group}\n"),
            FenceMessage::Release(group) => format!("release {group}\n"),
        }
    }

    fn parse(line: &str) -> Option<Self> {
        let (word, value) = line.trim().split_once(' ')?;
        match word {
            "lease" => value.parse().ok().map(FenceMessage::Lease),
            "guard" => value
                .parse()
                .ok()
                .filter(|group| *group > 1)
                .map(FenceMessage::Guard),
            "release" => value.parse().ok().map(FenceMessage::Release),
            _ => None,
        }
    }
}

/// The fence's loop: guards groups until `messages` ends, killing them (with `kill`) when
/// the lease runs out, and every group left when `messages` ends. `now` reads the
/// monotonic clock in nanoseconds. Returns how many groups it killed.
pub fn guard_groups(
    messages: &Receiver<FenceMessage>,
    now: impl Fn() -> u64,
    mut kill: impl FnMut(i32),
) -> usize {
    let mut groups: BTreeSet<i32> = BTreeSet::new();
    // No lease yet: the agent sends one before it starts a job.
    let mut lease: Option<u64> = None;
    let mut killed = 0;
    loop {
        let at = now();
        if !groups.is_empty() && lease.is_some_and(|until| at >= until) {
            for group in std::mem::take(&mut groups) {
                kill(group);
                killed += 1;
            }
        }
        let next = match lease {
            Some(until) if !groups.is_empty() => {
                messages.recv_timeout(Duration::from_nanos(until.saturating_sub(at)))
            }
            _ => messages.recv().map_err(|_| RecvTimeoutError::Disconnected),
        };
        match next {
            Ok(FenceMessage::Lease(until)) => {
                lease = Some(lease.map_or(until, |old| old.max(until)))
            }
            Ok(FenceMessage::Guard(group)) => {
                groups.insert(group);
            }
            Ok(FenceMessage::Release(group)) => {
                groups.remove(&group);
            }
            Err(RecvTimeoutError::Timeout) => {}
            Err(RecvTimeoutError::Disconnected) => {
                for group in std::mem::take(&mut groups) {
                    kill(group);
                    killed += 1;
                }
                return killed;
            }
        }
    }
}

fn kill_group(group: i32) {
    let _ = nix::sys::signal::killpg(
        nix::unistd::Pid::from_raw(group),
        nix::sys::signal::Signal::SIGKILL,
    );
}

/// `hodei worker fence`: reads the agent's messages on standard input until it closes.
pub fn serve() -> anyhow::Result<()> {
    let (sender, messages) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in std::io::stdin().lock().lines() {
            let Ok(line) = line else { break };
            match FenceMessage::parse(&line) {
                Some(message) => {
                    if sender.send(message).is_err() {
                        break;
                    }
                }
                None => eprintln!("hodei worker fence: ignoring `{line}`"),
            }
        }
    });
    let killed = guard_groups(&messages, monotonic_ns, |group| {
        eprintln!(
            "hodei worker fence: the agent's lease ended or the agent is gone: killed job process group {group}"
        );
        kill_group(group);
    });
    if killed > 0 {
        eprintln!("hodei worker fence: exiting after killing {killed} job process groups");
    }
    Ok(())
}

/// The agent's end of its fence: every message is written to the fence process, which is
/// started again (and told the lease and the groups) if it went away.
#[derive(Clone)]
pub struct Fence {
    link: Arc<Mutex<FenceLink>>,
}

struct FenceLink {
    program: PathBuf,
    process: Option<(Child, ChildStdin)>,
    lease: Option<u64>,
    groups: BTreeSet<i32>,
}

impl std::fmt::Debug for Fence {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let link = self.lock();
        formatter
            .debug_struct("Fence")
            .field("program", &link.program)
            .field("lease", &link.lease)
            .field("groups", &link.groups)
            .finish()
    }
}

fn spawn(program: &Path) -> std::io::Result<(Child, ChildStdin)> {
    use std::os::unix::process::CommandExt as _;
    let mut child = Command::new(program)
        .args(["worker", "fence"])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        // Its own group: a signal to the agent's group (a terminal's ^Z) leaves it be.
        .process_group(0)
        .spawn()?;
    let stdin = child
        .stdin
        .take()
        .ok_or_else(|| std::io::Error::other("the fence has no standard input"))?;
    Ok((child, stdin))
}

impl Fence {
    /// Starts the fence process (`program worker fence`).
    pub fn start(program: &Path) -> std::io::Result<Self> {
        let process = spawn(program)?;
        Ok(Self {
            link: Arc::new(Mutex::new(FenceLink {
                program: program.to_path_buf(),
                process: Some(process),
                lease: None,
                groups: BTreeSet::new(),
            })),
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, FenceLink> {
        self.link.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The jobs may run until `until`.
    pub fn renew(&self, until: Instant) {
        let until = instant_ns(until);
        let mut link = self.lock();
        link.lease = Some(link.lease.map_or(until, |old| old.max(until)));
        link.send(FenceMessage::Lease(until));
    }

    /// A job's process group started.
    pub fn guard(&self, group: i32) {
        let mut link = self.lock();
        link.groups.insert(group);
        link.send(FenceMessage::Guard(group));
    }

    /// A job's process group ended (killed whole by the agent).
    pub fn release(&self, group: i32) {
        let mut link = self.lock();
        link.groups.remove(&group);
        link.send(FenceMessage::Release(group));
    }
}

impl FenceLink {
    fn send(&mut self, message: FenceMessage) {
        let written = self
            .process
            .as_mut()
            .is_some_and(|(_, stdin)| stdin.write_all(message.line().as_bytes()).is_ok());
        if written {
            return;
        }
        // The fence went away (killed by hand, say): a new one is told everything.
        if let Some((mut child, stdin)) = self.process.take() {
            drop(stdin);
            let _ = child.kill();
            let _ = child.wait();
        }
        match spawn(&self.program) {
            Ok((child, mut stdin)) => {
                let mut replay = String::new();
                if let Some(until) = self.lease {
                    replay.push_str(&FenceMessage::Lease(until).line());
                }
                for group in &self.groups {
                    replay.push_str(&FenceMessage::Guard(*group).line());
                }
                if stdin.write_all(replay.as_bytes()).is_ok() {
                    warn!("the job fence went away: started again");
                    self.process = Some((child, stdin));
                }
            }
            Err(error) => warn!(%error, "the job fence went away and cannot be started again"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::mpsc::channel;

    #[test]
    fn messages_travel_as_lines() {
        for message in [
            FenceMessage::Lease(12_345_678_901),
            FenceMessage::Guard(4242),
            FenceMessage::Release(4242),
        ] {
            assert_eq!(FenceMessage::parse(&message.line()), Some(message));
        }
        // Never a whole-session or every-process kill.
        assert_eq!(FenceMessage::parse("guard 1"), None);
        assert_eq!(FenceMessage::parse("guard -5"), None);
        assert_eq!(FenceMessage::parse("guard 0"), None);
        assert_eq!(FenceMessage::parse("lease soon"), None);
        assert_eq!(FenceMessage::parse("hello"), None);
    }

    #[test]
    fn groups_are_killed_when_the_lease_ends_and_released_ones_are_not() {
        let (sender, messages) = channel();
        let start = monotonic_ns();
        sender
            .send(FenceMessage::Lease(start + 50_000_000))
            .unwrap();
        sender.send(FenceMessage::Guard(100)).unwrap();
        sender.send(FenceMessage::Guard(200)).unwrap();
        sender.send(FenceMessage::Release(200)).unwrap();
        let killed = Arc::new(Mutex::new(Vec::new()));
        let recorder = killed.clone();
        let fence = std::thread::spawn(move || {
            guard_groups(&messages, monotonic_ns, |group| {
                recorder.lock().unwrap().push((group, monotonic_ns()));
            })
        });
        // The lease ends without a renewal: 100 goes, at or after its deadline.
        let deadline = Instant::now() + Duration::from_secs(30);
        while killed.lock().unwrap().is_empty() {
            assert!(Instant::now() < deadline, "the group was never killed");
            std::thread::sleep(Duration::from_millis(5));
        }
        let (group, at) = killed.lock().unwrap()[0];
        assert_eq!(group, 100);
        assert!(at >= start + 50_000_000, "killed before the lease ended");
        // Guarded after the lease ended: killed as it arrives.
        sender.send(FenceMessage::Guard(300)).unwrap();
        // A renewed lease: the next group runs on until the agent goes.
        sender
            .send(FenceMessage::Lease(monotonic_ns() + 3_600_000_000_000))
            .unwrap();
        sender.send(FenceMessage::Guard(400)).unwrap();
        drop(sender);
        assert_eq!(fence.join().unwrap(), 3);
        let groups: Vec<i32> = killed
            .lock()
            .unwrap()
            .iter()
            .map(|(group, _)| *group)
            .collect();
        assert_eq!(groups, vec![100, 300, 400]);
    }

    #[test]
    fn a_renewed_lease_keeps_the_groups_and_an_older_one_does_not_shorten_it() {
        let (sender, messages) = channel();
        let far = monotonic_ns() + 3_600_000_000_000;
        sender.send(FenceMessage::Lease(far)).unwrap();
        sender.send(FenceMessage::Guard(100)).unwrap();
        // A stale renewal (an earlier deadline, read late) changes nothing.
        sender.send(FenceMessage::Lease(1)).unwrap();
        let killed = Arc::new(Mutex::new(Vec::new()));
        let recorder = killed.clone();
        let fence = std::thread::spawn(move || {
            guard_groups(&messages, monotonic_ns, |group| {
                recorder.lock().unwrap().push(group);
            })
        });
        std::thread::sleep(Duration::from_millis(100));
        assert!(killed.lock().unwrap().is_empty(), "killed within its lease");
        drop(sender);
        assert_eq!(fence.join().unwrap(), 1);
        assert_eq!(*killed.lock().unwrap(), vec![100]);
    }
}
