//! A token bucket on an injected clock: no proxy-wasm, so it is unit-tested
//! natively. The adapter uses it to rate-limit drop log lines.

/// Tokens refill at `rate` per second up to `burst`; each event takes one.
/// Time is nanoseconds from any fixed origin, supplied by the caller.
#[derive(Debug, Clone, Copy)]
pub struct TokenBucket {
    rate_per_sec: u64,
    burst: u64,
    /// Tokens, in billionths, so refills need no floats.
    nano_tokens: u64,
    last_ns: u64,
}

const NANOS: u64 = 1_000_000_000;

impl TokenBucket {
    /// A full bucket. `rate_per_sec` 0 never grants anything.
    pub fn new(rate_per_sec: u32, burst: u32, now_ns: u64) -> Self {
        let burst = u64::from(burst);
        TokenBucket {
            rate_per_sec: u64::from(rate_per_sec),
            burst,
            nano_tokens: burst.saturating_mul(NANOS),
            last_ns: now_ns,
        }
    }

    /// Takes one token if there is one. A clock that goes backwards refills nothing.
    pub fn take(&mut self, now_ns: u64) -> bool {
        let elapsed = now_ns.saturating_sub(self.last_ns);
        self.last_ns = self.last_ns.max(now_ns);
        let refill = elapsed.saturating_mul(self.rate_per_sec);
        let cap = self.burst.saturating_mul(NANOS);
        self.nano_tokens = self.nano_tokens.saturating_add(refill).min(cap);
        if self.nano_tokens >= NANOS {
            self.nano_tokens = self.nano_tokens.saturating_sub(NANOS);
            true
        } else {
            false
        }
    }
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
    }
}
