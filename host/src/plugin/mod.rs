//! The two plugin libraries: loading them (`loader`), the callbacks the host registers
//! (`ffi`), where the base's data goes (`router`), and the threads that call into the base
//! (`base`), so that a base that hangs never stalls native collection.

pub mod base;
pub mod delivery;
pub mod ffi;
pub mod go_metrics;
pub mod loader;
pub mod router;

pub use base::BaseClient;

use std::path::PathBuf;
use std::time::{Duration, Instant};

use crossbeam_channel::Receiver;

/// How long loading may take before the host says so.
const LOAD_WARNING: Duration = Duration::from_secs(5);

/// The plugin base as the host sees it. The libraries are loaded on a thread of their own, so
/// that a library that hangs in `dlopen` (or its initialisers) never delays native collection:
/// native pipelines start at once, and pipelines that need the base wait for it.
pub enum BaseState {
    Loading {
        result: Receiver<Result<loader::BaseApi, String>>,
        since: Instant,
        warned: bool,
        global_json: String,
    },
    Ready(BaseClient),
    Unavailable(String),
}

impl BaseState {
    /// Starts loading the libraries from `dir`; `global_json` goes to `InitPluginBaseV2`.
    pub fn load(dir: PathBuf, global_json: String) -> BaseState {
        let (tx, result) = crossbeam_channel::bounded(1);
        let spawned = std::thread::Builder::new()
            .name("plugin-loader".into())
            .spawn(move || {
                let _ = tx.send(loader::load(&dir).map_err(|e| e.to_string()));
            });
        match spawned {
            Ok(_) => BaseState::Loading {
                result,
                since: Instant::now(),
                warned: false,
                global_json,
            },
            Err(e) => BaseState::Unavailable(format!("cannot start the loader thread: {e}")),
        }
    }

    /// Moves on from `Loading` when the loader finished; true when that happened now.
    pub fn poll(&mut self) -> bool {
        let BaseState::Loading {
            result,
            since,
            warned,
            global_json,
        } = self
        else {
            return false;
        };
        match result.try_recv() {
            Ok(Ok(api)) => {
                *self = BaseState::Ready(BaseClient::start(api, std::mem::take(global_json)));
                true
            }
            Ok(Err(e)) => {
                tracing::warn!("plugins unavailable: {e}; native collection runs without them");
                *self = BaseState::Unavailable(e);
                true
            }
            Err(crossbeam_channel::TryRecvError::Empty) => {
                if !*warned && since.elapsed() >= LOAD_WARNING {
                    *warned = true;
                    tracing::error!(
                        "the plugin libraries have not finished loading after {}s; native \
                         collection goes on, pipelines that need plugins wait",
                        LOAD_WARNING.as_secs()
                    );
                }
                false
            }
            Err(crossbeam_channel::TryRecvError::Disconnected) => {
                let e = "the plugin loader thread died".to_owned();
                tracing::warn!("plugins unavailable: {e}; native collection runs without them");
                *self = BaseState::Unavailable(e);
                true
            }
        }
    }

    pub fn client(&self) -> Option<&BaseClient> {
        match self {
            BaseState::Ready(client) => Some(client),
            _ => None,
        }
    }
}
