//! Runs one job as a child process: its argv, env and working directory, in its own
//! process group (so a timeout or a cancellation kills everything it started), with the
//! last 64 KiB of stdout and stderr kept.

use std::collections::{BTreeMap, VecDeque};
use std::os::unix::process::ExitStatusExt;
use std::path::PathBuf;
use std::process::Stdio;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use nix::sys::signal::{Signal, killpg};
use nix::unistd::Pid;
use tokio::io::{AsyncRead, AsyncReadExt};
use tokio::sync::oneshot;

use hodei_domain::run::{OUTPUT_TAIL_BYTES, RunOutcome};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProcessSpec {
    pub argv: Vec<String>,
    pub env: BTreeMap<String, String>,
    pub working_dir: PathBuf,
    pub timeout: Option<Duration>,
}

/// How a run ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ProcessEnd {
    Finished {
        outcome: RunOutcome,
        exit_code: Option<i32>,
        output_tail: String,
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

/// Runs the process to its end, its timeout, or `cancel`. `on_start` is called once the
/// process exists; what it writes goes to `tail` as it comes.
pub async fn run_process(
    spec: ProcessSpec,
    cancel: oneshot::Receiver<()>,
    on_start: impl FnOnce(),
    tail: OutputTail,
) -> ProcessEnd {
    let Some((program, arguments)) = spec.argv.split_first() else {
        return ProcessEnd::Finished {
            outcome: RunOutcome::Failed,
            exit_code: Some(127),
            output_tail: "no program to run: argv is empty\n".to_string(),
        };
    };
    let mut command = tokio::process::Command::new(program);
    command
        .args(arguments)
        .envs(&spec.env)
        .current_dir(&spec.working_dir)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0)
        .kill_on_drop(true);
    die_with_parent(&mut command);
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
            };
        }
    };
    on_start();
    let pid = child.id();
    let readers = [
        child
            .stdout
            .take()
            .map(|out| tokio::spawn(collect(out, tail.clone(), Stream::Stdout))),
        child
            .stderr
            .take()
            .map(|err| tokio::spawn(collect(err, tail.clone(), Stream::Stderr))),
    ];
    let timeout = async {
        match spec.timeout {
            Some(timeout) => tokio::time::sleep(timeout).await,
            None => std::future::pending().await,
        }
    };
    enum Ended {
        Exited(std::io::Result<std::process::ExitStatus>),
        TimedOut,
        Cancelled,
    }
    let ended = tokio::select! {
        status = child.wait() => Ended::Exited(status),
        _ = timeout => Ended::TimedOut,
        _ = cancel => Ended::Cancelled,
    };
    if !matches!(ended, Ended::Exited(_)) {
        kill_group(pid);
        let _ = child.wait().await;
    } else {
        // The leader exited; anything it left behind in its group goes too.
        kill_group(pid);
    }
    for reader in readers.into_iter().flatten() {
        let _ = tokio::time::timeout(Duration::from_secs(2), reader).await;
    }
    match ended {
        Ended::Cancelled => ProcessEnd::Cancelled {
            output_tail: tail.text(),
        },
        Ended::TimedOut => ProcessEnd::Finished {
            outcome: RunOutcome::TimedOut,
            exit_code: None,
            output_tail: tail.text(),
        },
        Ended::Exited(Err(error)) => ProcessEnd::Finished {
            outcome: RunOutcome::Failed,
            exit_code: None,
            output_tail: format!("{}\nlost track of the process: {error}\n", tail.text()),
        },
        Ended::Exited(Ok(status)) => match status.code() {
            Some(0) => ProcessEnd::Finished {
                outcome: RunOutcome::Succeeded,
                exit_code: Some(0),
                output_tail: tail.text(),
            },
            Some(code) => ProcessEnd::Finished {
                outcome: RunOutcome::Failed,
                exit_code: Some(code),
                output_tail: tail.text(),
            },
            None => ProcessEnd::Finished {
                outcome: RunOutcome::Failed,
                exit_code: None,
                output_tail: format!(
                    "{}\nkilled by signal {}\n",
                    tail.text(),
                    status.signal().unwrap_or_default()
                ),
            },
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(argv: &[&str], timeout_ms: Option<u64>) -> ProcessSpec {
        ProcessSpec {
            argv: argv.iter().map(|arg| arg.to_string()).collect(),
            env: BTreeMap::from([("GREETING".to_string(), "hello".to_string())]),
            working_dir: std::env::temp_dir(),
            timeout: timeout_ms.map(Duration::from_millis),
        }
    }

    async fn run(spec: ProcessSpec) -> ProcessEnd {
        let (_cancel, cancelled) = oneshot::channel();
        run_process(spec, cancelled, || {}, OutputTail::default()).await
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
        } = end
        else {
            panic!("expected a finished run");
        };
        assert_eq!((outcome, exit_code), (RunOutcome::Failed, Some(3)));
        assert!(output_tail.contains("hello") && output_tail.contains("oops"));
    }

    #[tokio::test]
    async fn stdout_and_stderr_are_kept_apart_and_together() {
        let tail = OutputTail::default();
        let (_cancel, cancelled) = oneshot::channel();
        let script = spec(&["sh", "-c", "echo one; echo two >&2; echo three"], None);
        run_process(script, cancelled, || {}, tail.clone()).await;
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
