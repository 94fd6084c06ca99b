pub mod convert;
pub mod http;
pub mod kafka_v2;
pub mod sls;
pub mod stdout;
