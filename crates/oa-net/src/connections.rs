//! [`ConnectionLimiter`]: a global and a per-IP cap on a listener's open connections.
//!
//! A connection takes a [`ConnectionPermit`] when it is accepted and gives it back when the
//! permit is dropped. Refusals are counted in
//! `oa_connections_refused_total{listener, reason="global_cap"|"per_ip_cap"}`; open connections
//! are the gauge `oa_connections{listener}`.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Arc;

use parking_lot::Mutex;

/// The caps of one listener.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConnectionLimits {
    /// Open connections in total.
    pub max_total: usize,
    /// Open connections from one IP address.
    pub max_per_ip: usize,
}

impl ConnectionLimits {
    /// No practical limit (tests and embedders that bound connections elsewhere).
    pub const UNLIMITED: ConnectionLimits = ConnectionLimits {
        max_total: usize::MAX,
        max_per_ip: usize::MAX,
    };
}

/// Why a connection was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum ConnectionRefused {
    /// The listener holds its maximum number of connections.
    #[error("too many connections to this server ({0} open); retry later")]
    GlobalCap(usize),
    /// The client's address holds its maximum number of connections.
    #[error("too many connections from your address ({0} open); close some and retry")]
    PerIpCap(usize),
}

impl ConnectionRefused {
    /// The metric label (`reason`).
    pub fn reason(&self) -> &'static str {
        match self {
            ConnectionRefused::GlobalCap(_) => "global_cap",
            ConnectionRefused::PerIpCap(_) => "per_ip_cap",
        }
    }
}

#[derive(Debug, Default)]
struct Counts {
    total: usize,
    per_ip: HashMap<IpAddr, usize>,
}

#[derive(Debug)]
struct Inner {
    listener: &'static str,
    limits: ConnectionLimits,
    counts: Mutex<Counts>,
    open: metrics::Gauge,
}

/// Counts a listener's open connections against its [`ConnectionLimits`]. Cheap to clone.
#[derive(Debug, Clone)]
pub struct ConnectionLimiter {
    inner: Arc<Inner>,
}

impl ConnectionLimiter {
    /// A limiter for the listener named `listener` in metrics (`http`, `websocket`, `socketio`).
    pub fn new(listener: &'static str, limits: ConnectionLimits) -> Self {
        ConnectionLimiter {
            inner: Arc::new(Inner {
                listener,
                limits,
                counts: Mutex::default(),
                open: metrics::gauge!("oa_connections", "listener" => listener),
            }),
        }
    }

    /// The caps this limiter applies.
    pub fn limits(&self) -> ConnectionLimits {
        self.inner.limits
    }

    /// Takes a slot for a connection from `ip`, or says (and counts) why not.
    pub fn try_acquire(&self, ip: IpAddr) -> Result<ConnectionPermit, ConnectionRefused> {
        let limits = self.inner.limits;
        let result = {
            let mut counts = self.inner.counts.lock();
            let from_ip = counts.per_ip.get(&ip).copied().unwrap_or(0);
            if counts.total >= limits.max_total {
                Err(ConnectionRefused::GlobalCap(counts.total))
            } else if from_ip >= limits.max_per_ip {
                Err(ConnectionRefused::PerIpCap(from_ip))
            } else {
                counts.total += 1;
                *counts.per_ip.entry(ip).or_insert(0) += 1;
                Ok(counts.total)
            }
        };
        match result {
            Ok(total) => {
                self.inner.open.set(total as f64);
                Ok(ConnectionPermit {
                    limiter: Arc::clone(&self.inner),
                    ip,
                })
            }
            Err(refused) => {
                metrics::counter!(
                    "oa_connections_refused_total",
                    "listener" => self.inner.listener,
                    "reason" => refused.reason()
                )
                .increment(1);
                Err(refused)
            }
        }
    }

    /// Open connections now (in total).
    pub fn open(&self) -> usize {
        self.inner.counts.lock().total
    }

    /// Open connections from `ip` now.
    pub fn open_from(&self, ip: IpAddr) -> usize {
        self.inner
            .counts
            .lock()
            .per_ip
            .get(&ip)
            .copied()
            .unwrap_or(0)
    }
}

/// One open connection's slot; dropping it frees the slot.
#[derive(Debug)]
pub struct ConnectionPermit {
    limiter: Arc<Inner>,
    ip: IpAddr,
}

impl ConnectionPermit {
    /// The client address the slot is counted against.
    pub fn ip(&self) -> IpAddr {
        self.ip
    }
}

impl Drop for ConnectionPermit {
    fn drop(&mut self) {
        let total = {
            let mut counts = self.limiter.counts.lock();
            counts.total = counts.total.saturating_sub(1);
            if let Some(count) = counts.per_ip.get_mut(&self.ip) {
                *count -= 1;
                if *count == 0 {
                    counts.per_ip.remove(&self.ip);
                }
            }
            counts.total
        };
        self.limiter.open.set(total as f64);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::Ipv4Addr;

    #[test]
    fn caps_per_ip_and_in_total_and_frees_slots_on_drop() {
        let limiter = ConnectionLimiter::new(
            "test",
            ConnectionLimits {
                max_total: 3,
                max_per_ip: 2,
            },
        );
        let a = IpAddr::V4(Ipv4Addr::new(127, 0, 0, 1));
        let b = IpAddr::V4(Ipv4Addr::new(127, 0, 0, 2));
        let first = limiter.try_acquire(a).unwrap();
        let _second = limiter.try_acquire(a).unwrap();
        assert_eq!(
            limiter.try_acquire(a).unwrap_err(),
            ConnectionRefused::PerIpCap(2)
        );
        let _third = limiter.try_acquire(b).unwrap();
        assert_eq!(
            limiter.try_acquire(b).unwrap_err(),
            ConnectionRefused::GlobalCap(3)
        );
        drop(first);
        assert_eq!(limiter.open_from(a), 1);
        assert!(limiter.try_acquire(a).is_ok());
        assert_eq!(limiter.open(), 2, "the permit of the last call was dropped");
    }
}
