//! `processor_appender`: appends `Value` to the content `Key` of every log (creating it empty
//! first), as iLogtail's extended processor of that name; its users build label lists such as
//! `|host#$#{{__host__}}|ip#$#{{__ip__}}` with it.
//!
//! `{{...}}` placeholders in `Value` are replaced once, when the processor is built, as iLogtail
//! does: `{{__host__}}` by the host name, `{{__ip__}}` by the first IPv4 address of an interface
//! that is up and not loopback (empty when there is none), `{{$NAME}}` by the environment variable
//! `NAME` (empty when unset). Any other placeholder becomes its bare name, which is what iLogtail
//! gives for its cloud-metadata placeholders (`{{__cloud_region__}}` …) when no cloud metadata
//! service is configured; Tailrace reads no cloud metadata.
//!
//! With `SortLabels`, the value is then read as `key#$#value` labels joined by `|`: pieces that
//! are not labels are dropped, and the labels are sorted by key (iLogtail's metric label form).

use bytes::{Bytes, BytesMut};
use serde::Deserialize;

use super::{parse_options, Options, ProcessorError, Registration};
use crate::plugin::Processor;
use crate::PipelineEventGroup;

pub const REGISTRATION: Registration =
    Registration::new::<AppenderConfig>("processor_appender", build);

/// iLogtail's options and defaults.
#[derive(Debug, Default, Deserialize)]
#[serde(default, rename_all = "PascalCase")]
pub struct AppenderConfig {
    /// The content to append to (created when the log lacks it). Required.
    pub key: String,
    /// What to append, with `{{...}}` placeholders. Required.
    pub value: String,
    /// Rewrite the result as sorted `key#$#value|...` labels (default false).
    pub sort_labels: bool,
}

fn build(options: &Options) -> Result<Box<dyn Processor>, ProcessorError> {
    Ok(Box::new(ProcessorAppender::new(parse_options(options)?)?))
}

pub struct ProcessorAppender {
    key: Bytes,
    /// `Value` with its placeholders replaced.
    value: Bytes,
    sort_labels: bool,
}

impl ProcessorAppender {
    pub fn new(config: AppenderConfig) -> Result<Self, ProcessorError> {
        if config.key.is_empty() {
            return Err(ProcessorError::new(
                "Key",
                "must name the content to append to",
            ));
        }
        if config.value.is_empty() {
            return Err(ProcessorError::new("Value", "must not be empty"));
        }
        Ok(ProcessorAppender {
            key: Bytes::from(config.key),
            value: Bytes::from(replace_placeholders(&config.value, &|name| {
                placeholder_value(name)
            })),
            sort_labels: config.sort_labels,
        })
    }
}

impl Processor for ProcessorAppender {
    fn process(&mut self, group: &mut PipelineEventGroup) {
        for log in group.logs_mut() {
            let old = log.content(&self.key).cloned().unwrap_or_default();
            let mut value = BytesMut::with_capacity(old.len() + self.value.len());
            value.extend_from_slice(&old);
            value.extend_from_slice(&self.value);
            let value = if self.sort_labels {
                sort_labels(&value).unwrap_or_else(|| value.freeze())
            } else {
                value.freeze()
            };
            log.set_content(self.key.clone(), value);
        }
    }
}

/// `value` with each `{{name}}` replaced by `lookup(name)` (iLogtail's `{{[^}]+}}`).
fn replace_placeholders(value: &str, lookup: &dyn Fn(&str) -> String) -> String {
    let mut out = String::with_capacity(value.len());
    let mut rest = value;
    while let Some(open) = rest.find("{{") {
        let inner = &rest[open + 2..];
        let name_len = inner.find('}').unwrap_or(inner.len());
        if name_len == 0 || !inner[name_len..].starts_with("}}") {
            // Not a placeholder: keep the braces and look further on.
            out.push_str(&rest[..open + 2]);
            rest = inner;
            continue;
        }
        out.push_str(&rest[..open]);
        out.push_str(&lookup(&inner[..name_len]));
        rest = &inner[name_len + 2..];
    }
    out.push_str(rest);
    out
}

/// The value of one placeholder (see the module documentation).
fn placeholder_value(name: &str) -> String {
    if let Some(variable) = name.strip_prefix('$') {
        return std::env::var_os(variable)
            .map(|v| v.to_string_lossy().into_owned())
            .unwrap_or_default();
    }
    match name {
        "__ip__" => host_ipv4().unwrap_or_default(),
        "__host__" => host_name(),
        other => other.to_owned(),
    }
}

/// `key#$#value` labels joined by `|`, sorted by key; `None` when `value` holds no label.
fn sort_labels(value: &[u8]) -> Option<Bytes> {
    const SEPARATOR: &[u8] = b"#$#";
    let mut labels: Vec<(&[u8], &[u8])> = value
        .split(|&b| b == b'|')
        .filter_map(|piece| {
            let at = memchr::memmem::find(piece, SEPARATOR)?;
            Some((&piece[..at], &piece[at + SEPARATOR.len()..]))
        })
        .collect();
    if labels.is_empty() {
        return None;
    }
    labels.sort_by(|a, b| a.0.cmp(b.0));
    let mut out = BytesMut::with_capacity(value.len());
    for (i, (key, value)) in labels.iter().enumerate() {
        if i > 0 {
            out.extend_from_slice(b"|");
        }
        out.extend_from_slice(key);
        out.extend_from_slice(SEPARATOR);
        out.extend_from_slice(value);
    }
    Some(out.freeze())
}

/// The host name, as the kernel has it.
pub fn host_name() -> String {
    let mut buf = [0u8; 256];
    // SAFETY: the buffer is valid for its length; gethostname writes at most that many bytes.
    let rc = unsafe { libc::gethostname(buf.as_mut_ptr().cast(), buf.len()) };
    if rc != 0 {
        return String::new();
    }
    let end = buf.iter().position(|&b| b == 0).unwrap_or(buf.len());
    String::from_utf8_lossy(&buf[..end]).into_owned()
}

/// The first IPv4 address of an interface that is up and not a loopback (iLogtail's choice).
pub fn host_ipv4() -> Option<String> {
    let mut addrs: *mut libc::ifaddrs = std::ptr::null_mut();
    // SAFETY: getifaddrs fills `addrs` with a list that freeifaddrs releases below.
    if unsafe { libc::getifaddrs(&mut addrs) } != 0 {
        return None;
    }
    let mut found = None;
    let mut cursor = addrs;
    while !cursor.is_null() {
        // SAFETY: `cursor` is a node of the list getifaddrs returned, not yet freed.
        let entry = unsafe { &*cursor };
        cursor = entry.ifa_next;
        let flags = entry.ifa_flags;
        let up = flags & libc::IFF_UP as libc::c_uint != 0;
        let loopback = flags & libc::IFF_LOOPBACK as libc::c_uint != 0;
        if !up || loopback || entry.ifa_addr.is_null() {
            continue;
        }
        // SAFETY: a non-null ifa_addr points to a sockaddr whose family says its real type.
        if i32::from(unsafe { (*entry.ifa_addr).sa_family }) != libc::AF_INET {
            continue;
        }
        // SAFETY: an AF_INET address is a sockaddr_in.
        let inet = unsafe { &*(entry.ifa_addr as *const libc::sockaddr_in) };
        let ip = std::net::Ipv4Addr::from(u32::from_be(inet.sin_addr.s_addr));
        if !ip.is_loopback() {
            found = Some(ip.to_string());
            break;
        }
    }
    // SAFETY: `addrs` came from getifaddrs and is freed once.
    unsafe { libc::freeifaddrs(addrs) };
    found
}

#[cfg(test)]
mod tests {
    use super::super::test_support::{contents, lines, options, pairs};
    use super::*;
    use serde_json::json;

    fn processor(value: serde_json::Value) -> ProcessorAppender {
        ProcessorAppender::new(serde_json::from_value(value).unwrap()).unwrap()
    }

    fn kernel_hostname() -> String {
        std::fs::read_to_string("/proc/sys/kernel/hostname")
            .unwrap()
            .trim()
            .to_owned()
    }

    /// iLogtail's TestIgnoreIfExistTrue, with this machine's host name, address and environment.
    #[test]
    fn appends_placeholders_to_a_new_then_existing_field() {
        std::env::set_var("TAILRACE_APPENDER_TEST", "xxx");
        std::env::remove_var("TAILRACE_APPENDER_UNSET");
        let mut p = processor(json!({
            "Key": "a",
            "Value": "|host#$#{{__host__}}|ip#$#{{__ip__}}|env:{{$TAILRACE_APPENDER_TEST}}{{$TAILRACE_APPENDER_UNSET}}|switch#$#{{__cloud_image_id__}}",
        }));
        let host = kernel_hostname();
        let ip = host_ipv4().unwrap_or_default();
        let once = format!("|host#$#{host}|ip#$#{ip}|env:xxx|switch#$#__cloud_image_id__");
        let mut group = lines(&[b"test_value"]);
        p.process(&mut group);
        assert_eq!(
            contents(&group, 0),
            pairs(&[("content", "test_value"), ("a", &once)])
        );
        p.process(&mut group);
        assert_eq!(
            contents(&group, 0),
            pairs(&[("content", "test_value"), ("a", &format!("{once}{once}"))])
        );
    }

    #[test]
    fn sort_labels_keeps_only_labels_sorted_by_key() {
        let mut p = processor(json!({
            "Key": "content",
            "Value": "|zone#$#b|{{__host__}}|app#$#x#$#y|env:prod",
            "SortLabels": true,
        }));
        let mut group = lines(&[b"", b"m#$#1"]);
        p.process(&mut group);
        assert_eq!(
            contents(&group, 0),
            pairs(&[("content", "app#$#x#$#y|zone#$#b")])
        );
        assert_eq!(
            contents(&group, 1),
            pairs(&[("content", "app#$#x#$#y|m#$#1|zone#$#b")])
        );
        // A value with no label at all is left as appended.
        let mut p = processor(json!({"Key": "k", "Value": "plain", "SortLabels": true}));
        let mut group = lines(&[b"x"]);
        p.process(&mut group);
        assert_eq!(
            contents(&group, 0),
            pairs(&[("content", "x"), ("k", "plain")])
        );
    }

    #[test]
    fn placeholders_edge_cases() {
        let lookup = |name: &str| format!("<{name}>");
        assert_eq!(replace_placeholders("a{{b}}c{{d}}", &lookup), "a<b>c<d>");
        assert_eq!(replace_placeholders("{{}}{{x", &lookup), "{{}}{{x");
        assert_eq!(replace_placeholders("{{a}b}}", &lookup), "{{a}b}}");
        assert_eq!(replace_placeholders("{{{a}}}", &lookup), "<{a>}");
        assert_eq!(replace_placeholders("héllo {{x}}", &lookup), "héllo <x>");
    }

    #[test]
    fn the_host_ip_is_an_up_non_loopback_ipv4_address() {
        if let Some(ip) = host_ipv4() {
            let ip: std::net::Ipv4Addr = ip.parse().unwrap();
            assert!(!ip.is_loopback());
        }
        assert_eq!(host_name(), kernel_hostname());
    }

    #[test]
    fn key_and_value_are_required() {
        let e = build(&options(json!({"Value": "x"}))).err().unwrap();
        assert_eq!(e.field, "Key");
        let e = build(&options(json!({"Key": "x"}))).err().unwrap();
        assert_eq!(e.field, "Value");
        let e = build(&options(json!({"Key": "x", "Value": 3})))
            .err()
            .unwrap();
        assert_eq!(e.field, "Value");
    }
}
