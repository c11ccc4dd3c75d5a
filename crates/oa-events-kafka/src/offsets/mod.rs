//! Where a [`TopicConsumer`](crate::TopicConsumer) keeps its position: the next offset to read
//! per (topic, partition).
//!
//! rskafka has no consumer groups, so a consumer stores its own offsets. Three stores ship
//! with this crate: [`MemoryOffsetStore`] (forgotten on exit), [`FileOffsetStore`] (a JSON
//! file, replaced atomically on each save) and, with the `sqlite` feature,
//! [`SqliteOffsetStore`] (a table in a SQLite database, which a service can also write inside
//! its own transactions). oa's ESB consumer stores its offsets in the server's database, in
//! the same transaction as each command's effects, through its own implementation of
//! [`OffsetStore`].

mod file;
mod memory;
#[cfg(feature = "sqlite")]
mod sqlite;

use futures_util::future::BoxFuture;

pub use file::FileOffsetStore;
pub use memory::MemoryOffsetStore;
#[cfg(feature = "sqlite")]
pub use sqlite::SqliteOffsetStore;

/// An offset store failed (a file or database error); the consumer logs it and retries.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("offset store: {0}")]
pub struct OffsetStoreError(pub String);

impl OffsetStoreError {
    /// An error with the store's explanation.
    pub fn new(reason: impl std::fmt::Display) -> Self {
        OffsetStoreError(reason.to_string())
    }
}

/// A partition of a topic: what a stored offset is kept under.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct TopicPartition<'a> {
    /// The topic.
    pub topic: &'a str,
    /// The partition.
    pub partition: i32,
}

impl<'a> TopicPartition<'a> {
    /// `partition` of `topic`.
    pub fn new(topic: &'a str, partition: i32) -> Self {
        TopicPartition { topic, partition }
    }
}

/// What [`OffsetStore`]'s methods return.
pub type OffsetFuture<'a, T> = BoxFuture<'a, Result<T, OffsetStoreError>>;

/// Keeps the next offset to read per [`TopicPartition`].
///
/// Offsets are "next to read": after processing the record at offset `n` a consumer saves
/// `n + 1`. A store must make a completed [`OffsetStore::save`] survive as long as the
/// consumer's own state does (a file or database for a service with durable effects).
pub trait OffsetStore: Send + Sync + 'static {
    /// The stored next offset of `at`, `None` when nothing is stored.
    fn load<'a>(&'a self, at: TopicPartition<'a>) -> OffsetFuture<'a, Option<i64>>;

    /// Stores `next_offset` for `at`, replacing what is stored (even with a smaller offset:
    /// the consumer does so after the broker reported the stored one out of range and it
    /// restarted from the earliest retained record).
    fn save<'a>(&'a self, at: TopicPartition<'a>, next_offset: i64) -> OffsetFuture<'a, ()>;

    /// Stores the start offset the consumer resolved for a partition that had none
    /// ([`StartPosition::Stored`](crate::StartPosition::Stored)'s fallback), so that records
    /// produced while the consumer is down before its first record are not skipped by a later
    /// `latest` start. The default calls [`OffsetStore::save`].
    fn save_start<'a>(&'a self, at: TopicPartition<'a>, offset: i64) -> OffsetFuture<'a, ()> {
        self.save(at, offset)
    }
}

/// What every durable store is tested for.
#[cfg(test)]
pub(crate) mod contract {
    use std::path::{Path, PathBuf};

    use super::{OffsetStore, TopicPartition};

    /// With `open` opening the store kept at a path (`file_name` in a new temporary folder):
    /// each partition of each topic keeps its own offset, the last save wins (a smaller
    /// offset too), and a reopened store has them. Returns the folder and the path.
    pub(crate) async fn offsets_survive_reopening<S: OffsetStore>(
        file_name: &str,
        open: impl Fn(&Path) -> S,
    ) -> (tempfile::TempDir, PathBuf) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(file_name);
        let store = open(&path);
        assert_eq!(store.load(TopicPartition::new("t", 0)).await.unwrap(), None);
        for (topic, partition, offset) in [
            ("t", 0, 5),
            ("t", 2, 9),
            ("u", 0, 1),
            ("t", 0, 6),
            ("t", 2, 8),
        ] {
            store
                .save(TopicPartition::new(topic, partition), offset)
                .await
                .unwrap();
        }
        drop(store);
        let reopened = open(&path);
        for (topic, partition, stored) in [
            ("t", 0, Some(6)),
            ("t", 2, Some(8)),
            ("u", 0, Some(1)),
            ("t", 1, None),
        ] {
            assert_eq!(
                reopened
                    .load(TopicPartition::new(topic, partition))
                    .await
                    .unwrap(),
                stored,
                "{topic} partition {partition}"
            );
        }
        (dir, path)
    }
}
