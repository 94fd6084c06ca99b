//! The threads that move batches: a processor runner per pipeline and a flusher runner per
//! native flusher.

pub mod flusher;
pub mod processor;
