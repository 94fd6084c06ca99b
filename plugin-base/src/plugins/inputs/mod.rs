pub mod http_server;
pub mod metric_mock;
pub mod metric_system_v2;
pub mod syslog;
