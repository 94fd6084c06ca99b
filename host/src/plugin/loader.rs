//! Loading `libPluginAdapter.so` and `libPluginBase.so` in the order iLogtail's core uses:
//! the adaptor, its version check, the host's callbacks registered, then the base and its
//! symbols. (`InitPluginBaseV2` is called later, on the base's own thread.) Any failure is one
//! [`LoadError`] that names the file and the cause; the host then runs without plugins.

use std::os::raw::c_int;
use std::path::{Path, PathBuf};

use libloading::os::unix::{Library, RTLD_GLOBAL, RTLD_NOW};
use tailrace::adapter_abi::{IsValidToSendFun, PluginCtlCmdFun, SendPbFun, SendPbV2Fun};
use tailrace::rslice::{GoInt, GoInt64, GoSlice, GoString};

use crate::plugin::ffi;

/// The adapter version this host speaks (DESIGN §2).
pub const ADAPTER_VERSION: c_int = 300;

pub const ADAPTOR_FILE: &str = "libPluginAdapter.so";
pub const BASE_FILE: &str = "libPluginBase.so";
/// The names LoongCollector 3.x's community build gives the same libraries: a LoongCollector
/// plugin dir works as it is.
pub const ADAPTOR_FILE_GO: &str = "libGoPluginAdapter.so";
pub const BASE_FILE_GO: &str = "libGoPluginBase.so";

/// Why the plugin libraries are not available.
#[derive(Debug)]
pub struct LoadError(pub String);

impl std::fmt::Display for LoadError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

type RegisterV2 = unsafe extern "C" fn(IsValidToSendFun, SendPbFun, SendPbV2Fun, PluginCtlCmdFun);

/// The base's generation-1 exports the host calls.
#[derive(Clone, Copy)]
pub struct BaseApi {
    pub init_v2: unsafe extern "C" fn(GoString) -> GoInt,
    pub load_config: unsafe extern "C" fn(GoString, GoString, GoString, GoInt64, GoString) -> GoInt,
    pub hold_on: unsafe extern "C" fn(GoInt),
    pub resume: unsafe extern "C" fn(),
    pub process_log_group: unsafe extern "C" fn(GoString, GoSlice, GoString) -> GoInt,
    /// The base is Tailrace's own (it exports `TailraceBaseVersion`): it reports deliveries.
    pub reports_delivery: bool,
    /// `GetGoMetrics`, when the base has it (generation 2): its statistics for /metrics.
    pub get_go_metrics: Option<crate::plugin::go_metrics::GetGoMetricsFn>,
}

/// Every generation-1 export; iLogtail's core gives up on a base that lacks one, and so do we.
const GENERATION_1: &[&str] = &[
    "InitPluginBase",
    "InitPluginBaseV2",
    "LoadGlobalConfig",
    "LoadConfig",
    "UnloadConfig",
    "HoldOn",
    "Resume",
    "ProcessRawLog",
    "ProcessRawLogV2",
    "ProcessLog",
    "ProcessLogGroup",
    "CtlCmd",
    "GetContainerMeta",
];

/// The default plugin dir: next to the executable.
pub fn default_plugin_dir() -> PathBuf {
    std::env::current_exe()
        .ok()
        .and_then(|exe| exe.parent().map(Path::to_owned))
        .unwrap_or_else(|| PathBuf::from("."))
}

/// Loads both libraries from `dir`. They stay loaded for the life of the process.
pub fn load(dir: &Path) -> Result<BaseApi, LoadError> {
    let adaptor_path = find(dir, ADAPTOR_FILE, ADAPTOR_FILE_GO)?;
    let base_path = find(dir, BASE_FILE, BASE_FILE_GO)?;
    let adaptor = open(&adaptor_path)?;
    // SAFETY: the symbol's type is the adaptor ABI's (DESIGN §2); the library stays loaded.
    let version: unsafe extern "C" fn() -> c_int =
        unsafe { symbol(&adaptor, &adaptor_path, "PluginAdapterVersion")? };
    // SAFETY: a call without arguments into the adaptor.
    let got = unsafe { version() };
    if got != ADAPTER_VERSION {
        return Err(LoadError(format!(
            "{}: adapter version {got}, this host needs {ADAPTER_VERSION}",
            adaptor_path.display()
        )));
    }
    // SAFETY: as above.
    let register: RegisterV2 =
        unsafe { symbol(&adaptor, &adaptor_path, "RegisterLogtailCallBackV2")? };
    // SAFETY: the callbacks are this host's, with the adaptor ABI's signatures, and live for
    // the whole process.
    unsafe {
        register(
            Some(ffi::is_valid_to_send),
            Some(ffi::send_pb),
            Some(ffi::send_pb_v2),
            Some(ffi::ctl_cmd),
        )
    };
    std::mem::forget(adaptor);

    let base = open(&base_path)?;
    for name in GENERATION_1 {
        // SAFETY: only checks that the symbol exists; the pointer is not used.
        unsafe { symbol::<*const ()>(&base, &base_path, name)? };
    }
    // SAFETY: each symbol's type is the plugin-base ABI's (DESIGN §3); the library stays
    // loaded for the life of the process (it is leaked below).
    let api = unsafe {
        BaseApi {
            init_v2: symbol(&base, &base_path, "InitPluginBaseV2")?,
            load_config: symbol(&base, &base_path, "LoadConfig")?,
            hold_on: symbol(&base, &base_path, "HoldOn")?,
            resume: symbol(&base, &base_path, "Resume")?,
            process_log_group: symbol(&base, &base_path, "ProcessLogGroup")?,
            reports_delivery: tailrace_base_version(&base) >= 1,
            get_go_metrics: base
                .get::<crate::plugin::go_metrics::GetGoMetricsFn>(b"GetGoMetrics")
                .ok()
                .map(|f| *f),
        }
    };
    if !api.reports_delivery {
        tracing::info!(
            "{}: not Tailrace's plugin base; batches it accepts count as delivered",
            base_path.display()
        );
    }
    std::mem::forget(base);
    Ok(api)
}

/// `TailraceBaseVersion()` of a base that has it, else 0.
fn tailrace_base_version(base: &Library) -> GoInt {
    // SAFETY: the symbol, when present, is Tailrace's `GoInt TailraceBaseVersion(void)`.
    match unsafe { base.get::<unsafe extern "C" fn() -> GoInt>(b"TailraceBaseVersion") } {
        // SAFETY: a call without arguments into the base.
        Ok(f) => unsafe { f() },
        Err(_) => 0,
    }
}

/// `dir/name`, else `dir/go_name`.
fn find(dir: &Path, name: &str, go_name: &str) -> Result<PathBuf, LoadError> {
    [name, go_name]
        .iter()
        .map(|n| dir.join(n))
        .find(|p| p.exists())
        .ok_or_else(|| {
            LoadError(format!(
                "{} not found (nor {go_name})",
                dir.join(name).display()
            ))
        })
}

fn open(path: &Path) -> Result<Library, LoadError> {
    // SAFETY: loading a library runs its initialisers; these are the plugin libraries the user
    // pointed the host at, which is the point of the plugin dir.
    unsafe { Library::open(Some(path), RTLD_NOW | RTLD_GLOBAL) }
        .map_err(|e| LoadError(format!("{}: cannot load: {e}", path.display())))
}

/// # Safety
/// `T` must be the symbol's real type.
unsafe fn symbol<T: Copy>(lib: &Library, path: &Path, name: &str) -> Result<T, LoadError> {
    // SAFETY: forwarded from this function's contract.
    unsafe { lib.get::<T>(name.as_bytes()) }
        .map(|s| *s)
        .map_err(|_| LoadError(format!("{}: missing symbol {name}", path.display())))
}
