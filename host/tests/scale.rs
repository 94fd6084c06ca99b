//! Scale: the acceptance tests of bus mode (issue 8).
//!
//! Before bus mode every pipeline had a processor thread, a thread per flusher and an inotify
//! instance of its own: 1,000 pipelines cost 2,130 threads, 573 MB and 90 % of a core doing
//! nothing, and ran out of inotify instances. Bus mode promises a fixed pool of processor
//! threads (`--process-threads`), a fixed flusher runner pool that a blocked flusher never
//! holds, per-pipeline process queues served by priority (`global.Priority`: 1 highest, then 2,
//! 3, and 0/absent lowest), and one inotify instance for the whole FileServer.
//!
//! Every number comes from /proc (threads, VmHWM, utime+stime, descriptors) or from when a line
//! shows up at the output. Each test measures everything it can before it fails, prints every
//! measurement (`--nocapture` shows them as they come) and fails with the list of what missed
//! its bound, so that a failure says what was measured, not just that something was off.
//!
//! The daemon runs with an empty `--plugin-dir`: no plugin library loads, so the threads and
//! memory counted are the host's own.
//!
//! Run: `cargo test --release -p tailrace-host --test scale -- --nocapture` (about 2 min 15 s
//! on the binary before bus mode, on a loaded 2-core machine). The tests measure CPU and time,
//! so they take a lock and run one at a time whatever `--test-threads` says. The bounds leave
//! room for a noisy machine, but a machine busy with other builds can still push a timing
//! (first lines within 5 s, idle CPU under 2 %) over its bound: the message says by how much.

mod common;

use std::collections::{HashMap, HashSet};
use std::fs::{self, File, OpenOptions};
use std::io::{Read, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use common::{cpu_ticks, read_offset, status_field, status_kib, Daemon, Sandbox};

/// The tests measure CPU time, latency and throughput: run them one at a time even when the
/// harness runs tests in parallel, or they would measure each other.
static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());

fn serial() -> std::sync::MutexGuard<'static, ()> {
    ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner())
}

// ---------------------------------------------------------------------------------------------
// Measurements from /proc.

fn threads(pid: u32) -> u64 {
    status_field(pid, "Threads")
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

/// The fewest and the most threads seen over `window` (sampled every 100 ms). The fewest is
/// the steady count: a thread that lives for a moment (a flusher moved off the shared pool
/// while a write blocks, a pipeline being stopped) does not raise it.
fn thread_range(pid: u32, window: Duration) -> (u64, u64) {
    let end = Instant::now() + window;
    let (mut min, mut max) = (u64::MAX, 0);
    while Instant::now() < end {
        let n = threads(pid);
        min = min.min(n);
        max = max.max(n);
        std::thread::sleep(Duration::from_millis(100));
    }
    (min, max)
}

/// Clock ticks per second, from `getconf CLK_TCK`; 100 (Linux's USER_HZ on x86 and arm64)
/// when getconf is not there. Says which.
fn clk_tck() -> (u64, &'static str) {
    Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .and_then(|s| s.trim().parse().ok())
        .map(|t| (t, "getconf CLK_TCK"))
        .unwrap_or((100, "assumed: getconf failed"))
}

/// The daemon's descriptors that are inotify instances.
fn inotify_instances(pid: u32) -> usize {
    let Ok(fds) = fs::read_dir(format!("/proc/{pid}/fd")) else {
        return 0;
    };
    fds.flatten()
        .filter(|fd| {
            fs::read_link(fd.path())
                .map(|t| t.as_os_str() == "anon_inode:inotify")
                .unwrap_or(false)
        })
        .count()
}

/// write(2)'s system call number, for reading /proc/PID/task/TID/syscall.
#[cfg(target_arch = "x86_64")]
const SYS_WRITE: Option<u64> = Some(1);
#[cfg(target_arch = "aarch64")]
const SYS_WRITE: Option<u64> = Some(64);
#[cfg(not(any(target_arch = "x86_64", target_arch = "aarch64")))]
const SYS_WRITE: Option<u64> = None;

/// Whether one of the daemon's threads is blocked right now in write(2) on a descriptor of
/// `path` (from /proc/PID/task/TID/syscall: the call number, then its arguments in hex, the
/// first being the descriptor). `None` when this cannot be told on this architecture.
fn blocked_writing_to(pid: u32, path: &Path) -> Option<bool> {
    let sys_write = SYS_WRITE?;
    let tasks = fs::read_dir(format!("/proc/{pid}/task")).ok()?;
    for task in tasks.flatten() {
        let Ok(call) = fs::read_to_string(task.path().join("syscall")) else {
            continue;
        };
        let mut parts = call.split_whitespace();
        if parts.next().and_then(|n| n.parse::<u64>().ok()) != Some(sys_write) {
            continue;
        }
        let Some(fd) = parts
            .next()
            .and_then(|a| u64::from_str_radix(a.trim_start_matches("0x"), 16).ok())
        else {
            continue;
        };
        if fs::read_link(format!("/proc/{pid}/fd/{fd}"))
            .ok()
            .as_deref()
            == Some(path)
        {
            return Some(true);
        }
    }
    Some(false)
}

// ---------------------------------------------------------------------------------------------
// Reporting: every measurement is printed and kept; failed bounds are collected, and the test
// fails at its end with all of them (and every measurement) in the message.

struct Report {
    test: &'static str,
    lines: Vec<String>,
    failures: Vec<String>,
}

impl Report {
    fn new(test: &'static str) -> Report {
        Report {
            test,
            lines: Vec::new(),
            failures: Vec::new(),
        }
    }

    /// A measurement with no bound of its own.
    fn note(&mut self, what: String) {
        eprintln!("[{}] {what}", self.test);
        self.lines.push(what);
    }

    /// A measurement and whether it kept its bound.
    fn check(&mut self, ok: bool, what: String) {
        let what = format!("{} {what}", if ok { "ok  " } else { "FAIL" });
        if !ok {
            self.failures.push(what.clone());
        }
        self.note(what);
    }

    /// Ends the test now if the daemon is gone (every later number would be meaningless).
    fn alive(&mut self, daemon: &mut Daemon, when: &str) {
        if let Ok(Some(status)) = daemon.child.try_wait() {
            self.fatal(format!("the daemon exited ({status}) {when}"), daemon);
        }
    }

    /// A failure that ends the test now (nothing meaningful can be measured after it).
    fn fatal(&mut self, what: String, daemon: &Daemon) -> ! {
        self.check(false, what);
        let diagnostics = daemon.diagnostics();
        self.finish_with(&diagnostics);
        unreachable!()
    }

    fn finish(self) {
        self.finish_with("")
    }

    fn finish_with(&self, diagnostics: &str) {
        if !self.failures.is_empty() {
            panic!(
                "{}: {} bound(s) missed:\n  {}\n\nall measurements:\n  {}\n{diagnostics}",
                self.test,
                self.failures.len(),
                self.failures.join("\n  "),
                self.lines.join("\n  ")
            );
        }
    }
}

/// The empty plugin dir, so that no plugin library loads.
fn plugin_dir(sandbox: &Sandbox) -> PathBuf {
    let dir = sandbox.path("plugins");
    fs::create_dir_all(&dir).unwrap();
    dir
}

fn append(path: &Path, text: &[u8]) {
    let mut f = OpenOptions::new().append(true).open(path).unwrap();
    f.write_all(text).unwrap();
}

fn mkfifo(path: &Path) {
    assert!(Command::new("mkfifo")
        .arg(path)
        .status()
        .expect("run mkfifo")
        .success());
}

/// Linux's O_NONBLOCK: opens a FIFO's read end without waiting for a writer.
const O_NONBLOCK: i32 = 0o4000;

/// The start of the `content` field of a stdout-format JSON line, up to its first quote
/// (escaped or not): a scan, not a parse, so that many lines are counted quickly. Only the
/// first words of a content are used, and they never hold a quote.
fn content_of(line: &[u8]) -> Option<&[u8]> {
    const KEY: &[u8] = b"\"content\":\"";
    let at = line.windows(KEY.len()).position(|w| w == KEY)? + KEY.len();
    let len = line[at..].iter().position(|&b| b == b'"')?;
    Some(&line[at..at + len])
}

/// Follows a JSON-lines output (a file flusher_file appends to, or the read end of a FIFO) and
/// counts the distinct sequence numbers of its lines: the second word of `content`, `sNNNN`.
struct Output {
    path: PathBuf,
    file: Option<File>,
    pending: Vec<u8>,
    seen: HashSet<u64>,
    duplicates: u64,
}

impl Output {
    fn file(path: PathBuf) -> Output {
        Output {
            path,
            file: None,
            pending: Vec::new(),
            seen: HashSet::new(),
            duplicates: 0,
        }
    }

    fn fifo(path: PathBuf, reader: File) -> Output {
        Output {
            file: Some(reader),
            ..Output::file(path)
        }
    }

    /// Reads what is there now (never blocks: end of file, or EAGAIN on the FIFO).
    fn poll(&mut self) {
        if self.file.is_none() {
            self.file = File::open(&self.path).ok();
        }
        let Some(file) = &mut self.file else { return };
        let mut chunk = vec![0u8; 1 << 20];
        loop {
            match file.read(&mut chunk) {
                Ok(0) => break,
                Ok(n) => self.pending.extend_from_slice(&chunk[..n]),
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => break,
                Err(e) => panic!("reading {}: {e}", self.path.display()),
            }
        }
        let complete = self
            .pending
            .iter()
            .rposition(|&b| b == b'\n')
            .map_or(0, |p| p + 1);
        for line in self.pending[..complete]
            .split(|&b| b == b'\n')
            .filter(|l| !l.is_empty())
        {
            let seq = content_of(line)
                .and_then(|c| c.split(|&b| b == b' ').nth(1))
                .and_then(|w| std::str::from_utf8(w.strip_prefix(b"s")?).ok())
                .and_then(|n| n.parse::<u64>().ok());
            match seq {
                Some(seq) if !self.seen.insert(seq) => self.duplicates += 1,
                Some(_) => {}
                None => panic!(
                    "{}: an output line without a sequence number: {}",
                    self.path.display(),
                    String::from_utf8_lossy(line)
                ),
            }
        }
        self.pending.drain(..complete);
    }
}

/// Polls `outputs` until each holds `want` distinct sequence numbers or `limit` passed since
/// `since`; returns how long it took (from `since`), or `None` at the limit.
fn wait_outputs(
    outputs: &mut [Output],
    want: usize,
    since: Instant,
    limit: Duration,
) -> Option<Duration> {
    loop {
        for o in outputs.iter_mut() {
            o.poll();
        }
        if outputs.iter().all(|o| o.seen.len() >= want) {
            return Some(since.elapsed());
        }
        if since.elapsed() >= limit {
            return None;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

fn counts(outputs: &[Output]) -> String {
    outputs
        .iter()
        .map(|o| o.seen.len().to_string())
        .collect::<Vec<_>>()
        .join(", ")
}

// ---------------------------------------------------------------------------------------------
// a. A thousand pipelines over ten thousand files.

const FILES_PER_PIPELINE: usize = 10;
const LINES_PER_FILE: usize = 5;
/// Sequence numbers of lines appended during the reload start here (the initial ones are
/// below `LINES_PER_FILE`).
const APPENDED_BASE: usize = 100_000;
/// The reload phase: a line to every pipeline every `ROUND`, for `ROUNDS` rounds; the config
/// of pipeline 0 is rewritten at round `RELOAD_ROUND`.
const ROUNDS: usize = 30;
const ROUND: Duration = Duration::from_millis(200);
const RELOAD_ROUND: usize = 10;

fn pipeline_name(p: usize) -> String {
    format!("p{p:04}")
}

/// One log line: `pPPPP fFF sSSSSSS` (pipeline, file, sequence number), then padding.
fn fleet_line(p: usize, f: usize, s: usize) -> String {
    format!("p{p:04} f{f:02} s{s:06} {}\n", "x".repeat(40))
}

/// The key of a line (pipeline, file, sequence) from its content.
fn fleet_key(content: &str) -> Option<(usize, usize, usize)> {
    let mut words = content.split(' ');
    let p = words.next()?.strip_prefix('p')?.parse().ok()?;
    let f = words.next()?.strip_prefix('f')?.parse().ok()?;
    let s = words.next()?.strip_prefix('s')?.parse().ok()?;
    Some((p, f, s))
}

/// The config of pipeline `p`: its own directory's `*.log` into flusher_stdout. The files
/// exist before the daemon starts and are far smaller than `TailSizeKB` (1 MiB), so they are
/// read from their start without `TailingAllMatchedFiles`. flusher_stdout because one stream
/// stamped on arrival by the harness gives every line's delivery time; each batch is written
/// under stdout's lock, so lines of different pipelines never interleave.
///
/// `v2` adds a processor that copies the content to `v2`: lines carrying it were processed by
/// the reloaded version.
fn fleet_config(logs: &Path, p: usize, v2: bool) -> String {
    let mut text = format!(
        "inputs:\n  - Type: input_file\n    FilePaths: [{}/{}/*.log]\n",
        logs.display(),
        pipeline_name(p)
    );
    if v2 {
        text.push_str(
            "processors:\n  - Type: processor_parse_regex_native\n    SourceKey: content\n    Regex: '(.*)'\n    Keys: [v2]\n    KeepingSourceWhenParseSucceed: true\n",
        );
    }
    text.push_str("flushers:\n  - Type: flusher_stdout\n");
    text
}

/// One line as it arrived on the daemon's stdout.
struct Arrival {
    key: (usize, usize, usize),
    at: Instant,
    v2: bool,
}

/// A daemon over `n` pipelines, each over a directory of its own with `FILES_PER_PIPELINE`
/// files of `LINES_PER_FILE` lines, and what it printed so far.
struct Fleet {
    n: usize,
    sandbox: Sandbox,
    daemon: Daemon,
    started: Instant,
    cursor: usize,
    arrivals: Vec<Arrival>,
}

impl Fleet {
    fn start(n: usize) -> Fleet {
        let sandbox = Sandbox::new();
        let plugins = plugin_dir(&sandbox);
        let logs = sandbox.path("logs");
        for p in 0..n {
            let dir = logs.join(pipeline_name(p));
            fs::create_dir(&dir).unwrap();
            for f in 0..FILES_PER_PIPELINE {
                let text: String = (0..LINES_PER_FILE).map(|s| fleet_line(p, f, s)).collect();
                fs::write(dir.join(format!("f{f:02}.log")), text).unwrap();
            }
            sandbox.write_config(
                &format!("{}.yaml", pipeline_name(p)),
                &fleet_config(&logs, p, false),
            );
        }
        let started = Instant::now();
        let daemon = Daemon::start(&sandbox, Some(&plugins), &[]);
        Fleet {
            n,
            sandbox,
            daemon,
            started,
            cursor: 0,
            arrivals: Vec::new(),
        }
    }

    fn pid(&self) -> u32 {
        self.daemon.pid()
    }

    /// Takes in what the daemon printed since the last call.
    fn scan(&mut self) {
        let lines = self.daemon.stdout.lock().unwrap();
        for line in &lines[self.cursor..] {
            if let Some(key) = line.get("content").and_then(fleet_key) {
                self.arrivals.push(Arrival {
                    key,
                    at: line.at,
                    v2: line.get("v2").is_some(),
                });
            }
        }
        self.cursor = lines.len();
    }

    /// Waits until `done(arrivals)` or `limit` since `since`; the time it took, or `None`.
    fn wait(
        &mut self,
        since: Instant,
        limit: Duration,
        done: impl Fn(&[Arrival]) -> bool,
    ) -> Option<Duration> {
        loop {
            self.scan();
            if done(&self.arrivals) {
                return Some(since.elapsed());
            }
            if since.elapsed() >= limit {
                return None;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn pipelines_heard_from(&self) -> usize {
        self.arrivals
            .iter()
            .map(|a| a.key.0)
            .collect::<HashSet<_>>()
            .len()
    }

    /// (distinct initial lines delivered, duplicates of them).
    fn initial_delivered(&self) -> (usize, usize) {
        let initial: Vec<_> = self
            .arrivals
            .iter()
            .filter(|a| a.key.2 < APPENDED_BASE)
            .map(|a| a.key)
            .collect();
        let distinct = initial.iter().collect::<HashSet<_>>().len();
        (distinct, initial.len() - distinct)
    }

    fn initial_total(&self) -> usize {
        self.n * FILES_PER_PIPELINE * LINES_PER_FILE
    }

    /// Waits for every initial line; the time since start, or `None` after `limit`.
    fn wait_initial(&mut self, limit: Duration) -> Option<Duration> {
        let total = self.initial_total();
        let started = self.started;
        self.wait(started, limit, |arrivals| {
            arrivals
                .iter()
                .filter(|a| a.key.2 < APPENDED_BASE)
                .map(|a| a.key)
                .collect::<HashSet<_>>()
                .len()
                >= total
        })
    }
}

/// 1,000 pipelines over 10,000 files: every line delivered exactly once; all pipelines
/// delivering within 5 s of start; as many threads as with 10 pipelines; peak RSS under
/// 64 MiB; under 2 % of a core when idle; one inotify instance; and a hot reload of one
/// pipeline while the 999 others keep delivering without a pause.
///
/// Needs bus mode. The binary before it measured here (2-core machine under other load):
/// 32 threads at 10 pipelines, 2,129 at 1,000; VmHWM 5.1 GiB (10,000 tracked files); 41 % of
/// a core idle; 127 inotify instances, one per pipeline until the per-user limit (128 by
/// default; while this test runs on that binary, other inotify users of the same user may
/// find none); the first lines of every pipeline 37 s after start. The reload part passed.
/// Takes over a minute on that binary (10 s of it is the idle measurement).
#[test]
fn thousand_pipelines_ten_thousand_files() {
    let _serial = serial();
    let mut report = Report::new("thousand_pipelines_ten_thousand_files");

    // The same setup at 10 pipelines: the thread count bus mode must not exceed at 1,000.
    let mut small = Fleet::start(10);
    let small_in = small.wait_initial(Duration::from_secs(30));
    report.alive(&mut small.daemon, "with 10 pipelines");
    let (got, _) = small.initial_delivered();
    report.check(
        small_in.is_some(),
        format!(
            "10 pipelines: {got} of {} lines delivered (within 30 s)",
            small.initial_total()
        ),
    );
    let (threads_small, threads_small_max) = thread_range(small.pid(), Duration::from_secs(2));
    report.note(format!(
        "10 pipelines, files read: {threads_small} threads (at most {threads_small_max} over 2 s)"
    ));
    drop(small);

    let mut fleet = Fleet::start(1000);
    report.note(format!(
        "1,000 pipelines × {FILES_PER_PIPELINE} files × {LINES_PER_FILE} lines written; daemon started"
    ));

    // Every pipeline delivers within 5 s of start (measured up to 60 s, to say how late).
    let n = fleet.n;
    let started = fleet.started;
    let first_all = fleet.wait(started, Duration::from_secs(60), |arrivals| {
        arrivals
            .iter()
            .map(|a| a.key.0)
            .collect::<HashSet<_>>()
            .len()
            >= n
    });
    match first_all {
        Some(t) => report.check(
            t <= Duration::from_secs(5),
            format!(
                "all 1,000 pipelines delivered their first lines {:.2} s after start (bound 5 s)",
                t.as_secs_f64()
            ),
        ),
        None => report.check(
            false,
            format!(
                "only {} of 1,000 pipelines delivered anything within 60 s of start (bound 5 s)",
                fleet.pipelines_heard_from()
            ),
        ),
    }

    // Every line, exactly once.
    let all_in = fleet.wait_initial(Duration::from_secs(90));
    let (delivered, duplicates) = fleet.initial_delivered();
    let total = fleet.initial_total();
    report.note(match all_in {
        Some(t) => format!(
            "all {total} lines delivered {:.2} s after start",
            t.as_secs_f64()
        ),
        None => format!("{delivered} of {total} lines delivered within 90 s of start"),
    });
    if delivered < total {
        let got: HashSet<_> = fleet.arrivals.iter().map(|a| a.key).collect();
        let missing: Vec<_> = (0..n)
            .flat_map(|p| {
                (0..FILES_PER_PIPELINE)
                    .flat_map(move |f| (0..LINES_PER_FILE).map(move |s| (p, f, s)))
            })
            .filter(|k| !got.contains(k))
            .take(5)
            .collect();
        // Not fatal: the other numbers are still worth measuring.
        report.check(
            false,
            format!("{} of {total} lines never delivered (first missing (pipeline, file, seq): {missing:?})", total - delivered),
        );
    }
    report.alive(
        &mut fleet.daemon,
        "with 1,000 pipelines, after reading their files",
    );
    report.check(
        duplicates == 0,
        format!("{duplicates} lines delivered more than once (bound 0)"),
    );

    // Threads: independent of the number of pipelines. Bus mode has a fixed set (main, the
    // FileServer and its inotify reader, the processor pool, the flusher runner pool); the
    // slack of 2 allows for threads that exist only for a moment in either measurement (a
    // flusher moved off the shared pool while its write blocks, e.g. when this test's reader
    // of stdout lags, or a stop in progress), which the minimum over 2 s mostly hides anyway.
    let pid = fleet.pid();
    let (threads_big, threads_big_max) = thread_range(pid, Duration::from_secs(2));
    report.check(
        threads_big.abs_diff(threads_small) <= 2,
        format!(
            "1,000 pipelines, files read: {threads_big} threads (at most {threads_big_max} over 2 s) vs {threads_small} with 10 pipelines (bound: equal ± 2)"
        ),
    );

    let hwm = status_kib(pid, "VmHWM");
    report.check(
        hwm > 0 && hwm < 64 * 1024,
        format!(
            "peak RSS (VmHWM) {:.1} MiB after reading 10,000 files, VmRSS now {:.1} MiB (bound < 64 MiB)",
            hwm as f64 / 1024.0,
            status_kib(pid, "VmRSS") as f64 / 1024.0
        ),
    );

    let inotify = inotify_instances(pid);
    report.check(
        inotify == 1,
        format!("{inotify} inotify instances (bound: exactly 1)"),
    );

    // Idle CPU: nothing to read or deliver for 10 s.
    let (tck, tck_source) = clk_tck();
    let printed_before = fleet.daemon.stdout.lock().unwrap().len();
    let ticks_before = cpu_ticks(pid);
    let idle_started = Instant::now();
    std::thread::sleep(Duration::from_secs(10));
    let ticks = cpu_ticks(pid) - ticks_before;
    let idle = idle_started.elapsed().as_secs_f64();
    let printed = fleet.daemon.stdout.lock().unwrap().len() - printed_before;
    let cpu_pct = ticks as f64 / tck as f64 / idle * 100.0;
    report.check(
        cpu_pct < 2.0,
        format!(
            "idle CPU {cpu_pct:.2} % of one core ({ticks} ticks of utime+stime over {idle:.1} s, {tck} ticks/s: {tck_source}; {printed} lines printed meanwhile) (bound < 2 %)"
        ),
    );

    // Hot reload of pipeline 0 while every pipeline gets a line every ROUND.
    let logs = fleet.sandbox.path("logs");
    let staged = fleet.sandbox.path("staging").join("p0000.yaml");
    let live = fleet.sandbox.config_path("p0000.yaml");
    let v2 = fleet_config(&logs, 0, true);
    let appender = std::thread::spawn(move || {
        let start = Instant::now();
        let mut rounds = Vec::with_capacity(ROUNDS);
        let mut reloaded_at = None;
        for r in 0..ROUNDS {
            // Pacing the writer, not waiting for a result.
            let due = start + ROUND * r as u32;
            std::thread::sleep(due.saturating_duration_since(Instant::now()));
            if r == RELOAD_ROUND {
                // Atomically, as Sandbox::write_config: written aside, renamed over.
                fs::write(&staged, &v2).unwrap();
                fs::rename(&staged, &live).unwrap();
                reloaded_at = Some(Instant::now());
            }
            rounds.push(Instant::now());
            for p in 0..n {
                let path = logs.join(pipeline_name(p)).join("f00.log");
                append(&path, fleet_line(p, 0, APPENDED_BASE + r).as_bytes());
            }
        }
        (rounds, reloaded_at.unwrap())
    });
    let (rounds, reloaded_at) = appender.join().unwrap();
    let appended_until = Instant::now();
    let appended_total = n * ROUNDS;
    let appended_in = fleet.wait(appended_until, Duration::from_secs(30), |arrivals| {
        arrivals
            .iter()
            .filter(|a| a.key.2 >= APPENDED_BASE)
            .map(|a| a.key)
            .collect::<HashSet<_>>()
            .len()
            >= appended_total
    });
    report.note(format!(
        "reload phase: {ROUNDS} rounds of one line to each of the 1,000 pipelines, every {} ms; pipeline p0000's config rewritten at round {RELOAD_ROUND} ({:.2} s in); {}",
        ROUND.as_millis(),
        (reloaded_at - rounds[0]).as_secs_f64(),
        match appended_in {
            Some(t) => format!("all {appended_total} appended lines delivered {:.2} s after the last append", t.as_secs_f64()),
            None => "not all appended lines delivered within 30 s of the last append".to_owned(),
        }
    ));

    // The 999 others: every appended line, each within a bound of its append, and a stream
    // without a pause around the reload.
    let mut per_pipeline: HashMap<usize, HashMap<usize, Instant>> = HashMap::new();
    let mut duplicates_others = 0;
    let mut others_stream = Vec::new();
    for a in fleet.arrivals.iter().filter(|a| a.key.2 >= APPENDED_BASE) {
        let round = a.key.2 - APPENDED_BASE;
        let seen = per_pipeline.entry(a.key.0).or_default();
        let again = seen.contains_key(&round);
        seen.entry(round).or_insert(a.at);
        if a.key.0 != 0 {
            if again {
                duplicates_others += 1;
            }
            others_stream.push(a.at);
        }
    }
    let mut incomplete = Vec::new();
    let mut worst_latency = Duration::ZERO;
    let mut worst_at = (0, 0);
    for p in 1..n {
        let got = per_pipeline.get(&p);
        let delivered = got.map_or(0, |m| m.len());
        if delivered < ROUNDS {
            incomplete.push((pipeline_name(p), delivered));
        }
        for (&round, &at) in got.into_iter().flatten() {
            let latency = at.saturating_duration_since(rounds[round]);
            if latency > worst_latency {
                worst_latency = latency;
                worst_at = (p, round);
            }
        }
    }
    report.check(
        incomplete.is_empty(),
        format!(
            "{} of the 999 other pipelines missed appended lines during the reload (first ones (pipeline, delivered of {ROUNDS}): {:?})",
            incomplete.len(),
            &incomplete[..incomplete.len().min(5)]
        ),
    );
    report.check(
        duplicates_others == 0,
        format!("{duplicates_others} appended lines of the 999 others delivered twice (bound 0)"),
    );
    report.check(
        worst_latency <= Duration::from_secs(3),
        format!(
            "slowest appended line of the 999 others: {:.2} s from append to stdout ({}, round {}; the reload was at round {RELOAD_ROUND}) (bound 3 s)",
            worst_latency.as_secs_f64(),
            pipeline_name(worst_at.0),
            worst_at.1
        ),
    );
    // Pauses in the stream: from its first appended line until the last append, a line
    // arrives every ROUND when nothing stalls; 1.5 s is the longest gap allowed (files closed
    // while idle are checked for growth every second, plus a poll interval).
    others_stream.sort();
    let window_end = *rounds.last().unwrap();
    let mut points: Vec<Instant> = others_stream
        .iter()
        .copied()
        .filter(|&t| t <= window_end)
        .collect();
    points.push(window_end);
    let (mut max_gap, mut gap_from) = (Duration::ZERO, rounds[0]);
    for pair in points.windows(2) {
        if pair[1] - pair[0] > max_gap {
            max_gap = pair[1] - pair[0];
            gap_from = pair[0];
        }
    }
    let gap_offset = gap_from
        .saturating_duration_since(reloaded_at)
        .as_secs_f64()
        - reloaded_at
            .saturating_duration_since(gap_from)
            .as_secs_f64();
    report.check(
        max_gap <= Duration::from_millis(1500),
        format!(
            "longest pause in the 999 others' stream while appending: {:.2} s, starting {gap_offset:+.2} s from the reload (bound 1.5 s)",
            max_gap.as_secs_f64()
        ),
    );

    // The reloaded pipeline: its new version runs and every line appended to it arrives
    // (duplicates are allowed for it: delivery is at least once, and a batch in flight while
    // the old version stopped may be read again from its checkpoint; they are reported).
    let mine: Vec<&Arrival> = fleet
        .arrivals
        .iter()
        .filter(|a| a.key.0 == 0 && a.key.2 >= APPENDED_BASE)
        .collect();
    let distinct = mine.iter().map(|a| a.key).collect::<HashSet<_>>().len();
    let first_v2 = mine.iter().filter(|a| a.v2).map(|a| a.at).min();
    report.check(
        distinct == ROUNDS,
        format!(
            "reloaded pipeline p0000: {distinct} of {ROUNDS} appended lines delivered ({} duplicates, allowed)",
            mine.len() - distinct
        ),
    );
    match first_v2 {
        Some(t) => report.check(
            t - reloaded_at <= Duration::from_secs(5),
            format!(
                "reloaded pipeline p0000: first line of its new version {:.2} s after the rewrite (bound 5 s)",
                (t - reloaded_at).as_secs_f64()
            ),
        ),
        None => report.check(
            false,
            "reloaded pipeline p0000: no line of its new version ever arrived".to_owned(),
        ),
    }
    report.alive(&mut fleet.daemon, "after the reload");
    report.finish();
}

// ---------------------------------------------------------------------------------------------
// b. A flusher blocked in write(2) next to healthy pipelines.

const HEALTHY: usize = 5;
/// Lines appended to each healthy pipeline per measurement.
const HEALTHY_LINES: usize = 50_000;
/// Lines of the blocked pipeline's file: far more than the FIFO (64 KiB), the queues and the
/// batches in flight hold, so that its flusher blocks and stays blocked.
const BLOCKED_LINES: usize = 200_000;
const STALL: Duration = Duration::from_secs(30);

/// `tag sNNNNNNNN padding`: the second word is the sequence number [`Output`] counts.
fn seq_lines(tag: &str, seqs: std::ops::Range<usize>) -> String {
    let pad = "z".repeat(70);
    seqs.map(|i| format!("{tag} s{i:08} {pad}\n")).collect()
}

fn file_pipeline(log_dir: &Path, out: &Path, tail_all: bool) -> String {
    format!(
        "inputs:\n  - Type: input_file\n    FilePaths: [{}/*.log]\n    TailingAllMatchedFiles: {tail_all}\nflushers:\n  - Type: flusher_file\n    FilePath: {}\n",
        log_dir.display(),
        out.display()
    )
}

/// One pipeline's flusher_file writes into a FIFO that nobody reads for 30 s, so its flusher
/// blocks in write(2); meanwhile 5 healthy pipelines deliver what is appended to them as fast
/// as they did before that pipeline existed; after the 30 s the FIFO is drained and every line
/// of the blocked pipeline arrives.
///
/// Guards bus mode's flusher runner pool: a flusher blocked in a write must be moved off the
/// shared pool, never hold one of its threads (with one thread per flusher, as before bus mode,
/// this holds by construction). The baseline is measured in the same daemon, before the
/// blocked pipeline is added. Takes about 35 s (30 s of it is the stall). Passes on the binary
/// before bus mode.
#[test]
fn blocked_flusher_does_not_slow_the_others() {
    let _serial = serial();
    let mut report = Report::new("blocked_flusher_does_not_slow_the_others");
    let sandbox = Sandbox::new();
    let plugins = plugin_dir(&sandbox);
    let out_dir = sandbox.path("out");
    fs::create_dir(&out_dir).unwrap();
    let mut healthy_logs = Vec::new();
    let mut outputs = Vec::new();
    for h in 0..HEALTHY {
        let dir = sandbox.path("logs").join(format!("h{h}"));
        fs::create_dir(&dir).unwrap();
        let log = dir.join("a.log");
        File::create(&log).unwrap();
        let out = out_dir.join(format!("h{h}.jsonl"));
        sandbox.write_config(&format!("h{h}.yaml"), &file_pipeline(&dir, &out, false));
        healthy_logs.push(log);
        outputs.push(Output::file(out));
    }
    let blocked_dir = sandbox.path("logs").join("blocked");
    fs::create_dir(&blocked_dir).unwrap();
    let blocked_log = blocked_dir.join("a.log");
    fs::write(&blocked_log, seq_lines("b", 0..BLOCKED_LINES)).unwrap();
    let fifo = sandbox.path("blocked.fifo");
    mkfifo(&fifo);

    let mut daemon = Daemon::start(&sandbox, Some(&plugins), &[]);
    let pid = daemon.pid();

    // Ready: one line through each healthy pipeline.
    for log in &healthy_logs {
        append(log, seq_lines("h", 0..1).as_bytes());
    }
    if wait_outputs(&mut outputs, 1, Instant::now(), Duration::from_secs(30)).is_none() {
        report.fatal(
            format!(
                "the healthy pipelines' first line did not arrive within 30 s (distinct lines: {})",
                counts(&outputs)
            ),
            &daemon,
        );
    }

    // Baseline: HEALTHY_LINES appended to each, without the blocked pipeline.
    let phase = |outputs: &mut [Output], from: usize| {
        let text = seq_lines("h", from..from + HEALTHY_LINES);
        let since = Instant::now();
        for log in &healthy_logs {
            append(log, text.as_bytes());
        }
        wait_outputs(
            outputs,
            from + HEALTHY_LINES,
            since,
            Duration::from_secs(25),
        )
    };
    let Some(alone) = phase(&mut outputs, 1) else {
        report.fatal(
            format!(
                "baseline: the healthy pipelines delivered only {} of {} lines within 25 s",
                counts(&outputs),
                1 + HEALTHY_LINES
            ),
            &daemon,
        );
    };
    report.note(format!(
        "baseline: {HEALTHY} healthy pipelines × {HEALTHY_LINES} lines delivered in {:.2} s",
        alone.as_secs_f64()
    ));

    // The blocked pipeline: its FIFO's read end is opened first (non-blocking), so that the
    // daemon's open for writing succeeds; then nothing is read from it for STALL.
    let reader = OpenOptions::new()
        .read(true)
        .custom_flags(O_NONBLOCK)
        .open(&fifo)
        .unwrap();
    sandbox.write_config("blocked.yaml", &file_pipeline(&blocked_dir, &fifo, true));
    let stall_started = Instant::now();
    // Blocked: a daemon thread sits in write(2) on the FIFO (on an architecture where that
    // cannot be told, the daemon having read more than the FIFO can hold is taken instead).
    let is_blocked = || match blocked_writing_to(pid, &fifo) {
        Some(blocked) => blocked,
        None => read_offset(pid, &blocked_log).is_some_and(|o| o > 1 << 20),
    };
    while !is_blocked() {
        if stall_started.elapsed() > Duration::from_secs(15) {
            report.fatal(
                format!(
                    "the blocked pipeline's flusher was not blocked in write(2) on the FIFO within 15 s of adding it (read offset of its log: {:?})",
                    read_offset(pid, &blocked_log)
                ),
                &daemon,
            );
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    report.note(format!(
        "the blocked pipeline's flusher blocked in write(2) on the FIFO {:.2} s after its config was written (log read up to {:?} of {} bytes)",
        stall_started.elapsed().as_secs_f64(),
        read_offset(pid, &blocked_log),
        fs::metadata(&blocked_log).unwrap().len()
    ));

    // The same load while it is blocked. Bound: twice the baseline plus 1 s, for noise on a
    // shared 2-core machine; what it catches is the blocked flusher holding a shared runner
    // thread, which stalls or halves the others.
    let during = phase(&mut outputs, 1 + HEALTHY_LINES);
    let still_blocked = is_blocked();
    let bound = alone * 2 + Duration::from_secs(1);
    match during {
        Some(t) => report.check(
            t <= bound,
            format!(
                "while blocked: {HEALTHY} healthy pipelines × {HEALTHY_LINES} lines delivered in {:.2} s vs {:.2} s alone (bound {:.2} s = 2 × alone + 1 s)",
                t.as_secs_f64(),
                alone.as_secs_f64(),
                bound.as_secs_f64()
            ),
        ),
        None => report.check(
            false,
            format!(
                "while blocked: the healthy pipelines delivered only {} of {} lines within 25 s (alone: all in {:.2} s)",
                counts(&outputs),
                1 + 2 * HEALTHY_LINES,
                alone.as_secs_f64()
            ),
        ),
    }
    report.check(
        still_blocked,
        format!("the blocked pipeline's flusher was still blocked after the healthy ones' measurement: {still_blocked}"),
    );
    for o in &outputs {
        report.check(
            o.duplicates == 0,
            format!(
                "{}: {} lines delivered twice (bound 0)",
                o.path.display(),
                o.duplicates
            ),
        );
    }

    report.alive(&mut daemon, "while a flusher was blocked");

    // After STALL the FIFO is read: every line of the blocked pipeline arrives.
    std::thread::sleep(STALL.saturating_sub(stall_started.elapsed()));
    let mut drained = [Output::fifo(fifo.clone(), reader)];
    let drain_started = Instant::now();
    let all = wait_outputs(
        &mut drained,
        BLOCKED_LINES,
        drain_started,
        Duration::from_secs(90),
    );
    let got = drained[0].seen.len();
    report.check(
        all.is_some(),
        format!(
            "after {} s blocked: {got} of {BLOCKED_LINES} lines of the blocked pipeline arrived {}, {} lost, {} duplicates",
            STALL.as_secs(),
            match all {
                Some(t) => format!("{:.2} s after the FIFO was read", t.as_secs_f64()),
                None => "within 90 s of reading the FIFO".to_owned(),
            },
            BLOCKED_LINES - got,
            drained[0].duplicates
        ),
    );
    report.finish_with(&daemon.diagnostics());
}

// ---------------------------------------------------------------------------------------------
// c. A Priority 1 pipeline next to low-priority ones that saturate the processor thread.

const LOW: usize = 8;
/// Lines of the high-priority pipeline's bulk (measured alone, then under load).
const HIGH_LINES: usize = 30_000;
/// Lines appended to each low-priority pipeline: more than the processor thread gets through
/// during the loaded measurement even when priority is ignored, so that the load lasts.
const LOW_LINES: usize = 50_000;

/// A line that `HEAVY_REGEX` works hard on: `tag sNNNNNNNN` then words and numbers.
fn heavy_lines(tag: &str, seqs: std::ops::Range<usize>) -> String {
    seqs.map(|i| {
        format!(
            "{tag} s{i:08} 10.{}.{}.{} - - [24/Nov/2026:10:{:02}:{:02} +0000] \"GET /api/v1/items/{i}?q=alpha+beta HTTP/1.1\" {} {} \"-\" \"Mozilla/5.0 (X11; Linux x86_64) Tailrace/{i}\"\n",
            i % 250,
            (i / 250) % 250,
            i % 7,
            i % 60,
            (i / 60) % 60,
            [200, 304, 404, 500][i % 4],
            100 + i % 9000
        )
    })
    .collect()
}

/// CPU-heavy on purpose: Unicode classes, lazy and greedy repetitions that overlap, and
/// captures, so that the regex engine cannot use its fast paths and each line costs real work
/// (about 90,000 lines/s per core in one pass; the pipelines run `HEAVY_PASSES` passes).
const HEAVY_REGEX: &str = r#"(\w+) (\w+) (.*?)(\d+)\.(\d+)\.(\d+)\.(\d+)(.*?)\[([^\]]*)\] "(\w+) (.*?)(\w*)(?:\?(.*))? (.*?)" (\d+) (\d+) "(.*?)" "(.*)(\w+)(.*)""#;
const HEAVY_KEYS: usize = 20;
/// The regex runs this many times over each line (the same processor, repeated): about
/// 20,000 lines/s per core in all, so that a bulk of `HIGH_LINES` lines takes a second or two
/// and the low-priority bulks keep the processor thread busy without gigabytes of logs.
const HEAVY_PASSES: usize = 4;

fn heavy_pipeline(log_dir: &Path, out: &Path, priority: Option<u8>) -> String {
    let keys: Vec<String> = (0..HEAVY_KEYS).map(|k| format!("k{k}")).collect();
    let global = priority.map_or(String::new(), |p| format!("global:\n  Priority: {p}\n"));
    let pass = format!(
        "  - Type: processor_parse_regex_native\n    Regex: '{HEAVY_REGEX}'\n    Keys: [{}]\n    KeepingSourceWhenParseSucceed: true\n",
        keys.join(", ")
    );
    format!(
        "{global}inputs:\n  - Type: input_file\n    FilePaths: [{}/*.log]\nprocessors:\n{}flushers:\n  - Type: flusher_file\n    FilePath: {}\n",
        log_dir.display(),
        pass.repeat(HEAVY_PASSES),
        out.display()
    )
}

/// Whether the binary has `--process-threads` (bus mode's processor pool).
fn has_process_threads() -> bool {
    Command::new(common::tailrace_bin())
        .arg("--help")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).contains("--process-threads"))
        .unwrap_or(false)
}

/// With one processor thread (`--process-threads 1`), eight low-priority pipelines
/// (`Priority: 3`, or none: the lowest) keep it busy with a CPU-heavy regex, and a
/// `Priority: 1` pipeline running the same regex gets a bulk of lines: its rate under that load
/// stays at least half its rate alone (measured first, in the same daemon, with the low ones
/// idle).
///
/// Why half: when priority is honoured, the one processor thread takes the high pipeline's
/// batches before any low one, so it loses at most the low batch in progress when its data
/// arrives, and the low pipelines' flushers have nothing to do meanwhile: it should keep
/// 80-100 % of its rate alone, and a noisy neighbour taking a good part of a core still leaves
/// it above half. When priority is ignored, the thread serves nine busy queues in turn: about
/// 1/9 (11 %) of its rate. With a thread per pipeline (before bus mode), nine CPU-bound threads
/// share two cores: about 2/9 (22 %). Half is far from both.
///
/// The loaded measurement ends at its bulk's last line or after four times the time alone
/// (then the rate is what arrived by then), and counts only if the low pipelines still had
/// lines left to process at its end (else the load did not last: the test says so).
///
/// Needs bus mode (`--process-threads`, `global.Priority`); on a binary without the option it
/// measures the same without it and fails saying so (there: 10-31 % of the rate alone).
/// Takes 30 to 60 s.
#[test]
fn priority_pipeline_keeps_its_throughput() {
    let _serial = serial();
    let mut report = Report::new("priority_pipeline_keeps_its_throughput");
    let supported = has_process_threads();
    report.check(
        supported,
        format!("the binary has --process-threads: {supported} (without it, measured with a processor thread per pipeline)"),
    );
    let args: &[&str] = if supported {
        &["--process-threads", "1"]
    } else {
        &[]
    };
    let sandbox = Sandbox::new();
    let plugins = plugin_dir(&sandbox);
    let out_dir = sandbox.path("out");
    fs::create_dir(&out_dir).unwrap();
    let mut logs = Vec::new();
    let mut outputs = Vec::new();
    for i in 0..=LOW {
        // Index 0 is the high-priority pipeline; odd low ones have Priority 3, even ones none.
        let (name, priority) = match i {
            0 => ("high".to_owned(), Some(1)),
            i if i % 2 == 1 => (format!("low{i}"), Some(3)),
            i => (format!("low{i}"), None),
        };
        let dir = sandbox.path("logs").join(&name);
        fs::create_dir(&dir).unwrap();
        let log = dir.join("a.log");
        File::create(&log).unwrap();
        let out = out_dir.join(format!("{name}.jsonl"));
        sandbox.write_config(
            &format!("{name}.yaml"),
            &heavy_pipeline(&dir, &out, priority),
        );
        logs.push(log);
        outputs.push(Output::file(out));
    }
    let mut daemon = Daemon::start_with_args(&sandbox, Some(&plugins), &[], args);

    // Ready: one line through every pipeline.
    for log in &logs {
        append(log, heavy_lines("w", 0..1).as_bytes());
    }
    if wait_outputs(&mut outputs, 1, Instant::now(), Duration::from_secs(30)).is_none() {
        report.fatal(
            format!(
                "the first line of every pipeline did not arrive within 30 s (distinct lines: {})",
                counts(&outputs)
            ),
            &daemon,
        );
    }

    // Alone: the high-priority pipeline's bulk, the low ones idle.
    let (high, lows) = outputs.split_at_mut(1);
    let since = Instant::now();
    append(&logs[0], heavy_lines("h", 1..1 + HIGH_LINES).as_bytes());
    let Some(alone) = wait_outputs(high, 1 + HIGH_LINES, since, Duration::from_secs(60)) else {
        let got = high[0].seen.len() - 1;
        report.fatal(
            format!(
                "alone: only {got} of {HIGH_LINES} lines of the high-priority pipeline within 60 s"
            ),
            &daemon,
        );
    };
    let rate_alone = HIGH_LINES as f64 / alone.as_secs_f64();
    report.note(format!(
        "alone: {HIGH_LINES} lines ({:.1} MB) through the heavy regex in {:.2} s: {rate_alone:.0} lines/s",
        heavy_lines("h", 1..1 + HIGH_LINES).len() as f64 / 1e6,
        alone.as_secs_f64()
    ));

    // Load: every low pipeline gets its bulk; the load is on once one of them delivered some
    // of it (not each of them: Priority 3 is above none, so the ones without a priority may
    // rightly wait until the Priority 3 ones are done).
    let low_text = heavy_lines("l", 1..1 + LOW_LINES);
    for log in &logs[1..] {
        append(log, low_text.as_bytes());
    }
    let load_started = Instant::now();
    loop {
        for o in lows.iter_mut() {
            o.poll();
        }
        if lows.iter().any(|o| o.seen.len() >= 2) {
            break;
        }
        if load_started.elapsed() > Duration::from_secs(30) {
            report.fatal(
                format!(
                    "no low-priority pipeline started on its bulk within 30 s (distinct lines: {})",
                    counts(lows)
                ),
                &daemon,
            );
        }
        std::thread::sleep(Duration::from_millis(10));
    }

    // Under load: the same bulk again.
    let limit = (alone * 4).max(Duration::from_secs(2));
    for o in lows.iter_mut() {
        o.poll();
    }
    let lows_before: usize = lows.iter().map(|o| o.seen.len()).sum();
    let since = Instant::now();
    append(
        &logs[0],
        heavy_lines("h", 1 + HIGH_LINES..1 + 2 * HIGH_LINES).as_bytes(),
    );
    let loaded = wait_outputs(high, 1 + 2 * HIGH_LINES, since, limit);
    let elapsed = loaded.unwrap_or_else(|| since.elapsed());
    for o in lows.iter_mut() {
        o.poll();
    }
    let delivered = high[0].seen.len() - 1 - HIGH_LINES;
    let rate_loaded = delivered as f64 / elapsed.as_secs_f64();
    let ratio = rate_loaded / rate_alone;
    let lows_left: Vec<usize> = lows.iter().map(|o| 1 + LOW_LINES - o.seen.len()).collect();
    // All lines were appended before the measurement, so a pipeline with lines left at its
    // end had lines waiting throughout it.
    report.check(
        lows_left.iter().all(|&left| left > 0),
        format!("the load lasted through the measurement: lines the low-priority pipelines had left to deliver at its end: {lows_left:?} (each must be > 0)"),
    );
    // For the record, a figure that other load on the machine does not move: the high
    // pipeline's share of all lines delivered during the measurement (about 1/9 when the
    // processor serves the nine pipelines alike; near 1 when priority holds, less the low
    // batches that were already processed when it began).
    let lows_during: usize = lows.iter().map(|o| o.seen.len()).sum::<usize>() - lows_before;
    report.note(format!(
        "during it the low-priority pipelines delivered {lows_during} lines: the high one's share was {:.0} %",
        delivered as f64 / (delivered + lows_during).max(1) as f64 * 100.0
    ));
    report.check(
        ratio >= 0.5,
        format!(
            "under load: {delivered} of {HIGH_LINES} lines in {:.2} s{}: {rate_loaded:.0} lines/s, {:.0} % of the rate alone (bound ≥ 50 %)",
            elapsed.as_secs_f64(),
            if loaded.is_some() { "" } else { " (cut off at 4 × alone)" },
            ratio * 100.0
        ),
    );
    report.alive(&mut daemon, "after the measurements");
    report.finish_with(&daemon.diagnostics());
}
