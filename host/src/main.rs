//! `tailrace`: the host daemon (CLI: DESIGN §7).
//!
//! It owns file collection, native processing and native flushing, and loads the two plugin
//! libraries as an extra it can lose at any moment: if they are missing or broken, one warning
//! says why and everything native keeps running.

// Queues hand a refused batch back by value in `Err`, so that nothing is lost; the group is
// moved, not copied, and boxing it would cost an allocation per batch on the hot path.
#![allow(clippy::result_large_err)]

/// Parsing churns through short-lived batches on several threads; glibc's per-thread arenas
/// give the pages back and fault them in again for every batch, mimalloc keeps them. (Unit
/// tests count allocations with an allocator of their own.)
#[cfg(not(test))]
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

mod config;
mod dir_stamp;
mod flusher;
mod inotify;
mod input;
mod monitor;
mod pipeline;
mod plugin;
mod processor;
mod queue;
mod runner;
mod top;

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use clap::{Parser, Subcommand};

use config::watcher::{validate_files, ConfigWatcher};
use input::file::checkpoint::{self, SaveHealth};
use input::file::{FileServer, FileServerOptions};
use pipeline::manager::PipelineManager;

#[derive(Parser, Debug)]
#[command(
    name = "tailrace",
    version,
    about = "Tail log files, process them, ship them."
)]
struct Cli {
    /// A directory of pipeline configs (.yaml, .yml, .json); repeatable.
    #[arg(
        long = "config-dir",
        value_name = "DIR",
        default_value = "./conf/pipelines"
    )]
    config_dirs: Vec<PathBuf>,
    /// Where checkpoints and persisted buffers live.
    #[arg(long, value_name = "DIR", default_value = "./data")]
    data_dir: PathBuf,
    /// Where libPluginAdapter.so and libPluginBase.so are (default: next to the executable).
    #[arg(long, value_name = "DIR")]
    plugin_dir: Option<PathBuf>,
    /// Read every matched file to its end (from its checkpoint, else from its start unless the
    /// config sets TailSizeKB), deliver everything, save checkpoints, exit; exit 1 when a config
    /// was invalid, checkpoints could not be saved, or it was interrupted.
    #[arg(long)]
    once: bool,
    /// Serve metrics on this address.
    #[arg(long, value_name = "ADDR")]
    metrics_addr: Option<String>,
    /// How often the config dirs are polled for changes, in seconds; 0: only at start and on
    /// SIGHUP. While inotify watches them a change is seen at once, and the poll (the safety
    /// net) runs every 10 s at most.
    #[arg(long = "config-poll", value_name = "SECS", default_value_t = 1)]
    config_poll_secs: u64,
    /// Processor threads serving every pipeline, and as many flusher threads (LoongCollector's
    /// `process_thread_count`; default: one per core, at most 4).
    #[arg(long, value_name = "N", env = "TAILRACE_PROCESS_THREADS")]
    process_threads: Option<usize>,
    /// trace, debug, info, warn or error (or a tracing filter).
    #[arg(long, value_name = "LEVEL", default_value = "info")]
    log_level: String,
    /// How often the plugin base reports its alarms and its statistics to the host (what
    /// /metrics shows of it), in milliseconds; default: iLogtail's 30 s for alarms and 60 s
    /// for statistics.
    #[arg(long, value_name = "MS", env = "TAILRACE_BASE_REPORT_INTERVAL_MS")]
    base_report_interval_ms: Option<u64>,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Check pipeline config files; print each error with its file and field.
    Validate {
        #[arg(required = true, value_name = "FILE")]
        files: Vec<PathBuf>,
    },
    /// Watch a running daemon: per pipeline and flusher rates, errors and queue fill, from its
    /// /metrics (the daemon runs with --metrics-addr). q quits.
    Top {
        /// The daemon's --metrics-addr.
        #[arg(long, value_name = "ADDR", default_value = "127.0.0.1:9110")]
        addr: String,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match &cli.command {
        Some(Command::Validate { files }) => return validate(files),
        Some(Command::Top { addr }) => {
            return match top::run(addr) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    eprintln!("tailrace top: {e}");
                    ExitCode::FAILURE
                }
            }
        }
        None => {}
    }
    init_logging(&cli.log_level);
    match run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!("{e}");
            ExitCode::FAILURE
        }
    }
}

/// `tailrace validate`: errors, then warnings (ignored options), each with its file and field.
/// Warnings alone leave the exit code 0. It takes no lock and creates nothing.
fn validate(files: &[PathBuf]) -> ExitCode {
    let mut found = validate_files(files);
    let configs: Vec<_> = found.configs.iter().collect();
    let loops = pipeline::feedback::loops(&configs);
    found.errors.extend(loops.iter().map(|l| l.error()));
    for e in &found.errors {
        println!("{e}");
    }
    for w in &found.warnings {
        println!("warning: {w}");
    }
    if !found.errors.is_empty() {
        return ExitCode::FAILURE;
    }
    match found.warnings.len() {
        0 => println!("{} file(s) valid", files.len()),
        n => println!("{} file(s) valid, {n} warning(s)", files.len()),
    }
    ExitCode::SUCCESS
}

fn init_logging(level: &str) {
    let filter = std::env::var("RUST_LOG").unwrap_or_else(|_| level.to_owned());
    let filter = tracing_subscriber::EnvFilter::try_new(&filter)
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(false)
        .init();
}

fn run(cli: Cli) -> Result<(), String> {
    // Failures a person can fix come first, before anything is created or started.
    config::watcher::check_dirs(&cli.config_dirs)?;
    let lock = checkpoint::lock_data_dir(&cli.data_dir)?;
    tracing::info!("data dir locked: {}", lock.path.display());
    checkpoint::prepare_dir(&cli.data_dir).map_err(|e| {
        format!(
            "--data-dir {}: checkpoints cannot be kept in {}: {e}",
            cli.data_dir.display(),
            checkpoint::dir_of(&cli.data_dir).display()
        )
    })?;
    // Processors keep their checkpoints where the plugin base keeps its plugins'.
    processor::services::set_data_dir(
        &std::fs::canonicalize(&cli.data_dir).unwrap_or_else(|_| cli.data_dir.clone()),
    );
    let signals = Signals::register()?;

    let plugin_dir = cli
        .plugin_dir
        .clone()
        .unwrap_or_else(plugin::loader::default_plugin_dir);
    let base = plugin::BaseState::load(plugin_dir, base_global_config(&cli));

    let checkpoint_health = SaveHealth::default();
    let files = FileServer::start(FileServerOptions {
        data_dir: cli.data_dir.clone(),
        once: cli.once,
        checkpoint_health: checkpoint_health.clone(),
    });
    let stats_handle = files.stats_handle();
    let threads = cli
        .process_threads
        .filter(|&n| n > 0)
        .unwrap_or_else(runner::default_threads);
    let runners = runner::Runners::start(threads);
    tracing::info!(threads, "processor and flusher runners started");
    let monitor = monitor::Monitor::new(runners.queues.clone(), Some(stats_handle));
    // Held to the end: dropping it stops the server.
    let _metrics_server = match &cli.metrics_addr {
        Some(addr) => Some(monitor::server::MetricsServer::start(
            addr,
            monitor.clone(),
        )?),
        None => None,
    };
    let mut manager = PipelineManager::new(files, runners, base, monitor.clone());
    let mut watcher = ConfigWatcher::new(cli.config_dirs.clone());
    let diff = watcher.poll();
    if diff.added.is_empty() {
        tracing::warn!("no valid pipeline config in {:?}", cli.config_dirs);
    }
    let names: Vec<String> = diff.added.iter().map(|c| c.name.clone()).collect();
    manager.update(diff);
    monitor.invalid_configs(watcher.invalid_files());
    // A config can be valid and its pipeline still fail to build (an output that cannot be
    // opened): for `--once` that is a failure like an invalid config.
    let not_loaded: Vec<&String> = names.iter().filter(|n| !manager.is_loaded(n)).collect();
    let outcome = if cli.once {
        run_once(&mut manager, &signals)
    } else {
        let poll = (cli.config_poll_secs > 0).then(|| Duration::from_secs(cli.config_poll_secs));
        run_daemon(&mut manager, &mut watcher, &signals, poll);
        Ok(())
    };
    tracing::info!("stopping");
    manager.shutdown();

    // The final checkpoint save happened in shutdown; its outcome decides as much as the run's.
    let mut failures: Vec<String> = outcome.err().into_iter().collect();
    if cli.once && watcher.invalid_count() > 0 {
        failures.push(format!(
            "--once: {} config file(s) invalid (see the errors above); their pipelines did not run",
            watcher.invalid_count()
        ));
    }
    if cli.once && !not_loaded.is_empty() {
        failures.push(format!(
            "--once: pipeline(s) {not_loaded:?} could not be loaded (see the errors above)"
        ));
    }
    if let Some(e) = checkpoint_health.last_error() {
        failures.push(format!("checkpoints could not be saved: {e}"));
    }
    if failures.is_empty() {
        Ok(())
    } else {
        Err(failures.join("; "))
    }
}

/// The flags the signal handlers set: SIGTERM and SIGINT stop (drain, save checkpoints, exit);
/// SIGHUP reloads the configs now, as Vector and Fluent Bit do (its default action would kill
/// the daemon). The handlers only set flags; the main loop acts on them.
struct Signals {
    stop: Arc<AtomicBool>,
    reload: Arc<AtomicBool>,
}

impl Signals {
    fn register() -> Result<Signals, String> {
        use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM};
        let signals = Signals {
            stop: Arc::new(AtomicBool::new(false)),
            reload: Arc::new(AtomicBool::new(false)),
        };
        for (signal, flag) in [
            (SIGTERM, &signals.stop),
            (SIGINT, &signals.stop),
            (SIGHUP, &signals.reload),
        ] {
            signal_hook::flag::register(signal, flag.clone())
                .map_err(|e| format!("cannot handle signals: {e}"))?;
        }
        Ok(signals)
    }

    fn stopping(&self) -> bool {
        self.stop.load(Ordering::Relaxed)
    }
}

/// How often config dirs that inotify watches are polled all the same: the safety net for a
/// change inotify cannot see (iLogtail's `config_scan_interval` is also 10 s).
const WATCHED_CONFIG_POLL: Duration = Duration::from_secs(10);

/// How long after inotify's first word of a change the configs are read: a file being written
/// (truncated, then filled) is read whole, not half-way.
const CONFIG_SETTLE: Duration = Duration::from_millis(200);

/// The daemon's loop, until SIGTERM or SIGINT: configs polled on SIGHUP, when inotify says a
/// config dir changed, and every `poll` (never when `None`; at most every
/// `WATCHED_CONFIG_POLL` while inotify watches every config dir).
fn run_daemon(
    manager: &mut PipelineManager,
    watcher: &mut ConfigWatcher,
    signals: &Signals,
    poll: Option<Duration>,
) {
    if poll.is_some() {
        watcher.watch_dirs();
    }
    let interval = |watcher: &ConfigWatcher| {
        poll.map(|p| {
            if watcher.fully_watched() {
                p.max(WATCHED_CONFIG_POLL)
            } else {
                p
            }
        })
    };
    let mut next_poll = interval(watcher).map(|p| Instant::now() + p);
    while !signals.stopping() {
        if watcher.changed() {
            let soon = Instant::now() + CONFIG_SETTLE;
            next_poll = Some(next_poll.map_or(soon, |at| at.min(soon)));
        }
        let diff = if signals.reload.swap(false, Ordering::Relaxed) {
            tracing::info!("SIGHUP: reloading the configs");
            Some(watcher.reload())
        } else if next_poll.is_some_and(|at| Instant::now() >= at) {
            Some(watcher.poll())
        } else {
            None
        };
        if let Some(diff) = diff {
            if !diff.is_empty() {
                manager.update(diff);
            }
            manager.monitor().invalid_configs(watcher.invalid_files());
            next_poll = interval(watcher).map(|p| Instant::now() + p);
        }
        manager.poll_base();
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// `--once`: waits until every matched file was read to its end and delivered (twice in a row,
/// a moment apart, so that nothing is still on its way), saying how it goes every few seconds.
/// SIGTERM or SIGINT before that is an error: the run did not do what it was asked, and a
/// script must not take it for a complete backfill (what was delivered is checkpointed, so a
/// second run goes on from there).
fn run_once(manager: &mut PipelineManager, signals: &Signals) -> Result<(), String> {
    let started = Instant::now();
    let mut last_progress = Instant::now();
    let mut drained_once = false;
    while !signals.stopping() {
        manager.poll_base();
        let drained = manager.files_drained();
        if drained && drained_once {
            tracing::info!(
                "--once: everything read and delivered in {:.1}s",
                started.elapsed().as_secs_f64()
            );
            return Ok(());
        }
        drained_once = drained;
        if last_progress.elapsed() >= Duration::from_secs(5) {
            last_progress = Instant::now();
            tracing::info!(
                "--once: still reading and delivering ({}s)",
                started.elapsed().as_secs()
            );
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    Err(format!(
        "--once: interrupted after {:.1}s, before everything was read and delivered \
         (what was delivered is checkpointed)",
        started.elapsed().as_secs_f64()
    ))
}

/// The global config handed to `InitPluginBaseV2`, with iLogtail's and LoongCollector's names.
fn base_global_config(cli: &Cli) -> String {
    let data_dir = std::fs::canonicalize(&cli.data_dir).unwrap_or_else(|_| cli.data_dir.clone());
    let hostname = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap_or_default();
    let mut global = serde_json::json!({
        "DataDir": data_dir,
        "LoongcollectorDataDir": data_dir,
        "Hostname": hostname.trim(),
        "LogLevel": cli.log_level,
    });
    if let Some(ms) = cli.base_report_interval_ms.filter(|ms| *ms > 0) {
        global["AlarmIntervalMs"] = ms.into();
        global["StatisticsIntervalMs"] = ms.into();
    }
    global.to_string()
}
