//! Machine-readable contracts generated from the catalog types: a JSON Schema of the envelope
//! and its payloads, and an AsyncAPI 3 document of the Socket.IO events and Kafka topics.
//! `cargo xtask codegen` writes them to `docs/`; CI fails when the checked-in copies drift.

use schemars::generate::{Contract, SchemaSettings};
use serde_json::{Map, Value, json};

use crate::catalog::{ESB_ACKNOWLEDGMENT, ESB_COMMANDS, EventPayload};
use crate::envelope::{CLOUDEVENTS_SPEC_VERSION, ENVELOPE_VERSION, SOURCE, SYSTEM_USER_ID};

/// Default name of the outbound Kafka topic (`KAFKA_ORDER_EVENTS_TOPIC`).
pub const DEFAULT_ORDER_EVENTS_TOPIC: &str = "from_openalgo_order_events";

/// Default name of the inbound ESB command topic (`KAFKA_ESB_EVENTS_TOPIC`).
pub const DEFAULT_ESB_EVENTS_TOPIC: &str = "from_esb_order_events";

/// The inbound ESB envelope: a command (or acknowledgment) from an external system.
fn esb_command_schema() -> Value {
    let mut types: Vec<&str> = ESB_COMMANDS.to_vec();
    types.push(ESB_ACKNOWLEDGMENT);
    json!({
        "type": "object",
        "description": "A command from an external system (docs/esb.md). It must be signed (record header `oa_signature`) unless the owner set KAFKA_ESB_TRUST_UNSIGNED=true, and `user_id` must have allowed ESB control (`oa-server esb allow`). oa executes it for `user_id` exactly as the REST endpoint of the same action, at most once per `id`, and publishes the outcome as an `esb_command_result` event whose `correlation_id` is this `id`. Records that are not authenticated, stale or do not match go to the dead-letter topic `<topic>.dlq`.",
        "required": ["id", "event_type", "user_id", "data"],
        "properties": {
            "id": {"type": "string", "minLength": 1, "maxLength": 200, "description": "Unique command id (a UUID is recommended); a command whose id was already processed is not executed again."},
            "event_type": {"type": "string", "enum": types, "description": "place_order = POST /api/v1/placeorder, place_smart_order = placesmartorder, modify_order = modifyorder, cancel_order = cancelorder, cancel_all_orders = cancelallorder, close_position = closeposition; order_acknowledgment is recorded and has no effect on orders."},
            "timestamp": {"type": "string", "format": "date-time", "description": "When the external system created the command, RFC 3339. Required in signed commands: older than KAFKA_ESB_MAX_AGE_SECONDS (default 300) or more than 60 s in the future is dead-lettered `expired`."},
            "user_id": {"type": "string", "description": "An existing oa user; the command runs as this user."},
            "source": {"type": "string", "description": "The sending system, e.g. \"esb\" (informational)."},
            "version": {"const": ENVELOPE_VERSION},
            "data": {"type": "object", "description": "The REST body of the command's endpoint without `apikey` (same fields, same validation, same error messages: docs/rest-api.md). For order_acknowledgment: any object of at most 4096 bytes as JSON (larger is dead-lettered `too_large`)."}
        }
    })
}

/// Payload schemas by event name, with definitions stored under `definitions_path`.
fn payload_schemas(definitions_path: &str) -> (Vec<(&'static str, Value)>, Map<String, Value>) {
    let settings = SchemaSettings::draft2020_12().with(|settings| {
        settings.definitions_path = definitions_path.to_string().into();
        // These are schemas of what oa writes: optional keys are absent, not null.
        settings.contract = Contract::Serialize;
    });
    let mut generator = settings.into_generator();
    let schemas = EventPayload::schemas(&mut generator)
        .into_iter()
        .map(|(name, schema)| (name, schema.to_value()))
        .collect();
    (schemas, generator.take_definitions(true))
}

/// The envelope's fields other than `data`.
fn envelope_properties() -> Value {
    json!({
        "id": {"type": "string", "format": "uuid", "description": "Unique event id (UUIDv7, time-ordered). Duplicates of one event carry the same id: deduplicate on it."},
        "event_type": {"type": "string", "enum": EventPayload::NAMES, "description": "The event name; also the Socket.IO event name."},
        "timestamp": {"type": "string", "format": "date-time", "description": "Creation time, RFC 3339 UTC with microseconds, e.g. 2026-01-29T10:30:45.123456Z."},
        "user_id": {"type": "string", "description": format!("The user the event belongs to; {SYSTEM_USER_ID:?} for system-wide events.")},
        "source": {"const": SOURCE},
        "version": {"const": ENVELOPE_VERSION},
        "data": {"type": "object", "description": "The event payload: the same object the Socket.IO event carries."}
    })
}

/// The envelope's keys, all required, in the order they are serialized.
pub const ENVELOPE_KEYS: [&str; 7] = [
    "id",
    "event_type",
    "timestamp",
    "user_id",
    "source",
    "version",
    "data",
];

/// JSON Schema (draft 2020-12) of the event envelope, with one `if`/`then` per event type
/// binding `data` to that event's payload schema.
pub fn events_json_schema() -> Value {
    let (schemas, definitions) = payload_schemas("/$defs");
    let bindings: Vec<Value> = schemas
        .iter()
        .map(|(name, schema)| {
            json!({
                "if": {"properties": {"event_type": {"const": name}}, "required": ["event_type"]},
                "then": {"properties": {"data": schema}}
            })
        })
        .collect();
    json!({
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "$id": "urn:oa:schema:events",
        "title": "oa event envelope",
        "description": "Every order event and notification oa publishes. On Kafka the record value is this envelope; on Socket.IO the event name is `event_type` and the payload is `data`. Generated by `cargo xtask codegen` from oa-events-core: do not edit.",
        "type": "object",
        "required": ENVELOPE_KEYS,
        "properties": envelope_properties(),
        "allOf": bindings,
        "$defs": definitions,
    })
}

/// AsyncAPI 3.0 document: the Socket.IO events (one message per event name) and the Kafka
/// topic of envelopes (key, headers, value).
pub fn asyncapi_document() -> Value {
    let (schemas, mut components_schemas) = payload_schemas("/components/schemas");
    components_schemas.insert(
        "EnvelopeBase".into(),
        json!({
            "type": "object",
            "required": ENVELOPE_KEYS,
            "properties": envelope_properties(),
        }),
    );
    components_schemas.insert(
        "CloudEventsHeaders".into(),
        json!({
            "type": "object",
            "description": "CloudEvents binary-mode attributes as Kafka record headers.",
            "properties": {
                "ce_id": {"type": "string", "description": "= envelope id"},
                "ce_type": {"type": "string", "description": "= envelope event_type"},
                "ce_source": {"const": SOURCE},
                "ce_time": {"type": "string", "format": "date-time", "description": "= envelope timestamp"},
                "ce_specversion": {"const": CLOUDEVENTS_SPEC_VERSION},
                "content-type": {"const": "application/json"}
            },
            "required": ["ce_id", "ce_type", "ce_source", "ce_time", "ce_specversion", "content-type"]
        }),
    );

    components_schemas.insert("EsbCommand".into(), esb_command_schema());

    let mut messages = Map::new();
    messages.insert(
        "esb_command".into(),
        json!({
            "name": "esb_command",
            "title": "Command from an external system",
            "payload": {"$ref": "#/components/schemas/EsbCommand"},
            "headers": {
                "type": "object",
                "required": ["oa_signature"],
                "properties": {
                    "oa_signature": {"type": "string", "pattern": "^[A-Za-z0-9._-]{1,64}:[0-9a-f]{64}$", "description": "`<key id>:<lowercase hex>`: HMAC-SHA256 of the exact record value bytes under the secret of `<key id>` in KAFKA_ESB_SIGNING_KEYS. Missing, malformed, unknown key id or wrong: dead-lettered `unauthenticated`. Not required only when the owner set KAFKA_ESB_TRUST_UNSIGNED=true."}
                }
            },
            "bindings": {"kafka": {
                "key": {"type": "string", "description": "Any key; the user id keeps one user's commands in one partition, in order."},
                "bindingVersion": "0.5.0"
            }}
        }),
    );
    messages.insert(
        "esb_dead_letter".into(),
        json!({
            "name": "esb_dead_letter",
            "title": "An inbound record oa could not process",
            "description": "The original record's value, key and headers, unchanged, plus headers saying why.",
            "headers": {
                "type": "object",
                "required": ["oa_dlq_reason", "oa_dlq_code", "oa_dlq_topic", "oa_dlq_partition", "oa_dlq_offset"],
                "properties": {
                    "oa_dlq_reason": {"type": "string", "description": "Why the record was not processed: `<code>: <explanation>`."},
                    "oa_dlq_code": {"type": "string", "enum": ["invalid", "unauthenticated", "expired", "rate_limited", "too_large"], "description": "The reason's code (docs/esb.md, Dead letters)."},
                    "oa_dlq_topic": {"type": "string", "description": "The inbound topic."},
                    "oa_dlq_partition": {"type": "string", "description": "The inbound partition (decimal)."},
                    "oa_dlq_offset": {"type": "string", "description": "The inbound offset (decimal)."}
                }
            },
            "payload": {"description": "The original record value, byte for byte (it may not be JSON)."}
        }),
    );
    let mut socketio_messages = Map::new();
    let mut kafka_messages = Map::new();
    for (name, schema) in &schemas {
        messages.insert(
            (*name).to_string(),
            json!({
                "name": name,
                "title": format!("Socket.IO event {name}"),
                "payload": schema,
            }),
        );
        let kafka_name = format!("{name}_envelope");
        messages.insert(
            kafka_name.clone(),
            json!({
                "name": name,
                "title": format!("Kafka record of {name}"),
                "headers": {"$ref": "#/components/schemas/CloudEventsHeaders"},
                "payload": {
                    "allOf": [
                        {"$ref": "#/components/schemas/EnvelopeBase"},
                        {"type": "object", "properties": {"event_type": {"const": name}, "data": schema}}
                    ]
                },
                "bindings": {"kafka": {
                    "key": {"type": "string", "description": format!("The user id ({SYSTEM_USER_ID:?} for system-wide events): one user's events share a partition and stay in order.")},
                    "bindingVersion": "0.5.0"
                }}
            }),
        );
        socketio_messages.insert(
            (*name).to_string(),
            json!({"$ref": format!("#/components/messages/{name}")}),
        );
        kafka_messages.insert(
            kafka_name.clone(),
            json!({"$ref": format!("#/components/messages/{kafka_name}")}),
        );
    }

    json!({
        "asyncapi": "3.0.0",
        "info": {
            "title": "oa order events",
            "version": env!("CARGO_PKG_VERSION"),
            "description": "Order events and notifications published by oa, OpenAlgo-compatible. ORDER_EVENT_MODE selects Socket.IO (default), Kafka, or both; both carry the same event names and payloads. Generated by `cargo xtask codegen` from oa-events-core: do not edit."
        },
        "defaultContentType": "application/json",
        "servers": {
            "socketio": {
                "host": "127.0.0.1:5000",
                "protocol": "ws",
                "pathname": "/socket.io/",
                "description": "Socket.IO v5 over Engine.IO 4 (polling and websocket), default namespace. Authenticate with auth {\"apikey\": \"...\"}."
            },
            "kafka": {
                "host": "localhost:9092",
                "protocol": "kafka",
                "description": "Any Kafka-protocol cluster named by KAFKA_BOOTSTRAP_SERVERS."
            }
        },
        "channels": {
            "socketio": {
                "address": "/",
                "title": "Socket.IO default namespace",
                "description": "Each message's name is the Socket.IO event name. A client receives its own user's events and system-wide ones.",
                "servers": [{"$ref": "#/servers/socketio"}],
                "messages": socketio_messages
            },
            "orderEvents": {
                "address": DEFAULT_ORDER_EVENTS_TOPIC,
                "title": "Outbound order events (KAFKA_ORDER_EVENTS_TOPIC)",
                "description": "One record per event: key = user id, value = JSON envelope, CloudEvents headers.",
                "servers": [{"$ref": "#/servers/kafka"}],
                "messages": kafka_messages
            },
            "esbCommands": {
                "address": DEFAULT_ESB_EVENTS_TOPIC,
                "title": "Inbound ESB commands (KAFKA_ESB_EVENTS_TOPIC)",
                "description": "Commands from external systems, consumed by oa in KAFKA and BOTH modes. Results are published on the order-events topic as esb_command_result.",
                "servers": [{"$ref": "#/servers/kafka"}],
                "messages": {"esb_command": {"$ref": "#/components/messages/esb_command"}}
            },
            "esbDeadLetters": {
                "address": format!("{DEFAULT_ESB_EVENTS_TOPIC}.dlq"),
                "title": "Dead letters of the ESB topic (<KAFKA_ESB_EVENTS_TOPIC>.dlq)",
                "description": "Inbound records oa could not process: not JSON, unknown event_type, unknown user, invalid data.",
                "servers": [{"$ref": "#/servers/kafka"}],
                "messages": {"esb_dead_letter": {"$ref": "#/components/messages/esb_dead_letter"}}
            }
        },
        "operations": {
            "emitSocketIoEvents": {
                "action": "send",
                "title": "oa emits events to Socket.IO clients",
                "channel": {"$ref": "#/channels/socketio"}
            },
            "publishOrderEvents": {
                "action": "send",
                "title": "oa produces envelopes to the order-events topic",
                "channel": {"$ref": "#/channels/orderEvents"}
            },
            "receiveEsbCommands": {
                "action": "receive",
                "title": "oa consumes commands from the ESB topic",
                "channel": {"$ref": "#/channels/esbCommands"}
            },
            "publishEsbDeadLetters": {
                "action": "send",
                "title": "oa produces unprocessable ESB records to the dead-letter topic",
                "channel": {"$ref": "#/channels/esbDeadLetters"}
            }
        },
        "components": {
            "schemas": components_schemas,
            "messages": messages
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::catalog::OrderNotification;
    use crate::envelope::{Envelope, Event};

    #[test]
    fn json_schema_binds_every_event_type() {
        let schema = events_json_schema();
        assert_eq!(
            schema["allOf"].as_array().unwrap().len(),
            EventPayload::NAMES.len()
        );
        assert!(schema["$defs"].get("OrderEvent").is_some());
        assert!(schema["$defs"].get("OrderUpdate").is_some());
    }

    #[test]
    fn optional_keys_are_not_required_in_payload_schemas() {
        let schema = events_json_schema();
        let required = schema["$defs"]["OrderEvent"]["required"]
            .as_array()
            .unwrap();
        assert!(required.contains(&json!("symbol")));
        assert!(!required.contains(&json!("batch_order")));
    }

    #[test]
    fn asyncapi_references_resolve() {
        let document = asyncapi_document();
        let text = document.to_string();
        // Every "$ref" points inside the document.
        for reference in text.split("\"$ref\":\"").skip(1) {
            let pointer = &reference[1..reference.find('"').unwrap()];
            assert!(
                document.pointer(pointer).is_some(),
                "dangling reference #{pointer}"
            );
        }
    }

    #[test]
    fn a_real_envelope_has_every_required_key() {
        let envelope = Envelope::new(Event::for_user("u", OrderNotification::info("S", "m")));
        let value = serde_json::to_value(&envelope).unwrap();
        for key in ENVELOPE_KEYS {
            assert!(value.get(key).is_some(), "{key}");
        }
    }
}
