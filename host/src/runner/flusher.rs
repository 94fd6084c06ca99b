//! A flusher runner: takes batches from the flusher's sender queue and delivers them, retrying
//! (with backoff) what was not delivered. It ends when every sender of its queue is gone and
//! the queue is empty.

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
                    let ready = flusher.is_ready();
                    if ready {
                        match flusher.flush(&mut pending) {
                            Ok(()) if pending.is_empty() => break,
                            Ok(()) => {}
                            Err(e) => tracing::warn!(
                                pipeline,
                                flusher = flusher_type,
                                "flush failed, will retry: {e}"
                            ),
                        }
                    }
                    std::thread::sleep(backoff);
                    backoff = (backoff * 2).min(MAX_BACKOFF);
                }
            }
            flusher.stop();
        })
        .expect("spawn a flusher thread")
}
