//! The CRM's five jobs, one file each, and the list of them an app registers.

/// One of the contract's jobs, declared: the struct (the CRM access it asks and the log file it
/// writes), its `CODE` and `SCHEDULE`, `new`, and the [`CronJob`] implementation, whose `run` is
/// the job's own `run_once` (and whose `options`, if given, differ from the defaults). The five
/// differ only in what they do, which is all each file holds.
macro_rules! contract_job {
    (
        $(#[$doc:meta])*
        pub struct $job:ident {
            code: $code:literal,
            schedule: $schedule:ident = $when:literal,
            log: $log:ident = $file:literal,
            $(options: $options:expr,)?
        }
    ) => {
        $(#[$doc])*
        pub struct $job {
            crm: std::sync::Arc<dyn $crate::crm_access::CrmAccess>,
            log: $crate::log_file::LogFile,
        }

        impl $job {
            /// The job's code.
            pub const CODE: &'static str = $code;
            #[doc = concat!("The contract's schedule: ", $when, ".")]
            pub const SCHEDULE: &'static str = $crate::schedule::schedules::$schedule;

            #[doc = concat!("The job asking `crm`, logging to `", $file, "` in `config.log_dir`.")]
            pub fn new(
                crm: impl $crate::crm_access::CrmAccess,
                config: &$crate::config::JobsConfig,
            ) -> Self {
                Self {
                    crm: std::sync::Arc::new(crm),
                    log: config.log_file($crate::log_file::file_names::$log),
                }
            }
        }

        #[async_trait::async_trait]
        impl $crate::job::CronJob for $job {
            fn code(&self) -> &str {
                Self::CODE
            }

            fn schedule(&self) -> $crate::schedule::Schedule {
                $crate::jobs::contract_schedule(Self::SCHEDULE)
            }

            $(
                fn options(&self) -> $crate::job::JobOptions {
                    $options
                }
            )?

            async fn run(
                &self,
                ctx: &$crate::job::JobContext,
            ) -> Result<String, $crate::job::JobError> {
                self.run_once(ctx).await
            }
        }
    };
}

mod clean_inactive_customers;
mod generate_crm_report;
mod log_crm_heartbeat;
mod send_order_reminders;
mod update_low_stock;

use std::sync::Arc;

#[cfg(feature = "graphql")]
use crm_core::CrmStore;
#[cfg(feature = "graphql")]
use crm_core::ledger::RunLedger;
#[cfg(feature = "graphql")]
use crm_core::overrides::OverrideStore;

pub use clean_inactive_customers::CleanInactiveCustomers;
pub use generate_crm_report::GenerateCrmReport;
pub use log_crm_heartbeat::LogCrmHeartbeat;
pub use send_order_reminders::{ORDER_REMINDERS_PROCESSED, SendOrderReminders};
pub use update_low_stock::UpdateLowStock;

#[cfg(feature = "graphql")]
use crate::clock::SystemClock;
use crate::config::JobsConfig;
use crate::crm_access::CrmAccess;
#[cfg(feature = "graphql")]
use crate::crm_access::InProcessCrm;
#[cfg(feature = "graphql")]
use crate::graphql::{GraphqlClient, GraphqlError};
use crate::job::CronJob;
#[cfg(feature = "graphql")]
use crate::runner::{Runner, RunnerBuilder};
use crate::schedule::Schedule;

/// The five jobs of the contract as the `crm` binary runs them, configured by `config`: the
/// cleanup works on `store` (the GraphQL API cannot delete customers), the other four share one
/// GraphQL client of `config.graphql_url`, as the original's scripts talk to its endpoint.
///
/// Fails only when the GraphQL client cannot be set up (a URL or token HTTP cannot carry).
#[cfg(feature = "graphql")]
pub fn standard_jobs(
    config: &JobsConfig,
    store: Arc<dyn CrmStore>,
) -> Result<Vec<Box<dyn CronJob>>, GraphqlError> {
    standard_jobs_over(config, store, crate::HttpTransport::default())
}

/// [`standard_jobs`] with the GraphQL client's requests carried by `transport`: a tokio app
/// names [`HttpTransport::Tokio`](crate::HttpTransport) so that a build that also compiles
/// surf in (features unify across a workspace) still runs its client on tokio.
#[cfg(feature = "graphql")]
pub fn standard_jobs_over(
    config: &JobsConfig,
    store: Arc<dyn CrmStore>,
    transport: crate::HttpTransport,
) -> Result<Vec<Box<dyn CronJob>>, GraphqlError> {
    let client: Arc<dyn CrmAccess> = Arc::new(GraphqlClient::with_transport(config, transport)?);
    let mut jobs = jobs_with_access(config, client);
    jobs[0] = Box::new(CleanInactiveCustomers::new(
        InProcessCrm::new(store),
        config,
    ));
    Ok(jobs)
}

/// The `crm` binary's runner, ready to build: the five [`standard_jobs`] configured by
/// `config`, recording into `db` (the CRM's own database, as the run ledger and the operators'
/// override store, so every process on it shares claims, history and pauses), in `config`'s
/// zone with its lease ([`RunnerBuilder::config`]), on the system clock. `crm jobs`,
/// `crm scheduler`, `crm serve`, `crm beat` and `crm worker` all start from it; add what differs
/// (an alert hook, a lease of its own) and `build()`. Its GraphQL client takes the default
/// transport; to name one, register [`standard_jobs_over`] on a builder of your own.
///
/// Fails only when the GraphQL client cannot be set up (a URL or token HTTP cannot carry).
#[cfg(feature = "graphql")]
pub fn standard_runner<D>(config: &JobsConfig, db: Arc<D>) -> Result<RunnerBuilder, GraphqlError>
where
    D: CrmStore + RunLedger + OverrideStore + 'static,
{
    Ok(Runner::builder()
        .jobs(standard_jobs(config, db.clone())?)
        .ledger(db.clone())
        .overrides(db)
        .clock(Arc::new(SystemClock))
        .config(config))
}

/// The five jobs of the contract, configured by `config`, all reaching the CRM through `crm`:
/// an [`InProcessCrm`] for an app that holds the CRM's database, or a client of its API.
/// In the order cleanup, reminders, heartbeat, low stock, report.
pub fn jobs_with_access(config: &JobsConfig, crm: Arc<dyn CrmAccess>) -> Vec<Box<dyn CronJob>> {
    vec![
        Box::new(CleanInactiveCustomers::new(crm.clone(), config)),
        Box::new(SendOrderReminders::new(crm.clone(), config)),
        Box::new(LogCrmHeartbeat::new(crm.clone(), config)),
        Box::new(UpdateLowStock::new(crm.clone(), config)),
        Box::new(GenerateCrmReport::new(crm, config)),
    ]
}

/// The schedule of one of the contract's cron expressions (a job's `SCHEDULE`), in no explicit
/// zone: the runner places it in the configured one (`CRM_TIME_ZONE`, else the machine's).
fn contract_schedule(expression: &'static str) -> Schedule {
    Schedule::cron(expression).expect("the contract's cron expressions are valid (tested)")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[cfg(feature = "graphql")]
    #[test]
    fn the_standard_runner_runs_the_five_jobs_in_the_configured_zone_recording_into_the_database() {
        use crm_core::overrides::JobControl as _;

        async_std::task::block_on(async {
            let db = crm_core::testing::TestDb::sqlite().await;
            let logs = tempfile::tempdir().unwrap();
            let config = JobsConfig::from_lookup(|name| match name {
                "CRM_LOG_DIR" => Some(logs.path().display().to_string()),
                "CRM_TIME_ZONE" => Some("Europe/Paris".to_owned()),
                _ => None,
            })
            .unwrap();
            let runner = standard_runner(&config, Arc::new(db.database().clone()))
                .unwrap()
                .build()
                .unwrap();
            assert_eq!(
                runner.codes().collect::<Vec<_>>(),
                [
                    "clean_inactive_customers",
                    "send_order_reminders",
                    "log_crm_heartbeat",
                    "update_low_stock",
                    "generate_crm_report"
                ]
            );
            assert_eq!(runner.time_zone(), chrono_tz::Europe::Paris);
            // The cleanup works on the database in-process, and its run is in the database's
            // ledger; a pause goes to the database's overrides.
            let report = runner
                .run_now(CleanInactiveCustomers::CODE, true, true)
                .await
                .unwrap();
            assert!(!report.is_failure(), "{}", report.message);
            let db = db.database();
            let runs = db
                .history(Some(CleanInactiveCustomers::CODE), 10)
                .await
                .unwrap();
            assert_eq!(runs.len(), 1);
            runner
                .set_enabled(UpdateLowStock::CODE, false, "test")
                .await
                .unwrap();
            let paused = db.snapshot().await.unwrap().overrides;
            assert_eq!(paused.len(), 1);
            assert_eq!(
                (paused[0].code.as_str(), paused[0].enabled),
                (UpdateLowStock::CODE, false)
            );
        });
    }

    /// A CRM whose report totals answer only once two report runs are asking at the same
    /// time (or after 5 s, with an error).
    struct TwoAtOnce(std::sync::atomic::AtomicU32);

    #[async_trait::async_trait]
    impl CrmAccess for TwoAtOnce {
        async fn hello(&self) -> Result<String, crate::job::JobError> {
            unreachable!("the report asks only for totals")
        }
        fn order_pages_between(
            &self,
            _: chrono::DateTime<chrono::Utc>,
            _: chrono::DateTime<chrono::Utc>,
        ) -> crate::crm_access::OrderPages<'_> {
            unreachable!("the report asks only for totals")
        }
        async fn products_below(
            &self,
            _: i32,
        ) -> Result<Vec<crate::crm_access::ProductStockLevel>, crate::job::JobError> {
            unreachable!("the report asks only for totals")
        }
        async fn restock_low_stock(
            &self,
            _: Option<&str>,
        ) -> Result<crate::crm_access::RestockOutcome, crate::job::JobError> {
            unreachable!("the report asks only for totals")
        }
        async fn report_totals(
            &self,
        ) -> Result<crate::crm_access::ReportTotals, crate::job::JobError> {
            use std::sync::atomic::Ordering;
            self.0.fetch_add(1, Ordering::SeqCst);
            let asked = std::time::Instant::now();
            while self.0.load(Ordering::SeqCst) < 2 {
                if asked.elapsed() > std::time::Duration::from_secs(5) {
                    return Err(crate::job::JobError::Endpoint("alone for 5 s".to_owned()));
                }
                async_io::Timer::after(std::time::Duration::from_millis(5)).await;
            }
            Ok(crate::crm_access::ReportTotals {
                customers: 1,
                orders: 2,
                revenue: rust_decimal::Decimal::new(300, 2),
            })
        }
        async fn delete_inactive_customers(
            &self,
            _: chrono::DateTime<chrono::Utc>,
            _: bool,
        ) -> Result<u64, crate::job::JobError> {
            unreachable!("the report asks only for totals")
        }
    }

    /// A broker worker draining a backlog of weekly reports runs two ticks side by side, as
    /// Celery does: the report's runs may overlap (each tick still runs once), claimed in the
    /// real SQLite ledger, whose claim refuses a second run of a job that does not allow it.
    #[cfg(feature = "graphql")]
    #[test]
    fn two_ticks_of_the_report_run_side_by_side() {
        use chrono::TimeZone as _;
        use crm_core::ledger::{RunKind, RunOutcome};

        async_std::task::block_on(async {
            let db = crm_core::testing::TestDb::sqlite().await;
            let logs = tempfile::tempdir().unwrap();
            let config = JobsConfig::from_lookup(|name| match name {
                "CRM_LOG_DIR" => Some(logs.path().display().to_string()),
                _ => None,
            })
            .unwrap();
            let crm = Arc::new(TwoAtOnce(Default::default()));
            let runner = crate::runner::Runner::builder()
                .ledger(Arc::new(db.database().clone()))
                .clock(Arc::new(crate::clock::ManualClock::new(
                    chrono::Utc.with_ymd_and_hms(2026, 6, 8, 6, 0, 0).unwrap(),
                )))
                .time_zone(chrono_tz::UTC)
                .job(Box::new(GenerateCrmReport::new(crm, &config)))
                .build()
                .unwrap();
            let monday = |day| chrono::Utc.with_ymd_and_hms(2026, 6, day, 6, 0, 0).unwrap();
            let (first, second) = futures::join!(
                runner.run_at(GenerateCrmReport::CODE, monday(1), RunKind::Scheduled, 1),
                runner.run_at(GenerateCrmReport::CODE, monday(8), RunKind::Scheduled, 1),
            );
            for report in [first.unwrap(), second.unwrap()] {
                assert_eq!(
                    report.status,
                    crate::runner::RunStatus::Succeeded,
                    "{}",
                    report.message
                );
            }
            let log = std::fs::read_to_string(logs.path().join("crm_report_log.txt")).unwrap();
            assert_eq!(
                log.matches("Report: 1 customers, 2 orders, 3.00 revenue.")
                    .count(),
                2
            );
            let runs = db
                .database()
                .history(Some(GenerateCrmReport::CODE), 10)
                .await
                .unwrap();
            assert_eq!(runs.len(), 2);
            assert!(runs.iter().all(|r| r.outcome == RunOutcome::Succeeded));
        });
    }

    #[test]
    fn every_job_schedule_is_its_contract_cron_expression() {
        let shown: Vec<(&str, String)> = [
            (
                CleanInactiveCustomers::CODE,
                CleanInactiveCustomers::SCHEDULE,
            ),
            (SendOrderReminders::CODE, SendOrderReminders::SCHEDULE),
            (LogCrmHeartbeat::CODE, LogCrmHeartbeat::SCHEDULE),
            (UpdateLowStock::CODE, UpdateLowStock::SCHEDULE),
            (GenerateCrmReport::CODE, GenerateCrmReport::SCHEDULE),
        ]
        .into_iter()
        .map(|(code, expr)| (code, contract_schedule(expr).to_string()))
        .collect();
        assert_eq!(
            shown,
            [
                ("clean_inactive_customers", "0 2 * * 0".to_owned()),
                ("send_order_reminders", "0 8 * * *".to_owned()),
                ("log_crm_heartbeat", "*/5 * * * *".to_owned()),
                ("update_low_stock", "0 */12 * * *".to_owned()),
                ("generate_crm_report", "0 6 * * 1".to_owned()),
            ]
        );
    }
}
