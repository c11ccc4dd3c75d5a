//! # oa-events-kafka
//!
//! The Kafka side of oa's event layer (mode KAFKA and BOTH): the producer sink, the durable
//! outbox relay, the inbound ESB command consumer and topic administration, on rskafka.
//!
//! Not built yet: see the "Kafka mode" issue. Nothing in this crate is functional today.
