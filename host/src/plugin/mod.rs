//! The two plugin libraries: loading them (`loader`), the callbacks the host registers
//! (`ffi`), where the base's data goes (`router`), and the threads that call into the base
//! (`base`), so that a base that hangs never stalls native collection.

pub mod base;
pub mod ffi;
pub mod loader;
pub mod router;

pub use base::BaseClient;
