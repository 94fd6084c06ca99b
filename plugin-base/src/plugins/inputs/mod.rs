pub mod metric_mock;
pub mod syslog;
