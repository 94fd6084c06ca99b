//! A flusher runner: takes batches from the flusher's sender queue and delivers them, retrying
//! (with backoff) what was not delivered, and acknowledging what was (so that file checkpoints
//! advance). It ends when every sender of its queue is gone and the queue is empty, or, when
//! told to give up (shutdown with an unreachable destination), leaving what it could not
//! deliver undelivered: checkpoints did not pass it, so it is read again after a restart.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use tailrace::plugin::Flusher;

use crate::queue::QueueReceiver;

const MIN_BACKOFF: Duration = Duration::from_millis(50);
const MAX_BACKOFF: Duration = Duration::from_secs(5);

pub fn spawn(
    pipeline: &str,
    flusher_type: &str,
    mut flusher: Box<dyn Flusher>,
    queue: QueueReceiver,
    give_up: Arc<AtomicBool>,
) -> JoinHandle<()> {
    let name = format!("flusher:{pipeline}:{flusher_type}");
    let (pipeline, flusher_type) = (pipeline.to_owned(), flusher_type.to_owned());
    std::thread::Builder::new()
        .name(name)
        .spawn(move || {
            let mut pending = Vec::new();
            for group in queue.iter() {
                pending.push(group);
                pending.extend(queue.try_iter());
                let mut backoff = MIN_BACKOFF;
                loop {
                    if flusher.is_ready() {
                        let acks: Vec<_> = pending.iter().map(|g| g.acks.clone()).collect();
                        let before = pending.len();
                        let result = flusher.flush(&mut pending);
                        // A flusher delivers in order and leaves the rest: the first ones went.
                        for ack in &acks[..before - pending.len()] {
                            ack.delivered();
                        }
                        match result {
                            Ok(()) if pending.is_empty() => break,
                            Ok(()) => {}
                            Err(e) => tracing::warn!(
                                pipeline,
                                flusher = flusher_type,
                                "flush failed, will retry: {e}"
                            ),
                        }
                    }
                    if give_up.load(Ordering::Relaxed) {
                        tracing::warn!(
                            pipeline,
                            flusher = flusher_type,
                            batches = pending.len(),
                            "stopping with batches undelivered; they will be read again after a restart"
                        );
                        flusher.stop();
                        return;
                    }
                    std::thread::sleep(backoff);
                    backoff = (backoff * 2).min(MAX_BACKOFF);
                }
            }
            flusher.stop();
        })
        .expect("spawn a flusher thread")
}
