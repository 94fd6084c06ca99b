//! The CLI contract (DESIGN §7) on the real binary: failures are clear (a message naming what
//! is wrong, a non-zero exit), `--once` exits non-zero when it did not do everything it was
//! asked, one daemon per data dir, private checkpoints, SIGHUP reloads, and the `--once` start
//! rule. Every wait has a deadline; a process that should have exited but runs on is killed and
//! the test fails.
//!
//! The plugin libraries are not needed: every daemon gets an empty `--plugin-dir`.
//! The tests run one at a time (they start daemons on a 2-core machine).

mod common;

use std::fs;
use std::io::{BufRead, BufReader, Read};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use common::{tailrace_bin, Daemon, Sandbox};

/// How long a run that should end by itself may take.
const LIMIT: Duration = Duration::from_secs(60);

static SERIAL: Mutex<()> = Mutex::new(());

fn serial() -> MutexGuard<'static, ()> {
    SERIAL.lock().unwrap_or_else(|e| e.into_inner())
}

/// A sandbox with an empty `plugins/` dir.
fn sandbox() -> Sandbox {
    let sandbox = Sandbox::new();
    fs::create_dir(sandbox.path("plugins")).unwrap();
    sandbox
}

/// `tailrace --plugin-dir <sandbox>/plugins ARGS` (nothing else implied).
fn tailrace(sandbox: &Sandbox, args: &[&str]) -> Command {
    let mut cmd = Command::new(tailrace_bin());
    cmd.arg("--plugin-dir")
        .arg(sandbox.path("plugins"))
        .args(args)
        .current_dir(sandbox.path(""))
        .env_remove("RUST_LOG")
        .stdin(Stdio::null());
    cmd
}

/// `tailrace` on the sandbox's `conf/` and `data/`, with extra args.
fn on_sandbox(sandbox: &Sandbox, args: &[&str]) -> Command {
    let conf = sandbox.path("conf").display().to_string();
    let data = sandbox.path("data").display().to_string();
    let mut all = vec!["--config-dir", &conf, "--data-dir", &data];
    all.extend_from_slice(args);
    tailrace(sandbox, &all)
}

/// What a finished run left.
struct Output {
    status: ExitStatus,
    stdout: String,
    stderr: String,
}

impl Output {
    fn code(&self) -> Option<i32> {
        self.status.code()
    }
}

impl std::fmt::Display for Output {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let tail = |s: &str| {
            let lines: Vec<&str> = s.lines().collect();
            lines[lines.len().saturating_sub(30)..].join("\n")
        };
        write!(
            f,
            "status {:?}\n--- stderr (last 30 lines) ---\n{}\n--- stdout (last 30 lines) ---\n{}",
            self.status,
            tail(&self.stderr),
            tail(&self.stdout)
        )
    }
}

/// Runs `cmd` to its end, within `limit`: a process still running then is killed and the test
/// fails (a daemon that should have refused to start must not run on).
fn run(mut cmd: Command, limit: Duration) -> Output {
    let mut child = cmd
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start tailrace");
    let stdout = read_all_in_background(child.stdout.take().unwrap());
    let stderr = read_all_in_background(child.stderr.take().unwrap());
    let status = wait_within(&mut child, limit);
    Output {
        status,
        stdout: stdout.join().unwrap(),
        stderr: stderr.join().unwrap(),
    }
}

fn read_all_in_background(mut pipe: impl Read + Send + 'static) -> std::thread::JoinHandle<String> {
    std::thread::spawn(move || {
        let mut text = String::new();
        let _ = pipe.read_to_string(&mut text);
        text
    })
}

fn wait_within(child: &mut Child, limit: Duration) -> ExitStatus {
    let deadline = Instant::now() + limit;
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return status;
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("tailrace did not exit within {limit:?}");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Waits until `pred` holds, polling, or fails with `what`.
fn wait_until(limit: Duration, what: &str, mut pred: impl FnMut() -> bool) {
    let deadline = Instant::now() + limit;
    while !pred() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// `seq=00000042 xxxx…`: numbered lines of `len` bytes with their newline.
fn numbered_lines(count: usize, len: usize) -> String {
    let mut text = String::with_capacity(count * len);
    for i in 0..count {
        let head = format!("seq={i:08} ");
        text.push_str(&head);
        text.push_str(&"x".repeat(len - head.len() - 1));
        text.push('\n');
    }
    text
}

/// The sequence number of a delivered `content`.
fn seq_of(content: &str) -> usize {
    content[4..12].parse().unwrap()
}

/// A file pipeline reading `logs/<glob>` into `out/<name>.jsonl`, with extra input options.
fn file_pipeline(sandbox: &Sandbox, name: &str, glob: &str, extra: &str) -> String {
    format!(
        "inputs:\n  - Type: input_file\n    FilePaths: [{}/{glob}]\n{extra}flushers:\n  - Type: flusher_file\n    FilePath: {}\n",
        sandbox.path("logs").display(),
        out_path(sandbox, name).display()
    )
}

fn out_path(sandbox: &Sandbox, name: &str) -> PathBuf {
    sandbox.path("out").join(format!("{name}.jsonl"))
}

/// The `content` of every complete JSON line in `out/<name>.jsonl` (one the flusher is still
/// writing waits for the next call).
fn delivered(sandbox: &Sandbox, name: &str) -> Vec<String> {
    let Ok(text) = fs::read_to_string(out_path(sandbox, name)) else {
        return Vec::new();
    };
    let complete = text.rfind('\n').map_or("", |end| &text[..end]);
    complete
        .lines()
        .map(|l| {
            let v: serde_json::Value = serde_json::from_str(l).expect("a JSON line");
            v["content"].as_str().expect("a content").to_owned()
        })
        .collect()
}

fn mode(path: &Path) -> u32 {
    fs::metadata(path)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        .permissions()
        .mode()
        & 0o7777
}

// ---------------------------------------------------------------------------------------------
// Clear failures at start
// ---------------------------------------------------------------------------------------------

#[test]
fn a_missing_config_dir_is_an_error_naming_it() {
    let _serial = serial();
    let sandbox = sandbox();
    let missing = sandbox.path("no-such-dir");
    let data = sandbox.path("data");
    for once in [false, true] {
        let mut args = vec![
            "--config-dir".to_owned(),
            missing.display().to_string(),
            "--data-dir".to_owned(),
            data.display().to_string(),
        ];
        if once {
            args.push("--once".to_owned());
        }
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let out = run(tailrace(&sandbox, &args), LIMIT);
        assert_eq!(out.code(), Some(1), "{out}");
        assert!(
            out.stderr.contains(&missing.display().to_string())
                && out.stderr.contains("no such directory"),
            "{out}"
        );
        assert!(!data.exists(), "a failed start created the data dir");
    }
}

#[test]
fn a_file_given_as_config_dir_is_an_error() {
    let _serial = serial();
    let sandbox = sandbox();
    let file = sandbox.path("pipeline.yaml");
    fs::write(&file, "inputs: []\n").unwrap();
    let file_arg = file.display().to_string();
    let out = run(tailrace(&sandbox, &["--config-dir", &file_arg]), LIMIT);
    assert_eq!(out.code(), Some(1), "{out}");
    assert!(
        out.stderr.contains(&file_arg) && out.stderr.contains("not a directory"),
        "{out}"
    );
}

/// A second daemon on a data dir in use fails at start and names the first one's PID; once
/// the first is gone (the kernel drops its flock), the data dir can be used again.
#[test]
fn a_second_daemon_on_the_same_data_dir_names_the_first() {
    let _serial = serial();
    let sandbox = sandbox();
    let plugins = sandbox.path("plugins");
    let mut first = Daemon::start(&sandbox, Some(&plugins), &[]);
    first.wait_stderr("the data dir lock", |l| l.contains("data dir locked"));
    let lock = sandbox.path("data/tailrace.lock");
    assert_eq!(
        fs::read_to_string(&lock).unwrap().trim(),
        first.pid().to_string()
    );

    for args in [&[][..], &["--once"][..]] {
        let out = run(on_sandbox(&sandbox, args), LIMIT);
        assert_eq!(out.code(), Some(1), "{out}");
        let pid = format!("pid {}", first.pid());
        assert!(
            out.stderr.contains("in use by another tailrace") && out.stderr.contains(&pid),
            "{out}"
        );
    }
    first.assert_running("after a second daemon tried its data dir");
    assert_eq!(
        fs::read_to_string(&lock).unwrap().trim(),
        first.pid().to_string(),
        "the refused daemon changed the lock file"
    );

    let (status, _) = first.terminate();
    assert!(status.success(), "{status:?}\n{}", first.diagnostics());
    let mut next = Daemon::start(&sandbox, Some(&plugins), &[]);
    next.wait_stderr("the data dir lock", |l| l.contains("data dir locked"));
    let (status, _) = next.terminate();
    assert!(status.success(), "{status:?}\n{}", next.diagnostics());
}

/// `validate` takes no lock and creates nothing, even with a `--data-dir`, nor the output file
/// of a `flusher_file`.
#[test]
fn validate_creates_nothing() {
    let _serial = serial();
    let sandbox = sandbox();
    fs::create_dir(sandbox.path("out")).unwrap();
    let config = sandbox.config_path("p.yaml");
    fs::write(&config, file_pipeline(&sandbox, "p", "*.log", "")).unwrap();
    let data = sandbox.path("data");
    let data_arg = data.display().to_string();
    let config_arg = config.display().to_string();
    let out = run(
        tailrace(
            &sandbox,
            &["--data-dir", &data_arg, "validate", &config_arg],
        ),
        LIMIT,
    );
    assert_eq!(out.code(), Some(0), "{out}");
    assert!(!data.exists());
    assert_eq!(fs::read_dir(sandbox.path("out")).unwrap().count(), 0);
}

/// A flusher whose output an input of the same daemon collects would read its own output back
/// without end: `validate` refuses it naming both ends, and the daemon does not load it (the
/// output is never even created), while the other pipelines run.
#[test]
fn an_output_collected_by_an_input_is_refused() {
    let _serial = serial();
    let sandbox = sandbox();
    fs::create_dir(sandbox.path("out")).unwrap();
    fs::write(sandbox.path("logs/a.log"), numbered_lines(50, 40)).unwrap();
    // `reader` collects logs/*.log and out/*.log; `writer` writes out/loop.log.
    sandbox.write_config(
        "reader.yaml",
        &file_pipeline(&sandbox, "reader", "*.log", "").replace(
            "*.log]",
            &format!("*.log, {}/*.log]", sandbox.path("out").display()),
        ),
    );
    let loop_out = sandbox.path("out/loop.log");
    sandbox.write_config(
        "writer.yaml",
        &format!(
            "inputs:\n  - Type: input_file\n    FilePaths: [{}/a.log]\nflushers:\n  - Type: flusher_file\n    FilePath: {}\n",
            sandbox.path("logs").display(),
            loop_out.display()
        ),
    );
    let reader = sandbox.config_path("reader.yaml").display().to_string();
    let writer = sandbox.config_path("writer.yaml").display().to_string();
    let out = run(tailrace(&sandbox, &["validate", &reader, &writer]), LIMIT);
    assert_eq!(out.code(), Some(1), "{out}");
    assert!(
        out.stdout.contains("writer.yaml: flushers[0].FilePath")
            && out.stdout.contains(&loop_out.display().to_string())
            && out.stdout.contains("pipeline \"reader\"")
            && out.stdout.contains("reader.yaml: inputs[0].FilePaths"),
        "{out}"
    );
    // Each alone is valid.
    assert_eq!(
        run(tailrace(&sandbox, &["validate", &writer]), LIMIT).code(),
        Some(0)
    );

    let out = run(on_sandbox(&sandbox, &["--once"]), LIMIT);
    assert_eq!(out.code(), Some(1), "{out}");
    assert!(out.stderr.contains("read its own output back"), "{out}");
    assert!(
        !loop_out.exists(),
        "the refused flusher created its output\n{out}"
    );
    assert_eq!(delivered(&sandbox, "reader").len(), 50, "{out}");
}

// ---------------------------------------------------------------------------------------------
// --once exit codes
// ---------------------------------------------------------------------------------------------

/// An invalid config makes `--once` fail, after the valid pipelines did their work.
#[test]
fn once_with_an_invalid_config_exits_non_zero() {
    let _serial = serial();
    let sandbox = sandbox();
    fs::create_dir(sandbox.path("out")).unwrap();
    fs::write(sandbox.path("logs/a.log"), numbered_lines(100, 40)).unwrap();
    sandbox.write_config("good.yaml", &file_pipeline(&sandbox, "good", "*.log", ""));
    sandbox.write_config(
        "bad.yaml",
        "inputs: [{Type: input_file}]\nflushers: [{Type: flusher_stdout}]\n",
    );
    let out = run(on_sandbox(&sandbox, &["--once"]), LIMIT);
    assert_eq!(out.code(), Some(1), "{out}");
    assert!(
        out.stderr.contains("bad.yaml") && out.stderr.contains("1 config file(s) invalid"),
        "{out}"
    );
    assert_eq!(delivered(&sandbox, "good").len(), 100, "{out}");

    // A valid config whose pipeline cannot be built (its output cannot be opened: the
    // flusher's directory is a file): the same.
    sandbox.remove_config("bad.yaml");
    fs::write(sandbox.path("blocker"), b"").unwrap();
    sandbox.write_config(
        "unbuildable.yaml",
        &format!(
            "inputs:\n  - Type: input_file\n    FilePaths: [{}/*.log]\nflushers:\n  - Type: flusher_file\n    FilePath: {}/out.jsonl\n",
            sandbox.path("logs").display(),
            sandbox.path("blocker").display()
        ),
    );
    let out = run(on_sandbox(&sandbox, &["--once"]), LIMIT);
    assert_eq!(out.code(), Some(1), "{out}");
    assert!(
        out.stderr.contains("\"unbuildable\"") && out.stderr.contains("could not be loaded"),
        "{out}"
    );
    sandbox.remove_config("unbuildable.yaml");
    sandbox.write_config(
        "bad.yaml",
        "inputs: [{Type: input_file}]\nflushers: [{Type: flusher_stdout}]\n",
    );

    // Every config invalid: the same.
    sandbox.remove_config("good.yaml");
    let out = run(on_sandbox(&sandbox, &["--once"]), LIMIT);
    assert_eq!(out.code(), Some(1), "{out}");
}

/// Checkpoints that cannot be kept make `--once` fail. The tests run as root, for whom a
/// read-only mode stops nothing, so the data dir is broken in ways that fail for root too:
/// `checkpoints` a regular file (the checkpoint dir cannot be created: caught at start), and
/// `checkpoints/files.json` a non-empty directory (rename cannot replace it: every save fails,
/// caught at the end, after everything was delivered).
#[test]
fn once_exits_non_zero_when_checkpoints_cannot_be_saved() {
    let _serial = serial();
    let sandbox = sandbox();
    fs::create_dir(sandbox.path("out")).unwrap();
    fs::write(sandbox.path("logs/a.log"), numbered_lines(200, 40)).unwrap();
    sandbox.write_config("p.yaml", &file_pipeline(&sandbox, "p", "*.log", ""));

    fs::create_dir(sandbox.path("data")).unwrap();
    fs::write(sandbox.path("data/checkpoints"), b"in the way").unwrap();
    let out = run(on_sandbox(&sandbox, &["--once"]), LIMIT);
    assert_eq!(out.code(), Some(1), "{out}");
    assert!(out.stderr.contains("checkpoints cannot be kept"), "{out}");
    assert!(
        delivered(&sandbox, "p").is_empty(),
        "it read before failing"
    );

    fs::remove_file(sandbox.path("data/checkpoints")).unwrap();
    fs::create_dir_all(sandbox.path("data/checkpoints/files.json/in-the-way")).unwrap();
    let out = run(on_sandbox(&sandbox, &["--once"]), LIMIT);
    assert_eq!(out.code(), Some(1), "{out}");
    assert!(
        out.stderr.contains("checkpoints could not be saved"),
        "{out}"
    );
    assert_eq!(delivered(&sandbox, "p").len(), 200, "{out}");

    // The control: the same run with a sound data dir succeeds.
    fs::remove_dir_all(sandbox.path("data")).unwrap();
    fs::remove_file(out_path(&sandbox, "p")).unwrap();
    let out = run(on_sandbox(&sandbox, &["--once"]), LIMIT);
    assert_eq!(out.code(), Some(0), "{out}");
    assert_eq!(delivered(&sandbox, "p").len(), 200, "{out}");
}

/// SIGTERM during `--once` is a failure. The run is held mid-way for as long as the test wants:
/// its flusher writes to stdout, a pipe the test does not read until the signal was sent, so the
/// flusher blocks and the large file cannot be finished before the signal.
#[test]
fn once_interrupted_by_sigterm_exits_non_zero() {
    let _serial = serial();
    let sandbox = sandbox();
    // 32 MiB: several times what the bounded queues can hold.
    let lines = 320_000;
    fs::write(sandbox.path("logs/big.log"), numbered_lines(lines, 100)).unwrap();
    sandbox.write_config(
        "p.yaml",
        &format!(
            "inputs:\n  - Type: input_file\n    FilePaths: [{}/*.log]\nflushers:\n  - Type: flusher_stdout\n",
            sandbox.path("logs").display()
        ),
    );
    let mut child = on_sandbox(&sandbox, &["--once", "--log-level", "info"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stderr_lines = Arc::new(Mutex::new(Vec::<String>::new()));
    let sink = stderr_lines.clone();
    let err = child.stderr.take().unwrap();
    let stderr_reader = std::thread::spawn(move || {
        for line in BufReader::new(err).lines().map_while(Result::ok) {
            sink.lock().unwrap().push(line);
        }
    });
    wait_until(LIMIT, "the file being read", || {
        stderr_lines
            .lock()
            .unwrap()
            .iter()
            .any(|l| l.contains("tailing file"))
    });
    let sent = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(sent.success());
    // The daemon stops reading as soon as it handles the signal; only then may the flusher go
    // on (read earlier, and a loaded machine may let it read the whole file first).
    wait_until(LIMIT, "the daemon handling the signal", || {
        stderr_lines
            .lock()
            .unwrap()
            .iter()
            .any(|l| l.contains("stopping"))
    });
    // Now let the flusher go on, so that the daemon can drain and exit.
    let stdout = read_all_in_background(child.stdout.take().unwrap());
    let status = wait_within(&mut child, LIMIT);
    let stdout = stdout.join().unwrap();
    stderr_reader.join().unwrap();
    let stderr = stderr_lines.lock().unwrap().join("\n");
    let out = Output {
        status,
        stdout,
        stderr,
    };
    assert_eq!(out.code(), Some(1), "{out}");
    assert!(out.stderr.contains("--once: interrupted"), "{out}");
    let first: Vec<usize> = stdout_seqs(&out.stdout);
    assert!(
        first.len() < lines,
        "all {lines} lines were delivered: not interrupted"
    );

    // What was delivered was checkpointed: a second run goes on from there, without a gap.
    let out = run(on_sandbox(&sandbox, &["--once"]), LIMIT);
    assert_eq!(out.code(), Some(0), "{out}");
    let second = stdout_seqs(&out.stdout);
    let resumed_at = *second.first().expect("the second run delivered the rest");
    assert!(
        resumed_at > 0 && resumed_at <= first.len(),
        "the second run started at line {resumed_at}; the first delivered {}",
        first.len()
    );
    let mut all: Vec<usize> = first.into_iter().chain(second).collect();
    all.sort_unstable();
    all.dedup();
    assert_eq!(all.len(), lines, "lines lost across the interruption");
}

/// The sequence numbers of `flusher_stdout`'s JSON lines.
fn stdout_seqs(stdout: &str) -> Vec<usize> {
    stdout
        .lines()
        .map(|l| {
            let v: serde_json::Value = serde_json::from_str(l).expect("a JSON line");
            seq_of(v["content"].as_str().expect("a content"))
        })
        .collect()
}

// ---------------------------------------------------------------------------------------------
// Checkpoint files
// ---------------------------------------------------------------------------------------------

/// Under umask 000, the data dir and checkpoint dir are 0700, the checkpoint and lock files
/// 0600, and no temp file is left.
#[test]
fn checkpoints_are_private_under_umask_000() {
    let _serial = serial();
    let sandbox = sandbox();
    fs::create_dir(sandbox.path("out")).unwrap();
    fs::write(sandbox.path("logs/a.log"), numbered_lines(10, 40)).unwrap();
    sandbox.write_config("p.yaml", &file_pipeline(&sandbox, "p", "*.log", ""));
    let mut cmd = Command::new("sh");
    cmd.arg("-c")
        .arg("umask 000; exec \"$0\" \"$@\"")
        .arg(tailrace_bin())
        .arg("--plugin-dir")
        .arg(sandbox.path("plugins"))
        .arg("--config-dir")
        .arg(sandbox.path("conf"))
        .arg("--data-dir")
        .arg(sandbox.path("data"))
        .arg("--once")
        .stdin(Stdio::null());
    let out = run(cmd, LIMIT);
    assert_eq!(out.code(), Some(0), "{out}");
    assert_eq!(delivered(&sandbox, "p").len(), 10, "{out}");
    // The umask did apply: the flusher's output file, created with the default mode, is 0666.
    assert_eq!(mode(&out_path(&sandbox, "p")), 0o666);
    assert_eq!(mode(&sandbox.path("data")), 0o700);
    assert_eq!(mode(&sandbox.path("data/checkpoints")), 0o700);
    assert_eq!(mode(&sandbox.path("data/checkpoints/files.json")), 0o600);
    assert_eq!(mode(&sandbox.path("data/tailrace.lock")), 0o600);
    let left: Vec<String> = fs::read_dir(sandbox.path("data/checkpoints"))
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(left, ["files.json"]);
}

// ---------------------------------------------------------------------------------------------
// SIGHUP
// ---------------------------------------------------------------------------------------------

/// With polling off (`--config-poll 0`), a config added while the daemon runs is picked up
/// only when SIGHUP comes, and the daemon survives the signal. Its warnings are logged.
#[test]
fn sighup_reloads_the_configs() {
    let _serial = serial();
    let sandbox = sandbox();
    let plugins = sandbox.path("plugins");
    fs::write(sandbox.path("logs/h.log"), "before-hup\n").unwrap();
    let mut daemon =
        Daemon::start_with_args(&sandbox, Some(&plugins), &[], &["--config-poll", "0"]);
    daemon.wait_stderr("the first config poll", |l| {
        l.contains("no valid pipeline config")
    });
    sandbox.write_config(
        "hup.yaml",
        &format!(
            "inputs:\n  - Type: input_file\n    FilePaths: [{}/h.log]\n    TailingAllMatchedFiles: true\n    CloseUnusedReaderIntervalSec: 3\nflushers:\n  - Type: flusher_stdout\n",
            sandbox.path("logs").display()
        ),
    );
    // Polling is off: nothing happens without the signal (the default poll is every second).
    std::thread::sleep(Duration::from_millis(2500));
    assert!(
        daemon.lines().is_empty(),
        "the config was picked up without SIGHUP\n{}",
        daemon.diagnostics()
    );
    daemon.signal("HUP");
    daemon.wait_line("the line of the added pipeline", |l| {
        l.get("content") == Some("before-hup")
    });
    daemon.assert_running("after SIGHUP");
    daemon.wait_stderr("the reload log line", |l| l.contains("SIGHUP: reloading"));
    daemon.wait_stderr("the warning about CloseUnusedReaderIntervalSec", |l| {
        l.contains("inputs[0].CloseUnusedReaderIntervalSec") && l.contains("does not implement yet")
    });
    // A second HUP with nothing changed changes nothing, and the daemon still runs.
    daemon.signal("HUP");
    wait_until(LIMIT, "a second reload log line", || {
        let reloads = daemon
            .stderr_lines()
            .iter()
            .filter(|l| l.contains("SIGHUP: reloading"))
            .count();
        reloads == 2
    });
    daemon.assert_running("after a second SIGHUP");
    let (status, _) = daemon.terminate();
    assert!(status.success(), "{status:?}\n{}", daemon.diagnostics());
}

// ---------------------------------------------------------------------------------------------
// The --once start rule
// ---------------------------------------------------------------------------------------------

/// `--once` over a 3 MiB file that existed before: every line, from the first. With
/// `TailSizeKB` written, that holds in `--once` too.
#[test]
fn once_reads_a_pre_existing_3_mib_file_whole() {
    let _serial = serial();
    let sandbox = sandbox();
    fs::create_dir(sandbox.path("out")).unwrap();
    let lines = 3 * 1024 * 1024 / 64;
    fs::write(sandbox.path("logs/big.log"), numbered_lines(lines, 64)).unwrap();
    sandbox.write_config("whole.yaml", &file_pipeline(&sandbox, "whole", "*.log", ""));
    sandbox.write_config(
        "tail.yaml",
        // Both pipelines collect the file: without the option it goes to one of them only.
        &file_pipeline(
            &sandbox,
            "tail",
            "*.log",
            "    TailSizeKB: 64\n    AllowingIncludedByMultiConfigs: true\n",
        ),
    );
    let out = run(on_sandbox(&sandbox, &["--once"]), LIMIT);
    assert_eq!(out.code(), Some(0), "{out}");

    let whole = delivered(&sandbox, "whole");
    assert_eq!(whole.len(), lines, "{out}");
    let seqs: Vec<usize> = whole.iter().map(|c| seq_of(c)).collect();
    assert!(
        seqs.iter().copied().eq(0..lines),
        "lines missing or out of order"
    );

    let tail = delivered(&sandbox, "tail");
    assert_eq!(tail.len(), 64 * 1024 / 64, "{out}");
    assert_eq!(seq_of(&tail[0]), lines - 1024);
}

/// The daemon keeps iLogtail's rule: a file that existed before starts 1 MiB before its end.
#[test]
fn the_daemon_starts_existing_files_one_mib_before_their_end() {
    let _serial = serial();
    let sandbox = sandbox();
    fs::create_dir(sandbox.path("out")).unwrap();
    let lines = 3 * 1024 * 1024 / 64;
    fs::write(sandbox.path("logs/big.log"), numbered_lines(lines, 64)).unwrap();
    sandbox.write_config("p.yaml", &file_pipeline(&sandbox, "p", "*.log", ""));
    let plugins = sandbox.path("plugins");
    let mut daemon = Daemon::start(&sandbox, Some(&plugins), &[]);
    wait_until(LIMIT, "the last line", || {
        delivered(&sandbox, "p")
            .last()
            .is_some_and(|c| seq_of(c) == lines - 1)
    });
    let got = delivered(&sandbox, "p");
    assert_eq!(got.len(), 1024 * 1024 / 64);
    assert_eq!(seq_of(&got[0]), lines - 1024 * 1024 / 64);
    let (status, _) = daemon.terminate();
    assert!(status.success(), "{status:?}\n{}", daemon.diagnostics());
}

// ---------------------------------------------------------------------------------------------
// validate: warnings
// ---------------------------------------------------------------------------------------------

/// Options a native plugin does not take are warnings with file, field and key; the exit code
/// stays 0 when there is no error. A typo that leaves a required option out is an error too.
#[test]
fn validate_warns_about_unknown_options() {
    let _serial = serial();
    let sandbox = sandbox();
    let config = sandbox.config_path("w.yaml");
    fs::write(
        &config,
        "inputs:\n  - Type: input_file\n    FilePaths: [/var/log/*.log]\n    FilePath: /var/log/a.log\n    CloseUnusedReaderIntervalSec: 5\n    AllowingCollectingFilesInRootDir: true\nflushers:\n  - Type: flusher_stdout\n",
    )
    .unwrap();
    let file = config.display().to_string();
    let out = run(tailrace(&sandbox, &["validate", &file]), LIMIT);
    assert_eq!(out.code(), Some(0), "{out}");
    let expected = [
        format!("warning: {file}: inputs[0].FilePath: unknown option (did you mean FilePaths?)"),
        format!("warning: {file}: inputs[0].CloseUnusedReaderIntervalSec: an iLogtail option that Tailrace does not implement yet"),
        format!("warning: {file}: inputs[0].AllowingCollectingFilesInRootDir: an iLogtail option that Tailrace does not implement yet"),
        "1 file(s) valid, 3 warning(s)".to_owned(),
    ];
    for line in &expected {
        assert!(
            out.stdout.contains(line.as_str()),
            "missing {line:?}\n{out}"
        );
    }

    fs::write(
        &config,
        "inputs:\n  - Type: input_file\n    FilePath: /var/log/a.log\nflushers:\n  - Type: flusher_stdout\n",
    )
    .unwrap();
    let out = run(tailrace(&sandbox, &["validate", &file]), LIMIT);
    assert_eq!(out.code(), Some(1), "{out}");
    assert!(out.stdout.contains("FilePaths"), "{out}");
    assert!(out.stdout.contains("did you mean FilePaths?"), "{out}");
}
