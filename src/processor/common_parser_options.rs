//! What iLogtail's native parsers (`processor_parse_*_native`) do with the source field once a
//! log was parsed or failed to parse: iLogtail's `CommonParserOptions`, with its defaults
//! (iLogtail 2.0: the source is dropped either way unless asked for).
//!
//! Each parser's option struct repeats the four option fields (serde's `flatten` would hide
//! them from the unknown-option warnings) and hands them to [`CommonParserOptions::new`].

use bytes::Bytes;

use crate::LogEvent;

/// iLogtail's key for the raw line of a failed parse, when `CopingRawLog` is set.
pub const LEGACY_UNMATCHED_RAW_LOG_KEY: &[u8] = b"__raw_log__";

/// The file offset iLogtail may add to a log; a log left with only it counts as empty.
const FILE_OFFSET_KEY: &[u8] = b"__file_offset__";

#[derive(Clone, Debug)]
pub struct CommonParserOptions {
    /// `KeepingSourceWhenParseFail` (default false).
    pub keep_on_fail: bool,
    /// `KeepingSourceWhenParseSucceed` (default false).
    pub keep_on_success: bool,
    /// `RenamedSourceKey`: the key a kept source gets (default: `SourceKey`).
    pub renamed_source_key: Bytes,
    /// `CopingRawLog` (default false): on a failure with the source kept, also copy it to
    /// `__raw_log__` (iLogtail 1.x's key for unmatched lines).
    pub coping_raw_log: bool,
}

impl CommonParserOptions {
    pub fn new(
        source_key: &str,
        keep_on_fail: bool,
        keep_on_success: bool,
        renamed_source_key: &str,
        coping_raw_log: bool,
    ) -> Self {
        let renamed = if renamed_source_key.is_empty() {
            source_key
        } else {
            renamed_source_key
        };
        CommonParserOptions {
            keep_on_fail,
            keep_on_success,
            renamed_source_key: Bytes::copy_from_slice(renamed.as_bytes()),
            coping_raw_log,
        }
    }

    /// Applies the options to `log` after its source (`raw`, under `source_key`) was parsed
    /// (`success`) or not; `overwritten` says a parsed field took the source's key. Returns
    /// whether the log stays: a failed log that is left with nothing is dropped, as iLogtail
    /// drops it.
    pub fn finish(
        &self,
        log: &mut LogEvent,
        source_key: &[u8],
        raw: Bytes,
        success: bool,
        overwritten: bool,
    ) -> bool {
        if !success || !overwritten {
            log.remove_content(source_key);
        }
        let keep = if success {
            self.keep_on_success
        } else {
            self.keep_on_fail
        };
        // A kept source never replaces a parsed field of the same name.
        if keep && !log.has_content(&self.renamed_source_key) {
            log.set_content(self.renamed_source_key.clone(), raw.clone());
        }
        if !success && keep && self.coping_raw_log && !log.has_content(LEGACY_UNMATCHED_RAW_LOG_KEY)
        {
            log.set_content(Bytes::from_static(LEGACY_UNMATCHED_RAW_LOG_KEY), raw);
        }
        if !success && !self.keep_on_fail {
            let empty = match log.contents.as_slice() {
                [] => true,
                [(key, _)] => key == FILE_OFFSET_KEY,
                _ => false,
            };
            return !empty;
        }
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn log(pairs: &[(&'static str, &'static str)]) -> LogEvent {
        let mut log = LogEvent::new(0, None);
        for (k, v) in pairs {
            log.set_content(*k, *v);
        }
        log
    }

    #[test]
    fn defaults_drop_the_source_and_an_empty_failed_log() {
        let opts = CommonParserOptions::new("content", false, false, "", false);
        let mut ok = log(&[("content", "x"), ("a", "1")]);
        assert!(opts.finish(&mut ok, b"content", Bytes::from_static(b"x"), true, false));
        assert!(!ok.has_content(b"content"));
        let mut bad = log(&[("content", "x")]);
        assert!(!opts.finish(&mut bad, b"content", Bytes::from_static(b"x"), false, false));
        let mut bad_with_more = log(&[("content", "x"), ("host", "h")]);
        assert!(opts.finish(
            &mut bad_with_more,
            b"content",
            Bytes::from_static(b"x"),
            false,
            false
        ));
        assert_eq!(bad_with_more.contents.len(), 1);
    }

    #[test]
    fn kept_sources_are_renamed_and_copied() {
        let opts = CommonParserOptions::new("content", true, true, "raw", true);
        let mut bad = log(&[("content", "x")]);
        assert!(opts.finish(&mut bad, b"content", Bytes::from_static(b"x"), false, false));
        let keys: Vec<&[u8]> = bad.contents.iter().map(|(k, _)| &k[..]).collect();
        assert_eq!(keys, [&b"raw"[..], b"__raw_log__"]);
        let mut ok = log(&[("content", "x"), ("raw", "parsed")]);
        assert!(opts.finish(&mut ok, b"content", Bytes::from_static(b"x"), true, false));
        assert_eq!(&ok.content(b"raw").unwrap()[..], b"parsed");
    }
}
