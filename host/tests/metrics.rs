//! Self-monitoring on the real binary: `--metrics-addr` serves `/metrics` (scraped over HTTP and
//! parsed as Prometheus text) with what the pipelines did, and `/healthz` answers 503 with the
//! reason while a config does not run as written, 200 again once it is fixed.

mod common;

use std::fs;
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
