//! End-to-end tests of the `tailrace` daemon: each test starts the real binary in a tempdir of its
//! own, reads its stdout (one JSON object per event, DESIGN §7) and its stderr (tracing logs),
//! and checks what reaches stdout and what the logs say.
//!
//! They need the libraries next to the binary and the fault-injecting base:
//! `make build faults` first (target/release and target/faults/release).
//!
//! The harness comes first (a [`Sandbox`] of config/data/log dirs, a [`Daemon`] guard that
//! always kills its process, line readers and wait helpers), then the tests.

use std::fs::{self, OpenOptions};
use std::io::{BufRead, BufReader, Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::{Map, Value};

// ---------------------------------------------------------------------------------------------
// Harness
// ---------------------------------------------------------------------------------------------

/// How long any expected output may take to show up.
const WAIT: Duration = Duration::from_secs(15);
/// How long the daemon may take to exit after SIGTERM.
const EXIT_LIMIT: Duration = Duration::from_secs(15);

fn tailrace_bin() -> &'static Path {
    Path::new(env!("CARGO_BIN_EXE_tailrace"))
}

fn repo_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// target/release: the binary's dir, the default plugin dir, with the real libraries.
fn release_dir() -> PathBuf {
    tailrace_bin().parent().unwrap().to_owned()
}

fn require(path: &Path) {
    assert!(
        path.exists(),
        "{} is missing: run `make build faults` first",
        path.display()
    );
}

/// One stdout line: when it arrived, its text, and its JSON object (if it is one).
#[derive(Clone, Debug)]
struct Line {
    at: Instant,
    text: String,
    json: Option<Map<String, Value>>,
}

impl Line {
    fn get(&self, key: &str) -> Option<&str> {
        self.json.as_ref()?.get(key)?.as_str()
    }

    /// A `metric_mock` event (it always carries `Index`).
    fn is_mock(&self) -> bool {
        self.get("Index").is_some()
    }

    fn index(&self) -> i64 {
        let index = self.get("Index").unwrap_or_default();
        index
            .parse()
            .unwrap_or_else(|_| panic!("Index {index:?} is not a number: {}", self.text))
    }
}

/// A tempdir with `conf/` (the config dir), `data/`, `logs/` and `staging/` (where configs are
/// written before they are renamed into `conf/`, so that the watcher never sees half a file).
struct Sandbox {
    tmp: tempfile::TempDir,
}

impl Sandbox {
    fn new() -> Sandbox {
        let tmp = tempfile::tempdir().unwrap();
        for dir in ["conf", "logs", "staging"] {
            fs::create_dir(tmp.path().join(dir)).unwrap();
        }
        Sandbox { tmp }
    }

    fn path(&self, rel: &str) -> PathBuf {
        self.tmp.path().join(rel)
    }

    fn config_path(&self, file: &str) -> PathBuf {
        self.path("conf").join(file)
    }

    /// Writes `conf/<file>` atomically (written aside, then renamed over).
    fn write_config(&self, file: &str, text: &str) {
        let staged = self.path("staging").join(file);
        fs::write(&staged, text).unwrap();
        fs::rename(&staged, self.config_path(file)).unwrap();
    }

    fn remove_config(&self, file: &str) {
        fs::remove_file(self.config_path(file)).unwrap();
    }

    /// `file.yaml`: input_file on `logs/*.log` → flusher_stdout, with `logs/app.log` created
    /// beforehand holding `line-start-0` (small, so it is read from its start).
    fn add_file_pipeline(&self) {
        fs::write(self.path("logs/app.log"), "line-start-0\n").unwrap();
        let glob = self.path("logs").join("*.log");
        self.write_config(
            "file.yaml",
            &format!(
                "inputs: [{{Type: input_file, FilePaths: [\"{}\"]}}]\n\
                 flushers: [{{Type: flusher_stdout}}]\n",
                glob.display()
            ),
        );
    }

    fn append_log(&self, line: &str) {
        let mut file = OpenOptions::new()
            .append(true)
            .open(self.path("logs/app.log"))
            .unwrap();
        file.write_all(format!("{line}\n").as_bytes()).unwrap();
    }
}

/// The mock pipeline: metric_mock (an extended input) → processor_add_fields (extended) →
/// flusher_stdout (native), so its data goes base → SendPb → the host's flusher.
fn mock_yaml(input_interval_ms: u64, f1: &str) -> String {
    format!(
        "global: {{InputIntervalMs: {input_interval_ms}, AggregatIntervalMs: 100, FlushIntervalMs: 100}}\n\
         inputs: [{{Type: metric_mock, Fields: {{f1: {f1}}}, Tags: {{t1: v1}}}}]\n\
         processors: [{{Type: processor_add_fields, Fields: {{added: \"yes\"}}}}]\n\
         flushers: [{{Type: flusher_stdout, OnlyStdout: true}}]\n"
    )
}

/// A running daemon; killed on drop if still running.
struct Daemon {
    child: Child,
    stdout: Arc<Mutex<Vec<Line>>>,
    stderr: Arc<Mutex<Vec<String>>>,
}

impl Daemon {
    /// Starts `tailrace --config-dir <sandbox>/conf --data-dir <sandbox>/data`, with
    /// `--plugin-dir` when given, and extra environment variables.
    fn start(sandbox: &Sandbox, plugin_dir: Option<&Path>, env: &[(&str, &str)]) -> Daemon {
        let mut cmd = Command::new(tailrace_bin());
        cmd.arg("--config-dir")
            .arg(sandbox.path("conf"))
            .arg("--data-dir")
            .arg(sandbox.path("data"))
            .args(["--log-level", "info"])
            .current_dir(sandbox.path(""))
            .env_remove("RUST_LOG")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        if let Some(dir) = plugin_dir {
            cmd.arg("--plugin-dir").arg(dir);
        }
        for (k, v) in env {
            cmd.env(k, v);
        }
        let mut child = cmd.spawn().expect("start tailrace");

        let stdout = Arc::new(Mutex::new(Vec::new()));
        let out = child.stdout.take().unwrap();
        let sink = stdout.clone();
        std::thread::spawn(move || {
            for text in BufReader::new(out).lines() {
                let Ok(text) = text else { break };
                let at = Instant::now();
                let json = serde_json::from_str::<Value>(&text)
                    .ok()
                    .and_then(|v| v.as_object().cloned());
                sink.lock().unwrap().push(Line { at, text, json });
            }
        });

        let stderr = Arc::new(Mutex::new(Vec::new()));
        let err = child.stderr.take().unwrap();
        let sink = stderr.clone();
        std::thread::spawn(move || {
            for text in BufReader::new(err).lines() {
                let Ok(text) = text else { break };
                sink.lock().unwrap().push(text);
            }
        });
        Daemon {
            child,
            stdout,
            stderr,
        }
    }

    fn lines(&self) -> Vec<Line> {
        self.stdout.lock().unwrap().clone()
    }

    fn mock_lines(&self) -> Vec<Line> {
        self.lines().into_iter().filter(Line::is_mock).collect()
    }

    /// The last lines of both streams, for failure messages.
    fn diagnostics(&self) -> String {
        let tail = |v: &[String], n: usize| v[v.len().saturating_sub(n)..].join("\n");
        let stdout: Vec<String> = self.lines().into_iter().map(|l| l.text).collect();
        format!(
            "--- stderr (last 40 lines) ---\n{}\n--- stdout (last 10 lines) ---\n{}",
            tail(&self.stderr.lock().unwrap(), 40),
            tail(&stdout, 10)
        )
    }

    /// Waits up to `limit` for a stdout line matching `pred`; returns the first one.
    fn wait_line_within(&self, limit: Duration, what: &str, pred: impl Fn(&Line) -> bool) -> Line {
        let deadline = Instant::now() + limit;
        loop {
            if let Some(line) = self.stdout.lock().unwrap().iter().find(|l| pred(l)) {
                return line.clone();
            }
            if Instant::now() >= deadline {
                panic!(
                    "no stdout line with {what} within {limit:?}\n{}",
                    self.diagnostics()
                );
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn wait_line(&self, what: &str, pred: impl Fn(&Line) -> bool) -> Line {
        self.wait_line_within(WAIT, what, pred)
    }

    /// Waits until `n` stdout lines match `pred`; returns them.
    fn wait_lines(&self, n: usize, what: &str, pred: impl Fn(&Line) -> bool) -> Vec<Line> {
        let deadline = Instant::now() + WAIT;
        loop {
            let found: Vec<Line> = self.lines().into_iter().filter(|l| pred(l)).collect();
            if found.len() >= n {
                return found;
            }
            if Instant::now() >= deadline {
                panic!(
                    "only {} of {n} stdout lines with {what} within {WAIT:?}\n{}",
                    found.len(),
                    self.diagnostics()
                );
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Waits for a stderr line matching `pred`; returns it.
    fn wait_stderr(&self, what: &str, pred: impl Fn(&str) -> bool) -> String {
        let deadline = Instant::now() + WAIT;
        loop {
            if let Some(line) = self.stderr.lock().unwrap().iter().find(|l| pred(l)) {
                return line.clone();
            }
            if Instant::now() >= deadline {
                panic!(
                    "no stderr line with {what} within {WAIT:?}\n{}",
                    self.diagnostics()
                );
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Appends `line-<tag>-<i>` for i in 1..=n to logs/app.log and waits for each as a
    /// `content` on stdout: the native file pipeline works.
    fn expect_native_lines(&self, sandbox: &Sandbox, tag: &str, n: usize) {
        for i in 1..=n {
            sandbox.append_log(&format!("line-{tag}-{i}"));
        }
        for i in 1..=n {
            let want = format!("line-{tag}-{i}");
            let line = self.wait_line(&format!("content {want:?}"), |l| {
                l.get("content") == Some(want.as_str())
            });
            let path = line.get("__tag__:__path__").unwrap_or_default();
            assert!(path.ends_with("app.log"), "{}", line.text);
        }
    }

    fn assert_running(&mut self, when: &str) {
        let status = self.child.try_wait().unwrap();
        assert!(
            status.is_none(),
            "the daemon exited ({status:?}) {when}\n{}",
            self.diagnostics()
        );
    }

    /// SIGTERM, then waits up to `EXIT_LIMIT`; fails if the daemon does not exit in time.
    /// Returns the exit status and how long the exit took.
    fn terminate(&mut self) -> (ExitStatus, Duration) {
        let started = Instant::now();
        let sent = Command::new("kill")
            .arg("-TERM")
            .arg(self.child.id().to_string())
            .status()
            .expect("run kill");
        assert!(sent.success(), "kill -TERM failed");
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return (status, started.elapsed());
            }
            if started.elapsed() >= EXIT_LIMIT {
                panic!(
                    "the daemon did not exit within {EXIT_LIMIT:?} of SIGTERM\n{}",
                    self.diagnostics()
                );
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// The largest gap between consecutive lines.
fn largest_gap(lines: &[Line]) -> Duration {
    lines
        .windows(2)
        .map(|w| w[1].at.duration_since(w[0].at))
        .max()
        .unwrap_or_default()
}

fn is_plugins_unavailable_warning(line: &str, file: &str) -> bool {
    line.contains("WARN") && line.contains(file)
}

fn is_mock_not_loaded(line: &str) -> bool {
    line.contains("mock") && line.contains("not loaded") && line.contains("plugin base")
}

// ---------------------------------------------------------------------------------------------
// Plugins present: data goes through the base and back
// ---------------------------------------------------------------------------------------------

#[test]
fn plugins_present_mock_reaches_native_stdout() {
    require(&release_dir().join("libPluginBase.so"));
    let sandbox = Sandbox::new();
    sandbox.write_config("mock.yaml", &mock_yaml(200, "a"));
    let mut daemon = Daemon::start(&sandbox, None, &[]);

    let lines = daemon.wait_lines(5, "metric_mock's Index", Line::is_mock);
    let now_secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    for line in &lines {
        assert_eq!(line.get("f1"), Some("a"), "{}", line.text);
        assert_eq!(line.get("added"), Some("yes"), "{}", line.text);
        assert_eq!(line.get("__tag__:t1"), Some("v1"), "{}", line.text);
        let time: i64 = line
            .get("__time__")
            .and_then(|t| t.parse().ok())
            .unwrap_or_else(|| panic!("__time__ is not a string of seconds: {}", line.text));
        assert!((time - now_secs).abs() < 60, "{}", line.text);
    }
    let indexes: Vec<i64> = lines.iter().map(Line::index).collect();
    assert!(
        indexes.windows(2).all(|w| w[0] < w[1]),
        "Index not increasing: {indexes:?}"
    );

    let (status, _) = daemon.terminate();
    assert!(status.success(), "exit status {status:?}");
}

#[test]
fn native_file_lines_reach_stdout() {
    let sandbox = Sandbox::new();
    sandbox.add_file_pipeline();
    let daemon = Daemon::start(&sandbox, None, &[]);
    daemon.wait_line("the line written before the start", |l| {
        l.get("content") == Some("line-start-0")
    });
    daemon.expect_native_lines(&sandbox, "native", 5);
    let contents: Vec<String> = daemon
        .lines()
        .iter()
        .filter_map(|l| l.get("content").map(str::to_owned))
        .collect();
    let expected: Vec<String> = std::iter::once("line-start-0".to_owned())
        .chain((1..=5).map(|i| format!("line-native-{i}")))
        .collect();
    assert_eq!(contents, expected, "each line exactly once, in order");
}

// ---------------------------------------------------------------------------------------------
// Broken or missing plugins: native collection keeps running
// ---------------------------------------------------------------------------------------------

#[test]
fn empty_plugin_dir_keeps_native_running() {
    let sandbox = Sandbox::new();
    let empty = sandbox.path("plugins");
    fs::create_dir(&empty).unwrap();
    sandbox.add_file_pipeline();
    sandbox.write_config("mock.yaml", &mock_yaml(200, "a"));
    let mut daemon = Daemon::start(&sandbox, Some(&empty), &[]);

    daemon.wait_line("line-start-0", |l| l.get("content") == Some("line-start-0"));
    daemon.expect_native_lines(&sandbox, "before", 3);
    daemon.wait_stderr("a warning that libPluginAdapter.so is not found", |l| {
        is_plugins_unavailable_warning(l, "libPluginAdapter.so") && l.contains("not found")
    });
    daemon.wait_stderr(
        "that the mock pipeline needs the plugin base",
        is_mock_not_loaded,
    );
    daemon.assert_running("after the plugin libraries were found missing");
    daemon.expect_native_lines(&sandbox, "after", 3);
    assert!(daemon.mock_lines().is_empty(), "{}", daemon.diagnostics());

    let (status, _) = daemon.terminate();
    assert!(status.success(), "exit status {status:?}");
}

#[test]
fn text_file_as_base_keeps_native_running() {
    let release = release_dir();
    require(&release.join("libPluginAdapter.so"));
    let sandbox = Sandbox::new();
    let plugins = sandbox.path("plugins");
    fs::create_dir(&plugins).unwrap();
    fs::copy(
        release.join("libPluginAdapter.so"),
        plugins.join("libPluginAdapter.so"),
    )
    .unwrap();
    fs::write(
        plugins.join("libPluginBase.so"),
        "this is not a shared library\n",
    )
    .unwrap();
    sandbox.add_file_pipeline();
    sandbox.write_config("mock.yaml", &mock_yaml(200, "a"));
    let mut daemon = Daemon::start(&sandbox, Some(&plugins), &[]);

    daemon.wait_line("line-start-0", |l| l.get("content") == Some("line-start-0"));
    daemon.expect_native_lines(&sandbox, "before", 3);
    daemon.wait_stderr("a warning that libPluginBase.so cannot be loaded", |l| {
        is_plugins_unavailable_warning(l, "libPluginBase.so")
            && (l.contains("cannot load") || l.contains("cannot be loaded"))
    });
    daemon.wait_stderr(
        "that the mock pipeline needs the plugin base",
        is_mock_not_loaded,
    );
    daemon.assert_running("after the plugin base failed to load");
    daemon.expect_native_lines(&sandbox, "after", 3);
    assert!(daemon.mock_lines().is_empty(), "{}", daemon.diagnostics());

    let (status, _) = daemon.terminate();
    assert!(status.success(), "exit status {status:?}");
}

#[test]
fn hanging_holdon_stalls_only_plugins() {
    let faults = repo_dir().join("target/faults/release");
    require(&faults.join("libPluginBase.so"));
    let sandbox = Sandbox::new();
    sandbox.add_file_pipeline();
    sandbox.write_config("mock.yaml", &mock_yaml(200, "a"));
    let mut daemon = Daemon::start(
        &sandbox,
        Some(&faults),
        &[("TAILRACE_TEST_HOLDON_HANG", "1")],
    );

    daemon.wait_line("mock data (f1=a)", |l| l.get("f1") == Some("a"));
    daemon.wait_line("line-start-0", |l| l.get("content") == Some("line-start-0"));
    // The edit makes the host run a hold-on window: HoldOn(0) never returns.
    sandbox.write_config("mock.yaml", &mock_yaml(200, "b"));
    std::thread::sleep(Duration::from_millis(1500)); // past the next config poll
    daemon.expect_native_lines(&sandbox, "during-holdon", 3);
    daemon.wait_stderr("\"has not returned from HoldOn\"", |l| {
        l.contains("has not returned from HoldOn")
    });
    daemon.assert_running("while the plugin base hangs in HoldOn");
    daemon.expect_native_lines(&sandbox, "after-warning", 3);
    daemon.assert_running("while the plugin base hangs in HoldOn");

    // The base also hangs in HoldOn(1): the host must give up on it (after at most 5 s) and
    // exit anyway; `terminate` fails unless it exits within EXIT_LIMIT.
    daemon.terminate();
}

// ---------------------------------------------------------------------------------------------
// Hot reload
// ---------------------------------------------------------------------------------------------

#[test]
fn hot_reload_changes_fields_without_a_gap() {
    const INTERVAL_MS: u64 = 300;
    let sandbox = Sandbox::new();
    sandbox.write_config("mock.yaml", &mock_yaml(INTERVAL_MS, "a"));
    let daemon = Daemon::start(&sandbox, None, &[]);
    daemon.wait_lines(3, "f1=a", |l| l.get("f1") == Some("a"));

    let renamed_at = Instant::now();
    sandbox.write_config("mock.yaml", &mock_yaml(INTERVAL_MS, "b"));
    let first_b = daemon.wait_line_within(Duration::from_secs(10), "f1=b", |l| {
        l.get("f1") == Some("b")
    });
    // A few more after the switch, to see that no f1=a line follows.
    daemon.wait_lines(4, "f1=b", |l| l.get("f1") == Some("b"));

    let mock = daemon.mock_lines();
    let switch = mock.iter().position(|l| l.get("f1") == Some("b")).unwrap();
    let late_a: Vec<&str> = mock[switch..]
        .iter()
        .filter(|l| l.get("f1") != Some("b"))
        .map(|l| l.text.as_str())
        .collect();
    assert!(
        late_a.is_empty(),
        "lines without f1=b after the first f1=b line: {late_a:?}"
    );

    // Every mock line from one poll period before the rename to three lines after the switch.
    let window: Vec<Line> = mock[..switch + 4]
        .iter()
        .filter(|l| l.at + Duration::from_secs(1) >= renamed_at)
        .cloned()
        .collect();
    let gaps: Vec<u128> = window
        .windows(2)
        .map(|w| w[1].at.duration_since(w[0].at).as_millis())
        .collect();
    let switch_gap = first_b.at.duration_since(mock[switch - 1].at);
    let limit = Duration::from_millis(2 * INTERVAL_MS + 400);
    let largest = largest_gap(&window);
    assert!(
        largest < limit,
        "largest gap across the switch {largest:?} (limit {limit:?}); gap at the switch \
         {switch_gap:?}; all gaps in ms: {gaps:?}; first f1=b {:?} after the rename",
        first_b.at.duration_since(renamed_at)
    );
}

/// Mock lines keep coming with f1=a for 3 s after `since`.
fn assert_old_mock_keeps_running(daemon: &Daemon, since: Instant) {
    let later = since + Duration::from_secs(3);
    daemon.wait_line("a mock line 3 s after the invalid edit", |l| {
        l.is_mock() && l.at >= later
    });
    let after: Vec<Line> = daemon
        .mock_lines()
        .into_iter()
        .filter(|l| l.at >= since && l.at <= later)
        .collect();
    assert!(
        after.len() >= 5,
        "only {} mock lines in the 3 s after the invalid edit\n{}",
        after.len(),
        daemon.diagnostics()
    );
    for line in &after {
        assert_eq!(line.get("f1"), Some("a"), "{}", line.text);
    }
    let gap = largest_gap(&after);
    assert!(
        gap < Duration::from_secs(1),
        "gap of {gap:?} in the old pipeline's output"
    );
}

#[test]
fn invalid_edit_keeps_the_old_pipeline() {
    let sandbox = Sandbox::new();
    sandbox.write_config("mock.yaml", &mock_yaml(200, "a"));
    let mut daemon = Daemon::start(&sandbox, None, &[]);
    daemon.wait_lines(2, "f1=a", |l| l.get("f1") == Some("a"));

    // Invalid YAML.
    sandbox.write_config(
        "mock.yaml",
        "inputs: [{Type: metric_mock, Fields: {f1: b}\n",
    );
    daemon.wait_stderr("\"invalid config\" naming mock.yaml", |l| {
        l.contains("invalid config") && l.contains("mock.yaml")
    });
    assert_old_mock_keeps_running(&daemon, Instant::now());

    // Valid YAML, unknown processor type.
    let unknown = mock_yaml(200, "b").replace("processor_add_fields", "processor_no_such_type");
    sandbox.write_config("mock.yaml", &unknown);
    daemon.wait_stderr("\"invalid config\" naming mock.yaml and the type", |l| {
        l.contains("invalid config")
            && l.contains("mock.yaml")
            && l.contains("processor_no_such_type")
    });
    assert_old_mock_keeps_running(&daemon, Instant::now());
    daemon.assert_running("after two invalid edits");
}

#[test]
fn removed_file_stops_its_pipeline() {
    let sandbox = Sandbox::new();
    sandbox.add_file_pipeline();
    sandbox.write_config("mock.yaml", &mock_yaml(200, "a"));
    let daemon = Daemon::start(&sandbox, None, &[]);
    daemon.wait_lines(2, "mock data", Line::is_mock);
    daemon.wait_line("line-start-0", |l| l.get("content") == Some("line-start-0"));

    let removed_at = Instant::now();
    sandbox.remove_config("mock.yaml");
    // Quiet: no new mock line for 2 s, starting within 5 s of the removal.
    let quiet = Duration::from_secs(2);
    let last_mock = loop {
        let last = daemon.mock_lines().last().map(|l| l.at).unwrap();
        if last.elapsed() >= quiet {
            break last;
        }
        assert!(
            removed_at.elapsed() < Duration::from_secs(5) + quiet,
            "mock lines still arrive {:?} after mock.yaml was removed\n{}",
            removed_at.elapsed(),
            daemon.diagnostics()
        );
        std::thread::sleep(Duration::from_millis(100));
    };
    let stopped_after = last_mock.saturating_duration_since(removed_at);
    assert!(stopped_after < Duration::from_secs(5), "{stopped_after:?}");

    let count = daemon.mock_lines().len();
    daemon.expect_native_lines(&sandbox, "after-removal", 3);
    assert_eq!(
        daemon.mock_lines().len(),
        count,
        "mock lines came back\n{}",
        daemon.diagnostics()
    );
}

// ---------------------------------------------------------------------------------------------
// A third-party plugin base, written in C against the headers
// ---------------------------------------------------------------------------------------------

#[test]
fn replacement_c_base_is_loaded() {
    let release = release_dir();
    require(&release.join("libPluginAdapter.so"));
    let repo = repo_dir();
    let sandbox = Sandbox::new();
    let plugins = sandbox.path("plugins");
    fs::create_dir(&plugins).unwrap();
    let output = Command::new("cc")
        .args(["-std=c11", "-shared", "-fPIC", "-Wall", "-Werror", "-I"])
        .arg(repo.join("include"))
        .arg("-o")
        .arg(plugins.join("libPluginBase.so"))
        .arg(repo.join("tests/c/replacement_base.c"))
        .arg("-L")
        .arg(&release)
        .args([
            "-lPluginAdapter",
            "-Wl,-soname,libPluginBase.so",
            "-Wl,-rpath,$ORIGIN",
            "-lpthread",
        ])
        .output()
        .expect("run cc");
    assert!(
        output.status.success(),
        "cc failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    fs::copy(
        release.join("libPluginAdapter.so"),
        plugins.join("libPluginAdapter.so"),
    )
    .unwrap();
    sandbox.write_config("mock.yaml", &mock_yaml(200, "a"));
    let mut daemon = Daemon::start(&sandbox, Some(&plugins), &[]);

    let lines = daemon.wait_lines(3, "from=replacement-base", |l| {
        l.get("from") == Some("replacement-base")
    });
    for line in &lines {
        assert_eq!(line.get("config"), Some("mock/1"), "{}", line.text);
        assert!(line.get("__time__").is_some(), "{}", line.text);
    }
    let seqs: Vec<i64> = lines
        .iter()
        .map(|l| l.get("seq").and_then(|s| s.parse().ok()).unwrap())
        .collect();
    assert!(
        seqs.windows(2).all(|w| w[0] < w[1]),
        "seq not increasing: {seqs:?}"
    );
    assert!(
        daemon.mock_lines().is_empty(),
        "data from Tailrace's own base\n{}",
        daemon.diagnostics()
    );

    let (status, _) = daemon.terminate();
    assert!(status.success(), "exit status {status:?}");
}

// ---------------------------------------------------------------------------------------------
// tailrace validate
// ---------------------------------------------------------------------------------------------

/// Runs `tailrace validate FILE...`: exit code, and stdout and stderr together.
fn validate(files: &[&Path]) -> (Option<i32>, String) {
    let mut child = Command::new(tailrace_bin())
        .arg("validate")
        .args(files)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run tailrace validate");
    let mut text = String::new();
    child
        .stdout
        .take()
        .unwrap()
        .read_to_string(&mut text)
        .unwrap();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut text)
        .unwrap();
    (child.wait().unwrap().code(), text)
}

#[test]
fn validate_accepts_valid_pipelines() {
    let sandbox = Sandbox::new();
    sandbox.add_file_pipeline();
    sandbox.write_config("mock.yaml", &mock_yaml(200, "a"));
    let files = [
        sandbox.config_path("mock.yaml"),
        sandbox.config_path("file.yaml"),
    ];
    for file in &files {
        let (code, text) = validate(&[file]);
        assert_eq!(code, Some(0), "{}: {text}", file.display());
        assert!(text.contains("valid"), "{text}");
    }
    let (code, text) = validate(&[&files[0], &files[1]]);
    assert_eq!(code, Some(0), "{text}");
    assert!(text.contains("valid"), "{text}");
}

#[test]
fn validate_names_file_and_field_of_each_error() {
    let file_input = "inputs: [{Type: input_file, FilePaths: [/var/log/*.log]}]\n";
    let stdout = "flushers: [{Type: flusher_stdout}]\n";
    // (file, text, what the message must contain besides the file name)
    let cases: Vec<(&str, String, Vec<&str>)> = vec![
        (
            "unknown_type.yaml",
            format!("inputs: [{{Type: input_no_such_type}}]\n{stdout}"),
            vec!["inputs[0].Type", "input_no_such_type"],
        ),
        (
            "wrong_option_type.yaml",
            format!("inputs: [{{Type: input_file, FilePaths: 3}}]\n{stdout}"),
            vec!["inputs[0].FilePaths"],
        ),
        (
            "missing_file_paths.yaml",
            format!("inputs: [{{Type: input_file}}]\n{stdout}"),
            vec!["inputs[0]", "FilePaths"],
        ),
        (
            "missing_file_path.yaml",
            format!("{file_input}flushers: [{{Type: flusher_file}}]\n"),
            vec!["flushers[0]", "FilePath"],
        ),
        (
            "extended_before_native.yaml",
            format!(
                "{file_input}processors:\n\
                 \x20 - {{Type: processor_add_fields, Fields: {{a: b}}}}\n\
                 \x20 - {{Type: processor_parse_regex_native, Regex: '(.*)', Keys: [msg]}}\n\
                 {stdout}"
            ),
            vec!["processors[1]", "processor_parse_regex_native"],
        ),
        (
            "mixed_inputs.yaml",
            format!(
                "inputs: [{{Type: metric_mock}}, {{Type: input_file, FilePaths: [/a/*.log]}}]\n\
                 {stdout}"
            ),
            vec!["inputs", "mixed"],
        ),
        (
            "invalid_syntax.yaml",
            format!("inputs: [{{Type: metric_mock}}\n{stdout}"),
            vec!["invalid YAML"],
        ),
        (
            "unknown_key.yaml",
            format!("inputs: [{{Type: metric_mock}}]\n{stdout}no_such_key: 1\n"),
            vec!["no_such_key"],
        ),
    ];
    let sandbox = Sandbox::new();
    for (file, text, wanted) in &cases {
        let path = sandbox.path("conf").join(file);
        fs::write(&path, text).unwrap();
        let (code, output) = validate(&[&path]);
        assert_eq!(code, Some(1), "{file}: {output}");
        let lines: Vec<&str> = output.lines().filter(|l| !l.trim().is_empty()).collect();
        assert!(!lines.is_empty(), "{file}: no message");
        let name = path.display().to_string();
        for line in &lines {
            assert!(
                line.contains(&name),
                "{file}: a line without the file name: {line}"
            );
        }
        assert!(
            lines.iter().any(|l| wanted.iter().all(|w| l.contains(w))),
            "{file}: no line with all of {wanted:?}:\n{output}"
        );
    }
}
