//! Latency histograms with fixed buckets, lock-free to record, in the
//! shape Prometheus expects (cumulative bucket counts, a sum and a count).

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// Upper bounds of the buckets, in seconds (the last bucket is +Inf).
pub const BUCKETS: [f64; 16] = [
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
    5.0, 10.0,
];

/// A latency histogram.
#[derive(Debug, Default)]
pub struct Histogram {
    /// Observations per bucket (not cumulative); the last is above 10 s.
    counts: [AtomicU64; BUCKETS.len() + 1],
    sum_nanos: AtomicU64,
}

/// A copy of a histogram's counts, for rendering or adding up.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct Snapshot {
    /// Observations per bucket (not cumulative), `BUCKETS.len() + 1` long.
    pub counts: Vec<u64>,
    /// Sum of all observations in seconds.
    pub sum_seconds: f64,
}

impl Histogram {
    /// Records one observation.
    pub fn observe(&self, d: Duration) {
        let secs = d.as_secs_f64();
        let i = BUCKETS.partition_point(|&b| b < secs);
        self.counts[i].fetch_add(1, Ordering::Relaxed);
        self.sum_nanos.fetch_add(
            u64::try_from(d.as_nanos()).unwrap_or(u64::MAX),
            Ordering::Relaxed,
        );
    }

    /// The counts now.
    pub fn snapshot(&self) -> Snapshot {
        Snapshot {
            counts: self
                .counts
                .iter()
                .map(|c| c.load(Ordering::Relaxed))
                .collect(),
            sum_seconds: self.sum_nanos.load(Ordering::Relaxed) as f64 / 1e9,
        }
    }
}

impl Snapshot {
    /// A histogram with no observations (every bucket present, at 0).
    pub fn empty() -> Self {
        Self {
            counts: vec![0; BUCKETS.len() + 1],
            sum_seconds: 0.0,
        }
    }

    /// Adds another histogram's counts to this one.
    pub fn add(&mut self, other: &Snapshot) {
        if self.counts.len() < other.counts.len() {
            self.counts.resize(other.counts.len(), 0);
        }
        for (a, b) in self.counts.iter_mut().zip(&other.counts) {
            *a += b;
        }
        self.sum_seconds += other.sum_seconds;
    }

    /// Number of observations.
    pub fn count(&self) -> u64 {
        self.counts.iter().sum()
    }

    /// The Prometheus text lines of this histogram (no HELP/TYPE):
    /// `name_bucket{labels,le=".."}` cumulative, `name_sum`, `name_count`.
    /// `labels` is empty or `key="value",...` without braces.
    pub fn render(&self, name: &str, labels: &str, out: &mut String) {
        use std::fmt::Write;
        let sep = if labels.is_empty() { "" } else { "," };
        let mut total = 0;
        for (i, n) in self.counts.iter().enumerate() {
            total += n;
            let le = BUCKETS.get(i).map_or("+Inf".to_owned(), |b| b.to_string());
            let _ = writeln!(out, "{name}_bucket{{{labels}{sep}le=\"{le}\"}} {total}");
        }
        let braces = if labels.is_empty() {
            String::new()
        } else {
            format!("{{{labels}}}")
        };
        let _ = writeln!(out, "{name}_sum{braces} {}", self.sum_seconds);
        let _ = writeln!(out, "{name}_count{braces} {total}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn observations_land_in_their_bucket_and_render_cumulatively() {
        let h = Histogram::default();
        h.observe(Duration::from_micros(50)); // <= 0.0001
        h.observe(Duration::from_micros(100)); // <= 0.0001 (bounds are inclusive)
        h.observe(Duration::from_millis(3)); // <= 0.005
        h.observe(Duration::from_secs(60)); // +Inf
        let s = h.snapshot();
        assert_eq!(s.count(), 4);
        assert_eq!(s.counts[0], 2);
        assert_eq!(s.counts[5], 1);
        assert_eq!(s.counts[16], 1);
        let mut text = String::new();
        s.render("x_seconds", "a=\"b\"", &mut text);
        assert!(
            text.contains("x_seconds_bucket{a=\"b\",le=\"0.0001\"} 2\n"),
            "{text}"
        );
        assert!(
            text.contains("x_seconds_bucket{a=\"b\",le=\"0.005\"} 3\n"),
            "{text}"
        );
        assert!(
            text.contains("x_seconds_bucket{a=\"b\",le=\"+Inf\"} 4\n"),
            "{text}"
        );
        assert!(text.contains("x_seconds_count{a=\"b\"} 4\n"), "{text}");
        let mut both = s.clone();
        both.add(&s);
        assert_eq!(both.count(), 8);
        assert!((both.sum_seconds - 2.0 * s.sum_seconds).abs() < 1e-9);
    }
}
