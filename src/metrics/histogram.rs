//! A duration histogram updated with atomic adds only. prometheus-client's own `Histogram`
//! takes a mutex on every observation; connection set-up must not queue behind a scrape.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// Upper bounds of the buckets, in seconds: 1 ms (a local server) to 10 s (`TIMEOUTconnect`).
pub const BOUNDS: [f64; 13] = [
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

/// Counts per bucket (not cumulative), the last one for everything above the largest bound.
#[derive(Debug, Default)]
pub struct Histogram {
    buckets: [AtomicU64; BOUNDS.len() + 1],
    /// The sum of all observations, in microseconds.
    sum_us: AtomicU64,
}

/// What a scrape reads: the sum in seconds, the count and (bound, count) per bucket.
#[derive(Debug, Clone, PartialEq)]
pub struct Snapshot {
    /// Seconds, all observations together.
    pub sum: f64,
    /// How many observations.
    pub count: u64,
    /// Per bucket, not cumulative; the last bound is +Inf.
    pub buckets: Vec<(f64, u64)>,
}

impl Histogram {
    /// Records one duration.
    pub fn observe(&self, d: Duration) {
        let secs = d.as_secs_f64();
        let i = BOUNDS.iter().position(|&b| secs <= b).unwrap_or(BOUNDS.len());
        self.buckets[i].fetch_add(1, Ordering::Relaxed);
        let us = u64::try_from(d.as_micros()).unwrap_or(u64::MAX);
        self.sum_us.fetch_add(us, Ordering::Relaxed);
    }

    /// The current values (each read on its own: a scrape during an observation may see the
    /// bucket without the sum, which Prometheus tolerates).
    pub fn snapshot(&self) -> Snapshot {
        let bounds = BOUNDS.iter().copied().chain([f64::INFINITY]);
        let buckets: Vec<(f64, u64)> = bounds
            .zip(&self.buckets)
            .map(|(b, n)| (b, n.load(Ordering::Relaxed)))
            .collect();
        Snapshot {
            sum: self.sum_us.load(Ordering::Relaxed) as f64 / 1e6,
            count: buckets.iter().map(|(_, n)| n).sum(),
            buckets,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn observations_land_in_their_bucket_and_add_up() {
        let h = Histogram::default();
        h.observe(Duration::from_micros(500));
        h.observe(Duration::from_millis(1));
        h.observe(Duration::from_millis(30));
        h.observe(Duration::from_secs(60));
        let s = h.snapshot();
        assert_eq!(s.count, 4);
        assert!((s.sum - 60.0315).abs() < 1e-9, "{}", s.sum);
        assert_eq!(s.buckets[0], (0.001, 2));
        assert_eq!(s.buckets[5], (0.05, 1));
        assert_eq!(s.buckets.last(), Some(&(f64::INFINITY, 1)));
        assert_eq!(s.buckets.len(), BOUNDS.len() + 1);
    }
}
