//! [`EsbPosition`]: where an ESB command record was read. The Kafka consumer that reads the
//! record and the command runner that stores its offset share it, so neither depends on the
//! other.

/// Where an ESB record was read: the consumer group, topic and partition that key the
/// stored offset, and the record's offset.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EsbPosition {
    /// `KAFKA_CONSUMER_GROUP`.
    pub group: String,
    /// The inbound topic.
    pub topic: String,
    /// The partition.
    pub partition: i32,
    /// The record's offset.
    pub offset: i64,
}

impl EsbPosition {
    /// The offset to store once this record is done: where the next read starts.
    pub fn next_offset(&self) -> i64 {
        self.offset + 1
    }
}
