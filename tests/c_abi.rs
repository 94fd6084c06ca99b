//! The C ABI of the two libraries, checked from C and C++ as a host would use it.
//!
//! * `tests/c/adaptor_test.c` links `libPluginAdapter.so` and checks the
//!   callback registry (DESIGN.md §2).
//! * `tests/cpp/base_host_test.cpp` loads both libraries with dlopen/dlsym as
//!   iLogtail's C++ core does and drives the plugin base (DESIGN.md §3), one
//!   process per scenario.
//! * The generated headers in `include/` must compile as C99 and as C++17.
//!
//! The libraries are not built here: `make test` builds them first. Where to find them:
//! `TAILRACE_LIB_DIR` (default `target/release`) and, for the base built with the
//! `test-faults` feature, `TAILRACE_FAULTS_LIB_DIR` (default `target/faults/release`).
//! A missing library fails the test; it is never skipped.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Mutex, OnceLock};
use std::thread;
use std::time::{Duration, Instant};

/// A test program that runs longer than this is killed and fails.
const RUN_TIMEOUT: Duration = Duration::from_secs(60);

const ADAPTOR_LIB: &str = "libPluginAdapter.so";
const BASE_LIB: &str = "libPluginBase.so";

fn manifest_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn include_dir() -> PathBuf {
    manifest_dir().join("include")
}

/// Where the compiled test programs go: `<target>/tmp/abi-tests`.
fn work_dir() -> PathBuf {
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("abi-tests");
    std::fs::create_dir_all(&dir)
        .unwrap_or_else(|e| panic!("cannot create {}: {e}", dir.display()));
    dir
}

/// The directory named by `env_var`, or `default` under the manifest dir; it must
/// hold both libraries.
fn lib_dir(env_var: &str, default: &str, what: &str) -> PathBuf {
    let dir = match std::env::var_os(env_var) {
        Some(dir) => PathBuf::from(dir),
        None => manifest_dir().join(default),
    };
    for lib in [ADAPTOR_LIB, BASE_LIB] {
        if !dir.join(lib).is_file() {
            panic!(
                "{lib} ({what}) not found in {}.\n\
                 The C ABI tests need the built libraries: run `make test`, which builds them \
                 first, or set {env_var} to the directory that holds them.",
                dir.display()
            );
        }
    }
    dir.canonicalize().unwrap_or(dir)
}

fn release_lib_dir() -> PathBuf {
    lib_dir("TAILRACE_LIB_DIR", "target/release", "release build")
}

fn faults_lib_dir() -> PathBuf {
    lib_dir(
        "TAILRACE_FAULTS_LIB_DIR",
        "target/faults/release",
        "built with the `test-faults` feature",
    )
}

// ---------------------------------------------------------------------------
// Compiling
// ---------------------------------------------------------------------------

/// Runs a compiler command; Err carries the command line and its output.
fn compile(mut cmd: Command) -> Result<(), String> {
    let output = cmd
        .output()
        .map_err(|e| format!("cannot run {cmd:?}: {e}"))?;
    if output.status.success() {
        Ok(())
    } else {
        Err(format!(
            "compilation failed ({}): {cmd:?}\n{}{}",
            output.status,
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        ))
    }
}

/// Compiles into `name` in the work dir through a temporary file and a rename,
/// so that concurrent test processes never run a half-written binary.
fn build_program(name: &str, make_cmd: impl FnOnce(&Path) -> Command) -> Result<PathBuf, String> {
    let dir = work_dir();
    let tmp = dir.join(format!("{name}.{}.tmp", std::process::id()));
    let out = dir.join(name);
    compile(make_cmd(&tmp))?;
    std::fs::rename(&tmp, &out).map_err(|e| format!("rename {}: {e}", tmp.display()))?;
    Ok(out)
}

/// `tests/c/adaptor_test.c`, linked against the adaptor in `lib_dir`.
fn adaptor_test_program(lib_dir: &Path) -> &'static Path {
    static PROGRAM: OnceLock<Result<PathBuf, String>> = OnceLock::new();
    let built = PROGRAM.get_or_init(|| {
        build_program("adaptor_test", |out| {
            let mut cmd = Command::new("cc");
            cmd.args(["-std=c11", "-Wall", "-Werror", "-g"])
                .arg("-I")
                .arg(include_dir())
                .arg(manifest_dir().join("tests/c/adaptor_test.c"))
                .arg("-o")
                .arg(out)
                .arg(format!("-L{}", lib_dir.display()))
                .arg("-lPluginAdapter")
                .arg(format!("-Wl,-rpath,{}", lib_dir.display()))
                .arg("-lpthread");
            cmd
        })
    });
    built.as_deref().unwrap_or_else(|e| panic!("{e}"))
}

/// `tests/cpp/base_host_test.cpp`; it dlopens the libraries, so one binary
/// serves every library directory.
fn base_host_test_program() -> &'static Path {
    static PROGRAM: OnceLock<Result<PathBuf, String>> = OnceLock::new();
    let built = PROGRAM.get_or_init(|| {
        build_program("base_host_test", |out| {
            let mut cmd = Command::new("c++");
            cmd.args(["-std=c++17", "-Wall", "-Werror", "-g"])
                .arg("-I")
                .arg(include_dir())
                .arg(manifest_dir().join("tests/cpp/base_host_test.cpp"))
                .arg("-o")
                .arg(out)
                .args(["-ldl", "-lpthread"]);
            cmd
        })
    });
    built.as_deref().unwrap_or_else(|e| panic!("{e}"))
}

// ---------------------------------------------------------------------------
// Running
// ---------------------------------------------------------------------------

struct RunOutput {
    /// None when the program was killed after RUN_TIMEOUT.
    status: Option<ExitStatus>,
    elapsed: Duration,
    stdout: String,
    stderr: String,
}

fn drain(mut pipe: impl Read + Send + 'static) -> thread::JoinHandle<String> {
    thread::spawn(move || {
        let mut bytes = Vec::new();
        let _ = pipe.read_to_end(&mut bytes);
        String::from_utf8_lossy(&bytes).into_owned()
    })
}

fn wait_with_timeout(child: &mut Child, timeout: Duration) -> Option<ExitStatus> {
    let deadline = Instant::now() + timeout;
    loop {
        match child.try_wait() {
            Ok(Some(status)) => return Some(status),
            Ok(None) if Instant::now() < deadline => thread::sleep(Duration::from_millis(50)),
            _ => {
                let _ = child.kill();
                let _ = child.wait();
                return None;
            }
        }
    }
}

fn run(program: &Path, args: &[&str]) -> RunOutput {
    let start = Instant::now();
    let mut child = Command::new(program)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .env("RUST_BACKTRACE", "1")
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run {}: {e}", program.display()));
    let stdout = drain(child.stdout.take().expect("piped stdout"));
    let stderr = drain(child.stderr.take().expect("piped stderr"));
    let status = wait_with_timeout(&mut child, RUN_TIMEOUT);
    RunOutput {
        status,
        elapsed: start.elapsed(),
        // A killed program's grandchildren could hold the pipes open; they have none.
        stdout: stdout.join().unwrap_or_default(),
        stderr: stderr.join().unwrap_or_default(),
    }
}

/// Runs the program and fails the test unless it exits 0, showing its output.
fn run_and_assert_success(label: &str, program: &Path, args: &[&str]) {
    let out = run(program, args);
    let verdict = match out.status {
        Some(status) if status.success() => None,
        Some(status) => Some(format!("exited with {status}")),
        None => Some(format!("timed out: killed after {RUN_TIMEOUT:?}")),
    };
    let report = format!(
        "{label}: {} {} ({:.1} s)\n--- stdout ---\n{}\n--- stderr ---\n{}",
        program.display(),
        args.join(" "),
        out.elapsed.as_secs_f64(),
        out.stdout,
        out.stderr
    );
    match verdict {
        None => println!("{report}"),
        Some(verdict) => panic!("{label} {verdict}\n{report}"),
    }
}

/// The scenarios run one at a time: their timing checks (HoldOn within 5 s)
/// should not compete with each other for a small machine's cores.
fn run_base_scenario(lib_dir: &Path, scenario: &str) {
    run_base_scenarios(lib_dir, &[scenario], None);
}

static SERIAL: Mutex<()> = Mutex::new(());

/// Runs `scenarios` one after another, each in a process of its own; with `shared_dir`, each
/// gets that dir for the base's conf/log/data dirs, as a restarted host would.
fn run_base_scenarios(lib_dir: &Path, scenarios: &[&str], shared_dir: Option<&Path>) {
    let program = base_host_test_program();
    let _guard = SERIAL
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    let dir = lib_dir.to_string_lossy();
    let shared = shared_dir.map(|d| d.to_string_lossy().into_owned());
    for scenario in scenarios {
        let mut args = vec![dir.as_ref(), *scenario];
        args.extend(shared.as_deref());
        run_and_assert_success(&format!("base_host_test {scenario}"), program, &args);
    }
}

// ---------------------------------------------------------------------------
// Tests
// ---------------------------------------------------------------------------

#[test]
fn adaptor_c_program() {
    let lib_dir = release_lib_dir();
    run_and_assert_success("adaptor_test", adaptor_test_program(&lib_dir), &[]);
}

#[test]
fn base_host_mock_pipeline_and_reload() {
    run_base_scenario(&release_lib_dir(), "mock");
}

/// The plugin runtime's promises through the real ABI, across a restart: 100 reloads under a
/// 1 ms metric_mock stream lose and repeat no Index; statistics and alarms arrive under the
/// reserved config names and in GetGoMetrics; a batch the host could not take at HoldOn(1) is
/// delivered after the next start, and metric_mock continues from its checkpoint.
#[test]
fn base_host_runtime_promises_across_a_restart() {
    let shared = work_dir().join(format!("restart-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&shared);
    run_base_scenarios(
        &release_lib_dir(),
        &["restart-1", "restart-2"],
        Some(&shared),
    );
    let _ = std::fs::remove_dir_all(&shared);
}

#[test]
fn base_host_feed_pipeline() {
    run_base_scenario(&release_lib_dir(), "feed");
}

#[test]
fn base_host_bad_input_is_an_error_not_a_crash() {
    run_base_scenario(&release_lib_dir(), "bad");
}

#[test]
fn base_host_holdon_exit_under_backpressure() {
    run_base_scenario(&release_lib_dir(), "holdon-exit-backpressure");
}

#[test]
fn base_host_plugin_panics_are_contained() {
    run_base_scenario(&faults_lib_dir(), "panic");
}

/// Both headers in one translation unit, with every declaration checked against
/// the contract's types (DESIGN §2, §3): a mismatch is a compile error in C++
/// and an incompatible-pointer warning (an error with -Werror) in C.
const HEADER_CHECK_SOURCE: &str = r#"
#include "LogtailPluginAdapter.h"
#include "LogtailPluginBase.h"

#include <stddef.h>

/* 64-bit layout of the Go-compatible structs. */
typedef char check_gostring_size[sizeof(GoString) == 16 ? 1 : -1];
typedef char check_gostring_n[offsetof(GoString, n) == 8 ? 1 : -1];
typedef char check_goslice_size[sizeof(GoSlice) == 24 ? 1 : -1];
typedef char check_goslice_len[offsetof(GoSlice, len) == 8 ? 1 : -1];
typedef char check_goslice_cap[offsetof(GoSlice, cap) == 16 ? 1 : -1];
typedef char check_goint[sizeof(GoInt) == 8 && sizeof(GoInt64) == 8 ? 1 : -1];

static int cb_is_valid(long long key) { return (int)key; }
static int cb_send_pb(const char* c, int cs, const char* l, int ls, char* pb, int pbs, int n) {
    (void)c; (void)cs; (void)l; (void)ls; (void)pb; (void)pbs; (void)n;
    return 0;
}
static int cb_send_pb_v2(const char* c, int cs, const char* l, int ls, char* pb, int pbs, int n,
                         const char* sh, int shs) {
    (void)c; (void)cs; (void)l; (void)ls; (void)pb; (void)pbs; (void)n; (void)sh; (void)shs;
    return 0;
}
static int cb_ctl(const char* c, int cs, int opt, const char* p, int pl) {
    (void)c; (void)cs; (void)opt; (void)p; (void)pl;
    return 0;
}

int main(void) {
    /* Adaptor: callback typedefs and functions. */
    IsValidToSendFun is_valid = cb_is_valid;
    SendPbFun send_pb = cb_send_pb;
    SendPbV2Fun send_pb_v2 = cb_send_pb_v2;
    PluginCtlCmdFun ctl = cb_ctl;
    void (*reg)(IsValidToSendFun, SendPbFun, PluginCtlCmdFun) = RegisterLogtailCallBack;
    void (*reg_v2)(IsValidToSendFun, SendPbFun, SendPbV2Fun, PluginCtlCmdFun) =
        RegisterLogtailCallBackV2;
    int (*fwd_is_valid)(long long) = LogtailIsValidToSend;
    int (*fwd_send_pb)(const char*, int, const char*, int, char*, int, int) = LogtailSendPb;
    int (*fwd_send_pb_v2)(const char*, int, const char*, int, char*, int, int, const char*, int) =
        LogtailSendPbV2;
    int (*fwd_ctl)(const char*, int, int, const char*, int) = LogtailCtlCmd;
    int (*version)(void) = PluginAdapterVersion;

    /* Base, generation 1. */
    GoInt (*init)(void) = InitPluginBase;
    GoInt (*init_v2)(GoString) = InitPluginBaseV2;
    GoInt (*load_global)(GoString) = LoadGlobalConfig;
    GoInt (*load)(GoString, GoString, GoString, GoInt64, GoString) = LoadConfig;
    GoInt (*unload)(GoString, GoString, GoString) = UnloadConfig;
    void (*hold_on)(GoInt) = HoldOn;
    void (*resume)(void) = Resume;
    GoInt (*raw)(GoString, GoSlice, GoString, GoString) = ProcessRawLog;
    GoInt (*raw_v2)(GoString, GoSlice, GoString, GoString, GoSlice) = ProcessRawLogV2;
    GoInt (*process_log)(GoString, GoSlice, GoString, GoString, GoSlice) = ProcessLog;
    GoInt (*group)(GoString, GoSlice, GoString) = ProcessLogGroup;
    void (*ctl_cmd)(GoString, GoInt, GoString) = CtlCmd;
    void* (*meta)(GoString) = GetContainerMeta;

    /* Base, generation 2. */
    GoInt (*load_pipeline)(GoString, GoString, GoString, GoInt64, GoString) = LoadPipeline;
    GoInt (*unload_pipeline)(GoString) = UnloadPipeline;
    void (*start)(GoString) = Start;
    void (*stop)(GoString, GoInt) = Stop;
    void (*stop_all)(GoInt) = StopAllPipelines;
    void (*stop_builtin)(void) = StopBuiltInModules;

    GoString s = {"x", 1};
    GoSlice b = {NULL, 0, 0};

    (void)is_valid; (void)send_pb; (void)send_pb_v2; (void)ctl; (void)reg; (void)reg_v2;
    (void)fwd_is_valid; (void)fwd_send_pb; (void)fwd_send_pb_v2; (void)fwd_ctl; (void)version;
    (void)init; (void)init_v2; (void)load_global; (void)load; (void)unload; (void)hold_on;
    (void)resume; (void)raw; (void)raw_v2; (void)process_log; (void)group; (void)ctl_cmd; (void)meta;
    (void)load_pipeline; (void)unload_pipeline; (void)start; (void)stop; (void)stop_all;
    (void)stop_builtin; (void)GetGoMetrics; (void)s; (void)b;
    return 0;
}
"#;

fn check_headers_compile(compiler: &str, file_name: &str, flags: &[&str]) {
    for header in ["LogtailPluginAdapter.h", "LogtailPluginBase.h"] {
        assert!(
            include_dir().join(header).is_file(),
            "include/{header} is missing: the build script generates it (cargo build, `make headers`)"
        );
    }
    let dir = work_dir();
    let source = dir.join(file_name);
    std::fs::write(&source, HEADER_CHECK_SOURCE)
        .unwrap_or_else(|e| panic!("write {}: {e}", source.display()));
    let object = dir.join(format!("{file_name}.o"));
    let mut cmd = Command::new(compiler);
    cmd.args(flags)
        .arg("-I")
        .arg(include_dir())
        .arg("-c")
        .arg(&source)
        .arg("-o")
        .arg(&object);
    if let Err(e) = compile(cmd) {
        panic!("the generated headers do not compile with {compiler} {flags:?}:\n{e}");
    }
}

#[test]
fn headers_compile_as_cpp17() {
    check_headers_compile(
        "c++",
        "headers_check_cpp.cpp",
        &["-std=c++17", "-Wall", "-Werror", "-pedantic"],
    );
}

#[test]
fn headers_compile_as_c99() {
    check_headers_compile(
        "cc",
        "headers_check_c99.c",
        &["-std=c99", "-Wall", "-Werror", "-pedantic"],
    );
}

/// DESIGN §2: the base reaches the adaptor's symbols in the one loaded copy, through a
/// `DT_NEEDED` entry and a `$ORIGIN` runpath; both libraries carry a SONAME.
#[test]
fn libraries_link_dynamically_with_sonames() {
    let dir = release_lib_dir();
    let dynamic = |lib: &str| {
        let out = Command::new("readelf")
            .arg("-d")
            .arg(dir.join(lib))
            .output()
            .expect("run readelf (binutils)");
        assert!(out.status.success(), "readelf -d {lib} failed");
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let base = dynamic("libPluginBase.so");
    assert!(
        base.contains("(NEEDED)") && base.contains("[libPluginAdapter.so]"),
        "{base}"
    );
    assert!(base.contains("[$ORIGIN]"), "no $ORIGIN runpath:\n{base}");
    assert!(
        base.contains("Library soname: [libPluginBase.so]"),
        "{base}"
    );
    let adaptor = dynamic("libPluginAdapter.so");
    assert!(
        adaptor.contains("Library soname: [libPluginAdapter.so]"),
        "{adaptor}"
    );
}
