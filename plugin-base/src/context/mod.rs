//! Services the runtime gives every plugin: a checkpoint store (kept under the data dir),
//! alarms (reported back to the host under iLogtail's `logtail_alarm` config) and statistics
//! (under `shennong_log_profile`, and through `GetGoMetrics`).

pub mod alarm;
pub mod statistics;

pub use alarm::{AlarmLevel, Alarms};
pub use statistics::{PipelineStats, PluginStats};
pub use tailrace::context::{CheckpointStore, Checkpoints};
