//! The bar store's worker: one thread that owns a store connection of its own and runs the
//! bar jobs in order (batches of recorded bars, backfills, reads, pruning). Nothing on the
//! tick path waits for it: the recorder hands it batches with `try_send` and drops a batch
//! (counted and logged) when the queue is full.

use oa_marketdata_core::candles::{Bar, InstrumentBar};
use tokio::sync::{mpsc, oneshot};

use crate::store::{BarRange, BarTable, Database, StoreError, TxKind};

/// Jobs queued before the worker refuses recorded batches.
const QUEUE_CAPACITY: usize = 256;

/// One job of the worker.
enum Job {
    Save {
        bars: Vec<InstrumentBar>,
        overwrite: bool,
        done: Option<oneshot::Sender<Result<usize, StoreError>>>,
    },
    Load {
        reads: Vec<(BarTable, BarRange)>,
        limit: usize,
        reply: oneshot::Sender<Result<Option<Vec<Vec<Bar>>>, StoreError>>,
    },
    Prune {
        before: i64,
        reply: oneshot::Sender<Result<usize, StoreError>>,
    },
}

/// The handle of the bar worker thread (cheap to clone; the thread ends with the last one).
#[derive(Debug, Clone)]
pub(crate) struct BarWorker {
    jobs: mpsc::Sender<Job>,
}

impl std::fmt::Debug for Job {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Job::Save { .. } => "Save",
            Job::Load { .. } => "Load",
            Job::Prune { .. } => "Prune",
        })
    }
}

/// Why a recorded batch was not queued.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum QueueFull {
    /// The queue is full (the store is slower than the bars arrive).
    Full,
    /// The worker is gone.
    Closed,
}

impl BarWorker {
    /// Starts the worker thread on `database`.
    pub(crate) fn start(database: Box<dyn Database>) -> Result<BarWorker, StoreError> {
        let (jobs, receiver) = mpsc::channel(QUEUE_CAPACITY);
        std::thread::Builder::new()
            .name("oa-bars".to_string())
            .spawn(move || run(database, receiver))
            .map_err(|error| StoreError::Task(format!("cannot start the bar worker: {error}")))?;
        Ok(BarWorker { jobs })
    }

    /// Queues recorded bars without waiting (they replace stored bars of the same minute).
    pub(crate) fn try_save(&self, bars: Vec<InstrumentBar>) -> Result<(), QueueFull> {
        self.jobs
            .try_send(Job::Save {
                bars,
                overwrite: true,
                done: None,
            })
            .map_err(|error| match error {
                mpsc::error::TrySendError::Full(_) => QueueFull::Full,
                mpsc::error::TrySendError::Closed(_) => QueueFull::Closed,
            })
    }

    /// Writes bars and waits for the commit; returns the rows written. Without `overwrite`
    /// bars already stored for the same minute are kept.
    pub(crate) async fn save(
        &self,
        bars: Vec<InstrumentBar>,
        overwrite: bool,
    ) -> Result<usize, StoreError> {
        let (done, answer) = oneshot::channel();
        self.send(Job::Save {
            bars,
            overwrite,
            done: Some(done),
        })
        .await?;
        answer.await.map_err(|_| StoreError::Closed)?
    }

    /// The rows of each `(table, range)`, oldest first, read one after the other (after
    /// every batch queued before them, with no write in between); `None` when together they
    /// hold more than `limit` rows.
    pub(crate) async fn load(
        &self,
        reads: Vec<(BarTable, BarRange)>,
        limit: usize,
    ) -> Result<Option<Vec<Vec<Bar>>>, StoreError> {
        let (reply, answer) = oneshot::channel();
        self.send(Job::Load {
            reads,
            limit,
            reply,
        })
        .await?;
        answer.await.map_err(|_| StoreError::Closed)?
    }

    /// Deletes the bars that start before `before`; returns how many.
    pub(crate) async fn prune(&self, before: i64) -> Result<usize, StoreError> {
        let (reply, answer) = oneshot::channel();
        self.send(Job::Prune { before, reply }).await?;
        answer.await.map_err(|_| StoreError::Closed)?
    }

    async fn send(&self, job: Job) -> Result<(), StoreError> {
        self.jobs.send(job).await.map_err(|_| StoreError::Closed)
    }
}

fn run(mut database: Box<dyn Database>, mut jobs: mpsc::Receiver<Job>) {
    while let Some(job) = jobs.blocking_recv() {
        match job {
            Job::Save {
                bars,
                overwrite,
                done,
            } => {
                let result = database
                    .in_transaction(TxKind::Write, |queries| queries.save_bars(&bars, overwrite));
                match done {
                    Some(done) => {
                        let _ = done.send(result);
                    }
                    None => {
                        if let Err(error) = result {
                            metrics::counter!("oa_bars_dropped_total").increment(bars.len() as u64);
                            tracing::warn!(%error, bars = bars.len(), "could not store recorded bars");
                        }
                    }
                }
            }
            Job::Load {
                reads,
                limit,
                reply,
            } => {
                let _ = reply.send(load_within(database.as_ref(), &reads, limit));
            }
            Job::Prune { before, reply } => {
                let result = database.queries().prune_bars(before);
                let _ = reply.send(result);
            }
        }
    }
}

/// The rows of each read, or `None` as soon as they exceed `limit` together.
fn load_within(
    database: &dyn Database,
    reads: &[(BarTable, BarRange)],
    limit: usize,
) -> Result<Option<Vec<Vec<Bar>>>, StoreError> {
    let mut left = limit;
    let mut loaded = Vec::with_capacity(reads.len());
    for (table, range) in reads {
        let rows = database
            .queries()
            .load_bars(*table, range, left.saturating_add(1))?;
        if rows.len() > left {
            return Ok(None);
        }
        left -= rows.len();
        loaded.push(rows);
    }
    Ok(Some(loaded))
}
