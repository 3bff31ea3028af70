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
//! sqlx runs each SQLite connection on a thread of its own and hands it every statement, a
//! round trip between threads each (two futex wake-ups, on two cores two context switches).
//! A batch's writes and its `COMMIT` therefore go as one command of several statements, after
//! its `BEGIN IMMEDIATE`: two round trips a batch instead of two plus one a statement.
//!
//! The batches of a database on a file have a connection of their own, outside the pool: the
//! pool pings a connection's thread each time one is handed back, a thread hand-off a batch,
//! and spreads statements over its connections, each of which re-reads from the file the pages
//! another one wrote. The overrides' change counter, which a broker worker reads before each
//! task, is read here too, beside the writes. Of an in-memory database there is only the
//! pool's one connection, and its writes run one at a time.
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

use std::sync::{LazyLock, Mutex, MutexGuard, PoisonError};

use chrono::{DateTime, Utc};
use futures::StreamExt as _;
use futures::channel::oneshot;
use sqlx::sqlite::{SqliteConnectOptions, SqlitePool, SqliteRow};
use sqlx::{Connection as _, Either, Executor as _, Row as _, SqliteConnection};

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
    /// `overrides/sqlite/version.sql`, a read: the overrides' change counter, which a broker
    /// worker reads before each task. On the pool each read costs two round trips to a
    /// connection's thread, the statement and the ping sqlx sends as the connection goes
    /// back; here it rides along with the batch's writes.
    OverridesVersion,
}

/// What a [`Write`] found.
#[derive(Debug, Clone, Copy)]
enum Written {
    /// The claimed run's id and the job's failures in a row before it; `None` if not clear.
    Claim(Option<(i64, i64)>),
    /// The outcome the run was finished from (running or abandoned); `None` if neither.
    Finish(Option<RunOutcome>),
    /// The overrides' change counter; `None` until read.
    OverridesVersion(Option<i64>),
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
            _ => Err(mismatched()),
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
            _ => Err(mismatched()),
        }
    }

    /// The overrides' change counter (`overrides/sqlite/version.sql`), read on the batches'
    /// connection.
    pub(crate) async fn overrides_version(&self, pool: &SqlitePool) -> Result<i64> {
        match self.submit(pool, Write::OverridesVersion).await? {
            Written::OverridesVersion(Some(version)) => Ok(version),
            Written::OverridesVersion(None) => Err(CoreError::Storage(StorageError::new(
                "job_override_version has no row",
            ))),
            _ => Err(mismatched()),
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
            // The pool's only connection: each write alone, as sqlx's pool knows nothing of a
            // transaction begun by a statement and would lend the connection on inside it if
            // this were cancelled meanwhile.
            match pool.acquire().await {
                Ok(mut conn) => {
                    batch.alone(&mut conn).await;
                }
                Err(e) => batch.fail(&e.into()),
            }
            return;
        };
        // Out of `own` while the batch runs: if this is cancelled, the connection is dropped
        // and closed, which rolls back a transaction left open.
        let mut conn = match own.take() {
            Some(conn) => conn,
            None => match SqliteConnection::connect_with(options).await {
                Ok(conn) => conn,
                Err(e) => return batch.fail(&e.into()),
            },
        };
        if batch.run(&mut conn).await {
            *own = Some(conn);
        } else {
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

    /// Runs the writes on `conn` in one transaction (a lone write as it is) and answers each;
    /// `false` if the connection is not to be used again (a transaction may be left open on
    /// it, or a write met an unavailable database).
    async fn run(mut self, conn: &mut SqliteConnection) -> bool {
        if self.queued.len() == 1 {
            return self.alone(conn).await;
        }
        match self.together(conn).await {
            Ok(written) => {
                for (queued, written) in self.queued.drain(..).zip(written) {
                    let _ = queued.answer.send(Answer::Done(Ok(written)));
                }
                true
            }
            Err(Failed::Commit(e)) => {
                self.fail(&e);
                false
            }
            // Rolled back: each goes again on its own.
            Err(Failed::Statement) => {
                if let Err(e) = sqlx::raw_sql("ROLLBACK").execute(&mut *conn).await {
                    self.fail(&e.into());
                    return false;
                }
                self.alone(conn).await
            }
        }
    }

    /// Runs the writes on `conn` one at a time, each committed on its own, and answers each;
    /// `false` if one met an unavailable database.
    async fn alone(mut self, conn: &mut SqliteConnection) -> bool {
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

    /// The writes in one transaction: `BEGIN IMMEDIATE`, then every write and the `COMMIT` in
    /// one command, so that the connection's thread is handed the batch twice rather than
    /// once per statement. Ends go first: an end can only clear the way for a claim, and the
    /// writes of one batch were all waiting at once, so any order is one they could have
    /// come in.
    async fn together(
        &mut self,
        conn: &mut SqliteConnection,
    ) -> std::result::Result<Vec<Written>, Failed> {
        self.queued.sort_by_key(|queued| match queued.write {
            Write::OverridesVersion => 0,
            Write::Finish { .. } => 1,
            Write::Claim { .. } => 2,
        });
        sqlx::raw_sql("BEGIN IMMEDIATE")
            .execute(&mut *conn)
            .await
            .map_err(|e| Failed::Commit(e.into()))?;
        let (query, steps) = batch_query(&self.queued);
        let mut written: Vec<Written> = (self.queued.iter())
            .map(|queued| match queued.write {
                Write::Claim { .. } => Written::Claim(None),
                Write::Finish { .. } => Written::Finish(None),
                Write::OverridesVersion => Written::OverridesVersion(None),
            })
            .collect();
        self.commit_sent = true;
        let mut results = conn.fetch_many(query);
        let mut step = 0;
        while let Some(result) = results.next().await {
            match (result, steps.get(step)) {
                (Ok(Either::Right(row)), Some(Step::Write(i, _))) => {
                    match read_row(&row, &self.queued[*i].write) {
                        Ok(Some(read)) => written[*i] = read,
                        Ok(None) => {}
                        Err(e) => return Err(Failed::Commit(e.into())),
                    }
                }
                (Ok(Either::Right(_)), _) => {}
                (Ok(Either::Left(done)), Some(Step::Write(i, Some(from)))) => {
                    if done.rows_affected() == 1 && matches!(written[*i], Written::Finish(None)) {
                        written[*i] = Written::Finish(Some(*from));
                    }
                    step += 1;
                }
                (Ok(Either::Left(_)), _) => step += 1,
                // The statements after a failed one are not run: the COMMIT neither.
                (Err(_), Some(Step::Write(..))) => {
                    self.commit_sent = false;
                    return Err(Failed::Statement);
                }
                (Err(e), _) => return Err(Failed::Commit(e.into())),
            }
        }
        if step != steps.len() {
            return Err(Failed::Commit(CoreError::Storage(StorageError::new(
                "the ledger's batch ended before its COMMIT",
            ))));
        }
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

/// What a statement of a batch's command is for: write `i` of the batch (an end's statement
/// for the outcome it ends from), or the `COMMIT`.
enum Step {
    Write(usize, Option<RunOutcome>),
    Commit,
}

/// What a row a write's statement answered says (`None`: an end's, which answer none).
fn read_row(row: &SqliteRow, write: &Write) -> std::result::Result<Option<Written>, sqlx::Error> {
    Ok(match write {
        Write::Claim { .. } => Some(Written::Claim(Some((row.try_get(0)?, row.try_get(1)?)))),
        Write::OverridesVersion => Some(Written::OverridesVersion(Some(row.try_get(0)?))),
        Write::Finish { .. } => None,
    })
}

/// The text of a batch's command, each write's statement in [`Positional`] form (an end's
/// once per outcome it may end from, in [`ENDS_FROM`](super::ENDS_FROM)'s order: the first
/// that changes the run wins), then `COMMIT`; the statements in order; and the query with
/// every statement's parameters bound.
fn batch_query(queued: &[Queued]) -> (Query<'_>, Vec<Step>) {
    let mut text = String::new();
    let mut steps = Vec::new();
    let mut values = Vec::new();
    for (i, queued) in queued.iter().enumerate() {
        match &queued.write {
            Write::Claim { run, exclusive } => {
                text.push_str(&CLAIM_POSITIONAL.text);
                values.extend(CLAIM_POSITIONAL.values(&claim_params(run, *exclusive)));
                steps.push(Step::Write(i, None));
            }
            Write::OverridesVersion => {
                text.push_str(OVERRIDES_VERSION);
                text.push_str(";\n");
                steps.push(Step::Write(i, None));
            }
            Write::Finish {
                id,
                outcome,
                at,
                message,
            } => {
                for from in super::ENDS_FROM {
                    text.push_str(&FINISH_POSITIONAL.text);
                    let params = finish_params(*id, *outcome, *at, message, from);
                    values.extend(FINISH_POSITIONAL.values(&params));
                    steps.push(Step::Write(i, Some(from)));
                }
            }
        }
    }
    text.push_str("COMMIT;\n");
    steps.push(Step::Commit);
    let query = values
        .into_iter()
        .fold(sqlx::query(sqlx::AssertSqlSafe(text)), bind);
    (query, steps)
}

/// A statement whose `?N` parameters are written `?`, for a command of several statements:
/// sqlx binds a `?N` by its number in the whole command's arguments, and a statement whose
/// numbers do not start at 1 has unnamed slots below them that it fills from those arguments
/// in turn, running past their end after a few statements. A `?` takes the next argument.
struct Positional {
    /// The statement and its closing `;`.
    text: String,
    /// The `N` of each parameter, in the order they appear.
    order: Vec<usize>,
}

impl Positional {
    fn new(sql: &str) -> Self {
        // Comments first: a `?N` in one is no parameter.
        let sql: String = sql
            .lines()
            .filter(|line| !line.trim_start().starts_with("--"))
            .collect::<Vec<_>>()
            .join("\n");
        let mut text = String::new();
        let mut order = Vec::new();
        let mut rest = sql.as_str();
        while let Some(at) = rest.find('?') {
            text.push_str(&rest[..=at]);
            rest = &rest[at + 1..];
            let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
            order.push(rest[..digits].parse().expect("parameters are written ?N"));
            rest = &rest[digits..];
        }
        text.push_str(rest);
        text.push_str(";\n");
        Self { text, order }
    }

    /// The values to bind, in the order the statement takes them, from its `?1`, `?2`, ….
    fn values<'q>(&self, params: &[Param<'q>]) -> impl Iterator<Item = Param<'q>> {
        self.order.iter().map(|n| params[n - 1])
    }
}

static CLAIM_POSITIONAL: LazyLock<Positional> = LazyLock::new(|| Positional::new(CLAIM));
static FINISH_POSITIONAL: LazyLock<Positional> = LazyLock::new(|| Positional::new(FINISH));

const CLAIM: &str = include_str!("sqlite/claim_if_clear.sql");
const FINISH: &str = include_str!("sqlite/finish.sql");
const OVERRIDES_VERSION: &str = include_str!("../overrides/sqlite/version.sql");

type Query<'q> = sqlx::query::Query<'q, sqlx::Sqlite, sqlx::sqlite::SqliteArguments>;

/// A statement's parameter.
#[derive(Clone, Copy)]
enum Param<'q> {
    Text(&'q str),
    Int(i64),
}

fn bind<'q>(query: Query<'q>, value: Param<'q>) -> Query<'q> {
    match value {
        Param::Text(text) => query.bind(text),
        Param::Int(n) => query.bind(n),
    }
}

/// `claim_if_clear.sql`'s `?1` … `?10`.
fn claim_params(run: &NewRun, exclusive: bool) -> [Param<'_>; 10] {
    [
        Param::Text(&run.code),
        Param::Int(run.tick.timestamp_micros()),
        Param::Text(run.kind.as_str()),
        Param::Int(i64::from(run.attempt)),
        Param::Int(run.started_at.timestamp_micros()),
        Param::Int(run.lease_until.timestamp_micros()),
        Param::Text(&run.host),
        Param::Int(i64::from(run.pid)),
        Param::Int(run.started_at.timestamp_micros()),
        Param::Int(i64::from(exclusive)),
    ]
}

/// `finish.sql`'s `?1` … `?5`: run `id` ends with `outcome` at `at`, if it is still `from`.
fn finish_params(
    id: RunId,
    outcome: RunOutcome,
    at: DateTime<Utc>,
    message: &str,
    from: RunOutcome,
) -> [Param<'_>; 5] {
    [
        Param::Text(outcome.as_str()),
        Param::Int(at.timestamp_micros()),
        Param::Text(message),
        Param::Int(id.0),
        Param::Text(from.as_str()),
    ]
}

async fn apply(conn: &mut SqliteConnection, write: &Write) -> Result<Written> {
    match write {
        Write::Claim { run, exclusive } => {
            let row = claim_params(run, *exclusive)
                .into_iter()
                .fold(sqlx::query(CLAIM), bind)
                .fetch_optional(&mut *conn)
                .await?;
            let claimed = row
                .map(|row| Ok::<_, sqlx::Error>((row.try_get(0)?, row.try_get(1)?)))
                .transpose()?;
            Ok(Written::Claim(claimed))
        }
        Write::Finish {
            id,
            outcome,
            at,
            message,
        } => {
            for from in super::ENDS_FROM {
                let updated = finish_params(*id, *outcome, *at, message, from)
                    .into_iter()
                    .fold(sqlx::query(FINISH), bind)
                    .execute(&mut *conn)
                    .await?
                    .rows_affected();
                if updated == 1 {
                    return Ok(Written::Finish(Some(from)));
                }
            }
            Ok(Written::Finish(None))
        }
        Write::OverridesVersion => {
            let version = sqlx::query_scalar(OVERRIDES_VERSION)
                .fetch_optional(&mut *conn)
                .await?;
            Ok(Written::OverridesVersion(version))
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

    #[async_std::test]
    async fn a_batch_answers_each_write_as_if_it_ran_alone() {
        use crate::ledger::{RunLedger, RunOutcome};
        use crate::overrides::OverrideStore;

        let dir = tempfile::tempdir().unwrap();
        let (db, _) = file_database(&dir).await;
        let (claimed, _) = db.claim_if_clear(&run(0), false).await.unwrap().unwrap();
        // Its lease ran out: marked abandoned, it may still report its end.
        let later = run(0).lease_until + chrono::TimeDelta::minutes(1);
        assert_eq!(db.abandon_expired(later).await.unwrap().len(), 1);
        let version = OverrideStore::version(&db).await.unwrap();

        let end = |id: i64| Write::Finish {
            id: RunId(id),
            outcome: RunOutcome::Succeeded,
            at: later,
            message: "done".to_owned(),
        };
        let writes = vec![
            Write::Claim {
                run: run(5),
                exclusive: true,
            },
            end(claimed.id.0),
            Write::OverridesVersion,
            end(claimed.id.0 + 1_000),
        ];
        let (queued, answers): (Vec<_>, Vec<_>) = writes
            .into_iter()
            .map(|write| {
                let (answer, answered) = oneshot::channel();
                (Queued { write, answer }, answered)
            })
            .unzip();
        let mut own = None;
        db.group_commit()
            .run(Batch::new(queued), pool(&db), &mut own)
            .await;
        assert!(own.is_some(), "the connection is kept for the next batch");
        let mut answers = futures::future::join_all(answers).await.into_iter();
        let mut next = || match answers.next() {
            Some(Ok(Answer::Done(Ok(written)))) => written,
            other => panic!("not answered: {other:?}"),
        };
        let Written::Claim(Some((new_id, prior_failures))) = next() else {
            panic!("the claim was not made");
        };
        // Ends go first: the run had succeeded by the time the claim counted failures.
        assert_eq!(prior_failures, 0, "ends go before claims");
        assert!(matches!(
            next(),
            Written::Finish(Some(RunOutcome::Abandoned))
        ));
        assert!(matches!(
            next(),
            Written::OverridesVersion(Some(v)) if u64::try_from(v).unwrap() == version
        ));
        assert!(matches!(next(), Written::Finish(None)), "no such run");
        let history = db.history(None, 10).await.unwrap();
        let outcome = |id: i64| history.iter().find(|r| r.id.0 == id).map(|r| r.outcome);
        assert_eq!(outcome(claimed.id.0), Some(RunOutcome::Succeeded));
        assert_eq!(outcome(new_id), Some(RunOutcome::Running));
    }

    #[test]
    fn a_statement_for_a_batch_takes_its_parameters_in_turn() {
        let statement =
            Positional::new("-- ?9 in a comment\nSELECT ?2, ?1\nWHERE x = ?10 OR y = ?2");
        assert_eq!(statement.text, "SELECT ?, ?\nWHERE x = ? OR y = ?;\n");
        assert_eq!(statement.order, [2, 1, 10, 2]);
    }
}
