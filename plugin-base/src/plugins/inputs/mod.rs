pub mod http_server;
pub mod metric_mock;
pub mod syslog;
