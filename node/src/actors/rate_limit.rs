//! Per-principal request rates (`server.rate_limit`): a token bucket per principal on
//! this node, checked before a REST or gRPC operation reaches the gateway actor, so that
//! one tenant's flood is refused at the door (429 / RESOURCE_EXHAUSTED with the seconds
//! to wait) instead of queueing in front of everyone else's requests. The principal is
//! the one the request names (`x-hodei-principal`) until token authentication exists:
//! until then the limits stop a runaway client, not a caller who lies about who it is.

use std::num::NonZeroU32;

use governor::clock::{Clock as _, DefaultClock};
use governor::{DefaultKeyedRateLimiter, Quota};

use crate::gateway::error::ErrorCode;
use crate::gateway::{GatewayError, Principal};

/// `server.rate_limit` in force on this node.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RateLimitSettings {
    pub requests_per_second: u32,
    pub burst: u32,
    pub limit_admin: bool,
}

impl Default for RateLimitSettings {
    fn default() -> Self {
        Self {
            requests_per_second: 200,
            burst: 400,
            limit_admin: false,
        }
    }
}

/// Principals' buckets beyond which idle ones are forgotten (a full bucket and a
/// forgotten one behave alike).
const KEPT_BUCKETS: usize = 10_000;

pub struct RequestLimiter {
    buckets: DefaultKeyedRateLimiter<String>,
    clock: DefaultClock,
    settings: RateLimitSettings,
    /// When idle buckets were last forgotten (ms since the limiter's start): at most once
    /// a second, as forgetting scans every bucket.
    last_sweep_ms: std::sync::atomic::AtomicU64,
    started: std::time::Instant,
}

impl RequestLimiter {
    pub fn new(settings: RateLimitSettings) -> Self {
        let per_second =
            NonZeroU32::new(settings.requests_per_second.max(1)).unwrap_or(NonZeroU32::MIN);
        let burst = NonZeroU32::new(settings.burst.max(1)).unwrap_or(NonZeroU32::MIN);
        Self {
            buckets: governor::RateLimiter::keyed(Quota::per_second(per_second).allow_burst(burst)),
            clock: DefaultClock::default(),
            settings,
            last_sweep_ms: std::sync::atomic::AtomicU64::new(0),
            started: std::time::Instant::now(),
        }
    }

    /// Takes one request from `principal`'s bucket, or says how long to wait.
    pub fn admit(&self, principal: &Principal) -> Result<(), GatewayError> {
        if principal.is_admin() && !self.settings.limit_admin {
            return Ok(());
        }
        if self.buckets.len() > KEPT_BUCKETS {
            use std::sync::atomic::Ordering;
            let now_ms = self.started.elapsed().as_millis() as u64;
            let last = self.last_sweep_ms.load(Ordering::Relaxed);
            if now_ms.saturating_sub(last) >= 1_000
                && self
                    .last_sweep_ms
                    .compare_exchange(last, now_ms, Ordering::Relaxed, Ordering::Relaxed)
                    .is_ok()
            {
                self.buckets.retain_recent();
            }
        }
        self.buckets.check_key(&principal.to_string()).map_err(|not_until| {
            let wait = not_until.wait_time_from(self.clock.now());
            let retry_after_s = wait.as_secs() + u64::from(wait.subsec_nanos() > 0);
            GatewayError {
                retry_after_s: Some(retry_after_s.max(1)),
                rule: Some("server.rate_limit".to_string()),
                ..GatewayError::new(
                    ErrorCode::TooManyRequests,
                    format!(
                        "{principal} sends more than {} requests per second (bursts of {}) to this node: retry after {} ms",
                        self.settings.requests_per_second,
                        self.settings.burst,
                        wait.as_millis().max(1)
                    ),
                )
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tenant(id: &str) -> Principal {
        Principal::parse(&format!("tenant:{id}")).unwrap()
    }

    #[test]
    fn a_principal_beyond_its_burst_waits_and_others_do_not() {
        let limiter = RequestLimiter::new(RateLimitSettings {
            requests_per_second: 1,
            burst: 3,
            limit_admin: false,
        });
        for _ in 0..3 {
            limiter.admit(&tenant("flood")).unwrap();
        }
        let refused = limiter.admit(&tenant("flood")).unwrap_err();
        assert_eq!(refused.code, ErrorCode::TooManyRequests);
        assert_eq!(refused.retry_after_s, Some(1));
        assert_eq!(refused.rule.as_deref(), Some("server.rate_limit"));
        // Another tenant has its own bucket; the admin is not limited by default.
        limiter.admit(&tenant("calm")).unwrap();
        for _ in 0..10 {
            limiter.admit(&Principal::Admin).unwrap();
        }
        let strict = RequestLimiter::new(RateLimitSettings {
            requests_per_second: 1,
            burst: 1,
            limit_admin: true,
        });
        strict.admit(&Principal::Admin).unwrap();
        assert!(strict.admit(&Principal::Admin).is_err());
    }
}
