//! Per-client-IP rate limits with OpenAlgo's settings and 429 body.
//!
//! Settings use flask-limiter's syntax: `"10 per second"`, `"100 per minute"`, `"5/second"`,
//! `"1000 per 1 hour"`. The client IP comes from axum's `ConnectInfo<SocketAddr>`, so the
//! server must be served with `into_make_service_with_connect_info::<SocketAddr>()`; without
//! it every client shares one bucket (logged once as a warning).

use std::hash::Hash;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use axum::extract::{ConnectInfo, Request, State};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use governor::{DefaultKeyedRateLimiter, RateLimiter};

use crate::config::ConfigError;
use crate::error::HttpError;

/// The exact 429 body OpenAlgo returns.
pub const RATE_LIMIT_BODY: &str = r#"{"status":"error","message":"Rate limit exceeded. Please slow down your requests.","retry_after":60}"#;

pub(crate) use oa_net::RateSpec;

/// Parses a rate setting, naming it in the error.
pub fn parse_setting(setting: &'static str, value: &str) -> Result<RateSpec, ConfigError> {
    RateSpec::parse(value).map_err(|reason| ConfigError::RateLimit {
        setting,
        value: value.to_string(),
        reason,
    })
}

/// One rate limit per key: [`IpRateLimiter`] for HTTP clients, [`UserRateLimiter`] for
/// callers that are not HTTP clients (the ESB consumer).
#[derive(Debug)]
pub(crate) struct KeyedRateLimiter<K: Hash + Eq + Clone> {
    inner: Arc<DefaultKeyedRateLimiter<K>>,
}

/// One rate limit keyed by client IP.
pub(crate) type IpRateLimiter = KeyedRateLimiter<IpAddr>;

/// One rate limit keyed by user id. Only authenticated users reach it, so its size is
/// bounded by the user count.
pub(crate) type UserRateLimiter = KeyedRateLimiter<String>;

impl<K: Hash + Eq + Clone> Clone for KeyedRateLimiter<K> {
    fn clone(&self) -> Self {
        KeyedRateLimiter {
            inner: Arc::clone(&self.inner),
        }
    }
}

impl<K: Hash + Eq + Clone> KeyedRateLimiter<K> {
    /// A limiter allowing `spec` per key.
    pub(crate) fn new(spec: RateSpec) -> Self {
        KeyedRateLimiter {
            inner: Arc::new(RateLimiter::keyed(spec.quota())),
        }
    }

    /// True when one more request of `key` is allowed (and counts it).
    pub(crate) fn check(&self, key: &K) -> bool {
        self.inner.check_key(key).is_ok()
    }

    /// Forgets keys whose buckets are full again (bounds memory).
    pub(crate) fn retain_recent(&self) {
        self.inner.retain_recent();
    }
}

static MISSING_CONNECT_INFO: AtomicBool = AtomicBool::new(false);

/// The client's IP from `ConnectInfo`, or 0.0.0.0 when the server was not served with
/// connect info.
pub(crate) fn client_ip(request: &Request) -> IpAddr {
    match request.extensions().get::<ConnectInfo<SocketAddr>>() {
        Some(ConnectInfo(address)) => address.ip(),
        None => {
            if !MISSING_CONNECT_INFO.swap(true, Ordering::Relaxed) {
                tracing::warn!(
                    "no ConnectInfo<SocketAddr> on requests: serve the router with \
                     into_make_service_with_connect_info::<SocketAddr>(); all clients share one rate-limit bucket"
                );
            }
            IpAddr::V4(Ipv4Addr::UNSPECIFIED)
        }
    }
}

/// The 429 response.
pub(crate) fn too_many_requests() -> Response {
    HttpError::rate_limited().into_response()
}

/// Middleware: rejects the request with 429 when its client IP is over the limit.
pub(crate) async fn limit(
    State(limiter): State<IpRateLimiter>,
    request: Request,
    next: Next,
) -> Response {
    if limiter.check(&client_ip(&request)) {
        next.run(request).await
    } else {
        metrics::counter!("oa_rate_limited_total").increment(1);
        too_many_requests()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn parses_openalgo_rate_strings() {
        let spec = RateSpec::parse("10 per second").unwrap();
        assert_eq!(
            (spec.count.get(), spec.period),
            (10, Duration::from_secs(1))
        );
        let spec = RateSpec::parse("100 per minute").unwrap();
        assert_eq!(
            (spec.count.get(), spec.period),
            (100, Duration::from_secs(60))
        );
        let spec = RateSpec::parse("5/second").unwrap();
        assert_eq!((spec.count.get(), spec.period), (5, Duration::from_secs(1)));
        let spec = RateSpec::parse("1000 per 2 Hours").unwrap();
        assert_eq!(
            (spec.count.get(), spec.period),
            (1000, Duration::from_secs(7200))
        );
    }

    #[test]
    fn rejects_bad_rate_strings_with_reasons() {
        assert!(
            RateSpec::parse("ten per second")
                .unwrap_err()
                .contains("ten")
        );
        assert!(
            RateSpec::parse("10 per fortnight")
                .unwrap_err()
                .contains("fortnight")
        );
        assert!(
            RateSpec::parse("0 per second")
                .unwrap_err()
                .contains("at least 1")
        );
        assert!(RateSpec::parse("10").unwrap_err().contains("per"));
    }

    #[test]
    fn limiter_allows_the_burst_then_refuses() {
        let limiter = IpRateLimiter::new(RateSpec::parse("3 per minute").unwrap());
        let ip = IpAddr::V4(Ipv4Addr::LOCALHOST);
        assert!((0..3).all(|_| limiter.check(&ip)));
        assert!(!limiter.check(&ip));
        assert!(limiter.check(&IpAddr::V4(Ipv4Addr::new(10, 0, 0, 1))));
    }

    #[test]
    fn user_limiter_counts_each_user_alone() {
        let limiter = UserRateLimiter::new(RateSpec::parse("2 per minute").unwrap());
        let (a, b) = ("a".to_string(), "b".to_string());
        assert!(limiter.check(&a) && limiter.check(&a));
        assert!(!limiter.check(&a));
        assert!(limiter.check(&b));
    }
}
