//! The processor runner: a fixed pool of threads serving every pipeline's process queue. A
//! thread takes a batch (by priority, round robin, only where the outputs have room), runs the
//! pipeline's native processors on it, and hands it to every sender queue of the pipeline —
//! native flushers, or the feed of its part in the plugin base.

use std::cell::Cell;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Instant;

use bytes::Bytes;
use tailrace::{EncodedLogs, PipelineEventGroup};

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
    // When every output takes LogGroups, the last processor may write them itself.
    let serialize_in_last =
        !work.outputs.is_empty() && work.outputs.iter().all(|q| q.takes_encoded());
    let processed = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        let mut processors = work.processors.lock().unwrap_or_else(|e| e.into_inner());
        // Lines read from a file go as they are only to a processor that writes them into a
        // LogGroup itself (see `tailrace::Lines`); anything else sees them as events.
        let lines_taken = serialize_in_last && processors.len() == 1 && processors[0].takes_lines();
        if !lines_taken {
            group.make_events();
        }
        let mut batch = Vec::with_capacity(processors.len());
        let last = processors.len().wrapping_sub(1);
        for (i, processor) in processors.iter_mut().enumerate() {
            let events_in = group.len() as u64;
            let began = Instant::now();
            if i == last && serialize_in_last && group.encoded.is_none() {
                process_encoded(processor.as_mut(), &mut group);
            } else {
                processor.process(&mut group);
            }
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
    let encoded = work.outputs.iter().filter(|q| q.takes_encoded()).count();
    if encoded == 0 || group.events.is_empty() {
        if let Some((last, others)) = work.outputs.split_last() {
            for q in others {
                let _ = q.push(group.clone());
            }
            let _ = last.push(group);
        }
        return;
    }
    // Serialized here, by the thread that built the events, which then frees them: only the
    // bytes cross to the flusher threads (see `tailrace::EncodedLogs`).
    let as_log_group = encode(&group);
    let mut for_events = work.outputs.len() - encoded;
    for q in &work.outputs {
        if q.takes_encoded() {
            let _ = q.push(as_log_group.clone());
        } else {
            for_events -= 1;
            let _ = q.push(if for_events == 0 {
                std::mem::take(&mut group)
            } else {
                group.clone()
            });
        }
    }
}

/// Runs `processor` on `group` through `Processor::process_encoded`, when it has that path:
/// the logs it leaves are then written as a LogGroup by the processor itself, and `group` keeps
/// them only in that form (as [`encode`] leaves it). Otherwise, `Processor::process`.
fn process_encoded(
    processor: &mut dyn tailrace::plugin::Processor,
    group: &mut PipelineEventGroup,
) {
    let mut buf = Vec::with_capacity(reservation(group.len()));
    match processor.process_encoded(group, &mut buf) {
        None => {
            group.make_events();
            processor.process(group)
        }
        // Emptied: goes on as an empty group, as any group its processors emptied.
        Some(0) => {}
        Some(events) => {
            tailrace::proto::encode_group_tail(group, &mut buf);
            PER_EVENT.set(buf.len().div_ceil(events));
            group.source_buffer = None;
            group.encoded = Some(EncodedLogs {
                log_group: Bytes::from(buf),
                events,
            });
        }
    }
}

/// `group` as a serialized LogGroup with no events: its tags, metadata and acknowledgements,
/// without its events and their buffer.
fn encode(group: &PipelineEventGroup) -> PipelineEventGroup {
    let events = group.events.len();
    let mut buf = Vec::with_capacity(reservation(events));
    tailrace::proto::encode_group(group, &mut buf);
    PER_EVENT.set(buf.len().div_ceil(events.max(1)));
    PipelineEventGroup {
        events: Vec::new(),
        tags: group.tags.clone(),
        metadata: group.metadata.clone(),
        source_buffer: None,
        acks: group.acks.clone(),
        lines: None,
        encoded: Some(EncodedLogs {
            log_group: Bytes::from(buf),
            events: group.len(),
        }),
    }
}

thread_local! {
    /// Bytes per event of the last batch this thread serialized. The next buffer is sized from
    /// it, so that the batch is written once, into the buffer that is handed over, with no copy
    /// out of a scratch buffer.
    static PER_EVENT: Cell<usize> = const { Cell::new(256) };
}

/// The buffer to reserve for a batch of `events`. Capped: after a batch with one huge line, the
/// next batch must not reserve that size for each of its events (beyond the cap, the buffer
/// grows as it is written).
fn reservation(events: usize) -> usize {
    let guess = events.saturating_mul(PER_EVENT.get()).min(MAX_GUESS);
    guess + guess / 8 + 256
}

/// The most a serialization buffer reserves ahead.
const MAX_GUESS: usize = 8 << 20;

/// The bytes of a group's log contents, keys and values (what `bytes_in` counts).
fn content_bytes(group: &tailrace::PipelineEventGroup) -> u64 {
    group.lines.as_ref().map_or(0, |l| l.content_bytes() as u64)
        + group
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
            .sum::<u64>()
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};
    use std::time::Instant;

    use tailrace::plugin::Flusher;
    use tailrace::{DeliveryHook, LogEvent, PipelineEvent};

    use super::*;
    use crate::queue::process::Work;
    use crate::queue::SenderQueue;

    /// Keeps what it is given; takes serialized LogGroups or events.
    struct Keep {
        encoded: bool,
        got: Arc<Mutex<Vec<PipelineEventGroup>>>,
    }

    impl Flusher for Keep {
        fn flush(&mut self, groups: &mut Vec<PipelineEventGroup>) -> Result<(), String> {
            self.got.lock().unwrap().append(groups);
            Ok(())
        }
        fn takes_encoded(&self) -> bool {
            self.encoded
        }
    }

    struct Count(AtomicU64);
    impl DeliveryHook for Count {
        fn delivered(&self) {
            self.0.fetch_add(1, Ordering::SeqCst);
        }
    }

    fn output(encoded: bool) -> (Arc<SenderQueue>, Arc<Mutex<Vec<PipelineEventGroup>>>) {
        let got = Arc::new(Mutex::new(Vec::new()));
        let keep = Keep {
            encoded,
            got: got.clone(),
        };
        (SenderQueue::new("p", "keep", Box::new(keep), 8), got)
    }

    fn flush_all(q: &SenderQueue) {
        let batch = q.begin(Instant::now()).expect("a batch");
        q.flush(batch);
    }

    #[test]
    fn a_flusher_of_log_groups_gets_the_batch_serialized_and_the_others_its_events() {
        let (bytes_q, bytes_got) = output(true);
        let (events_q, events_got) = output(false);
        let work = Arc::new(Work {
            pipeline: "p".into(),
            stats: Arc::default(),
            processors: Mutex::new(Vec::new()),
            outputs: vec![bytes_q.clone(), events_q.clone()],
        });
        let mut group = PipelineEventGroup::default();
        group.set_tag("__hostname__", "h1");
        group.set_metadata(tailrace::proto::meta::TOPIC, "t");
        for i in 0..3u32 {
            let mut log = LogEvent::new(1_700_000_000 + i, Some(i));
            log.set_content("n", i.to_string());
            group.events.push(PipelineEvent::Log(log));
        }
        // The serializer every flusher uses (byte-identical to prost's, tested in the core).
        let mut expected = Vec::new();
        tailrace::proto::encode_group(&group, &mut expected);
        let count = Arc::new(Count(AtomicU64::new(0)));
        group.acks.push(count.clone());
        let panics = AtomicU64::new(0);
        run(
            Job {
                id: 1,
                group: group.clone(),
                work,
            },
            &panics,
        );

        flush_all(&bytes_q);
        let got = std::mem::take(&mut *bytes_got.lock().unwrap());
        assert_eq!(got.len(), 1);
        assert!(
            got[0].events.is_empty(),
            "the events stayed in the processor thread"
        );
        assert_eq!(got[0].len(), 3, "the event count goes with the bytes");
        let encoded = got[0].encoded.as_ref().expect("serialized");
        assert_eq!(encoded.log_group.as_ref(), expected.as_slice());
        let mut buf = Vec::new();
        assert_eq!(
            tailrace::proto::log_group_bytes(&got[0], &mut buf),
            expected.as_slice()
        );
        assert_eq!(bytes_q.flushed_events.load(Ordering::SeqCst), 3);
        assert_eq!(count.0.load(Ordering::SeqCst), 0, "one of two deliveries");

        flush_all(&events_q);
        let got = std::mem::take(&mut *events_got.lock().unwrap());
        assert_eq!(got.len(), 1);
        assert_eq!(got[0].events, group.events);
        assert!(got[0].encoded.is_none());
        assert_eq!(
            count.0.load(Ordering::SeqCst),
            1,
            "acknowledged once, after both"
        );
    }

    /// The parser of [`csv_work`].
    fn csv_parser() -> Box<dyn tailrace::plugin::Processor> {
        let options = serde_json::json!({"Separator": ",", "Keys": ["a", "b"]});
        tailrace::processor::build(
            "processor_parse_delimiter_native",
            options.as_object().unwrap(),
        )
        .unwrap()
    }

    /// A pipeline parsing CSV lines into `outputs`, and the batch of lines it is given.
    fn csv_work(outputs: Vec<Arc<SenderQueue>>) -> (Arc<Work>, PipelineEventGroup) {
        let parse = csv_parser();
        let work = Arc::new(Work {
            pipeline: "p".into(),
            stats: Arc::default(),
            processors: Mutex::new(vec![parse]),
            outputs,
        });
        let mut group = PipelineEventGroup::default();
        group.set_tag("__hostname__", "h1");
        group.set_metadata(tailrace::proto::meta::SOURCE, "10.0.0.1");
        for line in ["1,x", "2,\"y,z\"", "4,\"unclosed", "3,w,extra"] {
            let mut log = LogEvent::new(1_700_000_000, None);
            log.set_content("content", line);
            group.events.push(PipelineEvent::Log(log));
        }
        (work, group)
    }

    #[test]
    fn a_last_parser_whose_outputs_all_take_log_groups_writes_them_itself() {
        let (q, got) = output(true);
        let (work, group) = csv_work(vec![q.clone()]);
        // What the parser's events serialize to: the bytes either way.
        let mut parsed = group.clone();
        csv_parser().process(&mut parsed);
        assert_eq!(parsed.events.len(), 3, "the unclosed quote is dropped");
        let mut expected = Vec::new();
        tailrace::proto::encode_group(&parsed, &mut expected);

        let panics = AtomicU64::new(0);
        run(
            Job {
                id: 1,
                group,
                work: work.clone(),
            },
            &panics,
        );
        flush_all(&q);
        let got = std::mem::take(&mut *got.lock().unwrap());
        assert_eq!(got.len(), 1);
        assert!(got[0].events.is_empty());
        assert_eq!(got[0].len(), 3);
        let encoded = got[0].encoded.as_ref().expect("serialized");
        assert_eq!(encoded.log_group.as_ref(), expected.as_slice());
        assert_eq!(work.stats.events_in.load(Ordering::SeqCst), 4);
        assert_eq!(work.stats.events_out.load(Ordering::SeqCst), 3);
    }

    #[test]
    fn a_last_parser_with_an_output_of_events_parses_into_events() {
        let (bytes_q, bytes_got) = output(true);
        let (events_q, events_got) = output(false);
        let (work, group) = csv_work(vec![bytes_q.clone(), events_q.clone()]);
        let panics = AtomicU64::new(0);
        run(Job { id: 1, group, work }, &panics);
        flush_all(&events_q);
        let events = std::mem::take(&mut *events_got.lock().unwrap());
        assert_eq!(events[0].events.len(), 3);
        let mut expected = Vec::new();
        tailrace::proto::encode_group(&events[0], &mut expected);
        flush_all(&bytes_q);
        let bytes = std::mem::take(&mut *bytes_got.lock().unwrap());
        let encoded = bytes[0].encoded.as_ref().expect("serialized");
        assert_eq!(encoded.log_group.as_ref(), expected.as_slice());
    }

    /// `group`'s lines (its logs' `content`) as the file reader hands them to a parser that
    /// takes them: `tailrace::Lines`, no events.
    fn as_lines(group: &PipelineEventGroup) -> PipelineEventGroup {
        let mut block = Vec::new();
        let mut ranges = Vec::new();
        for log in group.clone().logs_mut() {
            let line = log.content(b"content").unwrap();
            ranges.push(block.len()..block.len() + line.len());
            block.extend_from_slice(line);
            block.push(b'\n');
        }
        let mut lines = PipelineEventGroup {
            tags: group.tags.clone(),
            metadata: group.metadata.clone(),
            ..Default::default()
        };
        lines.lines = Some(Box::new(tailrace::Lines {
            block: Bytes::from(block),
            offset: 0,
            key: tailrace::processor::field_names::field_name("content"),
            time: 1_700_000_000,
            time_ns: None,
            ranges,
        }));
        lines
    }

    #[test]
    fn lines_go_as_they_are_only_to_a_last_parser_that_writes_log_groups_from_them() {
        let (q, got) = output(true);
        let (work, group) = csv_work(vec![q.clone()]);
        let (from_events, _) = output(true);
        let (events_work, _) = csv_work(vec![from_events.clone()]);
        let panics = AtomicU64::new(0);
        run(
            Job {
                id: 1,
                group: group.clone(),
                work: events_work.clone(),
            },
            &panics,
        );
        flush_all(&from_events);
        let lines = as_lines(&group);
        assert!(work.processors.lock().unwrap()[0].takes_lines());
        run(
            Job {
                id: 2,
                group: lines.clone(),
                work: work.clone(),
            },
            &panics,
        );
        flush_all(&q);
        let got = std::mem::take(&mut *got.lock().unwrap());
        assert_eq!(got[0].len(), 3);
        let mut expected = Vec::new();
        let mut parsed = lines.clone();
        parsed.make_events();
        csv_parser().process(&mut parsed);
        tailrace::proto::encode_group(&parsed, &mut expected);
        let encoded = got[0].encoded.as_ref().expect("serialized");
        assert_eq!(encoded.log_group.as_ref(), expected.as_slice());
        // Counted as the same lines as events are.
        for counter in ["events_in", "events_out", "bytes_in"] {
            let value = |w: &Work| match counter {
                "events_in" => w.stats.events_in.load(Ordering::SeqCst),
                "events_out" => w.stats.events_out.load(Ordering::SeqCst),
                _ => w.stats.bytes_in.load(Ordering::SeqCst),
            };
            assert_eq!(value(&work), value(&events_work), "{counter}");
        }

        // An output of events, or no processor: the lines are made into events first.
        let (bytes_q, _) = output(true);
        let (events_q, events_got) = output(false);
        let (work, _) = csv_work(vec![bytes_q, events_q.clone()]);
        run(
            Job {
                id: 3,
                group: lines.clone(),
                work,
            },
            &panics,
        );
        flush_all(&events_q);
        let events = std::mem::take(&mut *events_got.lock().unwrap());
        assert!(events[0].lines.is_none());
        assert_eq!(events[0].events, parsed.events);
        let (events_q, events_got) = output(false);
        let work = Arc::new(Work {
            pipeline: "p".into(),
            stats: Arc::default(),
            processors: Mutex::new(Vec::new()),
            outputs: vec![events_q.clone()],
        });
        run(
            Job {
                id: 4,
                group: lines.clone(),
                work,
            },
            &panics,
        );
        flush_all(&events_q);
        let events = std::mem::take(&mut *events_got.lock().unwrap());
        let mut made = lines;
        made.make_events();
        assert_eq!(events[0].events, made.events);
        assert_eq!(events[0].events.len(), 4);
        assert_eq!(panics.load(Ordering::SeqCst), 0);
    }

    #[test]
    fn a_batch_after_one_with_a_huge_line_reserves_a_bounded_buffer() {
        let batch = |lines: usize, len: usize| {
            let mut group = PipelineEventGroup::default();
            for _ in 0..lines {
                let mut log = LogEvent::new(1, None);
                log.set_content("content", "x".repeat(len));
                group.events.push(PipelineEvent::Log(log));
            }
            group
        };
        encode(&batch(1, 20 << 20));
        assert_eq!(reservation(4096), MAX_GUESS + MAX_GUESS / 8 + 256);
        let next = encode(&batch(4096, 10));
        assert_eq!(next.len(), 4096);
        // Then the estimate follows the small lines again.
        assert!(reservation(4096) < 4096 * 32, "{}", reservation(4096));
    }

    #[test]
    fn a_batch_its_processors_emptied_is_not_serialized() {
        let (q, got) = output(true);
        let work = Arc::new(Work {
            pipeline: "p".into(),
            stats: Arc::default(),
            processors: Mutex::new(Vec::new()),
            outputs: vec![q.clone()],
        });
        let panics = AtomicU64::new(0);
        run(
            Job {
                id: 1,
                group: PipelineEventGroup::default(),
                work,
            },
            &panics,
        );
        let batch = q.begin(Instant::now()).expect("a batch");
        assert!(batch.groups[0].encoded.is_none());
        q.flush(batch);
        assert!(
            got.lock().unwrap().is_empty(),
            "an empty batch is not flushed"
        );
    }
}
