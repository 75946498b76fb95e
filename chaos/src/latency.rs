//! Added latency between the cluster's processes (the kernel here has no `tc netem`): an
//! iptables DNAT rule in the nemesis's namespace sends every TCP connection that a node
//! or a worker opens from its own source address to one proxy in the nemesis, which
//! learns where it was going (`SO_ORIGINAL_DST`), opens the same connection itself from
//! the same source address (marked, so the rule lets it through, and so the link's
//! partition and loss rules still apply to it) and passes bytes both ways, each chunk
//! held for the delay of its link at the time it was read, in order.
//!
//! A link's delay is the larger of its source address's and its destination port's:
//! slowing a node slows what it sends and what is sent to it, replies included.

use std::collections::BTreeMap;
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use anyhow::{Context, bail};
use nix::sys::socket::{getsockopt, setsockopt, sockopt};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpSocket, TcpStream};
use tokio::sync::mpsc;
use tokio::time::Instant;

/// The mark of the proxy's own connections, which the DNAT rule passes.
const MARK: u32 = 0x4e;

#[derive(Default)]
struct Delays {
    by_source: BTreeMap<Ipv4Addr, Duration>,
    by_port: BTreeMap<u16, Duration>,
}

impl Delays {
    fn of(&self, source: Ipv4Addr, port: u16) -> Duration {
        let from = self.by_source.get(&source).copied().unwrap_or_default();
        let to = self.by_port.get(&port).copied().unwrap_or_default();
        from.max(to)
    }
}

/// The proxy every cluster connection passes through.
pub struct LatencyProxy {
    delays: Arc<Mutex<Delays>>,
    accept: tokio::task::JoinHandle<()>,
}

impl LatencyProxy {
    /// Starts the proxy and sends every TCP connection opened from `sources` through it.
    pub async fn install(sources: &[String]) -> anyhow::Result<Self> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let port = listener.local_addr()?.port();
        for source in sources {
            crate::firewall::run(
                "iptables",
                &[
                    "-w",
                    "-t",
                    "nat",
                    "-A",
                    "OUTPUT",
                    "-p",
                    "tcp",
                    "-s",
                    source,
                    "-m",
                    "mark",
                    "!",
                    "--mark",
                    &MARK.to_string(),
                    "-j",
                    "DNAT",
                    "--to-destination",
                    &format!("127.0.0.1:{port}"),
                ],
            )?;
        }
        let delays = Arc::new(Mutex::new(Delays::default()));
        let shared = delays.clone();
        let accept = tokio::spawn(async move {
            while let Ok((downstream, _)) = listener.accept().await {
                let delays = shared.clone();
                // A connection ending badly is ordinary here: the nemesis kills processes.
                tokio::spawn(async move {
                    let _ = relay(downstream, delays).await;
                });
            }
        });
        Ok(Self { delays, accept })
    }

    /// Delays everything `source` sends and everything sent to `ports` by `delay`.
    pub fn slow(&self, source: &str, ports: &[u16], delay: Duration) -> anyhow::Result<()> {
        let source: Ipv4Addr = source.parse().context("a source address")?;
        let mut delays = self.delays.lock().unwrap_or_else(PoisonError::into_inner);
        delays.by_source.insert(source, delay);
        for port in ports {
            delays.by_port.insert(*port, delay);
        }
        Ok(())
    }

    /// No link is slow any more (what is already held still waits out its delay).
    pub fn heal(&self) {
        *self.delays.lock().unwrap_or_else(PoisonError::into_inner) = Delays::default();
    }
}

impl Drop for LatencyProxy {
    fn drop(&mut self) {
        self.accept.abort();
    }
}

/// Where a redirected connection was going.
fn original_destination(stream: &TcpStream) -> anyhow::Result<SocketAddrV4> {
    let raw = getsockopt(stream, sockopt::OriginalDst).context("SO_ORIGINAL_DST")?;
    Ok(SocketAddrV4::new(
        Ipv4Addr::from(u32::from_be(raw.sin_addr.s_addr)),
        u16::from_be(raw.sin_port),
    ))
}

async fn relay(downstream: TcpStream, delays: Arc<Mutex<Delays>>) -> anyhow::Result<()> {
    let SocketAddr::V4(client) = downstream.peer_addr()? else {
        bail!("an IPv6 client");
    };
    let target = original_destination(&downstream)?;
    let socket = TcpSocket::new_v4()?;
    setsockopt(&socket, sockopt::Mark, &MARK).context("SO_MARK")?;
    socket.bind(SocketAddr::V4(SocketAddrV4::new(*client.ip(), 0)))?;
    let upstream = socket.connect(SocketAddr::V4(target)).await?;
    downstream.set_nodelay(true)?;
    upstream.set_nodelay(true)?;
    let (down_read, down_write) = downstream.into_split();
    let (up_read, up_write) = upstream.into_split();
    let link = (*client.ip(), target.port());
    let there = tokio::spawn(pump(down_read, up_write, delays.clone(), link));
    let back = tokio::spawn(pump(up_read, down_write, delays, link));
    let _ = tokio::join!(there, back);
    Ok(())
}

/// Copies `from` to `to`, each chunk held until its link's delay has passed since it was
/// read, never overtaking the chunk before it.
async fn pump(
    mut from: tokio::net::tcp::OwnedReadHalf,
    mut to: tokio::net::tcp::OwnedWriteHalf,
    delays: Arc<Mutex<Delays>>,
    link: (Ipv4Addr, u16),
) {
    let (held, mut due) = mpsc::unbounded_channel::<(Instant, Vec<u8>)>();
    let writer = tokio::spawn(async move {
        while let Some((at, chunk)) = due.recv().await {
            tokio::time::sleep_until(at).await;
            if to.write_all(&chunk).await.is_err() {
                break;
            }
        }
        let _ = to.shutdown().await;
    });
    let mut buffer = vec![0u8; 64 * 1024];
    let mut last = Instant::now();
    loop {
        let read = match from.read(&mut buffer).await {
            Ok(0) | Err(_) => break,
            Ok(read) => read,
        };
        let delay = delays
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .of(link.0, link.1);
        last = last.max(Instant::now() + delay);
        if held.send((last, buffer[..read].to_vec())).is_err() {
            break;
        }
    }
    drop(held);
    let _ = writer.await;
}
