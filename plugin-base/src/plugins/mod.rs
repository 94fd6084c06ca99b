//! Every plugin of the base, one per file, in folders by kind, plus every processor of the core
//! (`tailrace::processor`). `all()` is the one list the registry is built from.

pub mod aggregators;
pub mod flushers;
pub mod inputs;
pub mod processors;
pub mod tls;

use crate::runtime::registry::PluginFactory;

/// Every plugin, with its registry name.
pub fn all() -> Vec<(&'static str, PluginFactory)> {
    let mut plugins = vec![
        inputs::metric_mock::PLUGIN,
        inputs::http_server::PLUGIN,
        inputs::metric_system_v2::PLUGIN,
        inputs::syslog::PLUGIN,
        aggregators::default::PLUGIN,
        aggregators::base::PLUGIN,
        aggregators::context::PLUGIN,
        aggregators::content_value_group::PLUGIN,
        aggregators::metadata_group::PLUGIN,
        flushers::kafka_v2::PLUGIN,
        flushers::http::PLUGIN,
        flushers::sls::PLUGIN,
        flushers::stdout::PLUGIN,
    ];
    // Every processor of the core: the host's own processors run here too when the input does.
    plugins.extend(
        tailrace::processor::PROCESSORS
            .iter()
            .map(|r| (r.name, PluginFactory::CoreProcessor(r.build))),
    );
    #[cfg(feature = "test-faults")]
    plugins.push(processors::test_panic::PLUGIN);
    plugins
}

#[cfg(test)]
mod tests {
    use super::*;
    use tailrace::plugin_config::{
        BASE_AGGREGATORS, BASE_EXTENSIONS, BASE_FLUSHERS, BASE_INPUTS, BASE_PROCESSORS,
    };

    /// The host validates against the core's lists of what this base implements: they must be
    /// exactly the registry's names (test-only plugins aside).
    #[test]
    fn the_core_lists_name_every_plugin_of_the_registry() {
        let mut listed: Vec<&str> = [
            BASE_INPUTS,
            BASE_PROCESSORS,
            BASE_AGGREGATORS,
            BASE_FLUSHERS,
            BASE_EXTENSIONS,
        ]
        .concat();
        listed.sort();
        let mut registered: Vec<&str> = all()
            .into_iter()
            .map(|(name, _)| name)
            .filter(|name| !name.contains("test_"))
            .collect();
        registered.sort();
        assert_eq!(listed, registered);
    }
}
