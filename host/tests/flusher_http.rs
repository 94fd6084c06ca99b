//! `flusher_http` end to end: the real daemon runs `metric_mock → flusher_http` in the plugin
//! base and POSTs to an HTTP(S) server this test runs on 127.0.0.1. Every body is decoded (gzip,
//! zstd) and every event checked; `Index` values are counted so that a loss or a duplicate
//! shows.

mod common;

use std::collections::{BTreeSet, HashMap};
use std::io::{BufReader, Read, Write};
use std::net::TcpListener;
use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::{Daemon, Sandbox, WAIT};
use serde_json::Value;

/// One request the server read, its body decoded.
#[derive(Clone, Debug)]
struct Received {
    target: String,
    /// Names in lower case.
    headers: HashMap<String, String>,
    body: Vec<u8>,
    /// The status it was answered with.
    status: u16,
}

impl Received {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .get(&name.to_ascii_lowercase())
            .map(String::as_str)
    }

    fn events(&self) -> Vec<Value> {
        self.body
            .split(|b| *b == b'\n')
            .map(|line| {
                serde_json::from_slice(line).unwrap_or_else(|e| {
                    panic!("not JSON ({e}): {:?}", String::from_utf8_lossy(line))
                })
            })
            .collect()
    }
}

type Answer = dyn Fn(usize) -> (u16, Vec<(&'static str, String)>) + Send + Sync;

/// A small HTTP/1.1 server: one request per connection, answered by `answer(n)` (n counts the
/// requests from 0), optionally over TLS.
struct Server {
    addr: String,
    received: Arc<Mutex<Vec<Received>>>,
    connections: Arc<AtomicUsize>,
}

impl Server {
    fn start(tls: Option<Arc<rustls::ServerConfig>>, answer: Box<Answer>) -> Server {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        let received = Arc::new(Mutex::new(Vec::new()));
        let connections = Arc::new(AtomicUsize::new(0));
        let answer: Arc<Answer> = Arc::from(answer);
        let (sink, count) = (received.clone(), connections.clone());
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(stream) = stream else { break };
                count.fetch_add(1, Ordering::SeqCst);
                let (sink, answer, tls) = (sink.clone(), answer.clone(), tls.clone());
                std::thread::spawn(move || {
                    stream
                        .set_read_timeout(Some(Duration::from_secs(5)))
                        .unwrap();
                    match tls {
                        None => serve(stream, &sink, &*answer),
                        Some(config) => {
                            let conn = rustls::ServerConnection::new(config).unwrap();
                            serve(rustls::StreamOwned::new(conn, stream), &sink, &*answer)
                        }
                    }
                });
            }
        });
        Server {
            addr,
            received,
            connections,
        }
    }

    fn received(&self) -> Vec<Received> {
        self.received.lock().unwrap().clone()
    }

    /// Waits until `check` holds on what was received.
    fn wait(&self, what: &str, daemon: &Daemon, check: impl Fn(&[Received]) -> bool) {
        let deadline = Instant::now() + WAIT;
        while !check(&self.received()) {
            assert!(
                Instant::now() < deadline,
                "timed out waiting for {what} ({} requests)\n{}",
                self.received().len(),
                daemon.diagnostics()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

/// Reads one request from `stream`, records it and answers it.
fn serve<S: Read + Write>(stream: S, sink: &Mutex<Vec<Received>>, answer: &Answer) {
    let mut reader = BufReader::new(stream);
    let Ok(Some(request)) = common::read_http_request(&mut reader) else {
        return; // a TLS handshake that failed, or a probe
    };
    let common::HttpRequest {
        path: target,
        headers,
        body: raw,
        ..
    } = request;
    let encoding = headers.get("content-encoding").cloned();
    let body = match encoding.as_deref() {
        None => raw,
        Some("gzip") => {
            let mut out = Vec::new();
            flate2::read::GzDecoder::new(&raw[..])
                .read_to_end(&mut out)
                .expect("a gzip body");
            out
        }
        Some("zstd") => zstd::decode_all(&raw[..]).expect("a zstd body"),
        Some(other) => panic!("unexpected Content-Encoding {other}"),
    };
    let n = {
        let mut sink = sink.lock().unwrap();
        sink.push(Received {
            target,
            headers,
            body,
            status: 0,
        });
        sink.len() - 1
    };
    let (status, extra) = answer(n);
    sink.lock().unwrap()[n].status = status;
    let mut response = format!("HTTP/1.1 {status} X\r\nContent-Length: 2\r\nConnection: close\r\n");
    for (k, v) in extra {
        response.push_str(&format!("{k}: {v}\r\n"));
    }
    response.push_str("\r\nok");
    let mut stream = reader.into_inner();
    let _ = stream.write_all(response.as_bytes());
    let _ = stream.flush();
}

/// The `Index` values of every event of the requests answered 2xx.
fn delivered_indexes(received: &[Received]) -> Vec<u64> {
    received
        .iter()
        .filter(|r| (200..300).contains(&r.status))
        .flat_map(|r| r.events())
        .map(|e| e["contents"]["Index"].as_str().unwrap().parse().unwrap())
        .collect()
}

/// Asserts that `indexes` are exactly 1..=max, once each.
fn assert_contiguous_once(indexes: &[u64]) {
    let set: BTreeSet<u64> = indexes.iter().copied().collect();
    assert_eq!(set.len(), indexes.len(), "duplicates among {indexes:?}");
    let max = *set.iter().max().unwrap();
    assert_eq!(
        set,
        (1..=max).collect::<BTreeSet<u64>>(),
        "an Index is missing"
    );
}

fn pipeline(detail: &str) -> String {
    format!(
        "global: {{InputIntervalMs: 20, AggregatIntervalMs: 100, FlushIntervalMs: 100}}\n\
         inputs: [{{Type: metric_mock, Fields: {{f1: a}}, Tags: {{env: prod}}}}]\n\
         flushers:\n  - Type: flusher_http\n{detail}"
    )
}

/// `name{labels}` from the daemon's /metrics (0 when absent).
fn metric(addr: &str, name: &str, labels: &[(&str, &str)]) -> f64 {
    let (status, body) = common::http_get(addr, "/metrics");
    assert_eq!(status, 200, "{body}");
    let scrape = prometheus_parse::Scrape::parse(body.lines().map(|l| Ok(l.to_owned()))).unwrap();
    scrape
        .samples
        .iter()
        .filter(|s| {
            s.metric == name
                && labels
                    .iter()
                    .all(|(k, v)| s.labels.get(k).is_some_and(|x| x == *v))
        })
        .map(|s| match s.value {
            prometheus_parse::Value::Counter(v) | prometheus_parse::Value::Untyped(v) => v,
            _ => 0.0,
        })
        .sum()
}

fn wait_metric(daemon: &Daemon, addr: &str, name: &str, labels: &[(&str, &str)]) -> f64 {
    let deadline = Instant::now() + WAIT;
    loop {
        let v = metric(addr, name, labels);
        if v > 0.0 {
            return v;
        }
        assert!(
            Instant::now() < deadline,
            "no {name}{labels:?} on /metrics\n{}",
            daemon.diagnostics()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn start(sandbox: &Sandbox) -> (Daemon, String) {
    let libs = common::release_plugin_libs();
    let daemon = Daemon::start_with_args(
        sandbox,
        Some(&libs),
        &[],
        &["--metrics-addr", "127.0.0.1:0"],
    );
    let addr = daemon.metrics_addr();
    (daemon, addr)
}

#[test]
fn gzip_bodies_carry_every_event_with_headers_and_query() {
    let server = Server::start(None, Box::new(|_| (200, vec![])));
    let sandbox = Sandbox::new();
    sandbox.write_config(
        "http.yaml",
        &pipeline(&format!(
            "    RemoteURL: http://{}/write?db=logs\n    Compression: gzip\n\
             \x20   Headers: {{X-Token: secret, X-Env: '%{{tag.env}}'}}\n\
             \x20   Query: {{idx: '%{{content.f1}}-%{{tag.env}}'}}\n",
            server.addr
        )),
    );
    let (mut daemon, _) = start(&sandbox);
    server.wait("30 events", &daemon, |r| delivered_indexes(r).len() >= 30);
    let received = server.received();
    for request in &received {
        assert_eq!(request.header("Content-Encoding"), Some("gzip"));
        assert_eq!(request.header("Content-Type"), Some("application/json"));
        assert_eq!(request.header("X-Token"), Some("secret"));
        assert_eq!(request.header("X-Env"), Some("prod"));
        assert!(
            request.target.starts_with("/write?db=logs&idx=a-prod"),
            "{}",
            request.target
        );
        for event in request.events() {
            // iLogtail's custom_single: time, contents, tags.
            assert!(event["time"].as_u64().unwrap() > 1_600_000_000, "{event}");
            assert_eq!(event["contents"]["f1"], "a", "{event}");
            assert_eq!(event["tags"]["env"], "prod", "{event}");
            assert!(event["tags"].get("host.ip").is_some(), "{event}");
        }
    }
    // Batches, not one request per event.
    assert!(received.len() < delivered_indexes(&received).len());
    assert_contiguous_once(&delivered_indexes(&received));
    let (status, _) = daemon.terminate();
    assert!(status.success(), "{status}");
}

#[test]
fn answers_503_for_a_while_lose_nothing_and_duplicate_nothing() {
    let began = Instant::now();
    // 503 (with Retry-After: 0) for the first 1.5 s, then 200.
    let server = Server::start(
        None,
        Box::new(move |_| {
            if began.elapsed() < Duration::from_millis(1500) {
                (503, vec![("Retry-After", "0".to_owned())])
            } else {
                (200, vec![])
            }
        }),
    );
    let sandbox = Sandbox::new();
    sandbox.write_config(
        "http.yaml",
        &pipeline(&format!(
            "    RemoteURL: http://{}/\n    Compression: zstd\n\
             \x20   Retry: {{InitialDelay: 20ms, MaxDelay: 100ms, MaxRetryTimes: 2}}\n",
            server.addr
        )),
    );
    let (mut daemon, metrics) = start(&sandbox);
    server.wait("503s, then 100 events delivered", &daemon, |r| {
        r.iter().any(|r| r.status == 503) && delivered_indexes(r).len() >= 100
    });
    let received = server.received();
    assert!(received
        .iter()
        .all(|r| r.header("Content-Encoding") == Some("zstd")));
    let indexes = delivered_indexes(&received);
    assert_contiguous_once(&indexes);
    // The first events waited through the 503s and still came, once.
    assert!(indexes.contains(&1));
    // Every 503 the server gave (it gives no more now) is counted once in the statistics.
    let refused = received.iter().filter(|r| r.status == 503).count() as f64;
    let deadline = Instant::now() + WAIT;
    loop {
        let counted = metric(
            &metrics,
            "tailrace_base_flusher_http_status_503_total",
            &[("pipeline", "http")],
        );
        if counted == refused {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "{counted} 503s counted, the server gave {refused}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    let (status, _) = daemon.terminate();
    assert!(status.success(), "{status}");
}

#[test]
fn a_400_is_not_retried_and_is_counted_and_alarmed() {
    let server = Server::start(None, Box::new(|_| (400, vec![])));
    let sandbox = Sandbox::new();
    sandbox.write_config(
        "http.yaml",
        &pipeline(&format!(
            "    RemoteURL: http://{}/\n    Retry: {{InitialDelay: 10ms}}\n",
            server.addr
        )),
    );
    let (mut daemon, metrics) = start(&sandbox);
    server.wait("10 rejected requests", &daemon, |r| r.len() >= 10);
    // Each batch was sent once: no Index is seen twice.
    let indexes: Vec<u64> = server
        .received()
        .iter()
        .flat_map(|r| r.events())
        .map(|e| e["contents"]["Index"].as_str().unwrap().parse().unwrap())
        .collect();
    let unique: BTreeSet<u64> = indexes.iter().copied().collect();
    assert_eq!(
        unique.len(),
        indexes.len(),
        "a 400 was retried: {indexes:?}"
    );
    wait_metric(
        &daemon,
        &metrics,
        "tailrace_base_flusher_http_status_400_total",
        &[("pipeline", "http")],
    );
    wait_metric(
        &daemon,
        &metrics,
        "tailrace_base_flusher_http_dropped_events_total",
        &[("pipeline", "http")],
    );
    // The alarm, as the base logs it (it reaches the host's /metrics every AlarmIntervalMs).
    let alarm = daemon.wait_stderr("the alarm", |l| {
        l.contains("alarm_type=\"FLUSHER_FLUSH_ALARM\"")
    });
    assert!(
        alarm.contains("400") && alarm.contains("not retryable"),
        "{alarm}"
    );
    let (status, _) = daemon.terminate();
    assert!(status.success(), "{status}");
}

/// A CA, and a server certificate for 127.0.0.1 signed by it, as PEM files in `dir`; returns
/// the server's rustls config (asking for a client certificate signed by the same CA).
struct Pki {
    ca_pem: String,
    issuer: rcgen::Issuer<'static, rcgen::KeyPair>,
    ca_der: rustls::pki_types::CertificateDer<'static>,
}

impl Pki {
    fn new(name: &str) -> Pki {
        let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, name);
        let key = rcgen::KeyPair::generate().unwrap();
        let cert = params.self_signed(&key).unwrap();
        Pki {
            ca_pem: cert.pem(),
            ca_der: cert.der().clone(),
            issuer: rcgen::Issuer::new(params, key),
        }
    }

    /// A certificate for `names` signed by this CA: (cert PEM, key PEM, cert DER, key DER).
    fn leaf(
        &self,
        names: &[&str],
    ) -> (
        String,
        String,
        rustls::pki_types::CertificateDer<'static>,
        Vec<u8>,
    ) {
        let params =
            rcgen::CertificateParams::new(names.iter().map(|s| s.to_string()).collect::<Vec<_>>())
                .unwrap();
        let key = rcgen::KeyPair::generate().unwrap();
        let cert = params.signed_by(&key, &self.issuer).unwrap();
        (
            cert.pem(),
            key.serialize_pem(),
            cert.der().clone(),
            key.serialize_der(),
        )
    }

    fn server_config(&self) -> Arc<rustls::ServerConfig> {
        let (_, _, cert, key) = self.leaf(&["127.0.0.1", "localhost"]);
        let mut roots = rustls::RootCertStore::empty();
        roots.add(self.ca_der.clone()).unwrap();
        let verifier = rustls::server::WebPkiClientVerifier::builder(Arc::new(roots))
            .build()
            .unwrap();
        let config = rustls::ServerConfig::builder()
            .with_client_cert_verifier(verifier)
            .with_single_cert(
                vec![cert],
                rustls::pki_types::PrivateKeyDer::Pkcs8(key.into()),
            )
            .unwrap();
        Arc::new(config)
    }
}

fn write(dir: &Path, name: &str, text: &str) -> String {
    let path = dir.join(name);
    std::fs::write(&path, text).unwrap();
    path.to_str().unwrap().to_owned()
}

fn tls_detail(server: &Server, ca: &str, cert: &str, key: &str) -> String {
    format!(
        "    RemoteURL: https://{}/\n    Retry: {{InitialDelay: 10ms, MaxRetryTimes: 1}}\n\
         \x20   Authentication:\n      TLS: {{Enabled: true, CAFile: '{ca}', CertFile: '{cert}', KeyFile: '{key}'}}\n",
        server.addr
    )
}

#[test]
fn https_with_the_right_ca_delivers_a_wrong_ca_is_refused_unless_insecure_skip_verify() {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let pki = Pki::new("tailrace test CA");
    let dir = tempfile::tempdir().unwrap();
    let ca = write(dir.path(), "ca.pem", &pki.ca_pem);
    let (client_cert, client_key, _, _) = pki.leaf(&["client"]);
    let cert = write(dir.path(), "client.pem", &client_cert);
    let key = write(dir.path(), "client.key", &client_key);

    // The right CA, and a client certificate the server requires.
    let server = Server::start(Some(pki.server_config()), Box::new(|_| (200, vec![])));
    let sandbox = Sandbox::new();
    sandbox.write_config(
        "http.yaml",
        &pipeline(&tls_detail(&server, &ca, &cert, &key)),
    );
    let (mut daemon, _) = start(&sandbox);
    server.wait("20 events over https", &daemon, |r| {
        delivered_indexes(r).len() >= 20
    });
    assert_contiguous_once(&delivered_indexes(&server.received()));
    let (status, _) = daemon.terminate();
    assert!(status.success(), "{status}");

    // A CA that did not sign the server's certificate: connections, never a request.
    let other = Pki::new("another CA");
    let wrong_ca = write(dir.path(), "wrong-ca.pem", &other.ca_pem);
    let server = Server::start(Some(pki.server_config()), Box::new(|_| (200, vec![])));
    let sandbox = Sandbox::new();
    sandbox.write_config(
        "http.yaml",
        &pipeline(&tls_detail(&server, &wrong_ca, &cert, &key)),
    );
    let (mut daemon, metrics) = start(&sandbox);
    wait_metric(
        &daemon,
        &metrics,
        "tailrace_base_flusher_http_send_errors_total",
        &[("pipeline", "http")],
    );
    let alarm = daemon.wait_stderr("the alarm", |l| {
        l.contains("alarm_type=\"FLUSH_DATA_ALARM\"")
    });
    assert!(alarm.contains("UnknownIssuer"), "{alarm}");
    assert!(server.connections.load(Ordering::SeqCst) > 0);
    assert!(server.received().is_empty(), "a request got through");
    let (status, _) = daemon.terminate();
    assert!(status.success(), "{status}");

    // InsecureSkipVerify: the same wrong CA, and the data goes (unverified).
    let server = Server::start(Some(pki.server_config()), Box::new(|_| (200, vec![])));
    let sandbox = Sandbox::new();
    let detail = tls_detail(&server, &wrong_ca, &cert, &key)
        .replace("Enabled: true,", "Enabled: true, InsecureSkipVerify: true,");
    sandbox.write_config("http.yaml", &pipeline(&detail));
    let (mut daemon, _) = start(&sandbox);
    server.wait("events without verification", &daemon, |r| {
        delivered_indexes(r).len() >= 5
    });
    let (status, _) = daemon.terminate();
    assert!(status.success(), "{status}");
}

#[test]
fn a_bad_ca_file_is_a_clear_error_at_start() {
    let dir = tempfile::tempdir().unwrap();
    let ca = write(dir.path(), "ca.pem", "not a certificate\n");
    let sandbox = Sandbox::new();
    sandbox.write_config(
        "http.yaml",
        &pipeline(&format!(
            "    RemoteURL: https://127.0.0.1:1/\n\
             \x20   Authentication: {{TLS: {{Enabled: true, CAFile: '{ca}'}}}}\n"
        )),
    );
    let libs = common::release_plugin_libs();
    let daemon = Daemon::start(&sandbox, Some(&libs), &[]);
    let line = daemon.wait_stderr("the CAFile error", |l| {
        l.contains("Authentication.TLS.CAFile")
    });
    assert!(line.contains("no PEM certificate"), "{line}");
}

#[test]
fn concurrency_bounds_the_requests_in_flight_and_loses_nothing() {
    // Each answer takes 150 ms: batches pile up, and up to Concurrency go at once.
    let in_flight = Arc::new(AtomicUsize::new(0));
    let most = Arc::new(AtomicUsize::new(0));
    let (now, peak) = (in_flight.clone(), most.clone());
    let server = Server::start(
        None,
        Box::new(move |_| {
            let n = now.fetch_add(1, Ordering::SeqCst) + 1;
            peak.fetch_max(n, Ordering::SeqCst);
            std::thread::sleep(Duration::from_millis(150));
            now.fetch_sub(1, Ordering::SeqCst);
            (200, vec![])
        }),
    );
    let sandbox = Sandbox::new();
    sandbox.write_config(
        "http.yaml",
        &format!(
            "global: {{InputIntervalMs: 5, AggregatIntervalMs: 20, FlushIntervalMs: 20}}\n\
             inputs: [{{Type: metric_mock, Fields: {{f1: a}}}}]\n\
             flushers:\n  - Type: flusher_http\n    RemoteURL: http://{}/\n    Concurrency: 3\n",
            server.addr
        ),
    );
    let (mut daemon, _) = start(&sandbox);
    server.wait("200 events", &daemon, |r| delivered_indexes(r).len() >= 200);
    let peak = most.load(Ordering::SeqCst);
    assert!((2..=3).contains(&peak), "{peak} requests in flight at most");
    assert_contiguous_once(&delivered_indexes(&server.received()));
    let (status, _) = daemon.terminate();
    assert!(status.success(), "{status}");
}

#[test]
fn a_429_waits_for_its_retry_after() {
    let times = Arc::new(Mutex::new(Vec::new()));
    let seen = times.clone();
    let server = Server::start(
        None,
        Box::new(move |n| {
            seen.lock().unwrap().push(Instant::now());
            if n == 0 {
                (429, vec![("Retry-After", "1".to_owned())])
            } else {
                (200, vec![])
            }
        }),
    );
    let sandbox = Sandbox::new();
    sandbox.write_config(
        "http.yaml",
        &pipeline(&format!(
            "    RemoteURL: http://{}/\n    Retry: {{InitialDelay: 10ms, MaxDelay: 5s}}\n",
            server.addr
        )),
    );
    let (mut daemon, metrics) = start(&sandbox);
    server.wait("the retry", &daemon, |r| r.len() >= 2);
    let times = times.lock().unwrap().clone();
    let waited = times[1] - times[0];
    assert!(
        waited >= Duration::from_millis(950),
        "retried after {waited:?}"
    );
    assert_eq!(server.received()[0].body, server.received()[1].body);
    wait_metric(
        &daemon,
        &metrics,
        "tailrace_base_flusher_http_status_429_total",
        &[("pipeline", "http")],
    );
    let (status, _) = daemon.terminate();
    assert!(status.success(), "{status}");
}
