pub mod metric_mock;
