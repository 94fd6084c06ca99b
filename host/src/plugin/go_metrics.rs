//! The plugin base's own statistics, for `/metrics`: `GetGoMetrics("direct")` gives one row
//! per base pipeline and one per plugin instance, in the layout LoongCollector's C++ side reads
//! (`labels`, `counters`, `gauges`, each a JSON object). The answer is a malloc'd tree that the
//! caller frees piece by piece; this module reads it into owned rows and frees it.

use std::ffi::{c_char, CStr};

use tailrace::rslice::{GoString, KeyValue, PluginMetric, PluginMetrics};

/// `PluginMetrics* GetGoMetrics(GoString metricType)`.
pub type GetGoMetricsFn = unsafe extern "C" fn(GoString) -> *mut PluginMetrics;

/// One row: its key/value strings.
pub type Row = Vec<(String, String)>;

/// Calls `GetGoMetrics(metric_type)` and returns its rows (none when it answers NULL).
pub fn read(get: GetGoMetricsFn, metric_type: &str) -> Vec<Row> {
    // SAFETY: the base's export with the ABI's signature; the GoString borrows `metric_type`
    // for the duration of the call.
    let top = unsafe { get(GoString::from_str_ref(metric_type)) };
    // SAFETY: `top` is NULL or the base's malloc'd tree, handed to us to read and free.
    unsafe { take_tree(top) }
}

/// Reads and frees a `PluginMetrics` tree.
///
/// # Safety
/// `top` is NULL or points to a tree whose every piece came from `malloc` and is not used by
/// anyone else: counts non-negative, arrays holding that many pointers (each NULL or valid),
/// strings NUL-terminated.
unsafe fn take_tree(top: *mut PluginMetrics) -> Vec<Row> {
    let mut rows = Vec::new();
    if top.is_null() {
        return rows;
    }
    // SAFETY: per this function's contract.
    unsafe {
        let PluginMetrics { metrics, count } = top.read();
        for i in 0..usize::try_from(count).unwrap_or(0) {
            if metrics.is_null() {
                break;
            }
            let metric: *mut PluginMetric = metrics.add(i).read();
            if metric.is_null() {
                continue;
            }
            let PluginMetric { keyValues, count } = metric.read();
            let mut row = Vec::new();
            for j in 0..usize::try_from(count).unwrap_or(0) {
                if keyValues.is_null() {
                    break;
                }
                let kv: *mut KeyValue = keyValues.add(j).read();
                if kv.is_null() {
                    continue;
                }
                let KeyValue { key, value } = kv.read();
                row.push((take_string(key), take_string(value)));
                libc::free(kv.cast());
            }
            libc::free(keyValues.cast());
            libc::free(metric.cast());
            rows.push(row);
        }
        libc::free(metrics.cast());
        libc::free(top.cast());
    }
    rows
}

/// Reads and frees a malloc'd C string (NULL: empty).
///
/// # Safety
/// `s` is NULL or a malloc'd NUL-terminated string nobody else uses.
unsafe fn take_string(s: *mut c_char) -> String {
    if s.is_null() {
        return String::new();
    }
    // SAFETY: per this function's contract.
    unsafe {
        let text = CStr::from_ptr(s).to_string_lossy().into_owned();
        libc::free(s.cast());
        text
    }
}

/// A `direct` row taken apart: its labels, and its counters and gauges by name.
pub struct DirectRow {
    pub labels: serde_json::Map<String, serde_json::Value>,
    pub counters: Vec<(String, f64)>,
    pub gauges: Vec<(String, f64)>,
}

/// Parses `direct` rows; rows whose JSON does not parse are skipped.
pub fn direct_rows(rows: Vec<Row>) -> Vec<DirectRow> {
    let object = |row: &Row, key: &str| -> Option<serde_json::Map<String, serde_json::Value>> {
        let text = &row.iter().find(|(k, _)| k == key)?.1;
        serde_json::from_str::<serde_json::Value>(text)
            .ok()?
            .as_object()
            .cloned()
    };
    let numbers = |map: serde_json::Map<String, serde_json::Value>| -> Vec<(String, f64)> {
        map.into_iter()
            .filter_map(|(k, v)| {
                let n = v.as_f64().or_else(|| v.as_str()?.parse().ok())?;
                Some((k, n))
            })
            .collect()
    };
    rows.iter()
        .filter_map(|row| {
            Some(DirectRow {
                labels: object(row, "labels")?,
                counters: numbers(object(row, "counters").unwrap_or_default()),
                gauges: numbers(object(row, "gauges").unwrap_or_default()),
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A tree built as a base builds it (every piece from malloc).
    fn malloc_tree(rows: &[Vec<(&str, &str)>]) -> *mut PluginMetrics {
        fn c_string(s: &str) -> *mut c_char {
            let c = std::ffi::CString::new(s).unwrap();
            // SAFETY: strdup copies a valid NUL-terminated string into malloc'd memory.
            unsafe { libc::strdup(c.as_ptr()) }
        }
        fn array<T>(n: usize) -> *mut T {
            // SAFETY: malloc of n elements (at least one byte).
            unsafe { libc::malloc(std::mem::size_of::<T>() * n.max(1)).cast() }
        }
        let metrics: *mut *mut PluginMetric = array(rows.len());
        for (i, row) in rows.iter().enumerate() {
            let pairs: *mut *mut KeyValue = array(row.len());
            for (j, (k, v)) in row.iter().enumerate() {
                let kv: *mut KeyValue = array(1);
                // SAFETY: fresh allocations of the right sizes.
                unsafe {
                    kv.write(KeyValue {
                        key: c_string(k),
                        value: c_string(v),
                    });
                    pairs.add(j).write(kv);
                }
            }
            let metric: *mut PluginMetric = array(1);
            // SAFETY: as above.
            unsafe {
                metric.write(PluginMetric {
                    keyValues: pairs,
                    count: row.len() as i32,
                });
                metrics.add(i).write(metric);
            }
        }
        let top: *mut PluginMetrics = array(1);
        // SAFETY: as above.
        unsafe {
            top.write(PluginMetrics {
                metrics,
                count: rows.len() as i32,
            })
        };
        top
    }

    #[test]
    fn a_tree_is_read_freed_and_parsed() {
        let tree = malloc_tree(&[
            vec![
                (
                    "labels",
                    r#"{"metric_category":"plugin","pipeline_name":"p","plugin_type":"metric_mock","plugin_id":"metric_mock/0"}"#,
                ),
                ("counters", r#"{"plugin_out_events_total":12}"#),
                ("gauges", "{}"),
            ],
            vec![("labels", "not json")],
        ]);
        // SAFETY: a tree built as the contract says.
        let rows = unsafe { take_tree(tree) };
        assert_eq!(rows.len(), 2);
        let parsed = direct_rows(rows);
        assert_eq!(
            parsed.len(),
            1,
            "the row whose labels are not JSON is skipped"
        );
        assert_eq!(parsed[0].labels["plugin_type"], "metric_mock");
        assert_eq!(
            parsed[0].counters,
            [("plugin_out_events_total".to_owned(), 12.0)]
        );
        // SAFETY: NULL is allowed.
        assert!(unsafe { take_tree(std::ptr::null_mut()) }.is_empty());
    }
}
