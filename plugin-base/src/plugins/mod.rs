//! Every plugin of the base, one per file, in folders by kind. `all()` is the one list the
//! registry is built from.

pub mod aggregators;
pub mod flushers;
pub mod inputs;
pub mod processors;

use crate::runtime::registry::PluginFactory;

/// Every plugin, with its registry name.
pub fn all() -> Vec<(&'static str, PluginFactory)> {
    #[allow(unused_mut)]
    let mut plugins = vec![
        inputs::metric_mock::PLUGIN,
        processors::add_fields::PLUGIN,
        aggregators::default::PLUGIN,
        flushers::sls::PLUGIN,
        flushers::stdout::PLUGIN,
    ];
    #[cfg(feature = "test-faults")]
    plugins.push(processors::test_panic::PLUGIN);
    plugins
}
