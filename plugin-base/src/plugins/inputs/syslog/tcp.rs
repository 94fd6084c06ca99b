//! The TCP listener: one task per connection (up to `MaxConnections`), each cutting its stream
//! into messages ([`Deframer`]), batching their logs and sending the batches. While the
//! pipeline is full a connection reads nothing, so the kernel's flow control slows its sender.
//! When the input stops, each connection reads what has already arrived, sends it, and closes.

use crate::runtime::feed::Feed;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use tokio::io::{AsyncRead, AsyncReadExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{watch, OwnedSemaphorePermit, Semaphore};
use tokio::task::JoinSet;
use tokio::time::{sleep_until, timeout, timeout_at, Instant};
use tokio_rustls::TlsAcceptor;

use super::batch::Batch;
use super::framing::{Deframer, Frame};
use super::{bind_until_stopped, send, stopped, Shared, DRAIN_QUIET, DRAIN_TIME};
use crate::context::AlarmLevel;

/// Bytes read at once from a connection.
const READ_CHUNK: usize = 64 * 1024;
/// A TLS handshake must be done within this (or `TimeoutSeconds`, when shorter).
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// At stop, connections still in the kernel's backlog are taken for this long at most.
const BACKLOG_TIME: Duration = Duration::from_millis(250);
/// At stop, a connection reads at most this much of what has already arrived.
const DRAIN_LIMIT: usize = 16 * 1024 * 1024;

pub async fn serve(
    shared: Arc<Shared>,
    addr: SocketAddr,
    tls: Option<TlsAcceptor>,
    out: Feed,
    mut stop: watch::Receiver<bool>,
) {
    let Some(listener) = bind_until_stopped(&shared, &mut stop, || TcpListener::bind(addr)).await
    else {
        return;
    };
    let local = listener.local_addr().unwrap_or(addr);
    tracing::info!(
        config = %shared.ctx.real_name,
        "service_syslog: listening on tcp://{local}{}",
        if tls.is_some() { " with TLS" } else { "" }
    );
    let permits = shared.max_connections.map(|n| Arc::new(Semaphore::new(n)));
    let mut connections = JoinSet::new();
    let mut accept_delay = Duration::from_millis(10);
    loop {
        tokio::select! {
            biased;
            _ = stopped(&mut stop) => break,
            Some(_) = connections.join_next(), if !connections.is_empty() => {}
            accepted = listener.accept() => {
                let (stream, peer) = match accepted {
                    Ok(accepted) => accepted,
                    Err(e) => {
                        // Out of file descriptors, mostly: wait a little, as iLogtail does.
                        shared.ctx.alarm(
                            "SERVICE_SYSLOG_STREAM_ALARM",
                            AlarmLevel::Error,
                            format!("service_syslog: accept on tcp://{local} failed: {e}"),
                        );
                        tokio::time::sleep(accept_delay).await;
                        accept_delay = (accept_delay * 2).min(Duration::from_secs(1));
                        continue;
                    }
                };
                accept_delay = Duration::from_millis(10);
                let permit = match &permits {
                    None => None,
                    Some(permits) => match permits.clone().try_acquire_owned() {
                        Ok(permit) => Some(permit),
                        Err(_) => {
                            shared.refused(peer);
                            drop(stream);
                            continue;
                        }
                    },
                };
                keep_alive(&shared, &stream);
                connections.spawn(connection(
                    shared.clone(),
                    stream,
                    peer,
                    tls.clone(),
                    out.clone(),
                    stop.clone(),
                    permit,
                ));
            }
        }
    }
    // Connections the kernel already accepted may hold messages: they are taken too (each sees
    // the stop at once and reads what has arrived), for a short while: the connections'
    // reading must end within the runtime's limit on stopping an input.
    let deadline = Instant::now() + BACKLOG_TIME;
    while let Ok(Ok((stream, peer))) = timeout_at(
        (Instant::now() + DRAIN_QUIET).min(deadline),
        listener.accept(),
    )
    .await
    {
        let permit = permits
            .as_ref()
            .and_then(|p| p.clone().try_acquire_owned().ok());
        if permits.is_none() || permit.is_some() {
            let task = connection(
                shared.clone(),
                stream,
                peer,
                tls.clone(),
                out.clone(),
                stop.clone(),
                permit,
            );
            connections.spawn(task);
        }
    }
    // No new connections; the open ones send what has arrived and close.
    drop(listener);
    while connections.join_next().await.is_some() {}
    tracing::info!(config = %shared.ctx.real_name, "service_syslog: stopped listening on tcp://{local}");
}

fn keep_alive(shared: &Shared, stream: &TcpStream) {
    let Some(setting) = shared.keep_alive else {
        return;
    };
    let socket = socket2::SockRef::from(stream);
    let result = match setting {
        None => socket.set_keepalive(false),
        Some(idle) => socket.set_tcp_keepalive(&socket2::TcpKeepalive::new().with_time(idle)),
    };
    if let Err(e) = result {
        tracing::debug!("service_syslog: cannot set keep-alive: {e}");
    }
}

async fn connection(
    shared: Arc<Shared>,
    stream: TcpStream,
    peer: SocketAddr,
    tls: Option<TlsAcceptor>,
    out: Feed,
    mut stop: watch::Receiver<bool>,
    _permit: Option<OwnedSemaphorePermit>,
) {
    let client_ip = Bytes::from(peer.ip().to_canonical().to_string());
    let Some(acceptor) = tls else {
        read_messages(&shared, stream, &client_ip, &out, stop).await;
        return;
    };
    let limit = shared
        .timeout
        .map_or(HANDSHAKE_TIMEOUT, |t| t.min(HANDSHAKE_TIMEOUT));
    let handshake = tokio::select! {
        _ = stopped(&mut stop) => return,
        handshake = timeout(limit, acceptor.accept(stream)) => handshake,
    };
    match handshake {
        Ok(Ok(stream)) => read_messages(&shared, stream, &client_ip, &out, stop).await,
        Ok(Err(e)) => shared.handshake_failed(peer, &e.to_string()),
        Err(_) => shared.handshake_failed(peer, &format!("not done within {limit:?}")),
    }
}

/// Reads one connection until it closes, goes idle for `TimeoutSeconds` or the input stops.
async fn read_messages<S: AsyncRead + Unpin>(
    shared: &Shared,
    mut stream: S,
    client_ip: &Bytes,
    out: &Feed,
    mut stop: watch::Receiver<bool>,
) {
    let mut reader = Reader {
        shared,
        client_ip,
        out,
        deframer: Deframer::new(shared.max_message_size),
        batch: Batch::default(),
        buf: vec![0; READ_CHUNK],
    };
    let mut active = Instant::now();
    loop {
        let flush_at = reader.batch.deadline();
        let idle_at = shared.timeout.map(|t| active + t);
        tokio::select! {
            biased;
            _ = stopped(&mut stop) => {
                reader.drain(&mut stream).await;
                break;
            }
            _ = sleep_until(flush_at.unwrap_or_else(Instant::now)), if flush_at.is_some() => {
                if !send(out, &mut reader.batch).await {
                    return;
                }
            }
            _ = sleep_until(idle_at.unwrap_or_else(Instant::now)), if idle_at.is_some() => {
                tracing::info!(
                    config = %shared.ctx.real_name,
                    "service_syslog: {} sent nothing for TimeoutSeconds, connection closed",
                    String::from_utf8_lossy(client_ip)
                );
                break;
            }
            read = stream.read(&mut reader.buf) => {
                match read {
                    Ok(0) => {
                        reader.finish();
                        break;
                    }
                    Ok(n) => {
                        if !reader.cut(n).await {
                            return;
                        }
                        // Time spent waiting for a full pipeline is not the client's idling.
                        active = Instant::now();
                    }
                    Err(e) => {
                        tracing::debug!("service_syslog: read from {}: {e}", String::from_utf8_lossy(client_ip));
                        break;
                    }
                }
            }
        }
    }
    send(out, &mut reader.batch).await;
}

/// A connection's state between reads.
struct Reader<'a> {
    shared: &'a Shared,
    client_ip: &'a Bytes,
    out: &'a Feed,
    deframer: Deframer,
    batch: Batch,
    buf: Vec<u8>,
}

impl Reader<'_> {
    /// Cuts the `n` bytes just read into messages; sends each full batch. False when the
    /// pipeline is gone.
    async fn cut(&mut self, n: usize) -> bool {
        self.deframer.extend(&self.buf[..n]);
        while let Some(frame) = self.deframer.next_frame() {
            let data = match frame {
                Frame::Message(data) => data,
                Frame::Truncated(data) => {
                    self.shared.truncated(self.client_ip);
                    data
                }
            };
            self.shared.ingest(&data, self.client_ip, &mut self.batch);
            if self.batch.is_full() && !send(self.out, &mut self.batch).await {
                return false;
            }
        }
        true
    }

    /// The connection closed: what is left is a last message without its newline.
    fn finish(&mut self) {
        if let Some(Frame::Message(data) | Frame::Truncated(data)) = self.deframer.finish() {
            self.shared.ingest(&data, self.client_ip, &mut self.batch);
        }
    }

    /// The input stops: takes what has already arrived (without waiting for more).
    async fn drain<S: AsyncRead + Unpin>(&mut self, stream: &mut S) {
        let mut taken = 0;
        let deadline = Instant::now() + DRAIN_TIME;
        while taken < DRAIN_LIMIT {
            let quiet = (Instant::now() + DRAIN_QUIET).min(deadline);
            let Ok(read) = timeout_at(quiet, stream.read(&mut self.buf)).await else {
                break;
            };
            match read {
                Ok(0) => {
                    self.finish();
                    break;
                }
                Ok(n) => {
                    taken += n;
                    if !self.cut(n).await {
                        break;
                    }
                }
                Err(_) => break,
            }
        }
    }
}
