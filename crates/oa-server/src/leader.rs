//! The services only one process of an installation may run at a time: the Kafka outbox
//! relay (with its housekeeping) and the ESB consumer. An `all` process starts them at
//! start-up; a `core` when it takes the lead (`oa_api::leadership`), never while it stands by.

use std::sync::{Arc, OnceLock};
use std::time::Duration;

use anyhow::Context;
use oa_api::kafka_outbox::StoreOutbox;
use oa_api::outbox::OutboxTable;
use oa_events_core::{Envelope, EventSink, OverflowPolicy, SinkError};
use oa_events_kafka::{EsbConsumer, KafkaRelay, KafkaSink, OUTBOX_SINK_NAME};
use parking_lot::Mutex;

use crate::config::Settings;
use crate::http::EsbHealth;

/// The relay, its housekeeping and the ESB consumer, once started.
#[derive(Debug, Default)]
pub struct LeaderServices {
    relay: OnceLock<Arc<KafkaRelay>>,
    outbox: OnceLock<StoreOutbox>,
    engine: OnceLock<oa_api::EngineHandle>,
    sink: OnceLock<KafkaSink>,
    esb_health: OnceLock<EsbHealth>,
    esb_consumer: Mutex<Option<EsbConsumer>>,
    maintenance: Mutex<Option<tokio::task::JoinHandle<()>>>,
}

impl LeaderServices {
    /// Starts the Kafka relay and the outbox housekeeping (KAFKA and BOTH modes; a second
    /// call does nothing).
    pub fn start_relay(&self, settings: &Settings) -> anyhow::Result<()> {
        let Some(kafka) = &settings.kafka else {
            return Ok(());
        };
        if self.relay.get().is_some() {
            return Ok(());
        }
        let location = oa_api::parse_database_url(&settings.api.database_url)?;
        let table = OutboxTable::open(&location).context("opening the outbox table")?;
        let outbox = StoreOutbox::new(table);
        if let Some(engine) = self.engine.get() {
            outbox.mark_through_engine(engine.clone());
        }
        let _ = self.outbox.set(outbox.clone());
        *self.maintenance.lock() = Some(settings.outbox.spawn(&outbox));
        let relay = Arc::new(
            KafkaRelay::spawn(kafka.clone(), Arc::new(outbox))
                .context("starting the Kafka relay")?,
        );
        let _ = self.sink.set(relay.sink());
        let _ = self.relay.set(relay);
        Ok(())
    }

    /// From now on, the relay's delivered marks are written by `engine`, in its batches
    /// (`StoreOutbox::mark_through_engine`), whether the relay runs already or starts later.
    pub fn mark_through_engine(&self, engine: oa_api::EngineHandle) {
        let _ = self.engine.set(engine.clone());
        if let Some(outbox) = self.outbox.get() {
            outbox.mark_through_engine(engine);
        }
    }

    /// Starts the ESB consumer when its settings allow (KAFKA and BOTH modes).
    pub fn start_esb(&self, settings: &Settings, api: &oa_api::Api) -> anyhow::Result<()> {
        let (Some(kafka), Some(security)) = (&settings.kafka, &settings.esb) else {
            return Ok(());
        };
        if self.esb_health.get().is_some() {
            return Ok(());
        }
        let (consumer, health) = crate::app::start_esb(kafka, security, api)?;
        *self.esb_consumer.lock() = consumer;
        if let Some(health) = health {
            let _ = self.esb_health.set(health);
        }
        Ok(())
    }

    /// The relay, once started.
    pub fn relay(&self) -> Option<Arc<KafkaRelay>> {
        self.relay.get().cloned()
    }

    /// What `/health` says about the ESB consumer, once started.
    pub fn esb_health(&self) -> Option<&EsbHealth> {
        self.esb_health.get()
    }

    /// The publisher's sink for the relay: appends to the outbox and wakes the relay once it
    /// runs; until then (a standby core, which changes nothing) it drops what it is given.
    pub fn sink(self: &Arc<Self>) -> RelaySink {
        RelaySink {
            services: Arc::clone(self),
        }
    }

    /// Stops the ESB consumer (within `timeout`).
    pub async fn stop_esb(&self, timeout: Duration) {
        let consumer = self.esb_consumer.lock().take();
        if let Some(consumer) = consumer {
            consumer.shutdown(timeout).await;
        }
    }

    /// Stops the housekeeping and the relay (delivering what is pending within `timeout`;
    /// the rest stays in the outbox).
    pub async fn stop_relay(&self, timeout: Duration) {
        if let Some(task) = self.maintenance.lock().take() {
            task.abort();
        }
        if let Some(relay) = self.relay.get() {
            relay.shutdown(timeout).await;
        }
    }
}

/// See [`LeaderServices::sink`].
#[derive(Debug, Clone)]
pub struct RelaySink {
    services: Arc<LeaderServices>,
}

impl EventSink for RelaySink {
    fn name(&self) -> &'static str {
        OUTBOX_SINK_NAME
    }

    fn overflow_policy(&self) -> OverflowPolicy {
        KafkaSink::OVERFLOW_POLICY
    }

    async fn deliver(&self, batch: &[Arc<Envelope>]) -> Result<(), SinkError> {
        match self.services.sink.get() {
            Some(sink) => sink.deliver(batch).await,
            None => {
                tracing::debug!(
                    count = batch.len(),
                    "events published while the Kafka relay is not running (standby core) were not queued for Kafka"
                );
                Ok(())
            }
        }
    }
}
