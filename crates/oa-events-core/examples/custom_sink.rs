//! A custom [`EventSink`]: every event oa publishes, appended to a JSON-lines file (one
//! envelope per line, exactly the Kafka record value), for an audit trail or a quick `jq`.
//!
//! Run with:
//!
//! ```not_rust
//! cargo run -p oa-events-core --example custom_sink -- /tmp/oa-events.jsonl
//! jq -c '{event_type, user_id, data}' /tmp/oa-events.jsonl
//! ```
//!
//! The example publishes three sample events through an [`EventPublisher`] holding the sink,
//! shuts the publisher down (which waits for the sink to drain) and prints how many lines the
//! file got. In a service, add the sink next to the others with
//! `EventPublisher::builder().sink(JsonLinesSink::new(path), SinkOptions::default())`.
//!
//! What a sink must do: deliver each batch in order (the publisher calls
//! [`EventSink::deliver`] from one task per sink, so a user's events arrive in publish order),
//! and return a [`SinkError`] for what it could not deliver (counted in
//! `oa_events_dropped_total{sink,reason="delivery_failed"}`). This sink holds no durable copy
//! of its own, so it keeps the default overflow policy (drop the oldest queued event when it
//! falls behind, counted as well).

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use oa_events_core::catalog::{MasterContractDownload, OrderEvent, OrderNotification};
use oa_events_core::{Envelope, Event, EventPublisher, EventSink, SinkError, SinkOptions};
use tokio::io::AsyncWriteExt;

/// Appends each envelope as one JSON line to a file.
#[derive(Debug, Clone)]
struct JsonLinesSink {
    path: PathBuf,
}

impl JsonLinesSink {
    fn new(path: impl Into<PathBuf>) -> Self {
        JsonLinesSink { path: path.into() }
    }

    async fn append(&self, batch: &[Arc<Envelope>]) -> std::io::Result<()> {
        let mut lines = Vec::new();
        for envelope in batch {
            lines.extend_from_slice(&envelope.to_json_bytes());
            lines.push(b'\n');
        }
        let mut file = tokio::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.path)
            .await?;
        file.write_all(&lines).await?;
        // Written through before the batch counts as delivered.
        file.sync_data().await
    }
}

impl EventSink for JsonLinesSink {
    fn name(&self) -> &'static str {
        "jsonl"
    }

    async fn deliver(&self, batch: &[Arc<Envelope>]) -> Result<(), SinkError> {
        self.append(batch).await.map_err(|error| SinkError {
            sink: "jsonl",
            count: batch.len(),
            reason: format!("{}: {error}", self.path.display()),
        })
    }
}

fn sample_events() -> Vec<Event> {
    vec![
        Event::for_user("alice", OrderEvent::sbin_market("BUY", "25120100000001")),
        Event::for_user(
            "bob",
            OrderNotification::info("INFY", "Positions Already Matched. No Action needed."),
        ),
        Event::system(MasterContractDownload {
            broker: "simulator".into(),
            status: "success".into(),
            message: "Master contract downloaded".into(),
            symbols_count: Some(1234),
            download_time_seconds: None,
        }),
    ]
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let Some(path) = std::env::args_os().nth(1).map(PathBuf::from) else {
        eprintln!("usage: custom_sink <output.jsonl>  (the file is appended to)");
        std::process::exit(2);
    };
    let publisher = EventPublisher::builder()
        .sink(JsonLinesSink::new(&path), SinkOptions::default())
        .build();
    let events = sample_events();
    let count = events.len();
    for event in events {
        publisher.publish(event);
    }
    // Waits until the sink has delivered what was queued; returns how many were left.
    let left = publisher.shutdown(Duration::from_secs(5)).await;
    let stats = publisher.stats();
    let delivered: u64 = stats.iter().map(|sink| sink.delivered).sum();
    let failed: u64 = stats.iter().map(|sink| sink.dropped_delivery_failed).sum();
    if left > 0 || failed > 0 {
        return Err(format!(
            "{failed} event(s) failed and {left} were left unwritten to {} (see the log)",
            path.display()
        )
        .into());
    }
    println!(
        "published {count} events; the jsonl sink wrote {delivered} to {}",
        path.display()
    );
    Ok(())
}
