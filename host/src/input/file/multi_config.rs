//! `AllowingIncludedByMultiConfigs`: which input collects a file that several inputs match.
//!
//! iLogtail (`ConfigManager::FindMatchWithForceFlag`) gives such a file to one config only,
//! unless the config has `AllowingIncludedByMultiConfigs`: among the configs without it, the one
//! whose matching path has the deepest fixed base directory (the most specific) wins, then the
//! oldest config; every config with the option collects the file as well. It logs the file, all
//! the configs that match it, and the one that won.
//!
//! Here "oldest" is the input registered first: at start-up the pipelines are registered in the
//! order of their config files' names, so with the same base directory the first pipeline by
//! name wins. The rank is applied among the inputs that have walked the file's directory, when
//! an input finds the file; one rule is added: a file an input already collects is never taken
//! from it (a new or reloaded pipeline, or one whose walk came later, does not make a file
//! move, which would read it again in another pipeline or lose lines in this one).

use std::collections::HashMap;
use std::path::Path;

use crate::input::file::discovery::match_depth;
use crate::input::file::identity::DevInode;
use crate::input::file::{Input, InputId};

/// The input that collects `path` (identity `file`) instead of input `id`, if another one
/// does: None when `id` collects it itself. Only `others` are looked at: the inputs whose
/// last walk entered the file's directory (any input that matches the file and has walked),
/// so that with 1,000 pipelines a new file costs a look at the few that share its directory.
pub(super) fn collected_elsewhere(
    inputs: &HashMap<InputId, Input>,
    id: InputId,
    others: impl IntoIterator<Item = InputId>,
    path: &Path,
    file: DevInode,
) -> Option<InputId> {
    let input = inputs.get(&id)?;
    if input.spec.config.allowing_included_by_multi_configs {
        return None;
    }
    let own_rank = (
        match_depth(&input.spec, path).unwrap_or(0),
        std::cmp::Reverse(id),
    );
    let mut winner: Option<((usize, std::cmp::Reverse<InputId>), InputId)> = None;
    for other_id in others {
        let Some(other) = inputs.get(&other_id) else {
            continue;
        };
        if other_id == id || other.spec.config.allowing_included_by_multi_configs {
            continue;
        }
        if other.ids.contains_key(&file) {
            return Some(other_id);
        }
        let Some(depth) = match_depth(&other.spec, path) else {
            continue;
        };
        let rank = (depth, std::cmp::Reverse(other_id));
        if rank > own_rank && winner.is_none_or(|(best, _)| rank > best) {
            winner = Some((rank, other_id));
        }
    }
    winner.map(|(_, other_id)| other_id)
}

/// Says, once per file and input, that `loser` leaves `path` to `winner`.
pub(super) fn warn_left_to(
    inputs: &HashMap<InputId, Input>,
    loser: InputId,
    winner: InputId,
    path: &Path,
) {
    let name = |id| inputs.get(&id).map_or("?", |i: &Input| i.pipeline.as_str());
    tracing::warn!(
        path = %path.display(),
        collected_by = %name(winner),
        skipped_by = %name(loser),
        "file matched by pipelines {:?} and {:?}: only {:?} collects it (set \
         AllowingIncludedByMultiConfigs: true on an input that must collect it as well)",
        name(winner),
        name(loser),
        name(winner)
    );
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{Placement, PluginConfig};
    use crate::input::file::InputFileConfig;
    use tailrace::PipelineEventGroup;

    fn input(name: &str, options: serde_json::Value) -> Input {
        let spec = InputFileConfig::from_plugin(&PluginConfig {
            plugin_type: "input_file".into(),
            field: "inputs[0]".into(),
            placement: Placement::Native,
            options: options.as_object().unwrap().clone(),
        })
        .unwrap();
        let (sink, _rx) = crossbeam_channel::bounded::<PipelineEventGroup>(1);
        Input::new(name.into(), spec, Box::new(sink))
    }

    const FILE: DevInode = DevInode { dev: 1, inode: 2 };

    /// Inputs 0, 1... of pipelines "p0", "p1"..., in the order given.
    fn inputs(options: &[serde_json::Value]) -> HashMap<InputId, Input> {
        options
            .iter()
            .enumerate()
            .map(|(i, o)| (i as InputId, input(&format!("p{i}"), o.clone())))
            .collect()
    }

    /// Who collects `path` instead of input `id`, every input looked at.
    fn owner(inputs: &HashMap<InputId, Input>, id: InputId, path: &str) -> Option<InputId> {
        collected_elsewhere(inputs, id, inputs.keys().copied(), Path::new(path), FILE)
    }

    #[test]
    fn the_older_input_wins_and_allowing_ones_collect_as_well() {
        let path = "/var/log/app/a.log";
        let inputs = inputs(&[
            serde_json::json!({"FilePaths": ["/var/log/app/*.log"]}),
            serde_json::json!({"FilePaths": ["/var/log/app/*.log"]}),
            serde_json::json!({"FilePaths": ["/var/log/app/*.log"], "AllowingIncludedByMultiConfigs": true}),
            serde_json::json!({"FilePaths": ["/other/*.log"]}),
        ]);
        assert_eq!(owner(&inputs, 0, path), None);
        assert_eq!(owner(&inputs, 1, path), Some(0));
        assert_eq!(owner(&inputs, 2, path), None);
        assert_eq!(owner(&inputs, 3, "/other/x.log"), None);
    }

    #[test]
    fn the_deeper_base_directory_wins_and_a_collected_file_stays() {
        let path = "/var/log/app/a.log";
        let mut inputs = inputs(&[
            serde_json::json!({"FilePaths": ["/var/**/*.log"]}),
            serde_json::json!({"FilePaths": ["/var/log/app/*.log"]}),
        ]);
        assert_eq!(owner(&inputs, 0, path), Some(1));
        assert_eq!(owner(&inputs, 1, path), None);
        // Once the first collects it, it keeps it.
        inputs.get_mut(&0).unwrap().ids.insert(FILE, 7);
        assert_eq!(owner(&inputs, 1, path), Some(0));
    }
}
