//! Group commit of the ledger's two hot writes on SQLite: a run's claim
//! ([`RunLedger::claim_if_clear`](super::RunLedger::claim_if_clear)) and its end
//! ([`RunLedger::finish`](super::RunLedger::finish)).
//!
//! SQLite has one writer at a time, and each commit appends every page it changed to the WAL (a
//! run's row, four or five index leaves, the runs' counts). A broker worker makes two such
//! commits a task, and with several slots they queued for the write lock in SQLite's busy
//! handler, which sleeps 1, 2, 5… ms between tries: at 8 slots, 3.5 ms of a task's 4.5 ms went
//! to waiting there (`bench_worker`, BENCHMARKS.md). Here the writes that callers in one process
//! make at the same moment share a transaction instead. The first caller to find no batch
//! running leads: it takes every write waiting, its own included, runs them one after the other
//! in one `BEGIN IMMEDIATE` … `COMMIT` and answers each; the others wait for their answer, or
//! lead the next batch. A write alone runs on its own, as before.
//!
//! The batches of a database on a file have a connection of their own, outside the pool: the
//! pool pings a connection's thread each time one is handed back, a thread hand-off a batch,
//! and spreads statements over its connections, each of which re-reads from the file the pages
//! another one wrote. Of an in-memory database there is only the pool's one connection.
//!
//! What callers see does not change:
//! - An answer comes only once its write is committed, so nothing is less durable than before.
//! - Each statement sees the ones before it in the batch as if they had been committed one at
//!   a time, so a claim's conditions (key free, no other run of an exclusive job) hold as they
//!   did. The batch is in one process; other processes queue on SQLite's lock as before.
//! - A write that fails fails alone: the batch is rolled back and each write is run again on
//!   its own, so the others are committed and the failing one reports its own error.
//! - A leader whose caller is cancelled before its `COMMIT` was sent (a caller's timeout) lets
//!   the others go again, as the transaction is rolled back; after, the outcome is unknown,
//!   as when a connection breaks during a commit, and they get an "unavailable" error.
//! - A caller that stops waiting (cancelled) before its batch begins has its write dropped, as
//!   a statement never sent is never run; once its batch has begun, the write is made.

use std::sync::{Mutex, MutexGuard, PoisonError};

use chrono::{DateTime, Utc};
use futures::channel::oneshot;
use sqlx::sqlite::{SqliteConnectOptions, SqlitePool};
use sqlx::{Connection as _, SqliteConnection};

use super::{NewRun, RunEnd, RunId, RunOutcome};
use crate::error::{CoreError, Result, StorageError};

/// A write that may share a transaction with others.
#[derive(Debug)]
enum Write {
    /// `claim_if_clear.sql`: the run inserted as running if nothing stands in its way.
    Claim { run: NewRun, exclusive: bool },
    /// `finish.sql`: the run ended, if it is still running or was marked abandoned.
    Finish {
        id: RunId,
        outcome: RunOutcome,
        at: DateTime<Utc>,
        message: String,
    },
}

/// What a [`Write`] found.
#[derive(Debug, Clone, Copy)]
enum Written {
    /// The claimed run's id and the job's failures in a row before it; `None` if not clear.
    Claim(Option<(i64, i64)>),
    /// The outcome the run was finished from (running or abandoned); `None` if neither.
    Finish(Option<RunOutcome>),
}

/// The writes of one process waiting for a batch, and the lead of the batch running.
#[derive(Debug)]
pub(crate) struct GroupCommit {
    waiting: Mutex<Vec<Queued>>,
    /// Held by the leader of the batch running, with the batches' own connection once opened.
    lead: futures::lock::Mutex<Option<SqliteConnection>>,
    /// How to open that connection; `None` for an in-memory database, whose batches borrow the
    /// pool's connection (another would open another database).
    own_connection: Option<SqliteConnectOptions>,
}

#[derive(Debug)]
struct Queued {
    write: Write,
    answer: oneshot::Sender<Answer>,
}

#[derive(Debug)]
enum Answer {
    Done(Result<Written>),
    /// The batch was dropped before its commit was sent: nothing was written, submit it again.
    NotRun(Write),
}

impl GroupCommit {
    /// Batches on a connection of their own to the file `pool` opens.
    pub(crate) fn with_own_connection(pool: &SqlitePool) -> Self {
        Self {
            own_connection: Some((*pool.connect_options()).clone()),
            ..Self::on_pool()
        }
    }

    /// Batches on a connection of the pool they are given.
    pub(crate) fn on_pool() -> Self {
        Self {
            waiting: Mutex::default(),
            lead: futures::lock::Mutex::new(None),
            own_connection: None,
        }
    }

    /// Closes the batches' own connection (a batch after this opens it again).
    pub(crate) async fn close(&self) {
        if let Some(conn) = self.lead.lock().await.take() {
            let _ = conn.close().await;
        }
    }

    fn waiting(&self) -> MutexGuard<'_, Vec<Queued>> {
        self.waiting.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// `claim_if_clear.sql` for `run`: its id and the job's failures in a row before it, or
    /// `None` if something stands in its way.
    pub(crate) async fn claim(
        &self,
        pool: &SqlitePool,
        run: &NewRun,
        exclusive: bool,
    ) -> Result<Option<(i64, i64)>> {
        let write = Write::Claim {
            run: run.clone(),
            exclusive,
        };
        match self.submit(pool, write).await? {
            Written::Claim(row) => Ok(row),
            Written::Finish(_) => Err(mismatched()),
        }
    }

    /// `finish.sql` for run `id`: the outcome it was finished from (running, or abandoned by
    /// another runner meanwhile), `None` if it was neither.
    pub(crate) async fn finish(
        &self,
        pool: &SqlitePool,
        id: RunId,
        end: RunEnd<'_>,
    ) -> Result<Option<RunOutcome>> {
        let write = Write::Finish {
            id,
            outcome: end.outcome,
            at: end.at,
            message: end.message.to_owned(),
        };
        match self.submit(pool, write).await? {
            Written::Finish(from) => Ok(from),
            Written::Claim(_) => Err(mismatched()),
        }
    }

    /// Runs `write` on `pool`, in a transaction with the writes other callers submit meanwhile;
    /// answers once it is committed.
    async fn submit(&self, pool: &SqlitePool, mut write: Write) -> Result<Written> {
        loop {
            let (answer, mut answered) = oneshot::channel();
            self.waiting().push(Queued { write, answer });
            let mut lead = self.lead.lock().await;
            // No batch runs while this holds the lead, so a batch that took the write has
            // answered it; if none has, it is still waiting, and this caller runs the batch.
            let answer = match answered.try_recv() {
                Ok(Some(answer)) => answer,
                Ok(None) => {
                    let batch = Batch::new(std::mem::take(&mut *self.waiting()));
                    self.run(batch, pool, &mut lead).await;
                    drop(lead);
                    answered
                        .await
                        .unwrap_or_else(|_| Answer::Done(Err(interrupted())))
                }
                Err(oneshot::Canceled) => Answer::Done(Err(interrupted())),
            };
            match answer {
                Answer::Done(result) => return result,
                Answer::NotRun(again) => write = again,
            }
        }
    }

    /// Runs `batch` on the batches' own connection (opened first if it is not), or on one of
    /// `pool`'s for an in-memory database. A connection that failed is closed; the next batch
    /// opens a new one.
    async fn run(&self, mut batch: Batch, pool: &SqlitePool, own: &mut Option<SqliteConnection>) {
        // A caller that stopped waiting (cancelled) before its batch began does not get its
        // write made later behind its back, as a statement never sent is not run.
        batch.queued.retain(|queued| !queued.answer.is_canceled());
        if batch.queued.is_empty() {
            return;
        }
        let Some(options) = &self.own_connection else {
            // The pool checks its connection when it is handed back.
            match pool.acquire().await {
                Ok(mut conn) => {
                    batch.run(&mut conn).await;
                }
                Err(e) => batch.fail(&e.into()),
            }
            return;
        };
        let conn = match own {
            Some(conn) => conn,
            None => match SqliteConnection::connect_with(options).await {
                Ok(conn) => own.insert(conn),
                Err(e) => return batch.fail(&e.into()),
            },
        };
        if !batch.run(conn).await
            && let Some(conn) = own.take()
        {
            let _ = conn.close().await;
        }
    }
}

/// The writes a leader took. Dropped before it answered them (its caller cancelled), it tells
/// each whether its write may have been committed.
struct Batch {
    queued: Vec<Queued>,
    commit_sent: bool,
}

impl Drop for Batch {
    fn drop(&mut self) {
        for queued in self.queued.drain(..) {
            let answer = if self.commit_sent {
                Answer::Done(Err(interrupted()))
            } else {
                Answer::NotRun(queued.write)
            };
            let _ = queued.answer.send(answer);
        }
    }
}

impl Batch {
    fn new(queued: Vec<Queued>) -> Self {
        Self {
            queued,
            commit_sent: false,
        }
    }

    /// Every write fails with `error`.
    fn fail(mut self, error: &CoreError) {
        for queued in self.queued.drain(..) {
            let _ = queued.answer.send(Answer::Done(Err(copy(error))));
        }
    }

    /// Runs the writes on `conn` and answers each; `false` if the connection looks broken (a
    /// write met an unavailable database).
    async fn run(mut self, conn: &mut SqliteConnection) -> bool {
        if self.queued.len() > 1 {
            match self.together(conn).await {
                Ok(written) => {
                    for (queued, written) in self.queued.drain(..).zip(written) {
                        let _ = queued.answer.send(Answer::Done(Ok(written)));
                    }
                    return true;
                }
                Err(Failed::Commit(e)) => {
                    let healthy = !e.is_unavailable();
                    self.fail(&e);
                    return healthy;
                }
                // Rolled back: each goes again on its own.
                Err(Failed::Statement) => {}
            }
        }
        let mut healthy = true;
        // Taken out before it runs: if this is dropped meanwhile, its caller learns that the
        // outcome is unknown (its answer dropped), the ones after it that theirs did not run.
        while !self.queued.is_empty() {
            let queued = self.queued.remove(0);
            let result = apply(conn, &queued.write).await;
            healthy &= !result.as_ref().is_err_and(CoreError::is_unavailable);
            let _ = queued.answer.send(Answer::Done(result));
        }
        healthy
    }

    /// The writes in one transaction, in order.
    async fn together(
        &mut self,
        conn: &mut SqliteConnection,
    ) -> std::result::Result<Vec<Written>, Failed> {
        let mut tx = conn
            .begin_with("BEGIN IMMEDIATE")
            .await
            .map_err(|e| Failed::Commit(e.into()))?;
        let mut written = Vec::with_capacity(self.queued.len());
        for queued in &self.queued {
            match apply(&mut tx, &queued.write).await {
                Ok(w) => written.push(w),
                Err(_) => {
                    let _ = tx.rollback().await;
                    return Err(Failed::Statement);
                }
            }
        }
        self.commit_sent = true;
        tx.commit().await.map_err(|e| Failed::Commit(e.into()))?;
        Ok(written)
    }
}

/// Why a batch was not committed.
enum Failed {
    /// Its transaction could not begin or commit: every write of it fails with this.
    Commit(CoreError),
    /// One of its statements failed: rolled back.
    Statement,
}

async fn apply(conn: &mut SqliteConnection, write: &Write) -> Result<Written> {
    match write {
        Write::Claim { run, exclusive } => {
            let row: Option<(i64, i64)> = sqlx::query_as(include_str!("sqlite/claim_if_clear.sql"))
                .bind(&run.code)
                .bind(run.tick.timestamp_micros())
                .bind(run.kind.as_str())
                .bind(i64::from(run.attempt))
                .bind(run.started_at.timestamp_micros())
                .bind(run.lease_until.timestamp_micros())
                .bind(&run.host)
                .bind(i64::from(run.pid))
                .bind(run.started_at.timestamp_micros())
                .bind(*exclusive)
                .fetch_optional(&mut *conn)
                .await?;
            Ok(Written::Claim(row))
        }
        Write::Finish {
            id,
            outcome,
            at,
            message,
        } => {
            for from in super::ENDS_FROM {
                let updated = sqlx::query(include_str!("sqlite/finish.sql"))
                    .bind(outcome.as_str())
                    .bind(at.timestamp_micros())
                    .bind(message.as_str())
                    .bind(id.0)
                    .bind(from.as_str())
                    .execute(&mut *conn)
                    .await?
                    .rows_affected();
                if updated == 1 {
                    return Ok(Written::Finish(Some(from)));
                }
            }
            Ok(Written::Finish(None))
        }
    }
}

/// The error a batch's transaction met, for each of its writes.
fn copy(error: &CoreError) -> CoreError {
    CoreError::Storage(match error {
        CoreError::Storage(cause) if cause.is_unavailable() => {
            StorageError::unavailable(cause.to_string())
        }
        CoreError::Storage(cause) => StorageError::new(cause.to_string()),
        other => StorageError::new(other.to_string()),
    })
}

fn interrupted() -> CoreError {
    CoreError::Storage(StorageError::unavailable(
        "the transaction holding this write was interrupted while committing; \
         whether it was recorded is unknown",
    ))
}

/// An answer of the other kind than its write's: `apply` cannot give one.
fn mismatched() -> CoreError {
    CoreError::Storage(StorageError::new(
        "the ledger's batch answered a write with another's answer",
    ))
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use chrono::TimeZone;
    use sqlx::{Connection, SqliteConnection};

    use super::*;
    use crate::database::{Backend, Database};

    fn run(minute: u32) -> NewRun {
        let tick = Utc.with_ymd_and_hms(2026, 3, 2, 6, minute, 0).unwrap();
        NewRun {
            code: "report".to_owned(),
            tick,
            kind: super::super::RunKind::Scheduled,
            attempt: 1,
            started_at: tick,
            lease_until: tick + chrono::TimeDelta::hours(1),
            host: "test".to_owned(),
            pid: 1,
        }
    }

    /// A migrated database in a file of `dir`, and its URL.
    async fn file_database(dir: &tempfile::TempDir) -> (Database, String) {
        let url = format!("sqlite://{}", dir.path().join("crm.db").display());
        (Database::connect(&url).await.unwrap(), url)
    }

    fn pool(db: &Database) -> &SqlitePool {
        match db.backend() {
            Backend::Sqlite(pool) => pool,
            #[allow(unreachable_patterns)]
            _ => unreachable!("a sqlite URL"),
        }
    }

    /// Claims of the runs at `minutes`, as a batch would take them, and where each is answered.
    fn claims(minutes: std::ops::Range<u32>) -> (Vec<Queued>, Vec<oneshot::Receiver<Answer>>) {
        minutes
            .map(|minute| {
                let (answer, answered) = oneshot::channel();
                let write = Write::Claim {
                    run: run(minute),
                    exclusive: false,
                };
                (Queued { write, answer }, answered)
            })
            .unzip()
    }

    #[async_std::test]
    async fn a_write_whose_caller_stopped_waiting_before_its_batch_is_not_made() {
        let dir = tempfile::tempdir().unwrap();
        let (db, _) = file_database(&dir).await;
        let (queued, mut answers) = claims(0..3);
        // The caller of the second write has gone.
        drop(answers.remove(1));
        let mut own = None;
        db.group_commit()
            .run(Batch::new(queued), pool(&db), &mut own)
            .await;
        for answered in answers {
            assert!(matches!(
                answered.await,
                Ok(Answer::Done(Ok(Written::Claim(Some(_)))))
            ));
        }
        let ticks: Vec<_> = crate::ledger::RunLedger::history(&db, None, 10)
            .await
            .unwrap()
            .into_iter()
            .map(|r| r.tick)
            .collect();
        assert_eq!(ticks.len(), 2, "{ticks:?}");
        assert!(!ticks.contains(&run(1).tick));
    }

    #[async_std::test]
    async fn a_batch_dropped_before_its_commit_tells_its_writers_to_go_again() {
        let dir = tempfile::tempdir().unwrap();
        let (db, url) = file_database(&dir).await;
        // Another connection holds the write lock: the batch waits at its BEGIN.
        let mut holder = SqliteConnection::connect(&url).await.unwrap();
        sqlx::raw_sql("BEGIN IMMEDIATE")
            .execute(&mut holder)
            .await
            .unwrap();
        let (queued, answers) = claims(0..2);
        let mut own = None;
        let batch = db
            .group_commit()
            .run(Batch::new(queued), pool(&db), &mut own);
        let cut_short = async_std::future::timeout(Duration::from_millis(200), batch).await;
        assert!(cut_short.is_err(), "the batch waited for the lock");
        sqlx::raw_sql("COMMIT").execute(&mut holder).await.unwrap();
        for answered in answers {
            assert!(matches!(
                answered.await,
                Ok(Answer::NotRun(Write::Claim { .. }))
            ));
        }
        assert!(
            crate::ledger::RunLedger::history(&db, None, 10)
                .await
                .unwrap()
                .is_empty(),
            "nothing was written"
        );
    }
}
