//! `processor_default`: passes data through unchanged, as iLogtail's extended processor of
//! that name (configs use it as a placeholder).

use serde::Deserialize;

use super::{parse_options, Options, ProcessorError, Registration};
use crate::plugin::Processor;
use crate::PipelineEventGroup;

pub const REGISTRATION: Registration =
    Registration::new::<DefaultConfig>("processor_default", build);

/// It takes no options.
#[derive(Debug, Default, Deserialize)]
pub struct DefaultConfig {}

fn build(options: &Options) -> Result<Box<dyn Processor>, ProcessorError> {
    let DefaultConfig {} = parse_options(options)?;
    Ok(Box::new(PassThrough))
}

struct PassThrough;

impl Processor for PassThrough {
    fn process(&mut self, _group: &mut PipelineEventGroup) {}
}

#[cfg(test)]
mod tests {
    use super::super::test_support::{contents, lines, options, pairs};
    use super::*;

    #[test]
    fn changes_nothing() {
        let mut p = build(&options(serde_json::json!({}))).unwrap();
        let mut group = lines(&[b"a", b"\xff"]);
        p.process(&mut group);
        assert_eq!(contents(&group, 0), pairs(&[("content", "a")]));
        assert_eq!(group.len(), 2);
    }
}
