//! Links the plugin base to `libPluginAdapter.so` dynamically, so that its sends reach the
//! callbacks the host registered in the one loaded copy of the adaptor (DESIGN §2).
//!
//! Cargo cannot make one cdylib depend on another, so the base links against a link-time stand-in
//! built here from the adaptor's C declarations: it only gives the linker the symbol names and
//! the SONAME `libPluginAdapter.so`, which is what `DT_NEEDED` records. At run time the dynamic
//! linker resolves that SONAME to the real adaptor (already loaded by the host, or found through
//! the `$ORIGIN` runpath next to `libPluginBase.so`). The stand-in's *file* has another name, so
//! that nothing can ever load it in place of the real adaptor (cargo puts OUT_DIR on the library
//! path of the tests it runs).

use std::env;
use std::path::PathBuf;
use std::process::Command;

const LINK_STAND_IN: &str = r#"
/* Link-time stand-in for libPluginAdapter.so; never loaded by a host. */
typedef long long ll;
void RegisterLogtailCallBack(void* a, void* b, void* c) { (void)a; (void)b; (void)c; }
void RegisterLogtailCallBackV2(void* a, void* b, void* c, void* d) { (void)a; (void)b; (void)c; (void)d; }
int LogtailIsValidToSend(ll k) { (void)k; return -1; }
int LogtailSendPb(const char* a, int b, const char* c, int d, char* e, int f, int g)
{ (void)a; (void)b; (void)c; (void)d; (void)e; (void)f; (void)g; return -1; }
int LogtailSendPbV2(const char* a, int b, const char* c, int d, char* e, int f, int g, const char* h, int i)
{ (void)a; (void)b; (void)c; (void)d; (void)e; (void)f; (void)g; (void)h; (void)i; return -1; }
int LogtailCtlCmd(const char* a, int b, int c, const char* d, int e)
{ (void)a; (void)b; (void)c; (void)d; (void)e; return -1; }
int PluginAdapterVersion(void) { return 300; }
"#;

fn main() {
    let out = PathBuf::from(env::var("OUT_DIR").expect("OUT_DIR"));
    // An older build named the stand-in like the real library; never leave one around.
    let _ = std::fs::remove_file(out.join("libPluginAdapter.so"));
    let src = out.join("adaptor_link_stand_in.c");
    std::fs::write(&src, LINK_STAND_IN).expect("write stand-in source");
    let cc = env::var("CC").unwrap_or_else(|_| "cc".to_owned());
    let status = Command::new(&cc)
        .args([
            "-shared",
            "-fPIC",
            "-O0",
            "-Wl,-soname,libPluginAdapter.so",
            "-o",
        ])
        .arg(out.join("libtailrace_adaptor_link_stand_in.so"))
        .arg(&src)
        .status()
        .unwrap_or_else(|e| panic!("cannot run the C compiler `{cc}` (set CC): {e}"));
    assert!(
        status.success(),
        "`{cc}` failed to build the adaptor link stand-in"
    );

    println!("cargo:rustc-link-search=native={}", out.display());
    // The base calls LogtailSendPb & co., so `--as-needed` keeps this DT_NEEDED (of the SONAME,
    // libPluginAdapter.so); a test checks it with readelf.
    println!("cargo:rustc-link-lib=dylib=tailrace_adaptor_link_stand_in");
    println!("cargo:rustc-cdylib-link-arg=-Wl,-soname,libPluginBase.so");
    println!("cargo:rustc-cdylib-link-arg=-Wl,-rpath,$ORIGIN");
    println!("cargo:rerun-if-changed=build.rs");
    println!("cargo:rerun-if-env-changed=CC");
}
