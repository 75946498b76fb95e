//! The README's tour, run as written: every shell block of its "A short tour" section, in
//! order, in one `bash -euo pipefail` against a real `hodei dev` on the ports the README
//! names. A command that fails (a CLI error, `curl -f` on an HTTP error) fails the test.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use hodei_tests::eventually;
use serde_json::Value;

const TIMEOUT: Duration = Duration::from_secs(60);

/// The shell blocks of the README section headed `heading`, up to the next `## `.
fn section_blocks(readme: &str, heading: &str) -> Vec<String> {
    let Some(start) = readme.find(heading) else {
        return Vec::new();
    };
    let body = &readme[start + heading.len()..];
    let body = &body[..body.find("\n## ").unwrap_or(body.len())];
    let mut blocks = Vec::new();
    let mut current: Option<String> = None;
    for line in body.lines() {
        match (&mut current, line.trim_end()) {
            (None, "```sh") => current = Some(String::new()),
            (Some(block), "```") => {
                blocks.push(std::mem::take(block));
                current = None;
            }
            (Some(block), _) => {
                block.push_str(line);
                block.push('\n');
            }
            (None, _) => {}
        }
    }
    blocks
}

fn port_free(port: u16) -> bool {
    std::net::TcpListener::bind(("127.0.0.1", port)).is_ok()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_readme_tour_runs_as_written() -> anyhow::Result<()> {
    let readme =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("../README.md"))?;
    let blocks = section_blocks(&readme, "## A short tour");
    assert!(blocks.len() >= 3, "the tour's shell blocks: {blocks:?}");
    // The README's own ports: a node already there (a developer's `hodei dev`) would make
    // the tour talk to it instead.
    for port in [8080, 9090, 9091, 9190] {
        anyhow::ensure!(
            port_free(port),
            "port {port} is in use: the tour needs the README's ports"
        );
    }
    let _serial = crate::HEAVY.lock().await;
    let root = tempfile::tempdir()?;
    // `export PATH="$PWD/target/release:$PATH"` finds this build's binary.
    std::fs::create_dir_all(root.path().join("target/release"))?;
    std::os::unix::fs::symlink(
        hodei_tests::hodei_binary()?,
        root.path().join("target/release/hodei"),
    )?;
    let mut dev = Command::new(hodei_tests::hodei_binary()?)
        .arg("dev")
        .current_dir(root.path())
        .env("HODEI_API", "http://127.0.0.1:8080")
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(root.path().join("dev.log"))?)
        .spawn()?;
    let ready = eventually(TIMEOUT, "hodei dev and its two workers", || async {
        let Ok(response) = reqwest::get("http://127.0.0.1:8080/api/v1/workers").await else {
            return Ok(None);
        };
        let body: Value = response.json().await.unwrap_or_default();
        let idle = body["items"]
            .as_array()
            .map(|items| items.iter().filter(|item| item["state"] == "idle").count());
        Ok((idle == Some(2)).then_some(()))
    })
    .await;
    let outcome = match ready {
        Ok(()) => {
            let script = blocks.join("\n");
            let run = tokio::task::spawn_blocking({
                let dir = root.path().to_path_buf();
                move || {
                    Command::new("bash")
                        .args(["-euo", "pipefail", "-c", &script])
                        .current_dir(dir)
                        .output()
                }
            });
            tokio::time::timeout(Duration::from_secs(300), run).await
        }
        Err(error) => {
            let _ = dev.kill();
            let _ = dev.wait();
            return Err(error);
        }
    };
    let _ = nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(dev.id() as i32),
        nix::sys::signal::Signal::SIGTERM,
    );
    let _ = dev.wait();
    let output = outcome??.map_err(anyhow::Error::from)?;
    let log = std::fs::read_to_string(root.path().join("dev.log")).unwrap_or_default();
    assert!(
        !log.contains('\u{1b}'),
        "a log written to a file has no colour codes"
    );
    assert!(
        output.status.success(),
        "the tour failed ({}):\n--- stdout\n{}\n--- stderr\n{}\n--- node log (tail)\n{}",
        output.status,
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr),
        log.lines()
            .rev()
            .take(40)
            .collect::<Vec<_>>()
            .into_iter()
            .rev()
            .collect::<Vec<_>>()
            .join("\n")
    );
    Ok(())
}
