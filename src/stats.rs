//! Health counters: audio path atomics shared with the capture callback, and encoder latency
//! percentiles over a fixed ring (no allocation when recording).

use std::sync::atomic::{AtomicU64, Ordering};

/// Counters written by the source (callback) and the worker; read by the stats publisher.
#[derive(Debug, Default)]
pub struct AudioCounters {
    /// Times the source found the ring full.
    pub overruns: AtomicU64,
    /// Interleaved samples the source could not write (ring full).
    pub overrun_samples: AtomicU64,
    /// Interleaved samples the worker dropped (oldest first) to catch up.
    pub dropped_samples: AtomicU64,
    /// Samples currently waiting in the ring (updated by the worker).
    pub backlog_samples: AtomicU64,
    /// Windows processed.
    pub windows: AtomicU64,
    /// Of those, windows below the silence floor (not classified).
    pub silent_windows: AtomicU64,
    /// Of those, windows the privacy filter covered.
    pub private_windows: AtomicU64,
    pub non_finite: AtomicU64,
}

impl AudioCounters {
    pub fn add(c: &AtomicU64, n: u64) {
        c.fetch_add(n, Ordering::Relaxed);
    }
    pub fn get(c: &AtomicU64) -> u64 {
        c.load(Ordering::Relaxed)
    }

    /// The counters' values now.
    pub fn snapshot(&self) -> AudioSnapshot {
        AudioSnapshot {
            overruns: Self::get(&self.overruns),
            overrun_samples: Self::get(&self.overrun_samples),
            dropped_samples: Self::get(&self.dropped_samples),
            backlog_samples: Self::get(&self.backlog_samples),
            windows: Self::get(&self.windows),
            silent_windows: Self::get(&self.silent_windows),
            private_windows: Self::get(&self.private_windows),
            non_finite: Self::get(&self.non_finite),
        }
    }
}

/// [`AudioCounters`] read at one moment.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct AudioSnapshot {
    pub overruns: u64,
    pub overrun_samples: u64,
    pub dropped_samples: u64,
    pub backlog_samples: u64,
    pub windows: u64,
    pub silent_windows: u64,
    pub private_windows: u64,
    pub non_finite: u64,
}

/// Latency percentiles in microseconds.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct LatencySummary {
    pub p50_us: u32,
    pub p95_us: u32,
    pub max_us: u32,
}

/// The last `N` latencies in microseconds.
#[derive(Debug, Clone)]
pub struct LatencyRing {
    values: Vec<u32>,
    next: usize,
    filled: usize,
    scratch: Vec<u32>,
}

impl LatencyRing {
    pub fn new(capacity: usize) -> Self {
        Self {
            values: vec![0; capacity.max(1)],
            next: 0,
            filled: 0,
            scratch: Vec::with_capacity(capacity.max(1)),
        }
    }

    pub fn record_us(&mut self, us: u64) {
        self.values[self.next] = us.min(u32::MAX as u64) as u32;
        self.next = (self.next + 1) % self.values.len();
        self.filled = (self.filled + 1).min(self.values.len());
    }

    pub fn len(&self) -> usize {
        self.filled
    }

    pub fn is_empty(&self) -> bool {
        self.filled == 0
    }

    /// Nearest-rank percentile `p` (0–100) in microseconds; 0 when empty.
    pub fn percentile_us(&mut self, p: f64) -> u32 {
        if self.filled == 0 {
            return 0;
        }
        self.scratch.clear();
        self.scratch.extend_from_slice(&self.values[..self.filled]);
        self.scratch.sort_unstable();
        let rank = ((p / 100.0) * self.filled as f64).ceil() as usize;
        self.scratch[rank.clamp(1, self.filled) - 1]
    }

    pub fn max_us(&self) -> u32 {
        self.values[..self.filled]
            .iter()
            .copied()
            .max()
            .unwrap_or(0)
    }

    /// p50, p95 and max.
    pub fn summary(&mut self) -> LatencySummary {
        LatencySummary {
            p50_us: self.percentile_us(50.0),
            p95_us: self.percentile_us(95.0),
            max_us: self.max_us(),
        }
    }
}

/// Peak resident set size (VmHWM) of this process in KiB, from `/proc/self/status`.
pub fn peak_rss_kib() -> Option<u64> {
    proc_status_kib("VmHWM:")
}

/// Current resident set size (VmRSS) in KiB.
pub fn rss_kib() -> Option<u64> {
    proc_status_kib("VmRSS:")
}

fn proc_status_kib(key: &str) -> Option<u64> {
    let s = std::fs::read_to_string("/proc/self/status").ok()?;
    s.lines()
        .find(|l| l.starts_with(key))?
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()
}

/// CPU time (user + system) of this process in seconds, from `/proc/self/stat`.
pub fn cpu_time_s() -> Option<f64> {
    let s = std::fs::read_to_string("/proc/self/stat").ok()?;
    // Fields after the command name (which may hold spaces) start after the last ')'.
    let rest = &s[s.rfind(')')? + 2..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    // utime and stime are fields 14 and 15 (1-based) of the whole line: 11 and 12 here.
    let ut: f64 = f.get(11)?.parse().ok()?;
    let st: f64 = f.get(12)?.parse().ok()?;
    Some((ut + st) / clock_ticks())
}

fn clock_ticks() -> f64 {
    // sysconf(_SC_CLK_TCK) is 100 on every Linux we target.
    100.0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_use_nearest_rank() {
        let mut r = LatencyRing::new(100);
        assert_eq!(r.percentile_us(50.0), 0);
        for v in 1..=100 {
            r.record_us(v);
        }
        assert_eq!(r.percentile_us(50.0), 50);
        assert_eq!(r.percentile_us(95.0), 95);
        assert_eq!(r.max_us(), 100);
        assert_eq!(
            r.summary(),
            LatencySummary {
                p50_us: 50,
                p95_us: 95,
                max_us: 100
            }
        );
        // Ring keeps the last N only.
        for _ in 0..100 {
            r.record_us(7);
        }
        assert_eq!(r.percentile_us(95.0), 7);
    }

    #[test]
    fn proc_readers_work_on_linux() {
        assert!(peak_rss_kib().unwrap() > 0);
        assert!(cpu_time_s().is_some());
    }
}
