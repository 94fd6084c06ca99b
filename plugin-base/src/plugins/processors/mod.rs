//! Processors of the base alone: test faults. Every real processor lives in the core
//! (`tailrace::processor`), shared with the host.

#[cfg(feature = "test-faults")]
pub mod test_panic;
