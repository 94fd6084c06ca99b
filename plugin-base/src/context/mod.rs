//! Services the runtime gives every plugin: alarms (reported back to the host under iLogtail's
//! `logtail_alarm` config) and statistics (under `shennong_log_profile`).

pub mod alarm;
pub mod statistics;

pub use alarm::{AlarmLevel, Alarms};
pub use statistics::PipelineStats;
