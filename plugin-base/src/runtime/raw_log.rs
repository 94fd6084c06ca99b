//! What `ProcessRawLog` / `ProcessRawLogV2` feed a pipeline: iLogtail's Go base makes the raw
//! buffer one log with the buffer as `content`, and the pipeline's first processor cuts it. A
//! core that reads files in blocks (iLogtail 1.x's, with a split processor first) sends whole
//! blocks this way; `processor_split_log_regex` or `processor_split_log_string` then turn the
//! block into events, exactly as they do in the host (DESIGN §5, whole-block compatibility).

use bytes::Bytes;
use tailrace::{LogEvent, PipelineEvent, PipelineEventGroup};

use crate::runtime::clock;

/// A group of one log: `raw` as `content`, stamped now.
pub fn group(raw: &[u8]) -> PipelineEventGroup {
    let (secs, nanos) = clock::now();
    let mut event = LogEvent::new(secs, Some(nanos));
    event.set_content("content", Bytes::copy_from_slice(raw));
    let mut group = PipelineEventGroup::with_capacity(1);
    group.events.push(PipelineEvent::Log(event));
    group
}
