//! `flusher_sls` end to end: the real daemon tails a file and ships it to a mock SLS server
//! running in the test, which checks every request the way SLS would (path, Host, Content-MD5,
//! the v1 signature, the compressed body against `x-log-bodyrawsize`) and answers as told.

mod common;

use std::collections::BTreeMap;
use std::fs;
use std::io::{BufReader, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime};

use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine as _;
use common::HttpRequest as Request;
use hmac::{Hmac, KeyInit, Mac};
use md5::{Digest, Md5};
use sha1::Sha1;
use tailrace::LogGroup;

const PROJECT: &str = "test-project";
const LOGSTORE: &str = "test_logstore";
const KEY_ID: &str = "LTAI-test-key-id";
const KEY_SECRET: &str = "test-key-secret";
/// How long a test waits for the daemon to deliver.
const DEADLINE: Duration = Duration::from_secs(60);

// ---------------------------------------------------------------------------------------------
// The mock SLS server.

/// What the server answers to its n-th request (from 0).
type Responder = Box<dyn Fn(usize) -> (u16, String) + Send>;

#[derive(Default)]
struct Recorded {
    /// Every request that parsed: the status answered, and the LogGroup it carried.
    requests: Vec<(u16, LogGroup)>,
    /// Authorization headers seen (None: the request had none).
    authorizations: Vec<Option<String>>,
    /// Whatever was wrong with a request.
    problems: Vec<String>,
}

struct MockSls {
    port: u16,
    recorded: Arc<Mutex<Recorded>>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

/// What the server expects of every request.
#[derive(Clone)]
struct Expect {
    compress_type: Option<&'static str>,
    signed: bool,
}

impl MockSls {
    fn start(expect: Expect, responder: Responder) -> MockSls {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind a port");
        listener.set_nonblocking(true).unwrap();
        let port = listener.local_addr().unwrap().port();
        let recorded = Arc::new(Mutex::new(Recorded::default()));
        let stop = Arc::new(AtomicBool::new(false));
        let thread = {
            let (recorded, stop) = (recorded.clone(), stop.clone());
            std::thread::spawn(move || {
                let mut count = 0;
                while !stop.load(Ordering::Relaxed) {
                    match listener.accept() {
                        Ok((stream, _)) => {
                            serve(stream, &expect, &responder, &mut count, &recorded);
                        }
                        Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                            std::thread::sleep(Duration::from_millis(10));
                        }
                        Err(e) => panic!("accept: {e}"),
                    }
                }
            })
        };
        MockSls {
            port,
            recorded,
            stop,
            thread: Some(thread),
        }
    }

    fn with<T>(&self, f: impl FnOnce(&Recorded) -> T) -> T {
        f(&self.recorded.lock().unwrap())
    }

    /// Line numbers in groups the server accepted (answered 200), with how often each came.
    fn accepted_lines(&self) -> BTreeMap<u32, usize> {
        self.with(|r| {
            let mut lines = BTreeMap::new();
            for (status, group) in &r.requests {
                if *status == 200 {
                    for n in line_numbers(group) {
                        *lines.entry(n).or_insert(0) += 1;
                    }
                }
            }
            lines
        })
    }

    fn problems(&self) -> Vec<String> {
        self.with(|r| r.problems.clone())
    }
}

impl Drop for MockSls {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// One request per connection: read it, check it, answer, close.
fn serve(
    stream: TcpStream,
    expect: &Expect,
    responder: &Responder,
    count: &mut usize,
    recorded: &Mutex<Recorded>,
) {
    stream.set_nonblocking(false).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let mut reader = BufReader::new(stream.try_clone().unwrap());
    let request = match common::read_http_request(&mut reader) {
        Ok(Some(request)) => request,
        Ok(None) => return, // a connection closed without a request
        Err(e) => {
            recorded
                .lock()
                .unwrap()
                .problems
                .push(format!("unreadable request: {e}"));
            return;
        }
    };
    let (status, answer) = responder(*count);
    *count += 1;
    let mut problems = Vec::new();
    let group = check_request(&request, expect, &mut problems);
    {
        let mut r = recorded.lock().unwrap();
        r.problems.extend(problems);
        r.authorizations
            .push(request.headers.get("authorization").cloned());
        if let Some(group) = group {
            r.requests.push((status, group));
        }
    }
    let reason = match status {
        200 => "OK",
        400 => "Bad Request",
        403 => "Forbidden",
        _ => "Error",
    };
    let response = format!(
        "HTTP/1.1 {status} {reason}\r\nContent-Type: application/json\r\n\
         x-log-requestid: 0123456789ABCDEF\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{answer}",
        answer.len()
    );
    let mut stream = stream;
    let _ = stream.write_all(response.as_bytes());
    let _ = stream.flush();
}

/// Checks a PutLogs request as SLS would; returns the LogGroup it carries when it decodes.
fn check_request(req: &Request, expect: &Expect, problems: &mut Vec<String>) -> Option<LogGroup> {
    let header = |name: &str| req.headers.get(name).map(String::as_str);
    let want = |problems: &mut Vec<String>, what: &str, got: Option<&str>, wanted: Option<&str>| {
        if got != wanted {
            problems.push(format!("{what}: got {got:?}, want {wanted:?}"));
        }
    };
    want(problems, "method", Some(&req.method), Some("POST"));
    let path = format!("/logstores/{LOGSTORE}/shards/lb");
    want(problems, "path", Some(&req.path), Some(&path));
    let host = format!("{PROJECT}.127.0.0.1");
    want(problems, "Host", header("host"), Some(&host));
    want(
        problems,
        "Content-Type",
        header("content-type"),
        Some("application/x-protobuf"),
    );
    want(
        problems,
        "x-log-apiversion",
        header("x-log-apiversion"),
        Some("0.6.0"),
    );
    want(
        problems,
        "x-log-signaturemethod",
        header("x-log-signaturemethod"),
        Some("hmac-sha1"),
    );
    want(
        problems,
        "x-log-compresstype",
        header("x-log-compresstype"),
        expect.compress_type,
    );
    let md5: String = Md5::digest(&req.body)
        .iter()
        .map(|b| format!("{b:02X}"))
        .collect();
    want(problems, "Content-MD5", header("content-md5"), Some(&md5));

    let date = header("date").unwrap_or_default();
    match httpdate::parse_http_date(date) {
        Ok(t) => {
            let skew = SystemTime::now()
                .duration_since(t)
                .unwrap_or_else(|e| e.duration());
            if skew > Duration::from_secs(300) || !date.ends_with(" GMT") {
                problems.push(format!("Date {date:?} is not now in RFC 1123 GMT"));
            }
        }
        Err(e) => problems.push(format!("Date {date:?}: {e}")),
    }

    if expect.signed {
        let wanted = format!("LOG {KEY_ID}:{}", signature(req, KEY_SECRET));
        want(
            problems,
            "Authorization",
            header("authorization"),
            Some(&wanted),
        );
    } else {
        want(problems, "Authorization", header("authorization"), None);
    }

    let raw_size: usize = match header("x-log-bodyrawsize").map(str::parse) {
        Some(Ok(n)) => n,
        other => {
            problems.push(format!("x-log-bodyrawsize: {other:?}"));
            return None;
        }
    };
    let raw = match header("x-log-compresstype") {
        Some("lz4") => lz4_flex::block::decompress(&req.body, raw_size).map_err(|e| e.to_string()),
        Some("zstd") => zstd::bulk::decompress(&req.body, raw_size).map_err(|e| e.to_string()),
        None => Ok(req.body.clone()),
        Some(other) => Err(format!("unknown compress type {other:?}")),
    };
    let raw = match raw {
        Ok(raw) if raw.len() == raw_size => raw,
        Ok(raw) => {
            problems.push(format!(
                "body is {} bytes raw, header says {raw_size}",
                raw.len()
            ));
            return None;
        }
        Err(e) => {
            problems.push(format!("body does not decompress: {e}"));
            return None;
        }
    };
    match LogGroup::decode_bytes(&raw) {
        Ok(group) => Some(group),
        Err(e) => {
            problems.push(format!("body is not a LogGroup: {e}"));
            None
        }
    }
}

/// The v1 signature recomputed from the request as received: verb, Content-MD5, Content-Type,
/// Date, the x-log-/x-acs- headers sorted by name, the path.
fn signature(req: &Request, secret: &str) -> String {
    let get = |name: &str| req.headers.get(name).cloned().unwrap_or_default();
    let mut signed: Vec<(&String, &String)> = req
        .headers
        .iter()
        .filter(|(k, _)| k.starts_with("x-log-") || k.starts_with("x-acs-"))
        .collect();
    signed.sort();
    let mut text = format!(
        "{}\n{}\n{}\n{}\n",
        req.method,
        get("content-md5"),
        get("content-type"),
        get("date")
    );
    for (k, v) in signed {
        text.push_str(&format!("{k}:{v}\n"));
    }
    text.push_str(&req.path);
    let mut mac = Hmac::<Sha1>::new_from_slice(secret.as_bytes()).unwrap();
    mac.update(text.as_bytes());
    BASE64.encode(mac.finalize().into_bytes())
}

/// The line numbers of a group's logs (`content` = "line-NNNNN ..."); checks each log has one.
fn line_numbers(group: &LogGroup) -> Vec<u32> {
    group
        .logs
        .iter()
        .filter_map(|log| {
            let content = log.contents.iter().find(|c| &c.key[..] == b"content")?;
            let text = std::str::from_utf8(&content.value).ok()?;
            text.strip_prefix("line-")?.get(..5)?.parse().ok()
        })
        .collect()
}

fn line(n: u32) -> String {
    format!(
        "line-{n:05} the quick brown fox jumps over the lazy dog {}\n",
        "x".repeat(n as usize % 40)
    )
}

// ---------------------------------------------------------------------------------------------
// The daemon.

struct Daemon {
    child: Child,
    stderr: PathBuf,
}

impl Daemon {
    /// Starts `tailrace` on `root/conf`, `root/data`, with an empty plugin dir.
    fn start(root: &Path) -> Daemon {
        let plugins = root.join("no-plugins");
        fs::create_dir_all(&plugins).unwrap();
        let stderr = root.join("daemon.stderr");
        let child = Command::new(env!("CARGO_BIN_EXE_tailrace"))
            .arg("--config-dir")
            .arg(root.join("conf"))
            .arg("--data-dir")
            .arg(root.join("data"))
            .arg("--plugin-dir")
            .arg(&plugins)
            .env_remove("RUST_LOG")
            .env_remove("ALIBABA_CLOUD_ACCESS_KEY_ID")
            .env_remove("ALIBABA_CLOUD_ACCESS_KEY_SECRET")
            .env_remove("ALL_PROXY")
            .env_remove("all_proxy")
            .env_remove("HTTPS_PROXY")
            .env_remove("https_proxy")
            .env_remove("HTTP_PROXY")
            .env_remove("http_proxy")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(fs::File::create(&stderr).unwrap())
            .spawn()
            .expect("start tailrace");
        Daemon { child, stderr }
    }

    fn stderr(&self) -> String {
        fs::read_to_string(&self.stderr).unwrap_or_default()
    }

    /// SIGTERM, then up to 15 s to exit; true if it did.
    fn stop(&mut self) -> bool {
        let _ = Command::new("kill")
            .arg("-TERM")
            .arg(self.child.id().to_string())
            .status();
        let deadline = Instant::now() + Duration::from_secs(15);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return true;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        false
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

/// A pipeline input_file(`root/logs/*.log`) → flusher_sls(the mock), with `extra` options.
fn write_config(root: &Path, port: u16, extra: &str) {
    write_config_with(root, port, "", extra)
}

/// [`write_config`] with `processors` (YAML list items) between the input and the flusher.
fn write_config_with(root: &Path, port: u16, processors: &str, extra: &str) {
    fs::create_dir_all(root.join("conf")).unwrap();
    let config = format!(
        r#"enable: true
inputs:
  - Type: input_file
    FilePaths:
      - "{logs}/*.log"
processors:
{processors}
flushers:
  - Type: flusher_sls
    Endpoint: "http://127.0.0.1:{port}"
    ProjectName: {PROJECT}
    LogstoreName: {LOGSTORE}
    Region: cn-test
    TimeoutSecs: 5
{extra}"#,
        logs = root.join("logs").display()
    );
    fs::write(root.join("conf").join("sls.yaml"), config).unwrap();
}

const SIGNED: &str = "    AccessKeyId: LTAI-test-key-id\n    AccessKeySecret: test-key-secret\n";

fn write_lines(root: &Path, range: std::ops::Range<u32>) {
    fs::create_dir_all(root.join("logs")).unwrap();
    let mut file = fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(root.join("logs").join("app.log"))
        .unwrap();
    let text: String = range.map(line).collect();
    file.write_all(text.as_bytes()).unwrap();
}

fn wait_until(what: &str, daemon: &Daemon, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + DEADLINE;
    while !done() {
        assert!(
            Instant::now() < deadline,
            "timed out waiting for {what}; daemon stderr:\n{}",
            daemon.stderr()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn ok() -> Responder {
    Box::new(|_| (200, String::new()))
}

/// Every line of `0..n` was accepted exactly once, and every request was well formed.
fn assert_all_accepted_once(sls: &MockSls, daemon: &Daemon, n: u32) {
    let lines = sls.accepted_lines();
    let expected: Vec<u32> = (0..n).collect();
    assert_eq!(
        lines.keys().copied().collect::<Vec<_>>(),
        expected,
        "daemon stderr:\n{}",
        daemon.stderr()
    );
    let repeated: Vec<_> = lines.iter().filter(|(_, c)| **c > 1).collect();
    assert!(repeated.is_empty(), "accepted more than once: {repeated:?}");
    assert_eq!(sls.problems(), Vec::<String>::new());
}

/// Every group carries the file's path as the `__path__` tag.
fn assert_path_tags(sls: &MockSls, root: &Path) {
    let path = root.join("logs").join("app.log");
    sls.with(|r| {
        assert!(!r.requests.is_empty());
        for (_, group) in &r.requests {
            let tag = group
                .log_tags
                .iter()
                .find(|t| &t.key[..] == b"__path__")
                .unwrap_or_else(|| panic!("no __path__ tag in {:?}", group.log_tags));
            assert_eq!(
                std::str::from_utf8(&tag.value).unwrap(),
                path.to_str().unwrap()
            );
        }
    });
}

// ---------------------------------------------------------------------------------------------
// The tests.

#[test]
fn lz4_lines_arrive_signed_with_path_tag() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path();
    let sls = MockSls::start(
        Expect {
            compress_type: Some("lz4"),
            signed: true,
        },
        ok(),
    );
    write_config(root, sls.port, &format!("{SIGNED}    CompressType: lz4\n"));
    write_lines(root, 0..200);
    let mut daemon = Daemon::start(root);

    wait_until("the first 200 lines", &daemon, || {
        sls.accepted_lines().len() >= 200
    });
    // Lines appended while the daemon runs follow.
    write_lines(root, 200..300);
    wait_until("all 300 lines", &daemon, || {
        sls.accepted_lines().len() >= 300
    });

    assert_all_accepted_once(&sls, &daemon, 300);
    assert_path_tags(&sls, root);
    assert!(daemon.stop(), "no exit on SIGTERM:\n{}", daemon.stderr());
    assert!(!daemon.stderr().contains("ERROR"), "{}", daemon.stderr());
}

/// One native parser before `flusher_sls` writes each LogGroup itself from the lines as read
/// (no event per line): every line arrives once, as exactly its fields, across a restart.
#[test]
fn lines_parsed_into_fields_arrive_once_each_across_a_restart() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path();
    let sls = MockSls::start(
        Expect {
            compress_type: Some("lz4"),
            signed: false,
        },
        ok(),
    );
    let parser = "  - Type: processor_parse_regex_native\n    SourceKey: content\n    Regex: '(line-\\d+) (\\S+) (.*)'\n    Keys: [n, first, rest]\n";
    write_config_with(root, sls.port, parser, "");
    // Each accepted log, by its line number: how often, and whether its fields were those of
    // its line.
    let received = || {
        sls.with(|r| {
            let mut lines: BTreeMap<u32, (usize, bool)> = BTreeMap::new();
            for (status, group) in &r.requests {
                if *status != 200 {
                    continue;
                }
                for log in &group.logs {
                    let fields: Vec<(String, String)> = log
                        .contents
                        .iter()
                        .map(|c| {
                            (
                                String::from_utf8_lossy(&c.key).into_owned(),
                                String::from_utf8_lossy(&c.value).into_owned(),
                            )
                        })
                        .collect();
                    let Some(n) = fields
                        .first()
                        .and_then(|(_, v)| v.strip_prefix("line-")?.parse::<u32>().ok())
                    else {
                        panic!("a log that is not a parsed line: {fields:?}");
                    };
                    let text = line(n);
                    let text = text.strip_suffix('\n').unwrap();
                    let (head, rest) = text.split_once(" the ").unwrap();
                    let expected = [
                        ("n".to_owned(), head.to_owned()),
                        ("first".to_owned(), "the".to_owned()),
                        ("rest".to_owned(), rest.to_owned()),
                    ];
                    let entry = lines.entry(n).or_insert((0, true));
                    entry.0 += 1;
                    entry.1 &= fields == expected;
                }
            }
            lines
        })
    };
    write_lines(root, 0..2000);
    let mut daemon = Daemon::start(root);
    wait_until("the first 2000 lines", &daemon, || received().len() >= 2000);
    assert!(daemon.stop(), "no exit on SIGTERM:\n{}", daemon.stderr());
    write_lines(root, 2000..2500);
    let mut daemon = Daemon::start(root);
    write_lines(root, 2500..3000);
    wait_until("all 3000 lines", &daemon, || received().len() >= 3000);

    let lines = received();
    assert_eq!(
        lines.keys().copied().collect::<Vec<_>>(),
        (0..3000).collect::<Vec<_>>()
    );
    let repeated: Vec<_> = lines.iter().filter(|(_, (c, _))| *c > 1).collect();
    assert!(repeated.is_empty(), "accepted more than once: {repeated:?}");
    let wrong: Vec<_> = lines.iter().filter(|(_, (_, ok))| !ok).collect();
    assert!(wrong.is_empty(), "not the line's fields: {wrong:?}");
    assert_eq!(sls.problems(), Vec::<String>::new());
    assert_path_tags(&sls, root);
    assert!(daemon.stop(), "no exit on SIGTERM:\n{}", daemon.stderr());
    assert!(!daemon.stderr().contains("ERROR"), "{}", daemon.stderr());
}

#[test]
fn zstd_lines_arrive_signed() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path();
    let sls = MockSls::start(
        Expect {
            compress_type: Some("zstd"),
            signed: true,
        },
        ok(),
    );
    write_config(root, sls.port, &format!("{SIGNED}    CompressType: zstd\n"));
    write_lines(root, 0..150);
    let mut daemon = Daemon::start(root);

    wait_until("all 150 lines", &daemon, || {
        sls.accepted_lines().len() >= 150
    });
    assert_all_accepted_once(&sls, &daemon, 150);
    assert_path_tags(&sls, root);
    assert!(daemon.stop(), "no exit on SIGTERM:\n{}", daemon.stderr());
}

#[test]
fn without_a_key_requests_are_unsigned_and_uncompressed_with_none() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path();
    let sls = MockSls::start(
        Expect {
            compress_type: None,
            signed: false,
        },
        ok(),
    );
    write_config(root, sls.port, "    CompressType: none\n");
    write_lines(root, 0..20);
    let mut daemon = Daemon::start(root);

    wait_until("all 20 lines", &daemon, || sls.accepted_lines().len() >= 20);
    assert_all_accepted_once(&sls, &daemon, 20);
    sls.with(|r| assert!(r.authorizations.iter().all(Option::is_none)));
    assert!(daemon.stop(), "no exit on SIGTERM:\n{}", daemon.stderr());
}

#[test]
fn server_errors_and_write_quota_are_retried_until_accepted() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path();
    let sls = MockSls::start(
        Expect {
            compress_type: Some("lz4"),
            signed: true,
        },
        Box::new(|n| match n {
            0..=2 => (
                500,
                r#"{"errorCode":"InternalServerError","errorMessage":"try again"}"#.to_owned(),
            ),
            3..=4 => (
                403,
                r#"{"errorCode":"WriteQuotaExceed","errorMessage":"slow down"}"#.to_owned(),
            ),
            5 => (
                403,
                r#"{"errorCode":"ShardWriteQuotaExceed","errorMessage":"slow down"}"#.to_owned(),
            ),
            _ => (200, String::new()),
        }),
    );
    write_config(root, sls.port, SIGNED);
    write_lines(root, 0..100);
    let mut daemon = Daemon::start(root);

    wait_until("all 100 lines", &daemon, || {
        sls.accepted_lines().len() >= 100
    });
    assert_all_accepted_once(&sls, &daemon, 100);
    let (refused, accepted) = sls.with(|r| {
        let refused = r.requests.iter().filter(|(s, _)| *s != 200).count();
        (refused, r.requests.len() - refused)
    });
    assert_eq!(refused, 6);
    assert!(accepted >= 1);
    let stderr = daemon.stderr();
    assert!(stderr.contains("will retry"), "{stderr}");
    assert!(stderr.contains("WriteQuotaExceed"), "{stderr}");
    assert!(!stderr.contains("ERROR"), "nothing is dropped:\n{stderr}");
    assert!(daemon.stop(), "no exit on SIGTERM:\n{stderr}");
}

#[test]
fn a_permanent_rejection_is_logged_and_dropped_not_retried() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path();
    let sls = MockSls::start(
        Expect {
            compress_type: Some("lz4"),
            signed: true,
        },
        Box::new(|_| {
            (
                400,
                r#"{"errorCode":"PostBodyInvalid","errorMessage":"the body is bad"}"#.to_owned(),
            )
        }),
    );
    write_config(root, sls.port, SIGNED);
    write_lines(root, 0..30);
    let mut daemon = Daemon::start(root);

    wait_until("the rejection to be logged", &daemon, || {
        daemon.stderr().contains("PostBodyInvalid")
    });
    let seen = |sls: &MockSls| -> usize {
        sls.with(|r| r.requests.iter().map(|(_, g)| line_numbers(g).len()).sum())
    };
    wait_until("every line to be offered", &daemon, || seen(&sls) >= 30);
    // Nothing is sent again: wait longer than the runner's first backoffs.
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(seen(&sls), 30, "a rejected batch was sent again");
    assert_eq!(sls.problems(), Vec::<String>::new());

    let stderr = daemon.stderr();
    let error = stderr
        .lines()
        .find(|l| l.contains("ERROR") && l.contains("PostBodyInvalid"))
        .unwrap_or_else(|| panic!("no error line:\n{stderr}"));
    for needle in [PROJECT, LOGSTORE, "400", "the body is bad"] {
        assert!(error.contains(needle), "{needle:?} not in {error:?}");
    }
    assert!(daemon.stop(), "no exit on SIGTERM:\n{stderr}");
}
