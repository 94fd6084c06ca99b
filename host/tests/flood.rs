//! A syslog flood, end to end: 100,000 messages a second for 10 s over TCP into the real daemon,
//! `service_syslog → processor_add_fields → flusher_http`, to an HTTP server of this test that
//! takes its time (each request waits before its answer, so the pipeline cannot keep up and a
//! backlog must build somewhere). The daemon's memory must stay bounded while it does (peak RSS
//! read from /proc), and every message the daemon took from its sockets must reach the server
//! once: each carries a sequence number, and the server counts them.
//!
//! A TCP sender has no acknowledgement but TCP's: a write that returned is a message the daemon
//! is responsible for. So the daemon must push back by not reading (and the senders' writes
//! block) rather than by queueing without bound or dropping.

mod common;

use std::io::{BufReader, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicU8, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use common::{Daemon, Sandbox};

const SENDERS: usize = 4;
const PER_SENDER: usize = 250_000;
const TOTAL: usize = SENDERS * PER_SENDER;
/// The offered rate, all senders together.
const RATE: usize = 100_000;
/// How long the server sits on each request before answering it.
const SERVER_DELAY: Duration = Duration::from_millis(15);
/// The bound on the daemon's peak RSS. The queues of the base are bounded by bytes (16 MiB of
/// estimated memory in the process queue, then the aggregator's and the flusher's few groups);
/// without that bound the process queue alone took the whole flood (1,000 groups of 1,024
/// messages), which measured 343 MiB for a fifth of this flood.
const RSS_BOUND_MIB: u64 = 160;
/// How long the delivery of everything may take once the flood is over.
const DRAIN: Duration = Duration::from_secs(120);

/// Counts, per sequence number, the events the server was given (bodies are not kept).
struct Counter {
    seen: Vec<AtomicU8>,
    events: AtomicU64,
    with_field: AtomicU64,
    requests: AtomicU64,
}

impl Counter {
    fn record(&self, body: &[u8]) {
        let mut at = 0;
        while let Some(found) = memchr::memmem::find(&body[at..], b"seq=") {
            let start = at + found + 4;
            let digits = body[start..]
                .iter()
                .take_while(|b| b.is_ascii_digit())
                .count();
            let seq: usize = std::str::from_utf8(&body[start..start + digits])
                .unwrap()
                .parse()
                .unwrap();
            assert!(seq < TOTAL, "sequence number {seq} out of range");
            let _ = self.seen[seq].fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| {
                Some(n.saturating_add(1))
            });
            self.events.fetch_add(1, Ordering::Relaxed);
            at = start + digits;
        }
        let fields = memchr::memmem::find_iter(body, br#""flood":"yes""#).count();
        self.with_field.fetch_add(fields as u64, Ordering::Relaxed);
        self.requests.fetch_add(1, Ordering::Relaxed);
    }

    /// (unique sequence numbers seen, sequence numbers seen more than once).
    fn tally(&self) -> (usize, usize) {
        let mut unique = 0;
        let mut doubled = 0;
        for n in &self.seen {
            match n.load(Ordering::Relaxed) {
                0 => {}
                1 => unique += 1,
                _ => {
                    unique += 1;
                    doubled += 1;
                }
            }
        }
        (unique, doubled)
    }
}

/// An HTTP/1.1 server that answers every POST 200 after [`SERVER_DELAY`].
fn start_server(counter: Arc<Counter>) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(stream) = stream else { break };
            let counter = counter.clone();
            thread::spawn(move || serve(stream, &counter));
        }
    });
    addr
}

/// Serves the requests of one connection (keep-alive) until the client closes it.
fn serve(stream: TcpStream, counter: &Counter) {
    stream
        .set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    let mut reader = BufReader::new(stream);
    while let Ok(Some(request)) = common::read_http_request(&mut reader) {
        let body = request.body;
        thread::sleep(SERVER_DELAY);
        counter.record(&body);
        let stream = reader.get_mut();
        if stream
            .write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n")
            .is_err()
        {
            return;
        }
    }
}

/// Sends messages `first..first + PER_SENDER` at `RATE / SENDERS` a second, newline-framed.
fn send(port: u16, first: usize) -> Duration {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).unwrap();
    let per_tick = RATE / SENDERS / 100; // every 10 ms
    let began = Instant::now();
    let mut buf = Vec::with_capacity(per_tick * 200);
    let mut next = first;
    let mut tick = 0u32;
    while next < first + PER_SENDER {
        buf.clear();
        for seq in next..(next + per_tick).min(first + PER_SENDER) {
            writeln!(
                buf,
                "<165>1 2026-11-29T10:00:00.000Z host{} app {} ID47 - seq={seq} GET /index.html \
                 200 a user agent of some length",
                seq % 8,
                seq % 1000
            )
            .unwrap();
        }
        next = (next + per_tick).min(first + PER_SENDER);
        // Blocks when the daemon stops reading: that is its backpressure.
        stream.write_all(&buf).unwrap();
        tick += 1;
        let due = began + Duration::from_millis(10) * tick;
        if let Some(wait) = due.checked_duration_since(Instant::now()) {
            thread::sleep(wait);
        }
    }
    stream.flush().unwrap();
    began.elapsed()
}

#[test]
fn a_syslog_flood_keeps_memory_bounded_and_delivers_every_message_it_took_once() {
    let counter = Arc::new(Counter {
        seen: (0..TOTAL).map(|_| AtomicU8::new(0)).collect(),
        events: AtomicU64::new(0),
        with_field: AtomicU64::new(0),
        requests: AtomicU64::new(0),
    });
    let server = start_server(counter.clone());
    let port = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let sandbox = Sandbox::new();
    let address = format!("tcp://127.0.0.1:{port}");
    sandbox.write_config(
        "flood.yaml",
        &format!(
            "global: {{AggregatIntervalMs: 100, FlushIntervalMs: 100}}\n\
             inputs:\n  - Type: service_syslog\n    Address: {address}\n    ParseProtocol: rfc5424\n\
             processors:\n  - Type: processor_add_fields\n    Fields: {{flood: 'yes'}}\n\
             flushers:\n  - Type: flusher_http\n    RemoteURL: http://{server}/ingest\n"
        ),
    );
    let daemon = Daemon::start_with_args(
        &sandbox,
        Some(&common::release_plugin_libs()),
        &[],
        &["--metrics-addr", "127.0.0.1:0"],
    );
    daemon.wait_stderr("the syslog listener", |l| {
        l.contains(&format!("listening on {address}"))
    });
    let pid = daemon.pid();
    let baseline_kib = common::status_kib(pid, "VmRSS");

    // RSS sampled while the flood runs and drains (VmHWM is the kernel's own peak).
    let done = Arc::new(AtomicBool::new(false));
    let sampler = {
        let done = done.clone();
        thread::spawn(move || {
            let mut max = 0;
            while !done.load(Ordering::Relaxed) {
                max = max.max(common::status_kib(pid, "VmRSS"));
                thread::sleep(Duration::from_millis(20));
            }
            max
        })
    };

    let senders: Vec<_> = (0..SENDERS)
        .map(|i| thread::spawn(move || send(port, i * PER_SENDER)))
        .collect();
    let took: Vec<Duration> = senders.into_iter().map(|s| s.join().unwrap()).collect();
    let longest = took.iter().max().unwrap().as_secs_f64();

    let deadline = Instant::now() + DRAIN;
    while counter.tally().0 < TOTAL {
        assert!(
            Instant::now() < deadline,
            "{} of {TOTAL} messages delivered within {DRAIN:?} of the flood\n{}",
            counter.tally().0,
            daemon.diagnostics()
        );
        thread::sleep(Duration::from_millis(100));
    }
    done.store(true, Ordering::Relaxed);
    let sampled_kib = sampler.join().unwrap();
    let peak_kib = common::status_kib(pid, "VmHWM").max(sampled_kib);
    let (unique, doubled) = counter.tally();
    eprintln!(
        "flood: {TOTAL} messages sent in {longest:.1} s ({:.0} msgs/s offered {RATE}), \
         {} requests; daemon RSS {:.1} MiB before, peak {:.1} MiB",
        TOTAL as f64 / longest,
        counter.requests.load(Ordering::Relaxed),
        baseline_kib as f64 / 1024.0,
        peak_kib as f64 / 1024.0
    );
    assert_eq!(unique, TOTAL, "every message the daemon took is delivered");
    assert_eq!(doubled, 0, "no message is delivered twice");
    assert_eq!(
        counter.events.load(Ordering::Relaxed),
        TOTAL as u64,
        "no extra events"
    );
    assert_eq!(
        counter.with_field.load(Ordering::Relaxed),
        TOTAL as u64,
        "processor_add_fields ran on every event"
    );
    // The input's own statistics count what it queued: every message.
    let (status, metrics) = common::http_get(&daemon.metrics_addr(), "/metrics");
    assert_eq!(status, 200, "{metrics}");
    let syslog_out: f64 = metrics
        .lines()
        .filter(|l| {
            l.starts_with("tailrace_base_plugin_out_events_total{")
                && l.contains(r#"plugin_type="service_syslog""#)
        })
        .filter_map(|l| l.rsplit_once(' ')?.1.parse::<f64>().ok())
        .sum();
    assert_eq!(
        syslog_out, TOTAL as f64,
        "service_syslog's out events\n{metrics}"
    );
    assert!(
        peak_kib < RSS_BOUND_MIB * 1024,
        "peak RSS {:.1} MiB under the flood, bound {RSS_BOUND_MIB} MiB\n{}",
        peak_kib as f64 / 1024.0,
        daemon.diagnostics()
    );
}
