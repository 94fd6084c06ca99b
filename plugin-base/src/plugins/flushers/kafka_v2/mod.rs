//! `flusher_kafka_v2`: each event becomes one Kafka message (iLogtail's `custom_single` JSON,
//! see `flushers/convert.rs`), produced with librdkafka (`producer.rs`). A flush produces every message of
//! its batches and waits for their delivery reports: a batch leaves the flusher's hands (and
//! the checkpoint that waits for it moves) only once the broker has acknowledged all of it.
//!
//! Options are iLogtail's (`plugins/flusher/kafkav2`). Durations, which iLogtail reads as Go
//! durations, are numbers here — seconds for `Timeout`, `BrokerTimeout` and
//! `Metadata.RefreshFrequency`, milliseconds for `BulkFlushFrequency` and
//! `Metadata.Retry.Backoff` — or Go-style strings (`"30s"`, `"250ms"`).

#[cfg(feature = "kafka")]
mod producer;
// Without the `kafka` feature only the config is checked: the topic goes unused.
#[cfg_attr(not(feature = "kafka"), allow(dead_code))]
mod topic;

use std::time::Duration;

use serde::{Deserialize, Deserializer};
use serde_json::Value;
use tailrace::plugin::Flusher;

use crate::plugins::flushers::convert::{ConvertConfig, Converter, Protocol};
use crate::plugins::tls::check_pem;
use crate::runtime::registry::{parse_detail, PluginContext, PluginFactory};

pub const PLUGIN: (&str, PluginFactory) = ("flusher_kafka_v2", PluginFactory::Flusher(build));

#[derive(Debug, Deserialize)]
#[serde(default, rename_all = "PascalCase")]
pub struct KafkaV2Config {
    /// `host:port` of the brokers to bootstrap from.
    pub brokers: Vec<String>,
    /// The topic; `%{content.key}` and `%{tag.key}` take it from each event, `${NAME}` from the
    /// environment.
    pub topic: String,
    /// Kafka protocol version (accepted; librdkafka negotiates the version with the broker).
    pub version: String,
    /// Network timeout and the time a message may take to be delivered, retries included.
    #[serde(deserialize_with = "seconds")]
    pub timeout: Duration,
    /// How long the broker may wait for the required acknowledgements (`request.timeout.ms`).
    #[serde(deserialize_with = "seconds")]
    pub broker_timeout: Duration,
    pub authentication: Authentication,
    /// `random` (default), `roundrobin` or `hash` (by `HashKeys`).
    pub partitioner_type: String,
    /// Fields whose values make the message key of the `hash` partitioner: `content.key`,
    /// `tag.key` (or a bare content key). Events without any go under the logstore's name.
    pub hash_keys: Vec<String>,
    /// Compute the hash key from the first event only, and use it for every message.
    pub hash_once: bool,
    /// 0: no acknowledgement, 1: the leader's (default), -1: every in-sync replica's. With -1
    /// the producer is idempotent (no duplicates, order kept across retries); otherwise it
    /// keeps one request in flight per broker so that a retry cannot reorder.
    #[serde(alias = "RequiredACKs")]
    pub required_acks: i32,
    /// The largest message (`message.max.bytes`).
    pub max_message_bytes: Option<u32>,
    /// `none`, `gzip`, `snappy`, `lz4` or `zstd`.
    pub compression: String,
    /// gzip level 1-9 (0 turns compression off).
    pub compression_level: i32,
    /// The most messages in one produce request.
    pub bulk_max_size: u32,
    /// How long to wait for more messages before sending a request, in milliseconds.
    #[serde(deserialize_with = "millis")]
    pub bulk_flush_frequency: Duration,
    /// Retries of a failed produce request (negative: many).
    pub max_retries: i32,
    /// Headers of every message.
    pub headers: Vec<Header>,
    pub convert: ConvertConfig,
    #[serde(rename = "ClientID", alias = "ClientId")]
    pub client_id: String,
    pub metadata: MetadataConfig,
}

impl Default for KafkaV2Config {
    fn default() -> Self {
        KafkaV2Config {
            brokers: Vec::new(),
            topic: String::new(),
            version: "1.0.0".into(),
            timeout: Duration::from_secs(30),
            broker_timeout: Duration::from_secs(10),
            authentication: Authentication::default(),
            partitioner_type: "random".into(),
            hash_keys: Vec::new(),
            hash_once: false,
            required_acks: 1,
            max_message_bytes: None,
            compression: "none".into(),
            compression_level: 4,
            bulk_max_size: 2048,
            bulk_flush_frequency: Duration::ZERO,
            max_retries: 3,
            headers: Vec::new(),
            convert: ConvertConfig::default(),
            client_id: "LogtailPlugin".into(),
            metadata: MetadataConfig::default(),
        }
    }
}

#[derive(Debug, Default, Deserialize)]
#[serde(default, rename_all = "PascalCase")]
pub struct Header {
    #[serde(alias = "key")]
    pub key: String,
    #[serde(alias = "value")]
    pub value: String,
}

#[derive(Debug, Deserialize)]
#[serde(default, rename_all = "PascalCase")]
pub struct MetadataConfig {
    /// How often the topics' metadata is refreshed (seconds).
    #[serde(deserialize_with = "seconds")]
    pub refresh_frequency: Duration,
    pub retry: MetadataRetry,
    /// Accepted (librdkafka keeps the metadata of the topics it produces to).
    pub full: bool,
}

impl Default for MetadataConfig {
    fn default() -> Self {
        MetadataConfig {
            refresh_frequency: Duration::from_secs(600),
            retry: MetadataRetry::default(),
            full: false,
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(default, rename_all = "PascalCase")]
pub struct MetadataRetry {
    pub max: i32,
    #[serde(deserialize_with = "millis")]
    pub backoff: Duration,
}

impl Default for MetadataRetry {
    fn default() -> Self {
        MetadataRetry {
            max: 3,
            backoff: Duration::from_millis(250),
        }
    }
}

/// `Authentication`, as iLogtail names it.
#[derive(Debug, Default, Deserialize)]
#[serde(default, rename_all = "PascalCase")]
pub struct Authentication {
    /// SASL/PLAIN with a user name and password.
    pub plain_text: Option<PlainText>,
    #[serde(rename = "SASL", alias = "Sasl")]
    pub sasl: Option<Sasl>,
    #[serde(rename = "TLS", alias = "Tls")]
    pub tls: Option<Tls>,
    /// Not supported: an error when set.
    pub kerberos: Option<Value>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default, rename_all = "PascalCase")]
pub struct PlainText {
    pub username: String,
    pub password: String,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default, rename_all = "PascalCase")]
pub struct Sasl {
    /// `PLAIN` (default), `SCRAM-SHA-256` or `SCRAM-SHA-512`.
    pub sasl_mechanism: String,
    pub username: String,
    pub password: String,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default, rename_all = "PascalCase")]
pub struct Tls {
    pub enabled: bool,
    /// PEM CA certificates that the broker's certificate must chain to (default: the system's).
    #[serde(rename = "CAFile")]
    pub ca_file: String,
    /// PEM client certificate and key, for brokers that require one.
    pub cert_file: String,
    pub key_file: String,
    /// Do not verify the broker's certificate (nor its name).
    pub insecure_skip_verify: bool,
    /// `1.0` .. `1.3`: checked, and left to OpenSSL's defaults (TLS 1.2 and up).
    pub min_version: String,
    pub max_version: String,
}

/// The security settings, checked.
#[derive(Debug, PartialEq)]
pub enum SaslLogin {
    None,
    Login {
        mechanism: &'static str,
        username: String,
        password: String,
    },
}

impl Authentication {
    /// The SASL login, if any (`SASL` wins over `PlainText`).
    pub fn sasl_login(&self) -> Result<SaslLogin, String> {
        if self.kerberos.is_some() {
            return Err("Authentication.Kerberos: not supported".into());
        }
        if let Some(sasl) = &self.sasl {
            let mechanism = match sasl.sasl_mechanism.to_ascii_uppercase().as_str() {
                "" | "PLAIN" => "PLAIN",
                "SCRAM-SHA-256" => "SCRAM-SHA-256",
                "SCRAM-SHA-512" => "SCRAM-SHA-512",
                other => {
                    return Err(format!(
                        "Authentication.SASL.SaslMechanism: {other:?} is not one of PLAIN, \
                         SCRAM-SHA-256, SCRAM-SHA-512"
                    ))
                }
            };
            if sasl.username.is_empty() {
                return Err("Authentication.SASL.Username: must be set".into());
            }
            if sasl.password.is_empty() {
                return Err("Authentication.SASL.Password: must be set".into());
            }
            return Ok(SaslLogin::Login {
                mechanism,
                username: sasl.username.clone(),
                password: sasl.password.clone(),
            });
        }
        if let Some(plain) = &self.plain_text {
            if !plain.username.is_empty() {
                if plain.password.is_empty() {
                    return Err(
                        "Authentication.PlainText.Password: must be set when Username is".into(),
                    );
                }
                return Ok(SaslLogin::Login {
                    mechanism: "PLAIN",
                    username: plain.username.clone(),
                    password: plain.password.clone(),
                });
            }
        }
        Ok(SaslLogin::None)
    }

    /// The TLS settings when TLS is enabled, with its files checked.
    pub fn tls(&self) -> Result<Option<&Tls>, String> {
        let Some(tls) = self.tls.as_ref().filter(|t| t.enabled) else {
            return Ok(None);
        };
        for (field, version) in [
            ("MinVersion", &tls.min_version),
            ("MaxVersion", &tls.max_version),
        ] {
            if !matches!(version.as_str(), "" | "1.0" | "1.1" | "1.2" | "1.3") {
                return Err(format!(
                    "Authentication.TLS.{field}: {version:?} is not one of 1.0, 1.1, 1.2, 1.3"
                ));
            }
        }
        if !tls.ca_file.is_empty() {
            check_pem("Authentication.TLS.CAFile", &tls.ca_file, "CERTIFICATE")?;
        }
        match (tls.cert_file.is_empty(), tls.key_file.is_empty()) {
            (true, true) => {}
            (false, false) => {
                check_pem("Authentication.TLS.CertFile", &tls.cert_file, "CERTIFICATE")?;
                check_pem("Authentication.TLS.KeyFile", &tls.key_file, "PRIVATE KEY")?;
            }
            _ => {
                return Err(
                    "Authentication.TLS: CertFile and KeyFile go together (both or neither)".into(),
                )
            }
        }
        Ok(Some(tls))
    }
}

/// A duration given in `unit`s, or as a Go duration string (`"1m30s"`, `"250ms"`).
fn duration_in<'de, D: Deserializer<'de>>(d: D, unit: Duration) -> Result<Duration, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Raw {
        Number(f64),
        Text(String),
    }
    match Raw::deserialize(d)? {
        Raw::Number(n) if n >= 0.0 && n.is_finite() => Ok(unit.mul_f64(n)),
        Raw::Number(n) => Err(serde::de::Error::custom(format!(
            "{n} is not a duration (a number >= 0)"
        ))),
        Raw::Text(s) => parse_go_duration(&s)
            .ok_or_else(|| serde::de::Error::custom(format!("{s:?} is not a duration"))),
    }
}

fn seconds<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
    duration_in(d, Duration::from_secs(1))
}

fn millis<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
    duration_in(d, Duration::from_millis(1))
}

/// `"1h2m3.5s"`, `"250ms"`, `"0"`.
fn parse_go_duration(s: &str) -> Option<Duration> {
    let s = s.trim();
    if s == "0" {
        return Some(Duration::ZERO);
    }
    let mut total = Duration::ZERO;
    let mut rest = s;
    if rest.is_empty() {
        return None;
    }
    while !rest.is_empty() {
        let num_end = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(rest.len());
        let n: f64 = rest[..num_end].parse().ok()?;
        rest = &rest[num_end..];
        let unit_end = rest
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(rest.len());
        let unit = match &rest[..unit_end] {
            "ns" => 1e-9,
            "us" | "µs" => 1e-6,
            "ms" => 1e-3,
            "s" => 1.0,
            "m" => 60.0,
            "h" => 3600.0,
            _ => return None,
        };
        total += Duration::from_secs_f64(n * unit);
        rest = &rest[unit_end..];
    }
    Some(total)
}

/// How messages are spread over a topic's partitions.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Partitioning {
    Random,
    RoundRobin,
    Hash,
}

/// The codec, checked.
pub fn compression_codec(config: &KafkaV2Config) -> Result<&'static str, String> {
    let codec = match config.compression.to_ascii_lowercase().as_str() {
        "" | "none" => "none",
        "gzip" => "gzip",
        "snappy" => "snappy",
        "lz4" => "lz4",
        "zstd" => "zstd",
        other => {
            return Err(format!(
                "Compression: {other:?} is not one of none, gzip, snappy, lz4, zstd"
            ))
        }
    };
    if codec == "gzip" && !(0..=9).contains(&config.compression_level) {
        return Err(format!(
            "CompressionLevel: {} is not in 0..9",
            config.compression_level
        ));
    }
    Ok(codec)
}

/// Everything about the config that can be wrong, checked before anything runs.
pub fn validate(config: &KafkaV2Config) -> Result<(Partitioning, Converter), String> {
    if config.brokers.is_empty() || config.brokers.iter().any(|b| b.trim().is_empty()) {
        return Err("Brokers: at least one host:port is required".into());
    }
    if config.topic.trim().is_empty() {
        return Err("Topic: must be set".into());
    }
    let partitioning = match config.partitioner_type.to_ascii_lowercase().as_str() {
        "" | "random" => Partitioning::Random,
        "roundrobin" => Partitioning::RoundRobin,
        "hash" => Partitioning::Hash,
        other => {
            return Err(format!(
                "PartitionerType: {other:?} is not one of random, roundrobin, hash"
            ))
        }
    };
    if !matches!(config.required_acks, -1..=1) {
        return Err(format!(
            "RequiredAcks: {} is not one of 0, 1, -1",
            config.required_acks
        ));
    }
    if let Some(max) = config.max_message_bytes {
        if !(1000..=1_000_000_000).contains(&max) {
            return Err(format!("MaxMessageBytes: {max} is not in 1000..1000000000"));
        }
    }
    if config.bulk_max_size == 0 {
        return Err("BulkMaxSize: must be at least 1".into());
    }
    if config.timeout < Duration::from_millis(100) {
        return Err(format!(
            "Timeout: {:?} is too short (at least 0.1 s)",
            config.timeout
        ));
    }
    compression_codec(config)?;
    if !matches!(config.convert.encoding.as_str(), "" | "json") {
        return Err(format!(
            "Convert.Encoding: {:?} is not supported (json)",
            config.convert.encoding
        ));
    }
    for key in config.convert.protocol_fields_rename.keys() {
        if !matches!(key.as_str(), "contents" | "tags" | "time") {
            return Err(format!(
                "Convert.ProtocolFieldsRename: {key:?} is not one of contents, tags, time"
            ));
        }
    }
    config.authentication.sasl_login()?;
    config.authentication.tls()?;
    let protocol = Protocol::from_kafka_name(&config.convert.protocol)?;
    let converter = Converter::new(protocol, &config.convert);
    Ok((partitioning, converter))
}

fn build(ctx: &PluginContext, detail: &Value) -> Result<Box<dyn Flusher>, String> {
    let config: KafkaV2Config = parse_detail(detail)?;
    let (partitioning, converter) = validate(&config)?;
    let topic = topic::TopicFormat::parse(&config.topic, |name| std::env::var(name).ok())?;
    #[cfg(feature = "kafka")]
    {
        producer::KafkaFlusher::new(ctx, &config, partitioning, converter, topic)
            .map(|f| Box::new(f) as Box<dyn Flusher>)
    }
    #[cfg(not(feature = "kafka"))]
    {
        let _ = (ctx, partitioning, converter, topic);
        Err("flusher_kafka_v2: this plugin base was built without the `kafka` feature".into())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(detail: Value) -> Result<KafkaV2Config, String> {
        let config: KafkaV2Config = parse_detail(&detail)?;
        validate(&config)?;
        Ok(config)
    }

    #[test]
    fn defaults_are_ilogtails() {
        let c = config(serde_json::json!({"Brokers": ["b:9092"], "Topic": "t"})).unwrap();
        assert_eq!(c.partitioner_type, "random");
        assert_eq!(c.required_acks, 1);
        assert_eq!(c.timeout, Duration::from_secs(30));
        assert_eq!(c.bulk_max_size, 2048);
        assert_eq!(c.client_id, "LogtailPlugin");
        assert_eq!(c.compression, "none");
    }

    #[test]
    fn durations_take_numbers_and_go_strings() {
        let c = config(serde_json::json!({"Brokers": ["b:9092"], "Topic": "t",
            "Timeout": "1m30s", "BulkFlushFrequency": 20, "BrokerTimeout": 5}))
        .unwrap();
        assert_eq!(c.timeout, Duration::from_secs(90));
        assert_eq!(c.bulk_flush_frequency, Duration::from_millis(20));
        assert_eq!(c.broker_timeout, Duration::from_secs(5));
        assert_eq!(parse_go_duration("250ms"), Some(Duration::from_millis(250)));
        assert_eq!(parse_go_duration("1x"), None);
    }

    #[test]
    fn bad_options_are_errors_that_name_the_field() {
        let base = || serde_json::json!({"Brokers": ["b:9092"], "Topic": "t"});
        let cases = [
            ("Brokers", serde_json::json!({"Topic": "t"})),
            ("Topic", serde_json::json!({"Brokers": ["b:9092"]})),
            ("PartitionerType", {
                let mut v = base();
                v["PartitionerType"] = "sticky".into();
                v
            }),
            ("Compression", {
                let mut v = base();
                v["Compression"] = "brotli".into();
                v
            }),
            ("RequiredAcks", {
                let mut v = base();
                v["RequiredAcks"] = 2.into();
                v
            }),
            ("SaslMechanism", {
                let mut v = base();
                v["Authentication"] = serde_json::json!({"SASL": {"SaslMechanism": "GSSAPI",
                    "Username": "u", "Password": "p"}});
                v
            }),
            ("Authentication.SASL.Password", {
                let mut v = base();
                v["Authentication"] = serde_json::json!({"SASL": {"Username": "u"}});
                v
            }),
            ("Authentication.TLS.CAFile", {
                let mut v = base();
                v["Authentication"] =
                    serde_json::json!({"TLS": {"Enabled": true, "CAFile": "/nonexistent/ca.pem"}});
                v
            }),
            ("Convert.Protocol", {
                let mut v = base();
                v["Convert"] = serde_json::json!({"Protocol": "otlp_log_v1"});
                v
            }),
        ];
        for (field, detail) in cases {
            let err = config(detail).unwrap_err();
            assert!(err.contains(field), "{field}: {err}");
        }
    }

    #[test]
    fn a_ca_file_without_a_certificate_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let ca = dir.path().join("ca.pem");
        std::fs::write(&ca, "not a certificate\n").unwrap();
        let detail = serde_json::json!({"Brokers": ["b:9092"], "Topic": "t",
            "Authentication": {"TLS": {"Enabled": true, "CAFile": ca}}});
        let err = config(detail).unwrap_err();
        assert!(err.contains("holds no PEM CERTIFICATE"), "{err}");
    }
}
