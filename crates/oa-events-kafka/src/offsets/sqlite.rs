//! [`SqliteOffsetStore`]: offsets in a SQLite table (feature `sqlite`).

use std::path::Path;
use std::sync::Arc;

use parking_lot::Mutex;
use rusqlite::{Connection, OptionalExtension, params};

use super::{OffsetFuture, OffsetStore, OffsetStoreError, TopicPartition};

/// The table's definition: one row per (consumer, topic, partition).
const CREATE_TABLE: &str = "CREATE TABLE IF NOT EXISTS kafka_consumer_offsets (
    consumer TEXT NOT NULL,
    topic TEXT NOT NULL,
    partition INTEGER NOT NULL,
    next_offset INTEGER NOT NULL,
    PRIMARY KEY (consumer, topic, partition)
)";

/// Offsets in the table `kafka_consumer_offsets` of a SQLite database, keyed by a consumer
/// name so that several consumers can share one database.
///
/// A service whose effects live in the same database can store the offset in the
/// transaction of each record's effects with [`SqliteOffsetStore::save_in`] (exactly-once
/// effects, as oa's ESB consumer does); its record handler then answers
/// [`Handled::Committed`](crate::Handled::Committed).
#[derive(Debug, Clone)]
pub struct SqliteOffsetStore {
    connection: Arc<Mutex<Connection>>,
    consumer: String,
}

fn failed(error: rusqlite::Error) -> OffsetStoreError {
    OffsetStoreError::new(format!("SQLite: {error}"))
}

impl SqliteOffsetStore {
    /// Opens (or creates) the database at `path` and its offsets table; `consumer` names
    /// this consumer's rows.
    pub fn open(
        path: impl AsRef<Path>,
        consumer: impl Into<String>,
    ) -> Result<Self, OffsetStoreError> {
        let path = path.as_ref();
        let connection = Connection::open(path).map_err(|error| {
            OffsetStoreError::new(format!("cannot open {}: {error}", path.display()))
        })?;
        Self::with_connection(connection, consumer)
    }

    /// Uses an open connection, creating the offsets table when missing.
    pub fn with_connection(
        connection: Connection,
        consumer: impl Into<String>,
    ) -> Result<Self, OffsetStoreError> {
        Self::create_table(&connection).map_err(failed)?;
        Ok(SqliteOffsetStore {
            connection: Arc::new(Mutex::new(connection)),
            consumer: consumer.into(),
        })
    }

    /// Creates the offsets table when missing (for a service that calls
    /// [`SqliteOffsetStore::save_in`] on its own connection).
    pub fn create_table(connection: &Connection) -> rusqlite::Result<()> {
        connection.execute_batch(CREATE_TABLE)
    }

    /// Stores `next_offset` through `connection`, typically inside the caller's transaction
    /// (`&rusqlite::Transaction` dereferences to a connection), so the offset commits or
    /// rolls back with the record's effects.
    pub fn save_in(
        connection: &Connection,
        consumer: &str,
        topic: &str,
        partition: i32,
        next_offset: i64,
    ) -> rusqlite::Result<()> {
        connection.execute(
            "INSERT INTO kafka_consumer_offsets (consumer, topic, partition, next_offset)
             VALUES (?1, ?2, ?3, ?4)
             ON CONFLICT (consumer, topic, partition) DO UPDATE SET next_offset = excluded.next_offset",
            params![consumer, topic, partition, next_offset],
        )?;
        Ok(())
    }

    /// The consumer name of this store's rows.
    pub fn consumer(&self) -> &str {
        &self.consumer
    }

    async fn blocking<T: Send + 'static>(
        &self,
        work: impl FnOnce(&Connection, &str) -> rusqlite::Result<T> + Send + 'static,
    ) -> Result<T, OffsetStoreError> {
        let connection = Arc::clone(&self.connection);
        let consumer = self.consumer.clone();
        tokio::task::spawn_blocking(move || work(&connection.lock(), &consumer))
            .await
            .map_err(|error| OffsetStoreError::new(format!("SQLite task: {error}")))?
            .map_err(failed)
    }
}

impl OffsetStore for SqliteOffsetStore {
    fn load<'a>(&'a self, at: TopicPartition<'a>) -> OffsetFuture<'a, Option<i64>> {
        let (topic, partition) = (at.topic.to_string(), at.partition);
        Box::pin(self.blocking(move |connection, consumer| {
            connection
                .query_row(
                    "SELECT next_offset FROM kafka_consumer_offsets
                     WHERE consumer = ?1 AND topic = ?2 AND partition = ?3",
                    params![consumer, topic, partition],
                    |row| row.get(0),
                )
                .optional()
        }))
    }

    fn save<'a>(&'a self, at: TopicPartition<'a>, next_offset: i64) -> OffsetFuture<'a, ()> {
        let (topic, partition) = (at.topic.to_string(), at.partition);
        Box::pin(self.blocking(move |connection, consumer| {
            SqliteOffsetStore::save_in(connection, consumer, &topic, partition, next_offset)
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::offsets::contract::offsets_survive_reopening;

    #[tokio::test]
    async fn offsets_are_kept_per_consumer_and_survive_reopening() {
        let (_dir, path) = offsets_survive_reopening("offsets.db", |path| {
            SqliteOffsetStore::open(path, "risk").unwrap()
        })
        .await;
        // Another consumer's rows are its own.
        let audit = SqliteOffsetStore::open(&path, "audit").unwrap();
        assert_eq!(audit.load(TopicPartition::new("t", 0)).await.unwrap(), None);
        audit.save(TopicPartition::new("t", 0), 2).await.unwrap();
        let risk = SqliteOffsetStore::open(&path, "risk").unwrap();
        assert_eq!(
            risk.load(TopicPartition::new("t", 0)).await.unwrap(),
            Some(6)
        );

        // An offset written in the caller's transaction commits or rolls back with it.
        let mut connection = Connection::open(&path).unwrap();
        let transaction = connection.transaction().unwrap();
        SqliteOffsetStore::save_in(&transaction, "audit", "t", 0, 50).unwrap();
        drop(transaction); // rolled back
        let audit = SqliteOffsetStore::open(&path, "audit").unwrap();
        assert_eq!(
            audit.load(TopicPartition::new("t", 0)).await.unwrap(),
            Some(2)
        );
        let transaction = connection.transaction().unwrap();
        SqliteOffsetStore::save_in(&transaction, "audit", "t", 0, 51).unwrap();
        transaction.commit().unwrap();
        assert_eq!(
            audit.load(TopicPartition::new("t", 0)).await.unwrap(),
            Some(51)
        );
    }
}
