//! `service_http_server` end to end: the real daemon with the real plugin base, real sockets on
//! 127.0.0.1, requests written by the test, the events read from `flusher_stdout`.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::fs::{File, OpenOptions};
use std::io::{ErrorKind, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::{Daemon, Line, Sandbox, WAIT};
use tailrace::{Log, LogContent, LogGroup};

/// A port nobody listens on now.
fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// One HTTP response: status, lowercase header lines, body.
#[derive(Debug)]
struct Response {
    status: u16,
    headers: String,
    body: String,
}

impl Response {
    fn parse(raw: &[u8]) -> Response {
        let text = String::from_utf8_lossy(raw);
        let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
        let status = head
            .split_whitespace()
            .nth(1)
            .and_then(|s| s.parse().ok())
            .unwrap_or_else(|| panic!("no status line in {text:?}"));
        Response {
            status,
            headers: head.to_ascii_lowercase(),
            body: body.to_owned(),
        }
    }
}

/// Writes one request (`Connection: close`) on `stream` and reads the whole response.
fn exchange<S: Read + Write>(mut stream: S, request: &[u8]) -> std::io::Result<Response> {
    stream.write_all(request)?;
    stream.flush()?;
    let mut raw = Vec::new();
    match stream.read_to_end(&mut raw) {
        Ok(_) => {}
        // The server may reset once it answered a body it did not read (413).
        Err(e) if e.kind() == ErrorKind::ConnectionReset && !raw.is_empty() => {}
        Err(e) => return Err(e),
    }
    Ok(Response::parse(&raw))
}

fn request(method: &str, path: &str, headers: &[(&str, &str)], body: &[u8]) -> Vec<u8> {
    let mut req = format!("{method} {path} HTTP/1.1\r\nHost: test\r\nConnection: close\r\n");
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    if !headers
        .iter()
        .any(|(k, _)| k.eq_ignore_ascii_case("transfer-encoding"))
    {
        req.push_str(&format!("Content-Length: {}\r\n", body.len()));
    }
    req.push_str("\r\n");
    let mut bytes = req.into_bytes();
    bytes.extend_from_slice(body);
    bytes
}

fn connect(port: u16) -> TcpStream {
    let stream = TcpStream::connect(("127.0.0.1", port)).expect("connect");
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    stream
}

fn send(port: u16, method: &str, path: &str, headers: &[(&str, &str)], body: &[u8]) -> Response {
    exchange(connect(port), &request(method, path, headers, body))
        .unwrap_or_else(|e| panic!("{method} {path} on port {port}: {e}"))
}

fn post(port: u16, body: &str) -> Response {
    send(port, "POST", "/", &[], body.as_bytes())
}

/// Waits until something accepts connections on `port`.
fn wait_listening(daemon: &Daemon, port: u16) {
    let deadline = Instant::now() + WAIT;
    while TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(
            Instant::now() < deadline,
            "nothing listens on {port} within {WAIT:?}\n{}",
            daemon.diagnostics()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn pipeline(input: &str) -> String {
    format!(
        "global: {{AggregatIntervalMs: 50, FlushIntervalMs: 50}}\n\
         inputs:\n  - Type: service_http_server\n{input}\
         flushers:\n  - Type: flusher_stdout\n    OnlyStdout: true\n"
    )
}

/// A stdout event's fields (the harness's JSON map is sorted by key, so order is not checked).
fn fields(line: &Line) -> BTreeMap<String, String> {
    line.json
        .as_ref()
        .unwrap()
        .iter()
        .map(|(k, v)| (k.clone(), v.as_str().unwrap_or_default().to_owned()))
        .collect()
}

fn pairs(p: &[(&str, &str)]) -> BTreeMap<String, String> {
    p.iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

#[test]
fn every_format_is_decoded_and_each_request_answered_as_ilogtail_does() {
    let libs = common::release_plugin_libs();
    let sandbox = Sandbox::new();
    let ports: Vec<u16> = (0..6).map(|_| free_port()).collect();
    let [json, lines, raw, influx, prom, sls] = ports[..] else {
        unreachable!()
    };
    sandbox.write_config(
        "json.yaml",
        &pipeline(&format!(
            "    Address: 127.0.0.1:{json}\n    Format: json\n    Endpoint: /logs\n    \
             MaxBodySize: 4096\n    Tags: {{via: json}}\n"
        )),
    );
    sandbox.write_config(
        "lines.yaml",
        &pipeline(&format!(
            "    Address: 127.0.0.1:{lines}\n    Format: lines\n    Tags: {{via: lines}}\n"
        )),
    );
    sandbox.write_config(
        "raw.yaml",
        &pipeline(&format!(
            "    Address: 127.0.0.1:{raw}\n    Format: raw\n    Tags: {{via: raw}}\n    \
             ReadTimeoutSec: 1\n"
        )),
    );
    sandbox.write_config(
        "influx.yaml",
        &pipeline(&format!(
            "    Address: 127.0.0.1:{influx}\n    Format: influxdb\n    Tags: {{via: influx}}\n"
        )),
    );
    sandbox.write_config(
        "prom.yaml",
        &pipeline(&format!(
            "    Address: 127.0.0.1:{prom}\n    Format: prometheus\n    Tags: {{via: prom}}\n"
        )),
    );
    sandbox.write_config(
        "sls.yaml",
        &pipeline(&format!(
            "    Address: http://127.0.0.1:{sls}\n    Format: sls\n    Tags: {{via: sls}}\n"
        )),
    );
    sandbox.write_config(
        "unix.yaml",
        &pipeline(&format!(
            "    Address: unix://{}\n    Format: lines\n",
            sandbox.path("http.sock").display()
        )),
    );
    let mut daemon = Daemon::start(&sandbox, Some(&libs), &[]);
    for port in &ports {
        wait_listening(&daemon, *port);
    }
    let via = |tag: &'static str| move |l: &Line| l.get("__tag__:via") == Some(tag);

    // json: an array of objects, one event each, every field as sent (non-strings as JSON).
    let r = send(
        json,
        "POST",
        "/logs",
        &[("Content-Type", "application/json")],
        br#"[{"msg":"hello","seq":1,"ok":true},{"msg":"world","seq":2,"o":{"k":"v"}}]"#,
    );
    assert_eq!(r.status, 204, "{r:?}");
    let got = daemon.wait_lines(2, "the json events", via("json"));
    let mut first = fields(&got[0]);
    let time = first.remove("__time__").expect("__time__");
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    assert!(now.abs_diff(time.parse::<u64>().unwrap()) < 60, "{time:?}");
    assert_eq!(
        first,
        pairs(&[
            ("msg", "hello"),
            ("seq", "1"),
            ("ok", "true"),
            ("__tag__:via", "json")
        ])
    );
    assert_eq!(got[1].get("o"), Some("{\"k\":\"v\"}"));
    assert_eq!(got[1].get("seq"), Some("2"));

    // Refusals: wrong path 404, wrong method 405, malformed 400 with the reason, too large 413.
    let r = send(json, "POST", "/other", &[], br#"{"msg":"wrong path"}"#);
    assert_eq!(r.status, 404, "{r:?}");
    let r = send(json, "GET", "/logs", &[], b"");
    assert_eq!(r.status, 405, "{r:?}");
    assert!(r.headers.contains("allow: post"), "{r:?}");
    let r = send(json, "POST", "/logs", &[], br#"{"msg":"malformed""#);
    assert_eq!(r.status, 400, "{r:?}");
    assert!(r.body.contains("invalid JSON: EOF"), "{r:?}");
    // Declared too large: refused from its headers, before any of the body is read.
    let head =
        "POST /logs HTTP/1.1\r\nHost: t\r\nContent-Length: 5000\r\nConnection: close\r\n\r\n";
    let r = exchange(connect(json), head.as_bytes()).unwrap();
    assert_eq!(r.status, 413, "{r:?}");
    assert_eq!(r.body, r#"{"error":"http: request body too large"}"#);
    // Chunked, so the size shows only while reading: refused once past the limit.
    let big = format!(r#"{{"msg":"oversized","pad":"{}"}}"#, "x".repeat(6000));
    let mut chunked = format!("{:x}\r\n", big.len()).into_bytes();
    chunked.extend_from_slice(big.as_bytes());
    chunked.extend_from_slice(b"\r\n0\r\n\r\n");
    let r = exchange(
        connect(json),
        &request(
            "POST",
            "/logs",
            &[("Transfer-Encoding", "chunked")],
            &chunked,
        ),
    )
    .unwrap();
    assert_eq!(r.status, 413, "{r:?}");
    let r = send(
        json,
        "POST",
        "/logs",
        &[],
        br#"{"msg":"after the refusals"}"#,
    );
    assert_eq!(r.status, 204, "{r:?}");
    daemon.wait_line("the event after the refusals", |l| {
        l.get("msg") == Some("after the refusals")
    });
    for refused in ["wrong path", "malformed", "oversized"] {
        assert!(
            !daemon.lines().iter().any(|l| l.text.contains(refused)),
            "{refused} reached the output"
        );
    }

    // A gzip body is uncompressed (as iLogtail does); an encoding it does not know is 415.
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    gz.write_all(br#"{"msg":"gzipped"}"#).unwrap();
    let r = send(
        json,
        "POST",
        "/logs",
        &[("Content-Encoding", "gzip")],
        &gz.finish().unwrap(),
    );
    assert_eq!(r.status, 204, "{r:?}");
    daemon.wait_line("the gzipped event", |l| l.get("msg") == Some("gzipped"));
    let r = send(json, "POST", "/logs", &[("Content-Encoding", "br")], b"{}");
    assert_eq!(r.status, 415, "{r:?}");

    // lines: one event per line, CRLF or LF, empty lines skipped.
    assert_eq!(post(lines, "first line\r\n\nsecond line\n").status, 204);
    let got = daemon.wait_lines(2, "the lines events", via("lines"));
    assert_eq!(got[0].get("content"), Some("first line"));
    assert_eq!(got[1].get("content"), Some("second line"));
    assert_eq!(
        fields(&got[1]).len(),
        3,
        "content, tag, time: {}",
        got[1].text
    );

    // raw: the whole body is one event.
    assert_eq!(post(raw, "a\nb c\n").status, 204);
    let got = daemon.wait_line("the raw event", via("raw"));
    assert_eq!(got.get("content"), Some("a\nb c\n"));

    // A body that stops coming is answered 408 after ReadTimeoutSec, and nothing of it kept.
    let started = Instant::now();
    let head = "POST / HTTP/1.1\r\nHost: t\r\nContent-Length: 100\r\nConnection: close\r\n\r\nslow";
    let r = exchange(connect(raw), head.as_bytes()).unwrap();
    assert_eq!(r.status, 408, "{r:?}");
    assert!(
        started.elapsed() >= Duration::from_millis(900),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(post(raw, "after the slow one").status, 204);
    daemon.wait_line("the raw event after the slow one", |l| {
        l.get("content") == Some("after the slow one")
    });
    assert!(!daemon
        .lines()
        .iter()
        .any(|l| l.get("content") == Some("slow")));

    // influx: iLogtail's metric logs, one per numeric field; string fields left out.
    let r = post(
        influx,
        "cpu,host=h1,dc=eu usage=0.5,value=2i,note=\"n\" 1700000000123456789\n",
    );
    assert_eq!(r.status, 204, "{r:?}");
    let got = daemon.wait_lines(2, "the influx events", via("influx"));
    assert_eq!(
        fields(&got[0]),
        pairs(&[
            ("__name__", "cpu:usage"),
            ("__labels__", "dc#$#eu|host#$#h1"),
            ("__time_nano__", "1700000000123456789"),
            ("__value__", "0.5"),
            ("__tag__:via", "influx"),
            ("__time__", "1700000000"),
        ])
    );
    assert_eq!(got[1].get("__name__"), Some("cpu"));
    assert_eq!(got[1].get("__value__"), Some("2"));
    let r = post(influx, "cpu,host value=1\n");
    assert_eq!(r.status, 400, "{r:?}");
    assert!(
        r.body.contains("line 1: tag \\\"host\\\" has no '='"),
        "{r:?}"
    );

    // prometheus: the text exposition format.
    let r = post(
        prom,
        "# TYPE http_requests_total counter\n\
         http_requests_total{method=\"post\",code=\"200\"} 1027 1700000000000\n",
    );
    assert_eq!(r.status, 204, "{r:?}");
    let got = daemon.wait_line("the prometheus event", via("prom"));
    assert_eq!(
        fields(&got),
        pairs(&[
            ("__name__", "http_requests_total"),
            ("__labels__", "code#$#200|method#$#post"),
            ("__time_nano__", "1700000000000000000"),
            ("__value__", "1027"),
            ("__tag__:via", "prom"),
            ("__time__", "1700000000"),
        ])
    );
    assert_eq!(post(prom, "up{a=1} 1\n").status, 400);

    // sls: a protobuf LogGroup, answered 200 with iLogtail's request id header.
    let group = LogGroup {
        logs: vec![Log {
            time: 1_700_000_001,
            time_ns: None,
            contents: vec![LogContent {
                key: "k".into(),
                value: "from sls".into(),
            }],
        }],
        ..Default::default()
    };
    let r = send(
        sls,
        "POST",
        "/logstores/x/shards/lb",
        &[("Content-Type", "application/x-protobuf")],
        &group.encode_to_bytes(),
    );
    assert_eq!(r.status, 200, "{r:?}");
    assert!(r.headers.contains("x-log-requestid:"), "{r:?}");
    let got = daemon.wait_line("the sls event", via("sls"));
    assert_eq!(
        fields(&got),
        pairs(&[
            ("k", "from sls"),
            ("__tag__:via", "sls"),
            ("__time__", "1700000001")
        ])
    );
    assert_eq!(post(sls, "not protobuf \u{7f}").status, 400);
    // SLS clients compress with lz4 and say so in headers.
    let mut group = group;
    group.logs[0].contents[0].value = "lz4 compressed".into();
    let plain = group.encode_to_bytes();
    let raw_size = plain.len().to_string();
    let r = send(
        sls,
        "POST",
        "/",
        &[
            ("x-log-compresstype", "lz4"),
            ("x-log-bodyrawsize", &raw_size),
        ],
        &lz4_flex::block::compress(&plain),
    );
    assert_eq!(r.status, 200, "{r:?}");
    daemon.wait_line("the lz4 sls event", |l| {
        l.get("k") == Some("lz4 compressed")
    });

    // A unix socket address.
    let sock = sandbox.path("http.sock");
    let deadline = Instant::now() + WAIT;
    let unix = loop {
        if let Ok(stream) = std::os::unix::net::UnixStream::connect(&sock) {
            break stream;
        }
        assert!(
            Instant::now() < deadline,
            "no unix socket\n{}",
            daemon.diagnostics()
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    let r = exchange(unix, &request("POST", "/", &[], b"over a unix socket\n")).unwrap();
    assert_eq!(r.status, 204, "{r:?}");
    daemon.wait_line("the unix socket event", |l| {
        l.get("content") == Some("over a unix socket")
    });

    // A removed pipeline stops its server: the port is free again.
    sandbox.remove_config("json.yaml");
    let deadline = Instant::now() + WAIT;
    while TcpStream::connect(("127.0.0.1", json)).is_ok() {
        assert!(
            Instant::now() < deadline,
            "port {json} still served after its pipeline was removed\n{}",
            daemon.diagnostics()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    // A change of config reloads every pipeline of the plugin base (HoldOn, LoadConfig, Resume,
    // as iLogtail's base does), so the other listeners close for that moment: retry until the
    // reloaded `lines` pipeline answers.
    let deadline = Instant::now() + WAIT;
    let still_here = request("POST", "/", &[], b"still here\n");
    let answer = loop {
        let tried = TcpStream::connect(("127.0.0.1", lines)).and_then(|stream| {
            stream.set_read_timeout(Some(Duration::from_secs(10)))?;
            exchange(stream, &still_here)
        });
        match tried {
            Ok(answer) => break answer,
            Err(e) => assert!(
                Instant::now() < deadline,
                "port {lines} did not answer after the reload: {e}\n{}",
                daemon.diagnostics()
            ),
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    assert_eq!(answer.status, 204, "{answer:?}");
    daemon.wait_line("the other pipelines still running", |l| {
        l.get("content") == Some("still here")
    });
    let (status, _) = daemon.terminate();
    assert!(status.success(), "{status}");
}

/// Backpressure: `flusher_stdout` writes into a FIFO that the test opened but does not read,
/// so once the pipe's buffer (64 KiB) is full the flusher blocks in `write`, and with one-slot
/// queues (`DefaultLogQueueSize: 1`, `DefaultLogGroupQueueSize: 1`) the input soon finds the
/// pipeline full. Then the test reads the FIFO: every body answered 204 must come out exactly
/// once, and no body answered 503 at all.
#[test]
fn a_full_pipeline_answers_503_and_every_accepted_body_is_delivered_once() {
    let libs = common::release_plugin_libs();
    let sandbox = Sandbox::new();
    let fifo = sandbox.path("out.fifo");
    let c_path = std::ffi::CString::new(fifo.to_str().unwrap()).unwrap();
    // SAFETY: a valid NUL-terminated path; mkfifo only creates a file.
    assert_eq!(unsafe { libc::mkfifo(c_path.as_ptr(), 0o600) }, 0);
    // Opened for reading first (non-blocking, so the open itself does not wait for a writer),
    // so that the flusher's open for writing succeeds; nothing is read until the jam is shown.
    let reader = OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK)
        .open(&fifo)
        .unwrap();
    let port = free_port();
    sandbox.write_config(
        "jam.yaml",
        &format!(
            "global: {{DefaultLogQueueSize: 1, DefaultLogGroupQueueSize: 1, \
             AggregatIntervalMs: 20, FlushIntervalMs: 20}}\n\
             inputs:\n  - Type: service_http_server\n    Address: 127.0.0.1:{port}\n    \
             Format: lines\n\
             flushers:\n  - Type: flusher_stdout\n    FileName: {}\n",
            fifo.display()
        ),
    );
    let daemon = Daemon::start(&sandbox, Some(&libs), &[]);
    wait_listening(&daemon, port);

    // Bodies of 100 lines, each line `seq=<n> <padding>`; n counts lines across bodies.
    let lines_per_body = 100;
    let body = |first: usize| -> String {
        (first..first + lines_per_body)
            .map(|n| format!("seq={n} {}\n", "p".repeat(100)))
            .collect()
    };
    let mut accepted = BTreeSet::new();
    let mut refused = BTreeSet::new();
    let mut next = 0;
    let deadline = Instant::now() + WAIT;
    let mut retry_after = String::new();
    while refused.is_empty() {
        assert!(
            Instant::now() < deadline,
            "no 503 after {} accepted bodies\n{}",
            accepted.len(),
            daemon.diagnostics()
        );
        let r = post(port, &body(next));
        match r.status {
            204 => accepted.insert(next),
            503 => {
                retry_after = r
                    .headers
                    .lines()
                    .find_map(|l| l.strip_prefix("retry-after:"))
                    .unwrap_or_default()
                    .trim()
                    .to_owned();
                refused.insert(next)
            }
            other => panic!("unexpected {other}: {r:?}"),
        };
        next += lines_per_body;
    }
    assert_eq!(retry_after, "1", "a 503 tells when to retry");
    assert!(
        accepted.len() >= 2,
        "the jam came after some bodies went through"
    );
    // Still jammed: another body is refused too.
    let r = post(port, &body(next));
    assert_eq!(r.status, 503, "{r:?}");
    refused.insert(next);
    next += lines_per_body;

    // Clear the jam: read the FIFO in the background from now on.
    let seen = Arc::new(std::sync::Mutex::new(Vec::<String>::new()));
    let sink = seen.clone();
    std::thread::spawn(move || read_fifo(reader, &sink));
    // Once drained, bodies go through again (the first ones may still meet a full queue).
    let last = loop {
        assert!(
            Instant::now() < deadline + WAIT,
            "the pipeline never accepted again\n{}",
            daemon.diagnostics()
        );
        let r = post(port, &body(next));
        let first = next;
        next += lines_per_body;
        match r.status {
            204 => {
                accepted.insert(first);
                break first;
            }
            503 => {
                refused.insert(first);
                std::thread::sleep(Duration::from_millis(100));
            }
            other => panic!("unexpected {other}: {r:?}"),
        }
    };
    // Everything before the last accepted body came out before it (one queue, in order).
    let last_line = format!("seq={}", last + lines_per_body - 1);
    let wait_until = Instant::now() + WAIT;
    loop {
        if seen.lock().unwrap().iter().any(|l| l.contains(&last_line)) {
            break;
        }
        assert!(
            Instant::now() < wait_until,
            "the last accepted body never came out\n{}",
            daemon.diagnostics()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let mut counts = BTreeMap::<usize, usize>::new();
    for line in seen.lock().unwrap().iter() {
        let v: serde_json::Value = serde_json::from_str(line).unwrap();
        let content = v["content"].as_str().unwrap();
        let n: usize = content
            .strip_prefix("seq=")
            .and_then(|r| r.split(' ').next())
            .and_then(|n| n.parse().ok())
            .unwrap_or_else(|| panic!("unexpected line {line}"));
        *counts.entry(n).or_default() += 1;
    }
    let expected: BTreeSet<usize> = accepted
        .iter()
        .flat_map(|&first| first..first + lines_per_body)
        .collect();
    let delivered: BTreeSet<usize> = counts.keys().copied().collect();
    assert_eq!(
        delivered.difference(&expected).count(),
        0,
        "lines of refused bodies {refused:?} were delivered"
    );
    assert_eq!(delivered, expected, "every accepted line delivered");
    let twice: Vec<_> = counts.iter().filter(|(_, &c)| c != 1).collect();
    assert!(twice.is_empty(), "delivered more than once: {twice:?}");
}

/// Reads JSON lines from the FIFO until the writer goes away.
fn read_fifo(mut reader: File, sink: &std::sync::Mutex<Vec<String>>) {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 65536];
    loop {
        match reader.read(&mut chunk) {
            Ok(0) => std::thread::sleep(Duration::from_millis(10)),
            Ok(n) => {
                buf.extend_from_slice(&chunk[..n]);
                while let Some(pos) = buf.iter().position(|&b| b == b'\n') {
                    let line: Vec<u8> = buf.drain(..=pos).collect();
                    sink.lock()
                        .unwrap()
                        .push(String::from_utf8_lossy(&line[..pos]).into_owned());
                }
            }
            Err(e) if e.kind() == ErrorKind::WouldBlock => {
                std::thread::sleep(Duration::from_millis(10))
            }
            Err(_) => return,
        }
    }
}

/// A self-signed CA, its certificate also written as `<name>.pem` in `dir`.
fn make_ca(dir: &Path, name: &str) -> rcgen::CertifiedIssuer<'static, rcgen::KeyPair> {
    let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, name);
    let ca =
        rcgen::CertifiedIssuer::self_signed(params, rcgen::KeyPair::generate().unwrap()).unwrap();
    std::fs::write(dir.join(format!("{name}.pem")), ca.pem()).unwrap();
    ca
}

fn tls_client(ca: &rcgen::CertifiedIssuer<'static, rcgen::KeyPair>) -> Arc<rustls::ClientConfig> {
    let mut roots = rustls::RootCertStore::empty();
    roots.add(ca.der().clone()).unwrap();
    let config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_root_certificates(roots)
    .with_no_client_auth();
    Arc::new(config)
}

fn tls_send(
    config: &Arc<rustls::ClientConfig>,
    port: u16,
    headers: &[(&str, &str)],
    body: &str,
) -> std::io::Result<Response> {
    let conn = rustls::ClientConnection::new(
        config.clone(),
        rustls::pki_types::ServerName::try_from("127.0.0.1").unwrap(),
    )
    .unwrap();
    let stream = rustls::StreamOwned::new(conn, connect(port));
    exchange(stream, &request("POST", "/", headers, body.as_bytes()))
}

#[test]
fn tls_and_basic_auth_refuse_a_wrong_ca_and_a_wrong_password() {
    let libs = common::release_plugin_libs();
    let sandbox = Sandbox::new();
    let dir = sandbox.path("");
    let ca = make_ca(&dir, "ca");
    let other_ca = make_ca(&dir, "other-ca");
    let server_key = rcgen::KeyPair::generate().unwrap();
    let params = rcgen::CertificateParams::new(vec!["127.0.0.1".to_owned()]).unwrap();
    let server_cert = params.signed_by(&server_key, &ca).unwrap();
    std::fs::write(dir.join("server.pem"), server_cert.pem()).unwrap();
    std::fs::write(dir.join("server.key"), server_key.serialize_pem()).unwrap();

    let port = free_port();
    sandbox.write_config(
        "tls.yaml",
        &pipeline(&format!(
            "    Address: 127.0.0.1:{port}\n    Format: lines\n    \
             TLS: {{CertFile: {0}/server.pem, KeyFile: {0}/server.key}}\n    \
             BasicAuth: {{Username: collector, Password: s3cret}}\n",
            dir.display()
        )),
    );
    // Mutual TLS: CAFile makes a client certificate signed by that CA required.
    let client_key = rcgen::KeyPair::generate().unwrap();
    let client_cert = rcgen::CertificateParams::new(vec!["client".to_owned()])
        .unwrap()
        .signed_by(&client_key, &ca)
        .unwrap();
    let mtls_port = free_port();
    sandbox.write_config(
        "mtls.yaml",
        &pipeline(&format!(
            "    Address: 127.0.0.1:{mtls_port}\n    Format: lines\n    \
             TLS: {{CertFile: {0}/server.pem, KeyFile: {0}/server.key, CAFile: {0}/ca.pem}}\n",
            dir.display()
        )),
    );
    let bad_port = free_port();
    sandbox.write_config(
        "badcert.yaml",
        &pipeline(&format!(
            "    Address: 127.0.0.1:{bad_port}\n    Format: lines\n    \
             TLS: {{CertFile: {0}/missing.pem, KeyFile: {0}/server.key}}\n",
            dir.display()
        )),
    );
    let daemon = Daemon::start(&sandbox, Some(&libs), &[]);
    wait_listening(&daemon, port);
    let trusted = tls_client(&ca);
    let auth = |user_pass: &str| {
        use base64::Engine;
        format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode(user_pass)
        )
    };

    let good = auth("collector:s3cret");
    let r = tls_send(&trusted, port, &[("Authorization", &good)], "over tls\n").unwrap();
    assert_eq!(r.status, 204, "{r:?}");
    daemon.wait_line("the event sent over TLS", |l| {
        l.get("content") == Some("over tls")
    });

    let wrong = auth("collector:guess");
    let r = tls_send(
        &trusted,
        port,
        &[("Authorization", &wrong)],
        "wrong password\n",
    )
    .unwrap();
    assert_eq!(r.status, 401, "{r:?}");
    assert!(r.headers.contains("www-authenticate: basic"), "{r:?}");
    let r = tls_send(&trusted, port, &[], "no credentials\n").unwrap();
    assert_eq!(r.status, 401, "{r:?}");

    // A client that trusts another CA refuses the server's certificate.
    let err = tls_send(
        &tls_client(&other_ca),
        port,
        &[("Authorization", &good)],
        "x\n",
    )
    .expect_err("a client with the wrong CA must not connect");
    assert!(
        err.to_string().contains("invalid peer certificate"),
        "{err}"
    );
    // Plain HTTP on the TLS port gets no HTTP answer.
    let mut stream = connect(port);
    let _ = stream.write_all(&request(
        "POST",
        "/",
        &[("Authorization", &good)],
        b"plain\n",
    ));
    let mut raw = Vec::new();
    let _ = stream.read_to_end(&mut raw);
    assert!(
        !raw.starts_with(b"HTTP/"),
        "{:?}",
        String::from_utf8_lossy(&raw)
    );

    // Mutual TLS: with the client certificate the body goes through, without it no answer.
    wait_listening(&daemon, mtls_port);
    let with_cert = Arc::new(
        rustls::ClientConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates({
            let mut roots = rustls::RootCertStore::empty();
            roots.add(ca.der().clone()).unwrap();
            roots
        })
        .with_client_auth_cert(
            vec![client_cert.der().clone()],
            rustls::pki_types::PrivatePkcs8KeyDer::from(client_key.serialize_der()).into(),
        )
        .unwrap(),
    );
    let r = tls_send(&with_cert, mtls_port, &[], "with a client certificate\n").unwrap();
    assert_eq!(r.status, 204, "{r:?}");
    daemon.wait_line("the mutual TLS event", |l| {
        l.get("content") == Some("with a client certificate")
    });
    let refused = tls_send(&trusted, mtls_port, &[], "no client certificate\n");
    assert!(refused.is_err(), "{refused:?}");

    // Only the accepted body came out; a bad certificate file is an error naming the field.
    let err = daemon.wait_stderr("the bad certificate file named", |l| {
        l.contains("TLS.CertFile") && l.contains("missing.pem")
    });
    assert!(err.contains("cannot read"), "{err}");
    let after = auth("collector:s3cret");
    let r = tls_send(&trusted, port, &[("Authorization", &after)], "last\n").unwrap();
    assert_eq!(r.status, 204, "{r:?}");
    daemon.wait_line("the last event", |l| l.get("content") == Some("last"));
    for refused in [
        "wrong password",
        "no credentials",
        "plain",
        "no client certificate",
    ] {
        assert!(
            !daemon
                .lines()
                .iter()
                .any(|l| l.get("content") == Some(refused)),
            "{refused} reached the output"
        );
    }
    assert!(TcpStream::connect(("127.0.0.1", bad_port)).is_err());
}

/// `MaxConnections` bounds the connections served at once: past it, a new connection waits in
/// the kernel's backlog and is answered once another closes.
#[test]
fn connections_past_max_connections_wait_until_one_closes() {
    let sandbox = Sandbox::new();
    let port = free_port();
    sandbox.write_config(
        "http.yaml",
        &pipeline(&format!(
            "    Address: 127.0.0.1:{port}\n    Format: lines\n    MaxConnections: 1\n"
        )),
    );
    let daemon = Daemon::start(&sandbox, Some(&common::release_plugin_libs()), &[]);
    wait_listening(&daemon, port);
    assert_eq!(post(port, "warm").status, 204);
    // One idle connection takes the only place (accepted first: the backlog is in order).
    let first = connect(port);
    let mut second = connect(port);
    second
        .write_all(&request("POST", "/", &[], b"second"))
        .unwrap();
    second
        .set_read_timeout(Some(Duration::from_millis(700)))
        .unwrap();
    let mut buf = [0u8; 64];
    match second.read(&mut buf) {
        Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
        other => panic!("answered while the only connection was taken: {other:?}"),
    }
    drop(first);
    second
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let mut raw = Vec::new();
    second.read_to_end(&mut raw).unwrap();
    assert_eq!(Response::parse(&raw).status, 204);
    daemon.wait_line("the second body", |l| l.get("content") == Some("second"));
}
