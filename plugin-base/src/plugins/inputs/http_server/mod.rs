//! `service_http_server` (iLogtail's name and options): an HTTP server whose POSTed bodies become
//! events, in the `Format` the config names ([`decode`]).
//!
//! A request is answered only once the pipeline took its events, so a success is an
//! acknowledgement: 200 (`sls`, with iLogtail's `x-log-requestid`) or 204 (the others, as
//! iLogtail). When the pipeline's queue stays full for [`FULL_WAIT`], the answer is 503 with
//! `Retry-After`: backpressure, never a silent drop. Bodies may be gzip (`Content-Encoding`) or,
//! as SLS clients send them, lz4 blocks (`x-log-compresstype: lz4`). A body over `MaxBodySize` is 413 and is
//! never buffered past the limit; a malformed one 400 with the reason; anything but POST 405;
//! a path other than `Endpoint` (when set) 404.
//!
//! Tailrace additions (iLogtail's plugin has neither): `TLS: {CertFile, KeyFile, CAFile}`
//! (rustls; `CAFile` makes client certificates required and checked against it) and
//! `BasicAuth: {Username, Password}` (a request without the right credentials gets 401).

pub mod decode;

use crate::runtime::feed::Feed;
use std::collections::BTreeMap;
use std::convert::Infallible;
use std::net::{SocketAddr, ToSocketAddrs};
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use base64::Engine;
use bytes::Bytes;
use http_body_util::{BodyExt, Full, LengthLimitError, Limited};
use hyper::header::{self, HeaderValue};
use hyper::service::service_fn;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use serde::Deserialize;
use serde_json::Value;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpListener, UnixListener};
use tokio::sync::watch;
use tokio::task::JoinSet;
use tokio::time::timeout;
use tokio_rustls::TlsAcceptor;

use crate::context::AlarmLevel;
use crate::plugins::tls;
use crate::runtime::registry::{parse_detail, PluginContext, PluginFactory, ServiceInput};
use decode::{DecodeOptions, Format, RequestInfo};

#[derive(Debug, Deserialize)]
#[serde(default, rename_all = "PascalCase")]
pub struct HttpServerConfig {
    /// `host:port` (`:port` for every interface; an `http://`, `https://` or `tcp://` prefix is
    /// allowed, as iLogtail allows it) or `unix:///path/to.sock`. Required: the server binds
    /// only where it is told to.
    pub address: String,
    /// The body format: `sls`, `raw`, `influx`/`influxdb`, `prometheus` (iLogtail's), `lines`,
    /// `json` (Tailrace's).
    pub format: String,
    /// The only path served, when set (others get 404); every path when empty.
    pub endpoint: String,
    /// How long reading a request (headers and body) may take (10 s).
    pub read_timeout_sec: u64,
    /// How long in-flight requests may finish at stop (5 s; at most 1.5 s here, within the
    /// pipeline's own stop deadline).
    pub shutdown_timeout_sec: u64,
    /// The largest body accepted, in bytes (64 MiB).
    pub max_body_size: i64,
    /// Connections served at once (Tailrace's; 256, as `service_syslog`'s option): past it,
    /// new ones wait in the kernel's backlog. With `MaxBodySize` it bounds what requests in
    /// flight can hold.
    pub max_connections: usize,
    /// Remove a stale socket file before binding a `unix://` address (true).
    pub unlink_unix_sock: bool,
    /// influx: keep string fields and add `__type__`, `__field__`, `__tag__:db`.
    pub fields_extend: bool,
    /// Tags of every group received.
    pub tags: BTreeMap<String, String>,
    /// iLogtail puts the tags on each event when false; Tailrace's logs carry no tags of their
    /// own, so they always go to the group.
    pub tags_in_group: bool,
    /// Added to `Tags` as `cluster`.
    pub cluster: String,
    /// Query parameters copied into each group's metadata (iLogtail's v2 behaviour).
    pub query_params: Vec<String>,
    pub query_param_prefix: String,
    /// Request headers copied into each group's metadata.
    pub header_params: Vec<String>,
    pub header_param_prefix: String,
    #[serde(rename = "TLS")]
    pub tls: Option<TlsConfig>,
    pub basic_auth: Option<BasicAuthConfig>,
}

impl Default for HttpServerConfig {
    fn default() -> Self {
        HttpServerConfig {
            address: String::new(),
            format: String::new(),
            endpoint: String::new(),
            read_timeout_sec: 10,
            shutdown_timeout_sec: 5,
            max_body_size: 64 * 1024 * 1024,
            max_connections: 256,
            unlink_unix_sock: true,
            fields_extend: false,
            tags: BTreeMap::new(),
            tags_in_group: true,
            cluster: String::new(),
            query_params: Vec::new(),
            query_param_prefix: String::new(),
            header_params: Vec::new(),
            header_param_prefix: String::new(),
            tls: None,
            basic_auth: None,
        }
    }
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct TlsConfig {
    /// PEM certificate chain of the server.
    #[serde(rename = "CertFile")]
    pub cert_file: String,
    /// PEM private key of the server.
    #[serde(rename = "KeyFile")]
    pub key_file: String,
    /// PEM CA certificates: when set, clients must present a certificate signed by one.
    #[serde(rename = "CAFile")]
    pub ca_file: String,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default, rename_all = "PascalCase")]
pub struct BasicAuthConfig {
    pub username: String,
    pub password: String,
}

pub const PLUGIN: (&str, PluginFactory) =
    ("service_http_server", PluginFactory::ServiceInput(build));

/// How long a request waits for room in a full pipeline queue before it is answered 503.
pub const FULL_WAIT: Duration = Duration::from_millis(500);
/// What a 503 asks the client to wait, in seconds.
const RETRY_AFTER_SECS: &str = "1";
/// The longest graceful shutdown: the pipeline gives an input 2 s to stop.
const MAX_SHUTDOWN: Duration = Duration::from_millis(1500);
/// How long a failed bind waits before the next try.
const BIND_RETRY: Duration = Duration::from_secs(1);

/// Where to listen.
#[derive(Clone, Debug, PartialEq)]
enum Bind {
    Tcp(SocketAddr),
    Unix(PathBuf),
}

fn parse_address(address: &str) -> Result<Bind, String> {
    let bad = |why: &str| format!("Address: {address:?} {why}");
    if address.trim().is_empty() {
        return Err("Address: required (host:port or unix:///path)".into());
    }
    if let Some(path) = address.strip_prefix("unix://") {
        if path.is_empty() {
            return Err(bad("has no socket path"));
        }
        return Ok(Bind::Unix(PathBuf::from(path)));
    }
    let mut host_port = address;
    for scheme in ["http://", "https://", "tcp://"] {
        if let Some(rest) = address.strip_prefix(scheme) {
            host_port = rest.split('/').next().unwrap_or_default();
        }
    }
    let with_host = if host_port.starts_with(':') {
        format!("0.0.0.0{host_port}")
    } else {
        host_port.to_owned()
    };
    if let Ok(addr) = with_host.parse::<SocketAddr>() {
        return Ok(Bind::Tcp(addr));
    }
    if !with_host.contains(':') {
        return Err(bad("is not host:port or unix:///path"));
    }
    match with_host.to_socket_addrs() {
        Ok(mut addrs) => addrs
            .next()
            .map(Bind::Tcp)
            .ok_or_else(|| bad("resolves to no address")),
        Err(e) => Err(bad(&format!("is not host:port or unix:///path: {e}"))),
    }
}

fn build(ctx: &PluginContext, detail: &Value) -> Result<Box<dyn ServiceInput>, String> {
    Ok(Box::new(build_server(ctx, detail)?))
}

fn build_server(ctx: &PluginContext, detail: &Value) -> Result<HttpServer, String> {
    let mut config: HttpServerConfig = parse_detail(detail)?;
    let format = Format::parse(&config.format)?;
    let bind = parse_address(&config.address)?;
    if config.max_body_size <= 0 {
        return Err(format!(
            "MaxBodySize: must be positive, got {}",
            config.max_body_size
        ));
    }
    if config.read_timeout_sec == 0 {
        return Err("ReadTimeoutSec: must be positive, got 0".into());
    }
    if config.max_connections == 0 {
        return Err("MaxConnections: must be positive, got 0".into());
    }
    if !config.endpoint.is_empty() && !config.endpoint.starts_with('/') {
        return Err(format!(
            "Endpoint: {:?} must be a path starting with '/'",
            config.endpoint
        ));
    }
    let tls = config.tls.as_ref().map(tls_acceptor).transpose()?;
    let basic_auth = match &config.basic_auth {
        None => None,
        Some(auth) if auth.username.is_empty() => {
            return Err("BasicAuth.Username: must not be empty".into())
        }
        Some(auth) => Some(format!("{}:{}", auth.username, auth.password).into_bytes()),
    };
    if !config.cluster.is_empty() {
        config
            .tags
            .insert("cluster".to_owned(), config.cluster.clone());
    }
    Ok(HttpServer {
        bind,
        max_connections: config.max_connections,
        unlink_unix_sock: config.unlink_unix_sock,
        read_timeout: Duration::from_secs(config.read_timeout_sec),
        shutdown_timeout: Duration::from_secs(config.shutdown_timeout_sec).min(MAX_SHUTDOWN),
        tls,
        handler: Handler {
            format,
            opts: DecodeOptions {
                fields_extend: config.fields_extend,
            },
            endpoint: config.endpoint,
            max_body_size: config.max_body_size as u64,
            read_timeout: Duration::from_secs(config.read_timeout_sec),
            basic_auth,
            tags: config.tags.into_iter().collect(),
            query_params: config.query_params,
            query_param_prefix: config.query_param_prefix,
            header_params: config.header_params,
            header_param_prefix: config.header_param_prefix,
            ctx: ctx.clone(),
        },
    })
}

/// The server's TLS setup from its files; every error names the field and the file.
fn tls_acceptor(tls: &TlsConfig) -> Result<TlsAcceptor, String> {
    let files = tls::ServerFiles {
        cert_file: &tls.cert_file,
        key_file: &tls.key_file,
        ca_file: &tls.ca_file,
    };
    let mut config = tls::server_config(&files, rustls::DEFAULT_VERSIONS)?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(TlsAcceptor::from(Arc::new(config)))
}

struct HttpServer {
    bind: Bind,
    max_connections: usize,
    unlink_unix_sock: bool,
    read_timeout: Duration,
    shutdown_timeout: Duration,
    tls: Option<TlsAcceptor>,
    handler: Handler,
}

enum Listener {
    Tcp(TcpListener),
    Unix(UnixListener, PathBuf),
}

impl ServiceInput for HttpServer {
    fn run(
        self: Box<Self>,
        out: Feed,
        stop: watch::Receiver<bool>,
    ) -> Pin<Box<dyn std::future::Future<Output = ()> + Send>> {
        Box::pin(self.serve(out, stop))
    }
}

impl HttpServer {
    async fn bind(&self) -> std::io::Result<Listener> {
        match &self.bind {
            Bind::Tcp(addr) => TcpListener::bind(addr).await.map(Listener::Tcp),
            Bind::Unix(path) => {
                if self.unlink_unix_sock {
                    let _ = std::fs::remove_file(path);
                }
                UnixListener::bind(path).map(|l| Listener::Unix(l, path.clone()))
            }
        }
    }

    async fn serve(self, out: Feed, mut stop: watch::Receiver<bool>) {
        let ctx = self.handler.ctx.clone();
        // Bind; a busy port is retried until it frees or the pipeline stops (one alarm).
        let mut failures = 0u32;
        let listener = loop {
            if *stop.borrow() {
                return;
            }
            match self.bind().await {
                Ok(listener) => break listener,
                Err(e) => {
                    if failures == 0 {
                        ctx.alarm(
                            "SERVICE_HTTP_SERVER_ALARM",
                            AlarmLevel::Error,
                            format!(
                                "service_http_server: cannot listen on {:?}: {e}; retrying \
                                 every {BIND_RETRY:?}",
                                self.bind
                            ),
                        );
                    }
                    failures += 1;
                    tracing::debug!(address = ?self.bind, error = %e, failures, "http server: bind failed");
                    tokio::select! {
                        _ = tokio::time::sleep(BIND_RETRY) => {}
                        changed = stop.changed() => if changed.is_err() {
                            return;
                        },
                    }
                }
            }
        };
        tracing::info!(config = %ctx.config_name, address = ?self.bind, "http server start");
        let handler = Arc::new(self.handler);
        let (shutdown_tx, shutdown_rx) = watch::channel(false);
        let mut conns = JoinSet::new();
        let conn = ConnSetup {
            handler,
            out,
            tls: self.tls.clone(),
            read_timeout: self.read_timeout,
            shutdown: shutdown_rx,
        };
        loop {
            tokio::select! {
                changed = stop.changed() => {
                    if changed.is_err() || *stop.borrow() {
                        break;
                    }
                }
                accepted = accept(&listener), if conns.len() < self.max_connections => match accepted {
                    Ok(Accepted::Tcp(stream)) => {
                        let _ = stream.set_nodelay(true);
                        conns.spawn(conn.clone().serve(stream));
                    }
                    Ok(Accepted::Unix(stream)) => {
                        conns.spawn(conn.clone().serve(stream));
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, "http server: accept failed");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                    }
                },
                Some(_) = conns.join_next(), if !conns.is_empty() => {}
            }
        }
        if let Listener::Unix(_, path) = &listener {
            let _ = std::fs::remove_file(path);
        }
        drop(listener);
        drop(conn);
        // In-flight requests finish (each waits at most FULL_WAIT for the queue); idle
        // connections close now.
        let _ = shutdown_tx.send(true);
        let drained = timeout(self.shutdown_timeout, async {
            while conns.join_next().await.is_some() {}
        })
        .await;
        if drained.is_err() {
            tracing::warn!("http server: connections still open at shutdown are closed");
        }
        conns.shutdown().await;
        tracing::info!(config = %ctx.config_name, address = ?self.bind, "http server shutdown");
    }
}

enum Accepted {
    Tcp(tokio::net::TcpStream),
    Unix(tokio::net::UnixStream),
}

async fn accept(listener: &Listener) -> std::io::Result<Accepted> {
    match listener {
        Listener::Tcp(l) => l.accept().await.map(|(s, _)| Accepted::Tcp(s)),
        Listener::Unix(l, _) => l.accept().await.map(|(s, _)| Accepted::Unix(s)),
    }
}

/// What each connection needs.
#[derive(Clone)]
struct ConnSetup {
    handler: Arc<Handler>,
    out: Feed,
    tls: Option<TlsAcceptor>,
    read_timeout: Duration,
    shutdown: watch::Receiver<bool>,
}

impl ConnSetup {
    async fn serve<S>(self, stream: S)
    where
        S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    {
        match self.tls.clone() {
            None => self.serve_http(stream).await,
            Some(acceptor) => match timeout(self.read_timeout, acceptor.accept(stream)).await {
                Ok(Ok(tls_stream)) => self.serve_http(tls_stream).await,
                Ok(Err(e)) => tracing::debug!(error = %e, "http server: TLS handshake failed"),
                Err(_) => tracing::debug!("http server: TLS handshake timed out"),
            },
        }
    }

    async fn serve_http<S>(self, stream: S)
    where
        S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    {
        let ConnSetup {
            handler,
            out,
            mut shutdown,
            read_timeout,
            ..
        } = self;
        let service = service_fn(move |req| {
            let handler = handler.clone();
            let out = out.clone();
            async move { Ok::<_, Infallible>(handler.handle(req, &out).await) }
        });
        let conn = hyper::server::conn::http1::Builder::new()
            .timer(TokioTimer::new())
            .header_read_timeout(read_timeout)
            .serve_connection(TokioIo::new(stream), service);
        tokio::pin!(conn);
        tokio::select! {
            result = conn.as_mut() => {
                if let Err(e) = result {
                    tracing::debug!(error = %e, "http server: connection ended");
                }
            }
            _ = shutdown.changed() => {
                conn.as_mut().graceful_shutdown();
                let _ = conn.await;
            }
        }
    }
}

/// Why a body is refused before it is decoded.
#[derive(Debug, PartialEq)]
enum Refusal {
    TooLarge,
    Bad(String),
}

/// Uncompresses a gzip body (`Content-Encoding`) or an SLS lz4 block (`x-log-compresstype`,
/// `x-log-bodyrawsize`), as iLogtail does; the uncompressed size is held to `max` too, so a
/// small bomb cannot take more memory than a plain body could.
fn decompress(
    body: Bytes,
    gzip: bool,
    lz4_raw_size: Option<u64>,
    max: u64,
) -> Result<Bytes, Refusal> {
    use std::io::Read;
    let mut body = body;
    if gzip {
        let mut out = Vec::new();
        flate2::read::GzDecoder::new(&body[..])
            .take(max + 1)
            .read_to_end(&mut out)
            .map_err(|e| Refusal::Bad(format!("invalid gzip body: {e}")))?;
        if out.len() as u64 > max {
            return Err(Refusal::TooLarge);
        }
        body = Bytes::from(out);
    }
    if let Some(raw_size) = lz4_raw_size {
        if raw_size > max {
            return Err(Refusal::TooLarge);
        }
        let out = lz4_flex::block::decompress(&body, raw_size as usize)
            .map_err(|e| Refusal::Bad(format!("invalid lz4 body: {e}")))?;
        if out.len() as u64 != raw_size {
            return Err(Refusal::Bad(format!(
                "lz4 body is {} bytes uncompressed, x-log-bodyrawsize says {raw_size}",
                out.len()
            )));
        }
        body = Bytes::from(out);
    }
    Ok(body)
}

/// Answers one request.
struct Handler {
    format: Format,
    opts: DecodeOptions,
    endpoint: String,
    max_body_size: u64,
    read_timeout: Duration,
    /// `user:password`, when basic auth is required.
    basic_auth: Option<Vec<u8>>,
    tags: Vec<(String, String)>,
    query_params: Vec<String>,
    query_param_prefix: String,
    header_params: Vec<String>,
    header_param_prefix: String,
    ctx: PluginContext,
}

fn respond(status: StatusCode, error: Option<&str>) -> Response<Full<Bytes>> {
    let body = match error {
        Some(e) => Bytes::from(serde_json::json!({ "error": e }).to_string()),
        None => Bytes::new(),
    };
    let mut resp = Response::new(Full::new(body));
    *resp.status_mut() = status;
    if error.is_some() {
        resp.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );
    }
    resp
}

fn header_str<B>(req: &Request<B>, name: impl header::AsHeaderName) -> &str {
    req.headers()
        .get(name)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
}

/// Compares in time that does not depend on where the inputs differ.
fn same_secret(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

impl Handler {
    fn authorized<B>(&self, req: &Request<B>) -> bool {
        let Some(expected) = &self.basic_auth else {
            return true;
        };
        let value = header_str(req, header::AUTHORIZATION);
        let Some((scheme, credentials)) = value.split_once(' ') else {
            return false;
        };
        if !scheme.eq_ignore_ascii_case("basic") {
            return false;
        }
        match base64::engine::general_purpose::STANDARD.decode(credentials.trim()) {
            Ok(given) => same_secret(&given, expected),
            Err(_) => false,
        }
    }

    /// Generic over the body so that tests can call it without a socket.
    async fn handle<B>(&self, req: Request<B>, out: &Feed) -> Response<Full<Bytes>>
    where
        B: hyper::body::Body<Data = Bytes>,
        B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    {
        if !self.authorized(&req) {
            let mut resp = respond(StatusCode::UNAUTHORIZED, Some("unauthorized"));
            resp.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static("Basic realm=\"tailrace\""),
            );
            return resp;
        }
        if !self.endpoint.is_empty() && req.uri().path() != self.endpoint {
            return respond(StatusCode::NOT_FOUND, Some("http: not found"));
        }
        if req.method() != Method::POST {
            let mut resp = respond(
                StatusCode::METHOD_NOT_ALLOWED,
                Some("http: method not allowed"),
            );
            resp.headers_mut()
                .insert(header::ALLOW, HeaderValue::from_static("POST"));
            return resp;
        }
        let too_large = || {
            respond(
                StatusCode::PAYLOAD_TOO_LARGE,
                Some("http: request body too large"),
            )
        };
        let declared = req
            .headers()
            .get(header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<u64>().ok());
        if declared.is_some_and(|n| n > self.max_body_size) {
            return too_large();
        }
        let encoding = header_str(&req, header::CONTENT_ENCODING).to_owned();
        let gzip = encoding.eq_ignore_ascii_case("gzip");
        let snappy_remote_write =
            self.format == Format::Prometheus && encoding.eq_ignore_ascii_case("snappy");
        if !encoding.is_empty()
            && !encoding.eq_ignore_ascii_case("identity")
            && !gzip
            && !snappy_remote_write
        {
            return respond(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                Some(&format!("Content-Encoding {encoding:?} is not supported")),
            );
        }
        let lz4_raw_size = match header_str(&req, "x-log-compresstype") {
            "" => None,
            t if t.eq_ignore_ascii_case("lz4") => {
                let raw = header_str(&req, "x-log-bodyrawsize");
                match raw.parse::<u64>() {
                    Ok(n) if n > 0 => Some(n),
                    _ => {
                        return respond(
                            StatusCode::BAD_REQUEST,
                            Some(&format!("invalid x-log-bodyrawsize {raw:?}")),
                        )
                    }
                }
            }
            other => {
                return respond(
                    StatusCode::UNSUPPORTED_MEDIA_TYPE,
                    Some(&format!("x-log-compresstype {other:?} is not supported")),
                )
            }
        };
        let query = req.uri().query().unwrap_or_default().to_owned();
        let content_type = header_str(&req, header::CONTENT_TYPE).to_owned();
        let metadata = self.request_params(&req, &query);
        // Never more than the limit in memory: `Limited` fails as soon as a frame would pass it.
        let limit = usize::try_from(self.max_body_size).unwrap_or(usize::MAX);
        let body = match timeout(
            self.read_timeout,
            Limited::new(req.into_body(), limit).collect(),
        )
        .await
        {
            Ok(Ok(collected)) => collected.to_bytes(),
            Ok(Err(e)) if e.downcast_ref::<LengthLimitError>().is_some() => return too_large(),
            Ok(Err(e)) => {
                return respond(
                    StatusCode::BAD_REQUEST,
                    Some(&format!("cannot read the body: {e}")),
                )
            }
            Err(_) => {
                return respond(
                    StatusCode::REQUEST_TIMEOUT,
                    Some("http: reading the body timed out"),
                )
            }
        };
        let body = match decompress(body, gzip, lz4_raw_size, self.max_body_size) {
            Ok(body) => body,
            Err(Refusal::TooLarge) => return too_large(),
            Err(Refusal::Bad(reason)) => return respond(StatusCode::BAD_REQUEST, Some(&reason)),
        };
        let info = RequestInfo {
            query: &query,
            content_type: &content_type,
            content_encoding: &encoding,
        };
        let mut group = match decode::decode(self.format, body, &info, self.opts) {
            Ok(group) => group,
            Err(reason) => {
                tracing::warn!(config = %self.ctx.config_name, %reason, "http server: bad request");
                self.ctx.alarm(
                    "DECODE_BODY_FAIL_ALARM",
                    AlarmLevel::Warning,
                    format!("service_http_server: decode body failed: {reason}"),
                );
                return respond(StatusCode::BAD_REQUEST, Some(&reason));
            }
        };
        if !group.events.is_empty() {
            for (k, v) in &self.tags {
                group.set_tag(k.clone(), v.clone());
            }
            for (k, v) in metadata {
                group.set_metadata(k, v);
            }
            // The answer waits until the pipeline took the group: that is the acknowledgement.
            if out.send_timeout(group, FULL_WAIT).await.is_err() {
                let mut resp = respond(
                    StatusCode::SERVICE_UNAVAILABLE,
                    Some("the pipeline is full; retry later"),
                );
                resp.headers_mut().insert(
                    header::RETRY_AFTER,
                    HeaderValue::from_static(RETRY_AFTER_SECS),
                );
                return resp;
            }
        }
        if self.format == Format::Sls {
            let mut resp = respond(StatusCode::OK, None);
            resp.headers_mut().insert(
                "x-log-requestid",
                HeaderValue::from_static("1234567890abcde"),
            );
            resp
        } else {
            respond(StatusCode::NO_CONTENT, None)
        }
    }

    /// `QueryParams` and `HeaderParams` of the request, prefixed, for the group's metadata.
    fn request_params<B>(&self, req: &Request<B>, query: &str) -> Vec<(String, String)> {
        let mut params = Vec::new();
        for key in &self.query_params {
            if let Some(v) = decode::query_param(query, key).filter(|v| !v.is_empty()) {
                params.push((format!("{}{key}", self.query_param_prefix), v));
            }
        }
        for key in &self.header_params {
            let v = req
                .headers()
                .get(key.as_str())
                .and_then(|v| v.to_str().ok())
                .unwrap_or_default();
            if !v.is_empty() {
                params.push((format!("{}{key}", self.header_param_prefix), v.to_owned()));
            }
        }
        params
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::runtime::feed;
    use crate::runtime::registry::tests_support::context;

    fn build_err(detail: Value) -> String {
        build(&context("c/1"), &detail).err().expect("an error")
    }

    #[test]
    fn addresses_parse_as_ilogtail_takes_them() {
        assert_eq!(
            parse_address("127.0.0.1:18689").unwrap(),
            Bind::Tcp("127.0.0.1:18689".parse().unwrap())
        );
        assert_eq!(
            parse_address(":18689").unwrap(),
            Bind::Tcp("0.0.0.0:18689".parse().unwrap())
        );
        assert_eq!(
            parse_address("http://127.0.0.1:80/x").unwrap(),
            Bind::Tcp("127.0.0.1:80".parse().unwrap())
        );
        assert_eq!(
            parse_address("unix:///tmp/a.sock").unwrap(),
            Bind::Unix("/tmp/a.sock".into())
        );
    }

    #[test]
    fn bad_options_name_the_field_and_value() {
        let err = build_err(serde_json::json!({"Format": "json"}));
        assert!(err.starts_with("Address: required"), "{err}");
        let err = build_err(serde_json::json!({"Format": "json", "Address": "nowhere"}));
        assert_eq!(err, "Address: \"nowhere\" is not host:port or unix:///path");
        let err = build_err(serde_json::json!({"Format": "json", "Address": "1.2.3.4:99999"}));
        assert!(err.starts_with("Address: \"1.2.3.4:99999\""), "{err}");
        let err = build_err(serde_json::json!({"Format": "yaml", "Address": ":1"}));
        assert!(
            err.starts_with("Format: unsupported format \"yaml\""),
            "{err}"
        );
        let err =
            build_err(serde_json::json!({"Format": "json", "Address": ":1", "MaxBodySize": 0}));
        assert_eq!(err, "MaxBodySize: must be positive, got 0");
        let err = build_err(
            serde_json::json!({"Format": "json", "Address": ":1", "BasicAuth": {"Password": "p"}}),
        );
        assert_eq!(err, "BasicAuth.Username: must not be empty");
    }

    #[test]
    fn bad_tls_files_are_named() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("missing.pem");
        let missing = missing.to_str().unwrap();
        let err = build_err(serde_json::json!({"Format": "json", "Address": ":1",
            "TLS": {"CertFile": missing, "KeyFile": missing}}));
        assert!(
            err.starts_with(&format!("TLS.CertFile: cannot read {missing:?}")),
            "{err}"
        );
        let junk = dir.path().join("junk.pem");
        std::fs::write(&junk, "not a certificate\n").unwrap();
        let junk = junk.to_str().unwrap();
        let err = build_err(serde_json::json!({"Format": "json", "Address": ":1",
            "TLS": {"CertFile": junk, "KeyFile": junk}}));
        assert_eq!(err, format!("TLS.CertFile: no PEM certificate in {junk:?}"));
        let err = build_err(serde_json::json!({"Format": "json", "Address": ":1",
            "TLS": {"KeyFile": junk}}));
        assert_eq!(err, "TLS.CertFile: required when TLS is set");
    }

    #[test]
    fn gzip_and_lz4_bodies_are_uncompressed_within_the_limit() {
        use std::io::Write;
        let text = b"hello hello hello hello hello hello";
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        gz.write_all(text).unwrap();
        let gz = Bytes::from(gz.finish().unwrap());
        assert_eq!(decompress(gz.clone(), true, None, 100).unwrap(), &text[..]);
        assert_eq!(decompress(gz, true, None, 10), Err(Refusal::TooLarge));
        let bad = decompress(Bytes::from_static(b"not gzip"), true, None, 100).unwrap_err();
        assert!(
            matches!(bad, Refusal::Bad(ref r) if r.starts_with("invalid gzip body")),
            "{bad:?}"
        );

        let lz4 = Bytes::from(lz4_flex::block::compress(text));
        let n = text.len() as u64;
        assert_eq!(
            decompress(lz4.clone(), false, Some(n), 100).unwrap(),
            &text[..]
        );
        assert_eq!(
            decompress(lz4.clone(), false, Some(n), 10),
            Err(Refusal::TooLarge)
        );
        let bad = decompress(lz4, false, Some(n + 5), 100).unwrap_err();
        assert!(matches!(bad, Refusal::Bad(_)), "{bad:?}");
        // Uncompressed bodies pass as they are.
        assert_eq!(
            decompress(Bytes::from_static(b"x"), false, None, 1).unwrap(),
            "x"
        );
    }

    fn handler(detail: Value) -> Handler {
        let mut detail = detail;
        detail["Address"] = ":1".into();
        let server = build_server(&context("c/1"), &detail).unwrap();
        server.handler
    }

    fn status_of(handler: &Handler, req: Request<Full<Bytes>>, out: &Feed) -> (StatusCode, String) {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let resp = rt.block_on(handler.handle(req, out));
        let status = resp.status();
        let body = rt.block_on(resp.into_body().collect()).unwrap().to_bytes();
        (status, String::from_utf8_lossy(&body).into_owned())
    }

    #[test]
    fn tags_and_request_params_reach_the_group() {
        let h = handler(serde_json::json!({
            "Format": "lines", "Tags": {"t": "1"}, "Cluster": "c1",
            "QueryParams": ["app"], "QueryParamPrefix": "q_",
            "HeaderParams": ["X-Env"], "HeaderParamPrefix": "h_"
        }));
        let (tx, mut rx) = feed::channel(1, 1 << 30);
        let req = Request::post("/any?app=web%201&other=x")
            .header("X-Env", "prod")
            .body(Full::new(Bytes::from_static(b"one\ntwo\n")))
            .unwrap();
        assert_eq!(status_of(&h, req, &tx).0, StatusCode::NO_CONTENT);
        let group = rx.try_recv().unwrap();
        assert_eq!(group.events.len(), 2);
        assert_eq!(&group.tag(b"t").unwrap()[..], b"1");
        assert_eq!(&group.tag(b"cluster").unwrap()[..], b"c1");
        assert_eq!(group.metadata("q_app"), Some("web 1"));
        assert_eq!(group.metadata("h_X-Env"), Some("prod"));
        assert_eq!(group.metadata("q_other"), None);
    }

    #[test]
    fn a_full_queue_is_503_and_keeps_nothing() {
        let h = handler(serde_json::json!({"Format": "lines"}));
        let (tx, mut rx) = feed::channel(1, 1 << 30);
        tx.try_send(tailrace::PipelineEventGroup::default())
            .unwrap();
        let req = Request::post("/")
            .body(Full::new(Bytes::from_static(b"refused\n")))
            .unwrap();
        let (status, body) = status_of(&h, req, &tx);
        assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
        assert!(body.contains("the pipeline is full"), "{body}");
        assert!(
            rx.try_recv().unwrap().events.is_empty(),
            "the group that was there"
        );
        assert!(rx.try_recv().is_err(), "the refused body was not queued");
    }

    #[test]
    fn basic_auth_method_and_endpoint() {
        let h = handler(serde_json::json!({"Format": "lines", "Endpoint": "/in",
            "BasicAuth": {"Username": "u", "Password": "p"}}));
        let (tx, _rx) = feed::channel(4, 1 << 30);
        let req = |method: &str, path: &str, auth: Option<&str>| {
            let mut b = Request::builder().method(method).uri(path);
            if let Some(a) = auth {
                b = b.header("Authorization", a);
            }
            b.body(Full::new(Bytes::from_static(b"x\n"))).unwrap()
        };
        let good = "Basic dTpw"; // u:p
        assert_eq!(
            status_of(&h, req("POST", "/in", Some(good)), &tx).0,
            StatusCode::NO_CONTENT
        );
        assert_eq!(
            status_of(&h, req("POST", "/in", Some("basic dTpw")), &tx).0,
            StatusCode::NO_CONTENT
        );
        assert_eq!(
            status_of(&h, req("POST", "/in", Some("Basic dTpx")), &tx).0,
            StatusCode::UNAUTHORIZED
        );
        assert_eq!(
            status_of(&h, req("POST", "/in", None), &tx).0,
            StatusCode::UNAUTHORIZED
        );
        assert_eq!(
            status_of(&h, req("POST", "/out", Some(good)), &tx).0,
            StatusCode::NOT_FOUND
        );
        assert_eq!(
            status_of(&h, req("PUT", "/in", Some(good)), &tx).0,
            StatusCode::METHOD_NOT_ALLOWED
        );
    }

    #[test]
    fn same_secret_compares_whole_values() {
        assert!(same_secret(b"u:p", b"u:p"));
        assert!(!same_secret(b"u:p", b"u:q"));
        assert!(!same_secret(b"u:p", b"u:pp"));
    }
}
