//! `processor_md5`: writes the MD5 of one content, in lower-case hex, to `MD5Key`, as iLogtail's
//! extended processor of that name.

use bytes::Bytes;
use md5::{Digest, Md5};
use serde::Deserialize;

use super::{parse_options, Options, ProcessorError, Registration};
use crate::plugin::Processor;
use crate::PipelineEventGroup;

pub const REGISTRATION: Registration = Registration::new::<Md5Config>("processor_md5", build);

/// iLogtail's options.
#[derive(Debug, Default, Deserialize)]
#[serde(default, rename_all = "PascalCase")]
pub struct Md5Config {
    /// The content to hash.
    pub source_key: String,
    /// Where the hash goes (iLogtail writes an empty key when it is not given).
    #[serde(rename = "MD5Key")]
    pub md5_key: String,
    /// Report logs without `SourceKey` (default false; Tailrace counts them).
    pub no_key_error: bool,
}

fn build(options: &Options) -> Result<Box<dyn Processor>, ProcessorError> {
    let config: Md5Config = parse_options(options)?;
    Ok(Box::new(Md5Processor {
        source_key: Bytes::from(config.source_key),
        md5_key: Bytes::from(config.md5_key),
        no_key_error: config.no_key_error,
        missing_key: 0,
    }))
}

pub struct Md5Processor {
    source_key: Bytes,
    md5_key: Bytes,
    no_key_error: bool,
    /// Logs without the source content (with `NoKeyError`).
    pub missing_key: u64,
}

/// Lower-case hex, as Go's `%x`.
fn lower_hex(bytes: &[u8]) -> Bytes {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut out = Vec::with_capacity(bytes.len() * 2);
    for b in bytes {
        out.push(DIGITS[usize::from(b >> 4)]);
        out.push(DIGITS[usize::from(b & 15)]);
    }
    Bytes::from(out)
}

impl Processor for Md5Processor {
    fn process(&mut self, group: &mut PipelineEventGroup) {
        for log in group.logs_mut() {
            match log.content(&self.source_key) {
                Some(value) => {
                    let hash = lower_hex(&Md5::digest(value));
                    log.set_content(self.md5_key.clone(), hash);
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
    fn hashes_into_the_md5_key() {
        let mut p = build(&options(
            json!({"SourceKey": "content", "MD5Key": "key_md5"}),
        ))
        .unwrap();
        let mut group = lines(&[b"hello"]);
        p.process(&mut group);
        assert_eq!(
            contents(&group, 0),
            pairs(&[
                ("content", "hello"),
                ("key_md5", "5d41402abc4b2a76b9719d911017c592")
            ])
        );
    }
}
