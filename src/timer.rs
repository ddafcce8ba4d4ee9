//! Timed events on a binary heap.
//!
//! C: the scheduler's time heap behind `schedule_event()` for events with a timeout, and
//! `clear_timed_event()`.
//!
//! # Summary
//! [`TimerHeap`] is a min-heap of `(deadline, sequence, key)` entries. Equal deadlines fire in
//! insertion order (FIFO: the sequence number breaks ties). Cancellation is lazy: the owner
//! remembers the sequence of its live entry and ignores stale ones when they surface, so a
//! cancel is O(1) and an idle-timeout reset that moves the deadline later pushes nothing at
//! all (the scheduler re-checks the event's current deadline when the old entry fires).
//!
//! # Contract
//! The heap does not know which entries are live: [`TimerHeap::pop_due`] returns every entry
//! whose deadline has passed, and the caller checks its own record. [`TimerHeap::compact`]
//! drops entries the caller reports dead, so cancelled timers cannot accumulate without bound.
//!
//! # Diagnostics
//! None: nothing here fails.

use std::cmp::Ordering;
use std::collections::BinaryHeap;
use std::time::Instant;

/// One heap entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TimerEntry {
    /// When it fires.
    pub deadline: Instant,
    /// Insertion sequence: unique, increasing; identifies the entry.
    pub seq: u64,
    /// The owner's key (the scheduler uses the raw [`crate::event::EventId`]).
    pub key: u64,
}

impl Ord for TimerEntry {
    fn cmp(&self, other: &Self) -> Ordering {
        // Reversed: BinaryHeap is a max-heap and we want the earliest (then lowest seq) on top.
        other
            .deadline
            .cmp(&self.deadline)
            .then_with(|| other.seq.cmp(&self.seq))
    }
}

impl PartialOrd for TimerEntry {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

/// A min-heap of deadlines with FIFO ties and lazy cancellation.
#[derive(Debug, Default)]
pub struct TimerHeap {
    heap: BinaryHeap<TimerEntry>,
    next_seq: u64,
}

impl TimerHeap {
    /// An empty heap.
    pub fn new() -> TimerHeap {
        TimerHeap {
            heap: BinaryHeap::new(),
            next_seq: 1,
        }
    }

    /// Adds an entry; returns its sequence number (never 0).
    pub fn push(&mut self, deadline: Instant, key: u64) -> u64 {
        let seq = self.next_seq;
        self.next_seq += 1;
        self.heap.push(TimerEntry { deadline, seq, key });
        seq
    }

    /// The earliest deadline, live or stale.
    pub fn next_deadline(&self) -> Option<Instant> {
        self.heap.peek().map(|e| e.deadline)
    }

    /// Removes and returns the earliest entry if its deadline is at or before `now`.
    pub fn pop_due(&mut self, now: Instant) -> Option<TimerEntry> {
        match self.heap.peek() {
            Some(e) if e.deadline <= now => self.heap.pop(),
            _ => None,
        }
    }

    /// Entries in the heap, live and stale. Exposed so tests can check the heap does not grow.
    pub fn len(&self) -> usize {
        self.heap.len()
    }

    /// True when the heap holds no entry.
    pub fn is_empty(&self) -> bool {
        self.heap.is_empty()
    }

    /// Keeps only the entries for which `live` returns true. O(n); the scheduler calls it when
    /// stale entries outnumber live ones.
    pub fn compact(&mut self, mut live: impl FnMut(&TimerEntry) -> bool) {
        self.heap.retain(|e| live(e));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;
    use std::time::Duration;

    /// A tiny deterministic PRNG (xorshift64*), so failures reproduce.
    struct Rng(u64);
    impl Rng {
        fn next(&mut self) -> u64 {
            self.0 ^= self.0 >> 12;
            self.0 ^= self.0 << 25;
            self.0 ^= self.0 >> 27;
            self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
        }
    }

    #[test]
    fn fifo_among_equal_deadlines() {
        let t0 = Instant::now();
        let mut h = TimerHeap::new();
        for k in 0..100 {
            h.push(t0, k);
        }
        let keys: Vec<u64> = std::iter::from_fn(|| h.pop_due(t0))
            .map(|e| e.key)
            .collect();
        assert_eq!(keys, (0..100).collect::<Vec<_>>());
    }

    #[test]
    fn not_due_is_not_popped() {
        let t0 = Instant::now();
        let mut h = TimerHeap::new();
        h.push(t0 + Duration::from_secs(1), 1);
        assert!(h.pop_due(t0).is_none());
        assert_eq!(h.len(), 1);
        assert_eq!(
            h.pop_due(t0 + Duration::from_secs(1)).map(|e| e.key),
            Some(1)
        );
    }

    /// Random insert / cancel / expire against a naive sorted-Vec oracle.
    #[test]
    fn matches_sorted_vec_oracle() {
        let t0 = Instant::now();
        let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
        let mut heap = TimerHeap::new();
        let mut cancelled = HashSet::new();
        let mut oracle: Vec<(Instant, u64)> = Vec::new(); // (deadline, seq), live only
        let mut now = t0;
        for round in 0..20_000u64 {
            match rng.next() % 10 {
                0..=4 => {
                    let d = now + Duration::from_millis(rng.next() % 50);
                    let seq = heap.push(d, round);
                    oracle.push((d, seq));
                }
                5 | 6 if !oracle.is_empty() => {
                    let i = (rng.next() as usize) % oracle.len();
                    let (_, seq) = oracle.remove(i);
                    cancelled.insert(seq);
                }
                _ => {
                    now += Duration::from_millis(rng.next() % 20);
                    let mut fired = Vec::new();
                    while let Some(e) = heap.pop_due(now) {
                        if !cancelled.remove(&e.seq) {
                            fired.push((e.deadline, e.seq));
                        }
                    }
                    oracle.sort();
                    let due = oracle.iter().take_while(|(d, _)| *d <= now).count();
                    let expected: Vec<_> = oracle.drain(..due).collect();
                    assert_eq!(fired, expected, "round {round}");
                }
            }
            if round % 1000 == 0 {
                heap.compact(|e| !cancelled.contains(&e.seq));
                cancelled.retain(|s| heap.heap.iter().any(|e| e.seq == *s));
                assert_eq!(heap.len(), oracle.len());
            }
        }
    }
}
