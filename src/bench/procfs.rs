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
    /// `RUST_BACKTRACE` / `RUST_LIB_BACKTRACE` when set: with either, every `anyhow` error
    /// (regorus uses them internally) captures a backtrace, which slows in-process Rego.
    pub rust_backtrace: Option<String>,
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
            rust_backtrace: ["RUST_LIB_BACKTRACE", "RUST_BACKTRACE"]
                .iter()
                .find_map(|v| std::env::var(v).ok().map(|x| format!("{v}={x}"))),
        }
    }
}

/// The 1-minute load average now.
pub fn load_average() -> Option<f64> {
    std::fs::read_to_string("/proc/loadavg")
        .ok()?
        .split_whitespace()
        .next()?
        .parse()
        .ok()
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

/// `Pss` (proportional set size: shared pages divided among their users) of a process, in KiB,
/// from `/proc/<pid>/smaps_rollup` (Linux ≥ 4.14). Unlike RSS it can be summed across processes
/// that share a binary.
pub fn pss_of(pid: &str) -> Option<u64> {
    let rollup = std::fs::read_to_string(format!("/proc/{pid}/smaps_rollup")).ok()?;
    kib_field(&rollup, "Pss")
}

/// CPU seconds (`utime + stime`) of the process or thread whose `stat` file is at `path`
/// (`/proc/<pid>/stat`, `/proc/self/task/<tid>/stat`).
pub fn cpu_of(path: &str) -> Option<f64> {
    let stat = std::fs::read_to_string(path).ok()?;
    let close = stat.rfind(')')?;
    let fields: Vec<&str> = stat.get(close + 1..)?.split_whitespace().collect();
    let at = |n: usize| -> Option<f64> { fields.get(n - 3)?.parse::<f64>().ok() };
    Some((at(14)? + at(15)?) / 100.0)
}

/// The `stat` file of the calling thread (`/proc/<pid>/task/<tid>/stat`).
pub fn own_thread_stat() -> Option<String> {
    let link = std::fs::read_link("/proc/thread-self").ok()?;
    Some(format!("/proc/{}/stat", link.display()))
}

/// CPU seconds used so far: `(this process, its reaped children)` from `/proc/self/stat`
/// (`utime + stime`, `cutime + cstime`; Linux reports them in USER_HZ = 100 ticks per second).
pub fn cpu_seconds() -> Option<(f64, f64)> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    let close = stat.rfind(')')?;
    // After the comm: state(3) ppid(4) … utime(14) stime(15) cutime(16) cstime(17).
    let fields: Vec<&str> = stat.get(close + 1..)?.split_whitespace().collect();
    let at = |n: usize| -> Option<f64> { fields.get(n - 3)?.parse::<f64>().ok() };
    Some(((at(14)? + at(15)?) / 100.0, (at(16)? + at(17)?) / 100.0))
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

/// This process's direct children (`ppid` = own pid), except forks that have not yet exec'd
/// (they still carry this process's name).
pub fn children() -> Vec<Child> {
    let me = std::process::id();
    let own_name = std::fs::read_to_string("/proc/self/comm")
        .map(|n| n.trim().to_owned())
        .unwrap_or_default();
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
            if ppid == me && comm != own_name {
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
    /// The largest sum of their `Pss` in one sample, in KiB (shared pages counted once).
    pub peak_pss_sum_kib: u64,
}

/// What [`ChildSampler`] saw of this process's children.
#[derive(Clone, Debug, Default, Serialize)]
pub struct ChildPeak {
    /// The largest sum of every child's `VmRSS` seen in one sample, in KiB.
    pub peak_rss_sum_kib: u64,
    /// How many children were alive in that sample.
    pub alive_at_peak: usize,
    /// The largest sum of every child's `Pss` in one sample, in KiB (shared pages counted once).
    pub peak_pss_sum_kib: u64,
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
                    let mut pss_sum = 0;
                    let mut alive = 0;
                    // name → (RSS sum, PSS sum)
                    let mut by_name: BTreeMap<String, (u64, u64)> = BTreeMap::new();
                    for child in children() {
                        let pid = child.pid.to_string();
                        if let Some(m) = memory_of(&pid) {
                            let pss = pss_of(&pid).unwrap_or(0);
                            sum += m.rss_kib;
                            pss_sum += pss;
                            alive += 1;
                            let entry = by_name.entry(child.name.clone()).or_default();
                            entry.0 += m.rss_kib;
                            entry.1 += pss;
                            hwm.insert(child.pid, (child.name, m.hwm_kib));
                        }
                    }
                    peak.samples += 1;
                    if sum > peak.peak_rss_sum_kib {
                        peak.peak_rss_sum_kib = sum;
                        peak.alive_at_peak = alive;
                    }
                    peak.peak_pss_sum_kib = peak.peak_pss_sum_kib.max(pss_sum);
                    for (name, (rss, pss)) in by_name {
                        let kind = peak.by_name.entry(name).or_default();
                        kind.peak_rss_sum_kib = kind.peak_rss_sum_kib.max(rss);
                        kind.peak_pss_sum_kib = kind.peak_pss_sum_kib.max(pss);
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
    fn own_cpu_and_pss_are_readable() {
        let (own, _) = cpu_seconds().unwrap();
        assert!(own >= 0.0);
        assert!(pss_of("self").unwrap() > 0);
    }

    #[test]
    fn kib_fields() {
        let s = "Name:\tx\nVmHWM:\t  1234 kB\nVmRSS:\t 99 kB\n";
        assert_eq!(kib_field(s, "VmHWM"), Some(1234));
        assert_eq!(kib_field(s, "VmRSS"), Some(99));
        assert_eq!(kib_field(s, "VmPeak"), None);
    }
}
