//! Gives the library its SONAME, so the plugin base's `DT_NEEDED libPluginAdapter.so` and a
//! host's `dlopen` of it resolve to the one loaded copy.
fn main() {
    println!("cargo:rustc-cdylib-link-arg=-Wl,-soname,libPluginAdapter.so");
}
