//! Feedback loops: a `flusher_file` whose output an `input_file` of the same daemon collects
//! would read its own output back, and write it again, without end (measured before this check:
//! 500 MB in 3 s). Such a config is refused by `validate` and by the daemon, naming both ends.

use std::path::PathBuf;

use crate::config::{ConfigError, PipelineConfig, Placement};
use crate::input::file::{discovery, FileInputSpec, InputFileConfig};

/// The files a pipeline's native flushers write: (the option's place, the absolute path). A
/// rolling output's first rolled file counts too, as the input would see it.
fn outputs(config: &PipelineConfig) -> Vec<(String, PathBuf)> {
    let mut found = Vec::new();
    for plugin in config
        .flushers
        .iter()
        .filter(|p| p.placement == Placement::Native && p.kind() == "flusher_file")
    {
        let Ok(options) = crate::flusher::file::check(plugin) else {
            continue;
        };
        let Ok(path) = std::path::absolute(&options.file_path) else {
            continue;
        };
        let field = format!("{}.FilePath", plugin.field);
        if options.max_size_kb > 0 {
            let mut rolled = path.clone().into_os_string();
            rolled.push(".1");
            found.push((field.clone(), PathBuf::from(rolled)));
        }
        found.push((field, path));
    }
    found
}

/// A pipeline's file input, compiled (None when it has none or it does not compile: that
/// error is reported on its own).
fn input(config: &PipelineConfig) -> Option<(String, FileInputSpec)> {
    let plugin = config
        .inputs
        .iter()
        .find(|p| p.placement == Placement::Native && p.kind() == "input_file")?;
    let spec = InputFileConfig::from_plugin(plugin).ok()?;
    Some((format!("{}.FilePaths", plugin.field), spec))
}

/// One loop: an output of `writer` that an input of `reader` collects.
pub struct Loop<'a> {
    writer: &'a PipelineConfig,
    field: String,
    path: PathBuf,
    reader: &'a PipelineConfig,
    reader_field: String,
}

impl Loop<'_> {
    /// The error, on the flusher's file and option.
    pub fn error(&self) -> ConfigError {
        ConfigError {
            file: self.writer.file.clone(),
            field: self.field.clone(),
            message: format!(
                "{} is collected by pipeline {:?} ({}: {}): the pipeline would read its own \
                 output back without end; write it where no input looks, or exclude it there",
                self.path.display(),
                self.reader.name,
                self.reader.file.display(),
                self.reader_field
            ),
        }
    }
}

/// The loops among `configs` (the configs of one daemon).
pub fn loops<'a>(configs: &[&'a PipelineConfig]) -> Vec<Loop<'a>> {
    between(configs, configs)
}

/// The loops from the outputs of `writers` to the inputs of `readers`. Only configs that
/// write files cost anything: the inputs are compiled only when there is an output to check.
fn between<'a>(writers: &[&'a PipelineConfig], readers: &[&'a PipelineConfig]) -> Vec<Loop<'a>> {
    let outputs: Vec<(&PipelineConfig, String, PathBuf)> = writers
        .iter()
        .filter(|c| writes_files(c))
        .flat_map(|c| outputs(c).into_iter().map(move |(f, p)| (*c, f, p)))
        .collect();
    if outputs.is_empty() {
        return Vec::new();
    }
    let inputs: Vec<(&PipelineConfig, String, FileInputSpec)> = readers
        .iter()
        .filter_map(|c| input(c).map(|(field, spec)| (*c, field, spec)))
        .collect();
    let mut found = Vec::new();
    for (writer, field, path) in &outputs {
        for (reader, reader_field, spec) in &inputs {
            if discovery::collects(spec, path) {
                found.push(Loop {
                    writer,
                    field: field.clone(),
                    path: path.clone(),
                    reader,
                    reader_field: reader_field.clone(),
                });
            }
        }
    }
    found
}

/// Whether `config` has a native `flusher_file` (a cheap look before its options are parsed).
fn writes_files(config: &PipelineConfig) -> bool {
    config
        .flushers
        .iter()
        .any(|p| p.placement == Placement::Native && p.kind() == "flusher_file")
}

/// The loops that `config` would close with the pipelines already running (its own old
/// version, of the same name, left out), as errors: its outputs against every input, and the
/// running outputs against its input. Linear in the running pipelines, and nothing is compiled
/// when no pipeline writes files (1,000 pipelines start without 1,000² glob compilations).
pub fn loops_with<'a>(
    config: &'a PipelineConfig,
    running: impl Iterator<Item = &'a PipelineConfig>,
) -> Vec<ConfigError> {
    let others: Vec<&PipelineConfig> = running.filter(|c| c.name != config.name).collect();
    let mut found = Vec::new();
    if writes_files(config) {
        let mut readers = others.clone();
        readers.push(config);
        found.extend(between(&[config], &readers));
    }
    let writers: Vec<&PipelineConfig> = others.into_iter().filter(|c| writes_files(c)).collect();
    found.extend(between(&writers, &[config]));
    found.iter().map(Loop::error).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    fn config(dir: &Path, name: &str, text: &str) -> PipelineConfig {
        let path = dir.join(format!("{name}.yaml"));
        std::fs::write(&path, text).unwrap();
        crate::config::load(&path).result.unwrap()
    }

    #[test]
    fn an_output_that_an_input_collects_is_a_loop_naming_both_ends() {
        let dir = tempfile::tempdir().unwrap();
        let logs = dir.path().join("logs");
        let text = |out: &str| {
            format!(
                "inputs: [{{Type: input_file, FilePaths: ['{}/*.log'], ExcludeFiles: [skip.log]}}]\n\
                 flushers: [{{Type: flusher_file, FilePath: '{}/{out}'}}]\n",
                logs.display(),
                logs.display()
            )
        };
        let own = config(dir.path(), "own", &text("out.log"));
        let errors: Vec<ConfigError> = loops(&[&own]).iter().map(Loop::error).collect();
        assert_eq!(errors.len(), 1, "{errors:?}");
        assert_eq!(errors[0].field, "flushers[0].FilePath");
        assert!(
            errors[0].message.contains("pipeline \"own\""),
            "{}",
            errors[0]
        );
        // Excluded, or not matched: no loop.
        let excluded = config(dir.path(), "excluded", &text("skip.log"));
        let elsewhere = config(dir.path(), "elsewhere", &text("out.jsonl"));
        assert!(loops(&[&excluded, &elsewhere]).is_empty());
        // Another pipeline's input closes it too, and a running pipeline is seen from a new one.
        let writer = config(
            dir.path(),
            "writer",
            &format!(
                "inputs: [{{Type: metric_mock}}]\nflushers: [{{Type: flusher_file, FilePath: '{}/w.log'}}]\n",
                logs.display()
            ),
        );
        assert_eq!(loops_with(&writer, [&elsewhere].into_iter()).len(), 1);
        assert_eq!(loops_with(&elsewhere, [&writer].into_iter()).len(), 1);
    }
}
