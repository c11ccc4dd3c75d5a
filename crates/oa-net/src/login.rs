//! [`LoginLimiter`]: a per-IP rate limit on login attempts (WebSocket `authenticate`, the
//! Socket.IO handshake), so a flood of bogus keys from one address cannot starve the key store
//! for everyone else. Refusals are counted in
//! `oa_logins_refused_total{listener, reason="rate_limited"}`.

use std::net::IpAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use governor::{DefaultKeyedRateLimiter, RateLimiter};

use crate::rate::RateSpec;

/// How many checks between two sweeps of idle per-IP buckets (bounds the limiter's memory).
const SWEEP_EVERY: u64 = 4096;

/// Per-IP login rate limit. Cheap to clone; clones share the buckets.
#[derive(Debug, Clone)]
pub struct LoginLimiter {
    limiter: Arc<DefaultKeyedRateLimiter<IpAddr>>,
    checks: Arc<AtomicU64>,
    spec: RateSpec,
}

impl LoginLimiter {
    /// Allows `spec` login attempts per client IP.
    pub fn new(spec: RateSpec) -> Self {
        LoginLimiter {
            limiter: Arc::new(RateLimiter::keyed(spec.quota())),
            checks: Arc::new(AtomicU64::new(0)),
            spec,
        }
    }

    /// The rate applied.
    pub fn spec(&self) -> RateSpec {
        self.spec
    }

    /// True when a login attempt from `ip` on `listener` may proceed; a refusal is counted.
    pub fn check(&self, listener: &'static str, ip: IpAddr) -> bool {
        if self.checks.fetch_add(1, Ordering::Relaxed) % SWEEP_EVERY == SWEEP_EVERY - 1 {
            self.limiter.retain_recent();
        }
        let allowed = self.limiter.check_key(&ip).is_ok();
        if !allowed {
            metrics::counter!("oa_logins_refused_total", "listener" => listener, "reason" => "rate_limited")
                .increment(1);
        }
        allowed
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::Ipv4Addr;

    #[test]
    fn one_address_over_its_rate_does_not_limit_another() {
        let limiter = LoginLimiter::new(RateSpec::parse("3 per minute").unwrap());
        let attacker = IpAddr::V4(Ipv4Addr::new(127, 0, 0, 2));
        let user = IpAddr::V4(Ipv4Addr::LOCALHOST);
        assert!((0..3).all(|_| limiter.check("test", attacker)));
        assert!(!limiter.check("test", attacker));
        assert!(limiter.check("test", user));
    }
}
