//! The datagram listeners, UDP and Unix (`/dev/log`): one datagram holds one message, or
//! several separated by newlines (as iLogtail reads them). A datagram is received into a buffer
//! of `MaxMessageSize` bytes; the kernel cuts a longer one there.

use crate::runtime::feed::Feed;
use std::io;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use bytes::Bytes;
use tokio::net::{UdpSocket, UnixDatagram};
use tokio::sync::watch;
use tokio::time::{sleep_until, timeout_at, Instant};

use super::batch::Batch;
use super::{bind_until_stopped, send, stopped, Shared, DRAIN_QUIET, DRAIN_TIME};

enum Socket {
    Udp(UdpSocket),
    Unix(UnixDatagram),
}

impl Socket {
    /// One datagram: its length and the sender's IP (empty for a Unix socket).
    async fn recv(&self, buf: &mut [u8]) -> io::Result<(usize, Bytes)> {
        match self {
            Socket::Udp(socket) => {
                let (n, peer) = socket.recv_from(buf).await?;
                Ok((n, Bytes::from(peer.ip().to_canonical().to_string())))
            }
            Socket::Unix(socket) => Ok((socket.recv(buf).await?, Bytes::new())),
        }
    }
}

/// At stop, at most this many datagrams already received are still read.
const DRAIN_LIMIT: usize = 100_000;

pub async fn serve_udp(
    shared: Arc<Shared>,
    addr: SocketAddr,
    out: Feed,
    mut stop: watch::Receiver<bool>,
) {
    let Some(socket) = bind_until_stopped(&shared, &mut stop, || UdpSocket::bind(addr)).await
    else {
        return;
    };
    let local = socket.local_addr().unwrap_or(addr);
    tracing::info!(config = %shared.ctx.real_name, "service_syslog: listening on udp://{local}");
    receive(&shared, Socket::Udp(socket), out, stop).await;
    tracing::info!(config = %shared.ctx.real_name, "service_syslog: stopped listening on udp://{local}");
}

pub async fn serve_unix(
    shared: Arc<Shared>,
    path: PathBuf,
    out: Feed,
    mut stop: watch::Receiver<bool>,
) {
    let bind = || async {
        remove_stale_socket(&path);
        UnixDatagram::bind(&path)
    };
    let Some(socket) = bind_until_stopped(&shared, &mut stop, bind).await else {
        return;
    };
    tracing::info!(
        config = %shared.ctx.real_name,
        "service_syslog: listening on unixgram://{}",
        path.display()
    );
    receive(&shared, Socket::Unix(socket), out, stop).await;
    // As iLogtail does: the socket file goes with the listener.
    if let Err(e) = std::fs::remove_file(&path) {
        tracing::warn!("service_syslog: cannot remove {}: {e}", path.display());
    }
}

/// A socket file left by a listener that did not stop cleanly would make binding fail; a file
/// that is not a socket is left alone (binding then fails and says so).
fn remove_stale_socket(path: &std::path::Path) {
    use std::os::unix::fs::FileTypeExt;
    if std::fs::symlink_metadata(path).is_ok_and(|m| m.file_type().is_socket()) {
        let _ = std::fs::remove_file(path);
    }
}

async fn receive(shared: &Shared, socket: Socket, out: Feed, mut stop: watch::Receiver<bool>) {
    let mut buf = vec![0u8; shared.max_message_size];
    let mut batch = Batch::default();
    loop {
        let flush_at = batch.deadline();
        tokio::select! {
            biased;
            _ = stopped(&mut stop) => {
                // What has already arrived is taken, without waiting for more.
                let deadline = Instant::now() + DRAIN_TIME;
                for _ in 0..DRAIN_LIMIT {
                    let quiet = (Instant::now() + DRAIN_QUIET).min(deadline);
                    let Ok(Ok((n, client_ip))) = timeout_at(quiet, socket.recv(&mut buf)).await
                    else {
                        break;
                    };
                    for line in lines(&buf[..n]) {
                        shared.ingest(line, &client_ip, &mut batch);
                    }
                    if batch.is_full() && !send(&out, &mut batch).await {
                        return;
                    }
                }
                break;
            }
            _ = sleep_until(flush_at.unwrap_or_else(Instant::now)), if flush_at.is_some() => {
                if !send(&out, &mut batch).await {
                    return;
                }
            }
            received = socket.recv(&mut buf) => match received {
                Ok((n, client_ip)) => {
                    for line in lines(&buf[..n]) {
                        shared.ingest(line, &client_ip, &mut batch);
                    }
                    if batch.is_full() && !send(&out, &mut batch).await {
                        return;
                    }
                }
                Err(e) => {
                    // ICMP errors surface here on some systems; the socket stays usable. A
                    // short pause keeps a lasting error from spinning.
                    tracing::debug!("service_syslog: receive: {e}");
                    tokio::time::sleep(std::time::Duration::from_millis(10)).await;
                }
            },
        }
    }
    send(&out, &mut batch).await;
}

/// The messages of one datagram: its newline-separated lines, without a `\r` before the
/// newline; empty ones are left out.
fn lines(datagram: &[u8]) -> impl Iterator<Item = &[u8]> {
    datagram
        .split(|b| *b == b'\n')
        .map(|line| line.strip_suffix(b"\r").unwrap_or(line))
        .filter(|line| !line.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_datagram_may_hold_several_lines() {
        let all: Vec<&[u8]> = lines(b"<1>a\r\n<2>b\n\n<3>c").collect();
        assert_eq!(all, [&b"<1>a"[..], b"<2>b", b"<3>c"]);
        assert_eq!(lines(b"<1>only\n").count(), 1);
        assert_eq!(lines(b"").count(), 0);
    }
}
