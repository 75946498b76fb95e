//! Compiles every `.proto` under `hodei/` with tonic-prost-build, using the vendored
//! protoc unless `$PROTOC` names another, and writes a descriptor set for gRPC reflection.

use std::path::PathBuf;

const PROTOS: [&str; 7] = [
    "hodei/v1/pool.proto",
    "hodei/v1/cost.proto",
    "hodei/v1/observability.proto",
    "hodei/v1/job.proto",
    "hodei/v1/tenant.proto",
    "hodei/v1/cluster.proto",
    "hodei/v1/raft.proto",
];

fn main() -> Result<(), Box<dyn std::error::Error>> {
    println!("cargo:rerun-if-changed=hodei");
    println!("cargo:rerun-if-env-changed=PROTOC");
    for proto in PROTOS {
        println!("cargo:rerun-if-changed={proto}");
    }
    let protoc_path = match std::env::var_os("PROTOC") {
        Some(path) => PathBuf::from(path),
        None => protoc_bin_vendored::protoc_bin_path()?,
    };
    let mut prost_config = prost_build::Config::new();
    prost_config.protoc_executable(protoc_path);
    let out_dir = PathBuf::from(std::env::var("OUT_DIR")?);
    tonic_prost_build::configure()
        // A message that does not decode is the caller's mistake (src/codec.rs).
        .codec_path("crate::codec::StrictCodec")
        .file_descriptor_set_path(out_dir.join("hodei_descriptor.bin"))
        .compile_with_config(prost_config, &PROTOS, &["."])?;
    Ok(())
}
