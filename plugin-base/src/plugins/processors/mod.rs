pub mod add_fields;
#[cfg(feature = "test-faults")]
pub mod test_panic;
