//! `input_file`'s options, with iLogtail 2.0's names and defaults.

use serde::Deserialize;
use tailrace::processor::whole_block::BlockRule;

use crate::config::{parse_options, PluginConfig};
use crate::input::file::glob::PathGlob;
use crate::input::file::multiline::{MultilineAssembler, MultilineConfig};

#[derive(Clone, Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct InputFileConfig {
    /// Globs of the files to collect (`*`, `?`, `**` for any depth). Required.
    pub file_paths: Vec<String>,
    /// How many directory levels below a glob's fixed prefix are searched (`**` aside).
    #[serde(default)]
    pub max_dir_search_depth: usize,
    #[serde(default)]
    pub exclude_file_paths: Vec<String>,
    #[serde(default)]
    pub exclude_files: Vec<String>,
    #[serde(default)]
    pub exclude_dirs: Vec<String>,
    /// Read files that existed before the pipeline started from their beginning.
    #[serde(default)]
    pub tailing_all_matched_files: bool,
    /// A file that existed before the pipeline started and is larger than this starts this
    /// many KiB before its end. Kept as written, because whether it was written matters: see
    /// [`InputFileConfig::start_of_existing`].
    #[serde(default, rename = "TailSizeKB")]
    pub tail_size_kb: Option<u64>,
    #[serde(default = "default_encoding")]
    pub file_encoding: String,
    #[serde(default)]
    pub enable_container_discovery: bool,
    /// Joining lines into multi-line events (Java stack traces...).
    #[serde(default)]
    pub multiline: MultilineConfig,
    /// Seconds a last line without its newline (or a multiline event that may not be complete)
    /// waits for more data before it is sent as it is: a writer that stopped mid-line is not
    /// waited for forever, and one that writes a line in two steps is not cut in two.
    #[serde(default = "default_flush_timeout_secs")]
    pub flush_timeout_secs: u64,
    /// Whether this input collects a file that other pipelines match too. When false (the
    /// default), a file that several such inputs match is collected by one of them only (see
    /// `multi_config.rs`): two pipelines with overlapping globs do not send every line twice.
    #[serde(default)]
    pub allowing_included_by_multi_configs: bool,
    /// Each event gets `__file_offset__` (a content: where it starts in the file) and its group
    /// the tag `__inode__`: with the path, where exactly a line came from.
    #[serde(default)]
    pub appending_log_position_meta: bool,
}

/// iLogtail's `TailSizeKB` default.
pub const DEFAULT_TAIL_SIZE_KB: u64 = 1024;

/// `input_file` options of iLogtail (its `FileDiscoveryOptions`, `FileReaderOptions`,
/// `ContainerDiscoveryOptions`, `MultilineOptions` and `InputFile` itself) that Tailrace accepts,
/// so that iLogtail configs load unchanged, but does not act on yet: a warning says so. Sorted.
pub const NOT_IMPLEMENTED: &[&str] = &[
    "AllowingCollectingFilesInRootDir",
    "CloseUnusedReaderIntervalSec",
    "CollectingContainersMeta",
    "ContainerFilters",
    "EnableExactlyOnce",
    "ExternalEnvTag",
    "ExternalK8sLabelTag",
    "MaxCheckpointDirSearchDepth",
    "Multiline.IgnoringUnmatchWarning",
    "PreservedDirDepth",
    "ReadDelayAlertThresholdBytes",
    "ReadDelaySkipThresholdBytes",
    "RotatorQueueSize",
];

fn default_encoding() -> String {
    "utf8".to_owned()
}

/// iLogtail 2.0's `FlushTimeoutSecs` default (its `default_reader_flush_timeout` flag;
/// LoongCollector later raised it to 60).
pub const DEFAULT_FLUSH_TIMEOUT_SECS: u64 = 5;

fn default_flush_timeout_secs() -> u64 {
    DEFAULT_FLUSH_TIMEOUT_SECS
}

impl InputFileConfig {
    /// Where reading starts in a file of `size` bytes that existed before the input started and
    /// has no checkpoint. `TailingAllMatchedFiles`: its start. Else `TailSizeKB` before its end;
    /// when `TailSizeKB` is not written, the daemon takes iLogtail's default (1024: a collector
    /// started on a host with big old logs does not send them all), while `--once` reads from
    /// the start: a one-shot run is a backfill, and the last MiB of each file is not one.
    pub fn start_of_existing(&self, size: u64, once: bool) -> u64 {
        if self.tailing_all_matched_files {
            return 0;
        }
        let kb = match (self.tail_size_kb, once) {
            (Some(kb), _) => kb,
            (None, true) => return 0,
            (None, false) => DEFAULT_TAIL_SIZE_KB,
        };
        size.saturating_sub(kb.saturating_mul(1024))
    }
}

impl FileInputSpec {
    /// How long a line without its newline waits (`FlushTimeoutSecs`).
    pub fn flush_timeout(&self) -> std::time::Duration {
        std::time::Duration::from_secs(self.config.flush_timeout_secs)
    }

    /// `FileEncoding: gbk`.
    pub fn is_gbk(&self) -> bool {
        self.config.file_encoding.eq_ignore_ascii_case("gbk")
    }

    /// A multiline assembler for one file, when the input asks for one (its options were
    /// checked when the spec was built). None in whole-block mode: the first processor cuts
    /// the events.
    pub fn multiline(&self) -> Option<MultilineAssembler> {
        if self.whole_block.is_some() {
            return None;
        }
        MultilineAssembler::new(&self.config.multiline)
            .ok()
            .flatten()
    }
}

/// The options, compiled.
pub struct FileInputSpec {
    pub config: InputFileConfig,
    pub include: Vec<PathGlob>,
    pub exclude_paths: Vec<PathGlob>,
    pub exclude_files: Vec<PathGlob>,
    pub exclude_dirs: Vec<PathGlob>,
    /// Set by the pipeline when its first processor takes whole blocks (iLogtail 1.x's split
    /// processors): files are read into one event per block, ended by this rule, instead of
    /// one event per line.
    pub whole_block: Option<BlockRule>,
    /// Set by the pipeline when its one processor writes LogGroups from lines as they are
    /// (`Processor::takes_lines`): files hand their lines as `tailrace::Lines`, no event made.
    pub hand_lines: bool,
}

impl InputFileConfig {
    /// Parses and checks the options; the error names the field and value.
    pub fn from_plugin(plugin: &PluginConfig) -> Result<FileInputSpec, (String, String)> {
        let config: InputFileConfig = parse_options(plugin)?;
        let field = |name: &str| format!("{}.{name}", plugin.field);
        if config.file_paths.is_empty() {
            return Err((field("FilePaths"), "must name at least one path".to_owned()));
        }
        if config.enable_container_discovery {
            return Err((
                field("EnableContainerDiscovery"),
                "container discovery is not supported yet".to_owned(),
            ));
        }
        if !matches!(
            config.file_encoding.to_ascii_lowercase().as_str(),
            "utf8" | "utf-8" | "gbk"
        ) {
            return Err((
                field("FileEncoding"),
                format!("expected utf8 or gbk, got {:?}", config.file_encoding),
            ));
        }
        let compile = |name: &str, globs: &[String], must_be_absolute: bool| {
            globs
                .iter()
                .enumerate()
                .map(|(i, g)| {
                    let at = format!("{}.{name}[{i}]", plugin.field);
                    if must_be_absolute && !g.starts_with('/') {
                        return Err((at, format!("{g:?} is not an absolute path")));
                    }
                    // `*` stays within one path component; `**` crosses them.
                    PathGlob::new(g).map_err(|e| (at, format!("{g:?} is not a valid glob: {e}")))
                })
                .collect::<Result<Vec<_>, _>>()
        };
        MultilineAssembler::new(&config.multiline)
            .map_err(|(option, message)| (field(&format!("Multiline.{option}")), message))?;
        Ok(FileInputSpec {
            include: compile("FilePaths", &config.file_paths, true)?,
            exclude_paths: compile("ExcludeFilePaths", &config.exclude_file_paths, true)?,
            exclude_files: compile("ExcludeFiles", &config.exclude_files, false)?,
            exclude_dirs: compile("ExcludeDirs", &config.exclude_dirs, true)?,
            whole_block: None,
            hand_lines: false,
            config,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(options: serde_json::Value) -> InputFileConfig {
        let plugin = PluginConfig {
            plugin_type: "input_file".into(),
            field: "inputs[0]".into(),
            placement: crate::config::Placement::Native,
            options: options.as_object().unwrap().clone(),
        };
        InputFileConfig::from_plugin(&plugin).unwrap().config
    }

    const MIB: u64 = 1024 * 1024;

    #[test]
    fn daemon_tails_existing_files_once_reads_them_whole() {
        let plain = config(serde_json::json!({"FilePaths": ["/x/*.log"]}));
        assert_eq!(plain.tail_size_kb, None);
        assert_eq!(plain.start_of_existing(3 * MIB, false), 2 * MIB);
        assert_eq!(plain.start_of_existing(MIB / 2, false), 0);
        assert_eq!(plain.start_of_existing(3 * MIB, true), 0);
    }

    #[test]
    fn an_explicit_tail_size_holds_in_both_modes() {
        let tail = config(serde_json::json!({"FilePaths": ["/x/*.log"], "TailSizeKB": 1}));
        assert_eq!(tail.start_of_existing(10_000, false), 10_000 - 1024);
        assert_eq!(tail.start_of_existing(10_000, true), 10_000 - 1024);
        let zero = config(serde_json::json!({"FilePaths": ["/x/*.log"], "TailSizeKB": 0}));
        assert_eq!(zero.start_of_existing(10_000, true), 10_000);
    }

    #[test]
    fn tailing_all_matched_files_wins() {
        let all = config(serde_json::json!({
            "FilePaths": ["/x/*.log"], "TailSizeKB": 1, "TailingAllMatchedFiles": true
        }));
        assert_eq!(all.start_of_existing(10_000, false), 0);
        assert_eq!(all.start_of_existing(10_000, true), 0);
    }

    #[test]
    fn file_options_take_ilogtail_defaults_and_values() {
        let plain = config(serde_json::json!({"FilePaths": ["/x/*.log"]}));
        assert_eq!(plain.flush_timeout_secs, 5);
        assert!(!plain.allowing_included_by_multi_configs);
        assert!(!plain.appending_log_position_meta);
        let set = config(serde_json::json!({
            "FilePaths": ["/x/*.log"], "FlushTimeoutSecs": 1,
            "AllowingIncludedByMultiConfigs": true, "AppendingLogPositionMeta": true
        }));
        assert_eq!(set.flush_timeout_secs, 1);
        assert!(set.allowing_included_by_multi_configs && set.appending_log_position_meta);
    }

    #[test]
    fn a_bad_flush_timeout_names_the_field_and_value() {
        let plugin = PluginConfig {
            plugin_type: "input_file".into(),
            field: "inputs[0]".into(),
            placement: crate::config::Placement::Native,
            options: serde_json::json!({"FilePaths": ["/x/*.log"], "FlushTimeoutSecs": -1})
                .as_object()
                .unwrap()
                .clone(),
        };
        let Err((field, message)) = InputFileConfig::from_plugin(&plugin) else {
            panic!("a negative FlushTimeoutSecs was accepted");
        };
        assert_eq!(field, "inputs[0].FlushTimeoutSecs", "{message}");
        assert!(message.contains("-1"), "{message}");
    }

    #[test]
    fn not_implemented_list_is_sorted_and_unknown_to_the_struct() {
        assert!(NOT_IMPLEMENTED.windows(2).all(|w| w[0] < w[1]));
        let taken = [
            "FilePaths",
            "MaxDirSearchDepth",
            "TailSizeKB",
            "Multiline",
            "EnableContainerDiscovery",
            "FlushTimeoutSecs",
            "AllowingIncludedByMultiConfigs",
            "AppendingLogPositionMeta",
        ];
        for key in NOT_IMPLEMENTED {
            assert!(!taken.contains(key), "{key}");
        }
    }
}
