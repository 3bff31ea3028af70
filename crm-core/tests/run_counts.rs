//! `Database::run_counts` (table `job_run_counts`, kept by triggers): the counts behind the
//! Prometheus counter `crm_job_runs_total`, on SQLite and on PostgreSQL. They follow every way a
//! run ends (seeded finished rows, a claim finished, a skip, an abandoned claim), leave dry runs
//! out, and do not go down when a prune deletes the rows they counted.

use std::time::Duration;

use chrono::{DateTime, TimeDelta, TimeZone, Utc};
use crm_core::ledger::{Claim, NewRun, Retention, RunEnd, RunKind, RunLedger, RunOutcome};
use crm_core::testing::{TestDb, seed_finished_runs};

fn at(day: u32, hour: u32) -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 3, day, hour, 0, 0).unwrap()
}

fn run(code: &str, tick: DateTime<Utc>, kind: RunKind) -> NewRun {
    NewRun {
        code: code.to_owned(),
        tick,
        kind,
        attempt: 1,
        started_at: tick,
        lease_until: tick + TimeDelta::minutes(1),
        host: "test".to_owned(),
        pid: 1,
    }
}

/// `(code, outcome, runs, total seconds)` of every count.
async fn counts(t: &TestDb) -> Vec<(String, RunOutcome, u64, u64)> {
    t.database()
        .run_counts()
        .await
        .unwrap()
        .into_iter()
        .map(|c| (c.code, c.outcome, c.runs, c.total_duration.as_secs()))
        .collect()
}

async fn claimed(t: &TestDb, new: &NewRun) -> crm_core::ledger::RunId {
    match t
        .database()
        .claim(new, false, new.started_at)
        .await
        .unwrap()
    {
        Claim::Claimed(run) => run.id,
        other => panic!("not claimed: {other:?}"),
    }
}

async fn counts_follow_every_end_and_survive_a_prune(t: TestDb) {
    let db = t.database();
    assert!(db.run_counts().await.unwrap().is_empty());
    // 1,000 finished runs of one second each, every tenth failed.
    seed_finished_runs(db, "report", 1000, at(1, 0), TimeDelta::minutes(5))
        .await
        .unwrap();
    // A claim that runs 3 s and succeeds; one still running; a dry run; a skip; an abandoned
    // claim.
    let ok = claimed(&t, &run("report", at(20, 1), RunKind::Manual)).await;
    db.finish(
        ok,
        RunEnd {
            outcome: RunOutcome::Succeeded,
            at: at(20, 1) + TimeDelta::seconds(3),
            message: "done",
        },
    )
    .await
    .unwrap();
    claimed(&t, &run("heartbeat", at(20, 2), RunKind::Scheduled)).await;
    let dry = claimed(&t, &run("report", at(20, 3), RunKind::DryRun)).await;
    db.finish(
        dry,
        RunEnd {
            outcome: RunOutcome::Succeeded,
            at: at(20, 3),
            message: "dry",
        },
    )
    .await
    .unwrap();
    assert!(
        db.record_skipped(&run("report", at(20, 4), RunKind::Scheduled), "missed")
            .await
            .unwrap()
    );
    let lost = claimed(&t, &run("cleanup", at(20, 5), RunKind::Scheduled)).await;
    let abandoned = db.abandon_expired(at(20, 6)).await.unwrap();
    assert!(abandoned.iter().any(|r| r.id == lost));

    let expected = vec![
        ("cleanup".to_owned(), RunOutcome::Abandoned, 1, 3600),
        ("heartbeat".to_owned(), RunOutcome::Abandoned, 1, 14400),
        ("report".to_owned(), RunOutcome::Failed, 100, 100),
        ("report".to_owned(), RunOutcome::Skipped, 1, 0),
        ("report".to_owned(), RunOutcome::Succeeded, 901, 903),
    ];
    assert_eq!(counts(&t).await, expected);
    let latest = db.run_counts().await.unwrap();
    let success = latest
        .iter()
        .find(|c| c.code == "report" && c.outcome == RunOutcome::Succeeded)
        .unwrap();
    assert_eq!(success.last_ended, Some(at(20, 1) + TimeDelta::seconds(3)));

    // Everything finished may go (keeping the landmarks the health reads): the counts stay.
    let pruned = db
        .prune(
            &Retention::before(at(28, 0))
                .keep_per_job(0)
                .pause(Duration::ZERO),
        )
        .await
        .unwrap();
    assert!(pruned.runs > 900, "{pruned:?}");
    assert_eq!(counts(&t).await, expected);
}

macro_rules! on_both_backends {
    ($($name:ident),*) => {
        mod sqlite {
            $(#[async_std::test]
            async fn $name() {
                super::$name(crm_core::testing::TestDb::sqlite().await).await;
            })*
        }
        mod postgres {
            $(#[async_std::test]
            async fn $name() {
                super::$name(crm_core::testing::TestDb::postgres().await).await;
            })*
        }
    };
}

on_both_backends!(counts_follow_every_end_and_survive_a_prune);

/// The in-memory ledger counts as the database's triggers do, through [`RunLedger::run_counts`]:
/// every way a run ends, dry runs left out, a run abandoned and then finished counted under
/// both, and nothing lowered by a prune.
#[async_std::test]
async fn the_memory_ledger_counts_like_the_database_and_a_prune_lowers_nothing() {
    let ledger = crm_core::ledger::MemoryLedger::new();
    let l: &dyn RunLedger = &ledger;
    let claim = |new: NewRun| async move {
        match l.claim(&new, false, new.started_at).await.unwrap() {
            Claim::Claimed(run) => run.id,
            other => panic!("not claimed: {other:?}"),
        }
    };
    for day in 1..=3 {
        let id = claim(run("report", at(day, 1), RunKind::Scheduled)).await;
        let outcome = if day == 2 {
            RunOutcome::Failed
        } else {
            RunOutcome::Succeeded
        };
        l.finish(
            id,
            RunEnd {
                outcome,
                at: at(day, 1) + TimeDelta::seconds(2),
                message: "",
            },
        )
        .await
        .unwrap();
    }
    let dry = claim(run("report", at(4, 1), RunKind::DryRun)).await;
    l.finish(
        dry,
        RunEnd {
            outcome: RunOutcome::Succeeded,
            at: at(4, 1),
            message: "dry",
        },
    )
    .await
    .unwrap();
    assert!(
        l.record_skipped(&run("report", at(5, 1), RunKind::Scheduled), "missed")
            .await
            .unwrap()
    );
    // Abandoned when its lease ran out, then its runner reports the truth: counted under both.
    let late = claim(run("cleanup", at(6, 1), RunKind::Scheduled)).await;
    assert_eq!(l.abandon_expired(at(6, 3)).await.unwrap().len(), 1);
    l.finish(
        late,
        RunEnd {
            outcome: RunOutcome::Succeeded,
            at: at(6, 4),
            message: "late but done",
        },
    )
    .await
    .unwrap();

    let counts = |all: Vec<crm_core::ledger::RunCount>| {
        all.into_iter()
            .map(|c| (c.code, c.outcome, c.runs, c.total_duration.as_secs()))
            .collect::<Vec<_>>()
    };
    let expected = vec![
        ("cleanup".to_owned(), RunOutcome::Abandoned, 1, 7200),
        ("cleanup".to_owned(), RunOutcome::Succeeded, 1, 10800),
        ("report".to_owned(), RunOutcome::Failed, 1, 2),
        ("report".to_owned(), RunOutcome::Skipped, 1, 0),
        ("report".to_owned(), RunOutcome::Succeeded, 2, 4),
    ];
    let before = l.run_counts().await.unwrap();
    assert_eq!(counts(before.clone()), expected);
    let success = before
        .iter()
        .find(|c| c.code == "report" && c.outcome == RunOutcome::Succeeded)
        .unwrap();
    assert_eq!(success.last_ended, Some(at(3, 1) + TimeDelta::seconds(2)));

    let pruned = l
        .prune(
            &Retention::before(at(28, 0))
                .keep_per_job(0)
                .pause(Duration::ZERO),
        )
        .await
        .unwrap();
    assert!(pruned.runs > 0, "{pruned:?}");
    assert_eq!(counts(l.run_counts().await.unwrap()), expected);
}

/// Rows in PostgreSQL's `job_run_counts` (migration 0014 appends one a run's end).
async fn count_rows(t: &TestDb) -> i64 {
    t.rows_in("job_run_counts").await.unwrap()
}

/// Claims and ends `n` runs of `code` from hour `first` on, each a second long.
async fn end_runs(t: &TestDb, code: &str, first: u32, n: u32) {
    for i in 0..n {
        let tick = at(1, 0) + TimeDelta::hours(i64::from(first + i));
        let id = claimed(t, &run(code, tick, RunKind::Scheduled)).await;
        let end = RunEnd {
            outcome: RunOutcome::Succeeded,
            at: tick + TimeDelta::seconds(1),
            message: "done",
        };
        assert!(t.database().finish(id, end).await.unwrap());
    }
}

/// On PostgreSQL each end appends a row (no end waits on another's row lock) and a read folds
/// them once they are many: reads that fold at once, while runs keep ending, lose no run and
/// count none twice.
#[async_std::test]
async fn postgres_counts_read_while_runs_end_fold_their_rows_and_lose_none() {
    let t = TestDb::postgres().await;
    let db = t.database();
    end_runs(&t, "report", 0, 100).await;
    assert_eq!(count_rows(&t).await, 100, "a row an end");
    assert_eq!(
        counts(&t).await,
        vec![("report".to_owned(), RunOutcome::Succeeded, 100, 100)]
    );
    assert_eq!(count_rows(&t).await, 1, "the read folded them into one");

    end_runs(&t, "report", 100, 70).await;
    let readers = futures::future::join_all((0..6).map(|_| db.run_counts()));
    let (read, ()) = futures::join!(readers, end_runs(&t, "report", 170, 30));
    for counts in read {
        let runs = counts.unwrap()[0].runs;
        assert!((170..=200).contains(&runs), "{runs}");
    }
    assert_eq!(
        counts(&t).await,
        vec![("report".to_owned(), RunOutcome::Succeeded, 200, 200)]
    );

    // A prune folds them too, for a ledger nobody scrapes.
    end_runs(&t, "heartbeat", 0, 65).await;
    db.prune(&Retention::before(at(1, 0)).pause(Duration::ZERO))
        .await
        .unwrap();
    assert_eq!(count_rows(&t).await, 2);
}
