//! Socket.IO listeners for the delivery benchmarks: many rust_socketio clients of one user,
//! each passing what it reads from one event to a shared channel.

use std::time::{Duration, Instant};

use anyhow::Context;
use futures_util::FutureExt;
use rust_socketio::asynchronous::{Client, ClientBuilder};
use rust_socketio::{Payload, TransportType};
use serde_json::{Value, json};
use tokio::sync::mpsc;

/// Connects `count` WebSocket clients authenticated with `apikey`, one after the other, each
/// connected to the namespace before the next starts. The first value of every `event` a
/// client receives goes to `read` with the time it arrived; what `read` returns goes to the
/// channel.
pub async fn connect_listeners<T: Send + 'static>(
    url: &str,
    apikey: &str,
    event: &str,
    count: usize,
    read: impl Fn(&Value, Instant) -> Option<T> + Clone + Send + Sync + 'static,
) -> anyhow::Result<(Vec<Client>, mpsc::UnboundedReceiver<T>)> {
    let (tx, rx) = mpsc::unbounded_channel();
    let mut clients = Vec::with_capacity(count);
    for _ in 0..count {
        let (ready_tx, mut ready_rx) = mpsc::unbounded_channel::<()>();
        let tx = tx.clone();
        let read = read.clone();
        let client = ClientBuilder::new(url)
            .namespace("/")
            .auth(json!({"apikey": apikey}))
            .transport_type(TransportType::Websocket)
            .reconnect(false)
            .on(rust_socketio::Event::Connect, move |_, _| {
                let _ = ready_tx.send(());
                async {}.boxed()
            })
            .on(event, move |payload, _| {
                let received = Instant::now();
                if let Payload::Text(values) = payload
                    && let Some(item) = values.first().and_then(|data| read(data, received))
                {
                    let _ = tx.send(item);
                }
                async {}.boxed()
            })
            .connect()
            .await
            .context("a Socket.IO client cannot connect")?;
        tokio::time::timeout(Duration::from_secs(10), ready_rx.recv())
            .await
            .context("namespace connect")?;
        clients.push(client);
    }
    Ok((clients, rx))
}
