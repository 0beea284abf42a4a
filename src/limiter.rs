//! Token buckets on an injected clock: no proxy-wasm, so the arithmetic is
//! unit-tested natively. The adapter keeps bucket states in proxy-wasm shared
//! data (rate limits, shared by all workers) or in the worker (drop-log rate).

/// Tokens per period, and the bucket size.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rate {
    /// Tokens added per `period_ns`.
    pub tokens: u64,
    pub period_ns: u64,
    /// Most tokens the bucket holds (the burst a quiet client may send).
    pub burst: u64,
}

pub const NANOS: u64 = 1_000_000_000;

/// One bucket: tokens in billionths (so refills need no floats), the time of
/// the last update, and a fingerprint of the key that owns it.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct BucketState {
    pub nano_tokens: u64,
    pub last_ns: u64,
    pub owner: u64,
}

/// Bytes of a serialised [`BucketState`].
pub const STATE_LEN: usize = 24;

impl BucketState {
    /// A full bucket for `owner`.
    pub fn full(rate: &Rate, owner: u64, now_ns: u64) -> Self {
        BucketState {
            nano_tokens: rate.burst.saturating_mul(NANOS),
            last_ns: now_ns,
            owner,
        }
    }

    /// Refills for the time since the last update (a clock that goes
    /// backwards refills nothing), capped at the burst.
    fn refilled(self, rate: &Rate, now_ns: u64) -> Self {
        let elapsed = u128::from(now_ns.saturating_sub(self.last_ns));
        let refill = elapsed
            .saturating_mul(u128::from(rate.tokens))
            .saturating_mul(u128::from(NANOS))
            .checked_div(u128::from(rate.period_ns))
            .unwrap_or(0);
        let refill = u64::try_from(refill).unwrap_or(u64::MAX);
        BucketState {
            nano_tokens: self
                .nano_tokens
                .saturating_add(refill)
                .min(rate.burst.saturating_mul(NANOS)),
            last_ns: self.last_ns.max(now_ns),
            owner: self.owner,
        }
    }

    /// Takes one token for `owner`; returns the new state and whether a token
    /// was granted. A slot owned by another key is taken over only once that
    /// bucket has refilled completely (its owner has been quiet); until then
    /// the two keys share it, so a collision can only make a limit stricter,
    /// never looser.
    pub fn take(stored: Option<Self>, rate: &Rate, owner: u64, now_ns: u64) -> (Self, bool) {
        let full = rate.burst.saturating_mul(NANOS);
        let state = match stored.map(|s| s.refilled(rate, now_ns)) {
            None => BucketState::full(rate, owner, now_ns),
            Some(s) if s.owner != owner && s.nano_tokens >= full => {
                BucketState::full(rate, owner, now_ns)
            }
            Some(s) => s,
        };
        if state.nano_tokens >= NANOS {
            (
                BucketState {
                    nano_tokens: state.nano_tokens.saturating_sub(NANOS),
                    ..state
                },
                true,
            )
        } else {
            (state, false)
        }
    }

    pub fn to_bytes(self) -> [u8; STATE_LEN] {
        let mut out = [0u8; STATE_LEN];
        for (chunk, value) in
            out.chunks_exact_mut(8)
                .zip([self.nano_tokens, self.last_ns, self.owner])
        {
            chunk.copy_from_slice(&value.to_le_bytes());
        }
        out
    }

    /// `None` for anything that is not exactly a serialised state.
    pub fn from_bytes(bytes: &[u8]) -> Option<Self> {
        if bytes.len() != STATE_LEN {
            return None;
        }
        let mut words = bytes
            .chunks_exact(8)
            .map(|c| c.try_into().map(u64::from_le_bytes).unwrap_or(0));
        Some(BucketState {
            nano_tokens: words.next()?,
            last_ns: words.next()?,
            owner: words.next()?,
        })
    }
}

/// A bucket kept in one place (one worker), e.g. for the drop-log rate.
#[derive(Debug, Clone, Copy)]
pub struct TokenBucket {
    rate: Rate,
    state: BucketState,
}

impl TokenBucket {
    /// A full bucket of `burst` refilling at `per_second`. 0 never grants.
    pub fn new(per_second: u32, burst: u32, now_ns: u64) -> Self {
        let rate = Rate {
            tokens: u64::from(per_second),
            period_ns: NANOS,
            burst: u64::from(burst),
        };
        TokenBucket {
            rate,
            state: BucketState::full(&rate, 0, now_ns),
        }
    }

    /// Takes one token if there is one.
    pub fn take(&mut self, now_ns: u64) -> bool {
        let (state, granted) = BucketState::take(Some(self.state), &self.rate, 0, now_ns);
        self.state = state;
        granted
    }
}

/// FNV-1a, 64 bit: a fixed hash (the same in every worker and every run) for
/// rate-limit keys.
pub fn key_hash(key: &[u8]) -> u64 {
    key.iter().fold(0xcbf2_9ce4_8422_2325_u64, |h, b| {
        (h ^ u64::from(*b)).wrapping_mul(0x0000_0100_0000_01b3)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: u64 = NANOS;

    #[test]
    fn burst_then_steady_rate() {
        let mut b = TokenBucket::new(10, 10, 0);
        assert_eq!((0..15).filter(|_| b.take(0)).count(), 10, "the burst");
        assert!(!b.take(S / 20), "half a token after 50 ms");
        assert!(b.take(S / 10), "one token after 100 ms");
        assert!(!b.take(S / 10));
        // After a long pause the bucket is full again, not more.
        assert_eq!((0..50).filter(|_| b.take(100 * S)).count(), 10);
        // 1 s at 10/s: 10 more.
        let granted = (1..=1000)
            .filter(|i| b.take(100 * S + i * S / 1000))
            .count();
        assert_eq!(granted, 10);
    }

    #[test]
    fn zero_rate_and_clock_going_backwards() {
        let mut b = TokenBucket::new(0, 0, 5);
        assert!(!b.take(5));
        assert!(!b.take(u64::MAX));
        let mut b = TokenBucket::new(1, 1, 10 * S);
        assert!(b.take(10 * S));
        assert!(!b.take(S), "going back in time refills nothing");
        assert!(!b.take(10 * S + S / 2));
        assert!(b.take(11 * S));
    }

    #[test]
    fn huge_numbers_saturate() {
        let mut b = TokenBucket::new(u32::MAX, u32::MAX, 0);
        assert!(b.take(u64::MAX));
        assert!(b.take(u64::MAX));
        let rate = Rate {
            tokens: u64::MAX,
            period_ns: 1,
            burst: u64::MAX,
        };
        let (s, ok) = BucketState::take(None, &rate, 1, u64::MAX);
        assert!(ok);
        assert!(BucketState::take(Some(s), &rate, 1, u64::MAX).1);
    }

    #[test]
    fn per_minute_rates() {
        let rate = Rate {
            tokens: 6,
            period_ns: 60 * S,
            burst: 2,
        };
        let (mut s, mut ok) = BucketState::take(None, &rate, 7, 0);
        assert!(ok);
        (s, ok) = BucketState::take(Some(s), &rate, 7, 0);
        assert!(ok);
        (s, ok) = BucketState::take(Some(s), &rate, 7, 0);
        assert!(!ok, "burst of 2 spent");
        (s, ok) = BucketState::take(Some(s), &rate, 7, 9 * S);
        assert!(!ok, "6/min is one token per 10 s");
        (_, ok) = BucketState::take(Some(s), &rate, 7, 10 * S);
        assert!(ok);
    }

    #[test]
    fn a_busy_slot_is_shared_and_a_quiet_one_taken_over() {
        let rate = Rate {
            tokens: 1,
            period_ns: S,
            burst: 2,
        };
        let (s, _) = BucketState::take(None, &rate, 1, 0);
        // Another key in the same slot while key 1's bucket is not full: shared.
        let (s, ok) = BucketState::take(Some(s), &rate, 2, 0);
        assert!(ok);
        assert_eq!(s.owner, 1);
        let (s, ok) = BucketState::take(Some(s), &rate, 2, 0);
        assert!(!ok, "the shared bucket is empty for both");
        // Key 1 quiet for 2 s: the bucket is full again and key 2 takes it over.
        let (s, ok) = BucketState::take(Some(s), &rate, 2, 2 * S);
        assert!(ok);
        assert_eq!(s.owner, 2);
        assert_eq!(s.nano_tokens, NANOS, "a fresh full bucket minus one token");
    }

    #[test]
    fn state_bytes_round_trip_and_reject_garbage() {
        let s = BucketState {
            nano_tokens: 5,
            last_ns: u64::MAX,
            owner: 42,
        };
        assert_eq!(BucketState::from_bytes(&s.to_bytes()), Some(s));
        assert_eq!(BucketState::from_bytes(&[1, 2, 3]), None);
        assert_eq!(BucketState::from_bytes(&[0; 25]), None);
    }

    #[test]
    fn key_hash_is_fixed() {
        assert_eq!(key_hash(b""), 0xcbf2_9ce4_8422_2325);
        assert_eq!(key_hash(b"a"), 0xaf63_dc4c_8601_ec8c);
        assert_ne!(key_hash(b"10.0.0.1"), key_hash(b"10.0.0.2"));
    }
}
