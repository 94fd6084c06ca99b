pub mod http;
pub mod sls;
pub mod stdout;
