//! [`serve`]: HTTP serving that a misbehaving client cannot hold open.
//!
//! - every accepted socket takes a [`ConnectionPermit`] (global and per-IP caps); a refused
//!   one gets `503 Service Unavailable` with a JSON body and is closed;
//! - the request head must arrive within `header_timeout` (slowloris), counted from when the
//!   server is ready to read it, which includes the wait for the next request on a kept-alive
//!   connection;
//! - a kept-alive connection with no request in flight for `idle_timeout` is closed;
//! - TCP_NODELAY on every socket (without it small responses wait for Nagle's algorithm:
//!   p99 0.5 ms -> 20 ms);
//! - requests carry `ConnectInfo<SocketAddr>` like axum's `into_make_service_with_connect_info`.
//!
//! Upgraded connections (WebSocket) leave the HTTP connection count when they upgrade: the
//! WebSocket and Socket.IO layers count them with their own caps.

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Body;
use axum::extract::ConnectInfo;
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto::Builder;
use tokio::io::AsyncWriteExt;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tower::ServiceExt;

use crate::connections::{ConnectionLimiter, ConnectionLimits, ConnectionPermit};

/// Settings of [`serve`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ServeOptions {
    /// The listener's name in metrics (`oa_connections{listener}`).
    pub listener: &'static str,
    /// Caps on open connections.
    pub connections: ConnectionLimits,
    /// Time allowed to send a complete request head.
    pub header_timeout: Duration,
    /// A kept-alive connection idle (no request in flight) this long is closed.
    pub idle_timeout: Duration,
    /// How long a graceful shutdown waits for in-flight requests before dropping them.
    pub drain_timeout: Duration,
}

impl ServeOptions {
    /// Defaults for a listener named `listener`: 4096 connections, 256 per IP, 10 s for a
    /// request head, 60 s idle.
    pub fn new(listener: &'static str) -> Self {
        ServeOptions {
            listener,
            connections: ConnectionLimits {
                max_total: 4096,
                max_per_ip: 256,
            },
            header_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(60),
            drain_timeout: Duration::from_secs(10),
        }
    }
}

/// Serves `router` on `listener` until `shutdown` resolves, then lets in-flight requests
/// finish (up to `drain_timeout`). Returns the accept error that stopped it, if any.
pub async fn serve(
    listener: TcpListener,
    router: Router,
    options: ServeOptions,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    // Turn every route into its final service once, as `into_make_service` does: calling an
    // unconverted router per request would rebuild layered services (Socket.IO's engine and
    // its sessions among them) on every request.
    let router: Router = router.with_state(());
    let limiter = ConnectionLimiter::new(options.listener, options.connections);
    let (stop, stopped) = watch::channel(false);
    let (done, all_done) = watch::channel(());
    let mut builder = Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(options.header_timeout);
    builder.http2().timer(TokioTimer::new());
    let builder = Arc::new(builder);
    tokio::pin!(shutdown);
    loop {
        let (tcp, peer) = tokio::select! {
            () = &mut shutdown => break,
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(error) => {
                    // Out of file descriptors or a connection reset before accept: wait a
                    // little instead of spinning, and keep serving.
                    tracing::debug!(%error, listener = options.listener, "accept failed");
                    tokio::time::sleep(Duration::from_millis(20)).await;
                    continue;
                }
            },
        };
        let permit = match limiter.try_acquire(peer.ip()) {
            Ok(permit) => permit,
            Err(refused) => {
                tracing::debug!(%peer, reason = refused.reason(), listener = options.listener, "connection refused");
                tokio::spawn(refuse(tcp, refused.to_string()));
                continue;
            }
        };
        if let Err(error) = tcp.set_nodelay(true) {
            tracing::debug!(%error, "cannot set TCP_NODELAY on an accepted socket");
        }
        tokio::spawn(serve_connection(
            tcp,
            peer,
            router.clone(),
            Arc::clone(&builder),
            options,
            permit,
            stopped.clone(),
            done.clone(),
        ));
    }
    drop(listener);
    let _ = stop.send(true);
    drop(done);
    let mut all_done = all_done;
    // `changed` fails once every connection task dropped its `done` sender.
    let _ = tokio::time::timeout(options.drain_timeout, async {
        while all_done.changed().await.is_ok() {}
    })
    .await;
    Ok(())
}

/// Answers a refused connection with 503 and closes it, without reading its request.
async fn refuse(mut tcp: TcpStream, message: String) {
    let body = format!(
        r#"{{"status":"error","message":"{}"}}"#,
        message.replace('"', "'")
    );
    let response = format!(
        "HTTP/1.1 503 Service Unavailable\r\ncontent-type: application/json\r\ncontent-length: {}\r\nretry-after: 1\r\nconnection: close\r\n\r\n{body}",
        body.len()
    );
    let _ = tokio::time::timeout(Duration::from_secs(1), async {
        let _ = tcp.write_all(response.as_bytes()).await;
        let _ = tcp.shutdown().await;
    })
    .await;
}

/// Requests in flight on one connection and when the last one ended.
#[derive(Debug)]
struct Activity {
    started: Instant,
    in_flight: AtomicUsize,
    last_done_ms: AtomicU64,
}

impl Activity {
    fn idle_for(&self) -> Option<Duration> {
        if self.in_flight.load(Ordering::Acquire) > 0 {
            return None;
        }
        let last = Duration::from_millis(self.last_done_ms.load(Ordering::Acquire));
        Some(self.started.elapsed().saturating_sub(last))
    }
}

/// Marks a request in flight until dropped.
struct InFlight(Arc<Activity>);

impl InFlight {
    fn new(activity: &Arc<Activity>) -> Self {
        activity.in_flight.fetch_add(1, Ordering::AcqRel);
        InFlight(Arc::clone(activity))
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        let now = u64::try_from(self.0.started.elapsed().as_millis()).unwrap_or(u64::MAX);
        self.0.last_done_ms.store(now, Ordering::Release);
        self.0.in_flight.fetch_sub(1, Ordering::AcqRel);
    }
}

#[allow(clippy::too_many_arguments)]
async fn serve_connection(
    tcp: TcpStream,
    peer: SocketAddr,
    router: Router,
    builder: Arc<Builder<TokioExecutor>>,
    options: ServeOptions,
    permit: ConnectionPermit,
    mut stopped: watch::Receiver<bool>,
    done: watch::Sender<()>,
) {
    let activity = Arc::new(Activity {
        started: Instant::now(),
        in_flight: AtomicUsize::new(0),
        last_done_ms: AtomicU64::new(0),
    });
    let service = {
        let activity = Arc::clone(&activity);
        hyper::service::service_fn(move |mut request: hyper::Request<Incoming>| {
            request.extensions_mut().insert(ConnectInfo(peer));
            let in_flight = InFlight::new(&activity);
            let router = router.clone();
            async move {
                let response = router.oneshot(request.map(Body::new)).await;
                drop(in_flight);
                Ok::<_, Infallible>(match response {
                    Ok(response) => response,
                    Err(never) => match never {},
                })
            }
        })
    };
    let connection = builder.serve_connection_with_upgrades(TokioIo::new(tcp), service);
    tokio::pin!(connection);
    let check_every =
        (options.idle_timeout / 4).clamp(Duration::from_millis(50), Duration::from_secs(1));
    let mut idle_check = tokio::time::interval(check_every);
    idle_check.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut closing = false;
    loop {
        tokio::select! {
            result = connection.as_mut() => {
                if let Err(error) = result {
                    let timed_out = error
                        .downcast_ref::<hyper::Error>()
                        .is_some_and(hyper::Error::is_timeout);
                    if timed_out {
                        metrics::counter!("oa_http_header_timeouts_total", "listener" => options.listener)
                            .increment(1);
                    }
                    tracing::trace!(%peer, %error, timed_out, "HTTP connection ended with an error");
                }
                break;
            }
            changed = stopped.changed(), if !closing => {
                if changed.is_err() || *stopped.borrow() {
                    closing = true;
                    connection.as_mut().graceful_shutdown();
                }
            }
            _ = idle_check.tick(), if !closing => {
                if activity.idle_for().is_some_and(|idle| idle >= options.idle_timeout) {
                    tracing::trace!(%peer, "closing an idle kept-alive HTTP connection");
                    closing = true;
                    connection.as_mut().graceful_shutdown();
                }
            }
        }
    }
    drop(permit);
    drop(done);
}
