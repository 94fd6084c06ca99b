//! The librdkafka side of `flusher_kafka_v2`: the producer's settings, and the flush that
//! produces a batch and waits (bounded) for every delivery report.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::{Condvar, Mutex};
use std::time::{Duration, Instant};

use rdkafka::config::{ClientConfig, RDKafkaLogLevel};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::{Header as KafkaHeader, OwnedHeaders};
use rdkafka::producer::{
    BaseRecord, DeliveryResult, Producer, ProducerContext, PurgeConfig, ThreadedProducer,
};
use rdkafka::ClientContext;
use tailrace::plugin::Flusher;
use tailrace::PipelineEventGroup;

use super::topic::{hash_key, TopicFormat};
use super::{compression_codec, KafkaV2Config, Partitioning, SaslLogin};
use crate::context::AlarmLevel;
use crate::plugins::flushers::convert::Converter;
use crate::runtime::registry::PluginContext;

/// What librdkafka may buffer, at most (it copies each message): bounds the flusher's memory
/// apart from the batches the runner holds.
const QUEUE_MAX_MESSAGES: &str = "100000";
const QUEUE_MAX_KBYTES: &str = "65536";
/// How long a flush waits past `Timeout` for the last delivery reports.
const REPORT_GRACE: Duration = Duration::from_secs(5);

/// The librdkafka settings of a config (already validated).
pub fn client_config(config: &KafkaV2Config) -> Result<ClientConfig, String> {
    let mut c = ClientConfig::new();
    // rdkafka takes the level from the `log` crate, which is not set up here: warnings and worse
    // reach `ClientContext::log`.
    c.set_log_level(RDKafkaLogLevel::Warning);
    c.set("bootstrap.servers", config.brokers.join(","))
        .set("client.id", &config.client_id)
        .set("message.timeout.ms", millis(config.timeout))
        .set(
            "socket.timeout.ms",
            millis(config.timeout.max(Duration::from_secs(10))),
        )
        // iLogtail's Timeout is also the dial timeout: connecting, TLS handshake and login.
        .set(
            "socket.connection.setup.timeout.ms",
            millis(config.timeout.max(Duration::from_secs(1))),
        )
        .set(
            "request.timeout.ms",
            millis(config.broker_timeout.max(Duration::from_millis(1))),
        )
        .set("batch.num.messages", config.bulk_max_size.to_string())
        .set("linger.ms", millis(config.bulk_flush_frequency))
        .set("queue.buffering.max.messages", QUEUE_MAX_MESSAGES)
        .set("queue.buffering.max.kbytes", QUEUE_MAX_KBYTES)
        .set(
            "topic.metadata.refresh.interval.ms",
            millis(
                config
                    .metadata
                    .refresh_frequency
                    .max(Duration::from_secs(1)),
            ),
        )
        .set(
            "retry.backoff.ms",
            millis(config.metadata.retry.backoff.max(Duration::from_millis(1))),
        );
    let retries = if config.max_retries < 0 {
        1000
    } else {
        config.max_retries
    };
    if config.required_acks == -1 {
        // Idempotent: the broker drops the duplicates of retried requests and keeps the order.
        c.set("acks", "all")
            .set("enable.idempotence", "true")
            .set("message.send.max.retries", retries.max(1).to_string());
    } else {
        c.set("acks", config.required_acks.to_string())
            .set("enable.idempotence", "false")
            .set("max.in.flight.requests.per.connection", "1")
            .set("message.send.max.retries", retries.to_string());
    }
    let mut codec = compression_codec(config)?;
    if codec == "gzip" {
        if config.compression_level == 0 {
            codec = "none";
        } else {
            c.set("compression.level", config.compression_level.to_string());
        }
    }
    c.set("compression.codec", codec);
    if let Some(max) = config.max_message_bytes {
        c.set("message.max.bytes", max.to_string());
    }
    c.set(
        "partitioner",
        match super::validate(config)?.0 {
            // Sarama's hash partitioner (iLogtail's): FNV-1a of the key.
            Partitioning::Hash => "fnv1a_random",
            Partitioning::Random | Partitioning::RoundRobin => "random",
        },
    );
    let sasl = config.authentication.sasl_login()?;
    let tls = config.authentication.tls()?;
    let protocol = match (&sasl, tls.is_some()) {
        (SaslLogin::None, false) => "plaintext",
        (SaslLogin::None, true) => "ssl",
        (SaslLogin::Login { .. }, false) => "sasl_plaintext",
        (SaslLogin::Login { .. }, true) => "sasl_ssl",
    };
    c.set("security.protocol", protocol);
    if let SaslLogin::Login {
        mechanism,
        username,
        password,
    } = sasl
    {
        c.set("sasl.mechanism", mechanism)
            .set("sasl.username", username)
            .set("sasl.password", password);
    }
    if let Some(tls) = tls {
        if !tls.ca_file.is_empty() {
            c.set("ssl.ca.location", &tls.ca_file);
        }
        if !tls.cert_file.is_empty() {
            c.set("ssl.certificate.location", &tls.cert_file)
                .set("ssl.key.location", &tls.key_file);
        }
        if tls.insecure_skip_verify {
            c.set("enable.ssl.certificate.verification", "false")
                .set("ssl.endpoint.identification.algorithm", "none");
        } else {
            c.set("enable.ssl.certificate.verification", "true")
                .set("ssl.endpoint.identification.algorithm", "https");
        }
    }
    Ok(c)
}

fn millis(d: Duration) -> String {
    d.as_millis().to_string()
}

/// Which message a delivery report is about.
pub struct Token {
    batch: u64,
    group: u32,
    event: u32,
}

/// The delivery reports of the batch being flushed.
#[derive(Default)]
struct Inflight {
    batch: u64,
    /// Messages produced and not reported yet.
    pending: BTreeSet<(u32, u32)>,
    /// (group, event) → why it was not delivered.
    failed: BTreeMap<(u32, u32), KafkaError>,
    /// The last error of the client itself (a broker down, a refused login, a failed TLS
    /// handshake) since the last delivery.
    client_error: Option<(RDKafkaErrorCode, String)>,
}

/// The producer's context: receives delivery reports and client errors (on librdkafka's
/// threads).
pub struct Reports {
    state: Mutex<Inflight>,
    changed: Condvar,
    config_name: String,
}

impl Reports {
    fn lock(&self) -> std::sync::MutexGuard<'_, Inflight> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }
}

impl ClientContext for Reports {
    /// librdkafka's own log: a failed connection, TLS handshake or login is told here (often
    /// only here), so it is kept as the client's last error.
    fn log(&self, level: RDKafkaLogLevel, fac: &str, message: &str) {
        if (level as i32) > (RDKafkaLogLevel::Warning as i32) {
            tracing::debug!(config = %self.config_name, "librdkafka {fac}: {message}");
            return;
        }
        tracing::warn!(config = %self.config_name, "librdkafka {fac}: {message}");
        let code = if message.contains("SSL") {
            RDKafkaErrorCode::SSL
        } else if message.contains("SASL") || message.contains("uthenticat") {
            RDKafkaErrorCode::Authentication
        } else {
            RDKafkaErrorCode::BrokerTransportFailure
        };
        self.lock().client_error = Some((code, format!("{fac}: {message}")));
        self.changed.notify_all();
    }

    fn error(&self, error: KafkaError, reason: &str) {
        tracing::warn!(config = %self.config_name, "flusher_kafka_v2: {error}: {reason}");
        if let Some(code) = error.rdkafka_error_code() {
            self.lock().client_error = Some((code, format!("{error}: {reason}")));
            self.changed.notify_all();
        }
    }
}

impl ProducerContext for Reports {
    type DeliveryOpaque = Box<Token>;

    fn delivery(&self, result: &DeliveryResult<'_>, token: Box<Token>) {
        let mut state = self.lock();
        if token.batch != state.batch {
            // A report that came after its flush stopped waiting: that flush counted the
            // message as failed, and the message is sent again.
            tracing::debug!(
                "flusher_kafka_v2: a late delivery report of batch {}",
                token.batch
            );
            return;
        }
        state.pending.remove(&(token.group, token.event));
        match result {
            Ok(_) => state.client_error = None,
            Err((error, _)) => {
                state
                    .failed
                    .insert((token.group, token.event), error.clone());
            }
        }
        if state.pending.is_empty() {
            self.changed.notify_all();
        }
    }
}

/// Errors that no retry can cure: the event is dropped (loudly) instead of kept.
fn permanent(error: &KafkaError) -> bool {
    matches!(
        error.rdkafka_error_code(),
        Some(RDKafkaErrorCode::MessageSizeTooLarge) | Some(RDKafkaErrorCode::InvalidMessageSize)
    )
}

/// Client errors after which waiting out `Timeout` is pointless: the broker refused us.
fn refused(code: RDKafkaErrorCode) -> bool {
    matches!(
        code,
        RDKafkaErrorCode::Authentication
            | RDKafkaErrorCode::SaslAuthenticationFailed
            | RDKafkaErrorCode::SSL
            | RDKafkaErrorCode::TopicAuthorizationFailed
            | RDKafkaErrorCode::ClusterAuthorizationFailed
            | RDKafkaErrorCode::Fatal
    )
}

pub struct KafkaFlusher {
    producer: ThreadedProducer<Reports>,
    client_config: ClientConfig,
    ctx: PluginContext,
    converter: Converter,
    topic: TopicFormat,
    partitioning: Partitioning,
    hash_keys: Vec<String>,
    hash_once: bool,
    once_key: Option<String>,
    headers: Vec<(String, String)>,
    timeout: Duration,
    refresh: Duration,
    /// Round robin: per topic, its partition count (when known), the next partition, and when
    /// the count was fetched.
    round_robin: HashMap<String, (Option<i32>, u32, Instant)>,
    batch: u64,
}

fn create(
    client_config: &ClientConfig,
    ctx: &PluginContext,
) -> Result<ThreadedProducer<Reports>, String> {
    let reports = Reports {
        state: Mutex::new(Inflight::default()),
        changed: Condvar::new(),
        config_name: ctx.real_name.clone(),
    };
    client_config
        .create_with_context(reports)
        .map_err(|e| format!("flusher_kafka_v2: cannot create the Kafka producer: {e}"))
}

impl KafkaFlusher {
    pub fn new(
        ctx: &PluginContext,
        config: &KafkaV2Config,
        partitioning: Partitioning,
        converter: Converter,
        topic: TopicFormat,
    ) -> Result<KafkaFlusher, String> {
        let client_config = client_config(config)?;
        let producer = create(&client_config, ctx)?;
        Ok(KafkaFlusher {
            producer,
            client_config,
            ctx: ctx.clone(),
            converter,
            topic,
            partitioning,
            hash_keys: config.hash_keys.clone(),
            hash_once: config.hash_once,
            once_key: None,
            headers: config
                .headers
                .iter()
                .map(|h| (h.key.clone(), h.value.clone()))
                .collect(),
            timeout: config.timeout,
            refresh: config.metadata.refresh_frequency,
            round_robin: HashMap::new(),
            batch: 0,
        })
    }

    fn reports(&self) -> &Reports {
        self.producer.context()
    }

    /// The next partition of `topic` for round robin; `None` leaves it to librdkafka (the
    /// topic's partition count is not known yet).
    fn next_partition(&mut self, topic: &str) -> Option<i32> {
        let stale = |fetched: &Instant, count: &Option<i32>| {
            let age = fetched.elapsed();
            age > self.refresh || (count.is_none() && age > Duration::from_secs(1))
        };
        let needs_fetch = match self.round_robin.get(topic) {
            Some((count, _, fetched)) => stale(fetched, count),
            None => true,
        };
        if needs_fetch {
            let count = self
                .producer
                .client()
                .fetch_metadata(Some(topic), Duration::from_secs(5))
                .ok()
                .and_then(|m| {
                    m.topics()
                        .iter()
                        .find(|t| t.name() == topic && t.error().is_none())
                        .map(|t| t.partitions().len() as i32)
                })
                .filter(|n| *n > 0);
            let entry =
                self.round_robin
                    .entry(topic.to_owned())
                    .or_insert((None, 0, Instant::now()));
            entry.0 = count;
            entry.2 = Instant::now();
        }
        let entry = self.round_robin.get_mut(topic)?;
        let count = entry.0?;
        let partition = (entry.1 % count as u32) as i32;
        entry.1 = entry.1.wrapping_add(1);
        Some(partition)
    }

    /// Produces every event of `groups`; returns the events librdkafka refused at once.
    fn produce_all(
        &mut self,
        groups: &[PipelineEventGroup],
        deadline: Instant,
    ) -> BTreeMap<(u32, u32), KafkaError> {
        let mut refused = BTreeMap::new();
        let default_key = self.ctx.logstore.clone();
        for (gi, group) in groups.iter().enumerate() {
            for (ei, fields) in self.converter.fields(group).iter().enumerate() {
                let body = self.converter.encode(fields);
                let topic = self.topic.format(fields);
                let key = match self.partitioning {
                    Partitioning::Hash if self.hash_once => Some(
                        self.once_key
                            .get_or_insert_with(|| hash_key(&self.hash_keys, fields, &default_key))
                            .clone(),
                    ),
                    Partitioning::Hash => Some(hash_key(&self.hash_keys, fields, &default_key)),
                    _ => None,
                };
                let partition = match self.partitioning {
                    Partitioning::RoundRobin => self.next_partition(&topic),
                    _ => None,
                };
                let token = (gi as u32, ei as u32);
                loop {
                    let mut record = BaseRecord::with_opaque_to(
                        &topic,
                        Box::new(Token {
                            batch: self.batch,
                            group: token.0,
                            event: token.1,
                        }),
                    )
                    .payload(&body);
                    if let Some(key) = &key {
                        record = record.key(key);
                    }
                    if let Some(partition) = partition {
                        record = record.partition(partition);
                    }
                    if !self.headers.is_empty() {
                        let mut headers = OwnedHeaders::new_with_capacity(self.headers.len());
                        for (k, v) in &self.headers {
                            headers = headers.insert(KafkaHeader {
                                key: k,
                                value: Some(v),
                            });
                        }
                        record = record.headers(headers);
                    }
                    // Counted before the send: the report may come before `send` returns.
                    self.reports().lock().pending.insert(token);
                    match self.producer.send(record) {
                        Ok(()) => break,
                        Err((error, _)) => {
                            self.reports().lock().pending.remove(&token);
                            let full =
                                error.rdkafka_error_code() == Some(RDKafkaErrorCode::QueueFull);
                            if full && Instant::now() < deadline {
                                // librdkafka's queue is full: its thread delivers, then room.
                                std::thread::sleep(Duration::from_millis(5));
                                continue;
                            }
                            refused.insert(token, error);
                            break;
                        }
                    }
                }
            }
        }
        refused
    }

    /// Waits until every report came, the deadline passed, or the broker refused us; then
    /// purges what is left (reported as failed). Returns the failures and the client error.
    fn wait_reports(
        &self,
        deadline: Instant,
    ) -> (BTreeMap<(u32, u32), KafkaError>, Option<String>) {
        let reports = self.reports();
        let mut state = reports.lock();
        let mut gave_up = None;
        while !state.pending.is_empty() {
            if let Some((code, reason)) = &state.client_error {
                if refused(*code) {
                    gave_up = Some(reason.clone());
                    break;
                }
            }
            let now = Instant::now();
            if now >= deadline {
                gave_up = Some(format!(
                    "no delivery report within {:?}",
                    self.timeout + REPORT_GRACE
                ));
                break;
            }
            state = reports
                .changed
                .wait_timeout(state, (deadline - now).min(Duration::from_millis(200)))
                .map(|(s, _)| s)
                .unwrap_or_else(|p| p.into_inner().0);
        }
        if !state.pending.is_empty() {
            drop(state);
            // Purged messages are reported as failed (they are kept and sent again).
            self.producer
                .purge(PurgeConfig::default().queue().inflight());
            let until = Instant::now() + Duration::from_secs(2);
            state = reports.lock();
            while !state.pending.is_empty() && Instant::now() < until {
                state = reports
                    .changed
                    .wait_timeout(state, Duration::from_millis(50))
                    .map(|(s, _)| s)
                    .unwrap_or_else(|p| p.into_inner().0);
            }
        }
        let unreported = state.pending.len();
        let mut failed = std::mem::take(&mut state.failed);
        // A message without a report may or may not have arrived: it is sent again.
        for key in std::mem::take(&mut state.pending) {
            failed.insert(key, KafkaError::Canceled);
        }
        let client_error = state.client_error.as_ref().map(|(_, r)| r.clone());
        drop(state);
        if unreported > 0 {
            tracing::warn!(
                "flusher_kafka_v2: {unreported} messages without a delivery report are sent again"
            );
        }
        (failed, gave_up.or(client_error))
    }

    fn flush_blocking(&mut self, groups: &mut Vec<PipelineEventGroup>) -> Result<(), String> {
        if let Some((code, reason)) = self.producer.client().fatal_error() {
            // An idempotent producer that hit a fatal error takes no more messages: start anew.
            self.ctx.alarm(
                "FLUSHER_FLUSH_ALARM",
                AlarmLevel::Error,
                format!("flusher_kafka_v2: the producer failed ({code:?}: {reason}); recreated"),
            );
            self.producer = create(&self.client_config, &self.ctx)?;
        }
        self.batch += 1;
        {
            let mut state = self.reports().lock();
            state.batch = self.batch;
            state.pending.clear();
            state.failed.clear();
        }
        let total: usize = groups.iter().map(PipelineEventGroup::len).sum();
        let deadline = Instant::now() + self.timeout + REPORT_GRACE;
        let mut failed = self.produce_all(groups, deadline);
        let (reported, reason) = self.wait_reports(deadline);
        failed.extend(reported);
        {
            // Reports that still come belong to no flush.
            self.batch += 1;
            self.reports().lock().batch = self.batch;
        }
        // Drop what can never be delivered.
        let mut dropped = 0;
        failed.retain(|_, error| {
            let keep = !permanent(error);
            if !keep {
                dropped += 1;
            }
            keep
        });
        if dropped > 0 {
            self.ctx.alarm(
                "DISCARD_DATA_ALARM",
                AlarmLevel::Error,
                format!("flusher_kafka_v2: {dropped} events dropped: larger than MaxMessageBytes"),
            );
        }
        if failed.is_empty() {
            groups.clear();
            return Ok(());
        }
        // Delivered groups leave (in order, as the runner acknowledges a prefix); from the
        // first group with a failure on, only the failed events stay, to be sent again.
        let first = failed.keys().next().map(|k| k.0).unwrap_or(0) as usize;
        let by_group: BTreeMap<u32, BTreeSet<u32>> =
            failed.keys().fold(BTreeMap::new(), |mut m, (g, e)| {
                m.entry(*g).or_default().insert(*e);
                m
            });
        for (gi, group) in groups.iter_mut().enumerate().skip(first) {
            let keep = by_group.get(&(gi as u32));
            let mut index = 0u32;
            group.events.retain(|_| {
                let k = keep.is_some_and(|s| s.contains(&index));
                index += 1;
                k
            });
        }
        groups.drain(..first);
        let first_error = failed
            .values()
            .next()
            .map(ToString::to_string)
            .unwrap_or_default();
        Err(format!(
            "{} of {total} messages not delivered ({}){}",
            failed.len(),
            first_error,
            reason.map(|r| format!(": {r}")).unwrap_or_default()
        ))
    }
}

/// Runs `f`, telling tokio that this worker thread blocks (a flush waits for the broker).
fn blocking<R>(f: impl FnOnce() -> R) -> R {
    match tokio::runtime::Handle::try_current() {
        Ok(handle) if handle.runtime_flavor() == tokio::runtime::RuntimeFlavor::MultiThread => {
            tokio::task::block_in_place(f)
        }
        _ => f(),
    }
}

impl Flusher for KafkaFlusher {
    fn flush(&mut self, groups: &mut Vec<PipelineEventGroup>) -> Result<(), String> {
        blocking(|| self.flush_blocking(groups))
    }

    fn stop(&mut self) {
        // Every flush waited for its messages: only a purged remainder can be left.
        let _ = blocking(|| self.producer.flush(Duration::from_secs(1)));
    }
}
