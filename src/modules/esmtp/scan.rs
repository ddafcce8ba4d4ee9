//! Byte search helpers for the SMTP engine (no C counterpart; replaces `memchr(3)`).
//!
//! Word-at-a-time (SWAR) search in safe Rust: eight octets are tested per step for the
//! wanted values, so the hot paths (finding the LF of a command line, the CR/LF of a text
//! line) do not test byte by byte.
//!
//! Contract: pure functions over slices; results are offsets into the slice given.
//!
//! Diagnostics: none; nothing panics.

const LO: u64 = 0x0101_0101_0101_0101;
const HI: u64 = 0x8080_8080_8080_8080;

/// True when some octet of `v` is zero.
#[inline]
fn has_zero(v: u64) -> bool {
    v.wrapping_sub(LO) & !v & HI != 0
}

#[inline]
fn word(chunk: &[u8]) -> u64 {
    let mut a = [0u8; 8];
    a.copy_from_slice(chunk);
    u64::from_ne_bytes(a)
}

/// Offset of the first `a` in `hay`.
pub(crate) fn find1(hay: &[u8], a: u8) -> Option<usize> {
    let pa = LO * u64::from(a);
    let mut chunks = hay.chunks_exact(8);
    let mut base = 0;
    for c in &mut chunks {
        if has_zero(word(c) ^ pa) {
            return c.iter().position(|&x| x == a).map(|k| base + k);
        }
        base += 8;
    }
    chunks
        .remainder()
        .iter()
        .position(|&x| x == a)
        .map(|k| base + k)
}

/// Offset of the first octet of `hay` that is `a` or `b`.
pub(crate) fn find2(hay: &[u8], a: u8, b: u8) -> Option<usize> {
    let (pa, pb) = (LO * u64::from(a), LO * u64::from(b));
    let mut chunks = hay.chunks_exact(8);
    let mut base = 0;
    for c in &mut chunks {
        let w = word(c);
        if has_zero(w ^ pa) || has_zero(w ^ pb) {
            return c.iter().position(|&x| x == a || x == b).map(|k| base + k);
        }
        base += 8;
    }
    let rest = chunks.remainder();
    rest.iter()
        .position(|&x| x == a || x == b)
        .map(|k| base + k)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Compares against the naive search on every offset of every small pattern.
    #[test]
    fn swar_search_matches_naive_search() {
        let mut seed = 0x9e37_79b9_u32;
        for len in 0..40 {
            for _ in 0..50 {
                let hay: Vec<u8> = (0..len)
                    .map(|_| {
                        seed ^= seed << 13;
                        seed ^= seed >> 17;
                        seed ^= seed << 5;
                        [b'a', b'\r', b'\n', 0x80, 0xff, 0x0a ^ 0x80][(seed % 6) as usize]
                    })
                    .collect();
                let naive1 = hay.iter().position(|&x| x == b'\n');
                let naive2 = hay.iter().position(|&x| x == b'\r' || x == b'\n');
                assert_eq!(find1(&hay, b'\n'), naive1, "{hay:?}");
                assert_eq!(find2(&hay, b'\r', b'\n'), naive2, "{hay:?}");
            }
        }
    }

    #[test]
    fn finds_byte_in_last_word_and_remainder() {
        let mut v = vec![b'x'; 23];
        assert_eq!(find1(&v, b'\n'), None);
        v[15] = b'\n';
        assert_eq!(find1(&v, b'\n'), Some(15));
        v[15] = b'x';
        v[22] = b'\r';
        assert_eq!(find2(&v, b'\r', b'\n'), Some(22));
    }
}
