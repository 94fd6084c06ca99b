//! `tailrace`: the host daemon (CLI: DESIGN §7).
//!
//! It owns file collection, native processing and native flushing, and loads the two plugin
//! libraries as an extra it can lose at any moment: if they are missing or broken, one warning
//! says why and everything native keeps running.

// Queues hand a refused batch back by value in `Err`, so that nothing is lost; the group is
// moved, not copied, and boxing it would cost an allocation per batch on the hot path.
#![allow(clippy::result_large_err)]

mod config;
mod flusher;
mod input;
mod pipeline;
mod plugin;
mod processor;
mod queue;
mod runner;

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use clap::{Parser, Subcommand};

use config::watcher::{validate_files, ConfigWatcher};
use input::file::{FileServer, FileServerOptions};
use pipeline::manager::PipelineManager;

/// How often the config dirs are polled.
const CONFIG_POLL: Duration = Duration::from_secs(1);

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
    /// Read every matched file to its end, deliver everything, save checkpoints, exit.
    #[arg(long)]
    once: bool,
    /// Serve metrics on this address.
    #[arg(long, value_name = "ADDR")]
    metrics_addr: Option<String>,
    /// Processor threads serving every pipeline, and as many flusher threads (LoongCollector's
    /// `process_thread_count`; default: one per core, at most 4).
    #[arg(long, value_name = "N", env = "TAILRACE_PROCESS_THREADS")]
    process_threads: Option<usize>,
    /// trace, debug, info, warn or error (or a tracing filter).
    #[arg(long, value_name = "LEVEL", default_value = "info")]
    log_level: String,
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
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    if let Some(Command::Validate { files }) = &cli.command {
        let errors = validate_files(files);
        if errors.is_empty() {
            println!("{} file(s) valid", files.len());
            return ExitCode::SUCCESS;
        }
        for e in &errors {
            println!("{e}");
        }
        return ExitCode::FAILURE;
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
    if let Some(addr) = &cli.metrics_addr {
        tracing::warn!("--metrics-addr {addr}: the metrics server is not built yet; ignored");
    }
    std::fs::create_dir_all(&cli.data_dir)
        .map_err(|e| format!("--data-dir {}: cannot create: {e}", cli.data_dir.display()))?;
    let stop = Arc::new(AtomicBool::new(false));
    for signal in [signal_hook::consts::SIGTERM, signal_hook::consts::SIGINT] {
        signal_hook::flag::register(signal, stop.clone())
            .map_err(|e| format!("cannot handle signals: {e}"))?;
    }

    let plugin_dir = cli
        .plugin_dir
        .clone()
        .unwrap_or_else(plugin::loader::default_plugin_dir);
    let base = plugin::BaseState::load(plugin_dir, base_global_config(&cli));

    let files = FileServer::start(FileServerOptions {
        data_dir: cli.data_dir.clone(),
        once: cli.once,
    });
    let threads = cli
        .process_threads
        .filter(|&n| n > 0)
        .unwrap_or_else(runner::default_threads);
    let runners = runner::Runners::start(threads);
    tracing::info!(threads, "processor and flusher runners started");
    let mut manager = PipelineManager::new(files, runners, base);
    let mut watcher = ConfigWatcher::new(cli.config_dirs.clone());
    if cli.once {
        let diff = watcher.poll();
        manager.update(diff);
        run_once(&mut manager, &stop);
    } else {
        let mut next_poll = Instant::now();
        while !stop.load(Ordering::Relaxed) {
            if Instant::now() >= next_poll {
                let diff = watcher.poll();
                if !diff.is_empty() {
                    manager.update(diff);
                }
                next_poll = Instant::now() + CONFIG_POLL;
            }
            manager.poll_base();
            std::thread::sleep(Duration::from_millis(50));
        }
    }
    tracing::info!("stopping");
    manager.shutdown();
    Ok(())
}

/// `--once`: waits until every matched file was read to its end and delivered (twice in a row,
/// a moment apart, so that nothing is still on its way), saying how it goes every few seconds.
fn run_once(manager: &mut PipelineManager, stop: &AtomicBool) {
    let started = Instant::now();
    let mut last_progress = Instant::now();
    let mut drained_once = false;
    while !stop.load(Ordering::Relaxed) {
        manager.poll_base();
        let drained = manager.files_drained();
        if drained && drained_once {
            tracing::info!(
                "--once: everything read and delivered in {:.1}s",
                started.elapsed().as_secs_f64()
            );
            return;
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
}

/// The global config handed to `InitPluginBaseV2`, with iLogtail's and LoongCollector's names.
fn base_global_config(cli: &Cli) -> String {
    let data_dir = std::fs::canonicalize(&cli.data_dir).unwrap_or_else(|_| cli.data_dir.clone());
    let hostname = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap_or_default();
    serde_json::json!({
        "DataDir": data_dir,
        "LoongcollectorDataDir": data_dir,
        "Hostname": hostname.trim(),
        "LogLevel": cli.log_level,
    })
    .to_string()
}
