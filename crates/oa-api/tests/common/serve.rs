//! Serving a router on a free port, shared by the test harness and the benchmarks (which
//! include this file with `#[path]`).

use std::net::SocketAddr;

/// Serves `router` (with client addresses) on a free port; returns `http://host:port`.
pub async fn serve(router: axum::Router) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    tokio::spawn(async move {
        axum::serve(
            listener,
            router.into_make_service_with_connect_info::<SocketAddr>(),
        )
        .await
        .unwrap();
    });
    format!("http://{address}")
}
