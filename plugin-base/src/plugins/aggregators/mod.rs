//! Aggregators: iLogtail's, by name and options, on one shared packer (`pack`).

pub mod base;
pub mod content_value_group;
pub mod context;
pub mod default;
pub mod metadata_group;
pub mod pack;
