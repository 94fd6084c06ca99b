//! End-to-end tests of native file collection (`input_file` → `flusher_file`): the real daemon
//! tails real files, written by the test (sometimes by a writer thread running alongside), and
//! every test checks, from the JSON lines `flusher_file` appends to `out.jsonl`, that every line
//! written arrived, and in which order.
//!
//! Each line carries a file id and a sequence number (`f3 seq=000123 <padding>`, see
//! [`line_text`]). The checks ([`check`]) are: every expected sequence number of every file
//! arrived (counted once however often it came), nothing unexpected arrived, per file the first
//! occurrences come in increasing order, no duplicates unless the test allows them, and each
//! line arrived exactly as written.
//!
//! The plugin libraries are not needed: every daemon gets an empty `--plugin-dir` (it warns that
//! the plugins are missing, as expected). The tests run one at a time (a lock; they use both
//! cores and some depend on timing) and print how long each took (`--nocapture` to see it).

mod common;

use std::collections::{BTreeMap, HashMap, HashSet};
use std::fs::{self, File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use common::{Daemon, Sandbox};

/// Lines longer than this arrive cut into pieces of this size.
const MAX_LINE: usize = 512 * 1024;
/// How long delivery of what was written may take, at most (it takes far less).
const DELIVERY: Duration = Duration::from_secs(30);
/// How long a `--once` run may take.
const ONCE_LIMIT: Duration = Duration::from_secs(60);

// ---------------------------------------------------------------------------------------------
// Harness
// ---------------------------------------------------------------------------------------------

/// The tests of this file run one at a time.
static SERIAL: Mutex<()> = Mutex::new(());

/// Expected sequence numbers, by file id.
type Expect = BTreeMap<String, Vec<u64>>;

fn expect_range(expected: &mut Expect, id: &str, seqs: std::ops::Range<u64>) {
    expected.entry(id.to_owned()).or_default().extend(seqs);
}

/// The line with sequence number `seq` of file `id` (without its newline): `id seq=NNNNNN`
/// and 60 to 139 bytes of padding that depend on `seq`.
fn line_text(id: &str, seq: u64) -> String {
    const ALPHABET: &[u8] = b"abcdefghijklmnopqrstuvwxyz0123456789";
    let len = 60 + (seq * 37 % 80) as usize;
    let pad: String = (0..len)
        .map(|i| ALPHABET[(seq as usize + i) % ALPHABET.len()] as char)
        .collect();
    format!("{id} seq={seq:06} {pad}")
}

/// The lines `seqs` of file `id`, each with its newline.
fn lines_bytes(id: &str, seqs: std::ops::Range<u64>) -> Vec<u8> {
    let mut out = Vec::new();
    for seq in seqs {
        out.extend_from_slice(line_text(id, seq).as_bytes());
        out.push(b'\n');
    }
    out
}

fn append(path: &Path, bytes: &[u8]) {
    let mut file = OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .unwrap_or_else(|e| panic!("open {}: {e}", path.display()));
    file.write_all(bytes).unwrap();
}

/// `id seq=N ...` → (id, N).
fn parse_record(content: &str) -> Option<(String, u64)> {
    let mut it = content.splitn(3, ' ');
    let id = it.next()?;
    let seq = it.next()?.strip_prefix("seq=")?.parse().ok()?;
    Some((id.to_owned(), seq))
}

/// A small deterministic PRNG (xorshift64*).
struct Rng(u64);

impl Rng {
    fn new(seed: u64) -> Rng {
        Rng(seed.max(1))
    }

    fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    /// Uniform in `lo..hi`.
    fn range(&mut self, lo: u64, hi: u64) -> u64 {
        lo + self.next() % (hi - lo)
    }
}

/// One test's world: a sandbox, an empty plugin dir, and `out.jsonl`. Holds the lock that
/// serialises the tests, and prints how long the test took when dropped.
struct Env {
    sandbox: Sandbox,
    plugins: PathBuf,
    out_path: PathBuf,
    name: &'static str,
    started: Instant,
    _serial: MutexGuard<'static, ()>,
}

impl Env {
    fn new(name: &'static str) -> Env {
        let serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
        let sandbox = Sandbox::new();
        let plugins = sandbox.path("plugins");
        fs::create_dir(&plugins).unwrap();
        let out_path = sandbox.path("out.jsonl");
        eprintln!("[{name}] sandbox {}", sandbox.path("").display());
        Env {
            sandbox,
            plugins,
            out_path,
            name,
            started: Instant::now(),
            _serial: serial,
        }
    }

    /// `<sandbox>/logs/<rel>`.
    fn logs(&self, rel: &str) -> PathBuf {
        let logs = self.sandbox.path("logs");
        if rel.is_empty() {
            logs
        } else {
            logs.join(rel)
        }
    }

    /// `logs/<rel>` as a string, for globs in configs.
    fn logs_str(&self, rel: &str) -> String {
        self.logs(rel).to_str().unwrap().to_owned()
    }

    /// Writes `conf/files.yaml`: one `input_file` with `TailingAllMatchedFiles: true` and the
    /// given options, → `flusher_file` into out.jsonl. (JSON is YAML.)
    fn write_pipeline(&self, input_options: Value) {
        let mut input = json!({"Type": "input_file", "TailingAllMatchedFiles": true});
        for (k, v) in input_options.as_object().unwrap() {
            input[k] = v.clone();
        }
        let config = json!({
            "inputs": [input],
            "flushers": [{"Type": "flusher_file", "FilePath": self.out_path}],
        });
        self.sandbox.write_config(
            "files.yaml",
            &serde_json::to_string_pretty(&config).unwrap(),
        );
    }

    fn start(&self) -> Daemon {
        Daemon::start(&self.sandbox, Some(&self.plugins), &[])
    }

    fn start_once(&self) -> Daemon {
        Daemon::start_with_args(&self.sandbox, Some(&self.plugins), &[], &["--once"])
    }

    fn out(&self) -> Out {
        Out::new(&self.out_path, parse_record)
    }

    fn elapsed(&self) -> String {
        format!("{:.1}s", self.started.elapsed().as_secs_f64())
    }
}

impl Drop for Env {
    fn drop(&mut self) {
        let outcome = if std::thread::panicking() {
            "FAILED"
        } else {
            "passed"
        };
        eprintln!("[{}] {outcome} in {}", self.name, self.elapsed());
    }
}

/// One event of out.jsonl.
struct Ev {
    content: String,
    path: String,
    /// (file id, sequence number), when the content has them.
    rec: Option<(String, u64)>,
}

/// out.jsonl, read incrementally: the events of its complete lines so far.
struct Out {
    path: PathBuf,
    parser: fn(&str) -> Option<(String, u64)>,
    pos: u64,
    rest: Vec<u8>,
    events: Vec<Ev>,
    /// Lines that are not a JSON object with a string `content` (a line cut by kill -9).
    unparseable: Vec<String>,
    seen: HashMap<String, HashSet<u64>>,
}

impl Out {
    fn new(path: &Path, parser: fn(&str) -> Option<(String, u64)>) -> Out {
        Out {
            path: path.to_owned(),
            parser,
            pos: 0,
            rest: Vec::new(),
            events: Vec::new(),
            unparseable: Vec::new(),
            seen: HashMap::new(),
        }
    }

    /// Reads what was appended since the last call (an unfinished last line waits).
    fn refresh(&mut self) -> &mut Out {
        let Ok(mut file) = File::open(&self.path) else {
            return self;
        };
        file.seek(SeekFrom::Start(self.pos)).unwrap();
        let mut buf = Vec::new();
        file.read_to_end(&mut buf).unwrap();
        self.pos += buf.len() as u64;
        self.rest.extend_from_slice(&buf);
        let Some(last_nl) = self.rest.iter().rposition(|&b| b == b'\n') else {
            return self;
        };
        let complete: Vec<u8> = self.rest.drain(..=last_nl).collect();
        for line in complete[..complete.len() - 1].split(|&b| b == b'\n') {
            self.parse_line(line);
        }
        self.rest.shrink_to_fit();
        self
    }

    fn parse_line(&mut self, line: &[u8]) {
        let json = serde_json::from_slice::<Value>(line).ok();
        let content = json.as_ref().and_then(|j| j.get("content")?.as_str());
        let Some(content) = content else {
            let text = String::from_utf8_lossy(&line[..line.len().min(300)]).into_owned();
            self.unparseable.push(text);
            return;
        };
        let json = json.as_ref().unwrap();
        let path = json
            .get("__tag__:__path__")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_owned();
        let rec = (self.parser)(content);
        if let Some((id, seq)) = &rec {
            self.seen.entry(id.clone()).or_default().insert(*seq);
        }
        self.events.push(Ev {
            content: content.to_owned(),
            path,
            rec,
        });
    }

    fn missing(&self, expected: &Expect) -> usize {
        expected
            .iter()
            .map(|(id, seqs)| match self.seen.get(id) {
                Some(seen) => seqs.iter().filter(|s| !seen.contains(s)).count(),
                None => seqs.len(),
            })
            .sum()
    }

    fn has_all(&self, expected: &Expect) -> bool {
        self.missing(expected) == 0
    }

    fn records(&self) -> usize {
        self.events.iter().filter(|e| e.rec.is_some()).count()
    }
}

/// Sorted numbers as ranges: `3-7, 9, 12-40`, at most `limit` ranges.
fn ranges(mut v: Vec<u64>, limit: usize) -> String {
    v.sort_unstable();
    v.dedup();
    let mut parts: Vec<(u64, u64)> = Vec::new();
    for x in v {
        match parts.last_mut() {
            Some((_, end)) if *end + 1 == x => *end = x,
            _ => parts.push((x, x)),
        }
    }
    let n = parts.len();
    let mut text: Vec<String> = parts
        .iter()
        .take(limit)
        .map(|&(a, b)| {
            if a == b {
                a.to_string()
            } else {
                format!("{a}-{b}")
            }
        })
        .collect();
    if n > limit {
        text.push(format!("... ({} more ranges)", n - limit));
    }
    text.join(", ")
}

fn shorten(text: &str) -> String {
    if text.len() <= 200 {
        return text.to_owned();
    }
    let mut end = 200;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}... ({} bytes)", &text[..end], text.len())
}

/// What the content of the line (file id, seq) must be.
type ExpectedContent<'a> = &'a dyn Fn(&str, u64) -> String;

struct CheckOpts<'a> {
    allow_duplicates: bool,
    /// What the content of (id, seq) must be; None: not checked.
    content: Option<ExpectedContent<'a>>,
    /// Events without a record are allowed (checked by the test itself).
    allow_foreign: bool,
    max_unparseable: usize,
}

impl Default for CheckOpts<'_> {
    fn default() -> Self {
        CheckOpts {
            allow_duplicates: false,
            content: Some(&line_text),
            allow_foreign: false,
            max_unparseable: 0,
        }
    }
}

/// Everything wrong with what arrived, compared with what was expected (empty: all is well).
fn check(out: &Out, expected: &Expect, opts: &CheckOpts<'_>) -> Vec<String> {
    let mut problems = Vec::new();
    let mut arrivals: BTreeMap<&str, Vec<(usize, u64)>> = BTreeMap::new();
    let mut foreign = Vec::new();
    let mut wrong_content = Vec::new();
    for (i, ev) in out.events.iter().enumerate() {
        match &ev.rec {
            Some((id, seq)) => {
                arrivals.entry(id).or_default().push((i, *seq));
                if let Some(want) = opts.content {
                    if ev.content != want(id, *seq) {
                        wrong_content.push(format!(
                            "event {i} ({id} seq {seq}, path {}): {:?}",
                            ev.path,
                            shorten(&ev.content)
                        ));
                    }
                }
            }
            None => foreign.push(format!(
                "event {i} (path {}): {:?}",
                ev.path,
                shorten(&ev.content)
            )),
        }
    }
    if !opts.allow_foreign && !foreign.is_empty() {
        problems.push(format!(
            "{} events without a file id and seq, e.g. {:?}",
            foreign.len(),
            &foreign[..foreign.len().min(3)]
        ));
    }
    if !wrong_content.is_empty() {
        problems.push(format!(
            "{} events whose content is not the line written, e.g. {:?}",
            wrong_content.len(),
            &wrong_content[..wrong_content.len().min(3)]
        ));
    }
    if out.unparseable.len() > opts.max_unparseable {
        problems.push(format!(
            "{} unparseable lines in out.jsonl (at most {} allowed): {:?}",
            out.unparseable.len(),
            opts.max_unparseable,
            &out.unparseable[..out.unparseable.len().min(3)]
        ));
    }
    for (id, list) in &arrivals {
        let want: HashSet<u64> = expected
            .get(*id)
            .map(|v| v.iter().copied().collect())
            .unwrap_or_default();
        let mut firsts = HashSet::new();
        let mut dups = Vec::new();
        let mut unexpected = Vec::new();
        let mut disorder = Vec::new();
        let mut last_first: Option<u64> = None;
        for &(i, seq) in list {
            if !want.contains(&seq) {
                unexpected.push(seq);
            }
            if firsts.insert(seq) {
                if let Some(last) = last_first {
                    if seq < last {
                        disorder.push(format!("event {i}: seq {seq} after seq {last}"));
                    }
                }
                last_first = Some(seq);
            } else {
                dups.push(seq);
            }
        }
        if !unexpected.is_empty() {
            problems.push(format!(
                "{id}: {} unexpected events, seqs {}",
                unexpected.len(),
                ranges(unexpected, 20)
            ));
        }
        if !disorder.is_empty() {
            problems.push(format!(
                "{id}: {} first occurrences out of order, e.g. {:?}",
                disorder.len(),
                &disorder[..disorder.len().min(5)]
            ));
        }
        if !dups.is_empty() && !opts.allow_duplicates {
            problems.push(format!(
                "{id}: {} duplicates, seqs {}",
                dups.len(),
                ranges(dups, 20)
            ));
        }
    }
    for (id, seqs) in expected {
        let seen = out.seen.get(id);
        let missing: Vec<u64> = seqs
            .iter()
            .copied()
            .filter(|s| !seen.is_some_and(|seen| seen.contains(s)))
            .collect();
        if !missing.is_empty() {
            problems.push(format!(
                "{id}: {} of {} lines missing, seqs {}",
                missing.len(),
                seqs.len(),
                ranges(missing, 20)
            ));
        }
    }
    problems
}

fn assert_ok(problems: &[String], daemon: Option<&Daemon>) {
    if problems.is_empty() {
        return;
    }
    panic!(
        "{} problems:\n  {}\n{}",
        problems.len(),
        problems.join("\n  "),
        daemon.map(Daemon::diagnostics).unwrap_or_default()
    );
}

/// Polls out.jsonl until `done`, failing after `limit` (or as soon as the daemon exits), with
/// `report` and the daemon's last logs.
fn wait_for(
    out: &mut Out,
    daemon: &mut Daemon,
    limit: Duration,
    what: &str,
    done: impl Fn(&Out) -> bool,
    report: impl Fn(&Out) -> String,
) {
    let deadline = Instant::now() + limit;
    loop {
        out.refresh();
        if done(out) {
            return;
        }
        if let Some(status) = daemon.child.try_wait().unwrap() {
            out.refresh();
            if done(out) {
                return;
            }
            panic!(
                "the daemon exited ({status}) while waiting for {what}\n{}\n{}",
                report(out),
                daemon.diagnostics()
            );
        }
        if Instant::now() >= deadline {
            panic!(
                "no {what} within {limit:?}\n{}\n{}",
                report(out),
                daemon.diagnostics()
            );
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Polls `pending` (what is still awaited, or None once done) until it is done, failing with
/// what it said last once `limit` passed.
fn poll(daemon: &Daemon, limit: Duration, mut pending: impl FnMut() -> Option<String>) {
    let deadline = Instant::now() + limit;
    while let Some(what) = pending() {
        assert!(
            Instant::now() < deadline,
            "{what} (after {limit:?})\n{}",
            daemon.diagnostics()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Waits until every expected line arrived.
fn wait_delivered(out: &mut Out, daemon: &mut Daemon, expected: &Expect, limit: Duration) {
    wait_for(
        out,
        daemon,
        limit,
        "delivery of every expected line",
        |out| out.has_all(expected),
        |out| {
            let opts = CheckOpts {
                allow_duplicates: true,
                allow_foreign: true,
                max_unparseable: usize::MAX,
                ..Default::default()
            };
            format!(
                "{} events so far; {}",
                out.events.len(),
                check(out, expected, &opts).join("\n  ")
            )
        },
    );
}

/// The daemon must not have panicked.
fn assert_no_panic(daemon: &Daemon) {
    let panics: Vec<String> = daemon
        .stderr_lines()
        .into_iter()
        .filter(|l| l.contains("panicked"))
        .collect();
    assert!(panics.is_empty(), "the daemon panicked: {panics:?}");
}

fn stop(mut daemon: Daemon) {
    assert_no_panic(&daemon);
    let (status, _) = daemon.terminate();
    assert!(
        status.success(),
        "exit status {status}\n{}",
        daemon.diagnostics()
    );
}

/// After a kill -9, out.jsonl may end in the middle of a line: end it, so that the next run's
/// first line does not run into it (it stays one unparseable line). True if it had to.
fn end_cut_line(path: &Path) -> bool {
    let Ok(bytes) = fs::read(path) else {
        return false;
    };
    if bytes.last().is_some_and(|&b| b != b'\n') {
        append(path, b"\n");
        return true;
    }
    false
}

// ---------------------------------------------------------------------------------------------
// A writer that rotates by rename
// ---------------------------------------------------------------------------------------------

/// One file the rotating writer wrote.
#[derive(Clone, Debug)]
struct WrittenFile {
    id: String,
    /// Its lines: `first..end` (global sequence numbers).
    first: u64,
    end: u64,
    created: Instant,
    inode: u64,
    /// When app.log was renamed to `rotated_to`.
    rotated: Option<(Instant, PathBuf)>,
}

/// What the writer did.
#[derive(Debug, Default)]
struct WriterLog {
    files: Vec<WrittenFile>,
    /// (when, sequence number just past what was written by then), after each write.
    ticks: Vec<(Instant, u64)>,
}

impl WriterLog {
    fn expected(&self) -> Expect {
        let mut expected = Expect::new();
        for f in &self.files {
            if f.end > f.first {
                expect_range(&mut expected, &f.id, f.first..f.end);
            }
        }
        expected
    }

    fn total(&self) -> u64 {
        self.files.last().map_or(0, |f| f.end)
    }

    /// When line `seq` was written (at the latest).
    fn written_at(&self, seq: u64) -> Option<Instant> {
        let i = self.ticks.partition_point(|&(_, end)| end <= seq);
        self.ticks.get(i).map(|&(at, _)| at)
    }
}

/// Appends lines to `dir/app.log` at `lines_per_sec`, 10 ms apart; after every `per_file`
/// lines renames app.log to app.log.N (N = 1, 2...) and creates a new app.log. File N's lines
/// carry the id `rNN` and the global sequence number. Stops after `total` lines (rotating
/// after the last file too) or when `stop` is set.
fn spawn_rotating_writer(
    dir: PathBuf,
    per_file: u64,
    total: Option<u64>,
    lines_per_sec: u64,
    stop: Arc<AtomicBool>,
) -> JoinHandle<WriterLog> {
    std::thread::spawn(move || {
        let path = dir.join("app.log");
        let mut log = WriterLog::default();
        let mut gen = 1u32;
        let mut file = File::create(&path).unwrap();
        log.files.push(WrittenFile {
            id: format!("r{gen:02}"),
            first: 0,
            end: 0,
            created: Instant::now(),
            inode: file.metadata().unwrap().ino(),
            rotated: None,
        });
        let per_tick = (lines_per_sec / 100).max(1);
        let started = Instant::now();
        let mut seq = 0u64;
        let mut tick = 0u32;
        loop {
            if stop.load(Ordering::Relaxed) || total.is_some_and(|t| seq >= t) {
                break;
            }
            for _ in 0..per_tick {
                let current = log.files.last_mut().unwrap();
                let mut line = line_text(&current.id, seq).into_bytes();
                line.push(b'\n');
                file.write_all(&line).unwrap();
                seq += 1;
                current.end = seq;
                if current.end - current.first == per_file {
                    let rotated_to = dir.join(format!("app.log.{gen}"));
                    fs::rename(&path, &rotated_to).unwrap();
                    current.rotated = Some((Instant::now(), rotated_to));
                    gen += 1;
                    file = File::create(&path).unwrap();
                    log.files.push(WrittenFile {
                        id: format!("r{gen:02}"),
                        first: seq,
                        end: seq,
                        created: Instant::now(),
                        inode: file.metadata().unwrap().ino(),
                        rotated: None,
                    });
                }
                if total.is_some_and(|t| seq >= t) {
                    break;
                }
            }
            log.ticks.push((Instant::now(), seq));
            tick += 1;
            let next = started + Duration::from_millis(10) * tick;
            if let Some(wait) = next.checked_duration_since(Instant::now()) {
                std::thread::sleep(wait);
            }
        }
        log
    })
}

// ---------------------------------------------------------------------------------------------
// 1. Rename rotation under continuous writes
// ---------------------------------------------------------------------------------------------

#[test]
fn rename_rotation_under_continuous_writes() {
    let env = Env::new("rename_rotation");
    env.write_pipeline(json!({"FilePaths": [env.logs_str("app.log")]}));
    let mut daemon = env.start();
    // 20k lines, 2k per file, 800 lines/s: a file lives 2.5 s as app.log, longer than the
    // discovery interval (1 s), so that the daemon sees each before it is rotated.
    let stop_flag = Arc::new(AtomicBool::new(false));
    let writer = spawn_rotating_writer(env.logs(""), 2000, Some(20_000), 800, stop_flag);
    let log = writer.join().unwrap();
    assert_eq!(log.total(), 20_000);
    let expected = log.expected();
    let mut out = env.out();
    wait_delivered(&mut out, &mut daemon, &expected, DELIVERY);
    assert_ok(
        &check(&out, &expected, &CheckOpts::default()),
        Some(&daemon),
    );

    // Not required (files are read in parallel), but worth knowing: whether the stream as a
    // whole kept its order across rotations.
    let mut last = None;
    let mut crossings = 0;
    for ev in &out.events {
        let seq = ev.rec.as_ref().unwrap().1;
        if last.is_some_and(|l| seq < l) {
            crossings += 1;
        }
        last = Some(seq);
    }
    eprintln!(
        "[rename_rotation] {} events from {} files; {crossings} places where an older file's \
         line came after a newer file's",
        out.events.len(),
        log.files.len()
    );
    stop(daemon);
}

// ---------------------------------------------------------------------------------------------
// 2, 3. copytruncate
// ---------------------------------------------------------------------------------------------

#[test]
fn copytruncate() {
    let env = Env::new("copytruncate");
    let path = env.logs("app.log");
    env.write_pipeline(json!({"FilePaths": [env.logs_str("*.log")]}));
    append(&path, &lines_bytes("c2", 0..1000));
    let mut daemon = env.start();
    let mut out = env.out();
    let mut expected = Expect::new();
    expect_range(&mut expected, "c2", 0..1000);
    wait_delivered(&mut out, &mut daemon, &expected, DELIVERY);
    let inode = fs::metadata(&path).unwrap().ino();

    fs::copy(&path, env.sandbox.path("app.log.copied")).unwrap();
    OpenOptions::new()
        .write(true)
        .open(&path)
        .unwrap()
        .set_len(0)
        .unwrap();
    // The application goes on appending (O_APPEND) after the truncation.
    let mut file = OpenOptions::new().append(true).open(&path).unwrap();
    for seq in 1000..1500 {
        file.write_all(format!("{}\n", line_text("c2", seq)).as_bytes())
            .unwrap();
        if seq % 100 == 0 {
            std::thread::sleep(Duration::from_millis(20));
        }
    }
    assert_eq!(fs::metadata(&path).unwrap().ino(), inode, "same inode");
    expect_range(&mut expected, "c2", 1000..1500);
    wait_delivered(&mut out, &mut daemon, &expected, DELIVERY);
    assert_ok(
        &check(&out, &expected, &CheckOpts::default()),
        Some(&daemon),
    );
    stop(daemon);
}

#[test]
fn copytruncate_growing_back_past_the_old_offset() {
    let env = Env::new("copytruncate_growing_back");
    let path = env.logs("app.log");
    env.write_pipeline(json!({"FilePaths": [env.logs_str("*.log")]}));
    append(&path, &lines_bytes("c3", 0..1000));
    let mut daemon = env.start();
    let mut out = env.out();
    let mut expected = Expect::new();
    expect_range(&mut expected, "c3", 0..1000);
    wait_delivered(&mut out, &mut daemon, &expected, DELIVERY);
    let old_size = fs::metadata(&path).unwrap().len();

    // Truncate and write more than before, all while the daemon cannot look (stopped): when it
    // looks again the file is larger than its offset, only the signature tells.
    daemon.signal("STOP");
    fs::copy(&path, env.sandbox.path("app.log.copied")).unwrap();
    let mut file = OpenOptions::new().append(true).open(&path).unwrap();
    file.set_len(0).unwrap();
    let new = lines_bytes("c3", 1000..4000);
    file.write_all(&new).unwrap();
    drop(file);
    daemon.signal("CONT");
    let new_size = fs::metadata(&path).unwrap().len();
    assert!(new_size > old_size, "{new_size} > {old_size}");

    expect_range(&mut expected, "c3", 1000..4000);
    wait_delivered(&mut out, &mut daemon, &expected, DELIVERY);
    assert_ok(
        &check(&out, &expected, &CheckOpts::default()),
        Some(&daemon),
    );
    stop(daemon);
}

// ---------------------------------------------------------------------------------------------
// 4. Deleted while being read
// ---------------------------------------------------------------------------------------------

/// The daemon's descriptors that point at a deleted file whose path contains `name`.
fn open_deleted(pid: u32, name: &str) -> Vec<String> {
    let Ok(entries) = fs::read_dir(format!("/proc/{pid}/fd")) else {
        return Vec::new();
    };
    entries
        .flatten()
        .filter_map(|e| fs::read_link(e.path()).ok())
        .map(|t| t.to_string_lossy().into_owned())
        .filter(|t| t.contains(name) && t.ends_with("(deleted)"))
        .collect()
}

#[test]
fn deleted_while_being_read() {
    const LINES: u64 = 200_000;
    let env = Env::new("deleted_while_being_read");
    let path = env.logs("app.log");
    env.write_pipeline(json!({"FilePaths": [env.logs_str("*.log")]}));
    {
        let mut file = std::io::BufWriter::new(File::create(&path).unwrap());
        for seq in 0..LINES {
            writeln!(file, "{}", line_text("d4", seq)).unwrap();
        }
    }
    let size = fs::metadata(&path).unwrap().len();
    let mut daemon = env.start();
    // As soon as something arrived: stop the daemon, see that not everything did, delete the
    // file, let the daemon go on.
    let deadline = Instant::now() + DELIVERY;
    while fs::metadata(&env.out_path).map_or(0, |m| m.len()) == 0 {
        assert!(
            Instant::now() < deadline,
            "nothing arrived\n{}",
            daemon.diagnostics()
        );
        daemon.assert_running("before anything arrived");
        std::thread::sleep(Duration::from_millis(2));
    }
    daemon.signal("STOP");
    let mut out = env.out();
    out.refresh();
    let before = out.records();
    eprintln!(
        "[deleted_while_being_read] {size} bytes; {before} of {LINES} lines had arrived when \
         the file was deleted"
    );
    assert!(
        (before as u64) < LINES,
        "every line arrived before the file could be deleted: make the file larger"
    );
    fs::remove_file(&path).unwrap();
    daemon.signal("CONT");

    let mut expected = Expect::new();
    expect_range(&mut expected, "d4", 0..LINES);
    wait_delivered(&mut out, &mut daemon, &expected, DELIVERY);
    assert_ok(
        &check(&out, &expected, &CheckOpts::default()),
        Some(&daemon),
    );

    // Everything delivered: the descriptor of the deleted file is released (after a grace).
    poll(&daemon, common::WAIT, || {
        let open = open_deleted(daemon.pid(), "app.log");
        (!open.is_empty()).then(|| {
            format!("the deleted file is still open after everything was delivered: {open:?}")
        })
    });
    stop(daemon);
}

// ---------------------------------------------------------------------------------------------
// 5. Inode reuse across a restart
// ---------------------------------------------------------------------------------------------

#[test]
fn inode_reuse_across_restart() {
    let env = Env::new("inode_reuse");
    let path = env.logs("app.log");
    env.write_pipeline(json!({"FilePaths": [env.logs_str("*.log")]}));
    append(&path, &lines_bytes("old", 0..1000));
    let mut daemon = env.start();
    let mut out = env.out();
    let mut expected = Expect::new();
    expect_range(&mut expected, "old", 0..1000);
    wait_delivered(&mut out, &mut daemon, &expected, DELIVERY);
    stop(daemon);
    let checkpoints = fs::read_to_string(env.sandbox.path("data/checkpoints/files.json"))
        .expect("checkpoints written at shutdown");
    let old_inode = fs::metadata(&path).unwrap().ino();
    assert!(
        checkpoints.contains(&format!("\"inode\":{old_inode}")),
        "{checkpoints}"
    );

    // A new file at once, larger than the old one (a checkpoint matched by inode alone would
    // skip its first 1000-odd lines). ext4 gives a new file the lowest free inode of its
    // directory's group, which need not be the one just freed: placeholders (not matched by
    // the glob) fill the lower holes until the old inode comes back (up to a limit).
    fs::remove_file(&path).unwrap();
    let mut placeholders = Vec::new();
    for n in 0..20_000 {
        let candidate = env.logs(&format!("placeholder-{n}"));
        File::create(&candidate).unwrap();
        let ino = fs::metadata(&candidate).unwrap().ino();
        if ino == old_inode {
            fs::rename(&candidate, &path).unwrap();
            break;
        }
        placeholders.push(candidate);
    }
    if !path.exists() {
        File::create(&path).unwrap();
    }
    for p in &placeholders {
        fs::remove_file(p).unwrap();
    }
    let mut file = OpenOptions::new().append(true).open(&path).unwrap();
    file.write_all(&lines_bytes("new", 0..3000)).unwrap();
    drop(file);
    let new_inode = fs::metadata(&path).unwrap().ino();
    eprintln!("[inode_reuse] {} placeholders created", placeholders.len());
    eprintln!(
        "[inode_reuse] old inode {old_inode}, new inode {new_inode}: {}",
        if old_inode == new_inode {
            "reused"
        } else {
            "NOT reused (the test still checks that every new line arrives)"
        }
    );

    let mut daemon = env.start();
    expect_range(&mut expected, "new", 0..3000);
    wait_delivered(&mut out, &mut daemon, &expected, DELIVERY);
    assert_ok(
        &check(&out, &expected, &CheckOpts::default()),
        Some(&daemon),
    );
    stop(daemon);
}

// ---------------------------------------------------------------------------------------------
// 6. A 10 MB line
// ---------------------------------------------------------------------------------------------

#[test]
fn ten_megabyte_line_is_cut_into_pieces() {
    let env = Env::new("ten_megabyte_line");
    let path = env.logs("app.log");
    env.write_pipeline(json!({"FilePaths": [env.logs_str("*.log")]}));
    append(&path, &lines_bytes("n6", 0..100));
    let mut daemon = env.start();
    let mut out = env.out();
    let mut expected = Expect::new();
    expect_range(&mut expected, "n6", 0..100);
    wait_delivered(&mut out, &mut daemon, &expected, DELIVERY);

    // 10 MiB + 777 bytes without a newline, written 1 MiB at a time.
    let mut rng = Rng::new(6);
    const ALNUM: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
    let mut long = b"LONG:".to_vec();
    while long.len() < 10 * 1024 * 1024 + 777 {
        long.push(ALNUM[(rng.next() % ALNUM.len() as u64) as usize]);
    }
    for chunk in long.chunks(1024 * 1024) {
        append(&path, chunk);
        std::thread::sleep(Duration::from_millis(30));
    }
    let mut rest = b"\n".to_vec();
    rest.extend_from_slice(&lines_bytes("n6", 100..200));
    append(&path, &rest);

    expect_range(&mut expected, "n6", 100..200);
    let long_len = long.len();
    let pieces_len = |out: &Out| -> usize {
        out.events
            .iter()
            .filter(|e| e.rec.is_none())
            .map(|e| e.content.len())
            .sum()
    };
    wait_for(
        &mut out,
        &mut daemon,
        DELIVERY,
        "every normal line and the long line's pieces",
        |out| out.has_all(&expected) && pieces_len(out) >= long_len,
        |out| {
            format!(
                "{} of {} normal lines missing; {} of {long_len} bytes of the long line",
                out.missing(&expected),
                200,
                pieces_len(out)
            )
        },
    );
    let opts = CheckOpts {
        allow_foreign: true,
        ..Default::default()
    };
    assert_ok(&check(&out, &expected, &opts), Some(&daemon));

    // The pieces: between seq 99 and seq 100, one after the other, 512 KiB each but the last.
    let positions: Vec<usize> = (0..out.events.len())
        .filter(|&i| out.events[i].rec.is_none())
        .collect();
    let pos_of = |seq: u64| {
        out.events
            .iter()
            .position(|e| e.rec.as_ref().is_some_and(|r| r.1 == seq))
            .unwrap()
    };
    let (first, last) = (positions[0], *positions.last().unwrap());
    assert_eq!(last - first + 1, positions.len(), "pieces not contiguous");
    assert!(
        pos_of(99) < first && last < pos_of(100),
        "pieces not between seq 99 and 100"
    );
    let sizes: Vec<usize> = positions
        .iter()
        .map(|&i| out.events[i].content.len())
        .collect();
    for (n, &size) in sizes.iter().enumerate() {
        if n + 1 < sizes.len() {
            assert_eq!(
                size,
                MAX_LINE,
                "piece {n} of {}: sizes {sizes:?}",
                sizes.len()
            );
        } else {
            assert!(size > 0 && size <= MAX_LINE, "last piece: sizes {sizes:?}");
        }
    }
    let joined: String = positions
        .iter()
        .map(|&i| out.events[i].content.as_str())
        .collect();
    assert!(
        joined.as_bytes() == long.as_slice(),
        "the pieces joined ({} bytes) differ from the line written ({} bytes)",
        joined.len(),
        long.len()
    );
    eprintln!("[ten_megabyte_line] {} pieces: {sizes:?}", sizes.len());
    daemon.assert_running("after the long line");
    stop(daemon);
}

// ---------------------------------------------------------------------------------------------
// 7. Invalid UTF-8
// ---------------------------------------------------------------------------------------------

/// Line `seq` of the invalid-UTF-8 test: the record prefix, then bytes of one of 8 kinds.
fn odd_line(seq: u64) -> Vec<u8> {
    let mut line = format!("u7 seq={seq:06} ").into_bytes();
    let middle: &[u8] = match seq % 8 {
        0 => b"before \xff\xfe after",
        1 => b"lone continuation \x80 here",
        2 => b"\xbf\x80\x41 continuation bytes first",
        3 => b"truncated euro \xe2\x82 then text",
        4 => b"overlong slash \xc0\xaf end",
        5 => "valid multibyte é € 😀 ok".as_bytes(),
        6 => b"controls \x00\x01\t quote \" backslash \\ end",
        _ => b"surrogate \xed\xa0\x80 and last byte \xf0",
    };
    line.extend_from_slice(middle);
    line
}

/// Runs of U+FFFD become one (how many an invalid sequence gives is a matter of policy).
fn collapse_replacements(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        if !(c == '\u{fffd}' && out.ends_with('\u{fffd}')) {
            out.push(c);
        }
    }
    out
}

#[test]
fn invalid_utf8_lines() {
    let env = Env::new("invalid_utf8");
    let path = env.logs("app.log");
    env.write_pipeline(json!({"FilePaths": [env.logs_str("*.log")]}));
    append(&path, &lines_bytes("ok", 0..10));
    let mut daemon = env.start();
    let mut out = env.out();
    let mut expected = Expect::new();
    expect_range(&mut expected, "ok", 0..10);
    wait_delivered(&mut out, &mut daemon, &expected, DELIVERY);

    let mut bytes = Vec::new();
    for seq in 0..400 {
        bytes.extend_from_slice(&odd_line(seq));
        bytes.push(b'\n');
    }
    append(&path, &bytes);
    expect_range(&mut expected, "u7", 0..400);
    wait_delivered(&mut out, &mut daemon, &expected, DELIVERY);
    daemon.assert_running("after lines with invalid UTF-8");
    // And it goes on.
    append(&path, &lines_bytes("ok", 10..110));
    expect_range(&mut expected, "ok", 10..110);
    wait_delivered(&mut out, &mut daemon, &expected, DELIVERY);

    let content = |id: &str, seq: u64| -> String {
        if id == "u7" {
            String::from_utf8_lossy(&odd_line(seq)).into_owned()
        } else {
            line_text(id, seq)
        }
    };
    // Compared with runs of U+FFFD collapsed: check the content separately.
    let opts = CheckOpts {
        content: None,
        ..Default::default()
    };
    assert_ok(&check(&out, &expected, &opts), Some(&daemon));
    let mut wrong = Vec::new();
    for ev in &out.events {
        let (id, seq) = ev.rec.clone().unwrap();
        let want = content(&id, seq);
        let invalid = id == "u7" && std::str::from_utf8(&odd_line(seq)).is_err();
        if collapse_replacements(&ev.content) != collapse_replacements(&want)
            || (invalid && !ev.content.contains('\u{fffd}'))
        {
            wrong.push(format!(
                "{id} seq {seq}: got {:?}, want {want:?}",
                ev.content
            ));
        }
    }
    assert!(
        wrong.is_empty(),
        "{} lines differ: {:?}",
        wrong.len(),
        &wrong[..wrong.len().min(8)]
    );
    daemon.assert_running("at the end");
    stop(daemon);
}

// ---------------------------------------------------------------------------------------------
// 8. 2,000 files in nested directories, with exclusions
// ---------------------------------------------------------------------------------------------

#[test]
fn two_thousand_nested_files_with_exclusions() {
    let env = Env::new("two_thousand_files");
    let logs = env.logs_str("");
    env.write_pipeline(json!({
        "FilePaths": [format!("{logs}/**/*.log")],
        "ExcludeFiles": ["*.skip.log"],
        "ExcludeDirs": [format!("{logs}/d03"), format!("{logs}/*/s7")],
        "ExcludeFilePaths": [format!("{logs}/d05/s1/*.log"), format!("{logs}/d1?/s2/f3.log")],
    }));
    // logs/dII/sJ/fK.log (K = 9: fK.skip.log), and a notes.txt in each subdir.
    let file_of = |i: u32, j: u32, k: u32| {
        let name = if k == 9 {
            format!("f{k}.skip.log")
        } else {
            format!("f{k}.log")
        };
        env.logs(&format!("d{i:02}/s{j}/{name}"))
    };
    let id_of = |i: u32, j: u32, k: u32| format!("d{i:02}s{j}f{k}");
    let excluded = |i: u32, j: u32, k: u32| {
        k == 9 || i == 3 || j == 7 || (i == 5 && j == 1) || (i >= 10 && j == 2 && k == 3)
    };
    let create = |dirs: std::ops::Range<u32>, seqs: std::ops::Range<u64>| {
        for i in dirs {
            for j in 0..10 {
                fs::create_dir_all(env.logs(&format!("d{i:02}/s{j}"))).unwrap();
                append(
                    &env.logs(&format!("d{i:02}/s{j}/notes.txt")),
                    &lines_bytes(&format!("txt{i:02}{j}"), seqs.clone()),
                );
                for k in 0..10 {
                    append(
                        &file_of(i, j, k),
                        &lines_bytes(&id_of(i, j, k), seqs.clone()),
                    );
                }
            }
        }
    };
    let mut expected = Expect::new();
    let expect = |expected: &mut Expect, dirs: std::ops::Range<u32>, seqs: std::ops::Range<u64>| {
        for i in dirs {
            for j in 0..10 {
                for k in 0..10 {
                    if !excluded(i, j, k) {
                        expect_range(expected, &id_of(i, j, k), seqs.clone());
                    }
                }
            }
        }
    };
    // Half before the start, half after; then more lines in the first half.
    create(0..10, 0..5);
    expect(&mut expected, 0..10, 0..5);
    let mut daemon = env.start();
    let mut out = env.out();
    wait_for(
        &mut out,
        &mut daemon,
        DELIVERY,
        "a first line",
        |out| !out.events.is_empty(),
        |_| String::new(),
    );
    create(10..20, 0..5);
    expect(&mut expected, 10..20, 0..5);
    create(0..10, 5..10);
    expect(&mut expected, 0..10, 5..10);
    let included = expected.len();
    eprintln!("[two_thousand_files] 2000 .log files, {included} of them included");
    wait_delivered(&mut out, &mut daemon, &expected, Duration::from_secs(45));
    // More files than the server keeps open (MAX_OPEN_FILES): files read to their end are
    // closed at once when over it, idle ones by the sweep. More lines in every file then:
    // closed files must be reopened where they were.
    let cap = max_open_files();
    assert!(
        included > cap,
        "{included} files do not exceed the cap of {cap} open files: the test shows nothing"
    );
    poll(&daemon, common::WAIT, || {
        let open = open_under(daemon.pid(), &env.logs(""));
        (open > cap)
            .then(|| format!("{open} log files still open after delivery, over the cap of {cap}"))
    });
    // While every file grows again, the descriptors stay within the cap (plus the few opened
    // for a moment: a file reopened to be read before it is closed again, a signature check).
    let sampling = Arc::new(AtomicBool::new(true));
    let sampler = {
        let (pid, logs, sampling) = (daemon.pid(), env.logs(""), sampling.clone());
        std::thread::spawn(move || {
            let mut most = 0;
            while sampling.load(Ordering::Relaxed) {
                most = most.max(open_under(pid, &logs));
                std::thread::sleep(Duration::from_millis(20));
            }
            most
        })
    };
    create(0..20, 10..15);
    expect(&mut expected, 0..20, 10..15);
    wait_delivered(&mut out, &mut daemon, &expected, Duration::from_secs(45));
    sampling.store(false, Ordering::Relaxed);
    let most = sampler.join().unwrap();
    eprintln!("[two_thousand_files] at most {most} log files open during the last round");
    assert!(
        most <= cap + 4,
        "{most} log files open at once during the last round, over the cap of {cap}"
    );
    // Anything excluded that would come late: a file created after all of them is found by
    // a walk of every glob, which saw the excluded files too; once its line arrived, an
    // excluded file would have been taken as well.
    fs::create_dir(env.logs("zz")).unwrap();
    append(&env.logs("zz/barrier.log"), &lines_bytes("barrier", 0..1));
    expect_range(&mut expected, "barrier", 0..1);
    wait_delivered(&mut out, &mut daemon, &expected, DELIVERY);
    assert_ok(
        &check(&out, &expected, &CheckOpts::default()),
        Some(&daemon),
    );
    stop(daemon);
}

/// The server's bound on open tailed files, read from its source so that the test follows it.
fn max_open_files() -> usize {
    const SOURCE: &str = include_str!("../src/input/file/mod.rs");
    SOURCE
        .lines()
        .find_map(|l| {
            let value = l.strip_prefix("const MAX_OPEN_FILES: usize = ")?;
            value.strip_suffix(';')?.replace('_', "").parse().ok()
        })
        .expect("const MAX_OPEN_FILES in host/src/input/file/mod.rs")
}

/// How many descriptors of process `pid` are open on files under `dir`.
fn open_under(pid: u32, dir: &Path) -> usize {
    // /proc shows where the descriptors really are: a tempdir may be behind a symlink.
    let dir = fs::canonicalize(dir).unwrap_or_else(|_| dir.to_owned());
    let Ok(entries) = fs::read_dir(format!("/proc/{pid}/fd")) else {
        return 0;
    };
    entries
        .flatten()
        .filter_map(|e| fs::read_link(e.path()).ok())
        .filter(|t| t.starts_with(&dir))
        .count()
}

// ---------------------------------------------------------------------------------------------
// 9. Multiline Java stack traces
// ---------------------------------------------------------------------------------------------

/// Event `seq`: a dated first line with the record, then 0 to 19 stack lines.
fn java_event(seq: u64) -> String {
    let n = 1 + (seq.wrapping_mul(0x9e37_79b9_7f4a_7c15) >> 59) % 20;
    let mut lines = vec![format!(
        "2024-03-{:02} 10:11:{:02}.{:03} ERROR m9 seq={seq:06} request failed",
        1 + seq % 28,
        seq % 60,
        seq % 1000
    )];
    for k in 1..n {
        lines.push(match k % 5 {
            1 => format!("java.lang.IllegalStateException: state {seq}/{k}"),
            2 | 3 => format!(
                "\tat com.example.service.Handler.step{k}(Handler.java:{})",
                seq + k
            ),
            4 => format!("Caused by: java.io.IOException: closed {k}"),
            _ => format!("\t... {k} more"),
        });
    }
    lines.join("\n")
}

/// The record of a Java event: the 4th and 5th words of its first line.
fn parse_java(content: &str) -> Option<(String, u64)> {
    let first = content.split('\n').next()?;
    let words: Vec<&str> = first.split(' ').collect();
    let seq = words.get(4)?.strip_prefix("seq=")?.parse().ok()?;
    Some((words.get(3)?.to_string(), seq))
}

#[test]
fn multiline_java_stack_traces() {
    const EVENTS: u64 = 1500;
    let env = Env::new("multiline_java");
    let path = env.logs("app.log");
    env.write_pipeline(json!({
        "FilePaths": [env.logs_str("*.log")],
        "Multiline": {"Mode": "custom", "StartPattern": r"\d{4}-\d{2}-\d{2} .*"},
    }));
    let mut text = String::new();
    for seq in 0..EVENTS {
        text.push_str(&java_event(seq));
        text.push('\n');
    }
    let bytes = text.into_bytes();
    // A fifth before the start, the rest in chunks of random size (cut anywhere) while it runs.
    let split = bytes.len() / 5;
    append(&path, &bytes[..split]);
    let mut daemon = env.start();
    let mut rng = Rng::new(9);
    let mut at = split;
    while at < bytes.len() {
        let n = (rng.range(1, 64 * 1024) as usize).min(bytes.len() - at);
        append(&path, &bytes[at..at + n]);
        at += n;
        std::thread::sleep(Duration::from_millis(rng.range(0, 15)));
    }
    let mut out = Out::new(&env.out_path, parse_java);
    let mut expected = Expect::new();
    expect_range(&mut expected, "m9", 0..EVENTS);
    // The last event waits for the 5 s timeout (nothing follows it).
    wait_delivered(&mut out, &mut daemon, &expected, DELIVERY);
    let want = |_: &str, seq: u64| java_event(seq);
    let opts = CheckOpts {
        content: Some(&want),
        ..Default::default()
    };
    assert_ok(&check(&out, &expected, &opts), Some(&daemon));
    assert_eq!(out.events.len() as u64, EVENTS);
    stop(daemon);
}

// ---------------------------------------------------------------------------------------------
// 10. kill -9 at random moments while a writer writes and rotates
// ---------------------------------------------------------------------------------------------

struct Cycle {
    started: Instant,
    killed: Instant,
    records_after: usize,
    stderr: Vec<String>,
    /// files.json right after the kill.
    checkpoints: Option<Value>,
}

#[test]
fn kill_nine_at_random_moments() {
    const CYCLES: usize = 20;
    let env = Env::new("kill_nine");
    env.write_pipeline(json!({"FilePaths": [env.logs_str("app.log")]}));
    let seed = std::env::var("TAILRACE_TEST_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_nanos() as u64
        });
    eprintln!("[kill_nine] seed {seed} (TAILRACE_TEST_SEED to repeat)");
    let mut rng = Rng::new(seed);
    let t0 = Instant::now();
    let stop_flag = Arc::new(AtomicBool::new(false));
    let writer = spawn_rotating_writer(env.logs(""), 2000, None, 800, stop_flag.clone());
    let mut out = env.out();
    let mut cycles = Vec::new();
    let mut cut_lines = 0;
    for n in 1..=CYCLES {
        let mut daemon = env.start();
        let started = Instant::now();
        std::thread::sleep(Duration::from_millis(rng.range(200, 1500)));
        daemon.assert_running(&format!("before kill -9 #{n}"));
        assert_no_panic(&daemon);
        daemon.kill_hard();
        let killed = Instant::now();
        if end_cut_line(&env.out_path) {
            cut_lines += 1;
        }
        out.refresh();
        cycles.push(Cycle {
            started,
            killed,
            records_after: out.records(),
            stderr: daemon.stderr_lines(),
            checkpoints: read_checkpoints(&env),
        });
        // A restart takes a moment: rotations also happen while the daemon is down, and
        // the rotated file is then found through its checkpoint only.
        std::thread::sleep(Duration::from_millis(rng.range(0, 400)));
    }
    stop_flag.store(true, Ordering::Relaxed);
    let log = writer.join().unwrap();
    let expected = log.expected();
    eprintln!(
        "[kill_nine] {CYCLES} kills in {:.1}s; {} lines written in {} files; {} events so far, \
         {cut_lines} lines cut by a kill",
        t0.elapsed().as_secs_f64(),
        log.total(),
        log.files.len(),
        out.records()
    );

    // The last run: until everything arrived (or it is clear that something will not).
    let mut daemon = env.start();
    let deadline = Instant::now() + DELIVERY;
    while !out.refresh().has_all(&expected) && Instant::now() < deadline {
        daemon.assert_running("in the last run");
        std::thread::sleep(Duration::from_millis(200));
    }
    let opts = CheckOpts {
        allow_duplicates: true,
        max_unparseable: cut_lines,
        ..Default::default()
    };
    let problems = check(&out, &expected, &opts);
    let duplicates = out.records() - out.seen.values().map(HashSet::len).sum::<usize>();
    // Rotated files resumed after a restart (found through their checkpoints).
    let resumed: Vec<String> = cycles
        .iter()
        .flat_map(|c| &c.stderr)
        .chain(&daemon.stderr_lines())
        .filter(|l| l.contains("tailing file") && l.contains("app.log."))
        .filter_map(|l| l.split_whitespace().find(|w| w.starts_with("path=")))
        .map(|w| w.rsplit('/').next().unwrap_or(w).to_owned())
        .collect();
    eprintln!(
        "[kill_nine] rotated files resumed after a restart: {} times {resumed:?}",
        resumed.len()
    );
    eprintln!(
        "[kill_nine] {} events, {duplicates} duplicates, {} unparseable lines",
        out.records(),
        out.unparseable.len()
    );
    if !problems.is_empty() {
        let report = loss_report(&out, &expected, &log, &cycles, t0, &env);
        panic!(
            "{} problems:\n  {}\n{report}\n{}",
            problems.len(),
            problems.join("\n  "),
            daemon.diagnostics()
        );
    }
    stop(daemon);
}

fn read_checkpoints(env: &Env) -> Option<Value> {
    let text = fs::read(env.sandbox.path("data/checkpoints/files.json")).ok()?;
    serde_json::from_slice(&text).ok()
}

/// The checkpoint of the file with `inode` in a files.json: (path, offset).
fn checkpoint_of(checkpoints: &Option<Value>, inode: u64) -> Option<(String, u64)> {
    let files = checkpoints.as_ref()?.get("files")?.as_array()?;
    let cp = files
        .iter()
        .find(|cp| cp.pointer("/id/inode").and_then(Value::as_u64) == Some(inode))?;
    Some((
        cp.get("path")?.as_str()?.to_owned(),
        cp.get("offset")?.as_u64()?,
    ))
}

/// For each run of lost lines: its file, when it was written, which daemon run (if any) was up
/// then, and what the runs said about the file.
fn loss_report(
    out: &Out,
    expected: &Expect,
    log: &WriterLog,
    cycles: &[Cycle],
    t0: Instant,
    env: &Env,
) -> String {
    let at = |i: Instant| format!("{:.3}s", i.saturating_duration_since(t0).as_secs_f64());
    let during = |i: Instant| {
        cycles
            .iter()
            .position(|c| c.started <= i && i < c.killed)
            .map(|n| format!("during run {}", n + 1))
            .unwrap_or_else(|| {
                let after = cycles.iter().rposition(|c| c.killed <= i);
                match after {
                    Some(n) if n + 1 == cycles.len() => "after the last kill".to_owned(),
                    Some(n) => format!("between kill {} and run {}", n + 1, n + 2),
                    None => "before the first run".to_owned(),
                }
            })
    };
    let mut text = String::from("--- loss report (times from the test's start) ---\n");
    for (n, c) in cycles.iter().enumerate() {
        text.push_str(&format!(
            "run {}: {} .. {} (kill -9), {} events in out.jsonl after it\n",
            n + 1,
            at(c.started),
            at(c.killed),
            c.records_after
        ));
    }
    for f in &log.files {
        let Some(want) = expected.get(&f.id) else {
            continue;
        };
        let seen = out.seen.get(&f.id);
        let missing: Vec<u64> = want
            .iter()
            .copied()
            .filter(|s| !seen.is_some_and(|seen| seen.contains(s)))
            .collect();
        if missing.is_empty() {
            continue;
        }
        let (lo, hi) = (missing[0], *missing.last().unwrap());
        let rotated = match &f.rotated {
            Some((when, to)) => format!(
                "renamed to {} at {} ({})",
                to.display(),
                at(*when),
                during(*when)
            ),
            None => "still app.log".to_owned(),
        };
        text.push_str(&format!(
            "LOST {}: {} of its lines {}..{} missing, seqs {}; created at {} ({}), {rotated}; \
             missing lines written {} ({}) .. {} ({})\n",
            f.id,
            missing.len(),
            f.first,
            f.end,
            ranges(missing.clone(), 10),
            at(f.created),
            during(f.created),
            log.written_at(lo).map(&at).unwrap_or_default(),
            log.written_at(lo).map(&during).unwrap_or_default(),
            log.written_at(hi).map(&at).unwrap_or_default(),
            log.written_at(hi).map(&during).unwrap_or_default(),
        ));
        let offset_of = |seq: u64| -> u64 {
            (f.first..seq)
                .map(|s| line_text(&f.id, s).len() as u64 + 1)
                .sum()
        };
        text.push_str(&format!(
            "  inode {}; lost bytes {}..{} of {}; its checkpoint in files.json after each kill \
             (runs from its creation to 3 s after its rename): {}\n",
            f.inode,
            offset_of(lo),
            offset_of(hi + 1),
            offset_of(f.end),
            cycles
                .iter()
                .enumerate()
                .filter(|(_, c)| {
                    c.killed >= f.created
                        && f.rotated
                            .as_ref()
                            .is_none_or(|(when, _)| c.started <= *when + Duration::from_secs(3))
                })
                .map(|(n, c)| match checkpoint_of(&c.checkpoints, f.inode) {
                    Some((path, offset)) => format!(
                        "#{}: {} @ {offset}",
                        n + 1,
                        path.rsplit('/').next().unwrap_or_default()
                    ),
                    None => format!("#{}: none", n + 1),
                })
                .collect::<Vec<_>>()
                .join(", ")
        ));
        let name = f
            .rotated
            .as_ref()
            .and_then(|(_, to)| to.file_name())
            .map(|n| n.to_string_lossy().into_owned());
        for (n, c) in cycles.iter().enumerate() {
            for line in &c.stderr {
                let about = name
                    .as_ref()
                    .is_some_and(|n| line.contains(&format!("{n} ")) || line.ends_with(n.as_str()));
                if about {
                    text.push_str(&format!("  run {} stderr: {line}\n", n + 1));
                }
            }
        }
    }
    for (n, c) in cycles.iter().enumerate() {
        for line in c.stderr.iter().filter(|l| {
            l.contains("tailing file") || l.contains("rotated") || l.contains("checkpoint")
        }) {
            text.push_str(&format!("run {} stderr: {line}\n", n + 1));
        }
    }
    if let Ok(cp) = fs::read_to_string(env.sandbox.path("data/checkpoints/files.json")) {
        text.push_str(&format!("checkpoints now: {cp}\n"));
    }
    text
}

// ---------------------------------------------------------------------------------------------
// 11. --once
// ---------------------------------------------------------------------------------------------

#[test]
fn once_reads_everything_then_nothing_more() {
    let env = Env::new("once");
    env.write_pipeline(json!({"FilePaths": [env.logs_str("*.log")]}));
    let mut expected = Expect::new();
    for n in 0..5 {
        let id = format!("o{n}");
        let lines = 500 * (n + 1);
        append(&env.logs(&format!("{id}.log")), &lines_bytes(&id, 0..lines));
        expect_range(&mut expected, &id, 0..lines);
    }
    // A last line without its newline: --once sends it as it is.
    let mut partial = lines_bytes("op", 0..10);
    partial.extend_from_slice(line_text("op", 10).as_bytes());
    append(&env.logs("partial.log"), &partial);
    expect_range(&mut expected, "op", 0..11);

    let mut daemon = env.start_once();
    let (status, took) = daemon.wait_exit(ONCE_LIMIT);
    assert!(
        status.success(),
        "exit status {status}\n{}",
        daemon.diagnostics()
    );
    assert_no_panic(&daemon);
    eprintln!("[once] the first --once run took {took:?}");
    let mut out = env.out();
    out.refresh();
    assert_ok(
        &check(&out, &expected, &CheckOpts::default()),
        Some(&daemon),
    );

    let before = fs::read(&env.out_path).unwrap();
    let mut again = env.start_once();
    let (status, took) = again.wait_exit(ONCE_LIMIT);
    assert!(
        status.success(),
        "exit status {status}\n{}",
        again.diagnostics()
    );
    eprintln!("[once] the second --once run took {took:?}");
    let after = fs::read(&env.out_path).unwrap();
    if after != before {
        let mut out = env.out();
        out.pos = before.len() as u64;
        out.refresh();
        let sample: Vec<&str> = out
            .events
            .iter()
            .take(5)
            .map(|e| e.content.as_str())
            .collect();
        panic!(
            "the second --once run over unchanged files emitted {} more bytes ({} events), e.g. \
             {sample:?}\n{}",
            after.len() as i64 - before.len() as i64,
            out.events.len(),
            again.diagnostics()
        );
    }
}
