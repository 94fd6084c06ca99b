//! `flusher_sls` inside the base means "send back to the host": each batch is serialized as a
//! LogGroup and handed to the host through the adaptor (`LogtailSendPb`, or `LogtailSendPbV2`
//! when the batch carries a shard hash) under the pipeline's real name (`P` for `P/1` or `P/2`),
//! as iLogtail ≥ 2.0 does. The host's queue state (`IsValidToSend`) is the backpressure signal.

use std::sync::Arc;

use serde_json::Value;
use tailrace::plugin::Flusher;
use tailrace::PipelineEventGroup;

use crate::host_link::HostLink;
use crate::runtime::registry::{PluginContext, PluginFactory};

/// Metadata key of a batch's shard hash (sent with SendPbV2).
pub const SHARD_HASH_META: &str = "__shardhash__";

pub const PLUGIN: (&str, PluginFactory) = ("flusher_sls", PluginFactory::Flusher(build));

fn build(ctx: &PluginContext, _detail: &Value) -> Result<Box<dyn Flusher>, String> {
    // The options of iLogtail's flusher_sls (Endpoint, ProjectName, ...) name the destination
    // the host already knows; inside the base there is nothing to configure.
    Ok(Box::new(SlsFlusher {
        host: ctx.host.clone(),
        config_name: ctx.real_name.clone(),
        logstore: ctx.logstore.clone(),
        logstore_key: ctx.logstore_key,
    }))
}

thread_local! {
    /// The buffer batches are serialized into, one per thread that runs flushers (not one per
    /// pipeline: a thousand idle pipelines keep none). A fresh buffer for each batch grew by
    /// reallocation, copying the batch several times over.
    static ENCODED: std::cell::RefCell<Vec<u8>> = const { std::cell::RefCell::new(Vec::new()) };
}

/// A buffer that grew past this (a rare huge batch) is let go after its batch.
const MAX_KEPT_BUFFER: usize = 4 * 1024 * 1024;

struct SlsFlusher {
    host: Arc<dyn HostLink>,
    config_name: String,
    logstore: String,
    logstore_key: i64,
}

impl Flusher for SlsFlusher {
    fn is_ready(&mut self) -> bool {
        self.host.is_valid_to_send(self.logstore_key)
    }

    fn flush(&mut self, groups: &mut Vec<PipelineEventGroup>) -> Result<(), String> {
        let mut sent = 0;
        let result = loop {
            let Some(group) = groups.get(sent) else {
                break Ok(());
            };
            if !group.is_empty() {
                let code = ENCODED.with_borrow_mut(|pb| {
                    pb.clear();
                    tailrace::proto::encode_group(group, pb);
                    let code = self.host.send_pb(
                        &self.config_name,
                        &self.logstore,
                        pb,
                        group.len(),
                        group.metadata(SHARD_HASH_META),
                    );
                    if pb.capacity() > MAX_KEPT_BUFFER {
                        *pb = Vec::new();
                    }
                    code
                });
                match code {
                    0 => {}
                    -1 => break Err("the host could not enqueue the data".to_owned()),
                    -2 => {
                        break Err(format!(
                            "the host does not know config {:?}",
                            self.config_name
                        ))
                    }
                    other => break Err(format!("the host returned {other}")),
                }
            }
            sent += 1;
        };
        groups.drain(..sent);
        result
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::runtime::registry::tests_support::{context_with, RecordingHost};
    use tailrace::{LogEvent, PipelineEvent};

    #[test]
    fn sends_under_the_real_name_and_gives_back_what_failed() {
        let host = Arc::new(RecordingHost::default());
        let ctx = context_with("cfg/1", host.clone());
        let mut flusher = build(&ctx, &serde_json::json!({})).unwrap();
        let mut group = PipelineEventGroup::default();
        let mut log = LogEvent::new(5, None);
        log.set_content("k", "v");
        group.events.push(PipelineEvent::Log(log));
        let mut batch = vec![group.clone()];
        flusher.flush(&mut batch).unwrap();
        assert!(batch.is_empty());
        let sent = host.sent();
        assert_eq!(sent[0].0, "cfg");
        assert_eq!(sent[0].1, "store");
        assert_eq!(sent[0].2.logs[0].contents[0].value, "v");

        host.set_code(-1);
        let mut batch = vec![group.clone(), group];
        assert!(flusher.flush(&mut batch).is_err());
        assert_eq!(batch.len(), 2);
    }
}
