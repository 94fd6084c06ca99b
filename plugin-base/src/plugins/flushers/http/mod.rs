//! `flusher_http`: iLogtail's HTTP flusher. Each batch (group) is converted with
//! `Convert` (see [`super::convert`]), compressed with `Compression` and POSTed to `RemoteURL` with
//! `Headers` and `Query`. Network errors and 5xx, 429, 401 and 403 answers (iLogtail's
//! retryable ones, plus 429) leave the batch with the runtime, which retries it; any other
//! status is final: the batch is dropped with a `FLUSHER_FLUSH_ALARM` and counted, as iLogtail
//! does. Unlike iLogtail, a batch is never dropped after `Retry.MaxRetryTimes`: it is retried
//! until delivered, carried over a reload and persisted at exit.
//!
//! Retries follow iLogtail's `Retry` backoff (`InitialDelay` doubled up to `MaxDelay`, jitter in
//! the upper half, the cycle starting again after `MaxRetryTimes`) and a server's
//! `Retry-After`. The flusher never sleeps: it says it is not ready until the delay is over
//! (`is_ready`), so a stopping pipeline is never held by a retry.
//!
//! The client is ureq (blocking, rustls), the one the host uses: `Flusher::flush` is synchronous
//! and must say what was delivered before it returns, which a blocking client does directly.
//! The runtime calls it on a tokio worker, so the requests run inside
//! `tokio::task::block_in_place`, and up to `Concurrency` of them at once on scoped threads.
//!
//! Counters (the plugin's statistics, so `GetGoMetrics` and the host's `/metrics` show them):
//! `flusher_http_status_<code>_total` per answer status, `flusher_http_send_errors_total` for
//! requests that got no answer, `flusher_http_dropped_events_total` for events of rejected
//! batches.

pub mod template;
pub mod tls;

use std::collections::BTreeMap;
use std::io::Write;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde::{Deserialize, Deserializer};
use serde_json::Value;
use tailrace::plugin::Flusher;
use tailrace::PipelineEventGroup;

use super::convert::{ConvertConfig, Converter, Protocol};
use crate::context::statistics::PluginStats;
use crate::context::AlarmLevel;
use crate::runtime::registry::{parse_detail, PluginContext, PluginFactory};
use template::Template;

#[derive(Debug, Deserialize)]
#[serde(default, rename_all = "PascalCase")]
pub struct HttpConfig {
    /// Where to POST (required), `http://` or `https://`.
    #[serde(rename = "RemoteURL")]
    pub remote_url: String,
    /// Request headers; values may use `%{content.x}` / `%{tag.x}`.
    pub headers: BTreeMap<String, String>,
    /// Query parameters added to the URL; values may use variables too.
    pub query: BTreeMap<String, String>,
    /// The whole request's time limit (Go duration: nanoseconds, or a string such as `"5s"`).
    #[serde(deserialize_with = "go_duration")]
    pub timeout: Duration,
    pub retry: RetryConfig,
    pub convert: ConvertConfig,
    /// `gzip`, `zstd` or `snappy` (block format, as iLogtail): compresses the body and sets
    /// `Content-Encoding`. A `Content-Encoding` header of one of these does the same.
    pub compression: String,
    /// Requests in flight at once.
    pub concurrency: i64,
    /// Idle connections kept per host (at least `Concurrency + 1`).
    pub max_idle_conns_per_host: i64,
    /// TLS for `https` URLs.
    pub authentication: tls::Authentication,
    /// Accepted for compatibility: the runtime's flusher queue (`DefaultLogGroupQueueSize`)
    /// holds the batches, with backpressure instead of drops.
    pub queue_capacity: i64,
    pub drop_event_when_queue_full: bool,
    pub max_conns_per_host: i64,
    #[serde(deserialize_with = "go_duration")]
    pub idle_conn_timeout: Duration,
    pub write_buffer_size: i64,
    pub async_intercept: bool,
    /// Extensions (`Encoder`, `Authenticator`, `FlushInterceptor`, `RequestInterceptors`):
    /// the base has none, so setting one is an error.
    pub encoder: Option<Value>,
    pub authenticator: Option<Value>,
    pub flush_interceptor: Option<Value>,
    pub request_interceptors: Vec<Value>,
}

impl Default for HttpConfig {
    fn default() -> Self {
        HttpConfig {
            remote_url: String::new(),
            headers: BTreeMap::new(),
            query: BTreeMap::new(),
            timeout: Duration::from_secs(60),
            retry: RetryConfig::default(),
            convert: ConvertConfig::default(),
            compression: String::new(),
            concurrency: 1,
            max_idle_conns_per_host: 0,
            authentication: tls::Authentication::default(),
            queue_capacity: 1024,
            drop_event_when_queue_full: false,
            max_conns_per_host: 0,
            idle_conn_timeout: Duration::ZERO,
            write_buffer_size: 0,
            async_intercept: false,
            encoder: None,
            authenticator: None,
            flush_interceptor: None,
            request_interceptors: Vec::new(),
        }
    }
}

/// iLogtail's `retryConfig`.
#[derive(Debug, Deserialize)]
#[serde(default, rename_all = "PascalCase")]
pub struct RetryConfig {
    pub enable: bool,
    /// Retries per backoff cycle: after this many the delay starts again at `InitialDelay`
    /// (iLogtail drops the batch there; here it is kept and retried).
    pub max_retry_times: u32,
    /// Delay before the first retry, doubled each time up to `MaxDelay` (with jitter in its
    /// upper half, as iLogtail).
    #[serde(deserialize_with = "go_duration")]
    pub initial_delay: Duration,
    #[serde(deserialize_with = "go_duration")]
    pub max_delay: Duration,
}

impl Default for RetryConfig {
    fn default() -> Self {
        RetryConfig {
            enable: true,
            max_retry_times: 3,
            initial_delay: Duration::from_secs(1),
            max_delay: Duration::from_secs(30),
        }
    }
}

/// A Go `time.Duration` as iLogtail's JSON holds it: an integer of nanoseconds; a duration
/// string (`"1.5s"`, `"500ms"`, `"1m30s"`) is accepted too.
fn go_duration<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Raw {
        Nanos(u64),
        Text(String),
    }
    match Raw::deserialize(d)? {
        Raw::Nanos(n) => Ok(Duration::from_nanos(n)),
        Raw::Text(s) => parse_go_duration(&s).map_err(serde::de::Error::custom),
    }
}

fn parse_go_duration(text: &str) -> Result<Duration, String> {
    let bad = || format!("invalid duration {text:?} (e.g. \"500ms\", \"5s\", \"1m30s\")");
    let mut rest = text.trim();
    if rest == "0" {
        return Ok(Duration::ZERO);
    }
    if rest.is_empty() {
        return Err(bad());
    }
    let mut total = 0f64;
    while !rest.is_empty() {
        let num_len = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .ok_or_else(bad)?;
        let number: f64 = rest[..num_len].parse().map_err(|_| bad())?;
        rest = &rest[num_len..];
        let unit_len = rest
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(rest.len());
        let scale = match &rest[..unit_len] {
            "ns" => 1e-9,
            "us" | "µs" => 1e-6,
            "ms" => 1e-3,
            "s" => 1.0,
            "m" => 60.0,
            "h" => 3600.0,
            _ => return Err(bad()),
        };
        total += number * scale;
        rest = &rest[unit_len..];
    }
    Ok(Duration::from_secs_f64(total))
}

pub const PLUGIN: (&str, PluginFactory) = ("flusher_http", PluginFactory::Flusher(build));

#[derive(Clone, Copy, Debug, PartialEq)]
enum Compression {
    None,
    Gzip,
    Zstd,
    Snappy,
}

impl Compression {
    fn parse(name: &str) -> Option<Compression> {
        match name {
            "" | "none" => Some(Compression::None),
            "gzip" => Some(Compression::Gzip),
            "zstd" => Some(Compression::Zstd),
            "snappy" => Some(Compression::Snappy),
            _ => None,
        }
    }

    fn compress(self, body: Vec<u8>) -> std::io::Result<Vec<u8>> {
        match self {
            Compression::None => Ok(body),
            Compression::Gzip => {
                let mut enc = flate2::write::GzEncoder::new(
                    Vec::with_capacity(body.len() / 4),
                    flate2::Compression::default(),
                );
                enc.write_all(&body)?;
                enc.finish()
            }
            Compression::Zstd => zstd::bulk::compress(&body, 1),
            Compression::Snappy => snap::raw::Encoder::new()
                .compress_vec(&body)
                .map_err(std::io::Error::other),
        }
    }
}

/// `Convert`, checked: the protocols this flusher takes, JSON only.
fn converter(config: &ConvertConfig) -> Result<Converter, String> {
    let protocol = Protocol::from_http_name(&config.protocol)?;
    if config.encoding != "json" {
        return Err(format!(
            "Convert.Encoding: unsupported encoding {:?} for protocol {:?} (supported: json)",
            config.encoding, config.protocol
        ));
    }
    Ok(Converter::new(protocol, config))
}

fn build(ctx: &PluginContext, detail: &Value) -> Result<Box<dyn Flusher>, String> {
    let mut config: HttpConfig = parse_detail(detail)?;
    if config.remote_url.is_empty() {
        return Err("RemoteURL: required".to_owned());
    }
    let uri: ureq::http::Uri = config
        .remote_url
        .parse()
        .map_err(|e| format!("RemoteURL: invalid URL {:?}: {e}", config.remote_url))?;
    if !matches!(uri.scheme_str(), Some("http" | "https")) || uri.host().is_none() {
        return Err(format!(
            "RemoteURL: {:?} is not an http:// or https:// URL",
            config.remote_url
        ));
    }
    if config.concurrency < 1 {
        return Err(format!(
            "Concurrency: must be at least 1, not {}",
            config.concurrency
        ));
    }
    for (field, set) in [
        ("Encoder", config.encoder.is_some()),
        ("Authenticator", config.authenticator.is_some()),
        ("FlushInterceptor", config.flush_interceptor.is_some()),
        (
            "RequestInterceptors",
            !config.request_interceptors.is_empty(),
        ),
    ] {
        if set {
            return Err(format!(
                "{field}: extensions are not supported by this plugin base"
            ));
        }
    }
    let mut compression = Compression::parse(&config.compression).ok_or_else(|| {
        format!(
            "Compression: unsupported {:?} (gzip, zstd or snappy)",
            config.compression
        )
    })?;
    let converter = converter(&config.convert)?;
    // iLogtail: Compression sets Content-Encoding, and a Content-Encoding header it knows
    // compresses the body; Content-Type follows the encoding unless given.
    if compression != Compression::None {
        config
            .headers
            .insert("Content-Encoding".to_owned(), config.compression.clone());
    } else if let Some((_, v)) = config
        .headers
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case("Content-Encoding"))
    {
        compression = Compression::parse(v).unwrap_or(Compression::None);
    }
    if !config
        .headers
        .keys()
        .any(|k| k.eq_ignore_ascii_case("Content-Type"))
    {
        config
            .headers
            .insert("Content-Type".to_owned(), "application/json".to_owned());
    }
    let mut var_keys = Vec::new();
    let query = config
        .query
        .iter()
        .map(|(k, v)| (k.clone(), Template::compile(v, &mut var_keys)))
        .collect();
    let headers = config
        .headers
        .iter()
        .map(|(k, v)| (k.clone(), Template::compile(v, &mut var_keys)))
        .collect();
    let concurrency = config.concurrency as usize;
    let mut agent_config = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .max_redirects(0)
        .max_idle_connections_per_host(
            (concurrency + 1).max(config.max_idle_conns_per_host.max(0) as usize),
        )
        .user_agent(concat!("tailrace/", env!("CARGO_PKG_VERSION")));
    if !config.timeout.is_zero() {
        agent_config = agent_config.timeout_global(Some(config.timeout));
    }
    if let Some(tls) = tls::tls_config(&config.authentication)? {
        agent_config = agent_config.tls_config(tls);
    }
    Ok(Box::new(HttpFlusher {
        agent: ureq::Agent::new_with_config(agent_config.build()),
        url: config.remote_url.clone(),
        query,
        headers,
        converter,
        var_keys,
        compression,
        retry: config.retry,
        concurrency,
        ctx: ctx.clone(),
        stats: ctx.plugin_stats.clone(),
        failures: 0,
        not_before: None,
    }))
}

struct HttpFlusher {
    agent: ureq::Agent,
    url: String,
    query: Vec<(String, Template)>,
    headers: Vec<(String, Template)>,
    converter: Converter,
    /// The variables `Query` and `Headers` use (`content.x`, `tag.x`), in order.
    var_keys: Vec<String>,
    compression: Compression,
    retry: RetryConfig,
    concurrency: usize,
    ctx: PluginContext,
    stats: Arc<PluginStats>,
    /// Failed flushes in a row, and when the next attempt may start.
    failures: u32,
    not_before: Option<Instant>,
}

/// One request: a compressed body and the variables its query and headers use.
struct Request {
    body: Vec<u8>,
    vars: Vec<String>,
    events: usize,
}

/// What became of one batch.
#[derive(Debug, PartialEq)]
enum Outcome {
    Delivered,
    /// Refused for good (a 4xx other than 401, 403, 429): dropped, as iLogtail does.
    Rejected,
    /// Failed (a network error, 5xx, 429, 401, 403): kept for the runtime to retry, not
    /// before the server's `Retry-After` if it gave one.
    Failed(String, Option<Duration>),
}

/// What became of one attempt.
enum Attempt {
    Ok,
    Final(String),
    Retry {
        reason: String,
        after: Option<Duration>,
    },
}

impl HttpFlusher {
    /// The requests of one batch: runs of events whose variables agree.
    fn requests(&self, group: &PipelineEventGroup) -> Result<Vec<Request>, String> {
        let mut requests: Vec<Request> = Vec::new();
        let mut body = Vec::new();
        let mut events = 0;
        let mut vars: Option<Vec<String>> = None;
        let mut finish = |body: &mut Vec<u8>, vars: Vec<String>, events: usize| {
            let raw = std::mem::take(body);
            self.compression
                .compress(raw)
                .map(|body| requests.push(Request { body, vars, events }))
                .map_err(|e| format!("cannot compress a body: {e}"))
        };
        for fields in self.converter.fields(group) {
            let row_vars = template::values(&self.converter, &self.var_keys, &fields);
            if vars.as_ref().is_some_and(|v| *v != row_vars) {
                finish(&mut body, vars.take().unwrap_or_default(), events)?;
                events = 0;
            }
            if !body.is_empty() {
                body.push(b'\n');
            }
            body.extend_from_slice(&self.converter.encode(&fields));
            events += 1;
            vars = Some(row_vars);
        }
        if let Some(vars) = vars {
            finish(&mut body, vars, events)?;
        }
        Ok(requests)
    }

    fn count(&self, name: &str) {
        self.stats.add_counter(name, 1);
    }

    fn send_once(&self, request: &Request) -> Attempt {
        let mut req = self.agent.post(&self.url);
        for (k, t) in &self.query {
            req = req.query(k, t.render(&request.vars));
        }
        for (k, t) in &self.headers {
            req = req.header(k, t.render(&request.vars));
        }
        let mut response = match req.send(&request.body[..]) {
            Ok(response) => response,
            Err(e) => {
                self.count("flusher_http_send_errors_total");
                return Attempt::Retry {
                    reason: format!("request to {} failed: {e}", self.url),
                    after: None,
                };
            }
        };
        let status = response.status().as_u16();
        self.count(&format!("flusher_http_status_{status}_total"));
        if (200..300).contains(&status) {
            return Attempt::Ok;
        }
        let after = response
            .headers()
            .get("retry-after")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse::<u64>().ok())
            .map(Duration::from_secs);
        let text = response
            .body_mut()
            .with_config()
            .limit(1024)
            .read_to_string()
            .unwrap_or_default();
        let reason = format!("{} answered {status}: {}", self.url, text.trim());
        if status >= 500 || matches!(status, 401 | 403 | 429) {
            Attempt::Retry { reason, after }
        } else {
            Attempt::Final(reason)
        }
    }

    /// iLogtail's delay before retry `n` (0-based): `InitialDelay * 2^n` up to `MaxDelay`,
    /// with jitter in its upper half.
    fn delay(&self, n: u32) -> Duration {
        let base = self
            .retry
            .initial_delay
            .saturating_mul(1u32.checked_shl(n).unwrap_or(u32::MAX))
            .min(self.retry.max_delay);
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.subsec_nanos())
            .unwrap_or(0);
        let half = base / 2;
        half + half.mul_f64(f64::from(nanos % 1000) / 1000.0)
    }

    /// One attempt at one request.
    fn send(&self, request: &Request) -> Outcome {
        match self.send_once(request) {
            Attempt::Ok => Outcome::Delivered,
            Attempt::Final(reason) => {
                self.stats
                    .add_counter("flusher_http_dropped_events_total", request.events as u64);
                self.ctx.alarm(
                    "FLUSHER_FLUSH_ALARM",
                    AlarmLevel::Error,
                    format!(
                        "flusher_http: {reason}; not retryable, {} events dropped",
                        request.events
                    ),
                );
                tracing::warn!(url = %self.url, "flusher_http: {reason}; data dropped");
                Outcome::Rejected
            }
            Attempt::Retry { reason, after } => Outcome::Failed(reason, after),
        }
    }

    /// Sends every request of one batch; the batch is delivered when all are (a rejected
    /// request drops its events and counts as done).
    fn send_batch(&self, requests: &[Request]) -> Outcome {
        let mut outcome = Outcome::Delivered;
        for request in requests {
            match self.send(request) {
                Outcome::Delivered => {}
                Outcome::Rejected => outcome = Outcome::Rejected,
                failed @ Outcome::Failed(..) => return failed,
            }
        }
        outcome
    }

    /// Sends the batches (up to `Concurrency` at once); leaves in `groups` those that failed
    /// or were not tried, and returns the first failure.
    fn deliver(
        &self,
        groups: &mut Vec<PipelineEventGroup>,
    ) -> Result<(), (String, Option<Duration>)> {
        let mut batches = Vec::with_capacity(groups.len());
        for group in groups.iter() {
            batches.push(self.requests(group).map_err(|e| (e, None))?);
        }
        let outcomes: Vec<Option<Outcome>> = if self.concurrency <= 1 || batches.len() <= 1 {
            let mut outcomes = Vec::with_capacity(batches.len());
            for batch in &batches {
                let outcome = self.send_batch(batch);
                let failed = matches!(outcome, Outcome::Failed(..));
                outcomes.push(Some(outcome));
                if failed {
                    break;
                }
            }
            outcomes.resize_with(batches.len(), || None);
            outcomes
        } else {
            // Up to `Concurrency` requests in flight; after a failure no new batch starts.
            let next = AtomicUsize::new(0);
            let failed = AtomicBool::new(false);
            let outcomes = Mutex::new((0..batches.len()).map(|_| None).collect::<Vec<_>>());
            std::thread::scope(|scope| {
                for _ in 0..self.concurrency.min(batches.len()) {
                    scope.spawn(|| loop {
                        if failed.load(Ordering::SeqCst) {
                            return;
                        }
                        let i = next.fetch_add(1, Ordering::SeqCst);
                        let Some(batch) = batches.get(i) else {
                            return;
                        };
                        let outcome = self.send_batch(batch);
                        if matches!(outcome, Outcome::Failed(..)) {
                            failed.store(true, Ordering::SeqCst);
                        }
                        outcomes.lock().unwrap_or_else(|e| e.into_inner())[i] = Some(outcome);
                    });
                }
            });
            outcomes.into_inner().unwrap_or_else(|e| e.into_inner())
        };
        let mut error = None;
        let mut i = 0;
        groups.retain(|_| {
            let outcome = &outcomes[i];
            i += 1;
            match outcome {
                Some(Outcome::Delivered | Outcome::Rejected) => false,
                Some(Outcome::Failed(reason, after)) => {
                    error.get_or_insert_with(|| (reason.clone(), *after));
                    true
                }
                None => true,
            }
        });
        match error {
            Some(e) => Err(e),
            None => Ok(()),
        }
    }
}

impl Flusher for HttpFlusher {
    /// False while a retry waits for its delay (`Retry` backoff, or a server's `Retry-After`):
    /// the runtime asks again later, and never blocks on a sleeping flusher.
    fn is_ready(&mut self) -> bool {
        self.not_before.is_none_or(|t| Instant::now() >= t)
    }

    fn flush(&mut self, groups: &mut Vec<PipelineEventGroup>) -> Result<(), String> {
        let this = &*self;
        let mut run = || this.deliver(groups);
        // Blocking I/O on a tokio worker: tell the runtime, so its other tasks move on.
        let result = match tokio::runtime::Handle::try_current() {
            Ok(handle) if handle.runtime_flavor() == tokio::runtime::RuntimeFlavor::MultiThread => {
                tokio::task::block_in_place(run)
            }
            _ => run(),
        };
        match result {
            Ok(()) => {
                self.failures = 0;
                self.not_before = None;
                Ok(())
            }
            Err((reason, after)) => {
                // iLogtail's backoff between retries; a server's Retry-After is respected (up
                // to MaxDelay) even with retries disabled.
                let backoff = if self.retry.enable {
                    self.delay(self.failures % self.retry.max_retry_times.saturating_add(1))
                } else {
                    Duration::ZERO
                };
                self.failures = self.failures.saturating_add(1);
                let wait = backoff.max(after.unwrap_or_default().min(self.retry.max_delay));
                self.not_before = Some(Instant::now() + wait);
                Err(reason)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::runtime::registry::tests_support::context;

    fn build_err(detail: Value) -> String {
        build(&context("c"), &detail).err().unwrap()
    }

    #[test]
    fn go_durations_as_nanoseconds_or_strings() {
        assert_eq!(parse_go_duration("1m30s"), Ok(Duration::from_secs(90)));
        assert_eq!(parse_go_duration("250ms"), Ok(Duration::from_millis(250)));
        assert_eq!(parse_go_duration("1.5s"), Ok(Duration::from_millis(1500)));
        assert!(parse_go_duration("5 parsecs").is_err());
        let c: HttpConfig = parse_detail(&serde_json::json!({
            "RemoteURL": "http://x", "Timeout": 2_000_000_000u64,
            "Retry": {"InitialDelay": "10ms"}}))
        .unwrap();
        assert_eq!(c.timeout, Duration::from_secs(2));
        assert_eq!(c.retry.initial_delay, Duration::from_millis(10));
        assert_eq!(c.retry.max_retry_times, 3);
    }

    #[test]
    fn bad_options_name_their_field() {
        assert!(build_err(serde_json::json!({})).starts_with("RemoteURL"));
        assert!(build_err(serde_json::json!({"RemoteURL": "ftp://x/"})).starts_with("RemoteURL"));
        let e = build_err(serde_json::json!({"RemoteURL": "http://x/", "Concurrency": 0}));
        assert!(e.starts_with("Concurrency"), "{e}");
        let e = build_err(serde_json::json!({"RemoteURL": "http://x/", "Compression": "lzma"}));
        assert!(e.starts_with("Compression"), "{e}");
        let e = build_err(serde_json::json!({"RemoteURL": "http://x/",
            "Authentication": {"TLS": {"Enabled": true, "CAFile": "/nonexistent/ca.pem"}}}));
        assert!(e.starts_with("Authentication.TLS.CAFile"), "{e}");
        let e = build_err(serde_json::json!({"RemoteURL": "http://x/",
            "Encoder": {"Type": "ext_default_encoder"}}));
        assert!(e.starts_with("Encoder"), "{e}");
    }

    #[test]
    fn a_ca_file_without_a_certificate_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("ca.pem");
        std::fs::write(
            &path,
            "-----BEGIN CERTIFICATE-----\naGVsbG8gd29ybGQgaGVsbG8gd29ybGQ=\n-----END CERTIFICATE-----\n",
        )
        .unwrap();
        let e = build_err(serde_json::json!({"RemoteURL": "https://x/",
            "Authentication": {"TLS": {"Enabled": true, "CAFile": path}}}));
        assert!(e.starts_with("Authentication.TLS.CAFile"), "{e}");
        std::fs::write(&path, "no pem here").unwrap();
        let e = build_err(serde_json::json!({"RemoteURL": "https://x/",
            "Authentication": {"TLS": {"Enabled": true, "CAFile": path}}}));
        assert!(e.contains("no PEM certificate"), "{e}");
    }

    #[test]
    fn a_failure_makes_it_not_ready_for_the_backoff_without_sleeping() {
        // Nothing listens on a port just released.
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let detail = serde_json::json!({"RemoteURL": format!("http://127.0.0.1:{port}/"),
            "Retry": {"InitialDelay": "400ms", "MaxDelay": "400ms"}});
        let ctx = context("c");
        let mut flusher = build(&ctx, &detail).unwrap();
        let mut group = PipelineEventGroup::default();
        group
            .events
            .push(tailrace::PipelineEvent::Log(tailrace::LogEvent::new(
                1, None,
            )));
        let mut groups = vec![group];
        let began = std::time::Instant::now();
        assert!(flusher.is_ready());
        let err = flusher.flush(&mut groups).unwrap_err();
        assert!(err.contains("failed"), "{err}");
        assert_eq!(groups.len(), 1, "the batch stays");
        assert!(began.elapsed() < Duration::from_millis(150), "it slept");
        assert!(!flusher.is_ready());
        std::thread::sleep(Duration::from_millis(450));
        assert!(flusher.is_ready());
        let errors: Vec<_> = ctx.plugin_stats.extra_counters();
        assert_eq!(errors, [("flusher_http_send_errors_total".to_owned(), 1)]);
    }

    #[test]
    fn compressions_round_trip() {
        let body = b"{\"a\":1}\n{\"a\":2}".to_vec();
        let gz = Compression::Gzip.compress(body.clone()).unwrap();
        let mut out = Vec::new();
        std::io::Read::read_to_end(&mut flate2::read::GzDecoder::new(&gz[..]), &mut out).unwrap();
        assert_eq!(out, body);
        let z = Compression::Zstd.compress(body.clone()).unwrap();
        assert_eq!(zstd::bulk::decompress(&z, 1 << 20).unwrap(), body);
        let s = Compression::Snappy.compress(body.clone()).unwrap();
        assert_eq!(snap::raw::Decoder::new().decompress_vec(&s).unwrap(), body);
    }
}
