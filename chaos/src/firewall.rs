//! Network faults with iptables, inside a network namespace of the nemesis's own (so the
//! rules touch nothing else on the machine and vanish with it).
//!
//! Every node's connections to its peers leave from an address of its own
//! (`cluster.source_addr` 127.0.0.1x) and every worker's from another
//! (`hodei worker --source-addr` 127.0.0.5x); all listen on 127.0.0.1. A rule can then
//! name one direction of one link: what node A sends to node B is A's packets to B's
//! peer port and A's answers (from its peer port) to B's address.

use std::process::Command;

use anyhow::{Context, bail};

const CHAIN: &str = "HODEI-NEMESIS";

/// One endpoint of the network: the address its connections leave from and the port
/// it takes connections on (a node's peer port, or its gRPC port as workers see it; a
/// worker takes none).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Endpoint {
    pub source: String,
    pub port: Option<u16>,
}

/// Enters a network namespace of this process's own, with its loopback up, and a mount
/// namespace (for the nodes' small data disks). Must run before any thread is started
/// (a namespace is per thread).
pub fn enter_private_network() -> anyhow::Result<()> {
    if !nix::unistd::Uid::effective().is_root() {
        bail!(
            "the nemesis needs root: it runs the cluster in a network namespace of its own and cuts links there with iptables"
        );
    }
    nix::sched::unshare(nix::sched::CloneFlags::CLONE_NEWNET | nix::sched::CloneFlags::CLONE_NEWNS)
        .context("cannot make a network and mount namespace")?;
    // The nodes' tmpfs data dirs (disk faults) stay in the namespace and go with it.
    nix::mount::mount(
        None::<&str>,
        "/",
        None::<&str>,
        nix::mount::MsFlags::MS_REC | nix::mount::MsFlags::MS_PRIVATE,
        None::<&str>,
    )
    .context("cannot make the mounts private")?;
    run("ip", &["link", "set", "lo", "up"])?;
    Ok(())
}

pub(crate) fn run(program: &str, args: &[&str]) -> anyhow::Result<()> {
    let output = Command::new(program)
        .args(args)
        .output()
        .with_context(|| format!("cannot run {program} (is it installed?)"))?;
    if !output.status.success() {
        bail!(
            "{program} {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&output.stderr).trim()
        );
    }
    Ok(())
}

/// The nemesis's iptables chain.
pub struct Firewall;

impl Firewall {
    /// Makes the chain (empty) and sends every incoming packet through it.
    pub fn install() -> anyhow::Result<Self> {
        run("iptables", &["-w", "-N", CHAIN])?;
        run("iptables", &["-w", "-I", "INPUT", "-j", CHAIN])?;
        Ok(Self)
    }

    fn append(&self, rule: &[&str]) -> anyhow::Result<()> {
        let mut args = vec!["-w", "-A", CHAIN];
        args.extend_from_slice(rule);
        args.extend_from_slice(&["-j", "DROP"]);
        run("iptables", &args)
    }

    /// Drops everything `from` sends to `to` (one direction of one link): its new
    /// packets to `to`'s port, and its answers to connections `to` opened.
    pub fn cut(&self, from: &Endpoint, to: &Endpoint) -> anyhow::Result<()> {
        if let Some(port) = to.port {
            let port = port.to_string();
            self.append(&["-p", "tcp", "-s", &from.source, "--dport", &port])?;
        }
        if let Some(port) = from.port {
            let port = port.to_string();
            self.append(&["-p", "tcp", "--sport", &port, "-d", &to.source])?;
        }
        Ok(())
    }

    /// Drops `probability` of the packets of every connection of a node: those it opened
    /// (from its source address, and the answers to it) and those opened to its `ports`
    /// (its peer and gRPC ports: what reaches them, and what they answer).
    pub fn lose(&self, source: &str, ports: &[u16], probability: f64) -> anyhow::Result<()> {
        let probability = format!("{probability:.3}");
        let mut matches: Vec<Vec<String>> = vec![
            vec!["-s".to_string(), source.to_string()],
            vec!["-d".to_string(), source.to_string()],
        ];
        for port in ports {
            matches.push(vec!["--dport".to_string(), port.to_string()]);
            matches.push(vec!["--sport".to_string(), port.to_string()]);
        }
        for matched in matches {
            let mut rule: Vec<&str> = vec!["-p", "tcp"];
            rule.extend(matched.iter().map(String::as_str));
            rule.extend_from_slice(&["-m", "statistic", "--mode", "random", "--probability"]);
            rule.push(&probability);
            self.append(&rule)?;
        }
        Ok(())
    }

    /// Removes every rule: the network is whole again.
    pub fn heal(&self) -> anyhow::Result<()> {
        run("iptables", &["-w", "-F", CHAIN])
    }
}
