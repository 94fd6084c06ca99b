pub mod sls;
pub mod stdout;
