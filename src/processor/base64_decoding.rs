//! `processor_base64_decoding`: base64-decodes one content (standard alphabet, padded) into
//! `NewKey`, as iLogtail's extended processor of that name; a value that is not base64 adds
//! nothing and is counted.

use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use bytes::Bytes;
use serde::Deserialize;

use super::{parse_options, Options, ProcessorError, Registration};
use crate::plugin::Processor;
use crate::PipelineEventGroup;

pub const REGISTRATION: Registration =
    Registration::new::<Base64DecodingConfig>("processor_base64_decoding", build);

/// iLogtail's options.
#[derive(Debug, Default, Deserialize)]
#[serde(default, rename_all = "PascalCase")]
pub struct Base64DecodingConfig {
    /// The content to decode.
    pub source_key: String,
    /// Where the result goes (iLogtail writes an empty key when it is not given).
    pub new_key: String,
    /// Report logs without `SourceKey` (default false; Tailrace counts them).
    pub no_key_error: bool,
    /// Report values that are not base64 (default false; Tailrace counts them either way).
    pub decode_error: bool,
}

fn build(options: &Options) -> Result<Box<dyn Processor>, ProcessorError> {
    let config: Base64DecodingConfig = parse_options(options)?;
    Ok(Box::new(Base64Decoding {
        source_key: Bytes::from(config.source_key),
        new_key: Bytes::from(config.new_key),
        no_key_error: config.no_key_error,
        missing_key: 0,
        decode_failures: 0,
    }))
}

pub struct Base64Decoding {
    source_key: Bytes,
    new_key: Bytes,
    no_key_error: bool,
    /// Logs without the source content (with `NoKeyError`).
    pub missing_key: u64,
    /// Values that were not base64.
    pub decode_failures: u64,
}

impl Processor for Base64Decoding {
    fn process(&mut self, group: &mut PipelineEventGroup) {
        for log in group.logs_mut() {
            match log.content(&self.source_key) {
                Some(value) => match STANDARD.decode(value) {
                    Ok(decoded) => log.set_content(self.new_key.clone(), Bytes::from(decoded)),
                    Err(_) => self.decode_failures += 1,
                },
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
    fn decodes_into_the_new_key_and_counts_garbage() {
        let config = json!({"SourceKey": "content", "NewKey": "plain"});
        let mut p = Base64Decoding {
            source_key: Bytes::from_static(b"content"),
            new_key: Bytes::from_static(b"plain"),
            no_key_error: false,
            missing_key: 0,
            decode_failures: 0,
        };
        assert!(build(&options(config)).is_ok());
        let mut group = lines(&[b"aGVsbG8=", b"not base64!"]);
        p.process(&mut group);
        assert_eq!(
            contents(&group, 0),
            pairs(&[("content", "aGVsbG8="), ("plain", "hello")])
        );
        assert_eq!(contents(&group, 1), pairs(&[("content", "not base64!")]));
        assert_eq!(p.decode_failures, 1);
    }
}
