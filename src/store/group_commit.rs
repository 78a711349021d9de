//! Group commit: requests hand their work to writer threads, which run whatever has queued up
//! (up to `batch_size` jobs) in one transaction and then answer each request. One commit (one
//! fsync) serves many requests, and each answer still waits for its own commit.

use super::{AnyConnection, Pool, StoreError};
use diesel::QueryResult;
use std::sync::{Arc, Mutex};
use tokio::sync::{mpsc, oneshot};

/// Runs one batch on a connection and returns one result per job, in order. It owns the
/// transaction: the jobs' results are answered only once it returns.
pub type BatchWork<J, R> = dyn Fn(&mut AnyConnection, Vec<J>) -> QueryResult<Vec<R>> + Send + Sync;

struct Job<J, R> {
    job: J,
    reply: oneshot::Sender<Result<R, StoreError>>,
}

/// Cloning shares the same writer threads.
pub struct GroupCommit<J, R> {
    tx: mpsc::Sender<Job<J, R>>,
}

impl<J, R> Clone for GroupCommit<J, R> {
    fn clone(&self) -> Self {
        Self {
            tx: self.tx.clone(),
        }
    }
}

impl<J: Send + 'static, R: Send + 'static> GroupCommit<J, R> {
    pub fn start(
        name: &str,
        pool: Pool,
        writers: usize,
        batch_size: usize,
        work: Arc<BatchWork<J, R>>,
    ) -> Self {
        let batch_size = batch_size.max(1);
        let (tx, rx) = mpsc::channel::<Job<J, R>>(writers.max(1) * batch_size * 4);
        let rx = Arc::new(Mutex::new(rx));
        for i in 0..writers.max(1) {
            let (pool, rx, work) = (pool.clone(), rx.clone(), work.clone());
            std::thread::Builder::new()
                .name(format!("{name}-{i}"))
                .spawn(move || writer_loop(pool, rx, batch_size, work))
                .expect("spawning a group-commit writer thread");
        }
        Self { tx }
    }

    /// Resolves once the job's batch is committed; `Err` when it could not be.
    pub async fn submit(&self, job: J) -> Result<R, StoreError> {
        let stopped = || StoreError::Unavailable("the group-commit writer stopped".into());
        let (reply, answer) = oneshot::channel();
        self.tx
            .send(Job { job, reply })
            .await
            .map_err(|_| stopped())?;
        answer.await.map_err(|_| stopped())?
    }
}

fn writer_loop<J, R>(
    pool: Pool,
    rx: Arc<Mutex<mpsc::Receiver<Job<J, R>>>>,
    batch_size: usize,
    work: Arc<BatchWork<J, R>>,
) {
    loop {
        let mut jobs = Vec::with_capacity(batch_size);
        {
            let Ok(mut rx) = rx.lock() else { return };
            match rx.blocking_recv() {
                Some(job) => jobs.push(job),
                None => return,
            }
            while jobs.len() < batch_size {
                match rx.try_recv() {
                    Ok(job) => jobs.push(job),
                    Err(_) => break,
                }
            }
        }
        let (batch, replies): (Vec<J>, Vec<_>) = jobs.into_iter().map(|j| (j.job, j.reply)).unzip();
        let size = batch.len();
        let result = pool.get().map_err(StoreError::from).and_then(|mut conn| {
            let _writer = pool.write_guard();
            work(&mut conn, batch).map_err(StoreError::from)
        });
        match result {
            Ok(results) => {
                for (reply, result) in replies.into_iter().zip(results) {
                    let _ = reply.send(Ok(result));
                }
            }
            Err(e) => {
                tracing::warn!(error = %e, batch = size, "batch not committed; every request in it fails");
                for reply in replies {
                    let _ = reply.send(Err(e.clone()));
                }
            }
        }
    }
}
