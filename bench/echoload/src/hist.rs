//! Fixed-memory log-linear latency histogram, in nanoseconds.
//!
//! Values below 64 ns are counted exactly; above, every power of two is split into 32
//! equal sub-buckets, so a reported percentile is within 1/32 (about 3 %) of the true
//! value. 1920 `u64` counters (15 KiB) per histogram, whatever the number of samples:
//! each worker thread owns one and the main thread merges them at the end.

const SUB_BITS: u32 = 5;
const SUB: usize = 1 << SUB_BITS; // 32 sub-buckets per power of two
const LINEAR: usize = 2 * SUB; // 0..64 ns counted exactly
const BUCKETS: usize = LINEAR + (64 - (SUB_BITS as usize + 1)) * SUB;

pub struct Histogram {
    counts: Vec<u64>,
    total: u64,
}

fn index_of(v: u64) -> usize {
    if (v as usize) < LINEAR {
        return v as usize;
    }
    let msb = 63 - v.leading_zeros();
    let shift = msb - SUB_BITS;
    let sub = ((v >> shift) as usize) & (SUB - 1);
    LINEAR + (msb - SUB_BITS - 1) as usize * SUB + sub
}

/// Lower bound and width of bucket `i`, in nanoseconds.
fn bounds_of(i: usize) -> (u64, u64) {
    if i < LINEAR {
        return (i as u64, 1);
    }
    let group = ((i - LINEAR) / SUB) as u32;
    let sub = ((i - LINEAR) % SUB) as u64;
    let shift = group + 1;
    ((SUB as u64 + sub) << shift, 1u64 << shift)
}

impl Histogram {
    pub fn new() -> Self {
        Histogram {
            counts: vec![0; BUCKETS],
            total: 0,
        }
    }

    pub fn record(&mut self, nanos: u64) {
        self.counts[index_of(nanos)] += 1;
        self.total += 1;
    }

    pub fn merge(&mut self, other: &Histogram) {
        for (a, b) in self.counts.iter_mut().zip(&other.counts) {
            *a += *b;
        }
        self.total += other.total;
    }

    pub fn total(&self) -> u64 {
        self.total
    }

    /// The `q`-quantile (0.0..=1.0) in nanoseconds: the midpoint of the bucket holding
    /// the sample of rank ceil(q * total). 0 when the histogram is empty.
    pub fn quantile(&self, q: f64) -> f64 {
        if self.total == 0 {
            return 0.0;
        }
        let rank = ((q * self.total as f64).ceil() as u64).clamp(1, self.total);
        let mut seen = 0;
        for (i, &c) in self.counts.iter().enumerate() {
            seen += c;
            if seen >= rank {
                let (lo, width) = bounds_of(i);
                return lo as f64 + (width as f64 - 1.0) / 2.0;
            }
        }
        unreachable!("Histogram::quantile: total out of step with the counters")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_value_falls_in_its_bucket() {
        let mut v = 0u64;
        while v < (1u64 << 40) {
            let (lo, width) = bounds_of(index_of(v));
            assert!(lo <= v && v < lo + width, "v={v} lo={lo} width={width}");
            v = v * 9 / 8 + 1;
        }
        assert!(index_of(u64::MAX) < BUCKETS);
    }

    #[test]
    fn quantiles_within_relative_error() {
        let mut h = Histogram::new();
        for v in 1..=10_000u64 {
            h.record(v * 1000);
        }
        let p50 = h.quantile(0.5);
        let p99 = h.quantile(0.99);
        assert!((p50 / 5_000_000.0 - 1.0).abs() < 0.04, "p50={p50}");
        assert!((p99 / 9_900_000.0 - 1.0).abs() < 0.04, "p99={p99}");
    }
}
