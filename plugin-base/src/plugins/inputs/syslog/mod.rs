//! `service_syslog` (iLogtail's name, options and fields): a service input that receives syslog
//! over TCP (optionally with TLS), UDP or a Unix datagram socket (`/dev/log`), parses each
//! message by `ParseProtocol` and sends the logs into the pipeline.
//!
//! * [`address`]: `Address` → where to listen; [`tls`]: the `TLS` options.
//! * [`framing`]: cutting a TCP stream into messages; [`message`]: parsing one.
//! * [`batch`]: a message → a log with iLogtail's fields, logs → groups.
//! * [`tcp`] and [`datagram`]: the listeners.
//!
//! Nothing accepted is dropped on the way: a listener waits for the pipeline when it is full
//! and reads nothing meanwhile, so TCP senders are slowed by the kernel's flow control (UDP has
//! none: the kernel drops datagrams its buffer cannot hold, as it would for any receiver).

pub mod address;
pub mod batch;
pub mod datagram;
pub mod framing;
pub mod message;
pub mod tcp;
pub mod tls;

use crate::runtime::feed::Feed;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use serde::Deserialize;
use serde_json::Value;
use tokio::sync::watch;

use self::address::Listen;
use self::batch::{Batch, Decoder};
use self::message::Protocol;
use self::tls::TlsConfig;
use crate::context::AlarmLevel;
use crate::runtime::registry::{parse_detail, PluginContext, PluginFactory, ServiceInput};

/// When the input stops, each listener and connection still takes what has already arrived:
/// for this long at most...
const DRAIN_TIME: Duration = Duration::from_millis(1000);
/// ... and it has all arrived once nothing came for this long. (An instant check would not
/// do: the runtime learns that a socket is readable only when its event loop turns.)
const DRAIN_QUIET: Duration = Duration::from_millis(50);

/// iLogtail's cap on `MaxMessageSize`.
const MAX_MESSAGE_SIZE_CAP: i64 = 512 * 1024;

#[derive(Clone, Debug, Deserialize)]
#[serde(default, rename_all = "PascalCase")]
pub struct SyslogConfig {
    /// `tcp://host:port`, `udp://host:port` (also `tcp4`, `tcp6`, `udp4`, `udp6`) or
    /// `unixgram:///path`.
    pub address: String,
    /// TCP connections at once; one more is closed as soon as it is accepted. 0 or less: no
    /// limit.
    pub max_connections: i64,
    /// A TCP connection that sends nothing for this long is closed. 0: never.
    pub timeout_seconds: i64,
    /// The longest message, in bytes (at most 512 KiB); a longer one is cut there.
    pub max_message_size: i64,
    /// TCP keep-alive probes after this many idle seconds; 0 turns keep-alive off, a negative
    /// value leaves the system's setting.
    pub keep_alive_seconds: i64,
    /// `""` (no parsing), `rfc3164`, `rfc5424` or `auto`.
    pub parse_protocol: String,
    /// A message that does not parse is kept whole in `_content_` (true) or dropped (false).
    pub ignore_parse_failure: bool,
    /// 3164 messages carry no hostname (read from `/dev/log`): use this host's.
    pub add_hostname: bool,
    /// TLS on the TCP listener (a Tailrace addition; see [`tls`]).
    #[serde(rename = "TLS")]
    pub tls: TlsConfig,
}

impl Default for SyslogConfig {
    fn default() -> Self {
        SyslogConfig {
            // iLogtail's documented default.
            address: "tcp://127.0.0.1:9999".into(),
            max_connections: 100,
            timeout_seconds: 0,
            max_message_size: 64 * 1024,
            keep_alive_seconds: 300,
            parse_protocol: String::new(),
            ignore_parse_failure: true,
            add_hostname: false,
            tls: TlsConfig::default(),
        }
    }
}

pub const PLUGIN: (&str, PluginFactory) = ("service_syslog", PluginFactory::ServiceInput(build));

/// What the listeners and their connections share.
pub struct Shared {
    pub ctx: PluginContext,
    pub listen: Listen,
    pub decoder: Decoder,
    pub max_message_size: usize,
    pub max_connections: Option<usize>,
    pub timeout: Option<Duration>,
    /// None: the system's setting; Some(None): off; Some(Some(d)): probes after `d` idle.
    pub keep_alive: Option<Option<Duration>>,
    parse_failures: Throttle,
    truncated: Throttle,
    refused: Throttle,
    handshakes: Throttle,
}

fn build(ctx: &PluginContext, detail: &Value) -> Result<Box<dyn ServiceInput>, String> {
    let config: SyslogConfig = parse_detail(detail)?;
    let listen = address::parse(&config.address).map_err(|e| format!("Address: {e}"))?;
    let protocol =
        Protocol::from_option(&config.parse_protocol).map_err(|e| format!("ParseProtocol: {e}"))?;
    if protocol == Protocol::Raw && !config.ignore_parse_failure {
        // iLogtail's rule: without a protocol there is nothing to fail.
        return Err("IgnoreParseFailure: must be true when ParseProtocol is empty".into());
    }
    if config.max_message_size <= 0 {
        return Err(format!(
            "MaxMessageSize: {} is not a size in bytes (1 to {MAX_MESSAGE_SIZE_CAP})",
            config.max_message_size
        ));
    }
    let tls = config.tls.server_config()?;
    if tls.is_some() && !matches!(listen, Listen::Tcp(_)) {
        return Err(format!(
            "TLS: needs a tcp Address, not {:?}",
            config.address
        ));
    }
    let seconds = |s: i64| Duration::from_secs(s.unsigned_abs());
    let shared = Shared {
        ctx: ctx.clone(),
        listen,
        decoder: Decoder {
            protocol,
            ignore_parse_failure: config.ignore_parse_failure,
            add_hostname: config.add_hostname.then(host_name),
            local_hostname: Bytes::from(host_name()),
            local_ip: Bytes::from(tailrace::processor::appender::host_ipv4().unwrap_or_default()),
        },
        max_message_size: config.max_message_size.min(MAX_MESSAGE_SIZE_CAP) as usize,
        max_connections: (config.max_connections > 0).then_some(config.max_connections as usize),
        timeout: (config.timeout_seconds > 0).then(|| seconds(config.timeout_seconds)),
        keep_alive: match config.keep_alive_seconds {
            s if s < 0 => None,
            0 => Some(None),
            s => Some(Some(seconds(s))),
        },
        parse_failures: Throttle::default(),
        truncated: Throttle::default(),
        refused: Throttle::default(),
        handshakes: Throttle::default(),
    };
    Ok(Box::new(Syslog {
        shared: Arc::new(shared),
        tls: tls.map(tokio_rustls::TlsAcceptor::from),
    }))
}

fn host_name() -> String {
    tailrace::processor::appender::host_name()
}

struct Syslog {
    shared: Arc<Shared>,
    tls: Option<tokio_rustls::TlsAcceptor>,
}

impl ServiceInput for Syslog {
    fn run(
        self: Box<Self>,
        out: Feed,
        stop: watch::Receiver<bool>,
    ) -> Pin<Box<dyn Future<Output = ()> + Send>> {
        let Syslog { shared, tls } = *self;
        Box::pin(async move {
            match shared.listen.clone() {
                Listen::Tcp(addr) => tcp::serve(shared, addr, tls, out, stop).await,
                Listen::Udp(addr) => datagram::serve_udp(shared, addr, out, stop).await,
                Listen::Unixgram(path) => datagram::serve_unix(shared, path, out, stop).await,
            }
        })
    }
}

impl Shared {
    /// Parses one message into `batch`; one that is empty, or does not parse while
    /// `IgnoreParseFailure` is false, adds nothing.
    pub fn ingest(&self, data: &[u8], client_ip: &Bytes, batch: &mut Batch) {
        if data.is_empty() {
            return;
        }
        match self.decoder.decode(data, client_ip) {
            Ok(log) => batch.push(log, data.len()),
            Err(e) => {
                if let Some(more) = self.parse_failures.allow() {
                    self.ctx.alarm(
                        "SERVICE_SYSLOG_PARSE_ALARM",
                        AlarmLevel::Warning,
                        format!(
                            "service_syslog: dropped a message that does not parse ({e}; IgnoreParseFailure is false){}: {:?}",
                            also(more),
                            String::from_utf8_lossy(&data[..data.len().min(256)])
                        ),
                    );
                }
            }
        }
    }

    /// Tells (now and then) that a message was cut at `MaxMessageSize`.
    pub fn truncated(&self, client_ip: &Bytes) {
        if let Some(more) = self.truncated.allow() {
            self.ctx.alarm(
                "SERVICE_SYSLOG_STREAM_ALARM",
                AlarmLevel::Warning,
                format!(
                    "service_syslog: a message from {} was longer than MaxMessageSize ({} bytes) and was cut there{}",
                    String::from_utf8_lossy(client_ip),
                    self.max_message_size,
                    also(more)
                ),
            );
        }
    }

    /// Tells (now and then) that a connection was closed: `MaxConnections` reached.
    pub fn refused(&self, peer: std::net::SocketAddr) {
        if let Some(more) = self.refused.allow() {
            self.ctx.alarm(
                "SERVICE_SYSLOG_STREAM_ALARM",
                AlarmLevel::Warning,
                format!(
                    "service_syslog: MaxConnections ({}) reached, a connection from {peer} was closed{}",
                    self.max_connections.unwrap_or_default(),
                    also(more)
                ),
            );
        }
    }

    /// Tells (now and then) that a TLS handshake failed.
    pub fn handshake_failed(&self, peer: std::net::SocketAddr, why: &str) {
        if let Some(more) = self.handshakes.allow() {
            self.ctx.alarm(
                "SERVICE_SYSLOG_TLS_ALARM",
                AlarmLevel::Warning,
                format!(
                    "service_syslog: TLS handshake with {peer} failed: {why}{}",
                    also(more)
                ),
            );
        }
    }
}

fn also(more: u64) -> String {
    if more == 0 {
        String::new()
    } else {
        format!(" ({more} more since the last report)")
    }
}

/// At most one report a second of a thing that may happen for every message.
#[derive(Default)]
struct Throttle {
    last: Mutex<Option<Instant>>,
    suppressed: AtomicU64,
}

impl Throttle {
    /// Some(how many were not reported since the last report) when this one may be reported.
    fn allow(&self) -> Option<u64> {
        let mut last = self.last.lock().unwrap_or_else(|e| e.into_inner());
        let now = Instant::now();
        if last.is_some_and(|at| now.duration_since(at) < Duration::from_secs(1)) {
            self.suppressed.fetch_add(1, Ordering::Relaxed);
            return None;
        }
        *last = Some(now);
        Some(self.suppressed.swap(0, Ordering::Relaxed))
    }
}

/// Returns once `stop` is true (the watch's guard is not held across the caller's awaits).
pub async fn stopped(stop: &mut watch::Receiver<bool>) {
    let _ = stop.wait_for(|stopped| *stopped).await;
}

/// Sends what `batch` holds; false when the pipeline is gone.
pub async fn send(out: &Feed, batch: &mut Batch) -> bool {
    match batch.take() {
        Some(group) => out.send(group).await.is_ok(),
        None => true,
    }
}

/// Binds with `bind` until it works, raising an alarm and retrying with a growing delay while
/// it does not (the port may still be held, by a process or an instance being stopped); None
/// when told to stop first.
pub async fn bind_until_stopped<T, F, Fut>(
    shared: &Shared,
    stop: &mut watch::Receiver<bool>,
    bind: F,
) -> Option<T>
where
    F: Fn() -> Fut,
    Fut: Future<Output = std::io::Result<T>>,
{
    let mut delay = Duration::from_millis(500);
    loop {
        if *stop.borrow() {
            return None;
        }
        match bind().await {
            Ok(bound) => return Some(bound),
            Err(e) => {
                shared.ctx.alarm(
                    "SERVICE_SYSLOG_INIT_ALARM",
                    AlarmLevel::Error,
                    format!(
                        "service_syslog: cannot listen on {}: {e}; trying again in {delay:?}",
                        shared.listen
                    ),
                );
                tokio::select! {
                    _ = tokio::time::sleep(delay) => {}
                    _ = stopped(stop) => return None,
                }
                delay = (delay * 2).min(Duration::from_secs(30));
            }
        }
    }
}

#[cfg(test)]
mod tests;
