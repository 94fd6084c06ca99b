//! Plugin type names of iLogtail/LoongCollector, so that real configs validate: a `Type` that is
//! not implemented by Tailrace but is known to iLogtail is either handed to the extended (plugin
//! base) side or reported as "known but not implemented yet", instead of "unknown".
//!
//! The names were collected by reading iLogtail's public source (alibaba/ilogtail and its
//! successor alibaba/loongcollector); nothing here is guessed:
//!
//! * Extended names are the keys the Go packages under `plugins/` put into the Go registries
//!   (`Inputs`, `MetricInputs`, `ServiceInputs`, `Processors`, `Aggregators`, `Flushers`) or pass
//!   to the `Add*Creator` helpers (extensions, and some newer flushers) in their `init` functions.
//!   Only packages that a plugin list enables are counted: `plugins/all/all*.go` in older trees,
//!   `plugins.yml` in newer ones (common, Linux and Windows sections), several versions of each
//!   merged. Names registered by `pluginmanager/` (self-monitoring inputs), by test files, or by
//!   packages that no list enables are left out.
//! * Native names are the `sName` constants of the classes that `PluginRegistry::LoadStaticPlugins`
//!   registers in the C++ core (`core/plugin/`, `core/pipeline/plugin/` and
//!   `core/collection_pipeline/plugin/` over time). Enterprise-only registrations are left out.
//!
//! Every list is sorted, so a binary search would also work.

// Go (extended) plugins, by kind.
/// Inputs of the Go plugin base: both metric inputs (polled on an interval) and service inputs
/// (long-running), since a pipeline config lists them under the same `inputs` key. Includes the
/// Linux-only (`input_command`, `service_gpu_metric`, `service_journal`, `service_prometheus`,
/// `service_snmp`, `service_telegraf`) and Windows-only (`service_wineventlog`) ones, and a few
/// older names still registered by packages in the lists (`metric_docker_file`,
/// `metric_container_meta`, `metric_meta_kubernetes`).
pub const EXTENDED_INPUTS: &[&str] = &[
    "input_command",
    "metric_binlog",
    "metric_checkpoint_example",
    "metric_container_info",
    "metric_container_meta",
    "metric_debug_file",
    "metric_docker_file",
    "metric_http",
    "metric_input_example",
    "metric_input_netping",
    "metric_meta_host",
    "metric_meta_kubernetes",
    "metric_mock",
    "metric_nginx_status",
    "metric_process_v2",
    "metric_redis",
    "metric_system",
    "metric_system_v2",
    "service_canal",
    "service_docker_event",
    "service_docker_stdout",
    "service_docker_stdout_raw",
    "service_go_profile",
    "service_gpu_metric",
    "service_http_server",
    "service_input_example",
    "service_jmx",
    "service_journal",
    "service_kafka",
    "service_kubernetes_meta",
    "service_lumberjack",
    "service_mock",
    "service_mqtt",
    "service_mssql",
    "service_mysql",
    "service_otlp",
    "service_pgsql",
    "service_prometheus",
    "service_skywalking_agent_v2",
    "service_skywalking_agent_v3",
    "service_skywalking_agent_v3_http",
    "service_snmp",
    "service_syslog",
    "service_telegraf",
    "service_udp_server",
    "service_wineventlog",
];

/// Processors of the Go plugin base.
pub const EXTENDED_PROCESSORS: &[&str] = &[
    "processor_add_fields",
    "processor_add_fields_v2",
    "processor_anchor",
    "processor_appender",
    "processor_base64_decoding",
    "processor_base64_encoding",
    "processor_cloud_meta",
    "processor_csv",
    "processor_default",
    "processor_desensitize",
    "processor_dict_map",
    "processor_drop",
    "processor_drop_last_key",
    "processor_encrypt",
    "processor_fields_with_condition",
    "processor_filter_key_regex",
    "processor_filter_regex",
    "processor_geoip",
    "processor_gotime",
    "processor_grok",
    "processor_json",
    "processor_log_to_sls_metric",
    "processor_md5",
    "processor_otel_metric",
    "processor_otel_trace",
    "processor_packjson",
    "processor_pick_key",
    "processor_rate_limit",
    "processor_regex",
    "processor_rename",
    "processor_split_char",
    "processor_split_key_value",
    "processor_split_log_regex",
    "processor_split_log_string",
    "processor_split_string",
    "processor_string_replace",
    "processor_strptime",
];

/// Aggregators of the Go plugin base (`aggregator_default` comes from the package root).
pub const EXTENDED_AGGREGATORS: &[&str] = &[
    "aggregator_base",
    "aggregator_content_value_group",
    "aggregator_context",
    "aggregator_default",
    "aggregator_logstore_router",
    "aggregator_metadata_group",
    "aggregator_opentelemetry",
    "aggregator_shardhash",
    "aggregator_skywalking",
];

/// Flushers of the Go plugin base. `flusher_otlp_log` comes from a package that older plugin
/// lists carried; `flusher_doris`, `flusher_s3` and `flusher_mqtt` from newer ones.
pub const EXTENDED_FLUSHERS: &[&str] = &[
    "flusher_checker",
    "flusher_clickhouse",
    "flusher_doris",
    "flusher_elasticsearch",
    "flusher_grpc",
    "flusher_http",
    "flusher_kafka",
    "flusher_kafka_v2",
    "flusher_loki",
    "flusher_mqtt",
    "flusher_otlp",
    "flusher_otlp_http",
    "flusher_otlp_log",
    "flusher_prometheus",
    "flusher_pulsar",
    "flusher_s3",
    "flusher_sleep",
    "flusher_sls",
    "flusher_statistics",
    "flusher_stdout",
];

/// Extensions of the Go plugin base (registered through the extension creator function).
pub const EXTENDED_EXTENSIONS: &[&str] = &[
    "ext_basicauth",
    "ext_default_decoder",
    "ext_default_encoder",
    "ext_groupinfo_filter",
    "ext_request_breaker",
];

// C++ (native) plugins of iLogtail 2.x / LoongCollector, by kind.
/// Inputs registered by the C++ core. `input_static_file_onetime` is a one-time input; the
/// `input_ebpf_*` and `input_observer_network` names are the ones iLogtail 2.x used before the
/// eBPF inputs were renamed; several eBPF inputs are registered only when a gflag allows it.
pub const ILOGTAIL_NATIVE_INPUTS: &[&str] = &[
    "input_container_stdio",
    "input_cpu_profiling",
    "input_ebpf_fileprobe_security",
    "input_ebpf_processprobe_security",
    "input_ebpf_sockettraceprobe_observer",
    "input_ebpf_sockettraceprobe_security",
    "input_file",
    "input_file_security",
    "input_forward",
    "input_host_meta",
    "input_host_monitor",
    "input_internal_alarms",
    "input_internal_config_container_info",
    "input_internal_metrics",
    "input_network_observer",
    "input_network_security",
    "input_observer_network",
    "input_process_security",
    "input_prometheus",
    "input_static_file_onetime",
];

/// Processors registered by the C++ core, including the inner ones the core inserts itself
/// (split, merge, tag, container-log and Prometheus parsing). The string splitter's real name is
/// `processor_split_string_native`; `processor_split_regex_native` is the 2.0-era multiline
/// splitter that `processor_split_multiline_log_string_native` replaced.
pub const ILOGTAIL_NATIVE_PROCESSORS: &[&str] = &[
    "processor_desensitize_native",
    "processor_filter_regex_native",
    "processor_merge_multiline_log_native",
    "processor_parse_apsara_native",
    "processor_parse_container_log_native",
    "processor_parse_delimiter_native",
    "processor_parse_from_pb_native",
    "processor_parse_json_native",
    "processor_parse_regex_native",
    "processor_parse_timestamp_native",
    "processor_prom_parse_metric_native",
    "processor_prom_relabel_metric_native",
    "processor_spl",
    "processor_split_multiline_log_string_native",
    "processor_split_regex_native",
    "processor_split_string_native",
    "processor_tag_native",
];

/// Flushers registered by the C++ core. The Kafka one is Linux-only and open-source-only.
pub const ILOGTAIL_NATIVE_FLUSHERS: &[&str] = &[
    "flusher_blackhole",
    "flusher_file",
    "flusher_kafka_native",
    "flusher_sls",
];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lists_are_sorted_and_unique() {
        for list in [
            EXTENDED_INPUTS,
            EXTENDED_PROCESSORS,
            EXTENDED_AGGREGATORS,
            EXTENDED_FLUSHERS,
            EXTENDED_EXTENSIONS,
            ILOGTAIL_NATIVE_INPUTS,
            ILOGTAIL_NATIVE_PROCESSORS,
            ILOGTAIL_NATIVE_FLUSHERS,
        ] {
            assert!(list.windows(2).all(|w| w[0] < w[1]), "{list:?}");
        }
    }
}
