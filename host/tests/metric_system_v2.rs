//! `metric_system_v2` end to end: the real daemon runs `metric_system_v2 → flusher_stdout` in
//! the plugin base; its metric logs are checked against `/proc` read by the test.

mod common;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use common::{Daemon, Line, Sandbox};

/// A metric line: its name, labels and value.
fn metric(line: &Line) -> Option<(String, BTreeMap<String, String>, f64)> {
    let name = line.get("__name__")?.to_owned();
    let labels = line
        .get("__labels__")?
        .split('|')
        .filter_map(|kv| kv.split_once("#$#"))
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect();
    let value = line.get("__value__")?.parse().ok()?;
    Some((name, labels, value))
}

fn proc_field(path: &str, key: &str) -> f64 {
    let text = std::fs::read_to_string(path).unwrap();
    let line = text.lines().find(|l| l.starts_with(key)).unwrap();
    line.split_whitespace().nth(1).unwrap().parse().unwrap()
}

#[test]
fn host_metrics_with_ilogtail_names_match_proc() {
    let libs = common::release_plugin_libs();
    let sandbox = Sandbox::new();
    // The pipeline's interval is a minute: a second collect within the test's wait proves the
    // input's own IntervalMs is used.
    sandbox.write_config(
        "system.yaml",
        "global: {InputIntervalMs: 60000, InputMaxFirstCollectDelayMs: 100, AggregatIntervalMs: 100}\n\
         inputs: [{Type: metric_system_v2, IntervalMs: 300, Labels: {cluster: test}}]\n\
         flushers: [{Type: flusher_stdout, OnlyStdout: true}]\n",
    );
    let began = Instant::now();
    let mut daemon = Daemon::start(&sandbox, Some(&libs), &[]);
    // Rates need two collects.
    let util = daemon.wait_line("cpu_util", |l| l.get("__name__") == Some("cpu_util"));
    assert!(began.elapsed() < Duration::from_secs(10));
    let (_, labels, cpu_util) = metric(&util).unwrap();
    assert!((0.0..=100.0).contains(&cpu_util), "{}", util.text);
    assert_eq!(labels.get("cluster").map(String::as_str), Some("test"));
    let hostname = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap();
    assert_eq!(labels.get("hostname"), Some(&hostname.trim().to_owned()));
    assert!(labels.contains_key("ip"));
    assert!(util.get("__time_nano__").unwrap().parse::<u64>().unwrap() > 1_600_000_000_000_000_000);

    let lines = daemon.lines();
    let metrics: Vec<_> = lines.iter().filter_map(metric).collect();
    let value = |name: &str| {
        metrics
            .iter()
            .find(|(n, _, _)| n == name)
            .map(|(_, _, v)| *v)
            .unwrap_or_else(|| panic!("no {name} among {} metrics", metrics.len()))
    };
    assert_eq!(
        value("mem_total"),
        proc_field("/proc/meminfo", "MemTotal:") * 1024.0
    );
    let load: f64 = std::fs::read_to_string("/proc/loadavg")
        .unwrap()
        .split_whitespace()
        .next()
        .unwrap()
        .parse()
        .unwrap();
    assert!(
        (value("system_load1") - load).abs() < 1.0,
        "{} vs {load}",
        value("system_load1")
    );
    let cpus = std::fs::read_to_string("/proc/stat")
        .unwrap()
        .lines()
        .filter(|l| l.starts_with("cpu") && !l.starts_with("cpu "))
        .count();
    assert_eq!(value("cpu_count"), cpus as f64);
    let mem_util = value("mem_util");
    assert!((0.0..=100.0).contains(&mem_util), "{mem_util}");
    assert!(value("fd_max") > 0.0);
    assert!(value("system_boot_time") > 1_000_000_000.0);
    // Per interface, and the loopback is always there.
    assert!(metrics.iter().any(|(n, l, v)| n == "net_in"
        && l.get("interface").map(String::as_str) == Some("lo")
        && *v >= 0.0));
    let (status, _) = daemon.terminate();
    assert!(status.success(), "{status}");
}
