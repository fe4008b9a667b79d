//! What the benchmarks read from Linux's `/proc`: the machine, a process's memory (`VmRSS`,
//! `VmHWM`), and the processes this one started (the lab's Envoys). Everything degrades to
//! `None` where `/proc` is not there; nothing here panics.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::Duration;

use serde::Serialize;

/// The machine a run was measured on.
#[derive(Clone, Debug, Default, Serialize)]
pub struct Machine {
    /// Online CPUs (`nproc`).
    pub cpus: usize,
    /// `model name` from `/proc/cpuinfo`.
    pub cpu_model: String,
    /// `MemTotal` from `/proc/meminfo`, in MiB.
    pub memory_mib: u64,
    /// `MemAvailable` when the run started, in MiB.
    pub available_mib: u64,
    /// `uname -r` equivalent (`/proc/sys/kernel/osrelease`).
    pub kernel: String,
    /// `release` or `debug`: a debug build is not a benchmark.
    pub build: String,
    /// 1-minute load average when the run started (a busy machine skews every figure).
    pub load_average: f64,
}

impl Machine {
    pub fn detect() -> Machine {
        let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
        let cpu_model = cpuinfo
            .lines()
            .find_map(|l| {
                let (k, v) = l.split_once(':')?;
                (k.trim() == "model name").then(|| v.trim().to_owned())
            })
            .unwrap_or_else(|| "unknown".into());
        let cpus = std::thread::available_parallelism()
            .map(std::num::NonZeroUsize::get)
            .unwrap_or(1);
        let meminfo = std::fs::read_to_string("/proc/meminfo").unwrap_or_default();
        let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease")
            .map(|s| s.trim().to_owned())
            .unwrap_or_default();
        let load_average = std::fs::read_to_string("/proc/loadavg")
            .ok()
            .and_then(|s| s.split_whitespace().next().and_then(|v| v.parse().ok()))
            .unwrap_or(0.0);
        Machine {
            cpus,
            cpu_model,
            memory_mib: kib_field(&meminfo, "MemTotal").unwrap_or(0) / 1024,
            available_mib: kib_field(&meminfo, "MemAvailable").unwrap_or(0) / 1024,
            kernel,
            build: if cfg!(debug_assertions) {
                "debug".into()
            } else {
                "release".into()
            },
            load_average,
        }
    }
}

/// `MemAvailable` now, in KiB.
pub fn mem_available_kib() -> Option<u64> {
    let meminfo = std::fs::read_to_string("/proc/meminfo").ok()?;
    kib_field(&meminfo, "MemAvailable")
}

/// A `Key:   123 kB` field of a `/proc` status-style file, in KiB.
pub fn kib_field(text: &str, key: &str) -> Option<u64> {
    text.lines().find_map(|l| {
        let (k, v) = l.split_once(':')?;
        if k.trim() != key {
            return None;
        }
        v.split_whitespace().next()?.parse().ok()
    })
}

/// `VmRSS` and `VmHWM` of a process, in KiB.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Memory {
    pub rss_kib: u64,
    pub hwm_kib: u64,
}

pub fn memory_of(pid: &str) -> Option<Memory> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    Some(Memory {
        rss_kib: kib_field(&status, "VmRSS")?,
        hwm_kib: kib_field(&status, "VmHWM")?,
    })
}

pub fn own_memory() -> Option<Memory> {
    memory_of("self")
}

/// Resets this process's `VmHWM` to its current RSS (`echo 5 > /proc/self/clear_refs`, Linux ≥
/// 4.0), so a later reading is the peak of what follows. False where the kernel refuses.
pub fn reset_own_peak() -> bool {
    std::fs::write("/proc/self/clear_refs", "5").is_ok()
}

/// A child of this process, as `/proc/<pid>/stat` shows it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Child {
    pub pid: u32,
    pub name: String,
}

/// This process's direct children (`ppid` = own pid).
pub fn children() -> Vec<Child> {
    let me = std::process::id();
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    let mut out = Vec::new();
    for entry in entries.flatten() {
        let name = entry.file_name();
        let Some(pid) = name.to_str().and_then(|n| n.parse::<u32>().ok()) else {
            continue;
        };
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
            continue;
        };
        if let Some((comm, ppid)) = parse_stat(&stat) {
            if ppid == me {
                out.push(Child { pid, name: comm });
            }
        }
    }
    out
}

/// `(comm, ppid)` from a `/proc/<pid>/stat` line (`pid (comm) state ppid …`; comm may contain
/// spaces and parentheses, so split at the last `)`).
pub fn parse_stat(stat: &str) -> Option<(String, u32)> {
    let open = stat.find('(')?;
    let close = stat.rfind(')')?;
    let comm = stat.get(open + 1..close)?.to_owned();
    let mut rest = stat.get(close + 1..)?.split_whitespace();
    let _state = rest.next()?;
    let ppid = rest.next()?.parse().ok()?;
    Some((comm, ppid))
}

/// What [`ChildSampler`] saw of one kind of child (by process name).
#[derive(Clone, Debug, Default, Serialize)]
pub struct ChildKind {
    /// Distinct processes of this name seen.
    pub processes: usize,
    /// The largest sum of their `VmRSS` in one sample, in KiB.
    pub peak_rss_sum_kib: u64,
    /// The sum of each one's last `VmHWM` reading, in KiB (an upper bound of the peak).
    pub hwm_sum_kib: u64,
}

/// What [`ChildSampler`] saw of this process's children.
#[derive(Clone, Debug, Default, Serialize)]
pub struct ChildPeak {
    /// The largest sum of every child's `VmRSS` seen in one sample, in KiB.
    pub peak_rss_sum_kib: u64,
    /// How many children were alive in that sample.
    pub alive_at_peak: usize,
    /// The sum over every child seen of its last `VmHWM` reading, in KiB: an upper bound of the
    /// peak, reached only if every child peaked at once.
    pub hwm_sum_kib: u64,
    /// Per process name (`envoy`, `spire-server`, …).
    pub by_name: BTreeMap<String, ChildKind>,
    /// Samples taken.
    pub samples: usize,
}

/// Polls this process's children every `interval` on its own thread until stopped.
pub struct ChildSampler {
    stop: Arc<AtomicBool>,
    handle: Option<JoinHandle<ChildPeak>>,
}

impl ChildSampler {
    pub fn start(interval: Duration) -> ChildSampler {
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let handle = std::thread::Builder::new()
            .name("bench-mem-sampler".into())
            .spawn(move || {
                let mut peak = ChildPeak::default();
                // pid → (name, last VmHWM)
                let mut hwm: BTreeMap<u32, (String, u64)> = BTreeMap::new();
                loop {
                    let stopping = flag.load(Ordering::Relaxed);
                    let mut sum = 0;
                    let mut alive = 0;
                    let mut by_name: BTreeMap<String, u64> = BTreeMap::new();
                    for child in children() {
                        if let Some(m) = memory_of(&child.pid.to_string()) {
                            sum += m.rss_kib;
                            alive += 1;
                            *by_name.entry(child.name.clone()).or_default() += m.rss_kib;
                            hwm.insert(child.pid, (child.name, m.hwm_kib));
                        }
                    }
                    peak.samples += 1;
                    if sum > peak.peak_rss_sum_kib {
                        peak.peak_rss_sum_kib = sum;
                        peak.alive_at_peak = alive;
                    }
                    for (name, rss) in by_name {
                        let kind = peak.by_name.entry(name).or_default();
                        kind.peak_rss_sum_kib = kind.peak_rss_sum_kib.max(rss);
                    }
                    if stopping {
                        break;
                    }
                    std::thread::sleep(interval);
                }
                for (name, h) in hwm.values() {
                    let kind = peak.by_name.entry(name.clone()).or_default();
                    kind.processes += 1;
                    kind.hwm_sum_kib += h;
                    peak.hwm_sum_kib += h;
                }
                peak
            })
            .ok();
        ChildSampler { stop, handle }
    }

    /// Stops sampling (after one last sample) and returns what was seen.
    pub fn finish(mut self) -> ChildPeak {
        self.stop.store(true, Ordering::Relaxed);
        self.handle
            .take()
            .and_then(|h| h.join().ok())
            .unwrap_or_default()
    }
}

impl Drop for ChildSampler {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(h) = self.handle.take() {
            let _ = h.join();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stat_lines_with_odd_names() {
        assert_eq!(
            parse_stat("42 (envoy) S 7 42 42 0"),
            Some(("envoy".into(), 7))
        );
        assert_eq!(
            parse_stat("43 (a (b) c) R 9 1"),
            Some(("a (b) c".into(), 9))
        );
        assert_eq!(parse_stat("garbage"), None);
    }

    #[test]
    fn kib_fields() {
        let s = "Name:\tx\nVmHWM:\t  1234 kB\nVmRSS:\t 99 kB\n";
        assert_eq!(kib_field(s, "VmHWM"), Some(1234));
        assert_eq!(kib_field(s, "VmRSS"), Some(99));
        assert_eq!(kib_field(s, "VmPeak"), None);
    }
}
