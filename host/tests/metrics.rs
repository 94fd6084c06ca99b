//! Self-monitoring on the real binary: `--metrics-addr` serves `/metrics` (scraped over HTTP and
//! parsed as Prometheus text) with what the pipelines did, and `/healthz` answers 503 with the
//! reason while a config does not run as written, 200 again once it is fixed.

mod common;

use std::fs;
use std::io::Read;
use std::time::{Duration, Instant};

use common::{http_get, Daemon, Sandbox, WAIT};

/// The value of the sample `name` whose labels include `labels`, from a scrape.
fn sample(scrape: &prometheus_parse::Scrape, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    scrape
        .samples
        .iter()
        .find(|s| {
            s.metric == name
                && labels
                    .iter()
                    .all(|(k, v)| s.labels.get(k).is_some_and(|x| x == *v))
        })
        .map(|s| match s.value {
            prometheus_parse::Value::Counter(v)
            | prometheus_parse::Value::Gauge(v)
            | prometheus_parse::Value::Untyped(v) => v,
            _ => f64::NAN,
        })
}

fn scrape(addr: &str) -> prometheus_parse::Scrape {
    let (status, body) = http_get(addr, "/metrics");
    assert_eq!(status, 200, "{body}");
    prometheus_parse::Scrape::parse(body.lines().map(|l| Ok(l.to_owned())))
        .unwrap_or_else(|e| panic!("not Prometheus text: {e}\n{body}"))
}

/// Polls `check` until it returns Some, or fails naming `what`.
fn wait_for<T>(what: &str, daemon: &Daemon, mut check: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + WAIT;
    loop {
        if let Some(v) = check() {
            return v;
        }
        assert!(
            Instant::now() < deadline,
            "timed out waiting for {what}\n{}",
            daemon.diagnostics()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn metrics_and_health_over_http() {
    let sandbox = Sandbox::new();
    let out = sandbox.path("out.jsonl");
    sandbox.write_config(
        "web.yaml",
        &format!(
            "inputs:\n  - Type: input_file\n    FilePaths: [{}]\n\
             processors:\n  - Type: processor_filter_regex_native\n    Include: {{content: 'keep.*'}}\n\
             \x20 - Type: processor_parse_regex_native\n    Regex: 'keep line (\\d*[02468])'\n    Keys: [n]\n    KeepingSourceWhenParseFail: true\n\
             flushers:\n  - Type: flusher_file\n    FilePath: {}\n",
            sandbox.path("logs/*.log").display(),
            out.display()
        ),
    );
    let daemon = Daemon::start_with_args(&sandbox, None, &[], &["--metrics-addr", "127.0.0.1:0"]);
    let addr = daemon.metrics_addr();
    assert!(addr.starts_with("127.0.0.1:"), "{addr}");
    daemon.wait_stderr("the pipeline", |l| l.contains("pipeline started"));

    // 300 lines, 200 of which the filter keeps.
    let mut text = String::new();
    for i in 0..300 {
        let verdict = if i % 3 == 0 { "drop" } else { "keep" };
        text.push_str(&format!("{verdict} line {i:05}\n"));
    }
    fs::write(sandbox.path("logs/app.log"), &text).unwrap();
    let pipeline = [("pipeline", "web")];
    let scraped = wait_for("every line counted", &daemon, || {
        let s = scrape(&addr);
        (sample(&s, "tailrace_flusher_events_total", &pipeline) == Some(200.0)).then_some(s)
    });
    assert_eq!(
        sample(&scraped, "tailrace_pipeline_events_in_total", &pipeline),
        Some(300.0)
    );
    assert_eq!(
        sample(&scraped, "tailrace_pipeline_events_out_total", &pipeline),
        Some(200.0)
    );
    // The kept lines with an odd number do not parse (and keep their source).
    let odd_kept = (0..300).filter(|i| i % 3 != 0 && i % 2 == 1).count() as f64;
    assert_eq!(
        sample(
            &scraped,
            "tailrace_processor_parse_failures_total",
            &[
                ("pipeline", "web"),
                ("processor", "processor_parse_regex_native")
            ]
        ),
        Some(odd_kept)
    );
    assert_eq!(
        sample(
            &scraped,
            "tailrace_processor_parse_failures_total",
            &[("processor", "processor_filter_regex_native")]
        ),
        Some(0.0)
    );
    // Per processor: the filter takes 300 lines and passes 200, the parser takes and keeps
    // 200, and both spent some time.
    let filter = [
        ("pipeline", "web"),
        ("processor", "processor_filter_regex_native"),
    ];
    let parser = [
        ("pipeline", "web"),
        ("processor", "processor_parse_regex_native"),
    ];
    for (labels, events_in, events_out) in [(&filter, 300.0, 200.0), (&parser, 200.0, 200.0)] {
        assert_eq!(
            sample(&scraped, "tailrace_processor_in_events_total", labels),
            Some(events_in),
            "{labels:?}"
        );
        assert_eq!(
            sample(&scraped, "tailrace_processor_out_events_total", labels),
            Some(events_out),
            "{labels:?}"
        );
        let seconds = sample(&scraped, "tailrace_processor_seconds_total", labels).unwrap();
        assert!(seconds > 0.0 && seconds < 10.0, "{labels:?}: {seconds}");
    }
    // The parser reports its failures through its services, rate-limited: the first at once,
    // the rest within 30 s only counted.
    assert_eq!(
        sample(
            &scraped,
            "tailrace_alarms_total",
            &[("kind", "REGEX_MATCH_ALARM")]
        ),
        Some(1.0)
    );
    let content_bytes = 300.0 * ("content".len() + "keep line 00000".len()) as f64;
    assert_eq!(
        sample(&scraped, "tailrace_pipeline_bytes_in_total", &pipeline),
        Some(content_bytes)
    );
    assert_eq!(
        sample(
            &scraped,
            "tailrace_flusher_failures_total",
            &[("pipeline", "web"), ("flusher", "flusher_file")]
        ),
        Some(0.0)
    );
    assert_eq!(
        sample(&scraped, "tailrace_pipeline_input_blocked", &pipeline),
        Some(0.0)
    );
    assert_eq!(
        sample(&scraped, "tailrace_pipelines", &[("state", "running")]),
        Some(1.0)
    );
    // The process figures agree with /proc.
    let rss = sample(&scraped, "tailrace_process_resident_memory_bytes", &[]).unwrap();
    let proc_rss = common::status_kib(daemon.pid(), "VmRSS") as f64 * 1024.0;
    assert!(
        (rss - proc_rss).abs() < proc_rss * 0.5,
        "RSS {rss} vs /proc {proc_rss}"
    );
    assert!(sample(&scraped, "tailrace_process_cpu_seconds_total", &[]).is_some());
    assert_eq!(http_get(&addr, "/healthz"), (200, "ok\n".to_owned()));

    // An invalid config: 503 naming it; fixed: 200 again.
    sandbox.write_config(
        "bad.yaml",
        "inputs: [{Type: input_file}]\nflushers: [{Type: flusher_stdout}]\n",
    );
    let body = wait_for("503 for the invalid config", &daemon, || {
        let (status, body) = http_get(&addr, "/healthz");
        (status == 503).then_some(body)
    });
    assert!(
        body.contains("bad.yaml") && body.contains("FilePaths"),
        "{body}"
    );
    // A valid config whose pipeline cannot run (its output would be read back by `web`).
    sandbox.remove_config("bad.yaml");
    sandbox.write_config(
        "loop.yaml",
        &format!(
            "inputs: [{{Type: input_file, FilePaths: ['{}/x.txt']}}]\nflushers: [{{Type: flusher_file, FilePath: '{}'}}]\n",
            sandbox.path("logs").display(),
            sandbox.path("logs/loop.log").display()
        ),
    );
    let body = wait_for("503 for the refused pipeline", &daemon, || {
        let (status, body) = http_get(&addr, "/healthz");
        (status == 503 && body.contains("\"loop\"")).then_some(body)
    });
    assert!(body.contains("read its own output back"), "{body}");
    assert!(!body.contains("bad.yaml"), "{body}");
    sandbox.remove_config("loop.yaml");
    wait_for("200 once the configs are fixed", &daemon, || {
        (http_get(&addr, "/healthz").0 == 200).then_some(())
    });
    assert_eq!(http_get(&addr, "/nope").0, 404);
}

#[test]
fn a_metrics_address_that_cannot_be_bound_is_an_error_at_start() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap().to_string();
    let sandbox = Sandbox::new();
    let mut daemon = Daemon::start_with_args(&sandbox, None, &[], &["--metrics-addr", &addr]);
    let (status, _) = daemon.wait_exit(WAIT);
    assert_eq!(status.code(), Some(1), "{}", daemon.diagnostics());
    let stderr = daemon.stderr_lines().join("\n");
    assert!(
        stderr.contains(&format!("--metrics-addr {addr}")) && stderr.contains("cannot listen"),
        "{stderr}"
    );
}

/// Linux's O_NONBLOCK: open the FIFO's read end without waiting for a writer.
const O_NONBLOCK: i32 = 0o4000;

/// A flusher stalled on a FIFO nobody reads: reading pauses, and /metrics shows how far it lags
/// (equal to what the kernel says of the daemon's read position), that the input is blocked,
/// and, once the file is truncated under it, the bytes lost unread.
#[test]
fn read_lag_and_bytes_lost_unread() {
    use std::os::unix::fs::OpenOptionsExt;

    let sandbox = Sandbox::new();
    let log = sandbox.path("logs/big.log");
    let line = format!("{}\n", "x".repeat(99));
    fs::write(&log, line.repeat(200_000)).unwrap(); // 20 MB, written before the daemon starts
    let size = fs::metadata(&log).unwrap().len();
    let fifo = sandbox.path("out.fifo");
    assert!(std::process::Command::new("mkfifo")
        .arg(&fifo)
        .status()
        .unwrap()
        .success());
    // Held open and not read: the flusher's writes block once the pipe buffer is full.
    let mut reader = fs::OpenOptions::new()
        .read(true)
        .custom_flags(O_NONBLOCK)
        .open(&fifo)
        .unwrap();
    sandbox.write_config(
        "slow.yaml",
        &format!(
            "inputs:\n  - Type: input_file\n    FilePaths: [{}]\n    TailingAllMatchedFiles: true\n\
             flushers:\n  - Type: flusher_file\n    FilePath: {}\n",
            sandbox.path("logs/*.log").display(),
            fifo.display()
        ),
    );
    let daemon = Daemon::start_with_args(&sandbox, None, &[], &["--metrics-addr", "127.0.0.1:0"]);
    let addr = daemon.metrics_addr();
    let pipeline = [("pipeline", "slow")];
    // The lag settles once the queues are full and reading paused.
    let mut last = None;
    let lag = wait_for("a steady read lag", &daemon, || {
        let s = scrape(&addr);
        let lag = sample(&s, "tailrace_input_read_lag_bytes", &pipeline)?;
        let steady = lag > 0.0 && last == Some(lag);
        last = Some(lag);
        std::thread::sleep(Duration::from_millis(200));
        steady.then_some((lag, s))
    });
    let (lag, scraped) = lag;
    let pos = common::read_offset(daemon.pid(), &log).expect("the log is open") as f64;
    assert_eq!(lag, size as f64 - pos, "lag = size - read position");
    assert_eq!(
        sample(
            &scraped,
            "tailrace_file_read_lag_bytes",
            &[("pipeline", "slow"), ("path", log.to_str().unwrap())]
        ),
        Some(lag)
    );
    assert_eq!(
        sample(&scraped, "tailrace_pipeline_input_blocked", &pipeline),
        Some(1.0)
    );
    assert_eq!(
        sample(&scraped, "tailrace_input_files", &pipeline),
        Some(1.0)
    );
    assert_eq!(
        sample(&scraped, "tailrace_input_lost_bytes_total", &pipeline),
        Some(0.0)
    );

    // Truncated while unread (copytruncate), then the destination drains: what was not read
    // before the truncation is counted lost.
    fs::File::create(&log).unwrap();
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let stopped = stop.clone();
    let drain = std::thread::spawn(move || {
        let mut buf = vec![0u8; 1 << 16];
        while !stopped.load(std::sync::atomic::Ordering::Relaxed) {
            match reader.read(&mut buf) {
                Ok(_) => {}
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                    std::thread::sleep(Duration::from_millis(5))
                }
                Err(_) => break,
            }
        }
    });
    let lost = wait_for("the lost bytes", &daemon, || {
        let s = scrape(&addr);
        sample(&s, "tailrace_input_lost_bytes_total", &pipeline).filter(|v| *v > 0.0)
    });
    assert_eq!(lost, lag, "the bytes unread at the truncation");
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let _ = drain.join();
}

/// The plugin base's own statistics (its `GetGoMetrics`) show on /metrics, per plugin.
#[test]
fn plugin_base_statistics_per_plugin() {
    let libs = common::release_plugin_libs();
    let sandbox = Sandbox::new();
    sandbox.write_config(
        "mock.yaml",
        "global: {InputIntervalMs: 20, AggregatIntervalMs: 100, FlushIntervalMs: 100}\n\
         inputs: [{Type: metric_mock, Fields: {f1: a}}]\n\
         flushers: [{Type: flusher_stdout, OnlyStdout: true}]\n",
    );
    let daemon = Daemon::start_with_args(
        &sandbox,
        Some(&libs),
        &[],
        &["--metrics-addr", "127.0.0.1:0"],
    );
    let addr = daemon.metrics_addr();
    let mock = [("pipeline", "mock"), ("plugin_type", "metric_mock")];
    let events = wait_for("metric_mock's events on /metrics", &daemon, || {
        let s = scrape(&addr);
        sample(&s, "tailrace_base_plugin_out_events_total", &mock).filter(|n| *n >= 5.0)
    });
    // And the events it counted went on to the flusher.
    daemon.wait_line("a metric_mock line on stdout", |l| l.get("f1") == Some("a"));
    assert!(events >= 5.0);
    let s = scrape(&addr);
    assert_eq!(
        sample(&s, "tailrace_plugin_base", &[("state", "loaded")]),
        Some(1.0)
    );
}

/// An alarm raised in the plugin base reaches the host and shows on /metrics by kind: a
/// `metric_mock` whose checkpoint is unreadable raises `CHECKPOINT_ALARM` and starts from its
/// `Index` (the base reports every 200 ms here, `--base-report-interval-ms`).
#[test]
fn a_plugin_base_alarm_shows_on_metrics() {
    let libs = common::release_plugin_libs();
    let sandbox = Sandbox::new();
    sandbox.write_config(
        "mock.yaml",
        "global: {InputIntervalMs: 50, AggregatIntervalMs: 100, FlushIntervalMs: 100}\n\
         inputs: [{Type: metric_mock, Fields: {f1: a}}]\n\
         flushers: [{Type: flusher_stdout, OnlyStdout: true}]\n",
    );
    // The checkpoint metric_mock resumes from, made unreadable: a directory where its file goes.
    let data = sandbox.path("data");
    fs::create_dir_all(data.join("plugin_base/checkpoint/mock/metric_mock%2F1/Index/x")).unwrap();
    let daemon = Daemon::start_with_args(
        &sandbox,
        Some(&libs),
        &[],
        &[
            "--metrics-addr",
            "127.0.0.1:0",
            "--base-report-interval-ms",
            "200",
        ],
    );
    let addr = daemon.metrics_addr();
    let line = daemon.wait_line("a metric_mock line", |l| l.get("f1") == Some("a"));
    assert_eq!(
        line.get("Index"),
        Some("1"),
        "it starts from Index: {}",
        line.text
    );
    let count = wait_for("CHECKPOINT_ALARM on /metrics", &daemon, || {
        let s = scrape(&addr);
        sample(&s, "tailrace_alarms_total", &[("kind", "CHECKPOINT_ALARM")])
    });
    assert_eq!(count, 1.0, "one unreadable checkpoint, one alarm");
}

/// The same processor raises the same alarm through the same API when the plugin base runs it:
/// `processor_parse_regex_native` after a `metric_mock` whose content never matches.
#[test]
fn a_processor_in_the_plugin_base_raises_its_alarm_through_the_same_services() {
    let libs = common::release_plugin_libs();
    let sandbox = Sandbox::new();
    sandbox.write_config(
        "mock.yaml",
        "global: {InputIntervalMs: 50, AggregatIntervalMs: 100, FlushIntervalMs: 100}\n\
         inputs: [{Type: metric_mock, Fields: {content: no digits}}]\n\
         processors: [{Type: processor_parse_regex_native, SourceKey: content, Regex: '(\\d+)', Keys: [n], KeepingSourceWhenParseFail: true}]\n\
         flushers: [{Type: flusher_stdout, OnlyStdout: true}]\n",
    );
    let daemon = Daemon::start_with_args(
        &sandbox,
        Some(&libs),
        &[],
        &[
            "--metrics-addr",
            "127.0.0.1:0",
            "--base-report-interval-ms",
            "200",
        ],
    );
    let addr = daemon.metrics_addr();
    daemon.wait_lines(3, "unparsed metric_mock lines", |l| {
        l.get("content") == Some("no digits")
    });
    let count = wait_for(
        "REGEX_MATCH_ALARM from the base on /metrics",
        &daemon,
        || {
            let s = scrape(&addr);
            sample(
                &s,
                "tailrace_alarms_total",
                &[("kind", "REGEX_MATCH_ALARM")],
            )
        },
    );
    assert_eq!(count, 1.0, "rate-limited to one per 30 s");
}
