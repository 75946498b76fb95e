//! The import rules of `ARCHITECTURE.md`, checked on the source: a module of one layer that
//! names a module it must not reach fails this test, with the file and line. (The domain
//! and the cluster are crates of their own: the compiler keeps them from pointing
//! outward.)

use std::path::{Path, PathBuf};

/// (layer, what it must not name, why).
const RULES: &[(&str, &[&str], &str)] = &[
    (
        "gateway",
        &[
            "crate::actors",
            "crate::state",
            "crate::api",
            "crate::cli",
            "crate::worker",
            "hodei_cluster",
            "axum",
            "tonic",
        ],
        "the gateway's contract knows the domain only; adapters sit above it, actors below",
    ),
    (
        "api",
        &["crate::state", "hodei_cluster"],
        "handlers reach the state and Raft only through the gateway",
    ),
    (
        "actors",
        &["crate::api", "crate::cli"],
        "the gateway's contract sits below the adapters",
    ),
    (
        "state",
        &[
            "crate::actors",
            "crate::api",
            "crate::gateway",
            "crate::cli",
            "crate::worker",
        ],
        "apply is deterministic and runs no actors",
    ),
    (
        "worker",
        &[
            "crate::actors",
            "crate::state",
            "crate::api",
            "crate::gateway",
            "crate::cli",
            "hodei_cluster",
        ],
        "the agent knows proto and domain only",
    ),
];

fn rust_files(folder: &Path, found: &mut Vec<PathBuf>) {
    let Ok(entries) = std::fs::read_dir(folder) else {
        return;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        if path.is_dir() {
            rust_files(&path, found);
        } else if path.extension().is_some_and(|extension| extension == "rs") {
            found.push(path);
        }
    }
}

/// The code of a line, without a line comment (doc comments name modules freely).
fn code(line: &str) -> &str {
    let trimmed = line.trim_start();
    if trimmed.starts_with("//") {
        return "";
    }
    match line.find("//") {
        Some(at) => &line[..at],
        None => line,
    }
}

fn names(line: &str, target: &str) -> bool {
    let mut rest = line;
    while let Some(at) = rest.find(target) {
        let before = rest[..at].chars().last();
        let after = rest[at + target.len()..].chars().next();
        let starts_a_path =
            before.is_none_or(|character| !character.is_alphanumeric() && character != '_');
        let ends_a_segment = after.is_none_or(|character| {
            character == ':'
                || character == ';'
                || character == ' '
                || character == ','
                || character == '}'
        });
        if starts_a_path && ends_a_segment {
            return true;
        }
        rest = &rest[at + target.len()..];
    }
    false
}

#[test]
fn no_layer_reaches_a_module_it_must_not() {
    let source = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut broken = Vec::new();
    for (layer, forbidden, why) in RULES {
        let mut files = Vec::new();
        rust_files(&source.join(layer), &mut files);
        assert!(!files.is_empty(), "no source found for layer {layer}");
        for file in files {
            let text = std::fs::read_to_string(&file).unwrap();
            for (number, line) in text.lines().enumerate() {
                for target in *forbidden {
                    if names(code(line), target) {
                        broken.push(format!(
                            "{}:{}: {layer} names {target} ({why})",
                            file.strip_prefix(&source).unwrap_or(&file).display(),
                            number + 1
                        ));
                    }
                }
            }
        }
    }
    assert!(
        broken.is_empty(),
        "forbidden imports:\n{}",
        broken.join("\n")
    );
}

#[test]
fn the_check_sees_a_forbidden_path_and_ignores_comments_and_longer_names() {
    assert!(names(code("use crate::state::CommandV1;"), "crate::state"));
    assert!(names(
        code("    let x = hodei_cluster::ClusterStatus::default();"),
        "hodei_cluster"
    ));
    assert!(!names(
        code("// see crate::state for the commands"),
        "crate::state"
    ));
    assert!(!names(code("use crate::statements::X;"), "crate::state"));
    assert!(!names(
        code("use crate::gateway::GatewayError; // crate::api maps it"),
        "crate::api"
    ));
}
