//! The listener in-process: real sockets on 127.0.0.1, the input's output channel read by the
//! test. (The whole daemon is tested in `host/tests/syslog.rs`.)

use std::io::{Read, Write};
use std::net::TcpStream;
use std::thread;
use std::time::{Duration, Instant};

use serde_json::json;
use tailrace::{PipelineEvent, PipelineEventGroup};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use super::*;
use crate::plugins::tls::tests::pem_files;
use crate::runtime::feed::{self, FeedReceiver};
use crate::runtime::registry::tests_support::context;

const WAIT: Duration = Duration::from_secs(10);

fn build_input(detail: Value) -> Result<Box<dyn ServiceInput>, String> {
    build(&context("c/1").for_plugin("service_syslog/1"), &detail)
}

/// A running input and the ends the test holds.
struct Running {
    rx: FeedReceiver,
    stop: watch::Sender<bool>,
    task: JoinHandle<()>,
}

fn run(rt: &tokio::runtime::Runtime, detail: Value, capacity: usize) -> Running {
    let input = build_input(detail).unwrap();
    let (tx, rx) = feed::channel(capacity, 1 << 30);
    let (stop, stop_rx) = watch::channel(false);
    let task = rt.spawn(input.run(tx, stop_rx));
    Running { rx, stop, task }
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Connects once the listener is up.
fn connect(port: u16) -> TcpStream {
    let deadline = Instant::now() + WAIT;
    loop {
        match TcpStream::connect(("127.0.0.1", port)) {
            Ok(stream) => return stream,
            Err(e) if Instant::now() > deadline => panic!("connect: {e}"),
            Err(_) => thread::sleep(Duration::from_millis(10)),
        }
    }
}

fn contents(group: &PipelineEventGroup) -> Vec<String> {
    group
        .events
        .iter()
        .map(|e| match e {
            PipelineEvent::Log(log) => {
                String::from_utf8_lossy(log.content(b"_content_").unwrap()).into_owned()
            }
            other => panic!("not a log: {other:?}"),
        })
        .collect()
}

/// Receives until `n` logs came; their contents.
fn receive(rx: &mut FeedReceiver, n: usize) -> Vec<String> {
    let deadline = Instant::now() + WAIT;
    let mut all = Vec::new();
    while all.len() < n {
        let left = deadline.saturating_duration_since(Instant::now());
        match rx.blocking_recv_timeout(left) {
            Some(group) => all.extend(contents(&group)),
            None => panic!("only {} of {n} logs: {all:?}", all.len()),
        }
    }
    all
}

trait RecvTimeout {
    fn blocking_recv_timeout(&mut self, limit: Duration) -> Option<PipelineEventGroup>;
}

impl RecvTimeout for FeedReceiver {
    fn blocking_recv_timeout(&mut self, limit: Duration) -> Option<PipelineEventGroup> {
        let deadline = Instant::now() + limit;
        loop {
            match self.try_recv() {
                Ok(group) => return Some(group),
                Err(mpsc::error::TryRecvError::Disconnected) => return None,
                Err(mpsc::error::TryRecvError::Empty) if Instant::now() >= deadline => return None,
                Err(mpsc::error::TryRecvError::Empty) => thread::sleep(Duration::from_millis(5)),
            }
        }
    }
}

/// Stops the input; it must be done within a second.
fn stop(rt: &tokio::runtime::Runtime, running: Running) -> FeedReceiver {
    let Running { rx, stop, task } = running;
    stop.send(true).unwrap();
    let started = Instant::now();
    rt.block_on(async { tokio::time::timeout(Duration::from_secs(1), task).await })
        .expect("the input stops within a second")
        .unwrap();
    assert!(started.elapsed() < Duration::from_secs(1));
    rx
}

#[test]
fn bad_options_are_errors_naming_the_field() {
    for (detail, says) in [
        (
            json!({"Address": "127.0.0.1:514"}),
            "Address: \"127.0.0.1:514\"",
        ),
        (json!({"Address": "tcp://127.0.0.1:70000"}), "Address:"),
        (json!({"ParseProtocol": "rfc9999"}), "ParseProtocol:"),
        (json!({"IgnoreParseFailure": false}), "IgnoreParseFailure:"),
        (json!({"MaxMessageSize": 0}), "MaxMessageSize: 0"),
        (json!({"MaxConnections": "many"}), "MaxConnections:"),
        (
            json!({"TLS": {"Enabled": true, "CertFile": "/no/cert.pem", "KeyFile": "/no/key.pem"}}),
            "TLS.CertFile:",
        ),
    ] {
        let e = build_input(detail.clone()).err().unwrap();
        assert!(e.starts_with(says), "{detail}: {e}");
    }
    // iLogtail's options load; with a protocol, IgnoreParseFailure may be off.
    build_input(json!({
        "Address": "udp://0.0.0.0:9009", "MaxConnections": 10, "TimeoutSeconds": 5,
        "MaxMessageSize": 1_000_000, "KeepAliveSeconds": -1, "ParseProtocol": "rfc5424",
        "IgnoreParseFailure": false, "AddHostname": true
    }))
    .unwrap();
}

#[test]
fn tls_options_load_certificates_and_check_them() {
    let dir = tempfile::tempdir().unwrap();
    let (cert, key, other_key) = pem_files(dir.path());
    let tls = |key: &str, ca: &str| json!({"Address": "tcp://127.0.0.1:1", "TLS": {"Enabled": true, "CertFile": cert, "KeyFile": key, "CAFile": ca}});
    build_input(tls(&key, "")).unwrap();
    build_input(tls(&key, &cert)).unwrap();
    // Without `Enabled`, as service_http_server takes the block.
    build_input(json!({"Address": "tcp://127.0.0.1:1", "TLS": {"CertFile": cert, "KeyFile": key}}))
        .unwrap();
    let e = build_input(tls(&other_key, "")).err().unwrap();
    assert!(e.starts_with("TLS.KeyFile:"), "{e}");
    let e = build_input(tls(&key, &key)).err().unwrap();
    assert!(e.starts_with("TLS.CAFile:"), "{e}");
    let mut udp = tls(&key, "");
    udp["Address"] = json!("udp://127.0.0.1:1");
    let e = build_input(udp).err().unwrap();
    assert!(e.starts_with("TLS: needs a tcp Address"), "{e}");
}

#[test]
fn extra_connections_beyond_max_connections_are_closed() {
    let rt = runtime();
    let port = free_port();
    let mut running = run(
        &rt,
        json!({"Address": format!("tcp://127.0.0.1:{port}"), "MaxConnections": 2}),
        16,
    );
    let mut first = connect(port);
    first.write_all(b"one\n").unwrap();
    let mut second = connect(port);
    second.write_all(b"two\n").unwrap();
    let mut got = receive(&mut running.rx, 2);
    got.sort();
    assert_eq!(got, ["one", "two"]);
    // Both connections hold their places: a third is closed at once.
    let mut third = connect(port);
    let _ = third.write_all(b"three\n");
    third
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    let mut buf = [0u8; 8];
    match third.read(&mut buf) {
        Ok(0) => {}
        Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => {}
        other => panic!("the third connection stayed open: {other:?}"),
    }
    // Once one closes, a new connection is heard.
    drop(first);
    let deadline = Instant::now() + WAIT;
    let heard = loop {
        let mut next = connect(port);
        next.write_all(b"four\n").unwrap();
        if let Some(group) = running.rx.blocking_recv_timeout(Duration::from_millis(300)) {
            break contents(&group);
        }
        assert!(Instant::now() < deadline, "no new connection was heard");
    };
    assert_eq!(heard, ["four"], "and never the refused one's message");
    second.write_all(b"five\n").unwrap();
    assert_eq!(receive(&mut running.rx, 1), ["five"]);
    stop(&rt, running);
}

#[test]
fn a_full_pipeline_stops_reading_and_nothing_is_lost() {
    const MESSAGES: usize = 400_000;
    let rt = runtime();
    let port = free_port();
    // Room for one group only, and nobody reading yet.
    let mut running = run(
        &rt,
        json!({"Address": format!("tcp://127.0.0.1:{port}")}),
        1,
    );
    let mut stream = connect(port);
    let writer = thread::spawn(move || {
        let mut bytes = Vec::with_capacity(64 * 1024);
        for seq in 0..MESSAGES {
            writeln!(bytes, "message number {seq:>12} of the backpressure test").unwrap();
            if bytes.len() >= 60 * 1024 {
                stream.write_all(&bytes).unwrap();
                bytes.clear();
            }
        }
        stream.write_all(&bytes).unwrap();
    });
    // ~20 MB cannot all sit in the socket's buffers: the writer waits while the input does.
    let deadline = Instant::now() + Duration::from_millis(500);
    while Instant::now() < deadline {
        assert!(
            !writer.is_finished(),
            "the input read on with the pipeline full"
        );
        thread::sleep(Duration::from_millis(20));
    }
    let got = receive(&mut running.rx, MESSAGES);
    writer.join().unwrap();
    for (seq, content) in got.iter().enumerate() {
        assert_eq!(
            content,
            &format!("message number {seq:>12} of the backpressure test")
        );
    }
    let mut rx = stop(&rt, running);
    assert!(rx.try_recv().is_err(), "no message twice");
}

#[test]
fn at_stop_what_has_arrived_is_sent() {
    let rt = runtime();
    let port = free_port();
    let running = run(
        &rt,
        json!({"Address": format!("tcp://127.0.0.1:{port}"), "ParseProtocol": "rfc5424"}),
        16,
    );
    let mut stream = connect(port);
    let third = "<14>1 - h a - - - third";
    let data = format!(
        "<14>1 - h a - - - first\n<14>1 - h a - - - second\n{} {third}",
        third.len()
    );
    stream.write_all(data.as_bytes()).unwrap();
    let mut rx = stop(&rt, running);
    let mut got = Vec::new();
    while let Ok(group) = rx.try_recv() {
        got.extend(contents(&group));
    }
    assert_eq!(got, ["first", "second", "third"]);
    // The listener is gone.
    assert!(TcpStream::connect(("127.0.0.1", port)).is_err());
}

#[test]
fn an_idle_connection_is_closed_after_timeout_seconds() {
    let rt = runtime();
    let port = free_port();
    let running = run(
        &rt,
        json!({"Address": format!("tcp://127.0.0.1:{port}"), "TimeoutSeconds": 1}),
        16,
    );
    let mut stream = connect(port);
    let opened = Instant::now();
    stream.set_read_timeout(Some(WAIT)).unwrap();
    let mut buf = [0u8; 8];
    assert_eq!(stream.read(&mut buf).unwrap(), 0, "closed by the input");
    let idle = opened.elapsed();
    assert!(
        idle >= Duration::from_millis(900) && idle < Duration::from_secs(5),
        "{idle:?}"
    );
    stop(&rt, running);
}

#[test]
fn unixgram_with_add_hostname_reads_dev_log_messages() {
    let rt = runtime();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("log.sock");
    let mut running = run(
        &rt,
        json!({
            "Address": format!("unixgram://{}", path.display()),
            "ParseProtocol": "rfc3164", "AddHostname": true
        }),
        16,
    );
    let deadline = Instant::now() + WAIT;
    while !path.exists() {
        assert!(Instant::now() < deadline, "no socket file");
        thread::sleep(Duration::from_millis(10));
    }
    let client = std::os::unix::net::UnixDatagram::unbound().unwrap();
    client
        .send_to(b"<13>Feb  5 17:32:18 cron[9]: job done", &path)
        .unwrap();
    let group = running.rx.blocking_recv_timeout(WAIT).expect("a group");
    let PipelineEvent::Log(log) = &group.events[0] else {
        panic!()
    };
    let field = |k: &str| String::from_utf8_lossy(log.content(k.as_bytes()).unwrap()).into_owned();
    assert_eq!(field("_program_"), "cron");
    assert_eq!(field("_content_"), "job done");
    assert_eq!(field("_hostname_"), host_name());
    assert_eq!(field("_client_ip_"), "");
    stop(&rt, running);
    assert!(!path.exists(), "the socket file is removed at stop");
}
