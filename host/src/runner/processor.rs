//! A processor runner: takes batches from the pipeline's process queue, runs the native
//! processors, and hands the result on: to the plugin base when the pipeline has an extended
//! part, else to every native flusher's sender queue (blocking when one is full: backpressure).

use std::thread::JoinHandle;

use tailrace::plugin::Processor;

use crate::plugin::BaseFeed;
use crate::queue::{QueueReceiver, QueueSender};

/// Where processed batches go.
pub enum Destination {
    /// The extended part of the pipeline, in the plugin base.
    Base(BaseFeed),
    /// The native flushers.
    Flushers(Vec<QueueSender>),
}

pub fn spawn(
    pipeline: &str,
    mut processors: Vec<Box<dyn Processor>>,
    queue: QueueReceiver,
    destination: Destination,
) -> JoinHandle<()> {
    std::thread::Builder::new()
        .name(format!("processor:{pipeline}"))
        .spawn(move || {
            for mut group in queue.iter() {
                for processor in processors.iter_mut() {
                    processor.process(&mut group);
                }
                if group.is_empty() {
                    continue;
                }
                match &destination {
                    Destination::Base(feed) => feed.send(group),
                    Destination::Flushers(queues) => {
                        group.acks.split(queues.len());
                        if let Some((last, others)) = queues.split_last() {
                            for q in others {
                                let _ = q.send(group.clone());
                            }
                            let _ = last.send(group);
                        }
                    }
                }
            }
        })
        .expect("spawn a processor thread")
}
