//! End-to-end tests of the JSON-lines writer behind `flusher_stdout` and `flusher_file`, on the
//! real daemon: its output file removed or renamed while it runs (it must create the file anew
//! and lose nothing written after), and its stdout closed by the reader (`tailrace --once |
//! head` must end).
//!
//! The plugin libraries are not needed: every daemon gets an empty `--plugin-dir`.

mod common;

use std::collections::BTreeMap;
use std::fs::{self, OpenOptions};
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use common::{Daemon, Sandbox};

/// How long delivery of what was written may take, at most (it takes far less).
const DELIVERY: Duration = Duration::from_secs(30);
/// How long the daemon may take to exit once its stdout is closed.
const BROKEN_PIPE_EXIT: Duration = Duration::from_secs(30);

/// The tests of this file run one at a time (they use both cores).
static SERIAL: Mutex<()> = Mutex::new(());

fn serial() -> std::sync::MutexGuard<'static, ()> {
    SERIAL.lock().unwrap_or_else(|e| e.into_inner())
}

/// The lines `seqs`, each `seq=N` and some padding, with their newlines.
fn lines(seqs: std::ops::Range<u64>) -> Vec<u8> {
    let mut out = Vec::new();
    for seq in seqs {
        let pad = "p".repeat(40 + (seq % 50) as usize);
        out.extend_from_slice(format!("seq={seq} {pad}\n").as_bytes());
    }
    out
}

fn append(path: &Path, bytes: &[u8]) {
    let mut file = OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .unwrap();
    file.write_all(bytes).unwrap();
}

/// How often each sequence number occurs in the JSON lines of `path` (missing file: none).
/// Every line must be a whole JSON object with a `content` of the form `seq=N ...`.
fn seq_counts(path: &Path) -> BTreeMap<u64, usize> {
    let text = fs::read(path).unwrap_or_default();
    let mut counts = BTreeMap::new();
    // A last line still being written is not counted yet.
    let complete = match text.iter().rposition(|&b| b == b'\n') {
        Some(end) => &text[..end],
        None => return counts,
    };
    for line in complete.split(|&b| b == b'\n') {
        let value: Value = serde_json::from_slice(line).unwrap_or_else(|e| {
            panic!(
                "{}: not a JSON line ({e}): {}",
                path.display(),
                String::from_utf8_lossy(line)
            )
        });
        let content = value["content"].as_str().unwrap();
        let seq: u64 = content
            .strip_prefix("seq=")
            .and_then(|s| s.split(' ').next())
            .and_then(|s| s.parse().ok())
            .unwrap_or_else(|| panic!("unexpected content {content:?}"));
        *counts.entry(seq).or_default() += 1;
    }
    counts
}

/// Waits until `path` holds every one of `seqs`; returns its counts then.
fn wait_for(daemon: &Daemon, path: &Path, seqs: std::ops::Range<u64>) -> BTreeMap<u64, usize> {
    let deadline = Instant::now() + DELIVERY;
    loop {
        let counts = seq_counts(path);
        if seqs.clone().all(|s| counts.contains_key(&s)) {
            return counts;
        }
        if Instant::now() >= deadline {
            let missing = seqs.clone().filter(|s| !counts.contains_key(s)).count();
            panic!(
                "{}: {missing} of {seqs:?} missing after {DELIVERY:?}\n{}",
                path.display(),
                daemon.diagnostics()
            );
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Asserts that `counts` holds exactly `seqs`, each once.
fn assert_exactly_once(what: &str, counts: &BTreeMap<u64, usize>, seqs: std::ops::Range<u64>) {
    let expected: BTreeMap<u64, usize> = seqs.map(|s| (s, 1)).collect();
    if *counts != expected {
        let dup: Vec<_> = counts.iter().filter(|(_, &n)| n > 1).take(5).collect();
        let extra: Vec<_> = counts
            .keys()
            .filter(|s| !expected.contains_key(s))
            .take(5)
            .collect();
        let missing: Vec<_> = expected
            .keys()
            .filter(|s| !counts.contains_key(s))
            .take(5)
            .collect();
        panic!("{what}: duplicates {dup:?}, unexpected {extra:?}, missing {missing:?}");
    }
}

fn pipeline(sandbox: &Sandbox, log: &Path, flusher: Value) {
    let config = json!({
        "inputs": [{"Type": "input_file", "FilePaths": [log], "TailingAllMatchedFiles": true}],
        "flushers": [flusher],
    });
    sandbox.write_config("p.yaml", &serde_json::to_string_pretty(&config).unwrap());
}

#[test]
fn flusher_file_creates_its_output_again_after_remove_and_rename() {
    let _serial = serial();
    let sandbox = Sandbox::new();
    let plugins = sandbox.path("plugins");
    fs::create_dir(&plugins).unwrap();
    let log = sandbox.path("logs/app.log");
    let out = sandbox.path("out/out.jsonl");
    let rotated: PathBuf = sandbox.path("out/out.jsonl.1");
    append(&log, b"");
    pipeline(
        &sandbox,
        &log,
        json!({"Type": "flusher_file", "FilePath": out}),
    );
    let mut daemon = Daemon::start(&sandbox, Some(&plugins), &[]);

    append(&log, &lines(0..2000));
    let first = wait_for(&daemon, &out, 0..2000);
    assert_exactly_once("before the removal", &first, 0..2000);

    // Removed (the old inode's content goes with it): what is written after must all be in
    // the new file, once.
    fs::remove_file(&out).unwrap();
    append(&log, &lines(2000..4000));
    let second = wait_for(&daemon, &out, 2000..4000);
    assert_exactly_once("the file created after the removal", &second, 2000..4000);

    // Renamed away (logrotate of the output): the renamed file keeps what it had, the new one
    // gets the rest.
    fs::rename(&out, &rotated).unwrap();
    append(&log, &lines(4000..6000));
    let third = wait_for(&daemon, &out, 4000..6000);
    assert_exactly_once("the file created after the rename", &third, 4000..6000);
    assert_exactly_once("the renamed file", &seq_counts(&rotated), 2000..4000);

    daemon.terminate();
    let stderr = daemon.stderr_lines().join("\n");
    let reopened = stderr
        .matches("the output file was removed or renamed")
        .count();
    assert_eq!(reopened, 2, "{stderr}");
}

#[test]
fn once_stops_when_its_stdout_is_closed() {
    let _serial = serial();
    let sandbox = Sandbox::new();
    let plugins = sandbox.path("plugins");
    fs::create_dir(&plugins).unwrap();
    let log = sandbox.path("logs/big.log");
    // Far more than a pipe holds: the daemon is still writing when the reader goes.
    for chunk in 0..20 {
        append(&log, &lines(chunk * 10_000..(chunk + 1) * 10_000));
    }
    pipeline(&sandbox, &log, json!({"Type": "flusher_stdout"}));

    let mut child = Command::new(env!("CARGO_BIN_EXE_tailrace"))
        .arg("--once")
        .arg("--config-dir")
        .arg(sandbox.path("conf"))
        .arg("--data-dir")
        .arg(sandbox.path("data"))
        .arg("--plugin-dir")
        .arg(&plugins)
        .args(["--log-level", "info"])
        .env_remove("RUST_LOG")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start tailrace");
    let stderr = Arc::new(Mutex::new(Vec::new()));
    let err = child.stderr.take().unwrap();
    let sink = stderr.clone();
    std::thread::spawn(move || {
        for line in BufReader::new(err).lines() {
            let Ok(line) = line else { break };
            sink.lock().unwrap().push(line);
        }
    });

    // `| head -5`: five lines, then the reader is gone.
    let mut reader = BufReader::new(child.stdout.take().unwrap());
    for _ in 0..5 {
        let mut line = String::new();
        reader.read_line(&mut line).unwrap();
        assert!(line.starts_with("{\"content\":\"seq="), "{line:?}");
    }
    drop(reader);
    let closed = Instant::now();

    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if closed.elapsed() >= BROKEN_PIPE_EXIT {
            let _ = child.kill();
            let _ = child.wait();
            panic!(
                "the daemon did not exit within {BROKEN_PIPE_EXIT:?} of its stdout closing\n{}",
                stderr.lock().unwrap().join("\n")
            );
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let took = closed.elapsed();
    // Let the stderr reader see the end.
    std::thread::sleep(Duration::from_millis(200));
    let stderr = stderr.lock().unwrap().join("\n");
    eprintln!("exited {status} {took:.1?} after stdout closed");
    assert!(stderr.contains("broken pipe"), "{stderr}");
    // Stopping, it does not keep trying (and logging) to write to the closed stdout.
    let retries = stderr.matches("flush failed").count();
    assert!(retries <= 2, "{retries} failed flushes logged:\n{stderr}");
    // What could not be written stays undelivered: the saved checkpoint (if any) is far from
    // the end of the file (a pipe holds 64 KiB; the file is 20 MB).
    let size = fs::metadata(&log).unwrap().len();
    if let Ok(text) = fs::read_to_string(sandbox.path("data/checkpoints/files.json")) {
        let saved: Value = serde_json::from_str(&text).unwrap();
        for file in saved["files"].as_array().unwrap() {
            let offset = file["offset"].as_u64().unwrap();
            assert!(
                offset < size / 2,
                "checkpoint at {offset} of {size}: {text}"
            );
        }
    }
}
