//! [`FileOffsetStore`]: offsets in a JSON file.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde_json::{Map, Value};

use super::{OffsetFuture, OffsetStore, OffsetStoreError, TopicPartition};

/// Offsets in a JSON file, `{"<topic>": {"<partition>": <next offset>, ...}, ...}`.
///
/// Every save rewrites the whole file through a temporary file that is synced and renamed
/// over it, so a crash leaves either the old or the new offsets, never a torn file. One file
/// belongs to one consumer: two processes must not share it.
#[derive(Debug)]
pub struct FileOffsetStore {
    path: PathBuf,
    offsets: tokio::sync::Mutex<BTreeMap<String, BTreeMap<i32, i64>>>,
}

impl FileOffsetStore {
    /// Opens the store at `path`, reading the offsets it holds; a missing file is an empty
    /// store (created on the first save). Fails when the file is not such a JSON object.
    pub fn open(path: impl Into<PathBuf>) -> Result<Self, OffsetStoreError> {
        let path = path.into();
        let offsets = match std::fs::read(&path) {
            Ok(bytes) => parse(&path, &bytes)?,
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => BTreeMap::new(),
            Err(error) => {
                return Err(OffsetStoreError::new(format!(
                    "cannot read {}: {error}",
                    path.display()
                )));
            }
        };
        Ok(FileOffsetStore {
            path,
            offsets: tokio::sync::Mutex::new(offsets),
        })
    }

    /// The file this store writes.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

fn parse(
    path: &Path,
    bytes: &[u8],
) -> Result<BTreeMap<String, BTreeMap<i32, i64>>, OffsetStoreError> {
    let invalid = |what: String| {
        OffsetStoreError::new(format!(
            "{} is not an offsets file ({what}); expected {{\"<topic>\": {{\"<partition>\": <next offset>}}}}",
            path.display()
        ))
    };
    let value: Value =
        serde_json::from_slice(bytes).map_err(|error| invalid(format!("not JSON: {error}")))?;
    let Value::Object(topics) = value else {
        return Err(invalid("not a JSON object".to_string()));
    };
    let mut offsets = BTreeMap::new();
    for (topic, partitions) in topics {
        let Value::Object(partitions) = partitions else {
            return Err(invalid(format!("topic {topic:?} is not an object")));
        };
        let mut parsed = BTreeMap::new();
        for (partition, offset) in partitions {
            let number: i32 = partition.parse().map_err(|_| {
                invalid(format!(
                    "partition {partition:?} of {topic:?} is not a number"
                ))
            })?;
            let offset = offset
                .as_i64()
                .filter(|offset| *offset >= 0)
                .ok_or_else(|| {
                    invalid(format!(
                        "offset of {topic:?}/{partition} is not a non-negative integer"
                    ))
                })?;
            parsed.insert(number, offset);
        }
        offsets.insert(topic, parsed);
    }
    Ok(offsets)
}

fn render(offsets: &BTreeMap<String, BTreeMap<i32, i64>>) -> Vec<u8> {
    let topics: Map<String, Value> = offsets
        .iter()
        .map(|(topic, partitions)| {
            let partitions: Map<String, Value> = partitions
                .iter()
                .map(|(partition, offset)| (partition.to_string(), Value::from(*offset)))
                .collect();
            (topic.clone(), Value::Object(partitions))
        })
        .collect();
    let mut bytes = serde_json::to_vec_pretty(&Value::Object(topics)).unwrap_or_default();
    bytes.push(b'\n');
    bytes
}

/// Writes `bytes` to `path` through a synced temporary file renamed over it.
fn replace_file(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    let mut temporary = path.as_os_str().to_owned();
    temporary.push(".tmp");
    let temporary = PathBuf::from(temporary);
    let mut file = std::fs::File::create(&temporary)?;
    file.write_all(bytes)?;
    file.sync_all()?;
    drop(file);
    std::fs::rename(&temporary, path)
}

impl OffsetStore for FileOffsetStore {
    fn load<'a>(&'a self, at: TopicPartition<'a>) -> OffsetFuture<'a, Option<i64>> {
        Box::pin(async move {
            let offsets = self.offsets.lock().await;
            Ok(offsets
                .get(at.topic)
                .and_then(|partitions| partitions.get(&at.partition))
                .copied())
        })
    }

    fn save<'a>(&'a self, at: TopicPartition<'a>, next_offset: i64) -> OffsetFuture<'a, ()> {
        let TopicPartition { topic, partition } = at;
        Box::pin(async move {
            // Held across the write: saves of different partitions never interleave.
            let mut offsets = self.offsets.lock().await;
            let previous = offsets
                .entry(topic.to_string())
                .or_default()
                .insert(partition, next_offset);
            let bytes = render(&offsets);
            let path = self.path.clone();
            let written = tokio::task::spawn_blocking(move || replace_file(&path, &bytes))
                .await
                .map_err(|error| OffsetStoreError::new(format!("offset file writer: {error}")))
                .and_then(|result| {
                    result.map_err(|error| {
                        OffsetStoreError::new(format!(
                            "cannot write {}: {error}",
                            self.path.display()
                        ))
                    })
                });
            if written.is_err() {
                // Keep memory equal to the file, so a retry writes the same change again.
                let partitions = offsets.entry(topic.to_string()).or_default();
                match previous {
                    Some(previous) => partitions.insert(partition, previous),
                    None => partitions.remove(&partition),
                };
            }
            written
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::offsets::contract::offsets_survive_reopening;

    #[tokio::test]
    async fn offsets_survive_reopening_and_bad_files_are_named() {
        let (_dir, path) =
            offsets_survive_reopening("offsets.json", |path| FileOffsetStore::open(path).unwrap())
                .await;

        std::fs::write(&path, br#"{"t": {"zero": 1}}"#).unwrap();
        let error = FileOffsetStore::open(&path).unwrap_err().to_string();
        assert!(error.contains("partition \"zero\""), "{error}");
        assert!(error.contains("offsets.json"), "{error}");
        std::fs::write(&path, b"[]").unwrap();
        let error = FileOffsetStore::open(&path).unwrap_err().to_string();
        assert!(error.contains("not a JSON object"), "{error}");
    }
}
