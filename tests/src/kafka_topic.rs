//! Reading a Kafka topic back with kafka-python (`tests/python/kafka_consume.py`), a client
//! that is not ours, as the end-to-end tests' source of truth.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::run_python_script;

/// One record as kafka-python read it.
#[derive(Debug, Clone)]
pub struct KafkaRecord {
    /// Partition it was read from.
    pub partition: i64,
    /// Offset within the partition.
    pub offset: i64,
    /// The key, as UTF-8.
    pub key: String,
    /// The value exactly as it came over the wire.
    pub raw_value: String,
    /// The value parsed as JSON (`Null` when it is not JSON).
    pub value: Value,
    /// Header name -> value.
    pub headers: HashMap<String, String>,
    /// Where kafka-python's default partitioner (murmur2, like Java's) would put the key.
    pub expected_partition: i64,
}

impl KafkaRecord {
    /// The value parsed as JSON (`Null` when it is not JSON).
    pub fn json(&self) -> Value {
        self.value.clone()
    }

    fn from_line(line: &Value) -> Option<KafkaRecord> {
        let raw_value = line["value"].as_str().unwrap_or_default().to_string();
        Some(KafkaRecord {
            partition: line["partition"].as_i64()?,
            offset: line["offset"].as_i64()?,
            key: line["key"].as_str().unwrap_or_default().to_string(),
            value: serde_json::from_str(&raw_value).unwrap_or(Value::Null),
            raw_value,
            headers: line["headers"]
                .as_array()?
                .iter()
                .filter_map(|pair| {
                    Some((pair[0].as_str()?.to_string(), pair[1].as_str()?.to_string()))
                })
                .collect(),
            expected_partition: line["expected_partition"].as_i64().unwrap_or(-1),
        })
    }
}

/// The `data.orderid` of every record whose `event_type` is `event_type`.
pub fn order_ids(records: &[KafkaRecord], event_type: &str) -> std::collections::HashSet<String> {
    records
        .iter()
        .filter(|record| record.value["event_type"] == event_type)
        .filter_map(|record| record.value["data"]["orderid"].as_str().map(str::to_string))
        .collect()
}

/// Reads `topic` from its beginning until `enough` holds, re-reading every 300 ms.
///
/// # Panics
/// When the topic does not hold the expected records within 60 s (with what it did hold).
pub fn read_topic(
    bootstrap: &str,
    topic: &str,
    enough: impl Fn(&[KafkaRecord]) -> bool,
) -> Vec<KafkaRecord> {
    read_topic_with(bootstrap, topic, &[], enough)
}

/// [`read_topic`] with client security settings, given as oa's variables
/// (`KAFKA_SECURITY_PROTOCOL`, `KAFKA_SASL_*`, `KAFKA_SSL_*`), which the script maps to
/// kafka-python's own options.
///
/// # Panics
/// When the topic does not hold the expected records within 60 s (with what it did hold).
pub fn read_topic_with(
    bootstrap: &str,
    topic: &str,
    security: &[(String, String)],
    enough: impl Fn(&[KafkaRecord]) -> bool,
) -> Vec<KafkaRecord> {
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut env = vec![
        ("KAFKA_BOOTSTRAP", bootstrap.to_string()),
        ("KAFKA_TOPIC", topic.to_string()),
        ("TIMEOUT_S", "20".to_string()),
    ];
    env.extend(
        security
            .iter()
            .map(|(name, value)| (name.as_str(), value.clone())),
    );
    loop {
        let output = run_python_script("kafka_consume.py", &env);
        let records: Vec<KafkaRecord> = match output {
            Ok(text) => text
                .lines()
                .filter_map(|line| serde_json::from_str::<Value>(line).ok())
                .filter_map(|line| KafkaRecord::from_line(&line))
                .collect(),
            Err(_) => Vec::new(),
        };
        if enough(&records) {
            return records;
        }
        assert!(
            Instant::now() < deadline,
            "{topic} never held the expected records; last read: {records:#?}"
        );
        std::thread::sleep(Duration::from_millis(300));
    }
}
