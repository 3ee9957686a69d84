// SPDX-License-Identifier: Apache-2.0
//! Backoff between attempts: exponential with jitter, capped, under one
//! overall deadline; and the `Retry-After` header (RFC 9110 §10.2.3).

use std::time::{Duration, SystemTime};

use ring::rand::{SecureRandom, SystemRandom};

/// Exponential backoff with "equal jitter": attempt n waits a random time in
/// [b/2, b] where b = min(max, initial·2ⁿ).
#[derive(Clone, Copy, Debug)]
pub struct Backoff {
    pub initial: Duration,
    pub max: Duration,
}

impl Default for Backoff {
    fn default() -> Self {
        Backoff {
            initial: Duration::from_millis(500),
            max: Duration::from_secs(10),
        }
    }
}

impl Backoff {
    /// The wait before retry number `attempt` (0-based), with `jitter` a
    /// uniformly random 32-bit value.
    pub fn delay_with(&self, attempt: u32, jitter: u32) -> Duration {
        let factor = 1u32 << attempt.min(20);
        let base = self.initial.saturating_mul(factor).min(self.max);
        let half = base / 2;
        let spread = half.as_micros() as u64;
        let extra = if spread == 0 {
            0
        } else {
            u64::from(jitter) % (spread + 1)
        };
        half + Duration::from_micros(extra)
    }

    /// The wait before retry number `attempt`, with fresh jitter.
    pub fn delay(&self, attempt: u32) -> Duration {
        let mut bytes = [0u8; 4];
        // Without randomness the wait is simply the upper bound.
        let jitter = match SystemRandom::new().fill(&mut bytes) {
            Ok(()) => u32::from_le_bytes(bytes),
            Err(_) => u32::MAX,
        };
        self.delay_with(attempt, jitter)
    }
}

/// Parses `Retry-After`: delay-seconds or an HTTP-date.
pub fn parse_retry_after(value: &str, now: SystemTime) -> Option<Duration> {
    let value = value.trim();
    if let Ok(secs) = value.parse::<u64>() {
        return Some(Duration::from_secs(secs));
    }
    let when = httpdate::parse_http_date(value).ok()?;
    Some(when.duration_since(now).unwrap_or(Duration::ZERO))
}

#[cfg(test)]
mod tests {
    use super::{parse_retry_after, Backoff};
    use std::time::{Duration, SystemTime, UNIX_EPOCH};

    #[test]
    fn delays_grow_then_cap_and_stay_within_jitter_bounds() {
        let b = Backoff {
            initial: Duration::from_millis(100),
            max: Duration::from_secs(1),
        };
        for (attempt, lo, hi) in [
            (0, 50, 100),
            (1, 100, 200),
            (2, 200, 400),
            (3, 400, 800),
            (4, 500, 1000),
            (30, 500, 1000),
        ] {
            for jitter in [0, 1, 12345, u32::MAX / 2, u32::MAX] {
                let d = b.delay_with(attempt, jitter).as_millis() as u64;
                assert!(
                    (lo..=hi).contains(&d),
                    "attempt {attempt} jitter {jitter}: {d} ms"
                );
            }
            assert_eq!(b.delay_with(attempt, 0).as_millis() as u64, lo);
        }
    }

    #[test]
    fn zero_backoff_means_no_wait() {
        let b = Backoff {
            initial: Duration::ZERO,
            max: Duration::ZERO,
        };
        assert_eq!(b.delay(3), Duration::ZERO);
    }

    #[test]
    fn retry_after_forms() {
        let now = UNIX_EPOCH + Duration::from_secs(1_445_412_480); // Wed, 21 Oct 2015 07:28:00 GMT
        assert_eq!(parse_retry_after("3", now), Some(Duration::from_secs(3)));
        assert_eq!(parse_retry_after(" 0 ", now), Some(Duration::ZERO));
        assert_eq!(
            parse_retry_after("Wed, 21 Oct 2015 07:28:10 GMT", now),
            Some(Duration::from_secs(10))
        );
        assert_eq!(
            parse_retry_after("Wed, 21 Oct 2015 07:27:00 GMT", now),
            Some(Duration::ZERO)
        );
        assert_eq!(parse_retry_after("soon", now), None);
        assert_eq!(parse_retry_after("-1", SystemTime::now()), None);
    }
}
