//! `tailrace top` on the real binary, in a real terminal (tmux): it shows a running daemon's
//! pipelines and their counts from /metrics, quits on `q`, and says so clearly when nothing
//! answers at the address.

mod common;

use std::fs;
use std::process::Command;
use std::time::{Duration, Instant};

use common::{tailrace_bin, Daemon, Sandbox, WAIT};

/// A tmux server of its own (its own socket), killed on drop.
struct Tmux {
    socket: String,
}

impl Tmux {
    fn new() -> Tmux {
        Tmux {
            socket: format!("tailrace-top-test-{}", std::process::id()),
        }
    }

    fn cmd(&self, args: &[&str]) -> std::process::Output {
        Command::new("tmux")
            .arg("-L")
            .arg(&self.socket)
            .args(args)
            .output()
            .expect("tmux is installed (.ci/run installs it)")
    }

    fn screen(&self) -> String {
        String::from_utf8_lossy(&self.cmd(&["capture-pane", "-p", "-t", "top"]).stdout).into_owned()
    }

    fn running(&self) -> bool {
        self.cmd(&["has-session", "-t", "top"]).status.success()
    }
}

impl Drop for Tmux {
    fn drop(&mut self) {
        let _ = self.cmd(&["kill-server"]);
    }
}

fn wait_until(what: &str, mut pred: impl FnMut() -> bool, explain: impl Fn() -> String) {
    let deadline = Instant::now() + WAIT;
    while !pred() {
        assert!(
            Instant::now() < deadline,
            "timed out waiting for {what}\n{}",
            explain()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn top_shows_the_pipelines_and_quits_on_q() {
    let sandbox = Sandbox::new();
    sandbox.write_config(
        "web.yaml",
        &format!(
            "inputs:\n  - Type: input_file\n    FilePaths: [{}]\nflushers:\n  - Type: flusher_blackhole\n",
            sandbox.path("logs/*.log").display()
        ),
    );
    let daemon = Daemon::start_with_args(&sandbox, None, &[], &["--metrics-addr", "127.0.0.1:0"]);
    let addr = daemon.metrics_addr();
    daemon.wait_stderr("the pipeline", |l| l.contains("pipeline started"));
    let text: String = (0..1234).map(|i| format!("line {i}\n")).collect();
    fs::write(sandbox.path("logs/app.log"), text).unwrap();

    let tmux = Tmux::new();
    let command = format!("{} top --addr {addr}", tailrace_bin().display());
    let out = tmux.cmd(&[
        "new-session",
        "-d",
        "-s",
        "top",
        "-x",
        "150",
        "-y",
        "40",
        &command,
    ]);
    assert!(
        out.status.success(),
        "tmux: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    // The pipeline's row with every line counted, and the flusher's.
    wait_until(
        "the pipeline's row with 1234 events",
        || {
            let screen = tmux.screen();
            screen
                .lines()
                .any(|l| l.contains("web") && l.contains("1234") && !l.contains("flusher"))
                && screen
                    .lines()
                    .any(|l| l.contains("web") && l.contains("flusher_blackhole"))
        },
        || tmux.screen(),
    );
    let screen = tmux.screen();
    assert!(
        screen.contains("Pipelines") && screen.contains("Flushers"),
        "{screen}"
    );
    assert!(
        screen.contains(&addr) && screen.contains("q quits"),
        "{screen}"
    );

    tmux.cmd(&["send-keys", "-t", "top", "q"]);
    wait_until("top to quit on q", || !tmux.running(), || tmux.screen());
}

#[test]
fn top_says_when_nothing_answers() {
    // A port that was free a moment ago: nothing listens there.
    let addr = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.local_addr().unwrap().to_string()
    };
    let out = Command::new(tailrace_bin())
        .args(["top", "--addr", &addr])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains(&format!("nothing answers at {addr}")) && stderr.contains("--metrics-addr"),
        "{stderr}"
    );
}
