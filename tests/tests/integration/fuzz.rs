//! A gRPC fuzzer (issue 21): every method of every public service gets random and
//! mutated messages, as an admin and as a tenant; no call may end in INTERNAL, UNKNOWN or
//! DATA_LOSS (a server fault rather than the caller's mistake), none may hang, and the
//! node must still answer afterwards. Seeded, so that a failure can be replayed.

use std::time::Duration;

use hodei_tests::{NodeProcess, NodeSpec, RestApi};
use prost::Message as _;
use prost::bytes::{Buf as _, BufMut as _};
use tonic::codec::{Codec, DecodeBuf, Decoder, EncodeBuf, Encoder};

const TIMEOUT: Duration = Duration::from_secs(60);
/// Messages per method and principal.
const CASES: u64 = 40;
/// How long one call may take before it counts as a hang.
const CALL_WITHIN: Duration = Duration::from_secs(10);
/// Cluster membership changes are fuzzed only as a tenant (refused before they act): as
/// an admin a random one may legitimately take the node out of its own cluster.
pub const MEMBERSHIP: [&str; 4] = ["Init", "AddMember", "RemoveMember", "TransferLeader"];

/// Messages as raw bytes, in and out.
#[derive(Debug, Clone, Copy, Default)]
pub struct Raw;

impl Codec for Raw {
    type Encode = Vec<u8>;
    type Decode = Vec<u8>;
    type Encoder = Raw;
    type Decoder = Raw;

    fn encoder(&mut self) -> Raw {
        Raw
    }

    fn decoder(&mut self) -> Raw {
        Raw
    }
}

impl Encoder for Raw {
    type Item = Vec<u8>;
    type Error = tonic::Status;

    fn encode(&mut self, item: Vec<u8>, buffer: &mut EncodeBuf<'_>) -> Result<(), tonic::Status> {
        buffer.put_slice(&item);
        Ok(())
    }
}

impl Decoder for Raw {
    type Item = Vec<u8>;
    type Error = tonic::Status;

    fn decode(&mut self, buffer: &mut DecodeBuf<'_>) -> Result<Option<Vec<u8>>, tonic::Status> {
        let mut bytes = vec![0; buffer.remaining()];
        buffer.copy_to_slice(&mut bytes);
        Ok(Some(bytes))
    }
}

/// xorshift64*: reproducible, no dependency.
struct Draw(u64);

impl Draw {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    fn below(&mut self, bound: u64) -> u64 {
        self.next() % bound.max(1)
    }
}

fn varint(out: &mut Vec<u8>, mut value: u64) {
    while value >= 0x80 {
        out.push((value as u8) | 0x80);
        value >>= 7;
    }
    out.push(value as u8);
}

/// A message: random bytes, or protobuf-shaped fields with random numbers, types and
/// contents (strings that are not UTF-8, lengths that overrun, huge varints, nesting).
fn message(draw: &mut Draw, depth: u32) -> Vec<u8> {
    let mut out = Vec::new();
    match draw.below(4) {
        0 => {
            for _ in 0..draw.below(64) {
                out.push(draw.next() as u8);
            }
        }
        _ => {
            for _ in 0..draw.below(8) {
                let field = 1 + draw.below(16);
                match draw.below(5) {
                    0 => {
                        varint(&mut out, field << 3);
                        varint(
                            &mut out,
                            [0, 1, u64::MAX, u64::from(u32::MAX), draw.next()]
                                [draw.below(5) as usize],
                        );
                    }
                    1 => {
                        // A length-delimited field: text, bytes, or a nested message.
                        let content = match draw.below(3) {
                            0 => [
                                "",
                                "a",
                                "default",
                                "pool-default",
                                "x".repeat(300).as_str(),
                                "ünïcode",
                                "../../etc",
                            ][draw.below(7) as usize]
                                .as_bytes()
                                .to_vec(),
                            1 => (0..draw.below(40)).map(|_| draw.next() as u8).collect(),
                            _ if depth < 3 => message(draw, depth + 1),
                            _ => Vec::new(),
                        };
                        varint(&mut out, (field << 3) | 2);
                        varint(&mut out, content.len() as u64);
                        out.extend(content);
                    }
                    2 => {
                        // A length beyond the end of the message.
                        varint(&mut out, (field << 3) | 2);
                        varint(&mut out, 1_000 + draw.below(1_000_000));
                    }
                    3 => {
                        varint(&mut out, (field << 3) | 5);
                        out.extend((draw.next() as u32).to_le_bytes());
                    }
                    _ => {
                        varint(&mut out, (field << 3) | 1);
                        out.extend(draw.next().to_le_bytes());
                    }
                }
            }
        }
    }
    out
}

pub struct Method {
    pub path: String,
    pub name: String,
    pub service: String,
    client_streaming: bool,
    server_streaming: bool,
}

pub fn methods() -> Vec<Method> {
    let set = prost_types::FileDescriptorSet::decode(hodei_proto::FILE_DESCRIPTOR_SET).unwrap();
    let mut found = Vec::new();
    for file in set.file {
        let package = file.package().to_string();
        for service in file.service {
            let service_name = service.name().to_string();
            // The peer port's service is not served on the public port.
            if service_name == "RaftService" {
                continue;
            }
            for method in service.method {
                found.push(Method {
                    path: format!("/{package}.{service_name}/{}", method.name()),
                    name: method.name().to_string(),
                    service: service_name.clone(),
                    client_streaming: method.client_streaming(),
                    server_streaming: method.server_streaming(),
                });
            }
        }
    }
    found
}

async fn call(
    channel: tonic::transport::Channel,
    method: &Method,
    payload: Vec<u8>,
    principal: &str,
) -> Result<(), tonic::Status> {
    call_with(channel, method, payload, "x-hodei-principal", principal).await
}

/// Calls `method` presenting `token` as a bearer token (none: no credentials at all).
pub async fn call_as(
    channel: tonic::transport::Channel,
    method: &Method,
    payload: Vec<u8>,
    token: Option<&str>,
) -> Result<(), tonic::Status> {
    match token {
        Some(token) => {
            call_with(
                channel,
                method,
                payload,
                "authorization",
                &format!("Bearer {token}"),
            )
            .await
        }
        None => call_with(channel, method, payload, "x-hodei-nothing", "-").await,
    }
}

async fn call_with(
    channel: tonic::transport::Channel,
    method: &Method,
    payload: Vec<u8>,
    key: &'static str,
    value: &str,
) -> Result<(), tonic::Status> {
    let principal: tonic::metadata::MetadataValue<_> = value.parse().unwrap();
    let mut grpc = tonic::client::Grpc::new(channel);
    grpc.ready()
        .await
        .map_err(|error| tonic::Status::unavailable(error.to_string()))?;
    let path = http::uri::PathAndQuery::try_from(method.path.clone()).unwrap();
    if method.client_streaming {
        let mut request = tonic::Request::new(tokio_stream::iter(vec![payload]));
        request.metadata_mut().insert(key, principal.clone());
        let mut answers = grpc.streaming(request, path, Raw).await?.into_inner();
        // The first answer (or the end), then the stream is dropped.
        let _ = answers.message().await?;
        return Ok(());
    }
    let mut request = tonic::Request::new(payload);
    request.metadata_mut().insert(key, principal);
    if method.server_streaming {
        let mut answers = grpc
            .server_streaming(request, path, Raw)
            .await?
            .into_inner();
        let _ = tokio::time::timeout(Duration::from_millis(200), answers.message()).await;
        return Ok(());
    }
    grpc.unary(request, path, Raw).await.map(|_| ())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn random_and_mutated_messages_to_every_grpc_method_get_no_server_fault() {
    let dir = tempfile::tempdir().unwrap();
    let mut node = NodeProcess::start_spec(dir.path(), &NodeSpec::new(1)).unwrap();
    node.wait_ready(TIMEOUT).await.unwrap();
    let channel = tonic::transport::Endpoint::from_shared(node.grpc_url())
        .unwrap()
        .connect()
        .await
        .unwrap();
    let methods = methods();
    assert!(methods.len() > 60, "{} methods", methods.len());
    let seed = 0x00C0_FFEE_u64;
    let mut draw = Draw(seed);
    let mut faults = Vec::new();
    let mut calls = 0;
    for method in &methods {
        for principal in ["admin", "tenant:fuzz"] {
            if principal == "admin"
                && method.service == "ClusterService"
                && MEMBERSHIP.contains(&method.name.as_str())
            {
                continue;
            }
            for case in 0..CASES {
                let payload = message(&mut draw, 0);
                let outcome = tokio::time::timeout(
                    CALL_WITHIN,
                    call(channel.clone(), method, payload.clone(), principal),
                )
                .await;
                calls += 1;
                let fault = match outcome {
                    Err(_) => Some("no answer (hang)".to_string()),
                    Ok(Err(status))
                        if matches!(
                            status.code(),
                            tonic::Code::Internal
                                | tonic::Code::Unknown
                                | tonic::Code::DataLoss
                                | tonic::Code::Unimplemented
                        ) =>
                    {
                        Some(format!("{:?}: {}", status.code(), status.message()))
                    }
                    Ok(_) => None,
                };
                if let Some(fault) = fault {
                    faults.push(format!(
                        "{} as {principal}, case {case} (seed {seed:#x}), payload {payload:02x?}: {fault}",
                        method.path
                    ));
                }
            }
        }
    }
    assert!(
        faults.is_empty(),
        "{} faults in {calls} calls:\n{}",
        faults.len(),
        faults.join("\n")
    );
    // The node is still up and answering.
    let (status, _) = RestApi::new(&node).get("/api/v1/health").await;
    assert_eq!(status, 200, "{}", node.log_tail());
    println!(
        "gRPC fuzzer: {calls} calls to {} methods, no server fault",
        methods.len()
    );
}
