//! File collection at scale, on the real daemon: thousands of tailed files cost memory and CPU
//! for what is being read, not for what is idle; one inotify instance serves them all; and a
//! glob over a tree with symlink loops finds each file once and never hangs the daemon.
//!
//! What is measured comes from /proc: peak RSS (`VmHWM`), CPU time (`utime + stime` of
//! /proc/PID/stat), the daemon's inotify descriptors and their watches (/proc/PID/fdinfo). What
//! is delivered comes from `flusher_file`'s JSON lines; each written line carries its file and
//! a sequence number, and every one must arrive (exactly once where the test says so).
//!
//! The plugin libraries are not needed: the daemon gets an empty `--plugin-dir`. The tests run
//! one at a time (a lock): they measure CPU on a small machine.

mod common;

use std::collections::HashMap;
use std::fs::{self, OpenOptions};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// The tests of this file run one at a time.
static SERIAL: Mutex<()> = Mutex::new(());

const DIRS: usize = 50;
const FILES_PER_DIR: usize = 100;
/// Peak RSS allowed for 5,000 tailed files.
const RSS_CAP_KIB: u64 = 64 * 1024;
/// Share of one core the idle daemon may use.
const IDLE_CPU_CAP: f64 = 0.02;
/// How long the idle CPU is measured.
const IDLE_WINDOW: Duration = Duration::from_secs(10);

/// A running daemon, killed on drop; its stderr is kept in a file for failure messages.
struct Daemon {
    child: Child,
    stderr: PathBuf,
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Daemon {
    fn start(root: &Path) -> Daemon {
        let stderr = root.join("daemon.stderr");
        let child = Command::new(env!("CARGO_BIN_EXE_tailrace"))
            .args(["--config-dir", root.join("conf").to_str().unwrap()])
            .args(["--data-dir", root.join("data").to_str().unwrap()])
            .args(["--plugin-dir", root.join("plugins").to_str().unwrap()])
            .args(["--log-level", "info"])
            .env_remove("RUST_LOG")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(fs::File::create(&stderr).unwrap())
            .spawn()
            .expect("start tailrace");
        Daemon { child, stderr }
    }

    fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The end of its log, for failure messages.
    fn log_tail(&self) -> String {
        let text = fs::read_to_string(&self.stderr).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(30)..].join("\n")
    }

    /// `VmHWM` (peak resident set) in KiB.
    fn peak_rss_kib(&self) -> u64 {
        common::status_kib(self.pid(), "VmHWM")
    }

    /// utime + stime, in clock ticks.
    fn cpu_ticks(&self) -> u64 {
        common::cpu_ticks(self.pid())
    }

    /// Share of one core used over `window`.
    fn cpu_share(&self, window: Duration) -> f64 {
        let ticks_per_second = clock_ticks_per_second();
        let before = self.cpu_ticks();
        let started = Instant::now();
        std::thread::sleep(window);
        let used = (self.cpu_ticks() - before) as f64 / ticks_per_second;
        used / started.elapsed().as_secs_f64()
    }

    /// Its inotify instances, with the number of watches of each.
    fn inotify_watches(&self) -> Vec<usize> {
        let mut out = Vec::new();
        for fd in fs::read_dir(format!("/proc/{}/fd", self.pid()))
            .unwrap()
            .flatten()
        {
            let target = fs::read_link(fd.path()).unwrap_or_default();
            if target.to_string_lossy() != "anon_inode:inotify" {
                continue;
            }
            let info = fs::read_to_string(format!(
                "/proc/{}/fdinfo/{}",
                self.pid(),
                fd.file_name().to_string_lossy()
            ))
            .unwrap_or_default();
            out.push(
                info.lines()
                    .filter(|l| l.starts_with("inotify wd:"))
                    .count(),
            );
        }
        out
    }

    /// SIGTERM; waits up to `limit` for the exit.
    fn terminate_within(&mut self, limit: Duration) -> Duration {
        let started = Instant::now();
        let sent = Command::new("kill")
            .arg("-TERM")
            .arg(self.pid().to_string())
            .status()
            .unwrap();
        assert!(sent.success());
        loop {
            if self.child.try_wait().unwrap().is_some() {
                return started.elapsed();
            }
            assert!(
                started.elapsed() < limit,
                "the daemon did not exit within {limit:?} of SIGTERM\n{}",
                self.log_tail()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

fn clock_ticks_per_second() -> f64 {
    let out = Command::new("getconf").arg("CLK_TCK").output().unwrap();
    String::from_utf8(out.stdout)
        .unwrap()
        .trim()
        .parse()
        .unwrap()
}

/// conf/, data/, an empty plugins/ and out/ under a tempdir.
fn sandbox() -> tempfile::TempDir {
    let tmp = tempfile::tempdir().unwrap();
    for dir in ["conf", "data", "plugins", "out", "logs"] {
        fs::create_dir_all(tmp.path().join(dir)).unwrap();
    }
    tmp
}

/// One pipeline: `paths` → flusher_file into out/out.jsonl.
fn write_pipeline(root: &Path, name: &str, paths: &[String]) {
    let config = serde_json::json!({
        "inputs": [{"Type": "input_file", "FilePaths": paths, "TailingAllMatchedFiles": true}],
        "flushers": [{"Type": "flusher_file", "FilePath": root.join("out/out.jsonl")}],
    });
    fs::write(root.join("conf").join(name), config.to_string()).unwrap();
}

fn append(path: &Path, text: &str) {
    OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .unwrap()
        .write_all(text.as_bytes())
        .unwrap();
}

/// The delivered lines so far (`<file id> seq=<n>`), counted, with when each was first seen.
struct Delivered {
    path: PathBuf,
    read: u64,
    pending: Vec<u8>,
    counts: HashMap<String, usize>,
    first_seen: HashMap<String, Instant>,
}

impl Delivered {
    fn new(path: PathBuf) -> Delivered {
        Delivered {
            path,
            read: 0,
            pending: Vec::new(),
            counts: HashMap::new(),
            first_seen: HashMap::new(),
        }
    }

    /// Reads what flusher_file appended since the last call.
    fn refresh(&mut self) {
        let Ok(mut file) = fs::File::open(&self.path) else {
            return;
        };
        use std::io::Seek;
        file.seek(std::io::SeekFrom::Start(self.read)).unwrap();
        let mut new = Vec::new();
        file.read_to_end(&mut new).unwrap();
        self.read += new.len() as u64;
        self.pending.extend_from_slice(&new);
        let complete = self
            .pending
            .iter()
            .rposition(|&b| b == b'\n')
            .map_or(0, |p| p + 1);
        let now = Instant::now();
        for line in self.pending[..complete]
            .split(|&b| b == b'\n')
            .filter(|l| !l.is_empty())
        {
            let v: serde_json::Value = serde_json::from_slice(line).expect("a JSON line");
            let content = v["content"].as_str().expect("a content field").to_owned();
            self.first_seen.entry(content.clone()).or_insert(now);
            *self.counts.entry(content).or_default() += 1;
        }
        self.pending.drain(..complete);
    }

    /// Waits until every one of `expected` arrived; fails after `limit`.
    fn wait_all(&mut self, expected: &[String], limit: Duration, daemon: &Daemon) {
        let deadline = Instant::now() + limit;
        loop {
            self.refresh();
            let missing: Vec<&String> = expected
                .iter()
                .filter(|e| !self.counts.contains_key(*e))
                .collect();
            if missing.is_empty() {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "{} of {} lines not delivered within {limit:?}, e.g. {:?}\n{}",
                missing.len(),
                expected.len(),
                &missing[..missing.len().min(5)],
                daemon.log_tail()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

/// 5,000 one-line files in 50 directories, one pipeline: every line arrives, peak RSS stays
/// small, one inotify instance watches the 50 directories, a line appended to an idle file
/// arrives at once (inotify, not the 10 s sweep), and the caught-up daemon is idle.
#[test]
fn five_thousand_files_in_fifty_directories() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let tmp = sandbox();
    let root = tmp.path();
    let mut expected = Vec::new();
    let mut files = Vec::new();
    for d in 0..DIRS {
        let dir = root.join(format!("logs/d{d:02}"));
        fs::create_dir_all(&dir).unwrap();
        for f in 0..FILES_PER_DIR {
            let id = format!("d{d:02}f{f:03}");
            let path = dir.join(format!("{id}.log"));
            let line = format!("{id} seq=0");
            append(&path, &format!("{line}\n"));
            expected.push(line);
            files.push((id, path));
        }
    }
    write_pipeline(
        root,
        "many.json",
        &[format!("{}/logs/*/*.log", root.display())],
    );
    let mut daemon = Daemon::start(root);
    let mut delivered = Delivered::new(root.join("out/out.jsonl"));
    let started = Instant::now();
    delivered.wait_all(&expected, Duration::from_secs(60), &daemon);
    eprintln!(
        "{} files: every line delivered in {:.1}s",
        files.len(),
        started.elapsed().as_secs_f64()
    );

    // Written again while the daemon tails them: a second line in every file.
    for (id, path) in &files {
        let line = format!("{id} seq=1");
        append(path, &format!("{line}\n"));
        expected.push(line);
    }
    delivered.wait_all(&expected, Duration::from_secs(60), &daemon);
    assert!(
        delivered.counts.values().all(|&n| n == 1),
        "lines delivered twice"
    );

    let instances = daemon.inotify_watches();
    assert_eq!(
        instances.len(),
        1,
        "inotify instances of the daemon: {instances:?} (watches of each)"
    );
    assert!(
        instances[0] >= DIRS,
        "{} inotify watches for {DIRS} log directories",
        instances[0]
    );

    // Idle: let the last deliveries and checkpoint writes settle, then measure.
    std::thread::sleep(Duration::from_secs(3));
    let idle = daemon.cpu_share(IDLE_WINDOW);
    eprintln!(
        "idle CPU with {} files: {:.2}% of a core",
        files.len(),
        idle * 100.0
    );
    assert!(
        idle < IDLE_CPU_CAP,
        "idle daemon used {:.2}% of a core over {IDLE_WINDOW:?} (cap {:.0}%)",
        idle * 100.0,
        IDLE_CPU_CAP * 100.0
    );

    // An idle file written to is read at once: inotify's modify event, not the sweep.
    let mut latencies = Vec::new();
    for (id, path) in files.iter().step_by(997).take(5) {
        let line = format!("{id} seq=2");
        let written = Instant::now();
        append(path, &format!("{line}\n"));
        expected.push(line.clone());
        delivered.wait_all(&expected, Duration::from_secs(30), &daemon);
        latencies.push(delivered.first_seen[&line].duration_since(written));
    }
    eprintln!("latency of a line appended to an idle file: {latencies:?}");
    assert!(
        latencies.iter().all(|l| *l < Duration::from_secs(3)),
        "appends to idle files took {latencies:?} to arrive (inotify should make it immediate)"
    );

    let peak = daemon.peak_rss_kib();
    eprintln!("peak RSS: {peak} KiB");
    assert!(
        peak < RSS_CAP_KIB,
        "peak RSS {peak} KiB with {} files (cap {RSS_CAP_KIB} KiB)",
        files.len()
    );
    daemon.terminate_within(Duration::from_secs(10));
}

/// `**` over a tree with `sub/loop -> ..` and `sub/loop2 -> ../sub`: every real file's lines
/// arrive once (also after the next rediscovery), and SIGTERM ends the daemon promptly.
#[test]
fn symlink_loops_are_walked_once_and_never_hang() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let tmp = sandbox();
    let root = tmp.path();
    let top = root.join("logs/tree");
    fs::create_dir_all(top.join("sub/deeper")).unwrap();
    std::os::unix::fs::symlink("..", top.join("sub/loop")).unwrap();
    std::os::unix::fs::symlink("../sub", top.join("sub/loop2")).unwrap();
    std::os::unix::fs::symlink("../..", top.join("sub/deeper/up")).unwrap();
    let mut expected = Vec::new();
    for (id, rel) in [
        ("top", "top.log"),
        ("sub", "sub/sub.log"),
        ("deeper", "sub/deeper/deeper.log"),
    ] {
        let mut text = String::new();
        for seq in 0..200 {
            let line = format!("{id} seq={seq}");
            text.push_str(&line);
            text.push('\n');
            expected.push(line);
        }
        append(&top.join(rel), &text);
    }
    write_pipeline(root, "loops.json", &[format!("{}/**/*.log", top.display())]);
    let mut daemon = Daemon::start(root);
    let mut delivered = Delivered::new(root.join("out/out.jsonl"));
    delivered.wait_all(&expected, Duration::from_secs(30), &daemon);

    // Lines written later arrive too: the daemon is not stuck walking.
    for id in ["top", "sub", "deeper"] {
        let line = format!("{id} seq=new");
        let rel = match id {
            "top" => "top.log",
            "sub" => "sub/sub.log",
            _ => "sub/deeper/deeper.log",
        };
        append(&top.join(rel), &format!("{line}\n"));
        expected.push(line);
    }
    delivered.wait_all(&expected, Duration::from_secs(30), &daemon);
    // Past the next full rediscovery (every 10 s): still no file tracked twice.
    std::thread::sleep(Duration::from_secs(12));
    delivered.refresh();
    let twice: Vec<_> = delivered.counts.iter().filter(|(_, &n)| n != 1).collect();
    assert!(twice.is_empty(), "delivered more than once: {twice:?}");
    assert_eq!(delivered.counts.len(), expected.len());

    let took = daemon.terminate_within(Duration::from_secs(5));
    eprintln!("exited {took:?} after SIGTERM");
}

/// Linux's O_NONBLOCK: open a FIFO's read end without waiting for a writer.
const O_NONBLOCK: i32 = 0o4000;

/// 500 files of 100 KB behind a flusher that cannot write (a FIFO nobody reads yet): a full
/// queue holds up one batch per pipeline, not a block per file, so memory stays small; once
/// the FIFO is read, every line arrives.
#[test]
fn a_stalled_pipeline_holds_up_one_batch_not_one_per_file() {
    use std::os::unix::fs::OpenOptionsExt;
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    const FILES: usize = 500;
    const LINES: usize = 1000;
    let tmp = sandbox();
    let root = tmp.path();
    let padding = "z".repeat(90);
    for f in 0..FILES {
        let mut text = String::with_capacity(LINES * 100);
        for seq in 0..LINES {
            text.push_str(&format!("f{f:03} seq={seq:04} {padding}\n"));
        }
        fs::write(root.join(format!("logs/f{f:03}.log")), text).unwrap();
    }
    let fifo = root.join("out.fifo");
    assert!(Command::new("mkfifo")
        .arg(&fifo)
        .status()
        .unwrap()
        .success());
    let mut reader = OpenOptions::new()
        .read(true)
        .custom_flags(O_NONBLOCK)
        .open(&fifo)
        .unwrap();
    let config = serde_json::json!({
        "inputs": [{"Type": "input_file", "FilePaths": [format!("{}/logs/*.log", root.display())],
                    "TailingAllMatchedFiles": true}],
        "flushers": [{"Type": "flusher_file", "FilePath": fifo}],
    });
    fs::write(root.join("conf/stall.json"), config.to_string()).unwrap();
    let mut daemon = Daemon::start(root);

    // Stalled: every file is found and the queue fills, then nothing moves.
    std::thread::sleep(Duration::from_secs(8));
    let peak = daemon.peak_rss_kib();
    eprintln!("peak RSS with {FILES} files behind a stalled flusher: {peak} KiB");
    assert!(
        peak < RSS_CAP_KIB,
        "peak RSS {peak} KiB with {FILES} files behind a stalled flusher (cap {RSS_CAP_KIB} KiB)\n{}",
        daemon.log_tail()
    );
    let stalled = daemon.cpu_share(Duration::from_secs(5));
    eprintln!("CPU while stalled: {:.2}% of a core", stalled * 100.0);
    assert!(
        stalled < 0.10,
        "{:.1}% of a core spent waiting for a stalled flusher",
        stalled * 100.0
    );

    // The FIFO is read: every line arrives, once.
    let mut seen = vec![vec![false; LINES]; FILES];
    let mut count = 0;
    let mut pending: Vec<u8> = Vec::new();
    let mut chunk = vec![0u8; 1 << 16];
    let deadline = Instant::now() + Duration::from_secs(120);
    while count < FILES * LINES {
        assert!(
            Instant::now() < deadline,
            "only {count} of {} lines arrived once the flusher could write\n{}",
            FILES * LINES,
            daemon.log_tail()
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
                    let f: usize = content[1..4].parse().unwrap();
                    let seq: usize = content[9..13].parse().unwrap();
                    assert!(!seen[f][seq], "{content:?} arrived twice");
                    seen[f][seq] = true;
                    count += 1;
                }
                pending.drain(..complete);
            }
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                std::thread::sleep(Duration::from_millis(5))
            }
            Err(e) => panic!("{e}"),
        }
    }
    daemon.terminate_within(Duration::from_secs(10));
}
