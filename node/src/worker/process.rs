//! Runs one job as a child process: its argv, env and working directory, in its own
//! process group (so a timeout or a cancellation kills everything it started), with the
//! last 64 KiB of stdout and stderr kept.

use std::collections::{BTreeMap, VecDeque};
use std::os::unix::process::{CommandExt as _, ExitStatusExt};
use std::path::PathBuf;
use std::process::Stdio;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use nix::sys::signal::{Signal, killpg};
use nix::unistd::Pid;
use tokio::io::{AsyncRead, AsyncReadExt};
use tokio::sync::oneshot;

use hodei_domain::run::{OUTPUT_TAIL_BYTES, RunOutcome};
use hodei_domain::usage::RunUsage;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProcessSpec {
    pub argv: Vec<String>,
    pub env: BTreeMap<String, String>,
    pub working_dir: PathBuf,
    pub timeout: Option<Duration>,
    /// Kernel limits the job's processes start with (`hodei worker --enforce-limits`).
    pub limits: Option<JobLimits>,
    /// Where the job may run (`hodei worker --allowed-dir`, and the agent's work
    /// directory): a working directory elsewhere fails the run before it starts.
    pub confinement: Confinement,
}

/// What confines a job on its worker: the directories it may run in and the user it runs
/// as.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Confinement {
    /// Directories (canonical) a working directory must be inside, the agent's work
    /// directory among them; empty: anywhere (unit tests of the runner).
    pub allowed_dirs: Vec<PathBuf>,
    /// The user and group the job runs as (`hodei worker --run-as`); none: the agent's.
    pub run_as: Option<(u32, u32)>,
}

impl Confinement {
    /// The working directory, if it is inside an allowed directory once symbolic links
    /// are resolved; else why not.
    pub fn check(&self, working_dir: &std::path::Path) -> Result<PathBuf, String> {
        let real = std::fs::canonicalize(working_dir).map_err(|error| {
            format!(
                "the working directory {} cannot be used: {error}",
                working_dir.display()
            )
        })?;
        if self.allowed_dirs.is_empty() || self.allowed_dirs.iter().any(|dir| real.starts_with(dir))
        {
            Ok(real)
        } else {
            Err(format!(
                "the working directory {} is outside the directories this worker runs jobs in (its work directory and --allowed-dir)",
                real.display()
            ))
        }
    }
}

/// Resource limits set with setrlimit(2) in the job's process before it starts, inherited
/// by everything it runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct JobLimits {
    /// RLIMIT_CPU: CPU seconds of each process of the job (soft = hard: SIGKILL beyond
    /// them). Each process the job starts gets the same budget: a per-job total needs a
    /// cgroup.
    pub cpu_seconds: Option<u64>,
    /// RLIMIT_AS: bytes of address space (allocations beyond it fail).
    pub address_space_bytes: u64,
}

impl JobLimits {
    /// A job's limits from its request: its memory as address space, and CPU time for its
    /// timeout at the cores it asked for (rounded up), when it has a timeout.
    pub fn of(memory_mb: u64, cpu_m: u64, timeout_s: Option<u64>) -> Self {
        Self {
            cpu_seconds: timeout_s
                .map(|timeout| timeout.saturating_mul(cpu_m.div_ceil(1_000).max(1))),
            address_space_bytes: memory_mb.max(1).saturating_mul(1024 * 1024),
        }
    }
}

/// Sets `limits` in the child between fork and exec.
#[allow(unsafe_code)]
fn limit_std(command: &mut std::process::Command, limits: JobLimits) {
    use nix::sys::resource::{Resource, setrlimit};
    use std::os::unix::process::CommandExt;
    // SAFETY: the closure runs in the forked child before exec and only calls
    // setrlimit(2), which is async-signal-safe; it allocates nothing and touches no memory
    // of the parent but the copied limits.
    unsafe {
        command.pre_exec(move || {
            if let Some(seconds) = limits.cpu_seconds {
                setrlimit(Resource::RLIMIT_CPU, seconds, seconds).map_err(std::io::Error::from)?;
            }
            setrlimit(
                Resource::RLIMIT_AS,
                limits.address_space_bytes,
                limits.address_space_bytes,
            )
            .map_err(std::io::Error::from)
        });
    }
}

/// The search path a job gets when the agent has none.
const DEFAULT_PATH: &str = "/usr/local/bin:/usr/bin:/bin";

/// What a job's environment holds besides its own variables (which win): the agent's
/// search path and the job's working directory as its home. Nothing else of the agent's
/// environment reaches a job: it may hold the node's secrets (`HODEI_*`), and a job runs
/// other tenants' code.
pub fn base_env(working_dir: &std::path::Path) -> [(String, String); 2] {
    [
        (
            "PATH".to_string(),
            std::env::var("PATH").unwrap_or_else(|_| DEFAULT_PATH.to_string()),
        ),
        ("HOME".to_string(), working_dir.display().to_string()),
    ]
}

/// How a run ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ProcessEnd {
    Finished {
        outcome: RunOutcome,
        exit_code: Option<i32>,
        output_tail: String,
        /// What it used, from the kernel's accounting, when it was reaped.
        usage: Option<RunUsage>,
    },
    /// Stopped on request (cancelled by the leader, or this worker fenced itself off),
    /// with what it wrote until then.
    Cancelled { output_tail: String },
}

/// Which output of the process.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stream {
    Stdout,
    Stderr,
}

#[derive(Default)]
struct Tails {
    /// Both outputs, interleaved as they came.
    combined: VecDeque<u8>,
    stdout: VecDeque<u8>,
    stderr: VecDeque<u8>,
    /// Bumped by every write: whether anything changed since a reader last looked.
    version: u64,
}

fn push_bounded(tail: &mut VecDeque<u8>, bytes: &[u8]) {
    tail.extend(bytes);
    let excess = tail.len().saturating_sub(OUTPUT_TAIL_BYTES);
    tail.drain(..excess);
}

fn text_of(tail: &VecDeque<u8>) -> String {
    let bytes: Vec<u8> = tail.iter().copied().collect();
    String::from_utf8_lossy(&bytes).into_owned()
}

/// The last `OUTPUT_TAIL_BYTES` bytes a process wrote: interleaved, and of each stream on
/// its own. Shared with whoever reports the output while the process runs.
#[derive(Clone, Default)]
pub struct OutputTail(Arc<Mutex<Tails>>);

/// The tails at one moment.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct OutputSnapshot {
    pub version: u64,
    pub combined: String,
    pub stdout: String,
    pub stderr: String,
}

impl OutputTail {
    fn lock(&self) -> std::sync::MutexGuard<'_, Tails> {
        self.0.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn push(&self, stream: Stream, bytes: &[u8]) {
        let mut tails = self.lock();
        push_bounded(&mut tails.combined, bytes);
        match stream {
            Stream::Stdout => push_bounded(&mut tails.stdout, bytes),
            Stream::Stderr => push_bounded(&mut tails.stderr, bytes),
        }
        tails.version = tails.version.wrapping_add(1);
    }

    fn text(&self) -> String {
        text_of(&self.lock().combined)
    }

    /// How many writes it has seen (what changed since a reader last looked).
    pub fn version(&self) -> u64 {
        self.lock().version
    }

    /// The tails now, with the version they are at.
    pub fn snapshot(&self) -> OutputSnapshot {
        let tails = self.lock();
        OutputSnapshot {
            version: tails.version,
            combined: text_of(&tails.combined),
            stdout: text_of(&tails.stdout),
            stderr: text_of(&tails.stderr),
        }
    }
}

async fn collect(mut reader: impl AsyncRead + Unpin, tail: OutputTail, stream: Stream) {
    let mut buffer = [0u8; 8192];
    while let Ok(read) = reader.read(&mut buffer).await {
        if read == 0 {
            break;
        }
        tail.push(stream, &buffer[..read]);
    }
}

fn kill_group(pid: Option<u32>) {
    if let Some(pid) = pid {
        // The child leads its own group: this reaches everything it started.
        let _ = killpg(Pid::from_raw(pid as i32), Signal::SIGKILL);
    }
}

/// Asks the kernel to kill the child if this worker dies (even by kill -9), so a job never
/// outlives the agent that reports on it. Grandchildren in the group are not covered.
#[allow(unsafe_code)]
pub(crate) fn die_with_parent(command: &mut tokio::process::Command) {
    // SAFETY: the closure runs in the forked child before exec and only calls prctl(2),
    // which is async-signal-safe; it touches no memory of the parent.
    unsafe {
        command.pre_exec(|| {
            nix::sys::prctl::set_pdeathsig(Signal::SIGKILL).map_err(std::io::Error::from)
        });
    }
}

/// [`die_with_parent`] for a std command (a job, which this worker reaps itself).
#[allow(unsafe_code)]
fn die_with_parent_std(command: &mut std::process::Command) {
    use std::os::unix::process::CommandExt;
    // SAFETY: as in `die_with_parent`: only prctl(2) runs between fork and exec.
    unsafe {
        command.pre_exec(|| {
            nix::sys::prctl::set_pdeathsig(Signal::SIGKILL).map_err(std::io::Error::from)
        });
    }
}

/// How the process ended and what it used, from `wait4(2)`.
struct Waited {
    status: std::process::ExitStatus,
    usage: RunUsage,
}

/// Blocks until `pid` has exited, without reaping it (`waitid` with `WNOWAIT`): until it
/// is reaped its pid, and so its process group, stay its own, so the group can still be
/// killed safely. Run on a blocking thread.
#[allow(unsafe_code)]
fn wait_exited(pid: i32) -> std::io::Result<()> {
    loop {
        // SAFETY: siginfo_t is plain old data that waitid fills in; the pointer is to a
        // local that outlives the call.
        let mut info: libc::siginfo_t = unsafe { std::mem::zeroed() };
        let id = libc::id_t::try_from(pid).map_err(std::io::Error::other)?;
        let done =
            unsafe { libc::waitid(libc::P_PID, id, &mut info, libc::WEXITED | libc::WNOWAIT) };
        if done == 0 {
            return Ok(());
        }
        let error = std::io::Error::last_os_error();
        if error.kind() != std::io::ErrorKind::Interrupted {
            return Err(error);
        }
    }
}

/// Reaps `pid`, which has exited (see [`wait_exited`]), with its resource use: user plus
/// system CPU time and the peak resident set of it and the descendants it waited for.
#[allow(unsafe_code)]
fn reap_with_usage(pid: i32) -> std::io::Result<Waited> {
    loop {
        let mut status: libc::c_int = 0;
        // SAFETY: rusage is plain old data that wait4 fills in; both pointers are to
        // locals that outlive the call.
        let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
        let reaped = unsafe { libc::wait4(pid, &mut status, 0, &mut usage) };
        if reaped == pid {
            let millis = |time: libc::timeval| {
                u64::try_from(time.tv_sec).unwrap_or_default() * 1_000
                    + u64::try_from(time.tv_usec).unwrap_or_default() / 1_000
            };
            return Ok(Waited {
                status: std::process::ExitStatus::from_raw(status),
                usage: RunUsage {
                    cpu_ms: millis(usage.ru_utime) + millis(usage.ru_stime),
                    // Linux reports ru_maxrss in KiB.
                    peak_rss_mb: u64::try_from(usage.ru_maxrss).unwrap_or_default() / 1_024,
                },
            });
        }
        let error = std::io::Error::last_os_error();
        if error.kind() != std::io::ErrorKind::Interrupted {
            return Err(error);
        }
    }
}

/// Kills the process group if the run is dropped before its process was reaped (the
/// worker stopping mid-run), then reaps it on a thread of its own: nothing it started
/// outlives it and no zombie stays.
struct GroupGuard {
    pid: i32,
    reaped: bool,
}

impl Drop for GroupGuard {
    fn drop(&mut self) {
        if !self.reaped {
            let _ = killpg(Pid::from_raw(self.pid), Signal::SIGKILL);
            let pid = self.pid;
            std::thread::spawn(move || {
                let _ = wait_exited(pid).and_then(|()| reap_with_usage(pid));
            });
        }
    }
}

fn pipe_reader(
    fd: Option<impl Into<std::os::fd::OwnedFd>>,
) -> Option<tokio::net::unix::pipe::Receiver> {
    tokio::net::unix::pipe::Receiver::from_owned_fd(fd?.into()).ok()
}

/// Runs the process to its end, its timeout, or `cancel`. `on_start` is called once the
/// process exists; what it writes goes to `tail` as it comes. With a `fence`, the
/// process's group is guarded by it from its start until the agent has killed it whole.
pub async fn run_process(
    spec: ProcessSpec,
    cancel: oneshot::Receiver<()>,
    on_start: impl FnOnce(),
    tail: OutputTail,
    fence: Option<crate::worker::fence::Fence>,
) -> ProcessEnd {
    let Some((program, arguments)) = spec.argv.split_first() else {
        return ProcessEnd::Finished {
            outcome: RunOutcome::Failed,
            exit_code: Some(127),
            output_tail: "no program to run: argv is empty\n".to_string(),
            usage: None,
        };
    };
    let working_dir = match spec.confinement.check(&spec.working_dir) {
        Ok(dir) => dir,
        Err(reason) => {
            return ProcessEnd::Finished {
                outcome: RunOutcome::Failed,
                exit_code: Some(126),
                output_tail: format!("{reason}\n"),
                usage: None,
            };
        }
    };
    let mut command = std::process::Command::new(program);
    command
        .args(arguments)
        .env_clear()
        .envs(base_env(&working_dir))
        .envs(&spec.env)
        .current_dir(&working_dir)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0);
    die_with_parent_std(&mut command);
    if let Some(limits) = spec.limits {
        limit_std(&mut command, limits);
    }
    if let Some((uid, gid)) = spec.confinement.run_as {
        use std::os::unix::process::CommandExt;
        // Started by root, std drops the supplementary groups before changing user.
        command.uid(uid).gid(gid);
    }
    let mut child = match command.spawn() {
        Ok(child) => child,
        Err(error) => {
            on_start();
            return ProcessEnd::Finished {
                outcome: RunOutcome::Failed,
                exit_code: Some(127),
                output_tail: format!(
                    "cannot start `{program}` in {}: {error}\n",
                    spec.working_dir.display()
                ),
                usage: None,
            };
        }
    };
    on_start();
    let Ok(pid) = i32::try_from(child.id()) else {
        return ProcessEnd::Finished {
            outcome: RunOutcome::Failed,
            exit_code: None,
            output_tail: format!("process id {} out of range\n", child.id()),
            usage: None,
        };
    };
    if let Some(fence) = &fence {
        fence.guard(pid);
    }
    let mut guard = GroupGuard { pid, reaped: false };
    let readers = [
        pipe_reader(child.stdout.take())
            .map(|out| tokio::spawn(collect(out, tail.clone(), Stream::Stdout))),
        pipe_reader(child.stderr.take())
            .map(|err| tokio::spawn(collect(err, tail.clone(), Stream::Stderr))),
    ];
    // Reaped by wait4 alone (never by `Child::wait`), which also gives its usage.
    drop(child);
    let mut waiter = tokio::task::spawn_blocking(move || wait_exited(pid));
    let timeout = async {
        match spec.timeout {
            Some(timeout) => tokio::time::sleep(timeout).await,
            None => std::future::pending().await,
        }
    };
    #[derive(PartialEq)]
    enum Ended {
        Exited,
        TimedOut,
        Cancelled,
    }
    let joined = |result: Result<std::io::Result<()>, tokio::task::JoinError>| {
        result.unwrap_or_else(|error| Err(std::io::Error::other(error)))
    };
    let (ended, exited) = tokio::select! {
        exited = &mut waiter => (Ended::Exited, Some(joined(exited))),
        _ = timeout => (Ended::TimedOut, None),
        _ = cancel => (Ended::Cancelled, None),
    };
    // The leader exited (not yet reaped), timed out or was cancelled: anything left in its
    // group goes too, while the group is still its own.
    kill_group(Some(pid as u32));
    // Killed whole and not yet reaped (its id cannot be reused): the fence lets it go.
    if let Some(fence) = &fence {
        fence.release(pid);
    }
    let exited = match exited {
        Some(exited) => exited,
        None => joined(waiter.await),
    };
    let waited = exited.and_then(|()| reap_with_usage(pid));
    guard.reaped = true;
    for reader in readers.into_iter().flatten() {
        let _ = tokio::time::timeout(Duration::from_secs(2), reader).await;
    }
    let usage = waited.as_ref().ok().map(|waited| waited.usage);
    match (ended, waited) {
        (Ended::Cancelled, _) => ProcessEnd::Cancelled {
            output_tail: tail.text(),
        },
        (Ended::TimedOut, _) => ProcessEnd::Finished {
            outcome: RunOutcome::TimedOut,
            exit_code: None,
            output_tail: tail.text(),
            usage,
        },
        (Ended::Exited, Err(error)) => ProcessEnd::Finished {
            outcome: RunOutcome::Failed,
            exit_code: None,
            output_tail: format!("{}\nlost track of the process: {error}\n", tail.text()),
            usage: None,
        },
        (Ended::Exited, Ok(Waited { status, .. })) => match status.code() {
            Some(0) => ProcessEnd::Finished {
                outcome: RunOutcome::Succeeded,
                exit_code: Some(0),
                output_tail: tail.text(),
                usage,
            },
            Some(code) => ProcessEnd::Finished {
                outcome: RunOutcome::Failed,
                exit_code: Some(code),
                output_tail: tail.text(),
                usage,
            },
            None => ProcessEnd::Finished {
                outcome: RunOutcome::Failed,
                exit_code: None,
                output_tail: format!(
                    "{}\nkilled by signal {}\n",
                    tail.text(),
                    status.signal().unwrap_or_default()
                ),
                usage,
            },
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_working_directory_must_resolve_inside_an_allowed_one() {
        let allowed = tempfile::tempdir().unwrap();
        let outside = tempfile::tempdir().unwrap();
        let confinement = Confinement {
            allowed_dirs: vec![std::fs::canonicalize(allowed.path()).unwrap()],
            run_as: None,
        };
        let inner = allowed.path().join("inner");
        std::fs::create_dir(&inner).unwrap();
        assert!(confinement.check(&inner).is_ok());
        assert!(confinement.check(outside.path()).is_err());
        // A symbolic link inside that leads outside is outside.
        let link = allowed.path().join("escape");
        std::os::unix::fs::symlink(outside.path(), &link).unwrap();
        let refusal = confinement.check(&link).unwrap_err();
        assert!(refusal.contains("outside the directories"), "{refusal}");
        assert!(confinement.check(&allowed.path().join("missing")).is_err());
    }

    fn spec(argv: &[&str], timeout_ms: Option<u64>) -> ProcessSpec {
        ProcessSpec {
            argv: argv.iter().map(|arg| arg.to_string()).collect(),
            env: BTreeMap::from([("GREETING".to_string(), "hello".to_string())]),
            working_dir: std::env::temp_dir(),
            timeout: timeout_ms.map(Duration::from_millis),
            limits: None,
            confinement: Confinement::default(),
        }
    }

    #[tokio::test]
    async fn a_job_cannot_allocate_beyond_its_memory_when_limits_are_enforced() {
        // Builds a 64 MB string in the shell.
        let script = "x=$(head -c 64000000 /dev/zero | tr '\\0' a); echo ${#x}";
        let free = run(spec(&["sh", "-c", script], None)).await;
        let ProcessEnd::Finished {
            outcome,
            output_tail,
            ..
        } = free
        else {
            panic!("expected a finished run");
        };
        assert_eq!(outcome, RunOutcome::Succeeded, "{output_tail}");
        assert!(output_tail.contains("64000000"), "{output_tail}");
        // Under the same limits a small command runs: they stop the allocation, not exec.
        let mut small = spec(&["sh", "-c", "echo small"], None);
        small.limits = Some(JobLimits::of(16, 1_000, Some(60)));
        let ProcessEnd::Finished {
            outcome,
            output_tail,
            ..
        } = run(small).await
        else {
            panic!("expected a finished run");
        };
        assert_eq!(outcome, RunOutcome::Succeeded, "{output_tail}");
        let mut limited = spec(&["sh", "-c", script], None);
        limited.limits = Some(JobLimits::of(16, 1_000, Some(60)));
        let end = run(limited).await;
        let ProcessEnd::Finished {
            outcome,
            output_tail,
            ..
        } = end
        else {
            panic!("expected a finished run");
        };
        assert_ne!(outcome, RunOutcome::Succeeded, "{output_tail}");
        assert!(!output_tail.contains("64000000"), "{output_tail}");
    }

    #[test]
    fn limits_follow_the_request() {
        let limits = JobLimits::of(512, 2_500, Some(60));
        assert_eq!(limits.cpu_seconds, Some(180), "60 s at 3 cores");
        assert_eq!(limits.address_space_bytes, 512 * 1024 * 1024);
        assert_eq!(JobLimits::of(512, 100, None).cpu_seconds, None);
    }

    async fn run(spec: ProcessSpec) -> ProcessEnd {
        let (_cancel, cancelled) = oneshot::channel();
        run_process(spec, cancelled, || {}, OutputTail::default(), None).await
    }

    #[tokio::test]
    async fn a_job_sees_its_own_variables_and_none_of_the_agents() {
        // Cargo runs tests with variables of its own: the agent's environment here.
        let inherited = std::env::var("CARGO_MANIFEST_DIR").expect("run by cargo");
        let end = run(spec(&["sh", "-c", "env"], None)).await;
        let ProcessEnd::Finished { output_tail, .. } = end else {
            panic!("expected a finished run");
        };
        assert!(output_tail.contains("GREETING=hello"), "{output_tail}");
        assert!(output_tail.contains("PATH="), "{output_tail}");
        assert!(!output_tail.contains("CARGO_MANIFEST_DIR"), "{output_tail}");
        assert!(!output_tail.contains(&inherited), "{output_tail}");
    }

    #[tokio::test]
    async fn exit_codes_env_and_output_come_back() {
        let end = run(spec(
            &["sh", "-c", "echo $GREETING; echo oops >&2; exit 3"],
            None,
        ))
        .await;
        let ProcessEnd::Finished {
            outcome,
            exit_code,
            output_tail,
            usage,
        } = end
        else {
            panic!("expected a finished run");
        };
        assert_eq!((outcome, exit_code), (RunOutcome::Failed, Some(3)));
        assert!(output_tail.contains("hello") && output_tail.contains("oops"));
        assert!(usage.is_some(), "a reaped process reports its usage");
    }

    /// The CPU time and peak memory come from the kernel's accounting of the process and
    /// the children it waited for.
    #[tokio::test]
    async fn a_run_reports_the_cpu_time_and_memory_it_used() {
        // A child that spins for 400 ms of CPU time, waited for by the shell.
        let script = "i=0; end=$(( $(date +%s%N) + 400000000 )); while [ $(date +%s%N) -lt $end ]; do i=$((i+1)); done";
        let end = run(spec(&["sh", "-c", script], None)).await;
        let ProcessEnd::Finished {
            outcome: RunOutcome::Succeeded,
            usage: Some(usage),
            ..
        } = end
        else {
            panic!("expected a successful run with its usage, got {end:?}");
        };
        // Wall time was at least 400 ms; on a loaded machine the CPU time may be less,
        // but a busy loop gets a good share of it.
        assert!(usage.cpu_ms >= 50, "cpu time {} ms", usage.cpu_ms);
        assert!(usage.peak_rss_mb >= 1 || usage.cpu_ms > 0);
        let idle = run(spec(&["sleep", "0.3"], None)).await;
        let ProcessEnd::Finished {
            usage: Some(idle_usage),
            ..
        } = idle
        else {
            panic!("expected a finished run");
        };
        assert!(
            idle_usage.cpu_ms < usage.cpu_ms,
            "sleeping uses less CPU than spinning: {} vs {}",
            idle_usage.cpu_ms,
            usage.cpu_ms
        );
    }

    #[tokio::test]
    async fn stdout_and_stderr_are_kept_apart_and_together() {
        let tail = OutputTail::default();
        let (_cancel, cancelled) = oneshot::channel();
        let script = spec(&["sh", "-c", "echo one; echo two >&2; echo three"], None);
        run_process(script, cancelled, || {}, tail.clone(), None).await;
        let output = tail.snapshot();
        assert_eq!(output.stdout, "one\nthree\n");
        assert_eq!(output.stderr, "two\n");
        for line in ["one", "two", "three"] {
            assert!(output.combined.contains(line), "{}", output.combined);
        }
        assert!(output.version >= 2, "every write counts");
    }

    #[tokio::test]
    async fn a_timeout_kills_the_whole_group() {
        let marker = tempfile::NamedTempFile::new().unwrap();
        let path = marker.path().display().to_string();
        // The grandchild would write the marker after 2 s if it survived.
        let script = format!("(sleep 2; echo alive > {path}) & sleep 30");
        let end = run(spec(&["sh", "-c", &script], Some(300))).await;
        assert!(matches!(
            end,
            ProcessEnd::Finished {
                outcome: RunOutcome::TimedOut,
                ..
            }
        ));
        tokio::time::sleep(Duration::from_millis(2_500)).await;
        assert_eq!(std::fs::read_to_string(marker.path()).unwrap(), "");
    }

    #[tokio::test]
    async fn a_missing_program_fails_with_127() {
        let end = run(spec(&["/no/such/program"], None)).await;
        assert!(matches!(
            end,
            ProcessEnd::Finished {
                outcome: RunOutcome::Failed,
                exit_code: Some(127),
                ..
            }
        ));
    }

    #[tokio::test]
    async fn the_tail_keeps_the_last_64_kib() {
        let end = run(spec(
            &[
                "sh",
                "-c",
                "head -c 200000 /dev/zero | tr '\\\\0' a; echo END",
            ],
            None,
        ))
        .await;
        let ProcessEnd::Finished { output_tail, .. } = end else {
            panic!("expected a finished run");
        };
        assert_eq!(output_tail.len(), OUTPUT_TAIL_BYTES);
        assert!(output_tail.ends_with("END\n"));
    }
}
