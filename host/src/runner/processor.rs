//! The processor runner: a fixed pool of threads serving every pipeline's process queue. A
//! thread takes a batch (by priority, round robin, only where the outputs have room), runs the
//! pipeline's native processors on it, and hands it to every sender queue of the pipeline —
//! native flushers, or the feed of its part in the plugin base.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Instant;

use crate::monitor::{PipelineStats, ProcessorCounts};
use crate::queue::process::Job;
use crate::queue::sender::panic_message;
use crate::queue::ProcessQueues;

pub struct ProcessorRunner {
    queues: ProcessQueues,
    threads: Vec<JoinHandle<()>>,
}

impl ProcessorRunner {
    pub fn start(queues: ProcessQueues, threads: usize) -> ProcessorRunner {
        // Batches whose processing panicked (dropped undelivered: read again after a restart).
        let panics = Arc::new(AtomicU64::new(0));
        let threads = (0..threads.max(1))
            .map(|i| {
                let queues = queues.clone();
                let panics = panics.clone();
                std::thread::Builder::new()
                    .name(format!("processor-{i}"))
                    .spawn(move || {
                        while let Some(job) = queues.next_job() {
                            let id = job.id;
                            run(job, &panics);
                            queues.done(id);
                        }
                    })
                    .expect("spawn a processor thread")
            })
            .collect();
        ProcessorRunner { queues, threads }
    }
}

impl Drop for ProcessorRunner {
    fn drop(&mut self) {
        self.queues.shutdown();
        for thread in self.threads.drain(..) {
            let _ = thread.join();
        }
    }
}

fn run(job: Job, panics: &AtomicU64) {
    let Job {
        mut group, work, ..
    } = job;
    let stats = &work.stats;
    PipelineStats::add(&stats.events_in, group.len() as u64);
    PipelineStats::add(&stats.bytes_in, content_bytes(&group));
    let processed = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        let mut processors = work.processors.lock().unwrap_or_else(|e| e.into_inner());
        let mut batch = Vec::with_capacity(processors.len());
        for processor in processors.iter_mut() {
            let events_in = group.len() as u64;
            let began = Instant::now();
            processor.process(&mut group);
            batch.push(ProcessorCounts {
                events_in,
                events_out: group.len() as u64,
                process_nanos: began.elapsed().as_nanos() as u64,
                parse_failures: processor.parse_failures(),
            });
        }
        work.stats.note_batch(batch.into_iter());
        group
    }));
    let mut group = match processed {
        Ok(group) => group,
        Err(panic) => {
            panics.fetch_add(1, Ordering::Relaxed);
            PipelineStats::add(&stats.processor_panics, 1);
            tracing::error!(
                pipeline = work.pipeline,
                "a processor panicked: {}; the batch is not delivered (its lines are read again after a restart)",
                panic_message(&panic)
            );
            return;
        }
    };
    PipelineStats::add(&stats.events_out, group.len() as u64);
    // A group its processors emptied still goes on: its place in line is how its
    // acknowledgement comes in order (the sender queue does not hand it to the flusher).
    group.acks.split(work.outputs.len());
    if let Some((last, others)) = work.outputs.split_last() {
        for q in others {
            let _ = q.push(group.clone());
        }
        let _ = last.push(group);
    }
}

/// The bytes of a group's log contents, keys and values (what `bytes_in` counts).
fn content_bytes(group: &tailrace::PipelineEventGroup) -> u64 {
    group
        .events
        .iter()
        .map(|event| match event {
            tailrace::PipelineEvent::Log(log) => log
                .contents
                .iter()
                .map(|(k, v)| k.len() + v.len())
                .sum::<usize>() as u64,
            _ => 0,
        })
        .sum()
}
