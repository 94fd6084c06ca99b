//! `processor_dict_map`: maps one content's value through a dictionary, as iLogtail's extended
//! processor of that name. The dictionary is `MapDict`, or the two-column CSV file
//! `DictFilePath` (which wins; read when the processor is built, one record per line). With no
//! `DestKey` (or the source key) the value is replaced in place; otherwise the mapped value goes
//! to `DestKey`, replacing what is there with `Mode: overwrite` (default) and leaving it with
//! `fill`. A value absent from the dictionary changes nothing. A log without the source gets
//! `Missing` under `DestKey` with `HandleMissing`; without it, iLogtail still adds an empty
//! `DestKey` when it is a separate key, and so does Tailrace.

use std::collections::HashMap;

use bytes::Bytes;
use serde::Deserialize;

use super::{parse_options, Options, ProcessorError, Registration};
use crate::plugin::Processor;
use crate::PipelineEventGroup;

pub const REGISTRATION: Registration =
    Registration::new::<DictMapConfig>("processor_dict_map", build);

/// iLogtail's options and defaults.
#[derive(Debug, Deserialize)]
#[serde(default, rename_all = "PascalCase")]
pub struct DictMapConfig {
    /// A two-column CSV file: value, mapped value.
    pub dict_file_path: String,
    /// Value → mapped value (used when `DictFilePath` is not given).
    pub map_dict: HashMap<String, String>,
    /// The content to map. Required.
    pub source_key: String,
    /// Where the mapped value goes (default: the source content).
    pub dest_key: String,
    /// Give logs without the source the `Missing` value (default false).
    pub handle_missing: bool,
    /// Default `Unknown`.
    pub missing: String,
    /// `overwrite` (default) or `fill`.
    pub mode: String,
    /// At most this many entries (default 1000).
    pub max_dict_size: usize,
}

impl Default for DictMapConfig {
    fn default() -> Self {
        DictMapConfig {
            dict_file_path: String::new(),
            map_dict: HashMap::new(),
            source_key: String::new(),
            dest_key: String::new(),
            handle_missing: false,
            missing: "Unknown".to_owned(),
            mode: "overwrite".to_owned(),
            max_dict_size: 1000,
        }
    }
}

fn build(options: &Options) -> Result<Box<dyn Processor>, ProcessorError> {
    Ok(Box::new(DictMap::new(parse_options(options)?)?))
}

pub struct DictMap {
    dict: HashMap<Vec<u8>, Bytes>,
    source_key: Bytes,
    dest_key: Bytes,
    separate_dest: bool,
    handle_missing: bool,
    missing: Bytes,
    overwrite: bool,
}

impl DictMap {
    pub fn new(config: DictMapConfig) -> Result<Self, ProcessorError> {
        if config.source_key.is_empty() {
            return Err(ProcessorError::new(
                "SourceKey",
                "required: the content to map",
            ));
        }
        if config.dict_file_path.is_empty() && config.map_dict.is_empty() {
            return Err(ProcessorError::new(
                "MapDict",
                "give MapDict or DictFilePath",
            ));
        }
        if config.map_dict.len() > config.max_dict_size {
            return Err(ProcessorError::new(
                "MapDict",
                format!(
                    "{} entries, more than MaxDictSize ({})",
                    config.map_dict.len(),
                    config.max_dict_size
                ),
            ));
        }
        let overwrite = match config.mode.as_str() {
            "overwrite" => true,
            "fill" => false,
            other => {
                return Err(ProcessorError::new(
                    "Mode",
                    format!("{other:?}: expected fill or overwrite"),
                ))
            }
        };
        let entries = if config.dict_file_path.is_empty() {
            config.map_dict
        } else {
            read_dict_file(&config.dict_file_path, config.max_dict_size)
                .map_err(|e| ProcessorError::new("DictFilePath", e))?
        };
        let separate_dest = !config.dest_key.is_empty() && config.dest_key != config.source_key;
        Ok(DictMap {
            dict: entries
                .into_iter()
                .map(|(k, v)| (k.into_bytes(), Bytes::from(v)))
                .collect(),
            dest_key: Bytes::from(if separate_dest {
                config.dest_key
            } else {
                config.source_key.clone()
            }),
            source_key: Bytes::from(config.source_key),
            separate_dest,
            handle_missing: config.handle_missing,
            missing: Bytes::from(config.missing),
            overwrite,
        })
    }

    /// Sets `DestKey` as the mode says.
    fn put(&self, log: &mut crate::LogEvent, value: Bytes) {
        if self.overwrite || !log.has_content(&self.dest_key) {
            log.set_content(self.dest_key.clone(), value);
        }
    }
}

/// The dictionary of a two-column CSV file.
fn read_dict_file(path: &str, max: usize) -> Result<HashMap<String, String>, String> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("cannot read {path:?}: {e}"))?;
    let mut dict = HashMap::new();
    for (i, line) in text
        .lines()
        .filter(|l| !l.trim().is_empty())
        .take(max)
        .enumerate()
    {
        let row = super::csv::first_record(line, ',', false)
            .ok_or_else(|| format!("{path:?} row {}: not valid CSV", i + 1))?;
        let [key, value] = <[String; 2]>::try_from(row)
            .map_err(|row| format!("{path:?} row {}: {} columns, expected 2", i + 1, row.len()))?;
        if let Some(old) = dict.get(&key) {
            if *old != value {
                return Err(format!("{path:?} row {}: {key:?} is mapped twice", i + 1));
            }
        }
        dict.insert(key, value);
    }
    if dict.is_empty() {
        return Err(format!("{path:?} is empty"));
    }
    Ok(dict)
}

impl Processor for DictMap {
    fn process(&mut self, group: &mut PipelineEventGroup) {
        for log in group.logs_mut() {
            match log.content(&self.source_key) {
                Some(value) => {
                    let Some(mapped) = self.dict.get(&value[..]).cloned() else {
                        continue;
                    };
                    if self.separate_dest {
                        self.put(log, mapped);
                    } else {
                        log.set_content(self.source_key.clone(), mapped);
                    }
                }
                None if self.handle_missing => self.put(log, self.missing.clone()),
                None if self.separate_dest && !log.has_content(&self.dest_key) => {
                    log.set_content(self.dest_key.clone(), Bytes::new());
                }
                None => {}
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::test_support::{contents, options, pairs};
    use super::*;
    use crate::{LogEvent, PipelineEvent};
    use serde_json::json;

    fn run(
        config: serde_json::Value,
        fields: &[(&'static str, &'static str)],
    ) -> Vec<(String, String)> {
        let mut p = build(&options(config)).unwrap();
        let mut log = LogEvent::new(0, None);
        for (k, v) in fields {
            log.set_content(*k, *v);
        }
        let mut group = PipelineEventGroup::default();
        group.events.push(PipelineEvent::Log(log));
        p.process(&mut group);
        contents(&group, 0)
    }

    #[test]
    fn in_place_dest_modes_and_missing() {
        let dict = json!({"1": "TCP", "2": "UDP", "3": "HTTP"});
        assert_eq!(
            run(
                json!({"MapDict": dict, "SourceKey": "_ip_type_"}),
                &[("_ip_type_", "2")]
            ),
            pairs(&[("_ip_type_", "UDP")])
        );
        assert_eq!(
            run(
                json!({"MapDict": dict, "SourceKey": "t", "DestKey": "name", "Mode": "fill"}),
                &[("t", "1"), ("name", "kept")]
            ),
            pairs(&[("t", "1"), ("name", "kept")])
        );
        assert_eq!(
            run(
                json!({"MapDict": dict, "SourceKey": "t", "DestKey": "name"}),
                &[("name", "old"), ("t", "3")]
            ),
            pairs(&[("name", "HTTP"), ("t", "3")])
        );
        assert_eq!(
            run(
                json!({"MapDict": dict, "SourceKey": "t", "DestKey": "name", "HandleMissing": true}),
                &[("x", "1")]
            ),
            pairs(&[("x", "1"), ("name", "Unknown")])
        );
        assert_eq!(
            run(
                json!({"MapDict": dict, "SourceKey": "t", "DestKey": "name"}),
                &[("t", "9")]
            ),
            pairs(&[("t", "9")])
        );
    }

    #[test]
    fn dictionary_files_and_bad_options() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("dict.csv");
        std::fs::write(&path, "1,TCP\n\"2\",\"U,DP\"\n").unwrap();
        let path = path.display().to_string();
        assert_eq!(
            run(
                json!({"DictFilePath": path, "SourceKey": "t"}),
                &[("t", "2")]
            ),
            pairs(&[("t", "U,DP")])
        );
        std::fs::write(&path, "1,TCP,extra\n").unwrap();
        let err = build(&options(json!({"DictFilePath": path, "SourceKey": "t"})))
            .err()
            .unwrap();
        assert_eq!(err.field, "DictFilePath");
        let err = build(&options(json!({"SourceKey": "t"}))).err().unwrap();
        assert_eq!(err.field, "MapDict");
        let err = build(&options(
            json!({"SourceKey": "t", "MapDict": {"a": "b"}, "Mode": "swap"}),
        ))
        .err()
        .unwrap();
        assert_eq!(err.field, "Mode");
    }
}
