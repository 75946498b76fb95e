//! A fault-injecting TCP proxy on loopback, put between nodes to lose what they say:
//! it passes bytes both ways, or swallows the replies (what the target sends back) while
//! still delivering the requests, or refuses new connections; and it can pass the
//! requests at a set rate (a slow link).

use std::sync::Arc;
use std::sync::atomic::{AtomicU8, AtomicU64, Ordering};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum ProxyMode {
    Pass = 0,
    /// Requests reach the target; nothing it answers comes back.
    DropReplies = 1,
    /// New connections are closed at once.
    Refuse = 2,
}

pub struct FaultProxy {
    pub port: u16,
    mode: Arc<AtomicU8>,
    /// Bytes per second the requests pass at (0: as fast as they come).
    rate: Arc<AtomicU64>,
    accept: JoinHandle<()>,
}

impl FaultProxy {
    /// Listens on a free loopback port and forwards to `target` (`host:port`).
    pub async fn start(target: String) -> anyhow::Result<Self> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let port = listener.local_addr()?.port();
        let mode = Arc::new(AtomicU8::new(ProxyMode::Pass as u8));
        let accept_mode = mode.clone();
        let rate = Arc::new(AtomicU64::new(0));
        let accept_rate = rate.clone();
        let accept = tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                if accept_mode.load(Ordering::SeqCst) == ProxyMode::Refuse as u8 {
                    drop(client);
                    continue;
                }
                let target = target.clone();
                let mode = accept_mode.clone();
                let rate = accept_rate.clone();
                tokio::spawn(async move {
                    let Ok(server) = TcpStream::connect(&target).await else {
                        return;
                    };
                    let _ = client.set_nodelay(true);
                    let _ = server.set_nodelay(true);
                    let (mut client_read, mut client_write) = client.into_split();
                    let (mut server_read, mut server_write) = server.into_split();
                    let requests = tokio::spawn(async move {
                        let mut buffer = vec![0u8; 16 * 1024];
                        loop {
                            let read = match client_read.read(&mut buffer).await {
                                Ok(0) | Err(_) => break,
                                Ok(read) => read,
                            };
                            if server_write.write_all(&buffer[..read]).await.is_err() {
                                break;
                            }
                            let rate = rate.load(Ordering::SeqCst);
                            if let Some(nanos) = (read as u64 * 1_000_000_000).checked_div(rate) {
                                tokio::time::sleep(Duration::from_nanos(nanos)).await;
                            }
                        }
                        let _ = server_write.shutdown().await;
                    });
                    let mut buffer = vec![0u8; 64 * 1024];
                    loop {
                        let read = match server_read.read(&mut buffer).await {
                            Ok(0) | Err(_) => break,
                            Ok(read) => read,
                        };
                        if mode.load(Ordering::SeqCst) == ProxyMode::DropReplies as u8 {
                            continue;
                        }
                        if client_write.write_all(&buffer[..read]).await.is_err() {
                            break;
                        }
                    }
                    let _ = client_write.shutdown().await;
                    requests.abort();
                });
            }
        });
        Ok(Self {
            port,
            mode,
            rate,
            accept,
        })
    }

    pub fn addr(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    pub fn set(&self, mode: ProxyMode) {
        self.mode.store(mode as u8, Ordering::SeqCst);
    }

    /// Passes the requests at most `bytes_per_second` (0: no limit).
    pub fn set_rate(&self, bytes_per_second: u64) {
        self.rate.store(bytes_per_second, Ordering::SeqCst);
    }
}

impl Drop for FaultProxy {
    fn drop(&mut self) {
        self.accept.abort();
    }
}
