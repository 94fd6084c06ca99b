//! The one plugin base of the process, as the C exports see it.

use std::sync::{Arc, Mutex, OnceLock};

use crate::host_link::Adaptor;
use crate::runtime::{PluginBase, Settings};

static BASE: OnceLock<PluginBase> = OnceLock::new();
static INIT: Mutex<()> = Mutex::new(());

/// Creates the base with `settings`, or, if it exists, gives it the new settings.
pub fn init(settings: Settings) -> Result<&'static PluginBase, String> {
    let _guard = INIT.lock().unwrap_or_else(|e| e.into_inner());
    if let Some(base) = BASE.get() {
        base.set_settings(settings);
        return Ok(base);
    }
    init_logging(&settings);
    let base = PluginBase::new(
        Arc::new(Adaptor),
        crate::runtime::registry::Registry::with(crate::plugins::all()),
        settings,
    )
    .map_err(|e| format!("cannot start the plugin runtime: {e}"))?;
    Ok(BASE.get_or_init(|| base))
}

/// The base, created with default settings if no `InitPluginBase*` came first.
pub fn get() -> Result<&'static PluginBase, String> {
    match BASE.get() {
        Some(base) => Ok(base),
        None => init(Settings::default()),
    }
}

/// The base if it was created; never creates one (for the panic path, which must not start a
/// runtime).
pub fn existing() -> Option<&'static PluginBase> {
    BASE.get()
}

/// Logs go to stderr, at the level of `LogLevel` in the global config (or `RUST_LOG`), `info`
/// by default.
fn init_logging(settings: &Settings) {
    let level = settings
        .raw
        .get("LogLevel")
        .and_then(|v| v.as_str())
        .map(str::to_owned)
        .or_else(|| std::env::var("RUST_LOG").ok())
        .unwrap_or_else(|| "info".to_owned());
    let filter = tracing_subscriber::EnvFilter::try_new(&level)
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(false)
        .try_init();
}
