//! Whole-block reading on the real binary: iLogtail-1.x-style configs whose first processor is
//! a split processor (or the regex accelerator) get the blocks the reader reads, and cut them
//! into events; an event that straddles two reads (a block boundary, or a writer that wrote it
//! in two parts) reaches the flusher whole, and no line is lost or repeated.

mod common;

use std::fs;
use std::io::Write;

use serde_json::{Map, Value};

use common::{event, Daemon, Sandbox};

/// `tailrace --once` over the sandbox's logs with `processors` between `input_file` and a
/// `flusher_file`; the events written.
fn run_once(sandbox: &Sandbox, processors: &str) -> Vec<Map<String, Value>> {
    common::run_once(sandbox, &common::file_pipeline(sandbox, processors))
}

/// The event's fields but the tags and time the flusher adds.
fn fields(event: &Map<String, Value>) -> Map<String, Value> {
    event
        .iter()
        .filter(|(k, _)| !k.starts_with("__tag__:") && *k != "__time__")
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect()
}

const SPLIT_THEN_PARSE: &str = r#"  - Type: processor_split_log_regex
    SplitRegex: \d{4}-\d{2}-\d{2}.*
    SplitKey: content
    PreserveOthers: true
  - Type: processor_parse_regex_native
    SourceKey: content
    Regex: (\S+ \S+) (\w+) (.*)
    Keys: [time, level, msg]
"#;

#[test]
fn java_stack_traces_are_split_from_blocks_and_parsed_in_the_host() {
    let sandbox = Sandbox::new();
    let path = sandbox.path("logs/app.log");
    fs::write(
        &path,
        concat!(
            "2024-05-01 10:00:00.123 ERROR request failed\n",
            "java.lang.IllegalStateException: boom\n",
            "\tat com.example.App.handle(App.java:42)\n",
            "Caused by: java.io.IOException: disk full\n",
            "\t... 2 more\n",
            "2024-05-01 10:00:01.000 INFO recovered\n",
            "2024-05-01 10:00:02.000 WARN slow\n",
            "\tat com.example.Job.run(Job.java:7)\n",
        ),
    )
    .unwrap();
    let events = run_once(&sandbox, SPLIT_THEN_PARSE);
    let got: Vec<Map<String, Value>> = events.iter().map(fields).collect();
    assert_eq!(
        got,
        vec![
            event(&[
                ("time", "2024-05-01 10:00:00.123"),
                ("level", "ERROR"),
                (
                    "msg",
                    "request failed\njava.lang.IllegalStateException: boom\n\tat com.example.App.handle(App.java:42)\nCaused by: java.io.IOException: disk full\n\t... 2 more"
                ),
            ]),
            event(&[
                ("time", "2024-05-01 10:00:01.000"),
                ("level", "INFO"),
                ("msg", "recovered"),
            ]),
            event(&[
                ("time", "2024-05-01 10:00:02.000"),
                ("level", "WARN"),
                ("msg", "slow\n\tat com.example.Job.run(Job.java:7)"),
            ]),
        ]
    );
    for e in &events {
        assert_eq!(
            e.get("__tag__:__path__").and_then(Value::as_str),
            Some(path.to_str().unwrap())
        );
        let time: u64 = e["__time__"].as_str().unwrap().parse().unwrap();
        assert!(time > 1_700_000_000, "the read time: {time}");
    }
}

/// The `i`-th event of the generated log: a head line and 0 to 39 stack lines.
fn generated_event(i: usize) -> String {
    let mut text = format!("2024-05-01 10:00:00.{i:06} ERROR event {i} failed");
    let frames = (i * 7919) % 40;
    for f in 0..frames {
        text.push_str(&format!(
            "\n\tat com.example.layer{f}.Service{i}.call(Service.java:{})",
            f * 10 + 1
        ));
    }
    text
}

/// Several MiB of multi-line events: the reader's 512 KiB blocks end in the middle of events
/// many times, yet every event comes out whole, once, in order.
#[test]
fn block_boundaries_in_the_middle_of_events_never_cut_lose_or_repeat_them() {
    let sandbox = Sandbox::new();
    let count = 6000;
    let expected: Vec<String> = (0..count).map(generated_event).collect();
    let mut file = fs::File::create(sandbox.path("logs/big.log")).unwrap();
    for text in &expected {
        writeln!(file, "{text}").unwrap();
    }
    drop(file);
    let size = fs::metadata(sandbox.path("logs/big.log")).unwrap().len();
    assert!(size > 4 * 512 * 1024, "only {size} bytes: too few blocks");
    let events = run_once(
        &sandbox,
        "  - Type: processor_split_log_regex\n    SplitRegex: \\d{4}-\\d{2}-\\d{2} .*\n",
    );
    let got: Vec<&str> = events
        .iter()
        .map(|e| e["content"].as_str().unwrap())
        .collect();
    assert_eq!(got.len(), expected.len());
    for (i, (got, want)) in got.iter().zip(&expected).enumerate() {
        assert_eq!(got, want, "event {i}");
    }
}

/// A writer that writes a stack trace in two parts, the second long after the first was read:
/// the trace reaches the flusher as one event.
#[test]
fn a_trace_written_in_two_parts_reaches_the_flusher_whole() {
    let sandbox = Sandbox::new();
    let path = sandbox.path("logs/app.log");
    fs::write(&path, "").unwrap();
    fs::create_dir_all(sandbox.path("plugins")).unwrap();
    sandbox.write_config(
        "p.yaml",
        &format!(
            "inputs:\n  - Type: input_file\n    FilePaths: [\"{}/*.log\"]\nprocessors:\n  - Type: processor_split_log_regex\n    SplitRegex: '\\d{{4}}-.*'\nflushers:\n  - Type: flusher_stdout\n",
            sandbox.path("logs").display()
        ),
    );
    let plugins = sandbox.path("plugins");
    let mut daemon = Daemon::start(&sandbox, Some(&plugins), &[]);
    let append = |text: &str| {
        fs::OpenOptions::new()
            .append(true)
            .open(&path)
            .unwrap()
            .write_all(text.as_bytes())
            .unwrap()
    };
    append("2024-01-01 first\n2024-01-02 second failed\n\tat a.B(B.java:1)\n");
    daemon.wait_line("the first event", |l| {
        l.get("content") == Some("2024-01-01 first")
    });
    // The second event was read in part: it must not have gone out yet.
    assert!(
        !daemon
            .lines()
            .iter()
            .any(|l| l.get("content").is_some_and(|c| c.contains("second"))),
        "half a trace went out: {:?}",
        daemon.lines()
    );
    append("\tat a.C(C.java:2)\n2024-01-03 third\n");
    daemon.wait_line("the whole trace", |l| {
        l.get("content") == Some("2024-01-02 second failed\n\tat a.B(B.java:1)\n\tat a.C(C.java:2)")
    });
    // The last event goes once the writer is quiet (the reader's flush timeout).
    daemon.wait_line("the last event", |l| {
        l.get("content") == Some("2024-01-03 third")
    });
    daemon.terminate();
    let contents: Vec<String> = daemon
        .lines()
        .iter()
        .filter_map(|l| l.get("content").map(str::to_owned))
        .collect();
    assert_eq!(
        contents,
        [
            "2024-01-01 first",
            "2024-01-02 second failed\n\tat a.B(B.java:1)\n\tat a.C(C.java:2)",
            "2024-01-03 third"
        ],
        "every line once, in order"
    );
}

#[test]
fn regex_accelerate_cuts_parses_filters_and_times_blocks() {
    let sandbox = Sandbox::new();
    fs::write(
        sandbox.path("logs/app.log"),
        concat!(
            "\tat a fragment before the first event\n",
            "[2022-07-07 10:43:27] [ERROR] java.lang.Exception: boom\n",
            "    at a.b.C.run(C.java:1)\n",
            "[2022-07-07 10:43:28] [DEBUG] noise\n",
            "[2022-07-07 10:43:29] [WARN] slow\n",
        ),
    )
    .unwrap();
    let events = run_once(
        &sandbox,
        r#"  - Type: processor_regex_accelerate
    LogBeginRegex: \[\d+-\d+-\d+ \d+:\d+:\d+\].*
    Regex: \[([^\]]+)\] \[(\w+)\] (.*)
    Keys: [time, level, msg]
    FilterKey: [level]
    FilterRegex: [ERROR|WARN]
    TimeFormat: "%Y-%m-%d %H:%M:%S"
    AdjustTimezone: true
    LogTimezone: GMT+08:00
"#,
    );
    let got: Vec<(Map<String, Value>, &str)> = events
        .iter()
        .map(|e| (fields(e), e["__time__"].as_str().unwrap()))
        .collect();
    assert_eq!(
        got,
        vec![
            (
                event(&[
                    ("time", "2022-07-07 10:43:27"),
                    ("level", "ERROR"),
                    (
                        "msg",
                        "java.lang.Exception: boom\n    at a.b.C.run(C.java:1)"
                    ),
                ]),
                "1657161807"
            ),
            (
                event(&[
                    ("time", "2022-07-07 10:43:29"),
                    ("level", "WARN"),
                    ("msg", "slow"),
                ]),
                "1657161809"
            ),
        ]
    );
}

/// A bad option of a split processor: `validate` names the file, the field and the value, and
/// exits 1.
#[test]
fn validate_names_the_bad_split_option() {
    let sandbox = Sandbox::new();
    let config = common::file_pipeline(
        &sandbox,
        "  - Type: processor_split_log_regex\n    SplitRegex: '(unclosed'\n  - Type: processor_split_char\n    SplitSep: ab\n",
    );
    let file = sandbox.path("bad.yaml");
    fs::write(&file, config).unwrap();
    let output = std::process::Command::new(common::tailrace_bin())
        .arg("validate")
        .arg(&file)
        .stdin(std::process::Stdio::null())
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert_eq!(output.status.code(), Some(1), "{stdout}");
    let file = file.display().to_string();
    for expected in [
        format!("{file}: processors[0].SplitRegex: \"(unclosed\" is not a valid regex"),
        format!("{file}: processors[1].SplitSep: \"ab\": processor_split_char takes a single-byte separator"),
    ] {
        assert!(stdout.contains(&expected), "missing {expected:?} in:\n{stdout}");
    }
}
