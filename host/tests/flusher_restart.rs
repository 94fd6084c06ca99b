//! A native flusher that panics is caught, logged and replaced by a new instance, and its batch
//! is retried there: nothing is lost or written twice. Runs the `test-faults` build of the
//! daemon (`make faults`: target/faults/release/tailrace), whose `flusher_test_panic` breaks
//! for good once it panicked, so only a restarted instance can deliver.

mod common;

use std::collections::BTreeMap;
use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use common::{Daemon, Sandbox, WAIT};

fn faults_daemon() -> PathBuf {
    let bin = Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/faults/release/tailrace");
    assert!(
        bin.exists(),
        "{} is missing: run `make faults` first",
        bin.display()
    );
    bin
}

/// Sequence numbers in the flusher's output: each one and how often it was written.
fn written(out: &Path) -> BTreeMap<u64, usize> {
    let mut seen = BTreeMap::new();
    let text = fs::read_to_string(out).unwrap_or_default();
    for line in text.lines() {
        let event: serde_json::Value = serde_json::from_str(line)
            .unwrap_or_else(|e| panic!("a broken line in {}: {e}: {line:?}", out.display()));
        let content = event["content"].as_str().unwrap_or_default();
        if let Some(n) = content.strip_prefix("seq=") {
            *seen.entry(n.parse().unwrap()).or_insert(0) += 1;
        }
    }
    seen
}

fn wait_for(out: &Path, n: usize, daemon: &Daemon) -> BTreeMap<u64, usize> {
    let deadline = Instant::now() + WAIT;
    loop {
        let seen = written(out);
        if seen.len() >= n {
            return seen;
        }
        assert!(
            Instant::now() < deadline,
            "only {} of {n} lines written\n{}",
            seen.len(),
            daemon.diagnostics()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn a_panicking_flusher_is_restarted_and_loses_nothing() {
    let sandbox = Sandbox::new();
    let log = sandbox.path("logs/app.log");
    let out = sandbox.path("out.jsonl");
    fs::write(&log, "").unwrap();
    sandbox.write_config(
        "p.yaml",
        &format!(
            "inputs:\n  - Type: input_file\n    FilePaths: [{}]\n\
             flushers:\n  - Type: flusher_test_panic\n    FilePath: {}\n    FlushesBeforePanic: 1\n",
            sandbox.path("logs/*.log").display(),
            out.display()
        ),
    );
    let mut daemon = Daemon::start_program(&faults_daemon(), &sandbox, None, &[], &[]);
    daemon.wait_stderr("the pipeline started", |l| l.contains("pipeline started"));
    // Bursts written one after the other, each once the last one is out: every instance makes
    // one good flush, then panics on the next, so each burst after the first needs a restart.
    const BURSTS: u64 = 4;
    const PER_BURST: u64 = 100;
    for burst in 0..BURSTS {
        let mut file = fs::OpenOptions::new().append(true).open(&log).unwrap();
        for i in 0..PER_BURST {
            writeln!(file, "seq={}", burst * PER_BURST + i).unwrap();
        }
        drop(file);
        wait_for(&out, ((burst + 1) * PER_BURST) as usize, &daemon);
    }
    let seen = written(&out);
    let duplicates: usize = seen.values().map(|n| n - 1).sum();
    assert_eq!(seen.len() as u64, BURSTS * PER_BURST, "every line written");
    assert_eq!(duplicates, 0, "no line written twice");
    let restarts = daemon
        .stderr_lines()
        .iter()
        .filter(|l| l.contains("the flusher panicked") && l.contains("restarted it"))
        .count();
    assert!(
        restarts >= 1,
        "the panics were logged with their restart\n{}",
        daemon.diagnostics()
    );
    let (status, _) = daemon.terminate();
    assert!(status.success(), "a clean stop after the panics: {status}");
}
