//! `flusher_sls`: ships every group to Alibaba Cloud Log Service (SLS) with the PutLogs API,
//! one request per group: `POST /logstores/{logstore}/shards/lb` carrying the group as a
//! `sls_logs.LogGroup`, compressed (LZ4 raw block by default, or zstd), signed with the
//! access key (signature v1: `Authorization: LOG {AccessKeyId}:{signature}`).
//!
//! Delivery: a group the server takes is done; one it rejects for good (a 4xx other than a
//! quota or clock error) is logged as an error, naming the project, logstore, status and
//! answer, and dropped; anything else (5xx, 429, write quota, connection error, timeout)
//! stops the flush there and leaves that group and the ones after it for the runner to retry.
//! A group too large for one request is sent in parts; the parts already delivered leave the
//! group, so a retry sends only the rest.

use std::fmt::Write as _;
use std::net::Ipv4Addr;
use std::time::{Duration, SystemTime};

use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine as _;
use hmac::{Hmac, KeyInit, Mac};
use md5::{Digest, Md5};
use serde::Deserialize;
use sha1::Sha1;
use tailrace::plugin::Flusher;
use tailrace::{Log, LogGroup, PipelineEventGroup};

use crate::config::PluginConfig;
use crate::flusher::parse_options;

#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct SlsFlusherConfig {
    /// The SLS endpoint: `cn-hangzhou.log.aliyuncs.com`, `https://...`, or `http://IP:PORT`
    /// (required). No scheme means `http://`.
    pub endpoint: String,
    /// The project (required; iLogtail's native flusher calls it `Project`).
    #[serde(alias = "Project")]
    pub project_name: String,
    /// The logstore (required; iLogtail's native flusher calls it `Logstore`).
    #[serde(alias = "Logstore")]
    pub logstore_name: String,
    /// Accepted for compatibility; the endpoint says where to send.
    #[serde(default)]
    #[allow(dead_code)]
    pub region: Option<String>,
    /// `lz4` (default), `zstd` or `none`.
    #[serde(default = "default_compress_type")]
    pub compress_type: String,
    /// The access key; when neither it nor the secret is set, the environment's
    /// `ALIBABA_CLOUD_ACCESS_KEY_ID` / `ALIBABA_CLOUD_ACCESS_KEY_SECRET` are used, and without
    /// those requests go unsigned.
    #[serde(default)]
    pub access_key_id: Option<String>,
    #[serde(default)]
    pub access_key_secret: Option<String>,
    /// How long one request may take, connecting included.
    #[serde(default = "default_timeout_secs")]
    pub timeout_secs: u64,
}

fn default_compress_type() -> String {
    "lz4".to_owned()
}

fn default_timeout_secs() -> u64 {
    15
}

const ENV_ACCESS_KEY_ID: &str = "ALIBABA_CLOUD_ACCESS_KEY_ID";
const ENV_ACCESS_KEY_SECRET: &str = "ALIBABA_CLOUD_ACCESS_KEY_SECRET";

const API_VERSION: &str = "0.6.0";
const SIGNATURE_METHOD: &str = "hmac-sha1";
const CONTENT_TYPE: &str = "application/x-protobuf";
const USER_AGENT: &str = concat!("tailrace/", env!("CARGO_PKG_VERSION"));

/// At most this many logs in one request (the SDK producers' default batch; SLS takes more).
const MAX_LOGS_PER_REQUEST: usize = 4096;
/// At most about this many uncompressed bytes in one request (SLS refuses bodies of several
/// MiB; the SDK producers cap a batch at 5-8 MiB).
const MAX_RAW_BYTES_PER_REQUEST: usize = 4 * 1024 * 1024;
/// How much of a server answer is kept for logs and errors.
const MAX_ANSWER_CHARS: usize = 1024;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Compression {
    Lz4,
    Zstd,
    None,
}

impl Compression {
    fn header_value(self) -> Option<&'static str> {
        match self {
            Compression::Lz4 => Some("lz4"),
            Compression::Zstd => Some("zstd"),
            Compression::None => None,
        }
    }
}

/// Where requests go: the URL, and the `Host` header when it is not the URL's host.
#[derive(Debug, PartialEq, Eq)]
struct Target {
    url: String,
    host_header: Option<String>,
}

pub fn build(plugin: &PluginConfig) -> Result<Box<dyn Flusher>, (String, String)> {
    let config: SlsFlusherConfig = parse_options(plugin)?;
    let field = |name: &str| format!("{}.{name}", plugin.field);

    let project = config.project_name.trim().to_owned();
    check_name(&project).map_err(|e| (field("ProjectName"), e))?;
    let logstore = config.logstore_name.trim().to_owned();
    check_name(&logstore).map_err(|e| (field("LogstoreName"), e))?;
    let compression = match config.compress_type.trim().to_ascii_lowercase().as_str() {
        "lz4" => Compression::Lz4,
        "zstd" => Compression::Zstd,
        "none" => Compression::None,
        _ => {
            return Err((
                field("CompressType"),
                format!(
                    "{:?} is not one of \"lz4\", \"zstd\", \"none\"",
                    config.compress_type
                ),
            ))
        }
    };
    if config.timeout_secs == 0 {
        return Err((field("TimeoutSecs"), "must be at least 1".to_owned()));
    }
    let resource = format!("/logstores/{logstore}/shards/lb");
    let target =
        target(&config.endpoint, &project, &resource).map_err(|e| (field("Endpoint"), e))?;
    let credentials = credentials(
        config.access_key_id,
        config.access_key_secret,
        std::env::var(ENV_ACCESS_KEY_ID).ok(),
        std::env::var(ENV_ACCESS_KEY_SECRET).ok(),
    )
    .map_err(|(name, e)| (field(name), e))?;
    let zstd = match compression {
        Compression::Zstd => Some(
            zstd::bulk::Compressor::new(1)
                .map_err(|e| (field("CompressType"), format!("cannot start zstd: {e}")))?,
        ),
        _ => None,
    };

    let agent_config = ureq::Agent::config_builder()
        .timeout_global(Some(Duration::from_secs(config.timeout_secs)))
        .http_status_as_error(false)
        .max_redirects(0)
        .user_agent(USER_AGENT)
        .build();
    Ok(Box::new(SlsFlusher {
        agent: ureq::Agent::new_with_config(agent_config),
        project,
        logstore,
        resource,
        target,
        compression,
        credentials,
        zstd,
    }))
}

/// Project and logstore names go into a host name and a path: SLS allows lowercase letters,
/// digits, `-` (and `_` in logstores); anything else would make a wrong URL.
fn check_name(name: &str) -> Result<(), String> {
    if name.is_empty() {
        return Err("must not be empty".to_owned());
    }
    if let Some(c) = name
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || *c == '-' || *c == '_'))
    {
        return Err(format!(
            "{name:?}: {c:?} is not allowed (letters, digits, '-', '_')"
        ));
    }
    Ok(())
}

/// The request target for `endpoint`. As the SDKs (Python's LogClient, iLogtail's sender) do,
/// the project is the first label of the host name, except when the endpoint is an IP address
/// (or `localhost`): then the URL keeps the address and the project goes into the `Host`
/// header only, as `{project}.{host}` (port left out).
fn target(endpoint: &str, project: &str, resource: &str) -> Result<Target, String> {
    let endpoint = endpoint.trim();
    let (scheme, rest) = match endpoint.find("://") {
        Some(pos) => {
            let scheme = endpoint[..pos].to_ascii_lowercase();
            if scheme != "http" && scheme != "https" {
                return Err(format!(
                    "{endpoint:?}: the scheme must be http or https, not {scheme:?}"
                ));
            }
            (scheme, &endpoint[pos + 3..])
        }
        None => ("http".to_owned(), endpoint),
    };
    let host_port = match rest.find('/') {
        Some(pos) if rest[pos..].trim_end_matches('/').is_empty() => &rest[..pos],
        Some(_) => {
            return Err(format!(
                "{endpoint:?}: an endpoint is a host name or address (with an optional port), \
                 without a path"
            ))
        }
        None => rest,
    };
    if host_port.is_empty() {
        return Err("must not be empty".to_owned());
    }
    let (host, port) = split_host_port(host_port)
        .ok_or_else(|| format!("{endpoint:?}: not a host name or address with an optional port"))?;
    if host.is_empty() || host.chars().any(|c| c.is_whitespace() || c == '@') {
        return Err(format!("{endpoint:?}: not a host name or address"));
    }
    let is_address = host.parse::<Ipv4Addr>().is_ok()
        || host.starts_with('[')
        || host.eq_ignore_ascii_case("localhost");
    let port = port.map(|p| format!(":{p}")).unwrap_or_default();
    Ok(if is_address {
        Target {
            url: format!("{scheme}://{host}{port}{resource}"),
            host_header: Some(format!("{project}.{host}")),
        }
    } else {
        Target {
            url: format!("{scheme}://{project}.{host}{port}{resource}"),
            host_header: None,
        }
    })
}

/// `host[:port]` or `[v6][:port]`; None if the port is not a number.
fn split_host_port(s: &str) -> Option<(&str, Option<u16>)> {
    let (host, port) = if s.starts_with('[') {
        let end = s.find(']')?;
        let (host, after) = s.split_at(end + 1);
        match after.strip_prefix(':') {
            Some(port) => (host, Some(port)),
            None if after.is_empty() => (host, None),
            None => return None,
        }
    } else {
        match s.rsplit_once(':') {
            Some((host, port)) => (host, Some(port)),
            None => (s, None),
        }
    };
    match port {
        Some(port) => Some((host, Some(port.parse().ok()?))),
        None => Some((host, None)),
    }
}

#[derive(Debug)]
struct Credentials {
    access_key_id: String,
    access_key_secret: String,
}

/// The options' key, else the environment's, else none; half a key is an error.
fn credentials(
    id: Option<String>,
    secret: Option<String>,
    env_id: Option<String>,
    env_secret: Option<String>,
) -> Result<Option<Credentials>, (&'static str, String)> {
    let set = |v: Option<String>| v.filter(|s| !s.trim().is_empty());
    match (set(id), set(secret)) {
        (Some(id), Some(secret)) => Ok(Some(Credentials {
            access_key_id: id,
            access_key_secret: secret,
        })),
        (Some(_), None) => Err(("AccessKeySecret", "must be set with AccessKeyId".to_owned())),
        (None, Some(_)) => Err(("AccessKeyId", "must be set with AccessKeySecret".to_owned())),
        (None, None) => match (set(env_id), set(env_secret)) {
            (Some(id), Some(secret)) => Ok(Some(Credentials {
                access_key_id: id,
                access_key_secret: secret,
            })),
            (None, None) => Ok(None),
            _ => Err((
                "AccessKeyId",
                format!(
                    "not set, and only one of {ENV_ACCESS_KEY_ID} and {ENV_ACCESS_KEY_SECRET} \
                     is in the environment"
                ),
            )),
        },
    }
}

struct SlsFlusher {
    agent: ureq::Agent,
    project: String,
    logstore: String,
    /// `/logstores/{logstore}/shards/lb`: the path, and the signed resource.
    resource: String,
    target: Target,
    compression: Compression,
    credentials: Option<Credentials>,
    zstd: Option<zstd::bulk::Compressor<'static>>,
}

/// What became of one PutLogs request.
enum Outcome {
    Delivered,
    /// Refused for good: the data is dropped.
    Rejected {
        status: u16,
        answer: String,
    },
    /// Not delivered this time; the message says why.
    Retry(String),
}

impl Flusher for SlsFlusher {
    /// A batch that fits one request is sent as the processor thread serialized it.
    fn takes_encoded(&self) -> bool {
        true
    }

    fn flush(&mut self, groups: &mut Vec<PipelineEventGroup>) -> Result<(), String> {
        let mut done = 0;
        let mut result = Ok(());
        for group in groups.iter_mut() {
            if let Err(e) = self.send_group(group) {
                result = Err(e);
                break;
            }
            done += 1;
        }
        groups.drain(..done);
        result
    }
}

impl SlsFlusher {
    /// Sends one group, in as many requests as its size needs. On a retryable failure the
    /// logs already delivered are removed from the group (events and logs correspond one to
    /// one) and the error is returned.
    fn send_group(&mut self, group: &mut PipelineEventGroup) -> Result<(), String> {
        if let Some(encoded) = &group.encoded {
            let fits = encoded.events <= MAX_LOGS_PER_REQUEST
                && encoded.log_group.len() <= MAX_RAW_BYTES_PER_REQUEST;
            if fits && group.events.is_empty() {
                let outcome = self.put_logs(&encoded.log_group);
                return self.settle(outcome, encoded.events);
            }
            // Too large for one request: cut by logs, as events (the bytes are this
            // process's own encoding, so they decode).
            let mut decoded = LogGroup::decode_event_group(&encoded.log_group)
                .map_err(|e| format!("a serialized batch does not decode: {e}"))?;
            decoded.events.append(&mut group.events);
            group.events = decoded.events;
            group.encoded = None;
        }
        if group.events.is_empty() {
            return Ok(());
        }
        let mut log_group = LogGroup::from_event_group(group);
        let mut rest = std::mem::take(&mut log_group.logs);
        let mut sent = 0;
        while !rest.is_empty() {
            let take = request_size(&rest);
            log_group.logs = if take == rest.len() {
                std::mem::take(&mut rest)
            } else {
                rest.drain(..take).collect()
            };
            let outcome = self.put_logs(&log_group.encode_to_bytes());
            if let Err(why) = self.settle(outcome, take) {
                group.events.drain(..sent);
                return Err(why);
            }
            sent += take;
        }
        Ok(())
    }

    /// What a request's outcome means for its `logs` logs: delivered, dropped (reported), or
    /// to be retried (the error).
    fn settle(&self, outcome: Outcome, logs: usize) -> Result<(), String> {
        match outcome {
            Outcome::Delivered => Ok(()),
            Outcome::Rejected { status, answer } => {
                tracing::error!(
                    project = %self.project,
                    logstore = %self.logstore,
                    status,
                    "SLS rejected {} log(s) for project {} logstore {} with HTTP {status}: \
                     {answer}; they are dropped",
                    logs,
                    self.project,
                    self.logstore,
                );
                Ok(())
            }
            Outcome::Retry(why) => Err(why),
        }
    }

    /// POSTs one serialized LogGroup.
    fn put_logs(&mut self, raw: &[u8]) -> Outcome {
        let body = match self.compression {
            Compression::Lz4 => lz4_flex::block::compress(raw),
            Compression::Zstd => {
                let compressor = self.zstd.as_mut().expect("a zstd compressor");
                match compressor.compress(raw) {
                    Ok(body) => body,
                    Err(e) => return Outcome::Retry(format!("zstd compression failed: {e}")),
                }
            }
            Compression::None => raw.to_vec(),
        };
        let content_md5 = upper_hex(&Md5::digest(&body));
        let date = httpdate::fmt_http_date(SystemTime::now());
        let mut log_headers: Vec<(&str, String)> = vec![
            ("x-log-apiversion", API_VERSION.to_owned()),
            ("x-log-bodyrawsize", raw.len().to_string()),
            ("x-log-signaturemethod", SIGNATURE_METHOD.to_owned()),
        ];
        if let Some(value) = self.compression.header_value() {
            log_headers.push(("x-log-compresstype", value.to_owned()));
        }

        let mut request = self
            .agent
            .post(&self.target.url)
            .header("Content-Type", CONTENT_TYPE)
            .header("Content-MD5", &content_md5)
            .header("Date", &date);
        if let Some(host) = &self.target.host_header {
            request = request.header("Host", host);
        }
        for (name, value) in &log_headers {
            request = request.header(*name, value);
        }
        if let Some(credentials) = &self.credentials {
            let signature = sign(
                &credentials.access_key_secret,
                "POST",
                &content_md5,
                CONTENT_TYPE,
                &date,
                &log_headers,
                &self.resource,
            );
            request = request.header(
                "Authorization",
                format!("LOG {}:{signature}", credentials.access_key_id),
            );
        }

        let where_to = || format!("SLS project {} logstore {}", self.project, self.logstore);
        let response = match request.send(&body[..]) {
            Ok(response) => response,
            Err(e) => return Outcome::Retry(format!("{}: request failed: {e}", where_to())),
        };
        let status = response.status().as_u16();
        // Read the answer in full, so that the connection can be reused.
        let answer = response
            .into_body()
            .with_config()
            .limit(1024 * 1024)
            .lossy_utf8(true)
            .read_to_string()
            .unwrap_or_default();
        if (200..300).contains(&status) {
            return Outcome::Delivered;
        }
        let answer = shorten(&answer);
        if retryable(status, error_code(&answer).as_deref()) {
            Outcome::Retry(format!("{}: HTTP {status}: {answer}", where_to()))
        } else {
            Outcome::Rejected { status, answer }
        }
    }
}

/// How many of `logs` (at least one) go into the next request.
fn request_size(logs: &[Log]) -> usize {
    let mut bytes = 0;
    for (i, log) in logs.iter().enumerate() {
        if i == MAX_LOGS_PER_REQUEST {
            return i;
        }
        // Close to the encoded size: each field costs its bytes plus a few for tags/lengths.
        let size = 16
            + log
                .contents
                .iter()
                .map(|c| c.key.len() + c.value.len() + 8)
                .sum::<usize>();
        bytes += size;
        if bytes > MAX_RAW_BYTES_PER_REQUEST && i > 0 {
            return i;
        }
    }
    logs.len()
}

/// Whether a non-2xx answer means "try again later" rather than "never".
fn retryable(status: u16, error_code: Option<&str>) -> bool {
    if !(400..500).contains(&status) || status == 408 || status == 429 {
        // 5xx, and the unexpected (3xx): nothing says the data is bad.
        return true;
    }
    matches!(
        error_code,
        Some("WriteQuotaExceed" | "ShardWriteQuotaExceed" | "RequestTimeExpired")
    )
}

/// The `errorCode` of an SLS error answer (`{"errorCode": ..., "errorMessage": ...}`).
fn error_code(answer: &str) -> Option<String> {
    let value: serde_json::Value = serde_json::from_str(answer).ok()?;
    value.get("errorCode")?.as_str().map(str::to_owned)
}

fn shorten(answer: &str) -> String {
    let answer = answer.trim();
    match answer.char_indices().nth(MAX_ANSWER_CHARS) {
        Some((end, _)) => format!("{}...", &answer[..end]),
        None => answer.to_owned(),
    }
}

fn upper_hex(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        let _ = write!(out, "{b:02X}");
    }
    out
}

/// SLS signature v1: base64(HMAC-SHA1(secret, canonical)), where canonical is the verb,
/// Content-MD5, Content-Type and Date, one line each, then every `x-log-`/`x-acs-` header as
/// `name:value` lines sorted by name, then the resource (no query parameters here).
fn sign(
    secret: &str,
    verb: &str,
    content_md5: &str,
    content_type: &str,
    date: &str,
    headers: &[(&str, String)],
    resource: &str,
) -> String {
    let mut signed: Vec<(String, &str)> = headers
        .iter()
        .map(|(name, value)| (name.trim().to_ascii_lowercase(), value.trim()))
        .filter(|(name, _)| name.starts_with("x-log-") || name.starts_with("x-acs-"))
        .collect();
    signed.sort();
    let mut canonical = format!("{verb}\n{content_md5}\n{content_type}\n{date}\n");
    for (name, value) in signed {
        canonical.push_str(&name);
        canonical.push(':');
        canonical.push_str(value);
        canonical.push('\n');
    }
    canonical.push_str(resource);
    let mut mac = Hmac::<Sha1>::new_from_slice(secret.as_bytes()).expect("HMAC takes any key");
    mac.update(canonical.as_bytes());
    BASE64.encode(mac.finalize().into_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;
    use tailrace::LogContent;

    #[test]
    fn endpoint_with_a_domain_prefixes_the_project() {
        let t = target("cn-hangzhou.log.aliyuncs.com", "proj", "/r").unwrap();
        assert_eq!(t.url, "http://proj.cn-hangzhou.log.aliyuncs.com/r");
        assert_eq!(t.host_header, None);
        let t = target("HTTPS://cn-hangzhou.log.aliyuncs.com:8443/", "proj", "/r").unwrap();
        assert_eq!(t.url, "https://proj.cn-hangzhou.log.aliyuncs.com:8443/r");
    }

    #[test]
    fn endpoint_with_an_address_puts_the_project_in_the_host_header() {
        let t = target("http://127.0.0.1:7000", "proj", "/r").unwrap();
        assert_eq!(t.url, "http://127.0.0.1:7000/r");
        assert_eq!(t.host_header.as_deref(), Some("proj.127.0.0.1"));
        let t = target("localhost", "proj", "/r").unwrap();
        assert_eq!(t.url, "http://localhost/r");
        assert_eq!(t.host_header.as_deref(), Some("proj.localhost"));
        let t = target("[::1]:80", "proj", "/r").unwrap();
        assert_eq!(t.url, "http://[::1]:80/r");
    }

    #[test]
    fn bad_endpoints_are_refused() {
        for bad in [
            "",
            "ftp://x.com",
            "x.com/path",
            "x.com:port",
            "http://",
            "a b.com",
        ] {
            assert!(target(bad, "proj", "/r").is_err(), "{bad:?}");
        }
    }

    #[test]
    fn names_must_fit_in_a_url() {
        assert!(check_name("my-project_1").is_ok());
        assert!(check_name("").is_err());
        assert!(check_name("a/b").is_err());
        assert!(check_name("a.b").is_err());
    }

    #[test]
    fn credentials_come_from_options_then_environment() {
        let s = |v: &str| Some(v.to_owned());
        let c = credentials(s("id"), s("secret"), s("eid"), s("esecret"))
            .unwrap()
            .unwrap();
        assert_eq!(
            (c.access_key_id.as_str(), c.access_key_secret.as_str()),
            ("id", "secret")
        );
        let c = credentials(None, None, s("eid"), s("esecret"))
            .unwrap()
            .unwrap();
        assert_eq!(c.access_key_id, "eid");
        assert!(credentials(None, None, None, None).unwrap().is_none());
        assert!(credentials(s("id"), None, None, None).is_err());
        assert!(credentials(None, s("secret"), None, None).is_err());
        assert!(credentials(None, None, s("eid"), None).is_err());
    }

    /// Checked against an independent computation of the same canonical string.
    #[test]
    fn signature_covers_md5_type_date_sorted_log_headers_and_resource() {
        let headers = vec![
            ("x-log-signaturemethod", "hmac-sha1".to_owned()),
            ("x-log-apiversion", "0.6.0".to_owned()),
            ("X-Log-BodyRawSize", "10".to_owned()),
            ("x-acs-security-token", "tok".to_owned()),
            ("user-agent", "ignored".to_owned()),
        ];
        let got = sign(
            "secret",
            "POST",
            "ABC",
            "application/x-protobuf",
            "Mon, 01 Jan 2024 00:00:00 GMT",
            &headers,
            "/logstores/s/shards/lb",
        );
        let canonical = "POST\nABC\napplication/x-protobuf\nMon, 01 Jan 2024 00:00:00 GMT\n\
                         x-acs-security-token:tok\nx-log-apiversion:0.6.0\nx-log-bodyrawsize:10\n\
                         x-log-signaturemethod:hmac-sha1\n/logstores/s/shards/lb";
        let mut mac = Hmac::<Sha1>::new_from_slice(b"secret").unwrap();
        mac.update(canonical.as_bytes());
        assert_eq!(got, BASE64.encode(mac.finalize().into_bytes()));
    }

    /// Known answers published with SLS's own Rust signer (aliyun-log-rust-sdk, auth crate):
    /// a bodiless GET of `/` with empty keys, and a POST with a JSON body and sorted query.
    #[test]
    fn signature_matches_the_sls_sdk_known_answers() {
        let date = "Thu, 01 Jan 1970 00:00:00 GMT";
        let base = vec![
            ("x-log-apiversion", "0.6.0".to_owned()),
            ("x-log-signaturemethod", "hmac-sha1".to_owned()),
        ];
        assert_eq!(
            sign("", "GET", "", "", date, &base, "/"),
            "SApFTtfTFKHmzdEdaMe5TjNn+RQ="
        );

        let body = "\n            {\"key\": \"value\"}\n        ";
        let md5 = upper_hex(&Md5::digest(body.as_bytes()));
        assert_eq!(md5, "CE688F8D1AC3ED309BA9BE0A5ABAFCE5");
        let resource = "/logstores/test-logstore?line=100&offset=0&type=log";
        let json = "application/json";
        assert_eq!(
            sign("test-access-key", "POST", &md5, json, date, &base, resource),
            "4pL2xZJERC3tPKtRiHh9+nMG3tI="
        );
        let mut with_token = base.clone();
        with_token.push(("x-acs-security-token", "test-security-token".to_owned()));
        assert_eq!(
            sign(
                "test-access-key",
                "POST",
                &md5,
                json,
                date,
                &with_token,
                resource
            ),
            "ZQt+0wIvpd+O9yIJKeKxZTJ2hv0="
        );
    }

    #[test]
    fn known_hmac_sha1_vector() {
        // RFC 2202 test case 2, through the same path the signature takes.
        let mut mac = Hmac::<Sha1>::new_from_slice(b"Jefe").unwrap();
        mac.update(b"what do ya want for nothing?");
        assert_eq!(
            upper_hex(&mac.finalize().into_bytes()),
            "EFFCDF6AE5EB2FA2D27416D5F184DF9C259A7C79"
        );
        assert_eq!(
            upper_hex(&Md5::digest(b"")),
            "D41D8CD98F00B204E9800998ECF8427E"
        );
    }

    #[test]
    fn retry_classification() {
        assert!(retryable(500, None));
        assert!(retryable(503, Some("ServerBusy")));
        assert!(retryable(429, None));
        assert!(retryable(403, Some("WriteQuotaExceed")));
        assert!(retryable(403, Some("ShardWriteQuotaExceed")));
        assert!(retryable(302, None));
        assert!(!retryable(400, Some("PostBodyInvalid")));
        assert!(!retryable(401, Some("Unauthorized")));
        assert!(!retryable(403, Some("SignatureNotMatch")));
        assert!(!retryable(404, Some("LogStoreNotExist")));
        assert_eq!(
            error_code(r#"{"errorCode":"WriteQuotaExceed","errorMessage":"x"}"#).as_deref(),
            Some("WriteQuotaExceed")
        );
        assert_eq!(error_code("<html>"), None);
    }

    #[test]
    fn large_groups_are_cut_into_requests() {
        let log = |n: usize| Log {
            time: 1,
            time_ns: None,
            contents: vec![LogContent {
                key: Bytes::from_static(b"content"),
                value: Bytes::from(vec![b'x'; n]),
            }],
        };
        let many: Vec<Log> = (0..MAX_LOGS_PER_REQUEST + 5).map(|_| log(10)).collect();
        assert_eq!(request_size(&many), MAX_LOGS_PER_REQUEST);
        assert_eq!(request_size(&many[..3]), 3);
        let big: Vec<Log> = (0..3).map(|_| log(MAX_RAW_BYTES_PER_REQUEST / 2)).collect();
        assert_eq!(request_size(&big), 1);
        let huge = vec![log(MAX_RAW_BYTES_PER_REQUEST * 2)];
        assert_eq!(request_size(&huge), 1);
    }

    /// A server on 127.0.0.1 answering its requests with `statuses` in turn (one request per
    /// connection); returns the flusher's endpoint and how many logs each request carried.
    fn scripted_server(statuses: Vec<u16>) -> (String, std::thread::JoinHandle<Vec<usize>>) {
        use std::io::{BufRead, BufReader, Read, Write};
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let endpoint = format!("http://{}", listener.local_addr().unwrap());
        let thread = std::thread::spawn(move || {
            let mut counts = Vec::new();
            for status in statuses {
                let (stream, _) = listener.accept().unwrap();
                let mut reader = BufReader::new(stream.try_clone().unwrap());
                let (mut length, mut raw_size) = (0, 0);
                loop {
                    let mut line = String::new();
                    reader.read_line(&mut line).unwrap();
                    let line = line.trim_end().to_ascii_lowercase();
                    if line.is_empty() {
                        break;
                    }
                    if let Some(v) = line.strip_prefix("content-length:") {
                        length = v.trim().parse().unwrap();
                    }
                    if let Some(v) = line.strip_prefix("x-log-bodyrawsize:") {
                        raw_size = v.trim().parse().unwrap();
                    }
                }
                let mut body = vec![0; length];
                reader.read_exact(&mut body).unwrap();
                let raw = lz4_flex::block::decompress(&body, raw_size).unwrap();
                counts.push(LogGroup::decode_bytes(&raw).unwrap().logs.len());
                let answer = r#"{"errorCode":"X","errorMessage":"y"}"#;
                let mut stream = stream;
                write!(
                    stream,
                    "HTTP/1.1 {status} S\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{answer}",
                    answer.len()
                )
                .unwrap();
            }
            counts
        });
        (endpoint, thread)
    }

    fn flusher_for(endpoint: &str) -> Box<dyn Flusher> {
        let options = serde_json::json!({
            "Endpoint": endpoint, "ProjectName": "p", "LogstoreName": "l",
            "AccessKeyId": "id", "AccessKeySecret": "secret",
        });
        let plugin = PluginConfig {
            plugin_type: "flusher_sls".to_owned(),
            field: "flushers[0]".to_owned(),
            placement: crate::config::Placement::Native,
            options: options.as_object().unwrap().clone(),
        };
        build(&plugin).unwrap()
    }

    fn group_of(n: usize) -> PipelineEventGroup {
        let mut group = PipelineEventGroup::with_capacity(n);
        for i in 0..n {
            let mut log = tailrace::LogEvent::new(1, None);
            log.set_content("content", format!("line {i}"));
            group.events.push(tailrace::PipelineEvent::Log(log));
        }
        group
    }

    #[test]
    fn a_retry_after_a_partial_send_keeps_only_what_was_not_delivered() {
        // Group 1 goes in two requests (4096 + 10): the first is taken, the second gets a 500.
        let (endpoint, server) = scripted_server(vec![200, 500]);
        let mut flusher = flusher_for(&endpoint);
        let mut groups = vec![group_of(MAX_LOGS_PER_REQUEST + 10), group_of(3)];
        let err = flusher.flush(&mut groups).unwrap_err();
        assert!(err.contains("HTTP 500"), "{err}");
        assert_eq!(server.join().unwrap(), vec![MAX_LOGS_PER_REQUEST, 10]);
        assert_eq!(groups.len(), 2);
        assert_eq!(groups[0].events.len(), 10);
        assert_eq!(groups[1].events.len(), 3);

        // A 400 drops only its own request, and the next group still goes.
        let (endpoint, server) = scripted_server(vec![400, 200]);
        let mut flusher = flusher_for(&endpoint);
        flusher.flush(&mut groups).unwrap();
        assert!(groups.is_empty());
        assert_eq!(server.join().unwrap(), vec![10, 3]);
    }

    /// `group` as the processor thread hands it to a flusher that takes LogGroups.
    fn encoded(group: PipelineEventGroup) -> PipelineEventGroup {
        let mut bytes = Vec::new();
        tailrace::proto::encode_group(&group, &mut bytes);
        PipelineEventGroup {
            encoded: Some(tailrace::EncodedLogs {
                log_group: bytes.into(),
                events: group.len(),
            }),
            ..Default::default()
        }
    }

    #[test]
    fn a_serialized_batch_goes_as_it_is_or_cut_by_logs_when_too_large() {
        // One request for the small batch; the large one is cut, and its second request fails.
        let (endpoint, server) = scripted_server(vec![200, 200, 500]);
        let mut flusher = flusher_for(&endpoint);
        let mut groups = vec![
            encoded(group_of(7)),
            encoded(group_of(MAX_LOGS_PER_REQUEST + 10)),
        ];
        let err = flusher.flush(&mut groups).unwrap_err();
        assert!(err.contains("HTTP 500"), "{err}");
        assert_eq!(
            server.join().unwrap(),
            vec![7, MAX_LOGS_PER_REQUEST, 10],
            "logs per request"
        );
        // What is left is what was not delivered: the last 10 logs, now as events.
        assert_eq!(groups.len(), 1);
        assert_eq!(groups[0].len(), 10);
        assert!(groups[0].encoded.is_none());
        let first = groups[0].events[0].clone();
        let tailrace::PipelineEvent::Log(first) = first else {
            panic!("a log")
        };
        assert_eq!(
            first.content(b"content").map(|v| v.as_ref()),
            Some(format!("line {MAX_LOGS_PER_REQUEST}").as_bytes())
        );
        let (endpoint, server) = scripted_server(vec![200]);
        let mut flusher = flusher_for(&endpoint);
        flusher.flush(&mut groups).unwrap();
        assert_eq!(server.join().unwrap(), vec![10]);
    }

    #[test]
    fn a_closed_port_is_a_retry() {
        let port = {
            let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            listener.local_addr().unwrap().port()
        };
        let mut flusher = flusher_for(&format!("http://127.0.0.1:{port}"));
        let mut groups = vec![group_of(2)];
        let err = flusher.flush(&mut groups).unwrap_err();
        assert!(err.contains("request failed"), "{err}");
        assert_eq!(groups.len(), 1);
        assert_eq!(groups[0].events.len(), 2);
    }

    #[test]
    fn lz4_is_a_raw_block_that_decodes_with_the_raw_size() {
        let raw = b"hello hello hello hello hello hello".repeat(10);
        let block = lz4_flex::block::compress(&raw);
        assert_eq!(lz4_flex::block::decompress(&block, raw.len()).unwrap(), raw);
    }
}
