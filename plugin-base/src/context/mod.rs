//! Services the runtime gives every plugin: a checkpoint store (kept under the data dir),
//! alarms (reported back to the host under iLogtail's `logtail_alarm` config) and statistics
//! (under `shennong_log_profile`, and through `GetGoMetrics`).

pub mod alarm;
pub mod checkpoint;
pub mod statistics;

pub use alarm::{AlarmLevel, Alarms};
pub use checkpoint::{CheckpointStore, Checkpoints};
pub use statistics::{PipelineStats, PluginStats};
