//! [`MemoryOffsetStore`]: offsets kept in memory only.

use std::collections::HashMap;

use parking_lot::Mutex;

use super::{OffsetFuture, OffsetStore, TopicPartition};

/// Offsets kept in memory: forgotten when the process exits. For a consumer that rebuilds
/// its state from the topic on every start (it starts at
/// [`StartPosition::Earliest`](crate::StartPosition::Earliest)), and for tests.
#[derive(Debug, Default)]
pub struct MemoryOffsetStore {
    offsets: Mutex<HashMap<(String, i32), i64>>,
}

impl MemoryOffsetStore {
    /// An empty store.
    pub fn new() -> Self {
        MemoryOffsetStore::default()
    }

    /// The stored next offset of a partition, read without a future.
    pub fn get(&self, topic: &str, partition: i32) -> Option<i64> {
        self.offsets
            .lock()
            .get(&(topic.to_string(), partition))
            .copied()
    }
}

impl OffsetStore for MemoryOffsetStore {
    fn load<'a>(&'a self, at: TopicPartition<'a>) -> OffsetFuture<'a, Option<i64>> {
        Box::pin(async move { Ok(self.get(at.topic, at.partition)) })
    }

    fn save<'a>(&'a self, at: TopicPartition<'a>, next_offset: i64) -> OffsetFuture<'a, ()> {
        Box::pin(async move {
            self.offsets
                .lock()
                .insert((at.topic.to_string(), at.partition), next_offset);
            Ok(())
        })
    }
}
