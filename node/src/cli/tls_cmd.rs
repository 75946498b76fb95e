//! `hodei tls generate`: a throwaway CA and a certificate per node, for trying TLS and
//! mutual TLS on one machine (`deploy/local/cluster.sh --tls`). Production clusters use
//! certificates from their own CA.

use std::path::PathBuf;

use clap::Subcommand;
use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DnType, ExtendedKeyUsagePurpose, IsCa,
    KeyPair, KeyUsagePurpose,
};

#[derive(Debug, Subcommand)]
pub enum TlsCommand {
    /// Write a throwaway CA (`ca.pem`) and for each node `node-N.pem` and `node-N.key`,
    /// valid as server and client certificates for 127.0.0.1, localhost and the given
    /// hosts. The CA's key is not kept: nothing more can be signed with it.
    Generate {
        /// The folder to write into (created if missing; existing files are replaced).
        #[arg(long)]
        out: PathBuf,
        /// How many node certificates.
        #[arg(long, default_value_t = 3)]
        nodes: u32,
        /// Another name or IP address the nodes are reached at (repeatable).
        #[arg(long = "host")]
        hosts: Vec<String>,
    },
}

pub fn run(command: TlsCommand) -> anyhow::Result<()> {
    let TlsCommand::Generate { out, nodes, hosts } = command;
    if nodes == 0 || nodes > 100 {
        anyhow::bail!("--nodes: between 1 and 100, got {nodes}");
    }
    std::fs::create_dir_all(&out)?;
    let mut ca = CertificateParams::new(Vec::<String>::new())?;
    ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca.distinguished_name
        .push(DnType::CommonName, "Hodei throwaway CA");
    ca.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    let issuer = CertifiedIssuer::self_signed(ca, KeyPair::generate()?)?;
    write(&out.join("ca.pem"), &issuer.pem(), false)?;
    let mut names = vec!["127.0.0.1".to_string(), "localhost".to_string()];
    names.extend(hosts);
    for node in 1..=nodes {
        let mut params = CertificateParams::new(names.clone())?;
        params
            .distinguished_name
            .push(DnType::CommonName, format!("hodei node {node}"));
        params.extended_key_usages = vec![
            ExtendedKeyUsagePurpose::ServerAuth,
            ExtendedKeyUsagePurpose::ClientAuth,
        ];
        let key = KeyPair::generate()?;
        let cert = params.signed_by(&key, &issuer)?;
        write(&out.join(format!("node-{node}.pem")), &cert.pem(), false)?;
        write(
            &out.join(format!("node-{node}.key")),
            &key.serialize_pem(),
            true,
        )?;
    }
    println!(
        "wrote {}/ca.pem and {nodes} node certificate(s) for {}",
        out.display(),
        names.join(", ")
    );
    Ok(())
}

/// Writes `text` to `path`; a key readable by its owner only.
fn write(path: &std::path::Path, text: &str, secret: bool) -> anyhow::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(if secret { 0o600 } else { 0o644 })
        .open(path)
        .map_err(|error| anyhow::anyhow!("cannot write {}: {error}", path.display()))?;
    file.write_all(text.as_bytes())?;
    Ok(())
}
