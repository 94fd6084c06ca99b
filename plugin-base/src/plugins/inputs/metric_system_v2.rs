//! `metric_system_v2`: iLogtail's host metrics input. Each collect emits CPU, memory, disk,
//! network, TCP, open-file and load figures as metric events with iLogtail's names
//! (`cpu_util`, `mem_total`, `disk_space_usage`, `net_in`, `system_load1`, ...) and labels
//! (`hostname`, `ip`, the configured `Labels`, and `disk`/`path`/`device`/`fs_type`/`interface`
//! per disk or interface). Flushed as logs they take iLogtail's metric log form (`__name__`,
//! `__labels__`, `__time_nano__`, `__value__`).
//!
//! Figures come from `/proc` through the `procfs` crate (the files iLogtail's gopsutil reads)
//! and from statvfs; rates (`cpu_*_util`, `disk_*bps`, `net_in`...) need two collects, so they
//! start at the second one, as in iLogtail.

use std::collections::{BTreeMap, HashMap};
use std::time::{Duration, Instant};

use bytes::Bytes;
use procfs::{Current, CurrentSI};
use regex::Regex;
use serde::Deserialize;
use serde_json::Value;
use tailrace::plugin::MetricInput;
use tailrace::{MetricEvent, MetricValue, PipelineEvent, PipelineEventGroup};

use crate::context::AlarmLevel;
use crate::runtime::clock::now;
use crate::runtime::registry::{parse_detail, PluginContext, PluginFactory};

#[derive(Debug, Deserialize)]
#[serde(default, rename_all = "PascalCase")]
pub struct SystemV2Config {
    /// Load and boot time are always collected (iLogtail's `CollectCore`); accepted.
    pub core: bool,
    #[serde(rename = "CPU")]
    pub cpu: bool,
    pub mem: bool,
    pub disk: bool,
    pub net: bool,
    /// TCP segments and established connections (`/proc/net/snmp`).
    pub protocol: bool,
    /// Accepted; per-state TCP counts are not collected (`protocol_tcp_established` is).
    #[serde(rename = "TCP")]
    pub tcp: bool,
    pub open_fd: bool,
    /// The `cpu_*_util` percentages (else only `cpu_count`).
    #[serde(rename = "CPUPercent")]
    pub cpu_percent: bool,
    /// Only these disks (device names, `sda`); empty: all.
    pub disks: Vec<String>,
    /// Only these interfaces; empty: all.
    pub net_interfaces: Vec<String>,
    /// Labels added to every metric.
    pub labels: BTreeMap<String, String>,
    pub exclude_disk_fs_type: String,
    pub exclude_disk_path: String,
    /// This input's own collect interval in ms (0: the pipeline's `InputIntervalMs`).
    pub interval_ms: u64,
}

impl Default for SystemV2Config {
    fn default() -> Self {
        SystemV2Config {
            core: false,
            cpu: true,
            mem: true,
            disk: true,
            net: true,
            protocol: true,
            tcp: false,
            open_fd: true,
            cpu_percent: true,
            disks: Vec::new(),
            net_interfaces: Vec::new(),
            labels: BTreeMap::new(),
            exclude_disk_fs_type: "^(autofs|binfmt_misc|cgroup|configfs|debugfs|devpts|devtmpfs|\
                fusectl|hugetlbfs|mqueue|overlay|proc|procfs|pstore|rpc_pipefs|securityfs|sysfs|\
                tracefs)$"
                .to_owned(),
            exclude_disk_path: "^/(dev|proc|sys|var/lib/docker/.+|var/lib/kubelet/pods/.+)($|/)"
                .to_owned(),
            interval_ms: 0,
        }
    }
}

pub const PLUGIN: (&str, PluginFactory) = ("metric_system_v2", PluginFactory::MetricInput(build));

fn build(ctx: &PluginContext, detail: &Value) -> Result<Box<dyn MetricInput>, String> {
    let config: SystemV2Config = parse_detail(detail)?;
    let regex = |field: &str, text: &str| {
        if text.is_empty() {
            Ok(None)
        } else {
            Regex::new(text)
                .map(Some)
                .map_err(|e| format!("{field}: invalid regex {text:?}: {e}"))
        }
    };
    let exclude_fs_type = regex("ExcludeDiskFsType", &config.exclude_disk_fs_type)?;
    let exclude_path = regex("ExcludeDiskPath", &config.exclude_disk_path)?;
    let mut labels = BTreeMap::new();
    labels.insert("hostname".to_owned(), hostname());
    labels.insert("ip".to_owned(), ip_address());
    labels.extend(config.labels.clone());
    Ok(Box::new(SystemV2 {
        config,
        ctx: ctx.clone(),
        labels,
        exclude_fs_type,
        exclude_path,
        last_cpu: None,
        last_disk: None,
        last_net: None,
        last_tcp: None,
        alarmed: false,
    }))
}

fn hostname() -> String {
    nix::unistd::gethostname()
        .ok()
        .and_then(|h| h.into_string().ok())
        .unwrap_or_default()
}

/// The first IPv4 address of an interface that is up and not loopback (iLogtail's
/// `GetIPAddress`).
fn ip_address() -> String {
    let Ok(addrs) = nix::ifaddrs::getifaddrs() else {
        return String::new();
    };
    for ifa in addrs {
        let flags = ifa.flags;
        if flags.contains(nix::net::if_::InterfaceFlags::IFF_LOOPBACK)
            || !flags.contains(nix::net::if_::InterfaceFlags::IFF_UP)
        {
            continue;
        }
        if let Some(ip) = ifa
            .address
            .as_ref()
            .and_then(|a| a.as_sockaddr_in())
            .map(|a| a.ip())
        {
            return ip.to_string();
        }
    }
    String::new()
}

/// CPU ticks: busy and total, and each kind.
#[derive(Clone, Copy, Default)]
struct CpuTicks {
    busy: f64,
    total: f64,
    user: f64,
    system: f64,
    nice: f64,
    iowait: f64,
    irq: f64,
    softirq: f64,
    steal: f64,
    guest: f64,
    guest_nice: f64,
}

#[derive(Clone, Copy, Default)]
struct DiskCounters {
    read_bytes: u64,
    write_bytes: u64,
    reads: u64,
    writes: u64,
    read_time: u64,
    write_time: u64,
    io_time: u64,
}

#[derive(Clone, Copy, Default)]
struct NetCounters {
    bytes_in: u64,
    bytes_out: u64,
    packets_in: u64,
    packets_out: u64,
    errs: u64,
    drops: u64,
}

struct SystemV2 {
    config: SystemV2Config,
    ctx: PluginContext,
    labels: BTreeMap<String, String>,
    exclude_fs_type: Option<Regex>,
    exclude_path: Option<Regex>,
    last_cpu: Option<CpuTicks>,
    last_disk: Option<(Instant, HashMap<String, DiskCounters>)>,
    last_net: Option<(Instant, HashMap<String, NetCounters>)>,
    last_tcp: Option<(u64, u64, u64)>,
    /// A failure to read a source raises one alarm, not one per collect.
    alarmed: bool,
}

/// The metrics of one collect.
struct Out {
    time: (u32, u32),
    events: Vec<PipelineEvent>,
}

impl Out {
    fn add(&mut self, name: &str, labels: &BTreeMap<String, String>, value: f64) {
        let tags = labels
            .iter()
            .map(|(k, v)| (Bytes::from(k.clone()), Bytes::from(v.clone())))
            .collect();
        self.events
            .push(PipelineEvent::Metric(Box::new(MetricEvent {
                name: Bytes::from(name.to_owned()),
                time: self.time.0,
                time_ns: Some(self.time.1),
                value: MetricValue::Untyped(value),
                tags,
            })));
    }
}

fn delta(now: u64, last: u64) -> f64 {
    now.saturating_sub(last) as f64
}

impl SystemV2 {
    fn failed(&mut self, what: &str, e: impl std::fmt::Display) {
        tracing::debug!("metric_system_v2: cannot read {what}: {e}");
        if !self.alarmed {
            self.alarmed = true;
            self.ctx.alarm(
                "READ_PROC_ALARM",
                AlarmLevel::Warning,
                format!("metric_system_v2: cannot read {what}: {e}"),
            );
        }
    }

    fn collect_core(&mut self, out: &mut Out) {
        match procfs::LoadAverage::current() {
            Ok(load) => {
                // /proc/loadavg has two decimals; f32 would add noise.
                let round = |v: f32| (f64::from(v) * 100.0).round() / 100.0;
                out.add("system_load1", &self.labels, round(load.one));
                out.add("system_load5", &self.labels, round(load.five));
                out.add("system_load15", &self.labels, round(load.fifteen));
            }
            Err(e) => self.failed("/proc/loadavg", e),
        }
        match procfs::KernelStats::current() {
            Ok(stat) => out.add("system_boot_time", &self.labels, stat.btime as f64),
            Err(e) => self.failed("/proc/stat", e),
        }
    }

    fn collect_cpu(&mut self, out: &mut Out) {
        let stat = match procfs::KernelStats::current() {
            Ok(stat) => stat,
            Err(e) => return self.failed("/proc/stat", e),
        };
        out.add("cpu_count", &self.labels, stat.cpu_time.len() as f64);
        let t = &stat.total;
        let o = |v: Option<u64>| v.unwrap_or(0) as f64;
        let mut now = CpuTicks {
            user: t.user as f64,
            system: t.system as f64,
            nice: t.nice as f64,
            iowait: o(t.iowait),
            irq: o(t.irq),
            softirq: o(t.softirq),
            steal: o(t.steal),
            guest: o(t.guest),
            guest_nice: o(t.guest_nice),
            ..Default::default()
        };
        now.busy =
            now.guest_nice + now.guest + now.nice + now.softirq + now.irq + now.user + now.system;
        now.total = now.busy + t.idle as f64 + now.iowait + now.steal;
        if let Some(last) = self.last_cpu.filter(|_| self.config.cpu_percent) {
            let total = now.total - last.total;
            if total > 0.0 {
                let pct = |a: f64, b: f64| 100.0 * (a - b) / total;
                let l = &self.labels;
                out.add("cpu_util", l, pct(now.busy, last.busy));
                out.add("cpu_wait_util", l, pct(now.iowait, last.iowait));
                out.add("cpu_sys_util", l, pct(now.system, last.system));
                out.add("cpu_user_util", l, pct(now.user, last.user));
                out.add("cpu_irq_util", l, pct(now.irq, last.irq));
                out.add("cpu_softirq_util", l, pct(now.softirq, last.softirq));
                out.add("cpu_nice_util", l, pct(now.nice, last.nice));
                out.add("cpu_steal_util", l, pct(now.steal, last.steal));
                out.add("cpu_guest_util", l, pct(now.guest, last.guest));
                out.add(
                    "cpu_guestnice_util",
                    l,
                    pct(now.guest_nice, last.guest_nice),
                );
            }
        }
        self.last_cpu = Some(now);
    }

    fn collect_mem(&mut self, out: &mut Out) {
        let m = match procfs::Meminfo::current() {
            Ok(m) => m,
            Err(e) => return self.failed("/proc/meminfo", e),
        };
        // gopsutil's figures: Cached includes SReclaimable; Used is what the rest leaves.
        let total = m.mem_total as f64;
        let cached = (m.cached + m.s_reclaimable.unwrap_or(0)) as f64;
        let free = m.mem_free as f64;
        let used = (total - free - m.buffers as f64 - cached).max(0.0);
        let l = &self.labels;
        if total > 0.0 {
            out.add("mem_util", l, 100.0 * used / total);
        }
        out.add("mem_cache", l, cached);
        out.add("mem_free", l, free);
        out.add(
            "mem_available",
            l,
            m.mem_available.map(|v| v as f64).unwrap_or(free + cached),
        );
        out.add("mem_used", l, used);
        out.add("mem_total", l, total);
        let swap_used = m.swap_total.saturating_sub(m.swap_free) as f64;
        let swap_util = if m.swap_total > 0 {
            100.0 * swap_used / m.swap_total as f64
        } else {
            0.0
        };
        out.add("mem_swap_util", l, swap_util);
    }

    fn collect_disk_usage(&mut self, out: &mut Out) {
        let text = match std::fs::read_to_string("/proc/1/mounts")
            .or_else(|_| std::fs::read_to_string("/proc/self/mounts"))
        {
            Ok(text) => text,
            Err(e) => return self.failed("/proc/1/mounts", e),
        };
        for line in text.lines() {
            let parts: Vec<&str> = line.split_whitespace().collect();
            if parts.len() < 4 {
                continue;
            }
            let (device, fs_type) = (parts[0], parts[2]);
            let path = parts[1].replace("\\040", " ").replace("\\011", "\t");
            if self
                .exclude_fs_type
                .as_ref()
                .is_some_and(|r| r.is_match(fs_type))
                || self
                    .exclude_path
                    .as_ref()
                    .is_some_and(|r| r.is_match(&path))
            {
                continue;
            }
            let Ok(vfs) = nix::sys::statvfs::statvfs(path.as_str()) else {
                continue;
            };
            let frsize = vfs.fragment_size() as f64;
            let total = vfs.blocks() as f64 * frsize;
            let free = vfs.blocks_available() as f64 * frsize;
            let used = (vfs.blocks() as f64 - vfs.blocks_free() as f64) * frsize;
            let inodes = vfs.files() as f64;
            let inodes_used = inodes - vfs.files_free() as f64;
            let mut labels = self.labels.clone();
            labels.insert("path".to_owned(), path.clone());
            labels.insert("device".to_owned(), device.to_owned());
            labels.insert("fs_type".to_owned(), fs_type.to_owned());
            let pct = |a: f64, b: f64| if b > 0.0 { 100.0 * a / b } else { 0.0 };
            out.add("disk_space_usage", &labels, pct(used, used + free));
            out.add("disk_inode_usage", &labels, pct(inodes_used, inodes));
            out.add("disk_space_used", &labels, used);
            out.add("disk_space_total", &labels, total);
            out.add("disk_inode_total", &labels, inodes);
            out.add("disk_inode_used", &labels, inodes_used);
        }
    }

    fn collect_disk_io(&mut self, out: &mut Out) {
        let stats = match procfs::diskstats() {
            Ok(stats) => stats,
            Err(e) => return self.failed("/proc/diskstats", e),
        };
        let now_at = Instant::now();
        let mut now = HashMap::new();
        let mut total = DiskCounters::default();
        for d in stats {
            if !self.config.disks.is_empty() && !self.config.disks.contains(&d.name) {
                continue;
            }
            let c = DiskCounters {
                read_bytes: d.sectors_read * 512,
                write_bytes: d.sectors_written * 512,
                reads: d.reads,
                writes: d.writes,
                read_time: d.time_reading,
                write_time: d.time_writing,
                io_time: d.time_in_progress,
            };
            // A name ending in a digit is a partition: not added to the total.
            if !d.name.ends_with(|ch: char| ch.is_ascii_digit()) {
                total.read_bytes += c.read_bytes;
                total.write_bytes += c.write_bytes;
                total.reads += c.reads;
                total.writes += c.writes;
                total.read_time += c.read_time;
                total.write_time += c.write_time;
                total.io_time += c.io_time;
            }
            now.insert(d.name, c);
        }
        now.insert("total".to_owned(), total);
        if let Some((last_at, last)) = &self.last_disk {
            let secs = now_at.duration_since(*last_at).as_secs_f64();
            if secs > 0.0 {
                let mut names: Vec<&String> = now.keys().collect();
                names.sort();
                for name in names {
                    let (Some(n), Some(l)) = (now.get(name), last.get(name)) else {
                        continue;
                    };
                    let mut labels = self.labels.clone();
                    labels.insert("disk".to_owned(), name.clone());
                    out.add(
                        "disk_rbps",
                        &labels,
                        delta(n.read_bytes, l.read_bytes) / secs,
                    );
                    out.add(
                        "disk_wbps",
                        &labels,
                        delta(n.write_bytes, l.write_bytes) / secs,
                    );
                    out.add("disk_riops", &labels, delta(n.reads, l.reads) / secs);
                    out.add("disk_wiops", &labels, delta(n.writes, l.writes) / secs);
                    let reads = delta(n.reads, l.reads);
                    out.add(
                        "disk_rlatency",
                        &labels,
                        if reads > 0.0 {
                            delta(n.read_time, l.read_time) / reads
                        } else {
                            f64::NAN
                        },
                    );
                    let writes = delta(n.writes, l.writes);
                    out.add(
                        "disk_wlatency",
                        &labels,
                        if writes > 0.0 {
                            delta(n.write_time, l.write_time) / writes
                        } else {
                            f64::NAN
                        },
                    );
                    if name != "total" {
                        out.add(
                            "disk_util",
                            &labels,
                            delta(n.io_time, l.io_time) * 100.0 / 1000.0 / secs,
                        );
                    }
                }
            }
        }
        self.last_disk = Some((now_at, now));
    }

    fn collect_net(&mut self, out: &mut Out) {
        let devices = match procfs::net::dev_status() {
            Ok(d) => d,
            Err(e) => return self.failed("/proc/net/dev", e),
        };
        let now_at = Instant::now();
        let mut now = HashMap::new();
        for (name, d) in devices {
            if !self.config.net_interfaces.is_empty() && !self.config.net_interfaces.contains(&name)
            {
                continue;
            }
            now.insert(
                name,
                NetCounters {
                    bytes_in: d.recv_bytes,
                    bytes_out: d.sent_bytes,
                    packets_in: d.recv_packets,
                    packets_out: d.sent_packets,
                    errs: d.recv_errs + d.sent_errs,
                    drops: d.recv_drop + d.sent_drop,
                },
            );
        }
        if let Some((last_at, last)) = &self.last_net {
            let secs = now_at.duration_since(*last_at).as_secs_f64();
            let mut names: Vec<&String> = now.keys().filter(|n| last.contains_key(*n)).collect();
            names.sort();
            let mut total = (NetCounters::default(), NetCounters::default());
            let mut pairs = Vec::new();
            for name in names {
                let (n, l) = (now[name], last[name]);
                for (sum, c) in [(&mut total.0, n), (&mut total.1, l)] {
                    sum.bytes_in += c.bytes_in;
                    sum.bytes_out += c.bytes_out;
                    sum.packets_in += c.packets_in;
                    sum.packets_out += c.packets_out;
                    sum.errs += c.errs;
                    sum.drops += c.drops;
                }
                pairs.push((name.clone(), n, l));
            }
            if !pairs.is_empty() {
                pairs.push(("total".to_owned(), total.0, total.1));
            }
            if secs > 0.0 {
                for (name, n, l) in pairs {
                    let mut labels = self.labels.clone();
                    labels.insert("interface".to_owned(), name);
                    out.add("net_in", &labels, delta(n.bytes_in, l.bytes_in) / secs);
                    out.add("net_out", &labels, delta(n.bytes_out, l.bytes_out) / secs);
                    out.add(
                        "net_in_pkt",
                        &labels,
                        delta(n.packets_in, l.packets_in) / secs,
                    );
                    out.add(
                        "net_out_pkt",
                        &labels,
                        delta(n.packets_out, l.packets_out) / secs,
                    );
                    let packets =
                        delta(n.packets_in, l.packets_in) + delta(n.packets_out, l.packets_out);
                    if packets > 0.0 {
                        out.add(
                            "net_drop_util",
                            &labels,
                            100.0 * delta(n.drops, l.drops) / packets,
                        );
                        out.add(
                            "net_err_util",
                            &labels,
                            100.0 * delta(n.errs, l.errs) / packets,
                        );
                    }
                }
            }
        }
        self.last_net = Some((now_at, now));
    }

    fn collect_protocol(&mut self, out: &mut Out) {
        let snmp = match procfs::net::snmp() {
            Ok(s) => s,
            Err(e) => return self.failed("/proc/net/snmp", e),
        };
        let l = &self.labels;
        out.add("protocol_tcp_established", l, snmp.tcp_curr_estab as f64);
        let now = (snmp.tcp_out_segs, snmp.tcp_in_segs, snmp.tcp_retrans_segs);
        if let Some(last) = self.last_tcp {
            let out_segs = delta(now.0, last.0);
            let retrans = delta(now.2, last.2);
            out.add("protocol_tcp_outsegs", l, out_segs);
            out.add("protocol_tcp_insegs", l, delta(now.1, last.1));
            out.add("protocol_tcp_retran_segs", l, retrans);
            out.add(
                "protocol_tcp_retran_util",
                l,
                if out_segs > 0.0 {
                    100.0 * retrans / out_segs
                } else {
                    0.0
                },
            );
        }
        self.last_tcp = Some(now);
    }

    fn collect_open_fd(&mut self, out: &mut Out) {
        let text = match std::fs::read_to_string("/proc/sys/fs/file-nr") {
            Ok(t) => t,
            Err(e) => return self.failed("/proc/sys/fs/file-nr", e),
        };
        let parts: Vec<f64> = text
            .split_whitespace()
            .filter_map(|p| p.parse().ok())
            .collect();
        if parts.len() >= 3 {
            out.add("fd_allocated", &self.labels, parts[0]);
            out.add("fd_max", &self.labels, parts[2]);
        }
    }
}

impl MetricInput for SystemV2 {
    fn collect(&mut self, groups: &mut Vec<PipelineEventGroup>) {
        let mut out = Out {
            time: now(),
            events: Vec::new(),
        };
        self.collect_core(&mut out);
        if self.config.cpu {
            self.collect_cpu(&mut out);
        }
        if self.config.mem {
            self.collect_mem(&mut out);
        }
        if self.config.disk {
            self.collect_disk_usage(&mut out);
            self.collect_disk_io(&mut out);
        }
        if self.config.net {
            self.collect_net(&mut out);
        }
        if self.config.protocol {
            self.collect_protocol(&mut out);
        }
        if self.config.open_fd {
            self.collect_open_fd(&mut out);
        }
        let mut group = PipelineEventGroup::with_capacity(out.events.len());
        group.events = out.events;
        groups.push(group);
    }

    fn interval(&self) -> Option<Duration> {
        (self.config.interval_ms > 0).then(|| Duration::from_millis(self.config.interval_ms))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::runtime::registry::tests_support::context;

    /// Each sample of a metric: its labels and value.
    type Samples = Vec<(Vec<(String, String)>, f64)>;

    fn values(out: &[PipelineEventGroup]) -> HashMap<String, Samples> {
        let mut by_name: HashMap<String, Vec<_>> = HashMap::new();
        for event in out.iter().flat_map(|g| &g.events) {
            let PipelineEvent::Metric(m) = event else {
                panic!("not a metric")
            };
            let MetricValue::Untyped(v) = m.value else {
                panic!()
            };
            let tags = m
                .tags
                .iter()
                .map(|(k, v)| {
                    (
                        String::from_utf8_lossy(k).into_owned(),
                        String::from_utf8_lossy(v).into_owned(),
                    )
                })
                .collect();
            by_name
                .entry(String::from_utf8_lossy(&m.name).into_owned())
                .or_default()
                .push((tags, v));
        }
        by_name
    }

    #[test]
    fn two_collects_give_levels_and_rates_with_labels() {
        let detail = serde_json::json!({"Labels": {"team": "obs"}});
        let mut input = build(&context("c/1"), &detail).unwrap();
        let mut out = Vec::new();
        input.collect(&mut out);
        std::thread::sleep(Duration::from_millis(50));
        input.collect(&mut out);
        let v = values(&out[1..]);
        for name in [
            "system_load1",
            "cpu_count",
            "cpu_util",
            "mem_total",
            "mem_util",
            "net_in",
            "fd_max",
        ] {
            assert!(v.contains_key(name), "{name} missing: {:?}", v.keys());
        }
        let (labels, total) = &v["mem_total"][0];
        assert!(*total > 0.0);
        assert!(labels.contains(&("team".to_owned(), "obs".to_owned())));
        assert!(labels.iter().any(|(k, _)| k == "hostname"));
        let util = v["cpu_util"][0].1;
        assert!((0.0..=100.0).contains(&util), "{util}");
    }

    #[test]
    fn bad_regex_names_its_field() {
        let err = build(
            &context("c/1"),
            &serde_json::json!({"ExcludeDiskPath": "("}),
        )
        .err()
        .unwrap();
        assert!(err.starts_with("ExcludeDiskPath"), "{err}");
    }
}
