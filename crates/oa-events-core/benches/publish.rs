//! `publish` hand-off cost into a sink that discards (goal: p99 < 5 µs, >= 1M events/s).
//!
//! Run: `cargo bench -p oa-events-core --bench publish`. Besides criterion's mean, this prints
//! a latency table (p50/p99/p999 of single publishes) and the sustained hand-off rate, compared
//! with a plain bounded tokio mpsc `try_send` as the baseline peer.

use std::hint::black_box;
use std::sync::Arc;
use std::time::{Duration, Instant};

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use oa_events_core::catalog::OrderNotification;
use oa_events_core::{Envelope, Event, EventPublisher, EventSink, SinkError, SinkOptions};

struct DiscardSink;

impl EventSink for DiscardSink {
    fn name(&self) -> &'static str {
        "discard"
    }

    async fn deliver(&self, batch: &[Arc<Envelope>]) -> Result<(), SinkError> {
        black_box(batch.len());
        Ok(())
    }
}

fn event() -> Event {
    Event::for_user(
        "user123",
        OrderNotification::info("SBIN", "Positions Already Matched. No Action needed."),
    )
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let index = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[index]
}

fn latency_table(runtime: &tokio::runtime::Runtime) {
    const SAMPLES: usize = 200_000;
    let publisher = runtime.block_on(async {
        EventPublisher::builder()
            .sink(DiscardSink, SinkOptions::default())
            .build()
    });
    let (sender, mut receiver) = tokio::sync::mpsc::channel::<Arc<Envelope>>(65_536);
    runtime.spawn(async move { while receiver.recv().await.is_some() {} });

    let mut rows = Vec::new();
    for (name, run) in [
        ("EventPublisher::publish", 0),
        ("baseline: envelope + mpsc try_send", 1),
    ] {
        let mut samples = Vec::with_capacity(SAMPLES);
        let started = Instant::now();
        for _ in 0..SAMPLES {
            let begin = Instant::now();
            if run == 0 {
                black_box(publisher.publish(event()));
            } else {
                let _ = black_box(sender.try_send(Arc::new(Envelope::new(event()))));
            }
            samples.push(begin.elapsed());
        }
        let total = started.elapsed();
        samples.sort_unstable();
        rows.push((
            name,
            percentile(&samples, 0.50),
            percentile(&samples, 0.99),
            percentile(&samples, 0.999),
            SAMPLES as f64 / total.as_secs_f64(),
        ));
    }
    println!(
        "\n{:<38} {:>10} {:>10} {:>10} {:>14}",
        "hand-off", "p50", "p99", "p99.9", "events/s"
    );
    for (name, p50, p99, p999, rate) in rows {
        println!("{name:<38} {p50:>10.2?} {p99:>10.2?} {p999:>10.2?} {rate:>14.0}");
    }
    println!();
    runtime.block_on(publisher.shutdown(Duration::from_secs(5)));
}

fn bench_publish(c: &mut Criterion) {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .expect("tokio runtime");
    latency_table(&runtime);

    let publisher = runtime.block_on(async {
        EventPublisher::builder()
            .sink(DiscardSink, SinkOptions::default())
            .build()
    });
    let mut group = c.benchmark_group("publish");
    group.throughput(Throughput::Elements(1));
    group.bench_function("one sink (discard)", |b| {
        b.iter(|| black_box(publisher.publish(event())))
    });
    group.finish();
    runtime.block_on(publisher.shutdown(Duration::from_secs(5)));
}

criterion_group!(benches, bench_publish);
criterion_main!(benches);
