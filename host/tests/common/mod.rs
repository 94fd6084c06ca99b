//! The harness shared by the daemon's end-to-end tests (`daemon.rs`, `file_collection.rs`):
//! a [`Sandbox`] of config/data/log dirs, a [`Daemon`] guard that always kills its process
//! (with reader threads collecting its stdout and stderr), and wait helpers.
//!
//! Each test crate uses a part of it.
#![allow(dead_code)]

use std::collections::HashMap;
use std::fs;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::{Map, Value};

/// How long any expected output may take to show up.
pub const WAIT: Duration = Duration::from_secs(15);
/// How long the daemon may take to exit after SIGTERM.
pub const EXIT_LIMIT: Duration = Duration::from_secs(15);

/// The release build's dir, holding the real plugin libraries (`make build`).
pub fn release_plugin_libs() -> PathBuf {
    let libs = Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/release");
    assert!(
        libs.join("libPluginBase.so").exists(),
        "run `make build` first: {} has no libPluginBase.so",
        libs.display()
    );
    libs
}

pub fn tailrace_bin() -> &'static Path {
    Path::new(env!("CARGO_BIN_EXE_tailrace"))
}

/// One stdout line: when it arrived, its text, and its JSON object (if it is one).
#[derive(Clone, Debug)]
pub struct Line {
    pub at: Instant,
    pub text: String,
    pub json: Option<Map<String, Value>>,
}

impl Line {
    pub fn get(&self, key: &str) -> Option<&str> {
        self.json.as_ref()?.get(key)?.as_str()
    }
}

/// `GET path` on `addr`: the status code and the body.
pub fn http_get(addr: &str, path: &str) -> (u16, String) {
    let mut stream = TcpStream::connect(addr).unwrap_or_else(|e| panic!("connect {addr}: {e}"));
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).unwrap();
    let status = response
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("no status line in {response:?}"));
    let body = response
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_owned())
        .unwrap_or_default();
    (status, body)
}

/// A tempdir with `conf/` (the config dir), `data/`, `logs/` and `staging/` (where configs are
/// written before they are renamed into `conf/`, so that the watcher never sees half a file).
pub struct Sandbox {
    pub tmp: tempfile::TempDir,
}

impl Sandbox {
    pub fn new() -> Sandbox {
        let tmp = tempfile::tempdir().unwrap();
        for dir in ["conf", "logs", "staging"] {
            fs::create_dir(tmp.path().join(dir)).unwrap();
        }
        Sandbox { tmp }
    }

    pub fn path(&self, rel: &str) -> PathBuf {
        self.tmp.path().join(rel)
    }

    pub fn config_path(&self, file: &str) -> PathBuf {
        self.path("conf").join(file)
    }

    /// Writes `conf/<file>` atomically (written aside, then renamed over).
    pub fn write_config(&self, file: &str, text: &str) {
        let staged = self.path("staging").join(file);
        fs::write(&staged, text).unwrap();
        fs::rename(&staged, self.config_path(file)).unwrap();
    }

    pub fn remove_config(&self, file: &str) {
        fs::remove_file(self.config_path(file)).unwrap();
    }
}

/// A running daemon; killed on drop if still running.
pub struct Daemon {
    pub child: Child,
    pub stdout: Arc<Mutex<Vec<Line>>>,
    pub stderr: Arc<Mutex<Vec<String>>>,
}

impl Daemon {
    /// Starts `tailrace --config-dir <sandbox>/conf --data-dir <sandbox>/data`, with
    /// `--plugin-dir` when given, and extra environment variables.
    pub fn start(sandbox: &Sandbox, plugin_dir: Option<&Path>, env: &[(&str, &str)]) -> Daemon {
        Daemon::start_with_args(sandbox, plugin_dir, env, &[])
    }

    /// [`Daemon::start`], with extra command-line arguments (`--once`...).
    pub fn start_with_args(
        sandbox: &Sandbox,
        plugin_dir: Option<&Path>,
        env: &[(&str, &str)],
        args: &[&str],
    ) -> Daemon {
        Daemon::start_program(tailrace_bin(), sandbox, plugin_dir, env, args)
    }

    /// [`Daemon::start_with_args`] with another build of the daemon (the `test-faults` one).
    pub fn start_program(
        program: &Path,
        sandbox: &Sandbox,
        plugin_dir: Option<&Path>,
        env: &[(&str, &str)],
        args: &[&str],
    ) -> Daemon {
        let mut cmd = Command::new(program);
        cmd.arg("--config-dir")
            .arg(sandbox.path("conf"))
            .arg("--data-dir")
            .arg(sandbox.path("data"))
            .args(["--log-level", "info"])
            .args(args)
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

    /// The address a daemon started with `--metrics-addr 127.0.0.1:0` serves on (from its
    /// log line).
    pub fn metrics_addr(&self) -> String {
        let line = self.wait_stderr("the metrics address", |l| l.contains("metrics served on"));
        line.split("http://")
            .nth(1)
            .and_then(|rest| rest.split('/').next())
            .unwrap_or_else(|| panic!("no address in {line:?}"))
            .to_owned()
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub fn lines(&self) -> Vec<Line> {
        self.stdout.lock().unwrap().clone()
    }

    pub fn stderr_lines(&self) -> Vec<String> {
        self.stderr.lock().unwrap().clone()
    }

    /// The last lines of both streams, for failure messages.
    pub fn diagnostics(&self) -> String {
        let tail = |v: &[String], n: usize| v[v.len().saturating_sub(n)..].join("\n");
        let stdout: Vec<String> = self.lines().into_iter().map(|l| l.text).collect();
        format!(
            "--- stderr (last 40 lines) ---\n{}\n--- stdout (last 10 lines) ---\n{}",
            tail(&self.stderr.lock().unwrap(), 40),
            tail(&stdout, 10)
        )
    }

    /// Waits up to `limit` for a stdout line matching `pred`; returns the first one.
    pub fn wait_line_within(
        &self,
        limit: Duration,
        what: &str,
        pred: impl Fn(&Line) -> bool,
    ) -> Line {
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

    pub fn wait_line(&self, what: &str, pred: impl Fn(&Line) -> bool) -> Line {
        self.wait_line_within(WAIT, what, pred)
    }

    /// Waits until `n` stdout lines match `pred`; returns them.
    pub fn wait_lines(&self, n: usize, what: &str, pred: impl Fn(&Line) -> bool) -> Vec<Line> {
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
    pub fn wait_stderr(&self, what: &str, pred: impl Fn(&str) -> bool) -> String {
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

    pub fn assert_running(&mut self, when: &str) {
        let status = self.child.try_wait().unwrap();
        assert!(
            status.is_none(),
            "the daemon exited ({status:?}) {when}\n{}",
            self.diagnostics()
        );
    }

    /// Sends `signal` (a name for kill(1): TERM, STOP, CONT...) to the daemon.
    pub fn signal(&self, signal: &str) {
        let sent = Command::new("kill")
            .arg(format!("-{signal}"))
            .arg(self.child.id().to_string())
            .status()
            .expect("run kill");
        assert!(sent.success(), "kill -{signal} failed");
    }

    /// SIGKILL, and waits for the process to be gone.
    pub fn kill_hard(&mut self) -> ExitStatus {
        let _ = self.child.kill();
        self.child.wait().expect("wait for the killed daemon")
    }

    /// Waits up to `limit` for the daemon to exit by itself; fails if it does not.
    pub fn wait_exit(&mut self, limit: Duration) -> (ExitStatus, Duration) {
        let started = Instant::now();
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return (status, started.elapsed());
            }
            if started.elapsed() >= limit {
                panic!(
                    "the daemon did not exit within {limit:?}\n{}",
                    self.diagnostics()
                );
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// SIGTERM, then waits up to `EXIT_LIMIT`; fails if the daemon does not exit in time.
    /// Returns the exit status and how long the exit took.
    pub fn terminate(&mut self) -> (ExitStatus, Duration) {
        let started = Instant::now();
        self.signal("TERM");
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

// ---------------------------------------------------------------------------------------------
// Measurements of a running daemon, from /proc.

/// A `kB` field of /proc/PID/status (VmRSS, VmHWM), in KiB; 0 when unreadable.
pub fn status_kib(pid: u32, key: &str) -> u64 {
    status_field(pid, key)
        .and_then(|v| v.trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0)
}

pub fn status_field(pid: u32, key: &str) -> Option<String> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix(key)?.strip_prefix(':'))
        .map(|v| v.trim().to_owned())
}

/// utime + stime of the whole process (all its threads), in clock ticks.
pub fn cpu_ticks(pid: u32) -> u64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // The command name may hold spaces or parentheses: the fields start after the last ')'.
    let Some((_, rest)) = stat.rsplit_once(')') else {
        return 0;
    };
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // fields[0] is field 3 (state); utime and stime are fields 14 and 15.
    let field = |i: usize| {
        fields
            .get(i)
            .and_then(|v| v.parse::<u64>().ok())
            .unwrap_or(0)
    };
    field(11) + field(12)
}

/// Offset up to which the daemon has read `path`, from its open descriptors.
pub fn read_offset(pid: u32, path: &Path) -> Option<u64> {
    for fd in std::fs::read_dir(format!("/proc/{pid}/fd")).ok()?.flatten() {
        if std::fs::read_link(fd.path()).ok().as_deref() == Some(path) {
            let info = std::fs::read_to_string(format!(
                "/proc/{pid}/fdinfo/{}",
                fd.file_name().to_string_lossy()
            ))
            .ok()?;
            return info
                .lines()
                .find_map(|l| l.strip_prefix("pos:"))
                .and_then(|p| p.trim().parse().ok());
        }
    }
    None
}

/// Runs `tailrace --once` on `sandbox` with the pipeline `config` as `conf/p.yaml` and an empty
/// plugin dir (every plugin runs in the host); returns the events a `flusher_file` writing
/// `out.jsonl` in the sandbox wrote, tags and time included.
pub fn run_once(sandbox: &Sandbox, config: &str) -> Vec<Map<String, Value>> {
    fs::create_dir_all(sandbox.path("plugins")).unwrap();
    sandbox.write_config("p.yaml", config);
    let output = Command::new(tailrace_bin())
        .arg("--config-dir")
        .arg(sandbox.path("conf"))
        .arg("--data-dir")
        .arg(sandbox.path("data"))
        .arg("--plugin-dir")
        .arg(sandbox.path("plugins"))
        .arg("--once")
        .env_remove("RUST_LOG")
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "tailrace --once failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    fs::read_to_string(sandbox.path("out.jsonl"))
        .unwrap_or_default()
        .lines()
        .map(|line| match serde_json::from_str(line).unwrap() {
            Value::Object(event) => event,
            _ => panic!("not an object: {line}"),
        })
        .collect()
}

/// A pipeline: `input_file` over the sandbox's `logs/*.log`, then `processors` (YAML list
/// items, each line ending with a newline), then a `flusher_file` writing `out.jsonl`.
pub fn file_pipeline(sandbox: &Sandbox, processors: &str) -> String {
    format!(
        "inputs:\n  - Type: input_file\n    FilePaths: [\"{}/*.log\"]\nprocessors:\n{processors}flushers:\n  - Type: flusher_file\n    FilePath: \"{}\"\n",
        sandbox.path("logs").display(),
        sandbox.path("out.jsonl").display()
    )
}

/// An event's expected fields, as the flusher writes them.
pub fn event(pairs: &[(&str, &str)]) -> Map<String, Value> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), Value::String(v.to_string())))
        .collect()
}

/// One HTTP/1.1 request, as the tests' small servers read it.
pub struct HttpRequest {
    pub method: String,
    pub path: String,
    /// Header names in lower case.
    pub headers: HashMap<String, String>,
    pub body: Vec<u8>,
}

impl HttpRequest {
    /// A header's value, whatever the case of `name`.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .get(&name.to_ascii_lowercase())
            .map(String::as_str)
    }
}

/// Reads one request (its body by `Content-Length`, none without one). Ok(None): the client
/// closed the connection before a request (a keep-alive connection that ends, a failed TLS
/// handshake, a probe).
pub fn read_http_request(reader: &mut impl BufRead) -> Result<Option<HttpRequest>, String> {
    let mut line = String::new();
    if reader.read_line(&mut line).map_err(|e| e.to_string())? == 0 {
        return Ok(None);
    }
    let mut parts = line.split_whitespace();
    let method = parts.next().unwrap_or_default().to_owned();
    let path = parts.next().unwrap_or_default().to_owned();
    let mut headers = HashMap::new();
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line).map_err(|e| e.to_string())? == 0 {
            return Err("the connection closed inside the headers".to_owned());
        }
        let line = line.trim_end_matches(['\r', '\n']);
        if line.is_empty() {
            break;
        }
        let (name, value) = line
            .split_once(':')
            .ok_or_else(|| format!("bad header line {line:?}"))?;
        headers.insert(name.trim().to_ascii_lowercase(), value.trim().to_owned());
    }
    let length: usize = match headers.get("content-length") {
        Some(v) => v
            .parse()
            .map_err(|e| format!("bad Content-Length {v:?}: {e}"))?,
        None => 0,
    };
    let mut body = vec![0; length];
    reader.read_exact(&mut body).map_err(|e| e.to_string())?;
    Ok(Some(HttpRequest {
        method,
        path,
        headers,
        body,
    }))
}
