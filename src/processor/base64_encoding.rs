//! `processor_base64_encoding`: base64-encodes one content (standard alphabet, padded), into
//! `NewKey` or in place, as iLogtail's extended processor of that name.

use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use bytes::Bytes;
use serde::Deserialize;

use super::{parse_options, Options, ProcessorError, Registration};
use crate::plugin::Processor;
use crate::PipelineEventGroup;

pub const REGISTRATION: Registration =
    Registration::new::<Base64EncodingConfig>("processor_base64_encoding", build);

/// iLogtail's options.
#[derive(Debug, Default, Deserialize)]
#[serde(default, rename_all = "PascalCase")]
pub struct Base64EncodingConfig {
    /// The content to encode.
    pub source_key: String,
    /// Where the result goes (default: the content itself).
    pub new_key: String,
    /// Report logs without `SourceKey` (default false; Tailrace counts them).
    pub no_key_error: bool,
}

fn build(options: &Options) -> Result<Box<dyn Processor>, ProcessorError> {
    let config: Base64EncodingConfig = parse_options(options)?;
    let dest = if config.new_key.is_empty() {
        config.source_key.clone()
    } else {
        config.new_key
    };
    Ok(Box::new(Base64Encoding {
        source_key: Bytes::from(config.source_key),
        dest_key: Bytes::from(dest),
        no_key_error: config.no_key_error,
        missing_key: 0,
    }))
}

pub struct Base64Encoding {
    source_key: Bytes,
    dest_key: Bytes,
    no_key_error: bool,
    /// Logs without the source content (with `NoKeyError`).
    pub missing_key: u64,
}

impl Processor for Base64Encoding {
    fn process(&mut self, group: &mut PipelineEventGroup) {
        for log in group.logs_mut() {
            match log.content(&self.source_key) {
                Some(value) => {
                    let encoded = STANDARD.encode(value);
                    log.set_content(self.dest_key.clone(), Bytes::from(encoded));
                }
                None if self.no_key_error => self.missing_key += 1,
                None => {}
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::test_support::{contents, lines, options, pairs};
    use super::*;
    use serde_json::json;

    #[test]
    fn encodes_in_place_or_into_a_new_key() {
        let mut in_place = build(&options(json!({"SourceKey": "content"}))).unwrap();
        let mut group = lines(&[b"hello \xff"]);
        in_place.process(&mut group);
        assert_eq!(contents(&group, 0), pairs(&[("content", "aGVsbG8g/w==")]));
        let mut new_key =
            build(&options(json!({"SourceKey": "content", "NewKey": "b64"}))).unwrap();
        let mut group = lines(&[b"hello"]);
        new_key.process(&mut group);
        assert_eq!(
            contents(&group, 0),
            pairs(&[("content", "hello"), ("b64", "aGVsbG8=")])
        );
    }
}
