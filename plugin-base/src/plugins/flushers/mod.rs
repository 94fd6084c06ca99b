pub mod kafka_v2;
pub mod http;
pub mod sls;
pub mod stdout;
