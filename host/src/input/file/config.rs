//! `input_file`'s options, with iLogtail 2.0's names and defaults.

use globset::{GlobBuilder, GlobMatcher};
use serde::Deserialize;

use crate::config::PluginConfig;
use crate::flusher::parse_options;
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
    /// many KiB before its end.
    #[serde(default = "default_tail_size_kb", rename = "TailSizeKB")]
    pub tail_size_kb: u64,
    #[serde(default = "default_encoding")]
    pub file_encoding: String,
    #[serde(default)]
    pub enable_container_discovery: bool,
    /// Joining lines into multi-line events (Java stack traces...).
    #[serde(default)]
    pub multiline: MultilineConfig,
}

fn default_tail_size_kb() -> u64 {
    1024
}

fn default_encoding() -> String {
    "utf8".to_owned()
}

impl FileInputSpec {
    /// `FileEncoding: gbk`.
    pub fn is_gbk(&self) -> bool {
        self.config.file_encoding.eq_ignore_ascii_case("gbk")
    }

    /// A multiline assembler for one file, when the input asks for one (its options were
    /// checked when the spec was built).
    pub fn multiline(&self) -> Option<MultilineAssembler> {
        MultilineAssembler::new(&self.config.multiline)
            .ok()
            .flatten()
    }
}

/// The options, compiled.
pub struct FileInputSpec {
    pub config: InputFileConfig,
    pub include: Vec<GlobMatcher>,
    pub exclude_paths: Vec<GlobMatcher>,
    pub exclude_files: Vec<GlobMatcher>,
    pub exclude_dirs: Vec<GlobMatcher>,
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
                    GlobBuilder::new(g)
                        .literal_separator(true)
                        .build()
                        .map(|g| g.compile_matcher())
                        .map_err(|e| (at, format!("{g:?} is not a valid glob: {e}")))
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
            config,
        })
    }
}
