//! End-to-end tests of `input_file` options, on the real daemon and real files: where a tail
//! start lands with a multiline config, which pipeline collects a file several match
//! (`AllowingIncludedByMultiConfigs`), when a line without its newline goes out
//! (`FlushTimeoutSecs`), and the position of each event (`AppendingLogPositionMeta`).
//!
//! Events reach stdout (`flusher_stdout`, one JSON object per line) or, where the test must
//! tell pipelines apart, one `flusher_file` per pipeline. Every daemon gets an empty
//! `--plugin-dir`: the plugin libraries are not needed.

mod common;

use std::collections::BTreeMap;
use std::fs;
use std::os::unix::fs::MetadataExt;
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

use serde_json::{json, Map, Value};

use common::{Daemon, Sandbox};

/// How long a `--once` run may take.
const ONCE_LIMIT: Duration = Duration::from_secs(60);

/// The tests of this file run one at a time (some measure time).
static SERIAL: Mutex<()> = Mutex::new(());

/// A test's turn (the lock, held until it is dropped) and its sandbox, with an empty
/// `plugins/` dir for `--plugin-dir`.
fn setup() -> (MutexGuard<'static, ()>, Sandbox) {
    let turn = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let sandbox = Sandbox::new();
    fs::create_dir(sandbox.path("plugins")).unwrap();
    (turn, sandbox)
}

/// Writes `conf/<name>.yaml`: one `input_file` with `options` (FilePaths included), and the
/// flusher given (`flusher_stdout` when None). JSON is YAML.
fn write_pipeline(sandbox: &Sandbox, name: &str, options: Value, flusher: Option<Value>) {
    let mut input = json!({"Type": "input_file"});
    for (k, v) in options.as_object().unwrap() {
        input[k] = v.clone();
    }
    let flusher = flusher.unwrap_or_else(|| json!({"Type": "flusher_stdout"}));
    let config = json!({"inputs": [input], "flushers": [flusher]});
    sandbox.write_config(
        &format!("{name}.yaml"),
        &serde_json::to_string_pretty(&config).unwrap(),
    );
}

/// Runs `--once` to its end and returns the daemon (its output is all there).
fn run_once(sandbox: &Sandbox) -> Daemon {
    let mut daemon =
        Daemon::start_with_args(sandbox, Some(&sandbox.path("plugins")), &[], &["--once"]);
    let (status, _) = daemon.wait_exit(ONCE_LIMIT);
    assert!(status.success(), "{status:?}\n{}", daemon.diagnostics());
    daemon
}

/// The JSON events of stdout, in order.
fn stdout_events(daemon: &Daemon) -> Vec<Map<String, Value>> {
    daemon.lines().into_iter().filter_map(|l| l.json).collect()
}

fn field<'a>(event: &'a Map<String, Value>, key: &str) -> &'a str {
    event
        .get(key)
        .and_then(Value::as_str)
        .unwrap_or_else(|| panic!("no string {key:?} in {event:?}"))
}

/// `s seq=N ...` → N.
fn seq_of(content: &str) -> Option<u64> {
    content
        .split_whitespace()
        .find_map(|w| w.strip_prefix("seq="))
        .and_then(|n| n.parse().ok())
}

/// How often each sequence number arrived.
fn seq_counts<'a>(contents: impl Iterator<Item = &'a str>) -> BTreeMap<u64, usize> {
    let mut counts = BTreeMap::new();
    for content in contents {
        if let Some(seq) = seq_of(content) {
            *counts.entry(seq).or_default() += 1;
        }
    }
    counts
}

// ---------------------------------------------------------------------------------------------
// Tail start with a multiline config
// ---------------------------------------------------------------------------------------------

/// A Java-style event: a dated first line, then `seq % 5 + 2` stack lines.
fn java_event(seq: u64) -> String {
    let mut event = format!(
        "2024-05-06 07:08:{:02}.{:03} ERROR [main] request failed seq={seq:05}\n",
        seq % 60,
        seq % 1000
    );
    event.push_str("java.lang.IllegalStateException: the service is not ready\n");
    for frame in 0..seq % 5 + 2 {
        event.push_str(&format!(
            "\tat com.example.service.Handler{frame}.handle(Handler{frame}.java:{})\n",
            100 + frame * 7 + seq % 13
        ));
    }
    event
}

/// A file of multiline events larger than `TailSizeKB`, whose tail start falls inside an
/// event: the first event delivered is the first whole event after the tail start, beginning
/// with its StartPattern line, and every event after it arrives whole, once.
#[test]
fn a_tail_start_moves_to_the_next_multiline_start() {
    let (_turn, sandbox) = setup();
    let path = sandbox.path("logs/java.log");
    let events: Vec<String> = (0..300).map(java_event).collect();
    let text: String = events.concat();
    fs::write(&path, &text).unwrap();
    let tail_kb = 8u64;
    let tail_start = text.len() as u64 - tail_kb * 1024;
    // Where each event starts; the tail start must fall inside an event, past its first line,
    // or the test would not show anything.
    let mut starts = Vec::new();
    let mut at = 0u64;
    for event in &events {
        starts.push(at);
        at += event.len() as u64;
    }
    let inside = starts.iter().rposition(|&s| s <= tail_start).unwrap();
    let first_line_end = starts[inside] + events[inside].find('\n').unwrap() as u64 + 1;
    assert!(
        tail_start >= first_line_end,
        "the tail start {tail_start} is on the first line of event {inside}: pick another size"
    );
    let expected: Vec<usize> = (inside + 1..events.len()).collect();

    write_pipeline(
        &sandbox,
        "java",
        json!({
            "FilePaths": [path],
            "TailSizeKB": tail_kb,
            "Multiline": {"StartPattern": "\\d{4}-\\d{2}-\\d{2} .*"},
        }),
        None,
    );
    let daemon = run_once(&sandbox);
    let delivered: Vec<String> = stdout_events(&daemon)
        .iter()
        .map(|e| field(e, "content").to_owned())
        .collect();
    assert!(
        !delivered.is_empty(),
        "nothing delivered\n{}",
        daemon.diagnostics()
    );
    assert_eq!(
        delivered[0],
        events[expected[0]].trim_end_matches('\n'),
        "the first event is not the first whole event after the tail start\n{}",
        daemon.diagnostics()
    );
    let want: Vec<&str> = expected
        .iter()
        .map(|&i| events[i].trim_end_matches('\n'))
        .collect();
    assert_eq!(
        delivered, want,
        "events after the tail start, whole and once"
    );
}

// ---------------------------------------------------------------------------------------------
// AllowingIncludedByMultiConfigs
// ---------------------------------------------------------------------------------------------

/// `flusher_file` into `<sandbox>/out-<name>.jsonl`.
fn file_flusher(sandbox: &Sandbox, name: &str) -> Value {
    json!({"Type": "flusher_file", "FilePath": sandbox.path(&format!("out-{name}.jsonl"))})
}

/// The sequence numbers in `out-<name>.jsonl`, with how often each came.
fn delivered_by(sandbox: &Sandbox, name: &str) -> BTreeMap<u64, usize> {
    let out = fs::read_to_string(sandbox.path(&format!("out-{name}.jsonl"))).unwrap_or_default();
    let contents: Vec<String> = out
        .lines()
        .map(|l| {
            let v: Value = serde_json::from_str(l).unwrap_or_else(|e| panic!("{l:?}: {e}"));
            v["content"].as_str().unwrap().to_owned()
        })
        .collect();
    seq_counts(contents.iter().map(String::as_str))
}

/// 500 numbered lines.
fn shared_text() -> String {
    (0..500)
        .map(|i| format!("shared seq={i:05} some payload of the line\n"))
        .collect()
}

/// Pipelines "alpha" and "beta", each `input_file` on `logs/*.log` into its own
/// `out-<name>.jsonl`; beta's input gets `beta_options` as well.
fn write_two_pipelines(sandbox: &Sandbox, beta_options: Value) {
    let glob = sandbox.path("logs/*.log").display().to_string();
    for (name, extra) in [("alpha", json!({})), ("beta", beta_options)] {
        let mut options = json!({"FilePaths": [glob], "TailingAllMatchedFiles": true});
        for (k, v) in extra.as_object().unwrap() {
            options[k] = v.clone();
        }
        write_pipeline(sandbox, name, options, Some(file_flusher(sandbox, name)));
    }
}

/// Two pipelines whose globs match the same file, run with `--once`; the second one's input
/// gets `second_options` as well. Returns the daemon and what each pipeline delivered.
fn two_pipelines_on_one_file(
    second_options: Value,
) -> (Daemon, BTreeMap<u64, usize>, BTreeMap<u64, usize>, String) {
    let (_turn, sandbox) = setup();
    let path = sandbox.path("logs/shared.log");
    fs::write(&path, shared_text()).unwrap();
    write_two_pipelines(&sandbox, second_options);
    let daemon = run_once(&sandbox);
    let alpha = delivered_by(&sandbox, "alpha");
    let beta = delivered_by(&sandbox, "beta");
    (daemon, alpha, beta, path.display().to_string())
}

/// Whether a stderr line warns that `path` goes to alpha, not beta.
fn warns_alpha_collects(line: &str, path: &str) -> bool {
    line.contains("WARN")
        && line.contains(path)
        && line.contains("collected_by=alpha")
        && line.contains("skipped_by=beta")
}

fn each_once() -> BTreeMap<u64, usize> {
    (0..500).map(|i| (i, 1)).collect()
}

/// By default a file that two pipelines match is collected by one: the first by name (the
/// older, both having the same base directory), each line once; a warning names the file and
/// both pipelines.
#[test]
fn a_file_matched_by_two_pipelines_is_collected_once() {
    let (daemon, alpha, beta, path) = two_pipelines_on_one_file(json!({}));
    assert_eq!(
        alpha,
        each_once(),
        "alpha delivers each line once\n{}",
        daemon.diagnostics()
    );
    assert!(beta.is_empty(), "beta delivered {} lines", beta.len());
    let warned = daemon
        .stderr_lines()
        .iter()
        .any(|l| warns_alpha_collects(l, &path));
    assert!(
        warned,
        "no warning naming the file and both pipelines\n{}",
        daemon.diagnostics()
    );
}

/// The same for a file created while the daemon runs: inotify tells both inputs, and
/// whichever walks first, only alpha collects it.
#[test]
fn a_file_created_while_running_is_collected_once() {
    let (_turn, sandbox) = setup();
    write_two_pipelines(&sandbox, json!({}));
    let mut daemon = Daemon::start(&sandbox, Some(&sandbox.path("plugins")), &[]);
    daemon.wait_stderr("both pipelines started", |l| {
        l.contains("pipeline started") && l.contains("beta")
    });
    let path = sandbox.path("logs/new.log");
    fs::write(&path, shared_text()).unwrap();
    let path = path.display().to_string();
    // Beta's walk decided when it warns; alpha's lines are all there when it delivered them.
    daemon.wait_stderr("the warning that alpha collects the file", |l| {
        warns_alpha_collects(l, &path)
    });
    let deadline = Instant::now() + common::WAIT;
    while delivered_by(&sandbox, "alpha") != each_once() {
        assert!(
            Instant::now() < deadline,
            "alpha did not deliver each line once: {} distinct\n{}",
            delivered_by(&sandbox, "alpha").len(),
            daemon.diagnostics()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let (status, _) = daemon.terminate();
    assert!(status.success(), "{status:?}\n{}", daemon.diagnostics());
    assert_eq!(
        delivered_by(&sandbox, "alpha"),
        each_once(),
        "alpha after the stop"
    );
    let beta = delivered_by(&sandbox, "beta");
    assert!(beta.is_empty(), "beta delivered {} lines", beta.len());
}

/// With `AllowingIncludedByMultiConfigs: true` on the second pipeline, both collect the file.
#[test]
fn allowing_included_by_multi_configs_collects_it_as_well() {
    let (daemon, alpha, beta, path) =
        two_pipelines_on_one_file(json!({"AllowingIncludedByMultiConfigs": true}));
    assert_eq!(alpha, each_once(), "alpha\n{}", daemon.diagnostics());
    assert_eq!(beta, each_once(), "beta\n{}", daemon.diagnostics());
    let warned = daemon
        .stderr_lines()
        .into_iter()
        .any(|l| l.contains("WARN") && l.contains(&path));
    assert!(
        !warned,
        "a warning about a file both may collect\n{}",
        daemon.diagnostics()
    );
}

// ---------------------------------------------------------------------------------------------
// FlushTimeoutSecs
// ---------------------------------------------------------------------------------------------

/// A line without its newline goes out `FlushTimeoutSecs` (1) after it was written: not
/// before, and well before the 5 s default.
#[test]
fn a_line_without_newline_goes_out_after_flush_timeout_secs() {
    let (_turn, sandbox) = setup();
    let path = sandbox.path("logs/partial.log");
    fs::write(&path, "").unwrap();
    write_pipeline(
        &sandbox,
        "partial",
        json!({"FilePaths": [path], "TailingAllMatchedFiles": true, "FlushTimeoutSecs": 1}),
        None,
    );
    let daemon = Daemon::start(&sandbox, Some(&sandbox.path("plugins")), &[]);
    // A whole line first: the file is being tailed once it arrives.
    let mut file = fs::OpenOptions::new().append(true).open(&path).unwrap();
    std::io::Write::write_all(&mut file, b"whole line\n").unwrap();
    daemon.wait_line("the whole line", |l| l.get("content") == Some("whole line"));
    let written = Instant::now();
    std::io::Write::write_all(&mut file, b"no newline yet").unwrap();
    let line = daemon.wait_line("the line without its newline", |l| {
        l.get("content") == Some("no newline yet")
    });
    let after = line.at.duration_since(written);
    eprintln!(
        "[flush_timeout_secs] the line without its newline came {after:?} after it was written"
    );
    assert!(
        after >= Duration::from_millis(950),
        "sent {after:?} after it was written, before FlushTimeoutSecs (1 s)"
    );
    assert!(
        after < Duration::from_secs(4),
        "sent {after:?} after it was written: FlushTimeoutSecs (1 s) was not applied"
    );
}

// ---------------------------------------------------------------------------------------------
// AppendingLogPositionMeta
// ---------------------------------------------------------------------------------------------

/// Each event's `__file_offset__` is the byte offset of its line in the file, and
/// `__tag__:__inode__` the file's inode; lines of every length, one ending in `\r\n`.
#[test]
fn appending_log_position_meta_gives_offsets_and_inode() {
    let mut text = String::new();
    let mut offsets = BTreeMap::new();
    for i in 0..400u64 {
        offsets.insert(i, text.len() as u64);
        let end = if i == 7 { "\r\n" } else { "\n" };
        text.push_str(&format!(
            "pos seq={i:05} {}{end}",
            "x".repeat((i * 31 % 90) as usize)
        ));
    }
    check_positions(&text, &offsets, json!({}));
}

/// The same with multiline events in a file of several read blocks (512 KiB each): events that
/// span two blocks have their start's offset as well.
#[test]
fn appending_log_position_meta_gives_multiline_event_starts() {
    let mut text = String::new();
    let mut offsets = BTreeMap::new();
    let mut seq = 0;
    while text.len() < 1536 * 1024 {
        offsets.insert(seq, text.len() as u64);
        text.push_str(&java_event(seq));
        seq += 1;
    }
    let multiline = json!({"Multiline": {"StartPattern": "\\d{4}-\\d{2}-\\d{2} .*"}});
    check_positions(&text, &offsets, multiline);
}

/// Collects a file holding `file_text` with `AppendingLogPositionMeta` (and `options`) in a
/// `--once` run, and checks that every sequence number of `offsets` arrived once, at its
/// offset, with the file's inode.
fn check_positions(file_text: &str, offsets: &BTreeMap<u64, u64>, options: Value) {
    let (_turn, sandbox) = setup();
    let path = sandbox.path("logs/pos.log");
    fs::write(&path, file_text).unwrap();
    let mut input = json!({
        "FilePaths": [path], "TailingAllMatchedFiles": true, "AppendingLogPositionMeta": true
    });
    for (k, v) in options.as_object().unwrap() {
        input[k] = v.clone();
    }
    write_pipeline(&sandbox, "pos", input, None);
    let daemon = run_once(&sandbox);
    let inode = fs::metadata(&path).unwrap().ino().to_string();
    let events = stdout_events(&daemon);
    let mut seen = BTreeMap::new();
    for event in &events {
        let content = field(event, "content");
        let seq = seq_of(content).unwrap_or_else(|| panic!("unexpected event {content:?}"));
        assert_eq!(field(event, "__tag__:__inode__"), inode, "{event:?}");
        let offset: u64 = field(event, "__file_offset__").parse().unwrap();
        assert_eq!(Some(&offset), offsets.get(&seq), "offset of seq {seq}");
        *seen.entry(seq).or_insert(0) += 1;
    }
    let want: BTreeMap<u64, usize> = offsets.keys().map(|&s| (s, 1)).collect();
    assert_eq!(seen, want, "each event once\n{}", daemon.diagnostics());
}
