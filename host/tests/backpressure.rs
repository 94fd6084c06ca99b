//! A flusher that cannot write for 30 s: reading pauses, memory stays bounded, and every line
//! arrives once the flusher can write again. The stalled destination is a real FIFO that the
//! test does not read from (flusher_file blocks in write(2) once the pipe buffer is full).

mod common;

use std::collections::HashSet;
use std::fs::{File, OpenOptions};
use std::io::{Read, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// Linux's O_NONBLOCK: open the FIFO's read end without waiting for a writer.
const O_NONBLOCK: i32 = 0o4000;
const LINES: usize = 600_000;
const STALL: Duration = Duration::from_secs(30);
const RSS_CAP_KIB: u64 = 64 * 1024;

struct Daemon(Child);

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// The daemon on `root`'s conf/, data/ and (empty) plugins/ dirs, output discarded.
fn tailrace(root: &Path) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_tailrace"));
    cmd.args(["--config-dir", root.join("conf").to_str().unwrap()])
        .args(["--data-dir", root.join("data").to_str().unwrap()])
        .args(["--plugin-dir", root.join("plugins").to_str().unwrap()])
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    cmd
}

#[test]
fn stalled_flusher_pauses_reading_and_loses_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path();
    for dir in ["conf", "data", "logs", "plugins"] {
        std::fs::create_dir_all(root.join(dir)).unwrap();
    }
    let log = root.join("logs/app.log");
    {
        let mut f = File::create(&log).unwrap();
        let mut buf = String::new();
        for i in 0..LINES {
            buf.push_str(&format!("seq={i:08} {}\n", "x".repeat(90)));
        }
        f.write_all(buf.as_bytes()).unwrap();
    }
    let log_size = std::fs::metadata(&log).unwrap().len();
    let fifo = root.join("out.fifo");
    assert!(Command::new("mkfifo")
        .arg(&fifo)
        .status()
        .unwrap()
        .success());
    // Open the read end first (non-blocking), so that the daemon's open for writing succeeds;
    // then read nothing for STALL.
    let reader = OpenOptions::new()
        .read(true)
        .custom_flags(O_NONBLOCK)
        .open(&fifo)
        .unwrap();
    std::fs::write(
        root.join("conf/stall.yaml"),
        format!(
            "inputs:\n  - Type: input_file\n    FilePaths: [{}]\n    TailingAllMatchedFiles: true\nflushers:\n  - Type: flusher_file\n    FilePath: {}\n",
            log.display(),
            fifo.display()
        ),
    )
    .unwrap();
    let daemon = Daemon(tailrace(root).spawn().unwrap());
    let pid = daemon.0.id();

    // During the stall: reading stops well before the end of the file, and RSS stays bounded.
    let stall_started = Instant::now();
    let mut max_rss = 0;
    let mut offsets = Vec::new();
    while stall_started.elapsed() < STALL {
        std::thread::sleep(Duration::from_millis(500));
        max_rss = max_rss.max(common::status_kib(pid, "VmRSS"));
        if let Some(pos) = common::read_offset(pid, &log) {
            offsets.push(pos);
        }
    }
    assert!(max_rss > 0, "could not read the daemon's RSS");
    assert!(
        max_rss < RSS_CAP_KIB,
        "RSS reached {max_rss} KiB during the stall (cap {RSS_CAP_KIB} KiB)"
    );
    let last_half = &offsets[offsets.len() / 2..];
    assert!(!last_half.is_empty(), "the daemon never opened the log");
    assert!(
        last_half.iter().all(|&p| p == last_half[0]),
        "reading did not pause during the stall: offsets {last_half:?}"
    );
    assert!(
        last_half[0] < log_size / 2,
        "reading paused only at {} of {log_size} bytes",
        last_half[0]
    );

    // The flusher can write again: every line arrives.
    let mut seen = HashSet::new();
    let mut reader = reader;
    let mut pending: Vec<u8> = Vec::new();
    let mut chunk = vec![0u8; 1 << 16];
    let deadline = Instant::now() + Duration::from_secs(60);
    while seen.len() < LINES {
        assert!(
            Instant::now() < deadline,
            "only {} of {LINES} lines arrived after the stall",
            seen.len()
        );
        match reader.read(&mut chunk) {
            Ok(0) => std::thread::sleep(Duration::from_millis(5)),
            Ok(n) => {
                pending.extend_from_slice(&chunk[..n]);
                let complete = pending
                    .iter()
                    .rposition(|&b| b == b'\n')
                    .map_or(0, |p| p + 1);
                for line in pending[..complete]
                    .split(|&b| b == b'\n')
                    .filter(|l| !l.is_empty())
                {
                    let v: serde_json::Value = serde_json::from_slice(line).expect("a JSON line");
                    let content = v["content"].as_str().unwrap();
                    seen.insert(content[4..12].parse::<usize>().unwrap());
                }
                pending.drain(..complete);
            }
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                std::thread::sleep(Duration::from_millis(5))
            }
            Err(e) => panic!("{e}"),
        }
    }
    assert_eq!(seen.len(), LINES);
}

/// `flusher_file` with `MaxSizeKB` rolls its output: no file passes the size, at most
/// `MaxRolls` rolled files stay, and with enough rolls kept every line is in one of them.
#[test]
fn flusher_file_rolls_by_size() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path();
    for dir in ["conf", "data", "logs", "plugins", "out"] {
        std::fs::create_dir_all(root.join(dir)).unwrap();
    }
    let lines = 20_000;
    let mut text = String::new();
    for i in 0..lines {
        text.push_str(&format!("seq={i:08} {}\n", "y".repeat(40)));
    }
    std::fs::write(root.join("logs/a.log"), text).unwrap();
    std::fs::write(
        root.join("conf/roll.yaml"),
        format!(
            "inputs:\n  - Type: input_file\n    FilePaths: [{}/logs/*.log]\n    TailingAllMatchedFiles: true\nflushers:\n  - Type: flusher_file\n    FilePath: {}/out/out.jsonl\n    MaxSizeKB: 256\n    MaxRolls: 100\n",
            root.display(),
            root.display()
        ),
    )
    .unwrap();
    let status = tailrace(root).arg("--once").status().unwrap();
    assert!(status.success());
    let mut seen = HashSet::new();
    let mut files = 0;
    for entry in std::fs::read_dir(root.join("out")).unwrap().flatten() {
        files += 1;
        let size = entry.metadata().unwrap().len();
        assert!(
            size <= 256 * 1024,
            "{} is {size} bytes",
            entry.path().display()
        );
        for line in std::fs::read_to_string(entry.path()).unwrap().lines() {
            let v: serde_json::Value = serde_json::from_str(line).unwrap();
            seen.insert(
                v["content"].as_str().unwrap()[4..12]
                    .parse::<usize>()
                    .unwrap(),
            );
        }
    }
    assert!(files > 2, "only {files} output files: nothing rolled");
    assert_eq!(seen.len(), lines);
}

/// One pipeline whose flusher is stalled does not stall another: both are served by the one
/// FileServer thread, which never blocks on a full queue.
#[test]
fn a_stalled_pipeline_does_not_stall_the_others() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path();
    for dir in ["conf", "data", "slow", "fast", "plugins"] {
        std::fs::create_dir_all(root.join(dir)).unwrap();
    }
    let lines = 200_000;
    for dir in ["slow", "fast"] {
        let mut text = String::new();
        for i in 0..lines {
            text.push_str(&format!("seq={i:08} {}\n", "z".repeat(60)));
        }
        std::fs::write(root.join(dir).join("a.log"), text).unwrap();
    }
    let fifo = root.join("slow.fifo");
    assert!(Command::new("mkfifo")
        .arg(&fifo)
        .status()
        .unwrap()
        .success());
    let _reader = OpenOptions::new()
        .read(true)
        .custom_flags(O_NONBLOCK)
        .open(&fifo)
        .unwrap();
    let out = root.join("fast.jsonl");
    for (name, dir, target) in [("slow", "slow", &fifo), ("fast", "fast", &out)] {
        std::fs::write(
            root.join(format!("conf/{name}.yaml")),
            format!(
                "inputs:\n  - Type: input_file\n    FilePaths: [{}/{dir}/*.log]\n    TailingAllMatchedFiles: true\nflushers:\n  - Type: flusher_file\n    FilePath: {}\n",
                root.display(),
                target.display()
            ),
        )
        .unwrap();
    }
    let _daemon = Daemon(tailrace(root).spawn().unwrap());
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let text = std::fs::read_to_string(&out).unwrap_or_default();
        let complete = text.lines().filter(|l| l.ends_with('}')).count();
        if complete == lines {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the fast pipeline delivered {complete} of {lines} lines while the slow one was stalled"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}
