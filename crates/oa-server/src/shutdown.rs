//! The shutdown deadline (`OA_SHUTDOWN_TIMEOUT_SECONDS`): one budget from the signal that
//! covers the HTTP drain, the order engine, market data, the event sinks and the Kafka relay.
//! A phase still running when the budget is spent is cut off and named in a warning, so a
//! stuck request cannot hang the process.

use std::collections::BTreeMap;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::{Request, State};
use axum::middleware::Next;
use axum::response::Response;
use parking_lot::Mutex;
use tokio::sync::watch;
use tokio::time::Instant;

/// When shutdown must be over; unset until a signal arrives.
#[derive(Debug, Clone)]
pub struct Deadline {
    at: watch::Receiver<Option<Instant>>,
    budget: Duration,
}

impl Deadline {
    /// A deadline that `budget` after the signal (sent on the returned sender) expires.
    pub fn new(budget: Duration) -> (watch::Sender<Option<Instant>>, Deadline) {
        let (sender, at) = watch::channel(None);
        (sender, Deadline { at, budget })
    }

    /// Resolves when the signal arrived.
    pub async fn signalled(&self) {
        let mut at = self.at.clone();
        let _ = at.wait_for(Option::is_some).await;
    }

    /// The instant shutdown must be over (now + budget when no signal arrived, e.g. when the
    /// server stopped on an error).
    fn instant(&self) -> Instant {
        self.at
            .borrow()
            .unwrap_or_else(|| Instant::now() + self.budget)
    }

    /// Time left before the deadline.
    pub fn remaining(&self) -> Duration {
        self.instant().saturating_duration_since(Instant::now())
    }

    /// Runs `phase` to its end, or until the deadline once a signal arrived; `None` when it
    /// was cut off.
    pub async fn run<F: Future>(&self, phase: F) -> Option<F::Output> {
        let mut at = self.at.clone();
        let expiry = async move {
            let instant = match at.wait_for(Option::is_some).await {
                Ok(at) => *at,
                Err(_) => None,
            };
            match instant {
                Some(instant) => tokio::time::sleep_until(instant).await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            output = phase => Some(output),
            () = expiry => None,
        }
    }
}

/// The HTTP requests being served, for the shutdown log: what a deadline cut off.
#[derive(Debug, Clone, Default)]
pub struct InFlightRequests {
    inner: Arc<Mutex<Requests>>,
}

/// The requests being served, by a sequence number.
#[derive(Debug, Default)]
struct Requests {
    last_id: u64,
    open: BTreeMap<u64, (String, Instant)>,
}

/// Removes its request from the set when the request ends (or is dropped).
struct Tracked {
    requests: InFlightRequests,
    id: u64,
}

impl Drop for Tracked {
    fn drop(&mut self) {
        self.requests.inner.lock().open.remove(&self.id);
    }
}

impl InFlightRequests {
    fn start(&self, what: String) -> Tracked {
        let mut inner = self.inner.lock();
        inner.last_id += 1;
        let id = inner.last_id;
        inner.open.insert(id, (what, Instant::now()));
        Tracked {
            requests: self.clone(),
            id,
        }
    }

    /// How many requests are in flight and a description of the first `limit`
    /// ("POST /api/v1/placeorder (open 12.3 s)").
    pub fn describe(&self, limit: usize) -> (usize, Vec<String>) {
        let inner = self.inner.lock();
        let listed = inner
            .open
            .values()
            .take(limit)
            .map(|(what, since)| format!("{what} (open {:.1} s)", since.elapsed().as_secs_f64()))
            .collect();
        (inner.open.len(), listed)
    }
}

/// Middleware: tracks each request while it is served.
pub async fn track(
    State(requests): State<InFlightRequests>,
    request: Request,
    next: Next,
) -> Response {
    let _tracked = requests.start(format!("{} {}", request.method(), request.uri().path()));
    next.run(request).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_phase_is_cut_off_only_after_the_signal_and_the_budget() {
        let budget = Duration::from_millis(300);
        let (signal, deadline) = Deadline::new(budget);
        // Before the signal, nothing is cut off (a phase may outlive the budget).
        let slow = deadline.run(tokio::time::sleep(budget * 2)).await;
        assert_eq!(slow, Some(()));
        assert!(
            deadline.remaining() > budget / 2,
            "no signal: the whole budget"
        );
        signal.send_replace(Some(Instant::now() + budget));
        let started = Instant::now();
        let stuck = deadline.run(std::future::pending::<()>()).await;
        assert_eq!(stuck, None);
        assert!(started.elapsed() >= budget, "{:?}", started.elapsed());
        assert_eq!(deadline.remaining(), Duration::ZERO);
    }

    #[test]
    fn finished_requests_leave_the_set() {
        let requests = InFlightRequests::default();
        let first = requests.start("POST /a".into());
        let _second = requests.start("POST /b".into());
        drop(first);
        let (count, listed) = requests.describe(10);
        assert_eq!(count, 1);
        assert!(listed[0].starts_with("POST /b (open "), "{listed:?}");
    }
}
